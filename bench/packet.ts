// The packet path: ns per packet of the wasm core (parse, conntrack, select, DNAT, checksums) against the
// TypeScript reference model of the same path (test/reference/packet-model.ts), in one process
// (npm run bench:packet). Writes bench/results/packet.json.
//
// Cluster: 1k ClusterIP services x 10 endpoints (bench/cluster.ts). Packets: 40-byte IPv4 TCP (SYN for
// new flows, ACK for established ones) to random services from random client pods.
// Cases (one benny op = one batch of BATCH packets):
//   established, core        packets copied into core memory with one set(), one core call; every flow
//                            already has its conntrack entries
//   new flows, core          the same, but every packet is a new flow: each pass over the packet pool
//                            moves the clock past the SYN timeout, so all earlier entries are expired
//   established, processBatch  the public API: copy in, core call, rewritten bytes and verdicts copied out
//   ... TS reference         the reference model on the same packets (established / new)
// Targets: <= 40 ns/packet established, <= 80 ns/packet new, >= 10x the TypeScript reference.

import b from 'benny';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { Dataplane } from '../src/engine/dataplane.js';
import type { Core } from '../src/engine/core.js';
import { PKT, REASON_KEYS } from '../src/engine/packet-layout.js';
import { parseIp } from '../src/k8s/net.js';
import { NODE_NAME, prng, syntheticCluster, type SyntheticCluster } from './cluster.js';
import { PacketModel } from '../test/reference/packet-model.js';

const SERVICES = 1000;
const BATCH = 256;
/** Distinct flows per case: 16 batches, so the conntrack working set is not one batch. */
const POOL_BATCHES = 16;
const CONNTRACK = 1 << 16;
const WARMUP_CALLS = 3000;
const CASE_OPTIONS = { minSamples: 40, maxTime: 4, minTime: 0.05, delay: 0.005 };
const TARGETS = { established: 40, newFlows: 80, speedup: 10 };

class BenchCheckError extends Error {}
function check(cond: boolean, message: string): void {
  if (!cond) throw new BenchCheckError(`sanity check failed: ${message}`);
}

/** Exposes the protected core (the public API stays untouched). */
class BenchDataplane extends Dataplane {
  get benchCore(): Core {
    return this.core;
  }
}

function sum16(p: Uint8Array, from: number, to: number, acc = 0): number {
  for (let i = from; i < to; i += 2) acc += ((p[i] as number) << 8) | (p[i + 1] as number);
  while (acc > 0xffff) acc = (acc & 0xffff) + (acc >>> 16);
  return acc;
}

/** A 40-byte IPv4 TCP packet with valid checksums. */
function tcpPacket(src: Uint8Array, sport: number, dst: Uint8Array, dport: number, flags: number): Uint8Array {
  const p = new Uint8Array(40);
  p[0] = 0x45; p[3] = 40; p[6] = 0x40; p[8] = 64; p[9] = 6;
  p.set(src.subarray(12), 12);
  p.set(dst.subarray(12), 16);
  const ipc = ~sum16(p, 0, 20) & 0xffff;
  p[10] = ipc >> 8; p[11] = ipc & 255;
  p[20] = sport >> 8; p[21] = sport & 255; p[22] = dport >> 8; p[23] = dport & 255;
  p[24] = 0x12; p[25] = 0x34; p[32] = 0x50; p[33] = flags; p[34] = 0xff; p[35] = 0xff;
  const pseudo = sum16(p, 12, 20, 6 + 20);
  const c = ~sum16(p, 20, 40, pseudo) & 0xffff;
  p[36] = c >> 8; p[37] = c & 255;
  return p;
}

interface Pool {
  /** POOL_BATCHES batches of BATCH packets, each batch contiguous. */
  batches: Uint8Array[];
}

function packetPool(cluster: SyntheticCluster, flags: number, seed: number): Pool {
  const rnd = prng(seed);
  const tcp = cluster.services.filter((s) => s.protocol === 'TCP');
  const batches: Uint8Array[] = [];
  for (let k = 0; k < POOL_BATCHES; k++) {
    const buf = new Uint8Array(BATCH * 40);
    for (let i = 0; i < BATCH; i++) {
      const svc = tcp[Math.floor(rnd() * tcp.length)] as (typeof tcp)[number];
      const src = parseIp(`10.${1 + Math.floor(rnd() * 30)}.${Math.floor(rnd() * 256)}.${1 + Math.floor(rnd() * 250)}`)?.bytes as Uint8Array;
      const sport = 1024 + Math.floor(rnd() * 60000);
      buf.set(tcpPacket(src, sport, parseIp(svc.clusterIP)?.bytes as Uint8Array, svc.port, flags), i * 40);
    }
    batches.push(buf);
  }
  return { batches };
}

interface CaseFigures {
  name: string;
  nsPerPacket: { min: number; median: number; mean: number; max: number };
  samples: number;
  speedupVsReference?: number;
}

async function main(): Promise<void> {
  const loadAtStart = loadavg()[0] ?? NaN;
  const cluster = syntheticCluster(SERVICES);
  const dp = new BenchDataplane({ node: NODE_NAME, tableSeed: 7, engine: process.env.SVCPLANE_BENCH_ENGINE === 'native' ? 'native' : 'wasm', conntrackCapacity: CONNTRACK });
  check(dp.apply(cluster.objects).length === 0, 'apply reported errors');
  const core = dp.benchCore;
  const buf = core.packetBuffers();
  const model = new PacketModel(dp, { conntrackCapacity: CONNTRACK });

  const established = packetPool(cluster, 0x10, 11);
  const fresh = packetPool(cluster, 0x02, 12);
  const offsets = Uint32Array.from({ length: BATCH }, (_, i) => i * 40);
  const lengths = new Uint32Array(BATCH).fill(40);
  const now = 1_000_000;

  // Descriptors once: packet i of a batch at data + 40 i; the bytes are re-copied before every call.
  const dv = (): DataView => new DataView(core.memory.buffer, core.memory.byteOffset);
  for (let i = 0; i < BATCH; i++) {
    const d = buf.descriptors + i * PKT.size;
    dv().setUint32(d + PKT.off, buf.data + i * 40, true);
    dv().setUint32(d + PKT.len, 40, true);
    dv().setUint32(d + PKT.replyOff, buf.replies + i * 1280, true);
  }
  const runCore = (batch: Uint8Array, t: number): void => {
    core.memory.set(batch, buf.data);
    core.processPacketsInPlace(BATCH, t);
  };
  const reasonsOfLastCoreBatch = (): string[] => {
    const v = dv();
    return Array.from({ length: BATCH }, (_, i) => REASON_KEYS[v.getUint8(buf.descriptors + i * PKT.size + PKT.reason)] ?? '?');
  };

  // Establish the pool's flows in the core and in the model, then check that they are hits.
  for (const batch of established.batches) runCore(batch, now);
  for (const batch of established.batches) model.processBatch(batch.slice(), offsets, lengths, now);
  runCore(established.batches[0] as Uint8Array, now);
  check(reasonsOfLastCoreBatch().every((r) => r === 'forward_established'), `established pool: ${[...new Set(reasonsOfLastCoreBatch())].join(', ')}`);
  const m = model.processBatch((established.batches[0] as Uint8Array).slice(), offsets, lengths, now);
  check(m.reasons.every((r) => REASON_KEYS[r] === 'forward_established'), 'the model does not see the pool as established');

  let ek = 0;
  const estCore = (): void => {
    runCore(established.batches[ek++ % POOL_BATCHES] as Uint8Array, now);
  };
  let fk = 0;
  let freshNow = now + 100_000;
  const newCore = (): void => {
    if (fk % POOL_BATCHES === 0) freshNow += 100; // past the SYN timeout: the pool's flows are new again
    runCore(fresh.batches[fk++ % POOL_BATCHES] as Uint8Array, freshNow);
  };
  newCore();
  check(reasonsOfLastCoreBatch().every((r) => r === 'forward_new'), `new-flow pool: ${[...new Set(reasonsOfLastCoreBatch())].join(', ')}`);
  const scratch = new Uint8Array(BATCH * 40);
  let ak = 0;
  const estApi = (): void => {
    scratch.set(established.batches[ak++ % POOL_BATCHES] as Uint8Array);
    dp.packets.processBatch(scratch, offsets, lengths, now);
  };
  let rk = 0;
  const estModel = (): void => {
    scratch.set(established.batches[rk++ % POOL_BATCHES] as Uint8Array);
    model.processBatch(scratch, offsets, lengths, now);
  };
  let nk = 0;
  let modelNow = now + 100_000;
  const newModel = (): void => {
    if (nk % POOL_BATCHES === 0) modelNow += 100;
    scratch.set(fresh.batches[nk++ % POOL_BATCHES] as Uint8Array);
    model.processBatch(scratch, offsets, lengths, modelNow);
  };

  for (const run of [estCore, newCore, estApi]) for (let i = 0; i < WARMUP_CALLS; i++) run();
  for (const run of [estModel, newModel]) for (let i = 0; i < WARMUP_CALLS / 10; i++) run();

  const EST_CORE = 'established, core';
  const NEW_CORE = 'new flows, core';
  const EST_API = 'established, processBatch (copy in/out)';
  const EST_REF = 'established, TS reference';
  const NEW_REF = 'new flows, TS reference';
  const summary = await b.suite(
    `packet path, ${SERVICES} services x 10 endpoints, ${BATCH} packets per batch`,
    b.add(EST_CORE, estCore, CASE_OPTIONS),
    b.add(NEW_CORE, newCore, CASE_OPTIONS),
    b.add(EST_API, estApi, CASE_OPTIONS),
    b.add(EST_REF, estModel, CASE_OPTIONS),
    b.add(NEW_REF, newModel, CASE_OPTIONS),
    b.cycle((r) => `  ${r.name}: ${((r.details.median * 1e9) / BATCH).toFixed(2)} ns/packet median (${r.samples} samples)`),
  );
  // Still what was verified: the timed paths must not have drifted into another verdict.
  estCore();
  check(reasonsOfLastCoreBatch().every((r) => r === 'forward_established'), 'established pool changed during timing');

  const ns = (s: number): number => (s * 1e9) / BATCH;
  const byName = new Map(summary.results.map((r) => [r.name, r]));
  const median = (name: string): number => ns(byName.get(name)?.details.median ?? NaN);
  const cases: CaseFigures[] = summary.results.map((r) => ({
    name: r.name,
    nsPerPacket: { min: ns(r.details.min), median: ns(r.details.median), mean: ns(r.details.mean), max: ns(r.details.max) },
    samples: r.samples,
  }));
  for (const c of cases) {
    if (c.name.startsWith('established') && c.name !== EST_REF) c.speedupVsReference = median(EST_REF) / c.nsPerPacket.median;
    if (c.name === NEW_CORE) c.speedupVsReference = median(NEW_REF) / c.nsPerPacket.median;
  }
  console.log(`\n${dp.engine} engine, ${SERVICES} services x 10 endpoints, ${BATCH} packets/batch, conntrack ${CONNTRACK} entries`);
  console.log('  ns/packet:   median      min      max   vs TS reference  case');
  for (const c of cases) {
    const f = (v: number): string => v.toFixed(2).padStart(9);
    console.log(`          ${f(c.nsPerPacket.median)}${f(c.nsPerPacket.min)}${f(c.nsPerPacket.max)}   ${c.speedupVsReference ? `${c.speedupVsReference.toFixed(1).padStart(6)}x` : '       '}         ${c.name}`);
  }
  const target = {
    established: median(EST_CORE), newFlows: median(NEW_CORE),
    speedupEstablished: median(EST_REF) / median(EST_CORE), speedupNew: median(NEW_REF) / median(NEW_CORE),
  };
  const met = target.established <= TARGETS.established && target.newFlows <= TARGETS.newFlows &&
    target.speedupEstablished >= TARGETS.speedup && target.speedupNew >= TARGETS.speedup;
  const loadEnd = loadavg()[0] ?? NaN;
  if (Math.max(loadAtStart, loadEnd) > cpus().length) {
    console.log(`\nnote: load average ${loadAtStart.toFixed(1)} -> ${loadEnd.toFixed(1)} on ${cpus().length} cores: trust mins and ratios over medians`);
  }
  console.log(`\ntarget: <= ${TARGETS.established} ns established, <= ${TARGETS.newFlows} ns new, >= ${TARGETS.speedup}x the TS reference: ` +
    `${target.established.toFixed(1)} ns, ${target.newFlows.toFixed(1)} ns, ${target.speedupEstablished.toFixed(1)}x / ${target.speedupNew.toFixed(1)}x -> ${met ? 'MET' : 'NOT MET'}`);
  const cpu = cpus();
  mkdirSync(new URL('../../bench/results/', import.meta.url), { recursive: true });
  const file = new URL(`../../bench/results/packet${dp.engine === 'wasm' ? '' : `-${dp.engine}`}.json`, import.meta.url);
  writeFileSync(file, `${JSON.stringify({
    benchmark: 'packet', date: new Date().toISOString(), engine: dp.engine,
    machine: { cpu: cpu[0]?.model ?? 'unknown', cores: cpu.length, memoryGiB: Number((totalmem() / 2 ** 30).toFixed(1)), node: process.version, loadAverage: { start: loadAtStart, end: loadEnd } },
    method: { services: SERVICES, batch: BATCH, poolBatches: POOL_BATCHES, conntrack: CONNTRACK, warmupCallsPerCase: WARMUP_CALLS, benny: CASE_OPTIONS },
    cases, target: { ...target, goals: TARGETS, met },
  }, null, 2)}\n`);
  console.log(`wrote ${file.pathname}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
