// A reference implementation of the core's per-flow selection (wasm/core.c select_one), in plain
// TypeScript, over the same image bytes. Written from the specification in wasm/svcplane.h and the
// comments of wasm/core.c, not from its code: the struct offsets below are transcribed from the C header
// (not imported from src/compile/layout.ts, so a drift of the TypeScript mirror shows up as a
// difference), and hashing uses the compiler's murmur3 over explicit byte strings rather than the core's
// word-at-a-time version.
//
// Image (SP_VERSION 2): an arena. The header names the current root; the root names the frontend hash
// map, the service-slot array and the local-source ranges; a slot names the immutable block of one
// service port in one family ([sp_service][lists][backends][maglev][ranges][strings]). Every offset is
// from the image start and is checked where it is used: an offset that leaves the image (or is not
// naturally aligned) is R_BAD_IMAGE for the flow that needed it; a header/root that does not describe a
// usable image makes every flow R_NO_IMAGE.
//
// Deliberate difference: the core's ClientIP affinity table is bounded (8 probed slots, evicting the
// entry closest to expiry); this model keeps every entry in an unbounded Map. Differential tests must
// keep the number of (client, list) pairs far below the core's capacity so that the core never evicts.

import { murmur3 } from '../../src/compile/murmur3.js';
import { PROTOCOL_NUMBERS, type Protocol, formatIp, parseIp } from '../../src/k8s/net.js';

// ---- wasm/svcplane.h, transcribed ----

export const SP_MAGIC = 0x50435653;
export const SP_VERSION = 2;

/** struct sp_header (128 bytes). */
const HDR = { size: 128, magic: 0, version: 4, imageSize: 8, flowSeed: 12, tableSeed: 16, root: 20 } as const;

/** struct sp_root (48 bytes). */
const ROOT = {
  size: 48, feOff: 0, feCap: 4, slotOff: 8, slotCap: 12, rnOff: 16, rnCap: 20, lsOff: 24, lsCount: 28,
  nodeName: 32, nodeZone: 36,
} as const;

/** struct sp_frontend (32 bytes): u8 addr[16]; u16 port; u8 proto; u8 kind; u32 slot, revnat, flags. */
const FE = { size: 32, addr: 0, port: 16, proto: 18, kind: 19, slot: 20, revnat: 24, flags: 28 } as const;
const FE_EMPTY = 0;
const FE_TOMBSTONE = 0xff;
const FE_F_EXTERNAL = 1;
const FE_F_SOURCE_RANGES = 2;

/** struct sp_service (48 bytes), the head of a service block. */
const SVC = {
  size: 48, blockSize: 0, flags: 4, affinityTimeout: 8, name: 12, portName: 16, listOff: 20, listCount: 24,
  listInternal: 25, listExternal: 26, listCluster: 27, srOff: 28, srCount: 32, empty: 34, proto: 35,
} as const;
const SVC_F_AFFINITY = 1;
const SVC_F_EXTERNAL_LOCAL = 4;
const SVC_EMPTY_INTERNAL_DROP = 1;
const SVC_EMPTY_EXTERNAL_DROP = 2;

/** struct sp_list (24 bytes). */
const LST = { size: 24, beOff: 0, beCount: 4, mgOff: 8, mgSize: 12, mgWidth: 16, kind: 17, affinityId: 20 } as const;

/** struct sp_backend (24 bytes). */
const BE = { size: 24, addr: 0, port: 16, state: 18, flags: 19, node: 20 } as const;

/** struct sp_revnat (24 bytes). */
const RN = { size: 24, addr: 0, port: 16, proto: 18, kind: 19, slot: 20 } as const;

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
  /** LIST_USED_*: 0 until a list is chosen. */
  list: number;
  /** Index in the frontend hash map, or SP_NONE. */
  frontendSlot: number;
  /** Image offset of the chosen sp_backend, or SP_NONE. */
  backendOffset: number;
  maglevSlot: number;
  /** Diagnostics, not part of the core's result. */
  affinity: AffinityEvent;
  /** Position of the chosen backend inside its list. */
  backendPosition?: number;
  /** A source range consulted for this flow had host bits set past its prefix (never in a compiled image:
   * sp_source_range documents "network, host bits clear"); prefix matching is then not specified. */
  nonCanonicalRange?: boolean;
  listInfo?: { size: number; maglevSize: number; maglevWidth: number; position: number };
}

interface AffinityEntry {
  beAddr: Uint8Array;
  bePort: number;
  /** sp_affinity.be_index: "position in the list when chosen: checked against be_addr". */
  beIndex: number;
  expires: number;
}

interface ListRec {
  beOff: number;
  beCount: number;
  mgOff: number;
  mgSize: number;
  mgWidth: number;
  kind: number;
  affinityId: number;
}

interface ServiceRec {
  at: number;
  flags: number;
  affinityTimeout: number;
  name: number;
  portName: number;
  listOff: number;
  listCount: number;
  lists: [number, number, number]; // internal, external, cluster (indices into the list array)
  srOff: number;
  srCount: number;
  empty: number;
  proto: number;
}

interface Root {
  feOff: number;
  feCap: number;
  slotOff: number;
  slotCap: number;
  rnOff: number;
  rnCap: number;
  lsOff: number;
  lsCount: number;
  nodeName: number;
  nodeZone: number;
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

/** No bit of net is set past the first `prefix` bits. */
function hostBitsClear(net: Uint8Array, prefix: number): boolean {
  for (let bit = prefix; bit < 128; bit++) if (((net[bit >> 3] as number) & (0x80 >> (bit & 7))) !== 0) return false;
  return true;
}

class BadImage extends Error {}

export class ReferenceSelector {
  private bytes: Uint8Array = new Uint8Array(0);
  private dv: DataView = new DataView(new ArrayBuffer(0));
  /** ClientIP affinity: `${hex(client)}/${affinityId}` -> entry. Unbounded, survives load(). */
  private readonly affinity = new Map<string, AffinityEntry>();

  constructor(image: Uint8Array) {
    this.load(image);
  }

  /** Replaces the image (as an update does); affinity state is kept, as the core keeps it. */
  load(image: Uint8Array): void {
    if (image.byteLength < HDR.size) throw new Error('reference: image shorter than its header');
    const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
    if (dv.getUint32(HDR.magic, true) !== SP_MAGIC) throw new Error('reference: bad magic');
    if (dv.getUint32(HDR.version, true) !== SP_VERSION) throw new Error(`reference: image version ${dv.getUint32(HDR.version, true)}, model reads ${SP_VERSION}`);
    this.bytes = image;
    this.dv = dv;
  }

  /** The sp_backend at image offset `off` (a result's backend field). */
  backendAt(off: number): { address: string; port: number } {
    if (off % 4 !== 0 || !this.inImage(off, BE.size)) throw new Error(`reference: no backend at ${off}`);
    return { address: formatIp(this.addrAt(off + BE.addr)), port: this.u16(off + BE.port) };
  }

  /** Number of affinity entries ever created (live or expired). */
  get affinityEntries(): number {
    return this.affinity.size;
  }

  // -- bounds-checked reads: the image size is the header's image_size, never more than the bytes held --

  private get size(): number {
    return Math.min(this.dv.getUint32(HDR.imageSize, true), this.bytes.byteLength);
  }

  private inImage(off: number, len: number): boolean {
    return off + len <= this.size;
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

  private addrAt(at: number): Uint8Array {
    return this.bytes.subarray(at, at + 16);
  }

  /** The root this image publishes, or undefined when the header/root do not describe a usable image. */
  private root(): Root | undefined {
    if (this.bytes.byteLength < HDR.size || this.size < HDR.size) return undefined;
    const off = this.u32(HDR.root);
    if (off % 4 !== 0 || !this.inImage(off, ROOT.size)) return undefined;
    const r: Root = {
      feOff: this.u32(off + ROOT.feOff),
      feCap: this.u32(off + ROOT.feCap),
      slotOff: this.u32(off + ROOT.slotOff),
      slotCap: this.u32(off + ROOT.slotCap),
      rnOff: this.u32(off + ROOT.rnOff),
      rnCap: this.u32(off + ROOT.rnCap),
      lsOff: this.u32(off + ROOT.lsOff),
      lsCount: this.u32(off + ROOT.lsCount),
      nodeName: this.u32(off + ROOT.nodeName),
      nodeZone: this.u32(off + ROOT.nodeZone),
    };
    if (r.feCap === 0 || (r.feCap & (r.feCap - 1)) !== 0) return undefined;
    if (r.feOff % 4 !== 0 || !this.inImage(r.feOff, r.feCap * FE.size)) return undefined;
    if (r.slotOff % 4 !== 0 || !this.inImage(r.slotOff, r.slotCap * 4)) return undefined;
    if (r.lsOff % 4 !== 0 || !this.inImage(r.lsOff, r.lsCount * SR.size)) return undefined;
    return r;
  }

  /** The service block a service slot names, checked; throws BadImage. */
  private service(root: Root, slot: number): ServiceRec {
    if (slot >= root.slotCap) throw new BadImage(`service slot ${slot} >= ${root.slotCap}`);
    const at = this.u32(root.slotOff + slot * 4);
    if (at === 0 || at % 4 !== 0 || !this.inImage(at, SVC.size)) throw new BadImage(`service block at ${at}`);
    const s: ServiceRec = {
      at,
      flags: this.u32(at + SVC.flags),
      affinityTimeout: this.u32(at + SVC.affinityTimeout),
      name: this.u32(at + SVC.name),
      portName: this.u32(at + SVC.portName),
      listOff: this.u32(at + SVC.listOff),
      listCount: this.u8(at + SVC.listCount),
      lists: [this.u8(at + SVC.listInternal), this.u8(at + SVC.listExternal), this.u8(at + SVC.listCluster)],
      srOff: this.u32(at + SVC.srOff),
      srCount: this.u16(at + SVC.srCount),
      empty: this.u8(at + SVC.empty),
      proto: this.u8(at + SVC.proto),
    };
    if (s.listOff % 4 !== 0 || !this.inImage(s.listOff, s.listCount * LST.size)) throw new BadImage('list array');
    if (s.lists.some((i) => i >= s.listCount)) throw new BadImage('list index');
    if (s.srOff % 4 !== 0 || !this.inImage(s.srOff, s.srCount * SR.size)) throw new BadImage('source ranges');
    return s;
  }

  /** List `index` of a service, checked (backends and, when non-empty, the Maglev table); throws BadImage. */
  private list(s: ServiceRec, index: number): ListRec {
    const at = s.listOff + index * LST.size;
    const l: ListRec = {
      beOff: this.u32(at + LST.beOff),
      beCount: this.u32(at + LST.beCount),
      mgOff: this.u32(at + LST.mgOff),
      mgSize: this.u32(at + LST.mgSize),
      mgWidth: this.u8(at + LST.mgWidth),
      kind: this.u8(at + LST.kind),
      affinityId: this.u32(at + LST.affinityId),
    };
    if (l.beOff % 4 !== 0 || !this.inImage(l.beOff, l.beCount * BE.size)) throw new BadImage('backends');
    if (l.beCount === 0) return l;
    const w = l.mgWidth;
    if (l.mgSize === 0 || (w !== 1 && w !== 2 && w !== 4) || l.mgOff % w !== 0) throw new BadImage('maglev header');
    if (!this.inImage(l.mgOff, l.mgSize * w)) throw new BadImage('maglev table');
    return l;
  }

  private maglevEntry(l: ListRec, slot: number): number {
    const at = l.mgOff + slot * l.mgWidth;
    if (l.mgWidth === 1) return this.u8(at);
    if (l.mgWidth === 2) return this.u16(at);
    return this.u32(at);
  }

  private listBackend(l: ListRec, i: number): { addr: Uint8Array; port: number; off: number } {
    const off = l.beOff + i * BE.size;
    return { addr: this.addrAt(off + BE.addr), port: this.u16(off + BE.port), off };
  }

  /** Position inside the list of the backend with this address and port, or -1. */
  private findInList(l: ListRec, addr: Uint8Array, port: number): number {
    for (let i = 0; i < l.beCount; i++) {
      const b = this.listBackend(l, i);
      if (b.port === port && bytesEqual(b.addr, addr)) return i;
    }
    return -1;
  }

  /** Whether addr lies in one of `count` source ranges starting at byte `base`; notes non-canonical ranges in `res`. */
  private inRanges(base: number, count: number, addr: Uint8Array, res?: ReferenceResult): boolean {
    for (let i = 0; i < count; i++) {
      const at = base + i * SR.size;
      const prefix = Math.min(this.u8(at + SR.prefix), 128);
      const net = this.addrAt(at + SR.addr);
      if (res && !hostBitsClear(net, prefix)) res.nonCanonicalRange = true;
      if (prefixMatch(addr, net, prefix)) return true;
    }
    return false;
  }

  /** The frontend-map home index of a key: murmur3(addr || le16(port) || proto || 0, tableSeed) & (cap-1). */
  private home(root: Root, addr: Uint8Array, port: number, proto: number): number {
    return (murmur3(key20(addr, port, proto), this.u32(HDR.tableSeed)) & (root.feCap - 1)) >>> 0;
  }

  /** Frontend lookup by probing: the index holding (addr, port, proto), or SP_NONE; tombstones continue a probe. */
  probeFrontend(addr: string | Uint8Array, port: number, protocol: Protocol | number): { slot: number; probes: number } {
    const root = this.root();
    if (!root) return { slot: SP_NONE, probes: 0 };
    return this.probe(root, toAddr(addr), port, toProto(protocol));
  }

  private probe(root: Root, a: Uint8Array, port: number, proto: number): { slot: number; probes: number } {
    let i = this.home(root, a, port, proto);
    for (let n = 0; n < root.feCap; n++) {
      const at = root.feOff + i * FE.size;
      const kind = this.u8(at + FE.kind);
      if (kind === FE_EMPTY) return { slot: SP_NONE, probes: n + 1 };
      if (kind !== FE_TOMBSTONE && this.u16(at + FE.port) === port && this.u8(at + FE.proto) === proto && bytesEqual(this.addrAt(at + FE.addr), a)) {
        return { slot: i, probes: n + 1 };
      }
      i = (i + 1) & (root.feCap - 1);
    }
    return { slot: SP_NONE, probes: root.feCap };
  }

  /** One flow's decision at time `now` (u32 seconds); updates affinity state as the core does. */
  select(flow: ReferenceFlow, now: number): ReferenceResult {
    const t = Math.min(now >>> 0, 0xfffffffe); // the core clamps: expiries saturate at 0xffffffff
    const src = toAddr(flow.src);
    const dst = toAddr(flow.dst);
    const proto = toProto(flow.protocol);
    const sport = flow.sport & 0xffff;
    const dport = flow.dport & 0xffff;
    const res: ReferenceResult = {
      verdict: V_PASS,
      reason: R_NOT_SERVICE,
      list: LIST_USED_INTERNAL,
      frontendSlot: SP_NONE,
      backendOffset: SP_NONE,
      maglevSlot: SP_NONE,
      affinity: 'off',
    };
    const root = this.root();
    if (!root) {
      res.reason = R_NO_IMAGE;
      return res;
    }
    const drop = (reason: number): ReferenceResult => {
      res.verdict = V_DROP;
      res.reason = reason;
      return res;
    };

    // 1. frontend: dst:dport/proto in the hash map
    const { slot: feIndex } = this.probe(root, dst, dport, proto);
    if (feIndex === SP_NONE) return res;
    res.frontendSlot = feIndex;
    const feAt = root.feOff + feIndex * FE.size;
    const feFlags = this.u32(feAt + FE.flags);
    let svc: ServiceRec;
    try {
      svc = this.service(root, this.u32(feAt + FE.slot));
    } catch (e) {
      if (e instanceof BadImage) return drop(R_BAD_IMAGE);
      throw e;
    }

    // 2. loadBalancerSourceRanges (flagged frontends only)
    if ((feFlags & FE_F_SOURCE_RANGES) !== 0 && !this.inRanges(svc.srOff, svc.srCount, src, res)) return drop(R_SOURCE_RANGE);

    // 3. list: ClusterIP frontends use the internal list, the others the external one, except that with
    //    eTP=Local a source in the root's local-source ranges (node addresses, loopback, pod CIDRs) uses
    //    the cluster list.
    let which = (feFlags & FE_F_EXTERNAL) !== 0 ? LIST_USED_EXTERNAL : LIST_USED_INTERNAL;
    if (which === LIST_USED_EXTERNAL && (svc.flags & SVC_F_EXTERNAL_LOCAL) !== 0 && this.inRanges(root.lsOff, root.lsCount, src, res)) {
      which = LIST_USED_LOCAL_SOURCE;
    }
    res.list = which;
    const position = svc.lists[which] as number;
    let l: ListRec;
    try {
      l = this.list(svc, position);
    } catch (e) {
      if (e instanceof BadImage) return drop(R_BAD_IMAGE);
      throw e;
    }
    res.listInfo = { size: l.beCount, maglevSize: l.mgSize, maglevWidth: l.mgWidth, position };
    if (l.beCount === 0) {
      // Empty internal/external lists drop when the service's `empty` bit says so (endpoints exist, none
      // local), else reject; an empty cluster list means no endpoints at all: reject.
      const bit = which === LIST_USED_INTERNAL ? SVC_EMPTY_INTERNAL_DROP : which === LIST_USED_EXTERNAL ? SVC_EMPTY_EXTERNAL_DROP : 0;
      if ((svc.empty & bit) !== 0) return drop(R_NO_LOCAL_ENDPOINTS);
      res.verdict = V_REJECT;
      res.reason = R_NO_ENDPOINTS;
      return res;
    }

    // 4. ClientIP affinity
    const affinity = (svc.flags & SVC_F_AFFINITY) !== 0;
    const expiry = Math.min(t + svc.affinityTimeout, 0xffffffff); // saturating u32
    const affKey = `${hex(src)}/${l.affinityId}`;
    if (affinity) {
      const e = this.affinity.get(affKey);
      if (e === undefined) {
        res.affinity = 'new';
      } else if (!(t < e.expires)) {
        res.affinity = 'expired';
      } else {
        // The remembered position first (if the backend there is still the one chosen), else wherever the
        // backend moved to. Only a list holding one address:port twice (never compiled) tells them apart.
        let idx = -1;
        if (e.beIndex < l.beCount) {
          const b = this.listBackend(l, e.beIndex);
          if (b.port === e.bePort && bytesEqual(b.addr, e.beAddr)) idx = e.beIndex;
        }
        if (idx < 0) {
          idx = this.findInList(l, e.beAddr, e.bePort);
          if (idx >= 0) e.beIndex = idx;
        }
        if (idx >= 0) {
          e.expires = expiry;
          res.verdict = V_FORWARD;
          res.reason = R_AFFINITY;
          res.backendOffset = this.listBackend(l, idx).off;
          res.backendPosition = idx;
          res.affinity = 'hit';
          return res;
        }
        res.affinity = 'stale';
      }
    }

    // 5. Maglev: flow hash over src || le16(sport) || proto || 0 with the cluster seed
    const mgSlot = murmur3(key20(src, sport, proto), this.u32(HDR.flowSeed)) % l.mgSize;
    const idx = this.maglevEntry(l, mgSlot);
    if (idx >= l.beCount) return drop(R_BAD_IMAGE);
    const be = this.listBackend(l, idx);
    res.maglevSlot = mgSlot;
    res.backendOffset = be.off;
    res.backendPosition = idx;
    if (affinity) this.affinity.set(affKey, { beAddr: be.addr.slice(), bePort: be.port, beIndex: idx, expires: expiry });
    res.verdict = V_FORWARD;
    res.reason = R_MAGLEV;
    return res;
  }

  /** Byte ranges of the image's structures (for corruption tests): header, root, tables, service blocks. */
  regions(): { name: string; off: number; len: number }[] {
    const out: { name: string; off: number; len: number }[] = [{ name: 'header', off: 0, len: HDR.size }];
    const root = this.root();
    if (!root) return out;
    out.push(
      { name: 'root', off: this.u32(HDR.root), len: ROOT.size },
      { name: 'frontends', off: root.feOff, len: root.feCap * FE.size },
      { name: 'slots', off: root.slotOff, len: root.slotCap * 4 },
      { name: 'local sources', off: root.lsOff, len: root.lsCount * SR.size },
    );
    for (let slot = 0; slot < root.slotCap; slot++) {
      if (this.u32(root.slotOff + slot * 4) === 0) continue;
      let svc: ServiceRec;
      try {
        svc = this.service(root, slot);
      } catch {
        continue;
      }
      out.push({ name: `service ${slot}`, off: svc.at, len: SVC.size }, { name: `lists ${slot}`, off: svc.listOff, len: svc.listCount * LST.size });
      if (svc.srCount > 0) out.push({ name: `ranges ${slot}`, off: svc.srOff, len: svc.srCount * SR.size });
      for (let i = 0; i < svc.listCount; i++) {
        try {
          const l = this.list(svc, i);
          if (l.beCount === 0) continue;
          out.push(
            { name: `backends ${slot}/${i}`, off: l.beOff, len: Math.min(l.beCount * BE.size, 512) },
            { name: `maglev ${slot}/${i}`, off: l.mgOff, len: Math.min(l.mgSize * l.mgWidth, 4096) },
          );
        } catch {
          continue;
        }
      }
    }
    return out;
  }

  // ---- semantic decoding: what the image means, independent of where things sit in the arena ----

  private cstring(off: number): string {
    if (off === 0 || off >= this.size) return '';
    let end = off;
    while (end < this.size && this.bytes[end] !== 0) end++;
    return new TextDecoder().decode(this.bytes.subarray(off, end));
  }

  private ranges(base: number, count: number): string[] {
    const out: string[] = [];
    for (let i = 0; i < count; i++) {
      const at = base + i * SR.size;
      out.push(`${formatIp(this.addrAt(at + SR.addr))}/${this.u8(at + SR.prefix)}`);
    }
    return out;
  }

  private canonicalList(l: ListRec, strings: Map<number, string>): CanonicalList {
    const backends: string[] = [];
    for (let i = 0; i < l.beCount; i++) {
      const at = l.beOff + i * BE.size;
      const nodeOff = this.u32(at + BE.node);
      let node = strings.get(nodeOff);
      if (node === undefined) strings.set(nodeOff, (node = this.cstring(nodeOff)));
      // address, port, state, flags as hex, then the node name
      backends.push(`${hex(this.bytes.subarray(at, at + 20))}|${node}`);
    }
    const empty = l.beCount === 0;
    return {
      kind: l.kind,
      affinityId: l.affinityId,
      backends,
      maglevSize: empty ? 0 : l.mgSize,
      maglevWidth: empty ? 0 : l.mgWidth,
      maglevDigest: empty ? 0 : murmur3(this.bytes.subarray(l.mgOff, l.mgOff + l.mgSize * l.mgWidth), 0),
    };
  }

  /**
   * What the image means, independent of arena placement: seeds, node, local sources, and every live
   * frontend with its reverse-NAT entry and the content of its service block. Two images that select
   * identically (up to offsets) have equal canonical forms. Throws when something a live frontend needs
   * is out of bounds.
   */
  canonical(): CanonicalImage {
    const root = this.root();
    if (!root) throw new Error('reference: no usable root');
    const frontends: CanonicalFrontend[] = [];
    const strings = new Map<number, string>();
    const services = new Map<number, CanonicalFrontend['service']>();
    const serviceOf = (slot: number): CanonicalFrontend['service'] => {
      const known = services.get(slot);
      if (known) return known;
      const s = this.service(root, slot);
      const lists = [0, 1, 2].map((w) => this.canonicalList(this.list(s, s.lists[w] as number), strings));
      const c = {
        flags: s.flags,
        affinityTimeout: s.affinityTimeout,
        name: this.cstring(s.name),
        portName: this.cstring(s.portName),
        empty: s.empty,
        proto: s.proto,
        internal: lists[0] as CanonicalList,
        external: lists[1] as CanonicalList,
        cluster: lists[2] as CanonicalList,
        sourceRanges: this.ranges(s.srOff, s.srCount),
      };
      services.set(slot, c);
      return c;
    };
    for (let i = 0; i < root.feCap; i++) {
      const at = root.feOff + i * FE.size;
      const kind = this.u8(at + FE.kind);
      if (kind === FE_EMPTY || kind === FE_TOMBSTONE) continue;
      const addr = this.addrAt(at + FE.addr);
      const port = this.u16(at + FE.port);
      const proto = this.u8(at + FE.proto);
      const slot = this.u32(at + FE.slot);
      const service = serviceOf(slot);
      const rn = this.u32(at + FE.revnat);
      let revnat = 'out of range';
      if (rn < root.rnCap && this.inImage(root.rnOff, root.rnCap * RN.size)) {
        const r = root.rnOff + rn * RN.size;
        const same = bytesEqual(this.addrAt(r + RN.addr), addr) && this.u16(r + RN.port) === port && this.u8(r + RN.proto) === proto &&
          this.u8(r + RN.kind) === kind && this.u32(r + RN.slot) === slot;
        revnat = same ? 'matches' : `differs (${formatIp(this.addrAt(r + RN.addr))}:${this.u16(r + RN.port)}/${this.u8(r + RN.proto)} kind ${this.u8(r + RN.kind)} slot ${this.u32(r + RN.slot)})`;
      }
      frontends.push({
        key: `${formatIp(addr)}|${port}|${proto}`,
        kind,
        flags: this.u32(at + FE.flags),
        findable: this.probe(root, addr, port, proto).slot === i,
        revnat,
        service,
      });
    }
    frontends.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return {
      flowSeed: this.u32(HDR.flowSeed),
      tableSeed: this.u32(HDR.tableSeed),
      node: { name: this.cstring(root.nodeName), zone: this.cstring(root.nodeZone) },
      localSources: this.ranges(root.lsOff, root.lsCount).sort(),
      frontends,
    };
  }
}

export interface CanonicalList {
  kind: number;
  affinityId: number;
  /** Hex of the entry's address, port, state and flags, '|', its node name; in list order. */
  backends: string[];
  maglevSize: number;
  maglevWidth: number;
  /** murmur3 of the table's entries as u32 LE (0 for an empty list). */
  maglevDigest: number;
}

export interface CanonicalFrontend {
  /** 'addr|port|proto' */
  key: string;
  kind: number;
  flags: number;
  /** Probing for its key finds this very entry. */
  findable: boolean;
  /** 'matches' when the reverse-NAT entry repeats the frontend's key, kind and service slot. */
  revnat: string;
  service: {
    flags: number;
    affinityTimeout: number;
    name: string;
    portName: string;
    empty: number;
    proto: number;
    internal: CanonicalList;
    external: CanonicalList;
    cluster: CanonicalList;
    sourceRanges: string[];
  };
}

export interface CanonicalImage {
  flowSeed: number;
  tableSeed: number;
  node: { name: string; zone: string };
  localSources: string[];
  frontends: CanonicalFrontend[];
}
