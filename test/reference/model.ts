// A reference implementation of the core's per-flow selection (wasm/core.c select_one), in plain
// TypeScript, over the same image bytes. Written from the specification in wasm/svcplane.h and the
// comments of wasm/core.c, not from its code: the struct offsets below are transcribed from the C header
// (not imported from src/compile/layout.ts, so a drift of the TypeScript mirror shows up as a
// difference), and hashing uses the compiler's murmur3 over explicit byte strings rather than the core's
// word-at-a-time version.
//
// Deliberate difference: the core's ClientIP affinity table is bounded (8 probed slots, evicting the
// entry closest to expiry); this model keeps every entry in an unbounded Map. Differential tests must
// keep the number of (client, list) pairs far below the core's capacity so that the core never evicts.

import { murmur3 } from '../../src/compile/murmur3.js';
import { PROTOCOL_NUMBERS, type Protocol, parseIp } from '../../src/k8s/net.js';

// ---- wasm/svcplane.h, transcribed ----

const SP_MAGIC = 0x50435653;
const SP_VERSION = 1;

/** struct sp_header: 26 u32 fields. */
const HDR = {
  size: 104,
  magic: 0, version: 4, imageSize: 8, flowSeed: 12, tableSeed: 16,
  feOff: 20, feCap: 24, feCount: 28, svcOff: 32, svcCount: 36, listOff: 40, listCount: 44,
  beOff: 48, beCount: 52, mgOff: 56, mgBytes: 60, rnOff: 64, rnCount: 68, srOff: 72, srCount: 76,
  strOff: 80, strBytes: 84, nodeName: 88, nodeZone: 92, lsOff: 96, lsCount: 100,
} as const;

/** struct sp_frontend (32 bytes): u8 addr[16]; u16 port; u8 proto; u8 kind; u32 svc, revnat, flags. */
const FE = { size: 32, addr: 0, port: 16, proto: 18, kind: 19, svc: 20, revnat: 24, flags: 28 } as const;
const FE_EMPTY = 0;
const FE_F_EXTERNAL = 1;
const FE_F_SOURCE_RANGES = 2;

/** struct sp_service (40 bytes). */
const SVC = {
  size: 40, flags: 0, affinityTimeout: 4, name: 8, portName: 12, listInternal: 16, listExternal: 20,
  listCluster: 24, srStart: 28, srCount: 32, empty: 34, proto: 35,
} as const;
const SVC_F_AFFINITY = 1;
const SVC_F_EXTERNAL_LOCAL = 4;
const SVC_EMPTY_INTERNAL_DROP = 1;
const SVC_EMPTY_EXTERNAL_DROP = 2;

/** struct sp_list (24 bytes). */
const LST = { size: 24, beStart: 0, beCount: 4, mgOff: 8, mgSize: 12, mgWidth: 16, kind: 17, affinityId: 20 } as const;

/** struct sp_backend (24 bytes). */
const BE = { size: 24, addr: 0, port: 16, state: 18, flags: 19, node: 20 } as const;

/** struct sp_source_range (20 bytes). */
const SR = { size: 20, addr: 0, prefix: 16 } as const;

export const V_PASS = 0;
export const V_FORWARD = 1;
export const V_REJECT = 2;
export const V_DROP = 3;

export const R_NOT_SERVICE = 0;
export const R_MAGLEV = 1;
export const R_AFFINITY = 2;
export const R_NO_ENDPOINTS = 3;
export const R_NO_LOCAL_ENDPOINTS = 4;
export const R_SOURCE_RANGE = 5;
export const R_BAD_IMAGE = 6;
export const R_NO_IMAGE = 7;

export const SP_NONE = 0xffffffff;

/** sp_result.list: which of the service's lists was consulted. */
export const LIST_USED_INTERNAL = 0;
export const LIST_USED_EXTERNAL = 1;
export const LIST_USED_LOCAL_SOURCE = 2;

// ---- model ----

export interface ReferenceFlow {
  protocol: Protocol | number;
  src: string | Uint8Array;
  sport: number;
  dst: string | Uint8Array;
  dport: number;
}

/** What happened to ClientIP affinity for this flow (diagnostics / coverage, not compared with the core). */
export type AffinityEvent =
  | 'off' // the service has no affinity, or the flow never reached that step
  | 'new' // no entry for (client, list): Maglev chose and an entry was created
  | 'hit' // a live entry named a backend still in the list
  | 'expired' // an entry existed but now >= expiry: Maglev chose and the entry was overwritten
  | 'stale'; // a live entry named a backend that left the list: Maglev chose and the entry was overwritten

export interface ReferenceResult {
  /** 0 pass, 1 forward, 2 reject, 3 drop. */
  verdict: number;
  /** R_* code. */
  reason: number;
  frontendSlot: number;
  backendIndex: number;
  maglevSlot: number;
  /** LIST_USED_*: 0 until a list is chosen (pass, source-range drop). */
  list: number;
  /** Diagnostics, not part of the core's result. */
  affinity: AffinityEvent;
  listInfo?: { index: number; size: number; maglevSize: number; maglevWidth: number };
}

interface AffinityEntry {
  beAddr: Uint8Array;
  bePort: number;
  expires: number;
}

interface ListRec {
  beStart: number;
  beCount: number;
  mgOff: number;
  mgSize: number;
  mgWidth: number;
  affinityId: number;
}

function toAddr(a: string | Uint8Array): Uint8Array {
  if (typeof a !== 'string') {
    if (a.length !== 16) throw new TypeError('addresses are 16 bytes');
    return a;
  }
  const p = parseIp(a);
  if (!p) throw new TypeError(`invalid address "${a}"`);
  return p.bytes;
}

function toProto(p: Protocol | number): number {
  if (typeof p === 'number') return p;
  const n = PROTOCOL_NUMBERS[p];
  if (n === undefined) throw new TypeError(`unknown protocol ${String(p)}`);
  return n;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function hex(b: Uint8Array): string {
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}

/** The 20-byte hash input addr[16] || le16(port) || u8(proto) || 0. */
function key20(addr: Uint8Array, port: number, proto: number): Uint8Array {
  const k = new Uint8Array(20);
  k.set(addr, 0);
  k[16] = port & 0xff;
  k[17] = (port >>> 8) & 0xff;
  k[18] = proto & 0xff;
  k[19] = 0;
  return k;
}

/** First `prefix` bits of addr equal those of net (both 16 bytes). */
function prefixMatch(addr: Uint8Array, net: Uint8Array, prefix: number): boolean {
  for (let bit = 0; bit < prefix; bit++) {
    const i = bit >> 3;
    const m = 0x80 >> (bit & 7);
    if (((addr[i] as number) & m) !== ((net[i] as number) & m)) return false;
  }
  return true;
}

export class ReferenceSelector {
  private bytes: Uint8Array = new Uint8Array(0);
  private dv: DataView = new DataView(new ArrayBuffer(0));
  /** ClientIP affinity: `${hex(client)}/${affinityId}` -> entry. Unbounded, survives load(). */
  private readonly affinity = new Map<string, AffinityEntry>();

  constructor(image: Uint8Array) {
    this.load(image);
  }

  /** Replaces the image (as a re-apply does); affinity state is kept, as the core keeps it across attaches. */
  load(image: Uint8Array): void {
    if (image.byteLength < HDR.size) throw new Error('reference: image shorter than its header');
    const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
    if (dv.getUint32(HDR.magic, true) !== SP_MAGIC) throw new Error('reference: bad magic');
    if (dv.getUint32(HDR.version, true) !== SP_VERSION) throw new Error('reference: bad version');
    if (dv.getUint32(HDR.imageSize, true) !== image.byteLength) throw new Error('reference: size mismatch');
    const cap = dv.getUint32(HDR.feCap, true);
    if (cap === 0 || (cap & (cap - 1)) !== 0) throw new Error('reference: frontend capacity not a power of two');
    this.bytes = image;
    this.dv = dv;
  }

  /** Number of affinity entries ever created (live or expired). */
  get affinityEntries(): number {
    return this.affinity.size;
  }

  private h(field: number): number {
    return this.dv.getUint32(field, true);
  }

  private u32(at: number): number {
    return this.dv.getUint32(at, true);
  }

  private u16(at: number): number {
    return this.dv.getUint16(at, true);
  }

  private u8(at: number): number {
    return this.bytes[at] as number;
  }

  /** The frontend-map home slot of a key: murmur3(addr || le16(port) || proto || 0, tableSeed) & (cap-1). */
  homeSlot(addr: Uint8Array, port: number, proto: number): number {
    return (murmur3(key20(addr, port, proto), this.h(HDR.tableSeed)) & (this.h(HDR.feCap) - 1)) >>> 0;
  }

  /** Frontend lookup by probing: the slot holding (addr, port, proto), or SP_NONE. */
  probeFrontend(addr: string | Uint8Array, port: number, protocol: Protocol | number): { slot: number; probes: number } {
    const a = toAddr(addr);
    const proto = toProto(protocol);
    const cap = this.h(HDR.feCap);
    const feOff = this.h(HDR.feOff);
    let slot = this.homeSlot(a, port, proto);
    for (let n = 0; n < cap; n++) {
      const at = feOff + slot * FE.size;
      if (this.u8(at + FE.kind) === FE_EMPTY) return { slot: SP_NONE, probes: n + 1 };
      if (
        this.u16(at + FE.port) === port &&
        this.u8(at + FE.proto) === proto &&
        bytesEqual(this.bytes.subarray(at + FE.addr, at + FE.addr + 16), a)
      ) {
        return { slot, probes: n + 1 };
      }
      slot = (slot + 1) & (cap - 1);
    }
    return { slot: SP_NONE, probes: cap };
  }

  private list(index: number): ListRec {
    if (index >= this.h(HDR.listCount)) throw new Error(`reference: list ${index} out of range`);
    const at = this.h(HDR.listOff) + index * LST.size;
    return {
      beStart: this.u32(at + LST.beStart),
      beCount: this.u32(at + LST.beCount),
      mgOff: this.u32(at + LST.mgOff),
      mgSize: this.u32(at + LST.mgSize),
      mgWidth: this.u8(at + LST.mgWidth),
      affinityId: this.u32(at + LST.affinityId),
    };
  }

  private maglevEntry(l: ListRec, slot: number): number {
    const at = this.h(HDR.mgOff) + l.mgOff + slot * l.mgWidth;
    if (l.mgWidth === 1) return this.u8(at);
    if (l.mgWidth === 2) return this.u16(at);
    return this.u32(at);
  }

  private backendAddr(index: number): Uint8Array {
    const at = this.h(HDR.beOff) + index * BE.size + BE.addr;
    return this.bytes.subarray(at, at + 16);
  }

  private backendPort(index: number): number {
    return this.u16(this.h(HDR.beOff) + index * BE.size + BE.port);
  }

  /** Position inside the list of the backend with this address and port, or -1. */
  private findInList(l: ListRec, addr: Uint8Array, port: number): number {
    for (let i = 0; i < l.beCount; i++) {
      if (this.backendPort(l.beStart + i) === port && bytesEqual(this.backendAddr(l.beStart + i), addr)) return i;
    }
    return -1;
  }

  /** Whether addr lies in one of `count` source ranges starting at byte `base`. */
  private inRanges(base: number, count: number, addr: Uint8Array): boolean {
    for (let i = 0; i < count; i++) {
      const at = base + i * SR.size;
      const prefix = Math.min(this.u8(at + SR.prefix), 128);
      if (prefixMatch(addr, this.bytes.subarray(at + SR.addr, at + SR.addr + 16), prefix)) return true;
    }
    return false;
  }

  /** One flow's decision at time `now` (u32 seconds); updates affinity state as the core does. */
  select(flow: ReferenceFlow, now: number): ReferenceResult {
    const t = now >>> 0;
    const src = toAddr(flow.src);
    const dst = toAddr(flow.dst);
    const proto = toProto(flow.protocol);
    const sport = flow.sport & 0xffff;
    const dport = flow.dport & 0xffff;
    const res: ReferenceResult = {
      verdict: V_PASS,
      reason: R_NOT_SERVICE,
      frontendSlot: SP_NONE,
      backendIndex: SP_NONE,
      maglevSlot: SP_NONE,
      list: LIST_USED_INTERNAL,
      affinity: 'off',
    };

    // 1. frontend: dst:dport/proto in the hash map
    const { slot: feSlot } = this.probeFrontend(dst, dport, proto);
    if (feSlot === SP_NONE) return res;
    res.frontendSlot = feSlot;
    const feAt = this.h(HDR.feOff) + feSlot * FE.size;
    const feFlags = this.u32(feAt + FE.flags);
    const svcIndex = this.u32(feAt + FE.svc);
    if (svcIndex >= this.h(HDR.svcCount)) throw new Error('reference: frontend names a missing service');
    const svcAt = this.h(HDR.svcOff) + svcIndex * SVC.size;

    // 2. loadBalancerSourceRanges (flagged LoadBalancer frontends only)
    const srBase = this.h(HDR.srOff) + this.u32(svcAt + SVC.srStart) * SR.size;
    if ((feFlags & FE_F_SOURCE_RANGES) !== 0 && !this.inRanges(srBase, this.u16(svcAt + SVC.srCount), src)) {
      res.verdict = V_DROP;
      res.reason = R_SOURCE_RANGE;
      return res;
    }

    // 3. list: ClusterIP frontends use the internal list, the others the external one, except that with
    //    eTP=Local a source in the header's local-source ranges (node addresses, loopback, pod CIDRs)
    //    uses the cluster list.
    let which = (feFlags & FE_F_EXTERNAL) !== 0 ? LIST_USED_EXTERNAL : LIST_USED_INTERNAL;
    const svcFlags = this.u32(svcAt + SVC.flags);
    if (which === LIST_USED_EXTERNAL && (svcFlags & SVC_F_EXTERNAL_LOCAL) !== 0 && this.inRanges(this.h(HDR.lsOff), this.h(HDR.lsCount), src)) {
      which = LIST_USED_LOCAL_SOURCE;
    }
    res.list = which;
    const listIndex = this.u32(
      svcAt + (which === LIST_USED_INTERNAL ? SVC.listInternal : which === LIST_USED_EXTERNAL ? SVC.listExternal : SVC.listCluster),
    );
    const l = this.list(listIndex);
    res.listInfo = { index: listIndex, size: l.beCount, maglevSize: l.mgSize, maglevWidth: l.mgWidth };
    if (l.beCount === 0) {
      // Empty internal/external lists drop when the service's `empty` bit says so (endpoints exist, none
      // local), else reject; an empty cluster list means no endpoints at all: reject.
      const empty = this.u8(svcAt + SVC.empty);
      const bit = which === LIST_USED_INTERNAL ? SVC_EMPTY_INTERNAL_DROP : which === LIST_USED_EXTERNAL ? SVC_EMPTY_EXTERNAL_DROP : 0;
      const drop = (empty & bit) !== 0;
      res.verdict = drop ? V_DROP : V_REJECT;
      res.reason = drop ? R_NO_LOCAL_ENDPOINTS : R_NO_ENDPOINTS;
      return res;
    }

    // 4. ClientIP affinity
    const affinity = (svcFlags & SVC_F_AFFINITY) !== 0;
    const timeout = this.u32(svcAt + SVC.affinityTimeout);
    const expiry = Math.min(t + timeout, 0xffffffff); // saturating u32
    const affKey = `${hex(src)}/${l.affinityId}`;
    if (affinity) {
      const e = this.affinity.get(affKey);
      if (e === undefined) {
        res.affinity = 'new';
      } else if (!(t < e.expires)) {
        res.affinity = 'expired';
      } else {
        const idx = this.findInList(l, e.beAddr, e.bePort);
        if (idx >= 0) {
          e.expires = expiry;
          res.verdict = V_FORWARD;
          res.reason = R_AFFINITY;
          res.backendIndex = l.beStart + idx;
          res.affinity = 'hit';
          return res;
        }
        res.affinity = 'stale';
      }
    }

    // 5. Maglev: flow hash over src || le16(sport) || proto || 0 with the cluster seed
    const hash = murmur3(key20(src, sport, proto), this.h(HDR.flowSeed));
    const mgSlot = hash % l.mgSize;
    const idx = this.maglevEntry(l, mgSlot);
    if (idx >= l.beCount) {
      res.verdict = V_DROP;
      res.reason = R_BAD_IMAGE;
      return res;
    }
    res.maglevSlot = mgSlot;
    res.backendIndex = l.beStart + idx;
    if (affinity) {
      this.affinity.set(affKey, {
        beAddr: this.backendAddr(l.beStart + idx).slice(),
        bePort: this.backendPort(l.beStart + idx),
        expires: expiry,
      });
    }
    res.verdict = V_FORWARD;
    res.reason = R_MAGLEV;
    return res;
  }
}
