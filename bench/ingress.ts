// Ingress route(): ns per request of the wasm core against a straightforward JS implementation (a
// sorted-prefix list per host) and against the TypeScript matcher over the same compiled tables, on 1000
// hosts x 20 paths, in one process. Build and run:
//   npm run bench:ingress   (npx tsc -p tsconfig.bench.json && node build/bench/ingress.js)
//
// Cases (one benny op = one pass over REQUEST_COUNT requests; ns/request = op time / REQUEST_COUNT):
//   'wasm route()'                 IngressRouter.route: the Host header's record from the router's Map of
//                                  known headers (else sp_route_host), the path bytes copied into core
//                                  memory, one sp_route_path call, the target index picks the precomputed
//                                  result.
//   'wasm sp_route only ...'       the core's whole routing (sp_route, request and result structs) on
//                                  requests written into core memory beforehand (no string copies, no
//                                  result objects): what the core itself costs.
//   'wasm sp_route_path only ...'  the core call route() makes per request once it knows the Host header
//                                  (sp_route_path, records found beforehand), on the same requests.
//   'TS matcher, same tables'      TableMatcher.route: the core's algorithm in TypeScript over the same bytes.
//   'JS sorted-prefix list'        the baseline below, built from the same plan.
// Every case is checked against the others on every request before anything is timed, and after.
// Target of the issue (a benchmark, not a timed test): wasm route() >= 3x the JS baseline.

import b from 'benny';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import type { Service } from '../src/k8s/types.js';
import type { Ingress, HTTPIngressPath, PathType } from '../src/ingress/types.js';
import { planIngress, type HostRoutes, type IngressPlan, type RouteTarget } from '../src/ingress/semantics.js';
import { serviceResolver } from '../src/ingress/resolve.js';
import { compileRoutes } from '../src/ingress/compile.js';
import { IngressRouter, NOT_FOUND, type RouteExports, type RouteRequest, type RouteResult } from '../src/ingress/route.js';
import { TableMatcher } from '../src/ingress/table-match.js';

const HOSTS = 1000;
const PATHS_PER_HOST = 20;
const WILDCARDS = 50;
const REQUEST_COUNT = 4096;
const WARMUP_PASSES = 300;
const CASE_OPTIONS = { minSamples: 30, maxTime: 1.5, minTime: 0.05, delay: 0.005 };
/** Suites run one after another, the case order rotated each time, so load drift on a shared machine hits
 * every case alike; figures aggregate all rounds (median of the round medians, overall min and max). */
const ROUNDS = 4;
const TARGET_SPEEDUP = 3;

const WASM = 'wasm route()';
const CORE = 'wasm sp_route only (requests already in core memory)';
const PATH = 'wasm sp_route_path only (records known, requests in core memory)';
const TABLE = 'TS matcher, same tables';
const JS = 'JS sorted-prefix list';

// ---- deterministic synthetic cluster ----

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = ['api', 'v1', 'v2', 'users', 'orders', 'static', 'img', 'css', 'js', 'admin', 'login', 'cart', 'search', 'docs', 'health', 'metrics', 'items', 'auth', 'assets', 'blog'];

interface Synthetic {
  ingresses: Ingress[];
  services: Map<string, Service>;
  hostNames: string[];
  rulePaths: string[][];
}

function synthetic(): Synthetic {
  const rand = rng(42);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  const services = new Map<string, Service>();
  for (let i = 0; i < 200; i++) {
    const name = `svc-${i}`;
    services.set(`bench/${name}`, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, namespace: 'bench' },
      spec: { clusterIP: `10.96.${i >> 8}.${i & 255}`, ports: [{ name: 'http', port: 80, protocol: 'TCP' }] },
    });
  }
  const ingresses: Ingress[] = [];
  const hostNames: string[] = [];
  const rulePaths: string[][] = [];
  for (let h = 0; h < HOSTS; h++) {
    const host = h < WILDCARDS ? `*.tenant-${h}.example.com` : `app-${h}.${pick(['shop', 'corp', 'dev'])}.example.com`;
    const seen = new Set<string>();
    const paths: HTTPIngressPath[] = [];
    while (paths.length < PATHS_PER_HOST) {
      const depth = paths.length === 0 ? 0 : 1 + Math.floor(rand() * 3);
      const p = `/${Array.from({ length: depth }, () => pick(WORDS)).join('/')}`;
      const type: PathType = paths.length === 0 ? 'Prefix' : rand() < 0.3 ? 'Exact' : 'Prefix';
      if (seen.has(`${type} ${p}`)) continue;
      seen.add(`${type} ${p}`);
      paths.push({ path: p, pathType: type, backend: { service: { name: `svc-${Math.floor(rand() * 200)}`, port: { number: 80 } } } });
    }
    ingresses.push({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'Ingress',
      metadata: { name: `ing-${h}`, namespace: 'bench', creationTimestamp: '2024-01-01T00:00:00Z' },
      spec: { rules: [{ host, http: { paths } }] },
    });
    hostNames.push(host);
    rulePaths.push(paths.map((p) => p.path ?? '/'));
  }
  ingresses.push({
    apiVersion: 'networking.k8s.io/v1',
    kind: 'Ingress',
    metadata: { name: 'default', namespace: 'bench', creationTimestamp: '2023-01-01T00:00:00Z' },
    spec: { defaultBackend: { service: { name: 'svc-0', port: { number: 80 } } } },
  });
  return { ingresses, services, hostNames, rulePaths };
}

/** Requests as a proxy sees them: mostly known hosts (some upper case, some with :port), paths under the rules. */
function requests(s: Synthetic): RouteRequest[] {
  const rand = rng(7);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  const out: RouteRequest[] = [];
  for (let i = 0; i < REQUEST_COUNT; i++) {
    const h = Math.floor(rand() * HOSTS);
    let host = (s.hostNames[h] as string).replace('*', `user${i % 97}`);
    const r = rand();
    if (r < 0.05) host = `unknown-${i}.example.org`;
    else if (r < 0.15) host = `${host}:443`;
    else if (r < 0.2) host = host.toUpperCase();
    let path = pick(s.rulePaths[h] as string[]);
    const extra = rand();
    if (extra < 0.4) path = `${path === '/' ? '' : path}/${pick(WORDS)}/${Math.floor(rand() * 100000)}`;
    else if (extra < 0.5) path = `${path}x`;
    else if (extra < 0.55) path = `${path}?q=${i}`;
    out.push({ host, path });
  }
  return out;
}

// ---- the straightforward JS implementation ----

interface JsEntry {
  key: string;
  exact: boolean;
  result: RouteResult;
}

interface JsHost {
  /** Longest key first; Exact before Prefix on equal length: the first match wins. */
  entries: JsEntry[];
  fallback: RouteResult;
}

/** What a Node developer would write: Maps of hosts, per host a list of paths sorted longest first, scanned. */
class JsIngressRouter {
  private readonly hosts = new Map<string, JsHost>();
  private readonly wildcards = new Map<string, JsHost>();
  private readonly catchAll: JsHost | undefined;
  private readonly fallback: RouteResult;

  constructor(plan: IngressPlan) {
    const results = new Map<RouteTarget, RouteResult>();
    const result = (t: RouteTarget | undefined): RouteResult => {
      if (!t) return NOT_FOUND;
      let r = results.get(t);
      if (!r) {
        r = { status: t.status, ingress: t.ingress, service: t.service };
        if (t.servicePort ?? (typeof t.port === 'number' ? t.port : undefined)) r.port = t.servicePort ?? (t.port as number);
        if (t.reason !== undefined) r.reason = t.reason;
        if (t.frontend) r.frontend = Object.freeze({ ...t.frontend });
        results.set(t, Object.freeze(r));
      }
      return r;
    };
    const build = (h: HostRoutes): JsHost => ({
      entries: [...h.exact.map((p) => ({ key: p.key, exact: true, result: result(p.target) })), ...h.prefix.map((p) => ({ key: p.key, exact: false, result: result(p.target) }))]
        .sort((a, b) => b.key.length - a.key.length || Number(b.exact) - Number(a.exact)),
      fallback: result(h.defaultBackend),
    });
    for (const h of plan.hosts) this.hosts.set(h.key, build(h));
    for (const h of plan.wildcards) this.wildcards.set(h.key, build(h));
    this.catchAll = plan.catchAll && build(plan.catchAll);
    this.fallback = result(plan.defaultBackend);
  }

  route(req: RouteRequest): RouteResult {
    let host = (req.host ?? '').toLowerCase();
    const colon = host.indexOf(':');
    if (colon >= 0 && !host.startsWith('[')) host = host.slice(0, colon);
    if (host.endsWith('.')) host = host.slice(0, -1);
    let entry = this.hosts.get(host);
    if (!entry) {
      const dot = host.indexOf('.');
      if (dot > 0) entry = this.wildcards.get(host.slice(dot + 1));
    }
    entry ??= this.catchAll;
    if (!entry) return this.fallback;
    let path = req.path;
    const q = path.indexOf('?');
    if (q >= 0) path = path.slice(0, q);
    if (path === '') path = '/';
    for (const e of entry.entries) {
      if (e.exact) {
        if (path === e.key) return e.result;
      } else if (e.key === '' || (path.startsWith(e.key) && (path.length === e.key.length || path.charCodeAt(e.key.length) === 47))) {
        return e.result;
      }
    }
    return entry.fallback;
  }
}

// ---- the wasm core, instantiated directly (as the Core class does) ----

interface Exports extends RouteExports {
  sp_route_host(ctx: number, hostOff: number, hostLen: number): number;
  sp_route_path(ctx: number, record: number, pathOff: number, pathLen: number): number;
  memory: { readonly buffer: ArrayBuffer; grow(pages: number): number };
  sp_heap_base(): number;
}

interface CoreOnly {
  /** sp_route over every request. */
  run: () => void;
  /** sp_route_path over every request, with the records sp_route_host found for them beforehand. */
  runPath: () => void;
  targets: () => number[];
  pathTargets: () => number[];
}

interface WasmBench {
  router: IngressRouter;
  /** Writes every request into core memory once; returns a function routing them all with sp_route alone. */
  coreOnly(reqs: readonly RouteRequest[]): CoreOnly;
}

function wasmRouter(section: Uint8Array): WasmBench {
  const bytes = readFileSync(new URL('../../wasm/svcplane.wasm', import.meta.url));
  const x = new WebAssembly.Instance(new WebAssembly.Module(bytes), {}).exports as unknown as Exports;
  const scratch = (x.sp_heap_base() + 7) & ~7;
  const scratchSize = 1 << 16;
  const at = scratch + scratchSize;
  const need = at + section.byteLength;
  if (need > x.memory.buffer.byteLength) x.memory.grow(Math.ceil((need - x.memory.buffer.byteLength) / 65536));
  let view = new Uint8Array(x.memory.buffer);
  const memory = (): Uint8Array => {
    if (view.buffer !== x.memory.buffer) view = new Uint8Array(x.memory.buffer);
    return view;
  };
  const router = new IngressRouter({ exports: x, memory, scratchOffset: scratch, scratchSize });
  router.attach(section, at);
  const coreOnly = (reqs: readonly RouteRequest[]): CoreOnly => {
    // [request headers: 16 B each][results: 16 B each][host and path bytes], after the section.
    const enc = new TextEncoder();
    const texts = reqs.map((r) => {
      const q = r.path.indexOf('?');
      return [enc.encode(r.host ?? ''), enc.encode(q >= 0 ? r.path.slice(0, q) : r.path)] as const;
    });
    const base = (at + section.byteLength + 7) & ~7;
    const results = base + reqs.length * 16;
    let text = results + reqs.length * 16;
    const end = text + texts.reduce((n, [h, p]) => n + h.length + p.length, 0);
    if (end > x.memory.buffer.byteLength) x.memory.grow(Math.ceil((end - x.memory.buffer.byteLength) / 65536));
    const m = memory();
    const dv = new DataView(m.buffer);
    texts.forEach(([h, p], i) => {
      m.set(h, text);
      m.set(p, text + h.length);
      dv.setUint32(base + i * 16, text, true);
      dv.setUint32(base + i * 16 + 4, h.length, true);
      dv.setUint32(base + i * 16 + 8, text + h.length, true);
      dv.setUint32(base + i * 16 + 12, p.length, true);
      text += h.length + p.length;
    });
    const ctx = router.contextOffset;
    const n = reqs.length;
    // [record, path offset, path length] per request for sp_route_path.
    const words = new Uint32Array(new ArrayBuffer(n * 12));
    for (let i = 0; i < n; i++) {
      words[i * 3] = x.sp_route_host(ctx, dv.getUint32(base + i * 16, true), dv.getUint32(base + i * 16 + 4, true));
      words[i * 3 + 1] = dv.getUint32(base + i * 16 + 8, true);
      words[i * 3 + 2] = dv.getUint32(base + i * 16 + 12, true);
    }
    const pathOut = new Uint32Array(n);
    return {
      run: () => {
        for (let i = 0; i < n; i++) x.sp_route(ctx, base + i * 16, results + i * 16);
      },
      runPath: () => {
        for (let i = 0; i < n; i++) pathOut[i] = x.sp_route_path(ctx, words[i * 3] as number, words[i * 3 + 1] as number, words[i * 3 + 2] as number);
      },
      pathTargets: () => Array.from(pathOut),
      targets: () => Array.from({ length: n }, (_, i) => new DataView(memory().buffer).getUint32(results + i * 16 + 4, true)),
    };
  };
  return { router, coreOnly };
}

class BenchCheckError extends Error {}

function check(cond: boolean, message: string): void {
  if (!cond) throw new BenchCheckError(`sanity check failed: ${message}`);
}

interface Figures {
  name: string;
  nsPerRequest: { min: number; median: number; mean: number; max: number };
  samples: number;
  relativeMarginOfError: number;
  /** Baseline median / this case's median (> 1: faster than the JS implementation). */
  speedupVsJs: number;
  /** The same on the fastest samples (the least disturbed by other load). */
  speedupVsJsMin: number;
}

async function main(): Promise<void> {
  let t0 = performance.now();
  const s = synthetic();
  const planned = planIngress({ ingresses: s.ingresses }, { resolveServicePort: serviceResolver(s.services) });
  check(planned.conflicts.length === 0 && planned.notes.length === 0, `plan: ${planned.notes.length} notes, first ${JSON.stringify(planned.notes[0])}`);
  const compiled = compileRoutes(planned.plan, { seed: 1 });
  const compileMs = performance.now() - t0;
  t0 = performance.now();
  const js = new JsIngressRouter(planned.plan);
  const jsBuildMs = performance.now() - t0;
  const wasmBench = wasmRouter(compiled.bytes);
  const wasm = wasmBench.router;
  const table = new TableMatcher(compiled.bytes);
  const reqs = requests(s);
  const core = wasmBench.coreOnly(reqs);

  const wasmOut: RouteResult[] = new Array<RouteResult>(REQUEST_COUNT).fill(NOT_FOUND);
  const tableOut: RouteResult[] = new Array<RouteResult>(REQUEST_COUNT).fill(NOT_FOUND);
  const jsOut: RouteResult[] = new Array<RouteResult>(REQUEST_COUNT).fill(NOT_FOUND);
  const runWasm = (): void => {
    for (let i = 0; i < REQUEST_COUNT; i++) wasmOut[i] = wasm.route(reqs[i] as RouteRequest);
  };
  const runTable = (): void => {
    for (let i = 0; i < REQUEST_COUNT; i++) tableOut[i] = table.route(reqs[i] as RouteRequest);
  };
  const runJs = (): void => {
    for (let i = 0; i < REQUEST_COUNT; i++) jsOut[i] = js.route(reqs[i] as RouteRequest);
  };
  const verify = (): Record<number, number> => {
    const statuses: Record<number, number> = {};
    for (let i = 0; i < REQUEST_COUNT; i++) {
      const [w, t, j] = [wasmOut[i] as RouteResult, tableOut[i] as RouteResult, jsOut[i] as RouteResult];
      const same = (a: RouteResult, c: RouteResult): boolean => a.status === c.status && a.ingress === c.ingress && a.service === c.service && a.port === c.port;
      check(same(w, t) && same(w, j), `request ${i} ${JSON.stringify(reqs[i])}: wasm ${JSON.stringify(w)}, table ${JSON.stringify(t)}, js ${JSON.stringify(j)}`);
      statuses[w.status] = (statuses[w.status] ?? 0) + 1;
    }
    return statuses;
  };
  runWasm();
  runTable();
  runJs();
  const statuses = verify();
  core.run();
  const coreTargets = core.targets();
  core.runPath();
  const pathTargets = core.pathTargets();
  reqs.forEach((r, i) => {
    const t = wasm.trace(r).target ?? 0xffffffff;
    check(coreTargets[i] === t, `core-only target of request ${i}: ${coreTargets[i]} vs ${t}`);
    check(pathTargets[i] === t, `sp_route_path target of request ${i}: ${pathTargets[i]} vs ${t}`);
  });
  const defaults = reqs.filter((r) => wasm.trace(r).path.match === 'default').length;

  for (let i = 0; i < WARMUP_PASSES; i++) {
    core.run();
    core.runPath();
    runWasm();
    runTable();
    runJs();
  }

  const cases: [string, () => void][] = [[WASM, runWasm], [CORE, core.run], [PATH, core.runPath], [TABLE, runTable], [JS, runJs]];
  const rounds = new Map<string, { min: number; median: number; max: number; mean: number; samples: number; rme: number }[]>();
  for (let round = 0; round < ROUNDS; round++) {
    const order = cases.map((_, i) => cases[(i + round) % cases.length] as [string, () => void]);
    const summary = await b.suite(
      `route() on ${HOSTS} hosts (${WILDCARDS} wildcards) x ${PATHS_PER_HOST} paths, ${REQUEST_COUNT} requests per op, round ${round + 1}/${ROUNDS}`,
      ...order.map(([name, fn]) => b.add(name, fn, CASE_OPTIONS)),
      b.cycle((r) => `  ${r.name}: ${((r.details.median * 1e9) / REQUEST_COUNT).toFixed(1)} ns/request median (${r.samples} samples, ±${r.margin}%)`),
    );
    for (const r of summary.results) {
      const list = rounds.get(r.name) ?? [];
      list.push({ min: r.details.min, median: r.details.median, max: r.details.max, mean: r.details.mean, samples: r.samples, rme: r.details.relativeMarginOfError });
      rounds.set(r.name, list);
    }
    verify();
  }

  const ns = (sec: number): number => (sec * 1e9) / REQUEST_COUNT;
  const medianOf = (xs: number[]): number => {
    const sorted = [...xs].sort((a, c) => a - c);
    const mid = sorted.length >> 1;
    return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
  };
  const agg = (name: string): { min: number; median: number; mean: number; max: number; samples: number; rme: number } => {
    const list = rounds.get(name) ?? [];
    return {
      min: Math.min(...list.map((r) => r.min)),
      median: medianOf(list.map((r) => r.median)),
      mean: list.reduce((n, r) => n + r.mean, 0) / list.length,
      max: Math.max(...list.map((r) => r.max)),
      samples: list.reduce((n, r) => n + r.samples, 0),
      rme: Math.max(...list.map((r) => r.rme)),
    };
  };
  const jsAgg = agg(JS);
  const figures: Figures[] = cases.map(([name]) => {
    const a = agg(name);
    return {
      name,
      nsPerRequest: { min: ns(a.min), median: ns(a.median), mean: ns(a.mean), max: ns(a.max) },
      samples: a.samples,
      relativeMarginOfError: a.rme,
      speedupVsJs: jsAgg.median / a.median,
      speedupVsJsMin: jsAgg.min / a.min,
    };
  });

  console.log(`\n${HOSTS} hosts x ${PATHS_PER_HOST} paths: section ${(compiled.bytes.byteLength / 1024).toFixed(0)} KiB, ${compiled.targets.length} targets; ` +
    `compile ${compileMs.toFixed(0)} ms, JS build ${jsBuildMs.toFixed(0)} ms`);
  console.log(`requests: ${REQUEST_COUNT} (status ${JSON.stringify(statuses)}, ${defaults} to a default backend)`);
  console.log(`ns/request over ${ROUNDS} rounds (median of round medians, min, max); vs JS on medians and on mins:`);
  console.log('     median      min      max    vs JS (median, min)  case');
  const f = (v: number): string => v.toFixed(1).padStart(9);
  for (const c of figures) {
    console.log(`  ${f(c.nsPerRequest.median)}${f(c.nsPerRequest.min)}${f(c.nsPerRequest.max)}   ${c.speedupVsJs.toFixed(2).padStart(5)}x ${c.speedupVsJsMin.toFixed(2).padStart(5)}x     ${c.name}`);
  }
  const w = figures.find((c) => c.name === WASM) as Figures;
  const t = figures.find((c) => c.name === TABLE) as Figures;
  console.log(`\ntarget: ${WASM} >= ${TARGET_SPEEDUP}x ${JS}: ${w.speedupVsJs.toFixed(2)}x (mins: ${w.speedupVsJsMin.toFixed(2)}x) -> ${w.speedupVsJs >= TARGET_SPEEDUP ? 'MET' : 'NOT MET'}`);
  console.log(`faster matcher over the compiled tables: ${w.nsPerRequest.median <= t.nsPerRequest.median ? 'wasm core' : 'TypeScript'} ` +
    `(${w.nsPerRequest.median.toFixed(1)} vs ${t.nsPerRequest.median.toFixed(1)} ns/request median)`);
  const cpu = cpus();
  console.log(JSON.stringify({
    benchmark: 'ingress-route',
    date: new Date().toISOString(),
    machine: { cpu: cpu[0]?.model ?? 'unknown', cores: cpu.length, node: process.version, v8: process.versions.v8 },
    setup: { hosts: HOSTS, wildcards: WILDCARDS, pathsPerHost: PATHS_PER_HOST, requestsPerOp: REQUEST_COUNT, warmupPasses: WARMUP_PASSES, rounds: ROUNDS, benny: CASE_OPTIONS, sectionBytes: compiled.bytes.byteLength },
    cases: figures,
  }));
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
