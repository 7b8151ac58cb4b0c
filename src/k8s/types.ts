// The parts of the Kubernetes objects svcplane reads. Objects arrive as untyped JSON (from YAML, JSON or
// the API); validate.ts checks them against these shapes and the API server's rules before anything else
// reads them, so code past validation may rely on these types.

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  creationTimestamp?: string;
}

export interface ServicePort {
  name?: string;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  port: number;
  targetPort?: number | string;
  nodePort?: number;
  appProtocol?: string;
}

export interface Service {
  apiVersion: 'v1';
  kind: 'Service';
  metadata: ObjectMeta;
  spec?: {
    type?: 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';
    clusterIP?: string;
    clusterIPs?: string[];
    ipFamilies?: ('IPv4' | 'IPv6')[];
    ipFamilyPolicy?: 'SingleStack' | 'PreferDualStack' | 'RequireDualStack';
    ports?: ServicePort[];
    selector?: Record<string, string>;
    externalIPs?: string[];
    externalName?: string;
    sessionAffinity?: 'None' | 'ClientIP';
    sessionAffinityConfig?: { clientIP?: { timeoutSeconds?: number } };
    externalTrafficPolicy?: 'Cluster' | 'Local';
    internalTrafficPolicy?: 'Cluster' | 'Local';
    loadBalancerSourceRanges?: string[];
    allocateLoadBalancerNodePorts?: boolean;
    healthCheckNodePort?: number;
    publishNotReadyAddresses?: boolean;
  };
  status?: {
    loadBalancer?: { ingress?: { ip?: string; hostname?: string; ipMode?: 'VIP' | 'Proxy' }[] };
  };
}

export interface EndpointConditions {
  ready?: boolean | null;
  serving?: boolean | null;
  terminating?: boolean | null;
}

export interface Endpoint {
  addresses: string[];
  conditions?: EndpointConditions;
  hostname?: string;
  nodeName?: string;
  zone?: string;
  hints?: { forZones?: { name: string }[]; forNodes?: { name: string }[] };
  targetRef?: { kind?: string; name?: string; namespace?: string };
}

export interface EndpointPort {
  name?: string | null;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  port?: number | null;
  appProtocol?: string;
}

export interface EndpointSlice {
  apiVersion: 'discovery.k8s.io/v1';
  kind: 'EndpointSlice';
  metadata: ObjectMeta;
  addressType: 'IPv4' | 'IPv6' | 'FQDN';
  endpoints?: Endpoint[] | null;
  ports?: EndpointPort[] | null;
}

export interface NodeAddress {
  type: string;
  address: string;
}

export interface Node {
  apiVersion: 'v1';
  kind: 'Node';
  metadata: ObjectMeta;
  spec?: { podCIDR?: string; podCIDRs?: string[] };
  status?: { addresses?: NodeAddress[] };
}

export type KubeObject = Service | EndpointSlice | Node;

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
export const ZONE_LABEL = 'topology.kubernetes.io/zone';

/** One rejected object or field, as the API server would report it. */
export interface ValidationError {
  /** 'Service default/web', 'EndpointSlice default/web-abc', 'Node node-a', or a file reference. */
  object: string;
  /** Field path, e.g. 'spec.ports[1].port'; '' when the whole object or file is at fault. */
  field: string;
  message: string;
}

/** Something worth telling the user that is not an error (a skipped kind, an unallocated clusterIP). */
export interface Note {
  object: string;
  message: string;
}

export function formatError(e: ValidationError): string {
  return e.field ? `${e.object}: ${e.field}: ${e.message}` : `${e.object}: ${e.message}`;
}

/** 'Service default/web' style reference; tolerant of missing fields (used before validation). */
export function objectRef(obj: unknown): string {
  const o = (obj ?? {}) as { kind?: unknown; metadata?: { name?: unknown; namespace?: unknown } };
  const kind = typeof o.kind === 'string' && o.kind ? o.kind : 'Object';
  const name = typeof o.metadata?.name === 'string' ? o.metadata.name : '<unnamed>';
  if (kind === 'Node') return `Node ${name}`;
  const ns = typeof o.metadata?.namespace === 'string' && o.metadata.namespace ? o.metadata.namespace : 'default';
  return `${kind} ${ns}/${name}`;
}
