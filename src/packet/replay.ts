// Replays a capture through a dataplane's packet path: records are grouped by capture second (the
// conntrack clock is the capture's own), each group is one processBatch call, and the result is the
// rewritten capture plus a summary per verdict, reason and service. replayRecords streams (it holds one
// capture second at a time); replayCapture collects everything for a capture read whole.

import type { Selector } from '../engine/dataplane.js';
import type { PacketOutcome } from '../engine/packet.js';
import { PACKET_VERDICTS, type PacketVerdictName } from '../engine/packet-layout.js';
import { LINKTYPE, type Capture, type CaptureRecord, type WritableRecord } from './pcap.js';

export interface ReplaySummary {
  /** Records in the capture. */
  records: number;
  /** Records run through the packet path (IP, captured whole). */
  processed: number;
  /** Records that are not IP (ARP, ...): written unchanged. */
  notIp: number;
  /** Records captured shorter than they were on the wire (snaplen): written unchanged, not processed. */
  truncated: number;
  verdicts: Record<PacketVerdictName, number>;
  /** Packets per reason key (REASON_KEYS), only the reasons that occurred. */
  reasons: Record<string, number>;
  services: Record<string, Record<PacketVerdictName, number>>;
  /** ICMP errors the core wrote for rejected packets (added to the output after the packet they answer). */
  replies: number;
  /** Records in the output: forwarded, reverse-NATed and passed packets, replies; not drops and rejects. */
  written: number;
  /** The capture time of the last record (seconds), the clock conntrack ran on. */
  lastTime: number;
}

export interface ReplayResult {
  summary: ReplaySummary;
  /** What the node would send: the records to write (WritableRecord, for writePcap). */
  output: WritableRecord[];
  /** Per processed record (by record index): what the packet path did (frozen; shared between records that got the same). */
  outcomes: Map<number, PacketOutcome>;
}

const emptyVerdicts = (): Record<PacketVerdictName, number> =>
  Object.fromEntries(PACKET_VERDICTS.map((v) => [v, 0])) as Record<PacketVerdictName, number>;

/** The capture time of a record in whole seconds. */
export function recordSeconds(r: CaptureRecord): number {
  return Number(r.timestampNs / 1_000_000_000n);
}

/** A reply goes back where its packet came from: on Ethernet, with the MAC addresses swapped. */
function replyL2(r: CaptureRecord): Uint8Array {
  if (r.linkType !== LINKTYPE.ETHERNET || r.l2.length < 14) return r.l2;
  const l2 = r.l2.slice();
  l2.set(r.l2.subarray(6, 12), 0);
  l2.set(r.l2.subarray(0, 6), 6);
  return l2;
}

/** Where replayRecords puts what it produces, as it goes. */
export interface ReplaySink {
  /** The next record of the output, in capture order (a rewritten packet is a view of a batch buffer). */
  write(r: WritableRecord): void;
  /** What the packet path did with the record of this index (frozen; shared between records that got the same). */
  outcome?(index: number, o: PacketOutcome): void;
}

/**
 * Runs every IP record through `selector`'s packet path, in capture order, one capture second (one
 * batch) at a time: memory holds that second's records, not the capture's.
 */
export function replayRecords(selector: Selector, records: Iterable<CaptureRecord>, sink: ReplaySink): ReplaySummary {
  const summary: ReplaySummary = {
    records: 0, processed: 0, notIp: 0, truncated: 0, verdicts: emptyVerdicts(), reasons: {}, services: {}, replies: 0,
    written: 0, lastTime: 0,
  };
  // An outcome without a reply depends only on verdict, reason and frontend: one frozen object for each
  // (a capture of millions of packets otherwise makes as many objects).
  const shared = new Map<number, PacketOutcome>();
  const emit = (r: WritableRecord): void => {
    summary.written++;
    sink.write(r);
  };
  const runSecond = (group: CaptureRecord[], now: number): void => {
    const ips = group.filter((r) => r.ip !== undefined && !r.truncated);
    const total = ips.reduce((n, r) => n + (r.ip as Uint8Array).byteLength, 0);
    const data = new Uint8Array(total);
    const offsets = new Uint32Array(ips.length);
    const lengths = new Uint32Array(ips.length);
    let at = 0;
    ips.forEach((r, k) => {
      const ip = r.ip as Uint8Array;
      data.set(ip, at);
      offsets[k] = at;
      lengths[k] = ip.byteLength;
      at += ip.byteLength;
    });
    const res = selector.packets.processBatch(data, offsets, lengths, now);
    let k = 0;
    for (const r of group) {
      if (r.ip === undefined || r.truncated) {
        if (r.ip === undefined) summary.notIp++;
        else summary.truncated++;
        emit(r); // written unchanged, in its place
        continue;
      }
      let o: PacketOutcome;
      if (res.replies[k]) {
        o = selector.packets.describe(res, k);
      } else {
        const key = (((res.verdicts[k] as number) << 8) | (res.reasons[k] as number)) + (res.revnat[k] as number) * 65536;
        let known = shared.get(key);
        if (!known) {
          known = Object.freeze(selector.packets.describe(res, k));
          if (known.frontend) Object.freeze(known.frontend);
          shared.set(key, known);
        }
        o = known;
      }
      sink.outcome?.(r.index, o);
      summary.processed++;
      summary.verdicts[o.verdict]++;
      summary.reasons[o.reasonKey] = (summary.reasons[o.reasonKey] ?? 0) + 1;
      if (o.service !== undefined) (summary.services[o.service] ??= emptyVerdicts())[o.verdict]++;
      const off = offsets[k] as number;
      if (o.verdict !== 'drop' && o.verdict !== 'reject') {
        // A view of the batch's buffer: the rewritten bytes, not copied again.
        emit({ timestampNs: r.timestampNs, linkType: r.linkType, l2: r.l2, ip: data.subarray(off, off + (lengths[k] as number)) });
      }
      if (o.reply) {
        summary.replies++;
        emit({ timestampNs: r.timestampNs, linkType: r.linkType, l2: replyL2(r), ip: o.reply });
      }
      k++;
    }
    summary.lastTime = now;
  };
  // One batch per capture second: the conntrack clock advances with the capture.
  let group: CaptureRecord[] = [];
  let second = 0;
  for (const r of records) {
    summary.records++;
    const s = recordSeconds(r);
    if (group.length > 0 && s !== second) {
      runSecond(group, second);
      group = [];
    }
    second = s;
    group.push(r);
  }
  if (group.length > 0) runSecond(group, second);
  return summary;
}

/** Runs every IP record of `capture` through `selector`'s packet path, in capture order (replayRecords). */
export function replayCapture(selector: Selector, capture: Capture): ReplayResult {
  const output: WritableRecord[] = [];
  const outcomes = new Map<number, PacketOutcome>();
  const summary = replayRecords(selector, capture.records, { write: (r) => output.push(r), outcome: (i, o) => outcomes.set(i, o) });
  return { summary, output, outcomes };
}
