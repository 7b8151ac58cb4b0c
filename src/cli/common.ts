// What the svcplane commands share: option sets, argument parsing, loading manifests or an image into a
// selector, and output helpers. Commands live in main.ts (and replay.ts, proxy.ts, bench.ts).

import { readFileSync, openSync, readSync, closeSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { readManifestPaths } from '../k8s/load.js';
import { type ValidationError, formatError } from '../k8s/types.js';
import { parseHostPort } from '../k8s/net.js';
import { createDataplane, openImage, type Selector } from '../engine/dataplane.js';
import { MAGIC } from '../compile/layout.js';

export interface Io {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  stdin?: NodeJS.ReadableStream;
}

export class UsageError extends Error {}

export const NODE_OPTIONS = {
  node: { type: 'string' },
  'node-ip': { type: 'string', multiple: true },
  zone: { type: 'string' },
  'cluster-seed': { type: 'string' },
  'table-seed': { type: 'string' },
  'ingress-class': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

export const NODE_HELP = `Node options (manifest inputs only):
  --node NAME          node the tables are built for (default: this host's name, as kube-proxy)
  --node-ip IP         address NodePort frontends listen on (repeatable; default: the Node's InternalIP/ExternalIP)
  --zone ZONE          the node's zone for topology hints (default: the Node's topology.kubernetes.io/zone label)
  --cluster-seed N     cluster-wide seed of the flow hash and Maglev tables (default 0x53564350; same on every node)
  --table-seed N       seed of the frontend hash-map placement (default 0, so images are reproducible)
  --ingress-class NAME the IngressClass whose Ingresses are compiled (default: the default IngressClass)`;

export function parse<T extends ParseArgsConfig['options']>(args: string[], options: T): { values: Record<string, unknown>; positionals: string[] } {
  try {
    const r = parseArgs({ args, options, allowPositionals: true, strict: true });
    return { values: r.values as Record<string, unknown>, positionals: r.positionals };
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

export function seed(text: unknown, fallback: number, flag: string): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new UsageError(`--${flag} must be an integer 0..4294967295, got "${String(text)}"`);
  return n;
}

export function isImage(path: string): boolean {
  if (path === '-') return false;
  try {
    if (!statSync(path).isFile()) return false;
    const fd = openSync(path, 'r');
    const head = Buffer.alloc(4);
    readSync(fd, head, 0, 4, 0);
    closeSync(fd);
    return head.readUInt32LE(0) === MAGIC;
  } catch {
    return false;
  }
}

export interface Loaded {
  selector: Selector;
  errors: ValidationError[];
  fromImage: boolean;
}

/** Extra dataplane options a command may set (the packet path's table size). */
export interface LoadOptions {
  conntrackCapacity?: number;
  affinityCapacity?: number;
}

export async function load(paths: string[], values: Record<string, unknown>, io: Io, extra: LoadOptions = {}): Promise<Loaded> {
  if (paths.length === 0) throw new UsageError('no input: give manifest files, directories, - for stdin, or one image');
  if (paths.length === 1 && isImage(paths[0] as string)) {
    for (const f of ['node', 'node-ip', 'zone', 'cluster-seed', 'table-seed', 'ingress-class']) {
      if (values[f] !== undefined) io.stderr(`note: --${f} is ignored for a compiled image (it was fixed at compile time)\n`);
    }
    const selector = await openImage(new Uint8Array(readFileSync(paths[0] as string)), { conntrackCapacity: extra.conntrackCapacity, affinityCapacity: extra.affinityCapacity });
    return { selector, errors: [], fromImage: true };
  }
  const { objects, errors } = await readManifestPaths(paths, io.stdin);
  let node = values.node as string | undefined;
  if (!node) {
    node = hostname();
    io.stderr(`note: no --node given; building tables for this host, "${node}"\n`);
  }
  const dp = await createDataplane({
    node,
    nodeAddresses: values['node-ip'] as string[] | undefined,
    zone: values.zone as string | undefined,
    clusterSeed: seed(values['cluster-seed'], 0x53564350, 'cluster-seed'),
    tableSeed: seed(values['table-seed'], 0, 'table-seed'),
    ingressClass: values['ingress-class'] as string | undefined,
    conntrackCapacity: extra.conntrackCapacity,
    affinityCapacity: extra.affinityCapacity,
  });
  for (const ip of (values['node-ip'] as string[] | undefined) ?? []) {
    if (!parseHostPort(`${ip.includes(':') ? `[${ip}]` : ip}:1`)) throw new UsageError(`--node-ip: invalid IP address "${ip}"`);
  }
  const applyErrors = dp.apply(objects.map((o) => o.object));
  for (const n of dp.lastReport.notes) io.stderr(`note: ${n.object}: ${n.message}\n`);
  return { selector: dp, errors: [...errors, ...applyErrors], fromImage: false };
}

export function printErrors(errors: readonly ValidationError[], io: Io): void {
  for (const e of errors) io.stderr(`error: ${formatError(e)}\n`);
}

export function outputFormat(v: unknown): 'table' | 'json' {
  if (v === undefined || v === 'table') return 'table';
  if (v === 'json') return 'json';
  throw new UsageError(`-o must be table or json, got "${String(v)}"`);
}

export function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

/** Rows as aligned text columns: each column but the last padded to its widest cell + 2; lines trimmed. */
export function columns(rows: string[][]): string[] {
  const cols = Math.max(...rows.map((r) => r.length));
  const widths = Array.from({ length: cols }, (_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)) + 2);
  return rows.map((r) => r.map((cell, c) => (c < cols - 1 ? pad(cell, widths[c] as number) : cell)).join('').trimEnd());
}

