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
  FE_TOMBSTONE, FRONTEND, HEADER, LIST, LIST_CLUSTER, LIST_KEEP, LIST_LOCAL, MAGIC, MAX_READERS, REVNAT, ROOT, SERVICE,
  SOURCE_RANGE, SVC_EMPTY_EXTERNAL_DROP, SVC_EMPTY_INTERNAL_DROP, SVC_F_AFFINITY, SVC_F_EXTERNAL_LOCAL,
  SVC_F_INTERNAL_LOCAL, SVC_F_IPV6, VERSION,
} from './layout.js';
import { maglevFill, maglevSize, maglevWidth, murmur3Ascii } from './maglev.js';

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
  /** keyId of the frontend key (addr16, le16 port, proto): what the claim competes for. */
  id: string;
  address: string;
  port: number;
  proto: number;
  kind: number;
  flags: number;
  plan: string;
  service: string;
  /** For notes: kind and protocol names. */
  feKind: string;
  protocol: string;
}

/** A claim as notes name it: 'NodePort 192.168.0.1:30080/TCP'. */
const claimLabel = (c: FrontendClaim): string => `${c.feKind} ${formatHostPort(c.address, c.port)}/${c.protocol}`;

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

/** The frontend key of a claim (addr16, le16 port, proto, 0) in a buffer reused by every call: use it at once. */
const keyScratch = new Uint8Array(20);
function frontendKey(address: string, port: number, protocol: number): Uint8Array {
  const key = keyScratch;
  const bytes = (parseIp(address) as { bytes: Uint8Array }).bytes;
  for (let i = 0; i < 16; i++) key[i] = bytes[i] as number;
  key[16] = port & 0xff;
  key[17] = port >> 8;
  key[18] = protocol;
  key[19] = 0;
  return key;
}

const keyCodes: number[] = new Array<number>(19).fill(0);

/**
 * Identity of a frontend key in the writer's maps: its first 19 bytes as a one-byte string, which sorts
 * like the bytes (placement order in build() follows it).
 */
function keyId(key: Uint8Array): string {
  for (let i = 0; i < 19; i++) keyCodes[i] = key[i] as number;
  return String.fromCharCode.apply(null, keyCodes);
}

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

/** Where each part of a plan's service block goes, block-relative (offsets in the image add the block's). */
interface BlockLayout {
  /** Bytes of the block, a multiple of ALIGN. */
  size: number;
  lists: { kind: 'cluster' | 'local' | 'keep'; members: PlanBackend[]; beAt: number; mgAt: number; mgSize: number; mgWidth: number }[];
  listInternal: number;
  listExternal: number;
  listCluster: number;
  /** Index of the keep list, -1 when there is none. */
  listKeep: number;
  listAt: number;
  srAt: number;
  /** Every string of the block (service name, port name, node names) and where it goes, in placement order. */
  strings: Map<string, number>;
}

/** UTF-8 length of `s` (ASCII fast path: every name svcplane writes is ASCII in practice). */
function utf8Length(s: string): number {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return encoder.encode(s).length;
  return s.length;
}

/** Copies a 16-byte address (a loop: TypedArray.set costs more than it copies at this size). */
function copy16(mem: Uint8Array, at: number, bytes: Uint8Array): void {
  for (let i = 0; i < 16; i++) mem[at + i] = bytes[i] as number;
}

/** Writes the UTF-8 bytes of `s` at `at` (the NUL after it is already zero). */
function writeString(mem: Uint8Array, at: number, s: string): void {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f) {
      mem.set(encoder.encode(s), at);
      return;
    }
    mem[at + i] = c;
  }
}

/** At least the size layoutBlock gives the plan's block (strings counted per use, alignment generously). */
function blockSizeBound(plan: ServicePortPlan): number {
  let n = SERVICE.size + 2 * LIST.size + plan.sourceRanges.length * SOURCE_RANGE.size + utf8Length(plan.service) + utf8Length(plan.portName) + 64;
  n += LIST.size;
  for (const list of [plan.clusterList, plan.localList, plan.keepList ?? []]) {
    if (list.length === 0) continue;
    n += list.length * BACKEND.size + (list === plan.keepList ? 0 : maglevSize(list.length) * maglevWidth(list.length));
    for (const m of list) n += utf8Length(m.nodeName) + 1;
  }
  return n;
}

/**
 * Lays a plan out as a service block: the service, its lists, source ranges, backends per list, Maglev
 * tables per list, then NUL-terminated strings, each part aligned as the core reads it.
 */
function layoutBlock(plan: ServicePortPlan): BlockLayout {
  const lists: BlockLayout['lists'] = [];
  const listIndex = (kind: 'cluster' | 'local' | 'keep'): number => {
    for (let i = 0; i < lists.length; i++) if ((lists[i] as BlockLayout['lists'][number]).kind === kind) return i;
    const members = kind === 'cluster' ? plan.clusterList : kind === 'local' ? plan.localList : plan.keepList ?? [];
    return lists.push({ kind, members, beAt: 0, mgAt: 0, mgSize: 0, mgWidth: 1 }) - 1;
  };
  const listInternal = listIndex(plan.internal.list);
  const listExternal = listIndex(plan.external.list);
  // Only eTP=Local needs the cluster list beside its local one (for traffic from local sources).
  const listCluster = plan.externalPolicyLocal ? listIndex('cluster') : listInternal;
  const listKeep = plan.keepList && plan.keepList.length > 0 ? listIndex('keep') : -1;

  let size = 0;
  const reserve = (n: number, alignment: number): number => {
    const at = align(size, alignment);
    size = at + n;
    return at;
  };
  reserve(SERVICE.size, ALIGN); // the service record is at 0
  const listAt = reserve(lists.length * LIST.size, 4);
  const srAt = reserve(plan.sourceRanges.length * SOURCE_RANGE.size, 4);
  for (const l of lists) l.beAt = reserve(l.members.length * BACKEND.size, 4);
  for (const l of lists) {
    if (l.members.length === 0 || l.kind === 'keep') continue;
    l.mgSize = maglevSize(l.members.length);
    l.mgWidth = maglevWidth(l.members.length);
    l.mgAt = reserve(l.mgSize * l.mgWidth, 4);
  }
  const strings = new Map<string, number>();
  const string = (s: string): void => {
    if (!strings.has(s)) strings.set(s, reserve(utf8Length(s) + 1, 1));
  };
  string(plan.service);
  string(plan.portName);
  for (const l of lists) for (const m of l.members) string(m.nodeName);
  return { size: align(size, ALIGN), lists, listInternal, listExternal, listCluster, listKeep, listAt, srAt, strings };
}

/** Maglev entries before they are narrowed to the table's width (reused: one table is built at a time). */
let maglevScratch = new Int32Array(4096);

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
  private nodeStrings: { off: number; size: number }[] = [];
  // bookkeeping
  private readonly slotOfPlan = new Map<string, number>();
  private readonly blockOfSlot = new Map<number, { off: number; size: number }>();
  private freeSlots: number[] = [];
  private nextSlot = 1; // slot 0 is never used, so a zero slot field is always "none"
  private freeRevnats: number[] = [];
  private nextRevnat = 0;
  private readonly plansOfService = new Map<string, string[]>();
  private readonly claimsOfService = new Map<string, FrontendClaim[]>();
  /** key id -> its claims, one per service in claim order: the claim itself when alone (the usual case), else a list. */
  private readonly claimants = new Map<string, FrontendClaim | FrontendClaim[]>();
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
  // Views over the memory are cached and rebuilt only when its buffer changes (growing replaces it):
  // the writer touches memory a few times per field, and a DataView per access was most of the cost.

  private viewU8: Uint8Array = new Uint8Array(0);
  private viewDv: DataView = new DataView(new ArrayBuffer(0));
  private viewU32: Uint32Array = new Uint32Array(0);

  private u8(): Uint8Array {
    const b = this.mem.bytes();
    if (b !== this.viewU8) this.rebuildViews(b);
    return b;
  }

  private rebuildViews(b: Uint8Array): void {
    this.viewU8 = b;
    this.viewDv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    // Word view for the atomic publication stores (every published field is 4-aligned from an 8-aligned base).
    this.viewU32 = b.byteOffset % 4 === 0 ? new Uint32Array(b.buffer, b.byteOffset, b.byteLength >>> 2) : new Uint32Array(0);
  }

  private dv(): DataView {
    this.u8();
    return this.viewDv;
  }

  private setU32(off: number, v: number): void {
    this.dv().setUint32(this.base + off, v >>> 0, true);
  }

  /** A publication word: an atomic store, ordered after every write before it (for readers on other threads). */
  private publish(off: number, v: number): void {
    const at = this.base + off;
    this.u8();
    if (at % 4 === 0 && this.viewU32.length > 0) Atomics.store(this.viewU32, at >>> 2, v >>> 0);
    else Atomics.store(new Uint32Array(this.viewU8.buffer, this.viewU8.byteOffset + at, 1), 0, v >>> 0);
  }

  private alloc(size: number): number {
    size = align(size, ALIGN);
    const reuse = this.freeBlocks.get(size);
    if (reuse && reuse.length > 0) return reuse.pop() as number;
    const off = this.top;
    this.top += size;
    const end = this.base + this.top;
    if (end > this.u8().length) this.grow(end);
    if (this.root !== 0) this.publish(HEADER.imageSize, this.top);
    return off;
  }

  /** Grows the memory past `end` by an eighth (at least 1 MiB): every grow replaces the buffer and its views. */
  private grow(end: number): void {
    const ahead = Math.max(end, this.viewU8.length + Math.max(this.viewU8.length >>> 3, 1 << 20));
    try {
      this.mem.ensure(ahead);
    } catch {
      this.mem.ensure(end); // near the memory's maximum: only what is needed
    }
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
    let min = Infinity;
    this.u8();
    const at = this.base + HEADER.readers;
    const readers = this.viewU32.length > 0 && at % 4 === 0 ? this.viewU32 : new Uint32Array(this.viewU8.buffer, this.viewU8.byteOffset + at, MAX_READERS);
    const first = readers === this.viewU32 ? at >>> 2 : 0;
    for (let i = 0; i < MAX_READERS; i++) {
      const e = Atomics.load(readers, first + i);
      if (e !== 0) min = Math.min(min, e);
    }
    if (this.retired.length === 0) return 0;
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

  /** Writes a fresh image for these plans and Ingress routes section (deterministic bytes). */
  build(plans: readonly ServicePortPlan[], node: NodeContext, routes?: Uint8Array): Note[] {
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
    this.routes = { off: 0, len: 0 };
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
    // The root tables above are sized so that nothing below grows them; the blocks and routes are all
    // that is left to place: room for them at once (an upper bound) rather than growing step by step.
    let room = this.base + this.top + (routes?.byteLength ?? 0) + ALIGN;
    for (const p of plans) room += blockSizeBound(p);
    if (room > this.u8().length) {
      try {
        this.mem.ensure(room);
      } catch {
        // the bound is past the memory's maximum: grow as the blocks are placed instead
      }
    }

    const byService = new Map<string, ServicePortPlan[]>();
    for (const p of plans) {
      let list = byService.get(p.service);
      if (!list) byService.set(p.service, (list = []));
      list.push(p);
    }
    // Blocks in plan order, then every frontend in key order, so placement does not depend on history.
    for (const [service, ps] of byService) {
      this.setClaims(service, this.claimsOf(ps, this.writePlans(service, ps)));
    }
    const ids = [...this.claimants.keys()].sort();
    for (const id of ids) this.refreshFrontend(id);
    if (routes) this.placeRoutes(routes);
    this.publish(HEADER.imageSize, this.top);
    this.publish(HEADER.root, this.root);
    return this.notes;
  }

  private routes = { off: 0, len: 0 };

  /** Offset and length of the Ingress routes section in the image (0, 0 when there is none). */
  get routesSection(): { off: number; len: number } {
    return this.routes;
  }

  /**
   * Replaces the Ingress routes section. Routes are matched on the writer's thread only (the router
   * attaches the new section right after this), so the two header words need no ordering with readers.
   */
  setRoutes(bytes: Uint8Array | undefined): void {
    const old = this.routes;
    if (bytes && bytes.byteLength > 0) this.placeRoutes(bytes);
    else this.routes = { off: 0, len: 0 };
    this.setU32(HEADER.routesOff, this.routes.off);
    this.setU32(HEADER.routesLen, this.routes.len);
    if (old.len > 0) this.retire('block', old.off, old.len);
    this.endChange();
  }

  private placeRoutes(bytes: Uint8Array): void {
    const off = this.alloc(bytes.byteLength);
    this.u8().set(bytes, this.base + off);
    this.routes = { off, len: bytes.byteLength };
    this.setU32(HEADER.routesOff, off);
    this.setU32(HEADER.routesLen, bytes.byteLength);
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
    this.nodeStrings = [this.nodeName, this.nodeZone].map((off, i) => ({ off, size: encoder.encode(i === 0 ? node.name : node.zone).length + 1 }));
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
    const previousKeys = this.plansOfService.get(service) ?? [];
    const keys = this.writePlans(service, plans);
    const before = this.claimsOfService.get(service) ?? [];
    const after = this.claimsOf(plans, keys);
    this.setClaims(service, after);
    const touched = new Set<string>();
    for (const c of before) touched.add(c.id);
    for (const c of after) touched.add(c.id);
    for (const id of [...touched].sort()) this.refreshFrontend(id);
    // Plans that disappeared: their frontends are gone (above), so their slots can be cleared.
    for (const key of previousKeys) if (!keys.includes(key)) this.dropPlan(key);
    this.endChange();
    return this.notes;
  }

  /** Node addresses, zone or pod CIDRs changed: rebuild the root tables beside the old ones and flip. */
  setNode(node: NodeContext, plansByService: ReadonlyMap<string, readonly ServicePortPlan[]>): Note[] {
    this.notes = [];
    // New plans first (NodePort frontends follow the node's addresses), into the existing slots. This may
    // grow (and republish) the slot table, so the root being replaced is the one current after it.
    for (const [service, plans] of plansByService) this.writePlans(service, plans);
    const oldRoot = { root: this.root, feOff: this.feOff, feCap: this.feCap, slotOff: this.slotOff, slotCap: this.slotCap, rnOff: this.rnOff, rnCap: this.rnCap, lsOff: this.lsOff, lsCount: this.lsCount, strings: this.nodeStrings };
    const oldEntries = new Map(this.entries);
    const frontendCount = [...plansByService.values()].reduce((n, ps) => n + ps.reduce((m, p) => m + p.frontends.length, 0), 0);
    const slotCap = this.slotCap;
    const oldSlots = this.u8().slice(this.base + this.slotOff, this.base + this.slotOff + slotCap * 4);
    const oldRevnats = this.u8().slice(this.base + this.rnOff, this.base + this.rnOff + this.rnCap * REVNAT.size);
    // Sized so that filling them cannot trigger a growth (which would publish a half-built root).
    this.writeRoot(node, nextPow2(frontendCount * 2), slotCap, nextPow2(Math.max(this.rnCap, this.nextRevnat + frontendCount), 16));
    this.u8().set(oldSlots, this.base + this.slotOff);
    this.u8().set(oldRevnats, this.base + this.rnOff);
    this.entries.clear();
    for (const [service, plans] of plansByService) this.setClaims(service, this.claimsOf(plans, this.plansOfService.get(service) ?? []));
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
    for (const str of oldRoot.strings) this.retire('block', str.off, str.size);
    this.endChange();
    return this.notes;
  }

  /** Writes and publishes a block per plan; returns the plans' keys (now the service's plan keys). */
  private writePlans(service: string, plans: readonly ServicePortPlan[]): string[] {
    // One key string per plan, shared by every map that uses it (its hash is computed once).
    const keys = plans.map(planKey);
    for (let i = 0; i < plans.length; i++) {
      const plan = plans[i] as ServicePortPlan;
      const key = keys[i] as string;
      let slot = this.slotOfPlan.get(key);
      if (slot === undefined) {
        slot = this.allocSlot();
        this.slotOfPlan.set(key, slot);
      }
      const { off, size } = this.writeBlock(plan);
      this.publish(this.slotOff + slot * 4, off);
      const old = this.blockOfSlot.get(slot);
      if (old) this.retire('block', old.off, old.size);
      this.blockOfSlot.set(slot, { off, size });
    }
    if (plans.length > 0) this.plansOfService.set(service, keys);
    else this.plansOfService.delete(service);
    return keys;
  }

  /** Lays out, allocates and writes one plan's service block (not yet published); returns where it is. */
  private writeBlock(plan: ServicePortPlan): { off: number; size: number } {
    const lay = layoutBlock(plan);
    const off = this.alloc(lay.size);
    const mem = this.u8();
    const dv = this.viewDv;
    const p = this.base + off; // block start in memory; offsets stored in the image are `off + at`
    mem.fill(0, p, p + lay.size);
    let flags = 0;
    if (plan.affinityTimeout > 0) flags |= SVC_F_AFFINITY;
    if (plan.internalPolicyLocal) flags |= SVC_F_INTERNAL_LOCAL;
    if (plan.externalPolicyLocal) flags |= SVC_F_EXTERNAL_LOCAL;
    if (plan.family === 'IPv6') flags |= SVC_F_IPV6;
    let empty = 0;
    if (plan.internal.whenEmpty === 'drop') empty |= SVC_EMPTY_INTERNAL_DROP;
    if (plan.external.whenEmpty === 'drop') empty |= SVC_EMPTY_EXTERNAL_DROP;
    const stringOff = (s: string): number => off + (lay.strings.get(s) as number);
    dv.setUint32(p + SERVICE.blockSize, lay.size, true);
    dv.setUint32(p + SERVICE.flags, flags, true);
    dv.setUint32(p + SERVICE.affinityTimeout, plan.affinityTimeout >>> 0, true);
    dv.setUint32(p + SERVICE.name, stringOff(plan.service), true);
    dv.setUint32(p + SERVICE.portName, stringOff(plan.portName), true);
    dv.setUint32(p + SERVICE.listOff, off + lay.listAt, true);
    mem[p + SERVICE.listCount] = lay.lists.length;
    mem[p + SERVICE.listInternal] = lay.listInternal;
    mem[p + SERVICE.listExternal] = lay.listExternal;
    mem[p + SERVICE.listCluster] = lay.listCluster;
    mem[p + SERVICE.listKeep] = lay.listKeep + 1;
    dv.setUint32(p + SERVICE.srOff, off + lay.srAt, true);
    dv.setUint16(p + SERVICE.srCount, plan.sourceRanges.length, true);
    mem[p + SERVICE.empty] = empty;
    mem[p + SERVICE.proto] = PROTOCOL_NUMBERS[plan.protocol];
    for (let i = 0; i < plan.sourceRanges.length; i++) {
      const r = plan.sourceRanges[i] as ServicePortPlan['sourceRanges'][number];
      const at = p + lay.srAt + i * SOURCE_RANGE.size;
      copy16(mem, at + SOURCE_RANGE.addr, r.bytes);
      mem[at + SOURCE_RANGE.prefix] = r.prefix128;
    }
    for (let li = 0; li < lay.lists.length; li++) {
      const l = lay.lists[li] as BlockLayout['lists'][number];
      const at = p + lay.listAt + li * LIST.size;
      dv.setUint32(at + LIST.beOff, off + l.beAt, true);
      dv.setUint32(at + LIST.beCount, l.members.length, true);
      if (l.mgSize > 0) dv.setUint32(at + LIST.mgOff, off + l.mgAt, true);
      dv.setUint32(at + LIST.mgSize, l.mgSize, true);
      mem[at + LIST.mgWidth] = l.mgWidth;
      mem[at + LIST.kind] = l.kind === 'cluster' ? LIST_CLUSTER : l.kind === 'local' ? LIST_LOCAL : LIST_KEEP;
      const identity = `${plan.service}/${plan.portName}/${plan.protocol}/${plan.family}/${l.kind}`;
      dv.setUint32(at + LIST.affinityId, murmur3Ascii(identity, 0), true);
      for (let i = 0; i < l.members.length; i++) {
        const m = l.members[i] as PlanBackend;
        const be = p + l.beAt + i * BACKEND.size;
        copy16(mem, be + BACKEND.addr, m.bytes);
        dv.setUint16(be + BACKEND.port, m.port, true);
        mem[be + BACKEND.state] = m.state === 'active' ? BE_ACTIVE : BE_TERMINATING;
        mem[be + BACKEND.flags] = m.isLocal ? BE_F_LOCAL : 0;
        dv.setUint32(be + BACKEND.node, stringOff(m.nodeName), true);
      }
      if (l.mgSize > 0) {
        const m = l.mgSize;
        if (maglevScratch.length < m) maglevScratch = new Int32Array(m);
        const t = maglevScratch;
        maglevFill(l.members.map(backendName), m, this.opts.clusterSeed, t);
        const tp = p + l.mgAt;
        if (l.mgWidth === 1) for (let i = 0; i < m; i++) mem[tp + i] = t[i] as number;
        else if (l.mgWidth === 2) for (let i = 0; i < m; i++) dv.setUint16(tp + i * 2, t[i] as number, true);
        else for (let i = 0; i < m; i++) dv.setUint32(tp + i * 4, t[i] as number, true);
      }
    }
    for (const [s, at] of lay.strings) writeString(mem, p + at, s);
    return { off, size: lay.size };
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

  /** The frontend claims of a service's plans (`keys`: their planKeys, as writePlans returned them). */
  private claimsOf(plans: readonly ServicePortPlan[], keys: readonly string[]): FrontendClaim[] {
    const out: FrontendClaim[] = [];
    for (let i = 0; i < plans.length; i++) {
      const plan = plans[i] as ServicePortPlan;
      const proto = PROTOCOL_NUMBERS[plan.protocol];
      const key = keys[i] as string;
      for (const fe of plan.frontends) {
        let flags = fe.scope === 'external' ? FE_F_EXTERNAL : 0;
        if (fe.kind === 'LoadBalancer' && plan.sourceRanges.length > 0) flags |= FE_F_SOURCE_RANGES;
        out.push({
          id: keyId(frontendKey(fe.address, fe.port, proto)),
          address: fe.address,
          port: fe.port,
          proto,
          kind: FE_KIND[fe.kind],
          flags,
          plan: key,
          service: plan.service,
          feKind: fe.kind,
          protocol: plan.protocol,
        });
      }
    }
    return out;
  }

  private setClaims(service: string, claims: FrontendClaim[]): void {
    for (const old of this.claimsOfService.get(service) ?? []) this.removeClaimant(old.id, service);
    for (const c of claims) this.addClaimant(c);
    if (claims.length > 0) this.claimsOfService.set(service, claims);
    else this.claimsOfService.delete(service);
  }

  private removeClaimant(id: string, service: string): void {
    const v = this.claimants.get(id);
    if (v === undefined) return;
    if (!Array.isArray(v)) {
      if (v.service === service) this.claimants.delete(id);
      return;
    }
    const rest = v.filter((c) => c.service !== service);
    if (rest.length === 0) this.claimants.delete(id);
    else this.claimants.set(id, rest.length === 1 ? (rest[0] as FrontendClaim) : rest);
  }

  /** Adds a claim unless its service already claims that key (the first claim of a service stands). */
  private addClaimant(c: FrontendClaim): void {
    const v = this.claimants.get(c.id);
    if (v === undefined) this.claimants.set(c.id, c);
    else if (!Array.isArray(v)) {
      if (v.service !== c.service) this.claimants.set(c.id, [v, c]);
    } else if (!v.some((o) => o.service === c.service)) v.push(c);
  }

  /**
   * Makes the map entry for one frontend key match its winning claim: the first service in name order
   * (two services may claim one externalIP:port; the first iptables rule would win the same way).
   * A changed entry is inserted before the old one is tombstoned, so a reader finds one or the other.
   */
  private refreshFrontend(id: string): void {
    const m = this.claimants.get(id);
    let winner: FrontendClaim | undefined;
    if (m !== undefined && !Array.isArray(m)) winner = m;
    else if (m !== undefined) {
      for (const c of m) if (!winner || c.service < winner.service) winner = c;
      for (const c of m) {
        if (c !== winner) this.notes.push({ object: `Service ${c.service}`, message: `${claimLabel(c)} is already used by ${(winner as FrontendClaim).service}; ignored` });
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
    const key = frontendKey(c.address, c.port, c.proto);
    let i = this.opts.hash20(key, this.opts.tableSeed >>> 0) & mask;
    // Only empty slots are filled: a tombstone may still be read by a reader that saw it live.
    while (mem[this.base + this.feOff + i * FRONTEND.size + FRONTEND.kind] !== FE_EMPTY) i = (i + 1) & mask;
    const at = this.feOff + i * FRONTEND.size;
    for (let b = 0; b < 19; b++) mem[this.base + at + b] = key[b] as number;
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
    const key = frontendKey(c.address, c.port, c.proto);
    for (let b = 0; b < 19; b++) mem[this.base + at + b] = key[b] as number;
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
