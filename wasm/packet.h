/* svcplane packet path ABI: what the host lays out for sp_process_batch (src/engine/packet.ts mirrors
 * these layouts; a test checks every size through sp_sizeof).
 *
 * The packet path is a service load balancer over the same image as select(): per packet it parses the
 * IP header (IPv4 with options, IPv6 with extension headers), looks the flow up in a conntrack table the
 * core owns, selects a backend for new flows (select.h: frontend, source ranges, list, affinity, Maglev),
 * and rewrites the packet in place: DNAT towards the backend, reverse NAT of the replies, ICMP errors that
 * quote a translated flow, incremental checksums (RFC 1624). ARCHITECTURE.md, "Packet path", has the rules.
 */
#ifndef SVCPLANE_PACKET_H
#define SVCPLANE_PACKET_H

#include "svcplane.h"

/* One packet of a batch. The packet is rewritten in place and never changes length. */
struct sp_pkt {               /* 24 bytes */
  u32 off;                    /* in: offset of the packet's first IP header byte */
  u32 len;                    /* in: bytes available there (the IP total length may be shorter: padding) */
  u32 reply_off;              /* in: offset of a reply slot of SP_REPLY_MAX bytes, 0 = none */
  u16 reply_len;              /* out: bytes of the reply written there (reject), 0 = none */
  u8 verdict;                 /* out: PV_* */
  u8 reason;                  /* out: PR_*, also the counter the packet was counted under */
  u32 revnat;                 /* out: rev-NAT index of the frontend the packet belongs to, SP_NONE */
  u32 ct;                     /* out: conntrack entry used (forward entry index), SP_NONE */
};

#define SP_REPLY_MAX 1280u    /* an ICMP error quotes as much as fits in 576 (IPv4) / 1280 (IPv6) bytes */

enum { PV_PASS = 0, PV_FORWARD = 1, PV_REJECT = 2, PV_DROP = 3, PV_REVERSE = 4 };

enum {
  PR_NOT_SERVICE = 0,         /* pass: not a frontend and no conntrack entry */
  PR_NEW = 1,                 /* forward: new flow, Maglev */
  PR_NEW_AFFINITY = 2,        /* forward: new flow, ClientIP affinity */
  PR_ESTABLISHED = 3,         /* forward: conntrack hit, backend still in the list */
  PR_RESELECTED = 4,          /* forward: conntrack hit, backend gone (or port reuse): selected again */
  PR_REVERSE = 5,             /* reverse NAT: a reply from a backend */
  PR_ICMP_FORWARD = 6,        /* forward: ICMP error about a reverse-NATed reply, sent on to the backend */
  PR_ICMP_REVERSE = 7,        /* reverse NAT: ICMP error about a DNATed packet, sent back to the client */
  PR_FRAGMENT_FORWARD = 8,    /* forward: later fragment of a datagram whose first fragment was DNATed */
  PR_FRAGMENT_REVERSE = 9,    /* reverse NAT: later fragment of a reverse-NATed datagram */
  PR_NO_ENDPOINTS = 10,       /* reject: no usable endpoint at all */
  PR_NO_LOCAL_ENDPOINTS = 11, /* drop: the policy's local list is empty */
  PR_SOURCE_RANGE = 12,       /* drop: source outside loadBalancerSourceRanges */
  PR_MALFORMED_IP = 13,       /* drop: truncated or inconsistent IP header */
  PR_MALFORMED_EXT = 14,      /* drop: IPv6 extension header chain truncated or too long */
  PR_MALFORMED_L4 = 15,       /* drop: truncated TCP/UDP/SCTP header, or IPv6 UDP checksum 0 */
  PR_FRAGMENT_UNTRACKED = 16, /* pass: later fragment with no tracked first fragment */
  PR_FRAGMENT_SCTP = 17,      /* drop: fragmented SCTP to a frontend (its CRC32c cannot be fixed per fragment) */
  PR_BAD_IMAGE = 18,          /* drop: an image entry points outside the image, or a family mismatch */
  PR_NO_IMAGE = 19,           /* pass: nothing attached */
  PR_ROUTED = 20,             /* pass: IPv6 routing header with segments left: not the final destination */
  PR_COUNT = 21
};

/* Event counters, after the per-reason ones. */
enum {
  C_CT_CREATED = 24,          /* conntrack flows created */
  C_CT_EVICTED = 25,          /* live conntrack entries evicted because their probe window was full */
  C_REPLY_NO_SLOT = 26,       /* rejects whose ICMP reply could not be written (no slot, or an ICMP error) */
  C_FRAG_TRACKED = 27,        /* first fragments remembered for their later fragments */
  SP_COUNTERS = 32
};

enum { T_TCP_SYN = 0, T_TCP_ESTABLISHED = 1, T_TCP_CLOSING = 2, T_UDP = 3, T_SCTP = 4, T_FRAGMENT = 5, SP_TIMEOUTS = 8 };

/* Packet-path state: the conntrack table and counters, in host-provided memory (no globals). */
struct sp_pctx {              /* 320 bytes */
  u32 ctx;                    /* offset of the sp_ctx (attached image, affinity table) */
  u32 ct_off, ct_mask, ct_seed;
  u32 timeout[SP_TIMEOUTS];   /* seconds, T_* */
  u32 sweep;                  /* the conntrack slot ct_sweep looks at next (it goes down the table) */
  u32 sweep_tick;             /* packets seen, modulo 2^32: one slot swept every SWEEP_EVERY (packet.c) */
  u32 pad[2];
  u64 counters[SP_COUNTERS];  /* PR_* then C_* */
};

/* Conntrack entry. A flow has two: the forward entry (client -> frontend, holds the state and the
 * backend) and the reply entry (backend -> client, names the frontend), each pointing at the other.
 * A fragment entry remembers the translation of a datagram's first fragment for its later ones.
 * A key has two windows of CT_PROBE slots, the second from another hash: an entry goes to the first free
 * slot of its first window, or when that has none to the first free slot of its second one, which its
 * first home slot counts (info bits 4-15); a lookup reads the second window only when that count is not
 * 0. An entry is only ever placed at the first free slot of a window, so no entry lies past a CT_EMPTY
 * slot of its window, and a lookup stops there. A removed entry therefore becomes CT_DEAD; the
 * sweep (ct_sweep) empties a dead slot again once no entry after it has its window through it, and
 * removes expired flows, so that a table that has seen many flows keeps its lookup misses short. */
enum { CT_EMPTY = 0, CT_FORWARD = 1, CT_REPLY = 2, CT_FRAGMENT = 3, CT_DEAD = 4 };
#define CT_TCP_SYN 1u         /* SYN seen from the client */
#define CT_TCP_REPLIED 2u     /* a reply seen: established */
#define CT_TCP_FIN 4u         /* FIN seen (either side): closing */
#define CT_TCP_RST 8u         /* RST seen (either side): closing */
struct sp_ct {                /* 80 bytes */
  u8 a[16];                   /* key: forward: client; reply: backend; fragment: source */
  u8 b[16];                   /* key: forward: frontend; reply: client; fragment: destination */
  u16 aport, bport;           /* key ports (fragment: the IP identification, high and low half) */
  u8 proto;
  u8 type;                    /* CT_*, part of the key */
  u8 tcp;                     /* CT_TCP_* (forward entry) */
  u8 dir;                     /* fragment: 0 = rewrite the destination, 1 = the source */
  u32 expires;                /* valid while now < expires (forward, fragment); a reply entry lives as long
                               * as the forward entry it points at */
  u8 nat[16];                 /* forward: backend; reply: frontend; fragment: the address to write */
  u16 nat_port;
  u16 info;                   /* bits 0-2: slots from the entry's home in its window to its own; bit 3
                               * (CT_SECOND): it sits in its second window; bits 4-15: entries whose first
                               * home is this slot that sit in their second window (whatever this slot holds) */
  u32 peer;                   /* index of the flow's other entry */
  u32 be_index;               /* forward: the backend's position in its list when last seen (a hint) */
  u32 revnat;                 /* rev-NAT index of the frontend */
  u32 gen;                    /* forward: the image generation its backend was last found in the list at */
};

#endif
