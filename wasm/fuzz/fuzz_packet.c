/* libFuzzer + AddressSanitizer + UBSan harness for the packet path (wasm/packet.c over wasm/core.c's
 * attach), built natively (wasm/platform.h's native branch).
 *
 * Input: an 8-byte control header, an image, then packet records.
 *   header: [0] conntrack capacity 8 << (b & 7) (small tables evict), pctx seed from the rest;
 *           [1] bits 0-5: timeout T_* set to 2 s (expiry paths), bit 6: also probe invalid timeout calls,
 *               bit 7: an affinity table of 8 entries instead of 64;
 *           [2..3] the first `now` (u16; >= 0xf000 maps near 2^32, where expiries saturate);
 *           [4..7] u32 LE image length; the image follows (sp_attach'ed as is: a valid compiled image in
 *               the seeds, so frontends, flows, replies and ICMP errors happen).
 *   record: [0] op (bits 0-2 kind, bits 3-7 parameter) [1] ref (an earlier packet: ref % index)
 *           [2] bits 0-3 time step, bit 4 batch break, bit 5 no reply slot, bits 6-7 misalignment
 *           [3] bits 0-3 padding/truncation of the buffer, bits 4-7 where the data is XORed (x4)
 *           [4..5] u16 LE data length, then the data.
 *   kinds: RAW (the data is the packet), REPEAT (the input of `ref` again, TCP flags set), REPLY (the
 *   OUTPUT of `ref` with addresses and ports swapped, checksums recomputed: a backend's reply to a DNATed
 *   packet, or a client's answer to a reverse-NATed one), ICMP (an ICMP error quoting the output of
 *   `ref`, sent back to its source by its destination or by a router), FRAG (the input of `ref` as a
 *   first or a later fragment), BUILD (a well-formed packet to the image's frontend number `ref`, from a
 *   source the data chooses), IMAGE (the data is the packet; before it, the image changes as a
 *   publication would: a service's backends reordered, one leaving or changing port, a list emptied,
 *   affinity toggled, generation bumped; or detach / re-attach), STATE (the data is the packet; before
 *   it, the data is XORed into the conntrack table, or with parameter bit 0 the affinity table, at an
 *   offset from `ref` and the parameter: entries as a loaded state file or a stray write may leave them,
 *   which the core must survive). Derived packets get the data XORed in, so the fuzzer can break them too.
 * Packets are processed in batches (a batch ends at a time step, a break bit, or a packet derived from
 * one of the same batch). A custom mutator mutates mostly the records, sometimes the header or the image.
 *
 * Memory: one buffer (sp_mem_base/sp_mem_len) [pctx][ctx][affinity][conntrack][descriptors][image] then
 * per packet [reply slot 1280][redzone][packet area][redzone]; everything outside the packet's bytes and
 * its reply slot is ASan-poisoned, so any read or write past a packet's length (or its slot) is reported.
 *
 * Invariants (abort() when broken): descriptors' off/len/reply_off unchanged; verdict matches reason;
 * pass/drop/reject leave the packet bytes unchanged; forward/reverse keep the IP length fields, keep a
 * valid IPv4 header checksum (outer, and the quoted header of an ICMP error) and a valid TCP/UDP/SCTP/ICMP
 * checksum valid, a zero IPv4 UDP checksum zero, and change nothing but addresses, ports and checksums
 * (plain TCP/UDP/SCTP and fragments); reply_len <= 1280 (576 over IPv4), only on reject, a well-formed
 * ICMP error whose bytes after reply_len are untouched; counters: per reason equal to what the
 * descriptors say, their sum = packets processed, flows created = PR_NEW + PR_NEW_AFFINITY, rejects =
 * replies written + C_REPLY_NO_SLOT; ct/revnat outputs consistent with the reason, and the last packet
 * of a batch that evicted nothing names its flow's forward entry. And (conntrack capacity <= 128) every
 * batch also runs through the packet path without its fast path (packet_ref.c), from the same state, with
 * the same result to the byte: the fast path is the whole path's shortcut, never a second behaviour.
 *
 *   sh wasm/fuzz/run.sh 60     # builds both harnesses and fuzzes 30 s each with the committed corpora
 *   FUZZ_PACKET_TRACE=1 wasm/fuzz/out/fuzz_packet FILE...    # one line per packet: verdict, reason, ...
 * Seeds: node wasm/fuzz/make-corpus-packet.mjs (after npm run build), minimized into corpus-packet/.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sanitizer/asan_interface.h>
#include "../svcplane.h"
#include "../packet.h"

u8 *sp_mem_base;
u64 sp_mem_len;

i32 sp_ctx_init(u32 ctx, u32 affinity, u32 capacity, u32 seed);
i32 sp_attach(u32 ctx, u32 image, u32 len);
void sp_detach(u32 ctx);
i32 sp_pctx_init(u32 pctx, u32 ctx, u32 ct, u32 capacity, u32 seed);
i32 sp_pctx_timeout(u32 pctx, u32 which, u32 seconds);
u32 sp_process_batch(u32 pctx, u32 pkts, u32 count, u32 now);
/* wasm/packet.c again without its fast path (packet_ref.c): every batch also runs through it from the
 * same state, and the state, descriptors, packets and replies must come out byte for byte the same. */
u32 ref_process_batch(u32 pctx, u32 pkts, u32 count, u32 now);
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

#define MAX_PKTS 32u
#define MAXP 2048u          /* bytes of a packet buffer at most */
#define RZ 32u              /* redzone */
#define AREA (MAXP + 8u)    /* packet area: the packet at a misalignment of 0..3 */
#define SLOT (SP_REPLY_MAX + RZ + AREA + RZ)
#define HDR 8u
#define REC 6u

enum { K_RAW = 0, K_REPEAT = 1, K_REPLY = 2, K_ICMP = 3, K_FRAG = 4, K_BUILD = 5, K_IMAGE = 6, K_STATE = 7 };

#define CHECK(c)                                                                                 \
  do {                                                                                           \
    if (!(c)) {                                                                                  \
      fprintf(stderr, "fuzz_packet: invariant broken at %s:%d: %s (packet %u)\n", __FILE__, __LINE__, #c, cur_pkt); \
      abort();                                                                                   \
    }                                                                                            \
  } while (0)

static unsigned cur_pkt;
static int trace; /* FUZZ_PACKET_TRACE=1: one line per packet on stderr (corpus inspection) */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  trace = getenv("FUZZ_PACKET_TRACE") != 0;
  return 0;
}

/* ---- bytes and checksums (independent of packet.c) ---- */

static u32 rd16(const u8 *p) { return (u32)p[0] << 8 | p[1]; }
static void wr16(u8 *p, u32 v) {
  p[0] = (u8)(v >> 8);
  p[1] = (u8)v;
}
static u32 rd32le(const u8 *p) { return (u32)p[0] | (u32)p[1] << 8 | (u32)p[2] << 16 | (u32)p[3] << 24; }

static u64 sum16(u64 acc, const u8 *p, u32 n) {
  u32 i = 0;
  for (; i + 1 < n; i += 2) acc += rd16(p + i);
  if (i < n) acc += (u32)p[i] << 8;
  return acc;
}
static u32 fold(u64 s) {
  while (s >> 16) s = (s & 0xffffu) + (s >> 16);
  return (u32)s;
}
static u32 cksum(u64 acc, const u8 *p, u32 n) { return ~fold(sum16(acc, p, n)) & 0xffffu; }
static int cksum_ok(u64 acc, const u8 *p, u32 n) { return fold(sum16(acc, p, n)) == 0xffffu; }

static u32 crc32c(const u8 *p, u32 n) {
  u32 c = 0xffffffffu;
  for (u32 i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1u)));
  }
  return ~c;
}

/* A simple view of a packet: IPv4 (any options), IPv6 with at most a fragment header. */
struct hp {
  u32 v6, hl, total, proto, l4, frag, alen;
  u32 frag_hdr;            /* IPv6: offset of the fragment header, 0 = none */
  u8 *s, *d;
};

static int hparse(u8 *p, u32 len, struct hp *h, int quoted) {
  memset(h, 0, sizeof *h);
  if (len < 20) return 0;
  if (p[0] >> 4 == 4) {
    u32 ihl = (p[0] & 15u) * 4, total = rd16(p + 2);
    if (ihl < 20 || ihl > len) return 0;
    if (quoted) total = len;
    if (total < ihl || total > len) return 0;
    u32 fo = rd16(p + 6);
    h->frag = (fo & 0x1fffu) ? 2 : (fo & 0x2000u) ? 1 : 0;
    h->hl = ihl;
    h->total = total;
    h->proto = p[9];
    h->l4 = ihl;
    h->alen = 4;
    h->s = p + 12;
    h->d = p + 16;
    return 1;
  }
  if (p[0] >> 4 == 6) {
    if (len < 40) return 0;
    u32 total = 40 + rd16(p + 4);
    if (quoted) total = len;
    if (total > len || total == 40) return 0;
    h->v6 = 1;
    h->hl = 40;
    h->total = total;
    h->alen = 16;
    h->s = p + 8;
    h->d = p + 24;
    h->proto = p[6];
    h->l4 = 40;
    if (p[6] == 44) {
      if (total < 48) return 0;
      u32 fo = rd16(p + 42);
      h->frag_hdr = 40;
      h->frag = (fo & 0xfff8u) ? 2 : (fo & 1u) ? 1 : 0;
      h->proto = p[40];
      h->l4 = 48;
    } else if (p[6] == 0 || p[6] == 43 || p[6] == 51 || p[6] == 60) {
      return 0; /* other extension headers: not modelled here */
    }
    return 1;
  }
  return 0;
}

/* Pseudo-header sum for the upper-layer checksum of `h` over `n` bytes. */
static u64 pseudo(const struct hp *h, u32 proto, u32 n) {
  u64 acc = sum16(0, h->s, h->alen);
  acc = sum16(acc, h->d, h->alen);
  return acc + proto + n;
}

/* State of a packet's upper-layer checksum: -1 not checkable, 0 invalid, 1 valid, 2 IPv4 UDP "none". */
static int l4_cksum_state(u8 *p, const struct hp *h) {
  if (h->frag != 0) return -1;
  u8 *l = p + h->l4;
  u32 avail = h->total - h->l4;
  switch (h->proto) {
  case 6:
    if (avail < 20) return -1;
    return cksum_ok(pseudo(h, 6, avail), l, avail);
  case 17: {
    if (avail < 8) return -1;
    u32 ulen = rd16(l + 4);
    if (ulen < 8 || ulen > avail) return -1;
    if (!h->v6 && rd16(l + 6) == 0) return 2;
    return cksum_ok(pseudo(h, 17, ulen), l, ulen);
  }
  case 132: {
    if (avail < 12) return -1;
    u32 stored = rd32le(l + 8);
    u8 save[4];
    memcpy(save, l + 8, 4);
    memset(l + 8, 0, 4);
    u32 c = crc32c(l, avail);
    memcpy(l + 8, save, 4);
    return c == stored;
  }
  case 1:
    if (h->v6 || avail < 8) return -1;
    return cksum_ok(0, l, avail);
  case 58:
    if (!h->v6 || avail < 8) return -1;
    return cksum_ok(pseudo(h, 58, avail), l, avail);
  }
  return -1;
}

/* Recomputes the IPv4 header checksum and the upper-layer checksum of a (whole) packet. */
static void fix_cksums(u8 *p, u32 len) {
  struct hp h;
  if (!hparse(p, len, &h, 0)) return;
  if (!h.v6) {
    wr16(p + 10, 0);
    wr16(p + 10, cksum(0, p, h.hl));
  }
  if (h.frag != 0) return;
  u8 *l = p + h.l4;
  u32 avail = h.total - h.l4;
  if (h.proto == 6 && avail >= 20) {
    wr16(l + 16, 0);
    wr16(l + 16, cksum(pseudo(&h, 6, avail), l, avail));
  } else if (h.proto == 17 && avail >= 8) {
    u32 ulen = rd16(l + 4);
    if (ulen < 8 || ulen > avail) return;
    if (!h.v6 && rd16(l + 6) == 0) return;
    wr16(l + 6, 0);
    u32 c = cksum(pseudo(&h, 17, ulen), l, ulen);
    wr16(l + 6, c ? c : 0xffff);
  } else if (h.proto == 132 && avail >= 12) {
    memset(l + 8, 0, 4);
    u32 c = crc32c(l, avail);
    l[8] = (u8)c, l[9] = (u8)(c >> 8), l[10] = (u8)(c >> 16), l[11] = (u8)(c >> 24);
  } else if (h.proto == 1 && !h.v6 && avail >= 8) {
    wr16(l + 2, 0);
    wr16(l + 2, cksum(0, l, avail));
  } else if (h.proto == 58 && h.v6 && avail >= 8) {
    wr16(l + 2, 0);
    wr16(l + 2, cksum(pseudo(&h, 58, avail), l, avail));
  }
}

static const u8 tcp_flags[8] = {0x02, 0x12, 0x10, 0x11, 0x04, 0x18, 0x14, 0xff /* keep */};

static int set_tcp_flags(u8 *p, u32 len, u32 which) {
  struct hp h;
  if (tcp_flags[which & 7] == 0xff || !hparse(p, len, &h, 0) || h.proto != 6 || h.frag != 0 || h.total < h.l4 + 20) return 0;
  p[h.l4 + 13] = tcp_flags[which & 7];
  return 1;
}

/* ---- the run's memory ---- */

#define PCTX 8u
#define CTX 336u
#define AFF 368u
#define AFF_CAP 64u
#define CT 3440u                  /* AFF + AFF_CAP * 48 */

static u32 desc_off, img_off, slots_off, ct_cap;
static u8 in_copy[MAX_PKTS][MAXP];
static u32 in_len[MAX_PKTS], in_off[MAX_PKTS];

static struct sp_pkt *desc(u32 i) { return (struct sp_pkt *)(sp_mem_base + desc_off) + i; }
static u32 reply_at(u32 i) { return slots_off + i * SLOT; }
static u32 area_at(u32 i) { return reply_at(i) + SP_REPLY_MAX + RZ; }

struct fe_ref {
  u8 addr[16];
  u32 port, proto;
};
static struct fe_ref fes[64];
static u32 nfe;

/* The image's live frontends, read defensively (the image may be anything). */
static void collect_frontends(u32 il) {
  nfe = 0;
  const u8 *im = sp_mem_base + img_off;
  if (il < sizeof(struct sp_header)) return;
  const struct sp_header *h = (const struct sp_header *)im;
  if (h->root % 4 || (u64)h->root + sizeof(struct sp_root) > il) return;
  const struct sp_root *r = (const struct sp_root *)(im + h->root);
  if (r->fe_cap > 65536 || r->fe_off % 4 || (u64)r->fe_off + (u64)r->fe_cap * sizeof(struct sp_frontend) > il) return;
  const struct sp_frontend *fe = (const struct sp_frontend *)(im + r->fe_off);
  for (u32 i = 0; i < r->fe_cap && nfe < 64; i++) {
    if (fe[i].kind < FE_CLUSTER_IP || fe[i].kind > FE_EXTERNAL_IP) continue;
    memcpy(fes[nfe].addr, fe[i].addr, 16);
    fes[nfe].port = fe[i].port;
    fes[nfe].proto = fe[i].proto;
    nfe++;
  }
}

static int is_mapped(const u8 *a) {
  static const u8 pre[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return memcmp(a, pre, 12) == 0;
}

/* ---- building packets ---- */

/* BUILD: a well-formed packet to frontend `fe` from a source the data gives. */
static u32 build_to_frontend(u8 *out, u32 pa, const struct fe_ref *fe, const u8 *data, u32 n) {
  int v6 = !is_mapped(fe->addr);
  u32 proto = fe->proto == 17 || fe->proto == 132 ? fe->proto : 6;
  u32 hl = v6 ? 40 : 20;
  u32 l4h = proto == 6 ? 20 : proto == 17 ? 8 : 28; /* SCTP: common header + an INIT-sized chunk */
  u8 src[16] = {0};
  u32 used = 0;
  static const u8 pre4[4][4] = {{192, 168, 10, 1}, {198, 51, 100, 7}, {10, 244, 1, 9}, {10, 96, 0, 1}};
  static const u8 pre6[4][16] = {{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1},
                                 {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7},
                                 {0xfd, 0, 2, 0x44, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9},
                                 {0xfd, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11}};
  u32 alen = v6 ? 16 : 4;
  memcpy(src, v6 ? pre6[pa & 3] : pre4[pa & 3], alen);
  if (n >= 1) src[alen - 1] ^= data[0], used = 1; /* vary the host part */
  if ((pa & 3) == 3 && n >= alen) memcpy(src, data, alen), used = alen;
  u32 sport = 40000;
  if (n >= used + 2) sport = rd16(data + used), used += 2;
  u32 payload = n - used;
  if (hl + l4h + payload > MAXP) payload = MAXP - hl - l4h;
  u32 total = hl + l4h + payload;
  memset(out, 0, hl + l4h);
  if (!v6) {
    out[0] = 0x45;
    wr16(out + 2, total);
    wr16(out + 4, 0x1234 + sport);
    out[6] = 0x40; /* DF */
    out[8] = 64;
    out[9] = (u8)proto;
    memcpy(out + 12, src, 4);
    memcpy(out + 16, fe->addr + 12, 4);
  } else {
    out[0] = 0x60;
    wr16(out + 4, total - 40);
    out[6] = (u8)proto;
    out[7] = 64;
    memcpy(out + 8, src, 16);
    memcpy(out + 24, fe->addr, 16);
  }
  u8 *l = out + hl;
  wr16(l, sport);
  wr16(l + 2, fe->port);
  if (proto == 6) {
    wr16(l + 4, 0x1000);
    l[12] = 0x50;
    l[13] = tcp_flags[(pa >> 2) & 7] == 0xff ? 0x02 : tcp_flags[(pa >> 2) & 7];
    wr16(l + 14, 65535);
  } else if (proto == 17) {
    wr16(l + 4, 8 + payload);
  } else {
    l[12] = 1; /* INIT */
    wr16(l + 14, 16);
  }
  memcpy(out + hl + l4h, data + used, payload);
  fix_cksums(out, total);
  return total;
}

/* REPLY with parameter bit 3 on a UDP reply: the first payload word is chosen so that the packet
 * reverse-NATed to `fe` (the source the reply will get: the original packet's destination) has a
 * checksum of zero, which UDP must send as all ones (RFC 768). */
static void tune_udp_zero(u8 *p, u32 len, const u8 *orig, u32 orig_len) {
  struct hp h, o;
  if (!hparse(p, len, &h, 0) || h.proto != 17 || h.frag || !hparse((u8 *)orig, orig_len, &o, 0) || o.v6 != h.v6) return;
  u8 *l = p + h.l4;
  u32 avail = h.total - h.l4, ulen = avail >= 8 ? rd16(l + 4) : 0;
  if (ulen < 10 || ulen > avail || o.total < o.l4 + 4) return;
  u8 c[MAXP];
  memcpy(c, p, len);
  struct hp ch;
  hparse(c, len, &ch, 0);
  memcpy(ch.s, o.d, h.alen);
  memcpy(c + h.l4, orig + o.l4 + 2, 2);
  wr16(c + h.l4 + 6, 0);
  u32 s = fold(sum16(pseudo(&ch, 17, ulen), c + h.l4, ulen));
  u32 w = rd16(l + 8);
  wr16(l + 8, ~fold(s + (~w & 0xffffu)) & 0xffffu);
}

/* REPLY: addresses (and ports) of a packet swapped, TCP flags set, checksums recomputed. */
static u32 build_reply(u8 *out, const u8 *src, u32 len, u32 pa, const u8 *orig, u32 orig_len) {
  memcpy(out, src, len);
  struct hp h;
  if (!hparse(out, len, &h, 0)) return len;
  u8 t[16];
  memcpy(t, h.s, h.alen);
  memcpy(h.s, h.d, h.alen);
  memcpy(h.d, t, h.alen);
  if (h.frag != 2 && (h.proto == 6 || h.proto == 17 || h.proto == 132) && h.total >= h.l4 + 4) {
    u8 *l = out + h.l4;
    u8 a = l[0], b = l[1];
    l[0] = l[2], l[1] = l[3], l[2] = a, l[3] = b;
  }
  set_tcp_flags(out, len, pa);
  if (pa & 8) tune_udp_zero(out, len, orig, orig_len);
  fix_cksums(out, len);
  return len;
}

/* IMAGE: changes the attached image between batches, as an update would, and bumps its generation as a
 * publication does (or detaches / re-attaches):
 * the core must cope with flows whose backend moved or left, and with whatever the image then says. */
static int image_changed; /* by image_change: a fuzzed image's "service" may overlap its header */

static void image_change(u32 pa, u32 ref, u32 il, int *attached) {
  u32 action = pa & 7;
  if (action == 4) {
    sp_detach(CTX);
    *attached = 0;
    return;
  }
  if (action == 5) {
    *attached = sp_attach(CTX, img_off, il) == E_OK;
    return;
  }
  u8 *im = sp_mem_base + img_off;
  if (il < sizeof(struct sp_header)) return;
  const struct sp_header *h = (const struct sp_header *)im;
  if (h->root % 4 || (u64)h->root + sizeof(struct sp_root) > il) return;
  const struct sp_root *r = (const struct sp_root *)(im + h->root);
  if (r->slot_off % 4 || r->slot_cap > 65536 || (u64)r->slot_off + (u64)r->slot_cap * 4 > il) return;
  const u32 *slots = (const u32 *)(im + r->slot_off);
  u32 used = 0, pick = SP_NONE;
  for (u32 i = 0; i < r->slot_cap; i++)
    if (slots[i] % 4 == 0 && slots[i] != 0 && (u64)slots[i] + sizeof(struct sp_service) <= il) used++;
  if (!used) return;
  u32 want = ref % used;
  for (u32 i = 0, k = 0; i < r->slot_cap; i++)
    if (slots[i] % 4 == 0 && slots[i] != 0 && (u64)slots[i] + sizeof(struct sp_service) <= il && k++ == want) pick = slots[i];
  struct sp_service *svc = (struct sp_service *)(im + pick);
  image_changed = 1;
  ((struct sp_header *)im)->generation++; /* a publication: every change bumps it */
  if (action == 6) {
    svc->flags ^= SVC_F_AFFINITY;
    return;
  }
  if (svc->list_count == 0 || svc->list_off % 4 || (u64)svc->list_off + (u64)svc->list_count * sizeof(struct sp_list) > il) return;
  struct sp_list *l = (struct sp_list *)(im + svc->list_off) + (pa >> 3) % svc->list_count;
  if (l->be_off % 4 || l->be_count > 4096 || (u64)l->be_off + (u64)l->be_count * sizeof(struct sp_backend) > il) return;
  struct sp_backend *be = (struct sp_backend *)(im + l->be_off);
  u32 n = l->be_count;
  struct sp_backend t;
  switch (action) {
  case 0: /* reverse: every backend moves */
    for (u32 i = 0; i < n / 2; i++) t = be[i], be[i] = be[n - 1 - i], be[n - 1 - i] = t;
    break;
  case 1: /* rotate by one */
    if (n > 1) {
      t = be[0];
      memmove(be, be + 1, (n - 1) * sizeof *be);
      be[n - 1] = t;
    }
    break;
  case 2: /* the last backend leaves (the Maglev table still names it) */
    if (n) l->be_count = n - 1;
    break;
  case 3: /* a backend's port changes: flows to it must be reselected */
    if (n) be[ref % n].port ^= 1;
    break;
  case 7: /* the list empties */
    l->be_count = 0;
    break;
  }
}

/* ICMP: an error quoting packet `q` (its output), sent to its source by its destination or a router. */
static u32 build_icmp(u8 *out, u8 *q, u32 qlen, u32 pa) {
  struct hp h;
  int ok = hparse(q, qlen, &h, 0);
  int v6 = ok ? (int)h.v6 : (qlen >= 1 && q[0] >> 4 == 6);
  u32 hl = v6 ? 40 : 20;
  u32 max = v6 ? 1280 : 576;
  u32 qtotal = ok ? h.total : qlen;
  u32 quote = (pa & 1) ? qtotal : (ok ? h.l4 + 8 : 28);
  if (quote > qtotal) quote = qtotal;
  if (quote > max - hl - 8) quote = max - hl - 8;
  u32 total = hl + 8 + quote;
  memset(out, 0, hl + 8);
  static const u8 router4[4] = {10, 0, 0, 1};
  static const u8 router6[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xee, 1};
  u8 zero[16] = {0};
  const u8 *qs = ok ? h.s : zero, *qd = ok ? h.d : zero;
  if (!ok && qlen >= 40 && v6) qs = q + 8, qd = q + 24;
  if (!ok && qlen >= 20 && !v6) qs = q + 12, qd = q + 16;
  const u8 *from = (pa & 2) ? (v6 ? router6 : router4) : qd;
  if (!v6) {
    out[0] = 0x45;
    wr16(out + 2, total);
    out[8] = 64;
    out[9] = 1;
    memcpy(out + 12, from, 4);
    memcpy(out + 16, qs, 4);
    static const u8 tc[8][2] = {{3, 3}, {3, 1}, {3, 4}, {11, 0}, {12, 0}, {3, 13}, {3, 3}, {3, 10}};
    out[20] = tc[(pa >> 2) & 7][0];
    out[21] = tc[(pa >> 2) & 7][1];
    if (out[20] == 3 && out[21] == 4) wr16(out + 26, 1400);
  } else {
    out[0] = 0x60;
    wr16(out + 4, total - 40);
    out[6] = 58;
    out[7] = 64;
    memcpy(out + 8, from, 16);
    memcpy(out + 24, qs, 16);
    static const u8 tc[8][2] = {{1, 4}, {1, 3}, {2, 0}, {3, 0}, {4, 1}, {1, 1}, {1, 4}, {3, 1}};
    out[40] = tc[(pa >> 2) & 7][0];
    out[41] = tc[(pa >> 2) & 7][1];
    if (out[40] == 2) wr16(out + 46, 1280);
  }
  memcpy(out + hl + 8, q, quote);
  fix_cksums(out, total);
  return total;
}

/* FRAG: the packet as a first fragment (more follow) or a later one, same identification. */
static u32 build_frag(u8 *out, const u8 *src, u32 len, u32 pa, u32 ref) {
  memcpy(out, src, len);
  struct hp h;
  if (!hparse(out, len, &h, 0)) return len;
  u32 later = pa & 1, offset = 1 + (pa >> 1); /* in 8-byte units */
  if (!h.v6) {
    wr16(out + 6, later ? (0x2000u | offset) : 0x2000u);
    wr16(out + 10, 0);
    wr16(out + 10, cksum(0, out, h.hl));
    return len;
  }
  if (!h.frag_hdr) {
    if (len + 8 > MAXP) return len;
    memmove(out + 48, out + 40, len - 40);
    out[40] = out[6];
    out[41] = 0;
    memset(out + 42, 0, 6);
    out[44] = 0xfa, out[45] = 0xce, out[46] = (u8)(ref >> 8), out[47] = (u8)ref;
    out[6] = 44;
    wr16(out + 4, rd16(out + 4) + 8);
    len += 8;
  }
  wr16(out + 42, later ? (offset << 3 | 1u) : 1u);
  return len;
}

/* ---- the fast path against the whole path ---- */

/* What a batch can change, copied into one buffer (malloc'ed, *n bytes): [0, desc_off) (pctx with its
 * counters, ctx, affinity, conntrack), the batch's descriptors, each packet's bytes and reply slot. */
static u8 *batch_state(u32 first, u32 cnt, size_t *n) {
  size_t size = desc_off + (size_t)cnt * sizeof(struct sp_pkt);
  for (u32 k = first; k < first + cnt; k++) size += desc(k)->len + (desc(k)->reply_off ? SP_REPLY_MAX : 0);
  u8 *b = malloc(size), *at = b;
  if (!b) abort();
  memcpy(at, sp_mem_base, desc_off);
  at += desc_off;
  memcpy(at, desc(first), cnt * sizeof(struct sp_pkt));
  at += cnt * sizeof(struct sp_pkt);
  for (u32 k = first; k < first + cnt; k++) {
    const struct sp_pkt *d = (const struct sp_pkt *)(b + desc_off) + (k - first); /* as before the call */
    memcpy(at, sp_mem_base + d->off, d->len);
    at += d->len;
    if (d->reply_off) {
      memcpy(at, sp_mem_base + d->reply_off, SP_REPLY_MAX);
      at += SP_REPLY_MAX;
    }
  }
  *n = size;
  return b;
}

/* Puts a batch_state back (its descriptors first: they say where the packets are). */
static void restore_state(const u8 *b, u32 first, u32 cnt) {
  memcpy(sp_mem_base, b, desc_off);
  memcpy(desc(first), b + desc_off, cnt * sizeof(struct sp_pkt));
  const u8 *at = b + desc_off + cnt * sizeof(struct sp_pkt);
  for (u32 k = first; k < first + cnt; k++) {
    const struct sp_pkt *d = desc(k);
    memcpy(sp_mem_base + d->off, at, d->len);
    at += d->len;
    if (d->reply_off) {
      memcpy(sp_mem_base + d->reply_off, at, SP_REPLY_MAX);
      at += SP_REPLY_MAX;
    }
  }
}

/* Whether this input's batches also run through the reference: with conntrack tables of up to 128
 * entries (5 of the 8 capacities the header chooses; the small ones, where eviction happens). Measured:
 * 4,700 inputs/s so, 2,800 with every input, 5,600 without the reference. */
static int differential;

/* Runs the batch through the packet path, then again from the same state without the fast path: the two
 * must agree on every byte they may write. Returns sp_process_batch's answer; the memory is left as it
 * wrote it. */
static u32 process_both(u32 first, u32 cnt, u32 now) {
  if (!differential) return sp_process_batch(PCTX, desc_off + first * (u32)sizeof(struct sp_pkt), cnt, now);
  size_t n, n_fast, n_ref;
  u8 *before = batch_state(first, cnt, &n);
  u32 got = sp_process_batch(PCTX, desc_off + first * (u32)sizeof(struct sp_pkt), cnt, now);
  u8 *fast = batch_state(first, cnt, &n_fast);
  restore_state(before, first, cnt);
  u32 ref = ref_process_batch(PCTX, desc_off + first * (u32)sizeof(struct sp_pkt), cnt, now);
  u8 *whole = batch_state(first, cnt, &n_ref);
  cur_pkt = first;
  CHECK(ref == got && n_ref == n_fast);
  if (memcmp(fast, whole, n_fast) != 0) {
    size_t i = 0;
    while (fast[i] == whole[i]) i++;
    fprintf(stderr, "fuzz_packet: the fast path and the whole path differ at byte %zu of the batch state "
            "(first %zu bytes: pctx, ctx, affinity, conntrack; then descriptors, packets, replies)\n", i, (size_t)desc_off);
    abort();
  }
  free(before);
  free(fast);
  free(whole);
  return got;
}

/* ---- invariants ---- */

static const u8 verdict_of[PR_COUNT] = {
  [PR_NOT_SERVICE] = PV_PASS, [PR_NEW] = PV_FORWARD, [PR_NEW_AFFINITY] = PV_FORWARD, [PR_ESTABLISHED] = PV_FORWARD,
  [PR_RESELECTED] = PV_FORWARD, [PR_REVERSE] = PV_REVERSE, [PR_ICMP_FORWARD] = PV_FORWARD,
  [PR_ICMP_REVERSE] = PV_REVERSE, [PR_FRAGMENT_FORWARD] = PV_FORWARD, [PR_FRAGMENT_REVERSE] = PV_REVERSE,
  [PR_NO_ENDPOINTS] = PV_REJECT, [PR_NO_LOCAL_ENDPOINTS] = PV_DROP, [PR_SOURCE_RANGE] = PV_DROP,
  [PR_MALFORMED_IP] = PV_DROP, [PR_MALFORMED_EXT] = PV_DROP, [PR_MALFORMED_L4] = PV_DROP,
  [PR_FRAGMENT_UNTRACKED] = PV_PASS, [PR_FRAGMENT_SCTP] = PV_DROP, [PR_BAD_IMAGE] = PV_DROP,
  [PR_NO_IMAGE] = PV_PASS, [PR_ROUTED] = PV_PASS,
};

static u64 expect[SP_COUNTERS];
static u64 processed, rejects, replies;

/* Bytes [a, a+n) of the packet may differ. */
static void allow(u8 *mask, u32 len, u32 a, u32 n) {
  for (u32 i = a; i < a + n && i < len; i++) mask[i] = 1;
}

static void check_reply(const struct sp_pkt *d, const u8 *in) {
  CHECK(d->reply_len <= SP_REPLY_MAX);
  const u8 *o = sp_mem_base + d->reply_off;
  if (d->reply_len == 0) {
    if (d->reply_off)
      for (u32 i = 0; i < SP_REPLY_MAX; i++) CHECK(o[i] == 0xa5);
    return;
  }
  CHECK(d->verdict == PV_REJECT && d->reply_off != 0);
  for (u32 i = d->reply_len; i < SP_REPLY_MAX; i++) CHECK(o[i] == 0xa5);
  u8 r[SP_REPLY_MAX];
  memcpy(r, o, d->reply_len);
  struct hp h;
  CHECK(hparse(r, d->reply_len, &h, 0) && h.total == d->reply_len && h.frag == 0);
  if (!h.v6) {
    CHECK(d->reply_len <= 576 && h.proto == 1 && cksum_ok(0, r, h.hl));
    CHECK(memcmp(h.s, in + 16, 4) == 0 && memcmp(h.d, in + 12, 4) == 0);
  } else {
    CHECK(h.proto == 58 && memcmp(h.s, in + 24, 16) == 0 && memcmp(h.d, in + 8, 16) == 0);
  }
  CHECK(l4_cksum_state(r, &h) == 1);
  u32 quoted = h.total - h.l4 - 8;
  CHECK(memcmp(r + h.l4 + 8, in, quoted) == 0); /* quotes the packet as received */
}

static int last_of_batch, evicted_in_batch;
static int state_scribbled; /* by K_STATE: entries need not agree with each other any more */
static u32 aff_cap_now;

/* STATE: XORs `data` into the conntrack table (or the affinity table) from an offset chosen by ref and pa. */
static void state_scribble(u32 pa, u32 ref, const u8 *data, u32 n) {
  u32 table = (pa & 1) ? AFF : CT;
  u32 bytes = (pa & 1) ? aff_cap_now * (u32)sizeof(struct sp_affinity) : ct_cap * (u32)sizeof(struct sp_ct);
  u32 at = ((ref << 4) | (pa >> 1)) * 8u % bytes;
  for (u32 k = 0; k < n; k++) sp_mem_base[table + (at + k) % bytes] ^= data[k];
  state_scribbled = 1;
}

static void check_packet(u32 i, u32 len, u32 reply_off) {
  cur_pkt = i;
  struct sp_pkt *d = desc(i);
  if (trace)
    fprintf(stderr, "pkt %2u len %4u verdict %u reason %2u reply %4u ct %d revnat %d\n", i, len, d->verdict, d->reason,
            d->reply_len, (int)d->ct, (int)d->revnat);
  CHECK(d->off == in_off[i] && d->len == len && d->reply_off == reply_off);
  CHECK(d->verdict <= PV_REVERSE && d->reason < PR_COUNT);
  CHECK(verdict_of[d->reason] == d->verdict);
  CHECK(d->ct == SP_NONE || d->ct < ct_cap);
  u32 r = d->reason;
  if (r == PR_NOT_SERVICE || r == PR_MALFORMED_IP || r == PR_MALFORMED_EXT || r == PR_MALFORMED_L4 ||
      r == PR_FRAGMENT_UNTRACKED || r == PR_NO_IMAGE || r == PR_ROUTED || r == PR_FRAGMENT_FORWARD ||
      r == PR_FRAGMENT_REVERSE)
    CHECK(d->ct == SP_NONE);
  if (r == PR_NOT_SERVICE || r == PR_MALFORMED_IP || r == PR_MALFORMED_EXT || r == PR_MALFORMED_L4 ||
      r == PR_FRAGMENT_UNTRACKED || r == PR_NO_IMAGE || r == PR_ROUTED)
    CHECK(d->revnat == SP_NONE);
  if (r >= PR_NEW && r <= PR_ICMP_REVERSE) {
    CHECK(d->ct != SP_NONE);
    /* The last packet of a batch: nothing after it could have evicted its flow, so (unless this batch
     * evicted something) d->ct names the flow's forward entry, of the same frontend. */
    if (last_of_batch && !evicted_in_batch) {
      const struct sp_ct *e = (const struct sp_ct *)(sp_mem_base + CT) + d->ct;
      CHECK(e->type == CT_FORWARD && (e->revnat == d->revnat || state_scribbled)); /* reply entries name it too */
    }
  }

  const u8 *in = in_copy[i];
  u8 *out = sp_mem_base + d->off;
  check_reply(d, in);
  expect[r]++;
  processed++;
  if (d->verdict == PV_REJECT) rejects++;
  if (d->reply_len) replies++;
  if (d->verdict == PV_PASS || d->verdict == PV_DROP || d->verdict == PV_REJECT) {
    CHECK(memcmp(out, in, len) == 0);
    return;
  }
  /* Forwarded or reverse-NATed. */
  u8 a[MAXP], b[MAXP];
  memcpy(a, in, len);
  memcpy(b, out, len);
  struct hp hi, ho;
  int pi = hparse(a, len, &hi, 0), po = hparse(b, len, &ho, 0);
  CHECK(len >= 20 && (a[0] >> 4) == (b[0] >> 4));
  if ((a[0] >> 4) == 4) {
    u32 ihl = (a[0] & 15u) * 4;
    CHECK(a[0] == b[0] && rd16(a + 2) == rd16(b + 2) && a[9] == b[9] && rd16(a + 6) == rd16(b + 6));
    if (ihl >= 20 && ihl <= len && cksum_ok(0, a, ihl)) CHECK(cksum_ok(0, b, ihl));
  } else {
    CHECK(len >= 40 && rd16(a + 4) == rd16(b + 4) && a[6] == b[6]);
  }
  if (!pi) return; /* extension headers etc.: the checks above only */
  CHECK(po && hi.l4 == ho.l4 && hi.proto == ho.proto && hi.frag == ho.frag);
  /* An SCTP first fragment is never forwarded or reverse-NATed: its CRC32c covers the ports and the whole
   * SCTP packet, so it cannot be fixed from one fragment (the rule behind PR_FRAGMENT_SCTP). */
  CHECK(!(hi.proto == 132 && hi.frag == 1));
  int ci = l4_cksum_state(a, &hi), co = l4_cksum_state(b, &ho);
  if (ci == 1) CHECK(co == 1);
  if (ci == 2) CHECK(co == 2);

  u8 mask[MAXP];
  memset(mask, 0, len);
  if (!hi.v6) allow(mask, len, 10, 2);
  if (r == PR_ICMP_FORWARD || r == PR_ICMP_REVERSE) {
    CHECK(hi.proto == (hi.v6 ? 58u : 1u) && hi.frag == 0);
    allow(mask, len, (u32)(hi.s - a), 2 * hi.alen);
    allow(mask, len, hi.l4 + 2, 2);                        /* ICMP checksum */
    allow(mask, len, hi.l4 + 8, hi.total - hi.l4 - 8);     /* the quoted packet */
    /* The quoted IPv4 header keeps a valid checksum. */
    u8 *qa = a + hi.l4 + 8, *qb = b + ho.l4 + 8;
    u32 qn = hi.total - hi.l4 - 8;
    struct hp qi;
    if (qn >= 20 && hparse(qa, qn, &qi, 1) && !qi.v6 && cksum_ok(0, qa, qi.hl)) CHECK(cksum_ok(0, qb, qi.hl));
  } else if (r == PR_FRAGMENT_FORWARD || r == PR_FRAGMENT_REVERSE) {
    allow(mask, len, (u32)((r == PR_FRAGMENT_FORWARD ? hi.d : hi.s) - a), hi.alen);
  } else {
    CHECK(hi.proto == 6 || hi.proto == 17 || hi.proto == 132);
    int fwd = d->verdict == PV_FORWARD;
    allow(mask, len, (u32)((fwd ? hi.d : hi.s) - a), hi.alen);
    allow(mask, len, hi.l4 + (fwd ? 2 : 0), 2);
    allow(mask, len, hi.l4 + (hi.proto == 6 ? 16 : hi.proto == 17 ? 6 : 8), hi.proto == 132 ? 4 : 2);
  }
  for (u32 k = 0; k < len; k++)
    if (!mask[k]) CHECK(a[k] == b[k]);
}

static void check_counters(void) {
  const struct sp_pctx *pc = (const struct sp_pctx *)(sp_mem_base + PCTX);
  u64 sum = 0;
  for (u32 r = 0; r < PR_COUNT; r++) {
    CHECK(pc->counters[r] == expect[r]);
    sum += pc->counters[r];
  }
  CHECK(sum == processed);
  for (u32 r = PR_COUNT; r < C_CT_CREATED; r++) CHECK(pc->counters[r] == 0);
  CHECK(pc->counters[C_CT_CREATED] == expect[PR_NEW] + expect[PR_NEW_AFFINITY]);
  CHECK(pc->counters[C_REPLY_NO_SLOT] + replies == rejects);
}

/* ---- the run ---- */

struct rec {
  u8 op, ref, fl, pad;
  const u8 *data;
  u32 n;
};

static const u32 dt_of[16] = {0, 0, 0, 0, 1, 1, 2, 5, 10, 11, 30, 31, 60, 61, 600, 21601};

static u32 sat_add(u32 a, u32 b) { return a + b < a ? 0xffffffffu : a + b; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < HDR) return 0;
  u32 il = rd32le(data + 4);
  if (il > size - HDR) il = (u32)(size - HDR);
  struct rec recs[MAX_PKTS];
  u32 npk = 0;
  const u8 *p = data + HDR + il, *end = data + size;
  while (npk < MAX_PKTS && (size_t)(end - p) >= REC) {
    struct rec *r = &recs[npk++];
    r->op = p[0], r->ref = p[1], r->fl = p[2], r->pad = p[3];
    u32 n = (u32)p[4] | (u32)p[5] << 8;
    p += REC;
    if (n > (u32)(end - p)) n = (u32)(end - p);
    if (n > MAXP) n = MAXP;
    r->data = p;
    r->n = n;
    p += n;
  }

  ct_cap = 8u << (data[0] & 7);
  differential = ct_cap <= 128;
  u32 aff_cap = (data[1] & 0x80) ? 8 : AFF_CAP;
  aff_cap_now = aff_cap;
  state_scribbled = 0;
  desc_off = (CT + ct_cap * (u32)sizeof(struct sp_ct) + 7) & ~7u;
  img_off = (desc_off + (MAX_PKTS + 1) * (u32)sizeof(struct sp_pkt) + 7) & ~7u;
  slots_off = ((img_off + il + 7) & ~7u) + RZ;
  sp_mem_len = slots_off + (u64)npk * SLOT;
  sp_mem_base = malloc(sp_mem_len);
  if (!sp_mem_base) return 0;
  memset(sp_mem_base, 0, slots_off);
  memcpy(sp_mem_base + img_off, data + HDR, il);
  ASAN_POISON_MEMORY_REGION(sp_mem_base + img_off + il, slots_off - (img_off + il));
  for (u32 i = 0; i < npk; i++) {
    memset(sp_mem_base + reply_at(i), 0xa5, SP_REPLY_MAX);
    ASAN_POISON_MEMORY_REGION(sp_mem_base + reply_at(i), SLOT);
  }
  ASAN_POISON_MEMORY_REGION(desc(npk), (MAX_PKTS - npk) * sizeof(struct sp_pkt));
  memset(expect, 0, sizeof expect);
  processed = rejects = replies = 0;

  u32 seed = 0x9e3779b9u * (data[0] | 1u);
  cur_pkt = ~0u;
  CHECK(sp_ctx_init(CTX, AFF, aff_cap, seed ^ 0x5bd1e995u) == E_OK);
  CHECK(sp_pctx_init(PCTX, CTX, CT, 12, seed) == E_CAPACITY);
  CHECK(sp_pctx_init(PCTX, CTX, CT, ct_cap, seed) == E_OK);
  for (u32 t = 0; t < 6; t++)
    if (data[1] & (1u << t)) CHECK(sp_pctx_timeout(PCTX, t, 2) == E_OK);
  if (data[1] & 0x40) {
    CHECK(sp_pctx_timeout(PCTX, SP_TIMEOUTS, 5) == E_CAPACITY);
    CHECK(sp_pctx_timeout(PCTX, 0, 0) == E_CAPACITY);
    CHECK(sp_pctx_timeout(PCTX + 4, 0, 5) == E_BOUNDS);
  }
  int attached = sp_attach(CTX, img_off, il) == E_OK;
  image_changed = 0;
  if (attached) collect_frontends(il);
  else nfe = 0;

  u32 now = (u32)data[2] | (u32)data[3] << 8;
  if (now >= 0xf000u) now = 0xffffffffu - (0xffffu - now) * 16u; /* up to 0xffffffff */
  u32 first = 0; /* first packet of the pending batch */
  u8 buf[MAXP + 64];

  for (u32 i = 0; i <= npk; i++) {
    const struct rec *r = i < npk ? &recs[i] : 0;
    u32 kind = r ? r->op & 7 : 0, pa = r ? r->op >> 3 : 0, ref = (r && i) ? r->ref % i : 0;
    if (r && i == 0 && kind != K_BUILD) kind = K_RAW;
    int derived_out = r && (kind == K_REPLY || kind == K_ICMP);
    /* Flush the pending batch when this packet needs a later time, a break, an output of it, or changes
     * the image. */
    if (i == npk || (i > first && ((r->fl & 15) >= 4 || (r->fl & 16) || kind == K_IMAGE || kind == K_STATE || (derived_out && ref >= first)))) {
      u32 cnt = i - first;
      if (cnt) {
        const u64 *counters = ((const struct sp_pctx *)(sp_mem_base + PCTX))->counters;
        u64 evicted = counters[C_CT_EVICTED];
        u32 got = process_both(first, cnt, now);
        cur_pkt = first;
        CHECK(got == cnt);
        evicted_in_batch = counters[C_CT_EVICTED] != evicted;
        for (u32 k = first; k < i; k++) {
          last_of_batch = k == i - 1;
          check_packet(k, in_len[k], recs[k].fl & 32 ? 0 : reply_at(k));
        }
        check_counters();
      }
      first = i;
    }
    if (i == npk) break;
    now = sat_add(now, dt_of[r->fl & 15]);

    if (trace)
      fprintf(stderr, "rec %2u kind %u param %2u ref %3u step %2u flags %02x pad %02x data %u now %u\n", i, kind, pa, ref,
              r->fl & 15, r->fl & 0xf0, r->pad, r->n, now);
    if (kind == K_IMAGE) image_change(pa, r->ref, il, &attached);
    if (kind == K_STATE) state_scribble(pa, r->ref, r->data, r->n);
    u32 len;
    switch (kind) {
    case K_REPEAT:
      len = in_len[ref];
      memcpy(buf, in_copy[ref], len);
      if (set_tcp_flags(buf, len, pa)) fix_cksums(buf, len);
      break;
    case K_REPLY:
      len = build_reply(buf, sp_mem_base + desc(ref)->off, in_len[ref], pa, in_copy[ref], in_len[ref]);
      break;
    case K_ICMP:
      len = build_icmp(buf, sp_mem_base + desc(ref)->off, in_len[ref], pa);
      break;
    case K_FRAG:
      len = build_frag(buf, in_copy[ref], in_len[ref], pa, ref);
      break;
    case K_BUILD:
      if (nfe) {
        len = build_to_frontend(buf, pa, &fes[r->ref % nfe], r->data, r->n);
        break;
      }
      /* fall through: no frontend to aim at */
    default:
      len = r->n;
      memcpy(buf, r->data, len);
      kind = K_RAW;
    }
    if (kind != K_RAW && kind != K_BUILD) {
      u32 xoff = (r->pad >> 4) * 4u;
      for (u32 k = 0; k < r->n && xoff + k < len; k++) buf[xoff + k] ^= r->data[k];
    }
    u32 pc = r->pad & 15;
    static const u32 cut[6] = {1, 2, 4, 8, 20, 40};
    if (pc >= 1 && pc <= 7) {
      if (len + pc <= MAXP) memset(buf + len, 0, pc), len += pc;
    } else if (pc >= 8 && pc <= 13) {
      len = len > cut[pc - 8] ? len - cut[pc - 8] : 0;
    } else if (pc == 14 && len > 20) {
      len = 20;
    }

    u32 shift = r->fl >> 6;
    u32 off = area_at(i) + shift;
    ASAN_UNPOISON_MEMORY_REGION(sp_mem_base + area_at(i), shift + len);
    memcpy(sp_mem_base + off, buf, len);
    memcpy(in_copy[i], buf, len);
    in_len[i] = len;
    in_off[i] = off;
    u32 reply_off = 0;
    if (!(r->fl & 32)) {
      reply_off = reply_at(i);
      ASAN_UNPOISON_MEMORY_REGION(sp_mem_base + reply_off, SP_REPLY_MAX);
    }
    *desc(i) = (struct sp_pkt){off, len, reply_off, 0x7777, 0xee, 0xee, 0x12345678u, 0x9abcdef0u};
  }

  /* Out-of-range requests are refused or dropped, never followed. */
  cur_pkt = ~0u;
  CHECK(sp_process_batch(PCTX, desc_off + 2, 1, now) == 0);
  CHECK(sp_process_batch(PCTX, (u32)sp_mem_len - 8, 1, now) == 0);
  CHECK(sp_process_batch(PCTX + 4, desc_off, 0, now) == 0);
  struct sp_pkt *bogus = desc(MAX_PKTS);
  *bogus = (struct sp_pkt){(u32)sp_mem_len - 10, 20, 0, 0, 0, 0, 0, 0};
  CHECK(sp_process_batch(PCTX, desc_off + MAX_PKTS * (u32)sizeof(struct sp_pkt), 1, now) == 1);
  CHECK(bogus->verdict == PV_DROP && bogus->reason == PR_MALFORMED_IP ? attached : bogus->reason == PR_NO_IMAGE && (!attached || image_changed));
  *bogus = (struct sp_pkt){0xfffffff0u, 0x20, 0, 0, 0, 0, 0, 0};
  CHECK(sp_process_batch(PCTX, desc_off + MAX_PKTS * (u32)sizeof(struct sp_pkt), 1, now) == 1);
  CHECK(bogus->verdict == PV_DROP && bogus->reason == PR_MALFORMED_IP ? attached : bogus->reason == PR_NO_IMAGE && (!attached || image_changed));
  if (attached) {
    sp_detach(CTX);
    *bogus = (struct sp_pkt){img_off, 20, 0, 0, 0, 0, 0, 0};
    CHECK(sp_process_batch(PCTX, desc_off + MAX_PKTS * (u32)sizeof(struct sp_pkt), 1, now) == 1);
    CHECK(bogus->verdict == PV_PASS && bogus->reason == PR_NO_IMAGE);
  }
  ASAN_UNPOISON_MEMORY_REGION(sp_mem_base, sp_mem_len);
  free(sp_mem_base);
  return 0;
}

/* Mostly mutate the packet records, sometimes the header's first four bytes or the image. */
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed) {
  seed = seed * 1103515245u + 12345u;
  u32 choice = (seed >> 16) % 16;
  if (size < HDR || choice == 0) return LLVMFuzzerMutate(data, size, max_size);
  size_t il = rd32le(data + 4);
  size_t pre = HDR + il;
  if (pre > size || pre >= max_size) return LLVMFuzzerMutate(data, size, max_size);
  if (choice == 1) {
    u8 h[4];
    memcpy(h, data, 4);
    size_t n = LLVMFuzzerMutate(h, 4, 4);
    memcpy(data, h, n);
    return size;
  }
  if (choice == 2 && il > 0) {
    size_t nl = LLVMFuzzerMutate(data + HDR, il, il);
    memmove(data + HDR + nl, data + pre, size - pre);
    data[4] = (u8)nl, data[5] = (u8)(nl >> 8), data[6] = (u8)(nl >> 16), data[7] = (u8)(nl >> 24);
    return size - (il - nl);
  }
  return pre + LLVMFuzzerMutate(data + pre, size - pre, max_size - pre);
}
