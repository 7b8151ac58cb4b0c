// svcplane replay: a capture through the packet path (and `dump ... conntrack`, which shows the
// conntrack table a replay leaves).

import { readFileSync, writeFileSync } from 'node:fs';
import { formatHostPort } from '../k8s/net.js';
import type { Selector } from '../engine/dataplane.js';
import type { ValidationError } from '../k8s/types.js';
import type { ConntrackEntry } from '../engine/packet.js';
import { CaptureError, readCapture, writePcap, type Capture } from '../packet/pcap.js';
import { replayCapture, type ReplayResult, type ReplaySummary } from '../packet/replay.js';
import { PACKET_REASONS, REASON_KEYS, type PacketVerdictName } from '../engine/packet-layout.js';
import { type Io, NODE_HELP, NODE_OPTIONS, UsageError, columns, load, outputFormat, parse, printErrors } from './common.js';

export const REPLAY_HELP = `Usage: svcplane replay PATH...|IMAGE --pcap IN [-w OUT] [--conntrack] [node options] [-o table|json]

Runs a capture through the packet path, as this node would forward it: new flows to a frontend are
load-balanced (session affinity, Maglev) and DNATed to the backend, established flows keep their
backend, replies are reverse-NATed, ICMP errors about translated flows are translated, services without
endpoints are rejected (ICMP port unreachable) or dropped. Conntrack runs on the capture's clock.
Prints a summary per verdict, reason and service.

  --pcap IN            capture to read: pcap or pcapng; Ethernet, raw IP, Linux cooked (SLL, SLL2), BSD
                       loopback link types (required)
  -w, --write OUT      write what the node would send as pcap: forwarded, reverse-NATed and passed
                       packets (rewritten), and the ICMP rejects; dropped and rejected packets are left out
  --conntrack          also list the conntrack table after the replay
  --conntrack-capacity N
                       conntrack entries (default 16384, rounded up to a power of two; a flow takes two,
                       and flows start to be evicted before the table is full: allow twice the entries
                       the capture's concurrent flows need)
  -o, --output FORMAT  table (default) or json
${NODE_HELP}`;

/** Options of a replay, also accepted by `dump ... conntrack`. */
export const REPLAY_INPUT_OPTIONS = {
  pcap: { type: 'string' },
  'conntrack-capacity': { type: 'string' },
} as const;

const REPLAY_OPTIONS = {
  ...NODE_OPTIONS,
  ...REPLAY_INPUT_OPTIONS,
  write: { type: 'string', short: 'w' },
  conntrack: { type: 'boolean' },
  output: { type: 'string', short: 'o' },
} as const;

function readCaptureFile(path: string): Capture {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(readFileSync(path));
  } catch (e) {
    throw new UsageError(`--pcap ${path}: ${(e as Error).message}`);
  }
  return readCapture(bytes);
}

function capacity(text: unknown): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 8 || n > 1 << 24) throw new UsageError(`--conntrack-capacity must be an integer 8..16777216, got "${String(text)}"`);
  return n;
}

/** Loads the tables, replays the capture; shared by `replay` and `dump ... conntrack`. */
async function loadAndReplay(positionals: string[], values: Record<string, unknown>, io: Io): Promise<{ selector: Selector; result: ReplayResult; errors: ValidationError[] }> {
  const pcap = values.pcap as string | undefined;
  if (!pcap) throw new UsageError('needs --pcap IN (a pcap or pcapng capture)');
  const conntrackCapacity = capacity(values['conntrack-capacity']);
  const capture = readCaptureFile(pcap);
  const { selector, errors } = await load(positionals, values, io, { conntrackCapacity });
  return { selector, result: replayCapture(selector, capture), errors };
}

export function formatConntrack(entries: readonly ConntrackEntry[]): string {
  if (entries.length === 0) return 'conntrack: no live flows\n';
  const rows = [['PROTO', 'CLIENT', 'FRONTEND', 'BACKEND', 'STATE', 'EXPIRES', 'SERVICE']];
  for (const e of entries) {
    rows.push([
      e.protocol, formatHostPort(e.client.address, e.client.port), formatHostPort(e.frontend.address, e.frontend.port),
      formatHostPort(e.backend.address, e.backend.port), e.state, `${e.expiresIn}s`, e.service ?? '',
    ]);
  }
  return columns(rows).join('\n') + '\n';
}

type Replayed = Awaited<ReturnType<typeof loadAndReplay>>;

/** loadAndReplay, or the exit code 1 after reporting a malformed capture. */
async function replayOrReport(positionals: string[], values: Record<string, unknown>, io: Io): Promise<Replayed | number> {
  try {
    return await loadAndReplay(positionals, values, io);
  } catch (e) {
    if (!(e instanceof CaptureError)) throw e;
    io.stderr(`svcplane: ${String(values.pcap)}: malformed capture: ${e.message}\n`);
    return 1;
  }
}

export async function runReplay(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, REPLAY_OPTIONS);
  if (values.help) {
    io.stdout(`${REPLAY_HELP}\n`);
    return 0;
  }
  const format = outputFormat(values.output);
  const run = await replayOrReport(positionals, values, io);
  if (typeof run === 'number') return run;
  const { selector, result, errors } = run;
  const counters = selector.packets.counters();
  const out = values.write as string | undefined;
  if (out) writeFileSync(out, writePcap(result.output));
  const conntrack = values.conntrack ? selector.packets.conntrack(result.summary.lastTime) : undefined;
  if (format === 'json') {
    io.stdout(`${JSON.stringify({ ...result.summary, counters, ...(conntrack ? { conntrack } : {}), errors }, null, 2)}\n`);
  } else {
    printErrors(errors, io);
    io.stdout(formatReplaySummary(result.summary, counters, selector.packets.conntrackCapacity));
    if (conntrack) io.stdout(`\n${formatConntrack(conntrack)}`);
  }
  if (out) io.stderr(`wrote ${out}: ${result.summary.written} packets\n`);
  return errors.length > 0 ? 1 : 0;
}

/** `svcplane dump PATH...|IMAGE conntrack --pcap IN`: the conntrack table after replaying IN. */
export async function dumpConntrack(positionals: string[], values: Record<string, unknown>, io: Io): Promise<number> {
  const format = outputFormat(values.output);
  const run = await replayOrReport(positionals, values, io);
  if (typeof run === 'number') return run;
  const entries = run.selector.packets.conntrack(run.result.summary.lastTime);
  if (format === 'json') io.stdout(`${JSON.stringify({ conntrack: entries, at: run.result.summary.lastTime, errors: run.errors }, null, 2)}\n`);
  else {
    printErrors(run.errors, io);
    io.stdout(formatConntrack(entries));
  }
  return run.errors.length > 0 ? 1 : 0;
}

/** The summary as a table: verdict and reason counts, then per service; `capacity`: conntrack entries. */
export function formatReplaySummary(s: ReplaySummary, counters: Record<string, number>, capacity: number): string {
  const lines: string[] = [];
  const skipped = [s.notIp ? `${s.notIp} not IP` : '', s.truncated ? `${s.truncated} truncated by the capture's snaplen` : ''].filter(Boolean);
  lines.push(`${s.records} records, ${s.processed} packets processed${skipped.length ? ` (${skipped.join(', ')}: written unchanged)` : ''}`);
  lines.push('');
  const rows: string[][] = [['VERDICT', 'REASON', 'PACKETS']];
  REASON_KEYS.forEach((key, code) => {
    const n = s.reasons[key];
    if (!n) return;
    rows.push([verdictOfKey(key), PACKET_REASONS[code] as string, String(n)]);
  });
  lines.push(...columns(rows));
  const services = Object.keys(s.services).sort();
  if (services.length) {
    lines.push('');
    const srows: string[][] = [['SERVICE', 'FORWARD', 'REVERSE', 'REJECT', 'DROP']];
    for (const name of services) {
      const v = s.services[name] as Record<PacketVerdictName, number>;
      srows.push([name || '(unnamed)', String(v.forward), String(v.reverse), String(v.reject), String(v.drop)]);
    }
    lines.push(...columns(srows));
  }
  lines.push('');
  const evicted = counters.conntrack_evicted_table_full ?? 0;
  lines.push(`conntrack: ${counters.conntrack_created ?? 0} flows created, ${evicted} live entries evicted (probe window full); ` +
    `${counters.fragments_tracked ?? 0} fragmented datagrams tracked; ${s.replies} ICMP rejects written, ${counters.reject_reply_suppressed ?? 0} suppressed`);
  if (evicted > 0) {
    // An evicted flow's next packet makes it a new flow again; windows fill well before the table does.
    lines.push(`note: flows were evicted before they ended, so some were counted as new more than once: ${capacity} entries ` +
      `are too few for this capture's concurrent flows; try --conntrack-capacity ${Math.min(capacity * 4, 1 << 24)}`);
  }
  return lines.join('\n') + '\n';
}

function verdictOfKey(key: string): string {
  return key.startsWith('forward') ? 'forward' : key.startsWith('reverse') ? 'reverse' : key.startsWith('reject') ? 'reject' : key.startsWith('drop') ? 'drop' : 'pass';
}
