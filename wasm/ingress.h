/* svcplane Ingress routes section and the sp_route ABI.
 *
 * The routes section is written by the TypeScript compiler (src/ingress/compile.ts; src/ingress/layout.ts
 * mirrors these layouts and a test checks the sizes through sp_route_sizeof) and only read here. It is
 * self-contained so it can live anywhere in core memory (inside the table image or on its own): flat,
 * little-endian, every offset relative to the section start, 8-byte aligned sub-areas, every struct
 * naturally aligned and padded by hand.
 *
 *   header   96 B   magic "SPRT", version, size, seed, where everything below is
 *   slots    16 B   every hash map of the section, one after the other (a map = first slot index + a
 *                   power-of-two capacity, load <= 1/2, linear probing, value SP_NONE = empty slot):
 *                     exact-host map     key = lowercased host ("foo.com")
 *                     wildcard map       key = the wildcard host minus "*." ("*.foo.com" -> "foo.com");
 *                                        a request host is looked up minus its first label, so exactly
 *                                        one label is covered
 *                     per host record:   Exact map  key = the path as written
 *                                        Prefix map key = the path without trailing '/' ("/foo/" ->
 *                                        "/foo", "/" -> ""); ImplementationSpecific paths live here too
 *                   hash = murmur3_32(key bytes, header.seed), stored in the slot and checked at attach
 *   records  56 B   one per host entry (exact host, wildcard host, or the catch-all of host-less rules)
 *   targets  40 B   what a match resolves to: status (200, or 503 with a reason), the owning Ingress,
 *                   the Service, and the frontend key (ClusterIP addr16, port, proto) that the L4 selection
 *                   (sp_select_batch) takes as dst
 *   strings         NUL-terminated; offset 0 = "". Keys are (offset, length) into this area.
 *
 * Matching (sp_route): the Host's name is what precedes the first ':' (the port is ignored), without one
 * trailing '.', lowercased (ASCII) in the core; a bracketed IPv6 literal ("[v6]:port") and a name longer
 * than SPR_MAX_HOST name no rule host (rule hosts are DNS names) and go straight to the catch-all.
 * Exact-host map, else the wildcard map (the host minus its first, non-empty label), else the catch-all
 * record, else the section's default target, else 404. In the record, the Prefix candidates are the root
 * "", the path cut before each '/', and the whole path unless it ends in '/' (key k matches when the path
 * is k or starts with k + '/'), up to the record's longest Prefix key and only at lengths some key has
 * (64-bit length filter); one incremental murmur3 pass hashes them all. The Exact map is probed with the
 * whole path first (an Exact hit covers the whole path, so it is at least as long as any Prefix hit and
 * wins, also on equal length), then the candidates longest first: the first hit wins, and only it
 * compares key bytes. No hit: the record's default target, else 404. Paths are compared as bytes,
 * case-sensitively.
 *
 * Two ways in: sp_route (request and result structs, everything about the decision: trace, tests, tools)
 * and the pair sp_route_host + sp_route_path (offsets and lengths in arguments, indices back, no target
 * read), which is what route() calls: the record depends only on the Host bytes and the section, so the
 * host remembers it per Host header and per request makes only the sp_route_path call.
 */
#ifndef SVCPLANE_INGRESS_H
#define SVCPLANE_INGRESS_H

#include "svcplane.h"

#define SPR_MAGIC 0x54525053u /* "SPRT" */
#define SPR_VERSION 1u
#define SPR_MAX_HOST 255u     /* longer request hosts can only reach the catch-all record */

struct spr_header {           /* 96 bytes at the section start */
  u32 magic, version, size;
  u32 seed;                   /* murmur3 seed of every key */
  u32 slot_off, slot_count;   /* the slot array */
  u32 host_first, host_cap, host_count;  /* exact-host map */
  u32 wild_first, wild_cap, wild_count;  /* wildcard-suffix map */
  u32 rec_off, rec_count;
  u32 tgt_off, tgt_count;
  u32 str_off, str_bytes;
  u32 catchall;               /* record of the host-less rules, or SP_NONE */
  u32 default_target;         /* target when no record matches the host, or SP_NONE (404) */
  u32 max_path;               /* longest path key of any map: a request path may be cut to max_path + 1
                                 bytes without changing the result */
  u32 reserved[3];
};

enum { SPR_PT_HOST = 0, SPR_PT_EXACT = 1, SPR_PT_PREFIX = 2, SPR_PT_IMPL = 3 };
struct spr_slot {             /* 16 bytes */
  u32 hash;                   /* murmur3_32(key, seed) */
  u32 key;                    /* string-area offset of the key bytes */
  u16 len;                    /* key length */
  u8 type;                    /* SPR_PT_*: what the key is (a host, or the rule's pathType) */
  u8 flags;
  u32 value;                  /* record index (host maps) or target index (path maps); SP_NONE = empty */
};

enum { SPR_HOST_EXACT = 1, SPR_HOST_WILDCARD = 2, SPR_HOST_ANY = 3 };
struct spr_record {           /* 56 bytes */
  u32 name;                   /* string offset: the host as written ("foo.com", "*.foo.com", "" = any) */
  u32 exact_first, exact_cap, exact_count;
  u32 prefix_first, prefix_cap, prefix_count;
  u32 prefix_max;             /* longest Prefix key: longer candidates are not probed */
  u32 default_target;         /* requests for this host that match no path; SP_NONE = 404 */
  u8 kind;                    /* SPR_HOST_* */
  u8 pad[3];
  u64 exact_lens;             /* bit (len % 64) set when an Exact key has that length: other lengths are */
  u64 prefix_lens;            /* not probed (a filter only: a clear bit means no key of that length) */
};

#define SPR_TF_FRONTEND 1u    /* addr/port/proto name a Service frontend (status 200) */
#define SPR_TF_DEFAULT 2u     /* an Ingress's spec.defaultBackend */
struct spr_target {           /* 40 bytes */
  u8 addr[16];                /* ClusterIP, IPv4 mapped: the dst for the L4 selection */
  u16 port;                   /* the Service port number (when unresolved: as written, or 0) */
  u8 proto;                   /* 6 (TCP) */
  u8 flags;                   /* SPR_TF_* */
  u16 status;                 /* 200 or 503 */
  u16 pad;
  u32 ingress;                /* string offsets: "ns/name" of the Ingress, */
  u32 service;                /* "ns/name" of the Service ("" for resource backends), */
  u32 port_name;              /* the backend port as written when given by name, else "", */
  u32 reason;                 /* why 503 ("" for 200) */
};

/* Request, written by the host at req_off: where the Host header and path bytes are (core-memory offsets,
 * anywhere in memory, so the host can keep fixed areas for them). */
struct spr_request {          /* 16 bytes */
  u32 host_off, host_len;
  u32 path_off, path_len;
};

enum { SPR_MATCH_NONE = 0, SPR_MATCH_EXACT = 1, SPR_MATCH_WILDCARD = 2, SPR_MATCH_ANY = 3 };
#define SPR_PATH_DEFAULT 4u   /* result.path_match: no path matched, a default backend took it */
struct spr_result {           /* 16 bytes */
  u16 status;                 /* 200, 404 or 503 (0: no section attached or request outside memory) */
  u8 host_match;              /* SPR_MATCH_* */
  u8 path_match;              /* SPR_PT_EXACT/PREFIX/IMPL, SPR_PATH_DEFAULT, or 0 (nothing) */
  u32 target;                 /* target index or SP_NONE */
  u32 record;                 /* record index or SP_NONE */
  u32 match_len;              /* length of the matched path key */
};

/* A router's state, in host-provided memory (8-aligned): the core has no mutable globals. */
struct spr_ctx {              /* 16 bytes */
  u32 section;                /* offset of the attached routes section, 0 = none */
  u32 size;
  u32 pad[2];
};

/* sp_routes_attach status codes (0 = E_OK) */
enum {
  ER_BOUNDS = -1, ER_MAGIC = -2, ER_VERSION = -3, ER_SIZE = -4, ER_SECTION = -5,
  ER_MAP = -6, ER_SLOT = -7, ER_RECORD = -8, ER_TARGET = -9, ER_STRINGS = -10
};

/* Validates a routes section at [off, off + len) of core memory (8-aligned) and records it in the context
 * at ctx_off; on error nothing is attached. An attached section must not change: write a new one and
 * attach it (a changed one is still never read outside itself, but may route wrongly). For a section
 * embedded in the image, pass its offset after each publication. */
i32 sp_routes_attach(u32 ctx_off, u32 off, u32 len);
void sp_routes_detach(u32 ctx_off);
/* Routes one request (struct spr_request at req_off, 4-aligned) over the context's section, writes struct
 * spr_result at res_off (4-aligned); returns the status (0 when nothing is attached or a buffer lies
 * outside memory). */
u32 sp_route(u32 ctx_off, u32 req_off, u32 res_off);
/* sp_route in two steps, the request's bytes in arguments (core-memory offsets and lengths), indices
 * returned, no struct written; what route() calls per request (trace() uses sp_route for the details).
 * sp_route_host: the record for a Host header (SP_NONE: no record, the section's default target decides).
 * sp_route_path: the target for a path in that record (SP_NONE: 404). Both return SPR_ROUTE_ERROR when
 * nothing is attached, the bytes lie outside memory or the record is not one of the section's. The record
 * depends only on the Host bytes and the attached section, so a host may remember it per Host header until
 * it attaches another section. */
#define SPR_ROUTE_ERROR 0xfffffffeu
u32 sp_route_host(u32 ctx_off, u32 host_off, u32 host_len);
u32 sp_route_path(u32 ctx_off, u32 record, u32 path_off, u32 path_len);
/* murmur3_32 over [ptr, ptr + len), for tests and tools (0 when outside memory). */
u32 sp_hash_bytes(u32 ptr, u32 len, u32 seed);
/* sizeof: 0 header, 1 slot, 2 record, 3 target, 4 request, 5 result, 6 ctx. */
u32 sp_route_sizeof(u32 which);

#endif
