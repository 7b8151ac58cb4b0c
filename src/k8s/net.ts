// Address handling shared by validation, semantics, the compiler and the CLI.
// Every address inside svcplane is 16 bytes: IPv4 is stored IPv4-mapped (::ffff:a.b.c.d), so that one
// code path in the core serves both families (as Cilium's v4-in-v6 maps do).

export type IpFamily = 'IPv4' | 'IPv6';

/**
 * Parses a dotted-quad IPv4 address strictly (no leading zeros, as Go's netip and the API server) into its
 * 32-bit value; -1 when the text is not one. Hand-rolled and allocation-free: this runs for every endpoint
 * address of every slice, in validation and in semantics.
 */
export function parseIPv4Word(text: string): number {
  let word = 0;
  let parts = 0;
  let value = 0;
  let digits = 0;
  let leadingZero = false;
  const n = text.length;
  for (let i = 0; i <= n; i++) {
    const c = i < n ? text.charCodeAt(i) : 46; // a virtual '.' ends the last part
    if (c === 46) {
      if (digits === 0 || (leadingZero && digits > 1) || value > 255 || parts === 4) return -1;
      word = word * 256 + value;
      parts++;
      value = 0;
      digits = 0;
      leadingZero = false;
    } else if (c >= 48 && c <= 57) {
      if (digits === 0 && c === 48) leadingZero = true;
      if (++digits > 3) return -1;
      value = value * 10 + (c - 48);
    } else {
      return -1;
    }
  }
  return parts === 4 ? word : -1;
}

/** The four bytes of a dotted-quad IPv4 address, or undefined. */
function parseIPv4(text: string): number[] | undefined {
  const w = parseIPv4Word(text);
  return w < 0 ? undefined : [(w >>> 24) & 0xff, (w >>> 16) & 0xff, (w >>> 8) & 0xff, w & 0xff];
}

/** Parses an IPv6 address (with optional embedded IPv4 tail) into 16 bytes; no zone ids. */
function parseIPv6(text: string): Uint8Array | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(text) || text.length < 2) return undefined;
  let words: number[] = [];
  let tail = text;
  const lastColon = text.lastIndexOf(':');
  const v4Part = text.slice(lastColon + 1);
  let v4: number[] | undefined;
  if (v4Part.includes('.')) {
    v4 = parseIPv4(v4Part);
    if (!v4) return undefined;
    tail = text.slice(0, lastColon + 1) + '0:0';
  }
  const halves = tail.split('::');
  if (halves.length > 2) return undefined;
  const parseGroups = (s: string): number[] | undefined => {
    if (s === '') return [];
    const groups = s.split(':');
    const r: number[] = [];
    for (const g of groups) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      r.push(parseInt(g, 16));
    }
    return r;
  };
  const head = parseGroups(halves[0] as string);
  if (!head) return undefined;
  if (halves.length === 2) {
    const rest = parseGroups(halves[1] as string);
    if (!rest) return undefined;
    const missing = 8 - head.length - rest.length;
    if (missing < 1) return undefined;
    words = [...head, ...new Array<number>(missing).fill(0), ...rest];
  } else {
    if (head.length !== 8) return undefined;
    words = head;
  }
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    out[i * 2] = ((words[i] as number) >> 8) & 0xff;
    out[i * 2 + 1] = (words[i] as number) & 0xff;
  }
  if (v4) out.set(v4, 12);
  return out;
}

export interface ParsedIp {
  family: IpFamily;
  /** 16 bytes, IPv4 mapped into ::ffff:0:0/96. */
  bytes: Uint8Array;
}

/** Parses an IPv4 or IPv6 address. IPv4-mapped IPv6 text (::ffff:1.2.3.4) counts as IPv6, as in Go. */
export function parseIp(text: string): ParsedIp | undefined {
  const w = parseIPv4Word(text);
  if (w >= 0) {
    const bytes = new Uint8Array(16);
    writeMappedIPv4(bytes, 0, w);
    return { family: 'IPv4', bytes };
  }
  if (!text.includes(':')) return undefined;
  const v6 = parseIPv6(text);
  return v6 ? { family: 'IPv6', bytes: v6 } : undefined;
}

/** Writes the 16-byte form of IPv4 address `word` (parseIPv4Word), ::ffff:a.b.c.d, into `out` at `offset`. */
export function writeMappedIPv4(out: Uint8Array, offset: number, word: number): void {
  out.fill(0, offset, offset + 10);
  out[offset + 10] = 0xff;
  out[offset + 11] = 0xff;
  out[offset + 12] = word >>> 24;
  out[offset + 13] = (word >>> 16) & 0xff;
  out[offset + 14] = (word >>> 8) & 0xff;
  out[offset + 15] = word & 0xff;
}

export function isV4Mapped(bytes: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false;
  return bytes[10] === 0xff && bytes[11] === 0xff;
}

/** Canonical text: dotted quad for IPv4(-mapped), RFC 5952 for IPv6. */
export function formatIp(bytes: Uint8Array): string {
  if (isV4Mapped(bytes)) return `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push(((bytes[i * 2] as number) << 8) | (bytes[i * 2 + 1] as number));
  // Longest run of zero words (length >= 2) becomes '::'; the first one wins ties (RFC 5952 4.2.3).
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (ws: number[]): string => ws.map((w) => w.toString(16)).join(':');
  if (bestStart < 0) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLen))}`;
}

/** Normalizes address text (e.g. '2001:DB8:0::1' -> '2001:db8::1'); undefined when invalid. */
export function normalizeIp(text: string): string | undefined {
  const p = parseIp(text);
  return p ? formatIp(p.bytes) : undefined;
}

export function familyOf(text: string): IpFamily | undefined {
  return parseIp(text)?.family;
}

export interface ParsedCidr {
  family: IpFamily;
  /** Network address, 16 bytes (IPv4 mapped), host bits cleared. */
  bytes: Uint8Array;
  /** Prefix length in the 128-bit space (IPv4 prefixes + 96). */
  prefix128: number;
  /** Prefix length as written (0..32 or 0..128). */
  prefix: number;
}

/** Parses a CIDR such as 10.0.0.0/8 or 2001:db8::/32. Host bits are cleared (Go's ParseCIDR does the same). */
export function parseCidr(text: string): ParsedCidr | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const ip = parseIp(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  if (!ip || !/^\d{1,3}$/.test(lenText)) return undefined;
  const prefix = Number(lenText);
  const max = ip.family === 'IPv4' ? 32 : 128;
  if (prefix > max) return undefined;
  const prefix128 = ip.family === 'IPv4' ? prefix + 96 : prefix;
  const bytes = ip.bytes.slice();
  for (let bit = prefix128; bit < 128; bit++) {
    const idx = bit >> 3;
    bytes[idx] = (bytes[idx] as number) & ~(0x80 >> (bit & 7));
  }
  return { family: ip.family, bytes, prefix128, prefix };
}

export function isLoopback(bytes: Uint8Array): boolean {
  if (isV4Mapped(bytes)) return bytes[12] === 127;
  for (let i = 0; i < 15; i++) if (bytes[i] !== 0) return false;
  return bytes[15] === 1;
}

/** Formats address:port with brackets for IPv6 ('[2001:db8::1]:80'). */
export function formatHostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** Parses 'ADDR:PORT' or '[V6]:PORT'; undefined when malformed. */
export function parseHostPort(text: string): { address: string; bytes: Uint8Array; family: IpFamily; port: number } | undefined {
  let host: string;
  let portText: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0 || text[close + 1] !== ':') return undefined;
    host = text.slice(1, close);
    portText = text.slice(close + 2);
    if (!host.includes(':')) return undefined;
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) return undefined;
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(':')) return undefined; // bare IPv6 needs brackets
  }
  if (!/^\d{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port > 65535) return undefined;
  const ip = parseIp(host);
  if (!ip) return undefined;
  return { address: formatIp(ip.bytes), bytes: ip.bytes, family: ip.family, port };
}

export const PROTOCOL_NUMBERS = { TCP: 6, UDP: 17, SCTP: 132 } as const;
export type Protocol = keyof typeof PROTOCOL_NUMBERS;

const PROTOCOL_NAMES = new Map<number, Protocol>(Object.entries(PROTOCOL_NUMBERS).map(([name, n]) => [n, name as Protocol]));

export function protocolName(num: number): Protocol | undefined {
  return PROTOCOL_NAMES.get(num);
}

/** The IP protocol number of a protocol name (TCP, UDP, SCTP), or undefined: own names only, so that a
 * name such as 'constructor' is not found on the object's prototype. */
export function protocolNumber(name: string): number | undefined {
  return Object.hasOwn(PROTOCOL_NUMBERS, name) ? PROTOCOL_NUMBERS[name as Protocol] : undefined;
}
