// `svcplane dump ... ingress`: hosts, paths, types and targets, read back from a routes section only (so a
// saved image dumps the same way as live state).

import type { HostKind } from './semantics.js';
import type { PathTypeName } from './layout.js';
import { NONE } from './layout.js';
import type { RoutesView, TargetView } from './view.js';

export interface DumpRouteTarget {
  status: 200 | 503;
  ingress: string;
  service: string;
  /** Service port number (resolved, or as written for a 503); absent when unknown. */
  port?: number;
  /** The backend port name as written, when given by name. */
  portName?: string;
  reason?: string;
  /** ClusterIP frontend the L4 selection continues with. */
  frontend?: { address: string; port: number; protocol: string };
}

export interface DumpRoutePath {
  /** The match key as the table holds it: Prefix paths without their trailing '/', root shown as '/'. */
  path: string;
  pathType: PathTypeName;
  target: DumpRouteTarget;
}

export interface DumpRouteHost {
  /** 'foo.com', '*.foo.com', or '' for the rules without a host. */
  host: string;
  kind: HostKind;
  paths: DumpRoutePath[];
  defaultBackend?: DumpRouteTarget;
}

export interface IngressDump {
  hosts: DumpRouteHost[];
  /** For requests whose host has no entry. */
  defaultBackend?: DumpRouteTarget;
  stats: { hosts: number; wildcards: number; paths: number; targets: number; bytes: number };
}

function target(t: TargetView): DumpRouteTarget {
  const d: DumpRouteTarget = { status: t.status, ingress: t.ingress, service: t.service };
  if (t.port) d.port = t.port;
  if (t.portName) d.portName = t.portName;
  if (t.status === 503) d.reason = t.reason;
  if (t.frontend) d.frontend = t.frontend;
  return d;
}

const TYPE_ORDER: Record<PathTypeName, number> = { Exact: 0, Prefix: 1, ImplementationSpecific: 2 };

export function dumpRoutes(view: RoutesView): IngressDump {
  const targets = view.targets().map(target);
  const hosts: DumpRouteHost[] = view.records().map((r) => {
    const paths = [...r.exact, ...r.prefix]
      .map((p) => ({
        path: p.pathType === 'Exact' ? p.key : p.key === '' ? '/' : p.key,
        pathType: p.pathType,
        target: targets[p.target] as DumpRouteTarget,
      }))
      .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : TYPE_ORDER[a.pathType] - TYPE_ORDER[b.pathType]));
    const h: DumpRouteHost = { host: r.host, kind: r.kind, paths };
    if (r.defaultTarget !== NONE) h.defaultBackend = targets[r.defaultTarget] as DumpRouteTarget;
    return h;
  });
  const dump: IngressDump = {
    hosts,
    stats: {
      hosts: view.hostCount,
      wildcards: view.wildcardCount,
      paths: hosts.reduce((n, h) => n + h.paths.length, 0),
      targets: view.targetCount,
      bytes: view.bytes.byteLength,
    },
  };
  if (view.defaultTarget !== NONE) dump.defaultBackend = targets[view.defaultTarget] as DumpRouteTarget;
  return dump;
}

function describeTarget(t: DumpRouteTarget): string[] {
  const port = t.portName ? `${t.portName}${t.port ? ` (${t.port})` : ''}` : t.port ? String(t.port) : '-';
  const where = t.frontend ? `${t.frontend.address.includes(':') ? `[${t.frontend.address}]` : t.frontend.address}:${t.frontend.port}` : (t.reason ?? '');
  return [String(t.status), t.ingress, t.service || '-', port, where];
}

/** The dump as an aligned text table. */
export function formatIngressDump(d: IngressDump): string {
  const rows: string[][] = [['HOST', 'PATH', 'TYPE', 'STATUS', 'INGRESS', 'SERVICE', 'PORT', 'FRONTEND / REASON']];
  for (const h of d.hosts) {
    const host = h.host === '' ? '(any host)' : h.host;
    for (const p of h.paths) rows.push([host, p.path, p.pathType, ...describeTarget(p.target)]);
    if (h.defaultBackend) rows.push([host, '(default)', '-', ...describeTarget(h.defaultBackend)]);
    else rows.push([host, '(default)', '-', '404', '-', '-', '-', '']);
  }
  // With host-less rules, every other host reaches them; otherwise the section's default backend.
  if (!d.hosts.some((h) => h.kind === 'any')) {
    const fallback = d.defaultBackend ? describeTarget(d.defaultBackend) : ['404', '-', '-', '-', ''];
    rows.push(['(other hosts)', '(default)', '-', ...fallback]);
  }
  const widths = (rows[0] as string[]).map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  const lines = rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c] as number))).join('  ').trimEnd());
  lines.push(`${d.stats.hosts} hosts, ${d.stats.wildcards} wildcard hosts, ${d.stats.paths} paths, ${d.stats.targets} targets, ${d.stats.bytes} bytes`);
  return lines.join('\n') + '\n';
}
