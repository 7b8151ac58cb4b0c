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

/* One flow through every step: frontend, source ranges, list, affinity or Maglev. */
static void select_one(const struct sp_ctx *ctx, struct view *v, const struct sp_flow *f, struct sp_result *r,
                       u32 now) {
  result_reset(r);
  const struct sp_frontend *fe;
  const struct sp_service *svc;
  const struct sp_list *l = select_list(v, f, r, &fe, &svc);
  if (l) select_backend(ctx, v, svc, l, f, r, now);
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
    for (u32 i = 0; i < count; i++) select_one(ctx, &v, &f[i], &r[i], now);
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
