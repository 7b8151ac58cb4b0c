#!/usr/bin/env node
// Builds the native engine (native/build/Release/svcplane.node) with node-gyp, as npm's "install"
// script: `npm ci` builds it when a C toolchain is there and never fails because of it. Whatever
// happens, this script exits 0 and records the outcome in native/build/status.json, which
// src/engine/native.ts reads to say why the native engine is missing (`svcplane version`) and whether a
// built addon is stale (compiled from other C sources than the ones beside it).
//
//   node native/build.mjs            build (also what `npm ci` runs)
//   SVCPLANE_SKIP_NATIVE_BUILD=1     record "skipped" and do nothing else
//   CC=...                           the C compiler node-gyp uses (CC=false: a build that fails)
//
// node-gyp comes from npm itself (npm bundles it): $npm_config_node_gyp when npm runs this script, else
// the copy beside npm, else a node-gyp on PATH. Headers: npm's nodedir config when set, else the ones
// installed with this node (<prefix>/include/node), else node-gyp downloads them.

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const NATIVE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(NATIVE, '..');
const BUILD = join(NATIVE, 'build');
const ADDON = join(BUILD, 'Release', 'svcplane.node');
const STATUS = join(BUILD, 'status.json');
const TIMEOUT_MS = 10 * 60 * 1000;

/**
 * Hash of the C sources the addon is compiled from: wasm/*.c, wasm/*.h (the core), native/*.c,
 * native/*.h and native/binding.gyp. Keep in step with sourceHash() in src/engine/native.ts.
 */
export function sourceHash(root = ROOT) {
  const files = [];
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
}

function onPath(cmd) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    for (const ext of process.platform === 'win32' ? ['.exe', '.cmd', ''] : ['']) {
      if (existsSync(join(dir, cmd + ext))) return join(dir, cmd + ext);
    }
  }
  return undefined;
}

/** How to run node-gyp: [command, ...leading args], or undefined. */
function findNodeGyp() {
  const candidates = [];
  if (process.env.npm_config_node_gyp) candidates.push(process.env.npm_config_node_gyp);
  try {
    candidates.push(createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not a dependency of this package: look beside npm
  }
  if (process.env.npm_execpath) candidates.push(join(dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  const prefix = resolve(dirname(process.execPath), '..');
  candidates.push(join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  candidates.push(join(dirname(process.execPath), 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  for (const c of candidates) {
    if (c.endsWith('.js') && existsSync(c)) return { cmd: process.execPath, args: [c], from: c };
  }
  const bin = onPath('node-gyp');
  return bin ? { cmd: bin, args: [], from: bin } : undefined;
}

/** Tools node-gyp needs that are plainly missing (a quicker and clearer reason than a failed build). */
function missingTools() {
  if (process.platform === 'win32') return [];
  const missing = [];
  if (!process.env.CC && !['cc', 'gcc', 'clang'].some(onPath)) missing.push('a C compiler (cc, gcc or clang; or set CC)');
  if (!['make', 'gmake'].some(onPath)) missing.push('make');
  if (!process.env.npm_config_python && !process.env.PYTHON && !['python3', 'python'].some(onPath)) missing.push('python3 (for gyp)');
  return missing;
}

function headersArgs() {
  if (process.env.npm_config_nodedir) return { args: [], nodedir: `${process.env.npm_config_nodedir} (npm config nodedir)` };
  const prefix = resolve(dirname(process.execPath), '..');
  if (existsSync(join(prefix, 'include', 'node', 'node_api.h'))) return { args: [`--nodedir=${prefix}`], nodedir: prefix };
  return { args: [], nodedir: 'downloaded by node-gyp' };
}

/** The lines of a failed build that say why: compiler errors first, else node-gyp's own error lines. */
function whyFailed(output) {
  const lines = output.split('\n').map((l) => l.trimEnd()).filter(Boolean);
  const errors = lines.filter((l) => /\berror\b|not found|No such file|command not found/i.test(l) && !/^gyp ERR! (cwd|node -v|node-gyp -v|System|command)/.test(l));
  const pick = (errors.length ? errors : lines).slice(0, 6);
  return pick.join('\n');
}

function writeStatus(status) {
  try {
    mkdirSync(BUILD, { recursive: true });
    writeFileSync(STATUS, `${JSON.stringify(status, null, 2)}\n`);
  } catch (err) {
    console.warn(`svcplane: could not write ${STATUS}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function main() {
  const started = Date.now();
  const base = {
    when: new Date().toISOString(),
    node: process.version,
    napi: process.versions.napi,
    platform: `${process.platform}-${process.arch}`,
    addon: relative(ROOT, ADDON),
  };
  const done = (ok, fields) => {
    writeStatus({ ok, ...base, ...fields, durationMs: Date.now() - started });
    const say = ok ? 'built the native engine' : `native engine not built (${fields.reason.split('\n')[0]}); svcplane will use WebAssembly`;
    console.log(`svcplane: ${say}`);
  };

  if (process.env.SVCPLANE_SKIP_NATIVE_BUILD) return done(false, { stage: 'skipped', reason: 'skipped: SVCPLANE_SKIP_NATIVE_BUILD is set' });
  let hash;
  try {
    hash = sourceHash();
  } catch (err) {
    return done(false, { stage: 'sources', reason: `C sources missing: ${err instanceof Error ? err.message : String(err)}` });
  }
  const missing = missingTools();
  if (missing.length) return done(false, { stage: 'toolchain', sourceHash: hash, reason: `no build toolchain: missing ${missing.join(', ')}` });
  const gyp = findNodeGyp();
  if (!gyp) return done(false, { stage: 'toolchain', sourceHash: hash, reason: 'node-gyp not found (npm bundles it; is npm installed?)' });
  const headers = headersArgs();
  const env = { ...process.env, npm_config_loglevel: process.env.npm_config_loglevel ?? 'warn' };
  // gyp's Makefiles call `cc` unless CC is set: use gcc or clang when there is no cc.
  if (!env.CC && process.platform !== 'win32' && !onPath('cc')) env.CC = ['gcc', 'clang'].find(onPath);

  const run = spawnSync(gyp.cmd, [...gyp.args, 'rebuild', `--directory=${NATIVE}`, ...headers.args], {
    cwd: NATIVE,
    encoding: 'utf8',
    timeout: TIMEOUT_MS,
    env,
    maxBuffer: 16 * 1024 * 1024,
  });
  const output = `${run.stdout ?? ''}\n${run.stderr ?? ''}`;
  const toolchain = { nodeGyp: gyp.from, nodedir: headers.nodedir, cc: env.CC ?? 'cc' };
  if (run.error || run.status !== 0 || !existsSync(ADDON)) {
    const why = run.error ? `node-gyp could not run: ${run.error.message}` : whyFailed(output) || `node-gyp exited with ${String(run.status ?? run.signal)}`;
    return done(false, { stage: 'build', sourceHash: hash, toolchain, reason: `build failed (CC=${toolchain.cc}): ${why}`, log: output.slice(-4000) });
  }

  // Load it in a child process: a broken addon must not take this script down.
  const probe = spawnSync(process.execPath, ['-e', `
    const a = require(${JSON.stringify(ADDON)});
    const i = a.create();
    if (i.sp_abi_version() !== a.abiVersion) throw new Error('ABI version mismatch');
    console.log(JSON.stringify({ compiler: a.compiler, cflags: a.cflags, exports: a.exports, reservedBytes: i.reservedBytes }));
  `], { encoding: 'utf8', timeout: 60000 });
  if (probe.status !== 0) {
    return done(false, { stage: 'load', sourceHash: hash, toolchain, reason: `built, but it does not load: ${(probe.stderr || String(probe.error ?? probe.signal)).trim().split('\n').slice(0, 6).join('\n')}` });
  }
  let info = {};
  try {
    info = JSON.parse(probe.stdout.trim().split('\n').pop() ?? '{}');
  } catch {
    // informative only
  }
  return done(true, { stage: 'done', sourceHash: hash, toolchain, reason: 'built', ...info });
}

try {
  main();
} catch (err) {
  // Never fail the install.
  console.warn(`svcplane: native engine build script failed: ${err instanceof Error ? err.stack : String(err)}`);
  writeStatus({ ok: false, stage: 'script', reason: `build script error: ${err instanceof Error ? err.message : String(err)}` });
}
process.exitCode = 0;
