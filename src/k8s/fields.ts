// Field readers and name checks shared by the validators (validate.ts, validate-ingress.ts): each reads
// one field of an untyped object, reports a wrong type at its path, and returns the value or undefined.

import type { ValidationError } from './types.js';

export type Obj = Record<string, unknown>;

export class Errors {
  readonly list: ValidationError[] = [];
  constructor(private readonly object: string) {}

  /** Records `message` at `field`; a check that passed returns undefined, which records nothing. */
  add(field: string, message: string | undefined): void {
    if (message !== undefined) this.list.push({ object: this.object, field, message });
  }
}

export const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

export const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

export function dnsLabel(s: string): string | undefined {
  if (s.length <= 63 && DNS_LABEL.test(s)) return undefined;
  return `must be a DNS-1123 label (at most 63 characters matching [a-z0-9]([-a-z0-9]*[a-z0-9])?), got ${show(s)}`;
}

export function dns1035Label(s: string): string | undefined {
  if (s.length <= 63 && DNS1035_LABEL.test(s)) return undefined;
  return `must be a DNS-1035 label (at most 63 characters matching [a-z]([-a-z0-9]*[a-z0-9])?), got ${show(s)}`;
}

export function dnsSubdomain(s: string): string | undefined {
  if (s.length <= 253 && DNS_SUBDOMAIN.test(s)) return undefined;
  return `must be a DNS-1123 subdomain (at most 253 characters, dot-separated [a-z0-9]([-a-z0-9]*[a-z0-9])?), got ${show(s)}`;
}

/** [prefix/]name with a DNS-subdomain prefix; label keys, annotation keys, appProtocol. */
export function qualifiedName(s: string): string | undefined {
  const parts = s.split('/');
  const name = parts.length === 2 ? (parts[1] as string) : s;
  const prefix = parts.length === 2 ? (parts[0] as string) : undefined;
  const ok =
    parts.length <= 2 &&
    name.length <= 63 &&
    QUALIFIED_NAME.test(name) &&
    (prefix === undefined || (prefix !== '' && dnsSubdomain(prefix) === undefined));
  if (ok) return undefined;
  return `must be a qualified name ([DNS-subdomain/]name, name at most 63 characters matching ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]), got ${show(s)}`;
}

export function absent(v: unknown): v is undefined | null {
  return v === undefined || v === null;
}

export function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function readString(e: Errors, v: unknown, path: string): string | undefined {
  if (absent(v)) return undefined;
  if (typeof v === 'string') return v;
  e.add(path, `must be a string, got ${show(v)}`);
  return undefined;
}

export function readInt(e: Errors, v: unknown, path: string): number | undefined {
  if (absent(v)) return undefined;
  if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
  e.add(path, `must be an integer, got ${show(v)}`);
  return undefined;
}

export function readObject(e: Errors, v: unknown, path: string): Obj | undefined {
  if (absent(v)) return undefined;
  if (isObj(v)) return v;
  e.add(path, `must be an object, got ${show(v)}`);
  return undefined;
}

export function readArray(e: Errors, v: unknown, path: string): unknown[] | undefined {
  if (absent(v)) return undefined;
  if (Array.isArray(v)) return v;
  e.add(path, `must be an array, got ${show(v)}`);
  return undefined;
}

/** A list of strings; undefined (after reporting each bad entry) unless every entry is a string. */
export function readStringList(e: Errors, v: unknown, path: string): string[] | undefined {
  const list = readArray(e, v, path);
  if (!list) return undefined;
  let ok = true;
  list.forEach((item, i) => {
    if (typeof item === 'string') return;
    e.add(`${path}[${i}]`, `must be a string, got ${show(item)}`);
    ok = false;
  });
  return ok ? (list as string[]) : undefined;
}

/** A string-to-string map; entries with other values are reported and left out. */
export function readStringMap(e: Errors, v: unknown, path: string): Record<string, string> | undefined {
  const map = readObject(e, v, path);
  if (!map) return undefined;
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(map)) {
    if (typeof value === 'string') out[key] = value;
    else e.add(`${path}[${key}]`, `must be a string, got ${show(value)}`);
  }
  return out;
}

/** One of `allowed`; `fallback` (the API default) when absent; undefined after reporting anything else. */
export function readEnum<T extends string>(e: Errors, v: unknown, path: string, allowed: readonly T[], fallback?: T): T | undefined {
  if (absent(v)) return fallback;
  const s = readString(e, v, path);
  if (s === undefined) return undefined;
  if ((allowed as readonly string[]).includes(s)) return s as T;
  e.add(path, notOneOf(allowed, s));
  return undefined;
}

export function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return JSON.stringify(v);
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

export function notOneOf(allowed: readonly string[], got: string): string {
  return `must be one of ${allowed.join(', ')}, got ${show(got)}`;
}
