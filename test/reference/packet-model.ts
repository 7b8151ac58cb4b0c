// A reference implementation of the core's packet path (wasm/packet.c sp_process_batch), in plain
// TypeScript, over the same image bytes. Selection (frontend lookup, source ranges, list, affinity,
// Maglev) is the selection reference model's (test/reference/model.ts), read over the image: one instance
// decides new flows (its affinity state is the flows'), another only answers which frontend and list a
// packet uses (steps 1-3, no side effects that matter). The few service-block fields the packet path reads
// besides (family, the backends of the list used, the keep list of terminating endpoints, the rev-NAT
// index) are read from the bytes with the src/compile/layout.ts offsets, checked as the core checks them.
// Everything else is written here from the rules in wasm/packet.h and the RFCs: its own parser, its own
// conntrack table, its own rewriting and checksums, its own ICMP rejects.
//
// Rules followed (wasm/packet.c as of 33a5a8b): IPv6 packets with IPv4-mapped addresses are malformed;
// IPv6 fragments are keyed without the protocol (RFC 8200 4.5); fragmented SCTP is dropped both ways;
// time 2^32-1 counts as 2^32-2; fragment tracking never takes the slot of its flow's own entry; a flow
// whose backend left its list keeps it when it is in the service's keep list (terminating endpoints).
//
// Checksums: where the packet holds everything a checksum covers (IPv4 headers, whole TCP/UDP segments,
// ICMP messages) they are recomputed from scratch. For an incoming packet whose checksum was right, that
// gives the very bytes an RFC 1624 incremental update gives, and it checks that the core's incremental
// deltas account for every byte it changed. Where the covered data is not in the packet (the L4 checksum
// of a first fragment, a quoted header inside an ICMP error) the update is incremental: HC' = ~(~HC + ~m +
// m') over the changed 16-bit words (RFC 1624 eqn. 3). Callers must send packets with right checksums.
//
// Conntrack: the same capacity, seed, hash (a multiply-xorshift over the key's five 64-bit words: a, b,
// and ports | proto | type, keyed by the seed), two windows of 8 slots (the second from another hash, counted
// by the first home slot), claim and eviction rule, and sweep as the core, since where an entry goes and
// which entry full windows evict must agree. A reply entry has no expiry of its own: it lives
// as long as the forward entry it points at (and that points back at it). The table is an array of entry
// records updated in place, as the core's, so that entries overwritten under a flow's feet behave alike.
//
// Deliberate difference (inherited): ClientIP affinity state is the selection model's unbounded map, so
// callers keep the number of (client, list) pairs far below the core's affinity capacity.

import type { Core } from '../../src/engine/core.js';
import type { Dataplane } from '../../src/engine/dataplane.js';
import { PCTX } from '../../src/engine/packet-layout.js';
import type { PacketBatchResult } from '../../src/engine/packet.js';
import { FRONTEND, HEADER, LIST, LIST_KEEP, ROOT, SERVICE, SVC_F_IPV6 } from '../../src/compile/layout.js';
import { R_AFFINITY, R_NO_IMAGE, R_NO_LOCAL_ENDPOINTS, R_SOURCE_RANGE, ReferenceSelector, SP_NONE, V_FORWARD, V_REJECT } from './model.js';

// ---- wasm/packet.h, transcribed ----

export const PV_PASS = 0;
export const PV_FORWARD = 1;
export const PV_REJECT = 2;
export const PV_DROP = 3;
export const PV_REVERSE = 4;

export const PR = {
  NOT_SERVICE: 0, NEW: 1, NEW_AFFINITY: 2, ESTABLISHED: 3, RESELECTED: 4, REVERSE: 5, ICMP_FORWARD: 6, ICMP_REVERSE: 7,
  FRAGMENT_FORWARD: 8, FRAGMENT_REVERSE: 9, NO_ENDPOINTS: 10, NO_LOCAL_ENDPOINTS: 11, SOURCE_RANGE: 12, MALFORMED_IP: 13,
  MALFORMED_EXT: 14, MALFORMED_L4: 15, FRAGMENT_UNTRACKED: 16, FRAGMENT_SCTP: 17, BAD_IMAGE: 18, NO_IMAGE: 19, ROUTED: 20,
} as const;
export const PR_NAMES = Object.keys(PR);

export const C_CT_CREATED = 24;
export const C_CT_EVICTED = 25;
export const C_REPLY_NO_SLOT = 26;
export const C_FRAG_TRACKED = 27;
export const COUNTERS = 32;

/** T_* timeouts, seconds. */
export const T_TCP_SYN = 0;
export const T_TCP_ESTABLISHED = 1;
export const T_TCP_CLOSING = 2;
export const T_UDP = 3;
export const T_SCTP = 4;
export const T_FRAGMENT = 5;
const DEFAULT_TIMEOUTS = [60, 21600, 10, 60, 60, 30, 0, 0];

const CT_EMPTY = 0;
const CT_FORWARD = 1;
const CT_REPLY = 2;
const CT_FRAGMENT = 3;
/** A removed entry (never CT_EMPTY again, so no entry lies past an empty slot of its window). */
const CT_DEAD = 4;
const CT_TCP_SYN = 1;
const CT_TCP_REPLIED = 2;
const CT_TCP_FIN = 4;
const CT_TCP_RST = 8;

const WINDOW = 8; // conntrack slots probed per lookup/claim
const SWEEP_EVERY = 8; // packets per conntrack slot swept
const EXT_MAX = 8; // IPv6 extension headers walked before the chain counts as malformed
const REPLY_MAX_V4 = 576; // an ICMP error fits in 576 bytes (IPv4), 1280 (IPv6)
const REPLY_MAX_V6 = 1280;

const P_ICMP = 1;
const P_TCP = 6;
const P_UDP = 17;
const P_ICMPV6 = 58;
const P_SCTP = 132;
const F_FIN = 0x01;
const F_SYN = 0x02;
const F_RST = 0x04;
const F_ACK = 0x10;

// ---- bytes ----

const be16 = (b: Uint8Array, at: number): number => ((b[at] as number) << 8) | (b[at + 1] as number);
const be32 = (b: Uint8Array, at: number): number => ((be16(b, at) << 16) | be16(b, at + 2)) >>> 0;
function put16(b: Uint8Array, at: number, v: number): void {
  b[at] = (v >>> 8) & 0xff;
  b[at + 1] = v & 0xff;
}
const sameAddr = (a: Uint8Array, b: Uint8Array): boolean => {
  for (let i = 0; i < 16; i++) if (a[i] !== b[i]) return false;
  return true;
};
/** The image's 16-byte address form: IPv6 as is, IPv4 as ::ffff:a.b.c.d. */
export function mapped(b: Uint8Array, at: number, alen: number): Uint8Array {
  const out = new Uint8Array(16);
  if (alen === 16) out.set(b.subarray(at, at + 16));
  else {
    out[10] = 0xff;
    out[11] = 0xff;
    out.set(b.subarray(at, at + 4), 12);
  }
  return out;
}

// ---- checksums ----

/** One's-complement fold of a non-negative sum to 16 bits (end-around carries). */
function fold(s: number): number {
  while (s > 0xffff) s = (s % 0x10000) + Math.floor(s / 0x10000);
  return s;
}

/** Plain sum of the big-endian 16-bit words of b[from, to) (an odd last byte padded with zero). */
export function wordSum(b: Uint8Array, from: number, to: number): number {
  let s = 0;
  let i = from;
  for (; i + 1 < to; i += 2) s += be16(b, i);
  if (i < to) s += (b[i] as number) << 8;
  return s;
}

/** The Internet checksum (RFC 1071) of a sum of words. */
export const checksumOf = (sum: number): number => ~fold(sum) & 0xffff;

/** Sum of the TCP/UDP/ICMPv6 pseudo-header (RFC 768/793 for IPv4, RFC 8200 8.1 for IPv6). */
export function pseudoSum(src: Uint8Array, dst: Uint8Array, v6: boolean, proto: number, length: number): number {
  if (v6) return wordSum(src, 0, 16) + wordSum(dst, 0, 16) + Math.floor(length / 0x10000) + (length & 0xffff) + proto;
  return wordSum(src, 0, 4) + wordSum(dst, 0, 4) + proto + length;
}

/** Checksum over b[from, to) with the 2-byte field at `field` counted as zero, plus `extra`. */
function recompute(b: Uint8Array, from: number, to: number, field: number, extra: number): number {
  const s = wordSum(b, from, to) - be16(b, field) + extra;
  return checksumOf(s);
}

/** RFC 1624 eqn. 3: the checksum `hc` after 16-bit words `olds` became `news`. */
function incremental(hc: number, olds: number[], news: number[]): number {
  let s = ~hc & 0xffff;
  olds.forEach((m, i) => (s += (~m & 0xffff) + (news[i] as number)));
  return ~fold(s) & 0xffff;
}

/** CRC32c (Castagnoli, reflected polynomial 0x82F63B78), bit by bit. */
export function crc32c(b: Uint8Array, from: number, to: number): number {
  let c = 0xffffffff;
  for (let i = from; i < to; i++) {
    c ^= b[i] as number;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return ~c >>> 0;
}

/** The 16-bit words of b[at, at + n). */
function words(b: Uint8Array, at: number, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i += 2) out.push(be16(b, at + i));
  return out;
}

// ---- parsing ----

interface Parsed {
  v6: boolean;
  /** Bytes of the datagram (IPv4 total length, IPv6 40 + payload length; a quoted header: the bytes at hand). */
  total: number;
  proto: number;
  /** 0 not a fragment, 1 first fragment of several, 2 a later fragment. */
  frag: number;
  fragId: number;
  l4: number;
  alen: number;
  saddr: number;
  daddr: number;
  src: Uint8Array;
  dst: Uint8Array;
  sport: number;
  dport: number;
}

/** The protocol part of a datagram's identity: IPv4 fragments each carry it; IPv6 identifies a datagram
 * by source, destination and identification only (RFC 8200 4.5). */
const fragProto = (p: Parsed): number => (p.v6 ? 0 : p.proto);

const isL4 = (proto: number): boolean => proto === P_TCP || proto === P_UDP || proto === P_SCTP;

/** Parses an IP header; returns the packet, or the PR_* reason to drop (or pass) it with. `quoted`: the
 * header of a packet quoted inside an ICMP error, whose lengths describe the original, not these bytes. */
function parseIp(b: Uint8Array, quoted: boolean): Parsed | number {
  const len = b.length;
  if (len < 20) return PR.MALFORMED_IP;
  const version = (b[0] as number) >> 4;
  const p: Parsed = {
    v6: version === 6, total: 0, proto: 0, frag: 0, fragId: 0, l4: 0, alen: 4, saddr: 12, daddr: 16,
    src: new Uint8Array(16), dst: new Uint8Array(16), sport: 0, dport: 0,
  };
  if (version === 4) {
    const ihl = ((b[0] as number) & 0x0f) * 4;
    if (ihl < 20 || ihl > len) return PR.MALFORMED_IP;
    let total = be16(b, 2);
    if (quoted) total = len;
    else if (total < ihl || total > len) return PR.MALFORMED_IP;
    const fo = be16(b, 6);
    p.fragId = be16(b, 4);
    p.frag = (fo & 0x1fff) !== 0 ? 2 : (fo & 0x2000) !== 0 ? 1 : 0;
    p.total = total;
    p.proto = b[9] as number;
    p.l4 = ihl;
  } else if (version === 6) {
    if (len < 40) return PR.MALFORMED_IP;
    let total = 40 + be16(b, 4);
    if (quoted) total = len;
    else if (total === 40 && b[6] === 0) return PR.MALFORMED_IP; // a jumbogram: payload length 0 with hop-by-hop options
    else if (total > len) return PR.MALFORMED_IP;
    // IPv4-mapped addresses never travel in IPv6 packets (RFC 4291 2.5.5.2); the image's IPv4 form would
    // otherwise match IPv4 frontends and flows.
    const v4mapped = (at: number): boolean => b.subarray(at, at + 10).every((x) => x === 0) && b[at + 10] === 0xff && b[at + 11] === 0xff;
    if (v4mapped(8) || v4mapped(24)) return PR.MALFORMED_IP;
    p.total = total;
    p.alen = 16;
    p.saddr = 8;
    p.daddr = 24;
    // Extension headers: hop-by-hop (0), routing (43), fragment (44), AH (51), destination options (60).
    let nh = b[6] as number;
    let off = 40;
    let walked = 0;
    let later = false;
    while (nh === 0 || nh === 43 || nh === 44 || nh === 51 || nh === 60) {
      if (walked === EXT_MAX || off + 8 > total) return PR.MALFORMED_EXT;
      walked++;
      let size: number;
      if (nh === 44) {
        const fo = be16(b, off + 2);
        p.fragId = be32(b, off + 4);
        if ((fo & 0xfff8) !== 0) {
          // A later fragment: what follows is data, not headers.
          p.frag = 2;
          p.proto = b[off] as number;
          p.l4 = off + 8;
          later = true;
          break;
        }
        if ((fo & 1) !== 0) p.frag = 1;
        size = 8;
      } else if (nh === 51) {
        size = ((b[off + 1] as number) + 2) * 4;
      } else {
        size = ((b[off + 1] as number) + 1) * 8;
        if (nh === 43 && b[off + 3] !== 0) return PR.ROUTED; // segments left: not the final destination
      }
      nh = b[off] as number;
      off += size;
      if (off > total) return PR.MALFORMED_EXT;
    }
    if (!later) {
      p.proto = nh;
      p.l4 = off;
    }
  } else {
    return PR.MALFORMED_IP;
  }
  p.src = mapped(b, p.saddr, p.alen);
  p.dst = mapped(b, p.daddr, p.alen);
  return p;
}

/** Checks a (whole, not later-fragment) TCP/UDP/SCTP header and reads its ports; returns a PR_* drop reason or -1. */
function parseL4(b: Uint8Array, p: Parsed): number {
  const avail = p.total - p.l4;
  const min = p.proto === P_TCP ? 20 : p.proto === P_UDP ? 8 : 12;
  if (avail < min) return PR.MALFORMED_L4;
  const h = p.l4;
  if (p.proto === P_TCP) {
    const doff = ((b[h + 12] as number) >> 4) * 4;
    if (doff < 20 || doff > avail) return PR.MALFORMED_L4;
  } else if (p.proto === P_UDP) {
    const ulen = be16(b, h + 4);
    if (p.frag === 0 && (ulen < 8 || ulen > avail)) return PR.MALFORMED_L4;
    if (p.v6 && be16(b, h + 6) === 0) return PR.MALFORMED_L4; // RFC 8200 8.1: IPv6 UDP must carry a checksum
  }
  p.sport = be16(b, h);
  p.dport = be16(b, h + 2);
  return -1;
}

// ---- rewriting ----

/** IPv4: recomputes the header checksum (the header is always whole). */
function fixIpv4Header(b: Uint8Array, p: Parsed): void {
  if (!p.v6) put16(b, 10, recompute(b, 0, p.l4, 10, 0));
}

/**
 * Replaces the source or destination address of a packet (and its port, unless `port` is SP_NONE) and
 * fixes what covers them: the IPv4 header checksum, the TCP/UDP checksum (an IPv4 UDP checksum of 0 stays
 * 0; a computed 0 is sent as 0xffff), SCTP's CRC32c over the bytes present. `quoted`: the header of a packet
 * quoted in an ICMP error (its checksums are updated incrementally: the data they cover is not all here).
 */
function rewrite(b: Uint8Array, p: Parsed, dst: boolean, addr16: Uint8Array, port: number, quoted: boolean): void {
  const at = dst ? p.daddr : p.saddr;
  const oldAddr = words(b, at, p.alen);
  b.set(p.alen === 16 ? addr16 : addr16.subarray(12, 16), at);
  const newAddr = words(b, at, p.alen);
  if (!p.v6) {
    if (quoted) put16(b, 10, incremental(be16(b, 10), oldAddr, newAddr));
    else fixIpv4Header(b, p);
  }
  if (p.frag === 2) return; // no upper-layer header in a later fragment
  const h = p.l4;
  const avail = p.total - h;
  const olds = [...oldAddr];
  const news = [...newAddr];
  if (port !== SP_NONE && avail >= 4) {
    const pat = h + (dst ? 2 : 0);
    olds.push(be16(b, pat));
    put16(b, pat, port);
    news.push(port);
  }
  // Whole segments are recomputed; first fragments and quoted headers updated incrementally.
  const whole = !quoted && p.frag === 0;
  const pseudo = (length: number): number => pseudoSum(b.subarray(p.saddr, p.saddr + p.alen), b.subarray(p.daddr, p.daddr + p.alen), p.v6, p.proto, length);
  if (p.proto === P_TCP && avail >= 18) {
    put16(b, h + 16, whole ? recompute(b, h, p.total, h + 16, pseudo(avail)) : incremental(be16(b, h + 16), olds, news));
  } else if (p.proto === P_UDP && avail >= 8 && be16(b, h + 6) !== 0) {
    let c: number;
    if (whole) {
      const ulen = be16(b, h + 4);
      c = recompute(b, h, h + ulen, h + 6, pseudo(ulen));
    } else {
      c = incremental(be16(b, h + 6), olds, news);
    }
    put16(b, h + 6, c === 0 ? 0xffff : c);
  } else if (p.proto === P_SCTP && port !== SP_NONE && avail >= 12) {
    b.fill(0, h + 8, h + 12);
    const c = crc32c(b, h, p.total);
    // Stored least significant byte first, as Linux does.
    b[h + 8] = c & 0xff;
    b[h + 9] = (c >>> 8) & 0xff;
    b[h + 10] = (c >>> 16) & 0xff;
    b[h + 11] = (c >>> 24) & 0xff;
  }
}

// ---- conntrack ----

export interface Entry {
  a: Uint8Array;
  b: Uint8Array;
  aport: number;
  bport: number;
  proto: number;
  type: number;
  tcp: number;
  dir: number;
  expires: number;
  nat: Uint8Array;
  natPort: number;
  peer: number;
  beIndex: number;
  revnat: number;
  /** As the core's sp_ct.info: bits 0-2 the distance from the home of its window, bit 3 in its second
   * window, bits 4-15 how many entries whose first home is this slot sit in their second window. */
  info: number;
}

interface Key {
  a: Uint8Array;
  b: Uint8Array;
  aport: number;
  bport: number;
  proto: number;
  type: number;
}

const emptyEntry = (): Entry => ({
  a: new Uint8Array(16), b: new Uint8Array(16), aport: 0, bport: 0, proto: 0, type: CT_EMPTY, tcp: 0, dir: 0, expires: 0,
  nat: new Uint8Array(16), natPort: 0, peer: 0, beIndex: 0, revnat: 0, info: 0,
});

const keyMatches = (e: Entry, k: Key): boolean =>
  e.type === k.type && e.aport === k.aport && e.bport === k.bport && e.proto === k.proto && sameAddr(e.a, k.a) && sameAddr(e.b, k.b);


const expiry = (now: number, timeout: number): number => Math.min(now + timeout, 0xffffffff);

class Conntrack {
  readonly entries: Entry[];
  private readonly mask: number;

  constructor(capacity: number, private readonly seed: number, private readonly counters: number[]) {
    this.entries = Array.from({ length: capacity }, emptyEntry);
    this.mask = capacity - 1;
  }

  /** Home slot: h = IV ^ seed; per 64-bit word w (a[0..8], a[8..16], b[0..8], b[8..16] little-endian, then
   * aport | bport << 16 | proto << 32 | type << 40): h = (h ^ w) * K1 mod 2^64, h ^= h >> 29; then
   * h * K2 mod 2^64, high 32 bits. */
  private home(k: Key): number {
    const M = (1n << 64n) - 1n;
    const le64 = (b: Uint8Array, at: number): bigint => {
      let v = 0n;
      for (let i = 7; i >= 0; i--) v = (v << 8n) | BigInt(b[at + i] as number);
      return v;
    };
    let h = 0x6a09e667f3bcc909n ^ BigInt(this.seed);
    const mix = (w: bigint): void => {
      h = ((h ^ w) * 0x9e3779b97f4a7c15n) & M;
      h ^= h >> 29n;
    };
    mix(le64(k.a, 0));
    mix(le64(k.a, 8));
    mix(le64(k.b, 0));
    mix(le64(k.b, 8));
    mix(BigInt(k.aport) | (BigInt(k.bport) << 16n) | (BigInt(k.proto) << 32n) | (BigInt(k.type) << 40n));
    h = (h * 0xbf58476d1ce4e5b9n) & M;
    return Number(h >> 32n);
  }

  /** When an entry expires: its own expiry, or for a reply entry its forward entry's (0 when unlinked). */
  expiresOf(e: Entry, idx: number): number {
    if (e.type !== CT_REPLY) return e.expires;
    return this.peer(e, idx)?.expires ?? 0;
  }

  live(e: Entry, idx: number, now: number): boolean {
    return e.type !== CT_EMPTY && e.type !== CT_DEAD && now < this.expiresOf(e, idx);
  }

  /** The entry at an index (indices are taken modulo the capacity, SP_NONE included). */
  at(i: number): Entry {
    return this.entries[(i >>> 0) % (this.mask + 1)] as Entry;
  }

  /** A key's second window starts at (home x K1 mod 2^64) >> 32: another hash of its hash. */
  private home2(home: number): number {
    return Number(((BigInt(home) * 0x9e3779b97f4a7c15n) & ((1n << 64n) - 1n)) >> 32n);
  }

  /** Entries whose first home is slot `home` sit in their second window (its count, info bits 4-15). */
  private overflowed(home: number): boolean {
    return this.at(home).info >= 16;
  }

  private overflowCount(home: number, up: boolean): void {
    const h = this.at(home);
    if (up) {
      if (h.info < 0xfff0) h.info += 16;
    } else if (h.info >= 16) {
      h.info -= 16;
    }
  }

  /** The first entry of the key in the window from `base` (up to an empty slot). */
  private firstIn(k: Key, base: number): { e: Entry; idx: number } | undefined {
    for (let i = 0; i < WINDOW; i++) {
      const idx = (base + i) % (this.mask + 1);
      const e = this.entries[idx] as Entry;
      if (e.type === CT_EMPTY) return undefined; // nothing of the key lies past an empty slot of the window
      if (keyMatches(e, k)) return { e, idx };
    }
    return undefined;
  }

  find(k: Key, now: number): { e: Entry; idx: number } | undefined {
    const home = this.home(k);
    const m = this.firstIn(k, home) ?? (this.overflowed(home) ? this.firstIn(k, this.home2(home)) : undefined);
    return m && this.live(m.e, m.idx, now) ? m : undefined; // the first entry of the key decides
  }

  /** The flow's other entry, when it still points back at this one. */
  peer(e: Entry, idx: number): Entry | undefined {
    if (e.type !== CT_FORWARD && e.type !== CT_REPLY) return undefined;
    const p = this.at(e.peer);
    if (p.peer !== idx || p.type === e.type || (p.type !== CT_FORWARD && p.type !== CT_REPLY)) return undefined;
    return p;
  }

  /** Marks an entry dead; one in its second window leaves its first home's count. */
  markDead(e: Entry): void {
    if (e.type === CT_EMPTY || e.type === CT_DEAD) return;
    if (e.info & 8) this.overflowCount(this.home(e), false);
    e.type = CT_DEAD;
  }

  private kill(e: Entry, idx: number): void {
    const p = this.peer(e, idx);
    if (p) this.markDead(p);
    this.markDead(e);
  }

  /** A slot for key k: its own entry, else the first free (empty, dead) or expired one of its first window,
   * else of its second window, else the live one of both expiring first (evicted, with its peer, and
   * counted). Never `avoid`. Fields other than the key are reset except nat, nat port and expiry, which the
   * caller sets. */
  claim(k: Key, now: number, avoid: number): { e: Entry; idx: number } {
    const home = this.home(k);
    let victim: Entry | undefined;
    let vi = 0;
    let second = false;
    let own = false;
    const scan = (base: number, inSecond: boolean): void => {
      for (let i = 0; i < WINDOW; i++) {
        const idx = (base + i) % (this.mask + 1);
        if (idx === avoid) continue;
        const e = this.entries[idx] as Entry;
        if (e.type !== CT_EMPTY && keyMatches(e, k)) {
          [victim, vi, second, own] = [e, idx, inSecond, true];
          return;
        }
        if (victim && !this.live(victim, vi, now)) continue; // already have a free one: the first free wins
        if (!victim || !this.live(e, idx, now) || this.expiresOf(e, idx) < this.expiresOf(victim, vi)) [victim, vi, second] = [e, idx, inSecond];
        if (e.type === CT_EMPTY) return; // nothing of the key lies past it, and the first free slot is known
      }
    };
    scan(home, false);
    // The second window: for a slot when the first has no free one, and for the key's own entry when
    // entries of this home sit in theirs.
    const free = victim !== undefined && !this.live(victim, vi, now);
    if (!own && (!free || this.overflowed(home))) scan(this.home2(home), true);
    if (!victim) throw new Error('reference conntrack: no slot (a table of one entry)');
    if (this.live(victim, vi, now)) {
      if (!keyMatches(victim, k)) bump(this.counters, C_CT_EVICTED);
      this.kill(victim, vi);
    } else if (victim.type !== CT_EMPTY) {
      this.kill(victim, vi);
    }
    victim.a = k.a.slice();
    victim.b = k.b.slice();
    victim.aport = k.aport;
    victim.bport = k.bport;
    victim.proto = k.proto;
    victim.type = k.type;
    victim.tcp = 0;
    victim.dir = 0;
    victim.peer = SP_NONE;
    victim.beIndex = 0;
    victim.revnat = SP_NONE;
    // this slot's own count (bits 4-15) stays; then the key's first home counts it if it went second
    const dist = (vi - (second ? this.home2(home) : home)) & this.mask;
    victim.info = (victim.info & ~0xf) | dist | (second ? 8 : 0);
    if (second) this.overflowCount(home, true);
    return { e: victim, idx: vi };
  }

  /** The slot the sweep looks at next: it goes down the table, one slot every SWEEP_EVERY packets. */
  private cursor = 0;
  private tick = 0;

  /**
   * After every SWEEP_EVERY-th packet, one slot: an expired forward or fragment entry is removed (a forward entry with its
   * reply entry), and a dead slot is emptied when no entry after it within a window's reach has its
   * window through it (entry at slot + j with dist >= j) before an empty slot. Where later entries go
   * depends on it, what packets get does not.
   */
  sweep(now: number): void {
    this.tick = (this.tick + 1) >>> 0;
    if (this.tick % SWEEP_EVERY !== 0) return;
    const cap = this.mask + 1;
    const s = this.cursor;
    this.cursor = (s + cap - 1) % cap;
    const e = this.entries[s] as Entry;
    if (e.type === CT_EMPTY) return;
    if ((e.type === CT_FORWARD || e.type === CT_FRAGMENT) && e.expires <= now) this.kill(e, s);
    if (e.type !== CT_DEAD) return;
    for (let j = 1; j < WINDOW; j++) {
      const t = this.entries[(s + j) % cap] as Entry;
      if (t.type === CT_EMPTY) break;
      if (t.type !== CT_DEAD && (t.info & 7) >= j) return;
    }
    e.type = CT_EMPTY;
  }
}

// ---- the model ----

function bump(counters: number[], i: number): void {
  counters[i] = (counters[i] ?? 0) + 1;
}

export interface PacketResult {
  verdict: number;
  reason: number;
  /** Rev-NAT index of the packet's frontend, SP_NONE when none. */
  revnat: number;
  /** The ICMP error a reject produced, if one was written. */
  reply: Uint8Array | undefined;
}

interface Backend {
  addr: Uint8Array;
  port: number;
}

export class ReferencePacketPath {
  readonly counters: number[] = new Array<number>(COUNTERS).fill(0);
  readonly timeouts = [...DEFAULT_TIMEOUTS];
  /** How established flows were decided (coverage, not compared with the core). */
  readonly notes = { kept: 0, backendGone: 0, portReuse: 0 };
  private readonly ct: Conntrack;
  /** Makes the decisions the core makes for new flows (its affinity state is the flows'). */
  private selector: ReferenceSelector | undefined;
  /** Only asked which frontend and list a flow uses (steps 1-3 have no side effects; its affinity state is thrown away). */
  private lister: ReferenceSelector | undefined;
  /** Whether the image is usable at all (else every packet is PR_NO_IMAGE, as the core's view_load fails). */
  private attached = false;
  private image: Uint8Array = new Uint8Array(0);
  private dv: DataView = new DataView(new ArrayBuffer(0));

  constructor(opts: { capacity: number; seed: number }) {
    if (opts.capacity < WINDOW || (opts.capacity & (opts.capacity - 1)) !== 0) throw new RangeError('conntrack capacity: a power of two >= 8');
    this.ct = new Conntrack(opts.capacity, opts.seed >>> 0, this.counters);
  }

  /** Attaches (a copy of) the image the core now serves; affinity and conntrack state are kept, as the core keeps them. */
  load(image: Uint8Array): void {
    this.image = image.slice();
    if (this.selector) this.selector.load(this.image);
    else this.selector = new ReferenceSelector(this.image);
    this.lister = new ReferenceSelector(this.image);
    this.dv = new DataView(this.image.buffer, this.image.byteOffset, this.image.byteLength);
    const probe = this.lister.select({ protocol: P_TCP, src: new Uint8Array(16), sport: 0, dst: new Uint8Array(16), dport: 0 }, 0);
    this.attached = probe.reason !== R_NO_IMAGE;
  }

  /** (client, list) pairs the affinity state ever held (the core's table must stay far from full). */
  get affinityEntries(): number {
    return this.selector?.affinityEntries ?? 0;
  }

  setTimeout(which: number, seconds: number): void {
    this.timeouts[which] = seconds;
  }

  /** The conntrack table, slot by slot (for comparing with the core's: sp_ct without gen). */
  table(): readonly Readonly<Entry>[] {
    return this.ct.entries;
  }

  /** Live conntrack entries (forward, reply, fragment) at `now`, for coverage. */
  liveEntries(now: number): number {
    return this.ct.entries.filter((e, i) => this.ct.live(e, i, now)).length;
  }

  /** Runs one packet (its bytes from the first IP header byte, rewritten in place) at time `now`. */
  process(pkt: Uint8Array, now: number): PacketResult {
    let t = now >>> 0;
    if (t === 0xffffffff) t = 0xfffffffe; // expiries saturate at the last second: time stops one before it
    const res: PacketResult = { verdict: PV_PASS, reason: PR.NOT_SERVICE, revnat: SP_NONE, reply: undefined };
    this.one(pkt, t, res);
    bump(this.counters, res.reason);
    this.ct.sweep(t);
    return res;
  }

  private one(b: Uint8Array, now: number, res: PacketResult): void {
    const set = (verdict: number, reason: number): void => {
      res.verdict = verdict;
      res.reason = reason;
    };
    if (!this.attached) return set(PV_PASS, PR.NO_IMAGE);
    const p = parseIp(b, false);
    if (typeof p === 'number') return set(p === PR.ROUTED ? PV_PASS : PV_DROP, p);
    if (p.frag === 2) return this.laterFragment(b, p, now, set);
    if (isL4(p.proto)) {
      const r = parseL4(b, p);
      if (r >= 0) return set(PV_DROP, r);
      return this.l4(b, p, now, res, set);
    }
    if (p.proto === (p.v6 ? P_ICMPV6 : P_ICMP)) return this.icmp(b, p, now, res, set);
    return set(PV_PASS, PR.NOT_SERVICE);
  }

  private laterFragment(b: Uint8Array, p: Parsed, now: number, set: (v: number, r: number) => void): void {
    const hit = this.ct.find({ a: p.src, b: p.dst, aport: p.fragId >>> 16, bport: p.fragId & 0xffff, proto: fragProto(p), type: CT_FRAGMENT }, now);
    if (!hit) return set(PV_PASS, PR.FRAGMENT_UNTRACKED);
    const reverse = hit.e.dir === 1;
    rewrite(b, p, !reverse, hit.e.nat, SP_NONE, false);
    set(reverse ? PV_REVERSE : PV_FORWARD, reverse ? PR.FRAGMENT_REVERSE : PR.FRAGMENT_FORWARD);
  }

  /** Remembers a first fragment's translation for its later fragments; never in the slot of the flow's entry `flowEntry`. */
  private trackFragment(p: Parsed, src: Uint8Array, dst: Uint8Array, rewriteSource: boolean, nat: Uint8Array, flowEntry: number, now: number): void {
    const { e } = this.ct.claim({ a: src, b: dst, aport: p.fragId >>> 16, bport: p.fragId & 0xffff, proto: fragProto(p), type: CT_FRAGMENT }, now, flowEntry);
    e.nat = nat.slice();
    e.natPort = 0;
    e.dir = rewriteSource ? 1 : 0;
    e.expires = expiry(now, this.timeouts[T_FRAGMENT] as number);
    bump(this.counters, C_FRAG_TRACKED);
  }

  /** TCP state from this packet's flags, and the timeout the flow then has. */
  private timeoutFor(fwd: Entry, b: Uint8Array, p: Parsed, fromClient: boolean): number {
    if (p.proto === P_UDP) return this.timeouts[T_UDP] as number;
    if (p.proto === P_SCTP) return this.timeouts[T_SCTP] as number;
    if (p.proto === P_TCP && p.frag !== 2) {
      const flags = b[p.l4 + 13] as number;
      if (flags & F_RST) fwd.tcp |= CT_TCP_RST;
      if (flags & F_FIN) fwd.tcp |= CT_TCP_FIN;
      if (fromClient && flags & F_SYN) fwd.tcp |= CT_TCP_SYN;
      if (!fromClient) fwd.tcp |= CT_TCP_REPLIED;
    }
    if (fwd.tcp & (CT_TCP_FIN | CT_TCP_RST)) return this.timeouts[T_TCP_CLOSING] as number;
    if (fwd.tcp & CT_TCP_REPLIED) return this.timeouts[T_TCP_ESTABLISHED] as number;
    return this.timeouts[T_TCP_SYN] as number;
  }

  /** Refreshes a flow (its reply entry follows the forward entry). */
  private touch(fwd: Entry, b: Uint8Array, p: Parsed, fromClient: boolean, now: number): void {
    fwd.expires = expiry(now, this.timeoutFor(fwd, b, p, fromClient));
  }

  private u32(at: number): number {
    return this.dv.getUint32(at, true);
  }

  /** [off, off + len) inside the image (its header's size, never more than the bytes held). */
  private inImage(off: number, len: number): boolean {
    return off + len <= Math.min(this.u32(HEADER.imageSize), this.image.length);
  }

  /** Frontend map entry `index` (the selection model found it, so it is inside the image). */
  private frontendAt(index: number): { slot: number; revnat: number } {
    const at = this.u32(this.u32(HEADER.root) + ROOT.feOff) + index * FRONTEND.size;
    return { slot: this.u32(at + FRONTEND.slot), revnat: this.u32(at + FRONTEND.revnat) };
  }

  /**
   * What the packet path reads of a service block besides the selection: its family, list `position` (the
   * one the selection used, so checked already) and its keep list, when that is one (LIST_KEEP) inside the
   * image (terminating endpoints that keep their established flows).
   */
  private block(slot: number, position: number): { v6: boolean; list: { beOff: number; beCount: number }; keep: { beOff: number; beCount: number } | undefined } {
    const at = this.u32(this.u32(this.u32(HEADER.root) + ROOT.slotOff) + slot * 4);
    const listOff = this.u32(at + SERVICE.listOff);
    const listCount = this.image[at + SERVICE.listCount] as number;
    const listAt = (i: number): { beOff: number; beCount: number; kind: number } => {
      const l = listOff + i * LIST.size;
      return { beOff: this.u32(l + LIST.beOff), beCount: this.u32(l + LIST.beCount), kind: this.image[l + LIST.kind] as number };
    };
    const k = this.image[at + SERVICE.listKeep] as number;
    let keep: { beOff: number; beCount: number } | undefined;
    if (k !== 0 && k <= listCount) {
      const l = listAt(k - 1);
      if (l.kind === LIST_KEEP && l.beOff % 4 === 0 && this.inImage(l.beOff, l.beCount * 24)) keep = l;
    }
    return { v6: (this.u32(at + SERVICE.flags) & SVC_F_IPV6) !== 0, list: listAt(position), keep };
  }

  private inKeep(keep: { beOff: number; beCount: number }, e: Entry): boolean {
    for (let i = 0; i < keep.beCount; i++) {
      const be = this.backendAt(keep.beOff + i * 24);
      if (be.port === e.natPort && sameAddr(be.addr, e.nat)) return true;
    }
    return false;
  }

    private backendAt(off: number): Backend {
    return { addr: this.image.slice(off, off + 16), port: (this.image[off + 16] as number) | ((this.image[off + 17] as number) << 8) };
  }

  private l4(b: Uint8Array, p: Parsed, now: number, res: PacketResult, set: (v: number, r: number) => void): void {
    const flow = { protocol: p.proto, src: p.src, sport: p.sport, dst: p.dst, dport: p.dport };
    const listed = (this.lister as ReferenceSelector).select(flow, now);

    if (listed.frontendSlot === SP_NONE) {
      // Not a frontend: a reply of a tracked flow (backend -> client), or nothing of ours.
      const hit = this.ct.find({ a: p.src, b: p.dst, aport: p.sport, bport: p.dport, proto: p.proto, type: CT_REPLY }, now);
      const fwd = hit ? this.ct.peer(hit.e, hit.idx) : undefined;
      if (!hit || !fwd) return set(PV_PASS, PR.NOT_SERVICE);
      // A fragmented SCTP reply: its CRC32c (over the whole packet, ports included) cannot be fixed per fragment.
      if (p.proto === P_SCTP && p.frag !== 0) return set(PV_DROP, PR.FRAGMENT_SCTP);
      const e = hit.e;
      rewrite(b, p, false, e.nat, e.natPort, false);
      this.touch(fwd, b, p, false, now);
      res.revnat = e.revnat;
      set(PV_REVERSE, PR.REVERSE);
      if (p.frag === 1) this.trackFragment(p, p.src, p.dst, true, e.nat, hit.idx, now);
      return;
    }

    const fe = this.frontendAt(listed.frontendSlot);
    res.revnat = fe.revnat;
    // Steps 1-3 gave a list to select from when the model got as far as a non-empty list: a later failure
    // (a Maglev entry out of range: R_BAD_IMAGE) is select_backend's, which an established flow never reaches.
    const listOk = listed.listInfo !== undefined && listed.listInfo.size > 0;
    const key: Key = { a: p.src, b: p.dst, aport: p.sport, bport: p.dport, proto: p.proto, type: CT_FORWARD };
    const portReuse = (h: { e: Entry }): boolean =>
      p.proto === P_TCP && (h.e.tcp & (CT_TCP_FIN | CT_TCP_RST)) !== 0 && ((b[p.l4 + 13] as number) & (F_SYN | F_ACK)) === F_SYN;
    if (!listOk) {
      // No endpoint takes new flows; a flow established to a terminating endpoint (keep list) keeps it.
      const empty = listed.verdict === V_REJECT || listed.reason === R_NO_LOCAL_ENDPOINTS;
      if (empty && !(p.proto === P_SCTP && p.frag !== 0)) {
        const held = this.ct.find(key, now);
        const keep = held && !portReuse(held) ? this.block(fe.slot, 0).keep : undefined;
        if (held && keep && this.inKeep(keep, held.e)) {
          this.notes.kept++;
          rewrite(b, p, true, held.e.nat, held.e.natPort, false);
          this.touch(held.e, b, p, true, now);
          if (p.frag === 1) this.trackFragment(p, p.src, p.dst, false, held.e.nat, held.idx, now);
          res.revnat = held.e.revnat;
          return set(PV_FORWARD, PR.ESTABLISHED);
        }
      }
      if (listed.verdict === V_REJECT) {
        res.reply = this.reject(b, p);
        return set(PV_REJECT, PR.NO_ENDPOINTS);
      }
      return set(PV_DROP, listed.reason === R_SOURCE_RANGE ? PR.SOURCE_RANGE : listed.reason === R_NO_LOCAL_ENDPOINTS ? PR.NO_LOCAL_ENDPOINTS : PR.BAD_IMAGE);
    }
    if (p.proto === P_SCTP && p.frag !== 0) return set(PV_DROP, PR.FRAGMENT_SCTP);
    const svc = this.block(fe.slot, listed.listInfo?.position ?? 0);
    const list = svc.list;
    const inList = (e: Entry): boolean => {
      const match = (i: number): boolean => {
        const be = this.backendAt(list.beOff + i * 24);
        return be.port === e.natPort && sameAddr(be.addr, e.nat);
      };
      if (e.beIndex < list.beCount && match(e.beIndex)) return true;
      for (let i = 0; i < list.beCount; i++) {
        if (match(i)) {
          e.beIndex = i;
          return true;
        }
      }
      return false;
    };

    /** A terminating endpoint in no other list keeps its established flows (the service's keep list). */
    const kept = (e: Entry): boolean => svc.keep !== undefined && this.inKeep(svc.keep, e);

    let hit = this.ct.find(key, now);
    let reason: number = PR.ESTABLISHED;
    if (hit && portReuse(hit)) {
      reason = PR.RESELECTED; // a new connection reusing the client port of a closing one
      this.notes.portReuse++;
    } else if (hit && !inList(hit.e)) {
      if (kept(hit.e)) this.notes.kept++;
      else {
        reason = PR.RESELECTED; // its backend left the list (and is no terminating endpoint that keeps its flows)
        this.notes.backendGone++;
      }
    }
    if (!hit || reason === PR.RESELECTED) {
      const sel = (this.selector as ReferenceSelector).select(flow, now);
      if (sel.verdict !== V_FORWARD) return set(PV_DROP, PR.BAD_IMAGE);
      const be = this.backendAt(sel.backendOffset);
      // As the core checks it: only the 0000ffff word (bytes 8-11) of an IPv4 backend. A backend with other
      // bytes set before it is forwarded to by its last 4 bytes (a corrupted image; test 'a backend address
      // that is no IPv4-mapped address ...' in test/packet-differential.test.ts holds the rule).
      const v4mapped = be.addr.subarray(0, 10).every((x) => x === 0) && be.addr[10] === 0xff && be.addr[11] === 0xff;
      if (svc.v6 !== p.v6 || v4mapped === p.v6) return set(PV_DROP, PR.BAD_IMAGE);
      if (!hit) {
        hit = this.ct.claim(key, now, SP_NONE);
        reason = sel.reason === R_AFFINITY ? PR.NEW_AFFINITY : PR.NEW;
        bump(this.counters, C_CT_CREATED);
      } else {
        hit.e.tcp = 0;
      }
      const e = hit.e;
      e.nat = be.addr;
      e.natPort = be.port;
      e.beIndex = sel.backendPosition ?? 0;
      e.revnat = fe.revnat;
      e.expires = (now + 1) >>> 0; // refreshed below
      this.linkReply(e, hit.idx, now);
    }
    const e = hit.e;
    const frontendAddr = p.dst;
    rewrite(b, p, true, e.nat, e.natPort, false);
    this.touch(e, b, p, true, now);
    if (p.frag === 1) this.trackFragment(p, p.src, frontendAddr, false, e.nat, hit.idx, now);
    res.revnat = e.revnat; // the flow's (set when its backend was chosen)
    set(PV_FORWARD, reason);
  }

  /** (Re)creates the reply entry of a forward entry: backend -> client, naming the frontend. */
  private linkReply(fwd: Entry, fwdIndex: number, now: number): void {
    const old = this.ct.peer(fwd, fwdIndex);
    if (old) this.ct.markDead(old);
    const { e: r, idx } = this.ct.claim({ a: fwd.nat, b: fwd.a, aport: fwd.natPort, bport: fwd.aport, proto: fwd.proto, type: CT_REPLY }, now, fwdIndex);
    fwd.peer = idx;
    r.nat = fwd.b.slice();
    r.natPort = fwd.bport;
    r.peer = fwdIndex;
    r.revnat = fwd.revnat;
    r.expires = 0; // unused: a reply entry lives as long as its forward entry
  }

  /** ICMP port unreachable from the frontend to the client, quoting the packet as received (or nothing, to a non-unicast source). */
  private reject(b: Uint8Array, p: Parsed): Uint8Array | undefined {
    const s = b.subarray(p.saddr, p.saddr + p.alen);
    const unicast = p.v6 ? s[0] !== 0xff && s.some((x) => x !== 0) : (s[0] as number) < 224 && s.some((x) => x !== 0);
    if (!unicast) {
      bump(this.counters, C_REPLY_NO_SLOT);
      return undefined;
    }
    const hl = p.v6 ? 40 : 20;
    const quote = Math.min(p.total, (p.v6 ? REPLY_MAX_V6 : REPLY_MAX_V4) - hl - 8);
    const icmpLen = 8 + quote;
    const o = new Uint8Array(hl + icmpLen);
    const from = b.subarray(p.daddr, p.daddr + p.alen);
    if (p.v6) {
      o[0] = 0x60;
      put16(o, 4, icmpLen);
      o[6] = P_ICMPV6;
      o[7] = 64;
      o.set(from, 8);
      o.set(s, 24);
      o[40] = 1; // destination unreachable
      o[41] = 4; // port unreachable
    } else {
      o[0] = 0x45;
      put16(o, 2, hl + icmpLen);
      o[8] = 64;
      o[9] = P_ICMP;
      o.set(from, 12);
      o.set(s, 16);
      put16(o, 10, checksumOf(wordSum(o, 0, 20)));
      o[20] = 3; // destination unreachable
      o[21] = 3; // port unreachable
    }
    o.set(b.subarray(0, quote), hl + 8);
    const pseudo = p.v6 ? pseudoSum(o.subarray(8, 24), o.subarray(24, 40), true, P_ICMPV6, icmpLen) : 0;
    put16(o, hl + 2, checksumOf(wordSum(o, hl, hl + icmpLen) + pseudo));
    return o;
  }

  /** ICMP errors quoting a translated flow: the quoted header is translated back, and the outer address naming the translated end. */
  private icmp(b: Uint8Array, p: Parsed, now: number, res: PacketResult, set: (v: number, r: number) => void): void {
    const avail = p.total - p.l4;
    if (avail < 8) return set(PV_DROP, PR.MALFORMED_L4);
    const type = b[p.l4] as number;
    const error = p.v6 ? type >= 1 && type <= 4 : type === 3 || type === 11 || type === 12;
    if (p.frag !== 0 || !error) return set(PV_PASS, PR.NOT_SERVICE);
    const inner = b.subarray(p.l4 + 8, p.total);
    const q = parseIp(inner, true);
    if (typeof q === 'number' || q.v6 !== p.v6 || !isL4(q.proto) || q.frag === 2 || q.total < q.l4 + 4) return set(PV_PASS, PR.NOT_SERVICE);
    q.sport = be16(inner, q.l4);
    q.dport = be16(inner, q.l4 + 2);

    const finish = (): void => {
      fixIpv4Header(b, p);
      const pseudo = p.v6 ? pseudoSum(b.subarray(8, 24), b.subarray(24, 40), true, P_ICMPV6, avail) : 0;
      put16(b, p.l4 + 2, recompute(b, p.l4, p.total, p.l4 + 2, pseudo));
    };
    // The quoted packet went client -> backend (it was DNATed): the error goes back to the client.
    const r = this.ct.find({ a: q.dst, b: q.src, aport: q.dport, bport: q.sport, proto: q.proto, type: CT_REPLY }, now);
    if (r && this.ct.peer(r.e, r.idx)) {
      rewrite(inner, q, true, r.e.nat, r.e.natPort, true);
      if (sameAddr(p.src, r.e.a)) b.set(p.v6 ? r.e.nat : r.e.nat.subarray(12, 16), p.saddr); // from the backend itself
      finish();
      res.revnat = r.e.revnat;
      return set(PV_REVERSE, PR.ICMP_REVERSE);
    }
    // The quoted packet went frontend -> client (a reverse-NATed reply): the error goes on to the backend.
    const f = this.ct.find({ a: q.dst, b: q.src, aport: q.dport, bport: q.sport, proto: q.proto, type: CT_FORWARD }, now);
    if (f) {
      rewrite(inner, q, false, f.e.nat, f.e.natPort, true);
      if (sameAddr(p.dst, f.e.b)) b.set(p.v6 ? f.e.nat : f.e.nat.subarray(12, 16), p.daddr);
      finish();
      res.revnat = f.e.revnat;
      return set(PV_FORWARD, PR.ICMP_FORWARD);
    }
    set(PV_PASS, PR.NOT_SERVICE);
  }
}

/**
 * The model driven like dp.packets: over a dataplane's served image, with the dataplane core's conntrack
 * capacity, seed and timeouts (read from its packet-path state), packets in one buffer at offsets.
 * `reload()` re-reads the served image after a change (conntrack and affinity state are kept).
 */
export class PacketModel {
  readonly path: ReferencePacketPath;

  constructor(private readonly dp: Dataplane, opts: { conntrackCapacity?: number } = {}) {
    const core = (dp as unknown as { core: Core }).core;
    const buf = core.packetBuffers();
    if (opts.conntrackCapacity !== undefined && opts.conntrackCapacity > buf.conntrackCapacity) {
      throw new RangeError(`conntrack capacity ${opts.conntrackCapacity} > the core's ${buf.conntrackCapacity}`);
    }
    const mem = core.memory;
    const dv = new DataView(mem.buffer, mem.byteOffset);
    this.path = new ReferencePacketPath({ capacity: buf.conntrackCapacity, seed: dv.getUint32(buf.pctx + PCTX.ctSeed, true) });
    for (let i = 0; i < 8; i++) this.path.setTimeout(i, dv.getUint32(buf.pctx + PCTX.timeout + i * 4, true));
    this.reload();
  }

  reload(): void {
    this.path.load(this.dp.tables.bytes);
  }

  /** Like dp.packets.processBatch: rewrites `data` in place. */
  processBatch(data: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, now: number): PacketBatchResult {
    const count = Math.min(offsets.length, lengths.length);
    const out: PacketBatchResult = { verdicts: new Uint8Array(count), reasons: new Uint8Array(count), revnat: new Uint32Array(count), replies: new Array(count) };
    for (let i = 0; i < count; i++) {
      const off = offsets[i] as number;
      const r = this.path.process(data.subarray(off, off + (lengths[i] as number)), now);
      out.verdicts[i] = r.verdict;
      out.reasons[i] = r.reason;
      out.revnat[i] = r.revnat;
      out.replies[i] = r.reply;
    }
    return out;
  }

  counters(): number[] {
    return [...this.path.counters];
  }
}
