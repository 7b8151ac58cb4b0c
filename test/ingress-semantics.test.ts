// Ingress semantics without the core: class selection, the plan's shape, the store, the resolver, dumps.
import { describe, expect, it } from 'vitest';
import { planIngress, prefixKey, defaultIngressClass } from '../src/ingress/semantics.js';
import { serviceResolver } from '../src/ingress/resolve.js';
import { IngressStore } from '../src/ingress/state.js';
import { buildRoutes } from '../src/ingress/index.js';
import { RoutesView } from '../src/ingress/view.js';
import { dumpRoutes, formatIngressDump } from '../src/ingress/dump.js';
import { backend, ingress, ingressClass, path, rule, service, serviceMap } from './fixtures/ingress/objects.js';
import { routing } from './fixtures/ingress/setup.js';
import type { Ingress } from '../src/ingress/types.js';

const resolveServicePort = serviceResolver(serviceMap(service('web', '10.96.0.10')));
const simple = (name: string, spec: Partial<NonNullable<Ingress['spec']>> = {}, annotations?: Record<string, string>): Ingress =>
  ingress(name, { rules: [rule(`${name}.com`, path('/', 'Prefix', 'web'))], ...spec }, annotations ? { annotations } : {});
const served = (r: ReturnType<typeof planIngress>): string[] => r.plan.ingresses;

describe('class selection', () => {
  const classed = simple('classed', { ingressClassName: 'svcplane' });
  const other = simple('other', { ingressClassName: 'nginx' });
  const legacy = simple('legacy', {}, { 'kubernetes.io/ingress.class': 'svcplane' });
  const legacyOther = simple('legacy-other', {}, { 'kubernetes.io/ingress.class': 'nginx' });
  const classless = simple('classless');
  const all = [classed, other, legacy, legacyOther, classless];

  it('an explicit class serves Ingresses naming it (field or deprecated annotation); others are ignored and reported', () => {
    const r = planIngress({ ingresses: all }, { ingressClass: 'svcplane', resolveServicePort });
    expect(served(r)).toEqual(['shop/classed', 'shop/legacy']);
    expect(r.plan.className).toBe('svcplane');
    expect(r.ignored.map((i) => i.ingress).sort()).toEqual(['shop/classless', 'shop/legacy-other', 'shop/other']);
    expect(r.ignored.find((i) => i.ingress === 'shop/other')?.reason).toBe('class "nginx" is not served; this controller serves class "svcplane"');
    expect(r.ignored.find((i) => i.ingress === 'shop/classless')?.reason).toMatch(/no class and no IngressClass is marked default/);
    expect(r.notes).toContainEqual({ object: 'Ingress shop/other', message: 'ignored: class "nginx" is not served; this controller serves class "svcplane"' });
  });

  it('the default IngressClass is served when no class is given, and takes the Ingresses without a class', () => {
    const classes = [ingressClass('svcplane', { isDefault: true }), ingressClass('nginx')];
    const r = planIngress({ ingresses: all, classes }, { resolveServicePort });
    expect(r.plan.className).toBe('svcplane');
    expect(served(r)).toEqual(['shop/classed', 'shop/classless', 'shop/legacy']);
  });

  it('an explicit class that is not the default leaves the class-less Ingresses to the default class', () => {
    const classes = [ingressClass('svcplane', { isDefault: true })];
    const r = planIngress({ ingresses: all, classes }, { ingressClass: 'nginx', resolveServicePort });
    expect(served(r)).toEqual(['shop/legacy-other', 'shop/other']);
    expect(r.ignored.find((i) => i.ingress === 'shop/classless')?.reason).toBe(
      'has no class, so it belongs to the default class "svcplane"; this controller serves class "nginx"',
    );
  });

  it('only "true" marks the default class', () => {
    const notDefault = ingressClass('svcplane');
    notDefault.metadata.annotations = { 'ingressclass.kubernetes.io/is-default-class': 'True' };
    expect(defaultIngressClass([notDefault])).toBeUndefined();
  });

  it('several default classes: the newest is used, and the others are reported', () => {
    const notes: { object: string; message: string }[] = [];
    const chosen = defaultIngressClass(
      [ingressClass('old', { isDefault: true, created: '2023-01-01T00:00:00Z' }), ingressClass('new', { isDefault: true, created: '2024-01-01T00:00:00Z' })],
      notes,
    );
    expect(chosen).toBe('new');
    expect(notes).toEqual([{ object: 'IngressClass old', message: 'also marked as the default class; "new" (the newest) is used for Ingresses without a class' }]);
  });

  it('no class option and no default class: every Ingress is served, with a note when some name a class', () => {
    const r = planIngress({ ingresses: all }, { resolveServicePort });
    expect(served(r)).toHaveLength(5);
    expect(r.plan.className).toBeUndefined();
    expect(r.notes.some((n) => n.message.includes('no ingress class selected'))).toBe(true);
    expect(planIngress({ ingresses: [classless] }, { resolveServicePort }).notes).toEqual([]);
  });

  it('ignored Ingresses do not route', () => {
    const r = routing([simple('other', { ingressClassName: 'nginx' }), simple('mine', { ingressClassName: 'svcplane' })], { ingressClass: 'svcplane' });
    expect(r.route('other.com', '/').status).toBe(404);
    expect(r.route('mine.com', '/').status).toBe(200);
  });
});

describe('the plan', () => {
  it('splits hosts into exact, wildcard and catch-all entries with sorted paths and match keys', () => {
    const r = planIngress(
      {
        ingresses: [
          ingress('x', {
            defaultBackend: backend('web'),
            rules: [
              rule('b.com', path('/z/', 'Prefix', 'web'), path('/a', 'Exact', 'web'), path('/', 'Prefix', 'web')),
              rule('*.a.com', path(undefined, 'ImplementationSpecific', 'web')),
              rule('a.com', path('/q', 'Prefix', 'web')),
              rule(undefined, path('/any', 'Prefix', 'web')),
            ],
          }),
        ],
      },
      { resolveServicePort },
    );
    const { plan } = r;
    expect(plan.hosts.map((h) => h.host)).toEqual(['a.com', 'b.com']);
    expect(plan.wildcards.map((h) => [h.host, h.key])).toEqual([['*.a.com', 'a.com']]);
    expect(plan.catchAll?.prefix.map((p) => p.key)).toEqual(['/any']);
    const b = plan.hosts[1];
    expect(b?.exact.map((p) => p.key)).toEqual(['/a']);
    expect(b?.prefix.map((p) => [p.path, p.key])).toEqual([['/', ''], ['/z/', '/z']]);
    expect(plan.wildcards[0]?.prefix.map((p) => [p.path, p.key, p.pathType])).toEqual([['/', '', 'ImplementationSpecific']]);
    // One target per distinct backend.
    expect(new Set([...plan.hosts, ...plan.wildcards].flatMap((h) => [...h.exact, ...h.prefix].map((p) => p.target))).size).toBe(1);
    expect(plan.defaultBackend).toMatchObject({ isDefault: true, status: 200, service: 'shop/web' });
  });

  it('prefixKey drops trailing slashes', () => {
    expect(['/', '/foo', '/foo/', '/foo//', '/a/b/', ''].map(prefixKey)).toEqual(['', '/foo', '/foo', '/foo', '/a/b', '']);
  });
});

describe('serviceResolver', () => {
  const services = serviceMap(
    service('web', '10.96.0.10', [['http', 80], ['admin', 9000]]),
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'dual', namespace: 'shop' }, spec: { clusterIP: '2001:DB8::10', clusterIPs: ['2001:DB8::10', '10.96.0.11'], ports: [{ port: 443 }] } },
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'pending', namespace: 'shop' }, spec: { ports: [{ port: 80 }] } },
  );
  const resolve = serviceResolver(services);
  it('resolves numbers and names to the Service port and primary ClusterIP', () => {
    expect(resolve('shop', 'web', 80)).toEqual({ serviceKey: 'shop/web', servicePort: 80, address: '10.96.0.10', protocol: 'TCP' });
    expect(resolve('shop', 'web', 'admin')).toEqual({ serviceKey: 'shop/web', servicePort: 9000, address: '10.96.0.10', protocol: 'TCP' });
    expect(resolve('shop', 'dual', 443)).toEqual({ serviceKey: 'shop/dual', servicePort: 443, address: '2001:db8::10', protocol: 'TCP' });
  });
  it('explains what is missing', () => {
    expect(resolve('other', 'web', 80)).toEqual({ error: 'Service other/web not found' });
    expect(resolve('shop', 'pending', 80)).toEqual({ error: 'Service shop/pending has no cluster IP' });
    expect(resolve('shop', 'web', 81)).toEqual({ error: 'Service shop/web has no port 81' });
  });
});

describe('IngressStore and buildRoutes', () => {
  it('stores valid Ingresses and classes, rejects invalid ones with errors, deletes', () => {
    const store = new IngressStore();
    expect(store.apply(simple('a'))).toEqual([]);
    expect(store.apply(ingressClass('svcplane', { isDefault: true }))).toEqual([]);
    const bad = simple('b');
    delete (bad.spec?.rules?.[0]?.http?.paths[0] as { pathType?: string }).pathType;
    expect(store.apply(bad)).toEqual([{ object: 'Ingress shop/b', field: 'spec.rules[0].http.paths[0].pathType', message: 'Required value: pathType must be specified' }]);
    expect(IngressStore.handles(bad)).toBe(true);
    expect(IngressStore.handles(service('web', '10.96.0.1'))).toBe(false);
    expect([...store.ingresses.keys()]).toEqual(['shop/a']);
    expect([...store.classes.keys()]).toEqual(['svcplane']);

    const built = buildRoutes(store, serviceMap(service('web', '10.96.0.10')), { seed: 3 });
    expect(built.plan.className).toBe('svcplane');
    expect(new RoutesView(built.bytes).hostCount).toBe(1);

    expect(store.delete('Ingress', 'shop', 'a')).toBe(true);
    expect(store.delete('Ingress', 'shop', 'a')).toBe(false);
    expect(store.delete('IngressClass', '', 'svcplane')).toBe(true);
  });
});

describe('dump', () => {
  it('lists hosts, paths, types and targets from the section alone', () => {
    const r = routing([
      ingress('x', {
        defaultBackend: backend('fallback'),
        rules: [
          rule('shop.com', path('/api/', 'Prefix', 'api', 'alt'), path('/api', 'Exact', 'api'), path('/', 'Prefix', 'web')),
          rule('*.shop.com', path('/', 'ImplementationSpecific', 'missing')),
        ],
      }),
    ], { services: [service('api', '10.96.0.2', [['http', 80], ['alt', 8080]]), service('web', '10.96.0.3'), service('fallback', '10.96.0.4')] });
    const dump = dumpRoutes(new RoutesView(r.bytes));
    expect(dump.hosts.map((h) => [h.host, h.kind, h.paths.map((p) => `${p.path} ${p.pathType} ${p.target.status}`)])).toEqual([
      ['shop.com', 'exact', ['/ Prefix 200', '/api Exact 200', '/api Prefix 200']],
      ['*.shop.com', 'wildcard', ['/ ImplementationSpecific 503']],
    ]);
    expect(dump.hosts[0]?.paths[2]?.target).toEqual({ status: 200, ingress: 'shop/x', service: 'shop/api', port: 8080, portName: 'alt', frontend: { address: '10.96.0.2', port: 8080, protocol: 'TCP' } });
    expect(dump.defaultBackend).toMatchObject({ service: 'shop/fallback', status: 200 });
    expect(dump.stats).toMatchObject({ hosts: 1, wildcards: 1, paths: 4 });
    const text = formatIngressDump(dump);
    expect(text).toContain('*.shop.com');
    expect(text).toMatch(/shop\.com\s+\/api\s+Prefix\s+200\s+shop\/x\s+shop\/api\s+alt \(8080\)\s+10\.96\.0\.2:8080/);
    expect(text).toMatch(/Service shop\/missing not found/);
    expect(text).toMatch(/\(other hosts\)\s+\(default\)/);
  });
});
