// route(): host + path -> route target, through the core (wasm/ingress.c) over a routes section in core
// memory. The router owns no memory: the engine hands it the core's exports, a fresh view of core memory,
// and a scratch area at an offset it reserved, so the same class serves the wasm module and a native engine.
// Scratch layout: [spr_ctx 16][result 16][request 16][host area 1024][path area: the rest]. Per request:
// the Host header's record comes from a Map of the Host headers seen for this section (else the header is
// written into its area and sp_route_host finds the record: what the core decides depends only on the
// bytes and the section), the path (up to maxPath + 1 bytes, without '?query') is written straight into
// its area (a char loop for ASCII, TextEncoder.encodeInto otherwise), one sp_route_path call returns the
// target index, and that picks a precomputed, frozen result. trace() goes through sp_route and its structs.

import { MAX_HOST, NONE, PATH_DEFAULT, R_CTX, R_REQUEST, R_RESULT, ROUTES_ATTACH_ERRORS, ROUTES_ALIGN } from './layout.js';
import { RoutesView, RoutesError, type TargetView } from './view.js';

/** The core exports the router calls (wasm/ingress.h). */
export interface RouteExports {
  sp_routes_attach(ctx: number, off: number, len: number): number;
  sp_routes_detach(ctx: number): void;
  sp_route(ctx: number, req: number, res: number): number;
  /** The record for a Host header (NONE: none), or ROUTE_ERROR; optional (a core without: sp_route). */
  sp_route_host?(ctx: number, hostOff: number, hostLen: number): number;
  /** The target for a path in a record (NONE: 404), or ROUTE_ERROR. */
  sp_route_path?(ctx: number, record: number, pathOff: number, pathLen: number): number;
}

/** What the engine lends the router. */
export interface RouterHost {
  exports: RouteExports;
  /**
   * The current bytes of core memory. The router keeps views over its scratch and calls this again when
   * they are detached (WebAssembly memory.grow detaches the old buffer) or after refresh().
   */
  memory(): Uint8Array;
  /** An 8-aligned area of core memory reserved for the router: at least routerScratchSize(section) bytes. */
  scratchOffset: number;
  scratchSize: number;
}

export interface RouteRequest {
  /** The Host header (':port' is ignored, case-insensitive); absent or '' when there is none. */
  host?: string;
  /** The request path ('?query' is ignored); '' is read as '/'. Compared case-sensitively, not decoded. */
  path: string;
}

export interface RouteResult {
  status: 200 | 404 | 503;
  /** 'ns/name' of the Ingress whose rule or default backend took the request. */
  ingress?: string;
  /** 'ns/name' of the Service ('' for a resource backend). */
  service?: string;
  /** The Service port (resolved from a name); for a 503, as written when it was a number. */
  port?: number;
  /** Why 503. */
  reason?: string;
  /** Where the L4 selection continues (status 200): dst address, port and protocol for select(). */
  frontend?: { address: string; port: number; protocol: string };
}

export type HostMatch = 'exact' | 'wildcard' | 'any' | 'none';
export type PathMatch = 'Exact' | 'Prefix' | 'ImplementationSpecific' | 'default' | 'none';

/** route() plus how the decision was made (for traces). */
export interface RouteTrace extends RouteResult {
  host: { match: HostMatch; rule?: string };
  path: { match: PathMatch; key?: string };
  target?: number;
}

/** Bytes a request's Host header may take in the scratch; longer ones are reduced first (writeLongHost). */
const HOST_AREA = 1024;
/** Host bytes the core reads at most (a longer name is no rule host). */
const HOST_READ = MAX_HOST + 2;
/** Host headers whose record the router remembers per section (a flood of new ones empties it). */
const HOST_CACHE = 8192;
/** sp_route_host / sp_route_path: nothing attached, the request outside memory, a bad record. */
const ROUTE_ERROR = 0xfffffffe;
const CTX_AT = 0;
const RESULT_AT = R_CTX.size;
const REQUEST_AT = RESULT_AT + R_RESULT.size;
const HOST_AT = REQUEST_AT + R_REQUEST.size;
const PATH_AT = HOST_AT + HOST_AREA;
const HOST_MATCHES: HostMatch[] = ['none', 'exact', 'wildcard', 'any'];
const PATH_MATCHES: PathMatch[] = ['none', 'Exact', 'Prefix', 'ImplementationSpecific', 'default'];

/**
 * Scratch bytes the router needs for a section: context, result, request, the host area, and room for the
 * longest path that can matter (maxPath + 1 bytes) plus one UTF-8 character.
 */
export function routerScratchSize(section: RoutesView | number): number {
  const maxPath = typeof section === 'number' ? section : section.maxPath;
  return (PATH_AT + maxPath + 4 + 7) & ~7;
}

export const NOT_FOUND: RouteResult = Object.freeze({ status: 404 });

/** The frozen result of each target of a section (index = target index). */
export function resultsOf(view: RoutesView): RouteResult[] {
  return view.targets().map((t) => Object.freeze(resultOf(t)));
}

function resultOf(t: TargetView): RouteResult {
  const r: RouteResult = { status: t.status, ingress: t.ingress, service: t.service };
  if (t.port) r.port = t.port;
  if (t.status === 503) r.reason = t.reason;
  if (t.frontend) r.frontend = Object.freeze({ ...t.frontend });
  return r;
}

/** Strips '?query' and maps '' to '/'. */
export function requestPath(path: string): string {
  const q = path.indexOf('?');
  const p = q < 0 ? path : path.slice(0, q);
  return p === '' ? '/' : p;
}

/**
 * The name part of a Host header as the core reads it: up to the first ':' (the port is ignored), without
 * one trailing '.'; undefined for a bracketed IPv6 literal, which names no rule host (they are DNS names).
 */
export function hostName(host: string): string | undefined {
  if (host.startsWith('[')) return undefined;
  const colon = host.indexOf(':');
  const name = colon >= 0 ? host.slice(0, colon) : host;
  return name.endsWith('.') ? name.slice(0, -1) : name;
}

const encoder = new TextEncoder();

/** Copies an ASCII string that fits into `view`; -1 when it is not ASCII or does not fit (then: encodeInto). */
function writeAscii(view: Uint8Array, s: string): number {
  const n = s.length;
  if (n > view.length) return -1;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f) return -1;
    view[i] = c;
  }
  return n;
}

export class RouterError extends Error {}

export class IngressRouter {
  private readonly host: RouterHost;
  private readonly base: number;
  private current: RoutesView | undefined;
  private results: RouteResult[] = [];
  // Views over the scratch, rebuilt when memory grows (growing detaches the old buffer).
  private buffer: ArrayBufferLike | undefined;
  private words: Uint32Array = new Uint32Array(0);
  private hostView: Uint8Array = new Uint8Array(0);
  private pathView: Uint8Array = new Uint8Array(0);
  /** Path bytes that can matter for the attached section: maxPath + 1. */
  private pathLimit = 1;
  // sp_route_host / sp_route_path when the core has them (both), else route() goes through sp_route.
  private readonly routeHost: RouteExports['sp_route_host'];
  private readonly routePath: RouteExports['sp_route_path'];
  /**
   * The core's record per Host header string for the attached section (sp_route_host): the record depends
   * only on the Host bytes and the section, so a known Host header skips the copy and the host lookup.
   * Emptied on attach and detach, and when it holds HOST_CACHE headers.
   */
  private readonly records = new Map<string, number>();

  constructor(host: RouterHost) {
    if (host.scratchOffset % ROUTES_ALIGN !== 0) throw new RouterError('router scratch offset must be 8-aligned');
    this.host = host;
    this.base = host.scratchOffset;
    const x = host.exports;
    if (x.sp_route_host && x.sp_route_path) {
      this.routeHost = x.sp_route_host;
      this.routePath = x.sp_route_path;
    }
  }

  /** The attached section, or undefined. */
  get view(): RoutesView | undefined {
    return this.current;
  }

  /** Offset of the router's spr_ctx in core memory (for an engine that attaches sections itself). */
  get contextOffset(): number {
    return this.base + CTX_AT;
  }

  /**
   * Attaches a routes section at `offset` of core memory (8-aligned, outside the router's scratch). With
   * copy (the default) the bytes are written there first; without, they must already be there (a section
   * embedded in the image). On failure nothing is attached.
   */
  attach(section: Uint8Array, offset: number, opts: { copy?: boolean } = {}): void {
    const view = new RoutesView(section);
    const need = routerScratchSize(view);
    if (this.host.scratchSize < need) {
      throw new RouterError(`router scratch of ${this.host.scratchSize} bytes is too small for this section (needs ${need})`);
    }
    const x = this.host.exports;
    x.sp_routes_detach(this.contextOffset);
    this.current = undefined;
    this.results = [];
    this.records.clear();
    if (opts.copy ?? true) this.host.memory().set(section, offset);
    const rc = x.sp_routes_attach(this.contextOffset, offset, section.byteLength);
    if (rc !== 0) throw new RoutesError(`core rejected the routes section: ${ROUTES_ATTACH_ERRORS[rc] ?? `error ${rc}`}`);
    this.current = view;
    this.results = resultsOf(view);
    this.pathLimit = view.maxPath + 1;
    this.views();
  }

  /** Re-reads memory(): for an engine whose memory changes other than by a detaching grow. */
  refresh(): void {
    this.buffer = undefined;
    this.views();
  }

  detach(): void {
    this.host.exports.sp_routes_detach(this.contextOffset);
    this.current = undefined;
    this.results = [];
    this.records.clear();
  }

  /** Routes one request; the result object is shared and frozen. */
  route(req: RouteRequest): RouteResult {
    const target = this.run(req);
    if (target === NONE) return NOT_FOUND;
    return this.results[target] as RouteResult;
  }

  /** route() with the host and path match that decided it. */
  trace(req: RouteRequest): RouteTrace {
    if (!this.current) throw new RouterError('no routes section attached');
    if (this.words.length === 0) this.views();
    const target = this.runStruct(req);
    const w = this.words;
    const res = RESULT_AT >>> 2;
    const record = w[res + (R_RESULT.record >>> 2)] as number;
    const codes = w[res] as number; // status u16, host match u8, path match u8
    const hostMatch = HOST_MATCHES[(codes >>> 16) & 0xff] ?? 'none';
    const pathCode = codes >>> 24;
    const view = this.current as RoutesView;
    const out: RouteTrace = {
      ...(target === NONE ? NOT_FOUND : (this.results[target] as RouteResult)),
      host: { match: hostMatch },
      path: { match: PATH_MATCHES[pathCode] ?? 'none' },
    };
    if (out.frontend) out.frontend = { ...out.frontend };
    if (record !== NONE) out.host.rule = view.record(record).host;
    if (pathCode !== 0 && pathCode !== PATH_DEFAULT) {
      const len = w[res + (R_RESULT.matchLen >>> 2)] as number;
      out.path.key = new TextDecoder().decode(encoder.encode(requestPath(req.path)).subarray(0, len));
    }
    if (target !== NONE) out.target = target;
    return out;
  }

  /** (Re)builds the scratch views; a view over a detached buffer (after memory.grow) has length 0. */
  private views(): void {
    const m = this.host.memory();
    if (m.buffer === this.buffer && this.words.length !== 0) return;
    this.buffer = m.buffer;
    const end = this.base + this.host.scratchSize;
    this.words = new Uint32Array(m.buffer, m.byteOffset + this.base, (this.host.scratchSize >>> 2) & ~1);
    this.hostView = new Uint8Array(m.buffer, m.byteOffset + this.base + HOST_AT, HOST_AREA);
    this.pathView = new Uint8Array(m.buffer, m.byteOffset + this.base + PATH_AT, end - (this.base + PATH_AT));
  }

  /** Writes the request, calls the core, returns the target index (NONE for 404). */
  private run(req: RouteRequest): number {
    if (!this.current) throw new RouterError('no routes section attached');
    if (this.words.length === 0) this.views();
    const routePath = this.routePath;
    if (routePath === undefined) return this.runStruct(req);
    const host = req.host ?? '';
    let record = this.records.get(host);
    if (record === undefined) record = this.recordOf(host);
    // The path straight into its area, then one core call: the target index (the results are here).
    const t = routePath(this.base + CTX_AT, record, this.base + PATH_AT, this.writePath(req.path)) >>> 0;
    if (t === ROUTE_ERROR) throw new RouterError('core could not route: no section attached or scratch outside memory');
    return t;
  }

  /** The core's record for a Host header (sp_route_host), remembered for this section. */
  private recordOf(host: string): number {
    const routeHost = this.routeHost as NonNullable<RouteExports['sp_route_host']>;
    const r = routeHost(this.base + CTX_AT, this.base + HOST_AT, this.writeHost(host)) >>> 0;
    if (r === ROUTE_ERROR) throw new RouterError('core could not route: no section attached or scratch outside memory');
    if (this.records.size >= HOST_CACHE) this.records.clear();
    this.records.set(host, r);
    return r;
  }

  /**
   * Writes the Host header's bytes as far as the core reads them: at most MAX_HOST + 2 (the core reads no
   * more, and stops at the ':' itself). ASCII a character at a time, else UTF-8 through encodeInto. Returns
   * the length. Only for a Host header the router has not seen (recordOf).
   */
  private writeHost(host: string): number {
    const v = this.hostView;
    const n = host.length < HOST_READ ? host.length : HOST_READ;
    for (let i = 0; i < n; i++) {
      const c = host.charCodeAt(i);
      if (c > 0x7f) return this.writeHostUtf8(host);
      v[i] = c;
    }
    return n;
  }

  private writeHostUtf8(host: string): number {
    const h = encoder.encodeInto(host, this.hostView);
    return h.read === host.length ? h.written : this.writeLongHost(host);
  }

  /**
   * Writes the request path without '?query' ('' as '/'), ASCII cut to maxPath + 1 bytes (no key is
   * longer than maxPath, so the core decides the same; ingress.h), a character at a time (measured faster
   * than four to a 32-bit store, and than encodeInto, for these short strings). A '?' or a character
   * beyond ASCII: writePathSlow. Returns the length.
   */
  private writePath(path: string): number {
    const v = this.pathView;
    const len = path.length;
    const n = len < this.pathLimit ? len : this.pathLimit;
    for (let i = 0; i < n; i++) {
      const c = path.charCodeAt(i);
      if (c === 0x3f || c > 0x7f) return this.writePathSlow(path);
      v[i] = c;
    }
    if (n === 0) {
      v[0] = 0x2f;
      return 1;
    }
    return n;
  }

  /** writePath for a path with '?query' or not ASCII. */
  private writePathSlow(path: string): number {
    const p = requestPath(path);
    const v = this.pathView;
    const n = p.length < this.pathLimit ? p.length : this.pathLimit;
    for (let i = 0; i < n; i++) {
      const c = p.charCodeAt(i);
      if (c > 0x7f) return encoder.encodeInto(p, v).written;
      v[i] = c;
    }
    return n;
  }

  /** The same through sp_route and its request and result structs (an engine without sp_route_text). */
  private runStruct(req: RouteRequest): number {
    const host = req.host ?? '';
    let path = req.path;
    if (path === '' || path.indexOf('?') >= 0) path = requestPath(path);
    let hostLen = writeAscii(this.hostView, host);
    if (hostLen < 0) {
      const h = encoder.encodeInto(host, this.hostView);
      hostLen = h.read === host.length ? h.written : this.writeLongHost(host);
    }
    // A path cut at the end of its area is still longer than maxPath + 1 bytes: the result is the same.
    let pathLen = writeAscii(this.pathView, path);
    if (pathLen < 0) pathLen = encoder.encodeInto(path, this.pathView).written;
    const w = this.words;
    w[(REQUEST_AT + R_REQUEST.hostOff) >>> 2] = this.base + HOST_AT;
    w[(REQUEST_AT + R_REQUEST.hostLen) >>> 2] = hostLen;
    w[(REQUEST_AT + R_REQUEST.pathOff) >>> 2] = this.base + PATH_AT;
    w[(REQUEST_AT + R_REQUEST.pathLen) >>> 2] = pathLen;
    const status = this.host.exports.sp_route(this.base + CTX_AT, this.base + REQUEST_AT, this.base + RESULT_AT);
    if (status === 0) throw new RouterError('core could not route: no section attached or scratch outside memory');
    return w[(RESULT_AT + R_RESULT.target) >>> 2] as number;
  }

  /** A Host header longer than the host area: its name, or '' when it is longer than any rule host. */
  private writeLongHost(host: string): number {
    const name = encoder.encode(hostName(host) ?? '');
    if (name.length > MAX_HOST) return 0; // reaches the catch-all record, as an empty Host does
    this.hostView.set(name);
    return name.length;
  }
}
