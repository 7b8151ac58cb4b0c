// The native engine (Node-API addon over the same C core, native/): that it is built wherever a C
// compiler is, that it computes exactly what the WebAssembly core computes (differential: same images,
// same random flow batches and clocks, identical result bytes; affinity eviction; several live instances;
// memory growth), how the engine is chosen (auto, forced by option or SVCPLANE_ENGINE, missing addon with
// its cause chain), and how the install-time build behaves with and without a toolchain.
//
// Nothing here is skipped: on a machine without a C compiler the availability test asserts the wasm
// fallback instead, and the tests that need the addon assert that there is no compiler.

import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FLOW, RESULT, R_AFFINITY, R_MAGLEV } from '../src/compile/layout.js';
import { type Core, type CoreExports, createWasmCore, wasmModule } from '../src/engine/core.js';
import { type Dataplane, EngineError, createDataplane, encodeFlows, openImage } from '../src/engine/dataplane.js';
import {
  BUILD_STATUS_PATH,
  DEFAULT_ADDON_PATH,
  NATIVE_PATH_ENV,
  type NativeEngine,
  NativeBuildError,
  NativeLoadError,
  causeChain,
  createNativeCore,
  loadNative,
  nativeExports,
  readBuildStatus,
  sourceHash,
} from '../src/engine/native.js';
import type { Protocol } from '../src/k8s/net.js';
import type { EndpointSlice, Node, Service } from '../src/k8s/types.js';

const ROOT = new URL('../', import.meta.url).pathname;

/** Is there a C toolchain node-gyp can use (what the install script needs)? */
function toolAvailable(cmd: string): boolean {
  const r = spawnSync(cmd, ['--version'], { stdio: 'ignore' });
  return r.status === 0;
}
const hasCompiler = ['cc', 'gcc', 'clang', 'g++'].some(toolAvailable) && toolAvailable('make') && ['python3', 'python'].some(toolAvailable);

function tryLoad(): { engine: NativeEngine | undefined; error: unknown } {
  try {
    return { engine: loadNative({ path: DEFAULT_ADDON_PATH }), error: undefined };
  } catch (error) {
    return { engine: undefined, error };
  }
}
const native = tryLoad();

/** A native engine for the tests that need one (only called when hasCompiler, which the availability test asserts implies one). */
function nativeEngine(): NativeEngine {
  if (!native.engine) throw new Error(`native addon unavailable: ${causeChain(native.error)}`);
  return native.engine;
}

// Environment variables the engine choice reads: every test starts without them.
const ENV_KEYS = ['SVCPLANE_ENGINE', NATIVE_PATH_ENV] as const;
const savedEnv = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
beforeEach(() => {
  for (const k of ENV_KEYS) delete process.env[k];
});
afterEach(() => {
  for (const k of ENV_KEYS) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
});

const tmpRoot = mkdtempSync(join(tmpdir(), 'svcplane-native-test-'));
afterAll(() => rmSync(tmpRoot, { recursive: true, force: true }));

describe('native addon availability', () => {
  it(hasCompiler ? 'is built and loads (a C toolchain is present)' : 'is absent, and auto runs wasm (no C toolchain)', async () => {
    if (hasCompiler) {
      // A failure here means `npm ci` (native/build.mjs) did not build the addon although it could have:
      // the message carries the load error and the recorded build outcome.
      expect(native.error === undefined ? 'loaded' : causeChain(native.error)).toBe('loaded');
      const status = readBuildStatus();
      expect(status?.ok).toBe(true);
      const dp = await createDataplane({ node: 'n' });
      expect(dp.engine).toBe('native');
      expect(dp.engineReason).toMatch(/^native addon .*svcplane\.node, auto/);
    } else {
      const dp = await createDataplane({ node: 'n' });
      expect(dp.engine).toBe('wasm');
      expect(dp.engineReason).toMatch(/native engine is unavailable/);
    }
  });

  it('exports every function of the WebAssembly core', () => {
    if (!hasCompiler) return expect(native.engine).toBeUndefined();
    const wasmFunctions = WebAssembly.Module.exports(wasmModule())
      .filter((e) => e.kind === 'function')
      .map((e) => e.name)
      .sort();
    expect([...nativeEngine().addon.exports].sort()).toEqual(wasmFunctions);
  });

  it('compiles every core file of wasm/build.sh, none of which keeps mutable statics (instances share them)', () => {
    if (!hasCompiler) return expect(native.engine).toBeUndefined();
    // The core files are those wasm/build.sh compiles (SOURCES="..." or the files after -o svcplane.wasm).
    const buildSh = readFileSync(join(ROOT, 'wasm', 'build.sh'), 'utf8');
    const sources = buildSh.match(/^SOURCES="([^"]*)"/m)?.[1] ?? buildSh.match(/-o svcplane\.wasm ([^\n]+)/)?.[1] ?? '';
    const wasmFiles = [...sources.matchAll(/([\w-]+)\.c\b/g)].map((m) => m[1] as string);
    expect(wasmFiles.length, 'core files in wasm/build.sh').toBeGreaterThan(0);
    const units = nativeEngine().addon.units;
    for (const f of wasmFiles) expect(units, `wasm/${f}.c needs a native/unit_${f}.c (native/exports.h SP_CORE_UNITS)`).toContain(f);
    // What the compiler sees: local or global data and bss symbols (const data is read-only: 'r').
    const cc = ['cc', 'gcc', 'clang'].find(toolAvailable) as string;
    for (const unit of units) {
      const obj = join(tmpRoot, `${unit}.o`);
      const built = spawnSync(cc, ['-std=c11', '-O0', '-c', join(ROOT, 'wasm', `${unit}.c`), '-o', obj], { encoding: 'utf8' });
      expect(built.status, built.stderr).toBe(0);
      const nm = spawnSync('nm', [obj], { encoding: 'utf8' });
      expect(nm.status, nm.stderr).toBe(0);
      const statics = nm.stdout
        .split('\n')
        .map((l) => l.trim().split(/\s+/))
        .filter((p) => p.length === 3 && /^[bdsBDSC]$/.test(p[1] as string))
        .map((p) => p[2] as string);
      expect(statics, `mutable statics in wasm/${unit}.c: native instances would share them (keep state in the context)`).toEqual([]);
    }
  });
});

// ---------------------------------------------------------------------------------------------------
// Random clusters
// ---------------------------------------------------------------------------------------------------

const NODE = 'node-a';
const NODE_V4 = '192.168.10.11';
const NODE_V6 = 'fd00:10::11';
const PROTOCOLS: Protocol[] = ['TCP', 'UDP', 'SCTP'];
const SOURCE_RANGES = ['10.0.0.0/8', '10.1.2.0/24', '192.168.0.0/16', '8.8.8.8/32', '2001:db8::/32', '::/0'];
const CLIENTS_V4 = [
  ...Array.from({ length: 30 }, (_, i) => `10.1.${i % 3}.${i + 10}`),
  '192.168.5.5', '172.16.3.3', '8.8.8.8', '1.1.1.1', '203.0.113.77',
];
const CLIENTS_V6 = ['2001:db8::5', '2001:db8:ffff::1', 'fd00::1', '2600::1', '2001:db8::99'];

type Rand = () => number;

function mulberry32(seed: number): Rand {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const int = (r: Rand, lo: number, hi: number): number => lo + Math.floor(r() * (hi - lo + 1));
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;

function endpointCount(r: Rand): number {
  const x = r();
  if (x < 0.1) return 0;
  if (x < 0.7) return int(r, 1, 12);
  if (x < 0.85) return int(r, 13, 60);
  return int(r, 300, 400); // more than 256 (most are ready): 2-byte Maglev entries
}

/** A random cluster: ClusterIP/NodePort/LoadBalancer services, one or two families, affinity, traffic
 * policies, source ranges, external IPs; slices of 0 to 300 endpoints in mixed conditions. */
function randomCluster(seed: number): (Service | EndpointSlice | Node)[] {
  const r = mulberry32(seed);
  const objects: (Service | EndpointSlice | Node)[] = [
    {
      apiVersion: 'v1', kind: 'Node', metadata: { name: NODE },
      status: { addresses: [{ type: 'InternalIP', address: NODE_V4 }, { type: 'InternalIP', address: NODE_V6 }] },
    },
  ];
  let nodePort = 30000;
  const n = int(r, 1, 10);
  for (let i = 0; i < n; i++) {
    const family = pick(r, ['v4', 'v4', 'v6', 'dual'] as const);
    const v4 = `10.96.${i >> 8}.${(i & 255) + 1}`;
    const v6 = `fd00:96::${(i + 1).toString(16)}`;
    const ips = family === 'v4' ? [v4] : family === 'v6' ? [v6] : [v4, v6];
    const type = pick(r, ['ClusterIP', 'ClusterIP', 'NodePort', 'LoadBalancer'] as const);
    const ports = Array.from({ length: int(r, 1, 2) }, (_, k) => ({
      name: `p${k}`,
      protocol: pick(r, PROTOCOLS),
      port: k === 0 ? pick(r, [53, 80, 443]) : 8080,
      targetPort: 8000 + k,
      ...(type !== 'ClusterIP' ? { nodePort: nodePort++ } : {}),
    }));
    const spec: NonNullable<Service['spec']> = {
      type,
      clusterIP: ips[0] as string,
      clusterIPs: ips,
      ipFamilies: ips.map((a) => (a.includes(':') ? 'IPv6' : 'IPv4')),
      ...(ips.length === 2 ? { ipFamilyPolicy: 'RequireDualStack' as const } : {}),
      ports,
    };
    if (r() < 0.4) {
      spec.sessionAffinity = 'ClientIP';
      spec.sessionAffinityConfig = { clientIP: { timeoutSeconds: int(r, 1, 30) } };
    }
    if (r() < 0.2) spec.internalTrafficPolicy = 'Local';
    if (type !== 'ClusterIP' && r() < 0.3) spec.externalTrafficPolicy = 'Local';
    if (r() < 0.15) spec.externalIPs = [`203.0.113.${i + 1}`];
    const svc: Service = { apiVersion: 'v1', kind: 'Service', metadata: { name: `s${i}`, namespace: 'ns' }, spec };
    if (type === 'LoadBalancer') {
      if (r() < 0.4) spec.loadBalancerSourceRanges = SOURCE_RANGES.filter(() => r() < 0.4);
      svc.status = { loadBalancer: { ingress: [{ ip: `198.51.100.${i + 1}` }, ...(family !== 'v4' ? [{ ip: `2001:db8:b::${i + 1}` }] : [])] } };
    }
    objects.push(svc);
    ips.forEach((ip, f) => {
      const v6family = ip.includes(':');
      const count = endpointCount(r);
      objects.push({
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: `s${i}-${f}`, namespace: 'ns', labels: { 'kubernetes.io/service-name': `s${i}` } },
        addressType: v6family ? 'IPv6' : 'IPv4',
        ports: ports.map((p) => ({ name: p.name, port: p.targetPort, protocol: p.protocol })),
        endpoints: Array.from({ length: count }, (_, e) => {
          const c = r();
          const conditions = c < 0.8 ? { ready: true, serving: true, terminating: false }
            : c < 0.9 ? { ready: false, serving: true, terminating: true }
              : { ready: false, serving: false, terminating: false };
          const address = v6family ? `fd00:244:${i.toString(16)}::${(e + 1).toString(16)}` : `10.${100 + (i >> 6)}.${((i & 63) << 2) | (e >> 8)}.${e & 255}`;
          return { addresses: [address], conditions, nodeName: r() < 0.4 ? NODE : 'node-b' };
        }),
      });
    });
  }
  return objects;
}

interface Target {
  dst: string;
  dport: number;
  protocol: Protocol;
}

/** Every frontend of the image, plus addresses that are no frontend. */
function targetsOf(dp: Dataplane): { hits: Target[]; misses: Target[] } {
  const view = dp.tables;
  const hits: Target[] = [];
  for (let slot = 0; view && slot < view.frontendCapacity; slot++) {
    const fe = view.frontend(slot);
    if (fe) hits.push({ dst: fe.address, dport: fe.port, protocol: fe.protocol as Protocol });
  }
  const misses: Target[] = [
    { dst: '10.96.200.200', dport: 80, protocol: 'TCP' },
    { dst: '10.100.0.1', dport: 8000, protocol: 'TCP' },
    { dst: 'fd00:96::ffff', dport: 443, protocol: 'UDP' },
  ];
  return { hits, misses };
}

function randomFlows(r: Rand, t: { hits: Target[]; misses: Target[] }, count: number): Uint8Array {
  const flows = Array.from({ length: count }, () => {
    const to = t.hits.length > 0 && r() < 0.9 ? pick(r, t.hits) : pick(r, t.misses);
    const v6 = to.dst.includes(':');
    return { ...to, src: pick(r, v6 ? CLIENTS_V6 : CLIENTS_V4), sport: int(r, 1024, 65535) };
  });
  return encodeFlows(flows);
}

/** Byte equality (vitest's deep equality is far too slow on multi-megabyte images). */
function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  return a !== undefined && b !== undefined && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** The first result that differs, decoded by both dataplanes, for a readable failure. */
function firstDifference(a: Uint8Array, b: Uint8Array, da: Dataplane, db: Dataplane): string | undefined {
  for (let i = 0; i * RESULT.size < a.byteLength; i++) {
    const x = a.subarray(i * RESULT.size, (i + 1) * RESULT.size);
    const y = b.subarray(i * RESULT.size, (i + 1) * RESULT.size);
    if (!x.every((v, k) => v === y[k])) return `flow ${i}: wasm ${JSON.stringify(da.describe(a, i))} native ${JSON.stringify(db.describe(b, i))}`;
  }
  return a.byteLength === b.byteLength ? undefined : 'different lengths';
}

const reasonCounts = new Map<number, number>();
function countReasons(results: Uint8Array): void {
  for (let i = 0; i < results.byteLength; i += RESULT.size) {
    const reason = results[i + RESULT.reason] as number;
    reasonCounts.set(reason, (reasonCounts.get(reason) ?? 0) + 1);
  }
}

describe('native vs wasm: identical results', () => {
  it('same images and identical result bytes over random clusters, flow batches, clocks and re-applies', async () => {
    if (!hasCompiler) return expect(native.engine).toBeUndefined();
    let bigLists = 0;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 0x7fffffff }), fc.integer({ min: 0, max: 0x7fffffff }), async (clusterSeed, flowSeed) => {
        const opts = { node: NODE, tableSeed: clusterSeed ^ 0x5a5a, clusterSeed };
        const w = await createDataplane({ ...opts, engine: 'wasm' });
        const n = await createDataplane({ ...opts, engine: 'native' });
        expect([w.engine, n.engine]).toEqual(['wasm', 'native']);
        const r = mulberry32(flowSeed);
        let now = 1000;
        // Two cluster states in turn: the second apply re-attaches a different image under live affinity.
        for (const state of [clusterSeed, clusterSeed + 1]) {
          const objects = randomCluster(state);
          expect(w.apply(objects)).toEqual([]);
          expect(n.apply(objects)).toEqual([]);
          // The served image (updated in place) and the canonical one (a fresh compile) alike.
          expect(sameBytes(n.tables.bytes, w.tables.bytes)).toBe(true);
          expect(sameBytes(n.image, w.image)).toBe(true);
          const view = w.tables;
          for (let slot = 0; slot < view.slotCapacity; slot++) if (view.service(slot)?.lists.some((l) => l.beCount > 256)) bigLists++;
          const targets = targetsOf(w);
          for (let batch = 0; batch < 6; batch++) {
            const flows = randomFlows(r, targets, int(r, 1, 600));
            const a = w.selectBatch(flows, now);
            const b = n.selectBatch(flows, now);
            expect(firstDifference(a, b, w, n)).toBeUndefined();
            countReasons(a);
            now += int(r, 0, 20); // crosses affinity timeouts (1-30 s)
          }
          // Single selects take the same path through the scratch buffer.
          const t = targets.hits[0] ?? targets.misses[0];
          if (t) {
            const flow = { ...t, src: t.dst.includes(':') ? '2001:db8::5' : '10.1.0.10', sport: 40000, now };
            expect(n.select(flow)).toEqual(w.select(flow));
          }
        }
      }),
      { numRuns: 30 },
    );
    // The runs exercised what matters: Maglev, affinity hits, and lists past 256 backends.
    expect(reasonCounts.get(R_MAGLEV) ?? 0).toBeGreaterThan(100);
    expect(reasonCounts.get(R_AFFINITY) ?? 0).toBeGreaterThan(10);
    expect(bigLists).toBeGreaterThan(0);
  }, 120_000);

  /** Runs a batch on a bare Core, returning a copy of the results. */
  function coreBatch(core: Core, flows: Uint8Array, now: number): Uint8Array {
    const count = flows.byteLength / FLOW.size;
    const buf = core.batchBuffer();
    core.memory.set(flows, buf.flows);
    core.selectBatchInPlace(count, now);
    return core.memory.slice(buf.results, buf.results + count * RESULT.size);
  }

  it('identical affinity state under eviction (tiny table, same state seed), across interleaved instances', async () => {
    if (!hasCompiler) return expect(native.engine).toBeUndefined();
    // Every service with affinity, many clients, an 8-entry table: the probe window evicts constantly.
    const withAffinity = (objects: ReturnType<typeof randomCluster>): ReturnType<typeof randomCluster> =>
      objects.map((o) => {
        if (o.kind !== 'Service' || !o.spec) return o;
        return { ...o, spec: { ...o.spec, sessionAffinity: 'ClientIP' as const, sessionAffinityConfig: { clientIP: { timeoutSeconds: 25 } } } };
      });
    // Two pairs over different images, driven interleaved: instance state (image, affinity) must not
    // leak between native instances.
    const pairs = await Promise.all(
      [7, 8].map(async (seed, k) => {
        const dp = await createDataplane({ node: NODE, tableSeed: seed, engine: 'wasm' });
        expect(dp.apply(withAffinity(randomCluster(seed)))).toEqual([]);
        const opts = { affinityCapacity: 8, stateSeed: 0x1234 * (k + 1) };
        const pair = { w: createWasmCore(opts), n: createNativeCore(opts, nativeEngine()), targets: targetsOf(dp) };
        pair.w.loadImage(dp.image);
        pair.n.loadImage(dp.image);
        return pair;
      }),
    );
    const r = mulberry32(99);
    let now = 5000;
    let affinityHits = 0;
    for (let batch = 0; batch < 40; batch++) {
      for (const p of pairs) {
        const flows = randomFlows(r, p.targets, int(r, 1, 300));
        const a = coreBatch(p.w, flows, now);
        const b = coreBatch(p.n, flows, now);
        expect(Buffer.from(b).equals(Buffer.from(a)), `batch ${batch}`).toBe(true);
        for (let i = 0; i < a.byteLength; i += RESULT.size) if (a[i + RESULT.reason] === R_AFFINITY) affinityHits++;
      }
      now += int(r, 0, 10);
    }
    expect(affinityHits).toBeGreaterThan(0);
  });

  it('grows memory like WebAssembly.Memory: old buffer detached, same results after growth', async () => {
    if (!hasCompiler) return expect(native.engine).toBeUndefined();
    const w = await createDataplane({ node: NODE, tableSeed: 3, engine: 'wasm' });
    const n = await createDataplane({ node: NODE, tableSeed: 3, engine: 'native' });
    const x = nativeExports(nativeEngine());
    const before = x.memory.buffer;
    expect(x.memory.grow(0)).toBe(1);
    expect(x.memory.grow(2)).toBe(1);
    expect(before.byteLength).toBe(0); // detached, as wasm does
    expect(x.memory.buffer.byteLength).toBe(3 * 65536);
    expect(x.memory.buffer).toBe(x.memory.buffer);
    expect(() => x.memory.grow(0x10000)).toThrow(RangeError);
    // A cluster that grows from tiny to ~10 MB of image: the image moves up, memory grows many times.
    for (const seed of [11, 12]) {
      const objects = randomCluster(seed);
      for (let i = 0; i < 400; i++) {
        objects.push({
          apiVersion: 'v1', kind: 'Service', metadata: { name: `big${i}`, namespace: 'ns' },
          spec: { clusterIP: `10.97.${i >> 7}.${(i & 127) + 1}`, ports: [{ name: 'p', port: 80, protocol: 'TCP' }] },
        });
        objects.push({
          apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
          metadata: { name: `big${i}`, namespace: 'ns', labels: { 'kubernetes.io/service-name': `big${i}` } },
          addressType: 'IPv4', ports: [{ name: 'p', port: 8080, protocol: 'TCP' }],
          endpoints: Array.from({ length: 100 }, (_, e) => ({ addresses: [`10.200.${i & 255}.${e}`], conditions: { ready: true } })),
        });
      }
      expect(w.apply(objects)).toEqual([]);
      expect(n.apply(objects)).toEqual([]);
      expect(sameBytes(n.tables.bytes, w.tables.bytes)).toBe(true);
      const flows = randomFlows(mulberry32(seed), targetsOf(w), 4000);
      expect(firstDifference(w.selectBatch(flows, 100), n.selectBatch(flows, 100), w, n)).toBeUndefined();
    }
  });

  it('backs core memory with transparent huge pages by default; hugePages: false turns it off', async () => {
    if (!hasCompiler) return expect(native.engine).toBeUndefined();
    const huge = (x: object): unknown => (x as { hugePages?: unknown }).hugePages;
    expect(huge(nativeExports(nativeEngine()))).toBe(true);
    expect(huge(nativeExports(nativeEngine(), { hugePages: false }))).toBe(false);
    // Through the Dataplane option, which reaches the instance the core runs on.
    const dp = await createDataplane({ node: NODE, engine: 'native', hugePages: false });
    expect(huge((dp as unknown as { core: { x: object } }).core.x)).toBe(false);
  });

  it('raw exports agree: hashes and struct sizes of every core file', () => {
    if (!hasCompiler) return expect(native.engine).toBeUndefined();
    const wx = new WebAssembly.Instance(wasmModule(), {}).exports as unknown as CoreExports & Record<string, (...a: number[]) => number>;
    const nx = nativeExports(nativeEngine()) as CoreExports & Record<string, (...a: number[]) => number>;
    const at = 1 << 20; // above both engines' own data
    for (const x of [wx, nx]) x.memory.grow(Math.ceil((at + 4096 - x.memory.buffer.byteLength) / 65536));
    const r = mulberry32(5);
    const bytes = new Uint8Array(4096).map(() => int(r, 0, 255));
    for (const x of [wx, nx]) new Uint8Array(x.memory.buffer).set(bytes, at);
    const same = (name: string, ...args: number[]): void => {
      const f = wx[name];
      const g = nx[name];
      if (typeof f !== 'function' || typeof g !== 'function') return;
      expect(g(...args), `${name}(${args.join(', ')})`).toBe(f(...args));
    };
    for (let which = 0; which < 16; which++) {
      same('sp_sizeof', which);
      same('sp_route_sizeof', which);
    }
    same('sp_abi_version');
    for (let i = 0; i < 200; i++) {
      const off = at + int(r, 0, 4000);
      same('sp_hash20', off, int(r, 0, 0xffffffff));
      same('sp_hash_bytes', off, int(r, 0, 64), int(r, 0, 0xffffffff));
    }
    // Out-of-range buffers are refused the same way (the memories differ in size, so ask past both).
    same('sp_attach', 0xfffffff8, 0, 200);
    same('sp_select_batch', 0xfffffff0, 0, 0, 5, 0);
    same('sp_hash20', 0xffffffff, 1);
  });
});

describe('engine choice', () => {
  const withNative = (): boolean => native.engine !== undefined;

  it('auto prefers native, else wasm; the option picks one; SVCPLANE_ENGINE overrides the option', async () => {
    const auto = await createDataplane({ node: NODE });
    expect(auto.engine).toBe(withNative() ? 'native' : 'wasm');
    const wasm = await createDataplane({ node: NODE, engine: 'wasm' });
    expect(wasm.engine).toBe('wasm');
    expect(wasm.engineReason).toMatch(/WebAssembly core, as asked \(engine: 'wasm'\)/);

    process.env.SVCPLANE_ENGINE = 'wasm';
    const forcedWasm = await createDataplane({ node: NODE, engine: 'native' });
    expect(forcedWasm.engine).toBe('wasm');
    expect(forcedWasm.engineReason).toMatch(/SVCPLANE_ENGINE=wasm/);

    process.env.SVCPLANE_ENGINE = '';
    expect((await createDataplane({ node: NODE, engine: 'wasm' })).engine).toBe('wasm'); // empty = unset

    if (withNative()) {
      process.env.SVCPLANE_ENGINE = 'native';
      const forcedNative = await createDataplane({ node: NODE, engine: 'wasm' });
      expect(forcedNative.engine).toBe('native');
      expect(forcedNative.engineReason).toMatch(/as asked \(SVCPLANE_ENGINE=native\)/);
      process.env.SVCPLANE_ENGINE = 'auto';
      expect((await createDataplane({ node: NODE, engine: 'wasm' })).engine).toBe('native');
      delete process.env.SVCPLANE_ENGINE;
      const sel = await openImage(auto.image, { engine: 'native' });
      expect(sel.engine).toBe('native');
    }
  });

  it('rejects an unknown engine, from the environment or the option', async () => {
    process.env.SVCPLANE_ENGINE = 'fast';
    await expect(createDataplane({ node: NODE })).rejects.toThrow(new EngineError('SVCPLANE_ENGINE="fast" is not an engine (auto, wasm or native)'));
    delete process.env.SVCPLANE_ENGINE;
    await expect(createDataplane({ node: NODE, engine: 'fast' as 'wasm' })).rejects.toThrow(/unknown engine "fast"/);
  });

  it('a missing addon: auto falls back to wasm and says why; forced native fails with the cause chain', async () => {
    const missing = join(tmpRoot, 'no-such-addon.node');
    process.env[NATIVE_PATH_ENV] = missing;
    const auto = await createDataplane({ node: NODE });
    expect(auto.engine).toBe('wasm');
    expect(auto.engineReason).toContain(`the native engine is unavailable: no native addon at ${missing} (SVCPLANE_NATIVE_PATH)`);

    process.env.SVCPLANE_ENGINE = 'native';
    const err: unknown = await createDataplane({ node: NODE }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(EngineError);
    const e = err as EngineError;
    expect(e.message).toMatch(/^engine "native" was asked for \(SVCPLANE_ENGINE=native\) but is not available: no native addon at /);
    expect(e.cause).toBeInstanceOf(NativeLoadError);
    const load = e.cause as NativeLoadError;
    expect(load.message).toBe(`no native addon at ${missing} (SVCPLANE_NATIVE_PATH)`);
    expect(load.cause).toBeInstanceOf(Error);
    expect((load.cause as Error).message).toContain('ENOENT');
    expect(causeChain(e)).toContain('ENOENT');
  });

  it('names the recorded build failure when the build left no addon', () => {
    const dir = mkdtempSync(join(tmpRoot, 'status-'));
    const statusFile = join(dir, 'status.json');
    const path = join(dir, 'svcplane.node');
    writeFileSync(statusFile, JSON.stringify({ ok: false, stage: 'toolchain', reason: 'no build toolchain: missing a C compiler', when: '2025-01-01T00:00:00Z' }));
    const err = (() => {
      try {
        loadNative({ path, statusFile });
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(NativeLoadError);
    expect((err as Error).message).toBe(`the native addon is not built (${path} does not exist)`);
    const build = (err as Error).cause;
    expect(build).toBeInstanceOf(NativeBuildError);
    expect((build as Error).message).toContain('no build toolchain: missing a C compiler');

    // No status at all: the install script never ran.
    rmSync(statusFile);
    expect(() => loadNative({ path, statusFile })).toThrow(NativeLoadError);
    try {
      loadNative({ path, statusFile });
    } catch (e) {
      expect(causeChain(e)).toMatch(/no native build was recorded .* the install script did not run/);
    }
  });

  it('refuses a stale addon, a leftover of a failed build, a foreign module, one that lacks exports', () => {
    const dir = mkdtempSync(join(tmpRoot, 'stale-'));
    const statusFile = join(dir, 'status.json');
    const path = join(dir, 'svcplane.node');
    writeFileSync(path, 'not really an addon');
    writeFileSync(statusFile, JSON.stringify({ ok: true, reason: 'built', sourceHash: '0'.repeat(64) }));
    expect(() => loadNative({ path, statusFile })).toThrow(/is stale: it was built from other C sources/);
    writeFileSync(statusFile, JSON.stringify({ ok: false, reason: 'build failed: boom' }));
    expect(() => loadNative({ path, statusFile })).toThrow(/left over from an earlier build/);
    writeFileSync(statusFile, JSON.stringify({ ok: true, reason: 'built', sourceHash: sourceHash() }));
    expect(() => loadNative({ path, statusFile })).toThrow(/cannot load the native addon/);
    // Modules that load but are not (this version of) the addon.
    const fake = join(dir, 'fake.cjs');
    writeFileSync(fake, 'module.exports = { create() {}, exports: ["sp_attach"], bindingVersion: 1 };');
    process.env[NATIVE_PATH_ENV] = fake;
    expect(() => loadNative()).toThrow(/lacks core exports the WebAssembly core has: .*sp_select_batch/);
    const old = join(dir, 'old.cjs');
    writeFileSync(old, 'module.exports = { create() {}, exports: [], bindingVersion: 0 };');
    process.env[NATIVE_PATH_ENV] = old;
    expect(() => loadNative()).toThrow(/not a svcplane native addon of binding version 1/);
  });

  it('the real build status matches the sources when the addon is there', () => {
    if (!hasCompiler) return expect(native.engine).toBeUndefined();
    expect(existsSync(BUILD_STATUS_PATH)).toBe(true);
    expect(readBuildStatus()?.sourceHash).toBe(sourceHash());
  });
});

describe('instances and threads', () => {
  it('keeps instances apart while a worker thread drives its own instances', async () => {
    if (!hasCompiler) return expect(native.engine).toBeUndefined();
    const addonPath = nativeEngine().path;
    // The worker hashes with its own instances while this thread does the same: the global lock and
    // the per-instance state keep the answers equal to a single-threaded run.
    const script = `
      const { parentPort, workerData } = require('node:worker_threads');
      const a = require(workerData.addonPath);
      const xs = [a.create(), a.create()];
      for (const x of xs) { x.grow(1); new Uint8Array(x.buffer()).fill(7, 0, 65536); }
      let acc = 0;
      for (let i = 0; i < 20000; i++) acc = (acc + xs[i & 1].sp_hash20(64 + (i & 1023), i)) | 0;
      parentPort.postMessage(acc);
    `;
    const expected = (() => {
      const x = nativeEngine().addon.create();
      x.grow(1);
      new Uint8Array(x.buffer()).fill(7, 0, 65536);
      let acc = 0;
      for (let i = 0; i < 20000; i++) acc = (acc + x.sp_hash20(64 + (i & 1023), i)) | 0;
      return acc;
    })();
    const workers = [0, 1].map(
      () =>
        new Promise<number>((resolve, reject) => {
          const w = new Worker(script, { eval: true, workerData: { addonPath } });
          w.once('message', (m: number) => resolve(m));
          w.once('error', reject);
        }),
    );
    // Meanwhile, here: interleaved cores with images must keep selecting correctly.
    const dp1 = await createDataplane({ node: NODE, tableSeed: 1, engine: 'native' });
    const dp2 = await createDataplane({ node: NODE, tableSeed: 1, engine: 'wasm' });
    const objects = randomCluster(3);
    dp1.apply(objects);
    dp2.apply(objects);
    const flows = randomFlows(mulberry32(1), targetsOf(dp2), 500);
    for (let i = 0; i < 50; i++) expect(Buffer.from(dp1.selectBatch(flows, 10)).equals(Buffer.from(dp2.selectBatch(flows, 10)))).toBe(true);
    expect(await Promise.all(workers)).toEqual([expected, expected]);
  });
});

// ---------------------------------------------------------------------------------------------------
// The install-time build (native/build.mjs), in a copy of the sources so the real build stays put.
// ---------------------------------------------------------------------------------------------------

describe('install-time build (native/build.mjs)', () => {
  function copySources(): string {
    const dir = mkdtempSync(join(tmpRoot, 'pkg-'));
    for (const sub of ['native', 'wasm']) {
      mkdirSync(join(dir, sub));
      for (const f of readdirSync(join(ROOT, sub))) {
        if (/\.(c|h|gyp|mjs)$/.test(f)) copyFileSync(join(ROOT, sub, f), join(dir, sub, f));
      }
    }
    return dir;
  }
  function runBuild(dir: string, env: NodeJS.ProcessEnv): { status: number | null; record: { ok: boolean; stage: string; reason: string } } {
    const run = spawnSync(process.execPath, [join(dir, 'native', 'build.mjs')], { env, encoding: 'utf8', timeout: 180_000 });
    const record = JSON.parse(readFileSync(join(dir, 'native', 'build', 'status.json'), 'utf8')) as { ok: boolean; stage: string; reason: string };
    return { status: run.status, record };
  }

  it('npm runs it as the install script, and no root binding.gyp makes npm run node-gyp itself', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts.install).toBe('node native/build.mjs || exit 0');
    expect(existsSync(join(ROOT, 'binding.gyp'))).toBe(false);
  });

  it('exits 0 and records why when the compiler fails (CC=false)', () => {
    const dir = copySources();
    const { status, record } = runBuild(dir, { ...process.env, CC: 'false' });
    expect(status).toBe(0);
    expect(record.ok).toBe(false);
    expect(record.stage).toMatch(/^(build|toolchain)$/);
    expect(record.reason).toMatch(hasCompiler ? /^build failed \(CC=false\)/ : /./);
    expect(existsSync(join(dir, 'native', 'build', 'Release', 'svcplane.node'))).toBe(false);
  }, 200_000);

  it('exits 0 and records the missing toolchain when no compiler is on PATH', () => {
    const dir = copySources();
    const bin = mkdtempSync(join(tmpRoot, 'bin-'));
    const { status, record } = runBuild(dir, { ...process.env, PATH: bin, CC: '' });
    expect(status).toBe(0);
    expect(record).toMatchObject({ ok: false, stage: 'toolchain' });
    expect(record.reason).toMatch(/^no build toolchain: missing a C compiler/);
  });

  it('records a skipped build when SVCPLANE_SKIP_NATIVE_BUILD is set', () => {
    const dir = copySources();
    const { status, record } = runBuild(dir, { ...process.env, SVCPLANE_SKIP_NATIVE_BUILD: '1' });
    expect(status).toBe(0);
    expect(record).toMatchObject({ ok: false, stage: 'skipped' });
  });

  it(hasCompiler ? 'builds a loadable addon with the toolchain here' : 'records the failure without a toolchain', () => {
    const dir = copySources();
    const { status, record } = runBuild(dir, { ...process.env });
    expect(status).toBe(0);
    expect(record.ok, record.reason).toBe(hasCompiler);
    if (hasCompiler) expect(existsSync(join(dir, 'native', 'build', 'Release', 'svcplane.node'))).toBe(true);
  }, 200_000);
});
