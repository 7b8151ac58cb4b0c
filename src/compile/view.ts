// A read-only view of a table image, for dumps, traces and turning core results into addresses. Like the
// core, it checks every offset where it follows one, so a corrupt image gives an ImageError, never a
// read outside the buffer.

import { formatIp, protocolName } from '../k8s/net.js';
import {
  BACKEND, BE_F_LOCAL, BE_TERMINATING, FE_EMPTY, FE_F_EXTERNAL, FE_F_SOURCE_RANGES, FE_KIND_NAMES, FE_TOMBSTONE,
  FRONTEND, HEADER, LIST, MAGIC, REVNAT, ROOT, SERVICE, SOURCE_RANGE, SVC_EMPTY_EXTERNAL_DROP,
  SVC_EMPTY_INTERNAL_DROP, SVC_F_AFFINITY, SVC_F_EXTERNAL_LOCAL, SVC_F_INTERNAL_LOCAL, SVC_F_IPV6, VERSION,
} from './layout.js';

export class ImageError extends Error {}

export interface FrontendView {
  index: number;
  address: string;
  port: number;
  protocol: string;
  kind: (typeof FE_KIND_NAMES)[number];
  slot: number;
  revnat: number;
  external: boolean;
  sourceRanges: boolean;
}

export interface ServiceView {
  slot: number;
  offset: number;
  size: number;
  name: string;
  portName: string;
  protocol: string;
  family: 'IPv4' | 'IPv6';
  affinityTimeout: number;
  internalPolicyLocal: boolean;
  externalPolicyLocal: boolean;
  lists: ListView[];
  listInternal: number;
  listExternal: number;
  listCluster: number;
  /** Index of the keep list (terminating endpoints that keep their flows), -1 when there is none. */
  listKeep: number;
  internalWhenEmpty: 'reject' | 'drop';
  externalWhenEmpty: 'reject' | 'drop';
  sourceRanges: string[];
}

const LIST_KIND_NAMES: readonly ListView['kind'][] = ['cluster', 'local', 'keep'];

export interface ListView {
  /** keep: terminating endpoints that only keep established flows (packet path), no Maglev table. */
  kind: 'cluster' | 'local' | 'keep';
  backendsOffset: number;
  beCount: number;
  maglevOffset: number;
  maglevSize: number;
  maglevWidth: number;
}

export interface BackendView {
  offset: number;
  address: string;
  port: number;
  state: 'active' | 'terminating';
  isLocal: boolean;
  nodeName: string;
}

const decoder = new TextDecoder();

export class ImageView {
  readonly bytes: Uint8Array;
  private readonly dv: DataView;
  private readonly root: number;

  /**
   * `live`: the bytes are a window onto memory a writer is still growing (a reader thread's view): the
   * header's size may be anything up to the window, instead of exactly the window.
   */
  constructor(bytes: Uint8Array, opts: { live?: boolean } = {}) {
    this.bytes = bytes;
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes.byteLength < HEADER.size || this.u32(HEADER.magic) !== MAGIC) throw new ImageError('not a svcplane table image (bad magic)');
    if (this.u32(HEADER.version) !== VERSION) throw new ImageError(`unsupported image version ${this.u32(HEADER.version)} (this build reads ${VERSION})`);
    const size = this.u32(HEADER.imageSize);
    if (opts.live ? size > bytes.byteLength : size !== bytes.byteLength) {
      throw new ImageError(`image is truncated or padded: header says ${this.u32(HEADER.imageSize)} bytes, got ${bytes.byteLength}`);
    }
    this.root = this.checked(this.u32(HEADER.root), ROOT.size, 'root');
    this.checked(this.r(ROOT.feOff), this.r(ROOT.feCap) * FRONTEND.size, 'frontend map');
    this.checked(this.r(ROOT.slotOff), this.r(ROOT.slotCap) * 4, 'service slots');
    this.checked(this.r(ROOT.lsOff), this.r(ROOT.lsCount) * SOURCE_RANGE.size, 'local sources');
    const cap = this.r(ROOT.feCap);
    if (cap === 0 || (cap & (cap - 1)) !== 0) throw new ImageError('frontend map capacity is not a power of two');
  }

  private u32(at: number): number {
    if (at + 4 > this.bytes.byteLength) throw new ImageError(`offset ${at} outside the image`);
    return this.dv.getUint32(at, true);
  }

  private r(field: number): number {
    return this.u32(this.root + field);
  }

  private checked(off: number, len: number, what: string): number {
    if (off + len > this.bytes.byteLength) throw new ImageError(`${what} runs past the end of the image`);
    return off;
  }

  get clusterSeed(): number { return this.u32(HEADER.flowSeed); }
  get tableSeed(): number { return this.u32(HEADER.tableSeed); }
  get generation(): number { return this.u32(HEADER.generation); }
  /** The Ingress routes section (offset and length in the image; length 0 when there is none). */
  get routes(): { off: number; len: number } {
    const off = this.u32(HEADER.routesOff);
    const len = this.u32(HEADER.routesLen);
    this.checked(off, len, 'routes section');
    return { off, len };
  }
  get frontendCapacity(): number { return this.r(ROOT.feCap); }
  get slotCapacity(): number { return this.r(ROOT.slotCap); }
  get nodeName(): string { return this.string(this.r(ROOT.nodeName)); }
  get nodeZone(): string { return this.string(this.r(ROOT.nodeZone)); }

  string(off: number): string {
    if (off >= this.bytes.byteLength) throw new ImageError(`string at ${off} outside the image`);
    let end = off;
    while (end < this.bytes.byteLength && this.bytes[end] !== 0) end++;
    return decoder.decode(this.bytes.slice(off, end)); // a copy: TextDecoder refuses views of shared memory
  }

  private addr(at: number): string {
    this.checked(at, 16, 'address');
    return formatIp(this.bytes.subarray(at, at + 16));
  }

  frontend(index: number): FrontendView | undefined {
    if (index < 0 || index >= this.frontendCapacity) return undefined;
    const at = this.r(ROOT.feOff) + index * FRONTEND.size;
    const kind = this.bytes[at + FRONTEND.kind] as number;
    if (kind === FE_EMPTY || kind === FE_TOMBSTONE) return undefined;
    const flags = this.u32(at + FRONTEND.flags);
    const proto = this.bytes[at + FRONTEND.proto] as number;
    return {
      index,
      address: this.addr(at + FRONTEND.addr),
      port: this.dv.getUint16(at + FRONTEND.port, true),
      protocol: protocolName(proto) ?? String(proto),
      kind: FE_KIND_NAMES[kind] ?? '',
      slot: this.u32(at + FRONTEND.slot),
      revnat: this.u32(at + FRONTEND.revnat),
      external: (flags & FE_F_EXTERNAL) !== 0,
      sourceRanges: (flags & FE_F_SOURCE_RANGES) !== 0,
    };
  }

  /** Reverse-NAT entry `index`: the frontend replies are rewritten back to, and its service slot. */
  revnat(index: number): { address: string; port: number; protocol: string; kind: string; slot: number } | undefined {
    if (index < 0 || index >= this.r(ROOT.rnCap)) return undefined;
    const at = this.checked(this.r(ROOT.rnOff) + index * REVNAT.size, REVNAT.size, 'rev-NAT entry');
    const kind = this.bytes[at + REVNAT.kind] as number;
    if (kind === FE_EMPTY) return undefined;
    const proto = this.bytes[at + REVNAT.proto] as number;
    return {
      address: this.addr(at + REVNAT.addr),
      port: this.dv.getUint16(at + REVNAT.port, true),
      protocol: protocolName(proto) ?? String(proto),
      kind: FE_KIND_NAMES[kind] ?? '',
      slot: this.u32(at + REVNAT.slot),
    };
  }

  /** Live frontend entries, in map order. */
  *frontends(): Generator<FrontendView> {
    for (let i = 0; i < this.frontendCapacity; i++) {
      const fe = this.frontend(i);
      if (fe) yield fe;
    }
  }

  get frontendCount(): number {
    let n = 0;
    for (const _ of this.frontends()) n++;
    return n;
  }

  /** The service block published in `slot`, or undefined when the slot is empty. */
  service(slot: number): ServiceView | undefined {
    if (slot >= this.slotCapacity) throw new ImageError(`service slot ${slot} out of range`);
    const off = this.u32(this.r(ROOT.slotOff) + slot * 4);
    return off === 0 ? undefined : this.serviceAt(off, slot);
  }

  /** The service block at an offset (as the core reports it in a result). */
  serviceAt(off: number, slot = -1): ServiceView {
    this.checked(off, SERVICE.size, 'service block');
    const u32 = (o: number): number => this.u32(off + o);
    const flags = u32(SERVICE.flags);
    const listOff = u32(SERVICE.listOff);
    const listCount = this.bytes[off + SERVICE.listCount] as number;
    this.checked(listOff, listCount * LIST.size, 'list table');
    const lists: ListView[] = [];
    for (let i = 0; i < listCount; i++) {
      const at = listOff + i * LIST.size;
      const l: ListView = {
        kind: LIST_KIND_NAMES[this.bytes[at + LIST.kind] as number] ?? 'cluster',
        backendsOffset: this.u32(at + LIST.beOff),
        beCount: this.u32(at + LIST.beCount),
        maglevOffset: this.u32(at + LIST.mgOff),
        maglevSize: this.u32(at + LIST.mgSize),
        maglevWidth: this.bytes[at + LIST.mgWidth] as number,
      };
      this.checked(l.backendsOffset, l.beCount * BACKEND.size, 'backend list');
      this.checked(l.maglevOffset, l.maglevSize * l.maglevWidth, 'Maglev table');
      lists.push(l);
    }
    const pick = (field: number): number => {
      const i = this.bytes[off + field] as number;
      if (i >= listCount) throw new ImageError(`service block at ${off}: list index ${i} out of range`);
      return i;
    };
    const empty = this.bytes[off + SERVICE.empty] as number;
    const srOff = u32(SERVICE.srOff);
    const srCount = this.dv.getUint16(off + SERVICE.srCount, true);
    this.checked(srOff, srCount * SOURCE_RANGE.size, 'source ranges');
    const v6 = (flags & SVC_F_IPV6) !== 0;
    const sourceRanges: string[] = [];
    for (let i = 0; i < srCount; i++) {
      const at = srOff + i * SOURCE_RANGE.size;
      const prefix = this.bytes[at + SOURCE_RANGE.prefix] as number;
      sourceRanges.push(`${this.addr(at)}/${v6 ? prefix : prefix - 96}`);
    }
    return {
      slot,
      offset: off,
      size: u32(SERVICE.blockSize),
      name: this.string(u32(SERVICE.name)),
      portName: this.string(u32(SERVICE.portName)),
      protocol: protocolName(this.bytes[off + SERVICE.proto] as number) ?? '?',
      family: v6 ? 'IPv6' : 'IPv4',
      affinityTimeout: flags & SVC_F_AFFINITY ? u32(SERVICE.affinityTimeout) : 0,
      internalPolicyLocal: (flags & SVC_F_INTERNAL_LOCAL) !== 0,
      externalPolicyLocal: (flags & SVC_F_EXTERNAL_LOCAL) !== 0,
      lists,
      listInternal: pick(SERVICE.listInternal),
      listExternal: pick(SERVICE.listExternal),
      listCluster: pick(SERVICE.listCluster),
      listKeep: (this.bytes[off + SERVICE.listKeep] as number) - 1 < listCount ? (this.bytes[off + SERVICE.listKeep] as number) - 1 : -1,
      internalWhenEmpty: empty & SVC_EMPTY_INTERNAL_DROP ? 'drop' : 'reject',
      externalWhenEmpty: empty & SVC_EMPTY_EXTERNAL_DROP ? 'drop' : 'reject',
      sourceRanges,
    };
  }

  /** Published service blocks, by slot. */
  *services(): Generator<ServiceView> {
    for (let s = 0; s < this.slotCapacity; s++) {
      const v = this.service(s);
      if (v) yield v;
    }
  }

  /** Maglev entry `slot` of a list: the index of the backend inside the list. */
  maglevEntry(list: ListView, slot: number): number {
    if (slot >= list.maglevSize) throw new ImageError(`Maglev slot ${slot} out of range`);
    const at = list.maglevOffset + slot * list.maglevWidth;
    if (list.maglevWidth === 1) return this.bytes[at] as number;
    if (list.maglevWidth === 2) return this.dv.getUint16(at, true);
    return this.dv.getUint32(at, true);
  }

  /** The backend at an offset (as the core reports it). */
  backend(offset: number): BackendView {
    this.checked(offset, BACKEND.size, 'backend');
    return {
      offset,
      address: this.addr(offset + BACKEND.addr),
      port: this.dv.getUint16(offset + BACKEND.port, true),
      state: this.bytes[offset + BACKEND.state] === BE_TERMINATING ? 'terminating' : 'active',
      isLocal: ((this.bytes[offset + BACKEND.flags] as number) & BE_F_LOCAL) !== 0,
      nodeName: this.string(this.u32(offset + BACKEND.node)),
    };
  }

  backendsOf(list: ListView): BackendView[] {
    const out: BackendView[] = [];
    for (let i = 0; i < list.beCount; i++) out.push(this.backend(list.backendsOffset + i * BACKEND.size));
    return out;
  }
}
