// A read-only view of a table image, for dumps, traces and turning core results into addresses. It checks
// the same structural invariants as the core's sp_attach before anything reads through it.

import { formatIp, protocolName } from '../k8s/net.js';
import {
  BACKEND, BE_F_LOCAL, BE_TERMINATING, FE_F_EXTERNAL, FE_F_SOURCE_RANGES, FE_KIND_NAMES, FRONTEND, HEADER, LIST,
  LIST_LOCAL, MAGIC, SERVICE, SOURCE_RANGE, SVC_EMPTY_EXTERNAL_DROP, SVC_EMPTY_INTERNAL_DROP, SVC_F_AFFINITY,
  SVC_F_EXTERNAL_LOCAL, SVC_F_INTERNAL_LOCAL, SVC_F_IPV6, VERSION,
} from './layout.js';

export class ImageError extends Error {}

export interface FrontendView {
  slot: number;
  address: string;
  port: number;
  protocol: string;
  kind: (typeof FE_KIND_NAMES)[number];
  svc: number;
  revnat: number;
  external: boolean;
  sourceRanges: boolean;
}

export interface ServiceView {
  index: number;
  name: string;
  portName: string;
  protocol: string;
  family: 'IPv4' | 'IPv6';
  affinityTimeout: number;
  internalPolicyLocal: boolean;
  externalPolicyLocal: boolean;
  listInternal: number;
  listExternal: number;
  listCluster: number;
  internalWhenEmpty: 'reject' | 'drop';
  externalWhenEmpty: 'reject' | 'drop';
  sourceRanges: string[];
}

export interface ListView {
  index: number;
  kind: 'cluster' | 'local';
  beStart: number;
  beCount: number;
  maglevSize: number;
  maglevWidth: number;
  maglevOffset: number;
}

export interface BackendView {
  index: number;
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

  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes.byteLength < HEADER.size || this.h(HEADER.magic) !== MAGIC) throw new ImageError('not a svcplane table image (bad magic)');
    if (this.h(HEADER.version) !== VERSION) throw new ImageError(`unsupported image version ${this.h(HEADER.version)} (this build reads ${VERSION})`);
    if (this.h(HEADER.imageSize) !== bytes.byteLength) throw new ImageError(`image is truncated or padded: header says ${this.h(HEADER.imageSize)} bytes, got ${bytes.byteLength}`);
    const sections: [string, number, number][] = [
      ['frontends', HEADER.feOff, this.h(HEADER.feCap) * FRONTEND.size],
      ['services', HEADER.svcOff, this.h(HEADER.svcCount) * SERVICE.size],
      ['lists', HEADER.listOff, this.h(HEADER.listCount) * LIST.size],
      ['backends', HEADER.beOff, this.h(HEADER.beCount) * BACKEND.size],
      ['maglev', HEADER.mgOff, this.h(HEADER.mgBytes)],
      ['source ranges', HEADER.srOff, this.h(HEADER.srCount) * SOURCE_RANGE.size],
      ['local sources', HEADER.lsOff, this.h(HEADER.lsCount) * SOURCE_RANGE.size],
      ['strings', HEADER.strOff, this.h(HEADER.strBytes)],
    ];
    for (const [name, off, len] of sections) {
      if (this.h(off) + len > bytes.byteLength) throw new ImageError(`image section ${name} runs past the end`);
    }
  }

  private h(field: number): number {
    return this.dv.getUint32(field, true);
  }

  get clusterSeed(): number { return this.h(HEADER.flowSeed); }
  get tableSeed(): number { return this.h(HEADER.tableSeed); }
  get frontendCapacity(): number { return this.h(HEADER.feCap); }
  get frontendCount(): number { return this.h(HEADER.feCount); }
  get serviceCount(): number { return this.h(HEADER.svcCount); }
  get listCount(): number { return this.h(HEADER.listCount); }
  get backendCount(): number { return this.h(HEADER.beCount); }
  get maglevBytes(): number { return this.h(HEADER.mgBytes); }
  get nodeName(): string { return this.string(this.h(HEADER.nodeName)); }
  get nodeZone(): string { return this.string(this.h(HEADER.nodeZone)); }

  string(off: number): string {
    const base = this.h(HEADER.strOff);
    const len = this.h(HEADER.strBytes);
    if (off >= len) return '';
    let end = base + off;
    while (end < base + len && this.bytes[end] !== 0) end++;
    return decoder.decode(this.bytes.subarray(base + off, end));
  }

  private addr(at: number): string {
    return formatIp(this.bytes.subarray(at, at + 16));
  }

  frontend(slot: number): FrontendView | undefined {
    if (slot < 0 || slot >= this.frontendCapacity) return undefined;
    const at = this.h(HEADER.feOff) + slot * FRONTEND.size;
    const kind = this.bytes[at + FRONTEND.kind] as number;
    if (kind === 0) return undefined;
    const flags = this.dv.getUint32(at + FRONTEND.flags, true);
    const proto = this.bytes[at + FRONTEND.proto] as number;
    return {
      slot,
      address: this.addr(at + FRONTEND.addr),
      port: this.dv.getUint16(at + FRONTEND.port, true),
      protocol: protocolName(proto) ?? String(proto),
      kind: FE_KIND_NAMES[kind] ?? '',
      svc: this.dv.getUint32(at + FRONTEND.svc, true),
      revnat: this.dv.getUint32(at + FRONTEND.revnat, true),
      external: (flags & FE_F_EXTERNAL) !== 0,
      sourceRanges: (flags & FE_F_SOURCE_RANGES) !== 0,
    };
  }

  /** Used frontend slots, in slot order. */
  *frontends(): Generator<FrontendView> {
    for (let s = 0; s < this.frontendCapacity; s++) {
      const fe = this.frontend(s);
      if (fe) yield fe;
    }
  }

  service(index: number): ServiceView {
    if (index >= this.serviceCount) throw new ImageError(`service index ${index} out of range`);
    const at = this.h(HEADER.svcOff) + index * SERVICE.size;
    const u32 = (o: number): number => this.dv.getUint32(at + o, true);
    const flags = u32(SERVICE.flags);
    const empty = this.bytes[at + SERVICE.empty] as number;
    const srStart = u32(SERVICE.srStart);
    const srCount = this.dv.getUint16(at + SERVICE.srCount, true);
    const sourceRanges: string[] = [];
    for (let i = 0; i < srCount; i++) {
      const r = this.h(HEADER.srOff) + (srStart + i) * SOURCE_RANGE.size;
      const prefix = this.bytes[r + SOURCE_RANGE.prefix] as number;
      const v6 = (flags & SVC_F_IPV6) !== 0;
      sourceRanges.push(`${this.addr(r)}/${v6 ? prefix : prefix - 96}`);
    }
    return {
      index,
      name: this.string(u32(SERVICE.name)),
      portName: this.string(u32(SERVICE.portName)),
      protocol: protocolName(this.bytes[at + SERVICE.proto] as number) ?? '?',
      family: flags & SVC_F_IPV6 ? 'IPv6' : 'IPv4',
      affinityTimeout: flags & SVC_F_AFFINITY ? u32(SERVICE.affinityTimeout) : 0,
      internalPolicyLocal: (flags & SVC_F_INTERNAL_LOCAL) !== 0,
      externalPolicyLocal: (flags & SVC_F_EXTERNAL_LOCAL) !== 0,
      listInternal: u32(SERVICE.listInternal),
      listExternal: u32(SERVICE.listExternal),
      listCluster: u32(SERVICE.listCluster),
      internalWhenEmpty: empty & SVC_EMPTY_INTERNAL_DROP ? 'drop' : 'reject',
      externalWhenEmpty: empty & SVC_EMPTY_EXTERNAL_DROP ? 'drop' : 'reject',
      sourceRanges,
    };
  }

  list(index: number): ListView {
    if (index >= this.listCount) throw new ImageError(`list index ${index} out of range`);
    const at = this.h(HEADER.listOff) + index * LIST.size;
    return {
      index,
      kind: this.bytes[at + LIST.kind] === LIST_LOCAL ? 'local' : 'cluster',
      beStart: this.dv.getUint32(at + LIST.beStart, true),
      beCount: this.dv.getUint32(at + LIST.beCount, true),
      maglevOffset: this.dv.getUint32(at + LIST.mgOff, true),
      maglevSize: this.dv.getUint32(at + LIST.mgSize, true),
      maglevWidth: this.bytes[at + LIST.mgWidth] as number,
    };
  }

  /** Maglev entry `slot` of a list: the index of the backend inside the list. */
  maglevEntry(list: ListView, slot: number): number {
    const at = this.h(HEADER.mgOff) + list.maglevOffset + slot * list.maglevWidth;
    if (list.maglevWidth === 1) return this.bytes[at] as number;
    if (list.maglevWidth === 2) return this.dv.getUint16(at, true);
    return this.dv.getUint32(at, true);
  }

  backend(index: number): BackendView {
    if (index >= this.backendCount) throw new ImageError(`backend index ${index} out of range`);
    const at = this.h(HEADER.beOff) + index * BACKEND.size;
    return {
      index,
      address: this.addr(at + BACKEND.addr),
      port: this.dv.getUint16(at + BACKEND.port, true),
      state: this.bytes[at + BACKEND.state] === BE_TERMINATING ? 'terminating' : 'active',
      isLocal: ((this.bytes[at + BACKEND.flags] as number) & BE_F_LOCAL) !== 0,
      nodeName: this.string(this.dv.getUint32(at + BACKEND.node, true)),
    };
  }

  backendsOf(list: ListView): BackendView[] {
    const out: BackendView[] = [];
    for (let i = 0; i < list.beCount; i++) out.push(this.backend(list.beStart + i));
    return out;
  }
}
