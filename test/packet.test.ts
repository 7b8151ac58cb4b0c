// Known-answer tests of the packet path (wasm/packet.c through src/engine/packet.ts), one test per rule.
// Packets are built with test/helpers/packets.ts and every checksum is verified there by full
// recomputation (Internet checksum, pseudo-headers, CRC32c bit by bit). The expected values come from the
// rules (wasm/packet.c's comments, RFC 768/793/1071/1624/4443/4960/5508/8200, kube-proxy's behaviour), and
// the backend a new flow must get is what dp.select() answers for the same flow (the same Maglev). The
// engine is whichever createDataplane picks (the suite also runs with SVCPLANE_ENGINE=wasm).

import { describe, expect, it } from 'vitest';
import { createDataplane, type Dataplane, type DataplaneOptions } from '../src/engine/dataplane.js';
import type { Protocol } from '../src/k8s/net.js';
import { newBatchResult, type PacketOutcome } from '../src/engine/packet.js';
import { CT, EVENT_COUNTERS, REASON_KEYS } from '../src/engine/packet-layout.js';
import type { Core } from '../src/engine/core.js';
import { clusterIP, ready, service, slice, slicePort, svcPort, terminating } from './helpers/objects.js';
import {
  IPPROTO, TCP_FLAGS, addr, be16, changedOutside, checksums, crc32c, fragment4, fragment6, fragmentHeader, icmp4,
  icmp6, ipv4, ipv6, onesSum, optionsHeader, parse, pattern, pseudoSum, put16, quoted, quotedIpv4HeaderOk,
  reassemble, routingHeader, sameBytes, sctp, tcp, udp, word32, type ExtHeader, type Segment,
} from './helpers/packets.js';

// ---- fixtures ----

const NODE_V4 = '192.168.10.11';
const NODE_V6 = 'fd00:10::11';
const BASE: DataplaneOptions = { node: 'node-a', nodeAddresses: [NODE_V4, NODE_V6], zone: 'zone-a', tableSeed: 1 };
const CLIENT = '198.51.100.7';
const CLIENT6 = '2001:db8:1::7';
const ROUTER = '192.0.2.254';
const ROUTER6 = '2001:db8:ff::1';
const WEB = '10.96.0.10';
const WEB6 = 'fd00:96::10';
const EMPTY = '10.96.0.40';
const EMPTY6 = 'fd00:96::40';
const NOWHERE = '10.96.0.99';
const V4_BACKENDS = ['10.244.1.5', '10.244.1.6', '10.244.2.7'];
const V6_BACKENDS = ['fd00:244:1::5', 'fd00:244:1::6', 'fd00:244:2::7'];
const NOW = 1000;

/** Service port -> target port, per protocol. */
const PORTS = { TCP: [80, 8080], UDP: [53, 5353], SCTP: [7777, 7000] } as const;
const SLICE_PORTS = [slicePort('http', 8080), slicePort('dns', 5353, 'UDP'), slicePort('assoc', 7000, 'SCTP')];
const SVC_PORTS = [svcPort('http', 80), svcPort('dns', 53, { protocol: 'UDP' }), svcPort('assoc', 7777, { protocol: 'SCTP' })];

const dual = { ipFamilies: ['IPv4', 'IPv6'] as ('IPv4' | 'IPv6')[], ipFamilyPolicy: 'RequireDualStack' as const };

/** web: dual-stack ClusterIP with a TCP, a UDP and an SCTP port. */
function webService(extra: Parameters<typeof clusterIP>[2] = {}): ReturnType<typeof clusterIP> {
  return clusterIP('web', WEB, { clusterIPs: [WEB, WEB6], ...dual, ports: SVC_PORTS, ...extra });
}

function webSlices(v4: string[] = V4_BACKENDS, v6: string[] = V6_BACKENDS): ReturnType<typeof slice>[] {
  return [
    slice('web-v4', 'web', v4.map((a) => ready(a)), { ports: SLICE_PORTS }),
    slice('web-v6', 'web', v6.map((a) => ready(a)), { ports: SLICE_PORTS, addressType: 'IPv6' }),
  ];
}

/** empty: a dual-stack ClusterIP without any endpoints. */
const emptyService = (): ReturnType<typeof clusterIP> => clusterIP('empty', EMPTY, { clusterIPs: [EMPTY, EMPTY6], ...dual, ports: SVC_PORTS });

async function plane(objects: unknown[] = [webService(), ...webSlices(), emptyService()], opts: Partial<DataplaneOptions> = {}): Promise<Dataplane> {
  const dp = await createDataplane({ ...BASE, ...opts });
  expect(dp.apply(objects)).toEqual([]);
  return dp;
}

function run(dp: Dataplane, pkt: Uint8Array, now = NOW): PacketOutcome {
  const out = dp.process([pkt], now);
  expect(out).toHaveLength(1);
  return out[0] as PacketOutcome;
}

/** verdict/reason of an outcome, for one-line assertions. */
const vr = (o: PacketOutcome): [string, string] => [o.verdict, o.reasonKey];

interface Backend {
  address: string;
  port: number;
  bytes: Uint8Array;
}

/** The backend dp.select() picks for a flow (it must forward). */
function backendOf(dp: Dataplane, protocol: Protocol, src: string, sport: number, dst: string, dport: number, now = NOW): Backend {
  const s = dp.select({ protocol, src, sport, dst, dport, now });
  expect(s.verdict).toBe('forward');
  if (!s.backend) throw new Error('no backend');
  return { address: s.backend.address, port: s.backend.port, bytes: addr(s.backend.address) };
}

/** A packet of `protocol` from src:sport to dst:dport (IPv6 when the addresses are). */
function packet(protocol: Protocol, src: string, sport: number, dst: string, dport: number, o: { flags?: number; payload?: Uint8Array; ext?: ExtHeader[]; noChecksum?: boolean } = {}): Uint8Array {
  const seg: Segment =
    protocol === 'TCP' ? tcp({ sport, dport, flags: o.flags ?? TCP_FLAGS.SYN, payload: o.payload })
      : protocol === 'UDP' ? udp({ sport, dport, payload: o.payload ?? pattern(24), noChecksum: o.noChecksum })
        : sctp({ sport, dport });
  return src.includes(':') ? ipv6({ src, dst, ext: o.ext }, seg) : ipv4({ src, dst }, seg);
}

/** Byte ranges a rewrite of the destination (or source) address and port may change. */
function natRanges(p: Uint8Array, dst: boolean): [number, number][] {
  const info = parse(p);
  const a: [number, number] = info.v6 ? (dst ? [24, 40] : [8, 24]) : dst ? [16, 20] : [12, 16];
  const port: [number, number] = dst ? [info.l4 + 2, info.l4 + 4] : [info.l4, info.l4 + 2];
  const sum: [number, number] =
    info.proto === IPPROTO.TCP ? [info.l4 + 16, info.l4 + 18] : info.proto === IPPROTO.UDP ? [info.l4 + 6, info.l4 + 8] : [info.l4 + 8, info.l4 + 12];
  return info.v6 ? [a, port, sum] : [a, port, sum, [10, 12]];
}

const OK = { ip: 'ok', l4: 'ok' };
const OK6 = { ip: 'n/a', l4: 'ok' };

// ---- the toolkit's own known answers (so that its verdicts on the core can be trusted) ----

describe('packet toolkit', () => {
  it('CRC32c of "123456789" is 0xE3069283 (RFC 3720 B.4 check value); RFC 1071 sum example', () => {
    expect(crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa); // RFC 3720 B.4: 32 bytes of zeros
    expect(onesSum(Uint8Array.from([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]))).toBe(0xddf2);
  });

  it('built packets verify, and a flipped byte is caught by every check', () => {
    const pkts = [
      packet('TCP', CLIENT, 1, WEB, 80, { payload: pattern(9) }),
      packet('UDP', CLIENT6, 1, WEB6, 53),
      packet('SCTP', CLIENT, 1, WEB, 7777),
      ipv4({ src: ROUTER, dst: CLIENT }, icmp4(11, 0, pattern(28))),
      ipv6({ src: ROUTER6, dst: CLIENT6 }, icmp6(3, 0, pattern(48))),
    ];
    for (const p of pkts) {
      const good = checksums(p);
      expect(good.l4).toBe('ok');
      const bad = p.slice();
      bad[bad.length - 1] = ((bad[bad.length - 1] as number) ^ 0x5a) & 0xff;
      expect(checksums(bad).l4).toBe('bad');
    }
    const p = pkts[0] as Uint8Array;
    const bad = p.slice();
    bad[8] = 63;
    expect(checksums(bad).ip).toBe('bad');
  });
});

// ---- DNAT and reverse NAT ----

/**
 * The round trip every family/protocol must satisfy: a new flow to the frontend is DNATed to the backend
 * dp.select() names (address and port, checksums valid, nothing else changed); the backend's reply gets
 * the frontend back as its source; later packets of the flow keep the backend.
 */
async function roundTrip(protocol: Protocol, v6: boolean): Promise<void> {
  const dp = await plane();
  const client = v6 ? CLIENT6 : CLIENT;
  const fe = v6 ? WEB6 : WEB;
  const [port, target] = PORTS[protocol];
  const sport = 40001;
  const be = backendOf(dp, protocol, client, sport, fe, port);
  expect(be.port).toBe(target);
  expect((v6 ? V6_BACKENDS : V4_BACKENDS).map((a) => addr(a).join())).toContain(be.bytes.join());

  const first = packet(protocol, client, sport, fe, port, { payload: pattern(33) });
  const before = first.slice();
  const o = run(dp, first);
  expect(vr(o)).toEqual(['forward', 'forward_new']);
  expect(o.frontend).toEqual({ address: fe, port, protocol });
  expect(o.service).toBe('shop/web');
  const info = parse(first);
  expect([...info.dst]).toEqual([...be.bytes]);
  expect(info.dport).toBe(be.port);
  expect([...info.src]).toEqual([...addr(client)]);
  expect(info.sport).toBe(sport);
  expect(checksums(first)).toEqual(v6 ? OK6 : OK);
  expect(changedOutside(before, first, natRanges(before, true))).toEqual([]);

  const reply = packet(protocol, be.address, be.port, client, sport, { flags: TCP_FLAGS.SYN | TCP_FLAGS.ACK, payload: pattern(17) });
  const replyBefore = reply.slice();
  const r = run(dp, reply);
  expect(vr(r)).toEqual(['reverse', 'reverse_nat']);
  expect([r.service, r.frontend]).toEqual(['shop/web', { address: fe, port, protocol }]);
  const ri = parse(reply);
  expect([...ri.src]).toEqual([...addr(fe)]);
  expect(ri.sport).toBe(port);
  expect([...ri.dst]).toEqual([...addr(client)]);
  expect(ri.dport).toBe(sport);
  expect(checksums(reply)).toEqual(v6 ? OK6 : OK);
  expect(changedOutside(replyBefore, reply, natRanges(replyBefore, false))).toEqual([]);

  for (let i = 0; i < 3; i++) {
    const next = packet(protocol, client, sport, fe, port, { flags: TCP_FLAGS.ACK, payload: pattern(10 + i, i) });
    const e = run(dp, next, NOW + 1 + i);
    expect(vr(e)).toEqual(['forward', 'forward_established']);
    expect([...parse(next).dst]).toEqual([...be.bytes]);
    expect(parse(next).dport).toBe(be.port);
    expect(checksums(next)).toEqual(v6 ? OK6 : OK);
  }
}

describe('DNAT to the Maglev backend, reverse NAT of replies, established flows keep the backend', () => {
  it('IPv4 TCP SYN to a ClusterIP', () => roundTrip('TCP', false));
  it('IPv6 TCP', () => roundTrip('TCP', true));
  it('IPv4 UDP', () => roundTrip('UDP', false));
  it('IPv6 UDP', () => roundTrip('UDP', true));
  it('IPv4 SCTP: ports rewritten, CRC32c recomputed and valid', () => roundTrip('SCTP', false));
  it('IPv6 SCTP: ports rewritten, CRC32c recomputed and valid', () => roundTrip('SCTP', true));

  it('many flows: each new flow goes where dp.select() says', async () => {
    const dp = await plane();
    const seen = new Set<string>();
    for (let i = 0; i < 60; i++) {
      const sport = 20000 + i * 397;
      const be = backendOf(dp, 'TCP', CLIENT, sport, WEB, 80);
      const p = packet('TCP', CLIENT, sport, WEB, 80);
      expect(vr(run(dp, p))).toEqual(['forward', 'forward_new']);
      expect([parse(p).dst.join('.'), parse(p).dport]).toEqual([be.address, be.port]);
      seen.add(be.address);
    }
    expect(seen.size).toBe(3); // the flows spread: the assertion above compared real choices
  });

  it('NodePort and LoadBalancer frontends: DNAT to the backend, replies come back from that frontend', async () => {
    const LB = '203.0.113.10';
    const gw = service(
      'gw',
      { type: 'LoadBalancer', clusterIP: '10.96.0.30', ports: [svcPort('http', 80, { nodePort: 30080 })] },
      { status: { loadBalancer: { ingress: [{ ip: LB }] } } },
    );
    const dp = await plane([gw, slice('gw-1', 'gw', V4_BACKENDS.map((a) => ready(a)))]);
    for (const [fe, port] of [[NODE_V4, 30080], [LB, 80]] as const) {
      const be = backendOf(dp, 'TCP', CLIENT, 40006, fe, port);
      const p = packet('TCP', CLIENT, 40006, fe, port);
      expect(vr(run(dp, p))).toEqual(['forward', 'forward_new']);
      expect([parse(p).dst.join('.'), parse(p).dport]).toEqual([be.address, 8080]);
      expect(checksums(p)).toEqual(OK);
      const r = packet('TCP', be.address, 8080, CLIENT, 40006, { flags: TCP_FLAGS.SYN | TCP_FLAGS.ACK });
      expect(vr(run(dp, r))).toEqual(['reverse', 'reverse_nat']);
      expect([parse(r).src.join('.'), parse(r).sport]).toEqual([fe, port]);
      expect(checksums(r)).toEqual(OK);
    }
  });

  it('a batch is processed in order: SYN, reply and ACK of one flow in one call', async () => {
    const dp = await plane();
    const be = backendOf(dp, 'TCP', CLIENT, 40007, WEB, 80);
    const pkts = [
      packet('TCP', CLIENT, 40007, WEB, 80),
      packet('TCP', be.address, be.port, CLIENT, 40007, { flags: TCP_FLAGS.SYN | TCP_FLAGS.ACK }),
      packet('TCP', CLIENT, 40007, WEB, 80, { flags: TCP_FLAGS.ACK }),
    ];
    expect(dp.process(pkts, NOW).map(vr)).toEqual([['forward', 'forward_new'], ['reverse', 'reverse_nat'], ['forward', 'forward_established']]);
    expect(pkts.map((p) => checksums(p))).toEqual([OK, OK, OK]);
    expect([parse(pkts[1] as Uint8Array).src.join('.'), parse(pkts[2] as Uint8Array).dst.join('.')]).toEqual([WEB, be.address]);
  });

  it('processBatch: packets at offsets in one buffer are rewritten there; the bytes between them are not touched', async () => {
    const dp = await plane();
    const a = packet('TCP', CLIENT, 40008, WEB, 80);
    const b = packet('UDP', CLIENT6, 40008, WEB6, 53);
    const data = new Uint8Array(7 + a.length + 13 + b.length + 5).fill(0xee);
    data.set(a, 7);
    data.set(b, 7 + a.length + 13);
    const offsets = Uint32Array.from([7, 7 + a.length + 13]);
    const lengths = Uint32Array.from([a.length, b.length]);
    const beA = backendOf(dp, 'TCP', CLIENT, 40008, WEB, 80);
    const beB = backendOf(dp, 'UDP', CLIENT6, 40008, WEB6, 53);
    const before = data.slice();
    const r = dp.packets.processBatch(data, offsets, lengths, NOW);
    expect([...r.verdicts]).toEqual([1, 1]); // forward, forward
    const outA = data.slice(7, 7 + a.length);
    const outB = data.slice(7 + a.length + 13, 7 + a.length + 13 + b.length);
    expect([parse(outA).dst.join('.'), parse(outA).dport]).toEqual([beA.address, beA.port]);
    expect([[...parse(outB).dst], parse(outB).dport]).toEqual([[...beB.bytes], beB.port]);
    expect([checksums(outA), checksums(outB)]).toEqual([OK, OK6]);
    expect(changedOutside(before, data, [[7, 7 + a.length], [7 + a.length + 13, 7 + a.length + 13 + b.length]])).toEqual([]);
  });

  it('processBatch into reused result arrays: the same results as fresh ones, a reply of an earlier batch cleared', async () => {
    const dp = await plane();
    const batch = (first: Uint8Array): [Uint8Array, Uint32Array, Uint32Array] => {
      const second = packet('TCP', CLIENT, 40011, WEB, 80);
      const data = new Uint8Array(first.length + second.length);
      data.set(first);
      data.set(second, first.length);
      return [data, Uint32Array.of(0, first.length), Uint32Array.of(first.length, second.length)];
    };
    const out = newBatchResult(4);
    out.replies.fill(new Uint8Array(1)); // stale entries past the batch stay; the batch's are set or cleared
    const r1 = dp.packets.processBatch(...batch(packet('TCP', CLIENT, 40010, EMPTY, 80)), NOW, out);
    expect(r1).toBe(out);
    expect([r1.verdicts[0], r1.verdicts[1], r1.reasons[0]]).toEqual([2, 1, REASON_KEYS.indexOf('reject_no_endpoints')]);
    expect(r1.replies[0]?.length).toBeGreaterThan(28);
    expect(r1.replies[1]).toBeUndefined();
    const f = (await plane()).packets.processBatch(...batch(packet('TCP', CLIENT, 40012, WEB, 80)), NOW);
    const r2 = dp.packets.processBatch(...batch(packet('TCP', CLIENT, 40012, WEB, 80)), NOW, out);
    expect([[...r2.verdicts.subarray(0, 2)], [...r2.reasons.subarray(0, 2)], [...r2.revnat.subarray(0, 2)], r2.replies.slice(0, 2)])
      .toEqual([[...f.verdicts], [...f.reasons.map((x, i) => (i === 1 ? REASON_KEYS.indexOf('forward_established') : x))], [...f.revnat], [undefined, undefined]]);
    expect(out.replies[2]).toEqual(new Uint8Array(1));
    expect(() => dp.packets.processBatch(...batch(packet('TCP', CLIENT, 40013, WEB, 80)), NOW, newBatchResult(1))).toThrow(/result arrays of 1 entries for a batch of 2/);
  });

  it('IPv4 UDP with checksum 0 ("no checksum") stays 0 both ways', async () => {
    const dp = await plane();
    const be = backendOf(dp, 'UDP', CLIENT, 40002, WEB, 53);
    const p = packet('UDP', CLIENT, 40002, WEB, 53, { noChecksum: true });
    const before = p.slice();
    expect(vr(run(dp, p))).toEqual(['forward', 'forward_new']);
    expect([parse(p).dst.join('.'), parse(p).dport]).toEqual([be.address, be.port]);
    expect(checksums(p)).toEqual({ ip: 'ok', l4: 'zero' });
    expect(changedOutside(before, p, natRanges(before, true))).toEqual([]);
    expect(be16(p, 26)).toBe(0);
    const reply = packet('UDP', be.address, be.port, CLIENT, 40002, { noChecksum: true });
    expect(vr(run(dp, reply))).toEqual(['reverse', 'reverse_nat']);
    expect(checksums(reply)).toEqual({ ip: 'ok', l4: 'zero' });
    expect([parse(reply).src.join('.'), parse(reply).sport]).toEqual([WEB, 53]);
  });

  it('a UDP checksum whose rewritten value computes to 0 is sent as 0xffff (RFC 768), both ways', async () => {
    const dp = await plane();
    for (const v6 of [false, true]) {
      const client = v6 ? CLIENT6 : CLIENT;
      const fe = v6 ? WEB6 : WEB;
      const sport = 40003;
      const be = backendOf(dp, 'UDP', client, sport, fe, 53);
      // Payload: 14 fixed bytes then one free word, chosen so that the sum over the *rewritten* datagram
      // (pseudo-header with the backend, dport 5353) is 0xffff: its checksum computes to 0.
      const zeroing = (src: string, dst: string, sp: number, dp_: number): Uint8Array => {
        const payload = new Uint8Array(16);
        payload.set(pattern(14, 3));
        const seg = udp({ sport: sp, dport: dp_, payload }).bytes;
        const s = onesSum(seg, pseudoSum(addr(src), addr(dst), IPPROTO.UDP, seg.length));
        put16(payload, 14, 0xffff - s);
        return payload;
      };
      const payload = zeroing(client, be.address, sport, be.port);
      const p = packet('UDP', client, sport, fe, 53, { payload });
      const l4 = parse(p).l4;
      expect([0, 0xffff]).not.toContain(be16(p, l4 + 6)); // the original carries an ordinary checksum
      expect(vr(run(dp, p))).toEqual(['forward', 'forward_new']);
      expect([...parse(p).dst]).toEqual([...be.bytes]);
      expect(be16(p, l4 + 6)).toBe(0xffff);
      expect(checksums(p).l4).toBe('ok');

      const rpayload = zeroing(fe, client, 53, sport);
      const reply = packet('UDP', be.address, be.port, client, sport, { payload: rpayload });
      expect([0, 0xffff]).not.toContain(be16(reply, l4 + 6));
      expect(vr(run(dp, reply))).toEqual(['reverse', 'reverse_nat']);
      expect([...parse(reply).src]).toEqual([...addr(fe)]);
      expect(be16(reply, l4 + 6)).toBe(0xffff);
      expect(checksums(reply).l4).toBe('ok');
    }
  });

  it('IPv6 UDP with checksum 0 is dropped as malformed (RFC 8200 8.1), untouched', async () => {
    const dp = await plane();
    const p = packet('UDP', CLIENT6, 40004, WEB6, 53, { noChecksum: true });
    const before = p.slice();
    expect(vr(run(dp, p))).toEqual(['drop', 'drop_malformed_l4']);
    expect(sameBytes(p, before)).toBe(true);
  });

  it('IP total length shorter than the buffer: the padding is ignored and left as it was', async () => {
    const dp = await plane();
    const be = backendOf(dp, 'TCP', CLIENT, 40005, WEB, 80);
    const core = packet('TCP', CLIENT, 40005, WEB, 80);
    const p = new Uint8Array(core.length + 6);
    p.set(core);
    p.fill(0xab, core.length);
    expect(vr(run(dp, p))).toEqual(['forward', 'forward_new']);
    expect([parse(p).dst.join('.'), parse(p).dport]).toEqual([be.address, be.port]);
    expect(checksums(p)).toEqual(OK);
    expect([...p.subarray(core.length)]).toEqual(new Array(6).fill(0xab));
  });
});

// ---- IPv4 options, IPv6 extension headers ----

describe('IPv4 options and IPv6 extension headers', () => {
  it('IPv4 with options (IHL 7): the TCP header is found after them and DNATed; options untouched', async () => {
    const dp = await plane();
    const be = backendOf(dp, 'TCP', CLIENT, 40010, WEB, 80);
    const options = Uint8Array.from([0x01, 0x01, 0x94, 0x04, 0x00, 0x00, 0x01, 0x00]); // NOP NOP RouterAlert NOP EOL
    const p = ipv4({ src: CLIENT, dst: WEB, options }, tcp({ sport: 40010, dport: 80 }));
    expect((p[0] as number) & 0xf).toBe(7);
    const before = p.slice();
    expect(vr(run(dp, p))).toEqual(['forward', 'forward_new']);
    expect(be16(p, 28 + 2)).toBe(be.port);
    expect(p.subarray(16, 20).join('.')).toBe(be.address);
    expect(checksums(p)).toEqual(OK);
    expect(changedOutside(before, p, [[10, 12], [16, 20], [30, 32], [44, 46]])).toEqual([]);
    const reply = ipv4({ src: be.address, dst: CLIENT, options }, tcp({ sport: be.port, dport: 40010, flags: TCP_FLAGS.SYN | TCP_FLAGS.ACK }));
    expect(vr(run(dp, reply))).toEqual(['reverse', 'reverse_nat']);
    expect([reply.subarray(12, 16).join('.'), be16(reply, 28)]).toEqual([WEB, 80]);
    expect(checksums(reply)).toEqual(OK);
  });

  it('IPv6 hop-by-hop, destination options and a routing header with segments left 0 are walked', async () => {
    const dp = await plane();
    const be = backendOf(dp, 'TCP', CLIENT6, 40011, WEB6, 80);
    const ext = [optionsHeader(IPPROTO.HOPOPTS, 8), optionsHeader(IPPROTO.DSTOPTS, 16), routingHeader(0, [WEB6, ROUTER6])];
    const p = packet('TCP', CLIENT6, 40011, WEB6, 80, { ext });
    const before = p.slice();
    expect(parse(p).l4).toBe(40 + 8 + 16 + 40);
    expect(vr(run(dp, p))).toEqual(['forward', 'forward_new']);
    expect([...parse(p).dst]).toEqual([...be.bytes]);
    expect(parse(p).dport).toBe(be.port);
    expect(checksums(p)).toEqual(OK6);
    expect(changedOutside(before, p, natRanges(before, true))).toEqual([]);
  });

  it('an Authentication Header (length in 4-byte units) is walked', async () => {
    const dp = await plane();
    const be = backendOf(dp, 'UDP', CLIENT6, 40012, WEB6, 53);
    const ah: ExtHeader = { type: IPPROTO.AH, bytes: new Uint8Array(24) };
    (ah.bytes as Uint8Array)[1] = 24 / 4 - 2;
    const p = packet('UDP', CLIENT6, 40012, WEB6, 53, { ext: [ah] });
    expect(vr(run(dp, p))).toEqual(['forward', 'forward_new']);
    expect([...parse(p).dst]).toEqual([...be.bytes]);
    expect(parse(p).dport).toBe(be.port);
    expect(checksums(p)).toEqual(OK6);
  });

  it('a routing header with segments left > 0: not the final destination, passes untouched (pass_routed)', async () => {
    const dp = await plane();
    const p = packet('TCP', CLIENT6, 40013, WEB6, 80, { ext: [routingHeader(1, [ROUTER6, WEB6])] });
    const before = p.slice();
    expect(vr(run(dp, p))).toEqual(['pass', 'pass_routed']);
    expect(sameBytes(p, before)).toBe(true);
  });

  it('eight extension headers are walked; a ninth makes the chain malformed', async () => {
    const dp = await plane();
    const eight = new Array(8).fill(0).map(() => optionsHeader(IPPROTO.DSTOPTS));
    const ok = packet('TCP', CLIENT6, 40014, WEB6, 80, { ext: eight });
    expect(vr(run(dp, ok))).toEqual(['forward', 'forward_new']);
    const nine = packet('TCP', CLIENT6, 40015, WEB6, 80, { ext: [...eight, optionsHeader(IPPROTO.DSTOPTS)] });
    const before = nine.slice();
    expect(vr(run(dp, nine))).toEqual(['drop', 'drop_malformed_ipv6_ext']);
    expect(sameBytes(nine, before)).toBe(true);
  });
});

// ---- fragments ----

describe('fragments', () => {
  it('IPv4: the first fragment is DNATed; a later fragment of the same datagram gets the same destination', async () => {
    const dp = await plane();
    const be = backendOf(dp, 'UDP', CLIENT, 40020, WEB, 53);
    const whole = packet('UDP', CLIENT, 40020, WEB, 53, { payload: pattern(100) });
    const [first, later] = fragment4(whole, 56);
    const laterBefore = later.slice();
    const created = dp.packets.counters().fragments_tracked;
    expect(vr(run(dp, first))).toEqual(['forward', 'forward_new']);
    expect([parse(first).dst.join('.'), parse(first).dport]).toEqual([be.address, be.port]);
    expect(checksums(first).ip).toBe('ok');
    expect(dp.packets.counters().fragments_tracked).toBe((created ?? 0) + 1);
    expect(vr(run(dp, later))).toEqual(['forward', 'forward_fragment']);
    expect(parse(later).dst.join('.')).toBe(be.address);
    expect(checksums(later).ip).toBe('ok');
    expect(changedOutside(laterBefore, later, [[10, 12], [16, 20]])).toEqual([]);
    // Reassembled, the datagram's UDP checksum (computed over both fragments) is valid for the backend.
    const re = reassemble(first, later);
    expect(checksums(re)).toEqual(OK);
    expect(parse(re).dport).toBe(be.port);
  });

  it('IPv4: later fragments of a reverse-NATed reply get the frontend as their source', async () => {
    const dp = await plane();
    const be = backendOf(dp, 'UDP', CLIENT, 40021, WEB, 53);
    run(dp, packet('UDP', CLIENT, 40021, WEB, 53));
    const [first, later] = fragment4(packet('UDP', be.address, be.port, CLIENT, 40021, { payload: pattern(200) }), 96);
    expect(vr(run(dp, first))).toEqual(['reverse', 'reverse_nat']);
    expect(vr(run(dp, later))).toEqual(['reverse', 'reverse_fragment']);
    expect(parse(later).src.join('.')).toBe(WEB);
    expect(checksums(later).ip).toBe('ok');
    const re = reassemble(first, later);
    expect(checksums(re)).toEqual(OK);
    expect([parse(re).src.join('.'), parse(re).sport]).toEqual([WEB, 53]);
  });

  it('IPv6: later fragments of a reverse-NATed reply get the frontend as their source', async () => {
    const dp = await plane();
    const be = backendOf(dp, 'UDP', CLIENT6, 40029, WEB6, 53);
    run(dp, packet('UDP', CLIENT6, 40029, WEB6, 53));
    const [first, later] = fragment6(packet('UDP', be.address, be.port, CLIENT6, 40029, { payload: pattern(200) }), 104, 0x99);
    expect(vr(run(dp, first))).toEqual(['reverse', 'reverse_nat']);
    const laterBefore = later.slice();
    expect(vr(run(dp, later))).toEqual(['reverse', 'reverse_fragment']);
    expect([...parse(later).src]).toEqual([...addr(WEB6)]);
    expect(changedOutside(laterBefore, later, [[8, 24]])).toEqual([]);
    const re = reassemble(first, later);
    expect(checksums(re)).toEqual(OK6);
    expect(parse(re).sport).toBe(53);
  });

  it('a later fragment arriving before its first passes untouched (pass_fragment_untracked)', async () => {
    const dp = await plane();
    const [, later] = fragment4(packet('UDP', CLIENT, 40022, WEB, 53, { payload: pattern(100) }), 56);
    const before = later.slice();
    expect(vr(run(dp, later))).toEqual(['pass', 'pass_fragment_untracked']);
    expect(sameBytes(later, before)).toBe(true);
    const [, later6] = fragment6(packet('UDP', CLIENT6, 40022, WEB6, 53, { payload: pattern(100) }), 56, 0x7001);
    const before6 = later6.slice();
    expect(vr(run(dp, later6))).toEqual(['pass', 'pass_fragment_untracked']);
    expect(sameBytes(later6, before6)).toBe(true);
  });

  it('a later fragment of another datagram (other identification) is not translated', async () => {
    const dp = await plane();
    const [first] = fragment4(ipv4({ src: CLIENT, dst: WEB, id: 0x1111 }, udp({ sport: 40023, dport: 53, payload: pattern(100) })), 56);
    const [, other] = fragment4(ipv4({ src: CLIENT, dst: WEB, id: 0x2222 }, udp({ sport: 40023, dport: 53, payload: pattern(100) })), 56);
    expect(vr(run(dp, first))).toEqual(['forward', 'forward_new']);
    const before = other.slice();
    expect(vr(run(dp, other))).toEqual(['pass', 'pass_fragment_untracked']);
    expect(sameBytes(other, before)).toBe(true);
  });

  it('IPv6 Fragment header: first fragment DNATed, later fragment gets the same destination', async () => {
    const dp = await plane();
    const be = backendOf(dp, 'TCP', CLIENT6, 40024, WEB6, 80);
    const whole = packet('TCP', CLIENT6, 40024, WEB6, 80, { flags: TCP_FLAGS.SYN, payload: pattern(150) });
    const [first, later] = fragment6(whole, 80, 0xabcdef01);
    const laterBefore = later.slice();
    expect(vr(run(dp, first))).toEqual(['forward', 'forward_new']);
    expect([...parse(first).dst]).toEqual([...be.bytes]);
    expect(parse(first).dport).toBe(be.port);
    expect(vr(run(dp, later))).toEqual(['forward', 'forward_fragment']);
    expect([...parse(later).dst]).toEqual([...be.bytes]);
    expect(changedOutside(laterBefore, later, [[24, 40]])).toEqual([]);
    expect(checksums(reassemble(first, later))).toEqual(OK6);
  });

  it('IPv6 atomic fragment (offset 0, M clear) is an ordinary packet', async () => {
    const dp = await plane();
    const be = backendOf(dp, 'UDP', CLIENT6, 40025, WEB6, 53);
    const tracked = dp.packets.counters().fragments_tracked;
    const p = packet('UDP', CLIENT6, 40025, WEB6, 53, { ext: [fragmentHeader(0, false, 0x42)] });
    expect(vr(run(dp, p))).toEqual(['forward', 'forward_new']);
    expect([...parse(p).dst]).toEqual([...be.bytes]);
    expect(checksums(p)).toEqual(OK6);
    expect(dp.packets.counters().fragments_tracked).toBe(tracked);
  });

  // RFC 8200 4.5: the Fragment header's Next Header names the first header of the fragmentable part, which
  // may be a Destination Options header; a datagram is identified by source, destination and
  // identification. The later fragment then says Next Header 60 while the first fragment's upper layer is 17.
  it('IPv6: a later fragment is translated when Destination Options follow the Fragment header', async () => {
    const dp = await plane();
    const be = backendOf(dp, 'UDP', CLIENT6, 40026, WEB6, 53);
    const whole = packet('UDP', CLIENT6, 40026, WEB6, 53, { ext: [optionsHeader(IPPROTO.DSTOPTS)], payload: pattern(120) });
    const [first, later] = fragment6(whole, 64, 0x5150);
    expect(later[40]).toBe(IPPROTO.DSTOPTS); // the later fragment's Fragment header names Destination Options
    expect(vr(run(dp, first))).toEqual(['forward', 'forward_new']);
    expect([...parse(first).dst]).toEqual([...be.bytes]);
    expect(vr(run(dp, later))).toEqual(['forward', 'forward_fragment']);
    expect([...parse(later).dst]).toEqual([...be.bytes]);
  });

  // The reason fragmented SCTP to a frontend is dropped holds for a reverse-NATed reply too: the CRC32c
  // covers the whole SCTP packet, so it cannot be recomputed over the first fragment alone. A fragmented
  // reply must be dropped, or (if translated) reassemble into a packet whose CRC32c is valid.
  it('a fragmented SCTP reply from the backend is dropped, as fragmented SCTP to a frontend (drop_fragmented_sctp)', async () => {
    const dp = await plane();
    const be = backendOf(dp, 'SCTP', CLIENT, 40028, WEB, 7777);
    expect(vr(run(dp, packet('SCTP', CLIENT, 40028, WEB, 7777)))).toEqual(['forward', 'forward_new']);
    const reply = ipv4({ src: be.address, dst: CLIENT }, sctp({ sport: be.port, dport: 40028, chunks: pattern(96) }));
    const [first, later] = fragment4(reply, 48);
    const before = first.slice();
    expect(vr(run(dp, first))).toEqual(['drop', 'drop_fragmented_sctp']);
    expect(sameBytes(first, before)).toBe(true);
    expect(vr(run(dp, later))).toEqual(['pass', 'pass_fragment_untracked']); // its first fragment was not translated
  });

  it('fragmented SCTP to a frontend is dropped (drop_fragmented_sctp), IPv4 and IPv6', async () => {
    const dp = await plane();
    const big = sctp({ sport: 40027, dport: 7777, chunks: pattern(96) });
    const [first4] = fragment4(ipv4({ src: CLIENT, dst: WEB }, big), 48);
    const b4 = first4.slice();
    expect(vr(run(dp, first4))).toEqual(['drop', 'drop_fragmented_sctp']);
    expect(sameBytes(first4, b4)).toBe(true);
    const [first6] = fragment6(ipv6({ src: CLIENT6, dst: WEB6 }, big), 48, 9);
    expect(vr(run(dp, first6))).toEqual(['drop', 'drop_fragmented_sctp']);
  });
});

// ---- ICMP errors ----

interface IcmpCase {
  v6: boolean;
  protocol: Protocol;
  type: number;
  code: number;
  /** Who sends the error: the backend (reply side), a router, or the client. */
  from: 'backend' | 'router' | 'client';
  /** (a) about a DNATed packet (client -> backend), or (b) about a reverse-NATed reply (frontend -> client). */
  about: 'dnat' | 'reply';
  /** Bytes of the offending packet quoted (default: all of it). */
  quote?: number;
  rest?: Uint8Array;
}

async function icmpCase(c: IcmpCase): Promise<void> {
  const dp = await plane();
  const client = c.v6 ? CLIENT6 : CLIENT;
  const fe = c.v6 ? WEB6 : WEB;
  const router = c.v6 ? ROUTER6 : ROUTER;
  const [port] = PORTS[c.protocol];
  const sport = 40030;
  const be = backendOf(dp, c.protocol, client, sport, fe, port);
  // The flow: client -> frontend (p0, DNATed to p1), backend -> client (r0, reverse-NATed to r1).
  const p0 = packet(c.protocol, client, sport, fe, port, { payload: pattern(40) });
  const p1 = p0.slice();
  expect(vr(run(dp, p1))).toEqual(['forward', 'forward_new']);
  const r0 = packet(c.protocol, be.address, be.port, client, sport, { flags: TCP_FLAGS.SYN | TCP_FLAGS.ACK, payload: pattern(40, 2) });
  const r1 = r0.slice();
  expect(vr(run(dp, r1))).toEqual(['reverse', 'reverse_nat']);

  const offending = c.about === 'dnat' ? p1 : r1;
  const original = c.about === 'dnat' ? p0 : r0;
  const n = c.quote ?? offending.length;
  const src = c.from === 'backend' ? be.address : c.from === 'router' ? router : client;
  const dst = c.about === 'dnat' ? client : fe;
  const rest = c.rest ?? new Uint8Array(4);
  const seg = c.v6 ? icmp6(c.type, c.code, offending.subarray(0, n), rest) : icmp4(c.type, c.code, offending.subarray(0, n), rest);
  const err = c.v6 ? ipv6({ src, dst }, seg) : ipv4({ src, dst }, seg);
  const errBefore = err.slice();
  const o = run(dp, err);
  const info = parse(err);
  // Outside the quote, only the translated outer address and the checksums may change.
  const outerAddr: [number, number] = c.about === 'dnat' ? (c.v6 ? [8, 24] : [12, 16]) : c.v6 ? [24, 40] : [16, 20];
  expect(changedOutside(errBefore, err, [outerAddr, [10, 12].map((x) => (c.v6 ? 0 : x)) as [number, number], [info.l4 + 2, info.l4 + 4], [info.l4 + 8, err.length]])).toEqual([]);
  if (c.about === 'dnat') {
    // Back to the client: the quote becomes what the client sent; an error from the backend itself
    // appears to come from the frontend.
    expect(vr(o)).toEqual(['reverse', 'reverse_icmp_error']);
    expect([...info.src]).toEqual([...addr(c.from === 'backend' ? fe : router)]);
    expect([...info.dst]).toEqual([...addr(client)]);
  } else {
    // On to the backend: the quote becomes what the backend sent; the outer destination the backend.
    expect(vr(o)).toEqual(['forward', 'forward_icmp_error']);
    expect([...info.src]).toEqual([...addr(src)]);
    expect([...info.dst]).toEqual([...be.bytes]);
  }
  expect(o.frontend).toEqual({ address: fe, port, protocol: c.protocol });
  const q = quoted(err);
  expect([...q]).toEqual([...original.subarray(0, n)]);
  if (!c.v6) expect(quotedIpv4HeaderOk(q)).toBe(true);
  if (n === original.length) expect(checksums(q.slice())).toEqual(c.v6 ? OK6 : OK);
  expect(checksums(err)).toEqual(c.v6 ? OK6 : OK);
  expect([err[info.l4], err[info.l4 + 1]]).toEqual([c.type, c.code]);
  expect([...err.subarray(info.l4 + 4, info.l4 + 8)]).toEqual([...rest]);
}

describe('ICMP errors quoting a translated flow (RFC 5508)', () => {
  it('(a) IPv4 port unreachable from the backend: inner dst and outer src back to the frontend', () =>
    icmpCase({ v6: false, protocol: 'UDP', type: 3, code: 3, from: 'backend', about: 'dnat' }));
  it('(a) IPv4 time exceeded from a router, quoting header + 8 bytes: inner dst back, outer src kept', () =>
    icmpCase({ v6: false, protocol: 'TCP', type: 11, code: 0, from: 'router', about: 'dnat', quote: 28 }));
  it('(a) IPv4 frag-needed (type 3 code 4) from a router, quoting the TCP header: inner TCP checksum fixed too', () =>
    icmpCase({ v6: false, protocol: 'TCP', type: 3, code: 4, from: 'router', about: 'dnat', quote: 40, rest: word32(1400) }));
  it('(a) IPv4 SCTP port unreachable, 8 bytes quoted: ports back', () =>
    icmpCase({ v6: false, protocol: 'SCTP', type: 3, code: 3, from: 'backend', about: 'dnat', quote: 28 }));
  it('(b) IPv4 frag-needed from a router about a reply: goes to the backend, MTU kept', () =>
    icmpCase({ v6: false, protocol: 'TCP', type: 3, code: 4, from: 'router', about: 'reply', rest: word32(1400) }));
  it('(b) IPv4 port unreachable from the client about a UDP reply: outer dst and inner src to the backend', () =>
    icmpCase({ v6: false, protocol: 'UDP', type: 3, code: 3, from: 'client', about: 'reply' }));
  it('(b) IPv4 time exceeded from a router about a reply', () =>
    icmpCase({ v6: false, protocol: 'UDP', type: 11, code: 0, from: 'router', about: 'reply', quote: 28 }));
  it('(a) ICMPv6 destination unreachable (type 1 code 4) from the backend: pseudo-header checksum follows the new source', () =>
    icmpCase({ v6: true, protocol: 'UDP', type: 1, code: 4, from: 'backend', about: 'dnat' }));
  it('(a) ICMPv6 time exceeded (type 3) from a router', () =>
    icmpCase({ v6: true, protocol: 'TCP', type: 3, code: 0, from: 'router', about: 'dnat' }));
  it('(a) ICMPv6 packet too big (type 2) from a router, MTU kept', () =>
    icmpCase({ v6: true, protocol: 'TCP', type: 2, code: 0, from: 'router', about: 'dnat', rest: word32(1280) }));
  it('(a) ICMPv6 about a whole SCTP packet: its CRC32c is recomputed to the original', () =>
    icmpCase({ v6: true, protocol: 'SCTP', type: 1, code: 4, from: 'backend', about: 'dnat' }));
  it('(b) ICMPv6 packet too big from the client about a reply: pseudo-header follows the new destination', () =>
    icmpCase({ v6: true, protocol: 'TCP', type: 2, code: 0, from: 'client', about: 'reply', rest: word32(1280) }));
  it('(b) ICMPv6 destination unreachable from a router about a reply', () =>
    icmpCase({ v6: true, protocol: 'UDP', type: 1, code: 0, from: 'router', about: 'reply' }));

  it('(a) IPv4 parameter problem (type 12) from the backend, pointer kept', () =>
    icmpCase({ v6: false, protocol: 'TCP', type: 12, code: 0, from: 'backend', about: 'dnat', rest: word32(0x08000000) }));
  it('(a) ICMPv6 parameter problem (type 4) from the backend, pointer kept', () =>
    icmpCase({ v6: true, protocol: 'UDP', type: 4, code: 0, from: 'backend', about: 'dnat', rest: word32(7) }));
  it('(a) IPv4 quote of odd length (45 bytes): the ICMP checksum, padded, is still right', () =>
    icmpCase({ v6: false, protocol: 'TCP', type: 3, code: 3, from: 'backend', about: 'dnat', quote: 45 }));
  it('(b) ICMPv6 quote of odd length (61 bytes)', () =>
    icmpCase({ v6: true, protocol: 'UDP', type: 1, code: 4, from: 'client', about: 'reply', quote: 61 }));

  it('an ICMP error about a flow whose conntrack entry expired passes untouched', async () => {
    const dp = await plane();
    dp.packets.setTimeouts({ udp: 5 });
    const errorFor = (sport: number): Uint8Array => {
      const p = packet('UDP', CLIENT, sport, WEB, 53);
      run(dp, p, NOW);
      return ipv4({ src: parse(p).dst.join('.'), dst: CLIENT }, icmp4(3, 3, p));
    };
    const live = errorFor(40032);
    const expired = errorFor(40033);
    expect(vr(run(dp, live, NOW + 4))).toEqual(['reverse', 'reverse_icmp_error']);
    const before = expired.slice();
    expect(vr(run(dp, expired, NOW + 5))).toEqual(['pass', 'pass_not_service']);
    expect(sameBytes(expired, before)).toBe(true);
  });

  it('ICMP errors about flows we never translated, and ICMP echo, pass untouched', async () => {
    const dp = await plane();
    const stranger = packet('UDP', CLIENT, 40031, '10.244.9.9', 5353);
    const pkts = [
      ipv4({ src: '10.244.9.9', dst: CLIENT }, icmp4(3, 3, stranger)),
      ipv4({ src: CLIENT, dst: WEB }, icmp4(8, 0, pattern(32))),
      ipv6({ src: CLIENT6, dst: WEB6 }, icmp6(128, 0, pattern(32))),
    ];
    for (const p of pkts) {
      const before = p.slice();
      expect(vr(run(dp, p))).toEqual(['pass', 'pass_not_service']);
      expect(sameBytes(p, before)).toBe(true);
    }
  });
});

// ---- reject, policy drops, not a service ----

describe('reject and drops', () => {
  async function reject(v6: boolean, protocol: Protocol, payloadBytes: number, max: number): Promise<void> {
    const dp = await plane();
    const client = v6 ? CLIENT6 : CLIENT;
    const fe = v6 ? EMPTY6 : EMPTY;
    const [port] = PORTS[protocol];
    const p = packet(protocol, client, 40040, fe, port, { payload: pattern(payloadBytes) });
    const before = p.slice();
    const o = run(dp, p);
    expect(vr(o)).toEqual(['reject', 'reject_no_endpoints']);
    expect(sameBytes(p, before)).toBe(true);
    const reply = o.reply;
    if (!reply) throw new Error('no reply written');
    const hl = v6 ? 40 : 20;
    const quote = Math.min(p.length, max - hl - 8);
    expect(reply.length).toBe(hl + 8 + quote);
    const info = parse(reply);
    expect([info.total, info.proto]).toEqual([reply.length, v6 ? IPPROTO.ICMPV6 : IPPROTO.ICMP]);
    expect([...info.src]).toEqual([...addr(fe)]);
    expect([...info.dst]).toEqual([...addr(client)]);
    expect([reply[hl], reply[hl + 1]]).toEqual(v6 ? [1, 4] : [3, 3]);
    expect([...reply.subarray(hl + 8)]).toEqual([...p.subarray(0, quote)]);
    expect(checksums(reply)).toEqual(v6 ? OK6 : OK);
  }

  it('no endpoints, IPv4 TCP: reject with ICMP port unreachable (3/3) from the frontend, quoting the packet', () => reject(false, 'TCP', 0, 576));
  it('no endpoints, IPv4 UDP of 1028 bytes: the quote is cut at 576 bytes of reply', () => reject(false, 'UDP', 1000, 576));
  it('no endpoints, IPv6 TCP: ICMPv6 port unreachable (1/4), checksum over the pseudo-header', () => reject(true, 'TCP', 0, 1280));
  it('no endpoints, IPv6 UDP of 1448 bytes: the quote is cut at 1280 bytes of reply', () => reject(true, 'UDP', 1400, 1280));
  it('no endpoints, SCTP is rejected the same way', () => reject(false, 'SCTP', 0, 576));

  it('rejects in one batch each get their own reply, quoting their own packet', async () => {
    const dp = await plane();
    const pkts = [
      packet('TCP', CLIENT, 40043, EMPTY, 80),
      packet('TCP', CLIENT, 40043, WEB, 80),
      packet('UDP', CLIENT6, 40044, EMPTY6, 53, { payload: pattern(50) }),
      packet('UDP', '203.0.113.9', 40045, EMPTY, 53, { payload: pattern(7) }),
    ];
    const originals = pkts.map((p) => p.slice());
    const outs = dp.process(pkts, NOW);
    expect(outs.map(vr)).toEqual([['reject', 'reject_no_endpoints'], ['forward', 'forward_new'], ['reject', 'reject_no_endpoints'], ['reject', 'reject_no_endpoints']]);
    expect(outs[1]?.reply).toBeUndefined();
    for (const i of [0, 2, 3]) {
      const reply = outs[i]?.reply as Uint8Array;
      const hl = i === 2 ? 40 : 20;
      expect([...reply.subarray(hl + 8)]).toEqual([...(originals[i] as Uint8Array)]);
      expect([...parse(reply).dst]).toEqual([...parse(originals[i] as Uint8Array).src]);
      expect(checksums(reply)).toEqual(i === 2 ? OK6 : OK);
    }
  });

  it('a reject to a non-unicast source writes no reply (RFC 1122 3.2.2) and is counted', async () => {
    const dp = await plane();
    for (const src of ['0.0.0.0', '224.0.0.5']) {
      const o = run(dp, packet('UDP', src, 40041, EMPTY, 53));
      expect(vr(o)).toEqual(['reject', 'reject_no_endpoints']);
      expect(o.reply).toBeUndefined();
    }
    expect(dp.packets.counters().reject_reply_suppressed).toBe(2);
  });

  it('eTP=Local with no local endpoints: external traffic dropped (drop_no_local_endpoints), ClusterIP forwarded', async () => {
    const LB = '203.0.113.10';
    const gw = service(
      'gw',
      { type: 'LoadBalancer', clusterIP: '10.96.0.30', externalTrafficPolicy: 'Local', ports: [svcPort('http', 80, { nodePort: 30080 })] },
      { status: { loadBalancer: { ingress: [{ ip: LB }] } } },
    );
    const dp = await plane([gw, slice('gw-1', 'gw', [ready('10.244.2.6', 'node-b')])]);
    for (const [dst, port] of [[NODE_V4, 30080], [LB, 80]] as const) {
      const p = packet('TCP', CLIENT, 40042, dst, port);
      const before = p.slice();
      expect(vr(run(dp, p))).toEqual(['drop', 'drop_no_local_endpoints']);
      expect(sameBytes(p, before)).toBe(true);
    }
    const p = packet('TCP', CLIENT, 40043, '10.96.0.30', 80);
    expect(vr(run(dp, p))).toEqual(['forward', 'forward_new']);
    expect(parse(p).dst.join('.')).toBe('10.244.2.6');
  });

  it('iTP=Local with endpoints only on other nodes: ClusterIP traffic dropped (drop_no_local_endpoints)', async () => {
    const dp = await plane([clusterIP('web', WEB, { internalTrafficPolicy: 'Local' }), slice('web-1', 'web', [ready('10.244.2.6', 'node-b')])]);
    const p = packet('TCP', CLIENT, 40044, WEB, 80);
    const before = p.slice();
    expect(vr(run(dp, p))).toEqual(['drop', 'drop_no_local_endpoints']);
    expect(sameBytes(p, before)).toBe(true);
  });

  it('loadBalancerSourceRanges: a source outside is dropped (drop_source_range), inside forwarded', async () => {
    const LB = '203.0.113.10';
    const gw = service(
      'gw',
      { type: 'LoadBalancer', clusterIP: '10.96.0.30', loadBalancerSourceRanges: ['198.51.100.0/24'], ports: [svcPort('https', 443, { nodePort: 31443 })] },
      { status: { loadBalancer: { ingress: [{ ip: LB, ipMode: 'VIP' }] } } },
    );
    const dp = await plane([gw, slice('gw-1', 'gw', [ready('10.244.1.5')], { ports: [slicePort('https', 8443)] })]);
    const out = packet('TCP', '203.0.113.99', 40045, LB, 443);
    const before = out.slice();
    expect(vr(run(dp, out))).toEqual(['drop', 'drop_source_range']);
    expect(sameBytes(out, before)).toBe(true);
    const inside = packet('TCP', '198.51.100.200', 40045, LB, 443);
    expect(vr(run(dp, inside))).toEqual(['forward', 'forward_new']);
    expect([parse(inside).dst.join('.'), parse(inside).dport]).toEqual(['10.244.1.5', 8443]);
    expect(checksums(inside)).toEqual(OK);
  });

  it('not a service: other addresses, other ports, other protocols pass byte-identical', async () => {
    const dp = await plane();
    const pkts = [
      packet('TCP', CLIENT, 40046, NOWHERE, 80),
      packet('TCP', CLIENT, 40046, WEB, 81),
      packet('UDP', CLIENT, 40046, WEB, 80), // port 80 is TCP only
      packet('TCP', CLIENT6, 40046, 'fd00:96::99', 80),
      ipv4({ src: CLIENT, dst: WEB }, { proto: 47, bytes: pattern(20), checksum: 'keep' }), // GRE
      ipv6({ src: CLIENT6, dst: WEB6 }, { proto: IPPROTO.NONE, bytes: new Uint8Array(0), checksum: 'keep' }),
    ];
    const outs = dp.process(pkts.map((p) => p.slice()), NOW);
    outs.forEach((o, i) => expect([i, ...vr(o)]).toEqual([i, 'pass', 'pass_not_service']));
    const again = pkts.map((p) => p.slice());
    dp.process(again, NOW);
    again.forEach((p, i) => expect(sameBytes(p, pkts[i] as Uint8Array)).toBe(true));
  });
});

// ---- malformed ----

describe('malformed packets', () => {
  const malformed = ['drop_malformed_ip', 'drop_malformed_ipv6_ext', 'drop_malformed_l4'];

  it('every truncation of a valid IPv4 and IPv6 TCP packet (length fields kept) is dropped as malformed IP', async () => {
    const dp = await plane();
    for (const full of [
      ipv4({ src: CLIENT, dst: WEB, options: Uint8Array.from([1, 1, 1, 0]) }, tcp({ sport: 40050, dport: 80, payload: pattern(21) })),
      packet('TCP', CLIENT6, 40050, WEB6, 80, { ext: [optionsHeader(IPPROTO.HOPOPTS)], payload: pattern(21) }),
    ]) {
      const cuts = Array.from({ length: full.length }, (_, n) => full.slice(0, n));
      // One batch of them all, then each on its own.
      const outs = dp.process(cuts.map((c) => c.slice()), NOW);
      outs.forEach((o, n) => expect([n, ...vr(o)]).toEqual([n, 'drop', 'drop_malformed_ip']));
      for (const c of cuts) {
        const before = c.slice();
        const o = run(dp, c);
        expect(malformed).toContain(o.reasonKey);
        expect(o.verdict).toBe('drop');
        expect(sameBytes(c, before)).toBe(true);
      }
    }
    expect(dp.packets.conntrack(NOW)).toEqual([]);
  });

  it('bad version, IHL < 5, total length beyond the buffer, total length below IHL: drop_malformed_ip', async () => {
    const dp = await plane();
    const good = packet('TCP', CLIENT, 40051, WEB, 80);
    const good6 = packet('TCP', CLIENT6, 40051, WEB6, 80);
    const bad: Uint8Array[] = [];
    for (const version of [0, 5, 7, 15]) {
      const p = good.slice();
      p[0] = (version << 4) | 5;
      bad.push(p);
    }
    const v6as4 = good6.slice();
    v6as4[0] = 0x45; // says IPv4 over IPv6 bytes: total length field is nonsense
    for (const ihl of [0, 4]) {
      const p = good.slice();
      p[0] = 0x40 | ihl;
      bad.push(p);
    }
    const long = good.slice();
    put16(long, 2, good.length + 1);
    bad.push(long);
    const short = good.slice();
    put16(short, 2, 19);
    bad.push(short);
    const ihlBeyond = good.slice(0, 24);
    ihlBeyond[0] = 0x47; // 28-byte header in 24 bytes
    put16(ihlBeyond, 2, 24);
    bad.push(ihlBeyond);
    const long6 = good6.slice();
    put16(long6, 4, good6.length - 40 + 1);
    bad.push(long6);
    const jumbo = good6.slice();
    put16(jumbo, 4, 0); // payload length 0 with a Hop-by-Hop header: a jumbogram (RFC 2675), unsupported
    jumbo[6] = IPPROTO.HOPOPTS;
    bad.push(jumbo);
    const ver6 = good6.slice();
    ver6[0] = 0x50;
    bad.push(ver6);
    for (const p of bad) {
      const before = p.slice();
      expect(vr(run(dp, p))).toEqual(['drop', 'drop_malformed_ip']);
      expect(sameBytes(p, before)).toBe(true);
    }
  });

  it('IPv6 extension chain running past the payload: drop_malformed_ipv6_ext', async () => {
    const dp = await plane();
    // A destination options header claiming 16 bytes where only 8 remain in the payload.
    const p = ipv6({ src: CLIENT6, dst: WEB6 }, { proto: IPPROTO.NONE, bytes: new Uint8Array(0), checksum: 'keep' });
    const withExt = new Uint8Array(48);
    withExt.set(p);
    withExt[6] = IPPROTO.DSTOPTS;
    put16(withExt, 4, 8);
    withExt[40] = IPPROTO.TCP;
    withExt[41] = 1; // (1 + 1) * 8 = 16 bytes
    expect(vr(run(dp, withExt))).toEqual(['drop', 'drop_malformed_ipv6_ext']);
    // An extension header that starts but does not fit its first 8 bytes.
    const cut = new Uint8Array(44);
    cut.set(p.subarray(0, 40));
    cut[6] = IPPROTO.HOPOPTS;
    put16(cut, 4, 4);
    expect(vr(run(dp, cut))).toEqual(['drop', 'drop_malformed_ipv6_ext']);
  });

  it('TCP data offset < 5 or beyond the segment, UDP length < 8 or beyond the datagram, short L4 headers: drop_malformed_l4', async () => {
    const dp = await plane();
    const bad: Uint8Array[] = [];
    for (const doff of [0, 4]) bad.push(ipv4({ src: CLIENT, dst: WEB }, tcp({ sport: 40052, dport: 80, dataOffset: doff })));
    bad.push(ipv4({ src: CLIENT, dst: WEB }, tcp({ sport: 40052, dport: 80, dataOffset: 6 }))); // 24 > 20 bytes
    bad.push(packet('TCP', CLIENT6, 40052, WEB6, 80).map((b, i) => (i === 52 ? 0x40 : b)));
    bad.push(ipv4({ src: CLIENT, dst: WEB }, udp({ sport: 40052, dport: 53, payload: pattern(8), length: 7 })));
    bad.push(ipv4({ src: CLIENT, dst: WEB }, udp({ sport: 40052, dport: 53, payload: pattern(8), length: 17 })));
    bad.push(ipv4({ src: CLIENT, dst: WEB }, { proto: IPPROTO.TCP, bytes: pattern(19), checksum: 'keep' }));
    bad.push(ipv4({ src: CLIENT, dst: WEB }, { proto: IPPROTO.UDP, bytes: pattern(7), checksum: 'keep' }));
    bad.push(ipv4({ src: CLIENT, dst: WEB }, { proto: IPPROTO.SCTP, bytes: pattern(11), checksum: 'keep' }));
    bad.push(ipv6({ src: CLIENT6, dst: WEB6 }, { proto: IPPROTO.TCP, bytes: pattern(19), checksum: 'keep' }));
    for (const p of bad) {
      const before = p.slice();
      expect(vr(run(dp, p))).toEqual(['drop', 'drop_malformed_l4']);
      expect(sameBytes(p, before)).toBe(true);
    }
  });

  it('random garbage never throws and never forwards', async () => {
    const dp = await plane();
    let x = 12345;
    const rnd = (): number => (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 24;
    const pkts = Array.from({ length: 500 }, (_, i) => Uint8Array.from({ length: i % 90 }, rnd));
    for (const p of pkts) p[0] = i4or6(p[0]);
    const outs = dp.process(pkts, NOW);
    expect(outs).toHaveLength(500);
    for (const o of outs) expect(['pass', 'drop']).toContain(o.verdict);
  });
});

function i4or6(b: number | undefined): number {
  return b === undefined ? 0 : b & 1 ? 0x40 | (b & 0xf) : 0x60 | (b & 0xf);
}

// ---- conntrack ----

/** SYN, SYN-ACK, ACK of a TCP flow through dp; returns the backend it got. */
function handshake(dp: Dataplane, sport: number, now = NOW, client = CLIENT): Backend {
  const syn = packet('TCP', client, sport, WEB, 80);
  expect(run(dp, syn, now).verdict).toBe('forward');
  const info = parse(syn);
  const be: Backend = { address: info.dst.join('.'), port: info.dport as number, bytes: info.dst };
  expect(vr(run(dp, packet('TCP', be.address, be.port, client, sport, { flags: TCP_FLAGS.SYN | TCP_FLAGS.ACK }), now))).toEqual(['reverse', 'reverse_nat']);
  expect(vr(run(dp, packet('TCP', client, sport, WEB, 80, { flags: TCP_FLAGS.ACK }), now))).toEqual(['forward', 'forward_established']);
  return be;
}

/** Where the next (ACK) packet of a flow goes. */
function nextPacket(dp: Dataplane, sport: number, now: number, flags: number = TCP_FLAGS.ACK): { o: PacketOutcome; to: string } {
  const p = packet('TCP', CLIENT, sport, WEB, 80, { flags, payload: pattern(5) });
  const o = run(dp, p, now);
  expect(checksums(p)).toEqual(OK);
  return { o, to: `${parse(p).dst.join('.')}:${parse(p).dport}` };
}

const v4Only = (backends: string[]): unknown[] => [clusterIP('web', WEB, { ports: SVC_PORTS }), slice('web-v4', 'web', backends.map((a) => ready(a)), { ports: SLICE_PORTS })];

describe('conntrack', () => {
  it('an established flow keeps its backend when backends are added or removed, even where Maglev now differs', async () => {
    const dp = await plane(v4Only(V4_BACKENDS));
    const flows = Array.from({ length: 40 }, (_, i) => 30000 + i * 7);
    const kept = new Map(flows.map((sport) => [sport, handshake(dp, sport)]));
    const more = [...V4_BACKENDS, '10.244.3.8', '10.244.3.9', '10.244.3.10'];
    for (const set of [more, [...V4_BACKENDS, '10.244.3.9']]) {
      expect(dp.apply(v4Only(set))).toEqual([]);
      let moved = 0;
      for (const sport of flows) {
        const be = kept.get(sport) as Backend;
        if (backendOf(dp, 'TCP', CLIENT, sport, WEB, 80).address !== be.address) moved++;
        const { o, to } = nextPacket(dp, sport, NOW + 1);
        expect(vr(o)).toEqual(['forward', 'forward_established']);
        expect(to).toBe(`${be.address}:${be.port}`);
      }
      expect(moved).toBeGreaterThan(0); // some of these flows would be placed elsewhere if new
    }
  });

  it('when its backend leaves, the next packet reselects (forward_reselected) and the reply entry moves', async () => {
    const dp = await plane(v4Only(V4_BACKENDS));
    const sport = 30500;
    const old = handshake(dp, sport);
    expect(dp.apply(v4Only(V4_BACKENDS.filter((a) => a !== old.address)))).toEqual([]);
    const want = backendOf(dp, 'TCP', CLIENT, sport, WEB, 80, NOW + 1);
    expect(want.address).not.toBe(old.address);
    const { o, to } = nextPacket(dp, sport, NOW + 1);
    expect(vr(o)).toEqual(['forward', 'forward_reselected']);
    expect(to).toBe(`${want.address}:${want.port}`);
    expect(vr(nextPacket(dp, sport, NOW + 2).o)).toEqual(['forward', 'forward_established']);
    const ct = dp.packets.conntrack(NOW + 2);
    expect(ct.map((e) => [e.client.port, e.backend.address])).toEqual([[sport, want.address]]);
    // The new backend's replies are reverse-NATed; the old backend's are no longer ours.
    const fromNew = packet('TCP', want.address, want.port, CLIENT, sport, { flags: TCP_FLAGS.ACK });
    expect(vr(run(dp, fromNew, NOW + 2))).toEqual(['reverse', 'reverse_nat']);
    expect([parse(fromNew).src.join('.'), parse(fromNew).sport]).toEqual([WEB, 80]);
    expect(checksums(fromNew)).toEqual(OK);
    const fromOld = packet('TCP', old.address, old.port, CLIENT, sport, { flags: TCP_FLAGS.ACK });
    const before = fromOld.slice();
    expect(vr(run(dp, fromOld, NOW + 2))).toEqual(['pass', 'pass_not_service']);
    expect(sameBytes(fromOld, before)).toBe(true);
  });

  // Graceful termination: kube-proxy keeps existing connections to a terminating endpoint (iptables leaves
  // the conntrack entry) and Cilium keeps terminating backends until they leave the EndpointSlice. The
  // image carries them in the service's keep list: no new flows, established ones stay.
  it('an established flow to a backend that becomes terminating (still serving) keeps it; new flows avoid it', async () => {
    const dp = await plane(v4Only(V4_BACKENDS));
    const sport = 30550;
    const be = handshake(dp, sport);
    const slices = [slice('web-v4', 'web', V4_BACKENDS.map((a) => (a === be.address ? terminating(a) : ready(a))), { ports: SLICE_PORTS })];
    expect(dp.apply([clusterIP('web', WEB, { ports: SVC_PORTS }), ...slices])).toEqual([]);
    const { o, to } = nextPacket(dp, sport, NOW + 1);
    expect([...vr(o), to]).toEqual(['forward', 'forward_established', `${be.address}:${be.port}`]);
    for (let s2 = 31000; s2 < 31040; s2++) expect(backendOf(dp, 'TCP', CLIENT, s2, WEB, 80).address).not.toBe(be.address);
    // Once it leaves the slice, the flow is reselected.
    const gone = [slice('web-v4', 'web', V4_BACKENDS.filter((a) => a !== be.address).map((a) => ready(a)), { ports: SLICE_PORTS })];
    expect(dp.apply([clusterIP('web', WEB, { ports: SVC_PORTS }), ...gone])).toEqual([]);
    expect(vr(nextPacket(dp, sport, NOW + 2).o)).toEqual(['forward', 'forward_reselected']);
  });

  // The same with nothing else to take new flows: the only endpoint is terminating and no longer serving
  // (no fallback list), so new connections are rejected while the established one goes on.
  it('with its only endpoint terminating and not serving, an established flow keeps it; new flows are rejected', async () => {
    const only = [V4_BACKENDS[0] as string];
    const dp = await plane(v4Only(only));
    const sport = 30560;
    const be = handshake(dp, sport);
    const gone = terminating(be.address, 'node-b', { conditions: { ready: false, serving: false, terminating: true } });
    expect(dp.apply([clusterIP('web', WEB, { ports: SVC_PORTS }), slice('web-v4', 'web', [gone], { ports: SLICE_PORTS })])).toEqual([]);
    const { o, to } = nextPacket(dp, sport, NOW + 1);
    expect([...vr(o), to]).toEqual(['forward', 'forward_established', `${be.address}:${be.port}`]);
    expect(vr(run(dp, packet('TCP', CLIENT, sport + 1, WEB, 80), NOW + 1))).toEqual(['reject', 'reject_no_endpoints']);
  });

  it('a new SYN reusing the client port of a closing flow (FIN or RST seen) is reselected; a retransmitted SYN is not', async () => {
    const dp = await plane(v4Only(V4_BACKENDS));
    const a = 30600;
    const be = handshake(dp, a);
    expect(vr(nextPacket(dp, a, NOW, TCP_FLAGS.SYN).o)).toEqual(['forward', 'forward_established']); // not closing
    expect(vr(nextPacket(dp, a, NOW, TCP_FLAGS.FIN | TCP_FLAGS.ACK).o)).toEqual(['forward', 'forward_established']);
    expect(dp.packets.conntrack(NOW).map((e) => e.state)).toEqual(['closing']);
    const again = nextPacket(dp, a, NOW + 1, TCP_FLAGS.SYN);
    expect(vr(again.o)).toEqual(['forward', 'forward_reselected']);
    expect(again.to).toBe(`${be.address}:${be.port}`); // the same Maglev choice: nothing changed
    expect(dp.packets.conntrack(NOW + 1).map((e) => e.state)).toEqual(['syn-sent']);

    const b = 30601;
    const be2 = handshake(dp, b);
    expect(vr(run(dp, packet('TCP', be2.address, be2.port, CLIENT, b, { flags: TCP_FLAGS.RST }), NOW))).toEqual(['reverse', 'reverse_nat']);
    expect(vr(nextPacket(dp, b, NOW + 1, TCP_FLAGS.SYN).o)).toEqual(['forward', 'forward_reselected']);
  });

  describe('timeouts (setTimeouts: tcpSyn 5, tcpEstablished 50, tcpClosing 3, udp 7)', () => {
    const T = { tcpSyn: 5, tcpEstablished: 50, tcpClosing: 3, udp: 7 };
    const syn = (sport: number): Uint8Array => packet('TCP', CLIENT, sport, WEB, 80);

    it('a SYN-only entry expires after tcpSyn', async () => {
      const dp = await plane(v4Only(V4_BACKENDS));
      dp.packets.setTimeouts(T);
      const p = syn(31001);
      run(dp, p, NOW);
      const be = parse(p);
      expect(dp.packets.conntrack(NOW + 4).map((e) => [e.state, e.expiresIn])).toEqual([['syn-sent', 1]]);
      expect(dp.packets.conntrack(NOW + 5)).toEqual([]);
      const late = packet('TCP', be.dst.join('.'), be.dport as number, CLIENT, 31001, { flags: TCP_FLAGS.SYN | TCP_FLAGS.ACK });
      expect(vr(run(dp, late, NOW + 5))).toEqual(['pass', 'pass_not_service']);
      expect(vr(run(dp, syn(31001), NOW + 5))).toEqual(['forward', 'forward_new']);
    });

    it('an established entry expires after tcpEstablished (not tcpSyn)', async () => {
      const dp = await plane(v4Only(V4_BACKENDS));
      dp.packets.setTimeouts(T);
      const be = handshake(dp, 31002, NOW);
      expect(dp.packets.conntrack(NOW + 6).map((e) => e.state)).toEqual(['established']);
      expect(dp.packets.conntrack(NOW + 49).map((e) => e.expiresIn)).toEqual([1]);
      expect(dp.packets.conntrack(NOW + 50)).toEqual([]);
      const late = packet('TCP', be.address, be.port, CLIENT, 31002, { flags: TCP_FLAGS.ACK });
      expect(vr(run(dp, late, NOW + 50))).toEqual(['pass', 'pass_not_service']);
    });

    it('a packet refreshes the entry: established stays alive while traffic flows', async () => {
      const dp = await plane(v4Only(V4_BACKENDS));
      dp.packets.setTimeouts(T);
      const be = handshake(dp, 31003, NOW);
      for (let t = NOW + 40; t < NOW + 200; t += 40) expect(vr(nextPacket(dp, 31003, t).o)).toEqual(['forward', 'forward_established']);
      const reply = packet('TCP', be.address, be.port, CLIENT, 31003, { flags: TCP_FLAGS.ACK });
      expect(vr(run(dp, reply, NOW + 200))).toEqual(['reverse', 'reverse_nat']);
    });

    it('a closing entry (FIN seen) expires after tcpClosing', async () => {
      const dp = await plane(v4Only(V4_BACKENDS));
      dp.packets.setTimeouts(T);
      const be = handshake(dp, 31004, NOW);
      nextPacket(dp, 31004, NOW + 10, TCP_FLAGS.FIN | TCP_FLAGS.ACK);
      expect(dp.packets.conntrack(NOW + 12).map((e) => [e.state, e.expiresIn])).toEqual([['closing', 1]]);
      expect(dp.packets.conntrack(NOW + 13)).toEqual([]);
      const late = packet('TCP', be.address, be.port, CLIENT, 31004, { flags: TCP_FLAGS.FIN | TCP_FLAGS.ACK });
      expect(vr(run(dp, late, NOW + 13))).toEqual(['pass', 'pass_not_service']);
    });

    it('a UDP entry expires after udp', async () => {
      const dp = await plane(v4Only(V4_BACKENDS));
      dp.packets.setTimeouts(T);
      const p = packet('UDP', CLIENT, 31005, WEB, 53);
      run(dp, p, NOW);
      const info = parse(p);
      expect(dp.packets.conntrack(NOW + 6).map((e) => [e.protocol, e.state, e.expiresIn])).toEqual([['UDP', 'active', 1]]);
      expect(dp.packets.conntrack(NOW + 7)).toEqual([]);
      const late = packet('UDP', info.dst.join('.'), info.dport as number, CLIENT, 31005);
      expect(vr(run(dp, late, NOW + 7))).toEqual(['pass', 'pass_not_service']);
      expect(vr(run(dp, packet('UDP', CLIENT, 31005, WEB, 53), NOW + 7))).toEqual(['forward', 'forward_new']);
    });
  });

  it('default timeouts: TCP SYN 60 s, established 6 h, closing 10 s, UDP 60 s, SCTP 60 s', async () => {
    const dp = await plane();
    run(dp, packet('TCP', CLIENT, 31100, WEB, 80), NOW);
    const be = handshake(dp, 31101, NOW);
    handshake(dp, 31102, NOW);
    nextPacket(dp, 31102, NOW, TCP_FLAGS.RST);
    run(dp, packet('UDP', CLIENT, 31103, WEB, 53), NOW);
    run(dp, packet('SCTP', CLIENT, 31104, WEB, 7777), NOW);
    expect(dp.packets.conntrack(NOW).map((e) => [e.protocol, e.client.port, e.state, e.expiresIn])).toEqual([
      ['TCP', 31100, 'syn-sent', 60],
      ['TCP', 31101, 'established', 21600],
      ['TCP', 31102, 'closing', 10],
      ['UDP', 31103, 'active', 60],
      ['SCTP', 31104, 'active', 60],
    ]);
    expect(dp.packets.conntrack(NOW).find((e) => e.client.port === 31101)?.backend).toEqual({ address: be.address, port: be.port });
  });

  it('setTimeouts refuses 0, fractions and unknown names (RangeError)', async () => {
    const dp = await plane();
    expect(() => dp.packets.setTimeouts({ tcpSyn: 0 })).toThrow(RangeError);
    expect(() => dp.packets.setTimeouts({ udp: 1.5 })).toThrow(RangeError);
    expect(() => dp.packets.setTimeouts({ bogus: 3 } as unknown as Parameters<typeof dp.packets.setTimeouts>[0])).toThrow(RangeError);
  });

  it('a tracked first fragment is forgotten after the fragment timeout', async () => {
    const dp = await plane();
    dp.packets.setTimeouts({ fragment: 2 });
    const mk = (id: number): [Uint8Array, Uint8Array] => fragment4(ipv4({ src: CLIENT, dst: WEB, id }, udp({ sport: 31105 + id, dport: 53, payload: pattern(100) })), 56);
    const [f1, l1] = mk(1);
    run(dp, f1, NOW);
    expect(vr(run(dp, l1, NOW + 1))).toEqual(['forward', 'forward_fragment']);
    const [f2, l2] = mk(2);
    run(dp, f2, NOW);
    const before = l2.slice();
    expect(vr(run(dp, l2, NOW + 2))).toEqual(['pass', 'pass_fragment_untracked']);
    expect(sameBytes(l2, before)).toBe(true);
  });

  // The conntrack key and the frontend lookup use the image's 16-byte address form, where an IPv4 address
  // is IPv4-mapped (::ffff:a.b.c.d). IPv4-mapped addresses do not belong on the wire (RFC 4291 2.5.5.2):
  // an IPv6 packet carrying one is dropped as malformed, so it can never pass for an IPv4 flow.
  it('an IPv6 packet with IPv4-mapped addresses is not taken for the reply of an IPv4 flow (dropped as malformed)', async () => {
    const dp = await plane(v4Only(V4_BACKENDS));
    const syn = packet('TCP', CLIENT, 30900, WEB, 80);
    run(dp, syn);
    const be = parse(syn).dst;
    const mapped = (a: Uint8Array): string => `::ffff:${((a[0] as number) * 256 + (a[1] as number)).toString(16)}:${((a[2] as number) * 256 + (a[3] as number)).toString(16)}`;
    const fake = packet('TCP', mapped(be), 8080, mapped(addr(CLIENT)), 30900, { flags: TCP_FLAGS.SYN | TCP_FLAGS.ACK });
    const before = fake.slice();
    const o = run(dp, fake);
    expect(dp.packets.conntrack(NOW).map((e) => e.state)).toEqual(['syn-sent']);
    expect(vr(o)).toEqual(['drop', 'drop_malformed_ip']);
    expect(sameBytes(fake, before)).toBe(true);
  });

  it('an IPv6 packet to an IPv4-mapped frontend address gets no IPv4 service treatment (no reject reply)', async () => {
    const dp = await plane();
    const p = packet('TCP', CLIENT6, 30901, '::ffff:a60:28', 80); // ::ffff:10.96.0.40, the empty Service
    const o = run(dp, p);
    expect(o.reply).toBeUndefined();
    expect(vr(o)).toEqual(['drop', 'drop_malformed_ip']);
  });

  it('session affinity (ClientIP): a client\'s new flows all go to one backend', async () => {
    const affine = (): unknown[] => [
      clusterIP('web', WEB, { ports: SVC_PORTS, sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } } }),
      slice('web-v4', 'web', V4_BACKENDS.map((a) => ready(a)), { ports: SLICE_PORTS }),
    ];
    const dp = await plane(affine());
    const plain = await plane(v4Only(V4_BACKENDS));
    const sports = Array.from({ length: 20 }, (_, i) => 32000 + i * 11);
    // Without affinity these flows spread over the backends.
    expect(new Set(sports.map((s) => backendOf(plain, 'TCP', CLIENT, s, WEB, 80).address)).size).toBeGreaterThan(1);
    const first = nextPacket(dp, sports[0] as number, NOW, TCP_FLAGS.SYN);
    expect(vr(first.o)).toEqual(['forward', 'forward_new']);
    const maglev = backendOf(plain, 'TCP', CLIENT, sports[0] as number, WEB, 80);
    expect(first.to).toBe(`${maglev.address}:${maglev.port}`);
    for (const s of sports.slice(1)) {
      const n = nextPacket(dp, s, NOW + 1, TCP_FLAGS.SYN);
      expect(vr(n.o)).toEqual(['forward', 'forward_new_affinity']);
      expect(n.to).toBe(first.to);
    }
    // Another client gets its own (Maglev) choice first.
    const other = packet('TCP', '203.0.113.50', 32000, WEB, 80);
    expect(vr(run(dp, other, NOW + 1))).toEqual(['forward', 'forward_new']);
  });

  it('bounded table: 64 entries and thousands of flows evict (counted), never throw, recent flows still translate', async () => {
    const dp = await plane(v4Only(V4_BACKENDS), { conntrackCapacity: 64 });
    const N = 3000;
    const pkts = Array.from({ length: N }, (_, i) => packet('UDP', `198.51.100.${1 + (i % 200)}`, 10000 + i, WEB, 53));
    const outs = dp.process(pkts, NOW);
    expect(outs.every((o) => o.verdict === 'forward' && o.reasonKey === 'forward_new')).toBe(true);
    const c = dp.packets.counters();
    expect(c.conntrack_created).toBe(N);
    expect(c.conntrack_evicted_table_full).toBeGreaterThan(0);
    expect(c.conntrack_evicted_table_full).toBeLessThan(2 * N);
    expect(dp.packets.conntrack(NOW).length).toBeLessThanOrEqual(64);
    const last = parse(pkts[N - 1] as Uint8Array);
    const src = `198.51.100.${1 + ((N - 1) % 200)}`;
    const reply = packet('UDP', last.dst.join('.'), last.dport as number, src, 10000 + N - 1);
    expect(vr(run(dp, reply, NOW + 1))).toEqual(['reverse', 'reverse_nat']);
    expect([parse(reply).src.join('.'), parse(reply).sport]).toEqual([WEB, 53]);
    const again = packet('UDP', src, 10000 + N - 1, WEB, 53);
    expect(vr(run(dp, again, NOW + 1))).toEqual(['forward', 'forward_established']);
    expect(parse(again).dst).toEqual(last.dst);
    // A second wave later: still no exception, still counted.
    const wave = Array.from({ length: N }, (_, i) => packet('TCP', `203.0.113.${1 + (i % 200)}`, 20000 + i, WEB, 80));
    expect(() => dp.process(wave, NOW + 2)).not.toThrow();
    expect(dp.packets.counters().conntrack_evicted_table_full).toBeGreaterThan(c.conntrack_evicted_table_full as number);
  });

  it('the sweep empties the slots of expired flows again, so a table that has seen many flows keeps its misses short; live flows stay', async () => {
    const CAP = 64;
    const dp = await plane(v4Only(V4_BACKENDS), { conntrackCapacity: CAP });
    const core = (dp as unknown as { core: Core }).core;
    const entry = (i: number): { type: number; dist: number } => {
      const b = core.packetBuffers();
      const m = core.memory;
      const at = b.conntrack + (i % CAP) * CT.size;
      return { type: m[at + CT.type] as number, dist: (m[at + CT.info] as number) & 7 };
    };
    const slots = (): number[] => Array.from({ length: CAP }, (_, i) => entry(i).type);
    // 10 UDP flows (20 entries) that expire at NOW + 60, and one TCP flow kept alive.
    const flows = (): Uint8Array[] => Array.from({ length: 10 }, (_, i) => packet('UDP', `198.51.100.${10 + i}`, 5000 + i, WEB, 53));
    dp.process(flows(), NOW);
    const be = handshake(dp, 34000, NOW);
    expect(dp.packets.counters().conntrack_evicted_table_full).toBe(0);
    expect(slots().filter((t) => t === 0).length).toBe(CAP - 22);
    // Later, packets that are no flow's: 8 per slot swept (SWEEP_EVERY), two passes over the table (the
    // reply entry of a flow removed on the way down may lie above, swept already: the next pass empties it).
    const later = NOW + 1000;
    for (let k = 0; k < 2 * 8 * CAP; k++) expect(vr(run(dp, packet('TCP', CLIENT, 40000 + k, NOWHERE, 80), later))).toEqual(['pass', 'pass_not_service']);
    // Left: the live flow's two entries (forward 1, reply 2), and dead slots (4) only where one of them
    // lies past it in its window (its distance from its home reaches back over the slot).
    const left = slots().map((t, i) => [t, i]).filter(([t]) => t !== 0);
    expect(left.filter(([t]) => t === 1 || t === 2).length).toBe(2);
    for (const [t, i] of left) {
      if (t === 1 || t === 2) continue;
      expect(t).toBe(4);
      const needed = [1, 2, 3, 4, 5, 6, 7].some((j) => [1, 2].includes(entry((i as number) + j).type) && entry((i as number) + j).dist >= j);
      expect(needed).toBe(true);
    }
    const { o, to } = nextPacket(dp, 34000, later);
    expect([...vr(o), to]).toEqual(['forward', 'forward_established', `${be.address}:${be.port}`]);
    // The expired flows come back as new flows, to the backend Maglev gives them.
    expect(dp.process(flows(), later).map((x) => x.reasonKey)).toEqual(new Array(10).fill('forward_new'));
  });

  it('two windows per key: a table 39% full keeps its flows', async () => {
    // 800 flows (1,600 entries) in 4,096 entries, three packets each, five dataplanes (each its own random
    // conntrack seed). Measured over 60 runs each: one 8-slot window per key evicted in 43 of them (462
    // flows); two windows in none (at 44% full, in 3 of 60, one flow each).
    let evicted = 0;
    for (let run = 0; run < 5; run++) {
      const dp = await plane(v4Only(V4_BACKENDS), { conntrackCapacity: 4096 });
      for (let round = 0; round < 3; round++) {
        const outs = dp.process(Array.from({ length: 800 }, (_, i) => packet('UDP', `198.51.${100 + (i >> 8)}.${i & 0xff}`, 20000 + i, WEB, 53)), NOW + round);
        expect(outs.every((o) => o.verdict === 'forward')).toBe(true);
      }
      evicted += dp.packets.counters().conntrack_evicted_table_full ?? 0;
    }
    expect(evicted).toBeLessThanOrEqual(2);
  });

  it('eviction takes the entry closest to expiry: an established flow survives a flood of new SYN-only flows', async () => {
    const dp = await plane(v4Only(V4_BACKENDS), { conntrackCapacity: 64 });
    const be = handshake(dp, 34000, NOW); // expires at NOW + 21600; every flood entry at NOW + 60
    const flood = Array.from({ length: 2000 }, (_, i) => packet('TCP', `203.0.113.${1 + (i % 250)}`, 1024 + i, WEB, 80));
    dp.process(flood, NOW);
    expect(dp.packets.counters().conntrack_evicted_table_full).toBeGreaterThan(0);
    const { o, to } = nextPacket(dp, 34000, NOW + 1);
    expect([...vr(o), to]).toEqual(['forward', 'forward_established', `${be.address}:${be.port}`]);
    const reply = packet('TCP', be.address, be.port, CLIENT, 34000, { flags: TCP_FLAGS.ACK });
    expect(vr(run(dp, reply, NOW + 1))).toEqual(['reverse', 'reverse_nat']);
    expect(parse(reply).src.join('.')).toBe(WEB);
  });
});

// ---- counters ----

describe('counters', () => {
  it('after a known sequence, counters() hold exactly the expected numbers per reason and event', async () => {
    const dp = await plane();
    const zero = Object.fromEntries([...REASON_KEYS, ...Object.values(EVENT_COUNTERS)].map((k) => [k, 0]));
    expect(dp.packets.counters()).toEqual(zero);

    const be = handshake(dp, 33000); // forward_new, reverse_nat, forward_established; 1 flow created
    run(dp, packet('TCP', CLIENT, 33001, NOWHERE, 80)); // pass_not_service
    run(dp, new Uint8Array(10)); // drop_malformed_ip
    run(dp, packet('TCP', CLIENT, 33002, EMPTY, 80)); // reject_no_endpoints (with a reply)
    run(dp, packet('TCP', '0.0.0.0', 33002, EMPTY, 80)); // reject_no_endpoints, reply suppressed
    run(dp, fragment4(packet('UDP', CLIENT, 33003, WEB, 53, { payload: pattern(100) }), 56)[1]); // pass_fragment_untracked
    run(dp, packet('UDP', CLIENT6, 33004, WEB6, 53, { noChecksum: true })); // drop_malformed_l4
    run(dp, packet('TCP', CLIENT6, 33005, WEB6, 80, { ext: [routingHeader(2, [ROUTER6, WEB6])] })); // pass_routed
    run(dp, packet('TCP', CLIENT6, 33006, WEB6, 80, { ext: new Array(9).fill(0).map(() => optionsHeader(IPPROTO.DSTOPTS)) })); // drop_malformed_ipv6_ext
    const [first, later] = fragment4(ipv4({ src: CLIENT, dst: WEB, id: 77 }, udp({ sport: 33007, dport: 53, payload: pattern(100) })), 56);
    run(dp, first); // forward_new, a fragment tracked, a flow created
    run(dp, later); // forward_fragment
    const syn = packet('TCP', CLIENT, 33000, WEB, 80, { flags: TCP_FLAGS.ACK });
    run(dp, syn); // forward_established
    run(dp, ipv4({ src: be.address, dst: CLIENT }, icmp4(3, 3, syn.subarray(0, 28)))); // reverse_icmp_error

    expect(dp.packets.counters()).toEqual({
      ...zero,
      forward_new: 2,
      reverse_nat: 1,
      forward_established: 2,
      pass_not_service: 1,
      drop_malformed_ip: 1,
      reject_no_endpoints: 2,
      pass_fragment_untracked: 1,
      drop_malformed_l4: 1,
      pass_routed: 1,
      drop_malformed_ipv6_ext: 1,
      forward_fragment: 1,
      reverse_icmp_error: 1,
      conntrack_created: 2,
      reject_reply_suppressed: 1,
      fragments_tracked: 1,
    });
  });
});
