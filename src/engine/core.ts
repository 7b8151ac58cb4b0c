// The core as the TypeScript side drives it, whichever engine runs it: the WebAssembly module, or the
// native addon (which exports the same functions over a host buffer). Core owns the memory layout above
// the core's own data (sp_heap_base):
//
//   [affinity table][single-flow scratch][batch buffer][image]
//
// The image comes last so it can be replaced in place when the new one fits and moved to the end (the
// memory grows) when it does not; the batch buffer grows the same way. Typed-array views over the memory
// are rebuilt after every memory.grow, because growing detaches the old ArrayBuffer.

import { readFileSync } from 'node:fs';
import { FLOW, RESULT, AFFINITY_ENTRY_SIZE, STRUCT_SIZES } from '../compile/layout.js';

/** What an engine provides: the C core's exports and its memory (WebAssembly.Memory or an equivalent). */
export interface CoreExports {
  memory: { readonly buffer: ArrayBuffer; grow(pages: number): number };
  sp_attach(ptr: number, len: number): number;
  sp_detach(): void;
  sp_affinity_init(ptr: number, capacity: number, seed: number): number;
  sp_select_batch(flows: number, results: number, count: number, now: number): number;
  sp_hash20(ptr: number, seed: number): number;
  sp_heap_base(): number;
  sp_abi_version(): number;
  sp_sizeof(which: number): number;
}

export const WASM_PATH = new URL('../../wasm/svcplane.wasm', import.meta.url);

let cachedModule: WebAssembly.Module | undefined;

/** Compiles the core once per process (synchronous: the module is ~6 KB). */
export function wasmModule(): WebAssembly.Module {
  cachedModule ??= new WebAssembly.Module(readFileSync(WASM_PATH));
  return cachedModule;
}

const ATTACH_ERRORS: Record<number, string> = {
  [-1]: 'image buffer outside core memory',
  [-2]: 'bad magic',
  [-3]: 'unsupported version',
  [-4]: 'size mismatch',
  [-5]: 'a section runs past the end of the image',
  [-6]: 'a frontend entry points outside its tables',
  [-7]: 'a service entry points outside its tables',
  [-8]: 'a backend list or Maglev table runs outside its section',
  [-9]: 'hash map capacity is not a power of two',
};

export class CoreError extends Error {}

/** A core running on a fresh instance of the WebAssembly module. */
export function createWasmCore(opts: CoreOptions = {}): Core {
  const instance = new WebAssembly.Instance(wasmModule(), {});
  return new Core('wasm', instance.exports as unknown as CoreExports, opts);
}

const PAGE = 65536;
const align8 = (n: number): number => (n + 7) & ~7;

export type EngineKind = 'wasm' | 'native';

export interface CoreOptions {
  /** Affinity table capacity (entries, rounded up to a power of two). */
  affinityCapacity?: number;
  /** Per-instance seed for the affinity table placement; random by default. */
  stateSeed?: number;
}

export class Core {
  readonly kind: EngineKind;
  private readonly x: CoreExports;
  private u8: Uint8Array;
  private readonly scratch: number; // one flow + one result, for single selects and hashing
  private batchPtr = 0;
  private batchCap = 0; // flows
  private imagePtr = 0;
  private imageCap = 0;
  private top: number; // first free byte

  constructor(kind: EngineKind, exports: CoreExports, opts: CoreOptions = {}) {
    this.kind = kind;
    this.x = exports;
    this.u8 = new Uint8Array(this.x.memory.buffer);
    for (let i = 0; i < STRUCT_SIZES.length; i++) {
      if (this.x.sp_sizeof(i) !== STRUCT_SIZES[i]) throw new CoreError(`core ABI mismatch: struct ${i} is ${this.x.sp_sizeof(i)} bytes in C, ${STRUCT_SIZES[i]} in TypeScript`);
    }
    let cap = 1;
    while (cap < (opts.affinityCapacity ?? 65536)) cap *= 2;
    const affinityPtr = align8(this.x.sp_heap_base());
    this.scratch = align8(affinityPtr + cap * AFFINITY_ENTRY_SIZE);
    this.top = align8(this.scratch + FLOW.size + RESULT.size + 32);
    this.ensure(this.top);
    const seed = opts.stateSeed ?? (Math.random() * 0x100000000) >>> 0;
    const rc = this.x.sp_affinity_init(affinityPtr, cap, seed);
    if (rc !== 0) throw new CoreError(`affinity table init failed (${rc})`);
  }

  /** Current bytes of core memory (a fresh view: never keep it across calls that may grow memory). */
  get memory(): Uint8Array {
    if (this.u8.buffer !== this.x.memory.buffer) this.u8 = new Uint8Array(this.x.memory.buffer);
    return this.u8;
  }

  private ensure(end: number): void {
    const have = this.x.memory.buffer.byteLength;
    if (end > have) this.x.memory.grow(Math.ceil((end - have) / PAGE));
  }

  private allocate(size: number): number {
    const ptr = align8(this.top);
    this.top = ptr + size;
    this.ensure(this.top);
    return ptr;
  }

  /** Copies an image into core memory and attaches it; on failure nothing is attached (the old bytes may be overwritten). */
  attach(image: Uint8Array): void {
    if (image.byteLength > this.imageCap) {
      // Grow geometrically so that a cluster growing one service at a time moves the image O(log n) times.
      this.imageCap = align8(Math.max(image.byteLength, Math.floor(this.imageCap * 1.5)));
      this.imagePtr = this.allocate(this.imageCap);
    }
    this.x.sp_detach();
    this.memory.set(image, this.imagePtr);
    const rc = this.x.sp_attach(this.imagePtr, image.byteLength);
    if (rc !== 0) throw new CoreError(`core rejected the image: ${ATTACH_ERRORS[rc] ?? `error ${rc}`}`);
  }

  hash20(key: Uint8Array, seed: number): number {
    this.memory.set(key.subarray(0, 20), this.scratch);
    return this.x.sp_hash20(this.scratch, seed) >>> 0;
  }

  /** Pointer to a batch buffer for `count` flows followed by `count` results. */
  batchBuffer(count: number): { flows: number; results: number } {
    if (count > this.batchCap) {
      this.batchCap = Math.max(count, this.batchCap * 2, 256);
      this.batchPtr = this.allocate(this.batchCap * (FLOW.size + RESULT.size));
    }
    return { flows: this.batchPtr, results: this.batchPtr + this.batchCap * FLOW.size };
  }

  /** Runs the batch previously written at batchBuffer(count).flows. */
  selectBatchInPlace(count: number, now: number): void {
    const { flows, results } = this.batchBuffer(count);
    if (this.x.sp_select_batch(flows, results, count, now >>> 0) !== count) throw new CoreError('batch outside core memory');
  }

  /** Single flow: `flow` is FLOW.size bytes; returns a view of the RESULT.size result bytes. */
  selectOne(flow: Uint8Array, now: number): Uint8Array {
    const mem = this.memory;
    mem.set(flow, this.scratch);
    const res = this.scratch + FLOW.size;
    this.x.sp_select_batch(this.scratch, res, 1, now >>> 0);
    return this.memory.subarray(res, res + RESULT.size);
  }
}
