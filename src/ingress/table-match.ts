// The same matching as wasm/ingress.c, in TypeScript over the same routes section bytes. It exists to be
// measured against the core (bench/ingress.ts; the issue keeps whichever is faster) and as a second
// implementation in the differential tests. Like the router it returns the shared, frozen results.

import { MAX_HOST, NONE, R_HEADER, R_RECORD, R_SLOT } from './layout.js';
import { NOT_FOUND, hostName, requestPath, resultsOf, type RouteRequest, type RouteResult } from './route.js';
import { RoutesView } from './view.js';

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

function round(h: number, k: number): number {
  k = Math.imul(k, C1);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, C2);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** murmur3 finish: the hash of n bytes given the state after n & ~3 of them, the tail at b[at..]. */
function finish(h: number, b: Uint8Array, at: number, n: number): number {
  const rest = n & 3;
  if (rest !== 0) {
    let k = b[at] as number;
    if (rest >= 2) k ^= (b[at + 1] as number) << 8;
    if (rest === 3) k ^= (b[at + 2] as number) << 16;
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, C2);
  }
  h ^= n;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function hashBytes(b: Uint8Array, n: number, seed: number): number {
  let h = seed | 0;
  let i = 0;
  for (; i + 4 <= n; i += 4) h = round(h, (b[i] as number) | ((b[i + 1] as number) << 8) | ((b[i + 2] as number) << 16) | ((b[i + 3] as number) << 24));
  return finish(h, b, i, n);
}

const encoder = new TextEncoder();

/** Bit (n % 64) of the 64-bit length filter at word index `at`. */
function lenBit(w: Uint32Array, at: number, n: number): boolean {
  return (((w[at + ((n >>> 5) & 1)] as number) >>> (n & 31)) & 1) !== 0;
}

export class TableMatcher {
  readonly view: RoutesView;
  private readonly w: Uint32Array;
  private readonly b: Uint8Array;
  private readonly results: RouteResult[];
  private readonly seed: number;
  private readonly slotWord: number;
  private readonly strOff: number;
  private readonly pathLimit: number;
  private hostBuf = new Uint8Array(MAX_HOST);
  private pathBuf = new Uint8Array(256);

  constructor(section: Uint8Array) {
    // An aligned private copy, so slots read as 32-bit words.
    this.b = new Uint8Array(section);
    this.w = new Uint32Array(this.b.buffer, 0, this.b.byteLength >>> 2);
    this.view = new RoutesView(this.b);
    this.results = resultsOf(this.view);
    this.seed = this.view.seed;
    this.slotWord = this.view.slotOff >>> 2;
    this.strOff = this.view.strOff;
    this.pathLimit = this.view.maxPath + 1;
  }

  route(req: RouteRequest): RouteResult {
    const t = this.match(req.host ?? '', req.path);
    return t === NONE ? NOT_FOUND : (this.results[t] as RouteResult);
  }

  /** Target index for a request, or NONE (404). */
  match(host: string, rawPath: string): number {
    const rec = this.findRecord(host);
    if (rec === NONE) return this.w[R_HEADER.defaultTarget >>> 2] as number;
    const rw = (this.view.recOff + rec * R_RECORD.size) >>> 2;
    const w = this.w;
    let path = rawPath;
    if (path.indexOf('?') >= 0 || path === '') path = requestPath(path);
    const len = this.encodePath(path);
    const buf = this.pathBuf;
    if ((w[rw + (R_RECORD.exactCount >>> 2)] as number) !== 0 && lenBit(w, rw + (R_RECORD.exactLens >>> 2), len)) {
      const v = this.find(w[rw + (R_RECORD.exactFirst >>> 2)] as number, w[rw + (R_RECORD.exactCap >>> 2)] as number, hashBytes(buf, len, this.seed), buf, 0, len);
      if (v !== NONE) return v;
    }
    if ((w[rw + (R_RECORD.prefixCount >>> 2)] as number) !== 0) {
      const first = w[rw + (R_RECORD.prefixFirst >>> 2)] as number;
      const cap = w[rw + (R_RECORD.prefixCap >>> 2)] as number;
      const max = w[rw + (R_RECORD.prefixMax >>> 2)] as number;
      let best = lenBit(w, rw + (R_RECORD.prefixLens >>> 2), 0) ? this.find(first, cap, finish(this.seed | 0, buf, 0, 0), buf, 0, 0) : NONE;
      const limit = len < max ? len : max;
      let h = this.seed | 0;
      let done = 0;
      for (let i = 1; i <= limit; i++) {
        const cut = i < len ? buf[i] === 0x2f : buf[len - 1] !== 0x2f;
        if (!cut || !lenBit(w, rw + (R_RECORD.prefixLens >>> 2), i)) continue;
        for (; done + 4 <= i; done += 4) {
          h = round(h, (buf[done] as number) | ((buf[done + 1] as number) << 8) | ((buf[done + 2] as number) << 16) | ((buf[done + 3] as number) << 24));
        }
        const v = this.find(first, cap, finish(h, buf, done, i), buf, 0, i);
        if (v !== NONE) best = v;
      }
      if (best !== NONE) return best;
    }
    return w[rw + (R_RECORD.defaultTarget >>> 2)] as number;
  }

  private encodePath(path: string): number {
    const n = path.length < this.pathLimit ? path.length : this.pathLimit;
    if (this.pathBuf.length < n) this.pathBuf = new Uint8Array(n * 2);
    const buf = this.pathBuf;
    for (let i = 0; i < n; i++) {
      const c = path.charCodeAt(i);
      if (c > 0x7f) {
        const bytes = encoder.encode(path).subarray(0, this.pathLimit);
        if (buf.length < bytes.length) this.pathBuf = new Uint8Array(bytes.length);
        this.pathBuf.set(bytes);
        return bytes.length;
      }
      buf[i] = c;
    }
    return n;
  }

  private findRecord(host: string): number {
    const w = this.w;
    const catchall = w[R_HEADER.catchall >>> 2] as number;
    const name = hostName(host);
    if (name === undefined) return catchall;
    let n = name.length;
    if (n === 0 || n > MAX_HOST) return catchall;
    const buf = this.hostBuf;
    let dot = -1;
    for (let i = 0; i < n; i++) {
      let c = name.charCodeAt(i);
      if (c > 0x7f) {
        // UTF-8 bytes, as the core sees them (only ASCII letters are folded).
        const bytes = encoder.encode(name);
        if (bytes.length > MAX_HOST) return catchall;
        n = bytes.length;
        dot = -1;
        for (let j = 0; j < n; j++) {
          let d = bytes[j] as number;
          if (d >= 0x41 && d <= 0x5a) d += 32;
          if (d === 0x2e && dot < 0) dot = j;
          buf[j] = d;
        }
        break;
      }
      if (c >= 0x41 && c <= 0x5a) c += 32;
      if (c === 0x2e && dot < 0) dot = i;
      buf[i] = c;
    }
    let v = this.find(w[R_HEADER.hostFirst >>> 2] as number, w[R_HEADER.hostCap >>> 2] as number, hashBytes(buf, n, this.seed), buf, 0, n);
    if (v !== NONE) return v;
    if ((w[R_HEADER.wildCount >>> 2] as number) !== 0 && dot > 0 && dot + 1 < n) {
      const s = dot + 1;
      v = this.find(w[R_HEADER.wildFirst >>> 2] as number, w[R_HEADER.wildCap >>> 2] as number, hashBytes(buf.subarray(s), n - s, this.seed), buf, s, n - s);
      if (v !== NONE) return v;
    }
    return catchall;
  }

  /** Value of key buf[at, at + len) with hash h in the map [first, first + cap), or NONE. */
  private find(first: number, cap: number, h: number, buf: Uint8Array, at: number, len: number): number {
    if (cap === 0) return NONE;
    const w = this.w;
    const b = this.b;
    const mask = cap - 1;
    for (let n = 0, i = h & mask; n < cap; n++, i = (i + 1) & mask) {
      const s = this.slotWord + (first + i) * (R_SLOT.size >>> 2);
      const value = w[s + 3] as number;
      if (value === NONE) return NONE;
      if (w[s] !== h || ((w[s + 2] as number) & 0xffff) !== len) continue;
      const k = this.strOff + (w[s + 1] as number);
      let j = 0;
      while (j < len && b[k + j] === buf[at + j]) j++;
      if (j === len) return value;
    }
    return NONE;
  }
}
