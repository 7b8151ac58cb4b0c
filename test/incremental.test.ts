// Incremental updates: any sequence of changes that reaches a state selects and dumps exactly like a full
// compile of that state, and space freed by changes is reused.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createDataplane, encodeFlows, type Dataplane } from '../src/engine/dataplane.js';
import { dumpTables } from '../src/dump.js';
import { FLOW, RESULT } from '../src/compile/layout.js';

// Node addresses and zone come from Node objects the sequences apply, so node changes are exercised too.
const NODE = { node: 'node-a', tableSeed: 99 };

function nodeObject(variant: number): object {
  const addresses = [
    [{ type: 'InternalIP', address: '192.168.10.11' }, { type: 'InternalIP', address: 'fd00:10::11' }],
    [{ type: 'InternalIP', address: '192.168.10.12' }],
    [{ type: 'ExternalIP', address: '203.0.113.200' }, { type: 'InternalIP', address: 'fd00:10::12' }],
  ][variant % 3];
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: 'node-a', labels: { 'topology.kubernetes.io/zone': variant % 2 ? 'zone-b' : 'zone-a' } },
    spec: { podCIDRs: variant % 2 ? ['10.244.1.0/24'] : [] },
    status: { addresses },
  };
}

interface SvcSpec {
  name: number;
  type: 'ClusterIP' | 'NodePort' | 'LoadBalancer';
  ports: number;
  dual: boolean;
  etpLocal: boolean;
  externalIP: number | null;
}

function service(s: SvcSpec): object {
  const v4 = `10.96.${s.name >> 8}.${s.name & 255}`;
  const v6 = `fd00:96::${s.name.toString(16)}`;
  const ports = Array.from({ length: s.ports }, (_, i) => ({
    name: `p${i}`,
    port: 80 + i,
    protocol: i % 3 === 2 ? 'UDP' : 'TCP',
    ...(s.type !== 'ClusterIP' ? { nodePort: 30000 + s.name * 4 + i } : {}),
  }));
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: `svc-${s.name}`, namespace: 'default' },
    spec: {
      type: s.type,
      clusterIP: v4,
      clusterIPs: s.dual ? [v4, v6] : [v4],
      ipFamilies: s.dual ? ['IPv4', 'IPv6'] : ['IPv4'],
      ...(s.dual ? { ipFamilyPolicy: 'RequireDualStack' } : {}),
      ports,
      ...(s.etpLocal && s.type !== 'ClusterIP' ? { externalTrafficPolicy: 'Local' } : {}),
      // Two services may claim one externalIP: the first by name must win whatever the history.
      ...(s.externalIP !== null ? { externalIPs: [`203.0.113.${s.externalIP}`] } : {}),
    },
    ...(s.type === 'LoadBalancer' ? { status: { loadBalancer: { ingress: [{ ip: `198.51.100.${s.name}` }] } } } : {}),
  };
}

function slice(svc: number, part: number, endpoints: number, seed: number, v6 = false): object {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `svc-${svc}-${v6 ? 'v6' : 'v4'}-${part}`, namespace: 'default', labels: { 'kubernetes.io/service-name': `svc-${svc}` } },
    addressType: v6 ? 'IPv6' : 'IPv4',
    ports: [0, 1, 2].map((i) => ({ name: `p${i}`, port: 8080 + i, protocol: i % 3 === 2 ? 'UDP' : 'TCP' })),
    endpoints: Array.from({ length: endpoints }, (_, i) => ({
      addresses: [v6 ? `fd00:244::${(svc * 64 + i).toString(16)}` : `10.244.${svc}.${i + 1}`],
      nodeName: (seed + i) % 3 === 0 ? 'node-a' : 'node-b',
      conditions: { ready: (seed + i) % 5 !== 0, serving: true, terminating: (seed + i) % 5 === 0 },
    })),
  };
}

type Op =
  | { op: 'svc'; spec: SvcSpec }
  | { op: 'slice'; svc: number; part: number; endpoints: number; seed: number; v6: boolean }
  | { op: 'delsvc'; svc: number }
  | { op: 'delslice'; svc: number; part: number; v6: boolean }
  | { op: 'node'; variant: number };

const svcId = fc.integer({ min: 1, max: 12 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    op: fc.constant('svc' as const),
    spec: fc.record({
      name: svcId,
      type: fc.constantFrom('ClusterIP' as const, 'NodePort' as const, 'LoadBalancer' as const),
      ports: fc.integer({ min: 1, max: 3 }),
      dual: fc.boolean(),
      etpLocal: fc.boolean(),
      externalIP: fc.option(fc.integer({ min: 1, max: 3 })),
    }),
  }),
  fc.record({ op: fc.constant('slice' as const), svc: svcId, part: fc.integer({ min: 0, max: 1 }), endpoints: fc.integer({ min: 0, max: 40 }), seed: fc.nat(100), v6: fc.boolean() }),
  fc.record({ op: fc.constant('delsvc' as const), svc: svcId }),
  fc.record({ op: fc.constant('delslice' as const), svc: svcId, part: fc.integer({ min: 0, max: 1 }), v6: fc.boolean() }),
  fc.record({ op: fc.constant('node' as const), variant: fc.integer({ min: 0, max: 5 }) }),
);

/** Applies one op; keeps `objects` (the resulting state, by key) in step. */
function applyOp(dp: Dataplane, objects: Map<string, object>, op: Op): void {
  if (op.op === 'svc') {
    const o = service(op.spec);
    expect(dp.apply([o])).toEqual([]);
    objects.set(`svc/${op.spec.name}`, o);
  } else if (op.op === 'slice') {
    const o = slice(op.svc, op.part, op.endpoints, op.seed, op.v6);
    expect(dp.apply([o])).toEqual([]);
    objects.set(`slice/${op.svc}/${op.part}/${op.v6}`, o);
  } else if (op.op === 'delsvc') {
    dp.delete('Service', 'default', `svc-${op.svc}`);
    objects.delete(`svc/${op.svc}`);
  } else if (op.op === 'delslice') {
    dp.delete('EndpointSlice', 'default', `svc-${op.svc}-${op.v6 ? 'v6' : 'v4'}-${op.part}`);
    objects.delete(`slice/${op.svc}/${op.part}/${op.v6}`);
  } else {
    const o = nodeObject(op.variant);
    expect(dp.apply([o])).toEqual([]);
    objects.set('node', o);
  }
}

function flowsFor(dp: Dataplane): Uint8Array {
  const flows = [];
  for (const fe of dp.tables.frontends()) {
    for (let i = 0; i < 6; i++) {
      const v6 = fe.address.includes(':');
      flows.push({ protocol: fe.protocol as 'TCP' | 'UDP', src: v6 ? `fd00:1::${i + 1}` : `10.1.${i}.${i + 7}`, sport: 1000 + i * 17, dst: fe.address, dport: fe.port });
    }
  }
  flows.push({ protocol: 'TCP' as const, src: '10.1.1.1', sport: 5, dst: '10.96.0.77', dport: 1 });
  return encodeFlows(flows);
}

/** What a selection result means, independent of where things sit in the image. */
function decoded(dp: Dataplane, flows: Uint8Array): string[] {
  const res = dp.selectBatch(flows, 1000);
  const out: string[] = [];
  for (let i = 0; i < res.length / RESULT.size; i++) {
    const s = dp.describe(res, i);
    out.push(`${s.verdict} ${s.reason} ${s.service ?? ''} ${s.backend ? `${s.backend.address}:${s.backend.port}` : ''} ${s.maglevSlot ?? ''}`);
  }
  return out;
}

describe('incremental updates', () => {
  it('any sequence of changes selects and dumps like a full compile of the final state', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 40 }), async (ops) => {
        const inc = await createDataplane(NODE);
        const objects = new Map<string, object>();
        for (const op of ops) applyOp(inc, objects, op);
        const full = await createDataplane(NODE);
        expect(full.apply([...objects.values()])).toEqual([]);
        expect(dumpTables(inc.tables).frontends).toEqual(dumpTables(full.tables).frontends);
        expect(inc.lastReport.errors).toEqual([]);
        const flows = flowsFor(full);
        expect(decoded(inc, flows)).toEqual(decoded(full, flows));
        // The canonical image does not depend on history either.
        expect(Buffer.from(inc.image).equals(Buffer.from(full.image))).toBe(true);
      }),
      { numRuns: 60 },
    );
  });

  it('reuses the space of replaced service blocks', async () => {
    const dp = await createDataplane(NODE);
    dp.apply([service({ name: 1, type: 'NodePort', ports: 2, dual: false, etpLocal: false, externalIP: null })]);
    for (let i = 0; i < 5; i++) dp.apply([slice(1, 0, 30, i)]);
    const settled = dp.imageStats.bytes;
    for (let i = 0; i < 500; i++) dp.apply([slice(1, 0, 30, i)]);
    expect(dp.imageStats.bytes).toBe(settled);
    // Deleting frees; adding the same shape again fits in the freed space.
    dp.delete('EndpointSlice', 'default', 'svc-1-v4-0');
    expect(dp.imageStats.freeBytes).toBeGreaterThan(0);
    dp.apply([slice(1, 0, 30, 1)]);
    expect(dp.imageStats.bytes).toBe(settled);
  });

  it('flowBatch: flows filled in core memory select as selectBatch does, and its views follow memory growth', async () => {
    const dp = await createDataplane(NODE);
    dp.apply([nodeObject(0), service({ name: 1, type: 'NodePort', ports: 3, dual: true, etpLocal: false, externalIP: null }), slice(1, 0, 3, 1)]);
    const batch = dp.flowBatch();
    const before = batch.flows;
    const run = (): [Uint8Array, Uint8Array] => {
      const all = flowsFor(dp);
      const n = Math.min(all.length / FLOW.size, batch.capacity);
      const flows = all.subarray(0, n * FLOW.size);
      batch.flows.set(flows);
      return [batch.select(n, 1000).slice(), dp.selectBatch(flows, 1000)];
    };
    const [a, b] = run();
    expect(a.length).toBe(b.length);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    expect(Array.from({ length: a.length / RESULT.size }, (_, i) => dp.describe(a, i).verdict)).toContain('forward');
    // Enough services to grow core memory: a view taken before may be detached; fresh ones work.
    const memoryBefore = before.buffer.byteLength;
    for (let i = 2; i < 400; i++) dp.apply([service({ name: i, type: 'ClusterIP', ports: 3, dual: true, etpLocal: false, externalIP: null }), slice(i, 0, 8, i)]);
    expect(batch.flows.buffer.byteLength).toBeGreaterThan(memoryBefore); // it grew
    expect(before.byteLength).toBe(0); // and the old view is detached
    expect(batch.flows.byteLength).toBe(batch.capacity * FLOW.size);
    const [c, d] = run();
    expect(Buffer.from(c).equals(Buffer.from(d))).toBe(true);
    expect(batch.select(0).length).toBe(0);
    expect(() => batch.select(batch.capacity + 1)).toThrow(/flow batch of \d+: must be a whole number from 0 to \d+/);
    expect(() => batch.select(1.5)).toThrow(RangeError);
  });

  it('grows the frontend map and slot table without losing entries', async () => {
    const dp = await createDataplane(NODE);
    dp.apply([nodeObject(0)]);
    const specs = Array.from({ length: 200 }, (_, i) => ({ name: i + 1, type: 'NodePort' as const, ports: 3, dual: true, etpLocal: false, externalIP: null }));
    for (const s of specs) dp.apply([service(s), slice(s.name, 0, 3, s.name)]);
    const dump = dumpTables(dp.tables);
    expect(dump.frontends.length).toBe(200 * 3 * (2 + 2)); // per port: ClusterIP v4/v6 + NodePort v4/v6
    for (const fe of dump.frontends.filter((f) => f.family === 'IPv4')) {
      const s = dp.select({ protocol: fe.protocol as 'TCP' | 'UDP', src: '10.9.9.9', sport: 999, dst: fe.address, dport: fe.port });
      expect(s.service).toBe(fe.service);
    }
  });
});
