// Prometheus metrics (prom-client, on a registry of our own so that a program embedding the proxy keeps
// its default registry to itself) and the admin server: /metrics and /healthz.

import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Registry } from 'prom-client';

/** The series of one (protocol, service, backend), resolved once: label lookups cost per call. */
export interface BackendSeries {
  total: Counter.Internal;
  active: Gauge.Internal<string>;
  toBackend: Counter.Internal;
  toClient: Counter.Internal;
}
import type { HostPort } from './address.js';

export class ProxyMetrics {
  readonly registry = new Registry();

  /** Open L4 connections and UDP flows, and HTTP requests in flight, per service and backend. */
  readonly active = new Gauge({
    name: 'svcplane_proxy_connections_active',
    help: 'Open TCP connections, UDP flows and in-flight HTTP requests, by protocol, service and backend',
    labelNames: ['protocol', 'service', 'backend'] as const,
    registers: [this.registry],
  });
  readonly total = new Counter({
    name: 'svcplane_proxy_connections_total',
    help: 'TCP connections, UDP flows and HTTP requests forwarded to a backend, by protocol, service and backend',
    labelNames: ['protocol', 'service', 'backend'] as const,
    registers: [this.registry],
  });
  readonly bytes = new Counter({
    name: 'svcplane_proxy_bytes_total',
    help: 'Payload bytes forwarded, by protocol, service, backend and direction (to_backend, to_client)',
    labelNames: ['protocol', 'service', 'backend', 'direction'] as const,
    registers: [this.registry],
  });
  readonly selections = new Counter({
    name: 'svcplane_proxy_selections_total',
    help: 'Backend selections (select() and route() calls), by protocol, service and verdict',
    labelNames: ['protocol', 'service', 'verdict'] as const,
    registers: [this.registry],
  });
  readonly errors = new Counter({
    name: 'svcplane_proxy_errors_total',
    help: 'Failures by reason (refused, reset, timeout, listen, tls, no_endpoints, no_route, ...)',
    labelNames: ['protocol', 'reason'] as const,
    registers: [this.registry],
  });
  readonly retries = new Counter({
    name: 'svcplane_proxy_http_retries_total',
    help: 'HTTP requests sent again (idempotent, nothing sent yet: see the retry rule)',
    labelNames: ['service', 'reason'] as const,
    registers: [this.registry],
  });
  readonly httpResponses = new Counter({
    name: 'svcplane_proxy_http_responses_total',
    help: 'HTTP responses by service (empty when none matched) and status code',
    labelNames: ['service', 'code'] as const,
    registers: [this.registry],
  });
  readonly drained = new Counter({
    name: 'svcplane_proxy_drained_total',
    help: 'Connections closed because their backend left the EndpointSlices and the grace period ended',
    labelNames: ['protocol'] as const,
    registers: [this.registry],
  });
  readonly tables = new Gauge({
    name: 'svcplane_proxy_table_entries',
    help: 'Entries of the tables being served: frontends, service ports, backends, image bytes, listeners, TLS certificates',
    labelNames: ['table'] as const,
    registers: [this.registry],
  });
  readonly reloads = new Counter({
    name: 'svcplane_proxy_reloads_total',
    help: 'Manifest reloads by result (ok, rejected)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly reloadErrors = new Counter({
    name: 'svcplane_proxy_reload_errors_total',
    help: 'Errors found in rejected reloads (syntax, validation, TLS secrets)',
    registers: [this.registry],
  });
  readonly lastReload = new Gauge({
    name: 'svcplane_proxy_last_reload_success_timestamp_seconds',
    help: 'When the current state was loaded (Unix seconds)',
    registers: [this.registry],
  });

  private readonly series = new Map<string, BackendSeries>();

  /** The per-backend series for a connection or request (cached: one map lookup on the hot path). */
  backend(protocol: string, service: string, backend: string): BackendSeries {
    const key = `${protocol}|${service}|${backend}`;
    let s = this.series.get(key);
    if (!s) {
      const labels = { protocol, service, backend };
      s = {
        total: this.total.labels(labels),
        active: this.active.labels(labels),
        toBackend: this.bytes.labels({ ...labels, direction: 'to_backend' }),
        toClient: this.bytes.labels({ ...labels, direction: 'to_client' }),
      };
      this.series.set(key, s);
    }
    return s;
  }

  private readonly counters = new Map<string, Counter.Internal>();

  /** A labelled counter child, cached by its label values (selections and responses happen per request). */
  private child(metric: string, c: Counter<string>, labels: Record<string, string>): Counter.Internal {
    const key = `${metric}|${Object.values(labels).join('|')}`;
    let ch = this.counters.get(key);
    if (!ch) this.counters.set(key, (ch = c.labels(labels)));
    return ch;
  }

  selection(protocol: string, service: string, verdict: string): void {
    this.child('selections', this.selections, { protocol, service, verdict }).inc();
  }

  httpResponse(service: string, code: number): void {
    this.child('responses', this.httpResponses, { service, code: String(code) }).inc();
  }

  constructor() {
    // Zero the reload counters so that rate() and alerts see them before the first failure.
    this.reloads.inc({ result: 'ok' }, 0);
    this.reloads.inc({ result: 'rejected' }, 0);
    this.reloadErrors.inc(0);
  }
}

/** Serves GET /metrics (Prometheus text format) and GET /healthz on `at`. */
export async function startAdminServer(at: HostPort, metrics: ProxyMetrics, healthy: () => { ok: boolean; detail: string }): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
    } else if (path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        (e: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${String(e)}\n`),
      );
    } else if (path === '/healthz') {
      const h = healthy();
      res.writeHead(h.ok ? 200 : 503, { 'content-type': 'text/plain' }).end(`${h.detail}\n`);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: /metrics, /healthz\n');
    }
  });
  await listen(server, at);
  return server;
}

/** server.listen as a promise that rejects on the listen error (EADDRINUSE, EADDRNOTAVAIL, EACCES). */
export function listen(server: Server | import('node:net').Server, at: HostPort): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error): void => reject(e);
    server.once('error', onError);
    server.listen({ host: at.address, port: at.port, exclusive: true }, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
