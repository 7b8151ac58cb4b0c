// The routes section layout: a mirror of wasm/ingress.h (the C header is the reference and explains the
// matching; test/ingress-core.test.ts checks every size against the core's sp_route_sizeof). Offsets are
// bytes inside each struct; every offset stored in the section is relative to the section start.

export const ROUTES_MAGIC = 0x54525053; // "SPRT"
export const ROUTES_VERSION = 1;
export const ROUTES_ALIGN = 8;
export const NONE = 0xffffffff;
/** Longer request hosts (after the port is stripped) can only reach the catch-all record. */
export const MAX_HOST = 255;
/** Keys are stored with a u16 length: longer rule paths are left out (and noted) by the compiler. */
export const MAX_KEY = 0xffff;

export const R_HEADER = {
  size: 96,
  magic: 0, version: 4, sectionSize: 8, seed: 12,
  slotOff: 16, slotCount: 20,
  hostFirst: 24, hostCap: 28, hostCount: 32,
  wildFirst: 36, wildCap: 40, wildCount: 44,
  recOff: 48, recCount: 52,
  tgtOff: 56, tgtCount: 60,
  strOff: 64, strBytes: 68,
  catchall: 72, defaultTarget: 76, maxPath: 80,
} as const;

export const R_SLOT = { size: 16, hash: 0, key: 4, len: 8, type: 10, flags: 11, value: 12 } as const;
export const PT_HOST = 0;
export const PT_EXACT = 1;
export const PT_PREFIX = 2;
export const PT_IMPL = 3;

export const R_RECORD = {
  size: 56, name: 0, exactFirst: 4, exactCap: 8, exactCount: 12, prefixFirst: 16, prefixCap: 20, prefixCount: 24,
  prefixMax: 28, defaultTarget: 32, kind: 36, exactLens: 40, prefixLens: 48,
} as const;
export const HOST_EXACT = 1;
export const HOST_WILDCARD = 2;
export const HOST_ANY = 3;

export const R_TARGET = {
  size: 40, addr: 0, port: 16, proto: 18, flags: 19, status: 20, ingress: 24, service: 28, portName: 32, reason: 36,
} as const;
export const TF_FRONTEND = 1;
export const TF_DEFAULT = 2;

/** Where the Host header and path bytes are: core-memory offsets and lengths. */
export const R_REQUEST = { size: 16, hostOff: 0, hostLen: 4, pathOff: 8, pathLen: 12 } as const;
/** A router's context (host-provided, 8-aligned): the attached section's offset (0 = none) and size. */
export const R_CTX = { size: 16, section: 0, sectionSize: 4 } as const;
export const R_RESULT = { size: 16, status: 0, hostMatch: 2, pathMatch: 3, target: 4, record: 8, matchLen: 12 } as const;
export const MATCH_NONE = 0;
export const MATCH_EXACT = 1;
export const MATCH_WILDCARD = 2;
export const MATCH_ANY = 3;
/** result.pathMatch: no path matched and a default backend took the request. */
export const PATH_DEFAULT = 4;

/** Sizes in the order of the core's sp_route_sizeof(which). */
export const ROUTE_STRUCT_SIZES = [R_HEADER.size, R_SLOT.size, R_RECORD.size, R_TARGET.size, R_REQUEST.size, R_RESULT.size, R_CTX.size] as const;

/** sp_routes_attach error codes. */
export const ROUTES_ATTACH_ERRORS: Record<number, string> = {
  [-1]: 'routes section or context outside core memory or misaligned',
  [-2]: 'bad magic',
  [-3]: 'unsupported version',
  [-4]: 'size mismatch',
  [-5]: 'an area runs past the end of the section',
  [-6]: 'a hash map is outside the slot array, not a power of two, or full',
  [-7]: 'a map slot has a bad key, hash, type or value',
  [-8]: 'a host record points outside its tables',
  [-9]: 'a target has a bad string offset or status',
  [-10]: 'the string area is not NUL-delimited',
};

export type PathTypeName = 'Exact' | 'Prefix' | 'ImplementationSpecific';
export const PATH_TYPE_CODES: Record<PathTypeName, number> = { Exact: PT_EXACT, Prefix: PT_PREFIX, ImplementationSpecific: PT_IMPL };
export const PATH_TYPE_NAMES: Record<number, PathTypeName> = { [PT_EXACT]: 'Exact', [PT_PREFIX]: 'Prefix', [PT_IMPL]: 'ImplementationSpecific' };
