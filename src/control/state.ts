// Cluster state as one node's kube-proxy sees it: the last valid version of every Service, EndpointSlice
// and Node. Invalid objects are rejected here (their previous version stays), so nothing downstream sees
// an object the API server would have refused.

import { validateObject } from '../k8s/validate.js';
import { IngressStore, type IngressKindName } from '../ingress/state.js';
import {
  type EndpointSlice,
  type Node,
  type Note,
  type Service,
  type ValidationError,
  SERVICE_NAME_LABEL,
  objectRef,
} from '../k8s/types.js';

export type Kind = 'Service' | 'EndpointSlice' | 'Node' | IngressKindName;

export interface ApplyResult {
  errors: ValidationError[];
  notes: Note[];
  /** Keys ('ns/name' of the Service) whose frontends or endpoints may have changed. */
  changedServices: Set<string>;
  /** True when a Node object changed (node addresses feed every NodePort frontend). */
  nodesChanged: boolean;
  /** True when an Ingress or IngressClass changed (the routes are rebuilt). */
  ingressChanged: boolean;
}

const SUPPORTED: Record<string, Kind> = {
  'v1/Service': 'Service',
  'discovery.k8s.io/v1/EndpointSlice': 'EndpointSlice',
  'v1/Node': 'Node',
};

/** The apiVersion svcplane reads each kind it uses as (Ingress kinds: src/ingress). */
const READ_AS: Record<string, string> = {
  Service: 'v1',
  EndpointSlice: 'discovery.k8s.io/v1',
  Node: 'v1',
  Ingress: 'networking.k8s.io/v1',
  IngressClass: 'networking.k8s.io/v1',
};

/** Why an object is skipped (not of a kind and version svcplane uses), for the note that says so. */
function skipReason(obj: unknown): string {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    return `not a Kubernetes object (${obj === null ? 'null' : Array.isArray(obj) ? 'an array' : `a ${typeof obj}`})`;
  }
  const { apiVersion, kind } = obj as { apiVersion?: unknown; kind?: unknown };
  if (typeof kind !== 'string' || kind === '') return 'no kind';
  const readAs = Object.hasOwn(READ_AS, kind) ? READ_AS[kind] : undefined;
  if (typeof apiVersion !== 'string' || apiVersion === '') return readAs ? `no apiVersion (svcplane reads ${kind} as ${readAs})` : 'no apiVersion';
  if (readAs) return `svcplane reads ${kind} as ${readAs}, not ${apiVersion}`;
  return `svcplane does not use ${apiVersion} ${kind}`;
}

function emptyResult(): ApplyResult {
  return { errors: [], notes: [], changedServices: new Set(), nodesChanged: false, ingressChanged: false };
}

export function namespaceOf(obj: { metadata: { namespace?: string } }): string {
  return obj.metadata.namespace || 'default';
}

export class ClusterState {
  readonly services = new Map<string, Service>();
  /** Slices by 'ns/sliceName': kube-proxy keeps slices by name, an update replaces, a delete removes. */
  readonly slices = new Map<string, EndpointSlice>();
  readonly nodes = new Map<string, Node>();
  /** Ingresses and IngressClasses (routing: src/ingress). */
  readonly ingress = new IngressStore();
  /** 'ns/service' -> slice keys, so that a service's slices are found without scanning them all. */
  private readonly sliceKeysByService = new Map<string, Set<string>>();

  /** Validates and stores each object; invalid ones are reported and skipped, the rest still apply. */
  apply(objects: readonly unknown[]): ApplyResult {
    const result = emptyResult();
    for (const obj of objects) {
      if (IngressStore.handles(obj)) {
        const errors = this.ingress.apply(obj);
        result.errors.push(...errors);
        if (errors.length === 0) result.ingressChanged = true;
        continue;
      }
      const o = obj as { apiVersion?: unknown; kind?: unknown } | null;
      const kind = o && typeof o === 'object' ? SUPPORTED[`${String(o.apiVersion)}/${String(o.kind)}`] : undefined;
      if (!kind) {
        result.notes.push({ object: objectRef(obj), message: `skipped: ${skipReason(obj)}` });
        continue;
      }
      const errors = validateObject(obj);
      if (errors.length > 0) {
        result.errors.push(...errors);
        continue;
      }
      this.store(kind, obj, result);
    }
    return result;
  }

  /** Removes one object; returns what changed (nothing when it was not there). */
  delete(kind: Kind, namespace: string, name: string): ApplyResult {
    const result = emptyResult();
    const ns = namespace || 'default';
    if (kind === 'Ingress' || kind === 'IngressClass') {
      result.ingressChanged = this.ingress.delete(kind, ns, name);
    } else if (kind === 'Service') {
      if (this.services.delete(`${ns}/${name}`)) result.changedServices.add(`${ns}/${name}`);
    } else if (kind === 'EndpointSlice') {
      const key = `${ns}/${name}`;
      const old = this.slices.get(key);
      if (old) {
        this.slices.delete(key);
        this.unindexSlice(key, old);
        result.changedServices.add(sliceServiceKey(old));
      }
    } else if (this.nodes.delete(name)) {
      result.nodesChanged = true;
    }
    return result;
  }

  private store(kind: Kind, obj: unknown, result: ApplyResult): void {
    if (kind === 'Service') {
      const svc = obj as Service;
      const key = `${namespaceOf(svc)}/${svc.metadata.name}`;
      this.services.set(key, svc);
      result.changedServices.add(key);
      if (!svc.spec?.clusterIP && !svc.spec?.clusterIPs?.length && svc.spec?.type !== 'ExternalName') {
        result.notes.push({
          object: objectRef(svc),
          message: 'no clusterIP: the API server would allocate one; svcplane cannot, so this Service gets no frontends',
        });
      }
    } else if (kind === 'EndpointSlice') {
      const slice = obj as EndpointSlice;
      const key = `${namespaceOf(slice)}/${slice.metadata.name}`;
      (slice.ports ?? []).forEach((p, i) => {
        if (p.name === undefined || p.name === null) {
          result.notes.push({
            object: objectRef(slice),
            message: `ports[${i}] has no name: kube-proxy skips it (an unnamed Service port matches name: "")`,
          });
        }
      });
      const old = this.slices.get(key);
      if (old) {
        this.unindexSlice(key, old);
        result.changedServices.add(sliceServiceKey(old));
      }
      this.slices.set(key, slice);
      const svcKey = sliceServiceKey(slice);
      let keys = this.sliceKeysByService.get(svcKey);
      if (!keys) this.sliceKeysByService.set(svcKey, (keys = new Set()));
      keys.add(key);
      result.changedServices.add(svcKey);
    } else {
      const node = obj as Node;
      this.nodes.set(node.metadata.name as string, node);
      result.nodesChanged = true;
    }
  }

  private unindexSlice(key: string, slice: EndpointSlice): void {
    const svcKey = sliceServiceKey(slice);
    const keys = this.sliceKeysByService.get(svcKey);
    keys?.delete(key);
    if (keys?.size === 0) this.sliceKeysByService.delete(svcKey);
  }

  /** The slices of one service, sorted by slice name so that duplicate handling is deterministic. */
  slicesOf(serviceKey: string): EndpointSlice[] {
    const keys = [...(this.sliceKeysByService.get(serviceKey) ?? [])].sort();
    return keys.map((k) => this.slices.get(k) as EndpointSlice);
  }
}

/** 'ns/name' of the Service a slice belongs to (validation guarantees the label is present). */
export function sliceServiceKey(slice: EndpointSlice): string {
  return `${namespaceOf(slice)}/${slice.metadata.labels?.[SERVICE_NAME_LABEL] ?? ''}`;
}
