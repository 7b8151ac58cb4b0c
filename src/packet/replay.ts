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

/** Runs every IP record of `capture` through `selector`'s packet path, in capture order. */
export function replayCapture(selector: Selector, capture: Capture): ReplayResult {
  const summary: ReplaySummary = {
    records: capture.records.length, processed: 0, notIp: 0, truncated: 0, verdicts: emptyVerdicts(), reasons: {},
    services: {}, replies: 0, written: 0, lastTime: 0,
  };
  const outcomes = new Map<number, PacketOutcome>();
  const records = capture.records;
  // What each record (by position) puts in the output, in record order.
  const written = new Array<WritableRecord[] | undefined>(records.length);
  // An outcome without a reply depends only on verdict, reason and frontend: one frozen object for each
  // (a capture of millions of packets otherwise makes as many objects).
  const shared = new Map<number, PacketOutcome>();
  let i = 0;
  while (i < records.length) {
    // One batch per capture second: the conntrack clock advances with the capture.
    const now = recordSeconds(records[i] as CaptureRecord);
    let j = i;
    while (j < records.length && recordSeconds(records[j] as CaptureRecord) === now) j++;
    const group: number[] = []; // positions of the records processed
    let total = 0;
    for (let k = i; k < j; k++) {
      const r = records[k] as CaptureRecord;
      if (r.ip === undefined) summary.notIp++;
      else if (r.truncated) summary.truncated++;
      if (r.ip === undefined || r.truncated) {
        written[k] = [r];
      } else {
        group.push(k);
        total += r.ip.byteLength;
      }
    }
    const data = new Uint8Array(total);
    const offsets = new Uint32Array(group.length);
    const lengths = new Uint32Array(group.length);
    let at = 0;
    group.forEach((pos, k) => {
      const ip = (records[pos] as CaptureRecord).ip as Uint8Array;
      data.set(ip, at);
      offsets[k] = at;
      lengths[k] = ip.byteLength;
      at += ip.byteLength;
    });
    const res = selector.packets.processBatch(data, offsets, lengths, now);
    group.forEach((pos, k) => {
      const r = records[pos] as CaptureRecord;
      let o: PacketOutcome;
      if (res.replies[k]) {
        o = selector.packets.describe(res, k);
      } else {
        const key = ((res.verdicts[k] as number) << 8 | (res.reasons[k] as number)) + (res.revnat[k] as number) * 65536;
        let s = shared.get(key);
        if (!s) {
          s = Object.freeze(selector.packets.describe(res, k));
          if (s.frontend) Object.freeze(s.frontend);
          shared.set(key, s);
        }
        o = s;
      }
      outcomes.set(r.index, o);
      summary.processed++;
      summary.verdicts[o.verdict]++;
      summary.reasons[o.reasonKey] = (summary.reasons[o.reasonKey] ?? 0) + 1;
      if (o.service !== undefined) (summary.services[o.service] ??= emptyVerdicts())[o.verdict]++;
      const out: WritableRecord[] = [];
      const off = offsets[k] as number;
      if (o.verdict !== 'drop' && o.verdict !== 'reject') {
        // A view of the batch's buffer: the rewritten bytes, not copied again.
        out.push({ timestampNs: r.timestampNs, linkType: r.linkType, l2: r.l2, ip: data.subarray(off, off + (lengths[k] as number)) });
      }
      if (o.reply) {
        summary.replies++;
        out.push({ timestampNs: r.timestampNs, linkType: r.linkType, l2: replyL2(r), ip: o.reply });
      }
      written[pos] = out;
    });
    summary.lastTime = now;
    i = j;
  }
  const output: WritableRecord[] = [];
  for (const w of written) if (w) for (const r of w) output.push(r);
  summary.written = output.length;
  return { summary, output, outcomes };
}
