// Capture files for packet replay: read pcap and pcapng, decode each record's link layer down to the IP
// packet, write classic pcap.
//
// Every read is bounds-checked: a malformed or truncated file raises CaptureError with the byte offset of
// the problem, never a RangeError. Decoded records hold views (subarrays) into the input bytes; copy them
// before mutating the input or rewriting in place.
//
// pcap:   https://www.ietf.org/archive/id/draft-ietf-opsawg-pcap-04.html
// pcapng: https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html
// Link types: https://www.tcpdump.org/linktypes.html

/** Link-layer header types (LINKTYPE_* values as they appear in files). */
export const LINKTYPE = {
  /** BSD loopback: 4-byte address family in the writer's host byte order. */
  NULL: 0,
  ETHERNET: 1,
  /** DLT_RAW as some systems number it in files (raw IPv4/IPv6). */
  RAW_12: 12,
  RAW_14: 14,
  /** LINKTYPE_RAW: raw IPv4/IPv6, no link-layer header. */
  RAW: 101,
  /** OpenBSD loopback: 4-byte address family, big-endian. */
  LOOP: 108,
  /** Linux cooked capture v1 (`tcpdump -i any`). */
  LINUX_SLL: 113,
  IPV4: 228,
  IPV6: 229,
  /** Linux cooked capture v2 (`tcpdump -i any -y LINUX_SLL2`). */
  LINUX_SLL2: 276,
} as const;

export type CaptureErrorCode =
  | 'bad-magic' // not a pcap/pcapng file, or a pcapng byte-order magic that is neither order
  | 'truncated' // the file ends inside a header
  | 'block-length' // a pcapng block length that is too small, unaligned, or differs from its trailer
  | 'past-end' // a record or block that claims more bytes than the file (or its block) holds
  | 'unsupported' // a version this reader does not know
  | 'invalid'; // a field with an impossible value (unknown interface, option past its block)

/** A malformed capture file. `offset` is the byte offset in the file where the problem is. */
export class CaptureError extends Error {
  override readonly name = 'CaptureError';
  readonly offset: number;
  readonly code: CaptureErrorCode;
  readonly detail: string;
  constructor(offset: number, code: CaptureErrorCode, detail: string) {
    super(`${detail} (at byte ${offset})`);
    this.offset = offset;
    this.code = code;
    this.detail = detail;
  }
}

export type CaptureFormat = 'pcap' | 'pcapng';

/** One capture interface: the single implicit one of a pcap file, or one pcapng Interface Description Block. */
export interface CaptureInterface {
  /** Index into Capture.interfaces (counts across pcapng sections). */
  index: number;
  /** pcapng section number (0 for pcap). */
  section: number;
  /** Interface ID within its section, as Enhanced Packet Blocks refer to it. */
  localId: number;
  linkType: number;
  /** 0 means "no limit" in pcapng. */
  snaplen: number;
  /** if_tsresol byte: MSB clear = 10^-n s, MSB set = 2^-n s. 6 (microseconds) when absent. */
  tsResolution: number;
  /** if_tsoffset: seconds added to every timestamp (0 when absent). */
  tsOffsetSeconds: bigint;
  /** if_name, when present. */
  name?: string;
  /** Byte offset of the IDB (or of the pcap file header). */
  offset: number;
}

/** One captured packet, decoded down to its IP packet. */
export interface CaptureRecord {
  /** 0-based position in the file (across all pcapng sections). */
  index: number;
  timestampNs: bigint;
  linkType: number;
  /**
   * The link-layer header bytes before the IP packet (empty for raw IP). When the payload is not IP (`ip`
   * undefined), all captured bytes, so `l2` + `ip` is always exactly what was captured.
   */
  l2: Uint8Array;
  /** The IP packet from its first header byte to the end of the captured bytes (may include Ethernet padding). */
  ip: Uint8Array | undefined;
  ipVersion?: 4 | 6;
  /** Why `ip` is undefined. */
  notIp?: string;
  /** 802.1Q / 802.1ad VLAN IDs, outermost first (Ethernet only, when tagged). */
  vlans?: number[];
  /** Length of the packet on the wire. */
  origLen: number;
  /** Fewer bytes captured than were on the wire (incl_len < orig_len). */
  truncated: boolean;
  /** Index into Capture.interfaces. */
  interface: number;
  /** Byte offset of the record header / block in the file. */
  offset: number;
}

export interface Capture {
  format: CaptureFormat;
  /** Byte order of the (first) section. */
  littleEndian: boolean;
  /** pcap only: timestamp resolution of the file magic. */
  resolution?: 'us' | 'ns';
  interfaces: CaptureInterface[];
  records: CaptureRecord[];
}

// ---------------------------------------------------------------------------------------------------------
// Bounds-checked reads

/** A capture file read in windows: bytes at file offsets, `read` filling `out` from `position`. */
export interface CaptureFile {
  size: number;
  read(out: Uint8Array, position: number): void;
  /** Bytes per window (default 16 MiB; a record larger than that gets a window of its own). */
  window?: number;
}

const DEFAULT_WINDOW = 16 << 20;

/**
 * The file's bytes by absolute offset, bounds-checked: all in memory, or a window of a CaptureFile that
 * moves to wherever a read falls. Each window is a new buffer, so the views handed out (record data)
 * stay valid after the window moves on.
 */
class Bytes {
  readonly length: number;
  private win: Uint8Array;
  private winStart = 0;
  private view: DataView;
  private readonly file: CaptureFile | undefined;

  constructor(source: Uint8Array | CaptureFile) {
    if (source instanceof Uint8Array) {
      this.length = source.length;
      this.win = source;
      this.file = undefined;
    } else {
      this.length = source.size;
      this.win = new Uint8Array(0);
      this.file = source;
    }
    this.view = new DataView(this.win.buffer, this.win.byteOffset, this.win.byteLength);
  }

  need(off: number, len: number, what: string): void {
    if (off < 0 || len < 0 || off + len > this.length) {
      const left = Math.max(0, this.length - off);
      throw new CaptureError(off, 'truncated', `${what}: needs ${len} bytes, the file has ${left} left`);
    }
    if (off < this.winStart || off + len > this.winStart + this.win.length) this.load(off, len);
  }

  /** Moves the window to start at `off` and hold at least `len` bytes (within the file). */
  private load(off: number, len: number): void {
    const file = this.file as CaptureFile; // an in-memory source's window is the whole file
    const size = Math.min(Math.max(file.window ?? DEFAULT_WINDOW, len), this.length - off);
    this.win = new Uint8Array(size);
    file.read(this.win, off);
    this.winStart = off;
    this.view = new DataView(this.win.buffer);
  }

  u8(off: number, what: string): number {
    this.need(off, 1, what);
    return this.win[off - this.winStart] as number;
  }
  u16(off: number, le: boolean, what: string): number {
    this.need(off, 2, what);
    return this.view.getUint16(off - this.winStart, le);
  }
  u32(off: number, le: boolean, what: string): number {
    this.need(off, 4, what);
    return this.view.getUint32(off - this.winStart, le);
  }
  i64(off: number, le: boolean, what: string): bigint {
    this.need(off, 8, what);
    return this.view.getBigInt64(off - this.winStart, le);
  }
  /** A view of [off, off + len) (checked). */
  bytes(off: number, len: number, what: string): Uint8Array {
    this.need(off, len, what);
    return this.win.subarray(off - this.winStart, off - this.winStart + len);
  }
}

const PCAP_MAGIC_US = 0xa1b2c3d4;
const PCAP_MAGIC_NS = 0xa1b23c4d;
const PCAP_MAGIC_US_SWAPPED = 0xd4c3b2a1;
const PCAP_MAGIC_NS_SWAPPED = 0x4d3cb2a1;
const PCAPNG_SHB = 0x0a0d0d0a;
const PCAPNG_BOM = 0x1a2b3c4d;
const PCAP_HEADER_LEN = 24;
const PCAP_RECORD_HEADER_LEN = 16;
const NS_PER_S = 1_000_000_000n;

/** The file's format by its magic number; CaptureError('bad-magic') when it is neither. */
export function detectCaptureFormat(bytes: Uint8Array | CaptureFile): CaptureFormat {
  return formatOf(new Bytes(bytes));
}

function formatOf(b: Bytes): CaptureFormat {
  if (b.length === 0) throw new CaptureError(0, 'truncated', 'empty file');
  const magic = b.u32(0, false, 'magic number');
  switch (magic) {
    case PCAP_MAGIC_US:
    case PCAP_MAGIC_NS:
    case PCAP_MAGIC_US_SWAPPED:
    case PCAP_MAGIC_NS_SWAPPED:
      return 'pcap';
    case PCAPNG_SHB:
      return 'pcapng';
    default:
      throw new CaptureError(0, 'bad-magic', `unknown magic number 0x${hex(magic, 8)}: not a pcap or pcapng file`);
  }
}

/**
 * Reads a capture file incrementally: the header is checked on construction, records are decoded as
 * `records()` is iterated (a malformed record throws when reached). `interfaces` grows as pcapng
 * Interface Description Blocks are met.
 */
export class CaptureReader {
  readonly format: CaptureFormat;
  readonly littleEndian: boolean;
  readonly resolution: 'us' | 'ns' | undefined;
  readonly interfaces: CaptureInterface[] = [];
  private readonly b: Bytes;

  /**
   * `source`: the file's bytes (may be a Buffer; records' views are plain Uint8Arrays over the same
   * memory), or a CaptureFile read window by window (records' views are of the windows).
   */
  constructor(source: Uint8Array | CaptureFile) {
    this.b = new Bytes(source instanceof Uint8Array ? new Uint8Array(source.buffer, source.byteOffset, source.byteLength) : source);
    this.format = formatOf(this.b);
    if (this.format === 'pcap') {
      const magic = this.b.u32(0, false, 'magic number');
      this.littleEndian = magic === PCAP_MAGIC_US_SWAPPED || magic === PCAP_MAGIC_NS_SWAPPED;
      this.resolution = magic === PCAP_MAGIC_NS || magic === PCAP_MAGIC_NS_SWAPPED ? 'ns' : 'us';
      this.b.need(0, PCAP_HEADER_LEN, 'pcap file header');
      const le = this.littleEndian;
      const major = this.b.u16(4, le, 'version');
      const minor = this.b.u16(6, le, 'version');
      if (major !== 2) throw new CaptureError(4, 'unsupported', `pcap version ${major}.${minor} (only 2.x is known)`);
      const snaplen = this.b.u32(16, le, 'snaplen');
      const network = this.b.u32(20, le, 'link type');
      this.interfaces.push({
        index: 0,
        section: 0,
        localId: 0,
        // The upper bits of the field carry the FCS length; the link type is the low 16 bits.
        linkType: network & 0xffff,
        snaplen,
        tsResolution: this.resolution === 'ns' ? 9 : 6,
        tsOffsetSeconds: 0n,
        offset: 0,
      });
    } else {
      this.resolution = undefined;
      this.b.need(0, 12, 'pcapng section header block');
      this.littleEndian = sectionByteOrder(this.b, 0);
    }
  }

  records(): Generator<CaptureRecord, void, undefined> {
    return this.format === 'pcap' ? this.pcapRecords() : this.pcapngRecords();
  }

  private *pcapRecords(): Generator<CaptureRecord, void, undefined> {
    const b = this.b;
    const le = this.littleEndian;
    const fracNs = this.resolution === 'ns' ? 1n : 1000n;
    const iface = this.interfaces[0] as CaptureInterface;
    let off = PCAP_HEADER_LEN;
    let index = 0;
    while (off < b.length) {
      const what = `record ${index} header`;
      b.need(off, PCAP_RECORD_HEADER_LEN, what);
      const sec = b.u32(off, le, what);
      const frac = b.u32(off + 4, le, what);
      const incl = b.u32(off + 8, le, what);
      const orig = b.u32(off + 12, le, what);
      const left = b.length - off - PCAP_RECORD_HEADER_LEN;
      if (incl > left) {
        throw new CaptureError(
          off + 8,
          'past-end',
          `record ${index}: captured length ${incl} runs past the end of the file (${left} bytes left)`,
        );
      }
      const data = b.bytes(off + PCAP_RECORD_HEADER_LEN, incl, 'record data');
      yield makeRecord(index, BigInt(sec) * NS_PER_S + BigInt(frac) * fracNs, iface, data, orig, off);
      index++;
      off += PCAP_RECORD_HEADER_LEN + incl;
    }
  }

  private *pcapngRecords(): Generator<CaptureRecord, void, undefined> {
    const b = this.b;
    let le = this.littleEndian;
    let section = -1;
    let sectionIfaces: CaptureInterface[] = [];
    let index = 0;
    let off = 0;
    while (off < b.length) {
      b.need(off, 12, 'block header');
      const isShb = b.u32(off, false, 'block type') === PCAPNG_SHB;
      if (isShb) le = sectionByteOrder(b, off);
      else if (section < 0) throw new CaptureError(off, 'bad-magic', 'pcapng file does not start with a Section Header Block');
      const type = b.u32(off, le, 'block type');
      const total = b.u32(off + 4, le, 'block length');
      const blockName = `block type 0x${hex(type, 8)}`;
      if (total < 12 || total % 4 !== 0) {
        throw new CaptureError(off + 4, 'block-length', `${blockName}: length ${total} is not a multiple of 4 of at least 12`);
      }
      if (total > b.length - off) {
        throw new CaptureError(
          off + 4,
          'past-end',
          `${blockName}: length ${total} runs past the end of the file (${b.length - off} bytes left)`,
        );
      }
      const trailer = b.u32(off + total - 4, le, 'block trailer');
      if (trailer !== total) {
        throw new CaptureError(off + total - 4, 'block-length', `${blockName}: trailing length ${trailer} differs from leading length ${total}`);
      }
      const body = off + 8;
      const bodyLen = total - 12;
      const minBody = (n: number, name: string): void => {
        if (bodyLen < n) throw new CaptureError(off + 4, 'block-length', `${name}: length ${total} is shorter than its ${n + 12}-byte minimum`);
      };
      switch (type) {
        case PCAPNG_SHB: {
          minBody(16, 'Section Header Block');
          const major = b.u16(body + 4, le, 'section version');
          const minor = b.u16(body + 6, le, 'section version');
          if (major !== 1) throw new CaptureError(body + 4, 'unsupported', `pcapng version ${major}.${minor} (only 1.x is known)`);
          section++;
          sectionIfaces = [];
          break;
        }
        case 1: {
          minBody(8, 'Interface Description Block');
          const iface: CaptureInterface = {
            index: this.interfaces.length,
            section,
            localId: sectionIfaces.length,
            linkType: b.u16(body, le, 'link type'),
            snaplen: b.u32(body + 4, le, 'snaplen'),
            tsResolution: 6,
            tsOffsetSeconds: 0n,
            offset: off,
          };
          for (const o of options(b, body + 8, body + bodyLen, le)) {
            if (o.code === 9) {
              if (o.len !== 1) throw new CaptureError(o.at, 'invalid', `if_tsresol option of ${o.len} bytes (1 expected)`);
              iface.tsResolution = b.u8(o.at + 4, 'if_tsresol');
            } else if (o.code === 14) {
              if (o.len !== 8) throw new CaptureError(o.at, 'invalid', `if_tsoffset option of ${o.len} bytes (8 expected)`);
              iface.tsOffsetSeconds = b.i64(o.at + 4, le, 'if_tsoffset');
            } else if (o.code === 2 && iface.name === undefined) {
              iface.name = new TextDecoder().decode(b.bytes(o.at + 4, o.len, 'if_name')).replace(/\0+$/, '');
            }
          }
          this.interfaces.push(iface);
          sectionIfaces.push(iface);
          break;
        }
        case 6: // Enhanced Packet Block
        case 2: {
          // Obsolete Packet Block: the same layout with a 16-bit interface ID and a 16-bit drop count.
          const name = type === 6 ? 'Enhanced Packet Block' : 'Obsolete Packet Block';
          minBody(20, name);
          const ifId = type === 6 ? b.u32(body, le, 'interface ID') : b.u16(body, le, 'interface ID');
          const iface = sectionIfaces[ifId];
          if (iface === undefined) {
            throw new CaptureError(body, 'invalid', `${name}: interface ${ifId} is not described in section ${section} (${sectionIfaces.length} interfaces)`);
          }
          const units = (BigInt(b.u32(body + 4, le, 'timestamp')) << 32n) | BigInt(b.u32(body + 8, le, 'timestamp'));
          const caplen = b.u32(body + 12, le, 'captured length');
          const orig = b.u32(body + 16, le, 'original length');
          if (caplen > bodyLen - 20) {
            throw new CaptureError(body + 12, 'past-end', `${name}: captured length ${caplen} runs past its block (${bodyLen - 20} bytes of data)`);
          }
          yield makeRecord(index++, toNs(units, iface), iface, b.bytes(body + 20, caplen, 'packet block data'), orig, off);
          break;
        }
        case 3: {
          minBody(4, 'Simple Packet Block');
          const iface = sectionIfaces[0];
          if (iface === undefined) throw new CaptureError(off, 'invalid', `Simple Packet Block in section ${section}, which describes no interface`);
          const orig = b.u32(body, le, 'original length');
          let caplen = Math.min(orig, bodyLen - 4);
          if (iface.snaplen > 0) caplen = Math.min(caplen, iface.snaplen);
          // No timestamp in a Simple Packet Block.
          yield makeRecord(index++, 0n, iface, b.bytes(body + 4, caplen, 'Simple Packet Block data'), orig, off);
          break;
        }
        default:
          // Name resolution, statistics, decryption secrets, custom and unknown blocks: skipped.
          break;
      }
      off += total;
    }
  }
}

/** Reads a whole capture file. */
export function readCapture(bytes: Uint8Array): Capture {
  const reader = new CaptureReader(bytes);
  const records = [...reader.records()];
  const capture: Capture = { format: reader.format, littleEndian: reader.littleEndian, interfaces: reader.interfaces, records };
  if (reader.resolution !== undefined) capture.resolution = reader.resolution;
  return capture;
}

function sectionByteOrder(b: Bytes, off: number): boolean {
  const bom = b.u32(off + 8, false, 'byte-order magic');
  if (bom === PCAPNG_BOM) return false;
  if (b.u32(off + 8, true, 'byte-order magic') === PCAPNG_BOM) return true;
  throw new CaptureError(off + 8, 'bad-magic', `byte-order magic 0x${hex(bom, 8)} is neither 0x1a2b3c4d nor its byte swap`);
}

interface RawOption {
  code: number;
  len: number;
  /** Offset of the option header; the value starts 4 bytes later. */
  at: number;
}

function options(b: Bytes, start: number, end: number, le: boolean): RawOption[] {
  const out: RawOption[] = [];
  let at = start;
  while (at + 4 <= end) {
    const code = b.u16(at, le, 'option code');
    const len = b.u16(at + 2, le, 'option length');
    if (code === 0) break;
    if (at + 4 + len > end) throw new CaptureError(at, 'invalid', `option ${code} of ${len} bytes runs past its block`);
    out.push({ code, len, at });
    at += 4 + pad4(len);
  }
  return out;
}

function toNs(units: bigint, iface: CaptureInterface): bigint {
  const r = iface.tsResolution;
  let ns: bigint;
  if (r & 0x80) ns = (units * NS_PER_S) >> BigInt(r & 0x7f);
  else if (r <= 9) ns = units * 10n ** BigInt(9 - r);
  else ns = units / 10n ** BigInt(r - 9);
  return ns + iface.tsOffsetSeconds * NS_PER_S;
}

function makeRecord(index: number, timestampNs: bigint, iface: CaptureInterface, data: Uint8Array, origLen: number, offset: number): CaptureRecord {
  const d = decodeLinkLayer(iface.linkType, data);
  const r: CaptureRecord = {
    index,
    timestampNs,
    linkType: iface.linkType,
    l2: d.l2,
    ip: d.ip,
    origLen,
    truncated: data.length < origLen,
    interface: iface.index,
    offset,
  };
  if (d.ipVersion !== undefined) r.ipVersion = d.ipVersion;
  if (d.notIp !== undefined) r.notIp = d.notIp;
  if (d.vlans !== undefined) r.vlans = d.vlans;
  return r;
}

// ---------------------------------------------------------------------------------------------------------
// Link layers

export interface LinkLayerDecode {
  l2: Uint8Array;
  ip: Uint8Array | undefined;
  ipVersion?: 4 | 6;
  notIp?: string;
  vlans?: number[];
}

const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_IPV6 = 0x86dd;
const ETHERTYPE_VLAN = new Set([0x8100, 0x88a8, 0x9100]);
const SLL_LEN = 16;
const SLL2_LEN = 20;
const AF_INET = 2;
/** AF_INET6 on NetBSD/OpenBSD (24), FreeBSD (28), Darwin (30), Linux (10). */
const AF_INET6 = new Set([24, 28, 30, 10]);
const AF_INET6_BSD = 24;

const RAW_TYPES: ReadonlySet<number> = new Set([LINKTYPE.RAW, LINKTYPE.RAW_12, LINKTYPE.RAW_14]);

/** Splits one record's captured bytes into the link-layer header and the IP packet. Never throws. */
export function decodeLinkLayer(linkType: number, data: Uint8Array): LinkLayerDecode {
  const be16 = (at: number): number => ((data[at] as number) << 8) | (data[at + 1] as number);
  const notIp = (why: string): LinkLayerDecode => ({ l2: data, ip: undefined, notIp: why });
  const ipAt = (at: number, expect: 4 | 6 | undefined, what: string): LinkLayerDecode => {
    if (at >= data.length) return notIp(`${what}: no IP bytes captured`);
    const v = (data[at] as number) >> 4;
    if (expect !== undefined && v !== expect) return notIp(`${what} but the IP version nibble is ${v}`);
    if (v !== 4 && v !== 6) return notIp(`${what}: IP version nibble ${v} is neither 4 nor 6`);
    return { l2: data.subarray(0, at), ip: data.subarray(at), ipVersion: v };
  };
  const byEthertype = (type: number, at: number, what: string): LinkLayerDecode => {
    if (type === ETHERTYPE_IPV4) return ipAt(at, 4, `${what} 0x0800`);
    if (type === ETHERTYPE_IPV6) return ipAt(at, 6, `${what} 0x86dd`);
    return notIp(`${what} 0x${hex(type, 4)} is not IP`);
  };
  const byFamily = (family: number, what: string): LinkLayerDecode => {
    if (family === AF_INET) return ipAt(4, 4, `${what} ${family}`);
    if (AF_INET6.has(family)) return ipAt(4, 6, `${what} ${family}`);
    return notIp(`${what} ${family} is not IP`);
  };

  switch (linkType) {
    case LINKTYPE.ETHERNET: {
      if (data.length < 14) return notIp(`truncated Ethernet header (${data.length} of 14 bytes)`);
      let type = be16(12);
      let at = 14;
      const vlans: number[] = [];
      while (ETHERTYPE_VLAN.has(type)) {
        if (data.length < at + 4) return notIp(`truncated VLAN tag (${data.length - at} of 4 bytes)`);
        vlans.push(be16(at) & 0x0fff);
        type = be16(at + 2);
        at += 4;
      }
      if (type < 0x0600) return notIp(`802.3 frame with length field ${type}, not an ethertype`);
      const d = byEthertype(type, at, 'ethertype');
      if (vlans.length > 0) d.vlans = vlans;
      return d;
    }
    case LINKTYPE.RAW:
    case LINKTYPE.RAW_12:
    case LINKTYPE.RAW_14:
      return ipAt(0, undefined, 'raw IP');
    case LINKTYPE.IPV4:
      return ipAt(0, 4, 'LINKTYPE_IPV4');
    case LINKTYPE.IPV6:
      return ipAt(0, 6, 'LINKTYPE_IPV6');
    case LINKTYPE.LINUX_SLL:
      if (data.length < SLL_LEN) return notIp(`truncated Linux cooked header (${data.length} of ${SLL_LEN} bytes)`);
      return byEthertype(be16(14), SLL_LEN, 'SLL protocol');
    case LINKTYPE.LINUX_SLL2:
      if (data.length < SLL2_LEN) return notIp(`truncated Linux cooked v2 header (${data.length} of ${SLL2_LEN} bytes)`);
      return byEthertype(be16(0), SLL2_LEN, 'SLL2 protocol');
    case LINKTYPE.NULL:
    case LINKTYPE.LOOP: {
      if (data.length < 4) return notIp(`truncated loopback header (${data.length} of 4 bytes)`);
      let family = ((data[0] as number) << 24 | (data[1] as number) << 16 | (data[2] as number) << 8 | (data[3] as number)) >>> 0;
      // NULL carries the family in the writer's host byte order: a big-endian reading whose low 16 bits are
      // zero was written little-endian (families are small numbers).
      if (linkType === LINKTYPE.NULL && (family & 0xffff) === 0) family = swap32(family);
      return byFamily(family, 'address family');
    }
    default:
      return notIp(`link type ${linkType} is not decoded`);
  }
}

/**
 * The length an IP packet's header declares (IPv4 total length; IPv6 40 + payload length), or undefined
 * when the header is not captured or declares none (IPv6 jumbogram). `ip` of a record extends to the end
 * of the captured bytes, so this is how to drop Ethernet padding: `ip.subarray(0, ipPacketLength(ip))`.
 */
export function ipPacketLength(ip: Uint8Array): number | undefined {
  const v = ip.length > 0 ? (ip[0] as number) >> 4 : 0;
  if (v === 4 && ip.length >= 4) return ((ip[2] as number) << 8) | (ip[3] as number);
  if (v === 6 && ip.length >= 6) {
    const payload = ((ip[4] as number) << 8) | (ip[5] as number);
    return payload === 0 ? undefined : 40 + payload;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Writing classic pcap

/** What writePcap needs of a record (a CaptureRecord, possibly with `ip` rewritten). */
export interface WritableRecord {
  timestampNs: bigint;
  linkType: number;
  l2: Uint8Array;
  ip: Uint8Array | undefined;
  origLen?: number;
  truncated?: boolean;
}

export interface PcapWriteOptions {
  /**
   * The file's link type. Default: the records' link type when they all share one, else LINKTYPE_RAW (101),
   * which is also the default for no records. Records of another link type are re-framed: their IP packet
   * gets a synthesized header of this link type (zero MAC addresses for Ethernet), or none for raw IP.
   */
  linkType?: number;
  /** Timestamp resolution. Default 'ns' (lossless for timestamps read from any file). */
  resolution?: 'us' | 'ns';
}

export const PCAP_SNAPLEN = 262144;

/** The link type writePcap would choose for these records. */
export function pcapLinkTypeFor(records: Iterable<Pick<WritableRecord, 'linkType'>>): number {
  const types = new Set<number>();
  for (const r of records) types.add(r.linkType);
  if (types.size === 1) return [...types][0] as number;
  return LINKTYPE.RAW;
}

/**
 * Streaming pcap writer: `header()` once, then `record(r)` for each record; concatenate the chunks.
 * The link type must be known up front.
 */
export class PcapWriter {
  readonly linkType: number;
  readonly resolution: 'us' | 'ns';
  private count = 0;

  constructor(options: { linkType: number; resolution?: 'us' | 'ns' }) {
    if (!Number.isInteger(options.linkType) || options.linkType < 0 || options.linkType > 0xffff) {
      throw new RangeError(`link type ${options.linkType} is not a 16-bit value`);
    }
    this.linkType = options.linkType;
    this.resolution = options.resolution ?? 'ns';
  }

  header(snaplen = PCAP_SNAPLEN): Uint8Array {
    const out = new Uint8Array(PCAP_HEADER_LEN);
    const v = new DataView(out.buffer);
    v.setUint32(0, this.resolution === 'ns' ? PCAP_MAGIC_NS : PCAP_MAGIC_US, true);
    v.setUint16(4, 2, true);
    v.setUint16(6, 4, true);
    v.setUint32(16, snaplen, true);
    v.setUint32(20, this.linkType, true);
    return out;
  }

  record(r: WritableRecord): Uint8Array {
    const f = this.frame(r);
    const out = new Uint8Array(PCAP_RECORD_HEADER_LEN + f.incl);
    this.put(out, new DataView(out.buffer), 0, f);
    return out;
  }

  /** A record's header fields and bytes, checked: what put() writes. */
  frame(r: WritableRecord): RecordFrame {
    const i = this.count++;
    const l2 = frameHeader(r, this.linkType, i);
    const ip = r.ip ?? new Uint8Array(0);
    const incl = l2.length + ip.length;
    let orig = incl;
    if (r.truncated === true && r.origLen !== undefined) orig = Math.max(incl, r.origLen - r.l2.length + l2.length);
    if (r.timestampNs < 0n) throw new RangeError(`record ${i}: negative timestamp ${r.timestampNs}`);
    const sec = r.timestampNs / NS_PER_S;
    if (sec > 0xffffffffn) throw new RangeError(`record ${i}: timestamp ${r.timestampNs} ns is past 2106, beyond pcap's 32-bit seconds`);
    const subNs = r.timestampNs % NS_PER_S;
    const frac = this.resolution === 'ns' ? subNs : subNs / 1000n;
    if (incl > 0xffffffff || orig > 0xffffffff) throw new RangeError(`record ${i}: ${incl} bytes do not fit a pcap record`);
    return { sec: Number(sec), frac: Number(frac), incl, orig, l2, ip };
  }

  /** Writes a framed record at `at` of `out` (its DataView `v`); returns the offset after it. */
  put(out: Uint8Array, v: DataView, at: number, f: RecordFrame): number {
    v.setUint32(at, f.sec, true);
    v.setUint32(at + 4, f.frac, true);
    v.setUint32(at + 8, f.incl, true);
    v.setUint32(at + 12, f.orig, true);
    out.set(f.l2, at + PCAP_RECORD_HEADER_LEN);
    out.set(f.ip, at + PCAP_RECORD_HEADER_LEN + f.l2.length);
    return at + PCAP_RECORD_HEADER_LEN + f.incl;
  }
}

interface RecordFrame {
  sec: number;
  frac: number;
  incl: number;
  orig: number;
  l2: Uint8Array;
  ip: Uint8Array;
}

/**
 * A pcap file built record by record into large blocks, so that nothing is kept per record: add() each
 * record (framed and checked as PcapWriter does), then chunks() is the file (header first; its snaplen is
 * 262144, or the largest record when one is larger).
 */
export class PcapBuilder {
  private readonly w: PcapWriter;
  private readonly blocks: Uint8Array[] = [];
  private block = new Uint8Array(0);
  private view = new DataView(this.block.buffer);
  private used = 0;
  private snaplen = PCAP_SNAPLEN;

  constructor(options: { linkType: number; resolution?: 'us' | 'ns' }) {
    this.w = new PcapWriter(options);
  }

  add(r: WritableRecord): void {
    const f = this.w.frame(r);
    const size = PCAP_RECORD_HEADER_LEN + f.incl;
    if (this.used + size > this.block.length) {
      if (this.used > 0) this.blocks.push(this.block.subarray(0, this.used));
      this.block = new Uint8Array(Math.max(BUILD_BLOCK, size));
      this.view = new DataView(this.block.buffer);
      this.used = 0;
    }
    this.used = this.w.put(this.block, this.view, this.used, f);
    if (f.incl > this.snaplen) this.snaplen = f.incl;
  }

  /** The file so far: its header, then the records' bytes (those drain() has not taken). */
  chunks(): Uint8Array[] {
    const tail = this.used > 0 ? [this.block.subarray(0, this.used)] : [];
    return [this.header(), ...this.blocks, ...tail];
  }

  /** The file header for the records so far (its snaplen grows with the largest record). */
  header(): Uint8Array {
    return this.w.header(this.snaplen);
  }

  /** Takes the blocks that are full, to write them out as the file grows (the header last, at offset 0). */
  drain(): Uint8Array[] {
    return this.blocks.length === 0 ? NO_BLOCKS : this.blocks.splice(0);
  }

  /** Takes the block in progress too: the rest of the records. */
  drainAll(): Uint8Array[] {
    if (this.used > 0) {
      this.blocks.push(this.block.subarray(0, this.used));
      this.block = new Uint8Array(0);
      this.view = new DataView(this.block.buffer);
      this.used = 0;
    }
    return this.blocks.splice(0);
  }
}

const NO_BLOCKS: Uint8Array[] = [];

const BUILD_BLOCK = 1 << 20;

/**
 * Writes records as a classic little-endian pcap file (snaplen 262144, or the largest record when one is
 * larger). Each record is written as `l2` + `ip`; see PcapWriteOptions.linkType for re-framing. Neither
 * Ethernet nor Linux cooked headers carry a length, so a rewritten `ip` of another length stays valid.
 */
export function writePcap(records: Iterable<WritableRecord>, options: PcapWriteOptions = {}): Uint8Array {
  const list = [...records];
  const b = new PcapBuilder({ linkType: options.linkType ?? pcapLinkTypeFor(list), resolution: options.resolution ?? 'ns' });
  for (const r of list) b.add(r);
  const chunks = b.chunks();
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** The link-layer header to write before `r.ip` in a file of `linkType`. */
function frameHeader(r: WritableRecord, linkType: number, i: number): Uint8Array {
  if (r.linkType === linkType) return r.l2;
  const ip = r.ip;
  if (ip === undefined) throw new Error(`record ${i}: not IP, so it cannot be re-framed from link type ${r.linkType} to ${linkType}`);
  const version = ip.length > 0 ? (ip[0] as number) >> 4 : 0;
  if (version !== 4 && version !== 6) throw new Error(`record ${i}: IP version nibble ${version} is neither 4 nor 6`);
  const ethertype = version === 4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6;
  const family = version === 4 ? AF_INET : AF_INET6_BSD;
  if (RAW_TYPES.has(linkType)) return new Uint8Array(0);
  switch (linkType) {
    case LINKTYPE.IPV4:
    case LINKTYPE.IPV6:
      if ((linkType === LINKTYPE.IPV4) !== (version === 4)) throw new Error(`record ${i}: an IPv${version} packet cannot be written as link type ${linkType}`);
      return new Uint8Array(0);
    case LINKTYPE.ETHERNET: {
      const h = new Uint8Array(14);
      h[12] = ethertype >> 8;
      h[13] = ethertype & 0xff;
      return h;
    }
    case LINKTYPE.LINUX_SLL: {
      // packet type 0 (to us), ARPHRD_ETHER, no address.
      const h = new Uint8Array(SLL_LEN);
      h[3] = 1;
      h[14] = ethertype >> 8;
      h[15] = ethertype & 0xff;
      return h;
    }
    case LINKTYPE.LINUX_SLL2: {
      const h = new Uint8Array(SLL2_LEN);
      h[0] = ethertype >> 8;
      h[1] = ethertype & 0xff;
      h[9] = 1; // ARPHRD_ETHER
      return h;
    }
    case LINKTYPE.NULL:
      return new Uint8Array([family, 0, 0, 0]); // little-endian, as most writers of NULL are
    case LINKTYPE.LOOP:
      return new Uint8Array([0, 0, 0, family]);
    default:
      throw new Error(`record ${i}: cannot synthesize a header for link type ${linkType}`);
  }
}

function pad4(n: number): number {
  return (n + 3) & ~3;
}

function swap32(x: number): number {
  return (((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24)) >>> 0;
}

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, '0');
}
