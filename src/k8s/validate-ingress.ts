// Validates networking.k8s.io/v1 Ingress and IngressClass objects the way the Kubernetes API server does
// (pkg/apis/networking/validation: ValidateIngressCreate, ValidateIngressClass), in the error style of
// validate.ts: { object: 'Ingress ns/name', field: 'spec.rules[0].http.paths[1].pathType', message }.
// Input is untyped JSON: a value of the wrong type is reported at its path and never throws.
//
// Accepted but not routed (semantics.ts notes them): `resource` backends, which are valid API objects but
// name no Service.

import {
  type Obj, DNS_SUBDOMAIN, Errors, QUALIFIED_NAME, absent, dns1035Label, dnsLabel, dnsSubdomain, isObj, qualifiedName, readArray, readEnum,
  readInt, readObject, readString, readStringList, readStringMap, show,
} from './fields.js';
import { objectRef, type ValidationError } from './types.js';

const API_VERSION = 'networking.k8s.io/v1';
const PATH_TYPES = ['Exact', 'Prefix', 'ImplementationSpecific'] as const;
const PARAMETER_SCOPES = ['Cluster', 'Namespace'] as const;
const LEGACY_CLASS_ANNOTATION = 'kubernetes.io/ingress.class';
const MAX_CONTROLLER_LENGTH = 250;
// Exact and Prefix paths may not contain these (validation.go invalidPathSequences / invalidPathSuffixes).
const INVALID_PATH_SEQUENCES = ['//', '/./', '/../', '%2f', '%2F'];
const INVALID_PATH_SUFFIXES = ['/..', '/.'];

/** Validates one object; [] when it is valid or is not a networking.k8s.io/v1 Ingress or IngressClass. */
export function validateIngress(obj: unknown): ValidationError[] {
  if (!isObj(obj) || obj.apiVersion !== API_VERSION) return [];
  const e = new Errors(obj.kind === 'IngressClass' ? `IngressClass ${ingressClassName(obj)}` : objectRef(obj));
  if (obj.kind === 'Ingress') validateIngressObject(e, obj);
  else if (obj.kind === 'IngressClass') validateIngressClass(e, obj);
  return e.list;
}

/** True for the kinds validateIngress checks (so a caller can route objects to it). */
export function isIngressKind(obj: unknown): boolean {
  return isObj(obj) && obj.apiVersion === API_VERSION && (obj.kind === 'Ingress' || obj.kind === 'IngressClass');
}

function ingressClassName(obj: Obj): string {
  const meta = isObj(obj.metadata) ? obj.metadata : {};
  return typeof meta.name === 'string' ? meta.name : '<unnamed>';
}

// ---- Ingress ----

function validateIngressObject(e: Errors, obj: Obj): void {
  const annotations = validateMetadata(e, obj.metadata, true);
  const spec = readObject(e, obj.spec ?? {}, 'spec');
  if (!spec) return;

  const className = readString(e, spec.ingressClassName, 'spec.ingressClassName');
  if (className !== undefined) e.add('spec.ingressClassName', dnsSubdomain(className));
  // ValidateIngressCreate: the deprecated annotation may not contradict the field.
  const legacy = annotations?.[LEGACY_CLASS_ANNOTATION];
  if (legacy !== undefined && className !== undefined && legacy !== className) {
    e.add(`metadata.annotations[${LEGACY_CLASS_ANNOTATION}]`, `must match \`ingressClassName\` when both are specified, got ${show(legacy)}`);
  }

  const hasDefault = !absent(spec.defaultBackend);
  if (hasDefault) validateBackend(e, spec.defaultBackend, 'spec.defaultBackend');
  const rules = readArray(e, spec.rules, 'spec.rules') ?? [];
  if (!hasDefault && rules.length === 0) e.add('spec', 'either `defaultBackend` or `rules` must be specified');
  rules.forEach((item, i) => validateRule(e, item, `spec.rules[${i}]`));
  validateTLS(e, spec.tls);
}

function validateRule(e: Errors, raw: unknown, path: string): void {
  const rule = readObject(e, raw ?? {}, path);
  if (!rule) return;
  const host = readString(e, rule.host, `${path}.host`);
  if (host) e.add(`${path}.host`, ruleHost(host));

  const http = readObject(e, rule.http, `${path}.http`);
  if (!http) return;
  const paths = readArray(e, http.paths, `${path}.http.paths`);
  if (!paths || paths.length === 0) {
    if (paths || absent(http.paths)) e.add(`${path}.http.paths`, 'Required value');
    return;
  }
  paths.forEach((item, i) => validatePath(e, item, `${path}.http.paths[${i}]`));
}

function validatePath(e: Errors, raw: unknown, path: string): void {
  const entry = readObject(e, raw ?? {}, path);
  if (!entry) return;
  const value = readString(e, entry.path, `${path}.path`) ?? '';
  const typePath = `${path}.pathType`;
  if (absent(entry.pathType) || entry.pathType === '') {
    e.add(typePath, 'Required value: pathType must be specified');
  } else {
    const type = readEnum(e, entry.pathType, typePath, PATH_TYPES);
    if (type === 'Exact' || type === 'Prefix') {
      if (!value.startsWith('/')) e.add(`${path}.path`, `must be an absolute path (start with '/'), got ${show(value)}`);
      for (const seq of INVALID_PATH_SEQUENCES) {
        if (value.includes(seq)) e.add(`${path}.path`, `must not contain '${seq}', got ${show(value)}`);
      }
      for (const suffix of INVALID_PATH_SUFFIXES) {
        if (value.endsWith(suffix)) e.add(`${path}.path`, `cannot end with '${suffix}', got ${show(value)}`);
      }
    } else if (type === 'ImplementationSpecific' && value !== '' && !value.startsWith('/')) {
      e.add(`${path}.path`, `must be an absolute path (start with '/'), got ${show(value)}`);
    }
  }
  if (absent(entry.backend)) e.add(`${path}.backend`, 'Required value');
  else validateBackend(e, entry.backend, `${path}.backend`);
}

/** IngressBackend: exactly one of service and resource; a service port by name or by number, not both. */
function validateBackend(e: Errors, raw: unknown, path: string): void {
  const backend = readObject(e, raw, path);
  if (!backend) return;
  const hasService = !absent(backend.service);
  const hasResource = !absent(backend.resource);
  if (hasService && hasResource) {
    e.add(path, 'cannot set both resource and service backends');
    return;
  }
  if (hasResource) {
    validateTypedReference(e, backend.resource, `${path}.resource`);
    return;
  }
  if (!hasService) {
    e.add(path, 'resource or service backend is required');
    return;
  }
  const service = readObject(e, backend.service, `${path}.service`);
  if (!service) return;
  const name = readString(e, service.name, `${path}.service.name`);
  if (name) e.add(`${path}.service.name`, dns1035Label(name));
  else if (absent(service.name) || name === '') e.add(`${path}.service.name`, 'Required value');
  const port = readObject(e, service.port ?? {}, `${path}.service.port`) ?? {};
  const portName = readString(e, port.name, `${path}.service.port.name`);
  const portNumber = readInt(e, port.number, `${path}.service.port.number`);
  // Go reads "" and 0 as unset.
  const hasName = portName !== undefined && portName !== '';
  const hasNumber = portNumber !== undefined && portNumber !== 0;
  const wrongType = (!absent(port.name) && portName === undefined) || (!absent(port.number) && portNumber === undefined);
  if (hasName && hasNumber) e.add(path, 'cannot set both port name & port number');
  else if (hasName) e.add(`${path}.service.port.name`, ianaServiceName(portName));
  else if (hasNumber) e.add(`${path}.service.port.number`, portRange(portNumber));
  else if (!wrongType) e.add(path, 'Required value: port name or number is required');
}

function validateTypedReference(e: Errors, raw: unknown, path: string): void {
  const ref = readObject(e, raw, path);
  if (!ref) return;
  const apiGroup = readString(e, ref.apiGroup, `${path}.apiGroup`);
  if (apiGroup) e.add(`${path}.apiGroup`, dnsSubdomain(apiGroup));
  for (const key of ['kind', 'name']) {
    const value = readString(e, ref[key], `${path}.${key}`);
    if (value) e.add(`${path}.${key}`, pathSegmentName(value));
    else if (absent(ref[key]) || value === '') e.add(`${path}.${key}`, `Required value: ${key} is required`);
  }
}

function validateTLS(e: Errors, raw: unknown): void {
  const list = readArray(e, raw, 'spec.tls') ?? [];
  list.forEach((item, i) => {
    const path = `spec.tls[${i}]`;
    const tls = readObject(e, item ?? {}, path);
    if (!tls) return;
    const hosts = readStringList(e, tls.hosts, `${path}.hosts`) ?? [];
    hosts.forEach((host, j) => e.add(`${path}.hosts[${j}]`, host.includes('*') ? wildcardSubdomain(host) : dnsSubdomain(host)));
    const secret = readString(e, tls.secretName, `${path}.secretName`);
    if (secret) e.add(`${path}.secretName`, dnsSubdomain(secret));
  });
}

/** A rule host: a DNS-1123 subdomain, or '*.' + one; never an IP address. */
function ruleHost(host: string): string | undefined {
  if (looksLikeIp(host)) return `must be a DNS name, not an IP address, got ${show(host)}`;
  return host.includes('*') ? wildcardSubdomain(host) : dnsSubdomain(host);
}

/** Go's net.ParseIP as the API server calls it (ParseIPSloppy: IPv4 parts may have leading zeros). */
function looksLikeIp(s: string): boolean {
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (v4) return v4.slice(1).every((part) => Number(part) <= 255);
  if (!s.includes(':') || !/^[0-9A-Fa-f:.]+$/.test(s)) return false;
  const halves = s.split('::');
  if (halves.length > 2) return false;
  const groups = halves.flatMap((h) => (h === '' ? [] : h.split(':')));
  let words = 0;
  for (const [i, g] of groups.entries()) {
    if (/^[0-9A-Fa-f]{1,4}$/.test(g)) words += 1;
    else if (i === groups.length - 1 && looksLikeIp(g) && !g.includes(':')) words += 2;
    else return false;
  }
  return halves.length === 2 ? words < 8 : words === 8;
}

// ---- IngressClass ----

function validateIngressClass(e: Errors, obj: Obj): void {
  validateMetadata(e, obj.metadata, false);
  const spec = readObject(e, obj.spec ?? {}, 'spec') ?? {};
  const controller = readString(e, spec.controller, 'spec.controller');
  if (controller) {
    if (controller.length > MAX_CONTROLLER_LENGTH) {
      e.add('spec.controller', `must be no more than ${MAX_CONTROLLER_LENGTH} characters, got ${controller.length}`);
    }
    e.add('spec.controller', domainPrefixedPath(controller));
  } else if (absent(spec.controller) || controller === '') {
    e.add('spec.controller', 'Required value');
  }
  const params = readObject(e, spec.parameters, 'spec.parameters');
  if (!params) return;
  validateTypedReference(e, params, 'spec.parameters');
  const scope = readEnum(e, params.scope, 'spec.parameters.scope', PARAMETER_SCOPES, 'Cluster');
  const namespace = readString(e, params.namespace, 'spec.parameters.namespace');
  if (scope === 'Namespace') {
    if (!namespace) e.add('spec.parameters.namespace', 'Required value: `parameters.scope` is set to "Namespace"');
    else e.add('spec.parameters.namespace', dnsLabel(namespace));
  } else if (scope === 'Cluster' && namespace) {
    e.add('spec.parameters.namespace', '`parameters.scope` is set to "Cluster" (the default): namespace must not be set');
  }
}

/** IsDomainPrefixedPath: 'example.com/path'. */
function domainPrefixedPath(s: string): string | undefined {
  const slash = s.indexOf('/');
  if (slash <= 0 || slash === s.length - 1) return `must be a domain-prefixed path (such as "acme.io/foo"), got ${show(s)}`;
  const domain = s.slice(0, slash);
  const problem = dnsSubdomain(domain);
  if (problem) return problem;
  if (!/^[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$/.test(s.slice(slash + 1))) {
    return `must be a domain-prefixed path whose path part matches [A-Za-z0-9/\\-._~%!$&'()*+,;=:]+, got ${show(s)}`;
  }
  return undefined;
}

// ---- metadata ----

/** Validates metadata; returns the annotations (string values only). */
function validateMetadata(e: Errors, raw: unknown, namespaced: boolean): Record<string, string> | undefined {
  const meta = readObject(e, raw ?? {}, 'metadata');
  if (!meta) return undefined;
  const name = readString(e, meta.name, 'metadata.name');
  if (name) e.add('metadata.name', dnsSubdomain(name));
  else if (absent(meta.name) || name === '') e.add('metadata.name', 'Required value');
  const namespace = readString(e, meta.namespace, 'metadata.namespace');
  if (namespace) {
    e.add('metadata.namespace', namespaced ? dnsLabel(namespace) : `must be empty for a cluster-scoped object, got ${show(namespace)}`);
  }
  const created = readString(e, meta.creationTimestamp, 'metadata.creationTimestamp');
  if (created !== undefined && !isRfc3339(created)) {
    e.add('metadata.creationTimestamp', `must be an RFC 3339 date-time (2024-01-02T15:04:05Z), got ${show(created)}`);
  }
  const annotations = readStringMap(e, meta.annotations, 'metadata.annotations');
  for (const key of Object.keys(annotations ?? {})) {
    const problem = qualifiedName(key.toLowerCase());
    if (problem) e.add(`metadata.annotations[${key}]`, `key ${problem}`);
  }
  const labels = readStringMap(e, meta.labels, 'metadata.labels');
  for (const [key, value] of Object.entries(labels ?? {})) {
    const problem = qualifiedName(key);
    if (problem) e.add(`metadata.labels[${key}]`, `key ${problem}`);
    if (value !== '' && (value.length > 63 || !QUALIFIED_NAME.test(value))) {
      e.add(`metadata.labels[${key}]`, `must be a valid label value (empty, or at most 63 characters matching ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]), got ${show(value)}`);
    }
  }
  return annotations;
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

function isRfc3339(s: string): boolean {
  return RFC3339.test(s) && !Number.isNaN(Date.parse(s));
}

// ---- value formats: each returns an error message, or undefined when the value is fine ----

/** IsWildcardDNS1123Subdomain: '*.' followed by a DNS-1123 subdomain; '*' only as the whole first label. */
function wildcardSubdomain(s: string): string | undefined {
  if (s.length <= 253 && s.startsWith('*.') && DNS_SUBDOMAIN.test(s.slice(2))) return undefined;
  return `must be a wildcard DNS-1123 subdomain ('*.' followed by a DNS-1123 subdomain: the wildcard is the whole first label), got ${show(s)}`;
}

function ianaServiceName(s: string): string | undefined {
  const ok =
    s.length <= 15 && /^[-a-z0-9]+$/.test(s) && /[a-z]/.test(s) && !s.includes('--') && !s.startsWith('-') && !s.endsWith('-');
  if (ok) return undefined;
  return `must be an IANA service name (at most 15 characters of [-a-z0-9] with a letter, no leading, trailing or double '-'), got ${show(s)}`;
}

/** IsValidPathSegmentName: usable as one segment of an API path. */
function pathSegmentName(s: string): string | undefined {
  if (s === '.' || s === '..') return `may not be ${show(s)}`;
  if (s.includes('/') || s.includes('%')) return `may not contain '/' or '%', got ${show(s)}`;
  return undefined;
}

function portRange(n: number): string | undefined {
  return n >= 1 && n <= 65535 ? undefined : `must be between 1 and 65535, got ${n}`;
}

// ---- typed readers: absent (undefined or null) gives undefined silently, a wrong type is reported ----
