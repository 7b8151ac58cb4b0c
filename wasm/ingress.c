/* svcplane Ingress routing: host + path -> route target over a compiled routes section (ingress.h).
 *
 * Freestanding C11 like core.c, in its own translation unit, with no mutable globals: which section a
 * router reads is in a host-provided struct spr_ctx, so several instances can share one memory. A route
 * resolves to a target whose frontend key (ClusterIP, port, TCP) the host hands to sp_select_batch for the
 * L4 choice. The whole section is validated at sp_routes_attach (maps, hashes, indices, strings); every
 * call re-checks the header and the area bounds, and every index read from the section is checked where
 * it is used, so even a section changed after attach is never read outside itself.
 */
#include "platform.h"
#include "ingress.h"
#include "murmur3.h"

static inline void st32(u8 *p, u32 v) { __builtin_memcpy(p, &v, 4); }

/* 0x80 in exactly the bytes of v that are zero (no false positives, unlike the borrow trick). */
static inline u32 zero_bytes(u32 v) { return ~(((v & 0x7f7f7f7fu) + 0x7f7f7f7fu) | v | 0x7f7f7f7fu); }

/* ASCII 'A'..'Z' to lower case in four bytes at once; other bytes (also >= 0x80) unchanged. */
static inline u32 lower4(u32 w) {
  u32 low7 = w & 0x7f7f7f7fu;
  u32 upper = (low7 + 0x3f3f3f3fu) & ~(low7 + 0x25252525u) & ~w & 0x80808080u; /* >= 'A' and <= 'Z' */
  return w | (upper >> 2);
}

static inline int bytes_eq(const u8 *a, const u8 *b, u32 n) {
  u32 i = 0;
  for (; i + 4 <= n; i += 4)
    if (ld32(a + i) != ld32(b + i)) return 0;
  for (; i < n; i++)
    if (a[i] != b[i]) return 0;
  return 1;
}

/* ---- a section: header and area bounds, checked on every use ---- */

struct rview {
  const struct spr_header *h;
  const struct spr_slot *slot;
  const struct spr_record *rec;
  const struct spr_target *tgt;
  const u8 *str;
};

static int area_ok(const struct spr_header *h, u32 off, u32 count, u32 size) {
  if (off % 8 != 0) return 0;
  return (u64)off + (u64)count * size <= h->size;
}

/* The section at [off, off + len): in memory, 8-aligned, right magic, version and size, areas inside. */
static int view_load(struct rview *v, u32 off, u32 len) {
  if (off == 0 || off % 8 != 0 || len < sizeof(struct spr_header) || !in_memory(off, len)) return 0;
  const u8 *base = mem_at(off);
  const struct spr_header *h = (const struct spr_header *)base;
  if (h->magic != SPR_MAGIC || h->version != SPR_VERSION || h->size != len) return 0;
  if (!area_ok(h, h->slot_off, h->slot_count, sizeof(struct spr_slot)) ||
      !area_ok(h, h->rec_off, h->rec_count, sizeof(struct spr_record)) ||
      !area_ok(h, h->tgt_off, h->tgt_count, sizeof(struct spr_target)) || !area_ok(h, h->str_off, h->str_bytes, 1))
    return 0;
  v->h = h;
  v->slot = (const struct spr_slot *)(base + h->slot_off);
  v->rec = (const struct spr_record *)(base + h->rec_off);
  v->tgt = (const struct spr_target *)(base + h->tgt_off);
  v->str = base + h->str_off;
  return 1;
}

static inline int pow2(u32 cap) { return cap != 0 && (cap & (cap - 1)) == 0; }

/* A map: [first, first + cap) inside the slot array, a power-of-two capacity, every used slot naming a key
 * inside the strings, carrying that key's hash and a value below `limit`; at least one free slot. */
static i32 check_map(const struct rview *v, u32 first, u32 cap, u32 limit, int host_map) {
  const struct spr_header *h = v->h;
  if (cap == 0) return E_OK;
  if (!pow2(cap) || (u64)first + cap > h->slot_count) return ER_MAP;
  u32 used = 0;
  for (u32 i = 0; i < cap; i++) {
    const struct spr_slot *s = &v->slot[first + i];
    if (s->value == SP_NONE) continue;
    used++;
    if (s->value >= limit || (u64)s->key + s->len > h->str_bytes) return ER_SLOT;
    if (host_map ? s->type != SPR_PT_HOST : (s->type < SPR_PT_EXACT || s->type > SPR_PT_IMPL)) return ER_SLOT;
    if (mm3(v->str + s->key, s->len, h->seed) != s->hash) return ER_SLOT;
  }
  return used < cap ? E_OK : ER_MAP;
}

static inline int target_ok(const struct spr_header *h, u32 t) { return t == SP_NONE || t < h->tgt_count; }

static i32 check_section(const struct rview *v) {
  const struct spr_header *h = v->h;
  /* Strings: offset 0 is "", and the area ends with a NUL, so every offset below str_bytes reads a
   * terminated string inside the section. */
  if (h->str_bytes == 0 || v->str[0] != 0 || v->str[h->str_bytes - 1] != 0) return ER_STRINGS;
  i32 rc = check_map(v, h->host_first, h->host_cap, h->rec_count, 1);
  if (rc == E_OK) rc = check_map(v, h->wild_first, h->wild_cap, h->rec_count, 1);
  if (rc != E_OK) return rc;
  if ((h->catchall != SP_NONE && h->catchall >= h->rec_count) || !target_ok(h, h->default_target)) return ER_RECORD;
  for (u32 i = 0; i < h->rec_count; i++) {
    const struct spr_record *r = &v->rec[i];
    if (r->name >= h->str_bytes || r->kind < SPR_HOST_EXACT || r->kind > SPR_HOST_ANY) return ER_RECORD;
    if (!target_ok(h, r->default_target)) return ER_RECORD;
    rc = check_map(v, r->exact_first, r->exact_cap, h->tgt_count, 0);
    if (rc == E_OK) rc = check_map(v, r->prefix_first, r->prefix_cap, h->tgt_count, 0);
    if (rc != E_OK) return rc;
  }
  for (u32 i = 0; i < h->tgt_count; i++) {
    const struct spr_target *t = &v->tgt[i];
    if (t->ingress >= h->str_bytes || t->service >= h->str_bytes || t->port_name >= h->str_bytes ||
        t->reason >= h->str_bytes)
      return ER_TARGET;
    if (t->status != 200 && t->status != 503) return ER_TARGET;
  }
  return E_OK;
}

static struct spr_ctx *ctx_at(u32 ctx_off) {
  if (ctx_off % 8 != 0 || !in_memory(ctx_off, sizeof(struct spr_ctx))) return 0;
  return (struct spr_ctx *)mem_at(ctx_off);
}

/* Validates the section at [off, off + len) and makes it the one this context routes over; on any error
 * nothing is attached. */
i32 EXPORT(sp_routes_attach)(u32 ctx_off, u32 off, u32 len) {
  struct spr_ctx *ctx = ctx_at(ctx_off);
  if (!ctx) return ER_BOUNDS;
  ctx->section = 0;
  ctx->size = 0;
  if (off == 0 || off % 8 != 0 || !in_memory(off, len)) return ER_BOUNDS;
  if (len < sizeof(struct spr_header)) return ER_SIZE;
  const struct spr_header *h = (const struct spr_header *)mem_at(off);
  if (h->magic != SPR_MAGIC) return ER_MAGIC;
  if (h->version != SPR_VERSION) return ER_VERSION;
  if (h->size != len) return ER_SIZE;
  struct rview v;
  if (!view_load(&v, off, len)) return ER_SECTION;
  i32 rc = check_section(&v);
  if (rc != E_OK) return rc;
  ctx->section = off;
  ctx->size = len;
  return E_OK;
}

void EXPORT(sp_routes_detach)(u32 ctx_off) {
  struct spr_ctx *ctx = ctx_at(ctx_off);
  if (ctx) ctx->section = 0;
}

/* ---- lookups ---- */

/* The slot holding `key` (hash h) in the map [first, first + cap), or 0. A map outside the slot array is
 * empty; a slot whose key lies outside the strings never matches. */
static __attribute__((noinline)) const struct spr_slot *map_find(const struct rview *v, u32 first, u32 cap, u32 h, const u8 *key, u32 len) {
  if (cap == 0 || (u64)first + cap > v->h->slot_count) return 0;
  u32 mask = cap - 1;
  for (u32 n = 0, i = h & mask; n < cap; n++, i = (i + 1) & mask) {
    const struct spr_slot *s = &v->slot[first + i];
    if (s->value == SP_NONE) return 0;
    if (s->hash == h && s->len == len && (u64)s->key + len <= v->h->str_bytes && bytes_eq(v->str + s->key, key, len))
      return s;
  }
  return 0;
}

static inline u8 ascii_lower(u8 c) { return (u8)(c + ((u32)(c - 'A') < 26u ? 32u : 0u)); }

/* Lowercases the Host header's name into out (SPR_MAX_HOST + 2 bytes) and hashes it, four bytes at a time:
 * up to the first ':' (the port is ignored), without one trailing '.'. Returns its length, or SP_NONE when
 * no rule host can match it: a bracketed IPv6 literal, or a name longer than SPR_MAX_HOST (rule hosts are
 * DNS names). */
static u32 host_name(const u8 *host, u32 len, u8 *out, u32 seed, u32 *hash) {
  if (len != 0 && host[0] == '[') return SP_NONE;
  u32 lim = len < SPR_MAX_HOST + 2 ? len : SPR_MAX_HOST + 2, n = 0, h = seed;
  for (; n + 4 <= lim; n += 4) {
    u32 w = ld32(host + n);
    if (zero_bytes(w ^ 0x3a3a3a3au)) break; /* a ':' in these four */
    w = lower4(w);
    st32(out + n, w);
    h = mm3_round(h, w);
  }
  u32 blocks = n;
  for (; n < lim; n++) {
    u8 c = host[n];
    if (c == ':') break;
    out[n] = ascii_lower(c);
  }
  if (n > 0 && out[n - 1] == '.') n--;
  if (n > SPR_MAX_HOST) return SP_NONE;
  /* The trailing '.' may have been hashed with the last block. */
  *hash = n >= blocks ? mm3_finish(h, out + blocks, n) : mm3(out, n, seed);
  return n;
}

/* The record for a Host header: exact host, else wildcard (one label), else catch-all, else SP_NONE. */
static u32 find_record(const struct rview *v, const u8 *host, u32 host_len, u8 *match) {
  const struct spr_header *h = v->h;
  u8 name[SPR_MAX_HOST + 2];
  u32 hash = 0;
  u32 n = host_name(host, host_len, name, h->seed, &hash);
  if (n != 0 && n != SP_NONE) {
    const struct spr_slot *s = map_find(v, h->host_first, h->host_cap, hash, name, n);
    if (s && s->value < h->rec_count) {
      *match = SPR_MATCH_EXACT;
      return s->value;
    }
    /* "*.foo.com" covers exactly one non-empty label: look up what follows the first '.'. */
    if (h->wild_count != 0) {
      u32 dot = 0;
      while (dot < n && name[dot] != '.') dot++;
      if (dot > 0 && dot + 1 < n) {
        const u8 *suffix = name + dot + 1;
        u32 slen = n - dot - 1;
        s = map_find(v, h->wild_first, h->wild_cap, mm3(suffix, slen, h->seed), suffix, slen);
        if (s && s->value < h->rec_count) {
          *match = SPR_MATCH_WILDCARD;
          return s->value;
        }
      }
    }
  }
  if (h->catchall >= h->rec_count) return SP_NONE;
  *match = SPR_MATCH_ANY;
  return h->catchall;
}

/* The path's best key in a record, or 0. The Prefix candidates are the root "", the path cut before each
 * '/', and the whole path unless it ends in '/' (a key k matches when path == k or path starts with
 * k + '/'), up to the record's longest Prefix key and only at lengths some key has (the record's length
 * filter). One incremental murmur3 pass over the path hashes them all ('/' found four bytes at a time);
 * then the whole path is probed in the Exact map (an Exact hit covers the whole path, so it is at least as
 * long as any Prefix hit and wins, also on equal length), then the candidates longest first: the first
 * hit is the answer, and only it needs a key comparison. More than SPR_MAX_CANDIDATES candidates (a path
 * with that many '/' within the longest key) fall back to probing each one as it is hashed. */
#define SPR_MAX_CANDIDATES 32u
#define ALWAYS_INLINE inline __attribute__((always_inline))

struct walk {
  const struct rview *v;
  const struct spr_record *r;
  const u8 *path;
  u32 h, done;                /* murmur3 state after `done` bytes (a multiple of 4) */
  int probe_now;              /* fallback: probe each candidate when it is found */
  u32 count;                  /* candidates collected (> SPR_MAX_CANDIDATES: overflowed) */
  u32 len[SPR_MAX_CANDIDATES], hash[SPR_MAX_CANDIDATES];
  const struct spr_slot *best;
  u32 best_len;
};

static inline int len_bit(u64 lens, u32 len) { return (int)((lens >> (len & 63u)) & 1u); }

static ALWAYS_INLINE u32 walk_hash(struct walk *w, u32 n) {
  for (; w->done + 4 <= n; w->done += 4) w->h = mm3_round(w->h, ld32(w->path + w->done));
  return mm3_finish(w->h, w->path + w->done, n);
}

static ALWAYS_INLINE void candidate(struct walk *w, u32 n) {
  if (!len_bit(w->r->prefix_lens, n)) return;
  u32 hash = walk_hash(w, n);
  if (w->probe_now) {
    const struct spr_slot *s = map_find(w->v, w->r->prefix_first, w->r->prefix_cap, hash, w->path, n);
    if (s) {
      w->best = s;
      w->best_len = n;
    }
  } else if (w->count < SPR_MAX_CANDIDATES) {
    w->len[w->count] = n;
    w->hash[w->count++] = hash;
  } else {
    w->count = SPR_MAX_CANDIDATES + 1;
  }
}

static void candidates(struct walk *w, u32 len) {
  const u8 *path = w->path;
  candidate(w, 0);
  u32 limit = len < w->r->prefix_max ? len : w->r->prefix_max;
  if (limit == 0) return;
  u32 last = limit < len ? limit : len - 1; /* cuts before a '/' at positions 1..last */
  u32 j = 0;
  for (; j + 4 <= len && j <= last; j += 4) {
    for (u32 z = zero_bytes(ld32(path + j) ^ 0x2f2f2f2fu); z != 0; z &= z - 1) {
      u32 i = j + ((u32)__builtin_ctz(z) >> 3);
      if (i != 0 && i <= last) candidate(w, i);
    }
  }
  for (; j <= last; j++)
    if (j != 0 && path[j] == '/') candidate(w, j);
  if (len <= limit && path[len - 1] != '/') candidate(w, len);
}

static const struct spr_slot *match_path(const struct rview *v, const struct spr_record *r, const u8 *path, u32 len,
                                         u32 *match_len) {
  struct walk w;
  w.v = v;
  w.r = r;
  w.path = path;
  w.h = v->h->seed;
  w.done = 0;
  w.probe_now = 0;
  w.count = 0;
  w.best = 0;
  w.best_len = 0;
  if (r->prefix_count != 0) candidates(&w, len);
  if (r->exact_count != 0 && len_bit(r->exact_lens, len)) {
    const struct spr_slot *s = map_find(v, r->exact_first, r->exact_cap, walk_hash(&w, len), path, len);
    if (s) {
      *match_len = len;
      return s;
    }
  }
  if (w.count <= SPR_MAX_CANDIDATES) {
    for (u32 k = w.count; k-- > 0;) {
      const struct spr_slot *s = map_find(v, r->prefix_first, r->prefix_cap, w.hash[k], path, w.len[k]);
      if (s) {
        *match_len = w.len[k];
        return s;
      }
    }
    *match_len = 0;
    return 0;
  }
  /* Too many candidates to keep: walk again, probing each one. */
  w.h = v->h->seed;
  w.done = 0;
  w.probe_now = 1;
  candidates(&w, len);
  *match_len = w.best_len;
  return w.best;
}

/* The target for a request (SP_NONE: 404), and how it was found. Reads no target: the caller looks at the
 * one it needs (sp_route for the status; sp_route_text returns the index, the host keeps the results). */
static ALWAYS_INLINE u32 route_target(const struct rview *v, const u8 *host, u32 host_len, const u8 *path, u32 path_len,
                                      u8 *host_match, u8 *path_match, u32 *record, u32 *match_len) {
  const struct spr_header *h = v->h;
  u32 rec = find_record(v, host, host_len, host_match);
  u32 target;
  *record = rec;
  *match_len = 0;
  *path_match = 0;
  if (rec == SP_NONE) {
    target = h->default_target;
  } else {
    const struct spr_record *r = &v->rec[rec];
    const struct spr_slot *s = match_path(v, r, path, path_len, match_len);
    if (s) {
      target = s->value;
      *path_match = s->type;
    } else {
      target = r->default_target;
      *match_len = 0;
    }
  }
  if (target >= h->tgt_count) target = SP_NONE;
  if (target == SP_NONE) *path_match = 0;
  else if (!*path_match) *path_match = SPR_PATH_DEFAULT;
  return target;
}

static void route_one(const struct rview *v, const u8 *host, u32 host_len, const u8 *path, u32 path_len,
                      struct spr_result *res) {
  u8 host_match = SPR_MATCH_NONE, path_match = 0;
  u32 rec, match_len;
  u32 target = route_target(v, host, host_len, path, path_len, &host_match, &path_match, &rec, &match_len);
  res->status = target == SP_NONE ? (u16)404 : v->tgt[target].status;
  res->host_match = host_match;
  res->path_match = path_match;
  res->target = target;
  res->record = rec;
  res->match_len = match_len;
}

u32 EXPORT(sp_route)(u32 ctx_off, u32 req_off, u32 res_off) {
  const struct spr_ctx *ctx = ctx_at(ctx_off);
  struct rview v;
  if (!ctx || !view_load(&v, ctx->section, ctx->size)) return 0;
  if (req_off % 4 != 0 || res_off % 4 != 0) return 0;
  if (!in_memory(req_off, sizeof(struct spr_request)) || !in_memory(res_off, sizeof(struct spr_result))) return 0;
  const struct spr_request *req = (const struct spr_request *)mem_at(req_off);
  if (!in_memory(req->host_off, req->host_len) || !in_memory(req->path_off, req->path_len)) return 0;
  struct spr_result *res = (struct spr_result *)mem_at(res_off);
  route_one(&v, mem_at(req->host_off), req->host_len, mem_at(req->path_off), req->path_len, res);
  return res->status;
}

/* The same routing in two steps with the request in arguments and only indices returned, for a host that
 * keeps the results per target and remembers the record per Host header: sp_route_host (the host part of
 * sp_route), then sp_route_path (the path part, in that record). */
u32 EXPORT(sp_route_host)(u32 ctx_off, u32 host_off, u32 host_len) {
  const struct spr_ctx *ctx = ctx_at(ctx_off);
  struct rview v;
  if (!ctx || !view_load(&v, ctx->section, ctx->size) || !in_memory(host_off, host_len)) return SPR_ROUTE_ERROR;
  u8 host_match = SPR_MATCH_NONE;
  return find_record(&v, mem_at(host_off), host_len, &host_match);
}

u32 EXPORT(sp_route_path)(u32 ctx_off, u32 record, u32 path_off, u32 path_len) {
  const struct spr_ctx *ctx = ctx_at(ctx_off);
  struct rview v;
  if (!ctx || !view_load(&v, ctx->section, ctx->size) || !in_memory(path_off, path_len)) return SPR_ROUTE_ERROR;
  const struct spr_header *h = v.h;
  u32 target;
  if (record == SP_NONE) {
    target = h->default_target;
  } else if (record >= h->rec_count) {
    return SPR_ROUTE_ERROR;
  } else {
    const struct spr_record *r = &v.rec[record];
    u32 match_len;
    const struct spr_slot *s = match_path(&v, r, mem_at(path_off), path_len, &match_len);
    target = s ? s->value : r->default_target;
  }
  return target < h->tgt_count ? target : SP_NONE;
}

/* ---- helpers for the control plane and tests ---- */

u32 EXPORT(sp_hash_bytes)(u32 ptr, u32 len, u32 seed) {
  if (!in_memory(ptr, len)) return 0;
  return mm3(mem_at(ptr), len, seed);
}

u32 EXPORT(sp_route_sizeof)(u32 which) {
  switch (which) {
  case 0: return sizeof(struct spr_header);
  case 1: return sizeof(struct spr_slot);
  case 2: return sizeof(struct spr_record);
  case 3: return sizeof(struct spr_target);
  case 4: return sizeof(struct spr_request);
  case 5: return sizeof(struct spr_result);
  case 6: return sizeof(struct spr_ctx);
  default: return 0;
  }
}
