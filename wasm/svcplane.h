/* svcplane table image and core ABI.
 *
 * The image is written by the TypeScript compiler (src/compile/image.ts mirrors these layouts; a test
 * checks sizes through sp_sizeof) and only read here. Flat, little-endian, offsets not pointers, every
 * struct naturally aligned and padded by hand, so the same bytes serve wasm32 and 64-bit native builds.
 * Addresses are 16 bytes; IPv4 is stored IPv4-mapped (::ffff:a.b.c.d).
 */
#ifndef SVCPLANE_H
#define SVCPLANE_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef int i32;

#define SP_MAGIC 0x50435653u /* "SVCP" */
#define SP_VERSION 1u

struct sp_header {            /* 104 bytes at offset 0 */
  u32 magic, version, image_size;
  u32 flow_seed;              /* cluster-wide: flow hash and Maglev permutations */
  u32 table_seed;             /* placement in the frontend hash map */
  u32 fe_off, fe_cap, fe_count;
  u32 svc_off, svc_count;
  u32 list_off, list_count;
  u32 be_off, be_count;
  u32 mg_off, mg_bytes;
  u32 rn_off, rn_count;
  u32 sr_off, sr_count;
  u32 str_off, str_bytes;
  u32 node_name, node_zone;   /* string-table offsets */
  u32 ls_off, ls_count;       /* local sources (sp_source_range): node addresses, loopback, pod CIDRs */
};

/* Frontend hash map slot: open addressing, linear probing, capacity a power of two. */
enum { FE_EMPTY = 0, FE_CLUSTER_IP = 1, FE_NODE_PORT = 2, FE_LOAD_BALANCER = 3, FE_EXTERNAL_IP = 4 };
#define FE_F_EXTERNAL 1u        /* uses the service's external list */
#define FE_F_SOURCE_RANGES 2u   /* loadBalancerSourceRanges apply */
struct sp_frontend {          /* 32 bytes */
  u8 addr[16];
  u16 port;
  u8 proto;
  u8 kind;                    /* FE_EMPTY marks a free slot */
  u32 svc;                    /* index into the service array */
  u32 revnat;                 /* index into the reverse-NAT array */
  u32 flags;
};

/* One service port in one family. */
#define SVC_F_AFFINITY 1u
#define SVC_F_INTERNAL_LOCAL 2u
#define SVC_F_EXTERNAL_LOCAL 4u
#define SVC_F_IPV6 8u
#define SVC_EMPTY_INTERNAL_DROP 1u /* else reject */
#define SVC_EMPTY_EXTERNAL_DROP 2u
struct sp_service {           /* 40 bytes */
  u32 flags;
  u32 affinity_timeout;       /* seconds */
  u32 name, port_name;        /* string-table offsets ("ns/name", port name) */
  u32 list_internal, list_external;
  u32 list_cluster;           /* eTP=Local: external traffic from a local source uses the cluster list */
  u32 sr_start;
  u16 sr_count;
  u8 empty;                   /* SVC_EMPTY_* */
  u8 proto;
  u32 pad;
};

/* A backend list: a contiguous range of the backend array plus its Maglev table. */
enum { LIST_CLUSTER = 0, LIST_LOCAL = 1 };
struct sp_list {              /* 24 bytes */
  u32 be_start, be_count;
  u32 mg_off;                 /* byte offset inside the Maglev section */
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
  u32 node;                   /* string-table offset of the endpoint's nodeName */
};

struct sp_revnat {            /* 24 bytes: what replies get their source rewritten back to */
  u8 addr[16];
  u16 port;
  u8 proto;
  u8 kind;
  u32 svc;
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
  R_BAD_IMAGE = 6,            /* drop: a table entry points outside its table */
  R_NO_IMAGE = 7              /* pass: nothing attached */
};
#define SP_NONE 0xffffffffu
enum { LIST_USED_INTERNAL = 0, LIST_USED_EXTERNAL = 1, LIST_USED_LOCAL_SOURCE = 2 };
struct sp_result {            /* 16 bytes */
  u8 verdict;
  u8 reason;
  u8 list;                    /* LIST_USED_*: which of the service's lists was consulted */
  u8 pad;
  u32 frontend;               /* frontend slot, or SP_NONE */
  u32 backend;                /* index into the backend array, or SP_NONE */
  u32 slot;                   /* Maglev slot used, or SP_NONE */
};

/* ClientIP affinity entry (core-owned state, bounded table). */
struct sp_affinity {          /* 48 bytes */
  u8 client[16];
  u8 be_addr[16];             /* identity of the chosen backend: survives recompiles */
  u32 affinity_id;
  u16 be_port;
  u16 used;
  u32 expires;                /* valid while now < expires */
  u32 be_index;               /* position in the list when chosen: checked against be_addr */
};

/* sp_attach status codes */
enum {
  E_OK = 0, E_BOUNDS = -1, E_MAGIC = -2, E_VERSION = -3, E_SIZE = -4, E_SECTION = -5,
  E_FRONTEND = -6, E_SERVICE = -7, E_LIST = -8, E_CAPACITY = -9
};

#endif
