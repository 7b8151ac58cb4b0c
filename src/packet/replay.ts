// Replays a capture through a dataplane's packet path: records are grouped by capture second (the
// conntrack clock is the capture's own), each group is one processBatch call, and the result is the
// rewritten capture plus a summary per verdict, reason and service.

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
  /** Per processed record (by record index): what the packet path did. */
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

/** Runs every IP record of `capture` through `selector`'s packet path, in capture order. */
export function replayCapture(selector: Selector, capture: Capture): ReplayResult {
  const summary: ReplaySummary = {
    records: capture.records.length, processed: 0, notIp: 0, truncated: 0, verdicts: emptyVerdicts(), reasons: {},
    services: {}, replies: 0, written: 0, lastTime: 0,
  };
  const outcomes = new Map<number, PacketOutcome>();
  const written = new Map<number, WritableRecord[]>();
  const records = capture.records;
  let i = 0;
  while (i < records.length) {
    // One batch per capture second: the conntrack clock advances with the capture.
    const now = recordSeconds(records[i] as CaptureRecord);
    let j = i;
    while (j < records.length && recordSeconds(records[j] as CaptureRecord) === now) j++;
    const group = records.slice(i, j).filter((r) => r.ip !== undefined && !r.truncated);
    for (const r of records.slice(i, j)) {
      if (r.ip === undefined) summary.notIp++;
      else if (r.truncated) summary.truncated++;
      if (r.ip === undefined || r.truncated) written.set(r.index, [r]);
    }
    const total = group.reduce((s, r) => s + (r.ip as Uint8Array).byteLength, 0);
    const data = new Uint8Array(total);
    const offsets = new Uint32Array(group.length);
    const lengths = new Uint32Array(group.length);
    let at = 0;
    group.forEach((r, k) => {
      data.set(r.ip as Uint8Array, at);
      offsets[k] = at;
      lengths[k] = (r.ip as Uint8Array).byteLength;
      at += lengths[k] as number;
    });
    const res = selector.packets.processBatch(data, offsets, lengths, now);
    group.forEach((r, k) => {
      const o = selector.packets.describe(res, k);
      outcomes.set(r.index, o);
      summary.processed++;
      summary.verdicts[o.verdict]++;
      summary.reasons[o.reasonKey] = (summary.reasons[o.reasonKey] ?? 0) + 1;
      if (o.service !== undefined) (summary.services[o.service] ??= emptyVerdicts())[o.verdict]++;
      const out: WritableRecord[] = [];
      const off = offsets[k] as number;
      if (o.verdict !== 'drop' && o.verdict !== 'reject') {
        out.push({ timestampNs: r.timestampNs, linkType: r.linkType, l2: r.l2, ip: data.slice(off, off + (lengths[k] as number)) });
      }
      if (o.reply) {
        summary.replies++;
        out.push({ timestampNs: r.timestampNs, linkType: r.linkType, l2: replyL2(r), ip: o.reply });
      }
      written.set(r.index, out);
    });
    summary.lastTime = now;
    i = j;
  }
  const output: WritableRecord[] = [];
  for (const r of records) output.push(...(written.get(r.index) ?? []));
  summary.written = output.length;
  return { summary, output, outcomes };
}
