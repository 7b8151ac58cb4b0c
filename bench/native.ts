// Batch select: ns per flow of the native engine (Node-API addon, native/) against the WebAssembly engine
// and the pure-JS baseline, on the same cluster and flows, in one process. Writes bench/results/native.json.
//
//   npx vite-node bench/native.ts [services]          (from the sources; default 10000 services)
//   npm run bench:native    (npx tsc -p tsconfig.bench.json && node build/bench/native.js [services])
//
// Cases (one benny op = one batch of FLOW_COUNT flows; 10 endpoints per service):
//   'native selectBatch (copy in/out)'  Dataplane.selectBatch on engine 'native': flows copied into core
//                                       memory, one Node-API call, results copied out
//   'native core only'                  the same core call on flows written into the batch buffer once
//   'wasm selectBatch (copy in/out)'    the same two on engine 'wasm'
//   'wasm core only'
//   'pure JS Map baseline'              bench/baseline-js.ts on the same flows as objects
// Experiments (native core only, each on a fresh core that loads the canonical image, Dataplane.image:
// its layout differs from the served image, which apply() updates in place, so they compare to each other):
//   'native core only, fresh core'      the reference for the experiments: core memory in 4 KiB pages
//   'native core only, huge pages'      core memory madvise(MADV_HUGEPAGE)d (transparent huge pages, the
//                                       native engine's default)
// benny times the cases one after another; on a shared machine a burst of load then lands on one case.
// So the cases are also timed interleaved (ROUNDS rounds, each timing BATCHES_PER_SAMPLE batches of
// every case in turn), and both sets of figures are reported.
// Every case is checked before and after timing: native results are byte-identical to wasm's, and every
// flow aimed at a service is forwarded to one of its endpoints.

import b from 'benny';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { RESULT } from '../src/compile/layout.js';
import { Dataplane } from '../src/engine/dataplane.js';
import { createNativeCore } from '../src/engine/native.js';
import { JsServiceMap, type JsBackend } from './baseline-js.js';
import {
  ENDPOINTS_PER_SERVICE, NODE_NAME, type FlowSet, type SyntheticCluster, nativeEngine, repoRoot, syntheticCluster, syntheticFlows,
} from './cluster.js';

const SERVICES = Number(process.argv[2] ?? 10000);
const FLOW_COUNT = 4096;
const NOW = 1_000_000; // no service uses affinity, so the value does not matter
/** Calls of each case before benny starts: past V8's tier-up, and the tables warm in cache. */
const WARMUP_CALLS = 3000;
const CASE_OPTIONS = { minSamples: 50, maxTime: 5, minTime: 0.05, delay: 0.005 };
const ROUNDS = 60;
const BATCHES_PER_SAMPLE = 20;

const NATIVE_COPY = 'native selectBatch (copy in/out)';
const NATIVE_CORE = 'native core only';
const WASM_COPY = 'wasm selectBatch (copy in/out)';
const WASM_CORE = 'wasm core only';
const JS_BASELINE = 'pure JS Map baseline';
const NATIVE_FRESH = 'native core only, fresh core';
const NATIVE_HUGE = 'native core only, huge pages';

/** The part of Core the core-only cases drive. */
interface BatchCore {
  readonly memory: Uint8Array;
  batchBuffer(): { flows: number; results: number };
  selectBatchInPlace(count: number, now: number): void;
  loadImage(image: Uint8Array): void;
}

/** Exposes the protected core through a subclass (the public API stays untouched). */
class BenchDataplane extends Dataplane {
  get batchCore(): BatchCore {
    return this.core;
  }
}

class BenchCheckError extends Error {}

function check(cond: boolean, message: string): void {
  if (!cond) throw new BenchCheckError(`sanity check failed: ${message}`);
}

const equalBytes = (a: Uint8Array, c: Uint8Array): boolean =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(c.buffer, c.byteOffset, c.byteLength));

/** Every flow aimed at a service is forwarded to one of that service's endpoints; every other one passes. */
function verify(dp: Dataplane, cluster: SyntheticCluster, set: FlowSet, results: Uint8Array): { forward: number; pass: number } {
  const byFrontend = new Map(cluster.services.map((s) => [`${s.clusterIP}:${s.port}/${s.protocol}`, s]));
  let forward = 0;
  let pass = 0;
  set.flows.forEach((f, i) => {
    const sel = dp.describe(results, i);
    const svc = byFrontend.get(`${f.dst}:${f.dport}/${f.protocol}`);
    if (svc) {
      check(sel.verdict === 'forward' && sel.backend !== undefined && svc.endpoints.includes(sel.backend.address),
        `flow ${i} to ${svc.name} got ${sel.verdict} ${JSON.stringify(sel.backend)}`);
      forward++;
    } else {
      check(sel.verdict === 'pass', `flow ${i} to non-service ${f.dst}:${f.dport} got ${sel.verdict}`);
      pass++;
    }
  });
  check(forward === set.toServices, `${forward} forwarded, ${set.toServices} flows aimed at services`);
  return { forward, pass };
}

interface CaseFigures {
  name: string;
  /** benny's figures. */
  nsPerFlow: { min: number; median: number; mean: number; max: number };
  samples: number;
  relativeMarginOfError: number;
  /** The interleaved rounds' figures (ns per flow). */
  interleaved: { min: number; median: number; max: number };
  /** wasm core-only median / this median, and the same for min (min is the least noise-sensitive). */
  vsWasmCore: { median: number; min: number };
  /** pure-JS baseline median / this median. */
  vsJs: number;
}

/** A core-only case: flows written into the batch buffer once, results left in core memory. */
function coreCase(core: BatchCore, set: FlowSet): { run: () => void; results: () => Uint8Array } {
  const buf = core.batchBuffer();
  core.memory.set(set.encoded, buf.flows);
  return {
    run: (): void => core.selectBatchInPlace(FLOW_COUNT, NOW),
    results: (): Uint8Array => core.memory.slice(buf.results, buf.results + FLOW_COUNT * RESULT.size),
  };
}

async function main(): Promise<void> {
  const engine = nativeEngine();
  const cluster = syntheticCluster(SERVICES);
  const set = syntheticFlows(cluster, FLOW_COUNT);

  const setupMs: Record<string, number> = {};
  const make = (kind: 'wasm' | 'native'): BenchDataplane => {
    const t0 = performance.now();
    const dp = new BenchDataplane({ node: NODE_NAME, tableSeed: 7, engine: kind });
    check(dp.engine === kind, `engine ${dp.engine} (${dp.engineReason})`);
    const errors = dp.apply(cluster.objects);
    check(errors.length === 0, `apply reported ${errors.length} errors, first: ${JSON.stringify(errors[0])}`);
    setupMs[`${kind}Apply`] = performance.now() - t0;
    return dp;
  };
  const wdp = make('wasm');
  const ndp = make('native');
  check(equalBytes(wdp.image, ndp.image), 'the engines built different images');
  const t0 = performance.now();
  const js = new JsServiceMap(cluster.objects);
  setupMs.jsBuild = performance.now() - t0;

  // --- cases, each verified before anything is timed ---
  const wOut = new Uint8Array(FLOW_COUNT * RESULT.size);
  const nOut = new Uint8Array(FLOW_COUNT * RESULT.size);
  const runWasmCopy = (): void => void wdp.selectBatch(set.encoded, NOW, wOut);
  const runNativeCopy = (): void => void ndp.selectBatch(set.encoded, NOW, nOut);
  runWasmCopy();
  runNativeCopy();
  const { forward, pass } = verify(wdp, cluster, set, wOut);
  const reference = wOut.slice();
  check(equalBytes(nOut, reference), 'native results differ from wasm results');

  const wCore = coreCase(wdp.batchCore, set);
  const nCore = coreCase(ndp.batchCore, set);
  for (const c of [wCore, nCore]) {
    c.run();
    check(equalBytes(c.results(), reference), 'core-only results differ from selectBatch results');
  }
  const canonical = ndp.image;
  const fresh = createNativeCore({ hugePages: false }, engine);
  fresh.loadImage(canonical);
  const huge = createNativeCore({ hugePages: true }, engine);
  huge.loadImage(canonical);
  const fCore = coreCase(fresh, set);
  const hCore = coreCase(huge, set);
  fCore.run();
  hCore.run();
  const freshReference = fCore.results();
  check(equalBytes(hCore.results(), freshReference), 'huge-page core results differ from the fresh core results');
  // Same decisions as the served image (offsets differ with the layout): verdicts and reasons.
  for (let i = 0; i < FLOW_COUNT; i++) {
    const at = i * RESULT.size;
    check(freshReference[at] === reference[at] && freshReference[at + 1] === reference[at + 1], `fresh core decided flow ${i} differently`);
  }

  const jsOut: (JsBackend | null)[] = new Array<JsBackend | null>(FLOW_COUNT).fill(null);
  const runJs = (): void => void js.selectBatch(set.flows, jsOut);
  runJs();
  check(jsOut.filter((x) => x !== null).length === set.toServices, 'JS baseline forwarded a different number of flows');

  const cases: [string, () => void][] = [
    [NATIVE_COPY, runNativeCopy],
    [NATIVE_CORE, nCore.run],
    [WASM_COPY, runWasmCopy],
    [WASM_CORE, wCore.run],
    [JS_BASELINE, runJs],
    [NATIVE_FRESH, fCore.run],
    [NATIVE_HUGE, hCore.run],
  ];
  for (const [, run] of cases) for (let i = 0; i < WARMUP_CALLS; i++) run();

  const summary = await b.suite(
    `native vs wasm vs JS: select, ${SERVICES} services x ${ENDPOINTS_PER_SERVICE} endpoints, ${FLOW_COUNT} flows per batch`,
    ...cases.map(([name, run]) => b.add(name, run, CASE_OPTIONS)),
    b.cycle((r) => `  ${r.name}: ${((r.details.median * 1e9) / FLOW_COUNT).toFixed(2)} ns/flow median (${r.samples} samples, ±${r.margin}%)`),
  );

  // Interleaved rounds.
  const rounds = new Map<string, number[]>(cases.map(([name]) => [name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, run] of cases) {
      const start = process.hrtime.bigint();
      for (let k = 0; k < BATCHES_PER_SAMPLE; k++) run();
      rounds.get(name)?.push(Number(process.hrtime.bigint() - start) / BATCHES_PER_SAMPLE / FLOW_COUNT);
    }
  }
  const spread = (name: string): { min: number; median: number; max: number } => {
    const xs = [...(rounds.get(name) ?? [])].sort((x, y) => x - y);
    return { min: xs[0] ?? NaN, median: xs[Math.floor(xs.length / 2)] ?? NaN, max: xs[xs.length - 1] ?? NaN };
  };

  // The timed paths must still produce the verified results.
  check(equalBytes(wOut, reference) && equalBytes(nOut, reference), 'selectBatch results changed during timing');
  for (const c of [wCore, nCore]) check(equalBytes(c.results(), reference), 'core-only results changed during timing');
  for (const c of [fCore, hCore]) check(equalBytes(c.results(), freshReference), 'experiment results changed during timing');

  const ns = (s: number): number => (s * 1e9) / FLOW_COUNT;
  const byName = new Map(summary.results.map((r) => [r.name, r]));
  const wasmCore = byName.get(WASM_CORE);
  const jsCase = byName.get(JS_BASELINE);
  check(wasmCore !== undefined && jsCase !== undefined, 'missing reference cases');
  const figures: CaseFigures[] = summary.results.map((r) => ({
    name: r.name,
    nsPerFlow: { min: ns(r.details.min), median: ns(r.details.median), mean: ns(r.details.mean), max: ns(r.details.max) },
    samples: r.samples,
    relativeMarginOfError: r.details.relativeMarginOfError,
    interleaved: spread(r.name),
    vsWasmCore: {
      median: (wasmCore?.details.median ?? NaN) / r.details.median,
      min: (wasmCore?.details.min ?? NaN) / r.details.min,
    },
    vsJs: (jsCase?.details.median ?? NaN) / r.details.median,
  }));

  console.log(`\n${SERVICES} services x ${ENDPOINTS_PER_SERVICE} endpoints, ${FLOW_COUNT} flows/batch ` +
    `(${forward} forward, ${pass} pass; image ${(ndp.image.byteLength / 1048576).toFixed(1)} MiB)`);
  console.log(`native addon: ${engine.path} (${engine.addon.compiler}, ${engine.addon.cflags})`);
  const f = (v: number): string => v.toFixed(2).padStart(8);
  console.log('  ns/flow      benny: median     min     max   interleaved: median     min     max   vs wasm core   vs JS  case');
  for (const c of figures) {
    const iw = spread(WASM_CORE);
    const vsWasm = iw.median / c.interleaved.median;
    const vsJs = spread(JS_BASELINE).median / c.interleaved.median;
    console.log(`                 ${f(c.nsPerFlow.median)}${f(c.nsPerFlow.min)}${f(c.nsPerFlow.max)}            ${f(c.interleaved.median)}${f(c.interleaved.min)}${f(c.interleaved.max)}` +
      `   ${vsWasm.toFixed(2).padStart(10)}x  ${vsJs.toFixed(1).padStart(5)}x  ${c.name}`);
  }
  const ratio = (a: string, c: string): { benny: number; interleaved: number } => ({
    benny: (byName.get(a)?.details.median ?? NaN) / (byName.get(c)?.details.median ?? NaN),
    interleaved: spread(a).median / spread(c).median,
  });
  const copyRatio = ratio(WASM_COPY, NATIVE_COPY);
  const coreRatio = ratio(WASM_CORE, NATIVE_CORE);
  console.log(`\nnative / wasm speedup (medians, benny / interleaved): selectBatch ${copyRatio.benny.toFixed(2)}x / ${copyRatio.interleaved.toFixed(2)}x, ` +
    `core only ${coreRatio.benny.toFixed(2)}x / ${coreRatio.interleaved.toFixed(2)}x`);

  const cpu = cpus();
  const results = {
    benchmark: 'native',
    date: new Date().toISOString(),
    machine: {
      cpu: cpu[0]?.model ?? 'unknown',
      cores: cpu.length,
      memoryGiB: Number((totalmem() / 2 ** 30).toFixed(1)),
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
    },
    addon: { path: engine.path, compiler: engine.addon.compiler, cflags: engine.addon.cflags },
    method: {
      warmupCallsPerCase: WARMUP_CALLS,
      benny: CASE_OPTIONS,
      interleaved: { rounds: ROUNDS, batchesPerSample: BATCHES_PER_SAMPLE },
      note: 'one op = one batch; ns/flow = seconds per op * 1e9 / flowsPerBatch; vsWasmCore = wasm core-only / case (benny)',
    },
    services: SERVICES,
    endpointsPerService: ENDPOINTS_PER_SERVICE,
    flowsPerBatch: FLOW_COUNT,
    forwardedFlows: forward,
    passedFlows: pass,
    imageBytes: ndp.image.byteLength,
    setupMs,
    cases: figures,
    speedup: { selectBatch: copyRatio, coreOnly: coreRatio },
  };
  const dir = join(repoRoot(), 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'native.json'), `${JSON.stringify(results, null, 2)}\n`);
  console.log(`wrote ${join(dir, 'native.json')}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
