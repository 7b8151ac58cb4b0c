// The parts of networking.k8s.io/v1 Ingress and IngressClass that svcplane reads. Objects are checked by
// src/k8s/validate-ingress.ts first, so code past validation may rely on these shapes.

import type { ObjectMeta } from '../k8s/types.js';

export type PathType = 'Exact' | 'Prefix' | 'ImplementationSpecific';

export interface ServiceBackendPort {
  name?: string;
  number?: number;
}

export interface IngressBackend {
  service?: { name: string; port?: ServiceBackendPort };
  /** A typed object reference (e.g. a storage bucket): valid in the API, not routable by a proxy. */
  resource?: { apiGroup?: string; kind: string; name: string };
}

export interface HTTPIngressPath {
  path?: string;
  pathType: PathType;
  backend: IngressBackend;
}

export interface IngressRule {
  /** Absent or '': the rule matches every Host. */
  host?: string;
  http?: { paths: HTTPIngressPath[] };
}

export interface IngressTLS {
  hosts?: string[];
  secretName?: string;
}

export interface Ingress {
  apiVersion: 'networking.k8s.io/v1';
  kind: 'Ingress';
  metadata: ObjectMeta;
  spec?: {
    ingressClassName?: string;
    defaultBackend?: IngressBackend;
    rules?: IngressRule[];
    tls?: IngressTLS[];
  };
}

export interface IngressClass {
  apiVersion: 'networking.k8s.io/v1';
  kind: 'IngressClass';
  metadata: ObjectMeta;
  spec?: {
    controller?: string;
    parameters?: { apiGroup?: string; kind: string; name: string; scope?: 'Cluster' | 'Namespace'; namespace?: string };
  };
}

/** Marks the cluster's default IngressClass (value "true"). */
export const DEFAULT_CLASS_ANNOTATION = 'ingressclass.kubernetes.io/is-default-class';
/** The pre-1.18 class annotation on an Ingress, still honoured by controllers. */
export const LEGACY_CLASS_ANNOTATION = 'kubernetes.io/ingress.class';

export const INGRESS_API_VERSION = 'networking.k8s.io/v1';
