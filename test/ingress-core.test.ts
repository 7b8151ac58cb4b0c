// The routes section and the core's sp_route: ABI in step with layout.ts, hashing shared with the
// compiler, attach-time validation of malformed sections, request bounds, deterministic compiles, and a
// differential test of the core against the reference matcher and the TypeScript table matcher.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { murmur3 } from '../src/compile/murmur3.js';
import { compileRoutes } from '../src/ingress/compile.js';
import { planIngress, type IngressPlan, type RouteTarget } from '../src/ingress/semantics.js';
import { serviceResolver } from '../src/ingress/resolve.js';
import { R_HEADER, R_RECORD, R_SLOT, R_TARGET, ROUTE_STRUCT_SIZES, NONE } from '../src/ingress/layout.js';
import { RoutesView } from '../src/ingress/view.js';
import { IngressRouter, routerScratchSize, type RouteResult } from '../src/ingress/route.js';
import { TableMatcher } from '../src/ingress/table-match.js';
import { validateIngress } from '../src/k8s/validate-ingress.js';
import type { Ingress, PathType } from '../src/ingress/types.js';
import { backend, ingress, path, rule, service, serviceMap } from './fixtures/ingress/objects.js';
import { servicesFor } from './fixtures/ingress/setup.js';
import { instantiate, wasmRouting } from './fixtures/ingress/wasm.js';
import { referenceRoute } from './fixtures/ingress/reference.js';

function sample(): Ingress[] {
  return [
    ingress('web', {
      defaultBackend: backend('fallback'),
      rules: [
        rule('shop.com', path('/', 'Prefix', 'web'), path('/api', 'Prefix', 'api'), path('/login', 'Exact', 'auth')),
        rule('*.shop.com', path('/', 'Prefix', 'web')),
        rule(undefined, path('/health', 'Exact', 'health')),
      ],
    }, { created: '2024-01-01T00:00:00Z' }),
    ingress('admin', { rules: [rule('admin.shop.com', path('/', 'Prefix', 'admin'))] }, { namespace: 'ops' }),
  ];
}

function compileSample(seed = 7, ingresses = sample()): { bytes: Uint8Array; plan: IngressPlan } {
  // Services (and their ClusterIPs) from the sample in its own order, whatever order the Ingresses come in.
  const { plan } = planIngress({ ingresses }, { resolveServicePort: serviceResolver(serviceMap(...servicesFor(sample()))) });
  return { bytes: compileRoutes(plan, { seed }).bytes, plan };
}

describe('core ABI', () => {
  it('has the struct sizes layout.ts writes (sp_route_sizeof)', () => {
    const x = instantiate();
    expect(ROUTE_STRUCT_SIZES.map((_, i) => x.sp_route_sizeof(i))).toEqual([...ROUTE_STRUCT_SIZES]);
    expect(x.sp_route_sizeof(99)).toBe(0);
  });

  it('hashes any byte string exactly as the compiler does (murmur3_32)', () => {
    const w = wasmRouting();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 70 }), fc.integer({ min: 0, max: 0xffffffff }), (bytes, seed) => {
        w.memory().set(bytes, w.scratch);
        expect(w.x.sp_hash_bytes(w.scratch, bytes.length, seed) >>> 0).toBe(murmur3(bytes, seed));
      }),
      { numRuns: 500 },
    );
    expect(w.x.sp_hash_bytes(0xfffffff0, 64, 0)).toBe(0);
  });
});

describe('attach-time validation', () => {
  const { bytes } = compileSample();
  const view = new RoutesView(bytes);

  /** Attaches a mutated copy; returns the core's code. The good section stays attached on failure. */
  function attachMutated(mutate: (b: Uint8Array, dv: DataView) => void): number {
    const w = wasmRouting();
    w.load(bytes);
    const copy = bytes.slice();
    mutate(copy, new DataView(copy.buffer));
    const at = w.routesAt + ((bytes.byteLength + 7) & ~7);
    w.ensure(at + copy.byteLength);
    w.memory().set(copy, at);
    const rc = w.x.sp_routes_attach(w.ctx, at, copy.byteLength);
    if (rc !== 0) {
      // Nothing attached to that context; other contexts are untouched.
      expect(w.x.sp_route(w.ctx, w.scratch + 32, w.scratch + 16)).toBe(0);
      expect(w.router.route({ host: 'shop.com', path: '/api' }).service).toBe('shop/api');
    }
    return rc;
  }
  const slotAt = (i: number): number => view.slotOff + i * R_SLOT.size;
  const usedSlot = (): number => {
    for (let i = 0; ; i++) if (view.u32(slotAt(i) + R_SLOT.value) !== NONE) return slotAt(i);
  };
  const freeSlot = (): number => {
    for (let i = 0; ; i++) if (view.u32(slotAt(i) + R_SLOT.value) === NONE) return slotAt(i);
  };

  it('accepts the compiled section', () => expect(attachMutated(() => undefined)).toBe(0));
  it('rejects a bad magic', () => expect(attachMutated((b) => (b[0] = 0))).toBe(-2));
  it('rejects another version', () => expect(attachMutated((_, dv) => dv.setUint32(R_HEADER.version, 2, true))).toBe(-3));
  it('rejects a size that is not the length', () => expect(attachMutated((_, dv) => dv.setUint32(R_HEADER.sectionSize, bytes.byteLength - 8, true))).toBe(-4));
  it('rejects an area past the end', () => {
    expect(attachMutated((_, dv) => dv.setUint32(R_HEADER.slotCount, 1 << 24, true))).toBe(-5);
    expect(attachMutated((_, dv) => dv.setUint32(R_HEADER.strBytes, bytes.byteLength, true))).toBe(-5);
    expect(attachMutated((_, dv) => dv.setUint32(R_HEADER.tgtOff, 0xfffffff8, true))).toBe(-5);
  });
  it('rejects a map that is not a power of two, outside the slots, or full', () => {
    expect(attachMutated((_, dv) => dv.setUint32(R_HEADER.hostCap, 3, true))).toBe(-6);
    expect(attachMutated((_, dv) => dv.setUint32(R_HEADER.hostFirst, view.slotCount, true))).toBe(-6);
    // Fill the exact-host map's free slots with valid entries (key "", its hash): no free slot left.
    expect(
      attachMutated((_, dv) => {
        const first = view.u32(R_HEADER.hostFirst);
        for (let i = first; i < first + view.u32(R_HEADER.hostCap); i++) {
          const at = slotAt(i);
          if (dv.getUint32(at + R_SLOT.value, true) !== NONE) continue;
          dv.setUint32(at + R_SLOT.hash, murmur3(new Uint8Array(0), view.seed), true);
          dv.setUint32(at + R_SLOT.value, 0, true);
        }
      }),
    ).toBe(-6);
  });
  it('rejects a slot with a wrong hash, key, type or value', () => {
    expect(attachMutated((_, dv) => dv.setUint32(usedSlot() + R_SLOT.hash, dv.getUint32(usedSlot() + R_SLOT.hash, true) ^ 1, true))).toBe(-7);
    expect(attachMutated((_, dv) => dv.setUint32(usedSlot() + R_SLOT.key, 0xfffffff0, true))).toBe(-7);
    expect(attachMutated((_, dv) => dv.setUint8(usedSlot() + R_SLOT.type, 9))).toBe(-7);
    expect(attachMutated((_, dv) => dv.setUint32(usedSlot() + R_SLOT.value, 1000, true))).toBe(-7);
    expect(attachMutated((_, dv) => dv.setUint32(freeSlot() + R_SLOT.hash, 5, true))).toBe(0); // free slots are not read
  });
  it('rejects records and targets pointing outside their tables', () => {
    expect(attachMutated((_, dv) => dv.setUint32(R_HEADER.catchall, view.recordCount, true))).toBe(-8);
    expect(attachMutated((_, dv) => dv.setUint32(R_HEADER.defaultTarget, view.targetCount, true))).toBe(-8);
    expect(attachMutated((_, dv) => dv.setUint32(view.recOff + R_RECORD.defaultTarget, view.targetCount, true))).toBe(-8);
    expect(attachMutated((_, dv) => dv.setUint8(view.recOff + R_RECORD.kind, 0))).toBe(-8);
    expect(attachMutated((_, dv) => dv.setUint32(view.recOff + R_RECORD.exactCap, 1 << 20, true))).toBe(-6);
    expect(attachMutated((_, dv) => dv.setUint16(view.tgtOff + R_TARGET.status, 302, true))).toBe(-9);
    expect(attachMutated((_, dv) => dv.setUint32(view.tgtOff + R_TARGET.reason, view.strBytes, true))).toBe(-9);
  });
  it('rejects a string area that is not NUL-delimited', () => {
    expect(attachMutated((b) => (b[view.strOff + view.strBytes - 1] = 0x41))).toBe(-10);
  });
  it('rejects sections outside memory or misaligned, and short ones', () => {
    const w = wasmRouting();
    expect(w.x.sp_routes_attach(w.ctx, w.routesAt + 4, bytes.byteLength)).toBe(-1);
    expect(w.x.sp_routes_attach(w.ctx, 0xfffffff8, bytes.byteLength)).toBe(-1);
    expect(w.x.sp_routes_attach(w.ctx, 0, bytes.byteLength)).toBe(-1);
    expect(w.x.sp_routes_attach(w.ctx, w.routesAt, 16)).toBe(-4);
    expect(w.x.sp_routes_attach(w.ctx + 4, w.routesAt, bytes.byteLength)).toBe(-1);
    expect(w.x.sp_routes_attach(0xfffffff8, w.routesAt, bytes.byteLength)).toBe(-1);
    expect(() => w.router.attach(bytes.subarray(0, 8), w.routesAt)).toThrow(/too short/);
  });
});

describe('request bounds', () => {
  it('returns 0 (no route) for buffers outside memory, misaligned, or with nothing attached', () => {
    const w = wasmRouting();
    const req = w.scratch + 32;
    const res = w.scratch + 16;
    expect(w.x.sp_route(w.ctx, req, res)).toBe(0); // nothing attached
    const { bytes } = compileSample();
    w.ensure(w.routesAt + bytes.byteLength);
    w.memory().set(bytes, w.routesAt);
    expect(w.x.sp_routes_attach(w.ctx, w.routesAt, bytes.byteLength)).toBe(0);
    const m = w.memory();
    const dv = new DataView(m.buffer);
    const text = req + 64;
    m.set(new TextEncoder().encode('shop.com/api'), text);
    const request = (hostOff: number, hostLen: number, pathOff: number, pathLen: number): void => {
      dv.setUint32(req, hostOff, true);
      dv.setUint32(req + 4, hostLen, true);
      dv.setUint32(req + 8, pathOff, true);
      dv.setUint32(req + 12, pathLen, true);
    };
    request(text, 8, text + 8, 4);
    expect(w.x.sp_route(w.ctx, req, res)).toBe(200);
    expect(dv.getUint32(res + 4, true)).not.toBe(NONE);
    expect(w.x.sp_route(w.ctx, req + 2, res)).toBe(0);
    expect(w.x.sp_route(w.ctx, req, res + 2)).toBe(0);
    expect(w.x.sp_route(w.ctx + 4, req, res)).toBe(0);
    expect(w.x.sp_route(w.ctx, m.byteLength - 8, res)).toBe(0);
    expect(w.x.sp_route(w.ctx, req, m.byteLength - 8)).toBe(0);
    request(text, 8, m.byteLength - 2, 4);
    expect(w.x.sp_route(w.ctx, req, res)).toBe(0);
    request(0xfffffff0, 0x20, text, 4);
    expect(w.x.sp_route(w.ctx, req, res)).toBe(0);
    request(text, 0xffffffff, text, 0xffffffff);
    expect(w.x.sp_route(w.ctx, req, res)).toBe(0);
    // A section changed after attach (here: its magic) is not read.
    request(text, 8, text + 8, 4);
    m[w.routesAt] = 0;
    expect(w.x.sp_route(w.ctx, req, res)).toBe(0);
    w.x.sp_routes_detach(w.ctx);
    m[w.routesAt] = bytes[0] as number;
    expect(w.x.sp_route(w.ctx, req, res)).toBe(0);
  });

  it('never reads outside a section whose indices were corrupted after attach', () => {
    const w = wasmRouting();
    const { bytes } = compileSample();
    w.load(bytes);
    const view = new RoutesView(bytes);
    const m = w.memory();
    const dv = new DataView(m.buffer, w.routesAt, bytes.byteLength);
    // Every slot value, record field and target index set to garbage: routing must stay inside the section
    // (a wasm trap or a wrong read would fail the test) and answer something.
    for (let i = 0; i < view.slotCount; i++) {
      const at = view.slotOff + i * R_SLOT.size;
      if (dv.getUint32(at + R_SLOT.value, true) !== NONE) dv.setUint32(at + R_SLOT.value, 0x7fffffff, true);
      dv.setUint32(at + R_SLOT.key, 0xfffffff0, true);
    }
    for (let i = 0; i < view.recordCount; i++) {
      dv.setUint32(view.recOff + i * R_RECORD.size + R_RECORD.exactFirst, 0xffffff00, true);
      dv.setUint32(view.recOff + i * R_RECORD.size + R_RECORD.defaultTarget, 0x7fffffff, true);
    }
    dv.setUint32(R_HEADER.catchall, 0x12345678, true);
    dv.setUint32(R_HEADER.defaultTarget, 0x7fffffff, true);
    for (const [host, p] of [['shop.com', '/api/x'], ['x.shop.com', '/'], ['other', '/health']]) {
      expect(w.router.route({ host, path: p as string }).status).toBe(404);
    }
  });

  it('the router refuses a scratch too small for the section and an unattached route()', () => {
    const w = wasmRouting();
    const { bytes } = compileSample();
    const small = new IngressRouter({ exports: w.x, memory: w.memory, scratchOffset: w.scratch, scratchSize: 64 });
    expect(() => small.attach(bytes, w.routesAt)).toThrow(/too small/);
    expect(() => small.route({ host: 'a', path: '/' })).toThrow(/no routes section/);
    expect(routerScratchSize(new RoutesView(bytes))).toBeLessThan(2048);
    expect(() => new IngressRouter({ exports: w.x, memory: w.memory, scratchOffset: 4, scratchSize: 4096 })).toThrow(/8-aligned/);
  });

  it('keeps routing after core memory grows (views are rebuilt), after refresh(), and detaches', () => {
    const w = wasmRouting();
    w.load(compileSample().bytes);
    const before = w.router.route({ host: 'shop.com', path: '/api/x' });
    w.x.memory.grow(4);
    expect(w.router.route({ host: 'shop.com', path: '/api/x' })).toBe(before);
    w.router.refresh();
    expect(w.router.route({ host: 'shop.com', path: '/api/x' })).toBe(before);
    expect(new DataView(w.memory().buffer).getUint32(w.router.contextOffset, true)).toBe(w.routesAt);
    w.router.detach();
    expect(new DataView(w.memory().buffer).getUint32(w.router.contextOffset, true)).toBe(0);
    expect(() => w.router.route({ host: 'shop.com', path: '/' })).toThrow(/no routes section/);
  });

  it('attaches a section already in memory without copying (copy: false)', () => {
    const w = wasmRouting();
    const { bytes } = compileSample();
    w.ensure(w.routesAt + bytes.byteLength);
    w.memory().set(bytes, w.routesAt);
    w.router.attach(bytes, w.routesAt, { copy: false });
    expect(w.router.route({ host: 'admin.shop.com', path: '/' })).toMatchObject({ status: 200, ingress: 'ops/admin' });
    expect(w.router.trace({ host: 'nowhere', path: '/nope' })).toMatchObject({ status: 200, path: { match: 'default' }, host: { match: 'any', rule: '' } });
  });
});

describe('compiled bytes', () => {
  it('are identical for the same objects in any order, and placement-only for the seed', () => {
    const a = compileSample(7).bytes;
    const b = compileSample(7, [...sample()].reverse()).bytes;
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    const other = compileSample(12345).bytes;
    expect(Buffer.from(a).equals(Buffer.from(other))).toBe(false);
    const [ra, rb] = [new TableMatcher(a), new TableMatcher(other)];
    for (const [host, p] of [['shop.com', '/api/v'], ['x.shop.com', '/'], ['admin.shop.com', '/'], ['none', '/health'], ['none', '/x']]) {
      expect(ra.route({ host, path: p as string })).toEqual(rb.route({ host, path: p as string }));
    }
  });

  it('an empty plan compiles to a section that answers 404', () => {
    const { bytes } = compileRoutes({ hosts: [], wildcards: [], ingresses: [] });
    const w = wasmRouting();
    w.load(bytes);
    expect(w.router.route({ host: 'a.com', path: '/' })).toEqual({ status: 404 });
  });
});

// ---- differential: core vs reference vs TypeScript table matcher on random Ingress sets ----

const LABELS = ['a', 'b', 'ab'];
const ELEMENTS = ['a', 'b', 'aa', 'ab', 'A'];
const SERVICES = ['s1', 's2', 's3', 'gone']; // 'gone' has no Service: 503

const labelArb = fc.constantFrom(...LABELS);
const dnsArb = fc.array(labelArb, { minLength: 1, maxLength: 3 }).map((l) => l.join('.'));
const ruleHostArb = fc.oneof(
  { weight: 3, arbitrary: dnsArb },
  { weight: 2, arbitrary: fc.array(labelArb, { minLength: 1, maxLength: 2 }).map((l) => `*.${l.join('.')}`) },
  { weight: 1, arbitrary: fc.constant(undefined) },
);
const elementsArb = fc.array(fc.constantFrom(...ELEMENTS), { maxLength: 3 });
const rulePathArb = fc
  .record({ els: elementsArb, trailing: fc.boolean(), type: fc.constantFrom<PathType>('Exact', 'Prefix', 'ImplementationSpecific'), svc: fc.constantFrom(...SERVICES), port: fc.constantFrom<number | string>(80, 'http', 'alt', 81) })
  .map(({ els, trailing, type, svc, port }) => {
    const p = `/${els.join('/')}${trailing && els.length > 0 ? '/' : ''}`;
    return path(type === 'ImplementationSpecific' && els.length === 0 && trailing ? undefined : p, type, svc, port);
  });
const ingressArb = fc.record({
  rules: fc.array(fc.record({ host: ruleHostArb, paths: fc.array(rulePathArb, { minLength: 1, maxLength: 4 }) }), { maxLength: 4 }),
  defaultSvc: fc.option(fc.constantFrom(...SERVICES)),
  ns: fc.constantFrom('n1', 'n2'),
  created: fc.option(fc.integer({ min: 0, max: 3 })),
});
const ingressesArb = fc.array(ingressArb, { minLength: 1, maxLength: 4 }).map((list) =>
  list.map((spec, i) => {
    const rules = spec.rules.map((r) => rule(r.host, ...r.paths));
    const ingSpec: NonNullable<Ingress['spec']> = { rules };
    if (spec.defaultSvc !== null || rules.length === 0) ingSpec.defaultBackend = backend(spec.defaultSvc ?? 's1');
    const opts = spec.created === null ? { namespace: spec.ns } : { namespace: spec.ns, created: `2024-01-0${spec.created + 1}T00:00:00Z` };
    return ingress(`ing-${i}`, ingSpec, opts);
  }),
);

const requestHostArb = fc.oneof(
  dnsArb,
  fc.array(labelArb, { minLength: 1, maxLength: 4 }).map((l) => l.join('.')),
  dnsArb.map((h) => h.toUpperCase()),
  dnsArb.map((h) => `${h}:8080`),
  dnsArb.map((h) => `${h}.`),
  fc.constantFrom('', '.a', 'a..b', '[::1]:80', 'A.b:', 'ü.a'),
  fc.constant(undefined),
);
const requestPathArb = fc
  .record({ els: fc.array(fc.constantFrom(...ELEMENTS, '', 'aab', 'b.c'), { maxLength: 5 }), trailing: fc.boolean(), query: fc.boolean() })
  .map(({ els, trailing, query }) => `/${els.join('/')}${trailing ? '/' : ''}${query ? '?x=/a' : ''}`);

function expected(t: RouteTarget | undefined): RouteResult {
  if (!t) return { status: 404 };
  const r: RouteResult = { status: t.status, ingress: t.ingress, service: t.service };
  const port = t.servicePort ?? (typeof t.port === 'number' ? t.port : undefined);
  if (port) r.port = port;
  if (t.reason !== undefined) r.reason = t.reason;
  if (t.frontend) r.frontend = t.frontend;
  return r;
}

describe('differential: core == reference == table matcher', () => {
  it('on random Ingress sets and requests', () => {
    const w = wasmRouting();
    const services = [service('s1', '10.96.0.1', [['http', 80], ['alt', 8080]], 'n1'), service('s1', '10.96.1.1', [['http', 80]], 'n2'), service('s2', '10.96.0.2', [['http', 80], ['alt', 8080]], 'n1'), service('s2', '10.96.1.2', [['alt', 8080]], 'n2'), service('s3', '10.96.0.3', [['http', 80]], 'n1'), service('s3', '10.96.1.3', [['http', 80]], 'n2')];
    const resolveServicePort = serviceResolver(serviceMap(...services));
    let requests = 0;
    fc.assert(
      fc.property(ingressesArb, fc.array(fc.record({ host: requestHostArb, path: requestPathArb }), { minLength: 1, maxLength: 25 }), fc.integer({ min: 0, max: 0xffffffff }), (ingresses, reqs, seed) => {
        for (const ing of ingresses) expect(validateIngress(ing)).toEqual([]);
        const { plan } = planIngress({ ingresses }, { resolveServicePort });
        const { bytes } = compileRoutes(plan, { seed });
        w.load(bytes);
        const table = new TableMatcher(bytes);
        for (const r of reqs) {
          const req = r.host === undefined ? { path: r.path } : { host: r.host, path: r.path };
          const ref = referenceRoute(plan, req);
          const core = w.router.route(req);
          expect(core, JSON.stringify(req)).toEqual(expected(ref.target));
          expect(table.route(req), JSON.stringify(req)).toEqual(core);
          const trace = w.router.trace(req);
          if (ref.route) expect(trace.path).toEqual({ match: ref.route.pathType, key: ref.route.key });
          else expect(trace.path.match).toBe(ref.target ? 'default' : 'none');
          requests++;
        }
      }),
      { numRuns: 400 },
    );
    expect(requests).toBeGreaterThan(1000);
  });
});
