// Validates Services, EndpointSlices and Nodes the way the Kubernetes API server does
// (pkg/apis/core/validation, pkg/apis/discovery/validation), so that code past this point may rely on the
// shapes in types.ts. Hand-written manifests never went through an API server, so absent fields are read as
// their API defaults (type ClusterIP, protocol TCP, ...) before the rules are applied; fields the server
// would allocate (clusterIP, nodePort) may be absent. Input is untyped JSON: a value of the wrong type is
// reported at its path and never throws.

import {
  type Obj, Errors, QUALIFIED_NAME, absent, dns1035Label, dnsLabel, dnsSubdomain, isObj, notOneOf, qualifiedName, readArray, readEnum,
  readInt, readObject, readString, readStringList, readStringMap, show,
} from './fields.js';
import { isIngressKind, validateIngress } from './validate-ingress.js';
import { isLoopback, isV4Mapped, parseCidr, parseIp, parseIPv4Word, type IpFamily } from './net.js';
import { objectRef, SERVICE_NAME_LABEL, type ValidationError } from './types.js';

type Check = (value: string) => string | undefined;

const PROTOCOLS = ['TCP', 'UDP', 'SCTP'] as const;
const SERVICE_TYPES = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'] as const;
const IP_FAMILIES = ['IPv4', 'IPv6'] as const;
const IP_FAMILY_POLICIES = ['SingleStack', 'PreferDualStack', 'RequireDualStack'] as const;
const SESSION_AFFINITIES = ['None', 'ClientIP'] as const;
const TRAFFIC_POLICIES = ['Cluster', 'Local'] as const;
const IP_MODES = ['VIP', 'Proxy'] as const;
const ADDRESS_TYPES = ['IPv4', 'IPv6', 'FQDN'] as const;

type ServiceType = (typeof SERVICE_TYPES)[number];
type AddressType = (typeof ADDRESS_TYPES)[number];

const MAX_AFFINITY_TIMEOUT = 86400;
const MAX_SLICE_ENDPOINTS = 1000;
const MAX_ENDPOINT_ADDRESSES = 100;
// Upstream raised this from 100 to 20000 (discovery validation maxPorts); we follow the current server.
const MAX_SLICE_PORTS = 20000;
const MAX_HINTS = 8;

/** Validates one object; [] when it is valid or is not a Service, EndpointSlice, Node, Ingress or IngressClass. */
export function validateObject(obj: unknown): ValidationError[] {
  if (isIngressKind(obj)) return validateIngress(obj);
  if (!isObj(obj)) return [];
  const e = new Errors(objectRef(obj));
  if (obj.apiVersion === 'v1' && obj.kind === 'Service') validateService(e, obj);
  else if (obj.apiVersion === 'discovery.k8s.io/v1' && obj.kind === 'EndpointSlice') validateEndpointSlice(e, obj);
  else if (obj.apiVersion === 'v1' && obj.kind === 'Node') validateNode(e, obj);
  return e.list;
}

// ---- Service ----

function validateService(e: Errors, obj: Obj): void {
  validateMetadata(e, obj.metadata, dns1035Label, true);
  const spec = readObject(e, obj.spec ?? {}, 'spec');
  if (spec) validateServiceSpec(e, spec);
  validateServiceStatus(e, obj.status);
}

function validateServiceSpec(e: Errors, spec: Obj): void {
  // An unknown type was reported here; the rules that depend on the type are then skipped.
  const type = readEnum(e, emptyAsUnset(spec.type), 'spec.type', SERVICE_TYPES, 'ClusterIP');
  const headless = validateClusterIPs(e, spec, type);
  validateServicePorts(e, spec.ports, type, headless);
  if (type === 'ExternalName') validateExternalName(e, spec.externalName);
  const externalIPs = readStringList(e, spec.externalIPs, 'spec.externalIPs') ?? [];
  externalIPs.forEach((ip, i) => e.add(`spec.externalIPs[${i}]`, ipAddress(ip) ?? nonSpecialIp(ip)));
  validateSessionAffinity(e, spec);
  validateTrafficPolicies(e, spec, type, externalIPs.length > 0);
  validateLoadBalancerFields(e, spec, type);
  validateLabels(e, spec.selector, 'spec.selector');
  readBool(e, spec.publishNotReadyAddresses, 'spec.publishNotReadyAddresses');
}

/** clusterIP, clusterIPs, ipFamilies and ipFamilyPolicy. Returns whether the service is headless. */
function validateClusterIPs(e: Errors, spec: Obj, type: ServiceType | undefined): boolean {
  const clusterIP = readString(e, spec.clusterIP, 'spec.clusterIP') ?? '';
  const clusterIPs = readStringList(e, spec.clusterIPs, 'spec.clusterIPs') ?? [];
  const families = readIpFamilies(e, spec.ipFamilies);
  const policySet = !absent(spec.ipFamilyPolicy);
  const policy = policySet ? readEnum(e, spec.ipFamilyPolicy, 'spec.ipFamilyPolicy', IP_FAMILY_POLICIES) : 'SingleStack';

  if (type === 'ExternalName') {
    const forbidden = 'may not be set for type "ExternalName"';
    if (clusterIP !== '') e.add('spec.clusterIP', `${forbidden}, got ${show(clusterIP)}`);
    if (clusterIPs.length > 0) e.add('spec.clusterIPs', `${forbidden}, got ${show(clusterIPs)}`);
    if (families.length > 0) e.add('spec.ipFamilies', `${forbidden}, got ${show(families)}`);
    if (policySet) e.add('spec.ipFamilyPolicy', `${forbidden}, got ${show(spec.ipFamilyPolicy)}`);
    return false;
  }

  validateClusterIPList(e, clusterIP, clusterIPs);

  // The API server copies clusterIP into an absent clusterIPs before validating.
  const ips = clusterIPs.length > 0 ? clusterIPs : clusterIP !== '' ? [clusterIP] : [];
  const ipPath = (i: number): string => (clusterIPs.length > 0 ? `spec.clusterIPs[${i}]` : 'spec.clusterIP');
  const headless = ips.length === 1 && ips[0] === 'None';
  if (headless && (type === 'NodePort' || type === 'LoadBalancer')) {
    e.add(ipPath(0), `may not be "None" for type ${show(type)}`);
  }

  const ipFamilies = ips.map((ip) => parseIp(ip)?.family);
  const [first, second] = ipFamilies;
  if (ips.length === 2 && first !== undefined && first === second) {
    e.add('spec.clusterIPs', `must hold one IPv4 and one IPv6 address (dual-stack), got ${show(ips)}`);
  }
  if (!headless) {
    ipFamilies.forEach((family, i) => {
      const wanted = families[i];
      if (family && isIpFamily(wanted) && family !== wanted) {
        e.add(ipPath(i), `must be an ${wanted} address to match spec.ipFamilies[${i}], got ${show(ips[i])}`);
      }
    });
  }

  if (policy === 'SingleStack') {
    const dual = 'must be "PreferDualStack" or "RequireDualStack"';
    if (ips.length === 2) e.add('spec.ipFamilyPolicy', `${dual} when 2 clusterIPs are given, got "SingleStack"`);
    if (families.length === 2) e.add('spec.ipFamilyPolicy', `${dual} when 2 ipFamilies are given, got "SingleStack"`);
  }
  return headless;
}

/** The address text of clusterIP and clusterIPs, and how the two agree. */
function validateClusterIPList(e: Errors, clusterIP: string, clusterIPs: string[]): void {
  if (clusterIP !== '' && clusterIP !== 'None' && !parseIp(clusterIP)) {
    e.add('spec.clusterIP', `must be a valid IP address, "None" or "", got ${show(clusterIP)}`);
  }
  if (clusterIPs.length === 0) return;
  if (clusterIP === '') e.add('spec.clusterIPs', `must be empty when clusterIP is not set, got ${show(clusterIPs)}`);
  else if (clusterIPs[0] !== clusterIP) {
    e.add('spec.clusterIPs[0]', `must equal clusterIP ${show(clusterIP)}, got ${show(clusterIPs[0])}`);
  }
  if (clusterIPs.length > 2) e.add('spec.clusterIPs', tooMany(clusterIPs.length, 2));
  clusterIPs.forEach((ip, i) => {
    const path = `spec.clusterIPs[${i}]`;
    if (ip === 'None') {
      if (clusterIPs.length > 1) e.add(path, `"None" must be the first and only value, got ${show(clusterIPs)}`);
    } else if (i > 0 || ip !== clusterIP) {
      e.add(path, ipAddress(ip)); // a clusterIPs[0] equal to clusterIP was checked as clusterIP
    }
  });
}

/** ipFamilies as written (possibly with invalid entries, which are reported). */
function readIpFamilies(e: Errors, raw: unknown): string[] {
  const families = readStringList(e, raw, 'spec.ipFamilies') ?? [];
  if (families.length > 2) e.add('spec.ipFamilies', tooMany(families.length, 2));
  const seen = new Set<string>();
  families.forEach((family, i) => {
    const path = `spec.ipFamilies[${i}]`;
    if (!isIpFamily(family)) e.add(path, notOneOf(IP_FAMILIES, family));
    else if (seen.has(family)) e.add(path, duplicate(family));
    seen.add(family);
  });
  return families;
}

function validateServicePorts(e: Errors, raw: unknown, type: ServiceType | undefined, headless: boolean): void {
  const list = readArray(e, raw, 'spec.ports');
  const ports = list ?? [];
  if ((list || absent(raw)) && ports.length === 0 && !headless && type !== 'ExternalName') {
    e.add('spec.ports', 'Required value: at least one port unless headless (clusterIP "None") or type ExternalName');
  }
  const names = new Set<string>();
  const portKeys = new Set<string>();
  const nodePortKeys = new Set<string>();
  ports.forEach((item, i) => {
    const path = `spec.ports[${i}]`;
    const port = readObject(e, item ?? {}, path);
    if (!port) return;

    const name = absent(port.name) ? '' : readString(e, port.name, `${path}.name`);
    if (name === '') {
      if (ports.length > 1) e.add(`${path}.name`, 'Required value: every port needs a name when there are several');
    } else if (name !== undefined) {
      e.add(`${path}.name`, dnsLabel(name));
      if (names.has(name)) e.add(`${path}.name`, duplicate(name));
      names.add(name);
    }

    const number = readInt(e, port.port, `${path}.port`);
    if (absent(port.port)) e.add(`${path}.port`, 'Required value');
    else if (number !== undefined) e.add(`${path}.port`, portNumber(number));

    const protocol = readEnum(e, emptyAsUnset(port.protocol), `${path}.protocol`, PROTOCOLS, 'TCP');
    validateTargetPort(e, port.targetPort, `${path}.targetPort`);

    const nodePort = readInt(e, zeroAsUnset(port.nodePort), `${path}.nodePort`);
    if (nodePort !== undefined) {
      e.add(`${path}.nodePort`, portNumber(nodePort));
      if (type === 'ClusterIP' || type === 'ExternalName') {
        e.add(`${path}.nodePort`, `may not be set for type ${show(type)}, got ${nodePort}`);
      }
    }

    const appProtocol = readString(e, port.appProtocol, `${path}.appProtocol`);
    if (appProtocol !== undefined) e.add(`${path}.appProtocol`, qualifiedName(appProtocol));

    if (protocol !== undefined && number !== undefined) {
      const key = `${protocol}/${number}`;
      if (portKeys.has(key)) e.add(path, duplicate(key));
      portKeys.add(key);
      if (nodePort !== undefined) {
        const nodeKey = `${protocol}/${nodePort}`;
        if (nodePortKeys.has(nodeKey)) e.add(`${path}.nodePort`, duplicate(nodeKey));
        nodePortKeys.add(nodeKey);
      }
    }
  });
}

/** A port number or an IANA service name; 0 and "" mean "same as port" (the API default). */
function validateTargetPort(e: Errors, raw: unknown, path: string): void {
  const target = zeroAsUnset(emptyAsUnset(raw));
  if (absent(target)) return;
  if (typeof target === 'string') e.add(path, ianaServiceName(target));
  else if (typeof target === 'number' && Number.isSafeInteger(target)) e.add(path, portNumber(target));
  else e.add(path, `must be an integer or a string, got ${show(target)}`);
}

function validateExternalName(e: Errors, raw: unknown): void {
  const name = readString(e, raw, 'spec.externalName');
  if (name === undefined && !absent(raw)) return;
  // A trailing dot marks the name as fully qualified.
  const cname = (name ?? '').replace(/\.$/, '');
  if (cname === '') e.add('spec.externalName', 'Required value: type ExternalName needs a DNS name');
  else e.add('spec.externalName', dnsSubdomain(cname));
}

function validateSessionAffinity(e: Errors, spec: Obj): void {
  const affinity = readEnum(e, emptyAsUnset(spec.sessionAffinity), 'spec.sessionAffinity', SESSION_AFFINITIES, 'None');
  const config = readObject(e, spec.sessionAffinityConfig, 'spec.sessionAffinityConfig');
  if (!config) return; // for ClientIP the API server defaults timeoutSeconds to 10800
  if (affinity === 'None') {
    e.add('spec.sessionAffinityConfig', 'may only be set when sessionAffinity is "ClientIP", got "None"');
  }
  const clientIP = readObject(e, config.clientIP, 'spec.sessionAffinityConfig.clientIP');
  const path = 'spec.sessionAffinityConfig.clientIP.timeoutSeconds';
  const timeout = readInt(e, clientIP?.timeoutSeconds, path);
  if (timeout !== undefined && (timeout < 1 || timeout > MAX_AFFINITY_TIMEOUT)) {
    e.add(path, `must be between 1 and ${MAX_AFFINITY_TIMEOUT}, got ${timeout}`);
  }
}

function validateTrafficPolicies(e: Errors, spec: Obj, type: ServiceType | undefined, hasExternalIPs: boolean): void {
  const externalPolicy = readEnum(
    e,
    emptyAsUnset(spec.externalTrafficPolicy),
    'spec.externalTrafficPolicy',
    TRAFFIC_POLICIES,
    'Cluster',
  );
  // Upstream rejects any value on a service that is not externally accessible; we accept the
  // default "Cluster" there, since it changes nothing.
  const externallyAccessible = type === 'NodePort' || type === 'LoadBalancer' || (type === 'ClusterIP' && hasExternalIPs);
  if (externalPolicy === 'Local' && type !== undefined && !externallyAccessible) {
    e.add(
      'spec.externalTrafficPolicy',
      `may only be "Local" for externally-accessible services (type NodePort or LoadBalancer, or with externalIPs), got type ${show(type)}`,
    );
  }
  readEnum(e, spec.internalTrafficPolicy, 'spec.internalTrafficPolicy', TRAFFIC_POLICIES, 'Cluster');

  const path = 'spec.healthCheckNodePort';
  const healthCheckNodePort = readInt(e, zeroAsUnset(spec.healthCheckNodePort), path);
  if (healthCheckNodePort === undefined) return;
  e.add(path, portNumber(healthCheckNodePort));
  if (type !== 'LoadBalancer' || externalPolicy !== 'Local') {
    e.add(
      path,
      `may only be set when type is "LoadBalancer" and externalTrafficPolicy is "Local", got type ${show(type ?? spec.type)} and externalTrafficPolicy ${show(externalPolicy ?? spec.externalTrafficPolicy)}`,
    );
  }
}

function validateLoadBalancerFields(e: Errors, spec: Obj, type: ServiceType | undefined): void {
  const notLoadBalancer = type !== undefined && type !== 'LoadBalancer';
  const onlyForLoadBalancer = `may only be used when type is "LoadBalancer", got type ${show(type)}`;

  const rangesPath = 'spec.loadBalancerSourceRanges';
  const ranges = readStringList(e, spec.loadBalancerSourceRanges, rangesPath) ?? [];
  if (ranges.length > 0 && notLoadBalancer) e.add(rangesPath, onlyForLoadBalancer);
  // Upstream trims spaces around each range; we do not, so that later stages can parse the text as is.
  ranges.forEach((range, i) => e.add(`${rangesPath}[${i}]`, cidr(range)));

  const allocatePath = 'spec.allocateLoadBalancerNodePorts';
  const allocate = readBool(e, spec.allocateLoadBalancerNodePorts, allocatePath);
  if (allocate !== undefined && notLoadBalancer) e.add(allocatePath, onlyForLoadBalancer);
}

function validateServiceStatus(e: Errors, raw: unknown): void {
  const status = readObject(e, raw, 'status');
  const loadBalancer = readObject(e, status?.loadBalancer, 'status.loadBalancer');
  const ingress = readArray(e, loadBalancer?.ingress, 'status.loadBalancer.ingress') ?? [];
  ingress.forEach((item, i) => {
    const path = `status.loadBalancer.ingress[${i}]`;
    const entry = readObject(e, item ?? {}, path);
    if (!entry) return;
    const ip = readString(e, emptyAsUnset(entry.ip), `${path}.ip`);
    if (ip !== undefined) e.add(`${path}.ip`, ipAddress(ip));
    const hostname = readString(e, emptyAsUnset(entry.hostname), `${path}.hostname`);
    if (hostname !== undefined) {
      e.add(`${path}.hostname`, parseIp(hostname) ? `must be a DNS name, not an IP address, got ${show(hostname)}` : dnsSubdomain(hostname));
    }
    readEnum(e, entry.ipMode, `${path}.ipMode`, IP_MODES);
    if (!absent(entry.ipMode) && absent(emptyAsUnset(entry.ip))) e.add(`${path}.ip`, 'Required value: ipMode needs an ip');
  });
}

// ---- EndpointSlice ----

function validateEndpointSlice(e: Errors, obj: Obj): void {
  const labels = validateMetadata(e, obj.metadata, dnsSubdomain, true);
  // Not an API server rule: kube-proxy cannot attach a slice without this label to a Service.
  const serviceName = labels?.[SERVICE_NAME_LABEL];
  if (serviceName === undefined || serviceName === '') {
    e.add(`metadata.labels[${SERVICE_NAME_LABEL}]`, 'Required value: the slice names no Service');
  }

  let addressType: AddressType | undefined;
  if (absent(emptyAsUnset(obj.addressType))) e.add('addressType', `Required value: one of ${ADDRESS_TYPES.join(', ')}`);
  else addressType = readEnum(e, obj.addressType, 'addressType', ADDRESS_TYPES);

  const endpoints = readArray(e, obj.endpoints, 'endpoints') ?? [];
  if (endpoints.length > MAX_SLICE_ENDPOINTS) e.add('endpoints', tooMany(endpoints.length, MAX_SLICE_ENDPOINTS));
  endpoints.forEach((item, i) => {
    // Most endpoints are plain and valid; only the others are walked with field paths (same errors).
    if (!plainValidEndpoint(item, addressType)) validateEndpoint(e, item, `endpoints[${i}]`, addressType);
  });

  const ports = readArray(e, obj.ports, 'ports') ?? [];
  if (ports.length > MAX_SLICE_PORTS) e.add('ports', tooMany(ports.length, MAX_SLICE_PORTS));
  const names = new Set<string>();
  ports.forEach((item, i) => validateEndpointPort(e, item, `ports[${i}]`, names));
}

/**
 * True only when validateEndpoint would report nothing for `raw`, decided without building field paths or
 * parsing into objects: addresses, conditions, hostname, nodeName, zone and targetRef of the usual shapes,
 * no hints. Anything else returns false and goes through validateEndpoint, which reports exactly.
 */
function plainValidEndpoint(raw: unknown, addressType: AddressType | undefined): boolean {
  if (!isObj(raw)) return false;
  const addresses = raw.addresses;
  if (!Array.isArray(addresses) || addresses.length === 0 || addresses.length > MAX_ENDPOINT_ADDRESSES) return false;
  for (const address of addresses) {
    if (typeof address !== 'string') return false;
    // The common case without allocating: a dotted quad in an IPv4 slice that is not a special address.
    if (addressType === 'IPv4') {
      const w = parseIPv4Word(address);
      if (w >= 0 && specialIPv4Reason(w) === undefined) continue;
    }
    if (endpointAddress(address, addressType) !== undefined) return false;
  }
  const conditions = raw.conditions;
  if (!absent(conditions)) {
    if (!isObj(conditions)) return false;
    for (const key of CONDITION_KEYS) {
      const v = conditions[key];
      if (!absent(v) && typeof v !== 'boolean') return false;
    }
  }
  const hostname = raw.hostname;
  if (!absent(hostname) && (typeof hostname !== 'string' || dnsLabel(hostname) !== undefined)) return false;
  const nodeName = raw.nodeName;
  if (!absent(nodeName) && (typeof nodeName !== 'string' || dnsSubdomain(nodeName) !== undefined)) return false;
  if (!absent(raw.zone) && typeof raw.zone !== 'string') return false;
  if (!absent(raw.hints)) return false;
  const targetRef = raw.targetRef;
  if (!absent(targetRef)) {
    if (!isObj(targetRef)) return false;
    for (const key of TARGET_REF_KEYS) {
      const v = targetRef[key];
      if (!absent(v) && typeof v !== 'string') return false;
    }
  }
  return true;
}

const CONDITION_KEYS = ['ready', 'serving', 'terminating'] as const;
const TARGET_REF_KEYS = ['kind', 'name', 'namespace'] as const;

function validateEndpoint(e: Errors, raw: unknown, path: string, addressType: AddressType | undefined): void {
  const endpoint = readObject(e, raw ?? {}, path);
  if (!endpoint) return;

  const addressesPath = `${path}.addresses`;
  const addresses = readStringList(e, endpoint.addresses, addressesPath);
  if (absent(endpoint.addresses) || addresses?.length === 0) {
    e.add(addressesPath, 'Required value: must contain at least 1 address');
  } else if (addresses && addresses.length > MAX_ENDPOINT_ADDRESSES) {
    e.add(addressesPath, tooMany(addresses.length, MAX_ENDPOINT_ADDRESSES));
  }
  addresses?.forEach((address, i) => e.add(`${addressesPath}[${i}]`, endpointAddress(address, addressType)));

  const conditions = readObject(e, endpoint.conditions, `${path}.conditions`);
  for (const key of CONDITION_KEYS) readBool(e, conditions?.[key], `${path}.conditions.${key}`);

  const hostname = readString(e, endpoint.hostname, `${path}.hostname`);
  if (hostname !== undefined) e.add(`${path}.hostname`, dnsLabel(hostname));
  const nodeName = readString(e, endpoint.nodeName, `${path}.nodeName`);
  if (nodeName !== undefined) e.add(`${path}.nodeName`, dnsSubdomain(nodeName));
  readString(e, endpoint.zone, `${path}.zone`);

  const hints = readObject(e, endpoint.hints, `${path}.hints`);
  validateHints(e, hints?.forZones, `${path}.hints.forZones`, labelValue);
  validateHints(e, hints?.forNodes, `${path}.hints.forNodes`, dnsSubdomain);

  const targetRef = readObject(e, endpoint.targetRef, `${path}.targetRef`);
  for (const key of TARGET_REF_KEYS) readString(e, targetRef?.[key], `${path}.targetRef.${key}`);
}

/** hints.forZones / hints.forNodes: at most 8 entries, each { name } non-empty, valid and unique. */
function validateHints(e: Errors, raw: unknown, path: string, checkName: Check): void {
  const hints = readArray(e, raw, path) ?? [];
  if (hints.length > MAX_HINTS) e.add(path, tooMany(hints.length, MAX_HINTS));
  const seen = new Set<string>();
  hints.forEach((item, i) => {
    const hint = readObject(e, item ?? {}, `${path}[${i}]`);
    const namePath = `${path}[${i}].name`;
    const name = readRequiredString(e, hint?.name, namePath);
    if (name === undefined) return;
    e.add(namePath, checkName(name));
    if (seen.has(name)) e.add(namePath, duplicate(name));
    seen.add(name);
  });
}

function validateEndpointPort(e: Errors, raw: unknown, path: string, names: Set<string>): void {
  const port = readObject(e, raw ?? {}, path);
  if (!port) return;
  // name and protocol are pointers upstream: absent/null defaults to "" and TCP, an explicit "" is a value.
  const name = absent(port.name) ? '' : readString(e, port.name, `${path}.name`);
  if (name !== undefined) {
    if (name !== '') e.add(`${path}.name`, dnsLabel(name));
    if (names.has(name)) e.add(`${path}.name`, duplicate(name));
    names.add(name);
  }
  readEnum(e, port.protocol, `${path}.protocol`, PROTOCOLS);
  const number = readInt(e, port.port, `${path}.port`);
  if (number !== undefined) e.add(`${path}.port`, portNumber(number));
  const appProtocol = readString(e, port.appProtocol, `${path}.appProtocol`);
  if (appProtocol !== undefined) e.add(`${path}.appProtocol`, qualifiedName(appProtocol));
}

function endpointAddress(address: string, addressType: AddressType | undefined): string | undefined {
  switch (addressType) {
    case 'IPv4':
    case 'IPv6': {
      const ip = parseIp(address);
      // IPv4-mapped IPv6 text is an IPv4 address to the API server (Go's To4).
      const family: IpFamily | undefined = ip && (isV4Mapped(ip.bytes) ? 'IPv4' : ip.family);
      if (!ip || family !== addressType) return `must be a valid ${addressType} address, got ${show(address)}`;
      const reason = specialReason(ip.bytes);
      return reason && `may not be ${reason}, got ${show(address)}`;
    }
    case 'FQDN':
      return dnsSubdomain(address);
    default:
      return undefined; // the unknown addressType was reported
  }
}

// ---- Node ----

function validateNode(e: Errors, obj: Obj): void {
  validateMetadata(e, obj.metadata, dnsSubdomain, false);
  const spec = readObject(e, obj.spec, 'spec');
  const podCIDR = readString(e, spec?.podCIDR, 'spec.podCIDR');
  if (podCIDR) e.add('spec.podCIDR', cidr(podCIDR));
  (readArray(e, spec?.podCIDRs, 'spec.podCIDRs') ?? []).forEach((item, i) => {
    const text = readRequiredString(e, item, `spec.podCIDRs[${i}]`);
    if (text !== undefined) e.add(`spec.podCIDRs[${i}]`, cidr(text));
  });
  const status = readObject(e, obj.status, 'status');
  const addresses = readArray(e, status?.addresses, 'status.addresses') ?? [];
  addresses.forEach((item, i) => {
    const path = `status.addresses[${i}]`;
    const entry = readObject(e, item ?? {}, path);
    if (!entry) return;
    const type = readRequiredString(e, entry.type, `${path}.type`);
    const address = readRequiredString(e, entry.address, `${path}.address`);
    if ((type === 'InternalIP' || type === 'ExternalIP') && address !== undefined) {
      e.add(`${path}.address`, ipAddress(address));
    }
  });
}

// ---- metadata ----

/** Validates metadata; returns the labels (string values only) for kind-specific rules. */
function validateMetadata(e: Errors, raw: unknown, checkName: Check, namespaced: boolean): Record<string, string> | undefined {
  const meta = readObject(e, raw ?? {}, 'metadata');
  if (!meta) return undefined;
  const name = readRequiredString(e, meta.name, 'metadata.name');
  if (name !== undefined) e.add('metadata.name', checkName(name));
  const namespace = readString(e, meta.namespace, 'metadata.namespace');
  if (namespace) {
    e.add('metadata.namespace', namespaced ? dnsLabel(namespace) : `must be empty for a cluster-scoped object, got ${show(namespace)}`);
  }
  const annotations = readStringMap(e, meta.annotations, 'metadata.annotations') ?? {};
  for (const key of Object.keys(annotations)) {
    const problem = qualifiedName(key.toLowerCase());
    if (problem) e.add(`metadata.annotations[${key}]`, `key ${problem}`);
  }
  return validateLabels(e, meta.labels, 'metadata.labels');
}

/** A label map (metadata.labels, spec.selector): qualified-name keys, label values. */
function validateLabels(e: Errors, raw: unknown, path: string): Record<string, string> | undefined {
  const labels = readStringMap(e, raw, path);
  for (const [key, value] of Object.entries(labels ?? {})) {
    const problem = qualifiedName(key);
    if (problem) e.add(`${path}[${key}]`, `key ${problem}`);
    e.add(`${path}[${key}]`, labelValue(value));
  }
  return labels;
}

// ---- value formats: each returns an error message, or undefined when the value is fine ----

/** A named port (IANA_SVC_NAME): at most 15 of [-a-z0-9], a letter somewhere, no leading, trailing or double '-'. */
function ianaServiceName(s: string): string | undefined {
  const ok =
    s.length <= 15 && /^[-a-z0-9]+$/.test(s) && /[a-z]/.test(s) && !s.includes('--') && !s.startsWith('-') && !s.endsWith('-');
  if (ok) return undefined;
  return `must be a port number or an IANA service name (at most 15 characters of [-a-z0-9] with a letter, no leading, trailing or double '-'), got ${show(s)}`;
}

function labelValue(s: string): string | undefined {
  if (s === '' || (s.length <= 63 && QUALIFIED_NAME.test(s))) return undefined;
  return `must be a valid label value (empty, or at most 63 characters matching ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]), got ${show(s)}`;
}

function portNumber(n: number): string | undefined {
  return n >= 1 && n <= 65535 ? undefined : `must be between 1 and 65535, got ${n}`;
}

function ipAddress(s: string): string | undefined {
  return parseIp(s) ? undefined : `must be a valid IP address, got ${show(s)}`;
}

function cidr(s: string): string | undefined {
  return parseCidr(s) ? undefined : `must be a valid CIDR, got ${show(s)}`;
}

/** Endpoint addresses and externalIPs may not be unspecified, loopback or link-local (ValidateNonSpecialIP). */
function nonSpecialIp(s: string): string | undefined {
  const ip = parseIp(s);
  if (!ip) return undefined;
  const reason = specialReason(ip.bytes);
  return reason && `may not be ${reason}, got ${show(s)}`;
}

const UNSPECIFIED = 'unspecified';
const LINK_LOCAL = 'link-local (169.254.0.0/16, fe80::/10)';
const LINK_LOCAL_MULTICAST = 'link-local multicast (224.0.0.0/24, ff02::/16)';
const LOOPBACK = 'loopback (127.0.0.0/8, ::1/128)';

/** Why an address (16 bytes) is special, or undefined. */
function specialReason(b: Uint8Array): string | undefined {
  if (isV4Mapped(b)) {
    return specialIPv4Reason((((b[12] as number) << 24) | ((b[13] as number) << 16) | ((b[14] as number) << 8) | (b[15] as number)) >>> 0);
  }
  const a = b[0] as number;
  const c = b[1] as number;
  let zero = true;
  for (let i = 0; i < 16; i++) if (b[i] !== 0) zero = false;
  if (zero) return UNSPECIFIED;
  if (a === 0xfe && (c & 0xc0) === 0x80) return LINK_LOCAL;
  if (a === 0xff && (c & 0x0f) === 0x02) return LINK_LOCAL_MULTICAST;
  return isLoopback(b) ? LOOPBACK : undefined;
}

/** specialReason for an IPv4 address as its 32-bit value. */
function specialIPv4Reason(w: number): string | undefined {
  const a = w >>> 24;
  const c = (w >>> 16) & 0xff;
  const d = (w >>> 8) & 0xff;
  if (w === 0) return UNSPECIFIED;
  if (a === 169 && c === 254) return LINK_LOCAL;
  if (a === 224 && c === 0 && d === 0) return LINK_LOCAL_MULTICAST;
  return a === 127 ? LOOPBACK : undefined;
}

// ---- typed readers: absent (undefined or null) gives undefined silently, a wrong type is reported ----

// Go cannot tell "" or 0 in a non-pointer field from an absent one, so the API default applies to them too.
function emptyAsUnset(v: unknown): unknown {
  return v === '' ? undefined : v;
}

function zeroAsUnset(v: unknown): unknown {
  return v === 0 ? undefined : v;
}

function isIpFamily(v: unknown): v is IpFamily {
  return v === 'IPv4' || v === 'IPv6';
}

/** A string that must be present and non-empty. */
function readRequiredString(e: Errors, v: unknown, path: string): string | undefined {
  if (absent(v) || v === '') {
    e.add(path, 'Required value');
    return undefined;
  }
  return readString(e, v, path);
}

function readBool(e: Errors, v: unknown, path: string): boolean | undefined {
  if (absent(v)) return undefined;
  if (typeof v === 'boolean') return v;
  e.add(path, `must be a boolean, got ${show(v)}`);
  return undefined;
}

// ---- messages ----

function duplicate(v: string): string {
  return `Duplicate value: ${show(v)}`;
}

function tooMany(count: number, max: number): string {
  return `must have at most ${max} items, got ${count}`;
}
