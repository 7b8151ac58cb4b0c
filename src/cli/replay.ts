// svcplane replay: a capture through the packet path (and `dump ... conntrack`, which shows the
// conntrack table a replay leaves).

import { closeSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { formatHostPort } from '../k8s/net.js';
import type { Selector } from '../engine/dataplane.js';
import type { ValidationError } from '../k8s/types.js';
import type { ConntrackEntry } from '../engine/packet.js';
import { CaptureError, CaptureReader, PcapBuilder, pcapLinkTypeFor, type CaptureFile, type WritableRecord } from '../packet/pcap.js';
import { openCaptureFile } from '../packet/pcap-file.js';
import { replayRecords, type ReplaySummary } from '../packet/replay.js';
import { StateError, stateTableSizes } from '../engine/packet-state.js';
import { PACKET_REASONS, REASON_KEYS, type PacketVerdictName } from '../engine/packet-layout.js';
import { type Io, NODE_HELP, NODE_OPTIONS, UsageError, columns, load, outputFormat, parse, printErrors } from './common.js';

export const REPLAY_HELP = `Usage: svcplane replay PATH...|IMAGE --pcap IN [-w OUT] [--conntrack] [--load-state FILE] [--save-state FILE]
                      [node options] [-o table|json]

Runs a capture through the packet path, as this node would forward it: new flows to a frontend are
load-balanced (session affinity, Maglev) and DNATed to the backend, established flows keep their
backend, replies are reverse-NATed, ICMP errors about translated flows are translated, services without
endpoints are rejected (ICMP port unreachable) or dropped. Conntrack runs on the capture's clock, one
batch per capture second; the capture streams through (read in windows, one second decoded at a time,
the output written as it goes), so its size is not bounded by memory. Prints a summary per verdict,
reason and service.

  --pcap IN            capture to read: pcap or pcapng; Ethernet, raw IP, Linux cooked (SLL, SLL2), BSD
                       loopback link types (required)
  -w, --write OUT      write what the node would send as pcap: forwarded, reverse-NATed and passed
                       packets (rewritten), and the ICMP rejects; dropped and rejected packets are left out
                       (link type: the capture's when all its records share one, else raw IP)
  --conntrack          also list the conntrack table after the replay
  --conntrack-capacity N
                       conntrack entries (default 16384, or the --load-state file's; rounded up to a power
                       of two; a flow takes two, and flows start to be evicted before the table is full:
                       allow twice the entries the capture's concurrent flows need)
  --save-state FILE    write the flow state after the replay (conntrack and session affinity tables), to
                       go on from with --load-state or to list with 'dump ... conntrack --load-state FILE'
  --load-state FILE    start from a saved flow state instead of empty tables: established flows keep their
                       backends while the tables still list them, replies are reverse-NATed
  -o, --output FORMAT  table (default) or json
${NODE_HELP}`;

/** Options of a replay, also accepted by `dump ... conntrack`. */
export const REPLAY_INPUT_OPTIONS = {
  pcap: { type: 'string' },
  'conntrack-capacity': { type: 'string' },
  'load-state': { type: 'string' },
} as const;

const REPLAY_OPTIONS = {
  ...NODE_OPTIONS,
  ...REPLAY_INPUT_OPTIONS,
  write: { type: 'string', short: 'w' },
  'save-state': { type: 'string' },
  conntrack: { type: 'boolean' },
  output: { type: 'string', short: 'o' },
} as const;

function openCapture(path: string): ReturnType<typeof openCaptureFile> {
  try {
    return openCaptureFile(path);
  } catch (e) {
    throw new UsageError(`--pcap ${path}: ${(e as Error).message}`);
  }
}

/**
 * The link type of the written capture, decided before its first record: the capture's own when all its
 * records share one, else raw IP. A pcap file has one, in its header; a pcapng file's interfaces may be
 * described anywhere in it, so it is read once through for them.
 */
function outputLinkType(file: CaptureFile): number {
  const reader = new CaptureReader(file);
  const types = new Set<number>();
  if (reader.format === 'pcap') {
    const first = reader.records().next(); // none: raw IP, as for pcapng
    if (!first.done) types.add(first.value.linkType);
  } else {
    for (const r of reader.records()) types.add(r.linkType);
  }
  return pcapLinkTypeFor([...types].map((linkType) => ({ linkType })));
}

/** A record the output file cannot hold (a timestamp past 2106): reported with exit code 1, nothing written. */
class OutputError extends Error {
  constructor(readonly path: string, message: string) {
    super(message);
  }
}

/**
 * What the node would send, as a pcap file written as it grows: into PATH.partial, block by block, the
 * header last (its snaplen is known at the end), renamed to PATH when the replay has succeeded.
 */
class OutputFile {
  private readonly partial: string;
  private readonly fd: number;
  private readonly pcap: PcapBuilder;
  private open = true;

  constructor(private readonly path: string, linkType: number) {
    this.partial = `${path}.partial`;
    this.pcap = new PcapBuilder({ linkType, resolution: 'ns' });
    try {
      this.fd = openSync(this.partial, 'w');
    } catch (e) {
      throw new UsageError(`-w ${path}: ${(e as Error).message}`);
    }
    this.write(this.pcap.header()); // its place; written again at the end
  }

  add(r: WritableRecord): void {
    try {
      this.pcap.add(r);
    } catch (e) {
      if (e instanceof RangeError) throw new OutputError(this.path, e.message); // pcap cannot hold the record
      throw e;
    }
    for (const block of this.pcap.drain()) this.write(block);
  }

  finish(): void {
    for (const block of this.pcap.drainAll()) this.write(block);
    this.write(this.pcap.header(), 0);
    this.close();
    renameSync(this.partial, this.path);
  }

  abandon(): void {
    this.close();
    rmSync(this.partial, { force: true });
  }

  /** Writes all of `bytes`, at `position` or where the file is. */
  private write(bytes: Uint8Array, position?: number): void {
    for (let done = 0; done < bytes.length; ) {
      done += writeSync(this.fd, bytes, done, bytes.length - done, position === undefined ? null : position + done);
    }
  }

  private close(): void {
    if (this.open) closeSync(this.fd);
    this.open = false;
  }
}

function capacity(text: unknown): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 8 || n > 1 << 24) throw new UsageError(`--conntrack-capacity must be an integer 8..16777216, got "${String(text)}"`);
  return n;
}

/** A state file given with --load-state: its bytes, and the table sizes the dataplane must have for it. */
interface StateInput {
  path: string;
  bytes: Uint8Array;
  sizes: { ctCapacity: number; affinityCapacity: number };
}

function readStateFile(path: string): StateInput {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(readFileSync(path));
  } catch (e) {
    throw new UsageError(`--load-state ${path}: ${(e as Error).message}`);
  }
  try {
    return { path, bytes, sizes: stateTableSizes(bytes) }; // the header now; loadState checks the rest
  } catch (e) {
    if (e instanceof StateError) throw new StateFileError(path, e.message);
    throw e;
  }
}

/** A state file that cannot be used: reported with exit code 1, as a malformed capture. */
class StateFileError extends Error {
  constructor(readonly path: string, message: string) {
    super(message);
  }
}

interface Replayed {
  selector: Selector;
  /** Undefined for `dump ... conntrack --load-state FILE` without --pcap. */
  summary: ReplaySummary | undefined;
  errors: ValidationError[];
  /** The time the tables were last at: the capture's last second, else the loaded state's clock. */
  clock: number;
}

/**
 * Loads the tables (and a saved state), replays the capture; shared by `replay` and `dump ... conntrack`.
 * The capture streams through: read in windows, one capture second decoded at a time; with `writeTo`, the
 * output is written to that file as it goes.
 */
async function loadAndReplay(positionals: string[], values: Record<string, unknown>, io: Io, needCapture: boolean, writeTo: string | undefined): Promise<Replayed> {
  const pcap = values.pcap as string | undefined;
  const statePath = values['load-state'] as string | undefined;
  if (!pcap && (needCapture || !statePath)) throw new UsageError(needCapture ? 'needs --pcap IN (a pcap or pcapng capture)' : 'needs --pcap IN (a capture to replay) or --load-state FILE (a saved flow state)');
  const given = capacity(values['conntrack-capacity']);
  const input = statePath !== undefined ? readStateFile(statePath) : undefined;
  const file = pcap ? openCapture(pcap) : undefined;
  try {
    return await loadAndRun(positionals, values, io, input, given, file, writeTo);
  } finally {
    file?.close();
  }
}

async function loadAndRun(positionals: string[], values: Record<string, unknown>, io: Io, input: StateInput | undefined,
  given: number | undefined, file: CaptureFile | undefined, writeTo: string | undefined): Promise<Replayed> {
  const linkType = file && writeTo !== undefined ? outputLinkType(file) : undefined;
  const reader = file ? new CaptureReader(file) : undefined; // the file header, checked now
  // The state's table sizes unless told otherwise (loadState then says why they must match).
  const conntrackCapacity = given ?? input?.sizes.ctCapacity;
  const { selector, errors } = await load(positionals, values, io, { conntrackCapacity, affinityCapacity: input?.sizes.affinityCapacity });
  let clock = 0;
  if (input) {
    let loaded;
    try {
      loaded = selector.packets.loadState(input.bytes);
    } catch (e) {
      if (e instanceof StateError) throw new StateFileError(input.path, e.message);
      throw e;
    }
    clock = loaded.clock;
    io.stderr(`loaded ${input.path}: the flow state at ${loaded.clock} s (${loaded.flows} conntrack flows, ${loaded.affinityEntries} affinity entries)\n`);
    if (loaded.unknownFrontends > 0) {
      io.stderr(`note: ${input.path}: ${loaded.unknownFrontends} of its ${loaded.flows} flows are to frontends these tables do not have: they keep their translation and name no Service\n`);
    }
  }
  const output = writeTo !== undefined && linkType !== undefined ? new OutputFile(writeTo, linkType) : undefined;
  let summary: ReplaySummary | undefined;
  try {
    summary = reader ? replayRecords(selector, reader.records(), { write: (r) => output?.add(r) }) : undefined;
    output?.finish();
  } catch (e) {
    output?.abandon();
    throw e;
  }
  if (summary && summary.processed > 0) clock = summary.lastTime;
  return { selector, summary, errors, clock };
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

/** loadAndReplay, or the exit code 1 after reporting a malformed capture or an unusable state file. */
async function replayOrReport(positionals: string[], values: Record<string, unknown>, io: Io, needCapture: boolean, writeTo?: string): Promise<Replayed | number> {
  try {
    return await loadAndReplay(positionals, values, io, needCapture, writeTo);
  } catch (e) {
    if (e instanceof CaptureError) {
      io.stderr(`svcplane: ${String(values.pcap)}: malformed capture: ${e.message}\n`);
      return 1;
    }
    if (e instanceof StateFileError) {
      io.stderr(`svcplane: ${e.path}: cannot load the flow state: ${e.message}\n`);
      return 1;
    }
    if (e instanceof OutputError) {
      io.stderr(`svcplane: ${e.path}: cannot write the capture (nothing written): ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}

export async function runReplay(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, REPLAY_OPTIONS);
  if (values.help) {
    io.stdout(`${REPLAY_HELP}\n`);
    return 0;
  }
  const format = outputFormat(values.output);
  const out = values.write as string | undefined;
  const run = await replayOrReport(positionals, values, io, true, out);
  if (typeof run === 'number') return run;
  const { selector, errors, clock } = run;
  const summary = run.summary as ReplaySummary;
  const counters = selector.packets.counters();
  const saveTo = values['save-state'] as string | undefined;
  if (saveTo) writeFileSync(saveTo, selector.packets.saveState(clock));
  const conntrack = values.conntrack ? selector.packets.conntrack(clock) : undefined;
  if (format === 'json') {
    io.stdout(`${JSON.stringify({ ...summary, counters, ...(conntrack ? { conntrack } : {}), errors }, null, 2)}\n`);
  } else {
    printErrors(errors, io);
    io.stdout(formatReplaySummary(summary, counters, selector.packets.conntrackCapacity));
    if (conntrack) io.stdout(`\n${formatConntrack(conntrack)}`);
  }
  if (out) io.stderr(`wrote ${out}: ${summary.written} packets\n`);
  if (saveTo) io.stderr(`wrote ${saveTo}: the flow state at ${clock} s (${selector.packets.conntrack(clock).length} live flows)\n`);
  return errors.length > 0 ? 1 : 0;
}

/**
 * `svcplane dump PATH...|IMAGE conntrack [--load-state FILE] [--pcap IN]`: the conntrack table of a saved
 * state, after replaying IN (from that state, or from empty tables).
 */
export async function dumpConntrack(positionals: string[], values: Record<string, unknown>, io: Io): Promise<number> {
  const format = outputFormat(values.output);
  const run = await replayOrReport(positionals, values, io, false);
  if (typeof run === 'number') return run;
  const entries = run.selector.packets.conntrack(run.clock);
  if (format === 'json') io.stdout(`${JSON.stringify({ conntrack: entries, at: run.clock, errors: run.errors }, null, 2)}\n`);
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
