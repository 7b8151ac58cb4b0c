// Writes seed inputs for fuzz_packet.c: real images compiled from the examples (plus an SCTP / IPv6 /
// affinity set), each followed by packet records that make frontend hits, new and established flows,
// replies, ICMP errors, fragments, rejects, evictions and malformed packets happen. Input format: see
// fuzz_packet.c. Run after `npm run build`: node wasm/fuzz/make-corpus-packet.mjs [out-dir]
// (default wasm/fuzz/out/seeds-packet/; the committed corpus-packet/ is these seeds minimized with
// `out/fuzz_packet -merge=1 corpus-packet out/seeds-packet`).
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';

const dist = process.env.SVCPLANE_DIST ?? new URL('../../dist/index.js', import.meta.url).href;
const { createDataplane, loadManifests } = await import(dist);

const outArg = process.argv[2];
const dir = outArg ? resolve(outArg) + '/' : new URL('./out/seeds-packet/', import.meta.url).pathname;
mkdirSync(dir, { recursive: true });

// ---- packets ----
const K = { RAW: 0, REPEAT: 1, REPLY: 2, ICMP: 3, FRAG: 4, BUILD: 5, IMAGE: 6, STATE: 7 };
const FL = { SYN: 0, SYNACK: 1, ACK: 2, FINACK: 3, RST: 4, PSHACK: 5, RSTACK: 6, KEEP: 7 };
const TCPF = [0x02, 0x12, 0x10, 0x11, 0x04, 0x18, 0x14];

function v4(a) { return a.split('.').map(Number); }
function v6(a) {
  const [h, t] = a.split('::');
  const hs = h ? h.split(':') : [];
  const ts = t !== undefined && t !== '' ? t.split(':') : [];
  const words = [...hs, ...Array(8 - hs.length - ts.length).fill('0'), ...ts].map((w) => parseInt(w, 16));
  return words.flatMap((w) => [w >> 8, w & 0xff]);
}
const isV6 = (a) => a.includes(':');
const addr = (a) => (isV6(a) ? v6(a) : v4(a));

function sum16(bytes, acc = 0) {
  for (let i = 0; i < bytes.length; i += 2) acc += (bytes[i] << 8) | (bytes[i + 1] ?? 0);
  while (acc > 0xffff) acc = (acc & 0xffff) + Math.floor(acc / 0x10000);
  return acc;
}
const csum = (bytes, acc = 0) => ~sum16(bytes, acc) & 0xffff;
function crc32c(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return ~c >>> 0;
}
const u16 = (v) => [(v >> 8) & 0xff, v & 0xff];

function l4(proto, src, dst, sport, dport, opts = {}) {
  const payload = opts.payload ?? [];
  let h;
  if (proto === 6) {
    h = [...u16(sport), ...u16(dport), 0, 0, 0x10, 0, 0, 0, 0, 0, 0x50, TCPF[opts.flags ?? FL.SYN], 0xff, 0xff, 0, 0, 0, 0, ...payload];
  } else if (proto === 17) {
    h = [...u16(sport), ...u16(dport), ...u16(8 + payload.length), 0, 0, ...payload];
  } else if (proto === 132) {
    h = [...u16(sport), ...u16(dport), 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 20, 0, 0, 0, 1, 0, 0, 0xff, 0xff, 0, 1, 0, 1, 0, 0, 0, 1, ...payload];
  } else {
    h = [8, 0, 0, 0, 0, 1, 0, 1, ...payload]; // echo request
  }
  const pseudo = [...src, ...dst, 0, proto, ...u16(h.length)];
  if (proto === 6 && !opts.badSum) h.splice(16, 2, ...u16(csum([...pseudo, ...h])));
  if (proto === 17 && !opts.zeroSum) { const c = csum([...pseudo, ...h]); h.splice(6, 2, ...u16(c || 0xffff)); }
  if (proto === 132) { const c = crc32c(h); h.splice(8, 4, c & 0xff, (c >>> 8) & 0xff, (c >>> 16) & 0xff, c >>> 24); }
  if (proto === 1) h.splice(2, 2, ...u16(csum(h)));
  if (proto === 58) { h[0] = 128; h.splice(2, 2, 0, 0); h.splice(2, 2, ...u16(csum([...src, ...dst, 0, 0, ...u16(h.length), 0, 0, 0, 58, ...h]))); }
  return h;
}

// An IP packet: ip(proto, 'a.b.c.d', 'e.f.g.h', sport, dport, {flags, payload, options, ext, id})
function ip(proto, s, d, sport, dport, opts = {}) {
  const src = addr(s), dst = addr(d);
  if (!isV6(s)) {
    const options = opts.options ?? [];
    const body = l4(proto, src, dst, sport, dport, opts);
    const hl = 20 + options.length;
    const hdr = [0x40 | (hl / 4), 0, ...u16(hl + body.length), ...u16(opts.id ?? 0x4242), ...u16(opts.frag ?? 0x4000), 64, proto, 0, 0, ...src, ...dst, ...options];
    hdr.splice(10, 2, ...u16(csum(hdr)));
    return [...hdr, ...body];
  }
  const body = l4(proto, src, dst, sport, dport, opts);
  const ext = opts.ext ?? []; // [[nh, bytes...], ...] chained before the upper layer
  let nh = proto;
  let chain = [];
  for (let i = ext.length - 1; i >= 0; i--) {
    const [type, ...bytes] = ext[i];
    chain = [nh, ...bytes, ...chain];
    nh = type;
  }
  return [0x60, 0, 0, 0, ...u16(chain.length + body.length), nh, 64, ...src, ...dst, ...chain, ...body];
}

const rec = (op, param, ref, fl, pad, data = []) => [(op & 7) | (param << 3), ref & 0xff, fl & 0xff, pad & 0xff, data.length & 0xff, data.length >> 8, ...data];
const raw = (bytes, fl = 0, pad = 0) => rec(K.RAW, 0, 0, fl, pad, bytes);
const build = (fe, src = 0, flags = FL.SYN, data = [], fl = 0) => rec(K.BUILD, src | (flags << 2), fe, fl, 0, data);
const repeat = (ref, flags = FL.ACK, fl = 0) => rec(K.REPEAT, flags, ref, fl, 0);
const reply = (ref, flags = FL.SYNACK, fl = 0, tune = 0) => rec(K.REPLY, flags | (tune << 3), ref, fl, 0);
const imageOp = (action, list, ref, bytes) => rec(K.IMAGE, action | (list << 3), ref, 0, 0, bytes);
// STATE: `xor` XORed into the conntrack table (affinity: 1 for the affinity table) at 8 x ((ref << 4) | at), then
// `packet` as a raw packet.
const stateOp = (affinity, at, ref, xor, packet) => rec(K.STATE, affinity | (at << 1), ref, 0, 0, [...xor, ...packet.slice(xor.length)]);
const icmp = (ref, { full = 0, router = 0, type = 0 } = {}, fl = 0) => rec(K.ICMP, full | (router << 1) | (type << 2), ref, fl, 0);
const frag = (ref, later = 0, offset = 0, fl = 0) => rec(K.FRAG, later | (offset << 1), ref, fl, 0);
const DT = { 0: 0, 1: 4, 2: 6, 5: 7, 10: 8, 11: 9, 30: 10, 31: 11, 60: 12, 61: 13, 600: 14, 21601: 15 };
const dt = (s) => DT[s];
const BREAK = 16, NOSLOT = 32;

function input(image, records, { cap = 3, timeouts = 0, now = 1000 } = {}) {
  const hdr = [cap, timeouts, now & 0xff, now >> 8, image.length & 0xff, (image.length >> 8) & 0xff, (image.length >> 16) & 0xff, image.length >>> 24];
  const body = records.flat();
  const out = new Uint8Array(8 + image.length + body.length);
  out.set(hdr, 0);
  out.set(image, 8);
  out.set(body, 8 + image.length);
  return out;
}

const tcp6 = (s, d, sp, dp_, o) => ip(6, s, d, sp, dp_, o);

// ---- images ----
const files = readdirSync('examples/cluster').map((f) => `examples/cluster/${f}`);
const extra = `
apiVersion: v1
kind: Service
metadata: {name: sig, namespace: tel}
spec:
  clusterIP: 10.96.1.10
  selector: {app: sig}
  ports: [{name: sctp, port: 3868, protocol: SCTP}, {name: udp, port: 5060, protocol: UDP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: sig-1, namespace: tel, labels: {kubernetes.io/service-name: sig}}
addressType: IPv4
ports: [{name: sctp, port: 3868, protocol: SCTP}, {name: udp, port: 5060, protocol: UDP}]
endpoints:
  - addresses: [10.244.1.40]
    nodeName: node-a
  - addresses: [10.244.2.41]
    nodeName: node-b
---
apiVersion: v1
kind: Service
metadata: {name: v6only, namespace: tel}
spec:
  clusterIP: "fd00:96::20"
  clusterIPs: ["fd00:96::20"]
  ipFamilies: [IPv6]
  sessionAffinity: ClientIP
  selector: {app: v6only}
  ports: [{name: dns, port: 53, protocol: UDP}, {name: sctp, port: 3868, protocol: SCTP}, {name: tcp, port: 443, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: v6only-1, namespace: tel, labels: {kubernetes.io/service-name: v6only}}
addressType: IPv6
ports: [{name: dns, port: 53, protocol: UDP}, {name: sctp, port: 3868, protocol: SCTP}, {name: tcp, port: 443, protocol: TCP}]
endpoints:
  - addresses: ["fd00:244:1::40"]
    nodeName: node-a
  - addresses: ["fd00:244:2::41"]
    nodeName: node-b
  - addresses: ["fd00:244:2::42"]
    nodeName: node-b
---
apiVersion: v1
kind: Service
metadata: {name: empty6, namespace: tel}
spec:
  clusterIP: "fd00:96::30"
  clusterIPs: ["fd00:96::30"]
  ipFamilies: [IPv6]
  ports: [{port: 80}]
`;
const manifests = (paths) => paths.flatMap((f) => loadManifests(readFileSync(f, 'utf8'), f));
const sets = [
  { name: 'all', objs: () => manifests(files) },
  { name: 'extra', objs: () => [...manifests(files), ...loadManifests(extra, 'extra.yaml')] },
  { name: 'web', objs: () => manifests(files.filter((f) => f.endsWith('web.yaml') || f.endsWith('nodes.yaml'))) },
];

let n = 0;
const write = (name, bytes) => writeFileSync(`${dir}${String(n++).padStart(3, '0')}-${name}`, bytes);

for (const [si, set] of sets.entries()) {
  const dp = await createDataplane({ node: 'node-a', tableSeed: si * 7 + 1, podCIDRs: ['10.244.1.0/24'] });
  const objs = set.objs();
  const errors = dp.apply(objs);
  if (errors.length) console.warn(`${set.name}: ${errors.length} validation errors`, errors);
  const frontends = () => [...dp.tables.frontends()].sort((a, b) => a.index - b.index);
  const images = [dp.image.slice()];
  const feLists = [frontends()];
  const P = { TCP: 6, UDP: 17, SCTP: 132 };
  if (set.name === 'all') {
    // An updated image: a service deleted (tombstones in the frontend map) and one changed.
    dp.delete('Service', 'shop', 'api');
    dp.delete('EndpointSlice', 'kube-system', 'kube-dns-zk8x2');
    images.push(dp.image.slice());
    feLists.push(frontends());
  }
  for (const [ii, image] of images.entries()) {
    const fes = feLists[ii];
    const tag = `${set.name}${ii ? '-upd' : ''}`;
    // Per frontend: a connection's life: SYN, SYN-ACK reply, ACKs, ICMP errors both ways, FIN, a port
    // reuse after the close, and its first/later fragments.
    for (const [fi, fe] of fes.entries()) {
      const six = isV6(fe.address);
      const cli = six ? 'fd00::1:7' : fe.sourceRanges ? '198.51.100.7' : '192.168.10.7';
      const proto = P[fe.protocol] ?? 6;
      const payload = proto === 17 ? [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] : [];
      write(`${tag}-fe${fi}-flow`, input(image, [
        raw(ip(proto, cli, fe.address, 40000 + fi, fe.port, { flags: FL.SYN, payload })),
        reply(0, FL.SYNACK),
        repeat(0, FL.ACK),
        reply(0, FL.PSHACK),
        icmp(0, { type: 0 }),
        icmp(3, { type: 0, router: 1, full: 1 }),
        icmp(2, { type: 3 }),
        repeat(0, FL.FINACK, dt(1)),
        reply(0, FL.FINACK),
        repeat(0, FL.SYN, dt(5)),
        reply(9, FL.SYNACK),
        frag(0, 0),
        frag(0, 1, 2),
        frag(3, 0, 0, BREAK),
        frag(3, 1, 1),
        build(fi, 1, FL.SYN, [3, 0x9c, 0x41]),
        reply(15, FL.RST),
        repeat(15, FL.ACK, dt(61)),
      ], { cap: 3, now: 100 + fi }));
    }
    // Many flows into a small table: evictions, expiry with short timeouts, affinity.
    const many = [];
    for (let i = 0; i < 24; i++) many.push(build(i % fes.length, i % 4, FL.SYN, [i, 0x80 + i, i * 7], i % 5 === 4 ? dt(1) : 0));
    for (let i = 0; i < 6; i++) many.push(reply(i * 3, FL.SYNACK, BREAK));
    write(`${tag}-evict`, input(image, many.slice(0, 32), { cap: 0, timeouts: 0x3f, now: 5 }));
    write(`${tag}-evict-big`, input(image, many.slice(0, 32), { cap: 4, timeouts: 0, now: 0xfff0 }));
    // Same client, new source ports: affinity on ClientIP services.
    const aff = [];
    for (let i = 0; i < 8; i++) aff.push(build(fes.findIndex((f) => f.address === '10.96.0.30') >>> 0, 1, FL.SYN, [7, 0x10, i], i === 4 ? dt(600) : 0));
    write(`${tag}-affinity`, input(image, aff, { cap: 2 }));
    // Flows, then entries scribbled over as a loaded state file (or a stray write) may leave them: types,
    // peers, expiries, distances and counts that disagree; the flows' next packets and replies must cope.
    if (!ii) {
      const st = [];
      for (let i = 0; i < 6; i++) st.push(build(i % fes.length, i % 4, FL.SYN, [i, 0x40 + i]), reply(i * 2, FL.SYNACK));
      const junk = (k) => Array.from({ length: 48 }, (_, j) => (j * 37 + k * 11) & 0xff);
      for (let k = 0; k < 6; k++) st.push(stateOp(k === 5 ? 1 : 0, k * 3, k, junk(k), [0x45, 0, 0, 20]), repeat(k * 2, FL.ACK), reply(k * 2, FL.ACK));
      write(`${tag}-state`, input(image, st.slice(0, 32), { cap: 1 }));
    }
  }

  // Image changes between batches: backends reordered, leaving, changing port, lists emptying, affinity
  // toggled, detach and re-attach; established flows then find their backend elsewhere or reselect.
  {
    const img = images[0];
    const fes = feLists[0].filter((f) => f.protocol !== 'SCTP').slice(0, 6);
    const cli = (f, k) => (isV6(f.address) ? `fd00::2:${k + 1}` : f.sourceRanges ? `198.51.100.${k + 20}` : `192.168.10.${k + 20}`);
    const syn = (f, k, flags) => ip(P[f.protocol] ?? 6, cli(f, k), f.address, 41000 + k, f.port, { flags, payload: f.protocol === 'UDP' ? [9, 9, 9, 9] : [] });
    for (const action of [0, 1, 2, 3, 4, 6, 7]) {
      const recs = [];
      fes.forEach((f, k) => recs.push(raw(syn(f, k, FL.SYN))));
      fes.forEach((f, k) => recs.push(reply(k)));
      for (let r = 0; r < 8; r++) {
        const k = r % fes.length;
        recs.push(imageOp(action === 4 && r % 2 ? 5 : action, r % 2, r, syn(fes[k], k, FL.ACK)));
        recs.push(repeat(k, FL.ACK));
      }
      write(`${set.name}-image-${action}`, input(img, recs.slice(0, 32), { cap: 3 }));
    }
    // UDP replies whose reverse-NATed checksum comes out as zero (sent as all ones).
    const udp = feLists[0].filter((f) => f.protocol === 'UDP');
    if (udp.length) {
      const recs = [];
      udp.slice(0, 4).forEach((f, k) => {
        recs.push(raw(ip(17, cli(f, k), f.address, 42000 + k, f.port, { payload: [1, 2, 3, 4, 5, 6] })));
        recs.push(reply(recs.length - 1, FL.KEEP, BREAK, 1));
      });
      write(`${set.name}-udp-zero`, input(img, recs));
    }
    if (set.name === 'extra') {
      write('reject6', input(img, [
        raw(tcp6('fd00::1:7', 'fd00:96::30', 1234, 80)),
        raw(tcp6('::', 'fd00:96::30', 1234, 80)),
        raw(tcp6('ff02::1', 'fd00:96::30', 1234, 80)),
        raw(tcp6('fd00::1:8', 'fd00:96::30', 1234, 80, { payload: Array(1300).fill(0x62) })),
        raw(ip(132, '192.168.10.7', '10.96.1.10', 3868, 3868, { frag: 0x2000 })),
        raw(ip(132, 'fd00::1:7', 'fd00:96::20', 3868, 3868)),
        reply(5),
        raw(ip(17, 'fd00::1:7', 'fd00:96::20', 3868, 53, { payload: [1, 2, 3] })),
        reply(7, FL.KEEP, BREAK, 1),
      ]));
    }
  }

  if (si !== 0) continue;
  const image = images[0];
  const tcp = (s, d, sp, dp_, o) => ip(6, s, d, sp, dp_, o);
  // Rejects and drops: no endpoints (with and without a reply slot, v4 and padded), no local endpoints,
  // source ranges, a non-unicast source.
  write('reject', input(image, [
    raw(tcp('192.168.10.7', '10.96.0.40', 1234, 80)),
    raw(tcp('192.168.10.8', '10.96.0.40', 1234, 80, { payload: Array(600).fill(0x61) })),
    raw(tcp('192.168.10.9', '10.96.0.40', 1234, 80), NOSLOT),
    raw(tcp('224.0.0.9', '10.96.0.40', 1234, 80)),
    raw(tcp('0.0.0.0', '10.96.0.40', 1234, 80), 0, 3),
    raw(tcp('192.168.10.7', '10.96.0.50', 1234, 6379)),
    raw(tcp('192.168.10.7', '203.0.113.10', 1234, 443)),
    raw(tcp('198.51.100.9', '203.0.113.10', 1234, 443)),
    raw(tcp('192.168.10.7', '192.168.10.11', 1234, 30080)),
    raw(tcp('10.244.1.5', '192.168.10.11', 1234, 30080)),
    raw(ip(17, '10.244.1.5', '10.96.0.53', 5353, 53, { zeroSum: true, payload: [1, 2, 3] })),
    reply(10),
  ]));
  // Malformed and unusual IP: truncated, bad IHL, total length past the buffer, padding, options,
  // IPv6 extension headers (hop-by-hop, destination options, AH, routing with segments left), jumbo,
  // IPv6 UDP with a zero checksum, bad TCP data offset, ICMP echo, short ICMP, unknown protocol.
  const good = tcp('192.168.10.7', '10.96.0.10', 999, 80);
  const bad = [
    good.slice(0, 19), good.slice(0, 30),
    (() => { const p = good.slice(); p[0] = 0x44; return p; })(),
    (() => { const p = good.slice(); p[0] = 0x4f; return p; })(),
    (() => { const p = good.slice(); p[2] = 0x05; return p; })(),
    (() => { const p = good.slice(); p[32] = 0x40; return p; })(),
    (() => { const p = good.slice(); p[32] = 0xf0; return p; })(),
    (() => { const p = good.slice(); p[0] = 0x55; return p; })(),
    tcp('192.168.10.7', '10.96.0.10', 999, 80, { options: [1, 1, 1, 0] }),
    tcp('192.168.10.7', '10.96.0.10', 998, 80, { options: [0x83, 7, 4, 10, 0, 0, 1, 0] }),
    ip(1, '192.168.10.7', '10.96.0.10', 0, 0),
    ip(1, '192.168.10.7', '10.96.0.10', 0, 0).slice(0, 24),
    ip(47, '192.168.10.7', '10.96.0.10', 0, 0, { payload: [1, 2, 3, 4] }),
    tcp('fd00::1:7', 'fd00:96::10', 999, 80, { ext: [[0, 0, 1, 4, 0, 0, 0, 0]] }),
    tcp('fd00::1:7', 'fd00:96::10', 998, 80, { ext: [[0, 0, 1, 4, 0, 0, 0, 0], [60, 0, 1, 4, 0, 0, 0, 0]] }),
    tcp('fd00::1:7', 'fd00:96::10', 997, 80, { ext: [[51, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2]] }),
    tcp('fd00::1:7', 'fd00:96::10', 996, 80, { ext: [[43, 0, 0, 1, 0, 0, 0, 0]] }),
    tcp('fd00::1:7', 'fd00:96::10', 995, 80, { ext: [[43, 2, 0, 1, 0, 0, 0, 0, ...v6('fd00::9')]] }),
    tcp('fd00::1:7', 'fd00:96::10', 994, 80, { ext: Array(9).fill([60, 0, 1, 4, 0, 0, 0, 0]) }),
    (() => { const p = tcp('fd00::1:7', 'fd00:96::10', 993, 80, { ext: [[0, 0, 1, 4, 0, 0, 0, 0]] }); p[4] = 0; p[5] = 0; return p; })(),
    ip(17, 'fd00::1:7', 'fd00:96::20', 999, 53, { zeroSum: true }),
    ip(58, 'fd00::1:7', 'fd00:96::10', 0, 0),
    tcp('fd00::1:7', 'fd00:96::10', 992, 80).slice(0, 50),
    ip(6, '192.168.10.7', '10.96.0.10', 999, 80, { frag: 0x2000 | 100, id: 7 }),
  ];
  for (let i = 0; i < bad.length; i += 6) write(`malformed-${i}`, input(image, bad.slice(i, i + 6).map((b, k) => raw(b, k % 2 ? 0x40 : 0, k === 3 ? 5 : 0))));
  // Time near the top of the u32 range: expiries saturate.
  write('time-max', input(image, [
    raw(tcp('192.168.10.7', '10.96.0.10', 999, 80)), reply(0), repeat(0, FL.ACK, dt(21601)), reply(0, FL.ACK, dt(21601)), repeat(0, FL.ACK, dt(600)),
  ], { now: 0xffff, timeouts: 0x3f }));
}
console.log(`wrote ${n} seeds to ${dir}`);
