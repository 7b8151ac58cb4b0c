// `svcplane bench`: the issue-5 benchmark suites, runnable from an installed package (no dev
// dependencies): full compile at cluster scale, one EndpointSlice change against a full recompile per
// change, image size, and batch selection against a pure-JS baseline. Prints a table, writes bench.json
// and bench.svg (a bar chart on a log scale). `npm run bench` runs the same cases under benny
// (bench/update.ts), which imports the case builders from here.
//
// Timing: each case is warmed up, then timed sample by sample with performance.now(); a sample of a fast
// case (one update, one batch of flows) is a run of several operations, divided. The figures are the min,
// median and max over samples. The machine may be shared: compare ratios, trust minima over medians.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createDataplane, encodeFlows, type Dataplane, type EngineName } from '../engine/dataplane.js';
import type { EndpointSlice, Service } from '../k8s/types.js';
import { RESULT } from '../compile/layout.js';

/** What runBench needs: output streams, and whether stderr is a terminal (progress bar; default: process.stderr.isTTY). */
export interface BenchIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  stderrIsTTY?: boolean;
}

export const BENCH_HELP = `Usage: svcplane bench [--quick] [-o DIR] [--engine auto|wasm|native]

Runs the benchmark suites and prints a table; writes DIR/bench.json and DIR/bench.svg (a bar chart:
time per flow, per update and per full compile against the baselines, log scale).

  compile   full compile (apply of every object to a fresh dataplane) of 1k, 10k and 30k services x 10
            endpoints and of 1 service x 1000 endpoints; the canonical image build (Dataplane.image) apart
  update    one EndpointSlice change (one endpoint's ready flips) at 1k and 10k services, against a full
            recompile per change (apply, then build the whole image)
  size      image bytes for 10k services x 10 endpoints, per service and per endpoint
  select    batch selection (ns per flow) at 1k and 10k services against a pure-JS Map baseline

  --quick              smaller clusters and fewer samples (seconds, for CI)
  -o, --output DIR     where to write bench.json and bench.svg (default: bench-results)
  --engine NAME        core engine for the dataplanes (default: auto; $SVCPLANE_ENGINE overrides)`;

// ---------------------------------------------------------------------------------------------------
// Synthetic clusters (the same objects as bench/cluster.ts builds, so figures compare across suites)

export const ENDPOINTS_PER_SERVICE = 10;
export const NODE_NAME = 'bench-node';
/** Placement seed: fixed so that images are reproducible run to run. */
export const TABLE_SEED = 7;

/** mulberry32: small, fast, deterministic 32-bit PRNG. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

const ipv4 = (n: number): string => `${(n >>> 24) & 0xff}.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${n & 0xff}`;
const SERVICE_CIDR_BASE = 0x0a600000; // 10.96.0.0/12
const SERVICE_CIDR_SIZE = 1 << 20;
const POD_BASE = 0x0a000000; // 10.0.0.0, below the service CIDR
const POD_SPAN = 96 << 16;
const TCP_PORTS = [80, 443, 8080, 8443, 9090] as const;

export interface BenchService {
  name: string;
  clusterIP: string;
  port: number;
  protocol: 'TCP' | 'UDP';
  targetPort: number;
  endpoints: string[];
}

export interface BenchCluster {
  services: BenchService[];
  /** Service and EndpointSlice objects, in apply order (a Service, then its slice). */
  objects: (Service | EndpointSlice)[];
  endpoints: number;
  usedClusterIPs: Set<number>;
}

/**
 * `n` ClusterIP services (one port; every tenth UDP/53) with one IPv4 EndpointSlice of `perService` Ready
 * endpoints each; ClusterIPs drawn without repetition from 10.96.0.0/12, pod addresses from 10.0.0.0/8
 * below it. Fully determined by (n, perService, seed).
 */
export function benchCluster(n: number, perService = ENDPOINTS_PER_SERVICE, seed = 1): BenchCluster {
  const rnd = prng(seed);
  const used = new Set<number>();
  const services: BenchService[] = [];
  const objects: (Service | EndpointSlice)[] = [];
  for (let i = 0; i < n; i++) {
    let ip: number;
    do ip = SERVICE_CIDR_BASE + 1 + (rnd() % (SERVICE_CIDR_SIZE - 2));
    while (used.has(ip));
    used.add(ip);
    const udp = i % 10 === 9;
    const svc: BenchService = {
      name: `svc-${i}`,
      clusterIP: ipv4(ip),
      port: udp ? 53 : (TCP_PORTS[i % TCP_PORTS.length] as number),
      protocol: udp ? 'UDP' : 'TCP',
      targetPort: udp ? 5353 : 8080,
      endpoints: [],
    };
    for (let j = 0; j < perService; j++) svc.endpoints.push(ipv4(POD_BASE + 1 + i * perService + j));
    services.push(svc);
    objects.push({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: svc.name, namespace: 'bench' },
      spec: {
        type: 'ClusterIP',
        clusterIP: svc.clusterIP,
        clusterIPs: [svc.clusterIP],
        ipFamilies: ['IPv4'],
        ipFamilyPolicy: 'SingleStack',
        selector: { app: svc.name },
        ports: [{ name: 'p', protocol: svc.protocol, port: svc.port, targetPort: svc.targetPort }],
      },
    });
    objects.push(benchSlice(svc, -1));
  }
  return { services, objects, endpoints: n * perService, usedClusterIPs: used };
}

/** The EndpointSlice of a bench service; endpoint `notReady` (if any) has ready: false (still serving). */
export function benchSlice(svc: BenchService, notReady: number): EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${svc.name}-abcde`, namespace: 'bench', labels: { 'kubernetes.io/service-name': svc.name } },
    addressType: 'IPv4',
    ports: [{ name: 'p', protocol: svc.protocol, port: svc.targetPort }],
    endpoints: svc.endpoints.map((address, j) => ({
      addresses: [address],
      conditions: { ready: j !== notReady, serving: true, terminating: false },
      nodeName: `node-${j % 3}`,
    })),
  };
}

export interface BenchFlow {
  protocol: 'TCP' | 'UDP';
  src: string;
  sport: number;
  dst: string;
  dport: number;
}

/** `count` flows: 90% to a random service frontend, the rest pod-to-pod or to unused service addresses. */
export function benchFlows(cluster: BenchCluster, count = 4096, seed = 2): { flows: BenchFlow[]; encoded: Uint8Array; toServices: number } {
  const rnd = prng(seed);
  const flows: BenchFlow[] = [];
  let toServices = 0;
  const podAddress = (): string => ipv4(POD_BASE + 1 + (rnd() % (POD_SPAN - 2)));
  const ephemeral = (): number => 32768 + (rnd() % 28232);
  for (let i = 0; i < count; i++) {
    const src = podAddress();
    const sport = ephemeral();
    if (rnd() / 0x100000000 < 0.9) {
      const svc = cluster.services[rnd() % cluster.services.length] as BenchService;
      flows.push({ protocol: svc.protocol, src, sport, dst: svc.clusterIP, dport: svc.port });
      toServices++;
    } else if (rnd() & 1) {
      flows.push({ protocol: 'TCP', src, sport, dst: podAddress(), dport: 8080 });
    } else {
      let ip: number;
      do ip = SERVICE_CIDR_BASE + 1 + (rnd() % (SERVICE_CIDR_SIZE - 2));
      while (cluster.usedClusterIPs.has(ip));
      flows.push({ protocol: 'TCP', src, sport, dst: ipv4(ip), dport: 443 });
    }
  }
  return { flows, encoded: encodeFlows(flows), toServices };
}

/**
 * The pure-JS baseline (as bench/baseline-js.ts): a Map from `${clusterIP}:${port}/${protocol}` to the
 * Ready backends, FNV-1a of the source modulo their count. No Maglev, affinity, policies, NodePorts or IPv6:
 * the cheapest reasonable program for the job.
 */
export class JsBaseline {
  private readonly services = new Map<string, { address: string; port: number }[]>();
  constructor(cluster: BenchCluster) {
    for (const s of cluster.services) {
      this.services.set(`${s.clusterIP}:${s.port}/${s.protocol}`, s.endpoints.map((address) => ({ address, port: s.targetPort })));
    }
  }
  /** Picks a backend per flow into `out` (null: no service); returns the forwarded count. */
  selectBatch(flows: readonly BenchFlow[], out: ({ address: string; port: number } | null)[]): number {
    let forwarded = 0;
    for (let i = 0; i < flows.length; i++) {
      const f = flows[i] as BenchFlow;
      const backends = this.services.get(`${f.dst}:${f.dport}/${f.protocol}`);
      if (backends === undefined || backends.length === 0) {
        out[i] = null;
        continue;
      }
      let h = 0x811c9dc5;
      for (let k = 0; k < f.src.length; k++) h = Math.imul(h ^ f.src.charCodeAt(k), 0x01000193);
      h = Math.imul(h ^ (f.sport & 0xff), 0x01000193);
      h = Math.imul(h ^ (f.sport >>> 8), 0x01000193);
      for (let k = 0; k < f.protocol.length; k++) h = Math.imul(h ^ f.protocol.charCodeAt(k), 0x01000193);
      out[i] = backends[(h >>> 0) % backends.length] as { address: string; port: number };
      forwarded++;
    }
    return forwarded;
  }
}

// ---------------------------------------------------------------------------------------------------
// Cases: each is a setup that returns the timed operation (benny's shape: bench/update.ts runs them too)

export class BenchError extends Error {}

function check(cond: boolean, message: string): void {
  if (!cond) throw new BenchError(`sanity check failed: ${message}`);
}

export interface DataplaneChoice {
  engine?: EngineName;
}

/** A fresh dataplane for the bench node, with the fixed placement seed. */
export async function benchDataplane(choice: DataplaneChoice = {}): Promise<Dataplane> {
  return createDataplane({ node: NODE_NAME, tableSeed: TABLE_SEED, engine: choice.engine ?? 'auto' });
}

/** The cluster applied to a fresh dataplane, checked (no errors, every frontend present). */
export async function appliedDataplane(cluster: BenchCluster, choice: DataplaneChoice = {}): Promise<Dataplane> {
  const dp = await benchDataplane(choice);
  const errors = dp.apply(cluster.objects);
  check(errors.length === 0, `apply reported ${errors.length} errors, first: ${JSON.stringify(errors[0])}`);
  return dp;
}

/** Changes made so far per dataplane, so that successive flippers on one dataplane continue one sequence. */
const flipCounts = new WeakMap<Dataplane, { i: number }>();

/**
 * One EndpointSlice change per call, on `dp` (which holds `cluster`): the slice of one service with one
 * endpoint's ready flipped, rotating over up to 64 services and flipping back on the next visit, so the
 * state stays bounded and every call is a real change. `then` runs after each apply (the baseline's image build).
 */
export function sliceFlipper(dp: Dataplane, cluster: BenchCluster, then?: () => void): () => void {
  const count = Math.min(64, cluster.services.length);
  const step = Math.max(1, Math.floor(cluster.services.length / count));
  const variants = Array.from({ length: count }, (_, k) => {
    const svc = cluster.services[k * step] as BenchService;
    return [benchSlice(svc, k % ENDPOINTS_PER_SERVICE), benchSlice(svc, -1)] as const;
  });
  let counter = flipCounts.get(dp);
  if (!counter) flipCounts.set(dp, (counter = { i: 0 }));
  const c = counter;
  return () => {
    const k = c.i % count;
    const flip = Math.floor(c.i / count) % 2;
    c.i++;
    const errors = dp.apply([(variants[k] as readonly [EndpointSlice, EndpointSlice])[flip] as EndpointSlice]);
    if (errors.length > 0) throw new BenchError(`update rejected: ${JSON.stringify(errors[0])}`);
    then?.();
  };
}

/** Checks that an update really changed the served tables: the flipped endpoint leaves its service's list. */
export function checkFlip(dp: Dataplane, cluster: BenchCluster): void {
  const svc = cluster.services[0] as BenchService;
  const listSize = (): number | undefined =>
    dp.select({ protocol: svc.protocol, src: '10.200.0.1', sport: 40000, dst: svc.clusterIP, dport: svc.port, now: 1 }).list?.size;
  check(listSize() === ENDPOINTS_PER_SERVICE, `service ${svc.name} starts with ${String(listSize())} backends`);
  dp.apply([benchSlice(svc, 0)]);
  check(listSize() === ENDPOINTS_PER_SERVICE - 1, `after a flip ${svc.name} has ${String(listSize())} backends`);
  dp.apply([benchSlice(svc, -1)]);
  check(listSize() === ENDPOINTS_PER_SERVICE, `after flipping back ${svc.name} has ${String(listSize())} backends`);
}

// ---------------------------------------------------------------------------------------------------
// Sampling

export interface Stats {
  min: number;
  median: number;
  max: number;
  samples: number;
}

function stats(values: number[]): Stats {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
  return { min: s[0] as number, median, max: s[s.length - 1] as number, samples: s.length };
}

const nowNs = (): number => performance.now() * 1e6;

/** Times `op` in samples of `batch` calls after `warmup` calls; ns per call. */
function sampleOp(op: () => void, opts: { warmup: number; samples: number; batch: number }, tick: () => void): Stats {
  for (let i = 0; i < opts.warmup; i++) op();
  const out: number[] = [];
  for (let s = 0; s < opts.samples; s++) {
    const t0 = nowNs();
    for (let i = 0; i < opts.batch; i++) op();
    out.push((nowNs() - t0) / opts.batch);
    tick();
  }
  return stats(out);
}

/** Calls of an op that take about `ms` (at least 1), from one timed call. */
function batchFor(op: () => void, ms: number): number {
  const t0 = performance.now();
  op();
  const one = Math.max(performance.now() - t0, 1e-3);
  return Math.max(1, Math.min(10000, Math.round(ms / one)));
}

// ---------------------------------------------------------------------------------------------------
// Suites

interface Plan {
  compile: { services: number; perService: number; samples: number }[];
  update: { services: number; samples: number; baselineSamples: number }[];
  size: number;
  select: { services: number; samples: number }[];
}

const FULL: Plan = {
  compile: [
    { services: 1000, perService: 10, samples: 10 },
    { services: 10000, perService: 10, samples: 5 },
    { services: 30000, perService: 10, samples: 3 },
    { services: 1, perService: 1000, samples: 10 },
  ],
  update: [
    { services: 1000, samples: 30, baselineSamples: 10 },
    { services: 10000, samples: 30, baselineSamples: 5 },
  ],
  size: 10000,
  select: [
    { services: 1000, samples: 30 },
    { services: 10000, samples: 30 },
  ],
};

const QUICK: Plan = {
  compile: [
    { services: 100, perService: 10, samples: 3 },
    { services: 1000, perService: 10, samples: 3 },
    { services: 1, perService: 1000, samples: 3 },
  ],
  update: [
    { services: 100, samples: 8, baselineSamples: 3 },
    { services: 1000, samples: 8, baselineSamples: 3 },
  ],
  size: 1000,
  select: [{ services: 1000, samples: 8 }],
};

export interface CompileResult {
  services: number;
  endpointsPerService: number;
  endpoints: number;
  objects: number;
  /** Full compile: apply of every object to a fresh dataplane (ms). */
  applyMs: Stats;
  /** The canonical image build from the same state (Dataplane.image, ms). */
  imageMs: Stats;
  imageBytes: number;
}

export interface UpdateResult {
  services: number;
  /** One slice change applied in place (ns per update). */
  incrementalNs: Stats;
  /** The same change followed by a full image build (Dataplane.image): a full recompile per change. */
  fullRecompileNs: Stats;
  /** fullRecompile median / incremental median. */
  speedup: number;
}

export interface SizeResult {
  services: number;
  endpoints: number;
  /** Bytes of the served image (Dataplane.imageStats.bytes), of which freeBytes are free for reuse. */
  bytes: number;
  freeBytes: number;
  /** The canonical (fresh, compact) image of the same state. */
  canonicalBytes: number;
  bytesPerService: number;
  bytesPerEndpoint: number;
}

export interface SelectResult {
  services: number;
  flowsPerBatch: number;
  /** Dataplane.selectBatch (flows copied into core memory, results out), ns per flow. */
  wasmNs: Stats;
  /** The pure-JS Map baseline on the same flows as objects, ns per flow. */
  jsNs: Stats;
  speedup: number;
}

export interface ChartBar {
  group: string;
  label: string;
  /** Nanoseconds per operation. */
  ns: number;
  baseline: boolean;
}

export interface Target {
  name: string;
  value: number;
  unit: string;
  limit: string;
  met: boolean;
}

export interface BenchReport {
  benchmark: 'svcplane';
  date: string;
  quick: boolean;
  engine: string;
  machine: { cpu: string; cores: number; memoryGiB: number; node: string; platform: string; loadAverage: { start: number; end: number } };
  method: string;
  compile: CompileResult[];
  update: UpdateResult[];
  size: SizeResult;
  select: SelectResult[];
  targets: Target[];
  chart: { file: string; bars: ChartBar[] };
}

/** Progress on stderr: a bar redrawn in place on a terminal, one line per case otherwise. */
export class Progress {
  private done = 0;
  private label = '';
  constructor(
    private readonly io: BenchIo,
    private readonly total: number,
    private readonly tty: boolean,
  ) {}
  start(label: string): void {
    this.label = label;
    if (this.tty) this.draw();
    else this.io.stderr(`bench: ${label}\n`);
  }
  tick(): void {
    this.done = Math.min(this.total, this.done + 1);
    if (this.tty) this.draw();
  }
  finish(): void {
    if (this.tty) this.io.stderr('\r\x1b[2K');
  }
  private draw(): void {
    const width = 28;
    const filled = Math.round((this.done / this.total) * width);
    const pct = String(Math.round((this.done / this.total) * 100)).padStart(3);
    this.io.stderr(`\r\x1b[2K[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${pct}% ${this.label}`);
  }
}

const fmtCount = (n: number): string => (n >= 1000 && n % 1000 === 0 ? `${n / 1000}k` : String(n));
const plural = (n: number, what: string): string => `${fmtCount(n)} ${what}${n === 1 ? '' : 's'}`;

async function runCompile(c: Plan['compile'][number], choice: DataplaneChoice, p: Progress): Promise<CompileResult> {
  const cluster = benchCluster(c.services, c.perService);
  p.start(`compile ${plural(c.services, 'service')} x ${plural(c.perService, 'endpoint')}`);
  const apply: number[] = [];
  const image: number[] = [];
  let imageBytes = 0;
  for (let s = -1; s < c.samples; s++) {
    const dp = await benchDataplane(choice); // construction is not timed
    let t0 = performance.now();
    const errors = dp.apply(cluster.objects);
    const a = performance.now() - t0;
    check(errors.length === 0, `apply reported ${errors.length} errors, first: ${JSON.stringify(errors[0])}`);
    t0 = performance.now();
    const bytes = dp.image;
    const b = performance.now() - t0;
    imageBytes = dp.imageStats.bytes;
    check(bytes.byteLength > 0, 'empty canonical image');
    if (s >= 0) {
      // s = -1 is the warm-up run
      apply.push(a);
      image.push(b);
    }
    p.tick();
  }
  return {
    services: c.services,
    endpointsPerService: c.perService,
    endpoints: cluster.endpoints,
    objects: cluster.objects.length,
    applyMs: stats(apply),
    imageMs: stats(image),
    imageBytes,
  };
}

async function runUpdate(u: Plan['update'][number], choice: DataplaneChoice, p: Progress): Promise<UpdateResult> {
  const cluster = benchCluster(u.services);
  p.start(`update at ${fmtCount(u.services)} services`);
  const dp = await appliedDataplane(cluster, choice);
  checkFlip(dp, cluster);
  const incremental = sliceFlipper(dp, cluster);
  const batch = Math.max(4, batchFor(incremental, 20));
  const incrementalNs = sampleOp(incremental, { warmup: Math.min(200, batch * 2), samples: u.samples, batch }, () => p.tick());
  p.start(`full recompile per change at ${fmtCount(u.services)} services`);
  let sink = 0;
  const baseline = sliceFlipper(dp, cluster, () => {
    sink += dp.image.byteLength;
  });
  const fullRecompileNs = sampleOp(baseline, { warmup: 1, samples: u.baselineSamples, batch: 1 }, () => p.tick());
  check(sink > 0, 'baseline built no image');
  return { services: u.services, incrementalNs, fullRecompileNs, speedup: fullRecompileNs.median / incrementalNs.median };
}

async function runSize(services: number, choice: DataplaneChoice, p: Progress): Promise<SizeResult> {
  p.start(`image size at ${fmtCount(services)} services`);
  const cluster = benchCluster(services);
  const dp = await appliedDataplane(cluster, choice);
  const { bytes, freeBytes } = dp.imageStats;
  const canonicalBytes = dp.image.byteLength;
  p.tick();
  return {
    services,
    endpoints: cluster.endpoints,
    bytes,
    freeBytes,
    canonicalBytes,
    bytesPerService: bytes / services,
    bytesPerEndpoint: bytes / cluster.endpoints,
  };
}

async function runSelect(sel: Plan['select'][number], choice: DataplaneChoice, p: Progress): Promise<SelectResult> {
  p.start(`select at ${fmtCount(sel.services)} services`);
  const cluster = benchCluster(sel.services);
  const set = benchFlows(cluster);
  const dp = await appliedDataplane(cluster, choice);
  const out = new Uint8Array(set.flows.length * RESULT.size);
  const wasm = (): void => {
    dp.selectBatch(set.encoded, 1_000_000, out);
  };
  wasm();
  let forwarded = 0;
  for (let i = 0; i < set.flows.length; i++) if (out[i * RESULT.size + RESULT.verdict] === 1) forwarded++;
  check(forwarded === set.toServices, `core forwarded ${forwarded} of ${set.toServices} flows aimed at services`);
  const js = new JsBaseline(cluster);
  const jsOut: ({ address: string; port: number } | null)[] = new Array<null>(set.flows.length).fill(null);
  const jsRun = (): void => {
    forwarded = js.selectBatch(set.flows, jsOut);
  };
  jsRun();
  check(forwarded === set.toServices, `JS baseline forwarded ${forwarded} of ${set.toServices}`);
  const per = set.flows.length;
  const wasmNs = sampleOp(wasm, { warmup: 300, samples: sel.samples, batch: batchFor(wasm, 10) }, () => p.tick());
  const jsNs = sampleOp(jsRun, { warmup: 300, samples: sel.samples, batch: batchFor(jsRun, 10) }, () => p.tick());
  const perFlow = (s: Stats): Stats => ({ min: s.min / per, median: s.median / per, max: s.max / per, samples: s.samples });
  const w = perFlow(wasmNs);
  const j = perFlow(jsNs);
  return { services: sel.services, flowsPerBatch: per, wasmNs: w, jsNs: j, speedup: j.median / w.median };
}

// ---------------------------------------------------------------------------------------------------
// Output: table, chart

const ms = (v: number): string => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));

/** A duration in ns, in the unit that reads best ('812 ns', '41.2 us', '1.03 s'). */
export function formatNs(ns: number): string {
  const units: [number, string][] = [[1e9, 's'], [1e6, 'ms'], [1e3, 'us'], [1, 'ns']];
  for (const [scale, unit] of units) {
    if (ns >= scale || scale === 1) {
      const v = ns / scale;
      return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${unit}`;
    }
  }
  return `${ns} ns`;
}

const pad = (s: string, n: number): string => (s.length >= n ? s : s + ' '.repeat(n - s.length));
const lpad = (s: string, n: number): string => (s.length >= n ? s : ' '.repeat(n - s.length) + s);

function table(rows: string[][]): string {
  const widths = (rows[0] as string[]).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? pad(c, widths[i] as number) : lpad(c, widths[i] as number))).join('  ').trimEnd()).join('\n');
}

const statCols = (s: Stats, f: (v: number) => string): string[] => [f(s.median), f(s.min), f(s.max)];

export function formatReport(r: BenchReport): string {
  const out: string[] = [];
  out.push(`svcplane bench${r.quick ? ' --quick' : ''} (engine ${r.engine}; ${r.machine.cores} cores, load ${r.machine.loadAverage.start.toFixed(1)} -> ${r.machine.loadAverage.end.toFixed(1)})`);
  out.push('', 'Full compile (apply of every object to a fresh dataplane; image = canonical image build)');
  out.push(table([
    ['case', 'apply median', 'min', 'max', 'image median', 'min', 'max', 'image bytes'],
    ...r.compile.map((c) => [
      `${fmtCount(c.services)} svc x ${fmtCount(c.endpointsPerService)} ep`,
      ...statCols(c.applyMs, (v) => `${ms(v)} ms`),
      ...statCols(c.imageMs, (v) => `${ms(v)} ms`),
      String(c.imageBytes),
    ]),
  ]));
  out.push('', 'One EndpointSlice change (one endpoint\'s ready flips), per update');
  out.push(table([
    ['services', 'incremental median', 'min', 'max', 'full recompile median', 'min', 'max', 'speedup'],
    ...r.update.map((u) => [
      fmtCount(u.services),
      ...statCols(u.incrementalNs, formatNs),
      ...statCols(u.fullRecompileNs, formatNs),
      `${u.speedup.toFixed(0)}x`,
    ]),
  ]));
  const s = r.size;
  out.push('', `Image size at ${fmtCount(s.services)} services x ${ENDPOINTS_PER_SERVICE} endpoints: ${(s.bytes / 1048576).toFixed(1)} MiB served ` +
    `(${s.freeBytes} bytes free for reuse), ${(s.canonicalBytes / 1048576).toFixed(1)} MiB canonical; ` +
    `${s.bytesPerService.toFixed(0)} bytes per service, ${s.bytesPerEndpoint.toFixed(0)} per endpoint`);
  if (r.select.length > 0) {
    out.push('', 'Batch selection, ns per flow');
    out.push(table([
      ['services', 'core median', 'min', 'max', 'pure JS median', 'min', 'max', 'speedup'],
      ...r.select.map((x) => [fmtCount(x.services), ...statCols(x.wasmNs, (v) => v.toFixed(1)), ...statCols(x.jsNs, (v) => v.toFixed(1)), `${x.speedup.toFixed(1)}x`]),
    ]));
  }
  out.push('', 'Targets (issue 5)');
  for (const t of r.targets) out.push(`  ${t.met ? 'MET    ' : 'NOT MET'}  ${t.name}: ${t.value.toFixed(t.unit === 'x' ? 2 : 1)} ${t.unit} (${t.limit})`);
  return `${out.join('\n')}\n`;
}

/** Axis label of 10^e ns: '10 ns', '1 us', '100 ms'. */
function tickLabel(e: number): string {
  const units = ['ns', 'us', 'ms', 's'];
  const u = Math.min(units.length - 1, Math.floor(e / 3));
  return `${10 ** (e - u * 3)} ${units[u] as string}`;
}

const escapeXml = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/**
 * A horizontal bar chart of time per operation on a log scale, one <rect> per bar, grouped (per flow,
 * per update, per full compile); baselines in grey. Plain SVG 1.1, no scripts or external resources.
 */
export function renderChart(bars: readonly ChartBar[], title: string): string {
  const left = 300;
  const plotWidth = 560;
  const right = 110;
  const rowH = 22;
  const barH = 14;
  const groupGap = 30;
  const top = 64;
  const groups: string[] = [];
  for (const b of bars) if (!groups.includes(b.group)) groups.push(b.group);
  const values = bars.map((b) => Math.max(b.ns, 1));
  const lo = Math.floor(Math.log10(Math.min(...values, 10)));
  const hi = Math.ceil(Math.log10(Math.max(...values, 100)));
  const x = (ns: number): number => left + ((Math.log10(Math.max(ns, 1)) - lo) / (hi - lo)) * plotWidth;
  const height = top + bars.length * rowH + groups.length * groupGap + 40;
  const width = left + plotWidth + right;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  parts.push(`<title>${escapeXml(title)}</title>`);
  parts.push(`<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(title)}</text>`);
  parts.push(`<text x="${width / 2}" y="40" text-anchor="middle" fill="#555">time per operation, log scale (shorter is faster); grey: baselines</text>`);
  const axisBottom = height - 36;
  for (let e = lo; e <= hi; e++) {
    const gx = x(10 ** e).toFixed(1);
    parts.push(`<line x1="${gx}" y1="${top - 8}" x2="${gx}" y2="${axisBottom}" stroke="#ddd"/>`);
    parts.push(`<text x="${gx}" y="${axisBottom + 16}" text-anchor="middle" fill="#555">${escapeXml(tickLabel(e))}</text>`);
  }
  let y = top;
  for (const g of groups) {
    parts.push(`<text x="8" y="${y + 4}" font-weight="bold">${escapeXml(g)}</text>`);
    y += 12;
    for (const b of bars.filter((bar) => bar.group === g)) {
      const w = Math.max(1, x(b.ns) - left);
      const fill = b.baseline ? '#9e9e9e' : '#1f77b4';
      parts.push(`<text x="${left - 8}" y="${y + barH - 3}" text-anchor="end">${escapeXml(b.label)}</text>`);
      parts.push(`<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${fill}"><title>${escapeXml(`${b.label}: ${formatNs(b.ns)}`)}</title></rect>`);
      parts.push(`<text x="${(left + w + 6).toFixed(1)}" y="${y + barH - 3}" fill="#333">${escapeXml(formatNs(b.ns))}</text>`);
      y += rowH;
    }
    y += groupGap - 12;
  }
  parts.push(`<line x1="${left}" y1="${top - 8}" x2="${left}" y2="${axisBottom}" stroke="#333"/>`);
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

function chartBars(r: Pick<BenchReport, 'compile' | 'update' | 'select'>): ChartBar[] {
  const bars: ChartBar[] = [];
  for (const s of r.select) {
    bars.push({ group: 'per flow (batch selection)', label: `core, ${fmtCount(s.services)} services`, ns: s.wasmNs.median, baseline: false });
    bars.push({ group: 'per flow (batch selection)', label: `pure-JS Map, ${fmtCount(s.services)} services`, ns: s.jsNs.median, baseline: true });
  }
  for (const u of r.update) {
    bars.push({ group: 'per update (one slice change)', label: `incremental, ${fmtCount(u.services)} services`, ns: u.incrementalNs.median, baseline: false });
    bars.push({ group: 'per update (one slice change)', label: `full recompile, ${fmtCount(u.services)} services`, ns: u.fullRecompileNs.median, baseline: true });
  }
  for (const c of r.compile) {
    bars.push({ group: 'per full compile', label: `${fmtCount(c.services)} svc x ${fmtCount(c.endpointsPerService)} ep`, ns: c.applyMs.median * 1e6, baseline: false });
  }
  return bars;
}

function targets(r: Pick<BenchReport, 'compile' | 'update' | 'size'>, quick: boolean): Target[] {
  const out: Target[] = [];
  const c10k = r.compile.find((c) => c.services === 10000 && c.endpointsPerService === 10);
  if (c10k) out.push({ name: 'full compile, 10k services x 10 endpoints', value: c10k.applyMs.median, unit: 'ms', limit: '<= 1000 ms', met: c10k.applyMs.median <= 1000 });
  const largest = r.update[r.update.length - 1];
  const smallest = r.update[0];
  if (largest) {
    out.push({ name: `one slice change at ${fmtCount(largest.services)} services`, value: largest.incrementalNs.median / 1000, unit: 'us', limit: '<= 100 us', met: largest.incrementalNs.median <= 100_000 });
  }
  if (largest && smallest && largest !== smallest) {
    const ratio = largest.incrementalNs.median / smallest.incrementalNs.median;
    out.push({ name: `slice change, ${fmtCount(largest.services)} vs ${fmtCount(smallest.services)} services`, value: ratio, unit: 'x', limit: '<= 1.5x', met: ratio <= 1.5 });
  }
  if (!quick || r.size.services === 10000) {
    out.push({ name: `image size at ${fmtCount(r.size.services)} services x 10 endpoints`, value: r.size.bytes / 1e6, unit: 'MB', limit: '<= 32 MB', met: r.size.bytes <= 32_000_000 });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------

/** `svcplane bench`: returns the exit code (0; 2 on usage errors). */
export async function runBench(args: string[], io: BenchIo): Promise<number> {
  let values: { quick?: boolean; output?: string; engine?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args,
      options: {
        quick: { type: 'boolean' },
        output: { type: 'string', short: 'o' },
        engine: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: false,
    }));
  } catch (e) {
    io.stderr(`svcplane bench: ${(e as Error).message}\nRun 'svcplane bench --help' for usage.\n`);
    return 2;
  }
  if (values.help) {
    io.stdout(`${BENCH_HELP}\n`);
    return 0;
  }
  if (values.engine !== undefined && !['auto', 'wasm', 'native'].includes(values.engine)) {
    io.stderr(`svcplane bench: --engine must be auto, wasm or native, got "${values.engine}"\n`);
    return 2;
  }
  const quick = values.quick === true;
  const dir = resolve(values.output ?? 'bench-results');
  const choice: DataplaneChoice = { engine: values.engine as EngineName | undefined };
  const plan = quick ? QUICK : FULL;
  const tty = io.stderrIsTTY ?? process.stderr.isTTY === true;
  const total =
    plan.compile.reduce((n, c) => n + c.samples + 1, 0) +
    plan.update.reduce((n, u) => n + u.samples + u.baselineSamples, 0) +
    1 +
    plan.select.reduce((n, s) => n + 2 * s.samples, 0);
  const progress = new Progress(io, total, tty);
  const loadStart = loadavg()[0] ?? 0;

  const compile: CompileResult[] = [];
  const update: UpdateResult[] = [];
  const select: SelectResult[] = [];
  let size: SizeResult;
  let engine = '';
  try {
    engine = (await benchDataplane(choice)).engine;
    for (const c of plan.compile) compile.push(await runCompile(c, choice, progress));
    for (const u of plan.update) update.push(await runUpdate(u, choice, progress));
    size = await runSize(plan.size, choice, progress);
    for (const s of plan.select) select.push(await runSelect(s, choice, progress));
  } catch (e) {
    progress.finish();
    if (e instanceof BenchError) {
      io.stderr(`svcplane bench: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
  progress.finish();

  const cpu = cpus();
  const partial = { compile, update, size, select };
  const report: BenchReport = {
    benchmark: 'svcplane',
    date: new Date().toISOString(),
    quick,
    engine,
    machine: {
      cpu: cpu[0]?.model ?? 'unknown',
      cores: cpu.length,
      memoryGiB: Number((totalmem() / 2 ** 30).toFixed(1)),
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
      loadAverage: { start: loadStart, end: loadavg()[0] ?? 0 },
    },
    method:
      'one warm-up run per case, then samples timed with performance.now(); compile: one apply of every object to a fresh ' +
      'dataplane per sample (construction not timed), then Dataplane.image on it; update: samples of a run of slice changes ' +
      '(one endpoint ready flip each, rotating over services), ns per update; full recompile: the same change then ' +
      'Dataplane.image; select: samples of runs of batches of flows, ns per flow. Figures: min, median, max over samples.',
    ...partial,
    targets: targets(partial, quick),
    chart: { file: 'bench.svg', bars: chartBars(partial) },
  };
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'bench.json'), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(dir, 'bench.svg'), renderChart(report.chart.bars, `svcplane bench${quick ? ' --quick' : ''}: time per operation`));
  io.stdout(formatReport(report));
  io.stdout(`\nwrote ${join(dir, 'bench.json')} and ${join(dir, 'bench.svg')}\n`);
  return 0;
}

/** Re-renders the chart of a bench.json (bench/chart.ts). */
export function chartFromFile(jsonPath: string): string {
  const r = JSON.parse(readFileSync(jsonPath, 'utf8')) as BenchReport;
  return renderChart(r.chart.bars, `svcplane bench${r.quick ? ' --quick' : ''}: time per operation`);
}
