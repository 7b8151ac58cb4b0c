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

/**
 * Fills a table of size m for backends identified by `names` (already in their canonical sorted order):
 * entry i is the index of the backend owning slot i.
 */
export function maglevTable(names: readonly string[], m: number, seed: number): Uint32Array {
  const n = names.length;
  // Int32 with -1 for "free": comparing against 0xffffffff would push the JIT into double compares.
  const table = new Int32Array(m).fill(-1);
  if (n === 0) return new Uint32Array(table.buffer);
  const skip = new Int32Array(n);
  const next = new Int32Array(n); // current position in each backend's permutation
  for (let i = 0; i < n; i++) {
    const bytes = asciiBytes(names[i] as string);
    next[i] = murmur3(bytes, seed) % m;
    skip[i] = (murmur3(bytes, (seed ^ SKIP_SEED_XOR) >>> 0) % (m - 1)) + 1;
  }
  let filled = 0;
  for (;;) {
    for (let i = 0; i < n; i++) {
      let c = next[i] as number;
      const s = skip[i] as number;
      while (table[c] !== -1) {
        c += s;
        if (c >= m) c -= m;
      }
      table[c] = i;
      c += s;
      next[i] = c >= m ? c - m : c;
      if (++filled === m) return new Uint32Array(table.buffer);
    }
  }
}

/** UTF-8 bytes of a backend name (always ASCII: addresses and ports), without a TextEncoder per call. */
function asciiBytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f) return encoder.encode(s);
    out[i] = c;
  }
  return out;
}
