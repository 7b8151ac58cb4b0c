// The native engine: wasm/core.c compiled natively behind a Node-API binding (native/binding.c), built at
// install time by native/build.mjs. It exports the same functions as the WebAssembly module over one
// memory that never moves (see native/binding.c), so Core drives it unchanged. Optional: when it is
// missing, stale or broken, loadNative() throws a NativeLoadError whose `cause` chain says why, and
// engine "auto" falls back to wasm (src/engine/dataplane.ts).
//
// Where the addon comes from: $SVCPLANE_NATIVE_PATH when set (a prebuilt addon), else
// native/build/Release/svcplane.node. The install-time build records its outcome in
// native/build/status.json, including a hash of the C sources it compiled: an addon built from other
// sources than the ones beside it is refused as stale (it would not run the same core as wasm).

import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Core, type CoreExports, type CoreOptions, wasmModule } from './core.js';

export const NATIVE_PATH_ENV = 'SVCPLANE_NATIVE_PATH';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** Where native/build.mjs puts the addon. */
export const DEFAULT_ADDON_PATH = join(ROOT, 'native', 'build', 'Release', 'svcplane.node');
/** Where native/build.mjs records how the build went. */
export const BUILD_STATUS_PATH = join(ROOT, 'native', 'build', 'status.json');
/** The binding ABI this file drives (native/binding.c NB_BINDING_VERSION). */
const BINDING_VERSION = 1;

/** The addon exists but cannot be used, or does not exist: see `cause` for why. */
export class NativeLoadError extends Error {}
/** The install-time build did not produce the addon (from native/build/status.json). */
export class NativeBuildError extends Error {}

/** native/build/status.json, as native/build.mjs writes it. */
export interface BuildStatus {
  ok: boolean;
  /** skipped, sources, toolchain, build, load, done, script. */
  stage?: string;
  reason: string;
  when?: string;
  node?: string;
  sourceHash?: string;
  compiler?: string;
  cflags?: string;
}

/** One core instance of the addon: the core's exports plus its memory. */
export interface NativeInstance extends Omit<CoreExports, 'memory'> {
  /** The ArrayBuffer over the memory; the same object until the next grow. */
  buffer(): ArrayBuffer;
  /** WebAssembly.Memory.prototype.grow: returns the old page count, detaches the old buffer. */
  grow(pages: number): number;
  readonly hugePages: boolean;
  /** Address space reserved for the memory (its maximum size). */
  readonly reservedBytes: number;
}

/** What native/binding.c exports. */
export interface NativeAddon {
  create(opts?: { hugePages?: boolean }): NativeInstance;
  /** Core exports each instance carries. */
  readonly exports: readonly string[];
  /** The core files compiled in (wasm/<unit>.c). */
  readonly units: readonly string[];
  readonly bindingVersion: number;
  readonly abiVersion: number;
  readonly compiler: string;
  readonly cflags: string;
}

export interface NativeEngine {
  addon: NativeAddon;
  /** The file loaded. */
  path: string;
  /** Where the path came from. */
  source: 'env' | 'build';
  /** The recorded build, for addons from native/build. */
  status: BuildStatus | undefined;
}

/**
 * Hash of the C sources the addon is compiled from (wasm/*.c, wasm/*.h, native/*.c, native/*.h,
 * native/binding.gyp), or undefined when they are not all there (e.g. an installed package without
 * them). Keep in step with sourceHash() in native/build.mjs.
 */
export function sourceHash(root: string = ROOT): string | undefined {
  try {
    const files: string[] = [];
    for (const dir of ['wasm', 'native']) {
      for (const f of readdirSync(join(root, dir)).sort()) if (f.endsWith('.c') || f.endsWith('.h')) files.push(`${dir}/${f}`);
    }
    files.push('native/binding.gyp');
    const h = createHash('sha256');
    for (const f of files) {
      h.update(`${f}\0`);
      h.update(readFileSync(join(root, f)));
      h.update('\0');
    }
    return h.digest('hex');
  } catch {
    return undefined;
  }
}

/** The recorded install-time build, or undefined when none was recorded (or it is unreadable). */
export function readBuildStatus(file: string = BUILD_STATUS_PATH): BuildStatus | undefined {
  try {
    const s = JSON.parse(readFileSync(file, 'utf8')) as Partial<BuildStatus>;
    if (typeof s.ok !== 'boolean' || typeof s.reason !== 'string') return undefined;
    return s as BuildStatus;
  } catch {
    return undefined;
  }
}

/** Why the build left no addon, as an error for a cause chain. */
function buildError(status: BuildStatus | undefined, statusFile: string): NativeBuildError {
  if (!status) {
    return new NativeBuildError(
      `no native build was recorded (${statusFile} is missing): the install script did not run (npm ci --ignore-scripts?) ` +
        'or the build was removed; build it with `node native/build.mjs`',
    );
  }
  const when = status.when ? ` on ${status.when}` : '';
  if (status.ok) return new NativeBuildError(`it was built${when} (${statusFile}) and removed since; rebuild it with \`node native/build.mjs\``);
  return new NativeBuildError(`the install-time build did not produce it${when} (${statusFile}): ${status.reason}`);
}

const loaded = new Map<string, NativeEngine>();

/** Options for tests: where to look instead of the environment and native/build. */
export interface LoadOptions {
  /** Addon path; default $SVCPLANE_NATIVE_PATH, else DEFAULT_ADDON_PATH. */
  path?: string;
  /** Build status file for an addon from the build directory; default BUILD_STATUS_PATH. */
  statusFile?: string;
  /** Sources to check a built addon against; default this package's root. */
  sourceRoot?: string;
}

/** Loads the addon (once per path per process). Throws NativeLoadError, with the reasons in `cause`. */
export function loadNative(opts: LoadOptions = {}): NativeEngine {
  const env = process.env[NATIVE_PATH_ENV];
  const fromEnv = opts.path === undefined && env ? resolve(env) : undefined;
  const path = opts.path ?? fromEnv ?? DEFAULT_ADDON_PATH;
  const source: NativeEngine['source'] = fromEnv !== undefined ? 'env' : 'build';
  const hit = loaded.get(path);
  if (hit) return hit;
  const statusFile = opts.statusFile ?? BUILD_STATUS_PATH;
  const status = source === 'build' ? readBuildStatus(statusFile) : undefined;
  const where = fromEnv !== undefined ? `${path} (${NATIVE_PATH_ENV})` : path;

  if (!existsSync(path)) {
    if (source === 'env') {
      throw new NativeLoadError(`no native addon at ${where}`, {
        cause: Object.assign(new Error(`ENOENT: no such file: ${path}`), { code: 'ENOENT' }),
      });
    }
    throw new NativeLoadError(`the native addon is not built (${path} does not exist)`, { cause: buildError(status, statusFile) });
  }
  if (source === 'build' && status) {
    if (!status.ok) {
      // A leftover from an earlier build; the last one failed, so it may not match the sources.
      throw new NativeLoadError(`the native addon at ${path} is left over from an earlier build`, { cause: buildError(status, statusFile) });
    }
    const now = sourceHash(opts.sourceRoot);
    if (now !== undefined && status.sourceHash !== undefined && now !== status.sourceHash) {
      throw new NativeLoadError(
        `the native addon at ${path} is stale: it was built from other C sources than wasm/ and native/ hold now; ` +
          'rebuild it with `node native/build.mjs`',
      );
    }
  }

  let addon: NativeAddon;
  try {
    addon = createRequire(import.meta.url)(path) as NativeAddon;
  } catch (err) {
    throw new NativeLoadError(`cannot load the native addon ${where}: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`, {
      cause: err,
    });
  }
  if (typeof addon.create !== 'function' || !Array.isArray(addon.exports) || addon.bindingVersion !== BINDING_VERSION) {
    throw new NativeLoadError(`${where} is not a svcplane native addon of binding version ${BINDING_VERSION} (got ${String(addon.bindingVersion)})`);
  }
  // The same core as wasm, or none: an export the wasm module has and the addon lacks means the addon
  // was built from an older binding (or native/exports.h misses a line).
  const have = new Set(addon.exports);
  const missing = WebAssembly.Module.exports(wasmModule())
    .filter((e) => e.kind === 'function' && !have.has(e.name))
    .map((e) => e.name);
  if (missing.length > 0) {
    throw new NativeLoadError(`${where} lacks core exports the WebAssembly core has: ${missing.join(', ')} (native/exports.h; rebuild it)`);
  }
  const engine: NativeEngine = { addon, path, source, status };
  loaded.set(path, engine);
  return engine;
}

export interface NativeCoreOptions extends CoreOptions {
  /**
   * madvise(MADV_HUGEPAGE) the core memory (transparent huge pages). Default on: a conntrack table larger
   * than the TLB covers runs 5-15% faster in most runs (bench:packet's 128k-flow cases), small tables no slower.
   */
  hugePages?: boolean;
}

/** The CoreExports of a fresh native instance (memory with WebAssembly.Memory semantics). */
export function nativeExports(engine: NativeEngine, opts: { hugePages?: boolean } = {}): CoreExports {
  let inst: NativeInstance;
  let buffer: ArrayBuffer;
  try {
    inst = engine.addon.create({ hugePages: opts.hugePages ?? true });
    buffer = inst.buffer();
  } catch (err) {
    throw new NativeLoadError(`the native addon ${engine.path} cannot create a core`, { cause: err });
  }
  const memory = {
    get buffer(): ArrayBuffer {
      return buffer;
    },
    grow(pages: number): number {
      const old = inst.grow(pages);
      buffer = inst.buffer();
      return old;
    },
  };
  return { ...inst, memory };
}

/** A core running on a fresh native instance. Throws NativeLoadError (or CoreError on an ABI mismatch). */
export function createNativeCore(opts: NativeCoreOptions = {}, engine: NativeEngine = loadNative()): Core {
  return new Core('native', nativeExports(engine, opts), opts);
}

/** An error and its causes as one line: "a: b: c". */
export function causeChain(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e !== undefined && depth < 8; depth++) {
    parts.push(e instanceof Error ? e.message : String(e));
    e = e instanceof Error ? e.cause : undefined;
  }
  return parts.join(': ');
}

/** The kernel's transparent huge page mode ('always', 'madvise' or 'never': with 'never', hugePages does nothing). */
function thpMode(): string {
  try {
    const text = readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8');
    return /\[(\w+)\]/.exec(text)?.[1] ?? text.trim();
  } catch {
    return 'unknown (no /sys/kernel/mm/transparent_hugepage)';
  }
}

/** What `svcplane version --verbose` can print about the native engine: where it is, how it was built, or why it is missing. */
export function nativeReport(): string[] {
  const lines: string[] = [];
  try {
    const e = loadNative();
    lines.push(`native addon: ${e.path}${e.source === 'env' ? ` (${NATIVE_PATH_ENV})` : ''}`);
    lines.push(`  compiled by ${e.addon.compiler} with ${e.addon.cflags}; core files: ${e.addon.units.join(', ')}`);
    if (e.status?.when) lines.push(`  built ${e.status.when} for node ${e.status.node ?? '?'}`);
    lines.push(`  core memory: transparent huge pages asked for by default (hugePages option); the kernel's mode: ${thpMode()}`);
  } catch (err) {
    lines.push(`native addon: unavailable: ${causeChain(err)}`);
    const status = readBuildStatus();
    if (status && !status.ok) lines.push(`  install-time build (${BUILD_STATUS_PATH}): ${status.reason.split('\n')[0] ?? ''}`);
  }
  return lines;
}
