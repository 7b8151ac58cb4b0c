// The packet path's ABI, mirrored from wasm/packet.h (a check at core start compares every size with
// the core's sp_packet_sizeof). Offsets in bytes, little-endian.

/** One packet of a batch: in: off, len, replyOff; out: verdict, reason, replyLen, revnat, ct. */
export const PKT = { size: 24, off: 0, len: 4, replyOff: 8, replyLen: 12, verdict: 14, reason: 15, revnat: 16, ct: 20 } as const;

/** A conntrack entry (core-owned state, read for dumps). */
export const CT = {
  size: 80, a: 0, b: 16, aport: 32, bport: 34, proto: 36, type: 37, tcp: 38, dir: 39, expires: 40, nat: 44,
  natPort: 60, info: 62, peer: 64, beIndex: 68, revnat: 72, gen: 76,
} as const;

/** Packet-path state: conntrack table location, timeouts, counters (u64 each, from `counters`). */
export const PCTX = { size: 320, ctx: 0, ctOff: 4, ctMask: 8, ctSeed: 12, timeout: 16, sweep: 48, sweepTick: 52, counters: 64 } as const;
/** Timeout slots in the state (T_* in wasm/packet.h; TIMEOUTS names the ones in use). */
export const SP_TIMEOUTS = 8;

export const PACKET_STRUCT_SIZES = [PKT.size, CT.size, PCTX.size] as const;

/** Bytes of a reply slot: an ICMP error quotes as much as fits in 576 (IPv4) / 1280 (IPv6) bytes. */
export const REPLY_MAX = 1280;

export const PACKET_VERDICTS = ['pass', 'forward', 'reject', 'drop', 'reverse'] as const;
export type PacketVerdictName = (typeof PACKET_VERDICTS)[number];

/** PR_* in wasm/packet.h: the reason of a packet's verdict, and the counter it is counted under. */
export const PACKET_REASONS = [
  'not a service',
  'new flow (Maglev)',
  'new flow (session affinity)',
  'established',
  'reselected (backend gone or port reused)',
  'reverse NAT',
  'ICMP error to the backend',
  'ICMP error back to the client',
  'later fragment, DNAT',
  'later fragment, reverse NAT',
  'no endpoints',
  'no local endpoints',
  'source outside loadBalancerSourceRanges',
  'malformed IP header',
  'malformed IPv6 extension headers',
  'malformed TCP/UDP/SCTP header',
  'later fragment without its first',
  'fragmented SCTP to a service',
  'table entry out of range',
  'no tables attached',
  'IPv6 routing header: not the final destination',
] as const;

/** Counter keys, in counter order: one per reason, then the events (C_* in wasm/packet.h). */
export const REASON_KEYS = [
  'pass_not_service', 'forward_new', 'forward_new_affinity', 'forward_established', 'forward_reselected',
  'reverse_nat', 'forward_icmp_error', 'reverse_icmp_error', 'forward_fragment', 'reverse_fragment',
  'reject_no_endpoints', 'drop_no_local_endpoints', 'drop_source_range', 'drop_malformed_ip',
  'drop_malformed_ipv6_ext', 'drop_malformed_l4', 'pass_fragment_untracked', 'drop_fragmented_sctp',
  'drop_bad_image', 'pass_no_image', 'pass_routed',
] as const;
export const EVENT_COUNTERS = { 24: 'conntrack_created', 25: 'conntrack_evicted_table_full', 26: 'reject_reply_suppressed', 27: 'fragments_tracked' } as const;
export const COUNTER_SLOTS = 32;

/** T_* in wasm/packet.h: conntrack timeouts, in seconds. */
export const TIMEOUTS = { tcpSyn: 0, tcpEstablished: 1, tcpClosing: 2, udp: 3, sctp: 4, fragment: 5 } as const;
export type ConntrackTimeouts = Partial<Record<keyof typeof TIMEOUTS, number>>;
export const DEFAULT_TIMEOUTS: Required<ConntrackTimeouts> = { tcpSyn: 60, tcpEstablished: 21600, tcpClosing: 10, udp: 60, sctp: 60, fragment: 30 };

export const CT_EMPTY = 0;
export const CT_FORWARD = 1;
export const CT_REPLY = 2;
export const CT_FRAGMENT = 3;
/** A removed entry (wasm/packet.h): free for a new one, but not empty, so lookups go on past it. */
export const CT_DEAD = 4;
export const CT_TCP_SYN = 1;
export const CT_TCP_REPLIED = 2;
export const CT_TCP_FIN = 4;
export const CT_TCP_RST = 8;
