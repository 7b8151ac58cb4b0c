// Backend resolution: an Ingress backend names a Service and a port (by number or by name); routing needs
// the Service port number and the frontend the L4 selection takes as destination (the ClusterIP). Done at
// compile time, so a missing Service or port becomes a 503 target with its reason.

import type { Service } from '../k8s/types.js';
import { normalizeIp } from '../k8s/net.js';

/** A resolved backend: the frontend key (ClusterIP:servicePort/TCP) the L4 selection looks up. */
export interface ServicePortRef {
  /** 'ns/name' of the Service. */
  serviceKey: string;
  servicePort: number;
  /** The Service's primary ClusterIP (clusterIPs[0]), canonical text. */
  address: string;
  protocol: 'TCP';
}

export type ResolveServicePort = (namespace: string, name: string, port: number | string) => ServicePortRef | { error: string };

/**
 * The resolver over a set of Services, keyed 'ns/name' (ClusterState.services is such a map). Errors:
 * missing Service, ExternalName, no or headless clusterIP (svcplane routes through the ClusterIP
 * frontend), no such port, or a port that is not TCP.
 */
export function serviceResolver(services: ReadonlyMap<string, Service>): ResolveServicePort {
  return (namespace, name, port) => {
    const key = `${namespace}/${name}`;
    const svc = services.get(key);
    if (!svc) return { error: `Service ${key} not found` };
    const spec = svc.spec ?? {};
    if (spec.type === 'ExternalName') return { error: `Service ${key} is of type ExternalName: it has no cluster IP to route to` };
    const ip = spec.clusterIPs?.[0] ?? spec.clusterIP;
    if (!ip) return { error: `Service ${key} has no cluster IP` };
    if (ip === 'None') return { error: `Service ${key} is headless (clusterIP None): svcplane routes through a cluster IP` };
    const address = normalizeIp(ip);
    if (!address) return { error: `Service ${key} has an invalid cluster IP ${JSON.stringify(ip)}` };
    const ports = spec.ports ?? [];
    const matches = typeof port === 'number' ? ports.filter((p) => p.port === port) : ports.filter((p) => (p.name ?? '') === port);
    const tcp = matches.find((p) => (p.protocol ?? 'TCP') === 'TCP');
    if (!tcp) {
      const what = typeof port === 'number' ? `port ${port}` : `port named ${JSON.stringify(port)}`;
      if (matches.length > 0) return { error: `Service ${key} ${what} is ${matches[0]?.protocol ?? 'TCP'}, not TCP` };
      return { error: `Service ${key} has no ${what}` };
    }
    return { serviceKey: key, servicePort: tcp.port, address, protocol: 'TCP' };
  };
}
