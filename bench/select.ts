// Batch select: ns per flow of the wasm core against an idiomatic pure-JS baseline, at 1k and 10k
// services x 10 endpoints, in one process (npm run bench). Writes bench/results/select.json.
//
// Cases, side by side per cluster size (one benny op = one batch of FLOW_COUNT flows):
//   'wasm selectBatch (copy in/out)'                 Dataplane.selectBatch: flows copied into core memory,
//                                                    one core call, results copied out into `out`.
//   'wasm core only (flows already in core memory)'  Dataplane.flowBatch: the same core call on flows
//                                                    written into the core's batch buffer once; results
//                                                    stay in core memory.
//   'pure JS Map baseline'                           bench/baseline-js.ts on the same flows as objects.
// The goal this checks: wasm selectBatch <= 25 ns/flow at 10k services and >= 4x faster than the baseline.

import b from 'benny';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { Dataplane } from '../src/engine/dataplane.js';
import { RESULT } from '../src/compile/layout.js';
import { ENDPOINTS_PER_SERVICE, NODE_NAME, type FlowSet, type SyntheticCluster, syntheticCluster, syntheticFlows } from './cluster.js';
import { JsServiceMap, type JsBackend } from './baseline-js.js';

const SIZES = [1000, 10000] as const;
/** Flows per batch; must not exceed the core's batch capacity (4096 by default) or the core-only case throws. */
const FLOW_COUNT = 4096;
const NOW = 1_000_000; // seconds; no service uses affinity, so the value does not matter
/** Calls of each case before benny starts: well past V8's Liftoff -> TurboFan tier-up and JS optimisation. */
const WARMUP_CALLS = 5000;
const CASE_OPTIONS = { minSamples: 50, maxTime: 5, minTime: 0.05, delay: 0.005 };
const TARGET_NS_PER_FLOW = 25;
const TARGET_SPEEDUP = 4;

const WASM_COPY = 'wasm selectBatch (copy in/out)';
const WASM_CORE = 'wasm core only (flows already in core memory)';
const JS_BASELINE = 'pure JS Map baseline';

class BenchCheckError extends Error {}

function check(cond: boolean, message: string): void {
  if (!cond) throw new BenchCheckError(`sanity check failed: ${message}`);
}

/** Every forwarded flow must reach one of its own service's endpoints; every other flow must pass. */
function verifyWasm(dp: Dataplane, cluster: SyntheticCluster, set: FlowSet, results: Uint8Array): { forward: number; pass: number } {
  const byFrontend = new Map(cluster.services.map((s) => [`${s.clusterIP}:${s.port}/${s.protocol}`, s]));
  let forward = 0;
  let pass = 0;
  set.flows.forEach((f, i) => {
    const sel = dp.describe(results, i);
    const svc = byFrontend.get(`${f.dst}:${f.dport}/${f.protocol}`);
    if (svc) {
      check(sel.verdict === 'forward', `flow ${i} to ${svc.name} got ${sel.verdict} (${sel.reason})`);
      check(sel.service === `bench/${svc.name}`, `flow ${i} hit ${String(sel.service)}, expected bench/${svc.name}`);
      check(sel.backend !== undefined && svc.endpoints.includes(sel.backend.address) && sel.backend.port === svc.targetPort,
        `flow ${i} to ${svc.name} got backend ${JSON.stringify(sel.backend)}`);
      forward++;
    } else {
      check(sel.verdict === 'pass', `flow ${i} to non-service ${f.dst}:${f.dport} got ${sel.verdict}`);
      pass++;
    }
  });
  check(forward === set.toServices, `${forward} forwarded, ${set.toServices} flows aimed at services`);
  check(forward / FLOW_COUNT > 0.85 && forward / FLOW_COUNT < 0.95, `forward share ${forward / FLOW_COUNT} is not ~90%`);
  return { forward, pass };
}

function verifyJs(cluster: SyntheticCluster, set: FlowSet, out: readonly (JsBackend | null)[], forwarded: number): void {
  const byFrontend = new Map(cluster.services.map((s) => [`${s.clusterIP}:${s.port}/${s.protocol}`, s]));
  check(forwarded === set.toServices, `JS baseline forwarded ${forwarded}, ${set.toServices} flows aimed at services`);
  set.flows.forEach((f, i) => {
    const svc = byFrontend.get(`${f.dst}:${f.dport}/${f.protocol}`);
    const be = out[i];
    if (svc) check(be !== null && be !== undefined && svc.endpoints.includes(be.address), `JS flow ${i} to ${svc.name} got ${JSON.stringify(be)}`);
    else check(be === null, `JS flow ${i} to non-service ${f.dst} got a backend`);
  });
}

const equalBytes = (a: Uint8Array, b2: Uint8Array): boolean => a.byteLength === b2.byteLength && a.every((v, i) => v === b2[i]);

interface CaseFigures {
  name: string;
  nsPerFlow: { min: number; median: number; mean: number; max: number };
  opsPerSecond: number;
  samples: number;
  relativeMarginOfError: number;
  /** Baseline median / this case's median (> 1: faster than the pure-JS baseline). */
  speedupVsJs: number;
  /** Baseline min / this case's min: the least noise-sensitive ratio on a shared machine. */
  speedupVsJsMin: number;
}

interface SizeReport {
  engine: string;
  services: number;
  endpointsPerService: number;
  flowsPerBatch: number;
  forwardedFlows: number;
  passedFlows: number;
  imageBytes: number;
  setupMs: { wasmApply: number; jsBuild: number };
  cases: CaseFigures[];
}

async function benchSize(n: number): Promise<SizeReport> {
  const cluster = syntheticCluster(n);
  const set = syntheticFlows(cluster, FLOW_COUNT);

  let t0 = performance.now();
  const dp = new Dataplane({ node: NODE_NAME, tableSeed: 7, engine: 'wasm' });
  check(dp.engine === 'wasm', `the dataplane runs engine "${dp.engine}" (${dp.engineReason}); unset SVCPLANE_ENGINE`);
  const errors = dp.apply(cluster.objects);
  const wasmApply = performance.now() - t0;
  check(errors.length === 0, `apply reported ${errors.length} errors, first: ${JSON.stringify(errors[0])}`);

  t0 = performance.now();
  const js = new JsServiceMap(cluster.objects);
  const jsBuild = performance.now() - t0;
  check(js.services.size === n, `JS map holds ${js.services.size} services`);

  // --- the three cases, each verified before anything is timed ---
  const out = new Uint8Array(FLOW_COUNT * RESULT.size);
  const runCopy = (): void => {
    dp.selectBatch(set.encoded, NOW, out);
  };
  runCopy();
  const { forward, pass } = verifyWasm(dp, cluster, set, out);
  const reference = out.slice();

  const batch = dp.flowBatch(); // the public API for flows encoded straight into core memory
  check(batch.capacity >= FLOW_COUNT, `flow batch capacity ${batch.capacity} < ${FLOW_COUNT}`);
  batch.flows.set(set.encoded);
  const runCore = (): void => {
    batch.select(FLOW_COUNT, NOW);
  };
  const coreResults = (): Uint8Array => batch.results.slice(0, FLOW_COUNT * RESULT.size);
  batch.results.fill(0xee);
  runCore();
  check(equalBytes(coreResults(), reference), 'core-only results differ from selectBatch results');

  const jsOut: (JsBackend | null)[] = new Array<JsBackend | null>(FLOW_COUNT).fill(null);
  let jsForwarded = 0;
  const runJs = (): void => {
    jsForwarded = js.selectBatch(set.flows, jsOut);
  };
  runJs();
  verifyJs(cluster, set, jsOut, jsForwarded);

  // --- warm-up: tier everything up before benny calibrates ---
  for (const run of [runCopy, runCore, runJs]) for (let i = 0; i < WARMUP_CALLS; i++) run();

  const summary = await b.suite(
    `select ${n} services x ${ENDPOINTS_PER_SERVICE} endpoints, ${FLOW_COUNT} flows per batch`,
    b.add(WASM_COPY, runCopy, CASE_OPTIONS),
    b.add(WASM_CORE, runCore, CASE_OPTIONS),
    b.add(JS_BASELINE, runJs, CASE_OPTIONS),
    b.cycle((r) => {
      const ns = (r.details.median * 1e9) / FLOW_COUNT;
      return `  ${r.name}: ${ns.toFixed(2)} ns/flow median (${r.samples} samples, ±${r.margin}%)`;
    }),
  );

  // The timed paths must still produce the verified results.
  check(equalBytes(out, reference), 'selectBatch results changed during timing');
  check(equalBytes(coreResults(), reference), 'core-only results changed during timing');
  verifyJs(cluster, set, jsOut, jsForwarded);

  const nsPerFlow = (s: number): number => (s * 1e9) / FLOW_COUNT;
  const jsResult = summary.results.find((r) => r.name === JS_BASELINE);
  check(jsResult !== undefined, 'no baseline result');
  const jsMedian = jsResult?.details.median ?? NaN;
  const jsMin = jsResult?.details.min ?? NaN;
  const cases: CaseFigures[] = summary.results.map((r) => ({
    name: r.name,
    nsPerFlow: {
      min: nsPerFlow(r.details.min),
      median: nsPerFlow(r.details.median),
      mean: nsPerFlow(r.details.mean),
      max: nsPerFlow(r.details.max),
    },
    opsPerSecond: r.ops,
    samples: r.samples,
    relativeMarginOfError: r.details.relativeMarginOfError,
    speedupVsJs: jsMedian / r.details.median,
    speedupVsJsMin: jsMin / r.details.min,
  }));
  return {
    engine: dp.engine,
    services: n,
    endpointsPerService: ENDPOINTS_PER_SERVICE,
    flowsPerBatch: FLOW_COUNT,
    forwardedFlows: forward,
    passedFlows: pass,
    imageBytes: dp.image?.byteLength ?? 0,
    setupMs: { wasmApply, jsBuild },
    cases,
  };
}

function printTable(report: SizeReport): void {
  console.log(`\n${report.services} services x ${report.endpointsPerService} endpoints, ${report.flowsPerBatch} flows/batch ` +
    `(${report.forwardedFlows} forward, ${report.passedFlows} pass; image ${(report.imageBytes / 1048576).toFixed(1)} MiB)`);
  console.log('  ns/flow:      median      min      max   vs JS (median, min)  case');
  for (const c of report.cases) {
    const f = (v: number): string => v.toFixed(2).padStart(9);
    console.log(`           ${f(c.nsPerFlow.median)}${f(c.nsPerFlow.min)}${f(c.nsPerFlow.max)}  ${c.speedupVsJs.toFixed(2).padStart(6)}x ${c.speedupVsJsMin.toFixed(2).padStart(6)}x     ${c.name}`);
  }
}

async function main(): Promise<void> {
  const loadAtStart = loadavg()[0] ?? NaN;
  const reports: SizeReport[] = [];
  for (const n of SIZES) reports.push(await benchSize(n));
  for (const r of reports) printTable(r);

  const largest = reports[reports.length - 1] as SizeReport;
  const wasm = largest.cases.find((c) => c.name === WASM_COPY) as CaseFigures;
  const target = {
    description: `${WASM_COPY} at ${largest.services} services: <= ${TARGET_NS_PER_FLOW} ns/flow and >= ${TARGET_SPEEDUP}x the pure-JS baseline`,
    nsPerFlow: wasm.nsPerFlow.median,
    speedupVsJs: wasm.speedupVsJs,
    met: wasm.nsPerFlow.median <= TARGET_NS_PER_FLOW && wasm.speedupVsJs >= TARGET_SPEEDUP,
  };
  const cores = cpus().length;
  const loadEnd = loadavg()[0] ?? NaN;
  if (Math.max(loadAtStart, loadEnd) > cores) {
    console.log(`\nnote: load average ${loadAtStart.toFixed(1)} -> ${loadEnd.toFixed(1)} on ${cores} cores: other work shared the CPUs; trust mins and ratios over absolute medians`);
  }
  console.log(`\ntarget: ${target.description}: ${target.nsPerFlow.toFixed(2)} ns/flow, ${target.speedupVsJs.toFixed(2)}x -> ${target.met ? 'MET' : 'NOT MET'}`);

  const cpu = cpus();
  const results = {
    benchmark: 'select',
    date: new Date().toISOString(),
    machine: {
      cpu: cpu[0]?.model ?? 'unknown',
      cores: cpu.length,
      memoryGiB: Number((totalmem() / 2 ** 30).toFixed(1)),
      node: process.version,
      v8: process.versions.v8,
      platform: `${process.platform}-${process.arch}`,
      /** 1-minute load average at start and end: well above the core count means other work shared the CPUs. */
      loadAverage: { start: loadAtStart, end: loadavg()[0] ?? NaN },
    },
    method: {
      warmupCallsPerCase: WARMUP_CALLS,
      benny: CASE_OPTIONS,
      note: 'one op = one batch; ns/flow = seconds per op (benny sample) * 1e9 / flowsPerBatch; speedupVsJs = baseline median / case median; speedupVsJsMin = baseline min / case min',
    },
    sizes: reports,
    target,
  };
  mkdirSync(new URL('../../bench/results/', import.meta.url), { recursive: true });
  const file = new URL('../../bench/results/select.json', import.meta.url);
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`wrote ${file.pathname}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
