// The pure-JS baseline: what a competent Node developer would write for "pick a backend for each flow"
// given the same Service and EndpointSlice objects. A Map keyed by the frontend as text
// (`${clusterIP}:${port}/${protocol}`) holds each service port's array of Ready backends; a flow's
// backend is FNV-1a over (source address text, source port, protocol) modulo the array length. Flows are
// plain objects with string addresses (how they arrive from most JS code), built once before timing; the
// result (the chosen backend object, or null when the destination is no service) goes into a
// preallocated array.
//
// What it does NOT do, and the wasm core does:
//   - Maglev tables: modulo hashing remaps almost every flow when a backend is added or removed; Maglev
//     moves ~1/N of them and gives every node of the cluster identical choices;
//   - ClientIP session affinity (per-client state with expiry);
//   - traffic policies (internal/externalTrafficPolicy Local lists), topology hints, the
//     serving+terminating fallback, and reject vs drop for services without usable endpoints;
//   - NodePort / LoadBalancer / ExternalIP frontends and loadBalancerSourceRanges;
//   - IPv6, and address canonicalisation (a key is the address text exactly as written, so
//     "10.96.000.1" or "fd00::0:1" would miss);
//   - reverse-NAT data, result reasons, or any validation of its input.
// So it is the cheapest reasonable program for the job, and a lower bound on the JS cost of the real one.

import type { EndpointSlice, Service } from '../src/k8s/types.js';
import type { TextFlow } from './cluster.js';

export interface JsBackend {
  address: string;
  port: number;
}

export interface JsService {
  name: string;
  backends: JsBackend[];
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** FNV-1a (32-bit) over the source address text, then the two source-port bytes, then the protocol text. */
export function flowHash(src: string, sport: number, protocol: string): number {
  let h = FNV_OFFSET;
  for (let i = 0; i < src.length; i++) h = Math.imul(h ^ src.charCodeAt(i), FNV_PRIME);
  h = Math.imul(h ^ (sport & 0xff), FNV_PRIME);
  h = Math.imul(h ^ (sport >>> 8), FNV_PRIME);
  for (let i = 0; i < protocol.length; i++) h = Math.imul(h ^ protocol.charCodeAt(i), FNV_PRIME);
  return h >>> 0;
}

export const frontendKey = (address: string, port: number, protocol: string): string => `${address}:${port}/${protocol}`;

export class JsServiceMap {
  readonly services = new Map<string, JsService>();

  /** Builds the map from Service and EndpointSlice objects (ClusterIP frontends, Ready endpoints). */
  constructor(objects: readonly (Service | EndpointSlice)[]) {
    const slicesByService = new Map<string, EndpointSlice[]>();
    for (const o of objects) {
      if (o.kind !== 'EndpointSlice') continue;
      const key = `${o.metadata.namespace ?? 'default'}/${o.metadata.labels?.['kubernetes.io/service-name'] ?? ''}`;
      const list = slicesByService.get(key) ?? [];
      list.push(o);
      slicesByService.set(key, list);
    }
    for (const o of objects) {
      if (o.kind !== 'Service') continue;
      const clusterIP = o.spec?.clusterIP;
      if (!clusterIP || clusterIP === 'None') continue;
      const name = `${o.metadata.namespace ?? 'default'}/${o.metadata.name ?? ''}`;
      for (const sp of o.spec?.ports ?? []) {
        const protocol = sp.protocol ?? 'TCP';
        const backends: JsBackend[] = [];
        for (const slice of slicesByService.get(name) ?? []) {
          if (slice.addressType !== 'IPv4') continue;
          const port = (slice.ports ?? []).find((p) => (p.name ?? '') === (sp.name ?? '') && (p.protocol ?? 'TCP') === protocol);
          if (!port?.port) continue;
          for (const ep of slice.endpoints ?? []) {
            const address = ep.addresses[0];
            if (address !== undefined && ep.conditions?.ready !== false) backends.push({ address, port: port.port });
          }
        }
        this.services.set(frontendKey(clusterIP, sp.port, protocol), { name, backends });
      }
    }
  }

  /** Selects a backend for each flow into `out` (null: not a service, or no backends). Returns the forwarded count. */
  selectBatch(flows: readonly TextFlow[], out: (JsBackend | null)[]): number {
    let forwarded = 0;
    for (let i = 0; i < flows.length; i++) {
      const f = flows[i] as TextFlow;
      const svc = this.services.get(frontendKey(f.dst, f.dport, f.protocol));
      if (svc === undefined || svc.backends.length === 0) {
        out[i] = null;
        continue;
      }
      out[i] = svc.backends[flowHash(f.src, f.sport, f.protocol) % svc.backends.length] as JsBackend;
      forwarded++;
    }
    return forwarded;
  }
}
