/* svcplane core: per-flow service selection over a compiled table image.
 *
 * Freestanding C11: no libc, no imports. The control plane (TypeScript) decides everything and writes
 * the image; this file only reads it, plus the ClientIP affinity state it owns. One function per step,
 * in the order a flow goes through them: frontend lookup, source ranges, list choice, affinity, Maglev.
 * Every offset taken from the image is checked once in sp_attach; the only per-flow check left is the
 * Maglev entry against its list length, which is cheaper than scanning every table at attach.
 */
#include "platform.h"

/* ---- hashing: murmur3_32 over five 32-bit words (a 16-byte address and one word) ---- */

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

/* murmur3_32 of the 20 bytes addr[16] || le32(word), so the result equals murmur3 over those bytes. */
static inline u32 hash_addr_word(const u8 *addr, u32 word, u32 seed) {
  u32 h = seed;
  h = mm3_round(h, ld32(addr));
  h = mm3_round(h, ld32(addr + 4));
  h = mm3_round(h, ld32(addr + 8));
  h = mm3_round(h, ld32(addr + 12));
  h = mm3_round(h, word);
  return mm3_fmix(h ^ 20u);
}

static inline int addr_eq(const u8 *a, const u8 *b) {
  return ld32(a) == ld32(b) && ld32(a + 4) == ld32(b + 4) && ld32(a + 8) == ld32(b + 8) &&
         ld32(a + 12) == ld32(b + 12);
}

static inline void addr_copy(u8 *dst, const u8 *src) { __builtin_memcpy(dst, src, 16); }

/* ---- the attached image ---- */

static struct {
  const struct sp_header *hdr;
  const struct sp_frontend *fe;
  const struct sp_service *svc;
  const struct sp_list *list;
  const struct sp_backend *be;
  const u8 *mg;
  const struct sp_source_range *sr;
  const struct sp_source_range *ls;
  u32 fe_mask;
} img;

static int section_ok(const struct sp_header *h, u32 off, u32 count, u32 size) {
  if (off % 4 != 0) return 0;
  return (u64)off + (u64)count * size <= h->image_size;
}

static i32 check_tables(const struct sp_header *h, const u8 *base) {
  const struct sp_frontend *fe = (const struct sp_frontend *)(base + h->fe_off);
  const struct sp_service *svc = (const struct sp_service *)(base + h->svc_off);
  const struct sp_list *list = (const struct sp_list *)(base + h->list_off);
  for (u32 i = 0; i < h->fe_cap; i++) {
    if (fe[i].kind == FE_EMPTY) continue;
    if (fe[i].kind > FE_EXTERNAL_IP || fe[i].svc >= h->svc_count || fe[i].revnat >= h->rn_count) return E_FRONTEND;
  }
  for (u32 i = 0; i < h->svc_count; i++) {
    if (svc[i].list_internal >= h->list_count || svc[i].list_external >= h->list_count ||
        svc[i].list_cluster >= h->list_count)
      return E_SERVICE;
    if ((u64)svc[i].sr_start + svc[i].sr_count > h->sr_count) return E_SERVICE;
  }
  for (u32 i = 0; i < h->list_count; i++) {
    const struct sp_list *l = &list[i];
    if ((u64)l->be_start + l->be_count > h->be_count) return E_LIST;
    if (l->be_count == 0) continue;
    u32 w = l->mg_width;
    if (l->mg_size == 0 || (w != 1 && w != 2 && w != 4) || l->mg_off % w != 0) return E_LIST;
    if ((u64)l->mg_off + (u64)l->mg_size * w > h->mg_bytes) return E_LIST;
  }
  return E_OK;
}

/* Validates an image at ptr (in linear memory) and makes it the one selections read. On any error the
 * previous image stays attached. */
i32 EXPORT(sp_attach)(u32 ptr, u32 len) {
  if (ptr % 8 != 0 || !in_memory(ptr, len)) return E_BOUNDS;
  if (len < sizeof(struct sp_header)) return E_SIZE;
  const u8 *base = mem_at(ptr);
  const struct sp_header *h = (const struct sp_header *)base;
  if (h->magic != SP_MAGIC) return E_MAGIC;
  if (h->version != SP_VERSION) return E_VERSION;
  if (h->image_size != len) return E_SIZE;
  if (h->fe_cap == 0 || (h->fe_cap & (h->fe_cap - 1)) != 0) return E_CAPACITY;
  if (!section_ok(h, h->fe_off, h->fe_cap, sizeof(struct sp_frontend)) ||
      !section_ok(h, h->svc_off, h->svc_count, sizeof(struct sp_service)) ||
      !section_ok(h, h->list_off, h->list_count, sizeof(struct sp_list)) ||
      !section_ok(h, h->be_off, h->be_count, sizeof(struct sp_backend)) ||
      !section_ok(h, h->mg_off, h->mg_bytes, 1) ||
      !section_ok(h, h->rn_off, h->rn_count, sizeof(struct sp_revnat)) ||
      !section_ok(h, h->sr_off, h->sr_count, sizeof(struct sp_source_range)) ||
      !section_ok(h, h->ls_off, h->ls_count, sizeof(struct sp_source_range)) ||
      !section_ok(h, h->str_off, h->str_bytes, 1))
    return E_SECTION;
  i32 rc = check_tables(h, base);
  if (rc != E_OK) return rc;
  img.hdr = h;
  img.fe = (const struct sp_frontend *)(base + h->fe_off);
  img.svc = (const struct sp_service *)(base + h->svc_off);
  img.list = (const struct sp_list *)(base + h->list_off);
  img.be = (const struct sp_backend *)(base + h->be_off);
  img.mg = base + h->mg_off;
  img.sr = (const struct sp_source_range *)(base + h->sr_off);
  img.ls = (const struct sp_source_range *)(base + h->ls_off);
  img.fe_mask = h->fe_cap - 1;
  return E_OK;
}

void EXPORT(sp_detach)(void) { img.hdr = 0; }

/* ---- ClientIP affinity: bounded open-addressing table with a per-instance seed ---- */

#define AFF_PROBE 8 /* slots examined per lookup/insert: O(1), and eviction picks among them */

static struct {
  struct sp_affinity *slots;
  u32 mask;
  u32 seed;
} aff;

i32 EXPORT(sp_affinity_init)(u32 ptr, u32 capacity, u32 seed) {
  if (capacity == 0 || (capacity & (capacity - 1)) != 0) return E_CAPACITY;
  if (ptr % 8 != 0 || !in_memory(ptr, (u64)capacity * sizeof(struct sp_affinity))) return E_BOUNDS;
  aff.slots = (struct sp_affinity *)mem_at(ptr);
  aff.mask = capacity - 1;
  aff.seed = seed;
  __builtin_memset(aff.slots, 0, (__SIZE_TYPE__)capacity * sizeof(struct sp_affinity));
  return E_OK;
}

static inline u32 affinity_home(const u8 *client, u32 id) { return hash_addr_word(client, id, aff.seed) & aff.mask; }

static struct sp_affinity *affinity_find(const u8 *client, u32 id, u32 now) {
  u32 home = affinity_home(client, id);
  for (u32 i = 0; i < AFF_PROBE; i++) {
    struct sp_affinity *e = &aff.slots[(home + i) & aff.mask];
    if (e->used && e->affinity_id == id && addr_eq(e->client, client)) return now < e->expires ? e : 0;
  }
  return 0;
}

/* Claims a slot for (client, id): its own old entry, else a free one, else an expired one, else the one
 * closest to expiry among the probed slots. A full table therefore evicts, never fails. */
static inline int affinity_free(const struct sp_affinity *e, u32 now) { return !e->used || now >= e->expires; }

static struct sp_affinity *affinity_claim(const u8 *client, u32 id, u32 now) {
  u32 home = affinity_home(client, id);
  struct sp_affinity *victim = 0;
  for (u32 i = 0; i < AFF_PROBE; i++) {
    struct sp_affinity *e = &aff.slots[(home + i) & aff.mask];
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
static u32 affinity_backend(struct sp_affinity *e, const struct sp_list *l) {
  const struct sp_backend *be = img.be + l->be_start;
  if (e->be_index < l->be_count && be[e->be_index].port == e->be_port && addr_eq(be[e->be_index].addr, e->be_addr))
    return e->be_index;
  for (u32 i = 0; i < l->be_count; i++) {
    if (be[i].port == e->be_port && addr_eq(be[i].addr, e->be_addr)) {
      e->be_index = i;
      return i;
    }
  }
  return SP_NONE;
}

/* ---- selection steps ---- */

static inline const struct sp_frontend *frontend_lookup(const u8 *dst, u32 dport, u32 proto, u32 *slot_out) {
  u32 i = hash_addr_word(dst, dport | (proto << 16), img.hdr->table_seed) & img.fe_mask;
  for (u32 n = 0; n <= img.fe_mask; n++, i = (i + 1) & img.fe_mask) {
    const struct sp_frontend *fe = &img.fe[i];
    if (fe->kind == FE_EMPTY) return 0;
    if (fe->port == dport && fe->proto == proto && addr_eq(fe->addr, dst)) {
      *slot_out = i;
      return fe;
    }
  }
  return 0;
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

static inline u32 maglev_entry(const struct sp_list *l, u32 slot) {
  const u8 *t = img.mg + l->mg_off;
  if (l->mg_width == 1) return t[slot];
  if (l->mg_width == 2) return ((const u16 *)t)[slot];
  return ((const u32 *)t)[slot];
}

static inline void verdict(struct sp_result *r, u32 v, u32 reason) {
  r->verdict = (u8)v;
  r->reason = (u8)reason;
}

static void select_one(const struct sp_flow *f, struct sp_result *r, u32 now) {
  r->frontend = SP_NONE;
  r->backend = SP_NONE;
  r->slot = SP_NONE;
  r->list = 0;
  r->pad = 0;
  if (!img.hdr) return verdict(r, V_PASS, R_NO_IMAGE);

  u32 fe_slot;
  const struct sp_frontend *fe = frontend_lookup(f->dst, f->dport, f->proto, &fe_slot);
  if (!fe) return verdict(r, V_PASS, R_NOT_SERVICE);
  r->frontend = fe_slot;

  const struct sp_service *svc = &img.svc[fe->svc];
  if ((fe->flags & FE_F_SOURCE_RANGES) && !in_ranges(img.sr + svc->sr_start, svc->sr_count, f->src))
    return verdict(r, V_DROP, R_SOURCE_RANGE);

  /* ClusterIP uses the internal list, the other frontends the external one; with eTP=Local, traffic from
   * this node or its pods is short-circuited to the cluster list (kube-proxy's --src-type LOCAL rule). */
  u32 which = (fe->flags & FE_F_EXTERNAL) ? LIST_USED_EXTERNAL : LIST_USED_INTERNAL;
  if (which == LIST_USED_EXTERNAL && (svc->flags & SVC_F_EXTERNAL_LOCAL) && in_ranges(img.ls, img.hdr->ls_count, f->src))
    which = LIST_USED_LOCAL_SOURCE;
  r->list = (u8)which;
  const struct sp_list *l = &img.list[which == LIST_USED_INTERNAL   ? svc->list_internal
                                      : which == LIST_USED_EXTERNAL ? svc->list_external
                                                                    : svc->list_cluster];
  if (l->be_count == 0) {
    u32 drop = which == LIST_USED_INTERNAL   ? svc->empty & SVC_EMPTY_INTERNAL_DROP
               : which == LIST_USED_EXTERNAL ? svc->empty & SVC_EMPTY_EXTERNAL_DROP
                                             : 0; /* an empty cluster list means no endpoints at all */
    return drop ? verdict(r, V_DROP, R_NO_LOCAL_ENDPOINTS) : verdict(r, V_REJECT, R_NO_ENDPOINTS);
  }

  int affinity = (svc->flags & SVC_F_AFFINITY) && aff.slots;
  if (affinity) {
    struct sp_affinity *e = affinity_find(f->src, l->affinity_id, now);
    u32 idx = e ? affinity_backend(e, l) : SP_NONE;
    if (idx != SP_NONE) {
      e->expires = expiry(now, svc->affinity_timeout); /* every new connection refreshes it, as `recent --set` */
      r->backend = l->be_start + idx;
      return verdict(r, V_FORWARD, R_AFFINITY);
    }
  }

  u32 slot = hash_addr_word(f->src, (u32)f->sport | ((u32)f->proto << 16), img.hdr->flow_seed) % l->mg_size;
  u32 idx = maglev_entry(l, slot);
  if (idx >= l->be_count) return verdict(r, V_DROP, R_BAD_IMAGE);
  r->slot = slot;
  r->backend = l->be_start + idx;

  if (affinity) {
    struct sp_affinity *e = affinity_claim(f->src, l->affinity_id, now);
    const struct sp_backend *be = &img.be[r->backend];
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

/* Selects a backend for `count` flows at `flows`, writing one result each at `results`. Returns the
 * number of flows processed: 0 when the buffers are not inside linear memory. */
u32 EXPORT(sp_select_batch)(u32 flows, u32 results, u32 count, u32 now) {
  if (flows % 4 != 0 || results % 4 != 0) return 0;
  if (!in_memory(flows, (u64)count * sizeof(struct sp_flow)) || !in_memory(results, (u64)count * sizeof(struct sp_result)))
    return 0;
  const struct sp_flow *f = (const struct sp_flow *)mem_at(flows);
  struct sp_result *r = (struct sp_result *)mem_at(results);
  for (u32 i = 0; i < count; i++) select_one(&f[i], &r[i], now);
  return count;
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
  default: return 0;
  }
}
