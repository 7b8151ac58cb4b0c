// svcplane public API.
export { loadManifests, readManifestPaths, ManifestSyntaxError, type LoadedObject } from './k8s/load.js';
export { validateObject } from './k8s/validate.js';
export type { ValidationError, Note, Service, EndpointSlice, Node } from './k8s/types.js';
export { formatError } from './k8s/types.js';
export {
  createDataplane, openImage, encodeFlow, encodeFlows, Dataplane, Selector, EngineError,
  type DataplaneOptions, type Flow, type Selection, type EngineName, type ApplyReport,
  type RouteRequestOptions, type RouteSelection, type FlowBatch,
} from './engine/dataplane.js';
export { ImageView, ImageError } from './compile/view.js';
export { FLOW, RESULT, VERDICTS, DEFAULT_CLUSTER_SEED } from './compile/layout.js';
export { dumpTables, type DumpFrontend, type Dump } from './dump.js';
export { PacketPath, newBatchResult, StateError, type PacketOutcome, type PacketBatchResult, type ConntrackEntry, type LoadedState } from './engine/packet.js';
export {
  PACKET_VERDICTS, PACKET_REASONS, REASON_KEYS, DEFAULT_TIMEOUTS, type ConntrackTimeouts, type PacketVerdictName,
} from './engine/packet-layout.js';
