// The svcplane CLI, in process (runCli) and once as the installed executable.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { runCli } from '../src/cli/main.js';
import type { Dump } from '../src/dump.js';

async function cli(args: string[], stdin?: string): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli(args, {
    stdout: (s) => (out += s),
    stderr: (s) => (err += s),
    stdin: stdin === undefined ? undefined : Readable.from([stdin]),
  });
  return { code, out, err };
}

const EXAMPLE = ['examples/cluster', '--node', 'node-a'];
const tmp = mkdtempSync(join(tmpdir(), 'svcplane-cli-'));

describe('svcplane dump', () => {
  it('prints the documented JSON shape for the example cluster', async () => {
    const r = await cli(['dump', ...EXAMPLE, '-o', 'json']);
    expect(r.code).toBe(0);
    const d = JSON.parse(r.out) as Dump;
    expect(d.errors).toEqual([]);
    const web = d.frontends.find((f) => f.service === 'shop/web' && f.address === '10.96.0.10' && f.port === 80);
    expect(web).toMatchObject({ portName: 'http', type: 'ClusterIP', protocol: 'TCP', whenEmpty: 'reject' });
    expect(web?.backends).toEqual([
      { address: '10.244.1.5', port: 8080, state: 'active', local: true },
      { address: '10.244.2.7', port: 8080, state: 'active', local: false },
    ]);
    const nodePort = d.frontends.find((f) => f.service === 'shop/api' && f.type === 'NodePort');
    expect(nodePort).toMatchObject({ address: '192.168.10.11', port: 30080, policy: 'Local' });
    expect(nodePort?.backends.map((b) => b.address)).toEqual(['10.244.1.20']);
    expect(d.frontends.find((f) => f.service === 'shop/cache')?.whenEmpty).toBe('drop');
    expect(d.frontends.find((f) => f.service === 'shop/search')?.whenEmpty).toBe('reject');
    expect(d.frontends.some((f) => f.service === 'shop/db' || f.service === 'shop/payments')).toBe(false);
    expect(d.frontends.some((f) => f.address === 'fd00:96::10')).toBe(true);
  });

  it('prints a table by default', async () => {
    const r = await cli(['dump', ...EXAMPLE]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^FRONTEND\s+TYPE\s+SERVICE\s+POLICY\s+BACKENDS$/m);
    expect(r.out).toMatch(/\[fd00:96::10\]:80\/TCP\s+ClusterIP\s+shop\/web:http/);
    expect(r.out).toMatch(/10\.96\.0\.40:80\/TCP\s+ClusterIP\s+shop\/search\s+Cluster\s+none: reject/);
  });

  it('reports invalid objects with object and field path, applies the rest, exits 1', async () => {
    const r = await cli(['dump', 'examples/invalid', '--node', 'n1', '-o', 'json']);
    expect(r.code).toBe(1);
    const d = JSON.parse(r.out) as Dump;
    expect(d.errors).toContainEqual(expect.objectContaining({ object: 'Service default/web', field: 'spec.ports[1].port' }));
    expect(d.errors[0]?.message).toMatch(/65535.*70000/);
    expect(d.frontends.map((f) => f.service)).toEqual(['default/ok']);
  });

  it('reports malformed YAML with file and line, without a stack trace, and still loads other files', async () => {
    const dir = mkdtempSync(join(tmp, 'bad-'));
    writeFileSync(join(dir, 'a.yaml'), 'apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n   bad: indentation\n');
    writeFileSync(join(dir, 'b.yaml'), readFileSync('examples/cluster/web.yaml'));
    const r = await cli(['dump', dir, '--node', 'node-a']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/a\.yaml:\d+:\d+/);
    expect(r.err).not.toMatch(/\n\s+at /);
    expect(r.out).toMatch(/shop\/web:http/);
  });

  it('reads manifests from stdin with -', async () => {
    const r = await cli(['dump', '-', '--node', 'node-a', '-o', 'json'], readFileSync('examples/cluster/web.yaml', 'utf8'));
    expect(r.code).toBe(0);
    expect((JSON.parse(r.out) as Dump).frontends.length).toBe(4);
  });
});

describe('svcplane compile', () => {
  it('writes a reproducible image that dumps like the manifests', async () => {
    const a = join(tmp, 'a.img');
    const b = join(tmp, 'b.img');
    expect((await cli(['compile', ...EXAMPLE, '-o', a])).code).toBe(0);
    expect((await cli(['compile', 'examples/cluster/web.yaml', 'examples/cluster/dns.json', 'examples/cluster/nodes.yaml', 'examples/cluster/edge-cases.yaml', 'examples/cluster/api.yaml', 'examples/cluster/ingress.yaml', '--node', 'node-a', '-o', b])).code).toBe(0);
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
    const fromImage = JSON.parse((await cli(['dump', a, '-o', 'json'])).out) as Dump;
    const fromManifests = JSON.parse((await cli(['dump', ...EXAMPLE, '-o', 'json'])).out) as Dump;
    expect(fromImage.frontends).toEqual(fromManifests.frontends);
  });

  it('rejects a corrupt image with exit 1 and a reason', async () => {
    const a = join(tmp, 'c.img');
    await cli(['compile', ...EXAMPLE, '-o', a]);
    const bytes = readFileSync(a);
    writeFileSync(a, bytes.subarray(0, bytes.length - 8));
    const r = await cli(['dump', a]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/invalid image: .*truncated/);
  });
});

describe('svcplane trace', () => {
  it('shows the decision step by step', async () => {
    const r = await cli(['trace', ...EXAMPLE, '--to', '10.96.0.10:80/TCP', '--from', '10.244.3.3:40000']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/frontend\s+10\.96\.0\.10:80\/TCP ClusterIP of shop\/web \(port http\)/);
    expect(r.out).toMatch(/policy\s+internal traffic, internalTrafficPolicy=Cluster -> cluster list \(2 endpoints\)/);
    expect(r.out).toMatch(/maglev\s+slot \d+ of 251/);
    expect(r.out).toMatch(/backend\s+10\.244\.(1\.5|2\.7):8080 \(active\)/);
    expect(r.out).toMatch(/verdict\s+forward/);
  });

  it('prints the documented JSON for forward, reject, drop and pass', async () => {
    const run = async (to: string, from = '10.244.3.3:40000'): Promise<Record<string, unknown>> =>
      JSON.parse((await cli(['trace', ...EXAMPLE, '--to', to, '--from', from, '-o', 'json'])).out) as Record<string, unknown>;
    const fwd = await run('[fd00:96::10]:80/TCP', '[fd00:244:9::1]:5555');
    expect(fwd).toMatchObject({ verdict: 'forward', service: 'shop/web' });
    expect(['fd00:244:1::5', 'fd00:244:2::7']).toContain((fwd.backend as { address: string }).address);
    expect(await run('10.96.0.40:80/TCP')).toMatchObject({ verdict: 'reject', service: 'shop/search', reason: 'no usable endpoints' });
    expect(await run('10.96.0.50:6379/TCP')).toMatchObject({ verdict: 'drop', service: 'shop/cache', reason: 'no local endpoints' });
    expect(await run('10.96.0.53:53/UDP')).toMatchObject({ verdict: 'forward', backend: { address: '10.244.1.53', port: 53 } });
    expect(await run('10.96.0.99:80/TCP')).toMatchObject({ verdict: 'pass', reason: 'not a service address' });
    expect(await run('203.0.113.10:443/TCP', '192.0.2.1:1234')).toMatchObject({ verdict: 'drop', reason: 'source outside loadBalancerSourceRanges' });
  });
});

describe('svcplane route and dump ingress', () => {
  it('routes by host and path, then picks the pod', async () => {
    const json = async (...args: string[]): Promise<Record<string, unknown>> =>
      JSON.parse((await cli(['route', ...EXAMPLE, ...args, '-o', 'json'])).out) as Record<string, unknown>;
    expect(await json('--host', 'SHOP.example.com:8443', '--path', '/api/orders', '--from', '10.1.2.3:4444')).toMatchObject({
      status: 200, ingress: 'shop/shop', service: 'shop/api', port: 8080,
    });
    expect(await json('--host', 'shop.example.com', '--path', '/healthz')).toMatchObject({ status: 200, service: 'shop/web', port: 9090, backend: { port: 9100 } });
    expect(await json('--host', 'a.shop.example.com', '--path', '/')).toMatchObject({ status: 200, service: 'shop/gateway' });
    expect(await json('--host', 'b.a.shop.example.com', '--path', '/')).toMatchObject({ status: 404 });
    const text = await cli(['route', ...EXAMPLE, '--host', 'shop.example.com', '--path', '/']);
    expect(text.out).toMatch(/status\s+200/);
    expect((await cli(['route', ...EXAMPLE, '--host', 'x'])).code).toBe(2);
  });

  it('lists hosts, paths, types and targets, also from a compiled image', async () => {
    const r = await cli(['dump', ...EXAMPLE.slice(0, 1), 'ingress', ...EXAMPLE.slice(1)]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/shop\.example\.com\s+\/api\s+Prefix\s+200\s+shop\/shop\s+shop\/api/);
    expect(r.out).toMatch(/\*\.shop\.example\.com\s+\/\s+Prefix/);
    const img = join(tmp, 'ingress.img');
    await cli(['compile', ...EXAMPLE, '-o', img]);
    const fromImage = await cli(['dump', img, 'ingress']);
    expect(fromImage.out).toBe(r.out);
    expect(JSON.parse((await cli(['route', img, '--host', 'shop.example.com', '--path', '/', '-o', 'json'])).out)).toMatchObject({ status: 200 });
  });
});

describe('usage', () => {
  it('exits 2 on usage errors with a hint', async () => {
    for (const args of [['frobnicate'], ['compile', ...EXAMPLE], ['trace', ...EXAMPLE, '--to', '10.96.0.10', '--from', '1.2.3.4:5'], ['trace', ...EXAMPLE, '--to', '10.96.0.10:80/ICMP', '--from', '1.2.3.4:5'], ['dump', ...EXAMPLE, '-o', 'yaml'], ['dump'], ['dump', ...EXAMPLE, '--bogus']]) {
      const r = await cli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err.length).toBeGreaterThan(0);
    }
  });

  it('says which engine runs and why', async () => {
    const r = await cli(['version', '--verbose']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^engine: (wasm|native) \(.+\)$/m);
    expect(r.out).toMatch(/^native addon: /m);
    // With the addon there: whether its core memory can get huge pages here (the kernel's THP mode).
    if (/^engine: native/m.test(r.out)) expect(r.out).toMatch(/^ {2}core memory: transparent huge pages .*the kernel's mode: \S+/m);
  });

  it('has --help on every command', async () => {
    for (const cmd of ['compile', 'dump', 'trace', 'route', 'bench', 'version']) {
      const r = await cli([cmd, '--help']);
      expect(r.code).toBe(0);
      expect(r.out).toMatch(new RegExp(`Usage: svcplane ${cmd}`));
    }
    expect((await cli(['--help'])).out).toMatch(/Commands:/);
  });

  it('runs as the installed executable with the documented exit codes', () => {
    const bin = 'dist/cli/bin.js';
    const ok = spawnSync(process.execPath, [bin, 'trace', ...EXAMPLE, '--to', '10.96.0.53:53/UDP', '--from', '10.1.1.1:999', '-o', 'json'], { encoding: 'utf8' });
    expect(ok.status).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ verdict: 'forward' });
    expect(spawnSync(process.execPath, [bin, 'dump', 'examples/invalid', '--node', 'n'], { encoding: 'utf8' }).status).toBe(1);
    expect(spawnSync(process.execPath, [bin, 'nope'], { encoding: 'utf8' }).status).toBe(2);
  });
});
