// The dump model: what `svcplane dump` prints, built only from a compiled image (so a saved image dumps
// the same way as live state) plus the validation errors of the inputs, when there are inputs.

import type { ValidationError } from './k8s/types.js';
import { FE_KIND_NAMES } from './compile/layout.js';
import type { ImageView, ListView } from './compile/view.js';
import { compareBackends } from './control/semantics.js';
import { parseIp } from './k8s/net.js';

export interface DumpFrontend {
  service: string;
  portName: string;
  type: string;
  address: string;
  port: number;
  protocol: string;
  /** What this frontend selects among for traffic from outside the node. */
  backends: { address: string; port: number; state: 'active' | 'terminating'; local: boolean }[];
  whenEmpty: 'reject' | 'drop';
  family: 'IPv4' | 'IPv6';
  policy: 'Cluster' | 'Local';
  list: 'cluster' | 'local';
  maglevSize: number;
  sessionAffinity?: { timeoutSeconds: number };
  sourceRanges?: string[];
}

export interface Dump {
  node: { name: string; zone: string };
  frontends: DumpFrontend[];
  errors: ValidationError[];
  /** Service ports (per family) and backend entries (per list) in the image, Maglev and image bytes. */
  stats: { frontends: number; services: number; backends: number; maglevBytes: number; imageBytes: number };
}

const KIND_ORDER = new Map<string, number>(FE_KIND_NAMES.map((k, i) => [k, i]));

export function dumpTables(view: ImageView, errors: readonly ValidationError[] = []): Dump {
  const frontends: DumpFrontend[] = [];
  for (const fe of view.frontends()) {
    const svc = view.service(fe.slot);
    if (!svc) continue; // a frontend always points at a published service; a corrupt image may not
    const list = svc.lists[fe.external ? svc.listExternal : svc.listInternal] as ListView;
    const local = fe.external ? svc.externalPolicyLocal : svc.internalPolicyLocal;
    const entry: DumpFrontend = {
      service: svc.name,
      portName: svc.portName,
      type: fe.kind,
      address: fe.address,
      port: fe.port,
      protocol: fe.protocol,
      backends: view.backendsOf(list).map((b) => ({ address: b.address, port: b.port, state: b.state, local: b.isLocal })),
      whenEmpty: fe.external ? svc.externalWhenEmpty : svc.internalWhenEmpty,
      family: svc.family,
      policy: local ? 'Local' : 'Cluster',
      list: list.kind === 'local' ? 'local' : 'cluster', // selection lists are never 'keep'
      maglevSize: list.maglevSize,
    };
    if (svc.affinityTimeout > 0) entry.sessionAffinity = { timeoutSeconds: svc.affinityTimeout };
    if (fe.sourceRanges) entry.sourceRanges = svc.sourceRanges;
    frontends.push(entry);
  }
  // Slot order depends on the table seed; sort for a stable, readable dump.
  const addrKey = (a: string): { bytes: Uint8Array; port: number } => ({ bytes: parseIp(a)?.bytes ?? new Uint8Array(16), port: 0 });
  frontends.sort(
    (a, b) =>
      cmp(a.service, b.service) ||
      cmp(a.portName, b.portName) ||
      cmp(a.protocol, b.protocol) ||
      (KIND_ORDER.get(a.type) ?? 0) - (KIND_ORDER.get(b.type) ?? 0) ||
      compareBackends(addrKey(a.address), addrKey(b.address)) ||
      a.port - b.port,
  );
  let services = 0;
  let backends = 0;
  let maglevBytes = 0;
  for (const svc of view.services()) {
    services++;
    for (const l of svc.lists) {
      backends += l.beCount;
      maglevBytes += l.maglevSize * l.maglevWidth;
    }
  }
  return {
    node: { name: view.nodeName, zone: view.nodeZone },
    frontends,
    errors: [...errors],
    stats: { frontends: frontends.length, services, backends, maglevBytes, imageBytes: view.bytes.byteLength },
  };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
