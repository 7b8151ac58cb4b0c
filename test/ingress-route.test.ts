// Ingress routing rules (issue §3) and the examples tables of the Kubernetes "Ingress" docs page, through
// the wasm core; every request is also checked against the TypeScript table matcher and the reference.
import { describe, expect, it } from 'vitest';
import { backend, ingress, path, rule, service } from './fixtures/ingress/objects.js';
import { routing } from './fixtures/ingress/setup.js';
import type { HTTPIngressPath, PathType } from '../src/ingress/types.js';

// kubernetes.io/docs/concepts/services-networking/ingress/#examples: Kind, Path(s), Request path(s), Matches?
// Each path routes to its own Service (p0, p1, ...); "No" rows land on the default backend.
type Row = [kind: string, paths: [string, PathType][], requests: string[], matches: number | 'default'];
const DOCS_TABLE: Row[] = [
  ['Prefix', [['/', 'Prefix']], ['/', '/foo', '/foo/bar', '/aaa/bbb/ccc/', '/x.html'], 0],
  ['Exact', [['/foo', 'Exact']], ['/foo'], 0],
  ['Exact', [['/foo', 'Exact']], ['/bar'], 'default'],
  ['Exact', [['/foo', 'Exact']], ['/foo/'], 'default'],
  ['Exact', [['/foo/', 'Exact']], ['/foo'], 'default'],
  ['Prefix', [['/foo', 'Prefix']], ['/foo', '/foo/'], 0],
  ['Prefix', [['/foo/', 'Prefix']], ['/foo', '/foo/'], 0],
  ['Prefix', [['/aaa/bb', 'Prefix']], ['/aaa/bbb'], 'default'],
  ['Prefix', [['/aaa/bbb', 'Prefix']], ['/aaa/bbb'], 0],
  ['Prefix', [['/aaa/bbb/', 'Prefix']], ['/aaa/bbb'], 0], // ignores trailing slash
  ['Prefix', [['/aaa/bbb', 'Prefix']], ['/aaa/bbb/'], 0], // matches trailing slash
  ['Prefix', [['/aaa/bbb', 'Prefix']], ['/aaa/bbb/ccc'], 0], // matches subpath
  ['Prefix', [['/aaa/bbb', 'Prefix']], ['/aaa/bbbxyz'], 'default'], // does not match string prefix
  ['Prefix', [['/', 'Prefix'], ['/aaa', 'Prefix']], ['/aaa/ccc'], 1], // matches /aaa prefix
  ['Prefix', [['/', 'Prefix'], ['/aaa', 'Prefix'], ['/aaa/bbb', 'Prefix']], ['/aaa/bbb'], 2], // matches /aaa/bbb prefix
  ['Prefix', [['/', 'Prefix'], ['/aaa', 'Prefix'], ['/aaa/bbb', 'Prefix']], ['/ccc'], 0], // matches / prefix
  ['Prefix', [['/aaa', 'Prefix']], ['/ccc'], 'default'], // uses default backend
  ['Mixed', [['/foo', 'Prefix'], ['/foo', 'Exact']], ['/foo'], 1], // prefers Exact
];

describe('the Kubernetes docs examples table (path types)', () => {
  DOCS_TABLE.forEach(([kind, paths, requests, matches], i) => {
    const label = `${kind} ${paths.map(([p, t]) => `${p} (${t})`).join(', ')} <- ${requests.join(', ')}: ${matches === 'default' ? 'No' : `Yes (${paths[matches]?.[0] ?? ''})`}`;
    it(label, () => {
      const ing = ingress(`docs-${i}`, {
        defaultBackend: backend('fallback'),
        rules: [rule('foo.bar.com', ...paths.map(([p, t], j) => path(p, t, `p${j}`)))],
      });
      const r = routing([ing]);
      for (const req of requests) {
        expect(r.where('foo.bar.com', req), req).toBe(matches === 'default' ? 'default:fallback' : `p${matches}`);
      }
    });
  });

  it('Mixed: prefers Exact in whichever order the YAML lists them', () => {
    for (const order of [[['/foo', 'Exact'], ['/foo', 'Prefix']], [['/foo', 'Prefix'], ['/foo', 'Exact']]] as [string, PathType][][]) {
      const r = routing([ingress('mixed', { rules: [rule('foo.bar.com', ...order.map(([p, t]) => path(p, t, `svc-${t.toLowerCase()}`)))] })]);
      expect(r.where('foo.bar.com', '/foo')).toBe('svc-exact');
      expect(r.where('foo.bar.com', '/foo/x')).toBe('svc-prefix');
    }
  });
});

describe('the Kubernetes docs hostname wildcards table', () => {
  const r = routing([ingress('wild', { rules: [rule('*.foo.com', path('/', 'Prefix', 'wild'))] })]);
  it('*.foo.com matches bar.foo.com (shared suffix)', () => expect(r.where('bar.foo.com', '/')).toBe('wild'));
  it('*.foo.com does not match baz.bar.foo.com (one label only)', () => expect(r.where('baz.bar.foo.com', '/')).toBe('404'));
  it('*.foo.com does not match foo.com (one label only)', () => expect(r.where('foo.com', '/')).toBe('404'));
  it('*.foo.com does not match an empty first label (.foo.com)', () => expect(r.where('.foo.com', '/')).toBe('404'));
});

describe('the Kubernetes docs name-based virtual hosting example', () => {
  const r = routing([
    ingress('name-virtual-host-ingress-no-third-host', {
      rules: [
        rule('first.bar.com', path('/', 'Prefix', 'service1')),
        rule('second.bar.com', path('/', 'Prefix', 'service2')),
        rule(undefined, path('/', 'Prefix', 'service3')),
      ],
    }),
  ]);
  it('routes each host to its service and everything else (and no Host) to the host-less rule', () => {
    expect(r.where('first.bar.com', '/')).toBe('service1');
    expect(r.where('second.bar.com', '/x')).toBe('service2');
    expect(r.where('third.bar.com', '/')).toBe('service3');
    expect(r.where(undefined, '/')).toBe('service3');
    expect(r.where('', '/index.html')).toBe('service3');
  });
});

describe('routing rules (issue §3)', () => {
  it('precise host over wildcard', () => {
    const r = routing([
      ingress('a', { rules: [rule('*.bar.com', path('/', 'Prefix', 'wild'))] }),
      ingress('b', { rules: [rule('foo.bar.com', path('/', 'Prefix', 'exact'))] }),
    ]);
    expect(r.where('foo.bar.com', '/')).toBe('exact');
    expect(r.where('other.bar.com', '/')).toBe('wild');
    expect(r.trace('foo.bar.com', '/').host).toEqual({ match: 'exact', rule: 'foo.bar.com' });
    expect(r.trace('other.bar.com', '/').host).toEqual({ match: 'wildcard', rule: '*.bar.com' });
  });

  it('a precise host takes the request even when only the wildcard has a matching path (virtual hosts)', () => {
    const r = routing([
      ingress('a', { rules: [rule('*.bar.com', path('/api', 'Prefix', 'wild'))] }),
      ingress('b', { rules: [rule('foo.bar.com', path('/web', 'Prefix', 'exact'))] }),
    ]);
    expect(r.where('foo.bar.com', '/api')).toBe('404');
    expect(r.where('x.bar.com', '/api')).toBe('wild');
  });

  it('longest path wins, whatever the order', () => {
    const paths: HTTPIngressPath[] = [path('/a', 'Prefix', 'a'), path('/a/b/c', 'Prefix', 'abc'), path('/', 'Prefix', 'root'), path('/a/b', 'Prefix', 'ab')];
    for (const order of [paths, [...paths].reverse()]) {
      const r = routing([ingress('x', { rules: [rule('h.com', ...order)] })]);
      expect(r.where('h.com', '/a/b/c/d')).toBe('abc');
      expect(r.where('h.com', '/a/b/cd')).toBe('ab');
      expect(r.where('h.com', '/a/b')).toBe('ab');
      expect(r.where('h.com', '/a/x')).toBe('a');
      expect(r.where('h.com', '/ab')).toBe('root');
      expect(r.trace('h.com', '/a/b/c/d').path).toEqual({ match: 'Prefix', key: '/a/b/c' });
    }
  });

  it('Exact beats Prefix on equal length; a longer Exact and a longer Prefix both win over shorter ones', () => {
    const r = routing([
      ingress('x', {
        rules: [rule('h.com', path('/foo', 'Prefix', 'prefix'), path('/foo/', 'Exact', 'exact-slash'), path('/foo', 'Exact', 'exact'), path('/f', 'Exact', 'f'))],
      }),
    ]);
    expect(r.where('h.com', '/foo')).toBe('exact');
    expect(r.where('h.com', '/foo/')).toBe('exact-slash');
    expect(r.where('h.com', '/foo/bar')).toBe('prefix');
    expect(r.where('h.com', '/f')).toBe('f');
    expect(r.trace('h.com', '/foo').path).toEqual({ match: 'Exact', key: '/foo' });
  });

  it('the port in the Host header is ignored (also [v6]:port), and one trailing dot', () => {
    const r = routing([ingress('x', { rules: [rule('foo.com', path('/', 'Prefix', 'foo')), rule(undefined, path('/', 'Prefix', 'any'))] })]);
    expect(r.where('foo.com:8080', '/')).toBe('foo');
    expect(r.where('foo.com:', '/')).toBe('foo');
    expect(r.where('foo.com.', '/')).toBe('foo');
    expect(r.where('foo.com.:443', '/')).toBe('foo');
    expect(r.where('[2001:db8::1]:8080', '/')).toBe('any');
    expect(r.where('[2001:db8::1]', '/')).toBe('any');
    expect(r.where('foo.com..', '/')).toBe('any');
  });

  it('host comparison is case-insensitive, path comparison case-sensitive', () => {
    const r = routing([ingress('x', { defaultBackend: backend('fallback'), rules: [rule('foo.com', path('/Api', 'Prefix', 'api'), path('/exact', 'Exact', 'exact'))] }), ingress('w', { rules: [rule('*.bar.com', path('/', 'Prefix', 'wild'))] })]);
    expect(r.where('FOO.com', '/Api/x')).toBe('api');
    expect(r.where('Foo.COM:80', '/Api')).toBe('api');
    expect(r.where('foo.com', '/api')).toBe('default:fallback');
    expect(r.where('foo.com', '/EXACT')).toBe('default:fallback');
    expect(r.where('X.BAR.COM', '/')).toBe('wild');
  });

  it('404 when nothing matches and there is no default backend; the default backend otherwise', () => {
    const rules = [rule('foo.com', path('/api', 'Prefix', 'api'))];
    const none = routing([ingress('x', { rules })]);
    expect(none.route('foo.com', '/web')).toEqual({ status: 404 });
    expect(none.route('other.com', '/api')).toEqual({ status: 404 });
    const withDefault = routing([ingress('x', { rules, defaultBackend: backend('fallback') })]);
    expect(withDefault.where('foo.com', '/web')).toBe('default:fallback');
    expect(withDefault.where('other.com', '/api')).toBe('default:fallback');
    expect(withDefault.trace('other.com', '/api')).toMatchObject({ status: 200, host: { match: 'none' }, path: { match: 'default' } });
  });

  it('an Ingress with only a default backend takes everything', () => {
    const r = routing([ingress('only-default', { defaultBackend: backend('test', 80) })]);
    for (const [h, p] of [['a.com', '/'], [undefined, '/x'], ['b.org:1', '/y/z']] as const) {
      expect(r.route(h, p)).toEqual({ status: 200, ingress: 'shop/only-default', service: 'shop/test', port: 80, frontend: { address: '10.96.0.1', port: 80, protocol: 'TCP' } });
    }
  });

  it('a backend naming a missing Service or port gives 503 with the reason', () => {
    const r = routing(
      [
        ingress('x', {
          rules: [
            rule(
              'h.com',
              path('/gone', 'Prefix', 'missing'),
              path('/port', 'Prefix', 'web', 9999),
              path('/name', 'Prefix', 'web', 'grpc'),
              path('/ok', 'Prefix', 'web', 'http'),
              path('/udp', 'Prefix', 'dns', 53),
            ),
          ],
        }),
      ],
      {
        services: [
          service('web', '10.96.0.10', [['http', 80]]),
          { apiVersion: 'v1', kind: 'Service', metadata: { name: 'dns', namespace: 'shop' }, spec: { clusterIP: '10.96.0.53', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] } },
        ],
      },
    );
    expect(r.route('h.com', '/gone')).toEqual({ status: 503, ingress: 'shop/x', service: 'shop/missing', port: 80, reason: 'Service shop/missing not found' });
    expect(r.route('h.com', '/port/x')).toEqual({ status: 503, ingress: 'shop/x', service: 'shop/web', port: 9999, reason: 'Service shop/web has no port 9999' });
    expect(r.route('h.com', '/name')).toEqual({ status: 503, ingress: 'shop/x', service: 'shop/web', reason: 'Service shop/web has no port named "grpc"' });
    expect(r.route('h.com', '/udp')).toMatchObject({ status: 503, reason: 'Service shop/dns port 53 is UDP, not TCP' });
    expect(r.route('h.com', '/ok')).toEqual({ status: 200, ingress: 'shop/x', service: 'shop/web', port: 80, frontend: { address: '10.96.0.10', port: 80, protocol: 'TCP' } });
    expect(r.notes.map((n) => n.message).filter((m) => m.includes('503'))).toHaveLength(4);
  });

  it('headless and ExternalName Services and resource backends give 503', () => {
    const r = routing(
      [
        ingress('x', {
          rules: [
            rule(
              'h.com',
              path('/headless', 'Prefix', 'headless'),
              path('/ext', 'Prefix', 'ext'),
              { path: '/bucket', pathType: 'Prefix', backend: { resource: { apiGroup: 'k8s.example.com', kind: 'StorageBucket', name: 'assets' } } },
            ),
          ],
        }),
      ],
      {
        services: [
          { apiVersion: 'v1', kind: 'Service', metadata: { name: 'headless', namespace: 'shop' }, spec: { clusterIP: 'None', ports: [{ name: 'http', port: 80 }] } },
          { apiVersion: 'v1', kind: 'Service', metadata: { name: 'ext', namespace: 'shop' }, spec: { type: 'ExternalName', externalName: 'example.com' } },
        ],
      },
    );
    expect(r.route('h.com', '/headless').reason).toMatch(/headless/);
    expect(r.route('h.com', '/ext').reason).toMatch(/ExternalName/);
    expect(r.route('h.com', '/bucket')).toEqual({ status: 503, ingress: 'shop/x', service: '', reason: 'resource backend StorageBucket assets is not routable: svcplane routes to Services only' });
  });

  it('a port given by name resolves to the Service port number', () => {
    const r = routing([ingress('x', { rules: [rule('h.com', path('/', 'Prefix', 'web', 'alt'))] })]);
    expect(r.route('h.com', '/')).toMatchObject({ status: 200, port: 8080, frontend: { port: 8080 } });
  });

  it('ImplementationSpecific is matched as Prefix (element-wise); without a path it is "/"', () => {
    const r = routing([ingress('x', { rules: [rule('h.com', path('/foo', 'ImplementationSpecific', 'impl'), path(undefined, 'ImplementationSpecific', 'root'))] })]);
    expect(r.where('h.com', '/foo/bar')).toBe('impl');
    expect(r.where('h.com', '/foo')).toBe('impl');
    expect(r.where('h.com', '/foobar')).toBe('root');
    expect(r.trace('h.com', '/foo/x').path.match).toBe('ImplementationSpecific');
  });

  it('the query string is not part of the path; an empty path is "/"', () => {
    const r = routing([ingress('x', { rules: [rule('h.com', path('/search', 'Exact', 'search'), path('/', 'Exact', 'root'))] })]);
    expect(r.where('h.com', '/search?q=a/b')).toBe('search');
    expect(r.where('h.com', '')).toBe('root');
    expect(r.where('h.com', '?x')).toBe('root');
  });

  it('paths are bytes, not decoded: %2F is not a separator, UTF-8 paths match as written', () => {
    const r = routing([ingress('x', { rules: [rule('h.com', path('/a', 'Prefix', 'a'), path('/ü/ñ', 'Prefix', 'utf'), path('/', 'Prefix', 'root'))] })]);
    expect(r.where('h.com', '/a%2Fb')).toBe('root');
    expect(r.where('h.com', '/ü/ñ/x')).toBe('utf');
    expect(r.where('h.com', '/ü/ñx')).toBe('root');
    expect(r.where('h.com', '//a')).toBe('root');
    expect(r.where('h.com', '/a//b')).toBe('a');
  });

  it('host-less rules do not catch requests for a named host (no fall-through between hosts)', () => {
    const r = routing([ingress('x', { rules: [rule('foo.com', path('/api', 'Prefix', 'api')), rule(undefined, path('/', 'Prefix', 'any'))] })]);
    expect(r.where('foo.com', '/web')).toBe('404');
    expect(r.where('bar.com', '/web')).toBe('any');
  });

  it('a host named by a rule without paths still takes its requests (to the default backend)', () => {
    const r = routing([
      ingress('a', { defaultBackend: backend('fallback'), rules: [{ host: 'foo.com' }] }),
      ingress('b', { rules: [rule('*.com', path('/', 'Prefix', 'wild'))] }),
    ]);
    expect(r.where('foo.com', '/')).toBe('default:fallback');
    expect(r.where('bar.com', '/')).toBe('wild');
  });

  it('very long hosts and paths, and non-ASCII hosts, route as their bytes dictate', () => {
    const longLabel = 'a'.repeat(300);
    const r = routing([
      ingress('x', {
        rules: [
          rule('foo.com', path('/a/b', 'Prefix', 'ab'), path('/x', 'Exact', 'x')),
          rule('*.foo.com', path('/', 'Prefix', 'wild')),
          rule(undefined, path('/', 'Prefix', 'any')),
        ],
      }),
    ]);
    expect(r.where('foo.com', `/a/b/${'c'.repeat(100000)}`)).toBe('ab');
    expect(r.where('foo.com', `/a/b${'c'.repeat(100000)}`)).toBe('404');
    expect(r.where('foo.com', `/x${'/'.repeat(5000)}`)).toBe('404');
    expect(r.where(`${longLabel}.foo.com`, '/')).toBe('any'); // longer than any DNS name: no host entry
    expect(r.where(`${'a'.repeat(2000)}:80`, '/')).toBe('any');
    expect(r.where(`foo.com:${'1'.repeat(3000)}`, '/a/b')).toBe('ab');
    expect(r.where('ü.foo.com', '/')).toBe('wild');
    expect(r.where('bücher.com', '/')).toBe('any');
  });
});

describe('deep paths', () => {
  it('more candidate prefixes than the core keeps (32) still give the longest match', () => {
    const deep = (k: number): string => '/a'.repeat(k);
    const paths = Array.from({ length: 40 }, (_, i) => path(deep(i + 1), 'Prefix', `d${i + 1}`));
    const r = routing([ingress('deep', { rules: [rule('h.com', ...paths, path('/', 'Prefix', 'root'), path(`${deep(40)}/x`, 'Exact', 'exact'))] })]);
    expect(r.where('h.com', `${deep(40)}/b`)).toBe('d40');
    expect(r.where('h.com', `${deep(40)}/x`)).toBe('exact');
    expect(r.where('h.com', `${deep(33)}/c/a`)).toBe('d33');
    expect(r.where('h.com', `${deep(25)}b`)).toBe('d24');
    expect(r.where('h.com', `${deep(60)}`)).toBe('d40');
    expect(r.where('h.com', '/b')).toBe('root');
    expect(r.where('h.com', '/'.repeat(100))).toBe('root');
  });

  it('key lengths that collide modulo 64 in the length filter still match exactly', () => {
    const long = `/${'x'.repeat(63)}`; // 64 bytes: same filter bit as the root key (0)
    const r = routing([ingress('x', { rules: [rule('h.com', path(long, 'Prefix', 'long'), path('/y', 'Exact', 'y'))] })]);
    expect(r.where('h.com', '/')).toBe('404');
    expect(r.where('h.com', `${long}/z`)).toBe('long');
    expect(r.where('h.com', `/${'y'.repeat(65)}`)).toBe('404');
  });
});

describe('merging several Ingresses', () => {
  it('paths of several Ingresses on one host merge', () => {
    const r = routing([
      ingress('web', { rules: [rule('shop.com', path('/', 'Prefix', 'web'))] }),
      ingress('api', { rules: [rule('shop.com', path('/api', 'Prefix', 'api'))] }, { namespace: 'backend' }),
    ]);
    expect(r.route('shop.com', '/api/x')).toMatchObject({ ingress: 'backend/api', service: 'backend/api' });
    expect(r.route('shop.com', '/x')).toMatchObject({ ingress: 'shop/web', service: 'shop/web' });
    expect(r.conflicts).toEqual([]);
  });

  it('a conflict (same host, path and type) goes to the oldest Ingress, then namespace/name, and is reported', () => {
    const older = ingress('zz-old', { rules: [rule('shop.com', path('/api', 'Prefix', 'old'))] }, { created: '2024-01-01T00:00:00Z' });
    const newer = ingress('aa-new', { rules: [rule('shop.com', path('/api/', 'Prefix', 'new'), path('/api', 'Exact', 'exact'))] }, { created: '2024-06-01T00:00:00Z' });
    for (const input of [[older, newer], [newer, older]]) {
      const r = routing(input);
      expect(r.where('shop.com', '/api/x')).toBe('old');
      expect(r.where('shop.com', '/api')).toBe('exact'); // different type: no conflict
      expect(r.conflicts).toEqual([{ host: 'shop.com', key: '/api', pathType: 'Prefix', winner: 'shop/zz-old', loser: 'shop/aa-new', field: 'spec.rules[0].http.paths[0]' }]);
      expect(r.notes).toContainEqual({
        object: 'Ingress shop/aa-new',
        message: 'spec.rules[0].http.paths[0]: host "shop.com" path "/api/" (Prefix) conflicts with "/api" (Prefix) of Ingress shop/zz-old (older), which wins',
      });
    }
    // Same age (or none): namespace/name decides.
    const a = ingress('a', { rules: [rule('shop.com', path('/api', 'Prefix', 'svc-a'))] }, { namespace: 'ns2' });
    const b = ingress('b', { rules: [rule('shop.com', path('/api', 'Prefix', 'svc-b'))] }, { namespace: 'ns1' });
    expect(routing([a, b]).where('shop.com', '/api')).toBe('svc-b');
    // An object without a timestamp counts as newest.
    const stamped = ingress('z', { rules: [rule('shop.com', path('/api', 'Prefix', 'svc-z'))] }, { created: '2030-01-01T00:00:00Z' });
    expect(routing([a, stamped]).where('shop.com', '/api')).toBe('svc-z');
  });

  it('Prefix and ImplementationSpecific with the same key conflict (both match as Prefix)', () => {
    const r = routing([
      ingress('a', { rules: [rule('h.com', path('/x', 'ImplementationSpecific', 'impl'))] }, { created: '2024-01-01T00:00:00Z' }),
      ingress('b', { rules: [rule('h.com', path('/x', 'Prefix', 'prefix'))] }, { created: '2024-01-02T00:00:00Z' }),
    ]);
    expect(r.where('h.com', '/x')).toBe('impl');
    expect(r.conflicts).toHaveLength(1);
  });

  it('a duplicate path inside one Ingress: the first in spec order wins', () => {
    const r = routing([ingress('x', { rules: [rule('h.com', path('/a', 'Exact', 'first')), rule('h.com', path('/a', 'Exact', 'second'))] })]);
    expect(r.where('h.com', '/a')).toBe('first');
    expect(r.conflicts).toEqual([{ host: 'h.com', key: '/a', pathType: 'Exact', winner: 'shop/x', loser: 'shop/x', field: 'spec.rules[1].http.paths[0]' }]);
  });

  it('default backends: a host uses its own Ingress\'s, unknown hosts the oldest one\'s', () => {
    const r = routing([
      ingress('a', { defaultBackend: backend('default-a'), rules: [rule('a.com', path('/x', 'Exact', 'ax'))] }, { created: '2024-01-01T00:00:00Z' }),
      ingress('b', { defaultBackend: backend('default-b'), rules: [rule('b.com', path('/x', 'Exact', 'bx'))] }, { created: '2024-02-01T00:00:00Z' }),
      ingress('c', { rules: [rule('c.com', path('/x', 'Exact', 'cx'))] }),
    ]);
    expect(r.where('a.com', '/y')).toBe('default:default-a');
    expect(r.where('b.com', '/y')).toBe('default:default-b');
    expect(r.where('c.com', '/y')).toBe('default:default-a');
    expect(r.where('other.com', '/y')).toBe('default:default-a');
    expect(r.notes.some((n) => n.object === 'Ingress shop/b' && n.message.includes('serves only this Ingress'))).toBe(true);
  });
});

describe('the router remembers Host headers per section', () => {
  it('another section attached: the same Host header strings route by the new rules', () => {
    const a = routing([ingress('a', { rules: [rule('a.com', path('/', 'Prefix', 'one')), rule('*.b.com', path('/', 'Prefix', 'wild'))] })]);
    const b = routing([ingress('b', { rules: [rule('a.com', path('/', 'Prefix', 'two')), rule('x.b.com', path('/', 'Prefix', 'exact'))] })]);
    const hosts = ['a.com', 'A.com:80', 'x.b.com', 'y.b.com', '', 'nope.com'];
    const where = (): string[] => hosts.map((h) => a.wasm.router.route({ host: h, path: '/p' }).service?.split('/')[1] ?? '404');
    expect(where()).toEqual(['one', 'one', 'wild', 'wild', '404', '404']);
    a.wasm.load(b.bytes);
    expect(where()).toEqual(['two', 'two', 'exact', '404', '404', '404']);
    a.wasm.router.detach();
    expect(() => a.wasm.router.route({ host: 'a.com', path: '/' })).toThrow(/no routes section/);
    a.wasm.load(a.bytes);
    expect(where()).toEqual(['one', 'one', 'wild', 'wild', '404', '404']);
  });
});
