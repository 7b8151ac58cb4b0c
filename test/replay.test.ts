// The packet path on a real capture: TCP and UDP traffic from real sockets on loopback, recorded with
// tcpdump, replayed through `svcplane replay`, the output checked by tshark (addresses, ports, checksums)
// and by an independent parser here; then the backends' replies, built from the output, go back through
// the same dataplane and must come out from the service address.
//
// Loopback captures carry partial TCP/UDP checksums (the kernel leaves them to offload), so the test
// first completes them with its own checksum code: the packet path updates checksums incrementally and
// would otherwise (correctly) keep them as wrong as they came in.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import dgram from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { liveCaptureSupport } from './helpers/capture.js';
import { runCli } from '../src/cli/main.js';
import { createDataplane, loadManifests, readManifestPaths } from '../src/index.js';
import { LINKTYPE, readCapture, writePcap, type Capture, type CaptureRecord } from '../src/packet/pcap.js';
import { replayCapture, replayRecords } from '../src/packet/replay.js';

const support = liveCaptureSupport();
const tools = support.ok;
if (!tools) console.warn(`replay.test.ts: SKIPPING the real-capture tests: ${support.reason}`);

const VIP = '127.0.0.10';
const BACKENDS = ['10.244.1.21', '10.244.2.22', '10.244.3.23'];
const tmp = mkdtempSync(join(tmpdir(), 'svcplane-replay-'));

function manifest(tcpPort: number, udpPort: number): string {
  return `apiVersion: v1
kind: Service
metadata: { name: echo, namespace: demo }
spec:
  clusterIP: ${VIP}
  ports:
    - { name: tcp, port: ${tcpPort}, targetPort: 9000, protocol: TCP }
    - { name: udp, port: ${udpPort}, targetPort: 9053, protocol: UDP }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: echo-1, namespace: demo, labels: { kubernetes.io/service-name: echo } }
addressType: IPv4
ports: [{ name: tcp, port: 9000, protocol: TCP }, { name: udp, port: 9053, protocol: UDP }]
endpoints:
${BACKENDS.map((a) => `  - { addresses: [${a}], conditions: { ready: true } }`).join('\n')}
`;
}

// ---- an independent IPv4 parser and checksum, for the input fix-up and the output checks ----

function sum16(bytes: Uint8Array, start = 0): number {
  let s = start;
  for (let i = 0; i < bytes.length; i += 2) s += ((bytes[i] as number) << 8) | (bytes[i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

interface Ip4 { src: string; dst: string; proto: number; sport: number; dport: number; headerOk: boolean; l4Ok: boolean; flags: number }

function l4Checksum(ip: Uint8Array): number {
  const ihl = ((ip[0] as number) & 15) * 4;
  const total = ((ip[2] as number) << 8) | (ip[3] as number);
  const l4 = ip.subarray(ihl, total);
  const pseudo = new Uint8Array(12);
  pseudo.set(ip.subarray(12, 20), 0);
  pseudo[9] = ip[9] as number;
  pseudo[10] = l4.length >> 8;
  pseudo[11] = l4.length & 255;
  return sum16(l4, sum16(pseudo));
}

function parse4(ip: Uint8Array): Ip4 {
  const ihl = ((ip[0] as number) & 15) * 4;
  const addr = (at: number): string => [...ip.subarray(at, at + 4)].join('.');
  const p = ip[9] as number;
  return {
    src: addr(12), dst: addr(16), proto: p,
    sport: ((ip[ihl] as number) << 8) | (ip[ihl + 1] as number),
    dport: ((ip[ihl + 2] as number) << 8) | (ip[ihl + 3] as number),
    headerOk: sum16(ip.subarray(0, ihl)) === 0xffff,
    l4Ok: l4Checksum(ip) === 0xffff,
    flags: p === 6 ? (ip[ihl + 13] as number) : 0,
  };
}

/** Completes a TCP/UDP checksum in place (full recomputation). */
function fixChecksum(ip: Uint8Array): void {
  const ihl = ((ip[0] as number) & 15) * 4;
  const at = ihl + (ip[9] === 6 ? 16 : 6);
  ip[at] = 0;
  ip[at + 1] = 0;
  let c = ~l4Checksum(ip) & 0xffff;
  if (c === 0 && ip[9] === 17) c = 0xffff;
  ip[at] = c >> 8;
  ip[at + 1] = c & 255;
}

/** A backend's answer to a packet it received: addresses and ports swapped, TCP ACK, checksum complete. */
function replyTo(ip: Uint8Array): Uint8Array {
  const r = ip.slice();
  const ihl = ((r[0] as number) & 15) * 4;
  r.set(ip.subarray(16, 20), 12);
  r.set(ip.subarray(12, 16), 16);
  r.set(ip.subarray(ihl + 2, ihl + 4), ihl);
  r.set(ip.subarray(ihl, ihl + 2), ihl + 2);
  if (r[9] === 6) r[ihl + 13] = 0x10;
  r[10] = r[11] = 0;
  const c = ~sum16(r.subarray(0, ihl)) & 0xffff;
  r[10] = c >> 8;
  r[11] = c & 255;
  fixChecksum(r);
  return r;
}

// ---- the capture ----

let tcpPort = 0;
let udpPort = 0;
let records: CaptureRecord[] = [];
const CONNECTIONS = 4;
const capturePath = join(tmp, 'lo.pcap');
const fixedPath = join(tmp, 'fixed.pcap');

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms))]);
}

async function capture(): Promise<void> {
  const server = net.createServer((c) => {
    c.on('data', (d) => c.write(d));
    c.on('end', () => c.end());
  });
  await new Promise<void>((res) => server.listen(0, VIP, res));
  tcpPort = (server.address() as net.AddressInfo).port;
  const udp = dgram.createSocket('udp4');
  await new Promise<void>((res) => udp.bind(0, VIP, res));
  udpPort = udp.address().port;
  udp.on('message', (m, r) => udp.send(m, r.port, r.address));

  // A probe port nobody listens on is in the filter too: probes are sent until the capture file grows,
  // which proves the filter is attached ("listening on" is printed before it is); they are dropped below.
  const probe = dgram.createSocket('udp4');
  await new Promise<void>((res) => probe.bind(0, '127.0.0.1', res));
  const probePort = probe.address().port + 1;
  const filter = `host ${VIP} and (tcp port ${tcpPort} or udp port ${udpPort} or udp port ${probePort})`;
  const dump = spawn('tcpdump', ['-i', 'lo', '-U', '--immediate-mode', '-B', '32768', '-n', '-w', capturePath, filter], { stdio: ['ignore', 'ignore', 'pipe'] });
  let exited = false;
  dump.on('exit', () => (exited = true));
  const started = Date.now();
  while (!(existsSync(capturePath) && statSync(capturePath).size > 24)) {
    if (exited || Date.now() - started > 8000) throw new Error('tcpdump did not start capturing within 8 s');
    probe.send('probe', probePort, VIP);
    await new Promise((res) => setTimeout(res, 100));
  }
  probe.close();
  try {
    for (let i = 0; i < CONNECTIONS; i++) {
      await withTimeout(new Promise<void>((res, rej) => {
        const c = net.connect(tcpPort, VIP, () => c.end(`hello ${i}`));
        c.on('data', () => undefined);
        c.on('close', () => res());
        c.on('error', rej);
      }), 3000, 'TCP echo');
    }
    const client = dgram.createSocket('udp4');
    await withTimeout(new Promise<void>((res) => {
      client.on('message', () => res());
      client.send('query', udpPort, VIP);
    }), 3000, 'UDP echo');
    client.close();
    await new Promise((res) => setTimeout(res, 300)); // --immediate-mode -U: each packet is written as it comes
  } finally {
    dump.kill('SIGINT');
    if (!exited) await withTimeout(new Promise((res) => dump.on('exit', res)), 3000, 'tcpdump stop').catch(() => dump.kill('SIGKILL'));
    server.close();
    udp.close();
  }
  const cap = readCapture(new Uint8Array(readFileSync(capturePath)));
  records = cap.records.filter((r) => !(r.ip && parse4(r.ip).proto === 17 && parse4(r.ip).dport === probePort));
  for (const r of records) if (r.ip) fixChecksum(r.ip);
  writeFileSync(fixedPath, writePcap(records));
}

function tshark(file: string, fields: string[]): string[][] {
  const r = spawnSync('tshark', ['-r', file, '-o', 'tcp.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE', '-o', 'ip.check_checksum:TRUE',
    '-T', 'fields', ...fields.flatMap((f) => ['-e', f])], { encoding: 'utf8', timeout: 10000 });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.trim().split('\n').map((l) => l.split('\t'));
}

describe.skipIf(!tools)('replay of a real loopback capture', () => {
  beforeAll(async () => {
    await capture();
    writeFileSync(join(tmp, 'svc.yaml'), manifest(tcpPort, udpPort));
  }, 20000);
  afterAll(() => undefined);

  it('captured real TCP handshakes and a UDP exchange', () => {
    const syns = records.filter((r) => r.ip && parse4(r.ip).proto === 6 && parse4(r.ip).flags === 0x02);
    expect(syns).toHaveLength(CONNECTIONS);
    expect(records.some((r) => r.ip && parse4(r.ip).proto === 17 && parse4(r.ip).dport === udpPort)).toBe(true);
  });

  it('DNATs every client packet to one backend per connection, with valid checksums (tshark agrees)', async () => {
    const out = join(tmp, 'out.pcap');
    let stdout = '';
    const code = await runCli(['replay', join(tmp, 'svc.yaml'), '--node', 'n1', '--pcap', fixedPath, '-w', out, '-o', 'json'], {
      stdout: (s) => (stdout += s), stderr: () => undefined,
    });
    expect(code).toBe(0);
    const summary = JSON.parse(stdout) as { processed: number; reasons: Record<string, number>; written: number };
    const toVip = records.filter((r) => r.ip && parse4(r.ip).dst === VIP).length;
    const fromVip = records.filter((r) => r.ip && parse4(r.ip).src === VIP).length;
    expect(summary.processed).toBe(records.length);
    expect(summary.reasons.forward_new).toBe(CONNECTIONS + 1); // the TCP connections and the UDP flow
    expect((summary.reasons.forward_new ?? 0) + (summary.reasons.forward_established ?? 0)).toBe(toVip);
    expect(summary.reasons.pass_not_service).toBe(fromVip); // the local server answered as the VIP itself
    expect(summary.written).toBe(records.length);

    const rows = tshark(out, ['ip.src', 'ip.dst', 'tcp.srcport', 'tcp.dstport', 'udp.srcport', 'udp.dstport', 'ip.checksum.status', 'tcp.checksum.status', 'udp.checksum.status']);
    expect(rows).toHaveLength(records.length);
    const backendOf = new Map<string, string>();
    for (const [src, dst, ts, td, us, ud, ipOk, tcpOk, udpOk] of rows) {
      expect(ipOk).toBe('1'); // tshark: 1 = good
      expect(tcpOk || udpOk).toBe('1');
      if (src === VIP) continue; // server -> client, untouched
      expect(BACKENDS).toContain(dst);
      expect(ts ? td : ud).toBe(ts ? '9000' : '9053');
      const key = `${ts || us}`;
      if (backendOf.has(key)) expect(backendOf.get(key)).toBe(dst);
      backendOf.set(key, dst as string);
    }
    expect(backendOf.size).toBe(CONNECTIONS + 1);
    // ... and the same by this test's own parser.
    for (const r of readCapture(new Uint8Array(readFileSync(out))).records) {
      const p = parse4(r.ip as Uint8Array);
      expect(p.headerOk && p.l4Ok).toBe(true);
    }
  });

  it("reverse-NATs the backends' replies back to the service address and port", async () => {
    const dp = await createDataplane({ node: 'n1' });
    expect(dp.apply(loadManifests(manifest(tcpPort, udpPort)))).toEqual([]);
    const clientSide = records.filter((r) => r.ip && parse4(r.ip).dst === VIP);
    const forward = replayCapture(dp, { format: 'pcap', littleEndian: true, interfaces: [], records: clientSide });
    expect(forward.summary.verdicts.forward).toBe(clientSide.length);
    const replies = forward.output.map((w, i) => ({ ...(clientSide[i] as CaptureRecord), ip: replyTo(w.ip as Uint8Array) }));
    const back = replayCapture(dp, { format: 'pcap', littleEndian: true, interfaces: [], records: replies });
    expect(back.summary.verdicts.reverse).toBe(replies.length);
    back.output.forEach((w, i) => {
      const p = parse4(w.ip as Uint8Array);
      const orig = parse4((clientSide[i] as CaptureRecord).ip as Uint8Array);
      expect(p).toMatchObject({ src: VIP, sport: orig.dport, dst: orig.src, dport: orig.sport, headerOk: true, l4Ok: true });
    });
    const ct = dp.packets.conntrack(forward.summary.lastTime);
    expect(ct).toHaveLength(CONNECTIONS + 1);
    // TCP state as the packets replayed say: the backends' replies (ACKs) make a flow established, a FIN
    // or RST from the client makes it closing (a loaded machine may lose a packet from the capture).
    const closed = new Set(clientSide.map((r) => parse4(r.ip as Uint8Array)).filter((p) => p.proto === 6 && (p.flags & 0x05) !== 0).map((p) => p.sport));
    expect(closed.size).toBeGreaterThan(0);
    for (const e of ct.filter((x) => x.protocol === 'TCP')) expect(e.state).toBe(closed.has(e.client.port) ? 'closing' : 'established');
  });

  it('dump ... conntrack lists the flows a replay leaves', async () => {
    let stdout = '';
    const code = await runCli(['dump', join(tmp, 'svc.yaml'), 'conntrack', '--node', 'n1', '--pcap', fixedPath], {
      stdout: (s) => (stdout += s), stderr: () => undefined,
    });
    expect(code).toBe(0);
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^PROTO\s+CLIENT\s+FRONTEND\s+BACKEND\s+STATE\s+EXPIRES\s+SERVICE$/);
    expect(lines.slice(1)).toHaveLength(CONNECTIONS + 1);
    for (const l of lines.slice(1)) expect(l).toMatch(new RegExp(`${VIP.replace(/\./g, '\\.')}:(${tcpPort}|${udpPort})\\s+10\\.244\\.\\d\\.2\\d:90(00|53)\\s.*demo/echo$`));
  });
});

describe('replay usage', () => {
  const cli = async (args: string[]): Promise<{ code: number; err: string }> => {
    let err = '';
    const code = await runCli(args, { stdout: () => undefined, stderr: (s) => (err += s) });
    return { code, err };
  };
  it('needs --pcap, and reports a malformed capture with its offset', async () => {
    expect((await cli(['replay', 'examples/cluster', '--node', 'node-a'])).code).toBe(2);
    const bad = join(tmp, 'bad.pcap');
    writeFileSync(bad, new Uint8Array([0xd4, 0xc3, 0xb2, 0xa1, 2, 0]));
    const r = await cli(['replay', 'examples/cluster', '--node', 'node-a', '--pcap', bad]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/malformed capture: .*(offset|byte) ?\d+/i);
    expect((await cli(['dump', 'examples/cluster', '--node', 'node-a', '--pcap', bad])).code).toBe(2);
  });
});

describe('replay summary', () => {
  const replay = async (capacity: string): Promise<string> => {
    let stdout = '';
    const args = ['replay', 'examples/cluster', '--node', 'node-a', '--pcap', 'examples/captures/node-a.pcap', '--conntrack-capacity', capacity];
    expect(await runCli(args, { stdout: (s) => (stdout += s), stderr: () => undefined })).toBe(0);
    return stdout;
  };
  it('says when the conntrack table was too small for the capture, and what to try', async () => {
    const small = await replay('8');
    expect(small).toMatch(/conntrack: \d+ flows created, [1-9]\d* live entries evicted \(probe window full\)/);
    expect(small).toContain('note: flows were evicted before they ended, so some were counted as new more than once: 8 entries are too few for this capture\'s concurrent flows; try --conntrack-capacity 32');
    const enough = await replay('1024');
    expect(enough).toMatch(/, 0 live entries evicted/);
    expect(enough).not.toContain('note: flows were evicted');
  });
});

describe('replay of the example capture (examples/captures/node-a.pcap, built by make.mjs)', () => {
  it('gives each packet the verdict its rule says', async () => {
    let stdout = '';
    const out = join(tmp, 'node-a-out.pcap');
    const code = await runCli(['replay', 'examples/cluster', '--node', 'node-a', '--pcap', 'examples/captures/node-a.pcap', '-w', out, '-o', 'json'], {
      stdout: (s) => (stdout += s), stderr: () => undefined,
    });
    expect(code).toBe(0);
    const dp = await createDataplane({ node: 'node-a', tableSeed: 0 });
    dp.apply((await readManifestPaths(['examples/cluster'])).objects.map((o) => o.object));
    const r = replayCapture(dp, readCapture(new Uint8Array(readFileSync('examples/captures/node-a.pcap'))));
    const got = [...r.outcomes.values()].map((o) => o.reasonKey);
    expect(got).toEqual([
      // shop/web over its ClusterIP: SYN (new), SYN-ACK from the pod (reverse NAT), ACK, request, response,
      // FIN, FIN from the pod, last ACK
      'forward_new', 'reverse_nat', 'forward_established', 'forward_established', 'reverse_nat',
      'forward_established', 'reverse_nat', 'forward_established',
      // kube-dns over UDP: query, answer, and a router's ICMP error about the DNATed query (back to the client)
      'forward_new', 'reverse_nat', 'reverse_icmp_error',
      'reject_no_endpoints', // shop/search has no endpoints: ICMP port unreachable
      'drop_no_local_endpoints', // shop/cache: internalTrafficPolicy=Local, no endpoint on node-a
      'forward_new', // the LoadBalancer IP from inside loadBalancerSourceRanges
      'drop_source_range', // ... and from outside them
      'forward_new', // NodePort, eTP=Local: the local endpoint
      'forward_new', // the IPv6 ClusterIP
      'pass_not_service', // pod to pod
    ]);
    expect(JSON.parse(stdout)).toMatchObject({ records: 18, processed: 18, written: 16, replies: 1 });
    // What was written: every checksum valid (this test's own parser), the reject's ICMP error included.
    const written = readCapture(new Uint8Array(readFileSync(out))).records;
    for (const w of written.filter((x) => ((x.ip as Uint8Array)[0] as number) >> 4 === 4 && (x.ip as Uint8Array)[9] !== 1)) {
      const p = parse4(w.ip as Uint8Array);
      expect(p.headerOk && p.l4Ok).toBe(true);
    }
  });
});

describe('replay streams the capture', () => {
  const example = (): Capture => readCapture(new Uint8Array(readFileSync('examples/captures/node-a.pcap')));
  const dataplane = async (): Promise<Awaited<ReturnType<typeof createDataplane>>> => {
    const dp = await createDataplane({ node: 'node-a', tableSeed: 0 });
    dp.apply((await readManifestPaths(['examples/cluster'])).objects.map((o) => o.object));
    return dp;
  };
  /** The example capture's records spread over seconds, `perSecond` records each. */
  const spread = (perSecond: number): CaptureRecord[] =>
    example().records.map((r, i) => ({ ...r, timestampNs: r.timestampNs + BigInt(Math.floor(i / perSecond)) * 1_000_000_000n }));

  it('holds one capture second at a time: the first output comes before the next second is read on', async () => {
    const records = spread(3);
    let pulled = 0;
    let pulledAtFirstWrite = -1;
    function* lazily(): Generator<CaptureRecord> {
      for (const r of records) {
        pulled++;
        yield r;
      }
    }
    const summary = replayRecords(await dataplane(), lazily(), { write: () => { if (pulledAtFirstWrite < 0) pulledAtFirstWrite = pulled; } });
    // The first second's 3 records, and the record that showed the second was over.
    expect(pulledAtFirstWrite).toBe(4);
    expect(summary).toMatchObject({ records: records.length, processed: records.length });
  });

  it('writes what replayCapture gives, whether the capture takes one second or many', async () => {
    for (const perSecond of [1, 2, 5, 100]) {
      const records = spread(perSecond);
      const input = join(tmp, `spread-${perSecond}.pcap`);
      const out = join(tmp, `spread-${perSecond}-out.pcap`);
      writeFileSync(input, writePcap(records));
      const code = await runCli(['replay', 'examples/cluster', '--node', 'node-a', '--pcap', input, '-w', out], { stdout: () => undefined, stderr: () => undefined });
      expect(code).toBe(0);
      const expected = writePcap(replayCapture(await dataplane(), readCapture(new Uint8Array(readFileSync(input)))).output);
      expect(new Uint8Array(readFileSync(out)), `${perSecond} records a second`).toEqual(expected);
    }
  });

  it('writes raw IP when the capture mixes link types (two pcapng interfaces)', async () => {
    const out = join(tmp, 'merged-out.pcap');
    const code = await runCli(['replay', 'examples/cluster', '--node', 'node-a', '--pcap', 'test/fixtures/pcap/merged.pcapng', '-w', out], {
      stdout: () => undefined, stderr: () => undefined,
    });
    expect(code).toBe(0);
    const input = readCapture(new Uint8Array(readFileSync('test/fixtures/pcap/merged.pcapng')));
    expect(new Set(input.records.map((r) => r.linkType)).size).toBeGreaterThan(1);
    const written = readCapture(new Uint8Array(readFileSync(out)));
    expect(written.interfaces.map((i) => i.linkType)).toEqual([LINKTYPE.RAW]);
    expect(written.records.map((r) => Array.from(r.ip ?? []))).toEqual(input.records.map((r) => Array.from(r.ip ?? [])));
  });
});
