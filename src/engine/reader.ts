// A reader of a shared dataplane's tables on another thread (worker_threads): its own core instance over
// the writer's shared memory, its own context, affinity table, batch buffer and stack. The writer keeps
// updating the tables in place; every batch sees each service either before or after a change, and
// nothing a result points at is freed until the reader quiesces (ARCHITECTURE.md, "Publication").

import { FLOW, HEADER, NONE, RESULT, VERDICTS, type Verdict } from '../compile/layout.js';
import { ImageView } from '../compile/view.js';
import { type CoreExports, CoreError, type ReaderHandle, wasmModule } from './core.js';

export interface ReaderResult {
  verdict: Verdict;
  reason: number;
  service?: string;
  backend?: { address: string; port: number };
}

export class TableReader {
  private readonly h: ReaderHandle;
  private readonly x: CoreExports;

  constructor(handle: ReaderHandle, seed = (Math.random() * 0x100000000) >>> 0) {
    this.h = handle;
    const instance = new WebAssembly.Instance(wasmModule(true), { env: { memory: handle.memory } });
    this.x = instance.exports as unknown as CoreExports;
    (instance.exports.__stack_pointer as WebAssembly.Global).value = handle.stackTop;
    const check = (rc: number, what: string): void => {
      if (rc !== 0) throw new CoreError(`reader ${handle.index}: ${what} failed (${rc})`);
    };
    check(this.x.sp_ctx_init(handle.ctx, handle.affinity, handle.affinityCapacity, seed), 'context init');
    check(this.x.sp_attach(handle.ctx, handle.imageBase, this.imageSize()), 'attach');
    check(this.x.sp_ctx_reader(handle.ctx, handle.index), 'reader registration');
  }

  private bytes(): Uint8Array {
    return new Uint8Array(this.h.memory.buffer);
  }

  private imageSize(): number {
    return Atomics.load(new Uint32Array(this.h.memory.buffer, this.h.imageBase + HEADER.imageSize, 1), 0);
  }

  /** Selects for up to batchCapacity flows (FLOW layout) and decodes the results before quiescing. */
  selectBatch(flows: Uint8Array, now: number): ReaderResult[] {
    const count = Math.floor(flows.byteLength / FLOW.size);
    if (count > this.h.batchCapacity) throw new RangeError(`reader batches hold at most ${this.h.batchCapacity} flows`);
    const results = this.h.batch + this.h.batchCapacity * FLOW.size;
    this.bytes().set(flows.subarray(0, count * FLOW.size), this.h.batch);
    if (this.x.sp_select_batch(this.h.ctx, this.h.batch, results, count, now >>> 0) !== count) throw new CoreError('reader batch refused');
    try {
      // Size first (an atomic load, ordered after the writer's memory.grow), then the buffer: a buffer
      // taken before the load could predate the growth the size accounts for.
      const size = Atomics.load(new Uint32Array(this.h.memory.buffer, this.h.imageBase + HEADER.imageSize, 1), 0);
      const mem = this.bytes();
      if (mem.byteLength < this.h.imageBase + size) throw new CoreError('shared memory view is older than the image it holds');
      const view = new ImageView(mem.subarray(this.h.imageBase), { live: true });
      const dv = new DataView(mem.buffer, results, count * RESULT.size);
      const out: ReaderResult[] = [];
      for (let i = 0; i < count; i++) {
        const at = i * RESULT.size;
        const r: ReaderResult = { verdict: VERDICTS[dv.getUint8(at + RESULT.verdict)] ?? 'drop', reason: dv.getUint8(at + RESULT.reason) };
        // Offsets, not indices: the frontend map or slot table may have been replaced since the batch,
        // but nothing the batch used is freed before quiesce.
        const svc = dv.getUint32(at + RESULT.service, true);
        const be = dv.getUint32(at + RESULT.backend, true);
        if (svc !== NONE) r.service = view.serviceAt(svc).name;
        if (be !== NONE) {
          const b = view.backend(be);
          r.backend = { address: b.address, port: b.port };
        }
        out.push(r);
      }
      return out;
    } finally {
      this.x.sp_ctx_quiesce(this.h.ctx);
    }
  }
}
