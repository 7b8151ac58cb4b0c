// Builds examples/captures/node-a.pcap: what node-a of examples/cluster would see on the wire, for
// `svcplane replay`. Ethernet frames, valid checksums, both directions of each flow (the replies come
// from the backend the dataplane picks, so they are reverse-NATed on replay).
//
//   npm run build && node examples/captures/make.mjs
import { writeFileSync } from 'node:fs';
import { createDataplane, readManifestPaths } from '../../dist/index.js';

const here = new URL('.', import.meta.url);
const { objects } = await readManifestPaths([new URL('../cluster', here).pathname]);
const dp = await createDataplane({ node: 'node-a', tableSeed: 0 });
dp.apply(objects.map((o) => o.object));

const sum = (b, acc = 0) => {
  for (let i = 0; i < b.length; i += 2) acc += (b[i] << 8) | (b[i + 1] ?? 0);
  while (acc > 0xffff) acc = (acc & 0xffff) + (acc >>> 16);
  return acc;
};
const v4 = (a) => Uint8Array.from(a.split('.').map(Number));
const v6 = (a) => {
  const [h, t = ''] = a.split('::');
  const head = h ? h.split(':') : [];
  const tail = t ? t.split(':') : [];
  const groups = [...head, ...Array(8 - head.length - tail.length).fill('0'), ...tail];
  return Uint8Array.from(groups.flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 255]));
};

/** An IP packet: header (v4 or v6) + L4 bytes whose checksum field is at `csumAt` (pseudo-header included). */
function ip(src, dst, proto, l4, csumAt) {
  const six = src.includes(':');
  const s = six ? v6(src) : v4(src);
  const d = six ? v6(dst) : v4(dst);
  const hl = six ? 40 : 20;
  const p = new Uint8Array(hl + l4.length);
  if (six) {
    p[0] = 0x60; p[4] = l4.length >> 8; p[5] = l4.length & 255; p[6] = proto; p[7] = 64; p.set(s, 8); p.set(d, 24);
  } else {
    p[0] = 0x45; p[2] = p.length >> 8; p[3] = p.length & 255; p[6] = 0x40; p[8] = 64; p[9] = proto; p.set(s, 12); p.set(d, 16);
    const c = ~sum(p.subarray(0, 20)) & 0xffff; p[10] = c >> 8; p[11] = c & 255;
  }
  p.set(l4, hl);
  const pseudo = new Uint8Array(s.length * 2 + 4);
  pseudo.set(s, 0); pseudo.set(d, s.length); pseudo[pseudo.length - 3] = proto; pseudo[pseudo.length - 2] = l4.length >> 8; pseudo[pseudo.length - 1] = l4.length & 255;
  const c = ~sum(l4, proto === 1 ? 0 : sum(pseudo)) & 0xffff || (proto === 17 ? 0xffff : 0);
  p[hl + csumAt] = c >> 8; p[hl + csumAt + 1] = c & 255;
  return p;
}
const be16 = (v) => [v >> 8, v & 255];
const tcp = (src, sport, dst, dport, flags, data = '') => {
  const d = new TextEncoder().encode(data);
  const t = new Uint8Array(20 + d.length);
  t.set([...be16(sport), ...be16(dport), 0, 0, 0x10, 0, 0, 0, 0, 0, 0x50, flags, 0xfa, 0xf0], 0);
  t.set(d, 20);
  return ip(src, dst, 6, t, 16);
};
const udp = (src, sport, dst, dport, data) => {
  const d = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  const u = new Uint8Array(8 + d.length);
  u.set([...be16(sport), ...be16(dport), ...be16(u.length)], 0);
  u.set(d, 8);
  return ip(src, dst, 17, u, 6);
};
const icmpUnreachable = (src, dst, quoted) => {
  const m = new Uint8Array(8 + Math.min(quoted.length, 28));
  m[0] = 3; m[1] = 3; m.set(quoted.subarray(0, m.length - 8), 8);
  return ip(src, dst, 1, m, 2);
};
const backendOf = (protocol, src, sport, dst, dport) => dp.select({ protocol, src, sport, dst, dport, now: 1 }).backend;

const SYN = 0x02, ACK = 0x10, PSH = 0x08, FIN = 0x01;
const client = '10.244.3.3';
const packets = [];
// A whole TCP connection to shop/web's ClusterIP; the backend's packets come back from the pod.
const web = backendOf('TCP', client, 40000, '10.96.0.10', 80);
packets.push(tcp(client, 40000, '10.96.0.10', 80, SYN), tcp(web.address, web.port, client, 40000, SYN | ACK),
  tcp(client, 40000, '10.96.0.10', 80, ACK), tcp(client, 40000, '10.96.0.10', 80, PSH | ACK, 'GET / HTTP/1.1\r\nHost: web\r\n\r\n'),
  tcp(web.address, web.port, client, 40000, PSH | ACK, 'HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n'),
  tcp(client, 40000, '10.96.0.10', 80, FIN | ACK), tcp(web.address, web.port, client, 40000, FIN | ACK), tcp(client, 40000, '10.96.0.10', 80, ACK));
// DNS over UDP to kube-dns, its answer, and a router's ICMP error about the DNATed query.
const dns = backendOf('UDP', client, 5353, '10.96.0.53', 53);
packets.push(udp(client, 5353, '10.96.0.53', 53, 'query web.shop.svc'), udp(dns.address, dns.port, client, 5353, 'answer 10.96.0.10'));
packets.push(icmpUnreachable('10.0.0.1', client, udp(client, 5353, dns.address, dns.port, 'query web.shop.svc')));
// A Service without endpoints (reject: ICMP port unreachable), iTP=Local without a local endpoint (drop).
packets.push(tcp(client, 40001, '10.96.0.40', 80, SYN), tcp(client, 40002, '10.96.0.50', 6379, SYN));
// The LoadBalancer IP from inside and from outside loadBalancerSourceRanges.
packets.push(tcp('198.51.100.7', 50000, '203.0.113.10', 443, SYN), tcp('192.0.2.1', 50001, '203.0.113.10', 443, SYN));
// NodePort with eTP=Local, IPv6 ClusterIP, and pod-to-pod traffic that is no service's.
packets.push(tcp('192.0.2.50', 50002, '192.168.10.11', 30080, SYN), tcp('fd00:244:9::1', 5555, 'fd00:96::10', 80, SYN), tcp(client, 40003, '10.244.2.7', 8080, SYN));

// pcap, Ethernet, microseconds.
const frames = packets.map((p) => {
  const e = new Uint8Array(14 + p.length);
  e.set([0x02, 0, 0, 0, 0, 0x0a, 0x02, 0, 0, 0, 0, 0x01, ...(p[0] >> 4 === 6 ? [0x86, 0xdd] : [0x08, 0x00])], 0);
  e.set(p, 14);
  return e;
});
const out = new Uint8Array(24 + frames.reduce((s, f) => s + 16 + f.length, 0));
const v = new DataView(out.buffer);
v.setUint32(0, 0xa1b2c3d4, true); v.setUint16(4, 2, true); v.setUint16(6, 4, true); v.setUint32(16, 65535, true); v.setUint32(20, 1, true);
let at = 24;
frames.forEach((f, i) => {
  v.setUint32(at, 1764576000, true); v.setUint32(at + 4, i * 1000, true); v.setUint32(at + 8, f.length, true); v.setUint32(at + 12, f.length, true);
  out.set(f, at + 16);
  at += 16 + f.length;
});
writeFileSync(new URL('node-a.pcap', here), out);
console.log(`wrote examples/captures/node-a.pcap: ${frames.length} packets`);
