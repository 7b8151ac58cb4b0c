// No torn reads: reader threads select over shared memory while the writer keeps changing the tables
// (a service's endpoints flipping between versions of different sizes, services added and removed so
// that the frontend map and slot table are rebuilt and flipped). Every answer must be one whole version.
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { createDataplane } from '../src/engine/dataplane.js';

function service(name: string, ip: string): object {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { clusterIP: ip, ports: [{ port: 80 }] } };
}

function slice(svc: string, prefix: string, count: number, port: number): object {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${svc}-1`, namespace: 'default', labels: { 'kubernetes.io/service-name': svc } },
    addressType: 'IPv4',
    ports: [{ name: '', port, protocol: 'TCP' }],
    endpoints: Array.from({ length: count }, (_, i) => ({ addresses: [`${prefix}${Math.floor(i / 250)}.${(i % 250) + 1}`] })),
  };
}

// Versions of default/flip: the address prefix tells the version, which fixes the port (and list size).
const VERSIONS = [slice('flip', '10.1.', 5, 1000), slice('flip', '10.2.', 50, 2000), slice('flip', '10.3.', 300, 3000)];

interface Report {
  batches: number;
  violations: number;
  examples: unknown[];
  seen: Record<string, number>;
}

describe('reader threads over shared memory', () => {
  it('never see a torn service while the writer updates in place', async () => {
    const dp = await createDataplane({ node: 'node-a', readers: 2, tableSeed: 5 });
    expect(dp.apply([service('flip', '10.96.0.1'), VERSIONS[0] as object, service('stable', '10.96.0.2'), slice('stable', '10.9.', 1, 9000)])).toEqual([]);
    const stop = new SharedArrayBuffer(4);
    const workers = [0, 1].map(
      (i) => new Worker(new URL('./fixtures/reader-worker.mjs', import.meta.url), { workerData: { handle: dp.readerHandle(i), stop } }),
    );
    const reports = workers.map(
      (w) =>
        new Promise<Report>((resolve, reject) => {
          w.once('message', resolve);
          w.once('error', reject);
        }),
    );
    const started = Date.now();
    let changes = 0;
    // At least 2.5 s and 150 changes (a loaded machine makes each change slower), at most 15 s.
    while ((Date.now() - started < 2500 || changes < 150) && Date.now() - started < 15000) {
      expect(dp.apply([VERSIONS[changes % 3] as object])).toEqual([]);
      // Churn: add and remove services so the frontend map and the slot table grow and are rebuilt.
      const n = changes % 400;
      if (changes % 800 < 400) dp.apply([service(`churn-${n}`, `10.97.${n >> 8}.${n & 255}`)]);
      else dp.delete('Service', 'default', `churn-${n}`);
      changes++;
      if (changes % 50 === 0) await new Promise((r) => setImmediate(r));
    }
    Atomics.store(new Int32Array(stop), 0, 1);
    const results = await Promise.all(reports);
    await Promise.all(workers.map((w) => w.terminate()));
    for (const r of results) {
      expect(r.violations, JSON.stringify(r.examples)).toBe(0);
      expect(r.batches).toBeGreaterThan(10);
      // Each reader saw every version and the stable service: the reads really overlapped the writes.
      expect(Object.values(r.seen).every((n) => n > 0), JSON.stringify(r.seen)).toBe(true);
    }
    expect(changes).toBeGreaterThan(100);
    // With the readers quiescent, everything retired has been freed for reuse.
    dp.apply([VERSIONS[0] as object]);
    expect(dp.imageStats.freeBytes).toBeGreaterThan(0);
  }, 20000);
});
