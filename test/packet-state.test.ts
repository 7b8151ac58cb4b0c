// The packet path's saved flow state (PacketPath.saveState / loadState, `replay --save-state` /
// `--load-state`, `dump ... conntrack --load-state`): a replay cut in two with the state carried across
// gives what the whole replay gives, on every pair of engines; the loaded flows name their frontends by
// the loading tables, are checked against them, and keep their session affinity; a bad file changes
// nothing. The engine is whichever createDataplane picks (the suite also runs with SVCPLANE_ENGINE=wasm).

import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { runCli } from '../src/cli/main.js';
import { createDataplane, type Dataplane, type DataplaneOptions } from '../src/engine/dataplane.js';
import { readManifestPaths } from '../src/k8s/load.js';
import { StateError } from '../src/engine/packet.js';
import { CT } from '../src/engine/packet-layout.js';
import { decodeState } from '../src/engine/packet-state.js';
import { loadNative } from '../src/engine/native.js';
import { readCapture, writePcap, type Capture } from '../src/packet/pcap.js';
import { replayCapture } from '../src/packet/replay.js';
import { clusterIP, ready, slice } from './helpers/objects.js';
import { TCP_FLAGS, ipv4, parse, tcp } from './helpers/packets.js';

const EXAMPLE_DIR = new URL('../examples/cluster', import.meta.url).pathname;
const CAPTURE = readCapture(new Uint8Array(readFileSync(new URL('../examples/captures/node-a.pcap', import.meta.url))));
const exampleObjects = (await readManifestPaths([EXAMPLE_DIR])).objects.map((o) => o.object);

const nativeBuilt = ((): boolean => {
  try {
    loadNative();
    return true;
  } catch {
    return false;
  }
})();
const ENGINES: ('wasm' | 'native')[] = (['wasm', 'native'] as const).filter((e) => (e === 'wasm' || nativeBuilt) && (!process.env.SVCPLANE_ENGINE || e === process.env.SVCPLANE_ENGINE));

async function exampleDataplane(engine?: 'wasm' | 'native'): Promise<Dataplane> {
  const dp = await createDataplane({ node: 'node-a', tableSeed: 0, ...(engine ? { engine } : {}) });
  expect(dp.apply(exampleObjects)).toEqual([]);
  return dp;
}

const part = (c: Capture, from: number, to?: number): Capture => ({ ...c, records: c.records.slice(from, to) });

/** A saved state with the conntrack entries' generation stamps cleared. */
function unstamped(bytes: Uint8Array): ReturnType<typeof decodeState> {
  const s = decodeState(bytes);
  for (const e of s.conntrack) e.bytes.fill(0, CT.gen, CT.gen + 4);
  return s;
}

describe('flow state: a replay cut in two', () => {
  it('gives the whole replay\'s packets, verdicts and flows at every cut, from each engine to each', async () => {
    const whole = replayCapture(await exampleDataplane('wasm'), CAPTURE);
    const wholeDp = await exampleDataplane('wasm');
    replayCapture(wholeDp, CAPTURE);
    const flows = wholeDp.packets.conntrack(whole.summary.lastTime);
    expect(flows.length).toBeGreaterThan(0);
    let repliesAfterCut = 0;
    for (const saver of ENGINES) {
      for (const loader of ENGINES) {
        for (let cut = 1; cut < CAPTURE.records.length; cut++) {
          const first = await exampleDataplane(saver);
          replayCapture(first, part(CAPTURE, 0, cut));
          const state = first.packets.saveState(whole.summary.lastTime);
          const second = await exampleDataplane(loader);
          second.packets.loadState(state);
          const rest = replayCapture(second, part(CAPTURE, cut));
          const tail = whole.output.slice(whole.output.length - rest.output.length);
          expect(rest.output.map((r) => Array.from(r.ip ?? []))).toEqual(tail.map((r) => Array.from(r.ip ?? [])));
          for (const r of CAPTURE.records.slice(cut)) {
            expect(rest.outcomes.get(r.index), `${saver} -> ${loader}, cut ${cut}, record ${r.index}`).toEqual(whole.outcomes.get(r.index));
            if (whole.outcomes.get(r.index)?.verdict === 'reverse') repliesAfterCut++;
          }
          expect(second.packets.conntrack(whole.summary.lastTime)).toEqual(flows);
          // Slot for slot what the saving dataplane holds once it has run the rest too (same seeds), but the
          // generation stamps: a loaded flow is stamped again at its next packet only.
          replayCapture(first, part(CAPTURE, cut));
          expect(unstamped(second.packets.saveState(0)), `${saver} -> ${loader}, cut ${cut}`).toEqual(unstamped(first.packets.saveState(0)));
        }
      }
    }
    expect(repliesAfterCut).toBeGreaterThan(0); // some cut falls between a request and its reply
  });

  it('without the state, the second part would differ (the test above can fail)', async () => {
    const whole = replayCapture(await exampleDataplane(), CAPTURE);
    const cut = CAPTURE.records.findIndex((r) => whole.outcomes.get(r.index)?.verdict === 'reverse');
    const rest = replayCapture(await exampleDataplane(), part(CAPTURE, cut));
    expect(rest.outcomes.get(CAPTURE.records[cut]?.index ?? -1)?.verdict).toBe('pass');
  });
});

// ---- one service, hand-built packets ----

const NODE: DataplaneOptions = { node: 'node-a', tableSeed: 1 };
const VIP = '10.96.0.10';
const BACKENDS = ['10.244.1.5', '10.244.1.6', '10.244.2.7'];
const CLIENT = '198.51.100.7';
const NOW = 5000;

function web(backends: string[], extra: Parameters<typeof clusterIP>[2] = {}): unknown[] {
  return [clusterIP('web', VIP, extra), slice('web-1', 'web', backends.map((a) => ready(a)))];
}

async function dataplane(objects: unknown[], opts: Partial<DataplaneOptions> = {}): Promise<Dataplane> {
  const dp = await createDataplane({ ...NODE, ...opts });
  expect(dp.apply(objects)).toEqual([]);
  return dp;
}

const syn = (sport: number): Uint8Array => ipv4({ src: CLIENT, dst: VIP }, tcp({ sport, dport: 80, flags: TCP_FLAGS.SYN }));
const ack = (sport: number): Uint8Array => ipv4({ src: CLIENT, dst: VIP }, tcp({ sport, dport: 80, flags: TCP_FLAGS.ACK }));

/** Sends one packet; returns the outcome and the rewritten destination. */
function send(dp: Dataplane, packet: Uint8Array, now = NOW): { reasonKey: string; service?: string; dst: string } {
  const [o] = dp.packets.process([packet], now);
  return { reasonKey: o?.reasonKey ?? '', ...(o?.service ? { service: o.service } : {}), dst: dotted(parse(packet).dst) };
}

const dotted = (b: Uint8Array): string => Array.from(b).join('.');

describe('flow state: loaded into other tables', () => {
  it('a flow whose backend the loading tables no longer list is selected again at its next packet', async () => {
    const first = await dataplane(web(BACKENDS));
    const chosen = send(first, syn(40000)).dst;
    const second = await dataplane(web(BACKENDS.filter((b) => b !== chosen)));
    // Both tables are at the same generation: the saved entry's stamp alone would pass it as established.
    expect(second.tables.generation).toBe(first.tables.generation);
    second.packets.loadState(first.packets.saveState(NOW));
    const next = send(second, ack(40000));
    expect(next.reasonKey).toBe('forward_reselected');
    expect(BACKENDS.filter((b) => b !== chosen)).toContain(next.dst);
    // and one still listed keeps its backend
    const third = await dataplane(web(BACKENDS));
    third.packets.loadState(first.packets.saveState(NOW));
    expect(send(third, ack(40000))).toMatchObject({ reasonKey: 'forward_established', dst: chosen });
  });

  it('entries name their frontend by its index in the loading tables', async () => {
    const first = await dataplane(web(BACKENDS));
    send(first, syn(40001));
    // Another Service first: web's frontend gets another rev-NAT index.
    const second = await dataplane([clusterIP('aaa', '10.96.0.5'), slice('aaa-1', 'aaa', [ready('10.244.9.9')]), ...web(BACKENDS)]);
    const revnatOf = (dp: Dataplane): number | undefined => [...dp.tables.frontends()].find((f) => f.address === VIP)?.revnat;
    expect(revnatOf(second)).not.toBe(revnatOf(first));
    const loaded = second.packets.loadState(first.packets.saveState(NOW));
    expect(loaded).toMatchObject({ clock: NOW, flows: 1, unknownFrontends: 0 });
    expect(second.packets.conntrack(NOW).map((e) => e.service)).toEqual(['shop/web']);
    const backend = second.packets.conntrack(NOW)[0]?.backend.address as string;
    const reply = ipv4({ src: backend, dst: CLIENT }, tcp({ sport: 8080, dport: 40001, flags: TCP_FLAGS.SYN | TCP_FLAGS.ACK }));
    expect(send(second, reply)).toMatchObject({ reasonKey: 'reverse_nat', service: 'shop/web' });
    expect(dotted(parse(reply).src)).toBe(VIP);
  });

  it('a flow to a frontend the loading tables do not have keeps its translation and names no Service', async () => {
    const first = await dataplane(web(BACKENDS));
    send(first, syn(40002));
    const second = await dataplane([clusterIP('aaa', '10.96.0.5'), slice('aaa-1', 'aaa', [ready('10.244.9.9')])]);
    expect(second.packets.loadState(first.packets.saveState(NOW))).toMatchObject({ flows: 1, unknownFrontends: 1 });
    const [flow] = second.packets.conntrack(NOW);
    expect(flow?.service).toBeUndefined();
    const reply = ipv4({ src: flow?.backend.address as string, dst: CLIENT }, tcp({ sport: 8080, dport: 40002, flags: TCP_FLAGS.ACK }));
    expect(send(second, reply).reasonKey).toBe('reverse_nat');
    expect(dotted(parse(reply).src)).toBe(VIP);
  });

  it('session affinity carries over: a new connection from the client goes to its backend', async () => {
    const affinity = { sessionAffinity: 'ClientIP' as const, sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } } };
    const first = await dataplane(web(BACKENDS, affinity));
    const chosen = send(first, syn(41000)).dst;
    // A source port that Maglev alone sends elsewhere (a dataplane without the state shows it).
    let sport = 41001;
    for (; sport < 42000; sport++) if (send(await dataplane(web(BACKENDS, affinity)), syn(sport)).dst !== chosen) break;
    expect(sport).toBeLessThan(42000);
    const second = await dataplane(web(BACKENDS, affinity));
    expect(second.packets.loadState(first.packets.saveState(NOW)).affinityEntries).toBe(1);
    expect(send(second, syn(sport), NOW + 10)).toMatchObject({ reasonKey: 'forward_new_affinity', dst: chosen });
  });
});

describe('flow state: a bad file changes nothing', () => {
  it('is refused with a StateError naming what is wrong, and the dataplane keeps its flows', async () => {
    const dp = await dataplane(web(BACKENDS));
    send(dp, syn(40003));
    const good = dp.packets.saveState(NOW);
    // The dataplane's own state, different from `good`, to see that a refused load leaves it alone.
    send(dp, syn(40004));
    const before = dp.packets.saveState(NOW);
    const edited = (edit: (b: Uint8Array, dv: DataView) => void): Uint8Array => {
      const b = good.slice();
      edit(b, new DataView(b.buffer));
      return b;
    };
    const FIRST_SLOT = 84 + 24; // header, one frontend: the first conntrack slot number, then its entry
    const bad: [string, Uint8Array, RegExp][] = [
      ['truncated', good.subarray(0, good.length - 1), /header announces/],
      ['empty', new Uint8Array(0), /too short/],
      ['magic', edited((b) => (b[0] = 0)), /bad magic/],
      ['version', edited((_, dv) => dv.setUint32(4, 99, true)), /version 99/],
      ['entry size', edited((_, dv) => dv.setUint16(80, 64, true)), /entries of 64/],
      ['capacity', (await dataplane(web(BACKENDS), { conntrackCapacity: 1024 })).packets.saveState(NOW), /1024 entries, this dataplane's 16384/],
      ['type', edited((b) => (b[FIRST_SLOT + 4 + CT.type] = 9)), /type 9/],
      ['slot', edited((_, dv) => dv.setUint32(FIRST_SLOT, 1 << 20, true)), /outside the table/],
      ['rev-NAT', edited((_, dv) => dv.setUint32(FIRST_SLOT + 4 + CT.revnat, 12345, true)), /not among the state's frontends/],
      ['timeout', edited((_, dv) => dv.setUint32(28, 0, true)), /timeout 0 is 0/],
    ];
    for (const [what, bytes, message] of bad) {
      expect(() => dp.packets.loadState(bytes), what).toThrow(StateError);
      expect(() => dp.packets.loadState(bytes), what).toThrow(message);
      expect(dp.packets.saveState(NOW), what).toEqual(before);
    }
    expect(() => dp.packets.loadState(good)).not.toThrow();
  });
});

describe('svcplane replay --save-state / --load-state, dump ... conntrack --load-state', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'svcplane-state-'));
  async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
    let out = '';
    let err = '';
    const code = await runCli(args, { stdout: (s) => (out += s), stderr: (s) => (err += s), stdin: Readable.from([]) });
    return { code, out, err };
  }
  const EXAMPLE = [EXAMPLE_DIR, '--node', 'node-a'];

  it('goes on from a saved state and lists it', async () => {
    const whole = replayCapture(await exampleDataplane(), CAPTURE);
    const cut = CAPTURE.records.findIndex((r) => whole.outcomes.get(r.index)?.verdict === 'reverse');
    const firstPcap = join(tmp, 'first.pcap');
    const restPcap = join(tmp, 'rest.pcap');
    const state = join(tmp, 'a.state');
    writeFileSync(firstPcap, writePcap(CAPTURE.records.slice(0, cut)));
    writeFileSync(restPcap, writePcap(CAPTURE.records.slice(cut)));

    const saved = await cli(['replay', ...EXAMPLE, '--pcap', firstPcap, '--save-state', state, '--conntrack', '-o', 'json']);
    expect(saved.code).toBe(0);
    expect(saved.err).toMatch(/wrote .*a\.state: the flow state at \d+ s \(\d+ live flows\)/);
    const listed = await cli(['dump', ...EXAMPLE, 'conntrack', '--load-state', state, '-o', 'json']);
    expect(listed.code).toBe(0);
    expect(listed.err).toMatch(/loaded .*a\.state: the flow state at \d+ s \(\d+ conntrack flows, \d+ affinity entries\)/);
    expect(JSON.parse(listed.out).conntrack).toEqual(JSON.parse(saved.out).conntrack);

    const on = await cli(['replay', ...EXAMPLE, '--pcap', restPcap, '--load-state', state, '-o', 'json']);
    const fresh = await cli(['replay', ...EXAMPLE, '--pcap', restPcap, '-o', 'json']);
    expect(on.code).toBe(0);
    expect(JSON.parse(on.out).reasons.reverse_nat).toBeGreaterThan(0);
    expect(JSON.parse(fresh.out).reasons.reverse_nat ?? 0).toBeLessThan(JSON.parse(on.out).reasons.reverse_nat);
  });

  it('takes the state\'s table sizes unless told otherwise', async () => {
    const state = join(tmp, 'small.state');
    const pcap = join(tmp, 'whole.pcap');
    writeFileSync(pcap, writePcap(CAPTURE.records));
    expect((await cli(['replay', ...EXAMPLE, '--pcap', pcap, '--conntrack-capacity', '4096', '--save-state', state])).code).toBe(0);
    const adopted = await cli(['dump', ...EXAMPLE, 'conntrack', '--load-state', state, '-o', 'json']);
    expect(adopted.code).toBe(0);
    expect(JSON.parse(adopted.out).conntrack.length).toBeGreaterThan(0);
    const other = await cli(['dump', ...EXAMPLE, 'conntrack', '--load-state', state, '--conntrack-capacity', '16384']);
    expect(other.code).toBe(1);
    expect(other.err).toMatch(/4096 entries, this dataplane's 16384: create it with conntrackCapacity 4096/);
  });

  it('reports an unusable state file with exit code 1, a missing one with 2', async () => {
    const bad = join(tmp, 'bad.state');
    writeFileSync(bad, 'not a state');
    const r = await cli(['dump', ...EXAMPLE, 'conntrack', '--load-state', bad]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/bad\.state: cannot load the flow state: .*too short/);
    expect((await cli(['dump', ...EXAMPLE, 'conntrack', '--load-state', join(tmp, 'missing.state')])).code).toBe(2);
    expect((await cli(['dump', ...EXAMPLE, 'conntrack'])).err).toMatch(/needs --pcap IN .* or --load-state FILE/);
    expect((await cli(['dump', ...EXAMPLE, '--load-state', bad])).code).toBe(2);
  });
});
