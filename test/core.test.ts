// The WebAssembly core as a module: valid, self-contained, ABI in step with the TypeScript layout, and
// safe against malformed images and out-of-range buffers.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import wabtInit from 'wabt';
import { WASM_PATH, createWasmCore, wasmModule } from '../src/engine/core.js';
import { STRUCT_SIZES, HEADER, ROOT, FLOW, RESULT } from '../src/compile/layout.js';
import { createDataplane, encodeFlow, encodeFlows } from '../src/engine/dataplane.js';
import { parseIp } from '../src/k8s/net.js';
import fc from 'fast-check';
import { murmur3 } from '../src/compile/murmur3.js';
import { ImageView } from '../src/compile/view.js';

const wasmBytes = new Uint8Array(readFileSync(WASM_PATH));

function sampleObjects(): object[] {
  return [
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web', namespace: 'default' },
      spec: { type: 'LoadBalancer', clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, nodePort: 30080 }], loadBalancerSourceRanges: ['10.0.0.0/8'] },
      status: { loadBalancer: { ingress: [{ ip: '203.0.113.5' }] } },
    },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'web-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web' } },
      addressType: 'IPv4',
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      endpoints: Array.from({ length: 300 }, (_, i) => ({ addresses: [`10.244.${i >> 8}.${i & 255}`], nodeName: i % 2 ? 'node-a' : 'node-b' })),
    },
  ];
}

describe('wasm module', () => {
  it('is a valid module for wabt (with bulk memory) and imports nothing from the host', async () => {
    const wabt = await wabtInit();
    const mod = wabt.readWasm(wasmBytes, { readDebugNames: false, bulk_memory: true });
    expect(() => mod.validate()).not.toThrow();
    const text = mod.toText({ foldExprs: false, inlineExport: false });
    expect(text).not.toMatch(/\(import /);
    expect(text).toMatch(/\(export "sp_select_batch"/);
    mod.destroy();
    expect(WebAssembly.Module.imports(wasmModule())).toEqual([]);
  });

  it('is small', () => {
    // Selection (~7 KB), Ingress matching (~6 KB) and the packet path (~24 KB: parsing, the fast path
    // (one copy per IP version, NAT steps inlined), conntrack, ICMP, the CRC32c table) at -O3.
    expect(wasmBytes.byteLength).toBeLessThan(48 * 1024);
  });

  it('has the struct layout the TypeScript compiler writes (sp_sizeof)', () => {
    // Core's constructor throws on any mismatch; check the table itself too.
    const core = createWasmCore({ affinityCapacity: 16 });
    expect(core).toBeDefined();
    expect(STRUCT_SIZES).toEqual([128, 32, 48, 24, 24, 24, 20, 40, 20, 48, 48, 32]);
  });

  it('hashes with murmur3_32 (known vector and agreement with the TypeScript murmur3)', () => {
    const core = createWasmCore({ affinityCapacity: 16 });
    // murmur3_32 known answers: "" seed 0 -> 0, "abcd" seed 0 -> 0x43ed676a (reference implementation).
    expect(murmur3(new Uint8Array(0), 0)).toBe(0);
    expect(murmur3(new TextEncoder().encode('abcd'), 0)).toBe(0x43ed676a);
    expect(murmur3(new TextEncoder().encode('Hello, world!'), 1234)).toBe(0xfaf6cdb3);
    for (let i = 0; i < 200; i++) {
      const key = new Uint8Array(20).map((_, j) => (i * 31 + j * 7) & 255);
      key[19] = 0;
      expect(core.hash20(key, i * 977)).toBe(murmur3(key, i * 977));
    }
  });
});

describe('image validation in the core', () => {
  it('rejects truncated, mislabelled and inconsistent images with a reason', async () => {
    const dp = await createDataplane({ node: 'node-a', nodeAddresses: ['192.168.0.1'], tableSeed: 7 });
    dp.apply(sampleObjects());
    const good = dp.image as Uint8Array;
    const core = createWasmCore({ affinityCapacity: 16 });
    core.loadImage(good);

    const badMagic = good.slice();
    badMagic[0] = 0;
    expect(() => core.loadImage(badMagic)).toThrow(/bad magic/);

    const badSize = good.slice();
    new DataView(badSize.buffer).setUint32(HEADER.imageSize, good.byteLength + 8, true);
    expect(() => core.loadImage(badSize)).toThrow(/size mismatch/);

    const badRoot = good.slice();
    new DataView(badRoot.buffer).setUint32(HEADER.root, good.byteLength - 4, true);
    expect(() => core.loadImage(badRoot)).toThrow(/root tables/);

    const badCap = good.slice();
    const root = new DataView(good.buffer).getUint32(HEADER.root, true);
    new DataView(badCap.buffer).setUint32(root + ROOT.feCap, 3, true);
    expect(() => core.loadImage(badCap)).toThrow(/root tables/);

    expect(() => core.loadImage(good.subarray(0, 50))).toThrow();
  });

  it('never crashes or reads outside memory on randomly corrupted images', async () => {
    const dp = await createDataplane({ node: 'node-a', nodeAddresses: ['192.168.0.1'], tableSeed: 7 });
    dp.apply(sampleObjects());
    const good = dp.image as Uint8Array;
    const flows = encodeFlows(
      Array.from({ length: 64 }, (_, i) => ({ protocol: 'TCP' as const, src: `10.1.${i}.${i}`, sport: 1000 + i, dst: i % 2 ? '10.96.0.10' : '203.0.113.5', dport: i % 2 ? 80 : 80 })),
    );
    const core = createWasmCore({ affinityCapacity: 16 });
    let seed = 12345;
    const rnd = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    let attached = 0;
    for (let round = 0; round < 300; round++) {
      const img = good.slice();
      const flips = 1 + rnd(8);
      for (let i = 0; i < flips; i++) img[rnd(img.length)] = rnd(256);
      try {
        core.loadImage(img);
      } catch {
        continue;
      }
      attached++;
      const { flows: fp, results } = core.batchBuffer();
      core.memory.set(flows, fp);
      core.selectBatchInPlace(64, 100);
      const res = core.memory.subarray(results, results + 64 * RESULT.size);
      for (let i = 0; i < 64; i++) {
        const v = new DataView(res.buffer, res.byteOffset + i * RESULT.size, RESULT.size);
        expect(v.getUint8(0)).toBeLessThanOrEqual(3);
        const be = v.getUint32(RESULT.backend, true);
        if (be !== 0xffffffff) expect(be + 24).toBeLessThanOrEqual(img.byteLength); // a backend inside the image
      }
    }
    expect(attached).toBeGreaterThan(50); // most flips land in data, not structure
  });

  it('refuses batches outside its memory', () => {
    const core = createWasmCore({ affinityCapacity: 16 });
    expect(() => core.selectBatchInPlace(0, 0)).not.toThrow();
    // A count whose buffers would run past the end of memory is refused by the core itself.
    const inst = core as unknown as { ctx: number; x: { sp_select_batch(ctx: number, a: number, b: number, c: number, d: number): number } };
    expect(inst.x.sp_select_batch(inst.ctx, 0, 0, 0x7fffffff, 0)).toBe(0);
    expect(inst.x.sp_select_batch(inst.ctx, 0xfffffff0, 0, 1, 0)).toBe(0);
    expect(inst.x.sp_select_batch(0xfffffff0, 0, 0, 1, 0)).toBe(0);
    expect(FLOW.size).toBe(40);
  });
});

describe('flow encoding', () => {
  // The layout sp_flow has in wasm/svcplane.h, written here from the addresses' 16-byte forms.
  const expected = (src: string, sport: number, dst: string, dport: number, proto: number): Uint8Array => {
    const b = new Uint8Array(FLOW.size);
    b.set((parseIp(src) as { bytes: Uint8Array }).bytes, FLOW.src);
    b.set((parseIp(dst) as { bytes: Uint8Array }).bytes, FLOW.dst);
    new DataView(b.buffer).setUint16(FLOW.sport, sport, true);
    new DataView(b.buffer).setUint16(FLOW.dport, dport, true);
    b[FLOW.proto] = proto;
    return b;
  };

  it('writes both addresses in their 16-byte form, ports little-endian and the protocol number', () => {
    const buf = new Uint8Array(FLOW.size * 2).fill(0xaa);
    encodeFlow(buf, FLOW.size, { protocol: 'UDP', src: '10.1.2.3', sport: 0x1234, dst: '10.96.0.10', dport: 53 });
    expect([...buf.subarray(FLOW.size)]).toEqual([
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3,
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 96, 0, 10,
      0x34, 0x12, 53, 0, 17, 0, 0, 0,
    ]);
    expect(buf.subarray(0, FLOW.size).every((x) => x === 0xaa)).toBe(true); // only its own bytes
    encodeFlow(buf, 0, { protocol: 'SCTP', src: '2001:db8::1', sport: 1, dst: '::ffff:10.96.0.10', dport: 2 });
    expect(buf.subarray(0, FLOW.size)).toEqual(expected('2001:db8::1', 1, '::ffff:10.96.0.10', 2, 132));
  });

  it('gives the same bytes for IPv4 (written without parseIp) as for any other address', () => {
    const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((a) => a.join('.'));
    const addr = fc.oneof(v4, fc.ipV6());
    fc.assert(
      fc.property(addr, addr, fc.nat(65535), fc.nat(65535), fc.constantFrom('TCP', 'UDP', 'SCTP') as fc.Arbitrary<'TCP' | 'UDP' | 'SCTP'>, (src, dst, sport, dport, protocol) => {
        const buf = new Uint8Array(FLOW.size).fill(0x55);
        encodeFlow(buf, 0, { protocol, src, sport, dst, dport });
        expect(buf).toEqual(expected(src, sport, dst, dport, { TCP: 6, UDP: 17, SCTP: 132 }[protocol]));
      }),
    );
  });

  it('rejects a bad address or protocol with a TypeError and writes nothing', () => {
    const ok = { protocol: 'TCP', src: '10.0.0.1', sport: 1, dst: '10.96.0.1', dport: 80 } as const;
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ src: '10.0.0.256' }, /invalid source address "10.0.0.256"/],
      [{ dst: 'web' }, /invalid destination address "web"/],
      [{ src: '2001:db8::1', dst: '10.96.0.01' }, /invalid destination address/],
      [{ protocol: 'ICMP' }, /unknown protocol "ICMP"/],
      [{ protocol: 'constructor' }, /unknown protocol "constructor"/],
      [{ protocol: 'toString' }, /unknown protocol "toString"/],
    ];
    for (const [change, message] of cases) {
      const buf = new Uint8Array(FLOW.size).fill(0x55);
      expect(() => encodeFlow(buf, 0, { ...ok, ...change } as unknown as Parameters<typeof encodeFlow>[2])).toThrow(message);
      expect(buf.every((x) => x === 0x55)).toBe(true);
    }
  });
});

describe('results', () => {
  it('describe() names the result it is given and refuses one outside the array', async () => {
    const dp = await createDataplane({ node: 'n', engine: 'wasm' });
    const results = new Uint8Array(RESULT.size * 2).fill(0xff);
    results[RESULT.size + RESULT.verdict] = 0; // pass
    results[RESULT.size + RESULT.reason] = 0;
    expect(dp.describe(results, 1).verdict).toBe('pass');
    expect(() => dp.describe(results, 2)).toThrow(RangeError);
    expect(() => dp.describe(results.subarray(0, RESULT.size - 1), 0)).toThrow(RangeError);
  });
});

describe('table image', () => {
  it('is deterministic: same objects in any order and split give identical bytes', async () => {
    const objs = sampleObjects();
    const a = await createDataplane({ node: 'node-a', nodeAddresses: ['192.168.0.1'], tableSeed: 3 });
    a.apply(objs);
    const b = await createDataplane({ node: 'node-a', nodeAddresses: ['192.168.0.1'], tableSeed: 3 });
    b.apply([objs[1] as object]);
    b.apply([objs[0] as object]);
    expect(Buffer.from(b.image as Uint8Array).equals(Buffer.from(a.image as Uint8Array))).toBe(true);
    const c = await createDataplane({ node: 'node-a', nodeAddresses: ['192.168.0.1'], tableSeed: 4 });
    c.apply(objs);
    expect(Buffer.from(c.image as Uint8Array).equals(Buffer.from(a.image as Uint8Array))).toBe(false);
  });

  it('uses the smallest Maglev entry width and the prime >= 100 x backends', async () => {
    const dp = await createDataplane({ node: 'node-a', nodeAddresses: ['192.168.0.1'], tableSeed: 3 });
    dp.apply(sampleObjects());
    const view = dp.tables as ImageView;
    const fe = [...view.frontends()].find((f) => f.kind === 'ClusterIP');
    const svc = view.service(fe?.slot ?? 0);
    const list = svc?.lists[svc.listInternal];
    if (!list) throw new Error('no ClusterIP frontend with a list');
    expect(list.beCount).toBe(300);
    expect(list.maglevSize).toBe(32749); // 100 x 300 = 30000 -> 32749
    expect(list.maglevWidth).toBe(2); // 300 backends do not fit u8
    const counts = new Array<number>(300).fill(0);
    for (let s = 0; s < list.maglevSize; s++) counts[view.maglevEntry(list, s)] = (counts[view.maglevEntry(list, s)] ?? 0) + 1;
    // Maglev with M > 100 N keeps every backend's share close to M/N (~109 slots here).
    expect(Math.min(...counts)).toBeGreaterThanOrEqual(100);
    expect(Math.max(...counts)).toBeLessThanOrEqual(111);
  });
});
