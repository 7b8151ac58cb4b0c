// The compiler: service-port plans in, one flat table image out (layout in layout.ts / wasm/svcplane.h).
// Deterministic: plans arrive sorted, backends within a list are sorted, frontends are inserted into the
// hash map in sorted key order, and every byte not written is zero. Same plans + seeds -> same bytes.

import { type Note } from '../k8s/types.js';
import { PROTOCOL_NUMBERS, formatHostPort, formatIp, parseCidr, parseIp } from '../k8s/net.js';
import type { NodeContext, PlanBackend, ServicePortPlan } from '../control/semantics.js';
import {
  BACKEND, BE_ACTIVE, BE_F_LOCAL, BE_TERMINATING, FE_F_EXTERNAL, FE_F_SOURCE_RANGES, FE_KIND, FRONTEND, HEADER,
  LIST, LIST_CLUSTER, LIST_LOCAL, MAGIC, REVNAT, SECTION_ALIGN, SERVICE, SOURCE_RANGE, SVC_EMPTY_EXTERNAL_DROP,
  SVC_EMPTY_INTERNAL_DROP, SVC_F_AFFINITY, SVC_F_EXTERNAL_LOCAL, SVC_F_INTERNAL_LOCAL, SVC_F_IPV6, VERSION,
} from './layout.js';
import { maglevSize, maglevTable, maglevWidth } from './maglev.js';
import { murmur3 } from './murmur3.js';

export interface CompileOptions {
  /** Cluster-wide seed (flow hash, Maglev permutations). */
  clusterSeed: number;
  /** Placement seed for the frontend hash map. */
  tableSeed: number;
  /** The core's frontend hash (sp_hash20): placement must use exactly the function lookups use. */
  hash20: (key: Uint8Array, seed: number) => number;
}

export interface CompiledImage {
  bytes: Uint8Array;
  notes: Note[];
}

const encoder = new TextEncoder();

class StringTable {
  private readonly offsets = new Map<string, number>();
  private readonly chunks: Uint8Array[] = [new Uint8Array(1)]; // offset 0 is ""
  size = 1;
  intern(s: string): number {
    if (s === '') return 0;
    const known = this.offsets.get(s);
    if (known !== undefined) return known;
    const bytes = encoder.encode(s);
    const off = this.size;
    this.chunks.push(bytes, new Uint8Array(1));
    this.size += bytes.length + 1;
    this.offsets.set(s, off);
    return off;
  }
  writeTo(out: Uint8Array, at: number): void {
    let p = at;
    for (const c of this.chunks) {
      out.set(c, p);
      p += c.length;
    }
  }
}

interface ListOut {
  beStart: number;
  beCount: number;
  mgOff: number;
  mgSize: number;
  mgWidth: number;
  kind: number;
  affinityId: number;
}

interface FrontendOut {
  key: Uint8Array; // 20 bytes: addr16, port LE, proto, 0
  kind: number;
  svc: number;
  revnat: number;
  flags: number;
}

const align = (n: number, a: number): number => Math.ceil(n / a) * a;

function nextPow2(n: number): number {
  let p = 8;
  while (p < n) p *= 2;
  return p;
}

/** Canonical backend identity, the input of its Maglev permutation: '10.0.0.1:80', '[2001:db8::1]:80'. */
export function backendName(b: { address: string; port: number }): string {
  return formatHostPort(b.address, b.port);
}

function frontendKey(address: string, port: number, protocol: number): Uint8Array {
  const key = new Uint8Array(20);
  key.set((parseIp(address) as { bytes: Uint8Array }).bytes, 0);
  key[16] = port & 0xff;
  key[17] = port >> 8;
  key[18] = protocol;
  return key;
}

function compareKeys(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return (a[i] as number) - (b[i] as number);
  return 0;
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
    const key = `${formatIp(c.bytes)}/${c.prefix128}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ bytes: c.bytes, prefix: c.prefix128 });
  }
  return out;
}

export function compileImage(plans: readonly ServicePortPlan[], node: NodeContext, opts: CompileOptions): CompiledImage {
  const notes: Note[] = [];
  const strings = new StringTable();
  const backends: PlanBackend[] = [];
  const lists: ListOut[] = [];
  const maglevChunks: { off: number; width: number; table: Uint32Array }[] = [];
  const maglevByKey = new Map<string, number>();
  let mgBytes = 0;
  const services: Uint8Array[] = [];
  const frontends = new Map<string, FrontendOut>();
  const frontendOwner = new Map<string, string>();
  const revnats: { key: Uint8Array; kind: number; svc: number }[] = [];
  const ranges: { bytes: Uint8Array; prefix: number }[] = [];

  const addList = (plan: ServicePortPlan, kind: 'cluster' | 'local'): number => {
    const members = kind === 'cluster' ? plan.clusterList : plan.localList;
    const beStart = backends.length;
    backends.push(...members);
    const names = members.map(backendName);
    let mgOff = 0;
    let mgSize = 0;
    let mgWidth = 1;
    if (members.length > 0) {
      mgSize = maglevSize(members.length);
      mgWidth = maglevWidth(members.length);
      // Lists with the same members share one table (e.g. ClusterIP and NodePort both on the cluster list).
      const cacheKey = names.join(',');
      const known = maglevByKey.get(cacheKey);
      if (known !== undefined) {
        mgOff = known;
      } else {
        mgOff = align(mgBytes, 4);
        maglevChunks.push({ off: mgOff, width: mgWidth, table: maglevTable(names, mgSize, opts.clusterSeed) });
        mgBytes = mgOff + mgSize * mgWidth;
        maglevByKey.set(cacheKey, mgOff);
      }
    }
    const identity = `${plan.service}/${plan.portName}/${plan.protocol}/${plan.family}/${kind}`;
    lists.push({
      beStart,
      beCount: members.length,
      mgOff,
      mgSize,
      mgWidth,
      kind: kind === 'cluster' ? LIST_CLUSTER : LIST_LOCAL,
      affinityId: murmur3(encoder.encode(identity), 0),
    });
    return lists.length - 1;
  };

  for (const plan of plans) {
    const svcIndex = services.length;
    const listIds = new Map<string, number>();
    const listFor = (kind: 'cluster' | 'local'): number => {
      let id = listIds.get(kind);
      if (id === undefined) listIds.set(kind, (id = addList(plan, kind)));
      return id;
    };
    const listInternal = listFor(plan.internal.list);
    const listExternal = listFor(plan.external.list);
    // Only eTP=Local needs the cluster list beside its local one (for traffic from local sources).
    const listCluster = plan.externalPolicyLocal ? listFor('cluster') : listInternal;
    const proto = PROTOCOL_NUMBERS[plan.protocol];

    const srStart = ranges.length;
    for (const r of plan.sourceRanges) ranges.push({ bytes: r.bytes, prefix: r.prefix128 });

    const svc = new Uint8Array(SERVICE.size);
    const sv = new DataView(svc.buffer);
    let flags = 0;
    if (plan.affinityTimeout > 0) flags |= SVC_F_AFFINITY;
    if (plan.internalPolicyLocal) flags |= SVC_F_INTERNAL_LOCAL;
    if (plan.externalPolicyLocal) flags |= SVC_F_EXTERNAL_LOCAL;
    if (plan.family === 'IPv6') flags |= SVC_F_IPV6;
    let empty = 0;
    if (plan.internal.whenEmpty === 'drop') empty |= SVC_EMPTY_INTERNAL_DROP;
    if (plan.external.whenEmpty === 'drop') empty |= SVC_EMPTY_EXTERNAL_DROP;
    sv.setUint32(SERVICE.flags, flags, true);
    sv.setUint32(SERVICE.affinityTimeout, plan.affinityTimeout, true);
    sv.setUint32(SERVICE.name, strings.intern(plan.service), true);
    sv.setUint32(SERVICE.portName, strings.intern(plan.portName), true);
    sv.setUint32(SERVICE.listInternal, listInternal, true);
    sv.setUint32(SERVICE.listExternal, listExternal, true);
    sv.setUint32(SERVICE.listCluster, listCluster, true);
    sv.setUint32(SERVICE.srStart, srStart, true);
    sv.setUint16(SERVICE.srCount, plan.sourceRanges.length, true);
    sv.setUint8(SERVICE.empty, empty);
    sv.setUint8(SERVICE.proto, proto);
    services.push(svc);

    for (const fe of plan.frontends) {
      const key = frontendKey(fe.address, fe.port, proto);
      const id = `${fe.address}|${fe.port}|${proto}`;
      const owner = `${plan.service}:${plan.portName}`;
      const first = frontendOwner.get(id);
      if (first !== undefined) {
        // Two services claim one address:port/protocol (externalIPs are not checked by the API server).
        // The first in service order keeps it, as the first matching iptables rule would.
        if (first !== owner) {
          notes.push({
            object: `Service ${plan.service}`,
            message: `${fe.kind} ${formatHostPort(fe.address, fe.port)}/${plan.protocol} is already used by ${first}; ignored`,
          });
        }
        continue;
      }
      frontendOwner.set(id, owner);
      revnats.push({ key, kind: FE_KIND[fe.kind], svc: svcIndex });
      let feFlags = fe.scope === 'external' ? FE_F_EXTERNAL : 0;
      if (fe.kind === 'LoadBalancer' && plan.sourceRanges.length > 0) feFlags |= FE_F_SOURCE_RANGES;
      frontends.set(id, { key, kind: FE_KIND[fe.kind], svc: svcIndex, revnat: revnats.length - 1, flags: feFlags });
    }
  }

  // ---- lay out the sections ----
  const feList = [...frontends.values()].sort((a, b) => compareKeys(a.key, b.key));
  const feCap = nextPow2(feList.length * 2);
  let size = HEADER.size;
  const place = (bytes: number): number => {
    const off = align(size, SECTION_ALIGN);
    size = off + bytes;
    return off;
  };
  const feOff = place(feCap * FRONTEND.size);
  const svcOff = place(services.length * SERVICE.size);
  const listOff = place(lists.length * LIST.size);
  const beOff = place(backends.length * BACKEND.size);
  const mgOff = place(mgBytes);
  const rnOff = place(revnats.length * REVNAT.size);
  const srOff = place(ranges.length * SOURCE_RANGE.size);
  const localSources = localSourceRanges(node);
  const lsOff = place(localSources.length * SOURCE_RANGE.size);
  const nodeName = strings.intern(node.name);
  const nodeZone = strings.intern(node.zone);
  // Intern every backend's node name before the string table is sized.
  const beNodes = backends.map((b) => strings.intern(b.nodeName));
  const strOff = place(strings.size);
  const total = align(size, SECTION_ALIGN);

  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  const hdr: [number, number][] = [
    [HEADER.magic, MAGIC], [HEADER.version, VERSION], [HEADER.imageSize, total],
    [HEADER.flowSeed, opts.clusterSeed >>> 0], [HEADER.tableSeed, opts.tableSeed >>> 0],
    [HEADER.feOff, feOff], [HEADER.feCap, feCap], [HEADER.feCount, feList.length],
    [HEADER.svcOff, svcOff], [HEADER.svcCount, services.length],
    [HEADER.listOff, listOff], [HEADER.listCount, lists.length],
    [HEADER.beOff, beOff], [HEADER.beCount, backends.length],
    [HEADER.mgOff, mgOff], [HEADER.mgBytes, mgBytes],
    [HEADER.rnOff, rnOff], [HEADER.rnCount, revnats.length],
    [HEADER.srOff, srOff], [HEADER.srCount, ranges.length],
    [HEADER.strOff, strOff], [HEADER.strBytes, strings.size],
    [HEADER.nodeName, nodeName], [HEADER.nodeZone, nodeZone],
    [HEADER.lsOff, lsOff], [HEADER.lsCount, localSources.length],
  ];
  for (const [at, v] of hdr) dv.setUint32(at, v, true);

  const mask = feCap - 1;
  for (const fe of feList) {
    let slot = opts.hash20(fe.key, opts.tableSeed >>> 0) & mask;
    while (out[feOff + slot * FRONTEND.size + FRONTEND.kind] !== 0) slot = (slot + 1) & mask;
    const at = feOff + slot * FRONTEND.size;
    out.set(fe.key.subarray(0, 19), at); // addr, port, proto (kind follows)
    out[at + FRONTEND.kind] = fe.kind;
    dv.setUint32(at + FRONTEND.svc, fe.svc, true);
    dv.setUint32(at + FRONTEND.revnat, fe.revnat, true);
    dv.setUint32(at + FRONTEND.flags, fe.flags, true);
  }
  services.forEach((s, i) => out.set(s, svcOff + i * SERVICE.size));
  lists.forEach((l, i) => {
    const at = listOff + i * LIST.size;
    dv.setUint32(at + LIST.beStart, l.beStart, true);
    dv.setUint32(at + LIST.beCount, l.beCount, true);
    dv.setUint32(at + LIST.mgOff, l.mgOff, true);
    dv.setUint32(at + LIST.mgSize, l.mgSize, true);
    dv.setUint8(at + LIST.mgWidth, l.mgWidth);
    dv.setUint8(at + LIST.kind, l.kind);
    dv.setUint32(at + LIST.affinityId, l.affinityId, true);
  });
  backends.forEach((b, i) => {
    const at = beOff + i * BACKEND.size;
    out.set(b.bytes, at + BACKEND.addr);
    dv.setUint16(at + BACKEND.port, b.port, true);
    dv.setUint8(at + BACKEND.state, b.state === 'active' ? BE_ACTIVE : BE_TERMINATING);
    dv.setUint8(at + BACKEND.flags, b.isLocal ? BE_F_LOCAL : 0);
    dv.setUint32(at + BACKEND.node, beNodes[i] as number, true);
  });
  for (const chunk of maglevChunks) {
    const base = mgOff + chunk.off;
    const t = chunk.table;
    if (chunk.width === 1) out.set(t, base);
    else if (chunk.width === 2) for (let i = 0; i < t.length; i++) dv.setUint16(base + i * 2, t[i] as number, true);
    else for (let i = 0; i < t.length; i++) dv.setUint32(base + i * 4, t[i] as number, true);
  }
  revnats.forEach((r, i) => {
    const at = rnOff + i * REVNAT.size;
    out.set(r.key.subarray(0, 19), at);
    out[at + REVNAT.kind] = r.kind;
    dv.setUint32(at + REVNAT.svc, r.svc, true);
  });
  const writeRanges = (list: readonly { bytes: Uint8Array; prefix: number }[], base: number): void =>
    list.forEach((r, i) => {
      const at = base + i * SOURCE_RANGE.size;
      out.set(r.bytes, at + SOURCE_RANGE.addr);
      out[at + SOURCE_RANGE.prefix] = r.prefix;
    });
  writeRanges(ranges, srOff);
  writeRanges(localSources, lsOff);
  strings.writeTo(out, strOff);
  return { bytes: out, notes };
}
