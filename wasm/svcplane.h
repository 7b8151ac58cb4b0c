/* svcplane table image and core ABI.
 *
 * The image is an arena written by the TypeScript control plane (src/compile/layout.ts mirrors these
 * layouts; a test checks every size through sp_sizeof) and only read here. Little-endian, offsets not
 * pointers (all offsets are from the image start), every struct naturally aligned and padded by hand, so
 * the same bytes serve wasm32 and 64-bit native builds. Addresses are 16 bytes; IPv4 is stored
 * IPv4-mapped (::ffff:a.b.c.d).
 *
 * Updates are incremental and published without torn reads (ARCHITECTURE.md, "Publication"):
 *  - a service's tables live in one immutable block; a change writes a new block elsewhere and flips the
 *    service's slot (one aligned 32-bit store), the old block is freed after every reader moved on;
 *  - frontend entries are written completely before their `kind` byte makes them visible, and deleted by
 *    turning `kind` into a tombstone;
 *  - a resized table is built beside the old one and published by flipping the header's `root`.
 * The core therefore checks every offset where it uses it (against the image size it loaded at the start
 * of the batch) instead of trusting a one-time validation.
 */
#ifndef SVCPLANE_H
#define SVCPLANE_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef int i32;

#define SP_MAGIC 0x50435653u /* "SVCP" */
#define SP_VERSION 2u
#define SP_MAX_READERS 16

struct sp_header {            /* 128 bytes at offset 0 */
  u32 magic, version;
  u32 image_size;             /* bytes of the arena; grows, published before anything beyond it is used */
  u32 flow_seed;              /* cluster-wide: flow hash and Maglev permutations */
  u32 table_seed;             /* placement in the frontend hash map */
  u32 root;                   /* offset of the current struct sp_root */
  u32 epoch;                  /* odd, bumped by 2 at each retirement; readers announce the one they saw */
  u32 generation;             /* bumped at every publication (diagnostics, dumps) */
  u32 routes_off, routes_len; /* Ingress routes section (wasm/ingress.h), 0 = none; read by sp_route */
  u32 reserved[6];
  u32 readers[SP_MAX_READERS];/* per registered reader: epoch it is reading under, 0 = quiescent */
};

/* The tables replaced as a whole (when they grow, or when the node changes): a new root is built beside
 * the old one and published by one store to header.root. */
struct sp_root {              /* 48 bytes */
  u32 fe_off, fe_cap;         /* frontend hash map: fe_cap entries, a power of two */
  u32 slot_off, slot_cap;     /* service slots: u32 offset of the current service block, 0 = none */
  u32 rn_off, rn_cap;         /* reverse-NAT entries */
  u32 ls_off, ls_count;       /* local sources (sp_source_range): node addresses, loopback, pod CIDRs */
  u32 node_name, node_zone;   /* offsets of NUL-terminated strings */
  u32 fe_used, fe_tombstones; /* writer bookkeeping */
};

/* Frontend hash map entry: open addressing, linear probing. */
enum { FE_EMPTY = 0, FE_CLUSTER_IP = 1, FE_NODE_PORT = 2, FE_LOAD_BALANCER = 3, FE_EXTERNAL_IP = 4, FE_TOMBSTONE = 0xff };
#define FE_F_EXTERNAL 1u        /* uses the service's external list */
#define FE_F_SOURCE_RANGES 2u   /* loadBalancerSourceRanges apply */
struct sp_frontend {          /* 32 bytes */
  u8 addr[16];
  u16 port;
  u8 proto;
  u8 kind;                    /* written last: FE_EMPTY ends a probe, FE_TOMBSTONE continues it */
  u32 slot;                   /* service slot */
  u32 revnat;                 /* index into the reverse-NAT array */
  u32 flags;
};

/* One service port in one family: an immutable block [sp_service][lists][backends][maglev][ranges][strings]. */
#define SVC_F_AFFINITY 1u
#define SVC_F_INTERNAL_LOCAL 2u
#define SVC_F_EXTERNAL_LOCAL 4u
#define SVC_F_IPV6 8u
#define SVC_EMPTY_INTERNAL_DROP 1u /* else reject */
#define SVC_EMPTY_EXTERNAL_DROP 2u
struct sp_service {           /* 48 bytes */
  u32 size;                   /* bytes of the whole block */
  u32 flags;
  u32 affinity_timeout;       /* seconds */
  u32 name, port_name;        /* offsets of NUL-terminated strings ("ns/name", port name) */
  u32 list_off;               /* offset of list_count sp_list entries */
  u8 list_count;
  u8 list_internal, list_external;
  u8 list_cluster;            /* eTP=Local: external traffic from a local source uses the cluster list */
  u32 sr_off;                 /* offset of sr_count source ranges */
  u16 sr_count;
  u8 empty;                   /* SVC_EMPTY_* */
  u8 proto;
  u8 list_keep;               /* 1 + index of the LIST_KEEP list, 0 = none (the packet path only) */
  u8 pad8[3];
  u32 pad[2];
};

/* LIST_KEEP: terminating endpoints in no other list: they receive no new flows but keep their established
 * ones (packet path); no Maglev table (mg_size 0). */
enum { LIST_CLUSTER = 0, LIST_LOCAL = 1, LIST_KEEP = 2 };
struct sp_list {              /* 24 bytes */
  u32 be_off, be_count;       /* offset of be_count sp_backend entries */
  u32 mg_off;                 /* offset of the Maglev table */
  u32 mg_size;                /* M, a prime; 0 when the list is empty */
  u8 mg_width;                /* bytes per Maglev entry: 1, 2 or 4 */
  u8 kind;                    /* LIST_* */
  u16 pad;
  u32 affinity_id;            /* stable id of (service port, family, list kind): affinity key */
};

enum { BE_ACTIVE = 0, BE_TERMINATING = 1 };
#define BE_F_LOCAL 1u
struct sp_backend {           /* 24 bytes */
  u8 addr[16];
  u16 port;
  u8 state;
  u8 flags;
  u32 node;                   /* offset of the endpoint's nodeName string */
};

struct sp_revnat {            /* 24 bytes: what replies get their source rewritten back to */
  u8 addr[16];
  u16 port;
  u8 proto;
  u8 kind;                    /* frontend kind; FE_EMPTY when the index is free */
  u32 slot;
};

struct sp_source_range {      /* 20 bytes */
  u8 addr[16];                /* network, host bits clear */
  u8 prefix;                  /* in the 128-bit space (IPv4 prefix + 96) */
  u8 pad[3];
};

/* Batch I/O, laid out by the caller in core memory. */
struct sp_flow {              /* 40 bytes */
  u8 src[16];
  u8 dst[16];
  u16 sport, dport;
  u8 proto;
  u8 pad[3];
};

enum { V_PASS = 0, V_FORWARD = 1, V_REJECT = 2, V_DROP = 3 };
enum {
  R_NOT_SERVICE = 0,          /* pass: no frontend for dst:dport/proto */
  R_MAGLEV = 1,               /* forward: Maglev slot chose the backend */
  R_AFFINITY = 2,             /* forward: ClientIP affinity kept the backend */
  R_NO_ENDPOINTS = 3,         /* reject: no usable endpoint at all */
  R_NO_LOCAL_ENDPOINTS = 4,   /* drop: the policy's local list is empty */
  R_SOURCE_RANGE = 5,         /* drop: source outside loadBalancerSourceRanges */
  R_BAD_IMAGE = 6,            /* drop: an entry points outside the image */
  R_NO_IMAGE = 7              /* pass: nothing attached */
};
#define SP_NONE 0xffffffffu
enum { LIST_USED_INTERNAL = 0, LIST_USED_EXTERNAL = 1, LIST_USED_LOCAL_SOURCE = 2 };
struct sp_result {            /* 20 bytes */
  u8 verdict;
  u8 reason;
  u8 list;                    /* LIST_USED_*: which of the service's lists was consulted */
  u8 pad;
  u32 frontend;               /* frontend map index (in the map the batch read), or SP_NONE */
  u32 service;                /* offset of the service block used, or SP_NONE */
  u32 backend;                /* offset of the chosen sp_backend, or SP_NONE */
  u32 slot;                   /* Maglev slot used, or SP_NONE */
};

/* ClientIP affinity entry (core-owned state, bounded table, one per reader). */
struct sp_affinity {          /* 48 bytes */
  u8 client[16];
  u8 be_addr[16];             /* identity of the chosen backend: survives updates */
  u32 affinity_id;
  u16 be_port;
  u16 used;
  u32 expires;                /* valid while now < expires */
  u32 be_index;               /* position in the list when chosen: checked against be_addr */
};

/* A reader's state, in host-provided memory: the core has no mutable globals, so several instances
 * (worker threads on one shared memory, or several dataplanes in one process) never collide. */
struct sp_ctx {               /* 32 bytes */
  u32 image;                  /* offset of the attached image's header, 0 = none */
  u32 aff_off, aff_mask, aff_seed;
  u32 reader;                 /* index into header.readers, SP_NONE when not registered */
  u32 pad[3];
};

/* status codes */
enum {
  E_OK = 0, E_BOUNDS = -1, E_MAGIC = -2, E_VERSION = -3, E_SIZE = -4, E_SECTION = -5,
  E_CAPACITY = -9
};

#endif
