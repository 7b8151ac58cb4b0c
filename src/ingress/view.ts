// Read-only view of a routes section: what dumps, the router's result decoding and the TypeScript table
// matcher read. Checks the header and area bounds (the core checks everything else at attach).

import { formatIp, protocolName } from '../k8s/net.js';
import {
  HOST_ANY, HOST_WILDCARD, NONE, PATH_TYPE_NAMES, R_HEADER, R_RECORD, R_SLOT, R_TARGET, ROUTES_MAGIC, ROUTES_VERSION,
  TF_DEFAULT, TF_FRONTEND, type PathTypeName,
} from './layout.js';
import type { HostKind } from './semantics.js';

export class RoutesError extends Error {}

export interface TargetView {
  index: number;
  status: 200 | 503;
  ingress: string;
  service: string;
  /** The backend port name as written ('' when given by number). */
  portName: string;
  /** The Service port number: resolved (status 200), or as written when unresolved; 0 when unknown. */
  port: number;
  reason: string;
  isDefault: boolean;
  /** Service ClusterIP frontend (status 200). */
  frontend?: { address: string; port: number; protocol: string };
}

export interface PathView {
  /** Match key: the path for Exact, the path without trailing '/' for Prefix ('' = root). */
  key: string;
  pathType: PathTypeName;
  target: number;
}

export interface RecordView {
  index: number;
  host: string;
  kind: HostKind;
  exact: PathView[];
  prefix: PathView[];
  prefixMax: number;
  defaultTarget: number;
}

const decoder = new TextDecoder();

export class RoutesView {
  readonly bytes: Uint8Array;
  private readonly dv: DataView;

  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes.byteLength < R_HEADER.size) throw new RoutesError(`routes section too short (${bytes.byteLength} bytes)`);
    if (this.u32(R_HEADER.magic) !== ROUTES_MAGIC) throw new RoutesError('not a routes section (bad magic)');
    if (this.u32(R_HEADER.version) !== ROUTES_VERSION) throw new RoutesError(`unsupported routes version ${this.u32(R_HEADER.version)}`);
    if (this.u32(R_HEADER.sectionSize) !== bytes.byteLength) throw new RoutesError('routes section size mismatch');
    const areas: [number, number][] = [
      [this.slotOff, this.slotCount * R_SLOT.size],
      [this.recOff, this.recordCount * R_RECORD.size],
      [this.tgtOff, this.targetCount * R_TARGET.size],
      [this.strOff, this.strBytes],
    ];
    for (const [off, len] of areas) if (off + len > bytes.byteLength) throw new RoutesError('routes area past the end of the section');
  }

  u32(at: number): number {
    return this.dv.getUint32(at, true);
  }

  get seed(): number { return this.u32(R_HEADER.seed); }
  get slotOff(): number { return this.u32(R_HEADER.slotOff); }
  get slotCount(): number { return this.u32(R_HEADER.slotCount); }
  get recOff(): number { return this.u32(R_HEADER.recOff); }
  get recordCount(): number { return this.u32(R_HEADER.recCount); }
  get tgtOff(): number { return this.u32(R_HEADER.tgtOff); }
  get targetCount(): number { return this.u32(R_HEADER.tgtCount); }
  get strOff(): number { return this.u32(R_HEADER.strOff); }
  get strBytes(): number { return this.u32(R_HEADER.strBytes); }
  get hostCount(): number { return this.u32(R_HEADER.hostCount); }
  get wildcardCount(): number { return this.u32(R_HEADER.wildCount); }
  /** Record of the host-less rules, or NONE. */
  get catchall(): number { return this.u32(R_HEADER.catchall); }
  /** Target for requests whose host has no record, or NONE. */
  get defaultTarget(): number { return this.u32(R_HEADER.defaultTarget); }
  /** Longest path key: a request path cut to maxPath + 1 bytes routes the same. */
  get maxPath(): number { return this.u32(R_HEADER.maxPath); }

  /** NUL-terminated string at a string-area offset. */
  string(off: number): string {
    const start = this.strOff + off;
    let end = start;
    const limit = this.strOff + this.strBytes;
    while (end < limit && this.bytes[end] !== 0) end++;
    return decoder.decode(this.bytes.subarray(start, end));
  }

  private keyText(off: number, len: number): string {
    const start = this.strOff + off;
    return decoder.decode(this.bytes.subarray(start, start + len));
  }

  target(i: number): TargetView {
    if (i >= this.targetCount) throw new RoutesError(`target ${i} out of range`);
    const at = this.tgtOff + i * R_TARGET.size;
    const flags = this.dv.getUint8(at + R_TARGET.flags);
    const t: TargetView = {
      index: i,
      status: this.dv.getUint16(at + R_TARGET.status, true) === 200 ? 200 : 503,
      ingress: this.string(this.u32(at + R_TARGET.ingress)),
      service: this.string(this.u32(at + R_TARGET.service)),
      portName: this.string(this.u32(at + R_TARGET.portName)),
      port: this.dv.getUint16(at + R_TARGET.port, true),
      reason: this.string(this.u32(at + R_TARGET.reason)),
      isDefault: (flags & TF_DEFAULT) !== 0,
    };
    if (flags & TF_FRONTEND) {
      const proto = this.dv.getUint8(at + R_TARGET.proto);
      t.frontend = {
        address: formatIp(this.bytes.subarray(at + R_TARGET.addr, at + R_TARGET.addr + 16)),
        port: t.port,
        protocol: protocolName(proto) ?? String(proto),
      };
    }
    return t;
  }

  targets(): TargetView[] {
    return Array.from({ length: this.targetCount }, (_, i) => this.target(i));
  }

  private mapEntries(first: number, cap: number): PathView[] {
    const out: PathView[] = [];
    for (let i = 0; i < cap; i++) {
      const at = this.slotOff + (first + i) * R_SLOT.size;
      const value = this.u32(at + R_SLOT.value);
      if (value === NONE) continue;
      const type = this.dv.getUint8(at + R_SLOT.type);
      out.push({
        key: this.keyText(this.u32(at + R_SLOT.key), this.dv.getUint16(at + R_SLOT.len, true)),
        pathType: PATH_TYPE_NAMES[type] ?? 'Prefix',
        target: value,
      });
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  record(i: number): RecordView {
    if (i >= this.recordCount) throw new RoutesError(`record ${i} out of range`);
    const at = this.recOff + i * R_RECORD.size;
    const kind = this.dv.getUint8(at + R_RECORD.kind);
    return {
      index: i,
      host: this.string(this.u32(at + R_RECORD.name)),
      kind: kind === HOST_WILDCARD ? 'wildcard' : kind === HOST_ANY ? 'any' : 'exact',
      exact: this.mapEntries(this.u32(at + R_RECORD.exactFirst), this.u32(at + R_RECORD.exactCap)),
      prefix: this.mapEntries(this.u32(at + R_RECORD.prefixFirst), this.u32(at + R_RECORD.prefixCap)),
      prefixMax: this.u32(at + R_RECORD.prefixMax),
      defaultTarget: this.u32(at + R_RECORD.defaultTarget),
    };
  }

  records(): RecordView[] {
    return Array.from({ length: this.recordCount }, (_, i) => this.record(i));
  }
}
