/* The per-flow selection steps, shared by the flow API (core.c) and the packet path (packet.c): one
 * batch's checked view of the image, ClientIP affinity, and select_one (frontend lookup -> source ranges
 * -> list -> affinity | Maglev). Static functions: each translation unit that includes this gets its own
 * copy (no state lives here; everything is in the host-provided sp_ctx and the image). */
#ifndef SVCPLANE_SELECT_H
#define SVCPLANE_SELECT_H

#include "platform.h"
#include "murmur3.h"

static inline int addr_eq(const u8 *a, const u8 *b) {
  return ld32(a) == ld32(b) && ld32(a + 4) == ld32(b + 4) && ld32(a + 8) == ld32(b + 8) &&
         ld32(a + 12) == ld32(b + 12);
}

static inline void addr_copy(u8 *dst, const u8 *src) { __builtin_memcpy(dst, src, 16); }

/* Publication words are read with acquire/seq-cst loads: plain loads in the single-threaded build,
 * wasm atomics in the shared-memory build. */
static inline u32 load_acquire(const u32 *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void store_release(u32 *p, u32 v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline u8 load_kind(const u8 *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

/* ---- hashing: murmur3_32 of addr16 || le32(word) (hash_addr_word), IPv4-mapped prefix precomputed ---- */

/* An IPv4-mapped address (::ffff:a.b.c.d) starts with the same 12 bytes whatever the address, so the first
 * three murmur3 rounds depend only on the seed: a batch computes them once per seed and an IPv4 flow hashes
 * two words instead of five. Same function, same values as hash_addr_word. */
#define V4_MAPPED_W2 0xffff0000u /* bytes 8..11 of ::ffff:0:0, little-endian */
static inline u32 hash_v4_prefix(u32 seed) { return mm3_round(mm3_round(mm3_round(seed, 0), 0), V4_MAPPED_W2); }

static inline u32 hash_addr_word_v4(const u8 *addr, u32 word, u32 seed, u32 v4) {
  u32 w0 = ld32(addr), w1 = ld32(addr + 4), w2 = ld32(addr + 8), h;
  if ((w0 | w1 | (w2 ^ V4_MAPPED_W2)) == 0) h = v4;
  else h = mm3_round(mm3_round(mm3_round(seed, w0), w1), w2);
  h = mm3_round(h, ld32(addr + 12));
  h = mm3_round(h, word);
  return mm3_fmix(h ^ 20u);
}

/* ---- one batch's view of the image: loaded once, checked once ---- */

struct view {
  const u8 *base;
  u32 image;                  /* offset of the image in memory */
  u32 size;
  const struct sp_header *hdr;
  const struct sp_frontend *fe;
  u32 fe_mask;
  const u32 *slots;
  u32 slot_cap;
  const struct sp_source_range *ls;
  u32 ls_count;
  u32 table_seed, flow_seed;  /* the header's seeds: written once when the image is created */
  u32 table_v4, flow_v4;      /* murmur3 state after the 12 constant bytes of an IPv4-mapped address */
};

/* True when [off, off + len) lies inside the image. The writer may have grown the image since the batch
 * loaded its size: sizes only grow and are published before anything that uses the new space, so a
 * miss re-reads the size once before giving up. */
static inline int in_image(struct view *v, u32 off, u64 len) {
  if ((u64)off + len <= v->size) return 1;
  u32 size = load_acquire(&v->hdr->image_size);
  if (size <= v->size || !in_memory(v->image, size)) return 0;
  v->size = size;
  return (u64)off + len <= size;
}

static int view_load(struct view *v, u32 image) {
  if (image == 0 || !in_memory(image, sizeof(struct sp_header))) return 0;
  const struct sp_header *h = (const struct sp_header *)mem_at(image);
  u32 size = load_acquire(&h->image_size);
  if (!in_memory(image, size) || size < sizeof(struct sp_header)) return 0;
  v->base = (const u8 *)h;
  v->image = image;
  v->size = size;
  v->hdr = h;
  u32 root = load_acquire(&h->root);
  if (root % 4 != 0 || !in_image(v, root, sizeof(struct sp_root))) return 0;
  const struct sp_root *r = (const struct sp_root *)(v->base + root);
  u32 fe_cap = r->fe_cap, slot_cap = r->slot_cap;
  if (fe_cap == 0 || (fe_cap & (fe_cap - 1)) != 0) return 0;
  if (r->fe_off % 4 != 0 || !in_image(v, r->fe_off, (u64)fe_cap * sizeof(struct sp_frontend))) return 0;
  if (r->slot_off % 4 != 0 || !in_image(v, r->slot_off, (u64)slot_cap * 4)) return 0;
  if (r->ls_off % 4 != 0 || !in_image(v, r->ls_off, (u64)r->ls_count * sizeof(struct sp_source_range))) return 0;
  v->fe = (const struct sp_frontend *)(v->base + r->fe_off);
  v->fe_mask = fe_cap - 1;
  v->slots = (const u32 *)(v->base + r->slot_off);
  v->slot_cap = slot_cap;
  v->ls = (const struct sp_source_range *)(v->base + r->ls_off);
  v->ls_count = r->ls_count;
  v->table_seed = h->table_seed;
  v->flow_seed = h->flow_seed;
  v->table_v4 = hash_v4_prefix(v->table_seed);
  v->flow_v4 = hash_v4_prefix(v->flow_seed);
  return 1;
}

/* The service block of a slot, checked: its header, lists and ranges lie inside the image. */
static inline const struct sp_service *service_block(struct view *v, u32 off);
static const struct sp_service *service_at(struct view *v, u32 slot) {
  if (slot >= v->slot_cap) return 0;
  return service_block(v, load_acquire(&v->slots[slot]));
}

/* The service block at `off` (a slot's value), checked. */
static inline const struct sp_service *service_block(struct view *v, u32 off) {
  if (off == 0 || off % 4 != 0 || !in_image(v, off, sizeof(struct sp_service))) return 0;
  const struct sp_service *s = (const struct sp_service *)(v->base + off);
  if (s->list_off % 4 != 0 || !in_image(v, s->list_off, (u64)s->list_count * sizeof(struct sp_list))) return 0;
  if (s->list_internal >= s->list_count || s->list_external >= s->list_count || s->list_cluster >= s->list_count) return 0;
  if (s->sr_off % 4 != 0 || !in_image(v, s->sr_off, (u64)s->sr_count * sizeof(struct sp_source_range))) return 0;
  return s;
}

/* A list, checked: its backends and Maglev table lie inside the image. */
static const struct sp_list *list_at(struct view *v, const struct sp_service *s, u32 which) {
  const struct sp_list *l = (const struct sp_list *)(v->base + s->list_off) + which;
  if (l->be_off % 4 != 0 || !in_image(v, l->be_off, (u64)l->be_count * sizeof(struct sp_backend))) return 0;
  if (l->be_count == 0) return l;
  u32 w = l->mg_width;
  if (l->mg_size == 0 || (w != 1 && w != 2 && w != 4) || l->mg_off % w != 0) return 0;
  if (!in_image(v, l->mg_off, (u64)l->mg_size * w)) return 0;
  return l;
}

/* ---- ClientIP affinity: bounded open-addressing table with a per-instance seed ---- */

#define AFF_PROBE 8 /* slots examined per lookup/insert: O(1), and eviction picks among them */

static inline struct sp_affinity *affinity_slot(const struct sp_ctx *ctx, u32 i) {
  return (struct sp_affinity *)mem_at(ctx->aff_off) + (i & ctx->aff_mask);
}

static inline u32 affinity_home(const struct sp_ctx *ctx, const u8 *client, u32 id) {
  return hash_addr_word(client, id, ctx->aff_seed);
}

static struct sp_affinity *affinity_find(const struct sp_ctx *ctx, const u8 *client, u32 id, u32 now) {
  u32 home = affinity_home(ctx, client, id);
  for (u32 i = 0; i < AFF_PROBE; i++) {
    struct sp_affinity *e = affinity_slot(ctx, home + i);
    if (e->used && e->affinity_id == id && addr_eq(e->client, client)) return now < e->expires ? e : 0;
  }
  return 0;
}

static inline int affinity_free(const struct sp_affinity *e, u32 now) { return !e->used || now >= e->expires; }

/* Claims a slot for (client, id): its own old entry, else a free or expired one, else the one closest
 * to expiry among the probed slots. A full table therefore evicts, never fails. */
static struct sp_affinity *affinity_claim(const struct sp_ctx *ctx, const u8 *client, u32 id, u32 now) {
  u32 home = affinity_home(ctx, client, id);
  struct sp_affinity *victim = 0;
  for (u32 i = 0; i < AFF_PROBE; i++) {
    struct sp_affinity *e = affinity_slot(ctx, home + i);
    if (e->used && e->affinity_id == id && addr_eq(e->client, client)) return e;
    if (victim && affinity_free(victim, now)) continue;
    if (!victim || affinity_free(e, now) || e->expires < victim->expires) victim = e;
  }
  return victim;
}

static inline u32 expiry(u32 now, u32 timeout) {
  u32 t = now + timeout;
  return t < now ? 0xffffffffu : t;
}

/* The backend an affinity entry names, if it is still in the list (its position may have moved). */
/* The position of backend (addr, port) among `count` backends, SP_NONE when it is not there. `*hint` is
 * where it was last seen (checked first, and updated): positions move when the list changes. */
static inline u32 backend_find(const struct sp_backend *be, u32 count, const u8 *addr, u32 port, u32 *hint) {
  if (*hint < count && be[*hint].port == port && addr_eq(be[*hint].addr, addr)) return *hint;
  for (u32 i = 0; i < count; i++) {
    if (be[i].port == port && addr_eq(be[i].addr, addr)) {
      *hint = i;
      return i;
    }
  }
  return SP_NONE;
}

static u32 affinity_backend(const struct view *v, struct sp_affinity *e, const struct sp_list *l) {
  return backend_find((const struct sp_backend *)(v->base + l->be_off), l->be_count, e->be_addr, e->be_port, &e->be_index);
}

/* ---- selection steps ---- */

/* The frontend map slot a key's probe starts at. */
static inline u32 frontend_home(const struct view *v, const u8 *dst, u32 dport, u32 proto) {
  return hash_addr_word_v4(dst, dport | (proto << 16), v->table_seed, v->table_v4) & v->fe_mask;
}

/* The probe from slot `i` on, `kind` being the kind byte of slot i already read (acquire). */
static inline const struct sp_frontend *frontend_probe(const struct view *v, const u8 *dst, u32 dport, u32 proto,
                                                       u32 i, u8 kind, u32 *index_out) {
  for (u32 n = 0; n <= v->fe_mask; n++, i = (i + 1) & v->fe_mask, kind = load_kind(&v->fe[i].kind)) {
    const struct sp_frontend *fe = &v->fe[i];
    if (kind == FE_EMPTY) return 0;
    if (kind != FE_TOMBSTONE && fe->port == dport && fe->proto == proto && addr_eq(fe->addr, dst)) {
      *index_out = i;
      return fe;
    }
  }
  return 0;
}

static inline const struct sp_frontend *frontend_lookup(const struct view *v, const u8 *dst, u32 dport, u32 proto,
                                                        u32 *index_out) {
  u32 i = frontend_home(v, dst, dport, proto);
  return frontend_probe(v, dst, dport, proto, i, load_kind(&v->fe[i].kind), index_out);
}

static inline int prefix_match(const u8 *addr, const u8 *net, u32 prefix) {
  u32 full = prefix >> 3;
  for (u32 i = 0; i < full; i++)
    if (addr[i] != net[i]) return 0;
  u32 rest = prefix & 7;
  if (rest == 0) return 1;
  u8 mask = (u8)(0xff << (8 - rest));
  return (addr[full] & mask) == net[full];
}

static int in_ranges(const struct sp_source_range *r, u32 count, const u8 *addr) {
  for (u32 i = 0; i < count; i++)
    if (prefix_match(addr, r[i].addr, r[i].prefix > 128 ? 128 : r[i].prefix)) return 1;
  return 0;
}

static inline u32 maglev_entry(const struct view *v, const struct sp_list *l, u32 slot) {
  const u8 *t = v->base + l->mg_off;
  if (l->mg_width == 1) return t[slot];
  if (l->mg_width == 2) return ((const u16 *)t)[slot];
  return ((const u32 *)t)[slot];
}

static inline void verdict(struct sp_result *r, u32 v, u32 reason) {
  r->verdict = (u8)v;
  r->reason = (u8)reason;
}

static inline const struct sp_list *select_list_svc(struct view *v, const struct sp_flow *f, struct sp_result *r,
                                                    const struct sp_frontend *fe, const struct sp_service *svc);

static inline const struct sp_list *select_list_fe(struct view *v, const struct sp_flow *f, struct sp_result *r,
                                                   const struct sp_frontend *fe, u32 fe_index,
                                                   const struct sp_service **svc_out);

/* Steps 1-3: frontend lookup, source ranges, the list by scope. Returns the list a flow selects from,
 * or 0 with the verdict written (pass, reject, drop). `r` must have been reset by result_reset. */
static inline const struct sp_list *select_list(struct view *v, const struct sp_flow *f, struct sp_result *r,
                                                const struct sp_frontend **fe_out, const struct sp_service **svc_out) {
  u32 fe_index;
  const struct sp_frontend *fe = frontend_lookup(v, f->dst, f->dport, f->proto, &fe_index);
  if (!fe) return verdict(r, V_PASS, R_NOT_SERVICE), (const struct sp_list *)0;
  *fe_out = fe;
  return select_list_fe(v, f, r, fe, fe_index, svc_out);
}

/* Steps 2-3 once the frontend is known (frontend_lookup's answer for the flow). */
static inline const struct sp_list *select_list_fe(struct view *v, const struct sp_flow *f, struct sp_result *r,
                                                   const struct sp_frontend *fe, u32 fe_index,
                                                   const struct sp_service **svc_out) {
  r->frontend = fe_index;
  const struct sp_service *svc = service_at(v, fe->slot);
  if (!svc) return verdict(r, V_DROP, R_BAD_IMAGE), (const struct sp_list *)0;
  *svc_out = svc;
  return select_list_svc(v, f, r, fe, svc);
}

/* Steps 2-3 once the frontend (r->frontend set) and its checked service block are known. */
static inline const struct sp_list *select_list_svc(struct view *v, const struct sp_flow *f, struct sp_result *r,
                                                    const struct sp_frontend *fe, const struct sp_service *svc) {
  r->service = (u32)((const u8 *)svc - v->base);
  if ((fe->flags & FE_F_SOURCE_RANGES) &&
      !in_ranges((const struct sp_source_range *)(v->base + svc->sr_off), svc->sr_count, f->src))
    return verdict(r, V_DROP, R_SOURCE_RANGE), (const struct sp_list *)0;

  /* ClusterIP uses the internal list, the other frontends the external one; with eTP=Local, traffic from
   * this node or its pods is short-circuited to the cluster list (kube-proxy's --src-type LOCAL rule). */
  u32 which = (fe->flags & FE_F_EXTERNAL) ? LIST_USED_EXTERNAL : LIST_USED_INTERNAL;
  if (which == LIST_USED_EXTERNAL && (svc->flags & SVC_F_EXTERNAL_LOCAL) && in_ranges(v->ls, v->ls_count, f->src))
    which = LIST_USED_LOCAL_SOURCE;
  r->list = (u8)which;
  const struct sp_list *l = list_at(v, svc, which == LIST_USED_INTERNAL   ? svc->list_internal
                                            : which == LIST_USED_EXTERNAL ? svc->list_external
                                                                          : svc->list_cluster);
  if (!l) return verdict(r, V_DROP, R_BAD_IMAGE), (const struct sp_list *)0;
  if (l->be_count == 0) {
    u32 drop = which == LIST_USED_INTERNAL   ? svc->empty & SVC_EMPTY_INTERNAL_DROP
               : which == LIST_USED_EXTERNAL ? svc->empty & SVC_EMPTY_EXTERNAL_DROP
                                             : 0; /* an empty cluster list means no endpoints at all */
    if (drop) verdict(r, V_DROP, R_NO_LOCAL_ENDPOINTS);
    else verdict(r, V_REJECT, R_NO_ENDPOINTS);
    return 0;
  }
  return l;
}

/* The flow hash Maglev slots come from: src addr16 || le16(sport) || proto || 0, cluster seed. */
static inline u32 flow_hash(const struct view *v, const struct sp_flow *f) {
  return hash_addr_word_v4(f->src, (u32)f->sport | ((u32)f->proto << 16), v->flow_seed, v->flow_v4);
}

static inline void select_backend_hashed(const struct sp_ctx *ctx, const struct view *v, const struct sp_service *svc,
                                         const struct sp_list *l, const struct sp_flow *f, struct sp_result *r, u32 now,
                                         u32 hash);

/* Steps 4-5 for a new connection: ClientIP affinity, else the Maglev slot (then recorded for affinity). */
static inline void select_backend(const struct sp_ctx *ctx, const struct view *v, const struct sp_service *svc,
                                  const struct sp_list *l, const struct sp_flow *f, struct sp_result *r, u32 now) {
  select_backend_hashed(ctx, v, svc, l, f, r, now, flow_hash(v, f));
}

/* select_backend with the flow hash (flow_hash) already computed. */
static inline void select_backend_hashed(const struct sp_ctx *ctx, const struct view *v, const struct sp_service *svc,
                                         const struct sp_list *l, const struct sp_flow *f, struct sp_result *r, u32 now,
                                         u32 hash) {
  int affinity = (svc->flags & SVC_F_AFFINITY) && ctx->aff_off != 0;
  if (affinity) {
    struct sp_affinity *e = affinity_find(ctx, f->src, l->affinity_id, now);
    u32 idx = e ? affinity_backend(v, e, l) : SP_NONE;
    if (idx != SP_NONE) {
      e->expires = expiry(now, svc->affinity_timeout); /* every new connection refreshes it, as `recent --set` */
      r->backend = l->be_off + idx * (u32)sizeof(struct sp_backend);
      return verdict(r, V_FORWARD, R_AFFINITY);
    }
  }

  u32 slot = hash % l->mg_size;
  u32 idx = maglev_entry(v, l, slot);
  if (idx >= l->be_count) return verdict(r, V_DROP, R_BAD_IMAGE);
  r->slot = slot;
  r->backend = l->be_off + idx * (u32)sizeof(struct sp_backend);

  if (affinity) {
    struct sp_affinity *e = affinity_claim(ctx, f->src, l->affinity_id, now);
    const struct sp_backend *be = (const struct sp_backend *)(v->base + r->backend);
    addr_copy(e->client, f->src);
    addr_copy(e->be_addr, be->addr);
    e->affinity_id = l->affinity_id;
    e->be_port = be->port;
    e->used = 1;
    e->be_index = idx;
    e->expires = expiry(now, svc->affinity_timeout);
  }
  verdict(r, V_FORWARD, R_MAGLEV);
}

static inline void result_reset(struct sp_result *r) {
  r->frontend = SP_NONE;
  r->service = SP_NONE;
  r->backend = SP_NONE;
  r->slot = SP_NONE;
  r->list = 0;
  r->pad = 0;
}

#endif
