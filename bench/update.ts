// Cluster-scale compile and update benchmarks (issue 5) under benny: full compile of 1k, 10k and 30k
// services x 10 endpoints and of 1 service x 1000 endpoints (with the canonical image build apart), one
// EndpointSlice change at 1k and 10k services against a full recompile per change, and image size.
// Writes bench/results/update.json and bench/results/update.svg. Run: npm run bench:update
// (QUICK=1 for small sizes). The case builders are shared with `svcplane bench` (src/cli/bench.ts).
//
// Cases (one benny op each):
//   'full compile'            a fresh dataplane, then apply of every Service and EndpointSlice (the
//                             dataplane's construction, a few ms, is inside the op: benny has no per-op setup)
//   'dataplane construction'  the part of 'full compile' that is not compiling (reported to subtract)
//   'canonical image build'   Dataplane.image on a dataplane holding the cluster: a fresh full compile
//                             of the state into a standalone buffer
//   'incremental update'      one slice change (one endpoint's ready flips), applied in place
//   'full recompile per change'  the same change, then Dataplane.image (what a proxy that rebuilds its
//                             whole ruleset per change does)

import b from 'benny';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import {
  type BenchCluster, type ChartBar, ENDPOINTS_PER_SERVICE, NODE_NAME, TABLE_SEED, appliedDataplane, benchCluster, checkFlip,
  formatNs, renderChart, sliceFlipper,
} from '../src/cli/bench.js';
import { Dataplane } from '../src/engine/dataplane.js';

const QUICK = process.env.QUICK === '1';
const COMPILE_SIZES: [number, number][] = QUICK ? [[100, 10], [1000, 10], [1, 1000]] : [[1000, 10], [10000, 10], [30000, 10], [1, 1000]];
const UPDATE_SIZES = QUICK ? [100, 1000] : [1000, 10000];
const SIZE_AT = QUICK ? 1000 : 10000;
const SLOW_CASE = { minSamples: 5, maxTime: 12, initCount: 1, delay: 0.05 };
const FAST_CASE = { minSamples: 50, maxTime: 5, minTime: 0.05, delay: 0.005 };
const ENGINE = 'wasm' as const;

interface Figures {
  name: string;
  /** Nanoseconds per op. */
  ns: { min: number; median: number; mean: number; max: number };
  samples: number;
  relativeMarginOfError: number;
}

interface SuiteReport {
  suite: string;
  cases: Figures[];
}

const label = (n: number): string => (n >= 1000 && n % 1000 === 0 ? `${n / 1000}k` : String(n));

type Summary = Awaited<ReturnType<typeof b.suite>>;

function figures(summary: Summary): Figures[] {
  return summary.results.map((r) => ({
    name: r.name,
    ns: { min: r.details.min * 1e9, median: r.details.median * 1e9, mean: r.details.mean * 1e9, max: r.details.max * 1e9 },
    samples: r.samples,
    relativeMarginOfError: r.details.relativeMarginOfError,
  }));
}

const cycle = b.cycle((r) => `  ${r.name}: ${formatNs(r.details.median * 1e9)} median, min ${formatNs(r.details.min * 1e9)}, max ${formatNs(r.details.max * 1e9)} (${r.samples} samples)`);

async function compileSuite(services: number, perService: number): Promise<SuiteReport> {
  const cluster = benchCluster(services, perService);
  const held = await appliedDataplane(cluster, { engine: ENGINE });
  const fullCompile = (): void => {
    const dp = new Dataplane({ node: NODE_NAME, tableSeed: TABLE_SEED, engine: ENGINE });
    dp.apply(cluster.objects);
  };
  let sink = 0;
  const imageBuild = (): void => {
    sink += held.image.byteLength;
  };
  // Warm-up: every path tiered up before benny calibrates.
  for (let i = 0; i < 2; i++) {
    fullCompile();
    imageBuild();
  }
  const name = `full compile, ${label(services)} services x ${label(perService)} endpoints`;
  const summary = await b.suite(
    name,
    b.add('full compile', fullCompile, SLOW_CASE),
    b.add('canonical image build', imageBuild, SLOW_CASE),
    b.add('dataplane construction (inside full compile)', () => new Dataplane({ node: NODE_NAME, tableSeed: TABLE_SEED, engine: ENGINE }), SLOW_CASE),
    cycle,
  );
  if (sink === 0) throw new Error('no image built');
  return { suite: name, cases: figures(summary) };
}

async function updateSuite(services: number): Promise<SuiteReport> {
  const cluster: BenchCluster = benchCluster(services);
  const dp = await appliedDataplane(cluster, { engine: ENGINE });
  checkFlip(dp, cluster);
  const incremental = sliceFlipper(dp, cluster);
  let sink = 0;
  const recompile = sliceFlipper(dp, cluster, () => {
    sink += dp.image.byteLength;
  });
  for (let i = 0; i < 2000; i++) incremental();
  for (let i = 0; i < 2; i++) recompile();
  const name = `one EndpointSlice change at ${label(services)} services x ${ENDPOINTS_PER_SERVICE} endpoints`;
  const summary = await b.suite(
    name,
    b.add('incremental update', incremental, FAST_CASE),
    b.add('full recompile per change', recompile, SLOW_CASE),
    cycle,
  );
  if (sink === 0) throw new Error('no image built');
  return { suite: name, cases: figures(summary) };
}

async function main(): Promise<void> {
  const loadStart = loadavg()[0] ?? NaN;
  const compile: SuiteReport[] = [];
  for (const [n, per] of COMPILE_SIZES) compile.push(await compileSuite(n, per));
  const update: SuiteReport[] = [];
  for (const n of UPDATE_SIZES) update.push(await updateSuite(n));

  const sized = await appliedDataplane(benchCluster(SIZE_AT), { engine: ENGINE });
  const endpoints = SIZE_AT * ENDPOINTS_PER_SERVICE;
  const size = {
    services: SIZE_AT,
    endpoints,
    bytes: sized.imageStats.bytes,
    freeBytes: sized.imageStats.freeBytes,
    canonicalBytes: sized.image.byteLength,
    bytesPerService: sized.imageStats.bytes / SIZE_AT,
    bytesPerEndpoint: sized.imageStats.bytes / endpoints,
  };

  const median = (s: SuiteReport, c: string): number => s.cases.find((x) => x.name === c)?.ns.median ?? NaN;
  console.log('\nfull compile                               median      min      max   canonical image build median');
  for (const s of compile) {
    const f = s.cases[0] as Figures;
    console.log(`  ${s.suite.replace('full compile, ', '').padEnd(38)} ${formatNs(f.ns.median).padStart(9)} ${formatNs(f.ns.min).padStart(9)} ${formatNs(f.ns.max).padStart(9)}   ${formatNs(median(s, 'canonical image build'))}`);
  }
  console.log('\none slice change                  incremental   full recompile   ratio');
  for (const s of update) {
    const inc = median(s, 'incremental update');
    const full = median(s, 'full recompile per change');
    console.log(`  ${s.suite.replace('one EndpointSlice change at ', '').padEnd(30)} ${formatNs(inc).padStart(11)} ${formatNs(full).padStart(16)} ${(full / inc).toFixed(0).padStart(6)}x`);
  }
  console.log(`\nimage at ${label(SIZE_AT)} services x ${ENDPOINTS_PER_SERVICE}: ${size.bytes} bytes (${(size.bytes / 1048576).toFixed(1)} MiB; ` +
    `canonical ${size.canonicalBytes}), ${size.bytesPerService.toFixed(0)} bytes/service, ${size.bytesPerEndpoint.toFixed(0)} bytes/endpoint`);

  const c10k = compile.find((s) => s.suite.includes(' 10k services x 10 '));
  const u = update.map((s) => median(s, 'incremental update'));
  const targets = [
    ...(c10k ? [{ name: 'full compile 10k x 10 <= 1 s', value: median(c10k, 'full compile') / 1e6, unit: 'ms', met: median(c10k, 'full compile') <= 1e9 }] : []),
    { name: 'one slice change <= 100 us', value: (u[u.length - 1] ?? NaN) / 1e3, unit: 'us', met: (u[u.length - 1] ?? Infinity) <= 100e3 },
    { name: 'slice change within 1.5x between sizes', value: (u[u.length - 1] ?? NaN) / (u[0] ?? NaN), unit: 'x', met: (u[u.length - 1] ?? Infinity) / (u[0] ?? 1) <= 1.5 },
    ...(SIZE_AT === 10000 ? [{ name: 'image 10k x 10 <= 32 MB', value: size.bytes / 1e6, unit: 'MB', met: size.bytes <= 32e6 }] : []),
  ];
  console.log('');
  for (const t of targets) console.log(`target: ${t.name}: ${t.value.toFixed(2)} ${t.unit} -> ${t.met ? 'MET' : 'NOT MET'}`);
  const loadEnd = loadavg()[0] ?? NaN;
  if (Math.max(loadStart, loadEnd) > cpus().length) {
    console.log(`note: load average ${loadStart.toFixed(1)} -> ${loadEnd.toFixed(1)} on ${cpus().length} cores: trust mins and ratios over absolute medians`);
  }

  const bars: ChartBar[] = [];
  for (const s of update) {
    const n = s.suite.replace('one EndpointSlice change at ', '').replace(/ services.*/, '');
    bars.push({ group: 'per update (one slice change)', label: `incremental, ${n} services`, ns: median(s, 'incremental update'), baseline: false });
    bars.push({ group: 'per update (one slice change)', label: `full recompile, ${n} services`, ns: median(s, 'full recompile per change'), baseline: true });
  }
  for (const s of compile) {
    const n = s.suite.replace('full compile, ', '');
    bars.push({ group: 'per full compile', label: n.replace(' services x ', ' svc x ').replace(' endpoints', ' ep'), ns: median(s, 'full compile'), baseline: false });
    bars.push({ group: 'per full compile', label: `image build, ${n.replace(' services x ', ' svc x ').replace(' endpoints', ' ep')}`, ns: median(s, 'canonical image build'), baseline: false });
  }
  const cpu = cpus();
  const results = {
    benchmark: 'update',
    date: new Date().toISOString(),
    quick: QUICK,
    engine: ENGINE,
    machine: {
      cpu: cpu[0]?.model ?? 'unknown',
      cores: cpu.length,
      memoryGiB: Number((totalmem() / 2 ** 30).toFixed(1)),
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
      loadAverage: { start: loadStart, end: loadEnd },
    },
    method: { warmup: '2 runs of every slow case, 2000 incremental updates', benny: { slow: SLOW_CASE, fast: FAST_CASE }, note: 'ns per op from benny samples (seconds per op * 1e9)' },
    compile,
    update,
    size,
    targets,
  };
  mkdirSync(new URL('../../bench/results/', import.meta.url), { recursive: true });
  const json = new URL('../../bench/results/update.json', import.meta.url);
  writeFileSync(json, `${JSON.stringify(results, null, 2)}\n`);
  const svg = new URL('../../bench/results/update.svg', import.meta.url);
  writeFileSync(svg, renderChart(bars, 'svcplane: full compile and one slice change'));
  console.log(`wrote ${json.pathname} and ${svg.pathname}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
