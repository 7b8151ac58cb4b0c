// Ingress semantics, decided here and only encoded by compile.ts: which Ingresses this controller serves
// (class selection), how the rules of several Ingresses merge per host, which one wins a conflict, and
// what every path and default backend resolves to.
//
// Choices where the API leaves room (documented in the README's Ingress section):
// - Hosts are virtual hosts: a request picks one host entry (exact host, else the wildcard covering one
//   label, else the host-less rules) and only that entry's paths are matched; there is no fall-through
//   from a named host to the host-less rules (as ingress-nginx servers and Envoy virtual hosts).
// - ImplementationSpecific is matched as Prefix (element-wise); an empty ImplementationSpecific path is "/".
//   (ingress-nginx matches it as a plain string prefix instead: '/foo' also takes '/foobar'.)
// - Default backends: requests for a host that match none of its paths go to the defaultBackend of the
//   oldest Ingress that has rules for that host and a defaultBackend; requests for no known host (and hosts
//   whose Ingresses have none) go to the defaultBackend of the oldest Ingress that has one; else 404.
// - Conflicts: the same host, the same match key (Exact: the path; Prefix and ImplementationSpecific: the
//   path without trailing '/') claimed twice: the oldest Ingress wins (creationTimestamp; an object without
//   one counts as newest), then namespace/name, then the first in spec order; the loser is reported.

import type { Note } from '../k8s/types.js';
import {
  DEFAULT_CLASS_ANNOTATION,
  LEGACY_CLASS_ANNOTATION,
  type HTTPIngressPath,
  type Ingress,
  type IngressBackend,
  type IngressClass,
  type PathType,
} from './types.js';
import type { ResolveServicePort } from './resolve.js';

/** What a path or default backend resolves to. One object per distinct backend (compile.ts dedupes by identity). */
export interface RouteTarget {
  /** 'ns/name' of the Ingress that owns the path or default backend. */
  ingress: string;
  /** 'ns/name' of the Service; '' for a resource backend. */
  service: string;
  /** The backend port as written (number or name); undefined for a resource backend. */
  port?: number | string;
  status: 200 | 503;
  /** The Service port number (resolved from a name). */
  servicePort?: number;
  /** Where the L4 selection continues: the Service's ClusterIP and port (status 200 only). */
  frontend?: { address: string; port: number; protocol: 'TCP' };
  /** Why 503. */
  reason?: string;
  /** True for an Ingress's spec.defaultBackend. */
  isDefault: boolean;
}

export interface PathRoute {
  /** The path as written (ImplementationSpecific without a path: '/'). */
  path: string;
  /** The match key: Exact: the path; Prefix and ImplementationSpecific: the path without trailing '/' ('' = root). */
  key: string;
  pathType: PathType;
  target: RouteTarget;
}

export type HostKind = 'exact' | 'wildcard' | 'any';

export interface HostRoutes {
  /** The host as written: 'foo.com', '*.foo.com', or '' for the rules without a host. */
  host: string;
  kind: HostKind;
  /** Lookup key: the host, the wildcard host without '*.', or ''. */
  key: string;
  /** Exact paths, sorted by key. */
  exact: PathRoute[];
  /** Prefix and ImplementationSpecific paths, sorted by key. */
  prefix: PathRoute[];
  /** For requests to this host that match no path (the host's own, else the global default). */
  defaultBackend?: RouteTarget;
}

export interface IngressPlan {
  /** The class served; undefined when no class is selected (every Ingress is served). */
  className?: string;
  /** Exact hosts, sorted. */
  hosts: HostRoutes[];
  /** Wildcard hosts, sorted by key. */
  wildcards: HostRoutes[];
  /** The rules without a host, if any. */
  catchAll?: HostRoutes;
  /** For requests whose host has no entry. */
  defaultBackend?: RouteTarget;
  /** 'ns/name' of every Ingress served, oldest first. */
  ingresses: string[];
}

export interface IgnoredIngress {
  ingress: string;
  reason: string;
}

export interface PathConflict {
  host: string;
  key: string;
  pathType: PathType;
  winner: string;
  loser: string;
  /** Field of the losing path, e.g. 'spec.rules[0].http.paths[1]'. */
  field: string;
}

export interface IngressPlanResult {
  plan: IngressPlan;
  notes: Note[];
  ignored: IgnoredIngress[];
  conflicts: PathConflict[];
}

export interface PlanOptions {
  /** The IngressClass this controller serves (the CLI's --ingress-class); default: the default IngressClass. */
  ingressClass?: string;
  resolveServicePort: ResolveServicePort;
}

const nsOf = (ing: Ingress): string => ing.metadata.namespace || 'default';
const refOf = (ing: Ingress): string => `${nsOf(ing)}/${ing.metadata.name ?? ''}`;

function timestamp(obj: { metadata: { creationTimestamp?: string } }): number {
  const t = obj.metadata.creationTimestamp ? Date.parse(obj.metadata.creationTimestamp) : NaN;
  return Number.isNaN(t) ? Infinity : t;
}

/** Oldest first (no timestamp = newest), then namespace/name: the precedence of Ingresses in conflicts. */
export function compareIngressAge(a: Ingress, b: Ingress): number {
  const ta = timestamp(a);
  const tb = timestamp(b);
  if (ta !== tb) return ta < tb ? -1 : 1;
  return cmp(nsOf(a), nsOf(b)) || cmp(a.metadata.name ?? '', b.metadata.name ?? '');
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The class an Ingress asks for: spec.ingressClassName, else the deprecated annotation; undefined for none. */
export function ingressClassOf(ing: Ingress): string | undefined {
  return ing.spec?.ingressClassName || ing.metadata.annotations?.[LEGACY_CLASS_ANNOTATION] || undefined;
}

/**
 * The default IngressClass: the one annotated is-default-class "true"; with several, the newest (as the
 * DefaultIngressClass admission plugin since Kubernetes 1.28), then by name.
 */
export function defaultIngressClass(classes: readonly IngressClass[], notes: Note[] = []): string | undefined {
  const defaults = classes.filter((c) => c.metadata.annotations?.[DEFAULT_CLASS_ANNOTATION] === 'true');
  if (defaults.length === 0) return undefined;
  const sorted = [...defaults].sort((a, b) => {
    const ta = timestamp(a);
    const tb = timestamp(b);
    if (ta !== tb) return ta === Infinity ? -1 : tb === Infinity ? 1 : tb - ta;
    return cmp(a.metadata.name ?? '', b.metadata.name ?? '');
  });
  const chosen = sorted[0]?.metadata.name;
  if (sorted.length > 1) {
    for (const other of sorted.slice(1)) {
      notes.push({
        object: `IngressClass ${other.metadata.name ?? ''}`,
        message: `also marked as the default class; "${chosen ?? ''}" (the newest) is used for Ingresses without a class`,
      });
    }
  }
  return chosen;
}

/** Prefix match key: the path without trailing '/' ('/' -> ''). */
export function prefixKey(path: string): string {
  let end = path.length;
  while (end > 0 && path.charCodeAt(end - 1) === 0x2f) end--;
  return path.slice(0, end);
}

interface HostBuild {
  routes: HostRoutes;
  exact: Map<string, { route: PathRoute; owner: string }>;
  prefix: Map<string, { route: PathRoute; owner: string }>;
  defaultOwner?: string;
}

/** Class selection, merging and conflict resolution over validated Ingresses and IngressClasses. */
export function planIngress(
  input: { ingresses: readonly Ingress[]; classes?: readonly IngressClass[] },
  opts: PlanOptions,
): IngressPlanResult {
  const notes: Note[] = [];
  const ignored: IgnoredIngress[] = [];
  const conflicts: PathConflict[] = [];
  const defaultClass = defaultIngressClass(input.classes ?? [], notes);
  const selected = opts.ingressClass || defaultClass;

  const served: Ingress[] = [];
  for (const ing of input.ingresses) {
    const cls = ingressClassOf(ing);
    let reason: string | undefined;
    if (selected === undefined) {
      // No class option and no default class: every Ingress is served.
    } else if (cls === undefined) {
      if (selected !== defaultClass) {
        reason =
          defaultClass === undefined
            ? `has no class and no IngressClass is marked default; this controller serves class "${selected}"`
            : `has no class, so it belongs to the default class "${defaultClass}"; this controller serves class "${selected}"`;
      }
    } else if (cls !== selected) {
      reason = `class "${cls}" is not served; this controller serves class "${selected}"`;
    }
    if (reason) {
      ignored.push({ ingress: refOf(ing), reason });
      notes.push({ object: `Ingress ${refOf(ing)}`, message: `ignored: ${reason}` });
    } else {
      served.push(ing);
    }
  }
  served.sort(compareIngressAge);
  if (selected === undefined && served.some((ing) => ingressClassOf(ing) !== undefined)) {
    notes.push({
      object: 'Ingress',
      message: 'no ingress class selected and no default IngressClass: every Ingress is routed, whatever its class',
    });
  }

  const targets = new Map<string, RouteTarget>();
  const target = (ing: Ingress, backend: IngressBackend, isDefault: boolean, field: string): RouteTarget => {
    const ref = refOf(ing);
    const svc = backend.service;
    const port = svc ? (svc.port?.number ? svc.port.number : svc.port?.name) : undefined;
    const r = backend.resource;
    const cacheKey = svc
      ? `${ref}\0s\0${svc.name}\0${typeof port}\0${port ?? ''}\0${isDefault ? 1 : 0}`
      : `${ref}\0r\0${r?.apiGroup ?? ''}\0${r?.kind ?? ''}\0${r?.name ?? ''}\0${isDefault ? 1 : 0}`;
    const cached = targets.get(cacheKey);
    if (cached) return cached;
    let t: RouteTarget;
    if (!svc || port === undefined) {
      const reason = `resource backend ${r?.kind ?? ''} ${r?.name ?? ''} is not routable: svcplane routes to Services only`;
      t = { ingress: ref, service: '', status: 503, reason, isDefault };
      notes.push({ object: `Ingress ${ref}`, message: `${field}: ${reason} (requests get 503)` });
    } else {
      const resolved = opts.resolveServicePort(nsOf(ing), svc.name, port);
      const service = `${nsOf(ing)}/${svc.name}`;
      if ('error' in resolved) {
        t = { ingress: ref, service, port, status: 503, reason: resolved.error, isDefault };
        notes.push({ object: `Ingress ${ref}`, message: `${field}: ${resolved.error} (requests get 503)` });
      } else {
        t = {
          ingress: ref,
          service,
          port,
          status: 200,
          servicePort: resolved.servicePort,
          frontend: { address: resolved.address, port: resolved.servicePort, protocol: resolved.protocol },
          isDefault,
        };
      }
    }
    targets.set(cacheKey, t);
    return t;
  };

  const hosts = new Map<string, HostBuild>();
  const hostBuild = (host: string): HostBuild => {
    let hb = hosts.get(host);
    if (!hb) {
      const kind: HostKind = host === '' ? 'any' : host.startsWith('*.') ? 'wildcard' : 'exact';
      const key = kind === 'wildcard' ? host.slice(2) : host;
      hb = { routes: { host, kind, key, exact: [], prefix: [] }, exact: new Map(), prefix: new Map() };
      hosts.set(host, hb);
    }
    return hb;
  };

  let globalDefault: RouteTarget | undefined;
  let globalOwner: string | undefined;
  for (const ing of served) {
    const ref = refOf(ing);
    const spec = ing.spec ?? {};
    const ownDefault = spec.defaultBackend ? target(ing, spec.defaultBackend, true, 'spec.defaultBackend') : undefined;
    if (ownDefault) {
      if (!globalDefault) {
        globalDefault = ownDefault;
        globalOwner = ref;
      } else {
        const hasRules = (spec.rules ?? []).length > 0;
        notes.push({
          object: `Ingress ${ref}`,
          message: hasRules
            ? `spec.defaultBackend serves only this Ingress's hosts; requests for unknown hosts go to the default backend of Ingress ${globalOwner ?? ''} (older)`
            : `spec.defaultBackend is not used: requests for unknown hosts go to the default backend of Ingress ${globalOwner ?? ''} (older)`,
        });
      }
    }
    (spec.rules ?? []).forEach((rule, ri) => {
      const hb = hostBuild((rule.host ?? '').toLowerCase());
      if (ownDefault) {
        if (hb.defaultOwner === undefined) {
          hb.defaultOwner = ref;
          hb.routes.defaultBackend = ownDefault;
        } else if (hb.defaultOwner !== ref) {
          notes.push({
            object: `Ingress ${ref}`,
            message: `spec.defaultBackend is not used for host "${hb.routes.host}": Ingress ${hb.defaultOwner}'s (older) is`,
          });
        }
      }
      (rule.http?.paths ?? []).forEach((p, pi) => {
        const field = `spec.rules[${ri}].http.paths[${pi}]`;
        addPath(hb, ing, p, field, target(ing, p.backend, false, `${field}.backend`));
      });
    });
  }

  function addPath(hb: HostBuild, ing: Ingress, p: HTTPIngressPath, field: string, t: RouteTarget): void {
    const ref = refOf(ing);
    const path = p.pathType === 'ImplementationSpecific' && !p.path ? '/' : (p.path ?? '');
    const exact = p.pathType === 'Exact';
    const key = exact ? path : prefixKey(path);
    const table = exact ? hb.exact : hb.prefix;
    const existing = table.get(key);
    if (existing) {
      const hostText = hb.routes.host === '' ? '(any host)' : `"${hb.routes.host}"`;
      const same = existing.owner === ref;
      conflicts.push({ host: hb.routes.host, key, pathType: p.pathType, winner: existing.owner, loser: ref, field });
      notes.push({
        object: `Ingress ${ref}`,
        message:
          `${field}: host ${hostText} path "${path}" (${p.pathType}) conflicts with "${existing.route.path}" ` +
          `(${existing.route.pathType}) of ${same ? 'an earlier path of this Ingress' : `Ingress ${existing.owner} (older)`}, which wins`,
      });
      return;
    }
    table.set(key, { route: { path, key, pathType: p.pathType, target: t }, owner: ref });
  }

  const plan: IngressPlan = { hosts: [], wildcards: [], ingresses: served.map(refOf) };
  if (selected !== undefined) plan.className = selected;
  if (globalDefault) plan.defaultBackend = globalDefault;
  const byKey = (a: PathRoute, b: PathRoute): number => cmp(a.key, b.key);
  for (const hb of [...hosts.values()].sort((a, b) => cmp(a.routes.key, b.routes.key))) {
    const r = hb.routes;
    r.exact = [...hb.exact.values()].map((e) => e.route).sort(byKey);
    r.prefix = [...hb.prefix.values()].map((e) => e.route).sort(byKey);
    if (!r.defaultBackend && globalDefault) r.defaultBackend = globalDefault;
    if (r.kind === 'exact') plan.hosts.push(r);
    else if (r.kind === 'wildcard') plan.wildcards.push(r);
    else plan.catchAll = r;
  }
  return { plan, notes, ignored, conflicts };
}
