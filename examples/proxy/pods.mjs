// Stand-ins for the pods of a manifest set, so that `svcplane proxy` has something to forward to on one
// machine. For every IPv4 endpoint address:port of every EndpointSlice it serves, on the loopback
// address the proxy's --endpoint-map rule maps it to (default 10.244.x.y -> 127.244.x.y):
//   TCP ports: HTTP, answering which pod got the request and the X-Forwarded-* headers it saw
//   UDP ports: an echo, prefixed with the pod's address
// Usage (after npm run build): node examples/proxy/pods.mjs PATH... [--map 10.244.=127.244.]
// Ports below 1024 need root (CAP_NET_BIND_SERVICE) and are skipped without it. Ctrl-C stops.

import { createServer } from 'node:http';
import { createSocket } from 'node:dgram';
import { readManifestPaths } from '../../dist/index.js';

const args = process.argv.slice(2);
let map = ['10.244.', '127.244.'];
const paths = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--map') {
    const rule = args[++i] ?? '';
    const eq = rule.indexOf('=');
    if (eq < 0) {
      console.error(`--map must be FROM_PREFIX=TO_PREFIX (e.g. 10.244.=127.244.), got "${rule}"`);
      process.exit(2);
    }
    map = [rule.slice(0, eq), rule.slice(eq + 1)];
  } else paths.push(args[i]);
}
if (paths.length === 0) {
  console.error('usage: node examples/proxy/pods.mjs PATH... [--map 10.244.=127.244.]');
  process.exit(2);
}

const { objects, errors } = await readManifestPaths(paths);
for (const e of errors) console.error(`error: ${e.object}: ${e.message}`);

const started = new Set();
const root = process.getuid?.() === 0;
for (const { object } of objects) {
  if (object.kind !== 'EndpointSlice' || object.addressType !== 'IPv4') continue;
  const service = `${object.metadata?.namespace ?? 'default'}/${object.metadata?.labels?.['kubernetes.io/service-name'] ?? '?'}`;
  for (const ep of object.endpoints ?? []) {
    for (const address of ep.addresses ?? []) {
      if (!address.startsWith(map[0])) continue;
      const local = map[1] + address.slice(map[0].length);
      for (const p of object.ports ?? []) {
        const proto = p.protocol ?? 'TCP';
        const key = `${local}:${p.port}/${proto}`;
        if (started.has(key) || (proto !== 'TCP' && proto !== 'UDP')) continue;
        started.add(key);
        if (p.port < 1024 && !root) {
          console.log(`skip  ${address}:${p.port}/${proto} (${service}): port below 1024 needs root`);
          continue;
        }
        const name = `pod ${address}:${p.port} (${service})`;
        const onError = (e) => console.log(`fail  ${address}:${p.port}/${proto} on ${local}: ${e.code ?? e.message}`);
        const onListen = () => console.log(`serve ${address}:${p.port}/${proto} (${service}) on ${local}:${p.port}`);
        if (proto === 'UDP') {
          const s = createSocket('udp4');
          s.on('error', onError);
          s.on('message', (m, r) => s.send(`${name}: ${m}`, r.port, r.address));
          s.bind(p.port, local, onListen);
        } else {
          const s = createServer((req, res) => {
            req.resume();
            const h = req.headers;
            res.end(`${name}: ${req.method} ${req.url} host=${h.host ?? ''} x-forwarded-for=${h['x-forwarded-for'] ?? '-'} x-forwarded-proto=${h['x-forwarded-proto'] ?? '-'}\n`);
          });
          s.on('error', onError);
          s.listen(p.port, local, onListen);
        }
      }
    }
  }
}
