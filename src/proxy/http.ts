// HTTP/1.1 reverse proxy for Ingress rules. route() picks the rule (host, longest path) and the pod in
// one call; this file only moves the request there and the response back, with X-Forwarded-*, pooled
// keep-alive connections per backend, and the status codes an Ingress controller answers with:
// 404 no rule matches, 503 the Service has no usable endpoint, 502 the backend failed, 504 it timed out.
//
// Retry rule (the only retries there are, each counted in svcplane_proxy_http_retries_total):
//   - the request is idempotent (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) and has no body, and
//   - nothing of it can have reached a backend: the connection was refused (ECONNREFUSED), or a pooled
//     keep-alive connection turned out to be closed by the backend before it answered anything;
//   then it is sent once more: after a refusal to the first other backend route() picks for the same
//   client on the following source ports (Maglev spreads those over the backends; a Service with
//   ClientIP affinity keeps its backend and so is not retried), after a stale pooled connection to the same backend on a new
//   connection. Anything else (a reset after the request was sent, a timeout, a body) is a 502 or 504.

import { Agent, createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { RouteSelection } from '../index.js';
import { canonicalIp, formatAddress, type HostPort } from './address.js';
import { backendKey, type ConnectionTracker, type EndpointSet } from './drain.js';
import type { Logger } from './log.js';
import { listen, type ProxyMetrics } from './metrics.js';
import type { TlsStore } from './tls.js';

/** What the HTTP proxy needs of the library: Dataplane.route. */
export interface RequestRouter {
  route(req: { host?: string; path: string; src?: string; sport?: number }): RouteSelection;
}

export interface HttpOptions {
  /** How long a backend may take to accept a connection (502 after). */
  connectTimeoutMs: number;
  /** How long a backend may stay silent while a request is in flight (504 when no response yet). */
  requestTimeoutMs: number;
  /** Pooled connections idle longer than this are closed; below Node's 5 s server default to avoid races. */
  keepAliveMs: number;
  /** Grace period for pooled connections to backends that left the EndpointSlices. */
  graceMs: number;
  /** Where to connect for a selected endpoint (--endpoint-map); identity when not mapped. */
  dial: (address: string, port: number) => HostPort;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
/**
 * Source ports tried for a retry after a refusal, until route() names another backend: with n backends
 * each try stays on the refusing one with probability 1/n, so 16 tries miss another with <= 2^-16.
 */
const RETRY_PORT_TRIES = 16;

/** Headers minus hop-by-hop ones, including those the Connection header names (RFC 9110 7.6.1). */
function endToEnd(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const named = new Set(String(headers.connection ?? '').toLowerCase().split(',').map((s) => s.trim()).filter(Boolean));
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || HOP_BY_HOP.has(k) || named.has(k)) continue;
    out[k] = v;
  }
  return out;
}

function hasBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (len !== undefined && len !== '0');
}

type Scheme = 'http' | 'https';

interface Attempt {
  service: string;
  backend: { address: string; port: number };
  src: string;
  sport: number;
  host: string | undefined;
  retried: boolean;
}

export class HttpIngress {
  private readonly servers: { scheme: Scheme; server: Server; bound: HostPort }[] = [];
  private readonly agents = new Map<string, Agent>();

  constructor(
    private readonly router: RequestRouter,
    private readonly metrics: ProxyMetrics,
    private readonly tracker: ConnectionTracker,
    private readonly log: Logger,
    private readonly opts: HttpOptions,
    private tls: TlsStore,
  ) {}

  get bound(): { scheme: Scheme; local: HostPort }[] {
    return this.servers.map((s) => ({ scheme: s.scheme, local: s.bound }));
  }

  /** Opens the listeners; a failure here is fatal (the operator asked for these addresses). */
  async listen(http: readonly HostPort[], https: readonly HostPort[]): Promise<void> {
    for (const at of http) {
      const server = createServer({ keepAlive: true }, (req, res) => this.handle(req, res, 'http'));
      await this.start(server, 'http', at);
    }
    for (const at of https) {
      const server = createHttpsServer(
        {
          // The certificate is picked per handshake, so a reload that changes Secrets needs no restart.
          SNICallback: (name, cb) => {
            const ctx = this.tls.lookup(name);
            if (ctx) cb(null, ctx);
            else cb(new Error(`no TLS certificate for "${name}"`));
          },
        },
        (req, res) => this.handle(req, res, 'https'),
      );
      server.on('tlsClientError', (e) => {
        this.metrics.errors.inc({ protocol: 'HTTPS', reason: 'tls' });
        this.log('warn', 'tls_error', { error: e.message });
      });
      await this.start(server, 'https', at);
      this.applyDefaultCertificate(server);
    }
  }

  /** New Secrets after a reload. */
  setTls(store: TlsStore): void {
    this.tls = store;
    for (const s of this.servers) if (s.scheme === 'https') this.applyDefaultCertificate(s.server);
  }

  /** Endpoints after a reload: pooled connections to backends that left every slice are closed. */
  updateEndpoints(live: EndpointSet): void {
    const present = new Set<string>();
    for (const set of live.values()) for (const k of set) present.add(k);
    for (const [key, agent] of this.agents) {
      if (present.has(key)) continue;
      this.agents.delete(key);
      // Idle pooled sockets carry nothing: close them now; requests in flight are the tracker's (grace).
      for (const list of Object.values(agent.freeSockets)) for (const s of list ?? []) s.destroy();
      setTimeout(() => agent.destroy(), this.opts.graceMs).unref();
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => {
      s.server.close(() => resolve());
      s.server.closeAllConnections();
    })));
    this.servers.length = 0;
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
  }

  private async start(server: Server, scheme: Scheme, at: HostPort): Promise<void> {
    server.on('clientError', (_e, socket) => {
      this.metrics.errors.inc({ protocol: 'HTTP', reason: 'bad_request' });
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    });
    await listen(server, at);
    const a = server.address();
    const bound = a && typeof a === 'object' ? { address: canonicalIp(a.address), port: a.port } : at;
    this.servers.push({ scheme, server, bound });
    this.log('info', 'listen', { protocol: scheme.toUpperCase(), local: formatAddress(bound.address, bound.port) });
  }

  /** Clients without SNI get the default certificate (setSecureContext replaces it in place). */
  private applyDefaultCertificate(server: Server): void {
    const pem = this.tls.defaultPem;
    if (pem) (server as unknown as { setSecureContext(o: { cert: string; key: string }): void }).setSecureContext(pem);
  }

  private agentFor(address: string, port: number): Agent {
    const key = backendKey(canonicalIp(address), port);
    let agent = this.agents.get(key);
    if (!agent) {
      agent = new Agent({ keepAlive: true, timeout: this.opts.keepAliveMs, scheduling: 'lifo' });
      this.agents.set(key, agent);
    }
    return agent;
  }

  private respond(res: ServerResponse, code: number, service: string, text: string): void {
    this.metrics.httpResponse(service, code);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const body = `${text}\n`;
    res.writeHead(code, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) }).end(body);
  }

  private handle(req: IncomingMessage, res: ServerResponse, scheme: Scheme): void {
    const host = req.headers.host;
    const path = req.url ?? '/';
    const src = canonicalIp(req.socket.remoteAddress ?? '');
    const sport = req.socket.remotePort ?? 0;
    let r: RouteSelection;
    try {
      r = this.router.route({ host, path, src, sport });
    } catch (e) {
      this.metrics.errors.inc({ protocol: 'HTTP', reason: 'route' });
      this.log('error', 'route_failed', { host, path, error: (e as Error).message });
      this.respond(res, 500, '', 'internal error while routing');
      return;
    }
    const service = r.service ?? '';
    this.metrics.selection('HTTP', service, String(r.status));
    if (r.status === 404 || !r.service) {
      this.metrics.errors.inc({ protocol: 'HTTP', reason: 'no_route' });
      this.respond(res, 404, service, `no Ingress rule matches host "${host ?? ''}" path "${path.split('?', 1)[0] ?? ''}"`);
      return;
    }
    if (r.status === 503 || !r.backend) {
      this.metrics.errors.inc({ protocol: 'HTTP', reason: 'no_endpoints' });
      this.respond(res, 503, service, `service unavailable: ${r.reason ?? 'no usable endpoint'}`);
      return;
    }
    this.forward(req, res, scheme, { service, backend: r.backend, src, sport, host, retried: false });
  }

  private forward(req: IncomingMessage, res: ServerResponse, scheme: Scheme, at: Attempt): void {
    const be = at.backend;
    const backendName = formatAddress(be.address, be.port);
    const m = this.metrics.backend('HTTP', at.service, backendName);
    const headers = endToEnd(req.headers);
    const xff = req.headers['x-forwarded-for'];
    headers['x-forwarded-for'] = xff ? `${String(xff)}, ${at.src}` : at.src;
    headers['x-forwarded-proto'] = scheme;
    if (at.host !== undefined) headers['x-forwarded-host'] = at.host;
    const to = this.opts.dial(be.address, be.port);
    const agent = this.agentFor(be.address, be.port);
    const up = httpRequest({ host: to.address, port: to.port, method: req.method, path: req.url, headers, agent });
    m.total.inc();
    m.active.inc();
    let finished = false;
    const untrack = this.tracker.add({ protocol: 'HTTP', service: at.service, backend: backendKey(canonicalIp(be.address), be.port), close: () => up.destroy(new Error('backend left the EndpointSlices')) });
    const done = (): void => {
      if (finished) return;
      finished = true;
      untrack();
      m.active.dec();
    };

    let connectTimer: NodeJS.Timeout | undefined;
    up.on('socket', (s) => {
      if (!s.connecting) return;
      connectTimer = setTimeout(() => up.destroy(Object.assign(new Error('connect timeout'), { code: 'ECONNTIMEOUT' })), this.opts.connectTimeoutMs);
      s.once('connect', () => clearTimeout(connectTimer));
    });
    up.setTimeout(this.opts.requestTimeoutMs, () => up.destroy(Object.assign(new Error('backend timeout'), { code: 'ETIMEDOUT' })));
    // The client went away first: stop the backend request too (counted as the client's doing).
    let clientGone = false;
    res.on('close', () => {
      if (res.writableFinished) return;
      clientGone = true;
      up.destroy();
    });

    up.on('response', (pres) => {
      const code = pres.statusCode ?? 502;
      this.metrics.httpResponse(at.service, code);
      res.writeHead(code, pres.statusMessage, endToEnd(pres.headers));
      pres.on('data', (b: Buffer) => m.toClient.inc(b.length));
      pres.pipe(res);
      pres.on('end', done);
      pres.on('error', () => res.destroy());
      pres.on('aborted', () => res.destroy());
    });
    up.on('close', () => {
      clearTimeout(connectTimer);
      done();
    });
    up.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(connectTimer);
      done();
      if (clientGone) {
        this.metrics.errors.inc({ protocol: 'HTTP', reason: 'client_abort' });
        return;
      }
      if (res.headersSent || res.destroyed) {
        this.metrics.errors.inc({ protocol: 'HTTP', reason: 'reset' });
        res.destroy();
        return;
      }
      const retry = this.retryTarget(req, at, e, up.reusedSocket);
      if (retry) {
        this.metrics.retries.inc({ service: at.service, reason: retry.reason });
        this.forward(req, res, scheme, retry.attempt);
        return;
      }
      const reason = e.code === 'ECONNREFUSED' ? 'refused' : e.code === 'ETIMEDOUT' ? 'timeout' : e.code === 'ECONNTIMEOUT' ? 'connect_timeout' : e.code === 'ECONNRESET' ? 'reset' : 'backend_error';
      this.metrics.errors.inc({ protocol: 'HTTP', reason });
      if (reason === 'timeout') this.respond(res, 504, at.service, `gateway timeout: ${backendName} did not answer in ${this.opts.requestTimeoutMs} ms`);
      else this.respond(res, 502, at.service, `bad gateway: ${backendName}: ${e.code ?? e.message}`);
    });
    if (at.retried) up.end(); // a retry carries no body (a condition of retrying)
    else {
      req.on('data', (b: Buffer) => m.toBackend.inc(b.length));
      req.pipe(up);
    }
  }

  /** The retry rule at the top of this file; undefined when the request must fail. */
  private retryTarget(req: IncomingMessage, at: Attempt, e: NodeJS.ErrnoException, reused: boolean): { attempt: Attempt; reason: string } | undefined {
    if (at.retried || !IDEMPOTENT.has(req.method ?? '') || hasBody(req)) return undefined;
    if (reused && (e.code === 'ECONNRESET' || e.code === 'EPIPE')) {
      return { attempt: { ...at, retried: true }, reason: 'stale_keepalive' };
    }
    if (e.code !== 'ECONNREFUSED') return undefined;
    for (let i = 1; i <= RETRY_PORT_TRIES; i++) {
      const sport = (at.sport + i) & 0xffff;
      const r = this.router.route({ host: at.host, path: req.url ?? '/', src: at.src, sport });
      if (r.status !== 200 || !r.backend || r.service !== at.service) return undefined;
      if (r.backend.address !== at.backend.address || r.backend.port !== at.backend.port) {
        return { attempt: { ...at, backend: r.backend, sport, retried: true }, reason: 'refused' };
      }
    }
    return undefined;
  }
}
