// Small builders for the Kubernetes objects the semantics tests feed to a Dataplane. Every builder returns a
// fresh object, so a test may modify what it gets without affecting other tests.

import type { Endpoint, EndpointPort, EndpointSlice, Node, Service, ServicePort } from '../../src/k8s/types.js';
import { SERVICE_NAME_LABEL, ZONE_LABEL } from '../../src/k8s/types.js';

export const NS = 'shop';

export type ServiceSpec = NonNullable<Service['spec']>;
export type ServiceStatus = NonNullable<Service['status']>;

/** A v1 Service in `NS` (or opts.namespace) with the given spec. */
export function service(
  name: string,
  spec: ServiceSpec,
  opts: { namespace?: string; status?: ServiceStatus } = {},
): Service {
  const svc: Service = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: opts.namespace ?? NS },
    spec,
  };
  if (opts.status) svc.status = opts.status;
  return svc;
}

/** A ClusterIP service at `ip` with one TCP port 'http' 80 unless `extra` says otherwise. */
export function clusterIP(
  name: string,
  ip: string,
  extra: Partial<ServiceSpec> = {},
  opts: { namespace?: string; status?: ServiceStatus } = {},
): Service {
  return service(name, { type: 'ClusterIP', clusterIP: ip, ports: [{ name: 'http', port: 80, protocol: 'TCP' }], ...extra }, opts);
}

/** A service port. */
export function svcPort(name: string, port: number, more: Partial<ServicePort> = {}): ServicePort {
  return { name, port, protocol: 'TCP', ...more };
}

/** A slice port (TCP unless told). */
export function slicePort(name: string | null, port: number | null, protocol: EndpointPort['protocol'] = 'TCP'): EndpointPort {
  return { name, port, protocol };
}

/** An endpoint: one address (or several), ready/serving/terminating left nil unless given. */
export function ep(address: string | string[], more: Partial<Endpoint> = {}): Endpoint {
  return { addresses: Array.isArray(address) ? address : [address], ...more };
}

/** A Ready, serving, non-terminating endpoint on `nodeName`. */
export function ready(address: string, nodeName = 'node-b', more: Partial<Endpoint> = {}): Endpoint {
  return ep(address, { conditions: { ready: true, serving: true, terminating: false }, nodeName, ...more });
}

/** A terminating endpoint that still serves (ready=false, serving=true, terminating=true). */
export function terminating(address: string, nodeName = 'node-b', more: Partial<Endpoint> = {}): Endpoint {
  return ep(address, { conditions: { ready: false, serving: true, terminating: true }, nodeName, ...more });
}

/** Zone hints for an endpoint. */
export function forZones(...zones: string[]): Endpoint['hints'] {
  return { forZones: zones.map((name) => ({ name })) };
}

/** An EndpointSlice linked to `serviceName` by the kubernetes.io/service-name label. */
export function slice(
  name: string,
  serviceName: string,
  endpoints: Endpoint[],
  opts: { ports?: EndpointPort[]; addressType?: EndpointSlice['addressType']; namespace?: string } = {},
): EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: opts.namespace ?? NS, labels: { [SERVICE_NAME_LABEL]: serviceName } },
    addressType: opts.addressType ?? 'IPv4',
    ports: opts.ports ?? [slicePort('http', 8080)],
    endpoints,
  };
}

/** A v1 Node with InternalIP addresses (and optionally others) and a zone label. */
export function node(
  name: string,
  addresses: { type: string; address: string }[],
  zone?: string,
): Node {
  const n: Node = { apiVersion: 'v1', kind: 'Node', metadata: { name }, status: { addresses } };
  if (zone !== undefined) n.metadata.labels = { [ZONE_LABEL]: zone };
  return n;
}
