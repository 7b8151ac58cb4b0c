// The packet path's flow state as a file (`svcplane replay --save-state` / `--load-state`,
// PacketPath.saveState / loadState): the conntrack table and the ClientIP affinity table, slot for slot,
// with the seeds that place their entries, the sweep's position, the timeouts and the clock of the last
// batch. Little-endian, versioned; only slots that are not all zero are stored.
//
//   header (STATE_HEADER bytes, fields below), then
//   frontends: FRONTEND_SIZE bytes each: rev-NAT index (in the saving tables), address (16-byte form),
//              port u16, protocol u8, pad u8. Entries name their frontend by rev-NAT index, which is
//              local to one image; the loader maps each to the index of the same frontend in its tables.
//   conntrack slots: slot u32, then CT.size bytes
//   affinity slots: slot u32, then AFFINITY_ENTRY_SIZE bytes
//
// decodeState checks everything before anything is written: a bad file never changes the dataplane.

import { AFFINITY_ENTRY_SIZE } from '../compile/layout.js';
import { CT, CT_DEAD, SP_TIMEOUTS } from './packet-layout.js';

export const STATE_MAGIC = 0x54535053; // "SPST"
export const STATE_VERSION = 1;
const H = {
  size: 84, magic: 0, version: 4, clock: 8, ctCapacity: 12, ctSeed: 16, sweep: 20, sweepTick: 24, timeouts: 28,
  affinityCapacity: 60, affinitySeed: 64, frontends: 68, ctSlots: 72, affinitySlots: 76, ctEntrySize: 80, affinityEntrySize: 82,
} as const;
const FRONTEND_SIZE = 24;
const NONE = 0xffffffff;

/** A frontend that state entries name (by the rev-NAT index it had in the saving tables). */
export interface StateFrontend {
  revnat: number;
  address: Uint8Array; // 16 bytes
  port: number;
  proto: number;
}

/** What a state file holds. Slots are ascending; `bytes` are the slot's raw entry. */
export interface FlowState {
  clock: number;
  ctCapacity: number;
  ctSeed: number;
  sweep: number;
  sweepTick: number;
  timeouts: number[];
  affinityCapacity: number;
  affinitySeed: number;
  frontends: StateFrontend[];
  conntrack: { slot: number; bytes: Uint8Array }[];
  affinity: { slot: number; bytes: Uint8Array }[];
}

export class StateError extends Error {}

export function encodeState(s: FlowState): Uint8Array {
  const size = H.size + s.frontends.length * FRONTEND_SIZE + s.conntrack.length * (4 + CT.size) + s.affinity.length * (4 + AFFINITY_ENTRY_SIZE);
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  const u32 = (at: number, v: number): void => dv.setUint32(at, v >>> 0, true);
  u32(H.magic, STATE_MAGIC);
  u32(H.version, STATE_VERSION);
  u32(H.clock, s.clock);
  u32(H.ctCapacity, s.ctCapacity);
  u32(H.ctSeed, s.ctSeed);
  u32(H.sweep, s.sweep);
  u32(H.sweepTick, s.sweepTick);
  for (let i = 0; i < SP_TIMEOUTS; i++) u32(H.timeouts + i * 4, s.timeouts[i] ?? 0);
  u32(H.affinityCapacity, s.affinityCapacity);
  u32(H.affinitySeed, s.affinitySeed);
  u32(H.frontends, s.frontends.length);
  u32(H.ctSlots, s.conntrack.length);
  u32(H.affinitySlots, s.affinity.length);
  dv.setUint16(H.ctEntrySize, CT.size, true);
  dv.setUint16(H.affinityEntrySize, AFFINITY_ENTRY_SIZE, true);
  let at = H.size;
  for (const f of s.frontends) {
    u32(at, f.revnat);
    out.set(f.address.subarray(0, 16), at + 4);
    dv.setUint16(at + 20, f.port, true);
    out[at + 22] = f.proto;
    at += FRONTEND_SIZE;
  }
  for (const list of [s.conntrack, s.affinity]) {
    for (const e of list) {
      u32(at, e.slot);
      out.set(e.bytes, at + 4);
      at += 4 + e.bytes.byteLength;
    }
  }
  return out;
}

const fail = (message: string): never => {
  throw new StateError(message);
};

/** A state file's header, checked (magic, version, entry sizes, capacities, timeouts, the file's length). */
function checkedHeader(bytes: Uint8Array) {
  if (bytes.byteLength < H.size) fail(`${bytes.byteLength} bytes: too short for a state file (header ${H.size})`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u32 = (at: number): number => dv.getUint32(at, true);
  if (u32(H.magic) !== STATE_MAGIC) fail('not a svcplane state file (bad magic)');
  if (u32(H.version) !== STATE_VERSION) fail(`state file version ${u32(H.version)}; this svcplane reads version ${STATE_VERSION}`);
  // The entries are stored as the core lays them out: another layout is another format.
  const ctEntry = dv.getUint16(H.ctEntrySize, true);
  const affEntry = dv.getUint16(H.affinityEntrySize, true);
  if (ctEntry !== CT.size || affEntry !== AFFINITY_ENTRY_SIZE) fail(`entries of ${ctEntry} and ${affEntry} bytes; this svcplane's are ${CT.size} and ${AFFINITY_ENTRY_SIZE}`);
  const pow2 = (n: number): boolean => n >= 8 && (n & (n - 1)) === 0;
  const ctCapacity = u32(H.ctCapacity);
  const affinityCapacity = u32(H.affinityCapacity);
  if (!pow2(ctCapacity) || ctCapacity > 1 << 24) fail(`conntrack capacity ${ctCapacity}: not a power of two from 8 to 16777216`);
  if (!pow2(affinityCapacity) || affinityCapacity > 1 << 24) fail(`affinity capacity ${affinityCapacity}: not a power of two from 8 to 16777216`);
  const timeouts = Array.from({ length: SP_TIMEOUTS }, (_, i) => u32(H.timeouts + i * 4));
  // T_* 0..5 are in use (each at least 1 second); the rest of the array is reserved.
  timeouts.slice(0, 6).forEach((t, i) => t === 0 && fail(`timeout ${i} is 0 (at least 1 second)`));
  const nf = u32(H.frontends);
  const nc = u32(H.ctSlots);
  const na = u32(H.affinitySlots);
  if (nc > ctCapacity) fail(`${nc} conntrack slots for a table of ${ctCapacity}`);
  if (na > affinityCapacity) fail(`${na} affinity slots for a table of ${affinityCapacity}`);
  if (nf > nc) fail(`${nf} frontends for ${nc} conntrack slots`);
  const expected = H.size + nf * FRONTEND_SIZE + nc * (4 + CT.size) + na * (4 + AFFINITY_ENTRY_SIZE);
  if (bytes.byteLength !== expected) fail(`${bytes.byteLength} bytes where the header announces ${expected}`);
  return { dv, u32, ctCapacity, affinityCapacity, timeouts, nf, nc, na };
}

/** The table sizes a dataplane needs for this state file (its header checked; the entries are loadState's). */
export function stateTableSizes(bytes: Uint8Array): { ctCapacity: number; affinityCapacity: number } {
  const { ctCapacity, affinityCapacity } = checkedHeader(bytes);
  return { ctCapacity, affinityCapacity };
}

/** Parses and checks a state file; throws StateError naming what is wrong. */
export function decodeState(bytes: Uint8Array): FlowState {
  const { dv, u32, ctCapacity, affinityCapacity, timeouts, nf, nc, na } = checkedHeader(bytes);

  let at = H.size;
  const frontends: StateFrontend[] = [];
  const known = new Set<number>();
  for (let i = 0; i < nf; i++, at += FRONTEND_SIZE) {
    const revnat = u32(at);
    if (revnat === NONE || known.has(revnat)) fail(`frontend ${i}: rev-NAT index ${revnat} is ${revnat === NONE ? 'none' : 'listed twice'}`);
    known.add(revnat);
    frontends.push({ revnat, address: bytes.slice(at + 4, at + 20), port: dv.getUint16(at + 20, true), proto: bytes[at + 22] as number });
  }
  const slots = (count: number, size: number, capacity: number, what: string, check: (b: Uint8Array, slot: number) => void): { slot: number; bytes: Uint8Array }[] => {
    const out: { slot: number; bytes: Uint8Array }[] = [];
    let last = -1;
    for (let i = 0; i < count; i++, at += 4 + size) {
      const slot = u32(at);
      if (slot >= capacity || slot <= last) fail(`${what} entry ${i}: slot ${slot} is ${slot >= capacity ? `outside the table of ${capacity}` : 'out of order'}`);
      last = slot;
      const b = bytes.slice(at + 4, at + 4 + size);
      check(b, slot);
      out.push({ slot, bytes: b });
    }
    return out;
  };
  const conntrack = slots(nc, CT.size, ctCapacity, 'conntrack', (b, slot) => {
    const type = b[CT.type] as number;
    if (type > CT_DEAD) fail(`conntrack slot ${slot}: type ${type} is not an entry type`);
    const e = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const revnat = e.getUint32(CT.revnat, true);
    if (revnat !== NONE && !known.has(revnat)) fail(`conntrack slot ${slot}: rev-NAT index ${revnat} is not among the state's frontends`);
    const peer = e.getUint32(CT.peer, true);
    if (peer !== NONE && peer >= ctCapacity) fail(`conntrack slot ${slot}: peer ${peer} outside the table`);
  });
  const affinity = slots(na, AFFINITY_ENTRY_SIZE, affinityCapacity, 'affinity', () => {});
  return {
    clock: u32(H.clock), ctCapacity, ctSeed: u32(H.ctSeed), sweep: u32(H.sweep) & (ctCapacity - 1), sweepTick: u32(H.sweepTick),
    timeouts, affinityCapacity, affinitySeed: u32(H.affinitySeed), frontends, conntrack, affinity,
  };
}
