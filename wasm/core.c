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

/* A group of flows goes through the steps stage by stage, each stage one loop over the group: at 10k
 * services every step of a flow is a cache miss that depends on the previous one (frontend entry -> slot
 * -> service block -> list -> Maglev entry), and the loads of different flows in one stage are
 * independent, so the CPU overlaps them instead of waiting for each chain in turn. The result of every
 * flow is exactly that of one flow through select_list and select_backend (as packet.c runs them): the stages
 * run the same steps, in the same order per flow, and affinity
 * state (the only state shared between flows) is read and written in the last stage, flow after flow. */
#ifndef GROUP
#define GROUP 16
#endif

static inline u32 touch(const void *p) { return *(const volatile u8 *)p; }

static void select_group(const struct sp_ctx *ctx, struct view *v, const struct sp_flow *f, struct sp_result *r,
                         u32 n, u32 now) {
  u32 home[GROUP], hash[GROUP], off[GROUP];
  u8 kind[GROUP];
  const struct sp_frontend *fe[GROUP];
  const struct sp_service *svc[GROUP];
  const struct sp_list *l[GROUP];
  u32 sink = 0;

  /* 1: both hashes (no memory but the flow), then the first frontend slot of each flow */
  for (u32 i = 0; i < n; i++) {
    home[i] = frontend_home(v, f[i].dst, f[i].dport, f[i].proto);
    hash[i] = flow_hash(v, &f[i]);
  }
  for (u32 i = 0; i < n; i++) kind[i] = load_kind(&v->fe[home[i]].kind);

  /* 2: the frontend, and its slot's value */
  for (u32 i = 0; i < n; i++) {
    result_reset(&r[i]);
    u32 index;
    fe[i] = frontend_probe(v, f[i].dst, f[i].dport, f[i].proto, home[i], kind[i], &index);
    off[i] = 0;
    if (!fe[i]) {
      verdict(&r[i], V_PASS, R_NOT_SERVICE);
      continue;
    }
    r[i].frontend = index;
    u32 slot = fe[i]->slot;
    off[i] = slot < v->slot_cap ? load_acquire(&v->slots[slot]) : 0;
  }

  /* 3: the service blocks (first touched for all flows, then checked) */
  for (u32 i = 0; i < n; i++)
    if (off[i] != 0 && (u64)off[i] + sizeof(struct sp_service) <= v->size) sink += touch(v->base + off[i]);
  for (u32 i = 0; i < n; i++) {
    svc[i] = 0;
    l[i] = 0;
    if (!fe[i]) continue;
    svc[i] = service_block(v, off[i]);
    if (!svc[i]) verdict(&r[i], V_DROP, R_BAD_IMAGE);
  }

  /* 4: the list by scope, then the Maglev entry of each flow */
  for (u32 i = 0; i < n; i++)
    if (svc[i]) l[i] = select_list_svc(v, &f[i], &r[i], fe[i], svc[i]);
  for (u32 i = 0; i < n; i++)
    if (l[i] && l[i]->mg_size != 0) sink += touch(v->base + l[i]->mg_off + (hash[i] % l[i]->mg_size) * l[i]->mg_width);

  /* 5: affinity or Maglev, flow after flow */
  for (u32 i = 0; i < n; i++)
    if (l[i]) select_backend_hashed(ctx, v, svc[i], l[i], &f[i], &r[i], now, hash[i]);
  (void)sink;
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
    /* A copy whose address never leaves this function once select_group is inlined: the compiler keeps
     * its fields in registers (view_load's `v` lives in memory, where every result store might alias it). */
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
