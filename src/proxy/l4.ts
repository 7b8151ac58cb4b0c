// L4 proxying: one listener per served frontend (TCP through node:net, UDP through node:dgram). Every
// new TCP connection or UDP flow asks select() for its backend with the client's real address and port
// and the frontend's service address (not the local address it was accepted on), so session affinity and
// Maglev behave as in the kernel dataplane; afterwards the connection never changes backend.

import { createServer, connect, type Server, type Socket } from 'node:net';
import { createSocket, type Socket as UdpSocket, type RemoteInfo } from 'node:dgram';
import { isIP } from 'node:net';
import type { Selection } from '../index.js';
import { canonicalIp, formatAddress, type HostPort, type L4Protocol } from './address.js';
import { backendKey, type ConnectionTracker } from './drain.js';
import type { Logger } from './log.js';
import { listen, type ProxyMetrics } from './metrics.js';

/** A service frontend as the tables list it. */
export interface Frontend {
  address: string;
  port: number;
  protocol: L4Protocol;
  service: string;
}

export interface ListenTarget {
  frontend: Frontend;
  local: HostPort;
}

export interface L4Options {
  /** How long a backend may take to accept a TCP connection. */
  connectTimeoutMs: number;
  /** A UDP flow with no packet either way for this long is forgotten. */
  udpIdleMs: number;
  /** Where to connect for a selected endpoint (--endpoint-map); identity when not mapped. */
  dial: (address: string, port: number) => HostPort;
}

/** What the L4 proxy needs of the library: one flow's decision (Dataplane.select). */
export interface FlowSelector {
  select(flow: { protocol: L4Protocol; src: string; sport: number; dst: string; dport: number }): Selection;
}

interface UdpFlow {
  upstream: UdpSocket;
  last: number;
  timer: NodeJS.Timeout;
  /** Datagrams that arrived before the upstream socket was connected; null once connected. */
  queue: Buffer[] | null;
  send: (m: Buffer) => void;
  close: () => void;
}

interface Listener {
  key: string;
  target: ListenTarget;
  /** The address actually bound (the port, when 0 was asked for). */
  bound: HostPort;
  tcp?: Server;
  udp?: UdpSocket;
  flows?: Map<string, UdpFlow>;
}

/** Datagrams held per UDP flow while its upstream socket connects; more are dropped, as a full queue would. */
const UDP_QUEUE_LIMIT = 64;

/** Resets a socket (RST where Node can: a connected socket), or just destroys it. */
function reset(s: Socket): void {
  if (s.destroyed) return;
  if (s.connecting || !s.remoteAddress) s.destroy();
  else s.resetAndDestroy();
}

function errorReason(e: NodeJS.ErrnoException, connected: boolean): string {
  if (e.code === 'ECONNREFUSED') return 'refused';
  if (e.code === 'ECONNRESET' || e.code === 'EPIPE') return 'reset';
  if (e.code === 'ETIMEDOUT') return 'timeout';
  if (e.code === 'EHOSTUNREACH' || e.code === 'ENETUNREACH') return 'unreachable';
  return connected ? 'backend_error' : 'connect_error';
}

export class L4Proxy {
  private readonly listeners = new Map<string, Listener>();
  /** Listen failures already logged, so a reload does not repeat them unless they change. */
  private readonly failed = new Map<string, string>();
  private closed = false;

  constructor(
    private readonly selector: FlowSelector,
    private readonly metrics: ProxyMetrics,
    private readonly tracker: ConnectionTracker,
    private readonly log: Logger,
    private readonly opts: L4Options,
  ) {}

  /** The listeners open now (frontend, and the local address it is served on). */
  get bound(): { frontend: Frontend; local: HostPort }[] {
    return [...this.listeners.values()].map((l) => ({ frontend: l.target.frontend, local: l.bound }));
  }

  /**
   * Opens listeners for new targets and closes those no longer wanted. Closing a TCP listener stops new
   * connections only (existing ones drain by the endpoint rules); closing a UDP one ends its flows, whose
   * replies could no longer be sent. A listen failure is logged and retried at the next sync.
   */
  async sync(targets: readonly ListenTarget[]): Promise<void> {
    const wanted = new Map<string, ListenTarget>();
    for (const t of targets) {
      const key = `${t.frontend.protocol}|${formatAddress(t.local.address, t.local.port)}`;
      const other = wanted.get(key);
      if (other) {
        this.log('warn', 'bind_conflict', {
          local: formatAddress(t.local.address, t.local.port), protocol: t.frontend.protocol,
          kept: formatAddress(other.frontend.address, other.frontend.port), ignored: formatAddress(t.frontend.address, t.frontend.port),
        });
        continue;
      }
      wanted.set(key, t);
    }
    for (const [key, l] of this.listeners) {
      if (!wanted.has(key)) {
        this.listeners.delete(key);
        this.closeListener(l);
      }
    }
    const opening: Promise<void>[] = [];
    for (const [key, t] of wanted) {
      const l = this.listeners.get(key);
      if (l) l.target = t; // same local address, maybe a remapped frontend: new flows use the new one
      else opening.push(this.open(key, t));
    }
    await Promise.all(opening);
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.listeners.values()];
    this.listeners.clear();
    await Promise.all(all.map((l) => this.closeListener(l)));
  }

  private async open(key: string, t: ListenTarget): Promise<void> {
    const l: Listener = { key, target: t, bound: t.local };
    try {
      if (t.frontend.protocol === 'TCP') {
        // allowHalfOpen: a client's FIN is passed on without closing our side; pauseOnConnect: nothing is
        // read before the backend is connected, so the client is held back by TCP flow control.
        const server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (s) => this.onTcp(l, s));
        server.on('error', (e) => this.log('error', 'listener_error', { key, error: e.message }));
        await listen(server, t.local);
        const a = server.address();
        if (a && typeof a === 'object') l.bound = { address: canonicalIp(a.address), port: a.port };
        l.tcp = server;
      } else {
        const sock = createSocket({ type: isIP(t.local.address) === 6 ? 'udp6' : 'udp4' });
        await new Promise<void>((resolve, reject) => {
          sock.once('error', reject);
          sock.bind({ address: t.local.address, port: t.local.port, exclusive: true }, () => {
            sock.off('error', reject);
            resolve();
          });
        });
        sock.on('error', (e) => this.log('error', 'listener_error', { key, error: e.message }));
        l.bound = { address: canonicalIp(sock.address().address), port: sock.address().port };
        l.flows = new Map();
        sock.on('message', (msg, rinfo) => this.onUdp(l, msg, rinfo));
        l.udp = sock;
      }
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      this.metrics.errors.inc({ protocol: t.frontend.protocol, reason: 'listen' });
      if (this.failed.get(key) !== err.code) {
        this.failed.set(key, err.code ?? err.message);
        this.log('warn', 'listen_failed', {
          protocol: t.frontend.protocol, frontend: formatAddress(t.frontend.address, t.frontend.port),
          local: formatAddress(t.local.address, t.local.port), service: t.frontend.service, error: err.code ?? err.message,
          hint: err.code === 'EADDRNOTAVAIL' ? 'this host does not own the address: map it with --bind FRONTEND=LOCAL' : undefined,
        });
      }
      return;
    }
    this.failed.delete(key);
    if (this.closed) {
      await this.closeListener(l);
      return;
    }
    this.listeners.set(key, l);
    this.log('info', 'listen', { protocol: t.frontend.protocol, frontend: formatAddress(t.frontend.address, t.frontend.port), local: formatAddress(l.bound.address, l.bound.port), service: t.frontend.service });
  }

  private closeListener(l: Listener): Promise<void> {
    return new Promise((resolve) => {
      if (l.tcp) l.tcp.close(() => resolve());
      else if (l.udp) {
        for (const f of [...(l.flows?.values() ?? [])]) f.close();
        l.udp.close(() => resolve());
      } else resolve();
    });
  }

  private select(protocol: L4Protocol, fe: Frontend, src: string, sport: number): Selection | undefined {
    try {
      const sel = this.selector.select({ protocol, src, sport, dst: fe.address, dport: fe.port });
      this.metrics.selection(protocol, sel.service ?? fe.service, sel.verdict);
      return sel;
    } catch (e) {
      this.metrics.errors.inc({ protocol, reason: 'select' });
      this.log('error', 'select_failed', { protocol, src, error: (e as Error).message });
      return undefined;
    }
  }

  private onTcp(l: Listener, client: Socket): void {
    const fe = l.target.frontend;
    client.on('error', () => {}); // reported through the upstream side or 'close' below
    const src = canonicalIp(client.remoteAddress ?? '');
    const sel = src ? this.select('TCP', fe, src, client.remotePort ?? 0) : undefined;
    if (!sel || sel.verdict !== 'forward' || !sel.backend) {
      this.metrics.errors.inc({ protocol: 'TCP', reason: sel?.verdict === 'reject' || sel?.verdict === 'drop' ? 'no_endpoints' : 'no_backend' });
      // reject answers with a reset, as kube-proxy's REJECT; drop cannot stay silent once the kernel has
      // accepted the connection, so it is closed without one.
      if (sel?.verdict === 'drop') client.destroy();
      else reset(client);
      return;
    }
    const service = sel.service ?? fe.service;
    const be = sel.backend;
    const m = this.metrics.backend('TCP', service, formatAddress(be.address, be.port));
    m.total.inc();
    m.active.inc();

    const to = this.opts.dial(be.address, be.port);
    const upstream = connect({ host: to.address, port: to.port, allowHalfOpen: true, noDelay: true });
    let connected = false;
    let failed = false;
    const fail = (reason: string): void => {
      if (failed) return;
      failed = true;
      this.metrics.errors.inc({ protocol: 'TCP', reason });
      reset(client);
      reset(upstream);
    };
    const untrack = this.tracker.add({
      protocol: 'TCP', service, backend: backendKey(canonicalIp(be.address), be.port),
      close: () => {
        failed = true;
        reset(client);
        reset(upstream);
      },
    });
    let open = 2;
    const closed = (): void => {
      if (--open > 0) return;
      untrack();
      m.active.dec();
    };

    upstream.setTimeout(this.opts.connectTimeoutMs, () => fail('timeout'));
    upstream.once('connect', () => {
      connected = true;
      upstream.setTimeout(0);
      client.on('data', (b: Buffer) => m.toBackend.inc(b.length));
      upstream.on('data', (b: Buffer) => m.toClient.inc(b.length));
      // pipe() gives backpressure both ways and passes each side's FIN on with end(): half-close.
      client.pipe(upstream);
      upstream.pipe(client);
    });
    upstream.on('error', (e: NodeJS.ErrnoException) => fail(errorReason(e, connected)));
    client.on('error', () => {
      if (!failed) {
        failed = true;
        this.metrics.errors.inc({ protocol: 'TCP', reason: 'client_reset' });
        reset(upstream);
      }
    });
    // One side fully closed: the other gets what is already buffered, then closes too (its peer is gone).
    upstream.on('close', () => {
      if (!client.destroyed) client.end(() => client.destroy());
      closed();
    });
    client.on('close', () => {
      if (!upstream.destroyed) {
        if (connected) upstream.end(() => upstream.destroy());
        else upstream.destroy();
      }
      closed();
    });
  }

  private onUdp(l: Listener, msg: Buffer, rinfo: RemoteInfo): void {
    const flows = l.flows as Map<string, UdpFlow>;
    const key = formatAddress(rinfo.address, rinfo.port);
    let flow = flows.get(key);
    if (!flow) {
      flow = this.newUdpFlow(l, rinfo, key);
      if (!flow) return;
    }
    flow.last = Date.now();
    if (flow.queue) {
      if (flow.queue.length < UDP_QUEUE_LIMIT) flow.queue.push(msg);
      else this.metrics.errors.inc({ protocol: 'UDP', reason: 'queue_full' });
    } else flow.send(msg);
  }

  private newUdpFlow(l: Listener, rinfo: RemoteInfo, key: string): UdpFlow | undefined {
    const fe = l.target.frontend;
    const sel = this.select('UDP', fe, canonicalIp(rinfo.address), rinfo.port);
    if (!sel || sel.verdict !== 'forward' || !sel.backend) {
      // Without a raw socket there is no ICMP to send back: reject and drop both drop the datagram.
      this.metrics.errors.inc({ protocol: 'UDP', reason: sel?.verdict === 'reject' || sel?.verdict === 'drop' ? 'no_endpoints' : 'no_backend' });
      return undefined;
    }
    const be = sel.backend;
    const service = sel.service ?? fe.service;
    const series = this.metrics.backend('UDP', service, formatAddress(be.address, be.port));
    series.total.inc();
    series.active.inc();
    const to = this.opts.dial(be.address, be.port);
    const upstream = createSocket({ type: isIP(to.address) === 6 ? 'udp6' : 'udp4' });
    const listener = l.udp as UdpSocket;
    let done = false;
    const flow: UdpFlow = {
      upstream,
      last: Date.now(),
      queue: [],
      timer: setTimeout(() => idle(), this.opts.udpIdleMs),
      send: (m) => {
        series.toBackend.inc(m.length);
        upstream.send(m, (e) => {
          if (e) this.metrics.errors.inc({ protocol: 'UDP', reason: errorReason(e as NodeJS.ErrnoException, true) });
        });
      },
      close: () => {
        if (done) return;
        done = true;
        clearTimeout(flow.timer);
        (l.flows as Map<string, UdpFlow>).delete(key);
        untrack();
        series.active.dec();
        upstream.close();
      },
    };
    // One timer per flow, re-armed for the remaining time instead of on every packet.
    const idle = (): void => {
      const left = flow.last + this.opts.udpIdleMs - Date.now();
      if (left <= 0) flow.close();
      else flow.timer = setTimeout(idle, left);
    };
    flow.timer.unref();
    const untrack = this.tracker.add({ protocol: 'UDP', service, backend: backendKey(canonicalIp(be.address), be.port), close: () => flow.close() });
    upstream.on('message', (reply) => {
      flow.last = Date.now();
      series.toClient.inc(reply.length);
      listener.send(reply, rinfo.port, rinfo.address);
    });
    // A connected UDP socket reports the backend's ICMP port unreachable as ECONNREFUSED.
    upstream.on('error', (e: NodeJS.ErrnoException) => {
      this.metrics.errors.inc({ protocol: 'UDP', reason: errorReason(e, true) });
      flow.close();
    });
    upstream.connect(to.port, to.address, () => {
      const queued = flow.queue ?? [];
      flow.queue = null;
      for (const m of queued) flow.send(m);
    });
    (l.flows as Map<string, UdpFlow>).set(key, flow);
    return flow;
  }
}
