/* svcplane packet path: a service load balancer over raw IP packets, on the same image as select().
 *
 * Per packet (sp_process_batch): the fast path for the most common packets (fast_l4: TCP/UDP without
 * IPv4 options, IPv6 extension headers or fragmentation),
 * else parse (IPv4 with options, IPv6 with extension headers; everything read
 * is bounds-checked against the packet) -> later fragments: the translation their first fragment got ->
 * ICMP errors: translate the quoted flow -> TCP/UDP/SCTP to a frontend: conntrack hit (keep the backend
 * while it is in the list) or a new selection (select.h), DNAT -> otherwise a reply of a tracked flow:
 * reverse NAT -> otherwise pass untouched. Checksums are updated incrementally (RFC 1624), never
 * recomputed, except SCTP's CRC32c which covers the ports. Rules and their reasons: ARCHITECTURE.md,
 * "Packet path". Freestanding C11, no globals: the conntrack table and counters are in a host-provided
 * sp_pctx, time is an argument.
 */
#include "select.h"
#include "packet.h"

#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ICMPV6 58
#define IPPROTO_SCTP 132
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

#define CT_PROBE 8        /* slots of each of a key's two conntrack windows: O(1) whatever the load */
#define EXT_MAX 8         /* IPv6 extension headers walked before the packet counts as malformed */

/* ---- bytes and checksums ---- */

static inline u32 be16(const u8 *p) { return (u32)p[0] << 8 | p[1]; }
static inline u32 be32(const u8 *p) { return be16(p) << 16 | be16(p + 2); }
static inline void put16(u8 *p, u32 v) {
  p[0] = (u8)(v >> 8);
  p[1] = (u8)v;
}

/* Incremental checksum updates, RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). The one's-complement sum is
 * byte-order independent (RFC 1071 2.B) and 2^16 = 1 modulo 0xffff, so the words are loaded in the host's
 * byte order, 32 bits at a time (a 32-bit word counts as its two 16-bit halves), and the checksum is
 * stored in the host's order too: the bytes come out as a big-endian 16-bit computation would give them.
 * A delta is the sum of ~old + new over the replaced words, accumulated in 64 bits and folded when applied.
 * Every rewritten field starts at an even offset of the data its checksums cover. */
static inline u32 ld16n(const u8 *p) {
  u16 v;
  __builtin_memcpy(&v, p, 2);
  return v;
}
static inline void st16n(u8 *p, u32 v) {
  u16 x = (u16)v;
  __builtin_memcpy(p, &x, 2);
}
static inline void st32n(u8 *p, u32 v) { __builtin_memcpy(p, &v, 4); }

static inline u32 fold(u64 s) {
  s = (s & 0xffffffffu) + (s >> 32);
  s = (s & 0xffffu) + (s >> 16);
  s = (s & 0xffffu) + (s >> 16);
  return (u32)((s & 0xffffu) + (s >> 16));
}

/* Applies a delta to the checksum at `field`; returns the delta of the field's own change, for an
 * enclosing checksum (an ICMP error's, over a quoted header). */
static inline u64 csum_apply(u8 *field, u64 acc) {
  u32 old = ~ld16n(field) & 0xffffu;
  u32 now = ~fold(old + acc) & 0xffffu; /* acc < 2^40: no overflow */
  st16n(field, now);
  return (u64)old + now;
}

/* Writes `words` 32-bit words of `src` at `at`; returns the delta of the change. */
static inline u64 patch32(u8 *at, const u8 *src, u32 words) {
  u64 acc = 0;
  for (u32 i = 0; i < words; i++) {
    u32 o = ld32(at + 4 * i), n = ld32(src + 4 * i);
    acc += (u64)(u32)~o + n;
    st32n(at + 4 * i, n);
  }
  return acc;
}

/* Writes the 16-bit big-endian value `v` at `at`; returns the delta of the change. */
static inline u64 patch16(u8 *at, u32 v) {
  u32 o = ~ld16n(at) & 0xffffu;
  put16(at, v);
  return (u64)o + ld16n(at);
}

/* Internet checksum of n bytes (RFC 1071), starting from `acc`. */
static u32 csum_sum(u32 acc, const u8 *p, u32 n) {
  u32 i = 0;
  for (; i + 1 < n; i += 2) acc += be16(p + i);
  if (i < n) acc += (u32)p[i] << 8;
  return fold(acc);
}

/* CRC32c (Castagnoli, reflected 0x82F63B78) for SCTP's checksum (RFC 4960 appendix B). */
static const u32 crc32c_table[256] = {
  0x00000000u, 0xf26b8303u, 0xe13b70f7u, 0x1350f3f4u, 0xc79a971fu, 0x35f1141cu, 0x26a1e7e8u, 0xd4ca64ebu,
  0x8ad958cfu, 0x78b2dbccu, 0x6be22838u, 0x9989ab3bu, 0x4d43cfd0u, 0xbf284cd3u, 0xac78bf27u, 0x5e133c24u,
  0x105ec76fu, 0xe235446cu, 0xf165b798u, 0x030e349bu, 0xd7c45070u, 0x25afd373u, 0x36ff2087u, 0xc494a384u,
  0x9a879fa0u, 0x68ec1ca3u, 0x7bbcef57u, 0x89d76c54u, 0x5d1d08bfu, 0xaf768bbcu, 0xbc267848u, 0x4e4dfb4bu,
  0x20bd8edeu, 0xd2d60dddu, 0xc186fe29u, 0x33ed7d2au, 0xe72719c1u, 0x154c9ac2u, 0x061c6936u, 0xf477ea35u,
  0xaa64d611u, 0x580f5512u, 0x4b5fa6e6u, 0xb93425e5u, 0x6dfe410eu, 0x9f95c20du, 0x8cc531f9u, 0x7eaeb2fau,
  0x30e349b1u, 0xc288cab2u, 0xd1d83946u, 0x23b3ba45u, 0xf779deaeu, 0x05125dadu, 0x1642ae59u, 0xe4292d5au,
  0xba3a117eu, 0x4851927du, 0x5b016189u, 0xa96ae28au, 0x7da08661u, 0x8fcb0562u, 0x9c9bf696u, 0x6ef07595u,
  0x417b1dbcu, 0xb3109ebfu, 0xa0406d4bu, 0x522bee48u, 0x86e18aa3u, 0x748a09a0u, 0x67dafa54u, 0x95b17957u,
  0xcba24573u, 0x39c9c670u, 0x2a993584u, 0xd8f2b687u, 0x0c38d26cu, 0xfe53516fu, 0xed03a29bu, 0x1f682198u,
  0x5125dad3u, 0xa34e59d0u, 0xb01eaa24u, 0x42752927u, 0x96bf4dccu, 0x64d4cecfu, 0x77843d3bu, 0x85efbe38u,
  0xdbfc821cu, 0x2997011fu, 0x3ac7f2ebu, 0xc8ac71e8u, 0x1c661503u, 0xee0d9600u, 0xfd5d65f4u, 0x0f36e6f7u,
  0x61c69362u, 0x93ad1061u, 0x80fde395u, 0x72966096u, 0xa65c047du, 0x5437877eu, 0x4767748au, 0xb50cf789u,
  0xeb1fcbadu, 0x197448aeu, 0x0a24bb5au, 0xf84f3859u, 0x2c855cb2u, 0xdeeedfb1u, 0xcdbe2c45u, 0x3fd5af46u,
  0x7198540du, 0x83f3d70eu, 0x90a324fau, 0x62c8a7f9u, 0xb602c312u, 0x44694011u, 0x5739b3e5u, 0xa55230e6u,
  0xfb410cc2u, 0x092a8fc1u, 0x1a7a7c35u, 0xe811ff36u, 0x3cdb9bddu, 0xceb018deu, 0xdde0eb2au, 0x2f8b6829u,
  0x82f63b78u, 0x709db87bu, 0x63cd4b8fu, 0x91a6c88cu, 0x456cac67u, 0xb7072f64u, 0xa457dc90u, 0x563c5f93u,
  0x082f63b7u, 0xfa44e0b4u, 0xe9141340u, 0x1b7f9043u, 0xcfb5f4a8u, 0x3dde77abu, 0x2e8e845fu, 0xdce5075cu,
  0x92a8fc17u, 0x60c37f14u, 0x73938ce0u, 0x81f80fe3u, 0x55326b08u, 0xa759e80bu, 0xb4091bffu, 0x466298fcu,
  0x1871a4d8u, 0xea1a27dbu, 0xf94ad42fu, 0x0b21572cu, 0xdfeb33c7u, 0x2d80b0c4u, 0x3ed04330u, 0xccbbc033u,
  0xa24bb5a6u, 0x502036a5u, 0x4370c551u, 0xb11b4652u, 0x65d122b9u, 0x97baa1bau, 0x84ea524eu, 0x7681d14du,
  0x2892ed69u, 0xdaf96e6au, 0xc9a99d9eu, 0x3bc21e9du, 0xef087a76u, 0x1d63f975u, 0x0e330a81u, 0xfc588982u,
  0xb21572c9u, 0x407ef1cau, 0x532e023eu, 0xa145813du, 0x758fe5d6u, 0x87e466d5u, 0x94b49521u, 0x66df1622u,
  0x38cc2a06u, 0xcaa7a905u, 0xd9f75af1u, 0x2b9cd9f2u, 0xff56bd19u, 0x0d3d3e1au, 0x1e6dcdeeu, 0xec064eedu,
  0xc38d26c4u, 0x31e6a5c7u, 0x22b65633u, 0xd0ddd530u, 0x0417b1dbu, 0xf67c32d8u, 0xe52cc12cu, 0x1747422fu,
  0x49547e0bu, 0xbb3ffd08u, 0xa86f0efcu, 0x5a048dffu, 0x8ecee914u, 0x7ca56a17u, 0x6ff599e3u, 0x9d9e1ae0u,
  0xd3d3e1abu, 0x21b862a8u, 0x32e8915cu, 0xc083125fu, 0x144976b4u, 0xe622f5b7u, 0xf5720643u, 0x07198540u,
  0x590ab964u, 0xab613a67u, 0xb831c993u, 0x4a5a4a90u, 0x9e902e7bu, 0x6cfbad78u, 0x7fab5e8cu, 0x8dc0dd8fu,
  0xe330a81au, 0x115b2b19u, 0x020bd8edu, 0xf0605beeu, 0x24aa3f05u, 0xd6c1bc06u, 0xc5914ff2u, 0x37faccf1u,
  0x69e9f0d5u, 0x9b8273d6u, 0x88d28022u, 0x7ab90321u, 0xae7367cau, 0x5c18e4c9u, 0x4f48173du, 0xbd23943eu,
  0xf36e6f75u, 0x0105ec76u, 0x12551f82u, 0xe03e9c81u, 0x34f4f86au, 0xc69f7b69u, 0xd5cf889du, 0x27a40b9eu,
  0x79b737bau, 0x8bdcb4b9u, 0x988c474du, 0x6ae7c44eu, 0xbe2da0a5u, 0x4c4623a6u, 0x5f16d052u, 0xad7d5351u,};

static u32 crc32c(const u8 *p, u32 n) {
  u32 c = 0xffffffffu;
  for (u32 i = 0; i < n; i++) c = crc32c_table[(c ^ p[i]) & 0xffu] ^ (c >> 8);
  return ~c;
}

/* ---- parsing ---- */

/* A parsed packet: where its headers are, and its flow in the image's 16-byte address form. */
struct pkt {
  u8 *ip;
  u32 total;        /* bytes of the datagram (IPv4 total length / IPv6 40 + payload length) */
  u8 v6;
  u8 proto;         /* upper-layer protocol after any extension headers */
  u8 frag;          /* 0: not a fragment, 1: first fragment (more follow), 2: a later fragment */
  u8 alen;          /* 4 or 16: bytes of an address in the packet */
  u32 frag_id;
  u32 l4;           /* offset of the upper-layer header */
  u8 *saddr, *daddr;
  u8 src[16], dst[16];
  u32 sport, dport;
};

static inline void map_addr(u8 *out16, const u8 *a, u32 alen) {
  if (alen == 16) {
    __builtin_memcpy(out16, a, 16);
    return;
  }
  __builtin_memset(out16, 0, 10);
  out16[10] = 0xff;
  out16[11] = 0xff;
  __builtin_memcpy(out16 + 12, a, 4);
}

/* Walks IPv6 extension headers from `off` with next header `nh`, within `total` bytes; fills proto,
 * l4 and the fragment fields. Returns a PR_* drop/pass reason, or PR_COUNT when the walk succeeded. */
static u32 walk_ipv6(struct pkt *p, u32 off, u32 nh, u32 total) {
  for (u32 n = 0;; n++) {
    if (nh != 0 && nh != 43 && nh != 44 && nh != 51 && nh != 60) break;
    if (n == EXT_MAX || off + 8 > total) return PR_MALFORMED_EXT;
    const u8 *h = p->ip + off;
    u32 len;
    if (nh == 44) { /* Fragment: fixed 8 bytes */
      u32 fo = be16(h + 2);
      p->frag_id = be32(h + 4);
      len = 8;
      if ((fo & 0xfff8u) != 0) {
        p->frag = 2;
        p->proto = h[0];
        p->l4 = off + 8;
        return PR_COUNT; /* the rest is not a header */
      }
      if (fo & 1u) p->frag = 1;
    } else if (nh == 51) { /* Authentication Header: length in 4-byte units, minus 2 */
      len = ((u32)h[1] + 2) * 4;
    } else {
      len = ((u32)h[1] + 1) * 8;
      if (nh == 43 && h[3] != 0) return PR_ROUTED; /* segments left: we are not the final destination */
    }
    nh = h[0];
    off += len;
    if (off > total) return PR_MALFORMED_EXT;
  }
  p->proto = (u8)nh;
  p->l4 = off;
  return PR_COUNT;
}

static inline int is_v4_mapped(const u8 *a) { return ld32(a) == 0 && ld32(a + 4) == 0 && ld32(a + 8) == 0xffff0000u; }

/* Parses the IP header of `len` bytes at `ip`. Returns PR_COUNT when the packet is well-formed enough to
 * be handled, else the PR_* reason to drop (or pass) it with. `quoted`: an IP header quoted inside an
 * ICMP error, whose length fields describe the original packet, not the bytes at hand. */
static u32 parse_ip(struct pkt *p, u8 *ip, u32 len, int quoted) {
  p->ip = ip;
  p->frag = 0;
  p->frag_id = 0;
  if (len < 20) return PR_MALFORMED_IP;
  u32 version = ip[0] >> 4;
  if (version == 4) {
    u32 ihl = (ip[0] & 0xfu) * 4;
    u32 total = be16(ip + 2);
    if (ihl < 20 || ihl > len) return PR_MALFORMED_IP;
    if (quoted) total = len;
    else if (total < ihl || total > len) return PR_MALFORMED_IP;
    u32 fo = be16(ip + 6);
    p->frag_id = be16(ip + 4);
    if ((fo & 0x1fffu) != 0) p->frag = 2;
    else if (fo & 0x2000u) p->frag = 1;
    p->v6 = 0;
    p->alen = 4;
    p->total = total;
    p->proto = ip[9];
    p->l4 = ihl;
    p->saddr = ip + 12;
    p->daddr = ip + 16;
  } else if (version == 6) {
    if (len < 40) return PR_MALFORMED_IP;
    u32 total = 40 + be16(ip + 4);
    if (quoted) total = len;
    else if (total == 40 + 0 && ip[6] == 0) return PR_MALFORMED_IP; /* jumbogram (RFC 2675): unsupported */
    else if (total > len) return PR_MALFORMED_IP;
    /* IPv4-mapped addresses are not for the wire (RFC 4291 2.5.5.2); the image stores IPv4 that way, so
     * such a packet would otherwise match IPv4 frontends and flows. */
    if ((is_v4_mapped(ip + 8) || is_v4_mapped(ip + 24))) return PR_MALFORMED_IP;
    p->v6 = 1;
    p->alen = 16;
    p->total = total;
    p->saddr = ip + 8;
    p->daddr = ip + 24;
    u32 r = walk_ipv6(p, 40, ip[6], total);
    if (r != PR_COUNT) return r;
  } else {
    return PR_MALFORMED_IP;
  }
  map_addr(p->src, p->saddr, p->alen);
  map_addr(p->dst, p->daddr, p->alen);
  p->sport = p->dport = 0;
  return PR_COUNT;
}

static inline int is_l4(u32 proto) { return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP; }

/* Bytes of header a rewrite needs: ports and the checksum. */
static inline u32 l4_min(u32 proto) { return proto == IPPROTO_TCP ? 20 : proto == IPPROTO_UDP ? 8 : 12; }

/* Checks the TCP/UDP/SCTP header of a (non-quoted, not later-fragment) packet and reads its ports. */
static u32 parse_l4(struct pkt *p) {
  u32 avail = p->total - p->l4;
  if (avail < l4_min(p->proto)) return PR_MALFORMED_L4;
  const u8 *h = p->ip + p->l4;
  if (p->proto == IPPROTO_TCP) {
    u32 doff = (u32)(h[12] >> 4) * 4;
    if (doff < 20 || doff > avail) return PR_MALFORMED_L4;
  } else if (p->proto == IPPROTO_UDP) {
    u32 ulen = be16(h + 4);
    if (p->frag == 0 && (ulen < 8 || ulen > avail)) return PR_MALFORMED_L4;
    if (p->v6 && be16(h + 6) == 0) return PR_MALFORMED_L4; /* RFC 8200 8.1: zero UDP checksum over IPv6 */
  }
  p->sport = be16(h);
  p->dport = be16(h + 2);
  return PR_COUNT;
}

/* ---- rewriting ---- */

/* Replaces the source or destination address (16-byte image form) and, unless port is SP_NONE, the port
 * of a packet: IPv4 header checksum and TCP/UDP checksum updated incrementally (an IPv4 UDP checksum of 0
 * stays 0), SCTP's CRC32c recomputed. Returns the delta of every changed byte, for an enclosing ICMP
 * checksum when the packet is a quoted one (`quoted_len`: bytes available after the header). */
#define ALWAYS_INLINE inline __attribute__((always_inline))
static ALWAYS_INLINE u64 rewrite_inline(struct pkt *p, int dst, const u8 *addr16, u32 port, u32 l4_avail) {
  u8 *field = dst ? p->daddr : p->saddr;
  u64 addr_acc = p->v6 ? patch32(field, addr16, 4) : patch32(field, addr16 + 12, 1);
  u64 outer = addr_acc;
  if (!p->v6) outer += csum_apply(p->ip + 10, addr_acc);
  if (p->frag == 2) return outer; /* no upper-layer header in this fragment */
  u8 *h = p->ip + p->l4;
  u64 l4_acc = addr_acc; /* the pseudo-header covers the addresses */
  if (port != SP_NONE && l4_avail >= 4) {
    u64 d = patch16(h + (dst ? 2 : 0), port);
    l4_acc += d;
    outer += d;
  }
  if (p->proto == IPPROTO_TCP && l4_avail >= 18) {
    outer += csum_apply(h + 16, l4_acc);
  } else if (p->proto == IPPROTO_UDP && l4_avail >= 8 && ld16n(h + 6) != 0) {
    outer += csum_apply(h + 6, l4_acc);
    if (ld16n(h + 6) == 0) outer += patch16(h + 6, 0xffff); /* RFC 768: a computed 0 is sent as all ones */
  } else if (p->proto == IPPROTO_SCTP && port != SP_NONE && l4_avail == p->total - p->l4 && l4_avail >= 12) {
    u32 old = ld32(h + 8);
    st32n(h + 8, 0);
    u32 c = crc32c(h, l4_avail); /* stored little-endian, as Linux does */
    st32n(h + 8, old);
    outer += patch32(h + 8, (const u8 *)&c, 1);
  }
  return outer;
}

/* rewrite_inline out of line, for every caller but the established fast path (forward_nat_inline). */
static u64 rewrite(struct pkt *p, int dst, const u8 *addr16, u32 port, u32 l4_avail) {
  return rewrite_inline(p, dst, addr16, port, l4_avail);
}

/* ---- conntrack: bounded open addressing, per-instance seed, eviction of the soonest-expiring ---- */

struct ct_key {
  const u8 *a, *b;
  u32 aport, bport, proto, type;
  u32 home, hashed;           /* the key's hash, computed once (a miss is often followed by a claim) */
  u32 searched, stale;        /* set by a ct_find miss: the window holds no live entry of the key, and its
                               * expired one, if any, is at `stale` (SP_NONE: none) */
};

static inline struct sp_ct *ct_at(const struct sp_pctx *pc, u32 i) {
  return (struct sp_ct *)mem_at(pc->ct_off) + (i & pc->ct_mask);
}

static inline u64 ld64(const u8 *p) {
  u64 v;
  __builtin_memcpy(&v, p, 8);
  return v;
}

/* Ports and protocol as an entry stores them (bytes 32..36, little-endian); the type follows (byte 37). */
static inline u64 ct_ports(u32 aport, u32 bport, u32 proto) { return (u64)aport | (u64)bport << 16 | (u64)proto << 32; }

/* The key's ports, protocol and type as the entry stores them (bytes 32..37, little-endian). */
static inline u64 ct_tag(const struct ct_key *k) { return ct_ports(k->aport, k->bport, k->proto) | (u64)k->type << 40; }

/* Multiply-xorshift over the key's five 64-bit words, keyed by the per-instance seed (a table of
 * attacker-chosen flows cannot be aimed at one bucket without knowing it). */
static inline u64 ct_mix(u64 h, u64 w) {
  h = (h ^ w) * 0x9e3779b97f4a7c15ull;
  return h ^ (h >> 29);
}

/* The hash of a key given as the entry stores it: both addresses as two 64-bit words each, and the tag. */
static inline u64 ct_hash_addrs(const struct sp_pctx *pc, u64 a0, u64 a1, u64 b0, u64 b1) {
  u64 h = 0x6a09e667f3bcc909ull ^ pc->ct_seed;
  h = ct_mix(h, a0);
  h = ct_mix(h, a1);
  h = ct_mix(h, b0);
  return ct_mix(h, b1);
}
static inline u32 ct_hash_tag(u64 h, u64 tag) { return (u32)((ct_mix(h, tag) * 0xbf58476d1ce4e5b9ull) >> 32); }
static inline u32 ct_hash_words(const struct sp_pctx *pc, u64 a0, u64 a1, u64 b0, u64 b1, u64 tag) {
  return ct_hash_tag(ct_hash_addrs(pc, a0, a1, b0, b1), tag);
}

static inline u32 ct_hash(const struct sp_pctx *pc, const struct ct_key *k) {
  return ct_hash_words(pc, ld64(k->a), ld64(k->a + 8), ld64(k->b), ld64(k->b + 8), ct_tag(k));
}

/* An entry's tag: its ports, protocol and type (bytes 32..37), as ct_tag makes a key's. */
static inline u64 ct_entry_tag(const struct sp_ct *e) { return ld64((const u8 *)e + 32) & 0xffffffffffffull; }

static inline int ct_match_words(const struct sp_ct *e, u64 a0, u64 a1, u64 b0, u64 b1, u64 tag) {
  const u8 *b = (const u8 *)e;
  return ct_entry_tag(e) == tag && ld64(b) == a0 && ld64(b + 8) == a1 && ld64(b + 16) == b0 && ld64(b + 24) == b1;
}

static inline int ct_match_tag(const struct sp_ct *e, const struct ct_key *k, u64 tag) {
  return ct_match_words(e, ld64(k->a), ld64(k->a + 8), ld64(k->b), ld64(k->b + 8), tag);
}

/* The other entry of a flow, when it still points back at `e` (it may have been evicted and reused). */
static struct sp_ct *ct_peer(const struct sp_pctx *pc, const struct sp_ct *e, u32 index) {
  if (e->type != CT_FORWARD && e->type != CT_REPLY) return 0;
  struct sp_ct *p = ct_at(pc, e->peer);
  if (p->peer != index || p->type == e->type || (p->type != CT_FORWARD && p->type != CT_REPLY)) return 0;
  return p;
}

/* When an entry expires: a reply entry lives as long as its forward entry (only that one is refreshed,
 * so a forward packet touches one entry). */
static inline u32 ct_expires(const struct sp_pctx *pc, const struct sp_ct *e, u32 index) {
  if (e->type != CT_REPLY) return e->expires;
  const struct sp_ct *f = ct_peer(pc, e, index);
  return f ? f->expires : 0;
}

static inline int ct_live(const struct sp_pctx *pc, const struct sp_ct *e, u32 index, u32 now) {
  return e->type != CT_EMPTY && e->type != CT_DEAD && now < ct_expires(pc, e, index);
}

static inline u32 ct_home(const struct sp_pctx *pc, struct ct_key *k) {
  if (!k->hashed) {
    k->home = ct_hash(pc, k);
    k->hashed = 1;
  }
  return k->home;
}

/* sp_ct.info (packet.h): the entry's distance from the home of its window, whether that is its second
 * window, and the count of entries of this first home that sit in their second window. */
#define CT_DIST_MASK 7u
#define CT_SECOND 8u
#define CT_OVERFLOW_ONE 16u
#define CT_OVERFLOW_MAX 0xfff0u /* saturates: 4095 entries of one first home in their second windows */

/* A key's second window starts at another hash of its hash (`home`, 32 bits): independent of the first
 * window's slot, so keys crowding one stretch of the table spread out from it. */
static inline u32 ct_home2(u32 home) { return (u32)(((u64)home * 0x9e3779b97f4a7c15ull) >> 32); }

/* Entries whose first home is slot `home` sit in their second window. */
static inline int ct_overflowed(const struct sp_pctx *pc, u32 home) { return ct_at(pc, home)->info >= CT_OVERFLOW_ONE; }

static inline void ct_overflow_count(struct sp_pctx *pc, u32 home, int up) {
  struct sp_ct *h = ct_at(pc, home);
  if (up) {
    if (h->info < CT_OVERFLOW_MAX) h->info = (u16)(h->info + CT_OVERFLOW_ONE);
  } else if (h->info >= CT_OVERFLOW_ONE) {
    h->info = (u16)(h->info - CT_OVERFLOW_ONE);
  }
}

/* The first entry of a key (given as its words) in the window from `base`, or 0; its slot in *index. */
static ALWAYS_INLINE struct sp_ct *ct_window(const struct sp_pctx *pc, u32 base, u64 a0, u64 a1, u64 b0, u64 b1,
                                             u64 tag, u32 *index) {
  for (u32 i = 0; i < CT_PROBE; i++) {
    u32 at = (base + i) & pc->ct_mask;
    struct sp_ct *e = ct_at(pc, at);
    if (e->type == CT_EMPTY) return 0; /* nothing of the key lies past it in this window (packet.h) */
    if (ct_match_words(e, a0, a1, b0, b1, tag)) {
      *index = at;
      return e;
    }
  }
  return 0;
}

/* The second window, out of line (only entries of crowded first homes are there): the slot of the key's
 * first entry there, or SP_NONE. A slot, not a pointer to one: the caller's index stays a local. */
static __attribute__((noinline)) u32 ct_second(const struct sp_pctx *pc, u32 home, u64 a0, u64 a1, u64 b0, u64 b1,
                                               u64 tag) {
  u32 at = SP_NONE;
  return ct_window(pc, ct_home2(home), a0, a1, b0, b1, tag, &at) ? at : SP_NONE;
}

/* The first entry of a key (given as its words) in its windows, or 0; its slot in *index. The second
 * window is read only when entries of this first home sit in theirs. */
static ALWAYS_INLINE struct sp_ct *ct_first(const struct sp_pctx *pc, u32 home, u64 a0, u64 a1, u64 b0, u64 b1,
                                            u64 tag, u32 *index) {
  struct sp_ct *e = ct_window(pc, home, a0, a1, b0, b1, tag, index);
  if (e || !ct_overflowed(pc, home)) return e;
  u32 at = ct_second(pc, home, a0, a1, b0, b1, tag);
  if (at == SP_NONE) return 0;
  *index = at;
  return ct_at(pc, at);
}

/* The key's live entry, or 0: the first entry of the key decides; when it has expired, k->stale says
 * where it is (for the claim that usually follows). */
static struct sp_ct *ct_find(const struct sp_pctx *pc, struct ct_key *k, u32 now, u32 *index) {
  u32 home = ct_home(pc, k), at = SP_NONE;
  k->searched = 1;
  k->stale = SP_NONE;
  struct sp_ct *e = ct_first(pc, home, ld64(k->a), ld64(k->a + 8), ld64(k->b), ld64(k->b + 8), ct_tag(k), &at);
  if (!e) return 0;
  if (!ct_live(pc, e, at, now)) {
    k->stale = at;
    return 0;
  }
  *index = at;
  return e;
}

/* An entry in its second window leaves the count of its first home (the hash of its key). */
static __attribute__((noinline)) void ct_leave_second(struct sp_pctx *pc, const struct sp_ct *e) {
  const u8 *b = (const u8 *)e;
  ct_overflow_count(pc, ct_hash_words(pc, ld64(b), ld64(b + 8), ld64(b + 16), ld64(b + 24), ct_entry_tag(e)), 0);
}

/* Marks an entry dead; one in its second window leaves its first home's count. */
static inline void ct_mark_dead(struct sp_pctx *pc, struct sp_ct *e) {
  if (e->type == CT_EMPTY || e->type == CT_DEAD) return;
  if (e->info & CT_SECOND) ct_leave_second(pc, e);
  e->type = CT_DEAD;
}

static inline void ct_kill(struct sp_pctx *pc, struct sp_ct *e, u32 index) {
  struct sp_ct *p = ct_peer(pc, e, index);
  if (p) ct_mark_dead(pc, p);
  ct_mark_dead(pc, e);
}

/* What a claim has found so far: the key's own entry, the first free slot, the live entry closest to
 * expiry, and for each whether it is in the key's second window. */
struct ct_scan {
  u32 own, free_at, old_at, old_exp;
  u8 own2, free2, old2;
};

/* One window of a claim (base: its home; second: 1 for the key's second window). Once a free slot is
 * known, only the key's own entry could beat it, so a later window is read for that alone. */
static ALWAYS_INLINE void ct_scan_window(const struct sp_pctx *pc, const struct ct_key *k, u64 tag, u32 base,
                                         u32 second, u32 avoid, u32 now, struct ct_scan *s) {
  for (u32 i = 0; i < CT_PROBE; i++) {
    u32 at = (base + i) & pc->ct_mask;
    if (at == avoid) continue;
    struct sp_ct *e = ct_at(pc, at);
    if (e->type == CT_EMPTY) { /* free, and nothing of the key lies past it in this window */
      if (s->free_at == SP_NONE) {
        s->free_at = at;
        s->free2 = (u8)second;
      }
      return;
    }
    if (e->type == CT_DEAD) {
      if (s->free_at == SP_NONE) {
        s->free_at = at;
        s->free2 = (u8)second;
      }
      if (k->searched) return;
      continue;
    }
    if (!k->searched && ct_match_tag(e, k, tag)) {
      s->own = at;
      s->own2 = (u8)second;
      return;
    }
    if (s->free_at != SP_NONE) continue;
    u32 exp = ct_expires(pc, e, at);
    if (exp <= now) {
      s->free_at = at;
      s->free2 = (u8)second;
      if (k->searched) return;
    } else if (s->old_at == SP_NONE || exp < s->old_exp) {
      s->old_at = at;
      s->old_exp = exp;
      s->old2 = (u8)second;
    }
  }
}

/* A slot for key `k`: its own entry, else the first free (empty, dead or expired) one of its first
 * window, else of its second window, else (both are full) the live entry of the two closest to expiry,
 * evicted with its peer and counted. Never the slot `avoid`. An entry's expiry (a reply entry's is its
 * forward entry's) is read only while no free slot is known. */
static struct sp_ct *ct_claim(struct sp_pctx *pc, struct ct_key *k, u32 now, u32 avoid, u32 *index) {
  u32 home = ct_home(pc, k);
  u64 tag = ct_tag(k);
  struct ct_scan s = {SP_NONE, SP_NONE, SP_NONE, 0xffffffffu, 0, 0, 0};
  /* After a ct_find miss the key's own entry is known (expired, or absent): the first free slot wins. */
  if (k->searched && k->stale != avoid) {
    s.own = k->stale;
    s.own2 = (ct_at(pc, s.own)->info & CT_SECOND) != 0;
  } else {
    /* the second window: for a slot when the first has no free one; for the key's own entry when
     * entries of this home sit there and the key was not looked up (one loop: one copy of the scan) */
    for (u32 w = 0; w < 2; w++) {
      if (w == 1 && (s.own != SP_NONE || (s.free_at != SP_NONE && (k->searched || !ct_overflowed(pc, home))))) break;
      ct_scan_window(pc, k, tag, w ? ct_home2(home) : home, w, avoid, now, &s);
    }
  }
  u32 vi = s.old_at, second = s.old2;
  if (s.own != SP_NONE) {
    vi = s.own;
    second = s.own2;
  } else if (s.free_at != SP_NONE) {
    vi = s.free_at;
    second = s.free2;
  }
  if (vi == SP_NONE) return 0; /* only when the table is smaller than the window */
  struct sp_ct *victim = ct_at(pc, vi);
  if (s.own == SP_NONE && s.free_at == SP_NONE) pc->counters[C_CT_EVICTED]++;
  if (victim->type != CT_EMPTY) ct_kill(pc, victim, vi);
  __builtin_memcpy(victim->a, k->a, 16);
  __builtin_memcpy(victim->b, k->b, 16);
  victim->aport = (u16)k->aport;
  victim->bport = (u16)k->bport;
  victim->proto = (u8)k->proto;
  victim->type = (u8)k->type;
  victim->tcp = 0;
  victim->dir = 0;
  /* this slot's own count (bits 4-15) stays; then the key's first home counts it if it went second */
  if (!second) {
    victim->info = (u16)((victim->info & ~(CT_DIST_MASK | CT_SECOND)) | ((vi - home) & pc->ct_mask));
  } else {
    victim->info = (u16)((victim->info & ~CT_DIST_MASK) | ((vi - ct_home2(home)) & pc->ct_mask) | CT_SECOND);
    ct_overflow_count(pc, home, 1);
  }
  victim->peer = SP_NONE;
  victim->be_index = 0;
  victim->revnat = SP_NONE;
  victim->gen = 0;
  *index = vi;
  return victim;
}

/* Can slot `s` (dead) be empty again? Only when no entry after it has its window through it: an entry at
 * s + j has its home at or before s when its distance is j or more. Entries past an empty slot cannot
 * (no entry lies past an empty slot of its window), nor can dead ones matter. */
static int ct_clear_of(const struct sp_pctx *pc, u32 s) {
  for (u32 j = 1; j < CT_PROBE; j++) {
    const struct sp_ct *t = ct_at(pc, s + j);
    if (t->type == CT_EMPTY) return 1;
    if (t->type != CT_DEAD && (t->info & CT_DIST_MASK) >= j) return 0;
  }
  return 1;
}

/* The sweep, so that a table that has seen many flows keeps its lookup misses short: after every
 * SWEEP_EVERY-th packet it looks at one slot, going down the table from where it stopped (pctx.sweep), so
 * a table of N entries is swept once every SWEEP_EVERY x N packets. An expired forward or fragment entry
 * is removed (a forward entry with its reply entry); a dead slot that no window runs through is emptied.
 * Going down the table empties a run of dead slots that ends at an empty one in one pass.
 * It changes where later entries go, never what a packet gets: an expired entry is no flow, and every
 * entry a packet touched is live at its batch's time. It counts packets, not batches, so the reference
 * model does the same whatever the batches. An entry found expired stays gone should a later batch come
 * with an earlier time. Every slot swept is a cache line read: one slot per packet took established
 * flows from 33.5 to 38 ns (bench:packet's small table, wasm). */
#define SWEEP_EVERY 8u
static inline void ct_sweep(struct sp_pctx *pc, u32 now) {
  if (++pc->sweep_tick % SWEEP_EVERY != 0) return;
  u32 s = pc->sweep & pc->ct_mask;
  pc->sweep = (s - 1) & pc->ct_mask;
  struct sp_ct *e = ct_at(pc, s);
  if (e->type == CT_EMPTY) return;
  if ((e->type == CT_FORWARD || e->type == CT_FRAGMENT) && e->expires <= now) ct_kill(pc, e, s);
  if (e->type == CT_DEAD && ct_clear_of(pc, s)) e->type = CT_EMPTY; /* info stays: bits 4-15 count for this slot */
}

static inline u32 ct_expiry(u32 now, u32 timeout) {
  u32 t = now + timeout;
  return t < now ? 0xffffffffu : t;
}

/* TCP state from this packet's flags (`from_client`: the forward direction), then the timeout it gives. */
static u32 ct_timeout(const struct sp_pctx *pc, struct sp_ct *fwd, const struct pkt *p, int from_client) {
  if (p->proto == IPPROTO_UDP) return pc->timeout[T_UDP];
  if (p->proto == IPPROTO_SCTP) return pc->timeout[T_SCTP];
  if (p->frag != 2 && p->proto == IPPROTO_TCP) {
    u32 flags = p->ip[p->l4 + 13];
    if (flags & TCP_RST) fwd->tcp |= CT_TCP_RST;
    if (flags & TCP_FIN) fwd->tcp |= CT_TCP_FIN;
    if (from_client && (flags & TCP_SYN)) fwd->tcp |= CT_TCP_SYN;
    if (!from_client) fwd->tcp |= CT_TCP_REPLIED;
  }
  if (fwd->tcp & (CT_TCP_FIN | CT_TCP_RST)) return pc->timeout[T_TCP_CLOSING];
  if (fwd->tcp & CT_TCP_REPLIED) return pc->timeout[T_TCP_ESTABLISHED];
  return pc->timeout[T_TCP_SYN];
}

/* Refreshes a flow after a packet in either direction (its reply entry follows the forward entry). */
static void ct_touch(struct sp_pctx *pc, struct sp_ct *fwd, const struct pkt *p, int from_client, u32 now) {
  fwd->expires = ct_expiry(now, ct_timeout(pc, fwd, p, from_client));
}

/* The protocol part of a datagram's identity: IPv4 fragments each carry it (RFC 791); IPv6 identifies a
 * datagram by source, destination and identification only (RFC 8200 4.5), and the next header a later
 * fragment names need not be the first fragment's upper layer (extension headers may follow). */
static inline u32 frag_proto(const struct pkt *p) { return p->v6 ? 0 : p->proto; }

/* Remembers a first fragment's translation for the later fragments of its datagram (which carry no
 * ports): keyed by the addresses they will arrive with, the IP identification and the protocol. */
static void frag_track(struct sp_pctx *pc, const struct pkt *p, const u8 *src16, const u8 *dst16, int rewrite_src,
                       const u8 *nat16, u32 flow_entry, u32 now) {
  struct ct_key k = {src16, dst16, p->frag_id >> 16, p->frag_id & 0xffffu, frag_proto(p), CT_FRAGMENT, 0, 0, 0, 0};
  u32 idx;
  struct sp_ct *e = ct_claim(pc, &k, now, flow_entry, &idx); /* never the flow's own entry */
  if (!e) return;
  __builtin_memcpy(e->nat, nat16, 16);
  e->nat_port = 0;
  e->dir = (u8)rewrite_src;
  e->expires = ct_expiry(now, pc->timeout[T_FRAGMENT]);
  pc->counters[C_FRAG_TRACKED]++;
}

/* ---- verdicts ---- */

static inline void set_verdict(struct sp_pkt *d, u32 v, u32 reason) {
  d->verdict = (u8)v;
  d->reason = (u8)reason;
}

/* Would an ICMP error to this source be allowed (RFC 1122 3.2.2, RFC 4443 2.4: not to a non-unicast)? */
static int unicast_source(const struct pkt *p) {
  const u8 *s = p->saddr;
  if (!p->v6) {
    if (s[0] >= 224 || (s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0)) return 0;
    return 1;
  }
  if (s[0] == 0xff) return 0;
  for (u32 i = 0; i < 16; i++)
    if (s[i]) return 1;
  return 0;
}

/* Reject: writes an ICMP "port unreachable" from the frontend address to the client into the reply slot,
 * quoting the packet as received (kube-proxy's REJECT target: icmp-port-unreachable, for every protocol;
 * Cilium answers services without backends the same way). */
static void write_reject(struct sp_pctx *pc, struct sp_pkt *d, const struct pkt *p) {
  u32 hl = p->v6 ? 40 : 20;
  u32 max = p->v6 ? SP_REPLY_MAX : 576;
  if (d->reply_off == 0 || !in_memory(d->reply_off, SP_REPLY_MAX) || !unicast_source(p)) {
    pc->counters[C_REPLY_NO_SLOT]++;
    return;
  }
  u8 *o = mem_at(d->reply_off);
  u32 quote = p->total < max - hl - 8 ? p->total : max - hl - 8;
  u32 icmp_len = 8 + quote;
  __builtin_memset(o, 0, hl + 8);
  if (!p->v6) {
    o[0] = 0x45;
    put16(o + 2, hl + icmp_len);
    o[8] = 64;
    o[9] = IPPROTO_ICMP;
    __builtin_memcpy(o + 12, p->daddr, 4);
    __builtin_memcpy(o + 16, p->saddr, 4);
    put16(o + 10, ~csum_sum(0, o, 20) & 0xffffu);
    o[20] = 3; /* destination unreachable */
    o[21] = 3; /* port unreachable */
  } else {
    o[0] = 0x60;
    put16(o + 4, icmp_len);
    o[6] = IPPROTO_ICMPV6;
    o[7] = 64;
    __builtin_memcpy(o + 8, p->daddr, 16);
    __builtin_memcpy(o + 24, p->saddr, 16);
    o[40] = 1; /* destination unreachable */
    o[41] = 4; /* port unreachable */
  }
  __builtin_memcpy(o + hl + 8, p->ip, quote);
  u32 acc = 0;
  if (p->v6) { /* pseudo-header: addresses, upper-layer length, next header */
    acc = csum_sum(acc, o + 8, 32);
    acc += icmp_len + IPPROTO_ICMPV6;
  }
  put16(o + hl + 2, ~csum_sum(acc, o + hl, icmp_len) & 0xffffu);
  d->reply_len = (u16)(hl + icmp_len);
}

/* ---- the three kinds of packets ---- */

/* A later fragment: translated like its first fragment, if that one was seen. */
static void later_fragment(struct sp_pctx *pc, struct sp_pkt *d, struct pkt *p, u32 now) {
  struct ct_key k = {p->src, p->dst, p->frag_id >> 16, p->frag_id & 0xffffu, frag_proto(p), CT_FRAGMENT, 0, 0, 0, 0};
  u32 idx;
  struct sp_ct *e = ct_find(pc, &k, now, &idx);
  if (!e) return set_verdict(d, PV_PASS, PR_FRAGMENT_UNTRACKED);
  rewrite(p, !e->dir, e->nat, SP_NONE, 0);
  set_verdict(d, e->dir ? PV_REVERSE : PV_FORWARD, e->dir ? PR_FRAGMENT_REVERSE : PR_FRAGMENT_FORWARD);
}

/* The backend a flow's entry names, if it is still in list `l`: its position is a hint, checked. */
static u32 list_find(const struct view *v, const struct sp_list *l, struct sp_ct *e) {
  return backend_find((const struct sp_backend *)(v->base + l->be_off), l->be_count, e->nat, e->nat_port, &e->be_index);
}

/* Is the flow's backend among the service's terminating endpoints that keep their flows (LIST_KEEP)?
 * Such a backend receives no new flows, but established ones stay, as Cilium keeps terminating backends
 * until they leave the EndpointSlice. */
static int kept(struct view *v, const struct sp_service *svc, const struct sp_ct *e) {
  u32 k = svc->list_keep;
  if (k == 0 || k > svc->list_count) return 0;
  const struct sp_list *l = (const struct sp_list *)(v->base + svc->list_off) + (k - 1);
  if (l->kind != LIST_KEEP || l->be_off % 4 != 0 || !in_image(v, l->be_off, (u64)l->be_count * sizeof(struct sp_backend)))
    return 0;
  u32 hint = 0; /* the flow's hint is its position in the selection list, not in this one */
  return backend_find((const struct sp_backend *)(v->base + l->be_off), l->be_count, e->nat, e->nat_port, &hint) != SP_NONE;
}

/* Creates (or re-points) the reply entry of forward entry `fwd`: backend -> client, naming the frontend. */
static void ct_link_reply(struct sp_pctx *pc, struct sp_ct *fwd, u32 fwd_index, u32 now) {
  struct sp_ct *old = fwd->peer == SP_NONE ? 0 : ct_peer(pc, fwd, fwd_index); /* none for a new flow */
  if (old) ct_mark_dead(pc, old);
  struct ct_key k = {fwd->nat, fwd->a, fwd->nat_port, fwd->aport, fwd->proto, CT_REPLY, 0, 0, 0, 0};
  u32 ri;
  struct sp_ct *r = ct_claim(pc, &k, now, fwd_index, &ri);
  fwd->peer = ri;
  if (!r) return;
  __builtin_memcpy(r->nat, fwd->b, 16);
  r->nat_port = fwd->bport;
  r->peer = fwd_index;
  r->revnat = fwd->revnat;
  r->expires = 0; /* unused: a reply entry lives as long as its forward entry */
}

static inline int tcp_port_reuse(const struct sp_ct *e, const struct pkt *p) {
  return p->proto == IPPROTO_TCP && (e->tcp & (CT_TCP_FIN | CT_TCP_RST)) &&
         (p->ip[p->l4 + 13] & (TCP_SYN | TCP_ACK)) == TCP_SYN;
}

/* DNAT of a packet of forward entry `e` towards its backend, then the entry's state and expiry. Inlined
 * into the established fast path, where what the packet is (IPv4, not a fragment) is known and the
 * rewrite folds to the few stores it needs; out of line (forward_nat) everywhere else. */
static ALWAYS_INLINE void forward_nat_inline(struct sp_pctx *pc, struct sp_pkt *d, struct pkt *p, struct sp_ct *e,
                                             u32 fi, u32 reason, u32 now) {
  rewrite_inline(p, 1, e->nat, e->nat_port, p->total - p->l4);
  ct_touch(pc, e, p, 1, now);
  d->revnat = e->revnat;
  d->ct = fi;
  set_verdict(d, PV_FORWARD, reason);
  if (p->frag == 1) frag_track(pc, p, p->src, p->dst, 0, e->nat, fi, now); /* p->dst: still as received */
}

static void forward_nat(struct sp_pctx *pc, struct sp_pkt *d, struct pkt *p, struct sp_ct *e, u32 fi, u32 reason,
                        u32 now) {
  forward_nat_inline(pc, d, p, e, fi, reason, now);
}

/* Reverse NAT of a packet of reply entry `re` (slot ri) whose forward entry is `fwd`: the source back to
 * the frontend, then the flow's state and expiry (kept in the forward entry). */
static ALWAYS_INLINE void reverse_nat_inline(struct sp_pctx *pc, struct sp_pkt *d, struct pkt *p, const struct sp_ct *re,
                                             u32 ri, struct sp_ct *fwd, u32 now) {
  rewrite_inline(p, 0, re->nat, re->nat_port, p->total - p->l4);
  ct_touch(pc, fwd, p, 0, now);
  d->revnat = re->revnat;
  d->ct = re->peer & pc->ct_mask; /* the slot ct_peer read: an entry's index is masked wherever it is used */
  set_verdict(d, PV_REVERSE, PR_REVERSE);
  if (p->frag == 1) frag_track(pc, p, p->src, p->dst, 1, re->nat, ri, now);
}

/* reverse_nat_inline out of line, for the whole path (the fast path inlines it). */
static void reverse_nat(struct sp_pctx *pc, struct sp_pkt *d, struct pkt *p, const struct sp_ct *re, u32 ri,
                        struct sp_ct *fwd, u32 now) {
  reverse_nat_inline(pc, d, p, re, ri, fwd, now);
}

/* What the fast path (fast_l4) looked up before handing a packet to l4_packet: ct_find's answer for the
 * packet's forward key, and the frontend the packet is addressed to, when it got that far. */
struct ct_lookup {
  struct sp_ct *e;            /* the live entry, or 0 */
  u32 index;                  /* its slot */
  u32 home, stale;            /* the key's hash; the slot of its expired entry (SP_NONE: none) when e is 0 */
  const struct sp_frontend *fe; /* the frontend, when looked up (else 0: l4_packet looks it up) */
  u32 fe_index;
};

/* TCP, UDP or SCTP. `gen` is the image generation this batch runs at. `pre`: what fast_l4 looked up
 * already (else 0). */
static void l4_packet(struct sp_pctx *pc, const struct sp_ctx *ctx, struct view *v, struct sp_pkt *d, struct pkt *p,
                      u32 gen, u32 now, const struct ct_lookup *pre) {
  /* Conntrack first, as Cilium's: a flow whose backend was found in its list at this very generation of
   * the tables (nothing was published since) keeps it with no other lookup: blocks are immutable and every
   * publication bumps the generation. */
  struct ct_key k = {p->src, p->dst, p->sport, p->dport, p->proto, CT_FORWARD, 0, 0, 0, 0};
  u32 fi = SP_NONE;
  struct sp_ct *e;
  if (pre) { /* as ct_find leaves the key and its answer */
    k.home = pre->home;
    k.hashed = 1;
    k.searched = 1;
    k.stale = pre->stale;
    e = pre->e;
    fi = pre->index;
  } else {
    e = ct_find(pc, &k, now, &fi);
  }
  if (e && e->gen == gen && !tcp_port_reuse(e, p) && !(p->proto == IPPROTO_SCTP && p->frag))
    return forward_nat(pc, d, p, e, fi, PR_ESTABLISHED, now);

  struct sp_flow f;
  __builtin_memcpy(f.src, p->src, 16);
  __builtin_memcpy(f.dst, p->dst, 16);
  f.sport = (u16)p->sport;
  f.dport = (u16)p->dport;
  f.proto = p->proto;
  struct sp_result r;
  result_reset(&r);
  const struct sp_frontend *fe = 0;
  const struct sp_service *svc = 0;
  const struct sp_list *l;
  if (pre && pre->fe) {
    fe = pre->fe;
    l = select_list_fe(v, &f, &r, fe, pre->fe_index, &svc);
  } else {
    l = select_list(v, &f, &r, &fe, &svc);
  }

  if (r.frontend == SP_NONE) { /* not a frontend: a reply of a tracked flow, or nothing of ours */
    struct ct_key rk = {p->src, p->dst, p->sport, p->dport, p->proto, CT_REPLY, 0, 0, 0, 0};
    u32 ri;
    struct sp_ct *re = ct_find(pc, &rk, now, &ri);
    struct sp_ct *fwd = re ? ct_peer(pc, re, ri) : 0;
    if (!fwd) return set_verdict(d, PV_PASS, PR_NOT_SERVICE);
    if (p->proto == IPPROTO_SCTP && p->frag) return set_verdict(d, PV_DROP, PR_FRAGMENT_SCTP);
    return reverse_nat(pc, d, p, re, ri, fwd, now);
  }

  d->revnat = fe->revnat;
  if (!l) {
    /* No endpoint takes new flows; a flow established to a terminating endpoint keeps it all the same. */
    if (e && (r.reason == R_NO_ENDPOINTS || r.reason == R_NO_LOCAL_ENDPOINTS) && !tcp_port_reuse(e, p) &&
        !(p->proto == IPPROTO_SCTP && p->frag) && kept(v, svc, e)) {
      e->gen = gen;
      return forward_nat(pc, d, p, e, fi, PR_ESTABLISHED, now);
    }
    if (r.verdict == V_REJECT) {
      write_reject(pc, d, p);
      return set_verdict(d, PV_REJECT, PR_NO_ENDPOINTS);
    }
    return set_verdict(d, PV_DROP, r.reason == R_SOURCE_RANGE         ? PR_SOURCE_RANGE
                                   : r.reason == R_NO_LOCAL_ENDPOINTS ? PR_NO_LOCAL_ENDPOINTS
                                                                      : PR_BAD_IMAGE);
  }
  if (p->proto == IPPROTO_SCTP && p->frag) return set_verdict(d, PV_DROP, PR_FRAGMENT_SCTP);

  u32 reason = PR_ESTABLISHED;
  if (e && tcp_port_reuse(e, p)) reason = PR_RESELECTED; /* a new connection reusing a closing one's port */
  else if (e && list_find(v, l, e) == SP_NONE && !kept(v, svc, e)) reason = PR_RESELECTED; /* its backend is gone */
  if (!e || reason == PR_RESELECTED) {
    select_backend(ctx, v, svc, l, &f, &r, now);
    if (r.verdict != V_FORWARD) return set_verdict(d, PV_DROP, PR_BAD_IMAGE);
    const struct sp_backend *be = (const struct sp_backend *)(v->base + r.backend);
    if (!(svc->flags & SVC_F_IPV6) != !p->v6 || is_v4_mapped(be->addr) == p->v6) /* family mismatch */
      return set_verdict(d, PV_DROP, PR_BAD_IMAGE);
    if (!e) {
      e = ct_claim(pc, &k, now, SP_NONE, &fi);
      if (!e) return set_verdict(d, PV_DROP, PR_BAD_IMAGE);
      reason = r.reason == R_AFFINITY ? PR_NEW_AFFINITY : PR_NEW;
      pc->counters[C_CT_CREATED]++;
    } else {
      e->tcp = 0;
    }
    __builtin_memcpy(e->nat, be->addr, 16);
    e->nat_port = be->port;
    e->be_index = (r.backend - l->be_off) / (u32)sizeof(struct sp_backend);
    e->revnat = fe->revnat;
    e->expires = now + 1; /* refreshed by ct_touch in forward_nat */
    ct_link_reply(pc, e, fi, now);
  }
  e->gen = gen;
  forward_nat(pc, d, p, e, fi, reason, now);
}

static int icmp_is_error(u32 v6, u32 type) {
  return v6 ? (type >= 1 && type <= 4) : (type == 3 || type == 11 || type == 12);
}

/* An ICMP error quoting a packet of a translated flow (RFC 5508 / RFC 3022 behaviour): the quoted header
 * is translated back the way its flow was, and so is the outer address that names the translated end. */
static void icmp_packet(struct sp_pctx *pc, struct sp_pkt *d, struct pkt *p, u32 now) {
  u32 avail = p->total - p->l4;
  u8 *icmp = p->ip + p->l4;
  if (avail < 8) return set_verdict(d, PV_DROP, PR_MALFORMED_L4);
  if (p->frag != 0 || !icmp_is_error(p->v6, icmp[0])) return set_verdict(d, PV_PASS, PR_NOT_SERVICE);
  struct pkt in;
  if (parse_ip(&in, icmp + 8, avail - 8, 1) != PR_COUNT || in.v6 != p->v6 || !is_l4(in.proto) || in.frag == 2 ||
      in.total < in.l4 + 4)
    return set_verdict(d, PV_PASS, PR_NOT_SERVICE);
  in.sport = be16(in.ip + in.l4);
  in.dport = be16(in.ip + in.l4 + 2);
  u32 in_avail = in.total - in.l4;

  /* The quoted packet went client -> backend (we DNATed it): the error goes back to the client. */
  struct ct_key rk = {in.dst, in.src, in.dport, in.sport, in.proto, CT_REPLY, 0, 0, 0, 0};
  u32 idx;
  struct sp_ct *e = ct_find(pc, &rk, now, &idx);
  if (e && ct_peer(pc, e, idx)) {
    u64 acc = rewrite(&in, 1, e->nat, e->nat_port, in_avail); /* changes inside the ICMP message */
    if (addr_eq(p->src, e->a)) { /* sent by the backend itself: it must appear to come from the frontend */
      u64 a = p->v6 ? patch32(p->saddr, e->nat, 4) : patch32(p->saddr, e->nat + 12, 1);
      if (!p->v6) csum_apply(p->ip + 10, a);
      else acc += a; /* ICMPv6's pseudo-header */
    }
    csum_apply(icmp + 2, acc);
    d->revnat = e->revnat;
    d->ct = e->peer & pc->ct_mask;
    return set_verdict(d, PV_REVERSE, PR_ICMP_REVERSE);
  }
  /* The quoted packet went frontend -> client (a reverse-NATed reply): the error goes on to the backend. */
  struct ct_key fk = {in.dst, in.src, in.dport, in.sport, in.proto, CT_FORWARD, 0, 0, 0, 0};
  e = ct_find(pc, &fk, now, &idx);
  if (e) {
    u64 acc = rewrite(&in, 0, e->nat, e->nat_port, in_avail);
    if (addr_eq(p->dst, e->b)) {
      u64 a = p->v6 ? patch32(p->daddr, e->nat, 4) : patch32(p->daddr, e->nat + 12, 1);
      if (!p->v6) csum_apply(p->ip + 10, a);
      else acc += a;
    }
    csum_apply(icmp + 2, acc);
    d->revnat = e->revnat;
    d->ct = idx;
    return set_verdict(d, PV_FORWARD, PR_ICMP_FORWARD);
  }
  set_verdict(d, PV_PASS, PR_NOT_SERVICE);
}

/* The second 64-bit word of an IPv4 address in the image's 16-byte form (::ffff:a.b.c.d); the first is 0. */
static inline u64 v4_mapped_word(const u8 *a4) { return 0xffff0000ull | (u64)ld32(a4) << 32; }

/* The addresses of a packet of the fast path's shape (IPv4 without options, IPv6 without extension
 * headers) as a conntrack entry stores them: source and destination in their 16-byte form, as two 64-bit
 * words each. */
static ALWAYS_INLINE void fast_addr_words(const u8 *ip, const int v6, u64 w[4]) {
  if (!v6) {
    w[0] = w[2] = 0;
    w[1] = v4_mapped_word(ip + 12);
    w[3] = v4_mapped_word(ip + 16);
  } else {
    w[0] = ld64(ip + 8);
    w[1] = ld64(ip + 16);
    w[2] = ld64(ip + 24);
    w[3] = ld64(ip + 32);
  }
}

/* The fast path of the most common packets: TCP or UDP over IPv4 without options or fragmentation, or
 * over IPv6 without extension headers. The same checks as parse_ip and parse_l4 for that one shape of
 * packet, then l4_packet's steps in its order, on the addresses as they are in the packet (IPv4 hashed
 * and compared as its 16-byte form, by the same functions): the forward key's conntrack entry (ct_find's
 * rule: the first match decides) -> a flow established at this generation: forward_nat; else the
 * frontend (frontend_lookup) -> none: the reply key's entry -> reverse_nat, or pass. A frontend hit
 * without an established flow (new flow, reselection, keep list, reject or drop) goes on to l4_packet
 * from those lookups, with the packet as parsed here (whole_l4). Returns FAST_DONE when the packet was
 * handled; FAST_NO, with nothing written, for any other packet, which then goes through the whole path.
 * A packet is handled here only where the whole path would have come to the same call (forward_nat,
 * reverse_nat, the pass or l4_packet); the fuzz harness checks it byte for byte.
 * Measured (callgrind, bench:packet's IPv4 packets, instructions per packet in sp_process_batch):
 * established ~456 -> ~283, replies ~860 -> ~600, new flows ~1,416 -> ~1,364 (lookups not repeated);
 * with lookups that stop at an empty slot (CT_DEAD), replies ~505 and new flows ~1,244. */
enum { FAST_NO, FAST_DONE };

/* Hands a packet of the fast path's shape on to l4_packet with what the fast path looked up (ct_find's
 * answer for the forward key; the frontend, or 0 when not looked up) and the packet's addresses in their
 * 16-byte form (`w`), as parse_ip and parse_l4 would have left them: they accept every packet of this
 * shape, so it is not parsed again (~50 instructions fewer per new flow, callgrind). Out of line: inlined
 * into each version of fast_ip it made the module 1.8 KB larger and was no faster. */
static __attribute__((noinline)) int whole_l4(struct sp_pctx *pc, const struct sp_ctx *ctx, struct view *v,
                                              struct sp_pkt *d, struct pkt *p, u32 gen, u32 now, const u64 w[4],
                                              u32 home, struct sp_ct *e, u32 index, u32 stale,
                                              const struct sp_frontend *fe, u32 fe_index) {
  struct ct_lookup pre = {e, index, home, stale, fe, fe_index};
  __builtin_memcpy(p->src, &w[0], 8);
  __builtin_memcpy(p->src + 8, &w[1], 8);
  __builtin_memcpy(p->dst, &w[2], 8);
  __builtin_memcpy(p->dst + 8, &w[3], 8);
  l4_packet(pc, ctx, v, d, p, gen, now, &pre);
  return FAST_DONE;
}

/* fast_l4 for one IP version (a constant: each gets its own copy, with the other version's branches gone). */
static ALWAYS_INLINE int fast_ip(struct sp_pctx *pc, const struct sp_ctx *ctx, struct view *v, struct sp_pkt *d, u8 *ip,
                                 u32 len, u32 gen, u32 now, const int v6) {
  struct pkt p;
  u8 dst16[16]; /* an IPv4 destination in its 16-byte form, for the frontend lookup */
  if (!v6) { /* IPv4, no options */
    p.total = be16(ip + 2);
    if (p.total > len || (be16(ip + 6) & 0x3fffu) != 0) return FAST_NO; /* fragments: MF or an offset */
    p.v6 = 0;
    p.proto = ip[9];
    p.alen = 4;
    p.frag_id = be16(ip + 4);
    p.l4 = 20;
    p.saddr = ip + 12;
    p.daddr = ip + 16;
  } else { /* IPv6, the upper layer right after the header */
    p.total = 40 + be16(ip + 4);
    if (p.total > len || is_v4_mapped(ip + 8) || is_v4_mapped(ip + 24)) return FAST_NO;
    p.v6 = 1;
    p.proto = ip[6];
    p.alen = 16;
    p.frag_id = 0;
    p.l4 = 40;
    p.saddr = ip + 8;
    p.daddr = ip + 24;
  }
  if (p.total < p.l4 + 8) return FAST_NO;
  const u8 *h = ip + p.l4;
  u32 avail = p.total - p.l4;
  if (p.proto == IPPROTO_TCP) {
    if (avail < 20) return FAST_NO;
    u32 doff = (u32)(h[12] >> 4) * 4;
    if (doff < 20 || doff > avail) return FAST_NO;
  } else if (p.proto == IPPROTO_UDP) {
    u32 ulen = be16(h + 4);
    if (ulen < 8 || ulen > avail || (p.v6 && be16(h + 6) == 0)) return FAST_NO;
  } else {
    return FAST_NO;
  }
  p.ip = ip;
  p.frag = 0;
  p.sport = be16(h);
  p.dport = be16(h + 2);
  u64 w[4];
  fast_addr_words(ip, v6, w);
  const u64 a0 = w[0], a1 = w[1], b0 = w[2], b1 = w[3], ports = ct_ports(p.sport, p.dport, p.proto);

  u64 tag = ports | (u64)CT_FORWARD << 40;
  u32 home = ct_hash_words(pc, a0, a1, b0, b1, tag), at = SP_NONE;
  struct sp_ct *e = ct_first(pc, home, a0, a1, b0, b1, tag, &at);
  if (e && now < e->expires) { /* live (a forward entry's expiry is its own) */
    if (e->gen != gen || tcp_port_reuse(e, &p)) return whole_l4(pc, ctx, v, d, &p, gen, now, w, home, e, at, SP_NONE, 0, 0);
    forward_nat_inline(pc, d, &p, e, at, PR_ESTABLISHED, now);
    return FAST_DONE;
  }

  if (!v6) {
    __builtin_memcpy(dst16, (const u8[12]){0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 12);
    __builtin_memcpy(dst16 + 12, ip + 16, 4);
  }
  u32 fe_index;
  const struct sp_frontend *fe = frontend_lookup(v, v6 ? ip + 24 : dst16, p.dport, p.proto, &fe_index);
  if (fe) return whole_l4(pc, ctx, v, d, &p, gen, now, w, home, 0, SP_NONE, e ? at : SP_NONE, fe, fe_index);

  /* Not a frontend: a reply of a tracked flow (ct_find's rule for the reply key), or nothing of ours. */
  u64 rtag = ports | (u64)CT_REPLY << 40;
  u32 ri = SP_NONE;
  struct sp_ct *re = ct_first(pc, ct_hash_words(pc, a0, a1, b0, b1, rtag), a0, a1, b0, b1, rtag, &ri);
  struct sp_ct *fwd = re && ct_live(pc, re, ri, now) ? ct_peer(pc, re, ri) : 0;
  if (!fwd) set_verdict(d, PV_PASS, PR_NOT_SERVICE);
  else reverse_nat_inline(pc, d, &p, re, ri, fwd, now);
  return FAST_DONE;
}

static ALWAYS_INLINE int fast_l4(struct sp_pctx *pc, const struct sp_ctx *ctx, struct view *v, struct sp_pkt *d, u8 *ip,
                                 u32 len, u32 gen, u32 now) {
  if (len >= 20 && ip[0] == 0x45) return fast_ip(pc, ctx, v, d, ip, len, gen, now, 0);
  if (len >= 40 && (ip[0] >> 4) == 6) return fast_ip(pc, ctx, v, d, ip, len, gen, now, 1);
  return FAST_NO;
}

static void process_one(struct sp_pctx *pc, const struct sp_ctx *ctx, struct view *v, struct sp_pkt *d, u32 gen,
                        u32 now) {
  d->reply_len = 0;
  d->revnat = SP_NONE;
  d->ct = SP_NONE;
  struct pkt p;
  if (!in_memory(d->off, d->len)) return set_verdict(d, PV_DROP, PR_MALFORMED_IP);
#ifndef SP_NO_FAST_PATH /* without it, the whole path alone: the fuzz harness's reference (wasm/fuzz/packet_ref.c) */
  if (fast_l4(pc, ctx, v, d, mem_at(d->off), d->len, gen, now) == FAST_DONE) return;
#endif
  u32 r = parse_ip(&p, mem_at(d->off), d->len, 0);
  if (r == PR_ROUTED) return set_verdict(d, PV_PASS, PR_ROUTED);
  if (r != PR_COUNT) return set_verdict(d, PV_DROP, r);
  if (p.frag == 2) return later_fragment(pc, d, &p, now);
  if (is_l4(p.proto)) {
    r = parse_l4(&p);
    if (r != PR_COUNT) return set_verdict(d, PV_DROP, r);
    return l4_packet(pc, ctx, v, d, &p, gen, now, 0);
  }
  if (p.proto == (p.v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP)) return icmp_packet(pc, d, &p, now);
  set_verdict(d, PV_PASS, PR_NOT_SERVICE);
}

#ifdef __wasm__
#undef PREFETCH_AHEAD
#define PREFETCH_AHEAD 0 /* wasm has no prefetch instruction */
#elif !defined(PREFETCH_AHEAD)
#define PREFETCH_AHEAD 8 /* -DPREFETCH_AHEAD=0 builds the native core without it */
#endif
/* Conntrack tables smaller than this (2^17 entries, 10 MiB) are not prefetched: the entries of such a
 * table's flows mostly stay in the caches, and the guesses cost ~120 instructions per packet (bench:packet's
 * 4,096 established flows in 2^16 entries, in a C harness: 25.7-27.5 -> 31.5 ns per packet). */
#ifndef PREFETCH_MIN_ENTRIES /* the fuzz harness lowers it, to run the prefetching too */
#define PREFETCH_MIN_ENTRIES (1u << 17)
#endif
#if PREFETCH_AHEAD > 0
/* Native only (wasm has no prefetch instruction): prefetching the conntrack entries of the packets ahead
 * in the batch, so that the cache misses of a table larger than the cache overlap the work on the packets
 * before. Stage one, 2 x PREFETCH_AHEAD packets ahead: the home slots of the packet's forward and reply
 * keys (what the fast path looks up first), both cache lines of each 80-byte entry. Stage two,
 * PREFETCH_AHEAD packets ahead: the forward entry that the reply entry at the reply key's home names (a
 * reply's reverse NAT refreshes it). Only guesses: nothing is read outside the packet or the table, nothing
 * written, and a packet of another shape costs a few loads. ALWAYS_INLINE: gcc deems a function that only
 * prefetches pure and deletes its calls. Measured: README (bench:packet, the 128k-flow cases). */

/* Packet `d`'s forward and reply keys' hashes as the fast path computes them (*f, *r); 0 when it is no
 * IPv4 or IPv6 packet long enough to carry ports. */
static ALWAYS_INLINE int prefetch_homes(const struct sp_pctx *pc, const struct sp_pkt *d, u32 *f, u32 *r) {
  if (d->len < 24 || !in_memory(d->off, d->len)) return 0;
  const u8 *ip = mem_at(d->off);
  u64 w[4], ports;
  if (ip[0] == 0x45) { /* the bytes up to the ports: 24 */
    fast_addr_words(ip, 0, w);
    ports = ct_ports(be16(ip + 20), be16(ip + 22), ip[9]);
  } else if ((ip[0] >> 4) == 6 && d->len >= 44) {
    fast_addr_words(ip, 1, w);
    ports = ct_ports(be16(ip + 40), be16(ip + 42), ip[6]);
  } else {
    return 0;
  }
  u64 h = ct_hash_addrs(pc, w[0], w[1], w[2], w[3]); /* the two keys differ in their tag only */
  *f = ct_hash_tag(h, ports | (u64)CT_FORWARD << 40);
  *r = ct_hash_tag(h, ports | (u64)CT_REPLY << 40);
  return 1;
}

static ALWAYS_INLINE void prefetch_entry(const struct sp_ct *e) {
  __builtin_prefetch(e);
  __builtin_prefetch((const u8 *)e + sizeof(struct sp_ct) - 1);
}

/* Stage one, 2 x PREFETCH_AHEAD packets ahead: both home slots. Returns the reply key's home slot for
 * stage two (SP_NONE: none). */
static ALWAYS_INLINE u32 prefetch_flow(const struct sp_pctx *pc, const struct sp_pkt *d) {
  u32 f, r;
  if (!prefetch_homes(pc, d, &f, &r)) return SP_NONE;
  prefetch_entry(ct_at(pc, f));
  prefetch_entry(ct_at(pc, r));
  return r & pc->ct_mask;
}

/* Stage two, PREFETCH_AHEAD packets ahead: a reply entry at the reply key's home slot (loaded by stage
 * one by now) names the forward entry that reverse NAT reads and refreshes: that one too. */
static ALWAYS_INLINE void prefetch_peer(const struct sp_pctx *pc, u32 reply_home) {
  if (reply_home == SP_NONE) return;
  const struct sp_ct *re = ct_at(pc, reply_home);
  if (re->type == CT_REPLY) prefetch_entry(ct_at(pc, re->peer));
}
#endif

/* ---- exports ---- */

static const u32 default_timeouts[SP_TIMEOUTS] = {
  [T_TCP_SYN] = 60,          /* Cilium's bpf-ct-timeout-regular-tcp-syn */
  [T_TCP_ESTABLISHED] = 21600, /* Cilium's bpf-ct-timeout-service-tcp (6 h) */
  [T_TCP_CLOSING] = 10,      /* Cilium's bpf-ct-timeout-regular-tcp-fin */
  [T_UDP] = 60,              /* Cilium's bpf-ct-timeout-service-any */
  [T_SCTP] = 60,
  [T_FRAGMENT] = 30,         /* Linux's ipfrag_time */
};

static struct sp_pctx *pctx_at(u32 off) {
  if (off % 8 != 0 || !in_memory(off, sizeof(struct sp_pctx))) return 0;
  return (struct sp_pctx *)mem_at(off);
}

/* Sets up packet-path state at `pctx` over the selection context `ctx`: a conntrack table of `capacity`
 * entries (a power of two) at `ct`, placed with `seed` (random per instance, against hash flooding). */
i32 EXPORT(sp_pctx_init)(u32 pctx_off, u32 ctx_off, u32 ct_off, u32 capacity, u32 seed) {
  struct sp_pctx *pc = pctx_at(pctx_off);
  if (!pc || ctx_off % 8 != 0 || !in_memory(ctx_off, sizeof(struct sp_ctx))) return E_BOUNDS;
  if (capacity < CT_PROBE || (capacity & (capacity - 1)) != 0) return E_CAPACITY;
  if (ct_off % 8 != 0 || !in_memory(ct_off, (u64)capacity * sizeof(struct sp_ct))) return E_BOUNDS;
  __builtin_memset(pc, 0, sizeof *pc);
  pc->ctx = ctx_off;
  pc->ct_off = ct_off;
  pc->ct_mask = capacity - 1;
  pc->ct_seed = seed;
  for (u32 i = 0; i < SP_TIMEOUTS; i++) pc->timeout[i] = default_timeouts[i];
  __builtin_memset(mem_at(ct_off), 0, (__SIZE_TYPE__)capacity * sizeof(struct sp_ct));
  return E_OK;
}

/* Sets timeout T_* to `seconds` (at least 1). */
i32 EXPORT(sp_pctx_timeout)(u32 pctx_off, u32 which, u32 seconds) {
  struct sp_pctx *pc = pctx_at(pctx_off);
  if (!pc) return E_BOUNDS;
  if (which >= SP_TIMEOUTS || seconds == 0) return E_CAPACITY;
  pc->timeout[which] = seconds;
  return E_OK;
}

/* Processes `count` packets described at `pkts` (struct sp_pkt), rewriting them in place. Returns the
 * number processed: 0 when the state or the descriptors are not inside memory. Each packet's own bytes
 * are checked, so a bad descriptor drops that packet only. */
u32 EXPORT(sp_process_batch)(u32 pctx_off, u32 pkts, u32 count, u32 now) {
  struct sp_pctx *pc = pctx_at(pctx_off);
  if (!pc || pkts % 4 != 0 || !in_memory(pkts, (u64)count * sizeof(struct sp_pkt))) return 0;
  if (pc->ctx % 8 != 0 || !in_memory(pc->ctx, sizeof(struct sp_ctx))) return 0;
  if (pc->ct_off % 8 != 0 || (pc->ct_mask & (pc->ct_mask + 1)) != 0 ||
      !in_memory(pc->ct_off, ((u64)pc->ct_mask + 1) * sizeof(struct sp_ct)))
    return 0;
  const struct sp_ctx *ctx = (const struct sp_ctx *)mem_at(pc->ctx);
  struct sp_pkt *d = (struct sp_pkt *)mem_at(pkts);
  if (now == 0xffffffffu) now = 0xfffffffeu; /* expiries saturate at the last second: keep one after now */
  struct view v;
  int attached = view_load(&v, ctx->image);
  u32 gen = attached ? load_acquire(&v.hdr->generation) : 0;
#if PREFETCH_AHEAD > 0
  /* reply_home[j % 2A]: stage one's reply home slot of packet j, for stage two (A = PREFETCH_AHEAD) */
  u32 reply_home[2 * PREFETCH_AHEAD];
  const int prefetch = attached && pc->ct_mask + 1 >= PREFETCH_MIN_ENTRIES;
  if (prefetch) {
    for (u32 j = 0; j < 2 * PREFETCH_AHEAD; j++) reply_home[j] = j < count ? prefetch_flow(pc, &d[j]) : SP_NONE;
    for (u32 j = 0; j < PREFETCH_AHEAD; j++) prefetch_peer(pc, reply_home[j]);
  }
#endif
  for (u32 i = 0; i < count; i++) {
#if PREFETCH_AHEAD > 0
    if (prefetch) { /* packet i's slot now serves packet i + 2A (stage one); packet i + A gets stage two */
      reply_home[i % (2 * PREFETCH_AHEAD)] = i + 2 * PREFETCH_AHEAD < count ? prefetch_flow(pc, &d[i + 2 * PREFETCH_AHEAD]) : SP_NONE;
      prefetch_peer(pc, reply_home[(i + PREFETCH_AHEAD) % (2 * PREFETCH_AHEAD)]);
    }
#endif
    if (attached) process_one(pc, ctx, &v, &d[i], gen, now);
    else {
      d[i].reply_len = 0;
      d[i].revnat = d[i].ct = SP_NONE;
      set_verdict(&d[i], PV_PASS, PR_NO_IMAGE);
    }
    pc->counters[d[i].reason]++;
    ct_sweep(pc, now);
  }
  return count;
}

/* Struct sizes, checked against the TypeScript layout by a test. */
u32 EXPORT(sp_packet_sizeof)(u32 which) {
  switch (which) {
  case 0: return sizeof(struct sp_pkt);
  case 1: return sizeof(struct sp_ct);
  case 2: return sizeof(struct sp_pctx);
  default: return 0;
  }
}
