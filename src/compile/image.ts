// The compiler: service-port plans in, a table image out (layout in layout.ts / wasm/svcplane.h), written
// straight into the memory the core reads.
//
// The image is an arena. Each plan (service port x family) lives in one immutable service block; a change
// writes a new block and publishes it with one 32-bit store into the plan's slot. Frontend entries are
// written completely, then made visible by their kind byte, and removed by tombstoning. Tables that grow
// are rebuilt beside the old ones and published by flipping header.root. Replaced space is retired and
// freed once no registered reader can still be reading it (epochs, see reclaim()).
//
// build() writes a fresh image deterministically (plans sorted, frontends inserted in key order, all
// unused bytes zero): same plans and seeds give identical bytes. update() changes one service in time
// proportional to that service; any sequence of updates reaching the same state selects identically.

import type { Note } from '../k8s/types.js';
import { PROTOCOL_NUMBERS, formatHostPort, formatIp, parseCidr, parseIp } from '../k8s/net.js';
import type { NodeContext, PlanBackend, ServicePortPlan } from '../control/semantics.js';
import {
  ALIGN, BACKEND, BE_ACTIVE, BE_F_LOCAL, BE_TERMINATING, FE_EMPTY, FE_F_EXTERNAL, FE_F_SOURCE_RANGES, FE_KIND,
  FE_TOMBSTONE, FRONTEND, HEADER, LIST, LIST_CLUSTER, LIST_LOCAL, MAGIC, MAX_READERS, REVNAT, ROOT, SERVICE,
  SOURCE_RANGE, SVC_EMPTY_EXTERNAL_DROP, SVC_EMPTY_INTERNAL_DROP, SVC_F_AFFINITY, SVC_F_EXTERNAL_LOCAL,
  SVC_F_INTERNAL_LOCAL, SVC_F_IPV6, VERSION,
} from './layout.js';
import { maglevSize, maglevTable, maglevWidth } from './maglev.js';
import { murmur3 } from './murmur3.js';

/** The memory the image lives in (the core's memory). */
export interface ImageMemory {
  /** A current view of the whole memory (rebuilt by the host after it grows). */
  bytes(): Uint8Array;
  /** Grows the memory to at least `end` bytes. */
  ensure(end: number): void;
}

export interface ImageOptions {
  /** Cluster-wide seed (flow hash, Maglev permutations). */
  clusterSeed: number;
  /** Placement seed for the frontend hash map. */
  tableSeed: number;
  /** The core's frontend hash (sp_hash20): placement must use exactly the function lookups use. */
  hash20: (key: Uint8Array, seed: number) => number;
}

const encoder = new TextEncoder();
const align = (n: number, a: number): number => Math.ceil(n / a) * a;

function nextPow2(n: number, min = 8): number {
  let p = min;
  while (p < n) p *= 2;
  return p;
}

/** Canonical backend identity, the input of its Maglev permutation: '10.0.0.1:80', '[2001:db8::1]:80'. */
export function backendName(b: { address: string; port: number }): string {
  return formatHostPort(b.address, b.port);
}

/** Stable identity of a plan: its slot survives updates under this key. */
export function planKey(p: { service: string; portName: string; protocol: string; family: string }): string {
  return `${p.service}\u0000${p.portName}\u0000${p.protocol}\u0000${p.family}`;
}

interface FrontendClaim {
  key: Uint8Array; // addr16, le16 port, proto, 0
  kind: number;
  flags: number;
  plan: string;
  service: string;
  label: string; // for notes: 'NodePort 192.168.0.1:30080/TCP'
}

interface MapEntry {
  index: number;
  revnat: number;
  slot: number;
  kind: number;
  flags: number;
}

interface Retired {
  kind: 'block' | 'slot' | 'revnat';
  off: number;
  size: number;
  epoch: number;
}

function frontendKey(address: string, port: number, protocol: number): Uint8Array {
  const key = new Uint8Array(20);
  key.set((parseIp(address) as { bytes: Uint8Array }).bytes, 0);
  key[16] = port & 0xff;
  key[17] = port >> 8;
  key[18] = protocol;
  return key;
}

const keyId = (key: Uint8Array): string => Buffer.from(key.buffer, key.byteOffset, 19).toString('hex');

/**
 * Sources kube-proxy treats as local for eTP=Local short-circuiting: the node's own addresses and loopback
 * (iptables `--src-type LOCAL`), and the node's pod CIDRs (local traffic detection in NodeCIDR mode).
 */
function localSourceRanges(node: NodeContext): { bytes: Uint8Array; prefix: number }[] {
  const texts = [...node.addresses.map((a) => (a.includes(':') ? `${a}/128` : `${a}/32`)), '127.0.0.0/8', '::1/128', ...node.podCIDRs];
  const seen = new Set<string>();
  const out: { bytes: Uint8Array; prefix: number }[] = [];
  for (const t of texts) {
    const c = parseCidr(t);
    if (!c) continue;
    const id = `${formatIp(c.bytes)}/${c.prefix128}`;
    if (seen.has(id)) continue;
    seen.add(id);
    out.push({ bytes: c.bytes, prefix: c.prefix128 });
  }
  return out;
}

/** A plan encoded as a service block, before it is placed. */
interface EncodedBlock {
  bytes: Uint8Array;
  /** Offsets inside the block that hold block-relative offsets to relocate by the block's position. */
  relocations: number[];
}

class BlockBuilder {
  private readonly parts: Uint8Array[] = [];
  size = 0;
  readonly relocations: number[] = [];
  reserve(n: number, alignment = 4): number {
    const at = align(this.size, alignment);
    if (at > this.size) this.parts.push(new Uint8Array(at - this.size));
    this.size = at;
    const part = new Uint8Array(n);
    this.parts.push(part);
    this.size += n;
    return at;
  }
  finish(): Uint8Array {
    const out = new Uint8Array(align(this.size, ALIGN));
    let p = 0;
    for (const part of this.parts) {
      out.set(part, p);
      p += part.length;
    }
    return out;
  }
}

/** Encodes one plan as a block whose internal offsets are relative to the block start (relocated on placement). */
function encodeBlock(plan: ServicePortPlan, clusterSeed: number): EncodedBlock {
  const lists: { kind: 'cluster' | 'local'; members: PlanBackend[] }[] = [];
  const listIndex = (kind: 'cluster' | 'local'): number => {
    let i = lists.findIndex((l) => l.kind === kind);
    if (i < 0) i = lists.push({ kind, members: kind === 'cluster' ? plan.clusterList : plan.localList }) - 1;
    return i;
  };
  const listInternal = listIndex(plan.internal.list);
  const listExternal = listIndex(plan.external.list);
  // Only eTP=Local needs the cluster list beside its local one (for traffic from local sources).
  const listCluster = plan.externalPolicyLocal ? listIndex('cluster') : listInternal;

  const b = new BlockBuilder();
  const svcAt = b.reserve(SERVICE.size, ALIGN);
  const listAt = b.reserve(lists.length * LIST.size);
  const srAt = b.reserve(plan.sourceRanges.length * SOURCE_RANGE.size);
  const beAts = lists.map((l) => b.reserve(l.members.length * BACKEND.size));
  const tables = lists.map((l) => {
    if (l.members.length === 0) return { at: 0, size: 0, width: 1, table: new Uint32Array(0) };
    const size = maglevSize(l.members.length);
    const width = maglevWidth(l.members.length);
    const at = b.reserve(size * width, 4);
    return { at, size, width, table: maglevTable(l.members.map(backendName), size, clusterSeed) };
  });
  const strings = new Map<string, number>();
  const stringAt = (s: string): number => {
    let at = strings.get(s);
    if (at === undefined) {
      const bytes = encoder.encode(s);
      at = b.reserve(bytes.length + 1, 1);
      strings.set(s, at);
    }
    return at;
  };
  const nameAt = stringAt(plan.service);
  const portNameAt = stringAt(plan.portName);
  const nodeAts = lists.map((l) => l.members.map((m) => stringAt(m.nodeName)));

  const out = b.finish();
  const dv = new DataView(out.buffer);
  const rel = (at: number, v: number): void => {
    dv.setUint32(at, v, true);
    b.relocations.push(at);
  };
  let flags = 0;
  if (plan.affinityTimeout > 0) flags |= SVC_F_AFFINITY;
  if (plan.internalPolicyLocal) flags |= SVC_F_INTERNAL_LOCAL;
  if (plan.externalPolicyLocal) flags |= SVC_F_EXTERNAL_LOCAL;
  if (plan.family === 'IPv6') flags |= SVC_F_IPV6;
  let empty = 0;
  if (plan.internal.whenEmpty === 'drop') empty |= SVC_EMPTY_INTERNAL_DROP;
  if (plan.external.whenEmpty === 'drop') empty |= SVC_EMPTY_EXTERNAL_DROP;
  dv.setUint32(svcAt + SERVICE.blockSize, out.length, true);
  dv.setUint32(svcAt + SERVICE.flags, flags, true);
  dv.setUint32(svcAt + SERVICE.affinityTimeout, plan.affinityTimeout, true);
  rel(svcAt + SERVICE.name, nameAt);
  rel(svcAt + SERVICE.portName, portNameAt);
  rel(svcAt + SERVICE.listOff, listAt);
  out[svcAt + SERVICE.listCount] = lists.length;
  out[svcAt + SERVICE.listInternal] = listInternal;
  out[svcAt + SERVICE.listExternal] = listExternal;
  out[svcAt + SERVICE.listCluster] = listCluster;
  rel(svcAt + SERVICE.srOff, srAt);
  dv.setUint16(svcAt + SERVICE.srCount, plan.sourceRanges.length, true);
  out[svcAt + SERVICE.empty] = empty;
  out[svcAt + SERVICE.proto] = PROTOCOL_NUMBERS[plan.protocol];
  plan.sourceRanges.forEach((r, i) => {
    out.set(r.bytes, srAt + i * SOURCE_RANGE.size + SOURCE_RANGE.addr);
    out[srAt + i * SOURCE_RANGE.size + SOURCE_RANGE.prefix] = r.prefix128;
  });
  lists.forEach((l, li) => {
    const at = listAt + li * LIST.size;
    const t = tables[li] as (typeof tables)[number];
    rel(at + LIST.beOff, beAts[li] as number);
    dv.setUint32(at + LIST.beCount, l.members.length, true);
    if (t.size > 0) rel(at + LIST.mgOff, t.at);
    dv.setUint32(at + LIST.mgSize, t.size, true);
    out[at + LIST.mgWidth] = t.width;
    out[at + LIST.kind] = l.kind === 'cluster' ? LIST_CLUSTER : LIST_LOCAL;
    const identity = `${plan.service}/${plan.portName}/${plan.protocol}/${plan.family}/${l.kind}`;
    dv.setUint32(at + LIST.affinityId, murmur3(encoder.encode(identity), 0), true);
    l.members.forEach((m, i) => {
      const be = (beAts[li] as number) + i * BACKEND.size;
      out.set(m.bytes, be + BACKEND.addr);
      dv.setUint16(be + BACKEND.port, m.port, true);
      out[be + BACKEND.state] = m.state === 'active' ? BE_ACTIVE : BE_TERMINATING;
      out[be + BACKEND.flags] = m.isLocal ? BE_F_LOCAL : 0;
      rel(be + BACKEND.node, (nodeAts[li] as number[])[i] as number);
    });
    if (t.width === 1) out.set(t.table, t.at);
    else if (t.width === 2) for (let i = 0; i < t.size; i++) dv.setUint16(t.at + i * 2, t.table[i] as number, true);
    else for (let i = 0; i < t.size; i++) dv.setUint32(t.at + i * 4, t.table[i] as number, true);
  });
  for (const [s, at] of strings) out.set(encoder.encode(s), at);
  return { bytes: out, relocations: b.relocations };
}

export class ImageWriter {
  private readonly mem: ImageMemory;
  /** Offset of the image in memory. */
  readonly base: number;
  private readonly opts: ImageOptions;
  private top = 0;
  private readonly freeBlocks = new Map<number, number[]>();
  private retired: Retired[] = [];
  // root tables, as currently published
  private root = 0;
  private feOff = 0;
  private feCap = 0;
  private feUsed = 0;
  private feTombstones = 0;
  private slotOff = 0;
  private slotCap = 0;
  private rnOff = 0;
  private rnCap = 0;
  private lsOff = 0;
  private lsCount = 0;
  private nodeName = 0;
  private nodeZone = 0;
  // bookkeeping
  private readonly slotOfPlan = new Map<string, number>();
  private readonly blockOfSlot = new Map<number, { off: number; size: number }>();
  private freeSlots: number[] = [];
  private nextSlot = 1; // slot 0 is never used, so a zero slot field is always "none"
  private freeRevnats: number[] = [];
  private nextRevnat = 0;
  private readonly plansOfService = new Map<string, string[]>();
  private readonly claimsOfService = new Map<string, FrontendClaim[]>();
  private readonly claimants = new Map<string, Map<string, FrontendClaim>>(); // key id -> service -> claim
  private readonly entries = new Map<string, MapEntry>(); // key id -> live map entry
  private notes: Note[] = [];

  constructor(mem: ImageMemory, base: number, opts: ImageOptions) {
    this.mem = mem;
    this.base = base;
    this.opts = opts;
  }

  get size(): number {
    return this.top;
  }

  /** The image bytes (a view into memory: copy before the next change). */
  view(): Uint8Array {
    return this.mem.bytes().subarray(this.base, this.base + this.top);
  }

  // ---- memory ----

  private u8(): Uint8Array {
    return this.mem.bytes();
  }

  private dv(): DataView {
    const b = this.mem.bytes();
    return new DataView(b.buffer, b.byteOffset, b.byteLength);
  }

  private setU32(off: number, v: number): void {
    this.dv().setUint32(this.base + off, v >>> 0, true);
  }

  /** A publication word: an atomic store, ordered after every write before it (for readers on other threads). */
  private publish(off: number, v: number): void {
    const at = this.base + off;
    Atomics.store(new Uint32Array(this.u8().buffer, at, 1), 0, v >>> 0);
  }

  private alloc(size: number): number {
    size = align(size, ALIGN);
    const reuse = this.freeBlocks.get(size);
    if (reuse && reuse.length > 0) return reuse.pop() as number;
    const off = this.top;
    this.top += size;
    this.mem.ensure(this.base + this.top);
    if (this.root !== 0) this.publish(HEADER.imageSize, this.top);
    return off;
  }

  private freeBlock(off: number, size: number): void {
    size = align(size, ALIGN);
    this.u8().fill(0, this.base + off, this.base + off + size);
    let list = this.freeBlocks.get(size);
    if (!list) this.freeBlocks.set(size, (list = []));
    list.push(off);
  }

  private retire(kind: Retired['kind'], off: number, size: number): void {
    this.retired.push({ kind, off, size, epoch: 0 });
  }

  /**
   * Ends a change: tags what it retired with the current epoch and moves the epoch on. A registered reader
   * announces the epoch it read at the start of its batch, so anything retired at epoch E is unreachable
   * once every reader is quiescent (0) or announced an epoch > E.
   */
  private endChange(): void {
    const dv = this.dv();
    const epoch = dv.getUint32(this.base + HEADER.epoch, true);
    for (const r of this.retired) if (r.epoch === 0) r.epoch = epoch;
    this.publish(HEADER.epoch, epoch + 2);
    this.publish(HEADER.generation, dv.getUint32(this.base + HEADER.generation, true) + 1);
    this.reclaim();
  }

  /** Frees retired space no reader can still be using; returns the bytes freed. */
  reclaim(): number {
    const readers = new Uint32Array(this.u8().buffer, this.base + HEADER.readers, MAX_READERS);
    let min = Infinity;
    for (let i = 0; i < MAX_READERS; i++) {
      const e = Atomics.load(readers, i);
      if (e !== 0) min = Math.min(min, e);
    }
    let freed = 0;
    const keep: Retired[] = [];
    for (const r of this.retired) {
      if (r.epoch === 0 || r.epoch >= min) {
        keep.push(r);
        continue;
      }
      if (r.kind === 'block') {
        this.freeBlock(r.off, r.size);
        freed += r.size;
      } else if (r.kind === 'slot') {
        this.freeSlots.push(r.off);
      } else {
        this.freeRevnats.push(r.off);
      }
    }
    this.retired = keep;
    return freed;
  }

  // ---- full build ----

  /** Writes a fresh image for these plans (deterministic bytes). */
  build(plans: readonly ServicePortPlan[], node: NodeContext): Note[] {
    this.u8().fill(0, this.base, this.base + this.top);
    this.top = 0;
    this.root = 0;
    this.freeBlocks.clear();
    this.retired = [];
    this.slotOfPlan.clear();
    this.blockOfSlot.clear();
    this.freeSlots = [];
    this.nextSlot = 1;
    this.freeRevnats = [];
    this.nextRevnat = 0;
    this.plansOfService.clear();
    this.claimsOfService.clear();
    this.claimants.clear();
    this.entries.clear();
    this.notes = [];

    const header = this.alloc(HEADER.size);
    const dv = this.dv();
    dv.setUint32(this.base + header + HEADER.magic, MAGIC, true);
    dv.setUint32(this.base + header + HEADER.version, VERSION, true);
    dv.setUint32(this.base + header + HEADER.flowSeed, this.opts.clusterSeed >>> 0, true);
    dv.setUint32(this.base + header + HEADER.tableSeed, this.opts.tableSeed >>> 0, true);
    dv.setUint32(this.base + header + HEADER.epoch, 1, true);

    const frontendCount = plans.reduce((n, p) => n + p.frontends.length, 0);
    this.writeRoot(node, nextPow2(frontendCount * 2), nextPow2(plans.length + 1, 16), nextPow2(frontendCount, 16));

    const byService = new Map<string, ServicePortPlan[]>();
    for (const p of plans) {
      let list = byService.get(p.service);
      if (!list) byService.set(p.service, (list = []));
      list.push(p);
    }
    // Blocks in plan order, then every frontend in key order, so placement does not depend on history.
    for (const [service, ps] of byService) {
      this.writePlans(service, ps);
      this.setClaims(service, this.claimsOf(ps));
    }
    const ids = [...this.claimants.keys()].sort();
    for (const id of ids) this.refreshFrontend(id);
    this.publish(HEADER.imageSize, this.top);
    this.publish(HEADER.root, this.root);
    return this.notes;
  }

  /** Allocates and publishes a new root with tables of the given capacities (used by build and by setNode). */
  private writeRoot(node: NodeContext, feCap: number, slotCap: number, rnCap: number): void {
    const root = this.alloc(ROOT.size);
    this.feOff = this.alloc(feCap * FRONTEND.size);
    this.feCap = feCap;
    this.feUsed = 0;
    this.feTombstones = 0;
    this.slotOff = this.alloc(slotCap * 4);
    this.slotCap = slotCap;
    this.rnOff = this.alloc(rnCap * REVNAT.size);
    this.rnCap = rnCap;
    const ls = localSourceRanges(node);
    this.lsOff = this.alloc(Math.max(1, ls.length) * SOURCE_RANGE.size);
    this.lsCount = ls.length;
    ls.forEach((r, i) => {
      const at = this.base + this.lsOff + i * SOURCE_RANGE.size;
      this.u8().set(r.bytes, at + SOURCE_RANGE.addr);
      this.u8()[at + SOURCE_RANGE.prefix] = r.prefix;
    });
    this.nodeName = this.writeString(node.name);
    this.nodeZone = this.writeString(node.zone);
    this.root = root;
    this.writeRootFields();
  }

  private writeRootFields(): void {
    const r = this.root;
    const fields: [number, number][] = [
      [ROOT.feOff, this.feOff], [ROOT.feCap, this.feCap], [ROOT.slotOff, this.slotOff], [ROOT.slotCap, this.slotCap],
      [ROOT.rnOff, this.rnOff], [ROOT.rnCap, this.rnCap], [ROOT.lsOff, this.lsOff], [ROOT.lsCount, this.lsCount],
      [ROOT.nodeName, this.nodeName], [ROOT.nodeZone, this.nodeZone], [ROOT.feUsed, this.feUsed],
      [ROOT.feTombstones, this.feTombstones],
    ];
    for (const [at, v] of fields) this.setU32(r + at, v);
  }

  private writeString(s: string): number {
    const bytes = encoder.encode(s);
    const off = this.alloc(bytes.length + 1);
    this.u8().set(bytes, this.base + off);
    return off;
  }

  // ---- incremental updates ----

  /** Replaces everything of one service (all its plans, both families) with `plans`; [] deletes it. */
  update(service: string, plans: readonly ServicePortPlan[]): Note[] {
    this.notes = [];
    this.writePlans(service, plans);
    const before = this.claimsOfService.get(service) ?? [];
    const after = this.claimsOf(plans);
    this.setClaims(service, after);
    const touched = new Set([...before, ...after].map((c) => keyId(c.key)));
    for (const id of [...touched].sort()) this.refreshFrontend(id);
    // Plans that disappeared: their frontends are gone (above), so their slots can be cleared.
    const keep = new Set(plans.map(planKey));
    for (const key of this.plansOfServiceBefore) if (!keep.has(key)) this.dropPlan(key);
    this.endChange();
    return this.notes;
  }

  /** Node addresses, zone or pod CIDRs changed: rebuild the root tables beside the old ones and flip. */
  setNode(node: NodeContext, plansByService: ReadonlyMap<string, readonly ServicePortPlan[]>): Note[] {
    this.notes = [];
    const oldRoot = { root: this.root, feOff: this.feOff, feCap: this.feCap, slotOff: this.slotOff, slotCap: this.slotCap, rnOff: this.rnOff, rnCap: this.rnCap, lsOff: this.lsOff, lsCount: this.lsCount };
    // New plans first (NodePort frontends follow the node's addresses), into the existing slots.
    for (const [service, plans] of plansByService) this.writePlans(service, plans);
    const oldEntries = new Map(this.entries);
    const frontendCount = [...plansByService.values()].reduce((n, ps) => n + ps.reduce((m, p) => m + p.frontends.length, 0), 0);
    const slotCap = this.slotCap;
    const oldSlots = this.u8().slice(this.base + this.slotOff, this.base + this.slotOff + slotCap * 4);
    const oldRevnats = this.u8().slice(this.base + this.rnOff, this.base + this.rnOff + this.rnCap * REVNAT.size);
    const oldRnCap = this.rnCap;
    this.writeRoot(node, nextPow2(frontendCount * 2), slotCap, nextPow2(Math.max(frontendCount, oldRnCap), 16));
    this.u8().set(oldSlots, this.base + this.slotOff);
    this.u8().set(oldRevnats, this.base + this.rnOff);
    this.entries.clear();
    for (const [service, plans] of plansByService) this.setClaims(service, this.claimsOf(plans));
    for (const service of [...this.claimsOfService.keys()]) if (!plansByService.has(service)) this.setClaims(service, []);
    // Frontends that no longer exist give their rev-NAT index back (after the grace period).
    const ids = [...this.claimants.keys()].sort();
    for (const id of ids) {
      const old = oldEntries.get(id);
      if (old) this.entries.set(id, { ...old, index: -1 });
      this.refreshFrontend(id);
    }
    for (const [id, old] of oldEntries) if (!this.claimants.has(id)) this.retire('revnat', old.revnat, 0);
    this.writeRootFields();
    this.publish(HEADER.root, this.root);
    this.retire('block', oldRoot.root, ROOT.size);
    this.retire('block', oldRoot.feOff, oldRoot.feCap * FRONTEND.size);
    this.retire('block', oldRoot.slotOff, oldRoot.slotCap * 4);
    this.retire('block', oldRoot.rnOff, oldRoot.rnCap * REVNAT.size);
    this.retire('block', oldRoot.lsOff, Math.max(1, oldRoot.lsCount) * SOURCE_RANGE.size);
    this.endChange();
    return this.notes;
  }

  private plansOfServiceBefore: string[] = [];

  /** Writes and publishes a block per plan; remembers which plan keys the service had before. */
  private writePlans(service: string, plans: readonly ServicePortPlan[]): void {
    this.plansOfServiceBefore = this.plansOfService.get(service) ?? [];
    for (const plan of plans) {
      const key = planKey(plan);
      let slot = this.slotOfPlan.get(key);
      if (slot === undefined) {
        slot = this.allocSlot();
        this.slotOfPlan.set(key, slot);
      }
      const enc = encodeBlock(plan, this.opts.clusterSeed);
      const off = this.alloc(enc.bytes.length);
      const mem = this.u8();
      mem.set(enc.bytes, this.base + off);
      const dv = this.dv();
      for (const at of enc.relocations) dv.setUint32(this.base + off + at, dv.getUint32(this.base + off + at, true) + off, true);
      this.publish(this.slotOff + slot * 4, off);
      const old = this.blockOfSlot.get(slot);
      if (old) this.retire('block', old.off, old.size);
      this.blockOfSlot.set(slot, { off, size: enc.bytes.length });
    }
    if (plans.length > 0) this.plansOfService.set(service, plans.map(planKey));
    else this.plansOfService.delete(service);
  }

  private dropPlan(key: string): void {
    const slot = this.slotOfPlan.get(key);
    if (slot === undefined) return;
    this.publish(this.slotOff + slot * 4, 0);
    const block = this.blockOfSlot.get(slot);
    if (block) this.retire('block', block.off, block.size);
    this.blockOfSlot.delete(slot);
    this.slotOfPlan.delete(key);
    this.retire('slot', slot, 0);
  }

  private allocSlot(): number {
    if (this.freeSlots.length > 0) return this.freeSlots.pop() as number;
    if (this.nextSlot >= this.slotCap) this.growSlots();
    return this.nextSlot++;
  }

  private growSlots(): void {
    const cap = this.slotCap * 2;
    const off = this.alloc(cap * 4);
    const mem = this.u8();
    mem.copyWithin(this.base + off, this.base + this.slotOff, this.base + this.slotOff + this.slotCap * 4);
    this.replaceRootTable(() => {
      this.retire('block', this.slotOff, this.slotCap * 4);
      this.slotOff = off;
      this.slotCap = cap;
    });
  }

  /** Publishes a new root after `change` moved one of its tables. */
  private replaceRootTable(change: () => void): void {
    const oldRoot = this.root;
    change();
    this.root = this.alloc(ROOT.size);
    this.writeRootFields();
    this.publish(HEADER.root, this.root);
    this.retire('block', oldRoot, ROOT.size);
  }

  private claimsOf(plans: readonly ServicePortPlan[]): FrontendClaim[] {
    const out: FrontendClaim[] = [];
    for (const plan of plans) {
      const proto = PROTOCOL_NUMBERS[plan.protocol];
      for (const fe of plan.frontends) {
        let flags = fe.scope === 'external' ? FE_F_EXTERNAL : 0;
        if (fe.kind === 'LoadBalancer' && plan.sourceRanges.length > 0) flags |= FE_F_SOURCE_RANGES;
        out.push({
          key: frontendKey(fe.address, fe.port, proto),
          kind: FE_KIND[fe.kind],
          flags,
          plan: planKey(plan),
          service: plan.service,
          label: `${fe.kind} ${formatHostPort(fe.address, fe.port)}/${plan.protocol}`,
        });
      }
    }
    return out;
  }

  private setClaims(service: string, claims: FrontendClaim[]): void {
    for (const old of this.claimsOfService.get(service) ?? []) {
      const id = keyId(old.key);
      const m = this.claimants.get(id);
      m?.delete(service);
      if (m?.size === 0) this.claimants.delete(id);
    }
    for (const c of claims) {
      const id = keyId(c.key);
      let m = this.claimants.get(id);
      if (!m) this.claimants.set(id, (m = new Map()));
      if (!m.has(service)) m.set(service, c);
    }
    if (claims.length > 0) this.claimsOfService.set(service, claims);
    else this.claimsOfService.delete(service);
  }

  /**
   * Makes the map entry for one frontend key match its winning claim: the first service in name order
   * (two services may claim one externalIP:port; the first iptables rule would win the same way).
   * A changed entry is inserted before the old one is tombstoned, so a reader finds one or the other.
   */
  private refreshFrontend(id: string): void {
    const m = this.claimants.get(id);
    let winner: FrontendClaim | undefined;
    for (const c of m?.values() ?? []) if (!winner || c.service < winner.service) winner = c;
    if (winner && m && m.size > 1) {
      for (const c of m.values()) {
        if (c !== winner) this.notes.push({ object: `Service ${c.service}`, message: `${c.label} is already used by ${winner.service}; ignored` });
      }
    }
    const current = this.entries.get(id);
    const slot = winner ? (this.slotOfPlan.get(winner.plan) as number) : 0;
    if (winner && current && current.index >= 0 && current.slot === slot && current.kind === winner.kind && current.flags === winner.flags) return;
    if (winner) {
      const revnat = current ? current.revnat : this.allocRevnat();
      this.writeRevnat(revnat, winner, slot);
      const index = this.insertFrontend(winner, slot, revnat);
      if (current && current.index >= 0) this.tombstone(current.index);
      this.entries.set(id, { index, revnat, slot, kind: winner.kind, flags: winner.flags });
    } else if (current) {
      if (current.index >= 0) this.tombstone(current.index);
      this.retire('revnat', current.revnat, 0);
      this.entries.delete(id);
    }
  }

  private insertFrontend(c: FrontendClaim, slot: number, revnat: number): number {
    if ((this.feUsed + this.feTombstones + 1) * 2 > this.feCap) this.rehashFrontends();
    const mask = this.feCap - 1;
    const mem = this.u8();
    let i = this.opts.hash20(c.key, this.opts.tableSeed >>> 0) & mask;
    // Only empty slots are filled: a tombstone may still be read by a reader that saw it live.
    while (mem[this.base + this.feOff + i * FRONTEND.size + FRONTEND.kind] !== FE_EMPTY) i = (i + 1) & mask;
    const at = this.feOff + i * FRONTEND.size;
    mem.set(c.key.subarray(0, 19), this.base + at);
    this.setU32(at + FRONTEND.slot, slot);
    this.setU32(at + FRONTEND.revnat, revnat);
    this.setU32(at + FRONTEND.flags, c.flags);
    Atomics.store(this.u8(), this.base + at + FRONTEND.kind, c.kind);
    this.feUsed++;
    return i;
  }

  private tombstone(index: number): void {
    Atomics.store(this.u8(), this.base + this.feOff + index * FRONTEND.size + FRONTEND.kind, FE_TOMBSTONE);
    this.feUsed--;
    this.feTombstones++;
  }

  /** Rebuilds the frontend map without tombstones (and larger when needed) beside the old one, then flips the root. */
  private rehashFrontends(): void {
    const live = [...this.entries.entries()].filter(([, e]) => e.index >= 0).sort(([a], [b]) => (a < b ? -1 : 1));
    const cap = nextPow2((live.length + 1) * 4);
    const off = this.alloc(cap * FRONTEND.size);
    const mask = cap - 1;
    const mem = this.u8();
    for (const [, e] of live) {
      const from = this.base + this.feOff + e.index * FRONTEND.size;
      const key = mem.slice(from, from + 20);
      key[19] = 0; // the key is addr, port, proto, 0: byte 19 of the entry is its kind
      let i = this.opts.hash20(key, this.opts.tableSeed >>> 0) & mask;
      while (mem[this.base + off + i * FRONTEND.size + FRONTEND.kind] !== FE_EMPTY) i = (i + 1) & mask;
      mem.copyWithin(this.base + off + i * FRONTEND.size, from, from + FRONTEND.size);
      e.index = i;
    }
    this.replaceRootTable(() => {
      this.retire('block', this.feOff, this.feCap * FRONTEND.size);
      this.feOff = off;
      this.feCap = cap;
      this.feUsed = live.length;
      this.feTombstones = 0;
    });
  }

  private allocRevnat(): number {
    if (this.freeRevnats.length > 0) return this.freeRevnats.pop() as number;
    if (this.nextRevnat >= this.rnCap) {
      const cap = this.rnCap * 2;
      const off = this.alloc(cap * REVNAT.size);
      this.u8().copyWithin(this.base + off, this.base + this.rnOff, this.base + this.rnOff + this.rnCap * REVNAT.size);
      this.replaceRootTable(() => {
        this.retire('block', this.rnOff, this.rnCap * REVNAT.size);
        this.rnOff = off;
        this.rnCap = cap;
      });
    }
    return this.nextRevnat++;
  }

  private writeRevnat(index: number, c: FrontendClaim, slot: number): void {
    const at = this.rnOff + index * REVNAT.size;
    const mem = this.u8();
    mem.set(c.key.subarray(0, 19), this.base + at);
    mem[this.base + at + REVNAT.kind] = c.kind;
    this.setU32(at + REVNAT.slot, slot);
  }

  /** Bytes of the image not reachable from the current root (freed, retired or reusable). */
  get freeBytes(): number {
    let n = 0;
    for (const [size, offs] of this.freeBlocks) n += size * offs.length;
    for (const r of this.retired) if (r.kind === 'block') n += align(r.size, ALIGN);
    return n;
  }
}

/** Memory for an image that no core reads (canonical images for `svcplane compile`). */
export class BufferMemory implements ImageMemory {
  private buf = new Uint8Array(1 << 16);
  bytes(): Uint8Array {
    return this.buf;
  }
  ensure(end: number): void {
    if (end <= this.buf.length) return;
    const next = new Uint8Array(Math.max(end, this.buf.length * 2));
    next.set(this.buf);
    this.buf = next;
  }
}
