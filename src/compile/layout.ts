// The table image layout: a mirror of wasm/svcplane.h (the C header is the reference and explains the
// publication rules; test/core.test.ts checks every size against the core's sp_sizeof). Offsets are
// bytes inside each struct; offsets stored in the image are from the image start.

export const MAGIC = 0x50435653; // "SVCP"
export const VERSION = 2;
export const ALIGN = 8;
export const MAX_READERS = 16;

export const HEADER = {
  size: 128,
  magic: 0, version: 4, imageSize: 8, flowSeed: 12, tableSeed: 16, root: 20, epoch: 24, generation: 28,
  routesOff: 32, routesLen: 36, readers: 64,
} as const;

export const ROOT = {
  size: 48,
  feOff: 0, feCap: 4, slotOff: 8, slotCap: 12, rnOff: 16, rnCap: 20, lsOff: 24, lsCount: 28,
  nodeName: 32, nodeZone: 36, feUsed: 40, feTombstones: 44,
} as const;

export const FRONTEND = { size: 32, addr: 0, port: 16, proto: 18, kind: 19, slot: 20, revnat: 24, flags: 28 } as const;
export const FE_KIND = { ClusterIP: 1, NodePort: 2, LoadBalancer: 3, ExternalIP: 4 } as const;
export const FE_KIND_NAMES = ['', 'ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalIP'] as const;
export const FE_EMPTY = 0;
export const FE_TOMBSTONE = 0xff;
export const FE_F_EXTERNAL = 1;
export const FE_F_SOURCE_RANGES = 2;

export const SERVICE = {
  size: 48, blockSize: 0, flags: 4, affinityTimeout: 8, name: 12, portName: 16, listOff: 20, listCount: 24,
  listInternal: 25, listExternal: 26, listCluster: 27, srOff: 28, srCount: 32, empty: 34, proto: 35, listKeep: 36,
} as const;
export const SVC_F_AFFINITY = 1;
export const SVC_F_INTERNAL_LOCAL = 2;
export const SVC_F_EXTERNAL_LOCAL = 4;
export const SVC_F_IPV6 = 8;
export const SVC_EMPTY_INTERNAL_DROP = 1;
export const SVC_EMPTY_EXTERNAL_DROP = 2;

export const LIST = { size: 24, beOff: 0, beCount: 4, mgOff: 8, mgSize: 12, mgWidth: 16, kind: 17, affinityId: 20 } as const;
export const LIST_CLUSTER = 0;
export const LIST_LOCAL = 1;
/** Endpoints that only keep existing flows (terminating, in no other list); no Maglev table. */
export const LIST_KEEP = 2;

export const BACKEND = { size: 24, addr: 0, port: 16, state: 18, flags: 19, node: 20 } as const;
export const BE_ACTIVE = 0;
export const BE_TERMINATING = 1;
export const BE_F_LOCAL = 1;

export const REVNAT = { size: 24, addr: 0, port: 16, proto: 18, kind: 19, slot: 20 } as const;
export const SOURCE_RANGE = { size: 20, addr: 0, prefix: 16 } as const;
export const CTX_SIZE = 32;

export const FLOW = { size: 40, src: 0, dst: 16, sport: 32, dport: 34, proto: 36 } as const;
export const RESULT = { size: 20, verdict: 0, reason: 1, list: 2, frontend: 4, service: 8, backend: 12, slot: 16 } as const;
/** RESULT.list values: which of the service's lists was consulted. */
export const LIST_USED_INTERNAL = 0;
export const LIST_USED_EXTERNAL = 1;
export const LIST_USED_LOCAL_SOURCE = 2;
export const AFFINITY_ENTRY_SIZE = 48;

export const NONE = 0xffffffff;

export const VERDICTS = ['pass', 'forward', 'reject', 'drop'] as const;
export type Verdict = (typeof VERDICTS)[number];

/** Result reasons, by code (wasm/svcplane.h R_*). */
export const REASONS = [
  'not a service address',
  'Maglev',
  'session affinity',
  'no usable endpoints',
  'no local endpoints',
  'source outside loadBalancerSourceRanges',
  'table entry out of range',
  'no tables loaded',
] as const;
export const R_MAGLEV = 1;
export const R_AFFINITY = 2;

/** Sizes in the order of the core's sp_sizeof(which). */
export const STRUCT_SIZES = [
  HEADER.size, FRONTEND.size, SERVICE.size, LIST.size, BACKEND.size, REVNAT.size, SOURCE_RANGE.size,
  FLOW.size, RESULT.size, AFFINITY_ENTRY_SIZE, ROOT.size, CTX_SIZE,
] as const;

/** Maglev table sizes (Cilium's list of primes). */
export const MAGLEV_PRIMES = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071] as const;

/** Cluster-wide seed for the flow hash and Maglev permutations: every node must use the same one so that
 * nodes behind ECMP pick the same backend for a flow. "SVCP" by default; override for a whole cluster. */
export const DEFAULT_CLUSTER_SEED = 0x53564350;
