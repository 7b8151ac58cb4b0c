// Maglev lookup tables (Eisenbud et al., NSDI 2016), built the way Cilium's pkg/maglev does so that every
// node computes byte-identical tables: backends sorted first, each backend's permutation derived from a
// seeded hash of its identity, table size a prime from a fixed list.

import { MAGLEV_PRIMES } from './layout.js';
import { murmur3 } from './murmur3.js';

/** Smallest prime of Cilium's list >= 100 x backends (the paper's bound for ~1% imbalance); the largest beyond. */
export function maglevSize(backends: number): number {
  for (const m of MAGLEV_PRIMES) if (m >= 100 * backends) return m;
  return MAGLEV_PRIMES[MAGLEV_PRIMES.length - 1] as number;
}

/** Bytes per entry: the smallest width that can index `backends`. */
export function maglevWidth(backends: number): 1 | 2 | 4 {
  return backends <= 0x100 ? 1 : backends <= 0x10000 ? 2 : 4;
}

const encoder = new TextEncoder();

/** Second seed for the skip hash: the permutation needs two independent hashes (murmur3-128's h1/h2 in Cilium). */
const SKIP_SEED_XOR = 0x9e3779b9;

// Per-backend permutation state, reused across calls (the compiler fills ~10k tables per full compile).
let skipScratch = new Int32Array(64);
let nextScratch = new Int32Array(64);

/**
 * Fills a table of size m for backends identified by `names` (already in their canonical sorted order):
 * entry i is the index of the backend owning slot i.
 */
export function maglevTable(names: readonly string[], m: number, seed: number): Uint32Array {
  const table = new Int32Array(m);
  maglevFill(names, m, seed, table);
  return new Uint32Array(table.buffer, 0, m);
}

/**
 * maglevTable into `table` (length >= m; entries m.. are left alone), without allocating: entries are
 * backend indexes, or all -1 when there are no backends.
 */
export function maglevFill(names: readonly string[], m: number, seed: number, table: Int32Array): void {
  const n = names.length;
  // Int32 with -1 for "free": comparing against 0xffffffff would push the JIT into double compares.
  table.fill(-1, 0, m);
  if (n === 0) return;
  if (skipScratch.length < n) {
    skipScratch = new Int32Array(n * 2);
    nextScratch = new Int32Array(n * 2);
  }
  const skip = skipScratch;
  const next = nextScratch; // current position in each backend's permutation
  const skipSeed = (seed ^ SKIP_SEED_XOR) >>> 0;
  for (let i = 0; i < n; i++) {
    const name = names[i] as string;
    next[i] = murmur3Ascii(name, seed) % m;
    skip[i] = (murmur3Ascii(name, skipSeed) % (m - 1)) + 1;
  }
  let filled = 0;
  for (;;) {
    for (let i = 0; i < n; i++) {
      let c = next[i] as number;
      const s = skip[i] as number;
      // Branch-free wrap (c + s - m, plus m when negative): the wrap is taken at random and would
      // mispredict; only the "slot taken" test is left as a branch.
      while (table[c] !== -1) {
        c += s - m;
        c += m & (c >> 31);
      }
      table[c] = i;
      c += s - m;
      next[i] = c + (m & (c >> 31));
      if (++filled === m) return;
    }
  }
}

/** murmur3 of the UTF-8 bytes of `s`, straight from the string when it is ASCII (addresses and ports always are). */
export function murmur3Ascii(s: string, seed: number): number {
  const n = s.length;
  let h = seed >>> 0;
  const blocks = n & ~3;
  for (let i = 0; i < blocks; i += 4) {
    const c0 = s.charCodeAt(i);
    const c1 = s.charCodeAt(i + 1);
    const c2 = s.charCodeAt(i + 2);
    const c3 = s.charCodeAt(i + 3);
    if ((c0 | c1 | c2 | c3) > 0x7f) return murmur3(encoder.encode(s), seed);
    let k = c0 | (c1 << 8) | (c2 << 16) | (c3 << 24);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = n & 3;
  if (tail !== 0) {
    const c0 = s.charCodeAt(blocks);
    const c1 = tail >= 2 ? s.charCodeAt(blocks + 1) : 0;
    const c2 = tail === 3 ? s.charCodeAt(blocks + 2) : 0;
    if ((c0 | c1 | c2) > 0x7f) return murmur3(encoder.encode(s), seed);
    let k = c0 ^ (c1 << 8) ^ (c2 << 16);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, 0x1b873593);
  }
  h ^= n;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
