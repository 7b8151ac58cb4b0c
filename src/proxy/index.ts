// svcplane proxy: a user-space L4 and HTTP Ingress proxy built only on the library's public API
// (createDataplane, apply, delete, select, route, tables). This file wires the parts together:
//   manifests.ts  reload = read, check on a scratch dataplane, apply the difference
//   watch.ts      reload on file changes
//   l4.ts         TCP and UDP listeners for the service frontends (select() per connection / flow)
//   http.ts       HTTP/1.1 reverse proxy for Ingress rules (route() per request), TLS by SNI (tls.ts)
//   drain.ts      connections of endpoints that left the EndpointSlices are closed after a grace period
//   metrics.ts    Prometheus metrics and the admin server (/metrics, /healthz)

import type { Server } from 'node:http';
import { createDataplane, dumpTables, formatError, type Dataplane, type DataplaneOptions } from '../index.js';
import { canonicalIp, dialAddressFor, localAddressFor, type BindRule, type EndpointMapRule, type HostPort, type L4Protocol } from './address.js';
import { ConnectionTracker, endpointSet } from './drain.js';
import { HttpIngress } from './http.js';
import { L4Proxy, type Frontend, type ListenTarget } from './l4.js';
import { silentLogger, type Logger } from './log.js';
import { ManifestSource, type ReloadOutcome } from './manifests.js';
import { ProxyMetrics, startAdminServer } from './metrics.js';
import { TlsStore } from './tls.js';
import { watchPaths } from './watch.js';

export { parseBind, parseEndpointMap, parseListenAddress, type BindRule, type EndpointMapRule, type HostPort } from './address.js';
export { jsonLogger, silentLogger, type Logger } from './log.js';
export type { ReloadOutcome } from './manifests.js';

export interface ProxyOptions {
  /** Manifest files and directories (as `svcplane compile` takes them). */
  paths: string[];
  /** Dataplane options: node (required), nodeAddresses, zone, ingressClass, seeds, engine. */
  dataplane: DataplaneOptions;
  /** Frontend -> local address rules (see localAddressFor); none: every frontend on its own address. */
  binds?: BindRule[];
  /** Endpoint -> address actually connected to (see dialAddressFor); none: the endpoint itself. */
  endpointMap?: EndpointMapRule[];
  /** Ingress listeners. */
  http?: HostPort[];
  https?: HostPort[];
  /** /metrics and /healthz. */
  admin?: HostPort;
  /** Reload when the paths change (default true). */
  watch?: boolean;
  debounceMs?: number;
  /** How long connections to a removed endpoint may continue (default 30 s). */
  graceMs?: number;
  udpIdleMs?: number;
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  keepAliveMs?: number;
  log?: Logger;
}

export const PROXY_DEFAULTS = {
  graceMs: 30_000,
  udpIdleMs: 30_000,
  connectTimeoutMs: 5_000,
  requestTimeoutMs: 60_000,
  keepAliveMs: 4_000,
  debounceMs: 200,
} as const;

/** The first load failed: nothing is served. */
export class ProxyStartError extends Error {
  constructor(readonly outcome: ReloadOutcome) {
    super(`the manifests have errors:\n${outcome.errors.map((e) => `  ${formatError(e)}`).join('\n')}`);
  }
}

export type ReloadTrigger = 'start' | 'watch' | 'signal' | 'api';

export class ServiceProxy {
  readonly metrics = new ProxyMetrics();
  private readonly tracker: ConnectionTracker;
  private readonly l4: L4Proxy;
  private readonly http: HttpIngress;
  private readonly source: ManifestSource;
  private admin: Server | undefined;
  private stopWatch: (() => void) | undefined;
  private running: Promise<ReloadOutcome> | undefined;
  private again = false;
  private closed = false;
  private lastOutcome: ReloadOutcome | undefined;
  private readonly log: Logger;

  private constructor(
    readonly dataplane: Dataplane,
    private readonly opts: ProxyOptions,
  ) {
    this.log = opts.log ?? silentLogger;
    const graceMs = opts.graceMs ?? PROXY_DEFAULTS.graceMs;
    this.tracker = new ConnectionTracker(graceMs, this.metrics, this.log);
    const connectTimeoutMs = opts.connectTimeoutMs ?? PROXY_DEFAULTS.connectTimeoutMs;
    const rules = opts.endpointMap ?? [];
    const dial = (address: string, port: number): HostPort => dialAddressFor(rules, address, port);
    this.l4 = new L4Proxy(dataplane, this.metrics, this.tracker, this.log, { connectTimeoutMs, udpIdleMs: opts.udpIdleMs ?? PROXY_DEFAULTS.udpIdleMs, dial });
    this.http = new HttpIngress(dataplane, this.metrics, this.tracker, this.log, {
      connectTimeoutMs,
      requestTimeoutMs: opts.requestTimeoutMs ?? PROXY_DEFAULTS.requestTimeoutMs,
      keepAliveMs: opts.keepAliveMs ?? PROXY_DEFAULTS.keepAliveMs,
      graceMs,
      dial,
    }, new TlsStore());
    this.source = new ManifestSource(opts.paths, dataplane, opts.dataplane);
  }

  /** Loads the manifests (ProxyStartError when they have errors), opens every listener, starts watching. */
  static async start(opts: ProxyOptions): Promise<ServiceProxy> {
    const dp = await createDataplane(opts.dataplane);
    const p = new ServiceProxy(dp, opts);
    // Watching starts before the first read, so that a change made while it runs is not missed.
    if (opts.watch ?? true) {
      p.stopWatch = watchPaths(opts.paths, opts.debounceMs ?? PROXY_DEFAULTS.debounceMs, () => void p.reload('watch'), p.log);
    }
    try {
      const first = await p.reload('start');
      if (!first.ok) throw new ProxyStartError(first);
      await p.http.listen(opts.http ?? [], opts.https ?? []);
      if (opts.admin) p.admin = await startAdminServer(opts.admin, p.metrics, () => p.health());
    } catch (e) {
      await p.close();
      throw e;
    }
    return p;
  }

  /** Listeners open now. */
  get listening(): { l4: { frontend: Frontend; local: HostPort }[]; http: { scheme: 'http' | 'https'; local: HostPort }[]; admin?: HostPort } {
    const a = this.admin?.address();
    const admin = a && typeof a === 'object' ? { address: canonicalIp(a.address), port: a.port } : undefined;
    return { l4: this.l4.bound, http: this.http.bound, ...(admin ? { admin } : {}) };
  }

  /** Open connections, UDP flows and in-flight HTTP requests. */
  get connections(): number {
    return this.tracker.size;
  }

  health(): { ok: boolean; detail: string } {
    if (this.closed) return { ok: false, detail: 'shutting down' };
    const o = this.lastOutcome;
    return { ok: true, detail: `ok: ${this.l4.bound.length} L4 listeners, ${this.connections} connections, last reload ${o?.ok ? 'ok' : 'rejected (serving the last good state)'}` };
  }

  /**
   * Reloads the manifests. Reloads never overlap: one asked for while another runs happens right after
   * it (once, however many were asked for), so the last state of the files always gets loaded.
   */
  reload(trigger: ReloadTrigger = 'api'): Promise<ReloadOutcome> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.doReload(trigger).finally(() => {
      this.running = undefined;
      if (this.again && !this.closed) {
        this.again = false;
        void this.reload(trigger);
      }
    });
    return this.running;
  }

  private async doReload(trigger: ReloadTrigger): Promise<ReloadOutcome> {
    const t0 = performance.now();
    let outcome: ReloadOutcome;
    let set;
    try {
      ({ outcome, set } = await this.source.reload());
    } catch (e) {
      outcome = { ok: false, errors: [{ object: 'reload', field: '', message: (e as Error).message }], notes: [], warnings: [], applied: 0, deleted: 0, unchanged: 0 };
    }
    if (set && outcome.ok && !this.closed) {
      const live = endpointSet(set.objects, canonicalIp);
      this.tracker.update(live);
      this.http.updateEndpoints(live);
      this.http.setTls(set.tls);
      await this.l4.sync(this.listenTargets());
      this.metrics.lastReload.set(Date.now() / 1000);
    }
    this.lastOutcome = outcome.ok ? outcome : { ...outcome, ok: false };
    this.metrics.reloads.inc({ result: outcome.ok ? 'ok' : 'rejected' });
    if (!outcome.ok) this.metrics.reloadErrors.inc(outcome.errors.length);
    this.updateTableMetrics(set?.tls.size);
    this.log(outcome.ok ? 'info' : 'error', 'reload', {
      trigger,
      result: outcome.ok ? 'ok' : 'rejected',
      applied: outcome.applied,
      deleted: outcome.deleted,
      unchanged: outcome.unchanged,
      errors: outcome.errors.map(formatError),
      notes: outcome.notes.map((n) => `${n.object}: ${n.message}`),
      warnings: outcome.warnings,
      listeners: this.l4.bound.length,
      connections: this.connections,
      durationMs: Math.round((performance.now() - t0) * 10) / 10,
    });
    return outcome;
  }

  /** The TCP and UDP frontends of the tables, mapped to where they are served. */
  private listenTargets(): ListenTarget[] {
    const out: ListenTarget[] = [];
    const seen = new Set<string>();
    for (const fe of dumpTables(this.dataplane.tables).frontends) {
      if (fe.protocol !== 'TCP' && fe.protocol !== 'UDP') continue; // SCTP: no socket API in Node
      const key = `${fe.protocol}|${fe.address}|${fe.port}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const frontend: Frontend = { address: canonicalIp(fe.address), port: fe.port, protocol: fe.protocol as L4Protocol, service: fe.service };
      const local = localAddressFor(this.opts.binds ?? [], frontend);
      if (local) out.push({ frontend, local });
    }
    return out;
  }

  private tlsCount = 0;

  private updateTableMetrics(tlsCertificates: number | undefined): void {
    const d = dumpTables(this.dataplane.tables);
    const m = this.metrics.tables;
    m.set({ table: 'frontends' }, d.stats.frontends);
    m.set({ table: 'service_ports' }, d.stats.services);
    m.set({ table: 'backends' }, d.stats.backends);
    m.set({ table: 'image_bytes' }, this.dataplane.imageStats.bytes);
    const routes = this.dataplane.routes;
    m.set({ table: 'ingress_hosts' }, routes ? routes.hostCount + routes.wildcardCount : 0);
    m.set({ table: 'listeners' }, this.l4.bound.length + this.http.bound.length);
    if (tlsCertificates !== undefined) this.tlsCount = tlsCertificates;
    m.set({ table: 'tls_certificates' }, this.tlsCount);
  }

  /** Stops listening and watching, closes every connection; the dataplane stays usable. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopWatch?.();
    await this.running?.catch(() => undefined);
    // Listeners stop accepting first (synchronously, inside the promises), then the open connections
    // are closed, which lets the listeners' close callbacks run.
    const closing = Promise.all([
      this.l4.close(),
      this.http.close(),
      this.admin ? new Promise<void>((resolve) => {
        this.admin?.close(() => resolve());
        this.admin?.closeAllConnections();
      }) : undefined,
    ]);
    const open = this.connections;
    this.tracker.closeAll();
    await closing;
    this.log('info', 'stop', { closedConnections: open });
  }
}

export const startProxy = (opts: ProxyOptions): Promise<ServiceProxy> => ServiceProxy.start(opts);
