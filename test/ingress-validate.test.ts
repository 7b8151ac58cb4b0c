// Ingress and IngressClass validation: the API server's rules, errors at their field paths.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parse } from 'yaml';
import { validateIngress, isIngressKind } from '../src/k8s/validate-ingress.js';
import type { ValidationError } from '../src/k8s/types.js';

type Json = Record<string, unknown>;

// As `kubectl get ingress -o yaml` prints it.
const INGRESS_YAML = `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  annotations:
    nginx.ingress.kubernetes.io/rewrite-target: /
  creationTimestamp: "2024-05-02T10:11:12Z"
  generation: 1
  name: shop
  namespace: shop
spec:
  ingressClassName: svcplane
  defaultBackend:
    service:
      name: fallback
      port:
        number: 8080
  rules:
  - host: shop.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: web
            port:
              name: http
      - path: /api/v1/orders
        pathType: Exact
        backend:
          service:
            name: orders
            port:
              number: 80
  - host: "*.shop.example.com"
    http:
      paths:
      - pathType: ImplementationSpecific
        backend:
          service:
            name: web
            port:
              number: 80
  - http:
      paths:
      - path: /static
        pathType: Prefix
        backend:
          resource:
            apiGroup: k8s.example.com
            kind: StorageBucket
            name: static-assets
  tls:
  - hosts:
    - shop.example.com
    - "*.shop.example.com"
    secretName: shop-tls
status:
  loadBalancer:
    ingress:
    - ip: 203.0.113.7
`;

const CLASS_YAML = `
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: svcplane
  annotations:
    ingressclass.kubernetes.io/is-default-class: "true"
spec:
  controller: svcplane.io/ingress-controller
  parameters:
    apiGroup: k8s.example.com
    kind: IngressParameters
    name: external-lb
    scope: Namespace
    namespace: edge
`;

const valid = (): Json => parse(INGRESS_YAML) as Json;
const validClass = (): Json => parse(CLASS_YAML) as Json;

/** Applies `edit` to a fresh copy of the valid Ingress and returns the errors. */
function errorsOf(edit: (o: Json) => void, base: () => Json = valid): ValidationError[] {
  const o = base();
  edit(o);
  return validateIngress(o);
}

function fields(errors: ValidationError[]): string[] {
  return errors.map((e) => e.field);
}

// Small path helpers over untyped JSON.
const spec = (o: Json): Json => o.spec as Json;
const rules = (o: Json): Json[] => spec(o).rules as Json[];
const paths = (o: Json, r = 0): Json[] => ((rules(o)[r] as Json).http as Json).paths as Json[];
const pathAt = (o: Json, r: number, p: number): Json => paths(o, r)[p] as Json;
const serviceOf = (o: Json, r: number, p: number): Json => (pathAt(o, r, p).backend as Json).service as Json;

describe('valid objects', () => {
  it('accepts a full Ingress (rules, wildcard host, Exact/Prefix/ImplementationSpecific, resource backend, TLS)', () => {
    expect(validateIngress(valid())).toEqual([]);
  });

  it('accepts a full IngressClass', () => {
    expect(validateIngress(validClass())).toEqual([]);
  });

  it('accepts an Ingress with only a default backend', () => {
    expect(validateIngress({ apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', metadata: { name: 'x' }, spec: { defaultBackend: { service: { name: 'web', port: { number: 80 } } } } })).toEqual([]);
  });

  it('ignores other kinds and versions', () => {
    expect(validateIngress({ apiVersion: 'v1', kind: 'Service', metadata: {} })).toEqual([]);
    expect(validateIngress({ apiVersion: 'networking.k8s.io/v1beta1', kind: 'Ingress', metadata: {} })).toEqual([]);
    expect(validateIngress('not an object')).toEqual([]);
    expect(isIngressKind(valid())).toBe(true);
    expect(isIngressKind(validClass())).toBe(true);
    expect(isIngressKind({ apiVersion: 'v1', kind: 'Service' })).toBe(false);
  });
});

describe('Ingress rules as the API server checks them', () => {
  it('reports errors with the object reference and field path', () => {
    const errors = errorsOf((o) => delete pathAt(o, 0, 1).pathType);
    expect(errors).toEqual([
      { object: 'Ingress shop/shop', field: 'spec.rules[0].http.paths[1].pathType', message: 'Required value: pathType must be specified' },
    ]);
  });

  it('requires defaultBackend or rules', () => {
    const errors = errorsOf((o) => {
      delete spec(o).defaultBackend;
      delete spec(o).rules;
    });
    expect(errors).toEqual([{ object: 'Ingress shop/shop', field: 'spec', message: 'either `defaultBackend` or `rules` must be specified' }]);
    expect(fields(errorsOf((o) => {
      delete spec(o).defaultBackend;
      spec(o).rules = [];
    }))).toEqual(['spec']);
  });

  it('rejects an unknown pathType', () => {
    const errors = errorsOf((o) => (pathAt(o, 0, 0).pathType = 'Regex'));
    expect(errors).toHaveLength(1);
    expect(errors[0]?.field).toBe('spec.rules[0].http.paths[0].pathType');
    expect(errors[0]?.message).toMatch(/Exact, Prefix, ImplementationSpecific/);
  });

  it('requires Exact and Prefix paths to be absolute and free of //, /./, /../, %2f', () => {
    const p = 'spec.rules[0].http.paths[0].path';
    expect(fields(errorsOf((o) => (pathAt(o, 0, 0).path = 'foo')))).toEqual([p]);
    expect(fields(errorsOf((o) => delete pathAt(o, 0, 0).path))).toEqual([p]);
    expect(fields(errorsOf((o) => (pathAt(o, 0, 1).path = 'api')))).toEqual(['spec.rules[0].http.paths[1].path']);
    for (const bad of ['/a//b', '/a/./b', '/a/../b', '/a%2fb', '/a%2Fb', '/a/..', '/a/.']) {
      const errors = errorsOf((o) => (pathAt(o, 0, 0).path = bad));
      expect(fields(errors), bad).toEqual([p]);
    }
    // ImplementationSpecific: optional, but absolute when given; no sequence checks.
    expect(errorsOf((o) => (pathAt(o, 1, 0).path = '/a//b'))).toEqual([]);
    expect(fields(errorsOf((o) => (pathAt(o, 1, 0).path = 'a')))).toEqual(['spec.rules[1].http.paths[0].path']);
  });

  it('requires at least one path in http', () => {
    expect(fields(errorsOf((o) => (((rules(o)[0] as Json).http as Json).paths = [])))).toEqual(['spec.rules[0].http.paths']);
    expect(fields(errorsOf((o) => ((rules(o)[0] as Json).http = {})))).toEqual(['spec.rules[0].http.paths']);
    // A rule without http is valid (a host with no paths).
    expect(errorsOf((o) => delete (rules(o)[0] as Json).http)).toEqual([]);
  });

  it('checks rule hosts: DNS-1123 subdomain, wildcard only as the whole first label, never an IP', () => {
    const h = 'spec.rules[0].host';
    const hostErrors = (host: unknown): ValidationError[] => errorsOf((o) => ((rules(o)[0] as Json).host = host));
    for (const ok of ['foo.com', 'a', '*.foo.com', '*.a', 'x-1.y-2.example']) expect(hostErrors(ok), ok).toEqual([]);
    for (const bad of ['Foo.com', 'foo_bar.com', '-foo.com', 'foo.com.', '*', '*.', 'foo.*.com', 'a*.foo.com', '**.foo.com', '*.*.foo.com', `${'a.'.repeat(127)}com`]) {
      expect(fields(hostErrors(bad)), bad).toEqual([h]);
    }
    for (const ip of ['10.0.0.1', '010.000.000.001', '::1', '2001:db8::1', '::ffff:1.2.3.4']) {
      const errors = hostErrors(ip);
      expect(fields(errors), ip).toEqual([h]);
      expect(errors[0]?.message, ip).toMatch(/must be a DNS name, not an IP address/);
    }
    expect(fields(hostErrors('1.2.3.4.5'))).toEqual([]); // not an IP: a valid DNS name
    expect(fields(hostErrors(`${'a'.repeat(64)}.com`))).toEqual([]); // upstream checks the total length only
    expect(fields(hostErrors(7))).toEqual([h]);
  });

  it('service backends: name required (DNS-1035 label), port by name or number but not both', () => {
    const b = 'spec.rules[0].http.paths[1].backend';
    expect(errorsOf((o) => delete serviceOf(o, 0, 1).name)).toEqual([{ object: 'Ingress shop/shop', field: `${b}.service.name`, message: 'Required value' }]);
    expect(fields(errorsOf((o) => (serviceOf(o, 0, 1).name = '1web')))).toEqual([`${b}.service.name`]);
    expect(errorsOf((o) => (serviceOf(o, 0, 1).port = { name: 'http', number: 80 }))).toEqual([
      { object: 'Ingress shop/shop', field: b, message: 'cannot set both port name & port number' },
    ]);
    expect(errorsOf((o) => (serviceOf(o, 0, 1).port = {}))).toEqual([
      { object: 'Ingress shop/shop', field: b, message: 'Required value: port name or number is required' },
    ]);
    expect(fields(errorsOf((o) => delete serviceOf(o, 0, 1).port))).toEqual([b]);
    expect(fields(errorsOf((o) => (serviceOf(o, 0, 1).port = { number: 70000 })))).toEqual([`${b}.service.port.number`]);
    expect(fields(errorsOf((o) => (serviceOf(o, 0, 1).port = { name: 'HTTP' })))).toEqual([`${b}.service.port.name`]);
    expect(fields(errorsOf((o) => (serviceOf(o, 0, 1).port = { number: '80' })))).toEqual([`${b}.service.port.number`]);
    // "" and 0 read as unset, as Go does.
    expect(errorsOf((o) => (serviceOf(o, 0, 1).port = { name: '', number: 80 }))).toEqual([]);
    expect(errorsOf((o) => (serviceOf(o, 0, 1).port = { name: 'http', number: 0 }))).toEqual([]);
  });

  it('backends: exactly one of service and resource; resource references need kind and name', () => {
    const b = 'spec.rules[0].http.paths[1].backend';
    expect(errorsOf((o) => (pathAt(o, 0, 1).backend = {}))).toEqual([
      { object: 'Ingress shop/shop', field: b, message: 'resource or service backend is required' },
    ]);
    expect(fields(errorsOf((o) => delete pathAt(o, 0, 1).backend))).toEqual([b]);
    expect(errorsOf((o) => ((pathAt(o, 0, 1).backend as Json).resource = { kind: 'Bucket', name: 'b' }))).toEqual([
      { object: 'Ingress shop/shop', field: b, message: 'cannot set both resource and service backends' },
    ]);
    const r = 'spec.rules[2].http.paths[0].backend.resource';
    const resource = (o: Json): Json => (pathAt(o, 2, 0).backend as Json).resource as Json;
    expect(fields(errorsOf((o) => delete resource(o).kind))).toEqual([`${r}.kind`]);
    expect(fields(errorsOf((o) => (resource(o).name = 'a/b')))).toEqual([`${r}.name`]);
    expect(fields(errorsOf((o) => (resource(o).apiGroup = 'Not_A_Group')))).toEqual([`${r}.apiGroup`]);
  });

  it('checks the default backend like any backend', () => {
    expect(fields(errorsOf((o) => (spec(o).defaultBackend = { service: { name: 'web' } })))).toEqual(['spec.defaultBackend']);
  });

  it('checks TLS hosts (wildcards allowed) and secretName', () => {
    const tls = (o: Json): Json => (spec(o).tls as Json[])[0] as Json;
    expect(fields(errorsOf((o) => (tls(o).hosts = ['ok.com', 'Bad.com', '*.ok.com', '*'])))).toEqual(['spec.tls[0].hosts[1]', 'spec.tls[0].hosts[3]']);
    expect(fields(errorsOf((o) => (tls(o).secretName = 'Bad_Secret')))).toEqual(['spec.tls[0].secretName']);
    expect(errorsOf((o) => delete tls(o).secretName)).toEqual([]); // SNI-only entry
    expect(fields(errorsOf((o) => (tls(o).hosts = 'ok.com')))).toEqual(['spec.tls[0].hosts']);
  });

  it('checks ingressClassName and its agreement with the deprecated annotation', () => {
    expect(fields(errorsOf((o) => (spec(o).ingressClassName = 'Bad Class')))).toEqual(['spec.ingressClassName']);
    const annotate = (o: Json, v: string): void => {
      (o.metadata as Json).annotations = { 'kubernetes.io/ingress.class': v };
    };
    expect(errorsOf((o) => annotate(o, 'svcplane'))).toEqual([]);
    expect(errorsOf((o) => annotate(o, 'nginx'))).toEqual([
      {
        object: 'Ingress shop/shop',
        field: 'metadata.annotations[kubernetes.io/ingress.class]',
        message: 'must match `ingressClassName` when both are specified, got "nginx"',
      },
    ]);
  });

  it('checks metadata: name, namespace, creationTimestamp, annotation keys', () => {
    expect(fields(errorsOf((o) => delete (o.metadata as Json).name))).toEqual(['metadata.name']);
    expect(fields(errorsOf((o) => ((o.metadata as Json).name = 'Shop')))).toEqual(['metadata.name']);
    expect(fields(errorsOf((o) => ((o.metadata as Json).namespace = 'a.b')))).toEqual(['metadata.namespace']);
    expect(fields(errorsOf((o) => ((o.metadata as Json).creationTimestamp = 'yesterday')))).toEqual(['metadata.creationTimestamp']);
    expect(fields(errorsOf((o) => ((o.metadata as Json).annotations = { 'bad key!': 'x' })))).toEqual(['metadata.annotations[bad key!]']);
  });

  it('reports wrong types at their path and never throws (fuzzed)', () => {
    expect(fields(errorsOf((o) => (o.spec = [])))).toEqual(['spec']);
    expect(fields(errorsOf((o) => (spec(o).rules = {})))).toEqual(['spec.rules']);
    expect(fields(errorsOf((o) => ((rules(o) as unknown[])[0] = 'x')))).toEqual(['spec.rules[0]']);
    const anything = fc.anything({ maxDepth: 3 });
    fc.assert(
      fc.property(anything, anything, fc.constantFrom('spec', 'rules', 'path', 'backend', 'service', 'tls', 'metadata'), (v, w, where) => {
        const o = valid();
        if (where === 'spec') o.spec = v;
        else if (where === 'rules') spec(o).rules = [v, w];
        else if (where === 'path') (paths(o) as unknown[])[0] = v;
        else if (where === 'backend') pathAt(o, 0, 0).backend = v;
        else if (where === 'service') (pathAt(o, 0, 0).backend as Json).service = v;
        else if (where === 'tls') spec(o).tls = [v];
        else o.metadata = v;
        const errors = validateIngress(o);
        for (const e of errors) {
          expect(typeof e.field).toBe('string');
          expect(typeof e.message).toBe('string');
        }
      }),
      { numRuns: 400 },
    );
  });
});

describe('IngressClass', () => {
  const c = (o: Json): Json => o.spec as Json;
  const params = (o: Json): Json => c(o).parameters as Json;

  it('is cluster-scoped and needs a domain-prefixed controller', () => {
    expect(errorsOf((o) => ((o.metadata as Json).namespace = 'x'), validClass)).toEqual([
      { object: 'IngressClass svcplane', field: 'metadata.namespace', message: 'must be empty for a cluster-scoped object, got "x"' },
    ]);
    expect(fields(errorsOf((o) => delete c(o).controller, validClass))).toEqual(['spec.controller']);
    for (const bad of ['nginx', '/path', 'example.com/', 'Example.com/x', 'example.com/a b']) {
      expect(fields(errorsOf((o) => (c(o).controller = bad), validClass)), bad).toEqual(['spec.controller']);
    }
    expect(fields(errorsOf((o) => (c(o).controller = `example.com/${'x'.repeat(250)}`), validClass))).toEqual(['spec.controller']);
  });

  it('checks parameters: kind and name required, scope Cluster or Namespace, namespace only with Namespace', () => {
    expect(fields(errorsOf((o) => delete params(o).kind, validClass))).toEqual(['spec.parameters.kind']);
    expect(fields(errorsOf((o) => delete params(o).namespace, validClass))).toEqual(['spec.parameters.namespace']);
    expect(fields(errorsOf((o) => (params(o).scope = 'Cluster'), validClass))).toEqual(['spec.parameters.namespace']);
    expect(fields(errorsOf((o) => delete params(o).scope, validClass))).toEqual(['spec.parameters.namespace']);
    expect(fields(errorsOf((o) => (params(o).scope = 'Global'), validClass))).toEqual(['spec.parameters.scope']);
    expect(errorsOf((o) => {
      delete params(o).scope;
      delete params(o).namespace;
    }, validClass)).toEqual([]);
  });
});
