// Deterministic synthetic cluster and flow mix for the benchmarks.
//
// Cluster: N ClusterIP services (one port each; every tenth one is UDP/53, the rest TCP on a few common
// ports), each with one IPv4 EndpointSlice of ENDPOINTS_PER_SERVICE Ready endpoints. ClusterIPs are drawn
// without repetition from the service CIDR 10.96.0.0/12; pod addresses come from 10.0.0.0/8 below the
// service CIDR (10.0.0.0 - 10.95.255.255), so the two ranges never overlap.
//
// Flows: FORWARD_SHARE of them go to a real frontend (random service, random client pod address and
// ephemeral port); the rest go to addresses that are not service frontends: half pod-to-pod traffic
// (destination a pod address), half to a service CIDR address no service holds.

import type { EndpointSlice, Service } from '../src/k8s/types.js';
import type { Flow } from '../src/engine/dataplane.js';
import { encodeFlows } from '../src/engine/dataplane.js';

export const ENDPOINTS_PER_SERVICE = 10;
export const FORWARD_SHARE = 0.9;
export const NODE_NAME = 'bench-node';

/** mulberry32: small, fast, deterministic 32-bit PRNG. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

const ipv4 = (n: number): string => `${(n >>> 24) & 0xff}.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${n & 0xff}`;

const SERVICE_CIDR_BASE = 0x0a600000; // 10.96.0.0/12
const SERVICE_CIDR_SIZE = 1 << 20;
const POD_BASE = 0x0a000000; // 10.0.0.0
const POD_SPAN = 96 << 16; // 10.0.0.0 - 10.95.255.255
const TCP_PORTS = [80, 443, 8080, 8443, 9090] as const;

export interface ServiceSpec {
  name: string;
  clusterIP: string;
  port: number;
  protocol: 'TCP' | 'UDP';
  endpoints: string[];
  targetPort: number;
}

export interface SyntheticCluster {
  services: ServiceSpec[];
  /** Service and EndpointSlice objects, in apply order. */
  objects: (Service | EndpointSlice)[];
  /** Numeric form of every ClusterIP in use (to keep non-service destinations off them). */
  usedClusterIPs: Set<number>;
}

/** N services x ENDPOINTS_PER_SERVICE Ready endpoints, fully determined by (n, seed). */
export function syntheticCluster(n: number, seed = 1): SyntheticCluster {
  const rnd = prng(seed);
  const used = new Set<number>();
  const services: ServiceSpec[] = [];
  const objects: (Service | EndpointSlice)[] = [];
  for (let i = 0; i < n; i++) {
    // Like the API server's allocator: a random free address of the service CIDR (not .0).
    let ip: number;
    do ip = SERVICE_CIDR_BASE + 1 + (rnd() % (SERVICE_CIDR_SIZE - 2));
    while (used.has(ip));
    used.add(ip);
    const udp = i % 10 === 9;
    const spec: ServiceSpec = {
      name: `svc-${i}`,
      clusterIP: ipv4(ip),
      port: udp ? 53 : (TCP_PORTS[i % TCP_PORTS.length] as number),
      protocol: udp ? 'UDP' : 'TCP',
      targetPort: udp ? 5353 : 8080,
      endpoints: [],
    };
    for (let j = 0; j < ENDPOINTS_PER_SERVICE; j++) {
      spec.endpoints.push(ipv4(POD_BASE + 1 + i * ENDPOINTS_PER_SERVICE + j));
    }
    services.push(spec);
    objects.push({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: spec.name, namespace: 'bench' },
      spec: {
        type: 'ClusterIP',
        clusterIP: spec.clusterIP,
        clusterIPs: [spec.clusterIP],
        ipFamilies: ['IPv4'],
        ipFamilyPolicy: 'SingleStack',
        selector: { app: spec.name },
        ports: [{ name: 'p', protocol: spec.protocol, port: spec.port, targetPort: spec.targetPort }],
      },
    });
    objects.push({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: `${spec.name}-abcde`, namespace: 'bench', labels: { 'kubernetes.io/service-name': spec.name } },
      addressType: 'IPv4',
      ports: [{ name: 'p', protocol: spec.protocol, port: spec.targetPort }],
      endpoints: spec.endpoints.map((address, j) => ({
        addresses: [address],
        conditions: { ready: true, serving: true, terminating: false },
        nodeName: `node-${j % 3}`,
      })),
    });
  }
  return { services, objects, usedClusterIPs: used };
}

/** A flow as an application sees it: text addresses, protocol name. */
export type TextFlow = Omit<Flow, 'now'>;

export interface FlowSet {
  /** Flows as objects with string addresses (the pure-JS baseline's input). */
  flows: TextFlow[];
  /** The same flows in the core's FLOW layout (encodeFlows). */
  encoded: Uint8Array;
  /** How many flows were aimed at a real frontend. */
  toServices: number;
}

/** `count` flows against `cluster`, fully determined by (cluster, count, seed). */
export function syntheticFlows(cluster: SyntheticCluster, count = 4096, seed = 2): FlowSet {
  const rnd = prng(seed);
  const flows: TextFlow[] = [];
  let toServices = 0;
  const podAddress = (): string => ipv4(POD_BASE + 1 + (rnd() % (POD_SPAN - 2)));
  const ephemeral = (): number => 32768 + (rnd() % 28232);
  for (let i = 0; i < count; i++) {
    const src = podAddress();
    const sport = ephemeral();
    if (rnd() / 0x100000000 < FORWARD_SHARE) {
      const svc = cluster.services[rnd() % cluster.services.length] as ServiceSpec;
      flows.push({ protocol: svc.protocol, src, sport, dst: svc.clusterIP, dport: svc.port });
      toServices++;
    } else if (rnd() & 1) {
      flows.push({ protocol: 'TCP', src, sport, dst: podAddress(), dport: 8080 });
    } else {
      let ip: number;
      do ip = SERVICE_CIDR_BASE + 1 + (rnd() % (SERVICE_CIDR_SIZE - 2));
      while (cluster.usedClusterIPs.has(ip));
      flows.push({ protocol: 'TCP', src, sport, dst: ipv4(ip), dport: 443 });
    }
  }
  return { flows, encoded: encodeFlows(flows), toServices };
}
