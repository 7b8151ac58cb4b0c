// Deterministic synthetic cluster and flow mix for the benchmarks: the generator `svcplane bench` ships
// (src/cli/bench.ts), under the names the bench scripts use.
//
// Cluster: N ClusterIP services (one port each; every tenth one is UDP/53, the rest TCP on a few common
// ports), each with one IPv4 EndpointSlice of ENDPOINTS_PER_SERVICE Ready endpoints. ClusterIPs are drawn
// without repetition from the service CIDR 10.96.0.0/12; pod addresses come from 10.0.0.0/8 below the
// service CIDR, so the two ranges never overlap.
//
// Flows: 90% go to a real frontend (random service, random client pod address and ephemeral port); the
// rest go to addresses that are not service frontends: half pod-to-pod traffic, half to a service CIDR
// address no service holds.

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Flow } from '../src/engine/dataplane.js';
import { NATIVE_PATH_ENV, type NativeEngine, causeChain, loadNative } from '../src/engine/native.js';
import { type BenchCluster, type BenchService, ENDPOINTS_PER_SERVICE, benchCluster, benchFlows } from '../src/cli/bench.js';

export { ENDPOINTS_PER_SERVICE, NODE_NAME, prng } from '../src/cli/bench.js';

export type ServiceSpec = BenchService;
export type SyntheticCluster = BenchCluster;

/** A flow as an application sees it: text addresses, protocol name. */
export type TextFlow = Omit<Flow, 'now'>;

export interface FlowSet {
  /** Flows as objects with string addresses (the pure-JS baseline's input). */
  flows: TextFlow[];
  /** The same flows in the core's FLOW layout (encodeFlows). */
  encoded: Uint8Array;
  /** How many flows were aimed at a real frontend. */
  toServices: number;
}

/** N services x ENDPOINTS_PER_SERVICE Ready endpoints, fully determined by (n, seed). */
export function syntheticCluster(n: number, seed = 1): SyntheticCluster {
  return benchCluster(n, ENDPOINTS_PER_SERVICE, seed);
}

/** `count` flows against `cluster`, fully determined by (cluster, count, seed). */
export function syntheticFlows(cluster: SyntheticCluster, count = 4096, seed = 2): FlowSet {
  return benchFlows(cluster, count, seed);
}

/** The repository root (this file runs from bench/ or, compiled, from build/bench/). */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'native', 'binding.gyp'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the repository root (native/binding.gyp)');
    dir = up;
  }
  return dir;
}

/** The built addon, checked against the sources; later createDataplane calls load it through the env. */
export function nativeEngine(): NativeEngine {
  const root = repoRoot();
  const path = process.env[NATIVE_PATH_ENV] || join(root, 'native', 'build', 'Release', 'svcplane.node');
  try {
    const engine = loadNative({ path, statusFile: join(root, 'native', 'build', 'status.json'), sourceRoot: root });
    process.env[NATIVE_PATH_ENV] = path;
    return engine;
  } catch (err) {
    throw new Error(`the native engine is unavailable (build it: node native/build.mjs): ${causeChain(err)}`);
  }
}

