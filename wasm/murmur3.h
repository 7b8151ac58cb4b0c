/* murmur3_32 (Austin Appleby's MurmurHash3_x86_32), shared by core.c and ingress.c; the same function as
 * src/compile/murmur3.ts. Static inline: each translation unit gets its own copy, no state. */
#ifndef SVCPLANE_MURMUR3_H
#define SVCPLANE_MURMUR3_H

#include "svcplane.h"

static inline u32 rotl32(u32 x, int r) { return (x << r) | (x >> (32 - r)); }

static inline u32 ld32(const u8 *p) {
  u32 v;
  __builtin_memcpy(&v, p, 4); /* little-endian on every target we build for */
  return v;
}

static inline u32 mm3_round(u32 h, u32 k) {
  k *= 0xcc9e2d51u;
  k = rotl32(k, 15);
  k *= 0x1b873593u;
  h ^= k;
  h = rotl32(h, 13);
  return h * 5u + 0xe6546b64u;
}

static inline u32 mm3_fmix(u32 h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

/* Tail (0..3 bytes) and length folded in: the hash of n bytes given the state h after n & ~3 of them. */
static inline u32 mm3_finish(u32 h, const u8 *tail, u32 n) {
  u32 rest = n & 3u, k = 0;
  if (rest == 3) k ^= (u32)tail[2] << 16;
  if (rest >= 2) k ^= (u32)tail[1] << 8;
  if (rest >= 1) {
    k ^= tail[0];
    k *= 0xcc9e2d51u;
    k = rotl32(k, 15);
    k *= 0x1b873593u;
    h ^= k;
  }
  return mm3_fmix(h ^ n);
}

/* murmur3_32 of n bytes. */
static inline u32 mm3(const u8 *p, u32 n, u32 seed) {
  u32 h = seed, i = 0;
  for (; i + 4 <= n; i += 4) h = mm3_round(h, ld32(p + i));
  return mm3_finish(h, p + i, n);
}

/* murmur3_32 of the 20 bytes addr[16] || le32(word), unrolled: the frontend, flow and affinity hashes. */
static inline u32 hash_addr_word(const u8 *addr, u32 word, u32 seed) {
  u32 h = seed;
  h = mm3_round(h, ld32(addr));
  h = mm3_round(h, ld32(addr + 4));
  h = mm3_round(h, ld32(addr + 8));
  h = mm3_round(h, ld32(addr + 12));
  h = mm3_round(h, word);
  return mm3_fmix(h ^ 20u);
}

#endif
