/* svcplane core: per-flow service selection over a compiled table image.
 *
 * Freestanding C11: no libc, no imports, no mutable globals (all state is in a host-provided sp_ctx, so
 * several instances can share one memory). The control plane (TypeScript) decides everything and writes
 * the image; this file reads it, plus the ClientIP affinity state it owns. The selection steps themselves
 * (frontend lookup, source ranges, list choice, affinity, Maglev) are in select.h, shared with the packet
 * path (packet.c). The image may change between batches (incremental updates), so every offset read from
 * it is checked against the image size where it is used.
 */
#include "select.h"

/* ---- image attach ---- */

/* Makes the image at `image` the one this context reads. Checks the header and root; everything else is
 * checked where it is used, since the image may be updated in place after this call. */
i32 EXPORT(sp_attach)(u32 ctx_off, u32 image, u32 len) {
  if (ctx_off % 8 != 0 || !in_memory(ctx_off, sizeof(struct sp_ctx))) return E_BOUNDS;
  struct sp_ctx *ctx = (struct sp_ctx *)mem_at(ctx_off);
  ctx->image = 0;
  if (image % 8 != 0 || !in_memory(image, len)) return E_BOUNDS;
  if (len < sizeof(struct sp_header)) return E_SIZE;
  const struct sp_header *h = (const struct sp_header *)mem_at(image);
  if (h->magic != SP_MAGIC) return E_MAGIC;
  if (h->version != SP_VERSION) return E_VERSION;
  if (h->image_size != len) return E_SIZE;
  struct view v;
  if (!view_load(&v, image)) return E_SECTION;
  ctx->image = image;
  return E_OK;
}

void EXPORT(sp_detach)(u32 ctx_off) {
  if (ctx_off % 8 == 0 && in_memory(ctx_off, sizeof(struct sp_ctx))) ((struct sp_ctx *)mem_at(ctx_off))->image = 0;
}

/* ---- core contexts: image, ClientIP affinity table, reader registration ---- */

i32 EXPORT(sp_ctx_init)(u32 ctx_off, u32 aff_off, u32 capacity, u32 seed) {
  if (ctx_off % 8 != 0 || !in_memory(ctx_off, sizeof(struct sp_ctx))) return E_BOUNDS;
  if (capacity == 0 || (capacity & (capacity - 1)) != 0) return E_CAPACITY;
  if (aff_off % 8 != 0 || !in_memory(aff_off, (u64)capacity * sizeof(struct sp_affinity))) return E_BOUNDS;
  struct sp_ctx *ctx = (struct sp_ctx *)mem_at(ctx_off);
  ctx->image = 0;
  ctx->aff_off = aff_off;
  ctx->aff_mask = capacity - 1;
  ctx->aff_seed = seed;
  ctx->reader = SP_NONE;
  __builtin_memset(mem_at(aff_off), 0, (__SIZE_TYPE__)capacity * sizeof(struct sp_affinity));
  return E_OK;
}

/* Registers this context as reader `index` of its image's epoch table (readers on other threads). */
i32 EXPORT(sp_ctx_reader)(u32 ctx_off, u32 index) {
  if (ctx_off % 8 != 0 || !in_memory(ctx_off, sizeof(struct sp_ctx))) return E_BOUNDS;
  if (index >= SP_MAX_READERS && index != SP_NONE) return E_CAPACITY;
  ((struct sp_ctx *)mem_at(ctx_off))->reader = index;
  return E_OK;
}

/* A batch runs in groups of GROUP flows, stage by stage, each stage one loop over the group. At 10k
 * services each step of a flow is a cache miss that depends on the previous one (frontend entry -> slot ->
 * service block -> list -> Maglev entry); one flow after the other, the CPU's window holds the chains of
 * one or two flows, while a loop over one stage of 16 flows issues 16 independent misses that overlap.
 * The result of every flow is exactly that of select_list then select_backend (as packet.c runs them):
 * each flow goes through the same steps in the same order, reading the same image, and the affinity table
 * (the only state flows share) is read and written in the last stage, flow after flow. */
#define GROUP 16

#ifdef __wasm__
/* Stage 1 of a whole group of IPv4 flows, four flows per vector: both murmur3 hashes from the state after
 * the constant 12 bytes of an IPv4-mapped address, the same values as hash_addr_word_v4 (scalar murmur3 was
 * a quarter of the time per flow). simd128 is enabled for this function only (its own wasm function: the
 * rest of the core is built without SIMD); engines have had SIMD since Node 16.4. Returns 0, with nothing
 * written, unless every source and destination of the group is IPv4-mapped; the caller then hashes scalar. */
#include <wasm_simd128.h>
#define V128_INLINE static inline __attribute__((always_inline, target("simd128")))
V128_INLINE v128_t rotl_x4(v128_t x, int r) { return wasm_v128_or(wasm_i32x4_shl(x, r), wasm_u32x4_shr(x, 32 - r)); }
V128_INLINE v128_t mm3_round_x4(v128_t h, v128_t k) {
  k = wasm_i32x4_mul(k, wasm_i32x4_splat((i32)0xcc9e2d51u));
  k = rotl_x4(k, 15);
  k = wasm_i32x4_mul(k, wasm_i32x4_splat(0x1b873593));
  h = rotl_x4(wasm_v128_xor(h, k), 13);
  return wasm_i32x4_add(wasm_i32x4_add(wasm_i32x4_shl(h, 2), h), wasm_i32x4_splat((i32)0xe6546b64u));
}
V128_INLINE v128_t hash_v4_x4(u32 v4, v128_t w3, v128_t word) {
  v128_t h = mm3_round_x4(mm3_round_x4(wasm_i32x4_splat((i32)v4), w3), word);
  h = wasm_v128_xor(h, wasm_i32x4_splat(20));
  h = wasm_v128_xor(h, wasm_u32x4_shr(h, 16));
  h = wasm_i32x4_mul(h, wasm_i32x4_splat((i32)0x85ebca6bu));
  h = wasm_v128_xor(h, wasm_u32x4_shr(h, 13));
  h = wasm_i32x4_mul(h, wasm_i32x4_splat((i32)0xc2b2ae35u));
  return wasm_v128_xor(h, wasm_u32x4_shr(h, 16));
}
V128_INLINE v128_t lanes_u32(const struct sp_flow *g, u32 at) {
  const u8 *b = (const u8 *)g + at;
  return wasm_i32x4_make((i32)ld32(b), (i32)ld32(b + sizeof(struct sp_flow)), (i32)ld32(b + 2 * sizeof(struct sp_flow)),
                         (i32)ld32(b + 3 * sizeof(struct sp_flow)));
}
__attribute__((noinline, target("simd128"))) static int hash_group_v4(u32 table_v4, u32 flow_v4, u32 fe_mask,
                                                                      const struct sp_flow *f, u32 *home, u32 *hash) {
  const v128_t k = wasm_i32x4_make(0, 0, (i32)V4_MAPPED_W2, 0);
  v128_t acc = wasm_i32x4_splat(0);
  for (u32 i = 0; i < GROUP; i++)
    acc = wasm_v128_or(acc, wasm_v128_or(wasm_v128_xor(wasm_v128_load(f[i].src), k), wasm_v128_xor(wasm_v128_load(f[i].dst), k)));
  if (wasm_v128_any_true(wasm_v128_and(acc, wasm_i32x4_make(-1, -1, -1, 0)))) return 0;
  for (u32 q = 0; q < GROUP; q += 4) {
    const struct sp_flow *g = f + q;
    v128_t ports = lanes_u32(g, 32); /* sport | dport << 16 */
    v128_t proto = wasm_i32x4_shl(wasm_v128_and(lanes_u32(g, 36), wasm_i32x4_splat(0xff)), 16);
    v128_t fe_word = wasm_v128_or(wasm_u32x4_shr(ports, 16), proto);
    v128_t flow_word = wasm_v128_or(wasm_v128_and(ports, wasm_i32x4_splat(0xffff)), proto);
    wasm_v128_store(home + q, wasm_v128_and(hash_v4_x4(table_v4, lanes_u32(g, 28), fe_word), wasm_i32x4_splat((i32)fe_mask)));
    wasm_v128_store(hash + q, hash_v4_x4(flow_v4, lanes_u32(g, 12), flow_word));
  }
  return 1;
}
#else
static inline int hash_group_v4(u32 table_v4, u32 flow_v4, u32 fe_mask, const struct sp_flow *f, u32 *home, u32 *hash) {
  (void)table_v4, (void)flow_v4, (void)fe_mask, (void)f, (void)home, (void)hash;
  return 0;
}
#endif

__attribute__((always_inline)) static inline void select_group(const struct sp_ctx *ctx, struct view *v,
                                                                const struct sp_flow *f, struct sp_result *r, u32 n,
                                                                u32 now) {
  u32 home[GROUP], hash[GROUP], off[GROUP];
  const struct sp_frontend *fe[GROUP];
  const struct sp_service *svc[GROUP];
  const struct sp_list *l[GROUP];

  /* 1: both hashes (nothing but the flow is read) */
  if (n != GROUP || !hash_group_v4(v->table_v4, v->flow_v4, v->fe_mask, f, home, hash)) {
    for (u32 i = 0; i < n; i++) {
      home[i] = frontend_home(v, f[i].dst, f[i].dport, f[i].proto);
      hash[i] = flow_hash(v, &f[i]);
    }
  }

  /* 2: the frontend, and its slot's value */
  for (u32 i = 0; i < n; i++) {
    result_reset(&r[i]);
    u32 index, h = home[i];
    fe[i] = frontend_probe(v, f[i].dst, f[i].dport, f[i].proto, h, load_kind(&v->fe[h].kind), &index);
    off[i] = 0;
    if (!fe[i]) {
      verdict(&r[i], V_PASS, R_NOT_SERVICE);
      continue;
    }
    r[i].frontend = index;
    u32 slot = fe[i]->slot;
    off[i] = slot < v->slot_cap ? load_acquire(&v->slots[slot]) : 0;
  }

  /* 3: the service blocks, checked */
  for (u32 i = 0; i < n; i++) {
    svc[i] = 0;
    l[i] = 0;
    if (!fe[i]) continue;
    svc[i] = service_block(v, off[i]);
    if (!svc[i]) verdict(&r[i], V_DROP, R_BAD_IMAGE);
  }

  /* 4: the list by scope */
  for (u32 i = 0; i < n; i++)
    if (svc[i]) l[i] = select_list_svc(v, &f[i], &r[i], fe[i], svc[i]);

  /* 5: affinity or Maglev, flow after flow */
  for (u32 i = 0; i < n; i++)
    if (l[i]) select_backend_hashed(ctx, v, svc[i], l[i], &f[i], &r[i], now, hash[i]);
}

/* Selects a backend for `count` flows at `flows`, writing one result each at `results`. Returns the
 * number of flows processed: 0 when the buffers are not inside memory. A registered reader announces
 * the image epoch it reads under, and stays announced until sp_ctx_quiesce: results hold offsets into
 * the image, which the host reads after this call, so nothing they point at may be freed before. */
u32 EXPORT(sp_select_batch)(u32 ctx_off, u32 flows, u32 results, u32 count, u32 now) {
  if (ctx_off % 8 != 0 || !in_memory(ctx_off, sizeof(struct sp_ctx))) return 0;
  if (flows % 4 != 0 || results % 4 != 0) return 0;
  if (!in_memory(flows, (u64)count * sizeof(struct sp_flow)) || !in_memory(results, (u64)count * sizeof(struct sp_result)))
    return 0;
  const struct sp_ctx *ctx = (const struct sp_ctx *)mem_at(ctx_off);
  const struct sp_flow *f = (const struct sp_flow *)mem_at(flows);
  struct sp_result *r = (struct sp_result *)mem_at(results);
  if (now == 0xffffffffu) now = 0xfffffffeu; /* affinity expiries saturate at the last second: keep one after now */
  if (ctx->image != 0 && ctx->reader < SP_MAX_READERS && in_memory(ctx->image, sizeof(struct sp_header))) {
    struct sp_header *h = (struct sp_header *)mem_at(ctx->image);
    store_release(&h->readers[ctx->reader], load_acquire(&h->epoch) | 1u); /* never 0 while reading */
  }
  struct view v;
  if (!view_load(&v, ctx->image)) {
    for (u32 i = 0; i < count; i++) {
      r[i] = (struct sp_result){V_PASS, R_NO_IMAGE, 0, 0, SP_NONE, SP_NONE, SP_NONE, SP_NONE};
    }
  } else {
    /* A copy whose address never escapes (select_group is inlined, hash_group_v4 gets values): the
     * compiler keeps its fields in locals; view_load's `v` lives in memory, and every result store might
     * alias it, so each use reloaded it. */
    struct view w = v;
    for (u32 i = 0; i < count; i += GROUP) select_group(ctx, &w, &f[i], &r[i], count - i < GROUP ? count - i : GROUP, now);
  }
  return count;
}

/* A registered reader is done with its last results: the writer may free what they pointed at. */
void EXPORT(sp_ctx_quiesce)(u32 ctx_off) {
  if (ctx_off % 8 != 0 || !in_memory(ctx_off, sizeof(struct sp_ctx))) return;
  const struct sp_ctx *ctx = (const struct sp_ctx *)mem_at(ctx_off);
  if (ctx->image == 0 || ctx->reader >= SP_MAX_READERS || !in_memory(ctx->image, sizeof(struct sp_header))) return;
  store_release(&((struct sp_header *)mem_at(ctx->image))->readers[ctx->reader], 0);
}

/* ---- helpers for the control plane ---- */

/* The frontend-map hash, so the compiler places entries with exactly the function lookups use. */
u32 EXPORT(sp_hash20)(u32 ptr, u32 seed) {
  if (!in_memory(ptr, 20)) return 0;
  const u8 *p = mem_at(ptr);
  return hash_addr_word(p, ld32(p + 16), seed);
}

u32 EXPORT(sp_heap_base)(void) { return heap_base(); }

u32 EXPORT(sp_abi_version)(void) { return SP_VERSION; }

/* Struct sizes, checked against the TypeScript layout by a test. */
u32 EXPORT(sp_sizeof)(u32 which) {
  switch (which) {
  case 0: return sizeof(struct sp_header);
  case 1: return sizeof(struct sp_frontend);
  case 2: return sizeof(struct sp_service);
  case 3: return sizeof(struct sp_list);
  case 4: return sizeof(struct sp_backend);
  case 5: return sizeof(struct sp_revnat);
  case 6: return sizeof(struct sp_source_range);
  case 7: return sizeof(struct sp_flow);
  case 8: return sizeof(struct sp_result);
  case 9: return sizeof(struct sp_affinity);
  case 10: return sizeof(struct sp_root);
  case 11: return sizeof(struct sp_ctx);
  default: return 0;
  }
}
