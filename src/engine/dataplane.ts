// The library's entry point: cluster state + kube-proxy semantics + compiler + core, behind one object.

import { type IpFamily, type Protocol, formatIp, parseIPv4Word, parseIp, protocolName, protocolNumber, writeMappedIPv4 } from '../k8s/net.js';
import type { Note, ValidationError } from '../k8s/types.js';
import { type ApplyResult, ClusterState, type Kind } from '../control/state.js';
import { type NodeContext, type ServicePortPlan, nodeContext, planCluster, planService } from '../control/semantics.js';
import { BufferMemory, ImageWriter, type ImageOptions } from '../compile/image.js';
import { ImageView, type BackendView, type ListView } from '../compile/view.js';
import { IngressRouter } from '../ingress/route.js';
import { RoutesView } from '../ingress/view.js';
import { buildRoutes } from '../ingress/index.js';
import {
  DEFAULT_CLUSTER_SEED, FLOW, LIST_USED_EXTERNAL, LIST_USED_INTERNAL, LIST_USED_LOCAL_SOURCE, NONE, REASONS, RESULT,
  R_AFFINITY, VERDICTS, type Verdict,
} from '../compile/layout.js';
import { type Core, type EngineKind, type ReaderHandle, createWasmCore } from './core.js';
import { type NativeCoreOptions, causeChain, createNativeCore, loadNative } from './native.js';
import { PacketPath, type FrontendNamer, type PacketOutcome } from './packet.js';

export type EngineName = 'auto' | 'wasm' | 'native';

export interface DataplaneOptions {
  /** Name of the node the tables are built for (endpoint locality, Node object lookup). */
  node: string;
  /** Addresses NodePort frontends listen on; default: the Node object's InternalIP/ExternalIP addresses. */
  nodeAddresses?: string[];
  /** The node's zone for topology hints; default: the Node object's topology.kubernetes.io/zone label. */
  zone?: string;
  /** Core implementation: 'auto' (native addon when built, else wasm), 'wasm' or 'native'; $SVCPLANE_ENGINE overrides. */
  engine?: EngineName;
  /** Cluster-wide seed of the flow hash and Maglev permutations (same on every node). */
  clusterSeed?: number;
  /** Seed of the frontend hash-map placement; random per instance unless given (give one for reproducible images). */
  tableSeed?: number;
  /** This node's pod CIDRs (traffic from them is local for eTP=Local); default: the Node's spec.podCIDRs. */
  podCIDRs?: string[];
  /** Capacity of the ClientIP affinity table (entries). Default 65536. */
  affinityCapacity?: number;
  /** The IngressClass served; default: the cluster's default IngressClass (annotation). */
  ingressClass?: string;
  /**
   * Reader threads (1..16) that will read the tables over shared memory while this dataplane updates
   * them (readerHandle(i) -> new TableReader(handle) in a worker). Uses the shared-memory wasm build.
   */
  readers?: number;
  /**
   * Capacity of the packet path's conntrack table (entries, 80 bytes each; a flow takes two). Default
   * 16384. Give it about twice the entries your concurrent flows need: each entry lives in one of two
   * 8-slot windows, and windows fill before the table does (README, "Conntrack sizing").
   */
  conntrackCapacity?: number;
  /** Native engine: back the core's memory with transparent huge pages (madvise MADV_HUGEPAGE). Default true. */
  hugePages?: boolean;
}

export interface Flow {
  protocol: Protocol;
  src: string;
  sport: number;
  dst: string;
  dport: number;
  /** Seconds on any monotonic scale shared by all calls; default: wall-clock seconds. */
  now?: number;
}

/**
 * The core's flow batch buffer, for callers that encode flows straight into core memory (encodeFlow at
 * FLOW.size * i) and read the results there: selectBatch without its two copies. `flows` and `results`
 * are fresh views on every read, since core memory may grow when the tables do (a view taken before is
 * then detached and empty). selectBatch uses the same buffer: do not interleave it with a batch being
 * filled.
 */
export interface FlowBatch {
  /** Flows the buffer holds. */
  readonly capacity: number;
  /** capacity * FLOW.size bytes of core memory. */
  readonly flows: Uint8Array;
  /** capacity * RESULT.size bytes of core memory (the layout selectBatch returns). */
  readonly results: Uint8Array;
  /** Selects for the first `count` flows of `flows` in one core call; returns their results (a view). */
  select(count: number, now?: number): Uint8Array;
}

export interface Selection {
  verdict: Verdict;
  service?: string;
  backend?: { address: string; port: number };
  /** Why: 'Maglev', 'session affinity', 'no usable endpoints', 'not a service address' ... */
  reason: string;
  /** The frontend hit, and how the decision was made (for traces). */
  frontend?: { type: string; address: string; port: number; protocol: string; portName: string };
  scope?: 'internal' | 'external';
  policy?: 'Cluster' | 'Local';
  list?: { kind: 'cluster' | 'local'; size: number; maglevSize: number };
  /** eTP=Local traffic from this node or its pods, short-circuited to the cluster list (as kube-proxy). */
  localSource?: boolean;
  maglevSlot?: number;
  backendState?: 'active' | 'terminating';
}

export interface RouteRequestOptions {
  /** The Host header (':port' ignored, case-insensitive). */
  host?: string;
  /** The request path ('?query' ignored, case-sensitive). */
  path: string;
  /** The client, for the L4 selection behind the route (affinity, Maglev); default 0.0.0.0:0. */
  src?: string;
  sport?: number;
  now?: number;
}

/** route(): the Ingress decision, then the pod the Service's L4 selection picks. */
export interface RouteSelection {
  status: 200 | 404 | 503;
  ingress?: string;
  service?: string;
  port?: number;
  backend?: { address: string; port: number };
  /** Why 404 or 503. */
  reason?: string;
}

export interface ApplyReport {
  errors: ValidationError[];
  notes: Note[];
}

export class EngineError extends Error {}

/** The core an engine choice produced, and why that engine (for `svcplane version`). */
interface ResolvedEngine {
  core: Core;
  engine: EngineKind;
  reason: string;
}

const ENGINES: readonly string[] = ['auto', 'wasm', 'native'];

/**
 * Picks and starts the engine: $SVCPLANE_ENGINE when set, else `engine`. 'auto' tries native, then wasm;
 * a forced engine that cannot start throws EngineError with the reasons in its `cause` chain.
 */
function resolveEngine(engine: EngineName, coreOpts: NativeCoreOptions): ResolvedEngine {
  const env = process.env.SVCPLANE_ENGINE;
  const forced = env !== undefined && env !== '';
  if (forced && !ENGINES.includes(env)) throw new EngineError(`SVCPLANE_ENGINE="${env}" is not an engine (auto, wasm or native)`);
  if (!forced && !ENGINES.includes(engine)) throw new EngineError(`unknown engine "${String(engine)}" (auto, wasm or native)`);
  const wanted = (forced ? env : engine) as EngineName;
  const by = forced ? `SVCPLANE_ENGINE=${env}` : `engine: '${wanted}'`;
  if (wanted === 'wasm') return { core: createWasmCore(coreOpts), engine: 'wasm', reason: `WebAssembly core, as asked (${by})` };
  try {
    const native = loadNative();
    const core = createNativeCore(coreOpts, native);
    const how = wanted === 'native' ? `as asked (${by})` : `auto: native preferred (${by})`;
    return { core, engine: 'native', reason: `native addon ${native.path}, ${how}` };
  } catch (err) {
    if (wanted === 'native') {
      throw new EngineError(`engine "native" was asked for (${by}) but is not available: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    return { core: createWasmCore(coreOpts), engine: 'wasm', reason: `WebAssembly core, auto: the native engine is unavailable: ${causeChain(err)}` };
  }
}

const nowSeconds = (): number => Math.floor(Date.now() / 1000);

/** Writes one flow into `buf` at `offset` in the core's FLOW layout. Throws on malformed addresses. */
export function encodeFlow(buf: Uint8Array, offset: number, flow: Omit<Flow, 'now'>): void {
  const proto = protocolNumber(flow.protocol);
  const srcWord = parseIPv4Word(flow.src);
  const dstWord = parseIPv4Word(flow.dst);
  if (srcWord >= 0 && dstWord >= 0 && proto !== undefined) {
    // IPv4, the common case, without allocating (select() encodes one flow per call)
    writeMappedIPv4(buf, offset + FLOW.src, srcWord);
    writeMappedIPv4(buf, offset + FLOW.dst, dstWord);
  } else {
    const src = parseIp(flow.src);
    const dst = parseIp(flow.dst);
    if (!src) throw new TypeError(`invalid source address "${flow.src}"`);
    if (!dst) throw new TypeError(`invalid destination address "${flow.dst}"`);
    if (proto === undefined) throw new TypeError(`unknown protocol "${String(flow.protocol)}" (TCP, UDP or SCTP)`);
    buf.set(src.bytes, offset + FLOW.src);
    buf.set(dst.bytes, offset + FLOW.dst);
  }
  buf[offset + FLOW.sport] = flow.sport & 0xff;
  buf[offset + FLOW.sport + 1] = (flow.sport >> 8) & 0xff;
  buf[offset + FLOW.dport] = flow.dport & 0xff;
  buf[offset + FLOW.dport + 1] = (flow.dport >> 8) & 0xff;
  buf[offset + FLOW.proto] = proto;
  buf[offset + FLOW.proto + 1] = 0;
  buf[offset + FLOW.proto + 2] = 0;
  buf[offset + FLOW.proto + 3] = 0;
}

/** The little-endian u32 at byte `at` of `b`. */
function u32le(b: Uint8Array, at: number): number {
  return ((b[at] as number) | ((b[at + 1] as number) << 8) | ((b[at + 2] as number) << 16) | ((b[at + 3] as number) << 24)) >>> 0;
}

/** Flows packed for selectBatch: FLOW.size bytes each. */
export function encodeFlows(flows: readonly Omit<Flow, 'now'>[]): Uint8Array {
  const buf = new Uint8Array(flows.length * FLOW.size);
  flows.forEach((f, i) => encodeFlow(buf, i * FLOW.size, f));
  return buf;
}

/** What describe() decodes once per (frontend, service block, list) and generation. */
interface DecodedFrontend {
  service: string;
  frontend: NonNullable<Selection['frontend']>;
  scope: NonNullable<Selection['scope']>;
  policy: NonNullable<Selection['policy']>;
  list: NonNullable<Selection['list']>;
  affinityTimeout: number;
}

/** Selection over a compiled image: what `svcplane dump IMAGE` and `trace IMAGE` need, and the base of Dataplane. */
export class Selector {
  /** The engine running the core, and why that one (for `svcplane version`). */
  readonly engine: EngineKind;
  readonly engineReason: string;
  protected readonly core: Core;
  protected readonly router: IngressRouter;
  private loaded: ImageView | undefined;
  private packetPath: PacketPath | undefined;

  constructor(opts: Pick<DataplaneOptions, 'engine' | 'affinityCapacity' | 'readers' | 'conntrackCapacity' | 'hugePages'>) {
    if (opts.readers && opts.engine === 'native') throw new EngineError('reader threads need the WebAssembly engine (shared memory)');
    const sizes = { affinityCapacity: opts.affinityCapacity, conntrackCapacity: opts.conntrackCapacity };
    // Reader threads share the core's memory, which only the shared-memory WebAssembly build can do.
    const resolved = opts.readers
      ? { core: createWasmCore({ ...sizes, readers: opts.readers }), engine: 'wasm' as const, reason: 'WebAssembly core (shared memory, for reader threads)' }
      : resolveEngine(opts.engine ?? 'auto', { ...sizes, hugePages: opts.hugePages });
    this.core = resolved.core;
    this.engine = resolved.engine;
    this.engineReason = resolved.reason;
    this.router = new IngressRouter(this.core.routerHost());
  }

  /** Attaches a compiled image (e.g. from `svcplane compile`); throws ImageError/CoreError when malformed. */
  loadImage(bytes: Uint8Array): void {
    const view = new ImageView(bytes.slice());
    this.core.loadImage(bytes);
    this.loaded = view;
    this.forgetDecoded();
    this.packetPath = undefined;
    this.attachRoutes(view.routes);
  }

  /** Attaches the image's Ingress routes section (already in core memory at imageBase + off). */
  protected attachRoutes(section: { off: number; len: number }): void {
    if (section.len === 0) {
      this.router.detach();
      return;
    }
    const at = this.core.imageBase + section.off;
    this.router.attach(this.core.memory.slice(at, at + section.len), at, { copy: false });
  }

  /** The attached Ingress routes (for `dump ... ingress`), or undefined when the image has none. */
  get routes(): RoutesView | undefined {
    return this.router.view;
  }

  /**
   * Routes an HTTP request by the Ingress rules (host, then longest path), then picks the pod with the
   * Service's L4 selection: 200 with a backend; 404 when nothing matches and there is no default backend;
   * 503 when the backend names a missing Service or port, or the Service has no usable endpoint.
   */
  route(req: RouteRequestOptions): RouteSelection {
    const r = this.router.route({ host: req.host, path: req.path });
    const out: RouteSelection = { status: r.status };
    if (r.ingress !== undefined) out.ingress = r.ingress;
    if (r.service !== undefined) out.service = r.service;
    if (r.port !== undefined) out.port = r.port;
    if (r.status === 404) out.reason = this.router.view ? 'no rule matches and there is no default backend' : 'no Ingress routes';
    if (r.status !== 200 || !r.frontend) {
      if (r.reason !== undefined) out.reason = r.reason;
      return out;
    }
    const sel = this.select({
      protocol: (r.frontend.protocol as Protocol) || 'TCP',
      src: req.src ?? '0.0.0.0',
      sport: req.sport ?? 0,
      dst: r.frontend.address,
      dport: r.frontend.port,
      now: req.now,
    });
    if (sel.verdict === 'forward' && sel.backend) out.backend = sel.backend;
    else {
      out.status = 503;
      out.reason = `Service ${r.service ?? ''} port ${r.port ?? ''}: ${sel.reason}`;
    }
    return out;
  }

  /** Read-only view of the tables being served (do not keep it across changes). */
  get tables(): ImageView | undefined {
    return this.loaded;
  }

  /** The image bytes (what `svcplane compile` writes). */
  get image(): Uint8Array | undefined {
    return this.loaded?.bytes;
  }

  /**
   * The packet path over the same tables: raw IPv4/IPv6 packets in, rewritten in place (DNAT, reverse
   * NAT, ICMP errors), with conntrack, counters and ICMP rejects (src/engine/packet.ts, wasm/packet.c).
   */
  get packets(): PacketPath {
    this.packetPath ??= new PacketPath(this.core, (revnat) => {
      // Named once per rev-NAT index and generation, as describe() names frontends: once per packet
      // (a replay) the view and name decoding would dominate.
      const cache = this.decodeCache();
      if (cache.revnats.has(revnat)) return cache.revnats.get(revnat);
      const view = this.tables;
      const rn = view?.revnat(revnat);
      const named = view && rn ? { service: view.service(rn.slot)?.name ?? '', address: rn.address, port: rn.port, protocol: rn.protocol } : undefined;
      cache.revnats.set(revnat, named);
      return named;
    }, (frontends) => {
      const index = new Map<string, number>();
      for (const fe of this.tables?.frontends() ?? []) index.set(`${fe.address}|${fe.port}|${fe.protocol}`, fe.revnat);
      return frontends.map((f) => index.get(`${formatIp(f.address)}|${f.port}|${protocolName(f.proto) ?? String(f.proto)}`));
    });
    return this.packetPath;
  }

  /** Runs whole IP packets through the packet path, rewriting each in place; `now` in seconds. */
  process(packets: readonly Uint8Array[], now: number = nowSeconds()): PacketOutcome[] {
    return this.packets.process(packets, now);
  }

  /** One flow's decision. Affinity state is updated as for a real new connection. */
  select(flow: Flow): Selection {
    const memory = this.core.memory; // a single-flow select never grows memory
    encodeFlow(memory, this.core.flowScratch, flow); // straight into core memory
    return this.describeAt(memory, this.core.selectScratch(flow.now ?? nowSeconds()));
  }

  /**
   * Selects for `flows` (FLOW.size bytes per flow, see encodeFlows) with one core call per
   * core.batchCapacity flows; returns RESULT.size bytes per flow: verdict u8 (0 pass, 1 forward, 2 reject,
   * 3 drop), reason u8, list u8, frontend index u32, backend offset u32 (tables.backend()), Maglev slot u32
   * (0xffffffff when unset).
   */
  selectBatch(flows: Uint8Array, now: number = nowSeconds(), out?: Uint8Array): Uint8Array {
    const count = Math.floor(flows.byteLength / FLOW.size);
    const results = out ?? new Uint8Array(count * RESULT.size);
    const { flows: fp, results: rp } = this.core.batchBuffer();
    const cap = this.core.batchCapacity;
    for (let done = 0; done < count; done += cap) {
      const n = Math.min(cap, count - done);
      this.core.memory.set(flows.subarray(done * FLOW.size, (done + n) * FLOW.size), fp);
      this.core.selectBatchInPlace(n, now);
      results.set(this.core.memory.subarray(rp, rp + n * RESULT.size), done * RESULT.size);
    }
    return results;
  }

  /** The core's flow batch buffer, to fill in place (FlowBatch). */
  flowBatch(): FlowBatch {
    const core = this.core;
    const { flows, results } = core.batchBuffer();
    const capacity = core.batchCapacity;
    return {
      capacity,
      get flows(): Uint8Array {
        return core.memory.subarray(flows, flows + capacity * FLOW.size);
      },
      get results(): Uint8Array {
        return core.memory.subarray(results, results + capacity * RESULT.size);
      },
      select(count: number, now: number = nowSeconds()): Uint8Array {
        if (!Number.isInteger(count) || count < 0 || count > capacity) throw new RangeError(`flow batch of ${count}: must be a whole number from 0 to ${capacity}`);
        core.selectBatchInPlace(count, now);
        return core.memory.subarray(results, results + count * RESULT.size);
      },
    };
  }

  /**
   * Names decoded from the tables, valid for one generation of the served image: service blocks are
   * immutable while published, and every publication bumps the generation (so a reused offset is never
   * taken for the block that was there before). Decoding names per result otherwise dominates select().
   */
  private readonly decoded = {
    generation: -1,
    frontends: new Map<number, DecodedFrontend>(),
    backends: new Map<number, BackendView>(),
    revnats: new Map<number, ReturnType<FrontendNamer>>(),
  };

  private decodeCache(): typeof this.decoded {
    const generation = this.core.imageGeneration();
    if (generation !== this.decoded.generation) this.forgetDecoded(generation);
    return this.decoded;
  }

  /** Forgets decoded names: the generation moved, or a new image was loaded (-1: its generation may equal the old one's). */
  protected forgetDecoded(generation = -1): void {
    this.decoded.generation = generation;
    this.decoded.frontends.clear();
    this.decoded.backends.clear();
    this.decoded.revnats.clear();
  }

  /** Decodes result `i` of a selectBatch output. */
  describe(results: Uint8Array, i: number): Selection {
    return this.describeAt(results, i * RESULT.size);
  }

  /** describe() of the result at byte `at` of `bytes` (read without a DataView: select() runs it per call). */
  private describeAt(bytes: Uint8Array, at: number): Selection {
    if (at < 0 || at + RESULT.size > bytes.length) throw new RangeError(`no result at byte ${at} of ${bytes.length}`);
    const verdict = VERDICTS[bytes[at + RESULT.verdict] as number] ?? 'drop';
    const reasonCode = bytes[at + RESULT.reason] as number;
    const sel: Selection = { verdict, reason: REASONS[reasonCode] ?? `reason ${reasonCode}` };
    const feIndex = u32le(bytes, at + RESULT.frontend);
    const svcOffset = u32le(bytes, at + RESULT.service);
    if (feIndex === NONE || svcOffset === NONE) return sel;
    const used = bytes[at + RESULT.list] as number;
    const cache = this.decodeCache();
    const key = feIndex * 4 + used + svcOffset * 0x40000000; // exact in a double: offsets < 2^32, index < 2^28
    let d = cache.frontends.get(key);
    if (!d) {
      const view = this.tables;
      const fe = view?.frontend(feIndex);
      if (!view || !fe) return sel;
      const svc = view.serviceAt(svcOffset);
      const list = svc.lists[used === LIST_USED_INTERNAL ? svc.listInternal : used === LIST_USED_EXTERNAL ? svc.listExternal : svc.listCluster] as ListView;
      d = {
        service: svc.name,
        frontend: { type: fe.kind, address: fe.address, port: fe.port, protocol: fe.protocol, portName: svc.portName },
        scope: fe.external ? 'external' : 'internal',
        policy: (fe.external ? svc.externalPolicyLocal : svc.internalPolicyLocal) ? 'Local' : 'Cluster',
        list: { kind: list.kind === 'local' ? 'local' : 'cluster', size: list.beCount, maglevSize: list.maglevSize },
        affinityTimeout: svc.affinityTimeout,
      };
      cache.frontends.set(key, d);
    }
    sel.service = d.service;
    sel.frontend = { ...d.frontend };
    sel.scope = d.scope;
    sel.policy = d.policy;
    if (used === LIST_USED_LOCAL_SOURCE) sel.localSource = true;
    sel.list = { ...d.list };
    const slot = u32le(bytes, at + RESULT.slot);
    if (slot !== NONE) sel.maglevSlot = slot;
    const beOffset = u32le(bytes, at + RESULT.backend);
    if (beOffset !== NONE) {
      let be = cache.backends.get(beOffset);
      if (!be) {
        be = (this.tables as ImageView).backend(beOffset);
        cache.backends.set(beOffset, be);
      }
      sel.backend = { address: be.address, port: be.port };
      sel.backendState = be.state;
    }
    if (reasonCode === R_AFFINITY) sel.reason = `session affinity (ClientIP, timeout ${d.affinityTimeout}s)`;
    return sel;
  }
}

export class Dataplane extends Selector {
  readonly state = new ClusterState();
  private readonly opts: DataplaneOptions;
  private readonly imageOptions: ImageOptions;
  private readonly writer: ImageWriter;
  private node: NodeContext;
  /** Errors and notes of the last apply/delete. */
  lastReport: ApplyReport = { errors: [], notes: [] };

  constructor(opts: DataplaneOptions) {
    super(opts);
    if (!opts.node) throw new TypeError('createDataplane: option "node" (this node\'s name) is required');
    this.opts = opts;
    this.imageOptions = {
      clusterSeed: (opts.clusterSeed ?? DEFAULT_CLUSTER_SEED) >>> 0,
      tableSeed: (opts.tableSeed ?? Math.random() * 0x100000000) >>> 0,
      hash20: (key, seed) => this.core.hash20(key, seed),
    };
    this.writer = new ImageWriter(this.core, this.core.imageBase, this.imageOptions);
    this.node = this.nodeContext;
    this.writer.build([], this.node);
    this.core.attach(this.writer.size);
  }

  /** The routes section for the current Ingresses and Services, or undefined when there are no Ingresses. */
  private compileRoutes(): { bytes: Uint8Array | undefined; notes: Note[] } {
    if (this.state.ingress.ingresses.size === 0) return { bytes: undefined, notes: [] };
    const r = buildRoutes(this.state.ingress, this.state.services, { ingressClass: this.opts.ingressClass, seed: this.imageOptions.tableSeed });
    return { bytes: r.bytes, notes: r.notes };
  }


  /** The node the tables are built for, as resolved from options and the Node object. */
  get nodeContext(): NodeContext {
    return nodeContext(this.state, this.opts.node, this.opts.nodeAddresses, this.opts.zone, this.opts.podCIDRs);
  }

  /** The tables being served, read in place (do not keep the view across changes). */
  override get tables(): ImageView {
    return new ImageView(this.writer.view());
  }

  /**
   * The canonical image of the current state: a fresh full compile, byte-identical for the same objects
   * and seeds whatever the order of changes (the served image is updated in place and is not).
   */
  override get image(): Uint8Array {
    const mem = new BufferMemory();
    const w = new ImageWriter(mem, 0, this.imageOptions);
    w.build(planCluster(this.state, this.node), this.node, this.compileRoutes().bytes);
    return mem.bytes().slice(0, w.size);
  }

  /** What reader thread `index` passes to `new TableReader(handle)` (structured-cloneable: postMessage it). */
  readerHandle(index: number): ReaderHandle {
    return this.core.readerHandle(index);
  }

  /** Bytes of the served image, and how many of them are free for reuse. */
  get imageStats(): { bytes: number; freeBytes: number } {
    return { bytes: this.writer.size, freeBytes: this.writer.freeBytes };
  }

  /** Validates and applies objects (Service, EndpointSlice, Node; other kinds are noted and skipped). */
  apply(objects: readonly unknown[]): ValidationError[] {
    const r = this.state.apply(objects);
    this.publish(r);
    return r.errors;
  }

  /** Removes an object by kind, namespace and name; deleting what is not there is a no-op. */
  delete(kind: Kind, namespace: string, name: string): void {
    this.publish(this.state.delete(kind, namespace, name));
  }

  /** Turns a state change into image updates: per changed service, or the root tables when the node changed. */
  private publish(r: ApplyResult): void {
    const notes = [...r.notes];
    const node = this.nodeContext;
    if (r.nodesChanged && JSON.stringify(node) !== JSON.stringify(this.node)) {
      this.node = node;
      const all = new Map<string, ServicePortPlan[]>();
      for (const key of [...this.state.services.keys()].sort()) all.set(key, this.plansOf(key));
      notes.push(...this.writer.setNode(node, all));
    } else {
      for (const key of [...r.changedServices].sort()) notes.push(...this.writer.update(key, this.plansOf(key)));
    }
    // Routes resolve Service ports to ClusterIPs, so Service changes rebuild them too (when there are any).
    if (r.ingressChanged || (r.changedServices.size > 0 && this.state.ingress.ingresses.size > 0)) {
      const routes = this.compileRoutes();
      notes.push(...routes.notes);
      this.writer.setRoutes(routes.bytes);
      this.attachRoutes(this.writer.routesSection);
    }
    this.lastReport = { errors: r.errors, notes };
  }

  private plansOf(serviceKey: string): ServicePortPlan[] {
    const svc = this.state.services.get(serviceKey);
    if (!svc) return [];
    const slices = this.state.slicesOf(serviceKey);
    return (['IPv4', 'IPv6'] as const).flatMap((family) => planService(svc, slices, family, this.node));
  }
}

/** Creates a dataplane for one node. Async so that a future native engine can load without blocking. */
export async function createDataplane(opts: DataplaneOptions): Promise<Dataplane> {
  return new Dataplane(opts);
}

/** Opens a compiled image for selection and dumps (no cluster state). */
export async function openImage(bytes: Uint8Array, opts: { engine?: EngineName; conntrackCapacity?: number; affinityCapacity?: number } = {}): Promise<Selector> {
  const s = new Selector(opts);
  s.loadImage(bytes);
  return s;
}

export type { IpFamily };
export { protocolName };
