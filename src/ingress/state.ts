// The Ingress half of cluster state: the last valid version of every Ingress and IngressClass. Invalid
// objects are rejected here (their previous version stays), like ClusterState does for Services.

import type { ValidationError } from '../k8s/types.js';
import { isIngressKind, validateIngress } from '../k8s/validate-ingress.js';
import type { Ingress, IngressClass } from './types.js';
import { planIngress, type IngressPlanResult, type PlanOptions } from './semantics.js';

export type IngressKindName = 'Ingress' | 'IngressClass';

export class IngressStore {
  /** By 'ns/name'. */
  readonly ingresses = new Map<string, Ingress>();
  /** By name (cluster-scoped). */
  readonly classes = new Map<string, IngressClass>();

  /** True for the objects this store takes (networking.k8s.io/v1 Ingress and IngressClass). */
  static handles(obj: unknown): boolean {
    return isIngressKind(obj);
  }

  /**
   * Validates and stores one Ingress or IngressClass; returns its validation errors (nothing is stored then).
   * Objects of other kinds are not touched: check handles() first.
   */
  apply(obj: unknown): ValidationError[] {
    if (!isIngressKind(obj)) return [];
    const errors = validateIngress(obj);
    if (errors.length > 0) return errors;
    const o = obj as Ingress | IngressClass;
    if (o.kind === 'Ingress') this.ingresses.set(`${o.metadata.namespace || 'default'}/${o.metadata.name ?? ''}`, o);
    else this.classes.set(o.metadata.name ?? '', o);
    return [];
  }

  /** Removes one object; returns whether it was there. */
  delete(kind: IngressKindName, namespace: string, name: string): boolean {
    if (kind === 'IngressClass') return this.classes.delete(name);
    return this.ingresses.delete(`${namespace || 'default'}/${name}`);
  }

  plan(opts: PlanOptions): IngressPlanResult {
    return planIngress({ ingresses: [...this.ingresses.values()], classes: [...this.classes.values()] }, opts);
  }
}
