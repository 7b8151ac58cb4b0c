// Capture files (src/packet/pcap.ts): hand-built known-answer files for every format, byte order and link
// type, malformed files, committed real captures, live captures with tcpdump checked by tshark, and
// property tests of the writer and of the reader's error handling.
import { spawn, spawnSync } from 'node:child_process';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { liveCaptureSupport } from './helpers/capture.js';
import { runCli } from '../src/cli/main.js';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  CaptureError,
  CaptureReader,
  LINKTYPE,
  PcapWriter,
  decodeLinkLayer,
  detectCaptureFormat,
  ipPacketLength,
  readCapture,
  writePcap,
  type CaptureFile,
  type CaptureRecord,
  type WritableRecord,
} from '../src/packet/pcap.js';

// ---- byte builders ----

class W {
  private readonly parts: number[] = [];
  constructor(private readonly le: boolean) {}
  u8(v: number): this {
    this.parts.push(v & 0xff);
    return this;
  }
  u16(v: number): this {
    const b = [(v >> 8) & 0xff, v & 0xff];
    this.parts.push(...(this.le ? b.reverse() : b));
    return this;
  }
  u32(v: number): this {
    const b = [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
    this.parts.push(...(this.le ? b.reverse() : b));
    return this;
  }
  u64(v: bigint): this {
    const hi = Number((BigInt.asUintN(64, v) >> 32n) & 0xffffffffn);
    const lo = Number(BigInt.asUintN(64, v) & 0xffffffffn);
    return this.le ? this.u32(lo).u32(hi) : this.u32(hi).u32(lo);
  }
  bytes(b: Uint8Array | number[]): this {
    this.parts.push(...b);
    return this;
  }
  pad4(): this {
    while (this.parts.length % 4 !== 0) this.parts.push(0);
    return this;
  }
  get length(): number {
    return this.parts.length;
  }
  done(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

interface PcapRec {
  sec: number;
  frac: number;
  data: Uint8Array;
  orig?: number;
  incl?: number;
}

function pcapFile(o: { le: boolean; nano?: boolean; linkType: number; snaplen?: number; major?: number }, recs: PcapRec[]): Uint8Array {
  const w = new W(o.le);
  w.u32(o.nano === true ? 0xa1b23c4d : 0xa1b2c3d4).u16(o.major ?? 2).u16(4).u32(0).u32(0).u32(o.snaplen ?? 65535).u32(o.linkType);
  for (const r of recs) w.u32(r.sec).u32(r.frac).u32(r.incl ?? r.data.length).u32(r.orig ?? r.data.length).bytes(r.data);
  return w.done();
}

function option(le: boolean, code: number, value: Uint8Array | number[]): Uint8Array {
  return new W(le).u16(code).u16(value.length).bytes(value).pad4().done();
}
const endOfOpt = (le: boolean): Uint8Array => new W(le).u32(0).done();

function block(le: boolean, type: number, body: Uint8Array, trailer?: number): Uint8Array {
  const total = 12 + body.length;
  return new W(le).u32(type).u32(total).bytes(body).u32(trailer ?? total).done();
}
function shb(le: boolean, opts: Uint8Array = new Uint8Array(0), major = 1): Uint8Array {
  return block(le, 0x0a0d0d0a, concat(new W(le).u32(0x1a2b3c4d).u16(major).u16(0).u64(-1n).done(), opts));
}
function idb(le: boolean, linkType: number, snaplen: number, opts: Uint8Array = new Uint8Array(0)): Uint8Array {
  return block(le, 1, concat(new W(le).u16(linkType).u16(0).u32(snaplen).done(), opts));
}
function epb(le: boolean, ifId: number, units: bigint, data: Uint8Array, orig = data.length, opts: Uint8Array = new Uint8Array(0)): Uint8Array {
  const w = new W(le).u32(ifId).u32(Number(units >> 32n)).u32(Number(units & 0xffffffffn)).u32(data.length).u32(orig);
  return block(le, 6, concat(w.bytes(data).pad4().done(), opts));
}
function opb(le: boolean, ifId: number, units: bigint, data: Uint8Array, orig = data.length): Uint8Array {
  const w = new W(le).u16(ifId).u16(0).u32(Number(units >> 32n)).u32(Number(units & 0xffffffffn)).u32(data.length).u32(orig);
  return block(le, 2, w.bytes(data).pad4().done());
}
function spb(le: boolean, orig: number, data: Uint8Array): Uint8Array {
  return block(le, 3, new W(le).u32(orig).bytes(data).pad4().done());
}

// ---- packets ----

function checksum16(bytes: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i < bytes.length; i += 2) sum += ((bytes[i] as number) << 8) | (bytes[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** A valid IPv4/UDP packet with correct checksums. */
function ipv4Udp(src: number[], dst: number[], sport: number, dport: number, payload: Uint8Array): Uint8Array {
  const total = 20 + 8 + payload.length;
  const p = new Uint8Array(total);
  const v = new DataView(p.buffer);
  p[0] = 0x45;
  v.setUint16(2, total);
  v.setUint16(4, 0x1234);
  p[8] = 64;
  p[9] = 17;
  p.set(src, 12);
  p.set(dst, 16);
  v.setUint16(10, checksum16(p.subarray(0, 20)));
  v.setUint16(20, sport);
  v.setUint16(22, dport);
  v.setUint16(24, 8 + payload.length);
  p.set(payload, 28);
  const pseudo = concat(Uint8Array.from(src), Uint8Array.from(dst), Uint8Array.of(0, 17, (8 + payload.length) >> 8, (8 + payload.length) & 0xff));
  let sum = 0;
  for (let i = 0; i < pseudo.length; i += 2) sum += ((pseudo[i] as number) << 8) | (pseudo[i + 1] as number);
  const c = checksum16(p.subarray(20), sum);
  v.setUint16(26, c === 0 ? 0xffff : c);
  return p;
}

function ipv6(next: number, payload: Uint8Array): Uint8Array {
  const p = new Uint8Array(40 + payload.length);
  p[0] = 0x60;
  new DataView(p.buffer).setUint16(4, payload.length);
  p[6] = next;
  p[7] = 64;
  p[23] = 1; // ::1
  p[39] = 1;
  p.set(payload, 40);
  return p;
}

const MAC_A = [0x02, 0, 0, 0, 0, 0xaa];
const MAC_B = [0x02, 0, 0, 0, 0, 0xbb];
const ether = (type: number, vlanTags: [number, number][] = []): Uint8Array => {
  const w = new W(false).bytes(MAC_A).bytes(MAC_B);
  for (const [tpid, vid] of vlanTags) w.u16(tpid).u16(vid);
  return w.u16(type).done();
};
const sll = (proto: number): Uint8Array => new W(false).u16(0).u16(772).u16(6).bytes([0, 0, 0, 0, 0, 0, 0, 0]).u16(proto).done();
const sll2 = (proto: number): Uint8Array => new W(false).u16(proto).u16(0).u32(1).u16(772).u8(0).u8(6).bytes([0, 0, 0, 0, 0, 0, 0, 0]).done();

const V4 = ipv4Udp([10, 0, 0, 1], [10, 0, 0, 2], 1234, 53, new TextEncoder().encode('hello'));
const V6 = ipv6(59, Uint8Array.of(1, 2, 3, 4));

function expectCaptureError(f: () => unknown, code: string, offset: number, detail?: RegExp): CaptureError {
  let caught: unknown;
  try {
    f();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(CaptureError);
  const e = caught as CaptureError;
  expect({ code: e.code, offset: e.offset }).toEqual({ code, offset });
  expect(e.message).toContain(`at byte ${offset}`);
  if (detail) expect(e.detail).toMatch(detail);
  return e;
}

// ---- hand-built known answers ----

describe('pcap reading', () => {
  for (const le of [true, false]) {
    for (const nano of [false, true]) {
      it(`${le ? 'little' : 'big'}-endian, ${nano ? 'nanosecond' : 'microsecond'} magic: timestamps, lengths, Ethernet/IPv4`, () => {
        const data = concat(ether(0x0800), V4);
        const file = pcapFile({ le, nano, linkType: 1, snaplen: 262144 }, [
          { sec: 1700000000, frac: nano ? 123456789 : 123456, data },
          { sec: 1700000001, frac: 7, data },
        ]);
        expect(detectCaptureFormat(file)).toBe('pcap');
        const c = readCapture(file);
        expect(c).toMatchObject({ format: 'pcap', littleEndian: le, resolution: nano ? 'ns' : 'us' });
        expect(c.interfaces).toEqual([expect.objectContaining({ linkType: 1, snaplen: 262144, tsResolution: nano ? 9 : 6 })]);
        expect(c.records.map((r) => r.timestampNs)).toEqual(
          nano ? [1700000000123456789n, 1700000001000000007n] : [1700000000123456000n, 1700000001000007000n],
        );
        const r = c.records[0] as CaptureRecord;
        expect(r).toMatchObject({ index: 0, linkType: 1, origLen: data.length, truncated: false, interface: 0, ipVersion: 4, offset: 24 });
        expect(r.l2).toEqual(ether(0x0800));
        expect(r.ip).toEqual(V4);
        expect(r.notIp).toBeUndefined();
        expect(c.records[1]?.offset).toBe(24 + 16 + data.length);
      });
    }
  }

  it('keeps truncated records (incl_len < orig_len) and flags them; any snaplen', () => {
    const data = concat(ether(0x86dd), V6);
    const file = pcapFile({ le: true, linkType: 1, snaplen: 20 }, [
      { sec: 1, frac: 0, data: data.subarray(0, 20), orig: data.length },
      { sec: 2, frac: 0, data: data.subarray(0, 14), orig: data.length },
      { sec: 3, frac: 0, data: data.subarray(0, 20), orig: 20 },
    ]);
    const [a, b, c] = readCapture(file).records as [CaptureRecord, CaptureRecord, CaptureRecord];
    expect(a).toMatchObject({ truncated: true, origLen: data.length, ipVersion: 6 });
    expect(a.ip).toEqual(V6.subarray(0, 6));
    // Snapped right after the Ethernet header: no IP byte, so not IP, still kept.
    expect(b).toMatchObject({ truncated: true, ip: undefined });
    expect(b.notIp).toMatch(/no IP bytes/);
    expect(b.l2).toEqual(data.subarray(0, 14));
    expect(c.truncated).toBe(false);
  });

  it('ip runs to the end of the captured bytes (Ethernet padding included); ipPacketLength gives the packet', () => {
    const padded = concat(ether(0x0800), V4, new Uint8Array(60 - 14 - V4.length));
    const r = readCapture(pcapFile({ le: true, linkType: 1 }, [{ sec: 0, frac: 0, data: padded }])).records[0] as CaptureRecord;
    expect(r.ip?.length).toBe(60 - 14);
    expect(ipPacketLength(r.ip as Uint8Array)).toBe(V4.length);
    expect(r.ip?.subarray(0, ipPacketLength(r.ip as Uint8Array))).toEqual(V4);
    expect(ipPacketLength(V6)).toBe(V6.length);
    expect(ipPacketLength(V4.subarray(0, 3))).toBeUndefined();
    expect(ipPacketLength(Uint8Array.of(0x60, 0, 0, 0, 0, 0))).toBeUndefined(); // jumbogram
  });

  it('an empty capture (header only) has no records', () => {
    expect(readCapture(pcapFile({ le: false, linkType: 101 }, [])).records).toEqual([]);
  });
});

describe('link types', () => {
  const cases: { name: string; linkType: number; l2: Uint8Array; ip: Uint8Array; version?: 4 | 6; vlans?: number[]; notIp?: RegExp }[] = [
    { name: 'Ethernet IPv4', linkType: 1, l2: ether(0x0800), ip: V4, version: 4 },
    { name: 'Ethernet IPv6', linkType: 1, l2: ether(0x86dd), ip: V6, version: 6 },
    { name: 'Ethernet 802.1Q', linkType: 1, l2: ether(0x0800, [[0x8100, 0x2064]]), ip: V4, version: 4, vlans: [100] },
    { name: 'Ethernet 802.1ad + 802.1Q', linkType: 1, l2: ether(0x86dd, [[0x88a8, 0x00c8], [0x8100, 0x0064]]), ip: V6, version: 6, vlans: [200, 100] },
    { name: 'Ethernet ARP', linkType: 1, l2: ether(0x0806), ip: new Uint8Array(28), notIp: /0x0806 is not IP/ },
    { name: 'Ethernet 802.3 length', linkType: 1, l2: ether(0x0026), ip: new Uint8Array(38), notIp: /802\.3/ },
    { name: 'Ethernet 0x0800 with a v6 packet', linkType: 1, l2: ether(0x0800), ip: V6, notIp: /version nibble is 6/ },
    { name: 'Ethernet truncated VLAN tag', linkType: 1, l2: concat(ether(0x8100).subarray(0, 14), Uint8Array.of(0, 1)), ip: new Uint8Array(0), notIp: /VLAN/ },
    { name: 'Ethernet runt', linkType: 1, l2: new Uint8Array(10), ip: new Uint8Array(0), notIp: /truncated Ethernet/ },
    { name: 'raw 101 IPv4', linkType: 101, l2: new Uint8Array(0), ip: V4, version: 4 },
    { name: 'raw 101 IPv6', linkType: 101, l2: new Uint8Array(0), ip: V6, version: 6 },
    { name: 'raw 12', linkType: 12, l2: new Uint8Array(0), ip: V4, version: 4 },
    { name: 'raw 14', linkType: 14, l2: new Uint8Array(0), ip: V6, version: 6 },
    { name: 'raw 101 garbage', linkType: 101, l2: new Uint8Array(0), ip: Uint8Array.of(0x15, 0), notIp: /nibble 1/ },
    { name: 'IPV4 228', linkType: 228, l2: new Uint8Array(0), ip: V4, version: 4 },
    { name: 'IPV4 228 carrying v6', linkType: 228, l2: new Uint8Array(0), ip: V6, notIp: /nibble is 6/ },
    { name: 'IPV6 229', linkType: 229, l2: new Uint8Array(0), ip: V6, version: 6 },
    { name: 'SLL IPv4', linkType: 113, l2: sll(0x0800), ip: V4, version: 4 },
    { name: 'SLL IPv6', linkType: 113, l2: sll(0x86dd), ip: V6, version: 6 },
    { name: 'SLL ARP', linkType: 113, l2: sll(0x0806), ip: new Uint8Array(28), notIp: /SLL protocol 0x0806/ },
    { name: 'SLL2 IPv4', linkType: 276, l2: sll2(0x0800), ip: V4, version: 4 },
    { name: 'SLL2 IPv6', linkType: 276, l2: sll2(0x86dd), ip: V6, version: 6 },
    { name: 'SLL2 truncated', linkType: 276, l2: sll2(0x0800).subarray(0, 12), ip: new Uint8Array(0), notIp: /cooked v2/ },
    { name: 'NULL little-endian AF_INET', linkType: 0, l2: Uint8Array.of(2, 0, 0, 0), ip: V4, version: 4 },
    { name: 'NULL big-endian AF_INET', linkType: 0, l2: Uint8Array.of(0, 0, 0, 2), ip: V4, version: 4 },
    { name: 'NULL little-endian AF_INET6 (Darwin 30)', linkType: 0, l2: Uint8Array.of(30, 0, 0, 0), ip: V6, version: 6 },
    { name: 'NULL big-endian AF_INET6 (FreeBSD 28)', linkType: 0, l2: Uint8Array.of(0, 0, 0, 28), ip: V6, version: 6 },
    { name: 'NULL unknown family', linkType: 0, l2: Uint8Array.of(7, 0, 0, 0), ip: V4, notIp: /family 7/ },
    { name: 'LOOP AF_INET', linkType: 108, l2: Uint8Array.of(0, 0, 0, 2), ip: V4, version: 4 },
    { name: 'LOOP AF_INET6 (24)', linkType: 108, l2: Uint8Array.of(0, 0, 0, 24), ip: V6, version: 6 },
    { name: 'LOOP is big-endian only', linkType: 108, l2: Uint8Array.of(2, 0, 0, 0), ip: V4, notIp: /not IP/ },
    { name: 'unknown link type', linkType: 147, l2: new Uint8Array(0), ip: V4, notIp: /link type 147/ },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const data = concat(c.l2, c.ip);
      const file = pcapFile({ le: true, linkType: c.linkType }, [{ sec: 5, frac: 6, data }]);
      const r = readCapture(file).records[0] as CaptureRecord;
      expect(r.linkType).toBe(c.linkType);
      if (c.notIp) {
        expect(r.ip).toBeUndefined();
        expect(r.notIp).toMatch(c.notIp);
        expect(r.l2).toEqual(data); // all captured bytes, so writing back loses nothing
      } else {
        expect(r.notIp).toBeUndefined();
        expect(r.ipVersion).toBe(c.version);
        expect(r.l2).toEqual(c.l2);
        expect(r.ip).toEqual(c.ip);
        expect(r.vlans).toEqual(c.vlans);
      }
      expect(decodeLinkLayer(c.linkType, data)).toEqual({
        l2: r.l2,
        ip: r.ip,
        ...(r.ipVersion === undefined ? {} : { ipVersion: r.ipVersion }),
        ...(r.notIp === undefined ? {} : { notIp: r.notIp }),
        ...(r.vlans === undefined ? {} : { vlans: r.vlans }),
      });
    });
  }
});

/** A pcapng file exercising every block type; the same bytes in either byte order. */
function richPcapng(le: boolean): Uint8Array {
  const te = new TextEncoder();
  return concat(
    shb(le, concat(option(le, 4, te.encode('svcplane test')), endOfOpt(le))),
    idb(le, 1, 0, concat(option(le, 2, te.encode('eth0')), endOfOpt(le))), // microseconds by default
    idb(le, 101, 65535, concat(option(le, 9, [9]), option(le, 2, te.encode('tun0')), endOfOpt(le))),
    block(le, 4, new W(le).u16(1).u16(8).bytes([10, 0, 0, 1]).bytes(te.encode('a\0\0\0')).u32(0).done()), // NRB: skipped
    epb(le, 0, 1700000000123456n, concat(ether(0x0800), V4), undefined, concat(option(le, 2, [0, 0, 0, 1]), endOfOpt(le))),
    epb(le, 1, 1700000000987654321n, V6, 100),
    idb(le, 113, 0, concat(option(le, 9, [0x80 | 20]), option(le, 14, new W(le).u64(10n).done()), endOfOpt(le))), // 2^-20 s, +10 s
    epb(le, 2, 3n << 20n, concat(sll(0x0800), V4)),
    block(le, 0x40000bad, new W(le).u32(32473).bytes([1, 2, 3, 4]).done()), // custom block: skipped
    block(le, 0x12345678, new Uint8Array(8)), // unknown: skipped
    block(le, 5, new W(le).u32(0).u32(0).u32(0).u32(0).done()), // ISB: skipped
    opb(le, 1, 42n, V4),
  );
}

describe('pcapng reading', () => {
  for (const le of [true, false]) {
    it(`${le ? 'little' : 'big'}-endian section: IDB link types and if_tsresol, EPB, OPB, skipped blocks`, () => {
      const file = richPcapng(le);
      expect(detectCaptureFormat(file)).toBe('pcapng');
      const c = readCapture(file);
      expect(c.format).toBe('pcapng');
      expect(c.littleEndian).toBe(le);
      expect(c.resolution).toBeUndefined();
      expect(c.interfaces.map((i) => [i.linkType, i.snaplen, i.tsResolution, i.tsOffsetSeconds, i.name, i.localId, i.section])).toEqual([
        [1, 0, 6, 0n, 'eth0', 0, 0],
        [101, 65535, 9, 0n, 'tun0', 1, 0],
        [113, 0, 0x94, 10n, undefined, 2, 0],
      ]);
      expect(c.records.map((r) => [r.index, r.interface, r.linkType, r.timestampNs, r.ipVersion, r.origLen, r.truncated])).toEqual([
        [0, 0, 1, 1700000000123456000n, 4, 14 + V4.length, false],
        [1, 1, 101, 1700000000987654321n, 6, 100, true],
        [2, 2, 113, 13_000_000_000n, 4, 16 + V4.length, false],
        [3, 1, 101, 42n, 4, V4.length, false],
      ]);
      expect(c.records[0]?.ip).toEqual(V4);
      expect(c.records[0]?.l2).toEqual(ether(0x0800));
      expect(c.records[1]?.ip).toEqual(V6);
      expect(c.records[2]?.l2).toEqual(sll(0x0800));
      expect(c.records[3]?.ip).toEqual(V4);
    });
  }

  it('several sections, each in its own byte order, with their own interface IDs', () => {
    const file = concat(
      shb(true),
      idb(true, 1, 0),
      epb(true, 0, 1n, concat(ether(0x0800), V4)),
      shb(false),
      idb(false, 229, 0, concat(option(false, 9, [3]), endOfOpt(false))), // milliseconds
      idb(false, 228, 0),
      epb(false, 1, 5n, V4),
      epb(false, 0, 7n, V6),
      spb(false, V6.length, V6),
    );
    const c = readCapture(file);
    expect(c.interfaces.map((i) => [i.index, i.section, i.localId, i.linkType])).toEqual([
      [0, 0, 0, 1],
      [1, 1, 0, 229],
      [2, 1, 1, 228],
    ]);
    expect(c.records.map((r) => [r.interface, r.linkType, r.timestampNs, r.ipVersion])).toEqual([
      [0, 1, 1000n, 4],
      [2, 228, 5000n, 4],
      [1, 229, 7_000_000n, 6],
      [1, 229, 0n, 6], // SPB: interface 0 of its section, no timestamp
    ]);
  });

  it('Simple Packet Blocks: captured length is min(original length, snaplen, block space)', () => {
    const data = concat(ether(0x0800), V4);
    const file = concat(shb(true), idb(true, 1, 20), spb(true, data.length, data.subarray(0, 20)), spb(true, 3, data.subarray(0, 3)));
    const [a, b] = readCapture(file).records as [CaptureRecord, CaptureRecord];
    expect(a).toMatchObject({ origLen: data.length, truncated: true, ipVersion: 4 });
    expect(a.ip).toEqual(V4.subarray(0, 6));
    expect(b).toMatchObject({ origLen: 3, truncated: false, ip: undefined });
    expect(b.l2).toEqual(data.subarray(0, 3)); // padding bytes are not packet bytes
  });

  it('CaptureReader yields records lazily and grows interfaces as IDBs are met', () => {
    const reader = new CaptureReader(richPcapng(true));
    const it1 = reader.records();
    expect(reader.interfaces).toHaveLength(0);
    expect(it1.next().value?.index).toBe(0);
    expect(reader.interfaces).toHaveLength(2);
    expect([...it1].map((r) => r.index)).toEqual([1, 2, 3]);
    expect(reader.interfaces).toHaveLength(3);
  });
});

describe('malformed files raise CaptureError with the offset', () => {
  const good = pcapFile({ le: true, linkType: 1 }, [{ sec: 1, frac: 2, data: concat(ether(0x0800), V4) }]);
  const recLen = 16 + 14 + V4.length;

  it('empty file and bad magic', () => {
    expectCaptureError(() => readCapture(new Uint8Array(0)), 'truncated', 0, /empty/);
    expectCaptureError(() => readCapture(new TextEncoder().encode('GIF89a, not a capture')), 'bad-magic', 0, /0x47494638/);
    expectCaptureError(() => readCapture(Uint8Array.of(0xd4, 0xc3)), 'truncated', 0, /magic/);
  });

  it('pcap: truncated file header, unknown version', () => {
    expectCaptureError(() => readCapture(good.subarray(0, 20)), 'truncated', 0, /file header: needs 24 bytes, the file has 20 left/);
    expectCaptureError(() => readCapture(pcapFile({ le: false, linkType: 1, major: 3 }, [])), 'unsupported', 4, /version 3/);
  });

  it('pcap: truncated record header, record past the end', () => {
    expectCaptureError(() => readCapture(concat(good, new Uint8Array(10))), 'truncated', 24 + recLen, /record 1 header/);
    expectCaptureError(() => readCapture(good.subarray(0, good.length - 1)), 'past-end', 24 + 8, /captured length 47 .*\(46 bytes left\)/);
    const huge = pcapFile({ le: false, linkType: 1 }, [{ sec: 0, frac: 0, data: new Uint8Array(4), incl: 0xffffffff }]);
    expectCaptureError(() => readCapture(huge), 'past-end', 32);
  });

  it('pcapng: bad byte-order magic, unknown version, short SHB', () => {
    const f = shb(true);
    f[8] = 0x4c;
    expectCaptureError(() => readCapture(f), 'bad-magic', 8, /byte-order magic/);
    expectCaptureError(() => readCapture(shb(false, undefined, 2)), 'unsupported', 12, /pcapng version 2/);
    expectCaptureError(() => readCapture(block(true, 0x0a0d0d0a, new W(true).u32(0x1a2b3c4d).u32(1).done())), 'block-length', 4, /Section Header/);
    expectCaptureError(() => readCapture(shb(true).subarray(0, 10)), 'truncated', 0, /header/i);
  });

  it('pcapng: block length mismatch, unaligned or too small length, block past the end, truncated block header', () => {
    const head = concat(shb(true), idb(true, 1, 0));
    const e = epb(true, 0, 0n, V4);
    expectCaptureError(() => readCapture(concat(head, block(true, 6, e.subarray(8, e.length - 4), 999))), 'block-length', head.length + e.length - 4, /trailing length 999 differs from leading length/);
    const unaligned = concat(head, e);
    new DataView(unaligned.buffer).setUint32(head.length + 4, e.length - 2, true);
    expectCaptureError(() => readCapture(unaligned), 'block-length', head.length + 4, /multiple of 4/);
    const small = concat(head, new W(true).u32(6).u32(8).u32(8).done());
    expectCaptureError(() => readCapture(small), 'block-length', head.length + 4);
    expectCaptureError(() => readCapture(concat(head, e).subarray(0, head.length + e.length - 4)), 'past-end', head.length + 4, /runs past the end/);
    expectCaptureError(() => readCapture(concat(head, new Uint8Array(6))), 'truncated', head.length, /block header/);
    expectCaptureError(() => readCapture(concat(head, new W(true).u32(0x99).u32(0x1000).u32(0).u32(0).done())), 'past-end', head.length + 4);
  });

  it('pcapng: packet past its block, unknown interface, option past its block, bad if_tsresol', () => {
    const head = concat(shb(false), idb(false, 1, 0));
    const e = epb(false, 0, 0n, V4);
    new DataView(e.buffer).setUint32(20, e.length, false); // captured length
    expectCaptureError(() => readCapture(concat(head, e)), 'past-end', head.length + 20, /captured length \d+ runs past its block/);
    expectCaptureError(() => readCapture(concat(head, epb(false, 1, 0n, V4))), 'invalid', head.length + 8, /interface 1 is not described/);
    expectCaptureError(() => readCapture(concat(shb(true), spb(true, 4, V4.subarray(0, 4)))), 'invalid', 28, /describes no interface/);
    const badOpt = idb(true, 1, 0, new W(true).u16(2).u16(40).u32(0).done());
    expectCaptureError(() => readCapture(concat(shb(true), badOpt)), 'invalid', 28 + 16, /option 2 of 40 bytes runs past its block/);
    const badRes = idb(true, 1, 0, concat(option(true, 9, [6, 6]), endOfOpt(true)));
    expectCaptureError(() => readCapture(concat(shb(true), badRes)), 'invalid', 28 + 16, /if_tsresol/);
    expectCaptureError(() => readCapture(concat(shb(true), block(true, 1, new Uint8Array(4)))), 'block-length', 28 + 4, /Interface Description/);
  });

  it('errors are raised when the bad record is reached, after the good ones', () => {
    const reader = new CaptureReader(concat(good, Uint8Array.of(1, 2, 3)));
    const it1 = reader.records();
    expect(it1.next().done).toBe(false);
    expect(() => it1.next()).toThrow(CaptureError);
  });
});

// ---- writing ----

describe('writePcap', () => {
  const ethRec = (ts: bigint, ip: Uint8Array): WritableRecord => ({ timestampNs: ts, linkType: 1, l2: ether(0x0800), ip });

  it('writes the documented header and record bytes (little-endian, nanosecond by default)', () => {
    const out = writePcap([ethRec(1700000000123456789n, V4)]);
    const v = new DataView(out.buffer);
    expect([v.getUint32(0, true), v.getUint16(4, true), v.getUint16(6, true), v.getUint32(16, true), v.getUint32(20, true)]).toEqual([
      0xa1b23c4d, 2, 4, 262144, 1,
    ]);
    expect([v.getUint32(24, true), v.getUint32(28, true), v.getUint32(32, true), v.getUint32(36, true)]).toEqual([
      1700000000, 123456789, 14 + V4.length, 14 + V4.length,
    ]);
    expect(out.subarray(40)).toEqual(concat(ether(0x0800), V4));
  });

  it('microsecond resolution truncates to microseconds', () => {
    const out = writePcap([ethRec(1700000000123456789n, V4)], { resolution: 'us' });
    const c = readCapture(out);
    expect(c.resolution).toBe('us');
    expect(c.records[0]?.timestampNs).toBe(1700000000123456000n);
  });

  it('keeps the shared link type; mixed link types (several pcapng interfaces) become raw IP', () => {
    const c = readCapture(richPcapng(true));
    const mixed = readCapture(writePcap(c.records));
    expect(mixed.interfaces[0]?.linkType).toBe(101);
    expect(mixed.records.map((r) => [r.timestampNs, r.l2.length, r.ipVersion])).toEqual(c.records.map((r) => [r.timestampNs, 0, r.ipVersion]));
    expect(mixed.records.map((r) => r.ip)).toEqual(c.records.map((r) => r.ip));
    // A truncated record keeps its original length (adjusted by the change of its link-layer header).
    expect(mixed.records[1]).toMatchObject({ truncated: true, origLen: 100 });
    const eth = c.records.filter((r) => r.linkType === 1);
    expect(readCapture(writePcap(eth)).interfaces[0]?.linkType).toBe(1);
    expect(readCapture(writePcap([])).interfaces[0]?.linkType).toBe(101);
  });

  it('re-frames to a requested link type', () => {
    const src = [ethRec(1n, V4), { timestampNs: 2n, linkType: 101, l2: new Uint8Array(0), ip: V6 }];
    for (const [linkType, l2v4, l2v6] of [
      [113, sll(0x0800).length, 16],
      [276, 20, 20],
      [0, 4, 4],
      [108, 4, 4],
      [1, 14, 14],
    ] as const) {
      const back = readCapture(writePcap(src, { linkType }));
      expect(back.records.map((r) => [r.linkType, r.l2.length, r.ipVersion])).toEqual([
        [linkType, l2v4, 4],
        [linkType, l2v6, 6],
      ]);
      expect(back.records.map((r) => r.ip)).toEqual([V4, V6]);
    }
    expect(() => writePcap(src, { linkType: 228 })).toThrow(/IPv6 packet cannot be written as link type 228/);
    expect(() => writePcap(src, { linkType: 147 })).toThrow(/cannot synthesize/);
    const arp: WritableRecord = { timestampNs: 0n, linkType: 1, l2: concat(ether(0x0806), new Uint8Array(28)), ip: undefined };
    expect(readCapture(writePcap([arp])).records[0]?.notIp).toMatch(/0x0806/); // same link type: written as is
    expect(() => writePcap([arp, src[1] as WritableRecord])).toThrow(/not IP/);
  });

  it('an Ethernet record whose IP packet grew stays a valid frame (the packet follows the header)', () => {
    const small = ipv4Udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, Uint8Array.of(1));
    const big = ipv4Udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, new Uint8Array(300).fill(7));
    const [r] = readCapture(writePcap([ethRec(5n, small)])).records as [CaptureRecord];
    const back = readCapture(writePcap([{ ...r, ip: big }])).records[0] as CaptureRecord;
    expect(back).toMatchObject({ origLen: 14 + big.length, truncated: false });
    expect(back.ip).toEqual(big);
  });

  it('rejects timestamps pcap cannot hold', () => {
    expect(() => writePcap([ethRec(-1n, V4)])).toThrow(RangeError);
    expect(() => writePcap([ethRec(2n ** 32n * 1_000_000_000n, V4)])).toThrow(/2106/);
  });

  it('PcapWriter streams the same bytes writePcap writes', () => {
    const recs = readCapture(richPcapng(false)).records;
    const w = new PcapWriter({ linkType: 101 });
    expect(concat(w.header(), ...recs.map((r) => w.record(r)))).toEqual(writePcap(recs));
  });
});

// ---- properties ----

const ipPacketArb = fc.oneof(
  fc.uint8Array({ maxLength: 80 }).map((rest) => concat(Uint8Array.of(0x45), rest)),
  fc.uint8Array({ maxLength: 80 }).map((rest) => concat(Uint8Array.of(0x60), rest)),
);
const macsArb = fc.uint8Array({ minLength: 12, maxLength: 12 });
const vlanArb = fc.array(fc.tuple(fc.constantFrom(0x8100, 0x88a8, 0x9100), fc.integer({ min: 0, max: 0xffff })), { maxLength: 3 });

type Frame = { linkType: number; l2: Uint8Array; ip: Uint8Array | undefined };
const frameArb = (linkType: number): fc.Arbitrary<Frame> => {
  const v = (ip: Uint8Array): 4 | 6 => ((ip[0] as number) >> 4 === 4 ? 4 : 6);
  switch (linkType) {
    case 1:
      return fc.oneof(
        fc.tuple(macsArb, vlanArb, ipPacketArb).map(([macs, tags, ip]) => {
          const w = new W(false).bytes(macs);
          for (const [tpid, tci] of tags) w.u16(tpid).u16(tci);
          return { linkType, l2: w.u16(v(ip) === 4 ? 0x0800 : 0x86dd).done(), ip };
        }),
        fc.tuple(macsArb, fc.uint8Array({ maxLength: 40 })).map(([macs, rest]) => ({
          linkType,
          l2: concat(macs, Uint8Array.of(0x08, 0x06), rest),
          ip: undefined,
        })),
      );
    case 113:
      return ipPacketArb.map((ip) => ({ linkType, l2: sll(v(ip) === 4 ? 0x0800 : 0x86dd), ip }));
    case 276:
      return ipPacketArb.map((ip) => ({ linkType, l2: sll2(v(ip) === 4 ? 0x0800 : 0x86dd), ip }));
    case 0:
      return fc.tuple(ipPacketArb, fc.boolean()).map(([ip, le]) => {
        const fam = v(ip) === 4 ? 2 : 30;
        return { linkType, l2: le ? Uint8Array.of(fam, 0, 0, 0) : Uint8Array.of(0, 0, 0, fam), ip };
      });
    case 108:
      return ipPacketArb.map((ip) => ({ linkType, l2: Uint8Array.of(0, 0, 0, v(ip) === 4 ? 2 : 24), ip }));
    case 228:
      return ipPacketArb.map((ip) => ({ linkType, l2: new Uint8Array(0), ip: concat(Uint8Array.of(0x45), ip.subarray(1)) }));
    case 229:
      return ipPacketArb.map((ip) => ({ linkType, l2: new Uint8Array(0), ip: concat(Uint8Array.of(0x60), ip.subarray(1)) }));
    default:
      return ipPacketArb.map((ip) => ({ linkType, l2: new Uint8Array(0), ip }));
  }
};
const LINK_TYPES = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276];
const recordArb = (linkType: number, resolution: 'us' | 'ns'): fc.Arbitrary<WritableRecord> =>
  fc
    .tuple(frameArb(linkType), fc.bigInt({ min: 0n, max: 2n ** 32n * 1_000_000_000n - 1n }), fc.nat(100))
    .map(([f, ts, extra]) => ({
      ...f,
      timestampNs: resolution === 'us' ? (ts / 1000n) * 1000n : ts,
      origLen: f.l2.length + (f.ip?.length ?? 0) + extra,
      truncated: extra > 0,
    }));

describe('svcplane replay -w', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'svcplane-replay-w-'));
  const replay = async (input: Uint8Array, out: string): Promise<{ code: number; err: string }> => {
    const file = join(tmp, 'in.pcapng');
    writeFileSync(file, input);
    let err = '';
    const code = await runCli(['replay', 'examples/cluster', '--node', 'node-a', '--pcap', file, '-w', out], { stdout: () => undefined, stderr: (s) => (err += s) });
    return { code, err };
  };

  it('writes the file whole, with no partial file left', async () => {
    const out = join(tmp, 'ok.pcap');
    const r = await replay(concat(shb(true), idb(true, LINKTYPE.RAW, 0), epb(true, 0, 5_000_000n, V4), epb(true, 0, 6_000_000n, V4)), out);
    expect(r.code).toBe(0);
    expect(readCapture(readFileSync(out)).records.map((x) => Array.from(x.ip ?? []))).toEqual([Array.from(V4), Array.from(V4)]);
    expect(readdirSync(tmp).filter((n) => n.endsWith('.partial'))).toEqual([]);
  });

  it('a record pcap cannot hold (a timestamp past 2106) fails the write: exit 1, no file, no partial file', async () => {
    const out = join(tmp, 'late.pcap');
    // microsecond units (the pcapng default): 2^33 s is past 2106
    const r = await replay(concat(shb(true), idb(true, LINKTYPE.RAW, 0), epb(true, 0, 5_000_000n, V4), epb(true, 0, (1n << 33n) * 1_000_000n, V4)), out);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/late\.pcap: cannot write the capture \(nothing written\): record 1: timestamp .* past 2106/);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(tmp).filter((n) => n.endsWith('.partial'))).toEqual([]);
  });
});

describe('properties', () => {
  it('records -> writePcap -> readCapture gives the same bytes, timestamps, lengths and link type', () => {
    const arb = fc
      .tuple(fc.constantFrom(...LINK_TYPES), fc.constantFrom('us' as const, 'ns' as const))
      .chain(([lt, res]) => fc.tuple(fc.constant(lt), fc.constant(res), fc.array(recordArb(lt, res), { maxLength: 12 })));
    fc.assert(
      fc.property(arb, ([linkType, resolution, recs]) => {
        const c = readCapture(writePcap(recs, { resolution, linkType }));
        expect(c.interfaces[0]?.linkType).toBe(linkType);
        expect(c.records).toHaveLength(recs.length);
        c.records.forEach((r, i) => {
          const w = recs[i] as WritableRecord;
          expect([r.linkType, r.timestampNs, r.origLen, r.truncated]).toEqual([linkType, w.timestampNs, w.origLen, w.truncated]);
          expect(r.l2).toEqual(w.l2);
          expect(r.ip).toEqual(w.ip);
        });
      }),
      { numRuns: 300 },
    );
  });

  it('mixed link types are written as raw IP with the same IP bytes and timestamps', () => {
    const arb = fc.array(
      fc.constantFrom(...LINK_TYPES).chain((lt) => recordArb(lt, 'ns')),
      { minLength: 1, maxLength: 10 },
    ).filter((rs) => rs.every((r) => r.ip !== undefined));
    fc.assert(
      fc.property(arb, (recs) => {
        const c = readCapture(writePcap(recs));
        const expected = new Set(recs.map((r) => r.linkType)).size === 1 ? recs[0]?.linkType : 101;
        expect(c.interfaces[0]?.linkType).toBe(expected);
        expect(c.records.map((r) => r.timestampNs)).toEqual(recs.map((r) => r.timestampNs));
        expect(c.records.map((r) => r.ip)).toEqual(recs.map((r) => r.ip));
      }),
      { numRuns: 200 },
    );
  });

  const sampleFiles = [
    writePcap([
      { timestampNs: 1n, linkType: 1, l2: ether(0x0800, [[0x8100, 5]]), ip: V4 },
      { timestampNs: 2n, linkType: 1, l2: ether(0x86dd), ip: V6 },
    ]),
    pcapFile({ le: false, nano: true, linkType: 276 }, [{ sec: 1, frac: 2, data: concat(sll2(0x0800), V4) }]),
    richPcapng(true),
    richPcapng(false),
    concat(shb(true), idb(true, 0, 0), epb(true, 0, 9n, concat(Uint8Array.of(2, 0, 0, 0), V4)), shb(false), idb(false, 113, 0), spb(false, 40, concat(sll(0x86dd), V6))),
  ];
  const mutationArb = fc.tuple(
    fc.nat(sampleFiles.length - 1),
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
    fc.option(fc.nat()),
  );

  it('random byte mutations and truncations either parse or raise CaptureError, never another exception', () => {
    fc.assert(
      fc.property(mutationArb, ([which, edits, cut]) => {
        const base = sampleFiles[which] as Uint8Array;
        let f = base.slice();
        for (const [at, value] of edits) f[at % f.length] = value;
        if (cut !== null) f = f.subarray(0, cut % (f.length + 1));
        try {
          const c = readCapture(f);
          for (const r of c.records) expect(r.l2.length + (r.ip?.length ?? 0)).toBeLessThanOrEqual(f.length);
        } catch (e) {
          if (!(e instanceof CaptureError)) throw e;
          expect(e.offset).toBeGreaterThanOrEqual(0);
          expect(e.offset).toBeLessThanOrEqual(f.length);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('read in windows of any size (a CaptureFile), a file gives the same records and the same errors as read whole', () => {
    /** Everything a reader yields, or the error it stops with. */
    const outcome = (source: Uint8Array | CaptureFile): unknown => {
      const got: unknown[] = [];
      try {
        const reader = new CaptureReader(source);
        for (const r of reader.records()) got.push({ ...r, l2: Array.from(r.l2), ip: r.ip ? Array.from(r.ip) : undefined });
        got.push(reader.interfaces);
      } catch (e) {
        if (!(e instanceof CaptureError)) throw e;
        got.push({ error: e.message, offset: e.offset });
      }
      return got;
    };
    const windowed = (f: Uint8Array, window: number): CaptureFile => ({
      size: f.length,
      window,
      read: (out, position) => out.set(f.subarray(position, position + out.length)),
    });
    fc.assert(
      fc.property(mutationArb, fc.integer({ min: 1, max: 96 }), ([which, edits, cut], window) => {
        let f = (sampleFiles[which] as Uint8Array).slice();
        for (const [at, value] of edits) f[at % f.length] = value;
        if (cut !== null) f = f.subarray(0, cut % (f.length + 1));
        expect(outcome(windowed(f, window))).toEqual(outcome(f));
      }),
      { numRuns: 1500 },
    );
    for (const file of ['examples/captures/node-a.pcap', ...readdirSync('test/fixtures/pcap').filter((n) => /\.pcap(ng)?$/.test(n)).map((n) => `test/fixtures/pcap/${n}`)]) {
      const f = new Uint8Array(readFileSync(file));
      for (const window of [1, 7, 64, 1000]) expect(outcome(windowed(f, window)), `${file}, windows of ${window}`).toEqual(outcome(f));
    }
  });

  it('mutating length fields specifically (pcapng block lengths, pcap incl_len) never escapes as RangeError', () => {
    const lengthFields = [
      { file: 2, at: [4, 48, 56, 88] }, // SHB length and trailer, the two IDB lengths
      { file: 0, at: [32, 36, 99] }, // incl_len, orig_len of record 0, incl_len of record 1
    ];
    fc.assert(
      fc.property(fc.nat(1), fc.nat(3), fc.integer({ min: 0, max: 0xffffffff }), (fi, ai, value) => {
        const spec = lengthFields[fi] as { file: number; at: number[] };
        const f = (sampleFiles[spec.file] as Uint8Array).slice();
        const at = spec.at[ai % spec.at.length] as number;
        new DataView(f.buffer).setUint32(at, value, true);
        try {
          readCapture(f);
        } catch (e) {
          if (!(e instanceof CaptureError)) throw e;
        }
      }),
      { numRuns: 1000 },
    );
  });
});

// ---- real captures ----

const FIXTURES = join(import.meta.dirname, 'fixtures', 'pcap');

interface IpSummary {
  src: string;
  dst: string;
  proto: number;
  sport: number;
  dport: number;
  tcpFlags?: number;
  payload: Uint8Array;
}
function summarize(ip: Uint8Array): IpSummary {
  const v = new DataView(ip.buffer, ip.byteOffset, ip.byteLength);
  expect(ip[0]! >> 4).toBe(4);
  const ihl = (ip[0]! & 0xf) * 4;
  const total = v.getUint16(2);
  const proto = ip[9]!;
  const l4 = ihl;
  const s: IpSummary = {
    src: [...ip.subarray(12, 16)].join('.'),
    dst: [...ip.subarray(16, 20)].join('.'),
    proto,
    sport: v.getUint16(l4),
    dport: v.getUint16(l4 + 2),
    payload: ip.subarray(proto === 17 ? l4 + 8 : l4 + ((ip[l4 + 12]! >> 4) * 4), total),
  };
  if (proto === 6) s.tcpFlags = ip[l4 + 13]!;
  return s;
}

const SYN = 0x02;
const ACK = 0x10;

/** The 5 packets every capture holds: UDP ping, UDP pong, TCP SYN, SYN-ACK, ACK. */
function checkTraffic(c: ReturnType<typeof readCapture>, t: { udpPort: number; tcpPort: number; udpClient: number; tcpClient: number; ping: string }): void {
  expect(c.records).toHaveLength(5);
  const s = c.records.map((r) => {
    expect(r.ip, r.notIp).toBeDefined();
    expect(r.truncated).toBe(false);
    return summarize(r.ip as Uint8Array);
  });
  for (const p of s) expect([p.src, p.dst]).toEqual(['127.0.0.1', '127.0.0.1']);
  expect(s.map((p) => [p.proto, p.sport, p.dport, p.tcpFlags])).toEqual([
    [17, t.udpClient, t.udpPort, undefined],
    [17, t.udpPort, t.udpClient, undefined],
    [6, t.tcpClient, t.tcpPort, SYN],
    [6, t.tcpPort, t.tcpClient, SYN | ACK],
    [6, t.tcpClient, t.tcpPort, ACK],
  ]);
  expect(new TextDecoder().decode(s[0]!.payload)).toBe(t.ping);
  expect(new TextDecoder().decode(s[1]!.payload)).toBe(`pong ${t.ping}`);
  const ts = c.records.map((r) => r.timestampNs);
  for (let i = 1; i < ts.length; i++) expect(ts[i]! >= ts[i - 1]!).toBe(true);
}

describe('committed real captures (tcpdump, editcap, mergecap output)', () => {
  // Made by the live tests below (SVCPLANE_PCAP_FIXTURES=1); the JSON has the ports of that run.
  const meta = JSON.parse(readFileSync(join(FIXTURES, 'captures.json'), 'utf8')) as Record<string, Parameters<typeof checkTraffic>[1]>;
  const files: [string, number, 'pcap' | 'pcapng', boolean][] = [
    ['lo-us.pcap', 1, 'pcap', false],
    ['lo-ns.pcap', 1, 'pcap', false],
    ['lo-ns.pcapng', 1, 'pcapng', false],
    ['any-sll.pcap', 113, 'pcap', false],
    ['any-sll2.pcap', 276, 'pcap', false],
  ];
  for (const [name, linkType, format] of files) {
    it(name, () => {
      const c = readCapture(readFileSync(join(FIXTURES, name)));
      expect(c.format).toBe(format);
      expect(c.records.every((r) => r.linkType === linkType)).toBe(true);
      checkTraffic(c, meta[name]!);
      if (linkType === 1) for (const r of c.records) expect(r.l2).toEqual(Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0));
    });
  }
  it('merged.pcapng: two interfaces of different link types, written back as raw IP', () => {
    const c = readCapture(readFileSync(join(FIXTURES, 'merged.pcapng')));
    expect(c.interfaces.map((i) => i.linkType).sort((a, b) => a - b)).toEqual([1, 113]);
    expect(c.records).toHaveLength(10);
    const back = readCapture(writePcap(c.records));
    expect(back.interfaces[0]?.linkType).toBe(101);
    expect(back.records.map((r) => r.ip)).toEqual(c.records.map((r) => r.ip));
    expect(back.records.map((r) => r.timestampNs)).toEqual(c.records.map((r) => r.timestampNs));
  });
});

// Live captures need tcpdump and tshark (apt-get install tcpdump tshark) and root for capturing.
const support = liveCaptureSupport(['tcpdump', 'tshark', 'editcap', 'mergecap']);
const skipLive = !support.ok;
const skipReason = support.reason;
if (skipLive) console.log(`pcap.test.ts: SKIPPING live tcpdump/tshark captures: ${skipReason}`);

const tmp = mkdtempSync(join(tmpdir(), 'svcplane-pcap-'));

async function listenTcp(): Promise<Server> {
  const server = createServer((sock) => sock.on('error', () => undefined));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}
async function bindUdp(): Promise<UdpSocket> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  return s;
}
const portOf = (a: ReturnType<Server['address']> | ReturnType<UdpSocket['address']>): number => (a as { port: number }).port;

/**
 * Runs tcpdump for 5 packets on `iface` while this process makes them: a UDP ping and its pong, then a TCP
 * handshake. tcpdump exits by itself after 5 packets; it is killed after 2.5 s otherwise.
 */
async function liveCapture(iface: string, file: string, extra: string[] = []): Promise<Parameters<typeof checkTraffic>[1]> {
  const server = await listenTcp();
  const udpServer = await bindUdp();
  udpServer.on('message', (msg, rinfo) => {
    udpServer.send(`pong ${msg.toString()}`, rinfo.port, rinfo.address);
  });
  const udpClient = await bindUdp();
  const t = {
    tcpPort: portOf(server.address()),
    udpPort: portOf(udpServer.address()),
    udpClient: portOf(udpClient.address()),
    tcpClient: 0,
    ping: `ping ${process.pid} ${Date.now()}`,
  };
  // -s/-B: in immediate mode libpcap's ring holds snaplen-sized frames; with the default snaplen and 2 MiB
  // it holds 8, and on a busy host the packets that arrive before the filter is set fill it and ours are
  // dropped. -Z root: keep root so tcpdump can write into our private temp dir.
  const args = ['-i', iface, '-w', file, '-U', '--immediate-mode', '-s', '2048', '-B', '32768', '-Z', 'root', '-c', '5', ...extra, `port ${t.tcpPort} or port ${t.udpPort}`];
  const p = spawn('tcpdump', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const exited = new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code)));
  const killer = setTimeout(() => p.kill('SIGKILL'), 2500);
  let client: Socket | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      p.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        if (err.includes('listening on')) resolve();
      });
      void exited.then((code) => reject(new Error(`tcpdump exited (${code}) before listening: ${err}`)));
    });
    await new Promise((resolve) => setTimeout(resolve, 50)); // let tcpdump drain what predates its filter
    const pong = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no UDP pong within 2 s')), 2000);
      udpClient.once('message', () => resolve(clearTimeout(timer)));
    });
    udpClient.send(t.ping, t.udpPort, '127.0.0.1');
    await pong;
    const c = connect(t.tcpPort, '127.0.0.1');
    client = c;
    await new Promise<void>((resolve, reject) => c.once('connect', resolve).once('error', reject));
    t.tcpClient = c.localPort ?? 0;
    const code = await exited;
    expect(code, `tcpdump ${args.join(' ')}: ${err}`).toBe(0);
  } finally {
    clearTimeout(killer);
    client?.destroy();
    udpClient.close();
    udpServer.close();
    server.close();
  }
  return t;
}

/** tshark's fields of each packet; frame.protocols is cut after udp/tcp (ephemeral ports may match a dissector). */
function tshark(file: string, fields: string[], prefs: string[] = []): string[][] {
  const args = ['-r', file, '-T', 'fields', '-E', 'separator=|', ...prefs.flatMap((p) => ['-o', p]), ...fields.flatMap((f) => ['-e', f])];
  const r = spawnSync('tshark', args, { encoding: 'utf8', timeout: 8000 });
  expect(r.status, r.stderr).toBe(0);
  const cut = (protos: string): string => protos.replace(/:(udp|tcp):.*$/, ':$1');
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => l.split('|'))
    .map((row) => (fields[0] === 'frame.protocols' ? [cut(row[0] ?? ''), ...row.slice(1)] : row));
}

const FIELDS = ['frame.protocols', 'ip.src', 'ip.dst', 'udp.srcport', 'udp.dstport', 'tcp.srcport', 'tcp.dstport', 'tcp.flags', 'udp.payload'];
function expectedFields(t: Parameters<typeof checkTraffic>[1], protos: string): string[][] {
  const hex = (s: string): string => Buffer.from(s).toString('hex');
  const lo = '127.0.0.1';
  return [
    [`${protos}:udp`, lo, lo, `${t.udpClient}`, `${t.udpPort}`, '', '', '', hex(t.ping)],
    [`${protos}:udp`, lo, lo, `${t.udpPort}`, `${t.udpClient}`, '', '', '', hex(`pong ${t.ping}`)],
    [`${protos}:tcp`, lo, lo, '', '', `${t.tcpClient}`, `${t.tcpPort}`, '0x0002', ''],
    [`${protos}:tcp`, lo, lo, '', '', `${t.tcpPort}`, `${t.tcpClient}`, '0x0012', ''],
    [`${protos}:tcp`, lo, lo, '', '', `${t.tcpClient}`, `${t.tcpPort}`, '0x0010', ''],
  ];
}

describe('live captures on 127.0.0.1 (tcpdump, tshark)', () => {
  const saveFixtures = process.env['SVCPLANE_PCAP_FIXTURES'] === '1';
  const meta: Record<string, Parameters<typeof checkTraffic>[1]> = {};
  const keep = (name: string, file: string, t: Parameters<typeof checkTraffic>[1]): void => {
    meta[name] = t;
    if (saveFixtures) {
      writeFileSync(join(FIXTURES, name), readFileSync(file));
      writeFileSync(join(FIXTURES, 'captures.json'), JSON.stringify(meta, null, 2) + '\n');
    }
  };
  const files: Record<string, string> = {};

  it.skipIf(skipLive)('-i lo, microseconds: Ethernet records; writePcap output read by tshark and by readCapture', async () => {
    const f = join(tmp, 'lo-us.pcap');
    const t = await liveCapture('lo', f);
    files['lo'] = f;
    const c = readCapture(readFileSync(f));
    expect(c).toMatchObject({ format: 'pcap', resolution: 'us' });
    expect(c.interfaces[0]?.linkType).toBe(LINKTYPE.ETHERNET);
    checkTraffic(c, t);
    keep('lo-us.pcap', f, t);
    // tshark reads the original and our copy the same way
    const out = join(tmp, 'lo-us.written.pcap');
    writeFileSync(out, writePcap(c.records));
    expect(tshark(f, FIELDS)).toEqual(expectedFields(t, 'eth:ethertype:ip'));
    expect(tshark(out, FIELDS)).toEqual(expectedFields(t, 'eth:ethertype:ip'));
    const back = readCapture(readFileSync(out));
    expect(back.records.map((r) => [r.timestampNs, r.ip, r.l2])).toEqual(c.records.map((r) => [r.timestampNs, r.ip, r.l2]));
  });

  it.skipIf(skipLive)('-i lo --time-stamp-precision=nano, then editcap -F pcapng: the same records, nanosecond timestamps', async () => {
    const f = join(tmp, 'lo-ns.pcap');
    const t = await liveCapture('lo', f, ['--time-stamp-precision=nano']);
    const c = readCapture(readFileSync(f));
    expect(c.resolution).toBe('ns');
    checkTraffic(c, t);
    keep('lo-ns.pcap', f, t);
    const ng = join(tmp, 'lo-ns.pcapng');
    const r = spawnSync('editcap', ['-F', 'pcapng', f, ng], { encoding: 'utf8', timeout: 5000 });
    expect(r.status, r.stderr).toBe(0);
    const n = readCapture(readFileSync(ng));
    expect(n.format).toBe('pcapng');
    expect(n.interfaces.map((i) => [i.linkType, i.tsResolution])).toEqual([[1, 9]]);
    expect(n.records.map((x) => [x.timestampNs, x.ip, x.l2, x.origLen])).toEqual(c.records.map((x) => [x.timestampNs, x.ip, x.l2, x.origLen]));
    keep('lo-ns.pcapng', ng, t);
  });

  it.skipIf(skipLive)('-i any (Linux cooked SLL and SLL2); mergecap with -i lo gives a two-interface pcapng, written as raw IP', async () => {
    const f = join(tmp, 'any-sll.pcap');
    const t = await liveCapture('any', f, ['-y', 'LINUX_SLL']);
    const c = readCapture(readFileSync(f));
    expect(c.interfaces[0]?.linkType).toBe(LINKTYPE.LINUX_SLL);
    checkTraffic(c, t);
    for (const r of c.records) expect(r.l2.length).toBe(16);
    keep('any-sll.pcap', f, t);

    const f2 = join(tmp, 'any-sll2.pcap');
    const t2 = await liveCapture('any', f2); // tcpdump 4.99's default for -i any
    const c2 = readCapture(readFileSync(f2));
    expect(c2.interfaces[0]?.linkType).toBe(LINKTYPE.LINUX_SLL2);
    checkTraffic(c2, t2);
    keep('any-sll2.pcap', f2, t2);
    const out2 = join(tmp, 'any-sll2.written.pcap');
    writeFileSync(out2, writePcap(c2.records));
    expect(tshark(out2, FIELDS)).toEqual(expectedFields(t2, 'sll:ethertype:ip'));

    const lo = files['lo'];
    expect(lo, 'the -i lo test ran first').toBeDefined();
    const merged = join(tmp, 'merged.pcapng');
    const m = spawnSync('mergecap', ['-F', 'pcapng', '-a', '-w', merged, lo as string, f], { encoding: 'utf8', timeout: 5000 });
    expect(m.status, m.stderr).toBe(0);
    const mc = readCapture(readFileSync(merged));
    expect(mc.interfaces.map((i) => i.linkType)).toEqual([1, 113]);
    expect(mc.records.map((r) => r.interface)).toEqual([0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
    if (saveFixtures) writeFileSync(join(FIXTURES, 'merged.pcapng'), readFileSync(merged));
    const raw = join(tmp, 'merged.raw.pcap');
    writeFileSync(raw, writePcap(mc.records));
    expect(readCapture(readFileSync(raw)).interfaces[0]?.linkType).toBe(LINKTYPE.RAW);
    const loT = meta['lo-us.pcap'] as Parameters<typeof checkTraffic>[1];
    expect(tshark(raw, FIELDS)).toEqual([...expectedFields(loT, 'raw:ip'), ...expectedFields(t, 'raw:ip')]);
  });

  it.skipIf(skipLive)('an Ethernet record with a rewritten, longer UDP packet is valid for tshark (lengths and checksums)', () => {
    const lo = files['lo'];
    expect(lo, 'the -i lo test ran first').toBeDefined();
    const c = readCapture(readFileSync(lo as string));
    const ping = c.records[0] as CaptureRecord;
    const s = summarize(ping.ip as Uint8Array);
    const payload = new TextEncoder().encode('a rewritten payload, longer than the original one: '.repeat(4));
    const ip = ipv4Udp([127, 0, 0, 1], [127, 0, 0, 1], s.sport, s.dport, payload);
    const out = join(tmp, 'rewritten.pcap');
    writeFileSync(out, writePcap([{ ...ping, ip }, ...c.records.slice(1)]));
    const rows = tshark(out, ['frame.protocols', 'ip.len', 'udp.length', 'ip.checksum.status', 'udp.checksum.status', 'udp.payload', '_ws.expert'], [
      'ip.check_checksum:TRUE',
      'udp.check_checksum:TRUE',
    ]);
    expect(rows[0]).toEqual(['eth:ethertype:ip:udp', `${ip.length}`, `${8 + payload.length}`, '1', '1', Buffer.from(payload).toString('hex'), '']);
    expect(rows).toHaveLength(5);
  });
});
