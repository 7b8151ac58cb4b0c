import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { parse } from 'yaml';
import { validateObject } from '../src/k8s/validate.js';
import { ClusterState } from '../src/control/state.js';
import type { ValidationError } from '../src/k8s/types.js';

type Json = Record<string, unknown>;

// ---- valid objects as `kubectl get -o yaml` prints them ----

const LOAD_BALANCER_YAML = `
apiVersion: v1
kind: Service
metadata:
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: |
      {"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"shop"}}
    service.beta.kubernetes.io/aws-load-balancer-type: nlb
  creationTimestamp: "2024-05-02T10:11:12Z"
  labels:
    app.kubernetes.io/name: web
    app.kubernetes.io/part-of: shop
  name: web
  namespace: shop
  resourceVersion: "123456"
  uid: 6f1c2d3e-4a5b-6c7d-8e9f-0a1b2c3d4e5f
spec:
  allocateLoadBalancerNodePorts: true
  clusterIP: 10.96.12.34
  clusterIPs:
  - 10.96.12.34
  - fd00:10:96::1234
  externalTrafficPolicy: Local
  healthCheckNodePort: 31234
  internalTrafficPolicy: Cluster
  ipFamilies:
  - IPv4
  - IPv6
  ipFamilyPolicy: RequireDualStack
  loadBalancerSourceRanges:
  - 203.0.113.0/24
  - 2001:db8:1::/48
  ports:
  - name: http
    nodePort: 30080
    port: 80
    protocol: TCP
    targetPort: http
  - appProtocol: kubernetes.io/h2c
    name: https
    nodePort: 30443
    port: 443
    protocol: TCP
    targetPort: 8443
  - name: quic
    nodePort: 30443
    port: 443
    protocol: UDP
    targetPort: 8443
  publishNotReadyAddresses: false
  selector:
    app.kubernetes.io/name: web
  sessionAffinity: ClientIP
  sessionAffinityConfig:
    clientIP:
      timeoutSeconds: 10800
  type: LoadBalancer
status:
  loadBalancer:
    ingress:
    - ip: 198.51.100.10
      ipMode: VIP
    - ip: 2001:db8::10
      ipMode: Proxy
    - hostname: web.lb.example.com
`;

const HEADLESS_YAML = `
apiVersion: v1
kind: Service
metadata:
  name: db
  namespace: shop
spec:
  clusterIP: None
  clusterIPs:
  - None
  internalTrafficPolicy: Cluster
  ipFamilies:
  - IPv4
  ipFamilyPolicy: SingleStack
  selector:
    app: db
  sessionAffinity: None
  type: ClusterIP
status:
  loadBalancer: {}
`;

const EXTERNAL_NAME_YAML = `
apiVersion: v1
kind: Service
metadata:
  name: payments
  namespace: shop
spec:
  externalName: payments.example.com.
  sessionAffinity: None
  type: ExternalName
`;

const SLICE_YAML = `
addressType: IPv4
apiVersion: discovery.k8s.io/v1
endpoints:
- addresses:
  - 10.244.1.5
  conditions:
    ready: true
    serving: true
    terminating: false
  hints:
    forZones:
    - name: zone-a
  nodeName: node-a
  targetRef:
    kind: Pod
    name: web-7d9f8b6c5-abcde
    namespace: shop
    uid: 0b7c1e52-1111-2222-3333-444455556666
  zone: zone-a
- addresses:
  - 10.244.2.7
  conditions:
    ready: false
    serving: true
    terminating: true
  hostname: web-1
  nodeName: node-b.example.internal
  zone: zone-b
- addresses:
  - 10.244.3.9
  conditions:
    ready: null
  nodeName: node-c
kind: EndpointSlice
metadata:
  annotations:
    endpoints.kubernetes.io/last-change-trigger-time: "2024-05-02T10:11:12Z"
  generateName: web-
  labels:
    endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io
    kubernetes.io/service-name: web
  name: web-x7k2p
  namespace: shop
  ownerReferences:
  - apiVersion: v1
    kind: Service
    name: web
ports:
- name: http
  port: 8080
  protocol: TCP
- name: https
  port: 8443
  protocol: TCP
- appProtocol: http
  name: quic
  port: 8443
  protocol: UDP
`;

const NODE_YAML = `
apiVersion: v1
kind: Node
metadata:
  labels:
    kubernetes.io/hostname: node-a
    kubernetes.io/os: linux
    node.kubernetes.io/instance-type: m5.large
    topology.kubernetes.io/region: eu-west-1
    topology.kubernetes.io/zone: eu-west-1a
  name: node-a
spec:
  podCIDR: 10.244.1.0/24
status:
  addresses:
  - address: 192.168.10.11
    type: InternalIP
  - address: fd00:192:168::11
    type: InternalIP
  - address: node-a
    type: Hostname
`;

/** A fresh copy, so each test can break its own. */
const load = (text: string): Json => parse(text) as Json;
const loadBalancer = (): Json => load(LOAD_BALANCER_YAML);
const headless = (): Json => load(HEADLESS_YAML);
const externalName = (): Json => load(EXTERNAL_NAME_YAML);
const slice = (): Json => load(SLICE_YAML);
const node = (): Json => load(NODE_YAML);

/** A minimal hand-written (not defaulted) ClusterIP Service. */
function service(spec: Json = {}, metadata: Json = { name: 'web' }): Json {
  return { apiVersion: 'v1', kind: 'Service', metadata, spec: { selector: { app: 'web' }, ports: [{ port: 80 }], ...spec } };
}

/** A minimal EndpointSlice with one endpoint and one port. */
function endpointSlice(fields: Json = {}, labels: Json = { 'kubernetes.io/service-name': 'web' }): Json {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'web-abc', labels },
    addressType: 'IPv4',
    endpoints: [{ addresses: ['10.0.0.1'] }],
    ports: [{ name: 'http', port: 8080 }],
    ...fields,
  };
}

/** Sets `value` at a dotted path ('spec.ports.0.port'), creating objects on the way. */
function set(obj: Json, path: string, value: unknown): Json {
  const keys = path.split('.');
  let at: Record<string, unknown> = obj;
  for (const key of keys.slice(0, -1)) {
    if (typeof at[key] !== 'object' || at[key] === null) at[key] = {};
    at = at[key] as Record<string, unknown>;
  }
  at[keys[keys.length - 1] as string] = value;
  return obj;
}

/** Asserts the object yields exactly one error, at `field`, whose message contains every fragment. */
function expectOnly(obj: unknown, field: string, ...fragments: string[]): void {
  const errors = validateObject(obj);
  expect(errors.map((e) => `${e.field}: ${e.message}`)).toEqual([expect.stringMatching(/./)]);
  const [error] = errors as [ValidationError];
  expect(error.field).toBe(field);
  for (const fragment of fragments) expect(error.message).toContain(fragment);
}

/** Asserts some error (among possibly several) is at `field` with a message containing `fragment`. */
function expectSome(obj: unknown, field: string, fragment: string): void {
  const errors = validateObject(obj);
  expect(errors.map((e) => ({ field: e.field, message: e.message }))).toContainEqual({
    field,
    message: expect.stringContaining(fragment),
  });
}

describe('valid objects', () => {
  it.each([
    ['dual-stack LoadBalancer service', loadBalancer],
    ['headless service', headless],
    ['ExternalName service', externalName],
    ['3-endpoint slice', slice],
    ['node', node],
    ['minimal ClusterIP service', () => service()],
    ['minimal slice', () => endpointSlice()],
  ])('%s gives no errors', (_name, make) => {
    expect(validateObject(make())).toEqual([]);
  });

  it('accepts absent fields an API server would default or allocate', () => {
    expect(validateObject(service({ type: 'NodePort', ports: [{ port: 80, targetPort: 0 }] }))).toEqual([]);
    expect(validateObject(service({ type: 'LoadBalancer', ports: [{ port: 53, protocol: 'UDP', targetPort: '' }] }))).toEqual([]);
    expect(validateObject(service({ sessionAffinity: 'ClientIP' }))).toEqual([]);
    expect(validateObject(endpointSlice({ ports: [{ port: 8080 }] }))).toEqual([]); // protocol defaults to TCP
    expect(validateObject(endpointSlice({ endpoints: null, ports: null }))).toEqual([]);
  });

  it('ignores kinds and versions it does not validate', () => {
    for (const obj of [
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: {} },
      { apiVersion: 'v2', kind: 'Service' },
      { apiVersion: 'discovery.k8s.io/v1beta1', kind: 'EndpointSlice' },
      { kind: 'Node' },
      null,
      [],
      'Service',
      42,
    ]) {
      expect(validateObject(obj)).toEqual([]);
    }
  });
});

describe('objects svcplane does not use', () => {
  it('are skipped with a note that says why', () => {
    const cases: [unknown, string, string][] = [
      [{ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web' } }, 'Deployment default/web', 'skipped: svcplane does not use apps/v1 Deployment'],
      [{ apiVersion: 'v2', kind: 'Service', metadata: { name: 'web' } }, 'Service default/web', 'skipped: svcplane reads Service as v1, not v2'],
      [{ apiVersion: 'discovery.k8s.io/v1beta1', kind: 'EndpointSlice', metadata: { name: 's', namespace: 'x' } }, 'EndpointSlice x/s', 'skipped: svcplane reads EndpointSlice as discovery.k8s.io/v1, not discovery.k8s.io/v1beta1'],
      [{ apiVersion: 'extensions/v1beta1', kind: 'Ingress', metadata: { name: 'i' } }, 'Ingress default/i', 'skipped: svcplane reads Ingress as networking.k8s.io/v1, not extensions/v1beta1'],
      [{ kind: 'Service', metadata: { name: 'a' } }, 'Service default/a', 'skipped: no apiVersion (svcplane reads Service as v1)'],
      [{ kind: 'Widget', metadata: { name: 'a' } }, 'Widget default/a', 'skipped: no apiVersion'],
      [{ apiVersion: 'v1', metadata: { name: 'a' } }, 'Object default/a', 'skipped: no kind'],
      [{ apiVersion: 'v1', kind: 'constructor' }, 'constructor default/<unnamed>', 'skipped: svcplane does not use v1 constructor'],
      [null, 'Object default/<unnamed>', 'skipped: not a Kubernetes object (null)'],
      [[], 'Object default/<unnamed>', 'skipped: not a Kubernetes object (an array)'],
      ['Service', 'Object default/<unnamed>', 'skipped: not a Kubernetes object (a string)'],
    ];
    for (const [obj, object, message] of cases) {
      const r = new ClusterState().apply([obj]);
      expect(r.errors).toEqual([]);
      expect(r.notes).toEqual([{ object, message }]);
      expect(r.changedServices.size).toBe(0);
    }
  });
});

describe('error reporting', () => {
  it('names the object and reports every error, not just the first', () => {
    const obj = service({ type: 'Bogus', ports: [{ port: 0, protocol: 'ICMP' }] }, { name: 'Web', namespace: 'prod' });
    const errors = validateObject(obj);
    expect(errors.map((e) => e.field).sort()).toEqual(['metadata.name', 'spec.ports[0].port', 'spec.ports[0].protocol', 'spec.type']);
    expect(errors.every((e) => e.object === 'Service prod/Web')).toBe(true);
  });

  it('reports wrong types at their path instead of throwing', () => {
    expectOnly(service({ ports: [{ port: '80' }] }), 'spec.ports[0].port', 'must be an integer, got "80"');
    expectOnly(service({ ports: [{ port: 80.5 }] }), 'spec.ports[0].port', 'must be an integer, got 80.5');
    expectOnly(service({ ports: 'http' }), 'spec.ports', 'must be an array, got "http"');
    expectOnly(service({ ports: [null] }), 'spec.ports[0].port', 'Required value');
    expectOnly(service({ ports: [7] }), 'spec.ports[0]', 'must be an object, got 7');
    expectOnly({ ...service(), spec: [] }, 'spec', 'must be an object, got []');
    expectOnly(service({ clusterIP: 10 }), 'spec.clusterIP', 'must be a string, got 10');
    expectOnly(service({}, { name: 'web', labels: ['a'] }), 'metadata.labels', 'must be an object, got ["a"]');
    expectOnly(service({}, { name: 'web', annotations: { note: 1 } }), 'metadata.annotations[note]', 'must be a string, got 1');
    expectOnly(service({ publishNotReadyAddresses: 'yes' }), 'spec.publishNotReadyAddresses', 'must be a boolean');
    expectOnly({ ...node(), status: { addresses: {} } }, 'status.addresses', 'must be an array');
  });

  it('never throws on arbitrary values anywhere', () => {
    const paths: [() => Json, string][] = [
      [loadBalancer, 'metadata'],
      [loadBalancer, 'metadata.labels'],
      [loadBalancer, 'metadata.name'],
      [loadBalancer, 'spec'],
      [loadBalancer, 'spec.type'],
      [loadBalancer, 'spec.ports'],
      [loadBalancer, 'spec.ports.0'],
      [loadBalancer, 'spec.ports.1.targetPort'],
      [loadBalancer, 'spec.clusterIPs'],
      [loadBalancer, 'spec.ipFamilies'],
      [loadBalancer, 'spec.sessionAffinityConfig'],
      [loadBalancer, 'spec.sessionAffinityConfig.clientIP'],
      [loadBalancer, 'spec.loadBalancerSourceRanges'],
      [loadBalancer, 'status'],
      [loadBalancer, 'status.loadBalancer.ingress'],
      [loadBalancer, 'status.loadBalancer.ingress.0'],
      [slice, 'endpoints'],
      [slice, 'endpoints.0'],
      [slice, 'endpoints.0.addresses'],
      [slice, 'endpoints.0.conditions'],
      [slice, 'endpoints.0.hints'],
      [slice, 'endpoints.0.hints.forZones'],
      [slice, 'endpoints.0.targetRef'],
      [slice, 'ports'],
      [slice, 'ports.0'],
      [slice, 'addressType'],
      [node, 'status'],
      [node, 'status.addresses'],
      [node, 'status.addresses.0'],
    ];
    fc.assert(
      fc.property(fc.constantFrom(...paths), fc.anything(), ([make, path], value) => {
        const errors = validateObject(set(make(), path, value));
        for (const e of errors) {
          expect(typeof e.object).toBe('string');
          expect(typeof e.field).toBe('string');
          expect(typeof e.message).toBe('string');
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('metadata', () => {
  it('requires a name', () => {
    expectOnly(service({}, {}), 'metadata.name', 'Required value');
    expectOnly({ ...service(), metadata: undefined }, 'metadata.name', 'Required value');
    expectOnly({ ...node(), metadata: { name: '' } }, 'metadata.name', 'Required value');
  });

  it('requires a DNS-1035 label as Service name', () => {
    expectOnly(service({}, { name: '1web' }), 'metadata.name', 'must be a DNS-1035 label');
    expectOnly(service({}, { name: 'web.shop' }), 'metadata.name', 'got "web.shop"');
    expectOnly(service({}, { name: 'w'.repeat(64) }), 'metadata.name', 'at most 63 characters');
    expect(validateObject(service({}, { name: 'w'.repeat(63) }))).toEqual([]);
  });

  it('requires a DNS-1123 subdomain as EndpointSlice and Node name', () => {
    expectOnly(set(endpointSlice(), 'metadata.name', 'Web_1'), 'metadata.name', 'must be a DNS-1123 subdomain');
    expectOnly(set(endpointSlice(), 'metadata.name', 'a'.repeat(254)), 'metadata.name', 'at most 253 characters');
    expect(validateObject(set(endpointSlice(), 'metadata.name', '1.web-abc'))).toEqual([]);
    expectOnly(set(node(), 'metadata.name', 'node_a'), 'metadata.name', 'must be a DNS-1123 subdomain', 'got "node_a"');
    expect(validateObject(set(node(), 'metadata.name', 'ip-10-0-0-1.ec2.internal'))).toEqual([]);
  });

  it('requires a DNS-1123 label as namespace', () => {
    expectOnly(service({}, { name: 'web', namespace: 'Prod' }), 'metadata.namespace', 'must be a DNS-1123 label');
    expectOnly(service({}, { name: 'web', namespace: 'a.b' }), 'metadata.namespace', 'got "a.b"');
    expectOnly(set(node(), 'metadata.namespace', 'default'), 'metadata.namespace', 'must be empty for a cluster-scoped object');
  });

  it('requires labels and annotations to be string maps with valid keys and values', () => {
    expectOnly(service({}, { name: 'web', labels: { version: 2 } }), 'metadata.labels[version]', 'must be a string, got 2');
    expectOnly(service({}, { name: 'web', labels: { 'bad key': 'x' } }), 'metadata.labels[bad key]', 'key must be a qualified name');
    expectOnly(service({}, { name: 'web', labels: { app: 'a b' } }), 'metadata.labels[app]', 'must be a valid label value');
    expectOnly(service({}, { name: 'web', annotations: { '/x': 'y' } }), 'metadata.annotations[/x]', 'key must be a qualified name');
    expectOnly(service({ selector: { app: 'x'.repeat(64) } }), 'spec.selector[app]', 'must be a valid label value');
  });
});

describe('Service', () => {
  it('requires a known type', () => {
    expectOnly(service({ type: 'Ingress' }), 'spec.type', 'must be one of ClusterIP, NodePort, LoadBalancer, ExternalName, got "Ingress"');
  });

  it('requires externalName for type ExternalName, and a DNS-1123 subdomain', () => {
    expectOnly(set(externalName(), 'spec.externalName', undefined), 'spec.externalName', 'Required value');
    expectOnly(set(externalName(), 'spec.externalName', 'Payments.example.com'), 'spec.externalName', 'must be a DNS-1123 subdomain');
  });

  it('forbids cluster IP fields on type ExternalName', () => {
    expectOnly(set(externalName(), 'spec.clusterIP', '10.96.0.10'), 'spec.clusterIP', 'may not be set for type "ExternalName"');
    expectOnly(set(externalName(), 'spec.ipFamilies', ['IPv4']), 'spec.ipFamilies', 'may not be set for type "ExternalName"');
    expectOnly(set(externalName(), 'spec.ipFamilyPolicy', 'SingleStack'), 'spec.ipFamilyPolicy', 'may not be set');
  });

  it('requires at least one port unless headless or ExternalName', () => {
    expectOnly(service({ ports: [] }), 'spec.ports', 'Required value');
    expectOnly({ ...service(), spec: undefined }, 'spec.ports', 'Required value');
    expect(validateObject(set(headless(), 'spec.ports', []))).toEqual([]);
    expect(validateObject(set(externalName(), 'spec.ports', undefined))).toEqual([]);
  });

  it('requires port names when there are several', () => {
    expectOnly(service({ ports: [{ name: 'http', port: 80 }, { port: 81 }] }), 'spec.ports[1].name', 'Required value');
    expect(validateObject(service({ ports: [{ port: 80 }] }))).toEqual([]);
  });

  it('requires port names to be DNS-1123 labels', () => {
    expectOnly(service({ ports: [{ name: 'HTTP', port: 80 }] }), 'spec.ports[0].name', 'must be a DNS-1123 label', 'got "HTTP"');
    expectOnly(service({ ports: [{ name: 'a'.repeat(64), port: 80 }] }), 'spec.ports[0].name', 'at most 63 characters');
    expect(validateObject(service({ ports: [{ name: 'tcp-prometheus-servicemonitor', port: 80 }] }))).toEqual([]);
  });

  it('requires unique port names', () => {
    const ports = [
      { name: 'http', port: 80 },
      { name: 'http', port: 8080 },
    ];
    expectOnly(service({ ports }), 'spec.ports[1].name', 'Duplicate value: "http"');
  });

  it('requires port in 1..65535', () => {
    expectOnly(service({ ports: [{ name: 'a', port: 80 }, { name: 'b', port: 70000 }] }), 'spec.ports[1].port', 'must be between 1 and 65535, got 70000');
    expectOnly(service({ ports: [{ port: 0 }] }), 'spec.ports[0].port', 'got 0');
    expectOnly(service({ ports: [{ name: 'a' }] }), 'spec.ports[0].port', 'Required value');
  });

  it('requires protocol TCP, UDP or SCTP', () => {
    expectOnly(service({ ports: [{ port: 80, protocol: 'ICMP' }] }), 'spec.ports[0].protocol', 'must be one of TCP, UDP, SCTP, got "ICMP"');
    expectOnly(service({ ports: [{ port: 80, protocol: 'tcp' }] }), 'spec.ports[0].protocol', 'got "tcp"');
  });

  it('requires targetPort to be a port number or an IANA service name', () => {
    const target = (targetPort: unknown): Json => service({ ports: [{ port: 80, targetPort }] });
    expectOnly(target(65536), 'spec.ports[0].targetPort', 'must be between 1 and 65535, got 65536');
    expectOnly(target('8080'), 'spec.ports[0].targetPort', 'IANA service name');
    expectOnly(target('http-metrics-abc'), 'spec.ports[0].targetPort', 'got "http-metrics-abc"'); // 16 characters
    expectOnly(target('-http'), 'spec.ports[0].targetPort', 'IANA service name');
    expectOnly(target('http-'), 'spec.ports[0].targetPort', 'IANA service name');
    expectOnly(target('h--p'), 'spec.ports[0].targetPort', 'IANA service name');
    expectOnly(target('Http'), 'spec.ports[0].targetPort', 'IANA service name');
    expectOnly(target(true), 'spec.ports[0].targetPort', 'must be an integer or a string, got true');
    for (const ok of [8080, 'http', 'grpc-web', 'h2c', 'x1', 'http-metrics-ab']) expect(validateObject(target(ok))).toEqual([]);
  });

  it('requires nodePort in 1..65535', () => {
    expectOnly(service({ type: 'NodePort', ports: [{ port: 80, nodePort: 70000 }] }), 'spec.ports[0].nodePort', 'must be between 1 and 65535, got 70000');
    expectOnly(service({ type: 'NodePort', ports: [{ port: 80, nodePort: -1 }] }), 'spec.ports[0].nodePort', 'got -1');
  });

  it('forbids nodePort for type ClusterIP and ExternalName', () => {
    expectOnly(service({ ports: [{ port: 80, nodePort: 30080 }] }), 'spec.ports[0].nodePort', 'may not be set for type "ClusterIP", got 30080');
    expectOnly(set(externalName(), 'spec.ports', [{ port: 80, nodePort: 30080 }]), 'spec.ports[0].nodePort', 'type "ExternalName"');
    expect(validateObject(service({ ports: [{ port: 80, nodePort: 0 }] }))).toEqual([]);
  });

  it('rejects duplicate (protocol, port)', () => {
    const ports = [
      { name: 'a', port: 53, protocol: 'UDP' },
      { name: 'b', port: 53 },
      { name: 'c', port: 53, protocol: 'TCP' },
    ];
    expectOnly(service({ ports }), 'spec.ports[2]', 'Duplicate value: "TCP/53"');
  });

  it('rejects duplicate (protocol, nodePort)', () => {
    const ports = [
      { name: 'a', port: 80, nodePort: 30080 },
      { name: 'b', port: 81, nodePort: 30080, protocol: 'UDP' },
      { name: 'c', port: 82, nodePort: 30080 },
    ];
    expectOnly(service({ type: 'NodePort', ports }), 'spec.ports[2].nodePort', 'Duplicate value: "TCP/30080"');
  });

  it('requires clusterIP to be a valid IP, "None" or ""', () => {
    expectOnly(service({ clusterIP: '10.0.0.300' }), 'spec.clusterIP', 'must be a valid IP address, "None" or "", got "10.0.0.300"');
    expectOnly(service({ clusterIP: 'none' }), 'spec.clusterIP', 'got "none"');
    expect(validateObject(service({ clusterIP: '' }))).toEqual([]);
    expect(validateObject(service({ clusterIP: 'fd00::10' }))).toEqual([]);
  });

  it('requires clusterIPs[0] to equal clusterIP', () => {
    expectOnly(service({ clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.11'] }), 'spec.clusterIPs[0]', 'must equal clusterIP "10.96.0.10", got "10.96.0.11"');
    expectOnly(service({ clusterIPs: ['10.96.0.11'] }), 'spec.clusterIPs', 'must be empty when clusterIP is not set');
  });

  it('requires every clusterIPs entry to be a valid IP', () => {
    const spec = { clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10', 'fd00::1::2'], ipFamilyPolicy: 'PreferDualStack' };
    expectOnly(service(spec), 'spec.clusterIPs[1]', 'must be a valid IP address, got "fd00::1::2"');
  });

  it('allows at most 2 clusterIPs, of different families', () => {
    const three = { clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10', 'fd00::10', '10.96.0.11'], ipFamilyPolicy: 'RequireDualStack' };
    expectOnly(service(three), 'spec.clusterIPs', 'must have at most 2 items, got 3');
    const sameFamily = { clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10', '10.96.0.11'], ipFamilyPolicy: 'RequireDualStack' };
    expectOnly(service(sameFamily), 'spec.clusterIPs', 'must hold one IPv4 and one IPv6 address');
  });

  it('allows "None" only as the single clusterIPs value', () => {
    const spec = { clusterIP: 'None', clusterIPs: ['None', '10.96.0.10'], ipFamilyPolicy: 'RequireDualStack' };
    expectOnly(service(spec), 'spec.clusterIPs[0]', '"None" must be the first and only value');
  });

  it('requires ipFamilies to be IPv4 or IPv6, unique, at most 2', () => {
    expectOnly(service({ ipFamilies: ['IPv5'] }), 'spec.ipFamilies[0]', 'must be one of IPv4, IPv6, got "IPv5"');
    expectSome(service({ ipFamilies: ['IPv4', 'IPv4'], ipFamilyPolicy: 'PreferDualStack' }), 'spec.ipFamilies[1]', 'Duplicate value: "IPv4"');
    expectSome(service({ ipFamilies: ['IPv4', 'IPv6', 'IPv4'], ipFamilyPolicy: 'PreferDualStack' }), 'spec.ipFamilies', 'must have at most 2 items, got 3');
  });

  it('requires ipFamilies[i] to match the family of clusterIPs[i]', () => {
    const spec = {
      clusterIP: '10.96.0.10',
      clusterIPs: ['10.96.0.10', 'fd00::10'],
      ipFamilies: ['IPv6', 'IPv4'],
      ipFamilyPolicy: 'RequireDualStack',
    };
    const errors = validateObject(service(spec));
    expect(errors.map((e) => [e.field, e.message])).toEqual([
      ['spec.clusterIPs[0]', 'must be an IPv6 address to match spec.ipFamilies[0], got "10.96.0.10"'],
      ['spec.clusterIPs[1]', 'must be an IPv4 address to match spec.ipFamilies[1], got "fd00::10"'],
    ]);
    expectOnly(service({ clusterIP: 'fd00::10', ipFamilies: ['IPv4'] }), 'spec.clusterIP', 'must be an IPv4 address');
  });

  it('requires a dual-stack ipFamilyPolicy for two families or two clusterIPs', () => {
    expectOnly(service({ ipFamilies: ['IPv4', 'IPv6'] }), 'spec.ipFamilyPolicy', 'when 2 ipFamilies are given, got "SingleStack"');
    const ips = { clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10', 'fd00::10'], ipFamilyPolicy: 'SingleStack' };
    expectOnly(service(ips), 'spec.ipFamilyPolicy', 'when 2 clusterIPs are given');
    expectOnly(service({ ipFamilyPolicy: 'DualStack' }), 'spec.ipFamilyPolicy', 'must be one of SingleStack, PreferDualStack, RequireDualStack');
  });

  it('forbids "None" for types NodePort and LoadBalancer', () => {
    expectOnly(service({ type: 'NodePort', clusterIP: 'None' }), 'spec.clusterIP', 'may not be "None" for type "NodePort"');
    expectOnly(set(set(headless(), 'spec.type', 'LoadBalancer'), 'spec.ports', [{ port: 80 }]), 'spec.clusterIPs[0]', 'for type "LoadBalancer"');
  });

  it('requires externalIPs to be valid, non-special IPs', () => {
    expectOnly(service({ externalIPs: ['203.0.113.7', '203.0.113.300'] }), 'spec.externalIPs[1]', 'must be a valid IP address, got "203.0.113.300"');
    expectOnly(service({ externalIPs: ['0.0.0.0'] }), 'spec.externalIPs[0]', 'may not be unspecified, got "0.0.0.0"');
    expectOnly(service({ externalIPs: ['::'] }), 'spec.externalIPs[0]', 'may not be unspecified');
    expectOnly(service({ externalIPs: ['127.0.0.2'] }), 'spec.externalIPs[0]', 'may not be loopback');
    expectOnly(service({ externalIPs: ['169.254.169.254'] }), 'spec.externalIPs[0]', 'may not be link-local');
    expectOnly(service({ externalIPs: ['fe80::1'] }), 'spec.externalIPs[0]', 'may not be link-local');
    expect(validateObject(service({ externalIPs: ['203.0.113.7', '2001:db8::7'] }))).toEqual([]);
  });

  it('requires sessionAffinity None or ClientIP', () => {
    expectOnly(service({ sessionAffinity: 'Cookie' }), 'spec.sessionAffinity', 'must be one of None, ClientIP, got "Cookie"');
  });

  it('requires sessionAffinityConfig timeoutSeconds in 1..86400', () => {
    const timeout = (timeoutSeconds: unknown): Json => service({ sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds } } });
    const path = 'spec.sessionAffinityConfig.clientIP.timeoutSeconds';
    expectOnly(timeout(0), path, 'must be between 1 and 86400, got 0');
    expectOnly(timeout(86401), path, 'got 86401');
    expect(validateObject(timeout(86400))).toEqual([]);
    expect(validateObject(timeout(1))).toEqual([]);
  });

  it('allows sessionAffinityConfig only with sessionAffinity ClientIP', () => {
    const config = { clientIP: { timeoutSeconds: 60 } };
    expectOnly(service({ sessionAffinityConfig: config }), 'spec.sessionAffinityConfig', 'may only be set when sessionAffinity is "ClientIP"');
    expectOnly(service({ sessionAffinity: 'None', sessionAffinityConfig: config }), 'spec.sessionAffinityConfig', 'got "None"');
  });

  it('requires externalTrafficPolicy Cluster or Local', () => {
    expectOnly(service({ type: 'NodePort', externalTrafficPolicy: 'Global' }), 'spec.externalTrafficPolicy', 'must be one of Cluster, Local, got "Global"');
  });

  it('allows externalTrafficPolicy Local only on externally-accessible services', () => {
    expectOnly(service({ externalTrafficPolicy: 'Local' }), 'spec.externalTrafficPolicy', 'externally-accessible');
    expect(validateObject(service({ externalTrafficPolicy: 'Cluster' }))).toEqual([]);
    expect(validateObject(service({ externalTrafficPolicy: 'Local', externalIPs: ['203.0.113.7'] }))).toEqual([]);
    expect(validateObject(service({ externalTrafficPolicy: 'Local', type: 'NodePort' }))).toEqual([]);
  });

  it('requires internalTrafficPolicy Cluster or Local', () => {
    expectOnly(service({ internalTrafficPolicy: 'Node' }), 'spec.internalTrafficPolicy', 'must be one of Cluster, Local, got "Node"');
    expectOnly(service({ internalTrafficPolicy: '' }), 'spec.internalTrafficPolicy', 'got ""');
    expect(validateObject(service({ internalTrafficPolicy: 'Local' }))).toEqual([]);
  });

  it('allows loadBalancerSourceRanges only for type LoadBalancer, each a CIDR', () => {
    expectOnly(service({ type: 'NodePort', loadBalancerSourceRanges: ['10.0.0.0/8'] }), 'spec.loadBalancerSourceRanges', 'may only be used when type is "LoadBalancer", got type "NodePort"');
    expectOnly(service({ type: 'LoadBalancer', loadBalancerSourceRanges: ['10.0.0.0/8', '10.0.0.1'] }), 'spec.loadBalancerSourceRanges[1]', 'must be a valid CIDR, got "10.0.0.1"');
    expectOnly(service({ type: 'LoadBalancer', loadBalancerSourceRanges: ['10.0.0.0/33'] }), 'spec.loadBalancerSourceRanges[0]', 'must be a valid CIDR');
  });

  it('allows allocateLoadBalancerNodePorts only for type LoadBalancer', () => {
    expectOnly(service({ allocateLoadBalancerNodePorts: false }), 'spec.allocateLoadBalancerNodePorts', 'may only be used when type is "LoadBalancer"');
  });

  it('allows healthCheckNodePort only for LoadBalancer with externalTrafficPolicy Local', () => {
    const path = 'spec.healthCheckNodePort';
    expectOnly(service({ type: 'LoadBalancer', healthCheckNodePort: 31000 }), path, 'externalTrafficPolicy is "Local", got type "LoadBalancer" and externalTrafficPolicy "Cluster"');
    expectOnly(service({ type: 'NodePort', externalTrafficPolicy: 'Local', healthCheckNodePort: 31000 }), path, 'got type "NodePort"');
    expectOnly(service({ type: 'LoadBalancer', externalTrafficPolicy: 'Local', healthCheckNodePort: 70000 }), path, 'must be between 1 and 65535, got 70000');
  });

  it('requires load-balancer ingress ip to be a valid IP', () => {
    expectOnly(set(loadBalancer(), 'status.loadBalancer.ingress.0.ip', '198.51.100.256'), 'status.loadBalancer.ingress[0].ip', 'must be a valid IP address, got "198.51.100.256"');
  });

  it('requires load-balancer ingress hostname to be a DNS name', () => {
    expectOnly(set(loadBalancer(), 'status.loadBalancer.ingress.2.hostname', '198.51.100.1'), 'status.loadBalancer.ingress[2].hostname', 'must be a DNS name, not an IP address');
  });

  it('requires ipMode VIP or Proxy, and an ip with it', () => {
    expectOnly(set(loadBalancer(), 'status.loadBalancer.ingress.0.ipMode', 'DSR'), 'status.loadBalancer.ingress[0].ipMode', 'must be one of VIP, Proxy, got "DSR"');
    expectOnly(set(loadBalancer(), 'status.loadBalancer.ingress.2.ipMode', 'VIP'), 'status.loadBalancer.ingress[2].ip', 'Required value');
  });
});

describe('EndpointSlice', () => {
  it('requires the kubernetes.io/service-name label', () => {
    const field = 'metadata.labels[kubernetes.io/service-name]';
    expectOnly(endpointSlice({}, {}), field, 'Required value: the slice names no Service');
    expectOnly(endpointSlice({}, { 'kubernetes.io/service-name': '' }), field, 'Required value');
    expectOnly(set(endpointSlice(), 'metadata', { name: 'web-abc' }), field, 'Required value');
  });

  it('requires addressType IPv4, IPv6 or FQDN', () => {
    expectOnly(endpointSlice({ addressType: undefined }), 'addressType', 'Required value');
    expectOnly(endpointSlice({ addressType: 'IP' }), 'addressType', 'must be one of IPv4, IPv6, FQDN, got "IP"');
  });

  it('allows at most 1000 endpoints', () => {
    const endpoints = (n: number): Json[] => Array.from({ length: n }, (_, i) => ({ addresses: [`10.1.${i >> 8}.${i & 255}`] }));
    expect(validateObject(endpointSlice({ endpoints: endpoints(1000) }))).toEqual([]);
    expectOnly(endpointSlice({ endpoints: endpoints(1001) }), 'endpoints', 'must have at most 1000 items, got 1001');
  });

  it('requires 1..100 addresses per endpoint', () => {
    expectOnly(endpointSlice({ endpoints: [{}] }), 'endpoints[0].addresses', 'Required value');
    expectOnly(endpointSlice({ endpoints: [{ addresses: [] }] }), 'endpoints[0].addresses', 'must contain at least 1 address');
    const many = Array.from({ length: 101 }, (_, i) => `10.1.0.${i + 1}`);
    expectOnly(endpointSlice({ endpoints: [{ addresses: many }] }), 'endpoints[0].addresses', 'must have at most 100 items, got 101');
  });

  it('requires addresses valid for the addressType', () => {
    const address = (addressType: string, a: string): Json => endpointSlice({ addressType, endpoints: [{ addresses: [a] }] });
    expectOnly(address('IPv4', '10.0.0.300'), 'endpoints[0].addresses[0]', 'must be a valid IPv4 address, got "10.0.0.300"');
    expectOnly(address('IPv4', 'fd00::1'), 'endpoints[0].addresses[0]', 'must be a valid IPv4 address');
    expectOnly(address('IPv4', '010.0.0.1'), 'endpoints[0].addresses[0]', 'must be a valid IPv4 address');
    expectOnly(address('IPv6', '10.0.0.1'), 'endpoints[0].addresses[0]', 'must be a valid IPv6 address');
    expectOnly(address('IPv6', '::ffff:10.0.0.1'), 'endpoints[0].addresses[0]', 'must be a valid IPv6 address');
    expectOnly(address('IPv4', '127.0.0.1'), 'endpoints[0].addresses[0]', 'may not be loopback');
    expectOnly(address('IPv6', '::1'), 'endpoints[0].addresses[0]', 'may not be loopback');
    expectOnly(address('IPv6', 'ff02::1'), 'endpoints[0].addresses[0]', 'may not be link-local multicast');
    expectOnly(address('FQDN', 'Web.example.com'), 'endpoints[0].addresses[0]', 'must be a DNS-1123 subdomain');
    expect(validateObject(address('IPv6', 'fd00:10:244::5'))).toEqual([]);
    expect(validateObject(address('FQDN', 'web.example.com'))).toEqual([]);
  });

  it('requires conditions to be booleans or null', () => {
    expectOnly(endpointSlice({ endpoints: [{ addresses: ['10.0.0.1'], conditions: { ready: 'true' } }] }), 'endpoints[0].conditions.ready', 'must be a boolean, got "true"');
    expectOnly(endpointSlice({ endpoints: [{ addresses: ['10.0.0.1'], conditions: { terminating: 1 } }] }), 'endpoints[0].conditions.terminating', 'must be a boolean');
    expect(validateObject(endpointSlice({ endpoints: [{ addresses: ['10.0.0.1'], conditions: { ready: null, serving: false } }] }))).toEqual([]);
  });

  it('requires nodeName to be a DNS-1123 subdomain', () => {
    expectOnly(endpointSlice({ endpoints: [{ addresses: ['10.0.0.1'], nodeName: 'Node_A' }] }), 'endpoints[0].nodeName', 'must be a DNS-1123 subdomain', 'got "Node_A"');
  });

  it('requires zone to be a string', () => {
    expectOnly(endpointSlice({ endpoints: [{ addresses: ['10.0.0.1'], zone: 1 }] }), 'endpoints[0].zone', 'must be a string, got 1');
  });

  it('requires hostname to be a DNS-1123 label', () => {
    expectOnly(endpointSlice({ endpoints: [{ addresses: ['10.0.0.1'], hostname: 'web.0' }] }), 'endpoints[0].hostname', 'must be a DNS-1123 label', 'got "web.0"');
  });

  it('allows at most 8 zone hints, each named, valid and unique', () => {
    const hints = (forZones: unknown): Json => endpointSlice({ endpoints: [{ addresses: ['10.0.0.1'], hints: { forZones } }] });
    const zones = (n: number): Json[] => Array.from({ length: n }, (_, i) => ({ name: `zone-${i}` }));
    expect(validateObject(hints(zones(8)))).toEqual([]);
    expectOnly(hints(zones(9)), 'endpoints[0].hints.forZones', 'must have at most 8 items, got 9');
    expectOnly(hints([{ name: '' }]), 'endpoints[0].hints.forZones[0].name', 'Required value');
    expectOnly(hints([{}]), 'endpoints[0].hints.forZones[0].name', 'Required value');
    expectOnly(hints([{ name: 'a' }, { name: 'a' }]), 'endpoints[0].hints.forZones[1].name', 'Duplicate value: "a"');
  });

  it('allows at most 8 node hints', () => {
    const nodes = (n: number): Json[] => Array.from({ length: n }, (_, i) => ({ name: `node-${i}` }));
    const hints = (forNodes: unknown): Json => endpointSlice({ endpoints: [{ addresses: ['10.0.0.1'], hints: { forNodes } }] });
    expect(validateObject(hints(nodes(8)))).toEqual([]);
    expectOnly(hints(nodes(9)), 'endpoints[0].hints.forNodes', 'must have at most 8 items, got 9');
    expectOnly(hints([{ name: 'Node_A' }]), 'endpoints[0].hints.forNodes[0].name', 'must be a DNS-1123 subdomain');
  });

  it('allows at most 20000 ports (the current API server limit)', () => {
    const ports = (n: number): Json[] => Array.from({ length: n }, (_, i) => ({ name: `p${i}`, port: 1 + (i % 65535) }));
    expect(validateObject(endpointSlice({ ports: ports(150) }))).toEqual([]);
    const errors = validateObject(endpointSlice({ ports: ports(20001) }));
    expect(errors.map((e) => [e.field, e.message])).toEqual([['ports', 'must have at most 20000 items, got 20001']]);
  });

  it('requires port names to be empty or DNS-1123 labels, and unique', () => {
    expectOnly(endpointSlice({ ports: [{ name: 'HTTP', port: 80 }] }), 'ports[0].name', 'must be a DNS-1123 label');
    expectOnly(endpointSlice({ ports: [{ name: 'http', port: 80 }, { name: 'http', port: 81 }] }), 'ports[1].name', 'Duplicate value: "http"');
    expectOnly(endpointSlice({ ports: [{ port: 80 }, { name: '', port: 81, protocol: 'UDP' }] }), 'ports[1].name', 'Duplicate value: ""');
    expect(validateObject(endpointSlice({ ports: [{ name: '', port: 80 }] }))).toEqual([]);
    expect(validateObject(endpointSlice({ ports: [{ name: null, port: 80 }] }))).toEqual([]);
  });

  it('requires protocol TCP, UDP or SCTP', () => {
    expectOnly(endpointSlice({ ports: [{ name: 'dns', port: 53, protocol: 'ICMP' }] }), 'ports[0].protocol', 'must be one of TCP, UDP, SCTP, got "ICMP"');
    expectOnly(endpointSlice({ ports: [{ name: 'dns', port: 53, protocol: '' }] }), 'ports[0].protocol', 'got ""');
  });

  it('requires port null or in 1..65535', () => {
    expectOnly(endpointSlice({ ports: [{ name: 'http', port: 65536 }] }), 'ports[0].port', 'must be between 1 and 65535, got 65536');
    expectOnly(endpointSlice({ ports: [{ name: 'http', port: 0 }] }), 'ports[0].port', 'got 0');
    expect(validateObject(endpointSlice({ ports: [{ name: 'http', port: null }] }))).toEqual([]);
  });
});

describe('Node', () => {
  it('requires type and address strings on status.addresses', () => {
    expectOnly(set(node(), 'status.addresses', [{ address: '192.168.10.11' }]), 'status.addresses[0].type', 'Required value');
    expectOnly(set(node(), 'status.addresses', [{ type: 'InternalIP' }]), 'status.addresses[0].address', 'Required value');
    expectOnly(set(node(), 'status.addresses', [{ type: 'Hostname', address: 7 }]), 'status.addresses[0].address', 'must be a string, got 7');
  });

  it('requires InternalIP and ExternalIP addresses to be valid IPs', () => {
    expectOnly(set(node(), 'status.addresses.0.address', '192.168.10.256'), 'status.addresses[0].address', 'must be a valid IP address, got "192.168.10.256"');
    expectOnly(set(node(), 'status.addresses', [{ type: 'ExternalIP', address: 'node-a.example.com' }]), 'status.addresses[0].address', 'must be a valid IP address');
    expect(validateObject(set(node(), 'status.addresses', [{ type: 'InternalDNS', address: 'node-a.example.com' }]))).toEqual([]);
  });

  it('requires the zone label to be a string', () => {
    expectOnly(set(node(), 'metadata.labels', { 'topology.kubernetes.io/zone': 1 }), 'metadata.labels[topology.kubernetes.io/zone]', 'must be a string, got 1');
  });
});
