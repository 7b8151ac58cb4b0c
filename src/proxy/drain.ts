// Connection tracking for live changes. A connection keeps its backend for its whole life; what a
// reload decides is only whether that backend still exists. An endpoint that is still listed in an
// EndpointSlice (ready, or terminating) keeps its connections: select() stops giving it new ones by
// itself. An endpoint that left every slice of its service has its connections closed once the grace
// period ends (and kept, if it comes back before then).

import type { Logger } from './log.js';
import type { ProxyMetrics } from './metrics.js';

export interface TrackedConnection {
  protocol: 'TCP' | 'UDP' | 'HTTP';
  /** 'namespace/name' of the Service, as select() reports it. */
  service: string;
  /** 'address:port' of the backend (see backendKey). */
  backend: string;
  /** Closes the connection (reset for TCP, flow teardown for UDP, request abort for HTTP). */
  close: () => void;
}

interface Entry {
  conn: TrackedConnection;
  timer?: NodeJS.Timeout;
}

/** Endpoints present in the EndpointSlices, per service: 'ns/name' -> set of backendKey(address, port). */
export type EndpointSet = Map<string, Set<string>>;

export function backendKey(address: string, port: number): string {
  return `${address}|${port}`;
}

export class ConnectionTracker {
  private readonly entries = new Set<Entry>();
  private live: EndpointSet = new Map();

  constructor(
    private readonly graceMs: number,
    private readonly metrics: ProxyMetrics,
    private readonly log: Logger,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** Starts tracking; call the returned function when the connection is gone. */
  add(conn: TrackedConnection): () => void {
    const entry: Entry = { conn };
    this.entries.add(entry);
    // A backend that left the slices between select() and here is already scheduled for draining.
    if (!this.present(conn)) this.schedule(entry);
    return () => {
      if (entry.timer) clearTimeout(entry.timer);
      this.entries.delete(entry);
    };
  }

  /** New endpoint sets after a reload: schedule or cancel closes. */
  update(live: EndpointSet): void {
    this.live = live;
    for (const e of this.entries) {
      if (this.present(e.conn)) {
        if (e.timer) {
          clearTimeout(e.timer);
          delete e.timer;
        }
      } else if (!e.timer) this.schedule(e);
    }
  }

  /** Closes everything now (shutdown). */
  closeAll(): void {
    for (const e of [...this.entries]) {
      if (e.timer) clearTimeout(e.timer);
      e.conn.close();
    }
    this.entries.clear();
  }

  private present(c: TrackedConnection): boolean {
    return this.live.get(c.service)?.has(c.backend) ?? false;
  }

  private schedule(e: Entry): void {
    e.timer = setTimeout(() => {
      this.entries.delete(e);
      this.metrics.drained.inc({ protocol: e.conn.protocol });
      this.log('info', 'drain', { protocol: e.conn.protocol, service: e.conn.service, backend: e.conn.backend.replace('|', ':'), graceMs: this.graceMs });
      e.conn.close();
    }, this.graceMs);
    // Draining never keeps a stopping process alive.
    e.timer.unref();
  }
}

/**
 * Every endpoint address x port of every EndpointSlice, whatever its conditions, per service. Terminating
 * endpoints stay in their slice until their pod is gone, so "listed" is what keeps connections open.
 */
export function endpointSet(objects: readonly object[], canonical: (a: string) => string): EndpointSet {
  const out: EndpointSet = new Map();
  for (const o of objects) {
    const s = o as {
      apiVersion?: unknown; kind?: unknown;
      metadata?: { namespace?: string; labels?: Record<string, string> };
      ports?: { port?: number }[] | null;
      endpoints?: { addresses?: string[] }[] | null;
    };
    if (s.kind !== 'EndpointSlice' || s.apiVersion !== 'discovery.k8s.io/v1') continue;
    const svc = s.metadata?.labels?.['kubernetes.io/service-name'];
    if (!svc) continue;
    const key = `${s.metadata?.namespace || 'default'}/${svc}`;
    let set = out.get(key);
    if (!set) out.set(key, (set = new Set()));
    for (const ep of s.endpoints ?? []) {
      for (const a of ep.addresses ?? []) {
        for (const p of s.ports ?? []) if (typeof p.port === 'number') set.add(backendKey(canonical(a), p.port));
      }
    }
  }
  return out;
}
