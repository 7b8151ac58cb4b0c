// svcplane proxy end to end: real sockets on NET.0.0/16 (127.70-119, per process) only. Backends on
// NET.0.11-13, the service frontends bound on NET.1.x with --bind rules, Ingress on NET.1.1. Every await is bounded.

import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonLogger, parseBind, parseEndpointMap, startProxy, type ServiceProxy } from '../src/proxy/index.js';
import { runProxy } from '../src/cli/proxy.js';
import { runCli } from '../src/cli/main.js';
import {
  BACKENDS, ENDPOINT_MAP, FRONTENDS, NET, service, LOCAL_PORT, clusterObjects, echo, eventually, httpCall, makeCerts, metric, sleep, startBackends,
  tcpExchange, tcpOpen, tempDir, udpAsk, udpClient, within, writeCluster, type Backends, type Certs,
} from './fixtures/proxy/harness.js';

const GRACE_MS = 1000;
const HTTP = { host: `${NET}.1.1`, port: 18080 };
const HTTPS = { host: `${NET}.1.1`, port: 18443 };
const BINDS = Object.values(FRONTENDS).map((f) => `${f.ip}:${f.port}=${f.local}:${LOCAL_PORT}`);

let dir: string;
let file: string;
let certs: Certs;
let backends: Backends;
let proxy: ServiceProxy;
const logs: string[] = [];

const reloads = (): { result: string; errors: string[]; applied: number; deleted: number }[] =>
  logs.map((l) => JSON.parse(l) as { event: string }).filter((l) => l.event === 'reload') as never;

/** Replaces the manifests and waits for the watcher's reload; returns its log record. */
async function change(objects: readonly object[] | string): Promise<{ result: string; errors: string[]; applied: number; deleted: number }> {
  const before = reloads().length;
  if (typeof objects === 'string') writeFileSync(file, objects);
  else writeCluster(file, objects);
  await eventually(() => reloads().length > before, 4000, 'a reload after the manifests changed');
  return reloads()[reloads().length - 1] as never;
}

async function metrics(): Promise<string> {
  const admin = proxy.listening.admin;
  if (!admin) throw new Error('no admin listener');
  return (await httpCall({ host: admin.address, port: admin.port, path: '/metrics' })).body;
}

/** Backend name each of `n` connections to a frontend lands on, from distinct client addresses. */
async function spread(fe: { local: string }, n: number, from: (i: number) => string): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  const results = await Promise.all(Array.from({ length: n }, (_, i) => tcpExchange(fe.local, LOCAL_PORT, { localAddress: from(i), send: 'x' })));
  for (const r of results) {
    const name = r.data.split('\n', 1)[0] ?? '';
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  return counts;
}

beforeAll(async () => {
  dir = tempDir();
  certs = makeCerts(dir);
  file = join(dir, 'cluster.json');
  writeCluster(file, clusterObjects({}, certs));
  backends = await startBackends(BACKENDS);
  proxy = await within(startProxy({
    paths: [file],
    dataplane: { node: 'node-a' },
    binds: BINDS.map(parseBind),
    endpointMap: [parseEndpointMap(ENDPOINT_MAP)],
    http: [{ address: HTTP.host, port: HTTP.port }],
    https: [{ address: HTTPS.host, port: HTTPS.port }],
    admin: { address: `${NET}.1.1`, port: 0 },
    graceMs: GRACE_MS,
    debounceMs: 50,
    udpIdleMs: 800,
    connectTimeoutMs: 1000,
    requestTimeoutMs: 1000,
    log: jsonLogger((l) => logs.push(l.trimEnd())),
  }), 10_000, 'proxy start');
}, 20_000);

afterAll(async () => {
  await proxy?.close();
  await backends?.close();
});

describe('L4', () => {
  it('serves every bound frontend on its local address, and nothing unbound', () => {
    const served = proxy.listening.l4.map((l) => `${l.frontend.address}:${l.frontend.port}/${l.frontend.protocol}=${l.local.address}:${l.local.port}`).sort();
    expect(served).toEqual([
      `10.96.77.20:7/TCP=${NET}.1.20:${LOCAL_PORT}`, `10.96.77.30:7/TCP=${NET}.1.30:${LOCAL_PORT}`, `10.96.77.40:7/TCP=${NET}.1.40:${LOCAL_PORT}`,
      `10.96.77.50:7/TCP=${NET}.1.50:${LOCAL_PORT}`, `10.96.77.53:53/UDP=${NET}.1.53:${LOCAL_PORT}`,
    ]);
  });

  it('spreads TCP connections from different clients over every backend', async () => {
    const counts = await spread(FRONTENDS.echo, 45, (i) => `${NET}.9.${i + 1}`);
    expect([...counts.keys()].sort()).toEqual([...BACKENDS]);
    for (const n of counts.values()) expect(n).toBeGreaterThanOrEqual(3);
  });

  it('keeps one client on one backend with ClientIP affinity (and not without it)', async () => {
    const sticky = await spread(FRONTENDS.sticky, 12, () => `${NET}.9.100`);
    expect(sticky.size).toBe(1);
    const plain = await spread(FRONTENDS.echo, 12, () => `${NET}.9.100`);
    expect(plain.size).toBeGreaterThan(1);
  });

  it('pipes both ways and honours half-close: the backend still answers after the client FIN', async () => {
    const r = await tcpExchange(FRONTENDS.echo.local, LOCAL_PORT, { localAddress: `${NET}.9.200`, send: 'hello', end: true });
    const [name, rest] = [r.data.split('\n', 1)[0] as string, r.data.slice(r.data.indexOf('\n') + 1)];
    expect(BACKENDS).toContain(name);
    expect(rest).toBe('hellobye\n');
    expect(r.ended).toBe('end');
  });

  it('moves a large transfer intact (backpressure)', async () => {
    const { socket, backend } = await tcpOpen(FRONTENDS.echo.local, LOCAL_PORT, `${NET}.9.201`);
    expect(BACKENDS).toContain(backend);
    const big = 'z'.repeat(4 * 1024 * 1024);
    const back = await echo(socket, big);
    expect(back.length).toBe(big.length);
    socket.destroy();
  });

  it('resets the client when the service has no endpoints or the backend refuses, and counts it', async () => {
    expect(await tcpExchange(FRONTENDS.empty.local, LOCAL_PORT, { send: 'x' })).toEqual({ data: '', ended: 'reset' });
    expect(await tcpExchange(FRONTENDS.dead.local, LOCAL_PORT, { send: 'x' })).toEqual({ data: '', ended: 'reset' });
    const m = await metrics();
    expect(metric(m, 'svcplane_proxy_errors_total', { protocol: 'TCP', reason: 'refused' })).toBeGreaterThanOrEqual(1);
    expect(metric(m, 'svcplane_proxy_errors_total', { protocol: 'TCP', reason: 'no_endpoints' })).toBeGreaterThanOrEqual(1);
    expect(metric(m, 'svcplane_proxy_selections_total', { protocol: 'TCP', service: 'test/empty', verdict: 'reject' })).toBeGreaterThanOrEqual(1);
  });

  it('passes a backend reset mid-stream on to the client as a reset', async () => {
    const before = metric(await metrics(), 'svcplane_proxy_errors_total', { protocol: 'TCP', reason: 'reset' });
    const c = await tcpOpen(FRONTENDS.echo.local, LOCAL_PORT, `${NET}.9.202`);
    expect(await echo(c.socket, 'fine')).toBe('fine');
    c.socket.on('error', () => {});
    c.socket.write('RESET');
    expect(await within(c.closed, 3000, 'client closed after the backend reset')).toBe('reset');
    expect(metric(await metrics(), 'svcplane_proxy_errors_total', { protocol: 'TCP', reason: 'reset' })).toBe(before + 1);
  });

  it('keeps UDP flows on one backend per client, and forgets them when idle', async () => {
    const names = new Map<string, Set<string>>();
    const clients = await Promise.all([`${NET}.9.60`, `${NET}.9.61`, `${NET}.9.62`, `${NET}.9.63`].map(udpClient));
    try {
      for (const [i, c] of clients.entries()) {
        for (let k = 0; k < 3; k++) {
          const reply = await udpAsk(c, FRONTENDS.dns.local, LOCAL_PORT, `q${k}`);
          const [name, payload] = reply.split(':');
          expect(payload).toBe(`q${k}`);
          if (!names.has(String(i))) names.set(String(i), new Set());
          names.get(String(i))?.add(name as string);
        }
      }
      for (const set of names.values()) expect(set.size).toBe(1);
      const m = await metrics();
      expect(metric(m, 'svcplane_proxy_connections_total', { protocol: 'UDP', service: 'test/dns' })).toBe(4);
      expect(metric(m, 'svcplane_proxy_connections_active', { protocol: 'UDP' })).toBe(4);
      await eventually(async () => metric(await metrics(), 'svcplane_proxy_connections_active', { protocol: 'UDP' }) === 0, 3000, 'idle UDP flows forgotten');
    } finally {
      for (const c of clients) c.close();
    }
  });
});

describe('HTTP Ingress', () => {
  const get = (hostHeader: string, path: string, localAddress = `${NET}.9.7`, method = 'GET', body?: string) =>
    httpCall({ ...HTTP, hostHeader, path, localAddress, method, body });

  it('routes by host and path and adds X-Forwarded-*', async () => {
    const r = await get('web.test', '/shop?x=1');
    expect(r.status).toBe(200);
    expect(BACKENDS).toContain(r.json?.name);
    expect(r.json?.url).toBe('/shop?x=1');
    expect(r.json?.headers).toMatchObject({ host: 'web.test', 'x-forwarded-for': `${NET}.9.7`, 'x-forwarded-proto': 'http', 'x-forwarded-host': 'web.test' });
    const wild = await get('a.other.test', '/');
    expect(wild.status).toBe(200);
  });

  it('appends to an existing X-Forwarded-For', async () => {
    const r = await within(new Promise<string>((resolve, reject) => {
      import('node:http').then(({ request }) => {
        const req = request({ ...HTTP, path: '/', headers: { host: 'web.test', 'x-forwarded-for': '203.0.113.9' }, localAddress: `${NET}.9.8`, agent: false }, (res) => {
          let b = '';
          res.on('data', (c: Buffer) => (b += c.toString()));
          res.on('end', () => resolve(b));
        });
        req.on('error', reject);
        req.end();
      }, reject);
    }), 3000, 'request with X-Forwarded-For');
    expect((JSON.parse(r) as { headers: Record<string, string> }).headers['x-forwarded-for']).toBe(`203.0.113.9, ${NET}.9.8`);
  });

  it('answers 404 with no matching rule, 503 with no endpoints, 502 when the backend refuses', async () => {
    expect((await get('nowhere.test', '/')).status).toBe(404);
    expect((await get('web.test', '/empty')).status).toBe(503);
    const bad = await get('web.test', '/dead');
    expect(bad.status).toBe(502);
    expect(bad.body).toContain('ECONNREFUSED');
    const m = await metrics();
    expect(metric(m, 'svcplane_proxy_http_responses_total', { service: 'test/webdead', code: '502' })).toBeGreaterThanOrEqual(1);
    expect(metric(m, 'svcplane_proxy_errors_total', { protocol: 'HTTP', reason: 'refused' })).toBeGreaterThanOrEqual(1);
  });

  it('answers 502 when the backend resets after reading the request, without trying another backend', async () => {
    const total = (method: string): number => BACKENDS.reduce((n, b) => n + (backends.httpRequests.get(`${b} ${method} /reset`) ?? 0), 0);
    const post = await get('web.test', '/reset', `${NET}.9.9`, 'POST', 'data');
    expect(post.status).toBe(502);
    expect(total('POST')).toBe(1);
    // GET is idempotent, but the request reached the backend: at most the one stale-connection retry to
    // the same backend (when the pooled connection was reused), never a different backend.
    const r = await get('web.test', '/reset', `${NET}.9.9`);
    expect(r.status).toBe(502);
    const hit = BACKENDS.filter((b) => (backends.httpRequests.get(`${b} GET /reset`) ?? 0) > 0);
    expect(hit).toHaveLength(1);
    expect(total('GET')).toBeLessThanOrEqual(2);
    expect(metric(await metrics(), 'svcplane_proxy_errors_total', { protocol: 'HTTP', reason: 'reset' })).toBeGreaterThanOrEqual(1);
  });

  it('answers 504 when the backend does not answer in time', async () => {
    const t0 = Date.now();
    const r = await get('web.test', '/hang');
    expect(r.status).toBe(504);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    expect(metric(await metrics(), 'svcplane_proxy_errors_total', { protocol: 'HTTP', reason: 'timeout' })).toBe(1);
  });

  it('spreads clients over the backends and keeps connections to them alive', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 24; i++) seen.add((await get('web.test', '/', `${NET}.9.${30 + i}`)).json?.name ?? '');
    expect(seen.size).toBeGreaterThan(1);
    // One client connection: one backend (same client address and port), one pooled backend connection.
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const before = new Map(backends.httpConnections);
      const names = new Set<string>();
      for (let i = 0; i < 6; i++) names.add((await httpCall({ ...HTTP, hostHeader: 'web.test', path: '/', agent, localAddress: `${NET}.9.90` })).json?.name ?? '');
      expect(names.size).toBe(1);
      const name = [...names][0] as string;
      expect((backends.httpConnections.get(name) ?? 0) - (before.get(name) ?? 0)).toBeLessThanOrEqual(1);
    } finally {
      agent.destroy();
    }
  });

  it('retries idempotent requests without a body once after a refusal, never others', async () => {
    const before = metric(await metrics(), 'svcplane_proxy_http_retries_total', { service: 'test/half' });
    const gets = await Promise.all(Array.from({ length: 16 }, (_, i) => get('web.test', '/half', `${NET}.9.${120 + i}`)));
    for (const r of gets) {
      expect(r.status).toBe(200);
      expect(r.json?.name).toBe(BACKENDS[0]);
    }
    expect(metric(await metrics(), 'svcplane_proxy_http_retries_total', { service: 'test/half' })).toBeGreaterThan(before);
    const posts = await Promise.all(Array.from({ length: 16 }, (_, i) => get('web.test', '/half', `${NET}.9.${120 + i}`, 'POST', 'payload')));
    const codes = posts.map((r) => r.status);
    expect(codes).toContain(502);
    expect(codes).toContain(200);
    expect(posts.filter((r) => r.status === 200).every((r) => r.json?.body === 'payload')).toBe(true);
  });

  it('terminates TLS with the certificate the SNI name selects', async () => {
    const web = await httpCall({ ...HTTPS, hostHeader: 'web.test', tls: { servername: 'web.test', ca: [certs.web.cert] } });
    expect(web.status).toBe(200);
    expect(web.json?.headers['x-forwarded-proto']).toBe('https');
    const other = await httpCall({ ...HTTPS, hostHeader: 'x.other.test', tls: { servername: 'x.other.test', ca: [certs.other.cert] } });
    expect(other.status).toBe(200);
    // The web.test certificate is not trusted for the other name: the wrong certificate fails the handshake.
    await expect(httpCall({ ...HTTPS, hostHeader: 'x.other.test', tls: { servername: 'x.other.test', ca: [certs.web.cert] } })).rejects.toThrow();
  });
});

describe('live changes', () => {
  it('keeps a connection whose endpoint terminates, and gives that endpoint no new ones', async () => {
    const c = await tcpOpen(FRONTENDS.echo.local, LOCAL_PORT, `${NET}.9.240`);
    try {
      const others = BACKENDS.filter((b) => b !== c.backend);
      const r = await change(clusterObjects({ echo: [...others, { address: c.backend, ready: false, terminating: true }] }, certs));
      expect(r.result).toBe('ok');
      expect(r.applied).toBe(1);
      await sleep(GRACE_MS + 300);
      expect(await echo(c.socket, 'still here')).toBe('still here');
      const counts = await spread(FRONTENDS.echo, 24, (i) => `${NET}.9.${i + 1}`);
      expect(counts.has(c.backend)).toBe(false);
    } finally {
      c.socket.destroy();
    }
  });

  it('closes connections of a removed endpoint after the grace period, not before', async () => {
    await change(clusterObjects({}, certs));
    const c = await tcpOpen(FRONTENDS.echo.local, LOCAL_PORT, `${NET}.9.241`);
    const others = BACKENDS.filter((b) => b !== c.backend);
    const t0 = Date.now();
    const r = await change(clusterObjects({ echo: others }, certs));
    expect(r.result).toBe('ok');
    // Mid-stream after the change: still on its backend.
    expect(await echo(c.socket, 'mid-stream')).toBe('mid-stream');
    const counts = await spread(FRONTENDS.echo, 24, (i) => `${NET}.9.${i + 1}`);
    expect(counts.has(c.backend)).toBe(false);
    const how = await within(c.closed, GRACE_MS + 3000, 'drained connection closed');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(GRACE_MS - 100);
    expect(how).toBe('reset');
    expect(metric(await metrics(), 'svcplane_proxy_drained_total', { protocol: 'TCP' })).toBeGreaterThanOrEqual(1);
    await change(clusterObjects({}, certs));
  });

  it('rejects a bad reload, logs why, and keeps serving the last good state', async () => {
    const rejectedBefore = metric(await metrics(), 'svcplane_proxy_reloads_total', { result: 'rejected' });
    const syntax = await change('{"apiVersion": "v1", "kind": ');
    expect(syntax.result).toBe('rejected');
    expect(syntax.errors.join('\n')).toMatch(/cluster\.json:1:/);
    const objects = clusterObjects({ echo: [BACKENDS[0]] }, certs) as { kind: string; metadata: { name: string }; spec?: { ports?: { port: number }[] } }[];
    const svc = objects.find((o) => o.kind === 'Service' && o.metadata.name === 'web');
    (svc?.spec?.ports ?? [])[0]!.port = 70000;
    const invalid = await change(objects);
    expect(invalid.result).toBe('rejected');
    expect(invalid.errors.join('\n')).toContain('Service test/web: spec.ports[0].port');
    // The valid half of that set (echo down to one backend) was not applied either.
    const counts = await spread(FRONTENDS.echo, 24, (i) => `${NET}.9.${i + 1}`);
    expect(counts.size).toBe(3);
    expect((await httpCall({ ...HTTP, hostHeader: 'web.test', path: '/' })).status).toBe(200);
    const m = await metrics();
    expect(metric(m, 'svcplane_proxy_reloads_total', { result: 'rejected' })).toBe(rejectedBefore + 2);
    expect(metric(m, 'svcplane_proxy_reload_errors_total')).toBeGreaterThanOrEqual(2);
    const ok = await change(clusterObjects({}, certs));
    expect(ok).toMatchObject({ result: 'ok', errors: [] });
  });

  it('picks up a renewed certificate, and rejects a Secret that is not a usable key pair', async () => {
    const renewed = makeCerts(tempDir());
    const ok = await change(clusterObjects({}, { ...certs, web: renewed.web }));
    expect(ok.result).toBe('ok');
    const call = (ca: string) => httpCall({ ...HTTPS, hostHeader: 'web.test', tls: { servername: 'web.test', ca: [ca] } });
    expect((await call(renewed.web.cert)).status).toBe(200);
    await expect(call(certs.web.cert)).rejects.toThrow();
    const bad = await change(clusterObjects({}, { ...certs, web: { cert: renewed.web.cert, key: certs.other.key } }));
    expect(bad.result).toBe('rejected');
    expect(bad.errors.join('\n')).toContain('Secret test/web-tls: data: not a usable certificate and key');
    expect((await call(renewed.web.cert)).status).toBe(200);
    expect((await change(clusterObjects({}, certs))).result).toBe('ok');
    expect((await call(certs.web.cert)).status).toBe(200);
  });

  it('deletes what disappeared from the files: a removed Service stops being served', async () => {
    const objects = clusterObjects({}, certs).filter((o) => (o as { metadata: { name: string } }).metadata.name !== 'empty' && (o as { metadata: { name: string } }).metadata.name !== 'empty-1');
    const r = await change(objects);
    expect(r).toMatchObject({ result: 'ok', deleted: 2 });
    expect(proxy.listening.l4.some((l) => l.frontend.address === FRONTENDS.empty.ip)).toBe(false);
    expect((await tcpExchange(FRONTENDS.empty.local, LOCAL_PORT, {})).ended).toBe('error: ECONNREFUSED');
    await change(clusterObjects({}, certs));
    expect(proxy.listening.l4.some((l) => l.frontend.address === FRONTENDS.empty.ip)).toBe(true);
  });
});

describe('watching a directory', () => {
  it('serves a frontend that a new file in a watched directory adds', async () => {
    const d = tempDir();
    writeCluster(join(d, 'base.json'), clusterObjects({}));
    const seen: string[] = [];
    const p = await startProxy({
      paths: [d],
      dataplane: { node: 'node-a' },
      binds: [`10.96.77.20:7=${NET}.3.20:17000`, `10.96.77.60:7=${NET}.3.60:17000`].map(parseBind),
      endpointMap: [parseEndpointMap(ENDPOINT_MAP)],
      debounceMs: 50,
      log: jsonLogger((l) => seen.push(l)),
    });
    try {
      expect(p.listening.l4.map((l) => l.local.address)).toEqual([`${NET}.3.20`]);
      writeCluster(join(d, 'sub-extra.json'), service('extra', '10.96.77.60', 7, 7000, 'TCP', [BACKENDS[1]]));
      await eventually(() => p.listening.l4.length === 2, 4000, 'the new frontend served');
      const r = await tcpExchange(`${NET}.3.60`, 17000, { send: 'new' });
      expect(r.data).toBe(`${BACKENDS[1]}\nnewbye\n`);
      expect(seen.filter((l) => l.includes('"event":"reload"')).length).toBeGreaterThanOrEqual(2);
    } finally {
      await p.close();
    }
  });
});

describe('IPv6', () => {
  it('serves an IPv6 frontend over IPv6 endpoints (::1 stand-ins), spreading by client port', async () => {
    // Ports from the process id, as NET: two runs at once must not share [::1] ports.
    const base = 20000 + (process.pid % 50) * 100;
    const servers = await Promise.all([1, 2].map((i) => new Promise<import('node:net').Server>((resolve) => {
      const srv = createTcpServer((sock) => sock.end(`v6-${i}\n`));
      srv.listen(base + i, '::1', () => resolve(srv));
    })));
    const d = tempDir();
    const f = join(d, 'v6.json');
    writeCluster(f, [
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'six', namespace: 'test' },
        spec: { clusterIP: 'fd00:96::77', clusterIPs: ['fd00:96::77'], ipFamilies: ['IPv6'], ipFamilyPolicy: 'SingleStack', ports: [{ name: 'main', port: 7, targetPort: 7000 }] } },
      { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv6',
        metadata: { name: 'six-1', namespace: 'test', labels: { 'kubernetes.io/service-name': 'six' } },
        ports: [{ name: 'main', port: 7000, protocol: 'TCP' }],
        endpoints: [{ addresses: ['fd00:77:0:0::11'] }, { addresses: ['fd00:77::12'] }] },
    ]);
    const p = await startProxy({
      paths: [f], dataplane: { node: 'node-a' }, watch: false,
      binds: [parseBind(`[fd00:96::77]:7=[::1]:${base}`)],
      endpointMap: [`[fd00:77::11]:7000=[::1]:${base + 1}`, `[fd00:77::12]:7000=[::1]:${base + 2}`].map(parseEndpointMap),
    });
    try {
      expect(p.listening.l4).toEqual([{ frontend: { address: 'fd00:96::77', port: 7, protocol: 'TCP', service: 'test/six' }, local: { address: '::1', port: base } }]);
      const seen = new Set((await Promise.all(Array.from({ length: 16 }, () => tcpExchange('::1', base)))).map((r) => r.data));
      expect([...seen].sort()).toEqual(['v6-1\n', 'v6-2\n']);
      const m = await p.metrics.registry.metrics();
      expect(metric(m, 'svcplane_proxy_connections_total', { backend: '[fd00:77::11]:7000' }) + metric(m, 'svcplane_proxy_connections_total', { backend: '[fd00:77::12]:7000' })).toBe(16);
    } finally {
      await p.close();
      for (const srv of servers) srv.close();
    }
  });
});

describe('HTTP draining', () => {
  it('aborts a request in flight to a removed endpoint after the grace period (502), not before', async () => {
    const d = tempDir();
    const f = join(d, 'cluster.json');
    writeCluster(f, clusterObjects({}));
    const p = await startProxy({
      paths: [f], dataplane: { node: 'node-a' }, endpointMap: [parseEndpointMap(ENDPOINT_MAP)],
      http: [{ address: `${NET}.4.1`, port: 18080 }], graceMs: 400, requestTimeoutMs: 10_000, debounceMs: 50,
    });
    try {
      const count = (b: string): number => backends.httpRequests.get(`${b} GET /hang`) ?? 0;
      const before = new Map(BACKENDS.map((b) => [b, count(b)]));
      const pending = httpCall({ host: `${NET}.4.1`, port: 18080, hostHeader: 'web.test', path: '/hang' });
      const hit = (): string | undefined => BACKENDS.find((b) => count(b) > (before.get(b) ?? 0));
      await eventually(() => hit() !== undefined, 3000, 'the request reached a backend');
      const victim = hit() as string;
      const t0 = Date.now();
      const reloads0 = metric(await p.metrics.registry.metrics(), 'svcplane_proxy_reloads_total', { result: 'ok' });
      writeCluster(f, clusterObjects({ web: BACKENDS.filter((b) => b !== victim) }));
      await eventually(async () => metric(await p.metrics.registry.metrics(), 'svcplane_proxy_reloads_total', { result: 'ok' }) > reloads0, 3000, 'reload');
      const r = await pending;
      expect(r.status).toBe(502);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(350);
      expect(metric(await p.metrics.registry.metrics(), 'svcplane_proxy_drained_total', { protocol: 'HTTP' })).toBe(1);
    } finally {
      await p.close();
    }
  });
});

describe('observability', () => {
  it('exports Prometheus metrics and /healthz', async () => {
    const m = await metrics();
    expect(metric(m, 'svcplane_proxy_connections_total', { protocol: 'TCP', service: 'test/echo' })).toBeGreaterThan(50);
    expect(metric(m, 'svcplane_proxy_bytes_total', { protocol: 'TCP', direction: 'to_client' })).toBeGreaterThan(4 * 1024 * 1024);
    expect(metric(m, 'svcplane_proxy_selections_total', { protocol: 'HTTP', verdict: '200' })).toBeGreaterThan(0);
    expect(metric(m, 'svcplane_proxy_table_entries', { table: 'frontends' })).toBe(9);
    expect(metric(m, 'svcplane_proxy_table_entries', { table: 'tls_certificates' })).toBe(2);
    expect(metric(m, 'svcplane_proxy_reloads_total', { result: 'ok' })).toBeGreaterThanOrEqual(5);
    const admin = proxy.listening.admin as { address: string; port: number };
    const h = await httpCall({ host: admin.address, port: admin.port, path: '/healthz' });
    expect(h.status).toBe(200);
    expect(h.body).toMatch(/^ok/);
    const reload = JSON.parse(logs.find((l) => l.includes('"event":"reload"')) as string) as Record<string, unknown>;
    expect(reload).toMatchObject({ level: 'info', trigger: 'start', result: 'ok', errors: [] });
    expect(typeof reload.durationMs).toBe('number');
  });
});

describe('svcplane proxy command', () => {
  const io = () => {
    const out = { stdout: '', stderr: '' };
    return { out, io: { stdout: (s: string) => (out.stdout += s), stderr: (s: string) => (out.stderr += s) } };
  };

  it('prints help, and exits 2 on usage errors', async () => {
    const h = io();
    expect(await runCli(['proxy', '--help'], h.io)).toBe(0);
    expect(h.out.stdout).toContain('Usage: svcplane proxy PATH...');
    for (const args of [[], ['x', '--bind', 'nonsense'], ['x', '--bind', '10.0.0.1=127.0.0.1:80'], ['x', '--grace', '-1'], ['x', '--http', 'localhost:80'], ['x', '--nope'], ['-']]) {
      const u = io();
      expect(await runCli(['proxy', ...args], u.io), args.join(' ')).toBe(2);
      expect(u.out.stderr).toContain("Run 'svcplane proxy --help'");
    }
  });

  it('exits 1 without serving when the manifests have errors', async () => {
    const e = io();
    expect(await runCli(['proxy', 'examples/invalid', '--node', 'n', '--no-watch'], e.io)).toBe(1);
    expect(e.out.stderr).toContain('error: Service');
  });

  it('runs until stopped, serving the bound frontends', async () => {
    const e = io();
    const stop = new AbortController();
    let ready: (p: ServiceProxy) => void = () => {};
    const started = new Promise<ServiceProxy>((r) => (ready = r));
    const run = runProxy([file, '--node', 'node-a', '--bind', `${FRONTENDS.echo.ip}=${NET}.2.20`, '--endpoint-map', ENDPOINT_MAP, '--no-watch'], { ...e.io, signal: stop.signal, ready });
    const p = await within(started, 5000, 'CLI proxy ready');
    expect(p.listening.l4.map((l) => `${l.local.address}:${l.local.port}`)).toEqual([`${NET}.2.20:7`]);
    const r = await tcpExchange(`${NET}.2.20`, 7, { send: 'via cli' });
    expect(r.data).toMatch(/via clibye\n$/);
    stop.abort();
    expect(await within(run, 5000, 'CLI proxy stop')).toBe(0);
    expect(e.out.stderr).toContain('"event":"reload"');
  });

  it('the executable stops cleanly on SIGTERM', async () => {
    const own = join(tempDir(), 'cluster.json');
    writeCluster(own, clusterObjects({}));
    const child = spawn(process.execPath, ['dist/cli/bin.js', 'proxy', own, '--node', 'node-a', '--bind', `${FRONTENDS.echo.ip}=${NET}.2.21`, '--endpoint-map', ENDPOINT_MAP, '--no-watch'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      await eventually(() => err.includes('"event":"listen"'), 8000, `proxy listening (stderr: ${err})`);
      expect((await tcpExchange(`${NET}.2.21`, 7, { send: 'exe' })).data).toMatch(/exebye\n$/);
      // --no-watch: the change is picked up on SIGHUP only.
      writeCluster(own, clusterObjects({ echo: [BACKENDS[2]] }));
      child.kill('SIGHUP');
      await eventually(() => err.includes('"trigger":"signal"'), 5000, 'reload on SIGHUP');
      expect((await tcpExchange(`${NET}.2.21`, 7, { send: 'exe' })).data).toBe(`${BACKENDS[2]}\nexebye\n`);
      child.kill('SIGTERM');
      expect(await within(exited, 5000, 'exit after SIGTERM')).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

