// The core as the TypeScript side drives it, whichever engine runs it: the WebAssembly module, or the
// native addon (which exports the same functions over a host buffer). Core owns the memory layout above
// the core's own data (sp_heap_base):
//
//   [context][affinity table][scratch][batch buffer][router scratch]
//   [packet state: pctx, conntrack table, packet descriptors, packet bytes, reply slots][readers][image arena ...]
//
// The image arena comes last so it can grow in place: the image writer (src/compile/image.ts) grows the
// memory as the arena needs it, and offsets stay valid. Typed-array views over the memory are rebuilt
// after every grow, because growing detaches the old ArrayBuffer.

import { readFileSync } from 'node:fs';
import { FLOW, HEADER, RESULT, AFFINITY_ENTRY_SIZE, CTX_SIZE, STRUCT_SIZES } from '../compile/layout.js';
import type { ImageMemory } from '../compile/image.js';
import type { RouterHost } from '../ingress/route.js';
import { ROUTE_STRUCT_SIZES } from '../ingress/layout.js';
import { CT, PCTX, PKT, PACKET_STRUCT_SIZES, REPLY_MAX } from './packet-layout.js';

/** What an engine provides: the C core's exports and its memory (WebAssembly.Memory or an equivalent). */
export interface CoreExports {
  memory: { readonly buffer: ArrayBuffer; grow(pages: number): number };
  sp_ctx_init(ctx: number, affinity: number, capacity: number, seed: number): number;
  sp_ctx_reader(ctx: number, index: number): number;
  sp_attach(ctx: number, image: number, len: number): number;
  sp_detach(ctx: number): void;
  sp_select_batch(ctx: number, flows: number, results: number, count: number, now: number): number;
  sp_ctx_quiesce(ctx: number): void;
  sp_hash20(ptr: number, seed: number): number;
  sp_routes_attach(ctx: number, off: number, len: number): number;
  sp_routes_detach(ctx: number): void;
  sp_route(ctx: number, req: number, res: number): number;
  sp_route_sizeof(which: number): number;
  sp_pctx_init(pctx: number, ctx: number, ct: number, capacity: number, seed: number): number;
  sp_pctx_timeout(pctx: number, which: number, seconds: number): number;
  sp_process_batch(pctx: number, pkts: number, count: number, now: number): number;
  sp_packet_sizeof(which: number): number;
  sp_heap_base(): number;
  sp_abi_version(): number;
  sp_sizeof(which: number): number;
}

export const WASM_PATH = new URL('../../wasm/svcplane.wasm', import.meta.url);
export const SHARED_WASM_PATH = new URL('../../wasm/svcplane-shared.wasm', import.meta.url);

const modules = new Map<string, WebAssembly.Module>();

/** Compiles a core module once per process (synchronous: the modules are ~7 KB). */
export function wasmModule(shared = false): WebAssembly.Module {
  const url = shared ? SHARED_WASM_PATH : WASM_PATH;
  let m = modules.get(url.href);
  if (!m) modules.set(url.href, (m = new WebAssembly.Module(readFileSync(url))));
  return m;
}

/** Pages of the shared memory's maximum (2 GiB, as the shared module declares). */
export const SHARED_MAX_PAGES = 32768;

const ATTACH_ERRORS: Record<number, string> = {
  [-1]: 'image buffer outside core memory',
  [-2]: 'bad magic',
  [-3]: 'unsupported version',
  [-4]: 'size mismatch',
  [-5]: 'its root tables run past the end of the image or are malformed',
  [-9]: 'capacity is not a power of two',
};

export class CoreError extends Error {}

/**
 * A core running on a fresh instance of the WebAssembly module; with `readers`, on the shared-memory
 * build, over a new shared memory that reader threads can attach to (see reader.ts).
 */
export function createWasmCore(opts: CoreOptions = {}): Core {
  if (!opts.readers) {
    const instance = new WebAssembly.Instance(wasmModule(), {});
    return new Core('wasm', instance.exports as unknown as CoreExports, opts);
  }
  const memory = new WebAssembly.Memory({ initial: 4, maximum: SHARED_MAX_PAGES, shared: true });
  const instance = new WebAssembly.Instance(wasmModule(true), { env: { memory } });
  const exports = { ...(instance.exports as unknown as CoreExports), memory };
  return new Core('wasm', exports, opts, memory);
}

/** Everything a reader thread needs to read the tables of a shared core (structured-cloneable). */
export interface ReaderHandle {
  memory: WebAssembly.Memory;
  index: number;
  ctx: number;
  affinity: number;
  affinityCapacity: number;
  batch: number;
  batchCapacity: number;
  stackTop: number;
  imageBase: number;
}

/** Scratch the Ingress router needs: context, request, host and path (routerScratchSize checks per section). */
const ROUTER_SCRATCH = 65536;
const READER_AFFINITY = 4096;
const READER_BATCH = 1024;
const READER_STACK = 65536;

const PAGE = 65536;
/** sp_ctx.aff_seed (wasm/svcplane.h: image, aff_off, aff_mask, aff_seed, ...). */
const CTX_AFF_SEED = 12;
const align8 = (n: number): number => (n + 7) & ~7;

export type EngineKind = 'wasm' | 'native';

export interface CoreOptions {
  /** Affinity table capacity (entries, rounded up to a power of two). */
  affinityCapacity?: number;
  /** Per-instance seed for the affinity table placement; random by default. */
  stateSeed?: number;
  /** Flows per core call; larger batches are split. Default 4096. */
  batchCapacity?: number;
  /** Reader threads to reserve room for (shared-memory build; at most 16). */
  readers?: number;
  /** Conntrack table capacity of the packet path (entries, rounded up to a power of two). Default 16384. */
  conntrackCapacity?: number;
}

/** Where the packet path's buffers are in core memory (see processPacketsInPlace). */
export interface PacketBuffers {
  /** Offset of `capacity` PKT descriptors. */
  descriptors: number;
  /** Offset and size of the area the packet bytes are copied into. */
  data: number;
  dataSize: number;
  /** Offset of `capacity` reply slots of REPLY_MAX bytes, slot i for descriptor i. */
  replies: number;
  capacity: number;
  /** Offsets of the packet-path state and of its conntrack table (entries of CT.size bytes). */
  pctx: number;
  conntrack: number;
  conntrackCapacity: number;
}

/** Packets per core call and the bytes they may take (larger batches are split). */
const PACKET_BATCH = 256;
const PACKET_DATA = 256 * 1024;

export class Core implements ImageMemory {
  readonly kind: EngineKind;
  private readonly x: CoreExports;
  private u8: Uint8Array;
  private readonly ctx: number;
  private readonly scratch: number; // one flow + one result, for single selects and hashing
  private readonly batchPtr: number;
  private readonly routerScratch: number;
  readonly batchCapacity: number;
  /** Offset of the image arena: everything from here to the end of memory belongs to the image. */
  readonly imageBase: number;
  private readonly readerHandles: ReaderHandle[] = [];
  private readonly packets: PacketBuffers;
  private readonly stateSeed: number | undefined;
  /** The ClientIP affinity table: offset, entries (AFFINITY_ENTRY_SIZE bytes each). */
  private readonly affinity: { offset: number; capacity: number };

  constructor(kind: EngineKind, exports: CoreExports, opts: CoreOptions = {}, sharedMemory?: WebAssembly.Memory) {
    this.kind = kind;
    this.x = exports;
    this.stateSeed = opts.stateSeed;
    this.u8 = new Uint8Array(this.x.memory.buffer);
    for (let i = 0; i < STRUCT_SIZES.length; i++) {
      if (this.x.sp_sizeof(i) !== STRUCT_SIZES[i]) throw new CoreError(`core ABI mismatch: struct ${i} is ${this.x.sp_sizeof(i)} bytes in C, ${STRUCT_SIZES[i]} in TypeScript`);
    }
    PACKET_STRUCT_SIZES.forEach((size, i) => {
      if (this.x.sp_packet_sizeof(i) !== size) throw new CoreError(`core ABI mismatch: packet struct ${i} is ${this.x.sp_packet_sizeof(i)} bytes in C, ${size} in TypeScript`);
    });
    ROUTE_STRUCT_SIZES.forEach((size, i) => {
      if (this.x.sp_route_sizeof(i) !== size) throw new CoreError(`core ABI mismatch: routes struct ${i} is ${this.x.sp_route_sizeof(i)} bytes in C, ${size} in TypeScript`);
    });
    let cap = 1;
    while (cap < (opts.affinityCapacity ?? 65536)) cap *= 2;
    this.batchCapacity = opts.batchCapacity ?? 4096;
    this.ctx = align8(this.x.sp_heap_base());
    const affinity = align8(this.ctx + CTX_SIZE);
    this.affinity = { offset: affinity, capacity: cap };
    this.scratch = align8(affinity + cap * AFFINITY_ENTRY_SIZE);
    this.batchPtr = align8(this.scratch + FLOW.size + RESULT.size + 32);
    this.routerScratch = align8(this.batchPtr + this.batchCapacity * (FLOW.size + RESULT.size));
    let ctCap = 8;
    while (ctCap < (opts.conntrackCapacity ?? 16384)) ctCap *= 2;
    const pctx = align8(this.routerScratch + ROUTER_SCRATCH);
    const conntrack = align8(pctx + PCTX.size);
    const descriptors = align8(conntrack + ctCap * CT.size);
    const data = align8(descriptors + PACKET_BATCH * PKT.size);
    const replies = align8(data + PACKET_DATA);
    this.packets = { descriptors, data, dataSize: PACKET_DATA, replies, capacity: PACKET_BATCH, pctx, conntrack, conntrackCapacity: ctCap };
    let end = replies + PACKET_BATCH * REPLY_MAX;
    for (let index = 0; index < (opts.readers ?? 0); index++) {
      if (!sharedMemory) throw new CoreError('reader threads need the shared-memory core');
      // ctx, affinity table, batch (flows then results), then a stack of its own: the shared memory is
      // one address space for every instance, so each needs its own shadow stack.
      const ctx = align8(end);
      const affinity = align8(ctx + CTX_SIZE);
      const batch = align8(affinity + READER_AFFINITY * AFFINITY_ENTRY_SIZE);
      const stackBottom = align8(batch + READER_BATCH * (FLOW.size + RESULT.size));
      end = stackBottom + READER_STACK;
      this.readerHandles.push({
        memory: sharedMemory, index, ctx, affinity, affinityCapacity: READER_AFFINITY, batch,
        batchCapacity: READER_BATCH, stackTop: end, imageBase: 0,
      });
    }
    this.imageBase = align8(end);
    for (const h of this.readerHandles) h.imageBase = this.imageBase;
    this.ensure(this.imageBase);
    const seed = opts.stateSeed ?? (Math.random() * 0x100000000) >>> 0;
    const rc = this.x.sp_ctx_init(this.ctx, affinity, cap, seed);
    if (rc !== 0) throw new CoreError(`core context init failed (${rc})`);
    this.resetPackets();
  }

  /** Current bytes of core memory (a fresh view: never keep it across calls that may grow memory). */
  get memory(): Uint8Array {
    if (this.u8.buffer !== this.x.memory.buffer) this.u8 = new Uint8Array(this.x.memory.buffer);
    return this.u8;
  }

  bytes(): Uint8Array {
    return this.memory;
  }

  ensure(end: number): void {
    const have = this.x.memory.buffer.byteLength;
    if (end > have) this.x.memory.grow(Math.ceil((end - have) / PAGE));
  }

  /** Attaches the image of `len` bytes at imageBase (written there by an ImageWriter or by loadImage). */
  attach(len: number): void {
    const rc = this.x.sp_attach(this.ctx, this.imageBase, len);
    if (rc !== 0) throw new CoreError(`core rejected the image: ${ATTACH_ERRORS[rc] ?? `error ${rc}`}`);
  }

  /**
   * Copies a compiled image into the arena and attaches it. The packet path starts afresh (empty
   * conntrack, counters at 0): its established flows were checked against the tables they replace.
   */
  loadImage(image: Uint8Array): void {
    this.x.sp_detach(this.ctx);
    this.ensure(this.imageBase + image.byteLength);
    this.memory.set(image, this.imageBase);
    this.attach(image.byteLength);
    this.resetPackets();
  }

  private resetPackets(): void {
    const p = this.packets;
    // A given stateSeed makes the conntrack placement reproducible too (tests); else random per start.
    const seed = this.stateSeed !== undefined ? (this.stateSeed ^ 0x9e3779b9) >>> 0 : (Math.random() * 0x100000000) >>> 0;
    const rc = this.x.sp_pctx_init(p.pctx, this.ctx, p.conntrack, p.conntrackCapacity, seed);
    if (rc !== 0) throw new CoreError(`packet-path init failed (${rc})`);
  }

  hash20(key: Uint8Array, seed: number): number {
    this.memory.set(key.subarray(0, 20), this.scratch);
    return this.x.sp_hash20(this.scratch, seed) >>> 0;
  }

  /** What the Ingress router borrows: the route exports, the memory and its scratch area. */
  routerHost(): RouterHost {
    return { exports: this.x, memory: () => this.memory, scratchOffset: this.routerScratch, scratchSize: ROUTER_SCRATCH };
  }

  /** What reader thread `index` needs to attach (createWasmCore with `readers`). */
  readerHandle(index: number): ReaderHandle {
    const h = this.readerHandles[index];
    if (!h) throw new RangeError(`no reader ${index}: this core reserved ${this.readerHandles.length}`);
    return h;
  }

  /** Offsets of the batch buffer: batchCapacity flows, then batchCapacity results. */
  batchBuffer(): { flows: number; results: number } {
    return { flows: this.batchPtr, results: this.batchPtr + this.batchCapacity * FLOW.size };
  }

  /** Runs `count` (<= batchCapacity) flows previously written at batchBuffer().flows. */
  selectBatchInPlace(count: number, now: number): void {
    if (count > this.batchCapacity) throw new RangeError(`batch of ${count} flows exceeds the core's batch capacity ${this.batchCapacity}`);
    const { flows, results } = this.batchBuffer();
    if (this.x.sp_select_batch(this.ctx, flows, results, count, now >>> 0) !== count) throw new CoreError('batch outside core memory');
  }

  /** The packet path's buffers and state in core memory. */
  packetBuffers(): PacketBuffers {
    return this.packets;
  }

  /** The generation of the image at imageBase (bumped by every publication), -1 when memory holds none yet. */
  imageGeneration(): number {
    const m = this.memory;
    const at = this.imageBase + HEADER.generation;
    if (at + 4 > m.byteLength) return -1;
    return ((m[at] as number) | ((m[at + 1] as number) << 8) | ((m[at + 2] as number) << 16) | ((m[at + 3] as number) << 24)) >>> 0;
  }

  /**
   * Where the state that flows build lives, for saving and restoring it (PacketPath.saveState): the
   * affinity table, and the offset of the affinity seed in the core context (sp_ctx.aff_seed).
   */
  flowState(): { affinity: number; affinityCapacity: number; affinitySeedAt: number } {
    return { affinity: this.affinity.offset, affinityCapacity: this.affinity.capacity, affinitySeedAt: this.ctx + CTX_AFF_SEED };
  }

  /** Runs `count` (<= packetBuffers().capacity) packets whose descriptors are already in core memory. */
  processPacketsInPlace(count: number, now: number): void {
    if (count > this.packets.capacity) throw new RangeError(`batch of ${count} packets exceeds the core's packet batch capacity ${this.packets.capacity}`);
    if (this.x.sp_process_batch(this.packets.pctx, this.packets.descriptors, count, now >>> 0) !== count) throw new CoreError('packet batch outside core memory');
  }

  /** Sets conntrack timeout `which` (T_* in packet-layout.ts) to `seconds`. */
  setPacketTimeout(which: number, seconds: number): void {
    const rc = this.x.sp_pctx_timeout(this.packets.pctx, which, seconds >>> 0);
    if (rc !== 0) throw new RangeError(`timeout ${which} = ${seconds}: rejected by the core (${rc})`);
  }

  /** Offset in memory of the one flow (FLOW.size bytes) that selectScratch selects for. */
  get flowScratch(): number {
    return this.scratch;
  }

  /** Single flow: selects for the flow at flowScratch; returns the offset of its RESULT.size result bytes. */
  selectScratch(now: number): number {
    const res = this.scratch + FLOW.size;
    this.x.sp_select_batch(this.ctx, this.scratch, res, 1, now >>> 0);
    return res;
  }
}
