// `svcplane proxy`: runs the proxy of src/proxy on manifest paths until SIGINT or SIGTERM. Usage errors
// exit 2, manifests with errors at start exit 1 (nothing is served from a bad set), a clean stop 0.

import { hostname } from 'node:os';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { formatError } from '../index.js';
import {
  PROXY_DEFAULTS, ProxyStartError, jsonLogger, parseBind, parseEndpointMap, parseListenAddress, startProxy,
  type BindRule, type EndpointMapRule, type HostPort, type ServiceProxy, type ProxyOptions,
} from '../proxy/index.js';

export interface ProxyIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  /** Stops the proxy as SIGINT would (tests; the executable uses signals). */
  signal?: AbortSignal;
  /** Called once the proxy serves (tests). */
  ready?: (proxy: ServiceProxy) => void;
}

export const PROXY_HELP = `Usage: svcplane proxy PATH... [--node NAME] [--bind FRONTEND=LOCAL]... [--endpoint-map ENDPOINT=LOCAL]...
                     [--http ADDR:PORT]... [--https ADDR:PORT]... [--admin ADDR:PORT] [options]

A user-space proxy on the tables: TCP and UDP for every Service frontend (ClusterIP, NodePort,
LoadBalancer, externalIP) and an HTTP/1.1 reverse proxy for the Ingress rules. Each new connection or
UDP flow gets its backend from select() (session affinity, Maglev), each HTTP request from route().
The manifest paths are watched: a change is applied incrementally; a set with errors is rejected and
the last good state kept. SIGHUP reloads too. One JSON log line per event on stderr.

Listeners:
  --bind FRONTEND=LOCAL  serve FRONTEND on a local address instead of its own (repeatable).
                         FRONTEND: ADDR (every port), ADDR:PORT or ADDR:PORT/PROTO; LOCAL: ADDR
                         (same port) or ADDR:PORT. With any --bind only the frontends a rule matches
                         are served (most specific rule wins); without, every frontend listens on its
                         own address, so this host must own the service IPs.
                         e.g. --bind 10.96.0.10=127.0.0.2 --bind 10.96.0.53:53/UDP=127.0.0.3:5353
  --endpoint-map ENDPOINT=LOCAL
                         connect to LOCAL instead of the endpoint (pod) address select() picked
                         (repeatable, first match wins): ADDR=ADDR, ADDR:PORT=ADDR:PORT, or IPv4
                         CIDR=CIDR of equal length keeping the host bits, e.g. 10.244.0.0/16=127.1.0.0/16
                         (local stand-ins for pods: Kubernetes refuses loopback endpoint addresses)
  --http ADDR:PORT       HTTP listener for the Ingress rules (repeatable; none by default)
  --https ADDR:PORT      HTTPS listener: TLS with the Secrets (type kubernetes.io/tls) named by the
                         Ingresses' spec.tls, given among the manifests; the certificate is picked by SNI
  --admin ADDR:PORT      /metrics (Prometheus) and /healthz (none by default)

Behaviour:
  --grace SECONDS        connections to an endpoint that left the EndpointSlices are closed after this
                         (default ${PROXY_DEFAULTS.graceMs / 1000}); terminating endpoints keep theirs and, while others
                         are ready, get no new ones
  --udp-idle SECONDS     a UDP flow with no packet for this long is forgotten (default ${PROXY_DEFAULTS.udpIdleMs / 1000})
  --connect-timeout SECONDS
                         backend connect timeout (default ${PROXY_DEFAULTS.connectTimeoutMs / 1000})
  --request-timeout SECONDS
                         HTTP: a backend silent this long gets a 504 (default ${PROXY_DEFAULTS.requestTimeoutMs / 1000})
  --no-watch             do not watch the paths (reload on SIGHUP only)

Failures: a backend that refuses or resets closes the client's TCP connection with a reset, and
answers HTTP 502 (504 on timeout); 404 when no Ingress rule matches, 503 when the Service has no
usable endpoint. HTTP requests are retried once only when idempotent, without a body, and refused
before anything was sent (or sent on a pooled connection the backend had closed).

Node options:
  --node NAME            node the tables are built for (default: this host's name)
  --node-ip IP           NodePort address (repeatable; default: the Node's addresses)
  --zone ZONE            the node's zone for topology hints
  --ingress-class NAME   the IngressClass served (default: the default IngressClass)
  --cluster-seed N       cluster-wide Maglev seed (default 0x53564350)

A frontend that cannot be bound (EADDRNOTAVAIL: map it with --bind) is logged and tried again at each
reload; the other listeners serve meanwhile.

Exit codes: 0 stopped by SIGINT/SIGTERM, 1 the manifests have errors or an --http, --https or --admin
address cannot be listened on, 2 usage error.`;

const OPTIONS = {
  node: { type: 'string' },
  'node-ip': { type: 'string', multiple: true },
  zone: { type: 'string' },
  'ingress-class': { type: 'string' },
  'cluster-seed': { type: 'string' },
  bind: { type: 'string', multiple: true },
  'endpoint-map': { type: 'string', multiple: true },
  http: { type: 'string', multiple: true },
  https: { type: 'string', multiple: true },
  admin: { type: 'string' },
  grace: { type: 'string' },
  'udp-idle': { type: 'string' },
  'connect-timeout': { type: 'string' },
  'request-timeout': { type: 'string' },
  'no-watch': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

class UsageError extends Error {}

function seconds(v: string | undefined, flag: string, fallbackMs: number): number {
  if (v === undefined) return fallbackMs;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0 || v.trim() === '') throw new UsageError(`--${flag} must be a number of seconds >= 0, got "${v}"`);
  return Math.round(n * 1000);
}

function listenAddresses(list: string[] | undefined, flag: string): HostPort[] {
  return (list ?? []).map((t) => {
    try {
      return parseListenAddress(t, `--${flag}`);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  });
}

function options(args: string[], io: ProxyIo): ProxyOptions | 'help' {
  let parsed;
  try {
    parsed = parseArgs({ args, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const v = parsed.values;
  if (v.help) return 'help';
  if (parsed.positionals.length === 0) throw new UsageError('no input: give manifest files or directories');
  if (parsed.positionals.includes('-')) throw new UsageError('standard input cannot be watched or reloaded: give files or directories');
  let binds: BindRule[];
  try {
    binds = (v.bind ?? []).map(parseBind);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  let endpointMap: EndpointMapRule[];
  try {
    endpointMap = (v['endpoint-map'] ?? []).map(parseEndpointMap);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  let clusterSeed: number | undefined;
  if (v['cluster-seed'] !== undefined) {
    clusterSeed = Number(v['cluster-seed']);
    if (!Number.isInteger(clusterSeed) || clusterSeed < 0 || clusterSeed > 0xffffffff) throw new UsageError(`--cluster-seed must be an integer 0..4294967295, got "${v['cluster-seed']}"`);
  }
  let node = v.node;
  if (!node) {
    node = hostname();
    io.stderr(`note: no --node given; building tables for this host, "${node}"\n`);
  }
  const admin = listenAddresses(v.admin === undefined ? undefined : [v.admin], 'admin')[0];
  return {
    paths: parsed.positionals,
    dataplane: { node, nodeAddresses: v['node-ip'], zone: v.zone, ingressClass: v['ingress-class'], clusterSeed },
    binds,
    endpointMap,
    http: listenAddresses(v.http, 'http'),
    https: listenAddresses(v.https, 'https'),
    ...(admin ? { admin } : {}),
    watch: !v['no-watch'],
    graceMs: seconds(v.grace, 'grace', PROXY_DEFAULTS.graceMs),
    udpIdleMs: seconds(v['udp-idle'], 'udp-idle', PROXY_DEFAULTS.udpIdleMs),
    connectTimeoutMs: seconds(v['connect-timeout'], 'connect-timeout', PROXY_DEFAULTS.connectTimeoutMs),
    requestTimeoutMs: seconds(v['request-timeout'], 'request-timeout', PROXY_DEFAULTS.requestTimeoutMs),
    log: jsonLogger(io.stderr),
  };
}

export async function runProxy(args: string[], io: ProxyIo): Promise<number> {
  let opts: ProxyOptions | 'help';
  try {
    opts = options(args, io);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    io.stderr(`svcplane proxy: ${e.message}\nRun 'svcplane proxy --help' for usage.\n`);
    return 2;
  }
  if (opts === 'help') {
    io.stdout(`${PROXY_HELP}\n`);
    return 0;
  }
  let proxy: ServiceProxy;
  try {
    proxy = await startProxy(opts);
  } catch (e) {
    if (e instanceof ProxyStartError) {
      for (const err of e.outcome.errors) io.stderr(`error: ${formatError(err)}\n`);
      io.stderr('svcplane proxy: not started: the manifests have errors\n');
      return 1;
    }
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EADDRINUSE' || err.code === 'EADDRNOTAVAIL' || err.code === 'EACCES') {
      io.stderr(`svcplane proxy: cannot listen: ${err.message}\n`);
      return 1;
    }
    throw e;
  }
  io.ready?.(proxy);
  await new Promise<void>((resolve) => {
    // Signal handlers do not keep Node running; with no listener open yet (every bind failing, waiting
    // for a reload) this timer does.
    const alive = setInterval(() => {}, 1 << 30);
    const stop = (): void => {
      clearInterval(alive);
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      process.off('SIGHUP', hup);
      io.signal?.removeEventListener('abort', stop);
      resolve();
    };
    const hup = (): void => void proxy.reload('signal');
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    process.on('SIGHUP', hup);
    if (io.signal?.aborted) stop();
    else io.signal?.addEventListener('abort', stop);
  });
  await proxy.close();
  return 0;
}
