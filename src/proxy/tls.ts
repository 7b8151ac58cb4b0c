// TLS termination for Ingress: the certificates named by each Ingress's spec.tls, taken from Secrets of
// type kubernetes.io/tls given among the manifests (the library has no use for Secrets, so the proxy
// takes them out before apply()). The certificate is chosen by SNI: exact host, then a wildcard
// ('*.example.com' covers one label), then the default (the first entry without hosts, else the first).

import { createSecureContext, type SecureContext } from 'node:tls';
import type { ValidationError } from '../index.js';

interface TlsEntry {
  context: SecureContext;
  pem: { cert: string; key: string };
  /** 'namespace/secretName', for logs. */
  secret: string;
}

export interface TlsBuild {
  store: TlsStore;
  errors: ValidationError[];
  /** Ingresses naming a Secret that is not among the manifests (served with the default certificate). */
  warnings: string[];
}

export function isSecret(o: object): boolean {
  const s = o as { apiVersion?: unknown; kind?: unknown };
  return s.apiVersion === 'v1' && s.kind === 'Secret';
}

interface SecretObject {
  metadata?: { name?: string; namespace?: string };
  type?: string;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}

interface IngressObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string };
  spec?: { tls?: { hosts?: string[]; secretName?: string }[] };
}

export class TlsStore {
  private readonly exact = new Map<string, TlsEntry>();
  private readonly wildcard = new Map<string, TlsEntry>();
  private fallback: TlsEntry | undefined;

  get size(): number {
    return new Set([...this.exact.values(), ...this.wildcard.values(), ...(this.fallback ? [this.fallback] : [])].map((e) => e.secret)).size;
  }

  /** The certificate for clients that send no SNI name. */
  get defaultPem(): { cert: string; key: string } | undefined {
    return this.fallback?.pem;
  }

  /** The context for an SNI server name (undefined when no certificate was given at all). */
  lookup(servername: string | undefined): SecureContext | undefined {
    const name = (servername ?? '').toLowerCase().replace(/\.$/, '');
    const hit = this.exact.get(name) ?? (name.includes('.') ? this.wildcard.get(name.slice(name.indexOf('.') + 1)) : undefined);
    return (hit ?? this.fallback)?.context;
  }

  /** The secret serving an SNI name (tests and logs). */
  secretFor(servername: string): string | undefined {
    const name = servername.toLowerCase();
    return (this.exact.get(name) ?? this.wildcard.get(name.slice(name.indexOf('.') + 1)) ?? this.fallback)?.secret;
  }

  /** Builds the store from the Secrets and Ingresses of one manifest set. */
  static build(secrets: readonly object[], ingresses: readonly object[]): TlsBuild {
    const store = new TlsStore();
    const errors: ValidationError[] = [];
    const warnings: string[] = [];
    const byName = new Map<string, SecretObject>();
    for (const o of secrets) {
      const s = o as SecretObject;
      byName.set(`${s.metadata?.namespace || 'default'}/${s.metadata?.name ?? ''}`, s);
    }
    const contexts = new Map<string, TlsEntry | null>();
    let firstHostless: TlsEntry | undefined;
    let first: TlsEntry | undefined;
    const contextOf = (ref: string, s: SecretObject): TlsEntry | null => {
      const cached = contexts.get(ref);
      if (cached !== undefined) return cached;
      let entry: TlsEntry | null = null;
      const object = `Secret ${ref}`;
      if (s.type !== 'kubernetes.io/tls') {
        errors.push({ object, field: 'type', message: `an Ingress TLS secret must be of type kubernetes.io/tls, got "${String(s.type)}"` });
      } else {
        const cert = field(s, 'tls.crt');
        const key = field(s, 'tls.key');
        if (!cert) errors.push({ object, field: 'data[tls.crt]', message: 'missing or empty' });
        else if (!key) errors.push({ object, field: 'data[tls.key]', message: 'missing or empty' });
        else {
          try {
            entry = { context: createSecureContext({ cert, key }), pem: { cert, key }, secret: ref };
          } catch (e) {
            errors.push({ object, field: 'data', message: `not a usable certificate and key: ${(e as Error).message}` });
          }
        }
      }
      contexts.set(ref, entry);
      return entry;
    };

    for (const o of ingresses) {
      const ing = o as IngressObject;
      if (ing.kind !== 'Ingress' || ing.apiVersion !== 'networking.k8s.io/v1') continue;
      const ns = ing.metadata?.namespace || 'default';
      for (const t of ing.spec?.tls ?? []) {
        if (!t.secretName) continue; // SNI passthrough of hosts without a secret is not a thing here
        const ref = `${ns}/${t.secretName}`;
        const s = byName.get(ref);
        if (!s) {
          warnings.push(`Ingress ${ns}/${ing.metadata?.name ?? ''}: spec.tls secret ${ref} is not among the manifests; its hosts get the default certificate`);
          continue;
        }
        const entry = contextOf(ref, s);
        if (!entry) continue;
        const hosts = t.hosts ?? [];
        first ??= entry;
        if (hosts.length === 0) firstHostless ??= entry;
        for (const h of hosts) {
          const host = h.toLowerCase();
          // The first Ingress naming a host keeps it (the oldest wins in the rules too).
          if (host.startsWith('*.')) {
            if (!store.wildcard.has(host.slice(2))) store.wildcard.set(host.slice(2), entry);
          } else if (!store.exact.has(host)) store.exact.set(host, entry);
        }
      }
    }
    store.fallback = firstHostless ?? first;
    return { store, errors, warnings };
  }
}

/** data (base64) or stringData (plain, as kubectl accepts in manifests) of a Secret. */
function field(s: SecretObject, name: string): string | undefined {
  const plain = s.stringData?.[name];
  if (typeof plain === 'string' && plain !== '') return plain;
  const b64 = s.data?.[name];
  if (typeof b64 !== 'string' || b64 === '') return undefined;
  return Buffer.from(b64, 'base64').toString('utf8');
}
