// The packet path: ns per packet of the wasm core (parse, conntrack, select, DNAT, checksums) against the
// TypeScript reference model of the same path (test/reference/packet-model.ts), in one process
// (npm run bench:packet). Writes bench/results/packet.json.
//
// Cluster: 1k ClusterIP services x 10 endpoints (bench/cluster.ts). Packets: 40-byte IPv4 TCP (SYN for
// new flows, ACK for established ones) to random services from random client pods.
// Cases, per engine (wasm, and native when the addon is built), one op = one batch of BATCH packets:
//   established, core        packets copied into core memory with one set(), one core call; every flow
//                            already has its conntrack entries
//   new flows, core          the same, but every packet is a new flow: each pass over the packet pool
//                            moves the clock past the SYN timeout, so all earlier entries are expired
//   replies, core            the backends' replies to the established flows (backend -> client): reverse NAT
//   established, processBatch  the public API: copy in, core call, rewritten bytes and verdicts copied out
//                            (into result arrays reused from batch to batch)
//   established / replies, 128k flows  the same over 2^17 flows in a 2^20-entry conntrack table (80 MiB),
//                            where nearly every packet's entries miss the caches; the native engine
//                            prefetches them (wasm cannot) and runs on huge pages (its default; the
//                            '4 KiB pages' cases without)
//   TS reference             the reference model on the same packets (established / new)
// Timed by benny one case after another, and again in interleaved rounds (every case in turn), since
// on a shared machine a burst of load would otherwise land on one case; ratios use the interleaved medians.
// Targets: wasm <= 40 ns/packet established, <= 80 ns/packet new, >= 10x the TypeScript reference
// (issue 3); native >= 1.3x wasm (issue 4).

import b from 'benny';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { Dataplane } from '../src/engine/dataplane.js';
import type { Core } from '../src/engine/core.js';
import { newBatchResult } from '../src/engine/packet.js';
import { PKT, REASON_KEYS } from '../src/engine/packet-layout.js';
import { ipv4, tcp } from '../test/helpers/packets.js';
import { NODE_NAME, nativeEngine, prng, syntheticCluster, type SyntheticCluster } from './cluster.js';
import { PacketModel } from '../test/reference/packet-model.js';
import { causeChain } from '../src/engine/native.js';

const SERVICES = 1000;
const BATCH = 256;
/** Distinct flows per case: 16 batches, so the conntrack working set is not one batch. */
const POOL_BATCHES = 16;
const CONNTRACK = 1 << 16;
/** The large cases: 2^17 established flows (forward and reply entries: a quarter of a 2^20-entry conntrack
 * table of 80 MiB, so that no probe window fills and evicts), far more than this machine's L2 holds, in
 * random order: nearly every packet's conntrack entry is a cache miss, as on a load balancer with many
 * concurrent flows. */
const LARGE_BATCHES = 512;
const LARGE_CONNTRACK = 1 << 20;
const LARGE = `${(LARGE_BATCHES * BATCH) / 1024}k flows`;
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

interface Pool {
  /** Batches of BATCH packets (POOL_BATCHES, or LARGE_BATCHES for the large cases), each contiguous. */
  batches: Uint8Array[];
}

function packetPool(cluster: SyntheticCluster, flags: number, seed: number, count = POOL_BATCHES): Pool {
  const next = prng(seed);
  const rnd = (): number => next() / 0x100000000; // [0, 1)
  const tcpServices = cluster.services.filter((s) => s.protocol === 'TCP');
  const batches: Uint8Array[] = [];
  for (let k = 0; k < count; k++) {
    const buf = new Uint8Array(BATCH * 40);
    for (let i = 0; i < BATCH; i++) {
      const svc = tcpServices[Math.floor(rnd() * tcpServices.length)] as (typeof tcpServices)[number];
      const src = `10.${1 + Math.floor(rnd() * 30)}.${Math.floor(rnd() * 256)}.${1 + Math.floor(rnd() * 250)}`;
      const sport = 1024 + Math.floor(rnd() * 60000);
      // 40 bytes: IPv4 + TCP without options or payload, valid checksums.
      buf.set(ipv4({ src, dst: svc.clusterIP, df: true }, tcp({ sport, dport: svc.port, flags })), i * 40);
    }
    batches.push(buf);
  }
  return { batches };
}

/**
 * The backends' replies to the established pool's flows (backend -> client, ACK), in the pool's order:
 * what the reverse NAT turns back into frontend -> client. The backends are read from a dataplane that
 * ran the pool (every engine and the model choose the same ones: Maglev tables and hashes are seeded).
 */
function replyPool(established: Pool, dp: BenchDataplane, run: Runner, start: number): Pool {
  for (const batch of established.batches) run.run(batch, start);
  return repliesOf(established, dp, start);
}

/** The reply pool of a pool whose flows `dp` tracks. */
function repliesOf(established: Pool, dp: BenchDataplane, start: number): Pool {
  const backendOf = new Map(dp.packets.conntrack(start).map((e) => [`${e.client.address}:${e.client.port}`, e.backend]));
  return { batches: established.batches.map((pool) => {
    const out = new Uint8Array(BATCH * 40);
    for (let i = 0; i < BATCH; i++) {
      const p = pool.subarray(i * 40, i * 40 + 40);
      const client = `${p[12]}.${p[13]}.${p[14]}.${p[15]}`;
      const cport = (p[20] as number) << 8 | (p[21] as number);
      const be = backendOf.get(`${client}:${cport}`);
      if (!be) throw new BenchCheckError(`no conntrack entry for established flow ${client}:${cport}`);
      out.set(ipv4({ src: be.address, dst: client, df: true }, tcp({ sport: be.port, dport: cport, flags: 0x10 })), i * 40);
    }
    return out;
  }) };
}

/** The packets of `pool` whose flow `dp` tracks, in order, in whole batches. */
function tracked(pool: Pool, dp: BenchDataplane, start: number): Pool {
  const live = new Set(dp.packets.conntrack(start).map((e) => `${e.client.address}:${e.client.port}`));
  const kept: Uint8Array[] = [];
  for (const batch of pool.batches) {
    for (let i = 0; i < BATCH; i++) {
      const p = batch.subarray(i * 40, i * 40 + 40);
      if (live.has(`${p[12]}.${p[13]}.${p[14]}.${p[15]}:${(p[20] as number) << 8 | (p[21] as number)}`)) kept.push(p);
    }
  }
  const batches: Uint8Array[] = [];
  for (let k = 0; (k + 1) * BATCH <= kept.length; k++) {
    const out = new Uint8Array(BATCH * 40);
    for (let i = 0; i < BATCH; i++) out.set(kept[k * BATCH + i] as Uint8Array, i * 40);
    batches.push(out);
  }
  return { batches };
}

interface CaseFigures {
  name: string;
  engine: string;
  /** ns per packet: benny's figures, then the interleaved rounds' (robust to bursts of load). */
  benny: { min: number; median: number; max: number; samples: number };
  interleaved: { min: number; median: number; max: number; rounds: number };
}

interface Case {
  name: string;
  engine: string;
  run: () => void;
}

const ROUNDS = 20;
const BATCHES_PER_ROUND = 200;
/** Untimed batches at the start of each case's turn (two passes over its pool): the previous case left
 * other data in the caches, and timing that refill would charge one case for another's working set. */
const WARM_BATCHES_PER_ROUND = 2 * POOL_BATCHES;

interface Runner {
  /** Copies one batch into core memory and runs it at time t. */
  run: (batch: Uint8Array, t: number) => void;
  /** The reasons of the last batch's packets. */
  reasons: () => Set<string>;
}

/** A dataplane with the cluster applied, and its core's packet buffers set up for one BATCH of 40-byte packets. */
function packetRunner(dp: BenchDataplane, cluster: SyntheticCluster): Runner {
  check(dp.apply(cluster.objects).length === 0, 'apply reported errors');
  const core = dp.benchCore;
  const buf = core.packetBuffers();
  const dv = (): DataView => new DataView(core.memory.buffer, core.memory.byteOffset);
  for (let i = 0; i < BATCH; i++) {
    const d = buf.descriptors + i * PKT.size;
    dv().setUint32(d + PKT.off, buf.data + i * 40, true);
    dv().setUint32(d + PKT.len, 40, true);
    dv().setUint32(d + PKT.replyOff, buf.replies + i * 1280, true);
  }
  return {
    run: (batch, t) => {
      core.memory.set(batch, buf.data);
      core.processPacketsInPlace(BATCH, t);
    },
    reasons: () => {
      const v = dv();
      return new Set(Array.from({ length: BATCH }, (_, i) => REASON_KEYS[v.getUint8(buf.descriptors + i * PKT.size + PKT.reason)] ?? '?'));
    },
  };
}

/**
 * The core-side cases of one engine, each checked before it is timed. The new-flow case runs on its own
 * dataplane: its clock runs ahead of the established cases' (to expire its own flows), and in a shared
 * conntrack table it would reclaim the established flows' entries as expired and turn the established
 * case into a mix of new and established flows.
 */
function engineCases(make: () => BenchDataplane, cluster: SyntheticCluster, established: Pool, fresh: Pool, replies: Pool, start: number): Case[] {
  const dp = make();
  const est = packetRunner(dp, cluster);
  for (const batch of established.batches) est.run(batch, start);
  est.run(established.batches[0] as Uint8Array, start);
  check(est.reasons().size === 1 && est.reasons().has('forward_established'), `${dp.engine}: established pool gave ${[...est.reasons()].join(', ')}`);
  let ek = 0;
  const runEst = (): void => est.run(established.batches[ek++ % POOL_BATCHES] as Uint8Array, start);
  est.run(replies.batches[0] as Uint8Array, start);
  check(est.reasons().size === 1 && est.reasons().has('reverse_nat'), `${dp.engine}: reply pool gave ${[...est.reasons()].join(', ')}`);
  let rk = 0;
  const runReply = (): void => est.run(replies.batches[rk++ % POOL_BATCHES] as Uint8Array, start);
  const neu = packetRunner(make(), cluster);
  let fk = 0;
  let freshNow = start;
  const runNew = (): void => {
    if (fk % POOL_BATCHES === 0) freshNow += 100; // past the SYN timeout: the pool's flows are new again
    neu.run(fresh.batches[fk++ % POOL_BATCHES] as Uint8Array, freshNow);
  };
  runNew();
  check(neu.reasons().size === 1 && neu.reasons().has('forward_new'), `${dp.engine}: new-flow pool gave ${[...neu.reasons()].join(', ')}`);
  const offsets = Uint32Array.from({ length: BATCH }, (_, i) => i * 40);
  const lengths = new Uint32Array(BATCH).fill(40);
  const scratch = new Uint8Array(BATCH * 40);
  let ak = 0;
  const results = newBatchResult(BATCH); // reused, as a caller running batch after batch would
  const api = (): void => {
    scratch.set(established.batches[ak++ % POOL_BATCHES] as Uint8Array);
    dp.packets.processBatch(scratch, offsets, lengths, start, results);
  };
  return [
    { name: `${dp.engine} established, core`, engine: dp.engine, run: runEst },
    { name: `${dp.engine} new flows, core`, engine: dp.engine, run: runNew },
    { name: `${dp.engine} replies (reverse NAT), core`, engine: dp.engine, run: runReply },
    { name: `${dp.engine} established, processBatch (copy in/out)`, engine: dp.engine, run: api },
  ];
}

/**
 * The large cases of one engine: established flows and their replies over LARGE_BATCHES batches of
 * distinct flows in a LARGE_CONNTRACK table; the reply pool is built from this engine's own entries.
 */
function largeCases(make: () => BenchDataplane, cluster: SyntheticCluster, pool: Pool, start: number, label: string): Case[] {
  const dp = make();
  const est = packetRunner(dp, cluster);
  for (const batch of pool.batches) est.run(batch, start);
  // A few flows of so many find their probe window full and evict another flow (counted): the pool keeps
  // the flows that are still tracked, in whole batches, so that every packet timed is established.
  const established = tracked(pool, dp, start);
  check(established.batches.length >= LARGE_BATCHES - 2, `${dp.engine}: only ${established.batches.length} batches of the large pool stay tracked`);
  const replies = repliesOf(established, dp, start);
  est.run(established.batches[0] as Uint8Array, start);
  check(est.reasons().size === 1 && est.reasons().has('forward_established'), `${dp.engine}: large established pool gave ${[...est.reasons()].join(', ')}`);
  est.run(replies.batches[0] as Uint8Array, start);
  check(est.reasons().size === 1 && est.reasons().has('reverse_nat'), `${dp.engine}: large reply pool gave ${[...est.reasons()].join(', ')}`);
  let ek = 0;
  let rk = 0;
  return [
    { name: `${dp.engine} established, ${LARGE}, core${label}`, engine: dp.engine, run: () => est.run(established.batches[ek++ % established.batches.length] as Uint8Array, start) },
    { name: `${dp.engine} replies, ${LARGE}, core${label}`, engine: dp.engine, run: () => est.run(replies.batches[rk++ % replies.batches.length] as Uint8Array, start) },
  ];
}

function referenceCases(dp: BenchDataplane, established: Pool, fresh: Pool, replies: Pool, start: number): Case[] {
  // Two models, for the reason engineCases gives two dataplanes.
  const model = new PacketModel(dp, { conntrackCapacity: CONNTRACK });
  const newModel = new PacketModel(dp, { conntrackCapacity: CONNTRACK });
  const offsets = Uint32Array.from({ length: BATCH }, (_, i) => i * 40);
  const lengths = new Uint32Array(BATCH).fill(40);
  const scratch = new Uint8Array(BATCH * 40);
  for (const batch of established.batches) model.processBatch(batch.slice(), offsets, lengths, start);
  const m = model.processBatch((established.batches[0] as Uint8Array).slice(), offsets, lengths, start);
  check(m.reasons.every((r) => REASON_KEYS[r] === 'forward_established'), 'the model does not see the pool as established');
  const mr = model.processBatch((replies.batches[0] as Uint8Array).slice(), offsets, lengths, start);
  check(mr.reasons.every((r) => REASON_KEYS[r] === 'reverse_nat'), 'the model does not reverse-NAT the reply pool');
  let yk = 0;
  const reply = (): void => {
    scratch.set(replies.batches[yk++ % POOL_BATCHES] as Uint8Array);
    model.processBatch(scratch, offsets, lengths, start);
  };
  let rk = 0;
  const est = (): void => {
    scratch.set(established.batches[rk++ % POOL_BATCHES] as Uint8Array);
    model.processBatch(scratch, offsets, lengths, start);
  };
  let nk = 0;
  let modelNow = start;
  const fresh1 = (): void => {
    if (nk % POOL_BATCHES === 0) modelNow += 100;
    scratch.set(fresh.batches[nk++ % POOL_BATCHES] as Uint8Array);
    newModel.processBatch(scratch, offsets, lengths, modelNow);
  };
  fresh1();
  return [
    { name: 'TS reference established', engine: 'ts', run: est },
    { name: 'TS reference new flows', engine: 'ts', run: fresh1 },
    { name: 'TS reference replies', engine: 'ts', run: reply },
  ];
}

function stats(xs: number[]): { min: number; median: number; max: number } {
  const s = [...xs].sort((a, b2) => a - b2);
  return { min: s[0] ?? NaN, median: s[Math.floor(s.length / 2)] ?? NaN, max: s[s.length - 1] ?? NaN };
}

async function main(): Promise<void> {
  const loadAtStart = loadavg()[0] ?? NaN;
  const cluster = syntheticCluster(SERVICES);
  const established = packetPool(cluster, 0x10, 11);
  const fresh = packetPool(cluster, 0x02, 12);
  const start = 1_000_000;
  const dataplane = (engine: 'wasm' | 'native', conntrackCapacity = CONNTRACK, hugePages?: boolean) => (): BenchDataplane =>
    new BenchDataplane({ node: NODE_NAME, tableSeed: 7, engine, conntrackCapacity, ...(hugePages === undefined ? {} : { hugePages }) });
  const engines: ('wasm' | 'native')[] = ['wasm'];
  try {
    nativeEngine(); // finds the addon beside the sources (this file also runs from build/bench/)
    engines.push('native');
  } catch (err) {
    console.log(`native engine unavailable, wasm and TS only: ${causeChain(err)}`);
  }
  const cases: Case[] = [];
  const first = dataplane('wasm')();
  const replies = replyPool(established, first, packetRunner(first, cluster), start);
  for (const engine of engines) cases.push(...engineCases(dataplane(engine), cluster, established, fresh, replies, start));
  const large = packetPool(cluster, 0x10, 13, LARGE_BATCHES);
  for (const engine of engines) cases.push(...largeCases(dataplane(engine, LARGE_CONNTRACK), cluster, large, start, ''));
  if (engines.includes('native')) cases.push(...largeCases(dataplane('native', LARGE_CONNTRACK, false), cluster, large, start, ', 4 KiB pages'));
  const referenceDp = dataplane('wasm')();
  check(referenceDp.apply(cluster.objects).length === 0, 'apply reported errors');
  cases.push(...referenceCases(referenceDp, established, fresh, replies, start));

  for (const c of cases) for (let i = 0; i < (c.engine === 'ts' ? WARMUP_CALLS / 10 : WARMUP_CALLS); i++) c.run();

  const summary = await b.suite(
    `packet path, ${SERVICES} services x 10 endpoints, ${BATCH} packets per batch`,
    ...cases.map((c) => b.add(c.name, c.run, CASE_OPTIONS)),
    b.cycle((r) => `  ${r.name}: ${((r.details.median * 1e9) / BATCH).toFixed(2)} ns/packet median (${r.samples} samples)`),
  );
  // Interleaved rounds: every case in turn, so that a burst of load on the shared machine hits them all.
  const rounds = new Map<string, number[]>(cases.map((c) => [c.name, []]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const c of cases) {
      if (process.env.NOTS && c.engine === 'ts') continue;
      if (process.env.ONLY && !c.name.includes(process.env.ONLY)) continue;
      const n = c.engine === 'ts' ? Math.max(1, BATCHES_PER_ROUND / 10) : BATCHES_PER_ROUND;
      for (let i = 0; i < (c.engine === 'ts' ? 1 : WARM_BATCHES_PER_ROUND); i++) c.run();
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < n; i++) c.run();
      rounds.get(c.name)?.push(Number(process.hrtime.bigint() - t0) / n / BATCH);
    }
  }
  const ns = (sec: number): number => (sec * 1e9) / BATCH;
  const figures: CaseFigures[] = cases.map((c) => {
    const r = summary.results.find((x) => x.name === c.name);
    return {
      name: c.name, engine: c.engine,
      benny: { min: ns(r?.details.min ?? NaN), median: ns(r?.details.median ?? NaN), max: ns(r?.details.max ?? NaN), samples: r?.samples ?? 0 },
      interleaved: { ...stats(rounds.get(c.name) ?? []), rounds: ROUNDS },
    };
  });
  const med = (name: string): number => figures.find((f) => f.name === name)?.interleaved.median ?? NaN;
  console.log(`\n${SERVICES} services x 10 endpoints, ${BATCH} packets/batch, conntrack ${CONNTRACK} entries; ns/packet`);
  console.log('  interleaved: median      min      max |  benny median  case');
  for (const f of figures) {
    const x = (v: number): string => v.toFixed(1).padStart(9);
    console.log(`             ${x(f.interleaved.median)}${x(f.interleaved.min)}${x(f.interleaved.max)} | ${x(f.benny.median)}     ${f.name}`);
  }
  const ratios: Record<string, number> = {
    'wasm vs TS, established': med('TS reference established') / med('wasm established, core'),
    'wasm vs TS, new flows': med('TS reference new flows') / med('wasm new flows, core'),
    'wasm vs TS, replies': med('TS reference replies') / med('wasm replies (reverse NAT), core'),
  };
  if (engines.length > 1) {
    ratios['native vs wasm, established'] = med('wasm established, core') / med('native established, core');
    ratios['native vs wasm, new flows'] = med('wasm new flows, core') / med('native new flows, core');
    ratios['native vs wasm, replies'] = med('wasm replies (reverse NAT), core') / med('native replies (reverse NAT), core');
    ratios[`native vs wasm, established, ${LARGE}`] = med(`wasm established, ${LARGE}, core`) / med(`native established, ${LARGE}, core`);
    ratios[`native vs wasm, replies, ${LARGE}`] = med(`wasm replies, ${LARGE}, core`) / med(`native replies, ${LARGE}, core`);
    ratios['native vs wasm, processBatch'] = med('wasm established, processBatch (copy in/out)') / med('native established, processBatch (copy in/out)');
  }
  for (const [k, v] of Object.entries(ratios)) console.log(`  ${k}: ${v.toFixed(2)}x`);
  const est = med('wasm established, core');
  const neu = med('wasm new flows, core');
  const met = est <= TARGETS.established && neu <= TARGETS.newFlows &&
    (ratios['wasm vs TS, established'] ?? 0) >= TARGETS.speedup && (ratios['wasm vs TS, new flows'] ?? 0) >= TARGETS.speedup;
  const loadEnd = loadavg()[0] ?? NaN;
  if (Math.max(loadAtStart, loadEnd) > cpus().length) {
    console.log(`\nnote: load average ${loadAtStart.toFixed(1)} -> ${loadEnd.toFixed(1)} on ${cpus().length} cores: trust mins and ratios over medians`);
  }
  console.log(`\ntarget (wasm): <= ${TARGETS.established} ns established, <= ${TARGETS.newFlows} ns new, >= ${TARGETS.speedup}x the TS reference: ` +
    `${est.toFixed(1)} ns, ${neu.toFixed(1)} ns -> ${met ? 'MET' : 'NOT MET'}`);
  const cpu = cpus();
  mkdirSync(new URL('../../bench/results/', import.meta.url), { recursive: true });
  const file = new URL('../../bench/results/packet.json', import.meta.url);
  writeFileSync(file, `${JSON.stringify({
    benchmark: 'packet', date: new Date().toISOString(), engines: cases.filter((c) => c.engine !== 'ts' && c.name.endsWith('established, core')).map((c) => c.engine),
    machine: { cpu: cpu[0]?.model ?? 'unknown', cores: cpu.length, memoryGiB: Number((totalmem() / 2 ** 30).toFixed(1)), node: process.version, loadAverage: { start: loadAtStart, end: loadEnd } },
    method: { services: SERVICES, batch: BATCH, poolBatches: POOL_BATCHES, conntrack: CONNTRACK, largeBatches: LARGE_BATCHES, largeConntrack: LARGE_CONNTRACK, warmupCallsPerCase: WARMUP_CALLS, benny: CASE_OPTIONS, rounds: ROUNDS, batchesPerRound: BATCHES_PER_ROUND, warmBatchesPerRound: WARM_BATCHES_PER_ROUND },
    cases: figures, ratios, target: { established: est, newFlows: neu, goals: TARGETS, met },
  }, null, 2)}\n`);
  console.log(`wrote ${file.pathname}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
