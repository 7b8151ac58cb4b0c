// svcplane CLI: thin commands over the library. Exit codes: 0 success, 1 invalid input (errors are still
// printed and everything valid still applies), 2 usage errors.

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { formatHostPort, parseHostPort, protocolNumber, type Protocol } from '../k8s/net.js';
import { createDataplane, type Selection, type Selector } from '../engine/dataplane.js';
import { ImageError } from '../compile/view.js';
import {
  type Io, NODE_HELP, NODE_OPTIONS, UsageError, columns, load, outputFormat, pad, parse, printErrors,
} from './common.js';
import { type Dump, dumpTables } from '../dump.js';
import { CoreError } from '../engine/core.js';
import { dumpRoutes, formatIngressDump } from '../ingress/dump.js';
import { BENCH_HELP, runBench } from './bench.js';
import { REPLAY_HELP, REPLAY_INPUT_OPTIONS, dumpConntrack, runReplay } from './replay.js';
import { PROXY_HELP, runProxy } from './proxy.js';
import { nativeReport } from '../engine/native.js';
import { RoutesError } from '../ingress/view.js';

export type { Io };

const VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const HELP: Record<string, string> = {
  main: `svcplane ${VERSION}: Kubernetes Services and EndpointSlices compiled into dataplane tables

Usage: svcplane <command> [options]

Commands:
  compile PATH... -o FILE        compile manifests into a table image
  dump PATH...|IMAGE             show frontends and the backends each selects among
  trace PATH...|IMAGE --to ...   show one flow's decision step by step
  route PATH...|IMAGE --host H --path P
                                 route one HTTP request by the Ingress rules, then pick the pod
  replay PATH...|IMAGE --pcap IN [-w OUT]
                                 run a capture through the packet path (conntrack, NAT), write it back
  bench [--quick] [-o DIR]       run the benchmark suites; writes DIR/bench.json and DIR/bench.svg
  proxy PATH... [--bind F=L]...  run a TCP/UDP and HTTP Ingress proxy on the tables, live reload
  version                        print the version and the engine in use

PATH is a YAML or JSON file (multi-document, kind: List), a directory of them, or - for stdin.
Run 'svcplane <command> --help' for a command's options.
Exit codes: 0 success, 1 invalid input (errors are printed, valid objects still apply), 2 usage error.`,
  compile: `Usage: svcplane compile PATH... -o FILE [node options]

Writes the table image for one node: frontend hash map, services, backend lists, Maglev tables,
reverse NAT, source ranges. Same inputs and seeds give identical bytes.

  -o, --output FILE    where to write the image (required)
${NODE_HELP}`,
  dump: `Usage: svcplane dump PATH...|IMAGE [ingress | conntrack [--load-state FILE] [--pcap IN]] [node options]
                    [-o table|json]

Lists every frontend (ClusterIP, NodePort, LoadBalancer, ExternalIP) with the backends it selects among
for traffic from outside the node, and what a new connection gets when there are none (reject or drop).
With 'ingress' as the last argument: the compiled Ingress routes (hosts, paths, types, targets).
With 'conntrack' as the last argument: the live flows of a saved flow state (replay --save-state), or
after replaying the capture IN (from that state, or from empty tables; see replay).

  -o, --output FORMAT  table (default) or json
  --load-state FILE    with 'conntrack': the saved flow state to list (at the time it was saved)
  --pcap IN            with 'conntrack': a capture to replay first
  --conntrack-capacity N
                       with 'conntrack': conntrack entries (default 16384, or the --load-state file's)
${NODE_HELP}`,
  trace: `Usage: svcplane trace PATH...|IMAGE --to ADDR:PORT/PROTO --from ADDR:PORT [--time SECONDS] [-o table|json]

Shows one new flow's decision: frontend hit, traffic policy, endpoint list, Maglev slot, backend.
IPv6 addresses are written in brackets: [2001:db8::1]:80/TCP. PROTO is TCP (default), UDP or SCTP.

  --to ADDR:PORT/PROTO destination of the flow (required)
  --from ADDR:PORT     source of the flow (required)
  --time SECONDS       the flow's time, for session affinity (default: now)
  -o, --output FORMAT  table (default) or json
${NODE_HELP}`,
  route: `Usage: svcplane route PATH...|IMAGE --host HOST --path PATH [--from ADDR:PORT] [--ingress-class NAME] [-o table|json]

Routes one HTTP request by the Ingress rules compiled into the tables (exact host over wildcard, longest
path, Exact over Prefix; the Host header's port is ignored), then picks the pod with the Service's L4
selection. Status 200 with a backend, 404 when nothing matches and there is no default backend, 503 when
the backend names a missing Service or port or the Service has no usable endpoint.

  --host HOST          the Host header (default: none, which matches only rules without a host)
  --path PATH          the request path (required)
  --from ADDR:PORT     the client, for the L4 selection (default 0.0.0.0:0)
  --ingress-class NAME the IngressClass served (default: the default IngressClass)
  -o, --output FORMAT  table (default) or json
${NODE_HELP}`,
  replay: REPLAY_HELP,
  proxy: PROXY_HELP,
  bench: BENCH_HELP,
  version: `Usage: svcplane version [-v|--verbose]

Prints svcplane's version and the engine that runs the core, and why that one (auto prefers the native
addon, SVCPLANE_ENGINE forces one). --verbose adds the native addon's path, compiler and build, or why
it is unavailable.`,
};

async function cmdCompile(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, { ...NODE_OPTIONS, output: { type: 'string', short: 'o' } });
  if (values.help) return help('compile', io);
  const out = values.output as string | undefined;
  if (!out) throw new UsageError('compile needs -o FILE');
  const { selector, errors } = await load(positionals, values, io);
  printErrors(errors, io);
  const image = selector.image as Uint8Array;
  writeFileSync(out, image);
  const s = dumpTables(selector.tables as NonNullable<Selector['tables']>).stats;
  io.stderr(`wrote ${out}: ${image.byteLength} bytes, ${s.frontends} frontends, ${s.services} service ports, ${s.backends} backends\n`);
  return errors.length > 0 ? 1 : 0;
}

export function formatDumpTable(d: Dump): string {
  const rows: string[][] = [['FRONTEND', 'TYPE', 'SERVICE', 'POLICY', 'BACKENDS']];
  for (const f of d.frontends) {
    const svc = `${f.service}${f.portName ? `:${f.portName}` : ''}`;
    const extras = [f.sessionAffinity ? `affinity ${f.sessionAffinity.timeoutSeconds}s` : '', f.sourceRanges ? `from ${f.sourceRanges.join(',')}` : '']
      .filter(Boolean)
      .join(' ');
    const policy = `${f.policy}${extras ? ` ${extras}` : ''}`;
    const backends = f.backends.length
      ? f.backends.map((b) => `${formatHostPort(b.address, b.port)} (${b.state}${b.local ? ', local' : ''})`)
      : [`none: ${f.whenEmpty}`];
    rows.push([`${formatHostPort(f.address, f.port)}/${f.protocol}`, f.type, svc, policy, backends[0] as string]);
    for (const b of backends.slice(1)) rows.push(['', '', '', '', b]);
  }
  const lines = columns(rows);
  const s = d.stats;
  const header = `node ${d.node.name || '?'}${d.node.zone ? ` (zone ${d.node.zone})` : ''}: ${s.frontends} frontends, ${s.services} service ports, ${s.backends} backends, image ${s.imageBytes} bytes`;
  return `${header}\n${lines.join('\n')}\n`;
}

async function cmdDump(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, { ...NODE_OPTIONS, ...REPLAY_INPUT_OPTIONS, output: { type: 'string', short: 'o' } });
  if (values.help) return help('dump', io);
  const format = outputFormat(values.output);
  // 'conntrack' as the last argument: the table a replay of --pcap leaves (unless a file of that name exists).
  if (positionals.length > 1 && positionals[positionals.length - 1] === 'conntrack' && !existsSync('conntrack')) {
    return dumpConntrack(positionals.slice(0, -1), values, io);
  }
  if (values.pcap !== undefined || values['conntrack-capacity'] !== undefined || values['load-state'] !== undefined) {
    throw new UsageError(`--pcap, --load-state and --conntrack-capacity go with 'dump ... conntrack'`);
  }
  // 'ingress' as the last argument selects the routes table (unless a file of that name exists).
  const ingress = positionals.length > 1 && positionals[positionals.length - 1] === 'ingress' && !existsSync('ingress');
  const { selector, errors } = await load(ingress ? positionals.slice(0, -1) : positionals, values, io);
  if (ingress) {
    const routes = selector.routes ? dumpRoutes(selector.routes) : undefined;
    if (format === 'json') io.stdout(`${JSON.stringify({ ...(routes ?? { hosts: [] }), errors }, null, 2)}\n`);
    else {
      printErrors(errors, io);
      io.stdout(routes ? formatIngressDump(routes) : 'no Ingress routes\n');
    }
    return errors.length > 0 ? 1 : 0;
  }
  const dump = dumpTables(selector.tables as NonNullable<Selector['tables']>, errors);
  if (format === 'json') {
    io.stdout(`${JSON.stringify(dump, null, 2)}\n`);
  } else {
    printErrors(errors, io);
    io.stdout(formatDumpTable(dump));
  }
  return errors.length > 0 ? 1 : 0;
}

function parseTo(text: string): { address: string; port: number; protocol: Protocol } {
  const slash = text.lastIndexOf('/');
  const hostPort = slash > text.lastIndexOf(']') && slash > 0 ? text.slice(0, slash) : text;
  const protoText = slash > text.lastIndexOf(']') && slash > 0 ? text.slice(slash + 1).toUpperCase() : 'TCP';
  if (protocolNumber(protoText) === undefined) throw new UsageError(`--to: protocol must be TCP, UDP or SCTP, got "${protoText}"`);
  const hp = parseHostPort(hostPort);
  if (!hp) throw new UsageError(`--to must be ADDR:PORT/PROTO (IPv6 as [ADDR]:PORT), got "${text}"`);
  return { address: hp.address, port: hp.port, protocol: protoText as Protocol };
}

export function formatTrace(flow: { protocol: string; src: string; sport: number; dst: string; dport: number }, s: Selection): string {
  const lines: [string, string][] = [['flow', `${flow.protocol} ${formatHostPort(flow.src, flow.sport)} -> ${formatHostPort(flow.dst, flow.dport)}`]];
  if (!s.frontend) {
    lines.push(['frontend', `none: ${s.reason}`]);
  } else {
    const fe = s.frontend;
    lines.push(['frontend', `${formatHostPort(fe.address, fe.port)}/${fe.protocol} ${fe.type} of ${s.service}${fe.portName ? ` (port ${fe.portName})` : ''}`]);
    if (s.list) {
      const policyName = s.scope === 'internal' ? 'internalTrafficPolicy' : 'externalTrafficPolicy';
      const shortCircuit = s.localSource ? ', but the source is local (this node or its pods)' : '';
      lines.push(['policy', `${s.scope} traffic, ${policyName}=${s.policy}${shortCircuit} -> ${s.list.kind} list (${s.list.size} endpoint${s.list.size === 1 ? '' : 's'})`]);
    }
    if (s.maglevSlot !== undefined && s.list) lines.push(['maglev', `slot ${s.maglevSlot} of ${s.list.maglevSize}`]);
    else if (s.verdict === 'forward') lines.push(['affinity', s.reason]);
    if (s.backend) lines.push(['backend', `${formatHostPort(s.backend.address, s.backend.port)} (${s.backendState ?? 'active'})`]);
  }
  lines.push(['verdict', `${s.verdict}${s.verdict === 'forward' ? '' : ` (${s.reason})`}`]);
  return lines.map(([k, v]) => `${pad(k, 10)}${v}`).join('\n') + '\n';
}

async function cmdTrace(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, {
    ...NODE_OPTIONS,
    to: { type: 'string' },
    from: { type: 'string' },
    time: { type: 'string' },
    output: { type: 'string', short: 'o' },
  });
  if (values.help) return help('trace', io);
  const format = outputFormat(values.output);
  if (!values.to) throw new UsageError('trace needs --to ADDR:PORT/PROTO');
  if (!values.from) throw new UsageError('trace needs --from ADDR:PORT');
  const to = parseTo(values.to as string);
  const from = parseHostPort(values.from as string);
  if (!from) throw new UsageError(`--from must be ADDR:PORT (IPv6 as [ADDR]:PORT), got "${String(values.from)}"`);
  let now: number | undefined;
  if (values.time !== undefined) {
    now = Number(values.time);
    if (!Number.isInteger(now) || now < 0 || now > 0xffffffff) throw new UsageError(`--time must be whole seconds, got "${String(values.time)}"`);
  }
  const { selector, errors } = await load(positionals, values, io);
  printErrors(errors, io);
  const flow = { protocol: to.protocol, src: from.address, sport: from.port, dst: to.address, dport: to.port };
  const sel = selector.select({ ...flow, now });
  if (format === 'json') {
    const { verdict, service, backend, reason, ...detail } = sel;
    io.stdout(`${JSON.stringify({ verdict, service, backend, reason, ...detail }, null, 2)}\n`);
  } else {
    io.stdout(formatTrace(flow, sel));
  }
  return errors.length > 0 ? 1 : 0;
}

async function cmdRoute(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, {
    ...NODE_OPTIONS,
    host: { type: 'string' },
    path: { type: 'string' },
    from: { type: 'string' },
    output: { type: 'string', short: 'o' },
  });
  if (values.help) return help('route', io);
  const format = outputFormat(values.output);
  if (values.path === undefined) throw new UsageError('route needs --path PATH');
  let from: { address: string; port: number } | undefined;
  if (values.from !== undefined) {
    from = parseHostPort(values.from as string);
    if (!from) throw new UsageError(`--from must be ADDR:PORT (IPv6 as [ADDR]:PORT), got "${String(values.from)}"`);
  }
  const { selector, errors } = await load(positionals, values, io);
  printErrors(errors, io);
  const r = selector.route({ host: values.host as string | undefined, path: values.path as string, src: from?.address, sport: from?.port });
  if (format === 'json') io.stdout(`${JSON.stringify(r, null, 2)}\n`);
  else {
    const lines: [string, string][] = [['request', `Host: ${String(values.host ?? '(none)')} path: ${String(values.path)}`]];
    if (r.ingress) lines.push(['ingress', r.ingress]);
    if (r.service) lines.push(['service', `${r.service}${r.port !== undefined ? ` port ${r.port}` : ''}`]);
    if (r.backend) lines.push(['backend', formatHostPort(r.backend.address, r.backend.port)]);
    lines.push(['status', `${r.status}${r.reason ? ` (${r.reason})` : ''}`]);
    io.stdout(lines.map(([k, v]) => `${pad(k, 10)}${v}`).join('\n') + '\n');
  }
  return errors.length > 0 ? 1 : 0;
}

async function cmdVersion(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, { help: { type: 'boolean', short: 'h' }, verbose: { type: 'boolean', short: 'v' } });
  if (values.help) return help('version', io);
  if (positionals.length) throw new UsageError(`version takes no arguments`);
  const dp = await createDataplane({ node: 'version-check' });
  io.stdout(`svcplane ${VERSION}\nengine: ${dp.engine} (${dp.engineReason})\nnode: ${process.version}\n`);
  if (values.verbose) io.stdout(`${nativeReport().join('\n')}\n`);
  return 0;
}

function help(cmd: string, io: Io): number {
  io.stdout(`${HELP[cmd] ?? HELP.main}\n`);
  return 0;
}

const COMMANDS: Record<string, (args: string[], io: Io) => Promise<number>> = {
  compile: cmdCompile,
  dump: cmdDump,
  trace: cmdTrace,
  route: cmdRoute,
  replay: runReplay,
  bench: (args, io) => runBench(args, io),
  proxy: (args, io) => runProxy(args, io),
  version: cmdVersion,
};

/** Runs the CLI; returns the exit code. Never throws for user errors. */
export async function runCli(argv: string[], io: Io): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    if (cmd === 'help' && rest[0] && HELP[rest[0]]) return help(rest[0], io);
    return help('main', io);
  }
  if (cmd === '--version') return cmdVersion([], io);
  const run = COMMANDS[cmd];
  if (!run) {
    io.stderr(`svcplane: unknown command "${cmd}"\n\n${HELP.main}\n`);
    return 2;
  }
  try {
    return await run(rest, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr(`svcplane ${cmd}: ${e.message}\nRun 'svcplane ${cmd} --help' for usage.\n`);
      return 2;
    }
    if (e instanceof ImageError || e instanceof CoreError || e instanceof RoutesError) {
      io.stderr(`svcplane ${cmd}: invalid image: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}
