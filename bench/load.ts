// Load test of `svcplane proxy` (issue 7): HTTP throughput and latency through the proxy against
// connecting to a backend directly. Three processes: backends (one Node HTTP server on two loopback
// addresses standing in for two pods), the proxy (the built CLI, dist/cli/bin.js), and autocannon in
// this process. Cases, each after a short warm-up:
//   direct       autocannon -> backend
//   L4 TCP       autocannon -> proxy TCP frontend (--bind) -> backend (select() per connection)
//   HTTP Ingress autocannon -> proxy HTTP listener -> backend (route() per request, pooled upstreams)
//   minimal Node HTTP proxy  the same path through ten lines of http.request + pipe (no routing, no
//                metrics, no header rewriting), to show what Node's HTTP stack costs by itself
// Bounded in time: --duration seconds per case (default 10), everything killed after a hard deadline.
// Run: npm run bench:load [-- --duration 10 --connections 50] (compiles this file alone, so that other
// bench files do not have to build). Loopback only (127.78.0.0/16).
//
// Machine caveat: on a shared 2-core VM the three processes compete for two cores, so absolute figures
// move from run to run and the proxy's cost looks larger than on a machine with a core per process;
// compare the ratios within one run.

import autocannon from 'autocannon';
import { spawn, type ChildProcess } from 'node:child_process';
import { Agent, createServer, request } from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const POD_ADDRS = ['127.78.0.11', '127.78.0.12'];
const POD_PORT = 8080;
const FRONTEND = { ip: '10.96.78.10', port: 80, local: '127.78.1.10', localPort: 18000 };
const INGRESS = { address: '127.78.1.1', port: 18080 };
const BARE = { address: '127.78.1.2', port: 18081 };
const BODY = 'x'.repeat(1024);

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '50' },
    warmup: { type: 'string', default: '2' },
    role: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});

if (values.help) {
  console.log('Usage: node build/bench-load/load.js [--duration SECONDS] [--connections N] [--warmup SECONDS]');
  process.exit(0);
}

/** The backend role: plain keep-alive HTTP servers answering 1 KiB. */
async function backend(): Promise<void> {
  for (const a of POD_ADDRS) {
    const s = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length }).end(BODY));
    });
    s.keepAliveTimeout = 30_000;
    await new Promise<void>((r) => s.listen(POD_PORT, a, () => r()));
  }
  process.send?.('ready');
}

/** The minimal-proxy role: what a reverse proxy in Node costs before it does anything of its own. */
async function bare(): Promise<void> {
  const agent = new Agent({ keepAlive: true });
  const s = createServer((req, res) => {
    const up = request({ host: POD_ADDRS[0], port: POD_PORT, method: req.method, path: req.url, headers: req.headers, agent }, (pres) => {
      res.writeHead(pres.statusCode ?? 502, pres.headers);
      pres.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => s.listen(BARE.port, BARE.address, () => r()));
  process.send?.('ready');
}

function manifests(dir: string): string {
  const pod = (a: string): string => a.replace('127.78.0.', '10.78.0.');
  const items = [
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'bench' },
      spec: { type: 'ClusterIP', clusterIP: FRONTEND.ip, ports: [{ name: 'http', port: FRONTEND.port, targetPort: POD_PORT }] } },
    { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4',
      metadata: { name: 'web-1', namespace: 'bench', labels: { 'kubernetes.io/service-name': 'web' } },
      ports: [{ name: 'http', port: POD_PORT, protocol: 'TCP' }],
      endpoints: POD_ADDRS.map((a) => ({ addresses: [pod(a)], conditions: { ready: true } })) },
    { apiVersion: 'networking.k8s.io/v1', kind: 'IngressClass',
      metadata: { name: 'svcplane', annotations: { 'ingressclass.kubernetes.io/is-default-class': 'true' } }, spec: { controller: 'svcplane.dev/ingress' } },
    { apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', metadata: { name: 'web', namespace: 'bench' },
      spec: { rules: [{ host: 'bench.test', http: { paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: 'web', port: { number: 80 } } } }] } }] } },
  ];
  const file = join(dir, 'bench.json');
  writeFileSync(file, JSON.stringify({ apiVersion: 'v1', kind: 'List', items }));
  return file;
}

function waitFor(child: ChildProcess, check: (text: string) => boolean, ms: number, what: string): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    let seen = '';
    const t = setTimeout(() => reject(new Error(`${what}: not ready after ${ms} ms\n${seen}`)), ms);
    const on = (d: Buffer | string): void => {
      seen += d.toString();
      if (check(seen)) {
        clearTimeout(t);
        resolvePromise();
      }
    };
    child.stderr?.on('data', on);
    child.on('message', (m) => on(String(m)));
    child.on('exit', (code) => reject(new Error(`${what} exited with ${code}\n${seen}`)));
  });
}

interface Figures {
  name: string;
  rps: number;
  mbps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
}

async function run(name: string, url: string, host: string | undefined, seconds: number, connections: number): Promise<Figures> {
  const r = await autocannon({ url, connections, duration: seconds, pipelining: 1, headers: host ? { host } : {} });
  return {
    name,
    rps: r.requests.average,
    mbps: r.throughput.average / 1e6,
    p50: r.latency.p50,
    p99: r.latency.p99,
    errors: r.errors + r.timeouts,
    non2xx: r.non2xx,
  };
}

async function main(): Promise<void> {
  if (values.role === 'backend') return backend();
  if (values.role === 'bare') return bare();
  const seconds = Number(values.duration);
  const connections = Number(values.connections);
  const warmup = Number(values.warmup);
  const children: ChildProcess[] = [];
  // Hard deadline: three cases plus warm-ups plus start-up, whatever happens.
  const deadline = setTimeout(() => {
    console.error('load: deadline passed, stopping');
    for (const c of children) c.kill('SIGKILL');
    process.exit(1);
  }, (4 * (seconds + warmup) + 30) * 1000);
  deadline.unref();
  try {
    const be = spawn(process.execPath, [process.argv[1] as string, '--role', 'backend'], { stdio: ['ignore', 'inherit', 'pipe', 'ipc'] });
    children.push(be);
    await waitFor(be, (s) => s.includes('ready'), 5000, 'backend');
    const minimal = spawn(process.execPath, [process.argv[1] as string, '--role', 'bare'], { stdio: ['ignore', 'inherit', 'pipe', 'ipc'] });
    children.push(minimal);
    await waitFor(minimal, (s) => s.includes('ready'), 5000, 'minimal proxy');
    const file = manifests(mkdtempSync(join(tmpdir(), 'svcplane-load-')));
    const proxy = spawn(process.execPath, [
      resolve('dist/cli/bin.js'), 'proxy', file, '--node', 'bench', '--no-watch',
      '--bind', `${FRONTEND.ip}:${FRONTEND.port}=${FRONTEND.local}:${FRONTEND.localPort}`,
      '--endpoint-map', '10.78.0.0/24=127.78.0.0/24',
      '--http', `${INGRESS.address}:${INGRESS.port}`,
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(proxy);
    await waitFor(proxy, (s) => (s.match(/"event":"listen"/g) ?? []).length >= 2, 10_000, 'proxy');

    const cases: [string, string, string | undefined][] = [
      ['direct', `http://${POD_ADDRS[0]}:${POD_PORT}/`, undefined],
      ['L4 TCP', `http://${FRONTEND.local}:${FRONTEND.localPort}/`, undefined],
      ['HTTP Ingress', `http://${INGRESS.address}:${INGRESS.port}/`, 'bench.test'],
      ['minimal Node HTTP proxy', `http://${BARE.address}:${BARE.port}/`, undefined],
    ];
    const results: Figures[] = [];
    for (const [name, url, host] of cases) {
      if (warmup > 0) await run(name, url, host, warmup, connections);
      const f = await run(name, url, host, seconds, connections);
      results.push(f);
      console.error(`${name}: ${f.rps.toFixed(0)} req/s, p99 ${f.p99} ms`);
    }
    const base = results[0] as Figures;
    console.log(`\nsvcplane proxy load (${connections} connections, ${seconds} s per case, 1 KiB responses; ${cpus().length} CPUs: ${cpus()[0]?.model ?? '?'}; Node ${process.version})\n`);
    console.log('| path | req/s | MB/s | p50 ms | p99 ms | vs direct (req/s) | errors |');
    console.log('|---|---|---|---|---|---|---|');
    for (const f of results) {
      console.log(`| ${f.name} | ${f.rps.toFixed(0)} | ${f.mbps.toFixed(1)} | ${f.p50} | ${f.p99} | ${(f.rps / base.rps).toFixed(2)}x | ${f.errors + f.non2xx} |`);
    }
    const bad = results.filter((f) => f.errors + f.non2xx > 0);
    if (bad.length > 0) throw new Error(`requests failed in: ${bad.map((f) => f.name).join(', ')}`);
  } finally {
    for (const c of children) c.kill('SIGTERM');
  }
}

main().catch((e: unknown) => {
  console.error(`load: ${(e as Error).stack ?? String(e)}`);
  process.exitCode = 1;
});
