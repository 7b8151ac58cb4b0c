// IngressPlan -> routes section (layout in wasm/ingress.h, mirrored in layout.ts). Encodes decisions made
// in semantics.ts and decides nothing. Deterministic: records in plan order (exact hosts, wildcards, the
// catch-all), targets in first-use order, map entries inserted in sorted key order, strings deduplicated
// in first-use order, every byte not written is zero. Same plan and seed give identical bytes.

import type { Note } from '../k8s/types.js';
import { parseIp, PROTOCOL_NUMBERS } from '../k8s/net.js';
import { murmur3 } from '../compile/murmur3.js';
import {
  HOST_ANY, HOST_EXACT, HOST_WILDCARD, MAX_KEY, NONE, PATH_TYPE_CODES, PT_HOST, R_HEADER, R_RECORD, R_SLOT, R_TARGET,
  ROUTES_ALIGN, ROUTES_MAGIC, ROUTES_VERSION, TF_DEFAULT, TF_FRONTEND,
} from './layout.js';
import type { HostRoutes, IngressPlan, PathRoute, RouteTarget } from './semantics.js';

export interface CompileRoutesOptions {
  /** murmur3 seed of every key (placement only; any value routes the same). Default 0. */
  seed?: number;
}

export interface CompiledRoutes {
  bytes: Uint8Array;
  /** Targets by index, as encoded. */
  targets: RouteTarget[];
  notes: Note[];
}

const encoder = new TextEncoder();
const align = (n: number): number => (n + ROUTES_ALIGN - 1) & ~(ROUTES_ALIGN - 1);

/** NUL-terminated strings, deduplicated; offset 0 is "". */
class Strings {
  private readonly offsets = new Map<string, number>([['', 0]]);
  private readonly chunks: Uint8Array[] = [new Uint8Array(1)];
  size = 1;

  add(s: string): number {
    const known = this.offsets.get(s);
    if (known !== undefined) return known;
    const bytes = encoder.encode(s);
    const off = this.size;
    const chunk = new Uint8Array(bytes.length + 1);
    chunk.set(bytes);
    this.chunks.push(chunk);
    this.size += chunk.length;
    this.offsets.set(s, off);
    return off;
  }

  write(out: Uint8Array, at: number): void {
    let p = at;
    for (const c of this.chunks) {
      out.set(c, p);
      p += c.length;
    }
  }
}

interface Key {
  /** String-area offset and byte length of the key. */
  off: number;
  len: number;
  bytes: Uint8Array;
  type: number;
  value: number;
}

interface MapPlan {
  first: number;
  cap: number;
  keys: Key[];
}

/** Smallest power of two >= 2 x count (load <= 1/2, so a miss always meets a free slot); 0 for no keys. */
function capacityFor(count: number): number {
  if (count === 0) return 0;
  let cap = 2;
  while (cap < count * 2) cap *= 2;
  return cap;
}

export function compileRoutes(plan: IngressPlan, opts: CompileRoutesOptions = {}): CompiledRoutes {
  const seed = (opts.seed ?? 0) >>> 0;
  const notes: Note[] = [];
  const strings = new Strings();
  const targets: RouteTarget[] = [];
  const targetIndex = new Map<RouteTarget, number>();
  const targetOf = (t: RouteTarget | undefined): number => {
    if (!t) return NONE;
    let i = targetIndex.get(t);
    if (i === undefined) {
      i = targets.length;
      targets.push(t);
      targetIndex.set(t, i);
    }
    return i;
  };

  const maps: MapPlan[] = [];
  let slotCount = 0;
  const newMap = (keys: Key[]): MapPlan => {
    const m = { first: 0, cap: capacityFor(keys.length), keys };
    if (m.cap > 0) {
      m.first = slotCount;
      slotCount += m.cap;
    }
    maps.push(m);
    return m;
  };

  /** A key that is a prefix (in bytes) of a stored string: shares the string's bytes. */
  const keyOf = (text: string, keyText: string, skip: number, type: number, value: number): Key => {
    const off = strings.add(text) + skip;
    const bytes = encoder.encode(keyText);
    return { off, len: bytes.length, bytes, type, value };
  };

  const globalDefault = targetOf(plan.defaultBackend);
  const hostList: HostRoutes[] = [...plan.hosts, ...plan.wildcards, ...(plan.catchAll ? [plan.catchAll] : [])];
  let maxPath = 0;
  const records = hostList.map((h) => {
    const name = strings.add(h.host);
    const pathKeys = (routes: PathRoute[]): Key[] => {
      const keys: Key[] = [];
      for (const r of routes) {
        const k = keyOf(r.path, r.key, 0, PATH_TYPE_CODES[r.pathType], targetOf(r.target));
        if (k.len > MAX_KEY) {
          notes.push({ object: `Ingress ${r.target.ingress}`, message: `path of ${k.len} bytes left out: svcplane keys are at most ${MAX_KEY} bytes` });
          continue;
        }
        maxPath = Math.max(maxPath, k.len);
        keys.push(k);
      }
      return keys;
    };
    const exact = newMap(pathKeys(h.exact));
    const prefix = newMap(pathKeys(h.prefix));
    return {
      name,
      kind: h.kind === 'exact' ? HOST_EXACT : h.kind === 'wildcard' ? HOST_WILDCARD : HOST_ANY,
      exact,
      prefix,
      prefixMax: prefix.keys.reduce((m, k) => Math.max(m, k.len), 0),
      exactLens: lengthMask(exact.keys),
      prefixLens: lengthMask(prefix.keys),
      defaultTarget: h.defaultBackend ? targetOf(h.defaultBackend) : globalDefault,
    };
  });
  const hostMap = newMap(plan.hosts.map((h, i) => keyOf(h.host, h.key, 0, PT_HOST, i)));
  const wildMap = newMap(plan.wildcards.map((h, i) => keyOf(h.host, h.key, 2, PT_HOST, plan.hosts.length + i)));
  const catchall = plan.catchAll ? hostList.length - 1 : NONE;

  // Every target's strings, so that the string area is final before the layout.
  const targetStrings = targets.map((t) => ({
    ingress: strings.add(t.ingress),
    service: strings.add(t.service),
    portName: strings.add(typeof t.port === 'string' ? t.port : ''),
    reason: strings.add(t.reason ?? ''),
  }));

  const slotOff = align(R_HEADER.size);
  const recOff = align(slotOff + slotCount * R_SLOT.size);
  const tgtOff = align(recOff + records.length * R_RECORD.size);
  const strOff = align(tgtOff + targets.length * R_TARGET.size);
  const size = align(strOff + strings.size);
  const bytes = new Uint8Array(size);
  const dv = new DataView(bytes.buffer);
  const u32 = (at: number, v: number): void => dv.setUint32(at, v >>> 0, true);

  u32(R_HEADER.magic, ROUTES_MAGIC);
  u32(R_HEADER.version, ROUTES_VERSION);
  u32(R_HEADER.sectionSize, size);
  u32(R_HEADER.seed, seed);
  u32(R_HEADER.slotOff, slotOff);
  u32(R_HEADER.slotCount, slotCount);
  u32(R_HEADER.hostFirst, hostMap.first);
  u32(R_HEADER.hostCap, hostMap.cap);
  u32(R_HEADER.hostCount, hostMap.keys.length);
  u32(R_HEADER.wildFirst, wildMap.first);
  u32(R_HEADER.wildCap, wildMap.cap);
  u32(R_HEADER.wildCount, wildMap.keys.length);
  u32(R_HEADER.recOff, recOff);
  u32(R_HEADER.recCount, records.length);
  u32(R_HEADER.tgtOff, tgtOff);
  u32(R_HEADER.tgtCount, targets.length);
  u32(R_HEADER.strOff, strOff);
  u32(R_HEADER.strBytes, strings.size);
  u32(R_HEADER.catchall, catchall);
  u32(R_HEADER.defaultTarget, globalDefault);
  u32(R_HEADER.maxPath, maxPath);

  // Slots: all empty (value NONE), then each map's keys in sorted byte order, linear probing.
  for (let i = 0; i < slotCount; i++) u32(slotOff + i * R_SLOT.size + R_SLOT.value, NONE);
  for (const m of maps) {
    const mask = m.cap - 1;
    const sorted = [...m.keys].sort((a, b) => compareBytes(a.bytes, b.bytes) || a.type - b.type);
    for (const k of sorted) {
      const hash = murmur3(k.bytes, seed);
      let i = hash & mask;
      while (dv.getUint32(slotOff + (m.first + i) * R_SLOT.size + R_SLOT.value, true) !== NONE) i = (i + 1) & mask;
      const at = slotOff + (m.first + i) * R_SLOT.size;
      u32(at + R_SLOT.hash, hash);
      u32(at + R_SLOT.key, k.off);
      dv.setUint16(at + R_SLOT.len, k.len, true);
      dv.setUint8(at + R_SLOT.type, k.type);
      u32(at + R_SLOT.value, k.value);
    }
  }

  records.forEach((r, i) => {
    const at = recOff + i * R_RECORD.size;
    u32(at + R_RECORD.name, r.name);
    u32(at + R_RECORD.exactFirst, r.exact.first);
    u32(at + R_RECORD.exactCap, r.exact.cap);
    u32(at + R_RECORD.exactCount, r.exact.keys.length);
    u32(at + R_RECORD.prefixFirst, r.prefix.first);
    u32(at + R_RECORD.prefixCap, r.prefix.cap);
    u32(at + R_RECORD.prefixCount, r.prefix.keys.length);
    u32(at + R_RECORD.prefixMax, r.prefixMax);
    u32(at + R_RECORD.defaultTarget, r.defaultTarget);
    dv.setUint8(at + R_RECORD.kind, r.kind);
    u32(at + R_RECORD.exactLens, r.exactLens[0]);
    u32(at + R_RECORD.exactLens + 4, r.exactLens[1]);
    u32(at + R_RECORD.prefixLens, r.prefixLens[0]);
    u32(at + R_RECORD.prefixLens + 4, r.prefixLens[1]);
  });

  targets.forEach((t, i) => {
    const at = tgtOff + i * R_TARGET.size;
    const s = targetStrings[i] as (typeof targetStrings)[number];
    let flags = t.isDefault ? TF_DEFAULT : 0;
    if (t.status === 200 && t.frontend) {
      const ip = parseIp(t.frontend.address);
      if (!ip) throw new TypeError(`route target ${t.service}: invalid frontend address ${t.frontend.address}`);
      bytes.set(ip.bytes, at + R_TARGET.addr);
      dv.setUint16(at + R_TARGET.port, t.frontend.port, true);
      dv.setUint8(at + R_TARGET.proto, PROTOCOL_NUMBERS[t.frontend.protocol]);
      flags |= TF_FRONTEND;
    } else if (typeof t.port === 'number') {
      dv.setUint16(at + R_TARGET.port, t.port, true); // unresolved, as written (for the 503's report)
    }
    dv.setUint8(at + R_TARGET.flags, flags);
    dv.setUint16(at + R_TARGET.status, t.status, true);
    u32(at + R_TARGET.ingress, s.ingress);
    u32(at + R_TARGET.service, s.service);
    u32(at + R_TARGET.portName, s.portName);
    u32(at + R_TARGET.reason, s.reason);
  });

  strings.write(bytes, strOff);
  return { bytes, targets, notes };
}

/** The 64-bit key-length filter as [low, high] words: bit (len % 64) set for every key length. */
function lengthMask(keys: readonly Key[]): [number, number] {
  const mask: [number, number] = [0, 0];
  for (const k of keys) {
    const bit = k.len & 63;
    mask[bit >> 5] = ((mask[bit >> 5] as number) | (1 << (bit & 31))) >>> 0;
  }
  return mask;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}
