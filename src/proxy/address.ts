// Address helpers for the proxy: host:port parsing as the CLI writes it, the --bind mapping from service
// frontends to local addresses, and one canonical spelling of IP addresses so that keys built from
// manifests, from select() and from sockets compare equal.

import { isIP } from 'node:net';

export type L4Protocol = 'TCP' | 'UDP';

export interface HostPort {
  address: string;
  port: number;
}

/** RFC 5952 spelling of an IPv6 address (lowercase, zeros compressed); IPv4-mapped IPv6 as plain IPv4. */
export function canonicalIp(address: string): string {
  const a = address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
  if (isIP(a) !== 6) return a;
  return new URL(`http://[${a}]/`).hostname.slice(1, -1);
}

export function formatAddress(address: string, port: number): string {
  return isIP(address) === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}

/** 'ADDR', '[V6]', 'ADDR:PORT' or '[V6]:PORT'; port undefined when absent. Throws with the reason. */
function parseAddrPort(text: string, what: string): { address: string; port: number | undefined } {
  let host = text;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) throw new Error(`${what}: missing ']' in "${text}"`);
    host = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) throw new Error(`${what}: expected ':PORT' after ']' in "${text}"`);
      portText = rest.slice(1);
    }
    if (isIP(host) !== 6) throw new Error(`${what}: "${host}" is not an IPv6 address`);
  } else {
    const colon = text.lastIndexOf(':');
    if (colon >= 0) {
      host = text.slice(0, colon);
      portText = text.slice(colon + 1);
    }
    if (isIP(host) !== 4) throw new Error(`${what}: "${host}" is not an IPv4 address (write IPv6 as [ADDR] or [ADDR]:PORT)`);
  }
  if (portText === undefined) return { address: canonicalIp(host), port: undefined };
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535) throw new Error(`${what}: port must be 0..65535, got "${portText}"`);
  return { address: canonicalIp(host), port };
}

/** ADDR:PORT (IPv6 as [ADDR]:PORT); port 0 asks the system for one. Throws with the reason. */
export function parseListenAddress(text: string, what: string): HostPort {
  const r = parseAddrPort(text, what);
  if (r.port === undefined) throw new Error(`${what}: expected ADDR:PORT, got "${text}"`);
  return { address: r.address, port: r.port };
}

/**
 * One --bind rule: FRONTEND=LOCAL. FRONTEND is ADDR, ADDR:PORT or ADDR:PORT/PROTO; LOCAL is ADDR (same
 * port) or ADDR:PORT (only when FRONTEND names a port).
 */
export interface BindRule {
  address: string;
  port?: number;
  protocol?: L4Protocol;
  local: { address: string; port?: number };
  text: string;
}

export function parseBind(text: string): BindRule {
  const eq = text.indexOf('=');
  if (eq < 0) throw new Error(`--bind: expected FRONTEND=LOCAL, got "${text}"`);
  let front = text.slice(0, eq);
  let protocol: L4Protocol | undefined;
  const slash = front.lastIndexOf('/');
  if (slash > front.lastIndexOf(']')) {
    const p = front.slice(slash + 1).toUpperCase();
    if (p !== 'TCP' && p !== 'UDP') throw new Error(`--bind: protocol must be TCP or UDP, got "${front.slice(slash + 1)}"`);
    protocol = p;
    front = front.slice(0, slash);
  }
  const f = parseAddrPort(front, '--bind frontend');
  const l = parseAddrPort(text.slice(eq + 1), '--bind local address');
  if (f.port === undefined && l.port !== undefined) {
    throw new Error(`--bind "${text}": a local port needs a frontend port (ADDR:PORT=LOCAL:PORT); ADDR=LOCAL keeps every port`);
  }
  if (f.port === undefined && protocol !== undefined) throw new Error(`--bind "${text}": /PROTO needs a frontend port`);
  const rule: BindRule = { address: f.address, local: { address: l.address }, text };
  if (f.port !== undefined) rule.port = f.port;
  if (protocol !== undefined) rule.protocol = protocol;
  if (l.port !== undefined) rule.local.port = l.port;
  return rule;
}

/**
 * Where a frontend is served. Without rules every frontend listens on its own address and port (the
 * proxy must own the service IPs). With rules, only frontends that a rule matches are served, the most
 * specific rule winning (ADDR:PORT/PROTO over ADDR:PORT over ADDR), so that the proxy can run on
 * loopback without owning any service IP.
 */
export function localAddressFor(rules: readonly BindRule[], fe: { address: string; port: number; protocol: string }): HostPort | undefined {
  if (rules.length === 0) return { address: fe.address, port: fe.port };
  let best: BindRule | undefined;
  let bestScore = -1;
  for (const r of rules) {
    if (r.address !== canonicalIp(fe.address)) continue;
    if (r.port !== undefined && r.port !== fe.port) continue;
    if (r.protocol !== undefined && r.protocol !== fe.protocol) continue;
    const score = (r.port !== undefined ? 2 : 0) + (r.protocol !== undefined ? 1 : 0);
    if (score > bestScore) {
      best = r;
      bestScore = score;
    }
  }
  if (!best) return undefined;
  return { address: best.local.address, port: best.local.port ?? fe.port };
}

/**
 * One --endpoint-map rule: ENDPOINT=LOCAL. Endpoint (pod) addresses are what select() and route()
 * return; a rule makes the proxy connect somewhere else instead, e.g. to a local server standing in for
 * a pod (Kubernetes refuses loopback endpoint addresses, so local backends always need one). Forms:
 * ADDR=ADDR, ADDR:PORT=ADDR:PORT, and IPv4 CIDR=CIDR of the same length (host bits kept).
 */
export interface EndpointMapRule {
  from: { address: string; port?: number } | { net: number; bits: number };
  to: { address: string; port?: number } | { net: number };
  text: string;
}

function parseV4Cidr(text: string): { net: number; bits: number } | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(text);
  if (!m) return undefined;
  const octets = m.slice(1, 5).map(Number);
  const bits = Number(m[5]);
  if (octets.some((o) => o > 255) || bits > 32) return undefined;
  const word = octets.reduce((a, o) => ((a << 8) | o) >>> 0, 0);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return { net: (word & mask) >>> 0, bits };
}

const v4Word = (a: string): number => a.split('.').reduce((w, o) => ((w << 8) | Number(o)) >>> 0, 0);
const v4Text = (w: number): string => `${w >>> 24}.${(w >>> 16) & 255}.${(w >>> 8) & 255}.${w & 255}`;

export function parseEndpointMap(text: string): EndpointMapRule {
  const eq = text.indexOf('=');
  if (eq < 0) throw new Error(`--endpoint-map: expected ENDPOINT=LOCAL, got "${text}"`);
  const [left, right] = [text.slice(0, eq), text.slice(eq + 1)];
  if (left.includes('/') || right.includes('/')) {
    const f = parseV4Cidr(left);
    const t = parseV4Cidr(right);
    if (!f || !t) throw new Error(`--endpoint-map "${text}": CIDR rules are IPv4 CIDR=CIDR, e.g. 10.244.0.0/16=127.1.0.0/16`);
    if (f.bits !== t.bits) throw new Error(`--endpoint-map "${text}": both CIDRs need the same prefix length`);
    return { from: f, to: { net: t.net }, text };
  }
  const f = parseAddrPort(left, '--endpoint-map endpoint');
  const t = parseAddrPort(right, '--endpoint-map local address');
  if ((f.port === undefined) !== (t.port === undefined)) throw new Error(`--endpoint-map "${text}": give a port on both sides or on neither`);
  const from: { address: string; port?: number } = { address: f.address };
  const to: { address: string; port?: number } = { address: t.address };
  if (f.port !== undefined) from.port = f.port;
  if (t.port !== undefined) to.port = t.port;
  return { from, to, text };
}

/** Where to connect for an endpoint: the first matching rule, in the order given; else the endpoint. */
export function dialAddressFor(rules: readonly EndpointMapRule[], address: string, port: number): HostPort {
  if (rules.length === 0) return { address, port };
  const a = canonicalIp(address);
  const v4 = isIP(a) === 4 ? v4Word(a) : undefined;
  for (const r of rules) {
    if ('bits' in r.from) {
      if (v4 === undefined) continue;
      const mask = r.from.bits === 0 ? 0 : (0xffffffff << (32 - r.from.bits)) >>> 0;
      if (((v4 & mask) >>> 0) !== r.from.net) continue;
      return { address: v4Text(((r.to as { net: number }).net | (v4 & ~mask)) >>> 0), port };
    }
    if (r.from.address !== a || (r.from.port !== undefined && r.from.port !== port)) continue;
    const to = r.to as { address: string; port?: number };
    return { address: to.address, port: to.port ?? port };
  }
  return { address, port };
}
