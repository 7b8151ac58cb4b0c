// The packet path as the TypeScript side drives it: packets are copied into core memory a batch at a
// time (one core call per batch), rewritten there by wasm/packet.c, and copied back. Verdicts, reasons,
// counters and the conntrack table are decoded here; nothing about a packet is decided here.

import type { Core } from './core.js';
import { formatIp, parseIp, protocolName, protocolNumber } from '../k8s/net.js';
import { AFFINITY_ENTRY_SIZE } from '../compile/layout.js';
import { type FlowState, StateError, decodeState, encodeState } from './packet-state.js';
import {
  CT, CT_FORWARD, CT_TCP_FIN, CT_TCP_REPLIED, CT_TCP_RST, COUNTER_SLOTS, EVENT_COUNTERS, PACKET_REASONS,
  PACKET_VERDICTS, PCTX, PKT, REASON_KEYS, REPLY_MAX, SP_TIMEOUTS, TIMEOUTS, type ConntrackTimeouts, type PacketVerdictName,
} from './packet-layout.js';

/** What the packet path did with one packet. */
export interface PacketOutcome {
  verdict: PacketVerdictName;
  /** Why, in words (PACKET_REASONS), and as the counter key it was counted under (REASON_KEYS). */
  reason: string;
  reasonKey: string;
  /** The Service whose frontend the packet belongs to (forward, reverse, reject, drop by policy). */
  service?: string;
  frontend?: { address: string; port: number; protocol: string };
  /** For a reject: the ICMP error the core wrote, to send back to the client. */
  reply?: Uint8Array;
}

/** Raw results of a batch: verdict and reason codes per packet, replies where a reject wrote one. */
export interface PacketBatchResult {
  verdicts: Uint8Array;
  reasons: Uint8Array;
  /** rev-NAT index of the packet's frontend (0xffffffff when none). */
  revnat: Uint32Array;
  replies: (Uint8Array | undefined)[];
}

export interface ConntrackEntry {
  protocol: string;
  client: { address: string; port: number };
  frontend: { address: string; port: number };
  backend: { address: string; port: number };
  /** TCP: syn-sent, established, closing; other protocols: active. */
  state: string;
  /** Seconds until the entry expires (at `now`). */
  expiresIn: number;
  service?: string;
}

/** Names a rev-NAT index: the frontend and the Service it belongs to, from the tables being served. */
export type FrontendNamer = (revnat: number) => { service: string; address: string; port: number; protocol: string } | undefined;

/** The rev-NAT indices of frontends (address in its 16-byte form, port, protocol number) in the tables being served. */
export type FrontendResolver = (frontends: readonly { address: Uint8Array; port: number; proto: number }[]) => (number | undefined)[];

/** What loadState restored. */
export interface LoadedState {
  /** The clock (seconds) of the last batch before the state was saved. */
  clock: number;
  /** Conntrack flows (forward entries) and ClientIP affinity entries restored. */
  flows: number;
  affinityEntries: number;
  /** Flows whose frontend is not in the tables being served (they keep their translation, but name no Service). */
  unknownFrontends: number;
}

export { StateError };

const NONE = 0xffffffff;
const DESCRIPTOR_WORDS = PKT.size / 4;
// The word layout processBatch reads and writes the descriptors with.
if (PKT.off !== 0 || PKT.len !== 4 || PKT.replyOff !== 8 || PKT.replyLen !== 12 || PKT.verdict !== 14 || PKT.reason !== 15 || PKT.revnat !== 16 || PKT.size % 4 !== 0) {
  throw new Error('packet descriptor layout changed: update PacketPath.processBatch');
}

/** Result arrays for batches of up to `count` packets (processBatch's `out`). */
export function newBatchResult(count: number): PacketBatchResult {
  return { verdicts: new Uint8Array(count), reasons: new Uint8Array(count), revnat: new Uint32Array(count), replies: new Array<Uint8Array | undefined>(count).fill(undefined) };
}

export class PacketPath {
  constructor(private readonly core: Core, private readonly namer: FrontendNamer, private readonly resolver: FrontendResolver) {}

  /**
   * Runs `count` packets of `data` (packet i at offsets[i], lengths[i] bytes, from its first IP header
   * byte) through the core, one call per batch of up to 256, and writes the rewritten bytes back into
   * `data`. `now` is in seconds on the scale the conntrack timeouts use. `out`: result arrays to fill
   * instead of new ones (each at least `count` long; replies[i] is set or cleared for every packet), for a
   * caller that runs batch after batch: allocating them took about a third of this method's own time.
   */
  processBatch(data: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, now: number, out?: PacketBatchResult): PacketBatchResult {
    const count = Math.min(offsets.length, lengths.length);
    if (out && (out.verdicts.length < count || out.reasons.length < count || out.revnat.length < count || out.replies.length < count)) {
      throw new RangeError(`result arrays of ${Math.min(out.verdicts.length, out.reasons.length, out.revnat.length, out.replies.length)} entries for a batch of ${count} packets`);
    }
    out ??= newBatchResult(count);
    const buf = this.core.packetBuffers();
    let i = 0;
    while (i < count) {
      // A chunk: as many packets as fit in the descriptors and the data area, copied with one set().
      const start = offsets[i] as number;
      let n = 0;
      let end = start;
      while (i + n < count && n < buf.capacity) {
        const o = offsets[i + n] as number;
        const e = o + (lengths[i + n] as number);
        if (o < start || Math.max(end, e) - start > buf.dataSize) break;
        end = Math.max(end, e);
        n++;
      }
      if (n === 0) throw new RangeError(`packet ${i} (${lengths[i]} bytes at ${offsets[i]}) does not fit the core's packet area of ${buf.dataSize} bytes`);
      if (end > data.byteLength) throw new RangeError(`packet ${i + n - 1} runs past the end of the data (${end} > ${data.byteLength})`);
      const mem = this.core.memory;
      mem.set(data.subarray(start, end), buf.data);
      // The descriptors as 32-bit words (PKT: off, len, replyOff, replyLen | verdict << 16 | reason << 24,
      // revnat, ct), little-endian like every engine's memory.
      let w = new Uint32Array(mem.buffer, mem.byteOffset + buf.descriptors, n * DESCRIPTOR_WORDS);
      const dataBase = buf.data - start;
      for (let k = 0, d = 0; k < n; k++, d += DESCRIPTOR_WORDS) {
        w[d] = dataBase + (offsets[i + k] as number);
        w[d + 1] = lengths[i + k] as number;
        w[d + 2] = buf.replies + k * REPLY_MAX;
      }
      this.core.processPacketsInPlace(n, now);
      const after = this.core.memory;
      if (after.buffer !== mem.buffer) w = new Uint32Array(after.buffer, after.byteOffset + buf.descriptors, n * DESCRIPTOR_WORDS);
      data.set(after.subarray(buf.data, buf.data + (end - start)), start);
      for (let k = 0, d = 0; k < n; k++, d += DESCRIPTOR_WORDS) {
        const codes = w[d + 3] as number;
        out.verdicts[i + k] = (codes >>> 16) & 0xff;
        out.reasons[i + k] = codes >>> 24;
        out.revnat[i + k] = w[d + 4] as number;
        const rl = codes & 0xffff;
        out.replies[i + k] = rl > 0 ? after.slice(buf.replies + k * REPLY_MAX, buf.replies + k * REPLY_MAX + rl) : undefined;
      }
      i += n;
    }
    return out;
  }

  /** Runs packets (each a whole IP packet) through the core, rewriting each array in place. */
  process(packets: readonly Uint8Array[], now: number): PacketOutcome[] {
    const total = packets.reduce((s, p) => s + p.byteLength, 0);
    const data = new Uint8Array(total);
    const offsets = new Uint32Array(packets.length);
    const lengths = new Uint32Array(packets.length);
    let at = 0;
    packets.forEach((p, i) => {
      data.set(p, at);
      offsets[i] = at;
      lengths[i] = p.byteLength;
      at += p.byteLength;
    });
    const r = this.processBatch(data, offsets, lengths, now);
    return packets.map((p, i) => {
      p.set(data.subarray(offsets[i] as number, (offsets[i] as number) + p.byteLength));
      return this.describe(r, i);
    });
  }

  /** Decodes packet `i` of a batch result. */
  describe(r: PacketBatchResult, i: number): PacketOutcome {
    const code = r.reasons[i] as number;
    const o: PacketOutcome = {
      verdict: PACKET_VERDICTS[r.verdicts[i] as number] ?? 'drop',
      reason: PACKET_REASONS[code] ?? `reason ${code}`,
      reasonKey: REASON_KEYS[code] ?? `reason_${code}`,
    };
    const rn = r.revnat[i] as number;
    if (rn !== NONE) {
      const fe = this.namer(rn);
      if (fe) {
        o.service = fe.service;
        o.frontend = { address: fe.address, port: fe.port, protocol: fe.protocol };
      }
    }
    const reply = r.replies[i];
    if (reply) o.reply = reply;
    return o;
  }

  /** Counters since the dataplane started: packets per reason (REASON_KEYS) and events. */
  counters(): Record<string, number> {
    const mem = this.core.memory;
    const dv = new DataView(mem.buffer, mem.byteOffset);
    const base = this.core.packetBuffers().pctx + PCTX.counters;
    const out: Record<string, number> = {};
    REASON_KEYS.forEach((k, i) => (out[k] = Number(dv.getBigUint64(base + i * 8, true))));
    for (const [slot, k] of Object.entries(EVENT_COUNTERS)) {
      if (Number(slot) < COUNTER_SLOTS) out[k] = Number(dv.getBigUint64(base + Number(slot) * 8, true));
    }
    return out;
  }

  /** Sets conntrack timeouts (seconds, at least 1). */
  setTimeouts(t: ConntrackTimeouts): void {
    for (const [k, v] of Object.entries(t)) {
      const which = TIMEOUTS[k as keyof typeof TIMEOUTS];
      if (which === undefined) throw new RangeError(`unknown conntrack timeout "${k}" (${Object.keys(TIMEOUTS).join(', ')})`);
      if (v === undefined) continue;
      if (!Number.isInteger(v) || v < 1 || v > 0xffffffff) throw new RangeError(`conntrack timeout ${k}: must be a whole number of seconds >= 1, got ${v}`);
      this.core.setPacketTimeout(which, v);
    }
  }

  /** Entries the conntrack table holds (a flow takes two). */
  get conntrackCapacity(): number {
    return this.core.packetBuffers().conntrackCapacity;
  }

  /**
   * The flow state, to continue in another dataplane (loadState) or to list later: the conntrack and
   * ClientIP affinity tables, their seeds, the timeouts and the sweep's position. `clock`: the time of the
   * last batch (seconds), kept with the state for listing it. Format: src/engine/packet-state.ts.
   */
  saveState(clock: number): Uint8Array {
    const buf = this.core.packetBuffers();
    const fs = this.core.flowState();
    const mem = this.core.memory;
    const dv = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
    const frontends = new Map<number, FlowState['frontends'][number] | undefined>();
    const nonZero = (at: number, size: number): boolean => {
      for (let i = 0; i < size; i++) if (mem[at + i] !== 0) return true;
      return false;
    };
    const conntrack: FlowState['conntrack'] = [];
    for (let slot = 0; slot < buf.conntrackCapacity; slot++) {
      const at = buf.conntrack + slot * CT.size;
      if (!nonZero(at, CT.size)) continue; // empty; an empty slot may still count second-window entries (info)
      const bytes = mem.slice(at, at + CT.size);
      const e = new DataView(bytes.buffer);
      const revnat = e.getUint32(CT.revnat, true);
      if (revnat !== NONE) {
        if (!frontends.has(revnat)) frontends.set(revnat, this.stateFrontend(revnat));
        if (!frontends.get(revnat)) e.setUint32(CT.revnat, NONE, true); // no longer in the tables: nothing to name
      }
      conntrack.push({ slot, bytes });
    }
    const affinity: FlowState['affinity'] = [];
    for (let slot = 0; slot < fs.affinityCapacity; slot++) {
      const at = fs.affinity + slot * AFFINITY_ENTRY_SIZE;
      if (nonZero(at, AFFINITY_ENTRY_SIZE)) affinity.push({ slot, bytes: mem.slice(at, at + AFFINITY_ENTRY_SIZE) });
    }
    const u32 = (at: number): number => dv.getUint32(at, true);
    return encodeState({
      clock,
      ctCapacity: buf.conntrackCapacity,
      ctSeed: u32(buf.pctx + PCTX.ctSeed),
      sweep: u32(buf.pctx + PCTX.sweep),
      sweepTick: u32(buf.pctx + PCTX.sweepTick),
      timeouts: Array.from({ length: SP_TIMEOUTS }, (_, i) => u32(buf.pctx + PCTX.timeout + i * 4)),
      affinityCapacity: fs.affinityCapacity,
      affinitySeed: u32(fs.affinitySeedAt),
      frontends: [...frontends.values()].filter((f) => f !== undefined),
      conntrack,
      affinity,
    });
  }

  private stateFrontend(revnat: number): FlowState['frontends'][number] | undefined {
    const fe = this.namer(revnat);
    const address = fe && parseIp(fe.address);
    const proto = fe && protocolNumber(fe.protocol);
    if (!fe || !address || proto === undefined) return undefined;
    return { revnat, address: address.bytes, port: fe.port, proto };
  }

  /**
   * Replaces the flow state with a saved one (saveState), checked whole first: a malformed file, or one
   * for tables of other capacities, throws StateError and changes nothing. Entries name their frontend
   * again by its index in the tables being served; every established flow is checked against them at
   * its next packet (its backend kept while it is in the list, as after any table change). Counters stay.
   * Load it once the tables are in place: loading a whole image (loadImage) starts the packet path afresh.
   */
  loadState(bytes: Uint8Array): LoadedState {
    const s = decodeState(bytes);
    const buf = this.core.packetBuffers();
    const fs = this.core.flowState();
    if (s.ctCapacity !== buf.conntrackCapacity) {
      throw new StateError(`the state's conntrack table has ${s.ctCapacity} entries, this dataplane's ${buf.conntrackCapacity}: create it with conntrackCapacity ${s.ctCapacity} (CLI: --conntrack-capacity)`);
    }
    if (s.affinityCapacity !== fs.affinityCapacity) {
      throw new StateError(`the state's affinity table has ${s.affinityCapacity} entries, this dataplane's ${fs.affinityCapacity}: create it with affinityCapacity ${s.affinityCapacity}`);
    }
    const resolved = this.resolver(s.frontends);
    const revnats = new Map(s.frontends.map((f, i) => [f.revnat, resolved[i] ?? NONE]));
    const mem = this.core.memory;
    const dv = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
    // A generation the tables are not at (nor will be for 2^32 publications): each flow's next packet
    // checks its backend against the tables being served, whatever generation the saving tables were at.
    const stale = (this.core.imageGeneration() - 1) >>> 0;
    mem.fill(0, buf.conntrack, buf.conntrack + buf.conntrackCapacity * CT.size);
    let flows = 0;
    let unknownFrontends = 0;
    for (const { slot, bytes: entry } of s.conntrack) {
      const at = buf.conntrack + slot * CT.size;
      mem.set(entry, at);
      const revnat = dv.getUint32(at + CT.revnat, true);
      const mapped = revnat === NONE ? NONE : (revnats.get(revnat) ?? NONE);
      dv.setUint32(at + CT.revnat, mapped, true);
      if (mem[at + CT.type] === CT_FORWARD) {
        flows++;
        if (mapped === NONE) unknownFrontends++;
        dv.setUint32(at + CT.gen, stale, true);
      }
    }
    mem.fill(0, fs.affinity, fs.affinity + fs.affinityCapacity * AFFINITY_ENTRY_SIZE);
    for (const { slot, bytes: entry } of s.affinity) mem.set(entry, fs.affinity + slot * AFFINITY_ENTRY_SIZE);
    dv.setUint32(fs.affinitySeedAt, s.affinitySeed, true);
    dv.setUint32(buf.pctx + PCTX.ctSeed, s.ctSeed, true);
    dv.setUint32(buf.pctx + PCTX.sweep, s.sweep, true);
    dv.setUint32(buf.pctx + PCTX.sweepTick, s.sweepTick, true);
    s.timeouts.forEach((t, i) => dv.setUint32(buf.pctx + PCTX.timeout + i * 4, t, true));
    return { clock: s.clock, flows, affinityEntries: s.affinity.length, unknownFrontends };
  }

  /** Live conntrack flows at `now` (one per flow: its forward entry), ordered by client then frontend. */
  conntrack(now: number): ConntrackEntry[] {
    const buf = this.core.packetBuffers();
    const mem = this.core.memory;
    const dv = new DataView(mem.buffer, mem.byteOffset);
    const out: ConntrackEntry[] = [];
    const addr = (at: number): string => formatIp(mem.subarray(at, at + 16));
    for (let i = 0; i < buf.conntrackCapacity; i++) {
      const at = buf.conntrack + i * CT.size;
      if (mem[at + CT.type] !== CT_FORWARD) continue;
      const expires = dv.getUint32(at + CT.expires, true);
      if (!(now < expires)) continue;
      const proto = mem[at + CT.proto] as number;
      const tcp = mem[at + CT.tcp] as number;
      const protocol = protocolName(proto) ?? String(proto);
      const e: ConntrackEntry = {
        protocol,
        client: { address: addr(at + CT.a), port: dv.getUint16(at + CT.aport, true) },
        frontend: { address: addr(at + CT.b), port: dv.getUint16(at + CT.bport, true) },
        backend: { address: addr(at + CT.nat), port: dv.getUint16(at + CT.natPort, true) },
        state: protocol !== 'TCP' ? 'active' : tcp & (CT_TCP_FIN | CT_TCP_RST) ? 'closing' : tcp & CT_TCP_REPLIED ? 'established' : 'syn-sent',
        expiresIn: expires - now,
      };
      const fe = this.namer(dv.getUint32(at + CT.revnat, true));
      if (fe) e.service = fe.service;
      out.push(e);
    }
    const key = (e: ConntrackEntry): string => `${e.client.address}|${String(e.client.port).padStart(5, '0')}|${e.frontend.address}|${e.frontend.port}|${e.protocol}`;
    return out.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  }
}
