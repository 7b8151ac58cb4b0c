// kube-proxy's semantics, reproduced rule by rule (pkg/proxy: servicechangetracker.go, serviceport.go,
// endpointslicecache.go, topology.go, iptables/proxier.go). The output is a plan: per service port and IP
// family, its frontends and the endpoint lists they use. The compiler only encodes plans; every decision
// about which endpoint may receive which traffic is made here.

import type { Endpoint, EndpointSlice, Service } from '../k8s/types.js';
import { ZONE_LABEL } from '../k8s/types.js';
import { type IpFamily, type ParsedCidr, type Protocol, formatIp, isLoopback, parseCidr, parseIp, parseIPv4Word } from '../k8s/net.js';
import { type ClusterState, namespaceOf } from './state.js';

export type FrontendKind = 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalIP';
export type BackendState = 'active' | 'terminating';
export type EmptyVerdict = 'reject' | 'drop';

/** The node the tables are built for. */
export interface NodeContext {
  name: string;
  /** Addresses NodePort frontends listen on (never loopback). */
  addresses: string[];
  /** Value of the node's topology.kubernetes.io/zone label; '' when unknown. */
  zone: string;
  /** This node's pod CIDRs (Node spec.podCIDRs): traffic from them counts as local (detect-local-mode NodeCIDR). */
  podCIDRs: string[];
}

/** One endpoint after slice merging (kube-proxy's BaseEndpointInfo). */
export interface EndpointInfo {
  address: string;
  /** 16-byte form of address (IPv4 mapped). */
  bytes: Uint8Array;
  port: number;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  isLocal: boolean;
  nodeName: string;
  zoneHints: ReadonlySet<string>;
  nodeHints: ReadonlySet<string>;
}

export interface PlanBackend {
  address: string;
  bytes: Uint8Array;
  port: number;
  /** 'active' = Ready; 'terminating' = in the list only through the serving+terminating fallback. */
  state: BackendState;
  isLocal: boolean;
  nodeName: string;
}

export interface PlanFrontend {
  kind: FrontendKind;
  address: string;
  port: number;
  /** ClusterIP uses the internal list, every other kind the external one. */
  scope: 'internal' | 'external';
}

/** One service port in one IP family: everything the compiler encodes for it. */
export interface ServicePortPlan {
  /** 'ns/name' */
  service: string;
  portName: string;
  protocol: Protocol;
  family: IpFamily;
  internalPolicyLocal: boolean;
  externalPolicyLocal: boolean;
  /** ClientIP affinity timeout in seconds; 0 = no affinity. */
  affinityTimeout: number;
  clusterList: PlanBackend[];
  localList: PlanBackend[];
  /**
   * Terminating endpoints in neither list: they get no new flows but keep the ones they have (the
   * packet path's conntrack), as Cilium keeps terminating backends until they leave the EndpointSlice.
   */
  keepList?: PlanBackend[];
  /** Which list each scope uses, and what a new connection gets when that list is empty. */
  internal: { list: 'cluster' | 'local'; whenEmpty: EmptyVerdict };
  external: { list: 'cluster' | 'local'; whenEmpty: EmptyVerdict };
  /** loadBalancerSourceRanges of this family; applies to LoadBalancer frontends only. */
  sourceRanges: ParsedCidr[];
  frontends: PlanFrontend[];
}

export const DEFAULT_AFFINITY_TIMEOUT = 10800;

/** Merges a service's slices into endpoints per service port, keyed 'portName/protocol' then 'ip:port'. */
export function endpointsByPort(
  slices: readonly EndpointSlice[],
  family: IpFamily,
  nodeName: string,
): Map<string, Map<string, EndpointInfo>> {
  const byPort = new Map<string, Map<string, EndpointInfo>>();
  for (const slice of slices) {
    // A proxier handles one family; FQDN slices are never proxied.
    if (slice.addressType !== family) continue;
    for (const port of slice.ports ?? []) {
      // kube-proxy skips ports with a nil name or a nil/0 port number.
      if (port.name === undefined || port.name === null || !port.port) continue;
      const key = `${port.name}/${port.protocol || 'TCP'}`;
      let set = byPort.get(key);
      if (!set) byPort.set(key, (set = new Map()));
      for (const ep of slice.endpoints ?? []) {
        const first = ep.addresses[0];
        if (first === undefined) continue;
        let address: string;
        let bytes: Uint8Array;
        const w = parseIPv4Word(first);
        if (w >= 0) {
          // A dotted quad (the only text parseIp calls IPv4) that parsed strictly is already canonical.
          if (family !== 'IPv4') continue;
          address = first;
          bytes = v4MappedBytes(w);
        } else {
          const ip = parseIp(first);
          if (!ip || ip.family !== family) continue;
          address = formatIp(ip.bytes);
          bytes = ip.bytes;
        }
        const c = ep.conditions ?? NO_CONDITIONS;
        // Nil conditions: ready and serving default to true, terminating to false. The docs say a nil
        // serving defers to ready; kube-proxy treats it as true, and we follow kube-proxy.
        const info: EndpointInfo = {
          address,
          bytes,
          port: port.port,
          ready: c.ready === undefined || c.ready === null || c.ready,
          serving: c.serving === undefined || c.serving === null || c.serving,
          terminating: c.terminating === true,
          isLocal: ep.nodeName !== undefined && ep.nodeName === nodeName,
          nodeName: ep.nodeName ?? '',
          zoneHints: hintSet(ep.hints?.forZones),
          nodeHints: hintSet(ep.hints?.forNodes),
        };
        // Duplicates (an IP seen in two slices): a non-terminating entry replaces what is there, a
        // terminating one never does (endpointslicecache.go addEndpoints). Slices arrive sorted by name,
        // so between two non-terminating duplicates the later slice name wins.
        const id = `${address}:${port.port}`;
        if (!set.has(id) || !info.terminating) set.set(id, info);
      }
    }
  }
  return byPort;
}

const NO_HINTS: ReadonlySet<string> = new Set();
const NO_CONDITIONS: NonNullable<Endpoint['conditions']> = {};

/** The 16-byte (IPv4-mapped) form of an IPv4 address given as its 32-bit value, as parseIp makes it. */
function v4MappedBytes(w: number): Uint8Array {
  const b = new Uint8Array(16);
  b[10] = 0xff;
  b[11] = 0xff;
  b[12] = w >>> 24;
  b[13] = (w >>> 16) & 0xff;
  b[14] = (w >>> 8) & 0xff;
  b[15] = w & 0xff;
  return b;
}

/** Canonical text of `text` if it is an address of `family` (a dotted quad is its own canonical form). */
function canonicalOfFamily(text: string, family: IpFamily): string | undefined {
  if (parseIPv4Word(text) >= 0) return family === 'IPv4' ? text : undefined;
  const p = parseIp(text);
  return p && p.family === family ? formatIp(p.bytes) : undefined;
}

/** The names of a hints list; one shared empty set for the usual endpoint without hints. */
function hintSet(hints: readonly { name: string }[] | undefined): ReadonlySet<string> {
  if (!hints || hints.length === 0) return NO_HINTS;
  return new Set(hints.map((h) => h.name));
}

type TopologyMode = '' | 'PreferSameZone' | 'PreferSameNode';

/** topology.go topologyModeFromHints: hints count only when every Ready endpoint carries one. */
export function topologyMode(endpoints: readonly EndpointInfo[], node: NodeContext): TopologyMode {
  let hasForNode = false;
  let allHaveNodeHints = true;
  let hasForZone = false;
  let allHaveZoneHints = true;
  for (const ep of endpoints) {
    if (!ep.ready) continue;
    if (ep.nodeHints.size === 0) allHaveNodeHints = false;
    else if (ep.nodeHints.has(node.name)) hasForNode = true;
    if (ep.zoneHints.size === 0) allHaveZoneHints = false;
    else if (node.zone !== '' && ep.zoneHints.has(node.zone)) hasForZone = true;
  }
  if (allHaveNodeHints && hasForNode) return 'PreferSameNode';
  if (allHaveZoneHints && hasForZone) return 'PreferSameZone';
  return '';
}

function availableForTopology(ep: EndpointInfo, mode: TopologyMode, node: NodeContext): boolean {
  if (mode === 'PreferSameNode') return ep.nodeHints.has(node.name);
  if (mode === 'PreferSameZone') return ep.zoneHints.has(node.zone);
  return true;
}

export interface PortPolicy {
  internalPolicyLocal: boolean;
  externalPolicyLocal: boolean;
  externallyAccessible: boolean;
}

export interface Categorized {
  clusterEndpoints: EndpointInfo[];
  localEndpoints: EndpointInfo[];
  hasAnyEndpoints: boolean;
}

/** topology.go CategorizeEndpoints, line for line. */
export function categorizeEndpoints(endpoints: readonly EndpointInfo[], policy: PortPolicy, node: NodeContext): Categorized {
  const usesCluster = !policy.internalPolicyLocal || policy.externallyAccessible;
  const usesLocal = policy.internalPolicyLocal || (policy.externalPolicyLocal && policy.externallyAccessible);
  let clusterEndpoints: EndpointInfo[] = [];
  let localEndpoints: EndpointInfo[] = [];
  let hasAnyEndpoints = false;
  if (usesCluster) {
    const mode = topologyMode(endpoints, node);
    clusterEndpoints = endpoints.filter((ep) => ep.ready && availableForTopology(ep, mode, node));
    // No Ready endpoint anywhere: fall back to every serving+terminating endpoint, topology ignored.
    if (clusterEndpoints.length === 0) clusterEndpoints = endpoints.filter((ep) => ep.serving && ep.terminating);
    if (clusterEndpoints.length > 0) hasAnyEndpoints = true;
  }
  if (!usesLocal) return { clusterEndpoints, localEndpoints, hasAnyEndpoints };
  let hasLocalReady = false;
  let hasLocalServingTerminating = false;
  for (const ep of endpoints) {
    if (ep.ready) {
      hasAnyEndpoints = true;
      if (ep.isLocal) hasLocalReady = true;
    } else if (ep.serving && ep.terminating) {
      hasAnyEndpoints = true;
      if (ep.isLocal) hasLocalServingTerminating = true;
    }
  }
  // The local list never applies topology.
  if (hasLocalReady) localEndpoints = endpoints.filter((ep) => ep.isLocal && ep.ready);
  else if (hasLocalServingTerminating) localEndpoints = endpoints.filter((ep) => ep.isLocal && ep.serving && ep.terminating);
  return { clusterEndpoints, localEndpoints, hasAnyEndpoints };
}

function toBackends(eps: readonly EndpointInfo[]): PlanBackend[] {
  const out = eps.map((ep) => ({
    address: ep.address,
    bytes: ep.bytes,
    port: ep.port,
    state: (ep.ready ? 'active' : 'terminating') as BackendState,
    isLocal: ep.isLocal,
    nodeName: ep.nodeName,
  }));
  // Slices usually list endpoints in order already; sort only when they are not.
  for (let i = 1; i < out.length; i++) {
    if (compareBackends(out[i - 1] as PlanBackend, out[i] as PlanBackend) > 0) return out.sort(compareBackends);
  }
  return out;
}

/** Backends are ordered by address bytes then port, so every node encodes identical lists. */
export function compareBackends(a: { bytes: Uint8Array; port: number }, b: { bytes: Uint8Array; port: number }): number {
  for (let i = 0; i < 16; i++) if (a.bytes[i] !== b.bytes[i]) return (a.bytes[i] as number) - (b.bytes[i] as number);
  return a.port - b.port;
}

/** The address of the given family in clusterIPs (servicechangetracker: a service without one is skipped). */
function clusterIpOfFamily(svc: Service, family: IpFamily): string | undefined {
  const spec = svc.spec ?? {};
  const ips = spec.clusterIPs?.length ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : [];
  for (const ip of ips) {
    const canonical = canonicalOfFamily(ip, family);
    if (canonical !== undefined) return canonical;
  }
  return undefined;
}

function addressesOfFamily(list: readonly string[] | undefined, family: IpFamily): string[] {
  if (!list || list.length === 0) return [];
  const out = new Set<string>();
  for (const text of list) {
    const canonical = canonicalOfFamily(text, family);
    if (canonical !== undefined) out.add(canonical);
  }
  return [...out];
}

/** Builds the plans of one Service for one family; [] for headless, ExternalName, or no clusterIP of that family. */
export function planService(svc: Service, slices: readonly EndpointSlice[], family: IpFamily, node: NodeContext): ServicePortPlan[] {
  const spec = svc.spec ?? {};
  const type = spec.type || 'ClusterIP'; // '' is the API default, as an absent field
  // ShouldSkipService: ExternalName and headless services, and services without a clusterIP of this family.
  if (type === 'ExternalName' || spec.clusterIP === 'None') return [];
  const clusterIP = clusterIpOfFamily(svc, family);
  if (!clusterIP) return [];

  const key = `${namespaceOf(svc)}/${svc.metadata.name}`;
  const externalIPs = addressesOfFamily(spec.externalIPs, family);
  const lbIPs =
    type === 'LoadBalancer'
      ? addressesOfFamily(
          (svc.status?.loadBalancer?.ingress ?? [])
            // ipMode Proxy: the load balancer delivers to the node with its own address; no frontend.
            .filter((ing) => ing.ip && (!ing.ipMode || ing.ipMode === 'VIP'))
            .map((ing) => ing.ip as string),
          family,
        )
      : [];
  const nodeIPs = addressesOfFamily(node.addresses, family).filter((a) => !isLoopback(parseIp(a)?.bytes as Uint8Array));
  const sourceRanges =
    type === 'LoadBalancer'
      ? (spec.loadBalancerSourceRanges ?? [])
          .map((r) => parseCidr(r.trim()))
          .filter((c): c is ParsedCidr => c !== undefined && c.family === family)
      : [];
  const externallyAccessibleType = type === 'NodePort' || type === 'LoadBalancer' || externalIPs.length > 0;
  const internalPolicyLocal = spec.internalTrafficPolicy === 'Local';
  const affinityTimeout =
    spec.sessionAffinity === 'ClientIP'
      ? spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? DEFAULT_AFFINITY_TIMEOUT
      : 0;
  const byPort = endpointsByPort(slices, family, node.name);

  const plans: ServicePortPlan[] = [];
  for (const sp of spec.ports ?? []) {
    const protocol = sp.protocol || 'TCP';
    const portName = sp.name ?? '';
    const nodePort = sp.nodePort ?? 0;
    // serviceport.go: ExternallyAccessible() is per port: a nodePort, LB VIPs, or externalIPs.
    const externallyAccessible = nodePort !== 0 || lbIPs.length > 0 || externalIPs.length > 0;
    const externalPolicyLocal = externallyAccessibleType && spec.externalTrafficPolicy === 'Local';
    const policy: PortPolicy = { internalPolicyLocal, externalPolicyLocal, externallyAccessible };
    const endpoints = [...(byPort.get(`${portName}/${protocol}`)?.values() ?? [])];
    const cat = categorizeEndpoints(endpoints, policy, node);

    // iptables/proxier.go: no usable endpoints at all -> REJECT; endpoints exist but the policy-selected
    // (local) list is empty -> DROP.
    const internalList = internalPolicyLocal ? 'local' : 'cluster';
    const externalList = externalPolicyLocal ? 'local' : 'cluster';
    const hasInternal = internalPolicyLocal ? cat.localEndpoints.length > 0 : cat.hasAnyEndpoints;
    const hasExternal = externalPolicyLocal ? cat.localEndpoints.length > 0 : cat.hasAnyEndpoints;
    const whenEmpty = (has: boolean): EmptyVerdict => (cat.hasAnyEndpoints && !has ? 'drop' : 'reject');

    const frontends: PlanFrontend[] = [{ kind: 'ClusterIP', address: clusterIP, port: sp.port, scope: 'internal' }];
    if (nodePort !== 0) for (const a of nodeIPs) frontends.push({ kind: 'NodePort', address: a, port: nodePort, scope: 'external' });
    for (const a of lbIPs) frontends.push({ kind: 'LoadBalancer', address: a, port: sp.port, scope: 'external' });
    for (const a of externalIPs) frontends.push({ kind: 'ExternalIP', address: a, port: sp.port, scope: 'external' });

    const selectable = new Set([...cat.clusterEndpoints, ...cat.localEndpoints]);
    const keep = endpoints.filter((ep) => ep.terminating && !selectable.has(ep));
    plans.push({
      service: key,
      portName,
      protocol,
      family,
      internalPolicyLocal,
      externalPolicyLocal,
      affinityTimeout,
      clusterList: toBackends(cat.clusterEndpoints),
      localList: toBackends(cat.localEndpoints),
      ...(keep.length > 0 ? { keepList: toBackends(keep) } : {}),
      internal: { list: internalList, whenEmpty: whenEmpty(hasInternal) },
      external: { list: externalList, whenEmpty: whenEmpty(hasExternal) },
      sourceRanges,
      frontends,
    });
  }
  return plans;
}

/** Node context from its Node object, overridden by explicit addresses or zone (CLI flags, API options). */
export function nodeContext(
  state: ClusterState,
  name: string,
  addresses?: readonly string[],
  zone?: string,
  podCIDRs?: readonly string[],
): NodeContext {
  const node = state.nodes.get(name);
  const nodeCIDRs = node?.spec?.podCIDRs?.length ? node.spec.podCIDRs : node?.spec?.podCIDR ? [node.spec.podCIDR] : [];
  const fromObject = (node?.status?.addresses ?? [])
    .filter((a) => a.type === 'InternalIP' || a.type === 'ExternalIP')
    .map((a) => a.address);
  const chosen = addresses && addresses.length > 0 ? [...addresses] : fromObject;
  const normalized = [...new Set(chosen.map((a) => parseIp(a)).filter((p) => p !== undefined).map((p) => formatIp(p.bytes)))];
  return {
    name,
    addresses: normalized,
    zone: zone ?? node?.metadata.labels?.[ZONE_LABEL] ?? '',
    podCIDRs: [...(podCIDRs ?? nodeCIDRs)],
  };
}

/** Plans of every service in the state, both families, in a deterministic order. */
export function planCluster(state: ClusterState, node: NodeContext): ServicePortPlan[] {
  const plans: ServicePortPlan[] = [];
  for (const key of [...state.services.keys()].sort()) {
    const svc = state.services.get(key) as Service;
    const slices = state.slicesOf(key);
    for (const family of ['IPv4', 'IPv6'] as const) plans.push(...planService(svc, slices, family, node));
  }
  return plans;
}
