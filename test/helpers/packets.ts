// A small packet toolkit for the packet-path tests: builds IPv4/IPv6 packets (IPv4 options, IPv6 extension
// headers, fragments) carrying TCP, UDP, SCTP, ICMP or ICMPv6, parses them back, and verifies every
// checksum by full recomputation. Nothing here uses the code under test: addresses are parsed here, the
// Internet checksum is summed here (RFC 1071) and SCTP's CRC32c is computed bit by bit (RFC 4960 / 3309),
// so a checksum the core gets wrong cannot be "verified" by the same mistake.

export const IPPROTO = {
  HOPOPTS: 0, ICMP: 1, TCP: 6, UDP: 17, ROUTING: 43, FRAGMENT: 44, AH: 51, ICMPV6: 58, NONE: 59, DSTOPTS: 60, SCTP: 132,
} as const;

export const TCP_FLAGS = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10 } as const;

// ---- addresses ----

/** An IPv4 (4 bytes) or IPv6 (16 bytes) address from its text form. Throws on anything else. */
export function addr(text: string): Uint8Array {
  if (!text.includes(':')) {
    const parts = text.split('.').map(Number);
    if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new Error(`bad IPv4 address ${text}`);
    return Uint8Array.from(parts);
  }
  const halves = text.split('::');
  if (halves.length > 2) throw new Error(`bad IPv6 address ${text}`);
  const words = (s: string): number[] => (s === '' ? [] : s.split(':').map((w) => parseInt(w, 16)));
  const head = words(halves[0] as string);
  const tail = halves.length === 2 ? words(halves[1] as string) : [];
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0;
  const all = [...head, ...new Array<number>(fill).fill(0), ...tail];
  if (all.length !== 8 || all.some((w) => !Number.isInteger(w) || w < 0 || w > 0xffff)) throw new Error(`bad IPv6 address ${text}`);
  const out = new Uint8Array(16);
  all.forEach((w, i) => {
    out[i * 2] = w >> 8;
    out[i * 2 + 1] = w & 0xff;
  });
  return out;
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

export function be16(p: Uint8Array, at: number): number {
  return ((p[at] as number) << 8) | (p[at + 1] as number);
}

export function be32(p: Uint8Array, at: number): number {
  return (be16(p, at) * 0x10000 + be16(p, at + 2)) >>> 0;
}

export function put16(p: Uint8Array, at: number, v: number): void {
  p[at] = (v >> 8) & 0xff;
  p[at + 1] = v & 0xff;
}

export function put32(p: Uint8Array, at: number, v: number): void {
  put16(p, at, (v >>> 16) & 0xffff);
  put16(p, at + 2, v & 0xffff);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// ---- checksums, computed from scratch ----

/** RFC 1071 one's complement sum of `data` (an odd last byte padded with zero), folded to 16 bits. */
export function onesSum(data: Uint8Array, initial = 0): number {
  let s = initial;
  for (let i = 0; i + 1 < data.length; i += 2) s += ((data[i] as number) << 8) | (data[i + 1] as number);
  if (data.length % 2 === 1) s += (data[data.length - 1] as number) << 8;
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

/** The Internet checksum of `data` (its checksum field must be zero). */
export function inetChecksum(data: Uint8Array, initial = 0): number {
  return ~onesSum(data, initial) & 0xffff;
}

/** The pseudo-header sum (RFC 768/793 for IPv4, RFC 8200 8.1 for IPv6) for `len` bytes of protocol `proto`. */
export function pseudoSum(src: Uint8Array, dst: Uint8Array, proto: number, len: number): number {
  const ph = new Uint8Array(src.length === 4 ? 12 : 40);
  ph.set(src, 0);
  ph.set(dst, src.length);
  if (src.length === 4) {
    ph[9] = proto;
    put16(ph, 10, len);
  } else {
    put32(ph, 32, len);
    ph[39] = proto;
  }
  return onesSum(ph);
}

/** CRC32c (Castagnoli), bit by bit over the reflected polynomial 0x82F63B78: no table. */
export function crc32c(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of data) {
    c = (c ^ b) >>> 0;
    for (let k = 0; k < 8; k++) c = c & 1 ? ((c >>> 1) ^ 0x82f63b78) >>> 0 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

// ---- upper-layer segments (their checksum is filled in by ipv4()/ipv6(), which know the addresses) ----

export interface Segment {
  proto: number;
  bytes: Uint8Array;
  /** 'auto': computed by the IP builder; 'zero': left 0 (UDP without checksum); 'keep': as in bytes. */
  checksum: 'auto' | 'zero' | 'keep';
}

export interface TcpOptions {
  sport: number;
  dport: number;
  seq?: number;
  ack?: number;
  /** TCP_FLAGS bits; default SYN. */
  flags?: number;
  window?: number;
  /** Raw TCP options (padded here to a multiple of 4). */
  options?: Uint8Array;
  payload?: Uint8Array;
  /** Data offset in 32-bit words as written (default: what the header needs). */
  dataOffset?: number;
}

export function tcp(o: TcpOptions): Segment {
  const opts = o.options ?? new Uint8Array(0);
  const optLen = Math.ceil(opts.length / 4) * 4;
  const h = new Uint8Array(20 + optLen);
  put16(h, 0, o.sport);
  put16(h, 2, o.dport);
  put32(h, 4, o.seq ?? 0x11223344);
  put32(h, 8, o.ack ?? 0);
  h[12] = (o.dataOffset ?? h.length / 4) << 4;
  h[13] = o.flags ?? TCP_FLAGS.SYN;
  put16(h, 14, o.window ?? 64240);
  h.set(opts, 20);
  return { proto: IPPROTO.TCP, bytes: concat(h, o.payload ?? new Uint8Array(0)), checksum: 'auto' };
}

export function udp(o: { sport: number; dport: number; payload?: Uint8Array; length?: number; noChecksum?: boolean }): Segment {
  const payload = o.payload ?? new Uint8Array(0);
  const h = new Uint8Array(8);
  put16(h, 0, o.sport);
  put16(h, 2, o.dport);
  put16(h, 4, o.length ?? 8 + payload.length);
  return { proto: IPPROTO.UDP, bytes: concat(h, payload), checksum: o.noChecksum ? 'zero' : 'auto' };
}

/** An SCTP packet: common header and `chunks` (default: one INIT chunk). */
export function sctp(o: { sport: number; dport: number; vtag?: number; chunks?: Uint8Array }): Segment {
  const h = new Uint8Array(12);
  put16(h, 0, o.sport);
  put16(h, 2, o.dport);
  put32(h, 4, o.vtag ?? 0);
  const init = new Uint8Array(20);
  init[0] = 1; // INIT
  put16(init, 2, 20);
  put32(init, 4, 0xa1b2c3d4); // initiate tag
  put32(init, 8, 65536); // a_rwnd
  put16(init, 12, 10);
  put16(init, 14, 10);
  put32(init, 16, 0x01020304); // initial TSN
  return { proto: IPPROTO.SCTP, bytes: concat(h, o.chunks ?? init), checksum: 'auto' };
}

/** An ICMP (IPv4) message: type, code, the 4 bytes after the checksum, then `payload`. */
export function icmp4(type: number, code: number, payload: Uint8Array, rest: Uint8Array = new Uint8Array(4)): Segment {
  const h = new Uint8Array(8);
  h[0] = type;
  h[1] = code;
  h.set(rest.subarray(0, 4), 4);
  return { proto: IPPROTO.ICMP, bytes: concat(h, payload), checksum: 'auto' };
}

export function icmp6(type: number, code: number, payload: Uint8Array, rest: Uint8Array = new Uint8Array(4)): Segment {
  return { ...icmp4(type, code, payload, rest), proto: IPPROTO.ICMPV6 };
}

/** A 32-bit value as 4 bytes (the "rest of header" of an ICMP error: MTU, pointer, unused). */
export function word32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  put32(b, 0, v);
  return b;
}

/** Bytes 0..n-1 with a recognisable pattern. */
export function pattern(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed * 17 + 7) & 0xff;
  return out;
}

// ---- IPv6 extension headers ----

export interface ExtHeader {
  type: number;
  /** The whole header; byte 0 (next header) is filled in by ipv6(). */
  bytes: Uint8Array;
}

/** A Hop-by-Hop (0) or Destination Options (60) header of `size` bytes (multiple of 8), PadN-filled. */
export function optionsHeader(type: 0 | 60, size = 8): ExtHeader {
  if (size % 8 !== 0 || size < 8) throw new Error('options header size must be a multiple of 8');
  const h = new Uint8Array(size);
  h[1] = size / 8 - 1;
  h[2] = 1; // PadN
  h[3] = size - 4;
  return { type, bytes: h };
}

/** A Segment Routing Header (routing type 4) listing `segments`, with `segmentsLeft`. */
export function routingHeader(segmentsLeft: number, segments: string[]): ExtHeader {
  const h = new Uint8Array(8 + 16 * segments.length);
  h[1] = 2 * segments.length;
  h[2] = 4;
  h[3] = segmentsLeft;
  h[4] = Math.max(0, segments.length - 1); // last entry
  segments.forEach((s, i) => h.set(addr(s), 8 + 16 * i));
  return { type: IPPROTO.ROUTING, bytes: h };
}

/** A Fragment header: offset in 8-byte units, More Fragments, identification. */
export function fragmentHeader(offset: number, more: boolean, id: number): ExtHeader {
  const h = new Uint8Array(8);
  put16(h, 2, (offset << 3) | (more ? 1 : 0));
  put32(h, 4, id);
  return { type: IPPROTO.FRAGMENT, bytes: h };
}

// ---- IP packets ----

export interface Ipv4Options {
  src: string;
  dst: string;
  ttl?: number;
  tos?: number;
  id?: number;
  df?: boolean;
  mf?: boolean;
  /** Fragment offset in 8-byte units. */
  fragOffset?: number;
  /** Raw IP options (padded here with End-of-List to a multiple of 4). */
  options?: Uint8Array;
}

function fillChecksum(seg: Segment, src: Uint8Array, dst: Uint8Array): Uint8Array {
  const b = seg.bytes.slice();
  if (seg.checksum !== 'auto') return b;
  if (seg.proto === IPPROTO.TCP) put16(b, 16, inetChecksum(b, pseudoSum(src, dst, IPPROTO.TCP, b.length)));
  else if (seg.proto === IPPROTO.UDP) {
    const c = inetChecksum(b, pseudoSum(src, dst, IPPROTO.UDP, b.length));
    put16(b, 6, c === 0 ? 0xffff : c);
  } else if (seg.proto === IPPROTO.ICMP) put16(b, 2, inetChecksum(b));
  else if (seg.proto === IPPROTO.ICMPV6) put16(b, 2, inetChecksum(b, pseudoSum(src, dst, IPPROTO.ICMPV6, b.length)));
  else if (seg.proto === IPPROTO.SCTP) {
    const c = crc32c(b);
    b[8] = c & 0xff;
    b[9] = (c >>> 8) & 0xff;
    b[10] = (c >>> 16) & 0xff;
    b[11] = c >>> 24;
  }
  return b;
}

/** An IPv4 packet: header (with options) and its checksum, the segment with its checksum. */
export function ipv4(o: Ipv4Options, seg: Segment): Uint8Array {
  const src = addr(o.src);
  const dst = addr(o.dst);
  const opts = o.options ?? new Uint8Array(0);
  const optLen = Math.ceil(opts.length / 4) * 4;
  const h = new Uint8Array(20 + optLen);
  const body = fillChecksum(seg, src, dst);
  h[0] = 0x40 | (h.length / 4);
  h[1] = o.tos ?? 0;
  put16(h, 2, h.length + body.length);
  put16(h, 4, o.id ?? 0x1234);
  put16(h, 6, (o.df ? 0x4000 : 0) | (o.mf ? 0x2000 : 0) | (o.fragOffset ?? 0));
  h[8] = o.ttl ?? 64;
  h[9] = seg.proto;
  h.set(src, 12);
  h.set(dst, 16);
  h.set(opts, 20);
  put16(h, 10, inetChecksum(h));
  return concat(h, body);
}

export interface Ipv6Options {
  src: string;
  dst: string;
  hopLimit?: number;
  flowLabel?: number;
  trafficClass?: number;
  ext?: ExtHeader[];
}

/** An IPv6 packet with extension headers chained in order, then the segment (checksum over the final destination). */
export function ipv6(o: Ipv6Options, seg: Segment): Uint8Array {
  const src = addr(o.src);
  const dst = addr(o.dst);
  const ext = (o.ext ?? []).map((e) => ({ type: e.type, bytes: e.bytes.slice() }));
  ext.forEach((e, i) => (e.bytes[0] = i + 1 < ext.length ? (ext[i + 1] as ExtHeader).type : seg.proto));
  // The pseudo-header names the final destination: the first segment of a routing header still to be visited.
  const rh = ext.find((e) => e.type === IPPROTO.ROUTING && (e.bytes[3] as number) > 0);
  const body = fillChecksum(seg, src, rh ? rh.bytes.slice(8, 24) : dst);
  const h = new Uint8Array(40);
  const tc = o.trafficClass ?? 0;
  const fl = o.flowLabel ?? 0x12345;
  put32(h, 0, ((6 << 28) | (tc << 20) | fl) >>> 0);
  const exts = concat(...ext.map((e) => e.bytes));
  put16(h, 4, exts.length + body.length);
  h[6] = ext.length > 0 ? (ext[0] as ExtHeader).type : seg.proto;
  h[7] = o.hopLimit ?? 64;
  h.set(src, 8);
  h.set(dst, 24);
  return concat(h, exts, body);
}

// ---- parsing ----

export interface Parsed {
  v6: boolean;
  /** Bytes of the IP header (IPv4 with options; IPv6 fixed header and every extension header before l4). */
  l4: number;
  total: number;
  proto: number;
  src: Uint8Array;
  dst: Uint8Array;
  /** Fragment fields, when the packet is a fragment. */
  frag?: { offset: number; more: boolean; id: number; headerAt?: number };
  sport?: number;
  dport?: number;
}

/** Parses a well-formed packet built by this toolkit (throws on what it does not understand). */
export function parse(p: Uint8Array): Parsed {
  const version = (p[0] as number) >> 4;
  if (version === 4) {
    const ihl = ((p[0] as number) & 0xf) * 4;
    const fo = be16(p, 6);
    const out: Parsed = { v6: false, l4: ihl, total: be16(p, 2), proto: p[9] as number, src: p.slice(12, 16), dst: p.slice(16, 20) };
    if ((fo & 0x3fff) !== 0) out.frag = { offset: fo & 0x1fff, more: (fo & 0x2000) !== 0, id: be16(p, 4) };
    if (!out.frag || out.frag.offset === 0) {
      out.sport = be16(p, ihl);
      out.dport = be16(p, ihl + 2);
    }
    return out;
  }
  if (version !== 6) throw new Error(`not an IP packet (version ${version})`);
  const out: Parsed = { v6: true, l4: 40, total: 40 + be16(p, 4), proto: p[6] as number, src: p.slice(8, 24), dst: p.slice(24, 40) };
  let nh = p[6] as number;
  let off = 40;
  while (nh === 0 || nh === 43 || nh === 44 || nh === 60 || nh === 51) {
    if (nh === 44) {
      const fo = be16(p, off + 2);
      const frag = { offset: fo >> 3, more: (fo & 1) === 1, id: be32(p, off + 4), headerAt: off };
      if (frag.offset > 0 || frag.more) out.frag = frag; // an atomic fragment (RFC 6946) is a whole packet
      nh = p[off] as number;
      off += 8;
      if (frag.offset > 0) break;
      continue;
    }
    const len = nh === 51 ? ((p[off + 1] as number) + 2) * 4 : ((p[off + 1] as number) + 1) * 8;
    nh = p[off] as number;
    off += len;
  }
  out.proto = nh;
  out.l4 = off;
  if (!out.frag || out.frag.offset === 0) {
    out.sport = be16(p, off);
    out.dport = be16(p, off + 2);
  }
  return out;
}

// ---- verification ----

export type Check = 'ok' | 'bad' | 'zero' | 'n/a';

export interface ChecksumReport {
  /** IPv4 header checksum ('n/a' for IPv6). */
  ip: Check;
  /** TCP/UDP/ICMP/ICMPv6 checksum or SCTP CRC32c over the whole datagram ('n/a' for fragments and others). */
  l4: Check;
}

/** Verifies by full recomputation: the IPv4 header checksum, and the upper-layer checksum of a whole datagram. */
export function checksums(p: Uint8Array): ChecksumReport {
  const info = parse(p);
  const report: ChecksumReport = { ip: 'n/a', l4: 'n/a' };
  if (!info.v6) {
    const h = p.slice(0, info.l4);
    const stored = be16(h, 10);
    put16(h, 10, 0);
    report.ip = inetChecksum(h) === stored ? 'ok' : 'bad';
  }
  if (info.frag) return report;
  const seg = p.slice(info.l4, info.total);
  report.l4 = segmentCheck(info.proto, seg, info.src, info.dst, info.v6);
  return report;
}

function segmentCheck(proto: number, seg: Uint8Array, src: Uint8Array, dst: Uint8Array, v6: boolean): Check {
  const at = proto === IPPROTO.TCP ? 16 : proto === IPPROTO.UDP ? 6 : proto === IPPROTO.ICMP || proto === IPPROTO.ICMPV6 ? 2 : -1;
  if (proto === IPPROTO.SCTP) {
    const stored = ((seg[8] as number) | ((seg[9] as number) << 8) | ((seg[10] as number) << 16) | ((seg[11] as number) << 24)) >>> 0;
    seg.fill(0, 8, 12);
    return crc32c(seg) === stored ? 'ok' : 'bad';
  }
  if (at < 0) return 'n/a';
  const stored = be16(seg, at);
  if (proto === IPPROTO.UDP && stored === 0) return v6 ? 'bad' : 'zero';
  put16(seg, at, 0);
  const initial = proto === IPPROTO.ICMP ? 0 : pseudoSum(src, dst, proto, seg.length);
  let want = inetChecksum(seg, initial);
  if (proto === IPPROTO.UDP && want === 0) want = 0xffff; // RFC 768: a computed 0 is sent as all ones
  // Any other checksum: 0x0000 and 0xffff are the same one's complement value (-0 and +0).
  const same = stored === want || (proto !== IPPROTO.UDP && ((stored === 0 && want === 0xffff) || (stored === 0xffff && want === 0)));
  return same ? 'ok' : 'bad';
}

/** The IP packet quoted by an ICMP error (the bytes after the 8-byte ICMP header). */
export function quoted(p: Uint8Array): Uint8Array {
  const info = parse(p);
  return p.subarray(info.l4 + 8, info.total);
}

/** The IPv4 header checksum of a quoted (possibly truncated) IPv4 packet, recomputed. */
export function quotedIpv4HeaderOk(q: Uint8Array): boolean {
  const ihl = ((q[0] as number) & 0xf) * 4;
  const h = q.slice(0, ihl);
  const stored = be16(h, 10);
  put16(h, 10, 0);
  return inetChecksum(h) === stored;
}

// ---- fragmentation and reassembly ----

/** Splits an IPv4 packet's payload after `firstBytes` (a multiple of 8) into two fragments. */
export function fragment4(p: Uint8Array, firstBytes: number): [Uint8Array, Uint8Array] {
  if (firstBytes % 8 !== 0) throw new Error('fragment size must be a multiple of 8');
  const ihl = ((p[0] as number) & 0xf) * 4;
  const total = be16(p, 2);
  const make = (from: number, to: number, more: boolean): Uint8Array => {
    const f = concat(p.subarray(0, ihl), p.subarray(ihl + from, ihl + to));
    put16(f, 2, f.length);
    put16(f, 6, (be16(p, 6) & 0x4000) | (more ? 0x2000 : 0) | (from / 8));
    put16(f, 10, 0);
    put16(f, 10, inetChecksum(f.subarray(0, ihl)));
    return f;
  };
  return [make(0, firstBytes, true), make(firstBytes, total - ihl, false)];
}

/**
 * Splits an IPv6 packet into two fragments: the fixed header and its first `unfragmentable` extension
 * headers are repeated, a Fragment header follows, then `firstBytes` (a multiple of 8) of the rest.
 */
export function fragment6(p: Uint8Array, firstBytes: number, id: number, unfragmentable = 0): [Uint8Array, Uint8Array] {
  if (firstBytes % 8 !== 0) throw new Error('fragment size must be a multiple of 8');
  let off = 40;
  let nhAt = 6;
  for (let i = 0; i < unfragmentable; i++) {
    nhAt = off;
    off += ((p[off + 1] as number) + 1) * 8;
  }
  const nextOfFragmentable = p[nhAt] as number;
  const total = 40 + be16(p, 4);
  const make = (from: number, to: number, more: boolean): Uint8Array => {
    const fh = fragmentHeader(from / 8, more, id).bytes;
    fh[0] = nextOfFragmentable;
    const f = concat(p.subarray(0, off), fh, p.subarray(off + from, off + to));
    f[nhAt] = IPPROTO.FRAGMENT;
    put16(f, 4, f.length - 40);
    return f;
  };
  return [make(0, firstBytes, true), make(firstBytes, total - off, false)];
}

/** Reassembles two fragments (first, later) of a datagram built by fragment4/fragment6. */
export function reassemble(first: Uint8Array, later: Uint8Array): Uint8Array {
  const a = parse(first);
  if (!a.v6) {
    const ihl = a.l4;
    const whole = concat(first.subarray(0, be16(first, 2)), later.subarray(ihl, be16(later, 2)));
    put16(whole, 2, whole.length);
    put16(whole, 6, be16(first, 6) & 0x4000);
    put16(whole, 10, 0);
    put16(whole, 10, inetChecksum(whole.subarray(0, ihl)));
    return whole;
  }
  const fh = a.frag?.headerAt;
  if (fh === undefined) throw new Error('not an IPv6 fragment');
  const b = parse(later);
  // The byte that names the Fragment header: the fixed header's, or the previous extension header's.
  let nhAt = 6;
  for (let off = 40; off < fh; off += ((first[off + 1] as number) + 1) * 8) nhAt = off;
  const whole = concat(first.subarray(0, fh), first.subarray(fh + 8, a.total), later.subarray(b.l4, b.total));
  whole[nhAt] = first[fh] as number;
  put16(whole, 4, whole.length - 40);
  return whole;
}

/** Offsets where `a` and `b` differ (same length). */
export function diff(a: Uint8Array, b: Uint8Array): number[] {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} vs ${b.length}`);
  const out: number[] = [];
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) out.push(i);
  return out;
}

/** Offsets where `a` and `b` differ outside the byte ranges [from, to) in `allowed`. */
export function changedOutside(a: Uint8Array, b: Uint8Array, allowed: [number, number][]): number[] {
  return diff(a, b).filter((i) => !allowed.some(([from, to]) => i >= from && i < to));
}
