// Reading manifests: YAML (multi-document) or JSON text into plain Kubernetes objects, and files,
// directories or stdin into those objects plus per-file errors. Nothing here checks what the objects
// contain beyond "is a mapping"; validate.ts does that.

import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LineCounter, parseAllDocuments, visit, type Alias, type Document } from 'yaml';
import type { ValidationError } from './types.js';

/** A manifest that cannot be parsed, or a document that is not a Kubernetes object. */
export class ManifestSyntaxError extends Error {
  override name = 'ManifestSyntaxError';

  constructor(
    /** File name, '<stdin>' or '<input>'. */
    readonly source: string,
    /** 1-based line. */
    readonly line: number,
    /** 1-based column, in UTF-16 code units. */
    readonly column: number,
    /** The problem without the position prefix, one line. */
    readonly reason: string,
  ) {
    super(`${source}:${line}:${column}: ${reason}`);
  }
}

/** A parsed manifest object and the file it came from ('<stdin>' for standard input). */
export interface LoadedObject {
  object: object;
  source: string;
}

type Path = (string | number)[];

/** Thrown by flatten(); the caller turns the path into a position. */
class ShapeError {
  constructor(
    readonly path: Path,
    readonly reason: string,
  ) {}
}

/**
 * Parses YAML (any number of `---` separated documents) or JSON (one value, or several separated by
 * whitespace) into objects. Empty and null documents are skipped, a top-level array yields its elements,
 * and `kind: List` (or any `*List` kind with an `items` array, as `kubectl get -o yaml` prints) is
 * replaced by its items, recursively. Throws ManifestSyntaxError for the first problem in the text.
 */
export function loadManifests(text: string, source = '<input>'): object[] {
  // A BOM is invisible in editors, so positions are counted without it.
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const first = /\S/.exec(text)?.[0];
  return first === '{' || first === '[' ? loadJson(text, source) : loadYaml(text, source);
}

// ---- shape ----

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  const t = typeof v;
  return t === 'object' ? 'a mapping' : `a ${t}`;
}

function isListObject(o: object): o is { kind: string; items?: unknown } {
  const { kind, items } = o as { kind?: unknown; items?: unknown };
  if (typeof kind !== 'string') return false;
  return kind === 'List' || (kind.endsWith('List') && Array.isArray(items));
}

/**
 * Appends the Kubernetes objects in one document's value to `out`. Null values (empty documents, a
 * stray `-`) carry nothing and are skipped. Only the document itself may be an array.
 */
function flatten(value: unknown, path: Path, out: object[], topLevel: boolean): void {
  if (value === null || value === undefined) return;
  if (Array.isArray(value)) {
    if (!topLevel) throw new ShapeError(path, `expected a Kubernetes object (a mapping), got an array`);
    value.forEach((item, i) => flatten(item, [...path, i], out, false));
    return;
  }
  if (typeof value !== 'object') {
    throw new ShapeError(path, `expected a Kubernetes object (a mapping), got ${describe(value)}`);
  }
  if (!isListObject(value)) {
    out.push(value);
    return;
  }
  const items = value.items;
  if (items === null || items === undefined) return;
  if (!Array.isArray(items)) {
    throw new ShapeError([...path, 'items'], `${value.kind} items must be an array, got ${describe(items)}`);
  }
  items.forEach((item, i) => flatten(item, [...path, 'items', i], out, false));
}

// ---- YAML ----

function loadYaml(text: string, source: string): object[] {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, {
    lineCounter,
    prettyErrors: false, // the position goes in front of the message, not into it
    version: '1.2',
    schema: 'core', // `on`, `yes`, `no` stay strings; a `%YAML 1.1` directive does not change that
    resolveKnownTags: false, // no Date/Set/Uint8Array out of `!!timestamp` and friends: JSON values only
    merge: true, // `<<: *defaults`, which kubectl's YAML decoder accepts
    uniqueKeys: true, // duplicate keys are an error, as in kubectl
    intAsBigInt: false,
  });
  const fail = (offset: number, reason: string): never => {
    const { line, col } = lineCounter.linePos(offset);
    throw new ManifestSyntaxError(source, line, col, firstLine(reason));
  };

  // The whole text fails on its first error, wherever it is.
  let firstError: { pos: number; message: string } | undefined;
  for (const doc of docs) {
    for (const e of doc.errors) {
      if (!firstError || e.pos[0] < firstError.pos) firstError = { pos: e.pos[0], message: e.message };
    }
  }
  if (firstError) fail(firstError.pos, firstError.message);

  const out: object[] = [];
  for (const doc of docs) {
    if (doc.contents === null) continue;
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (e) {
      // An alias to an anchor that is not defined before it, or an alias bomb.
      fail(badAliasOffset(doc) ?? doc.contents.range[0], e instanceof Error ? e.message : String(e));
    }
    try {
      flatten(value, [], out, true);
    } catch (e) {
      if (!(e instanceof ShapeError)) throw e;
      fail(yamlOffset(doc, e.path), e.reason);
    }
  }
  return out;
}

function firstLine(s: string): string {
  return (s.split('\n', 1)[0] ?? '').trim();
}

function badAliasOffset(doc: Document.Parsed): number | undefined {
  let offset: number | undefined;
  visit(doc, {
    Alias(_key, node: Alias) {
      if (node.resolve(doc) === undefined) {
        offset = node.range?.[0];
        return visit.BREAK;
      }
      return undefined;
    },
  });
  return offset;
}

/** Where the node at `path` starts, or its nearest ancestor that can be found (aliases, merges). */
function yamlOffset(doc: Document.Parsed, path: Path): number {
  for (let n = path.length; n > 0; n--) {
    const node: unknown = doc.getIn(path.slice(0, n), true);
    if (node && typeof node === 'object' && 'range' in node) {
      const range = (node as { range?: [number, number, number] | null }).range;
      if (range) return range[0];
    }
  }
  return doc.contents?.range[0] ?? 0;
}

// ---- JSON ----

function loadJson(text: string, source: string): object[] {
  const fail = (offset: number, reason: string): never => {
    const { line, column } = lineColumn(text, offset);
    throw new ManifestSyntaxError(source, line, column, reason);
  };

  let spans: [number, number][];
  try {
    spans = scanJson(text).spans;
  } catch (e) {
    if (e instanceof JsonError) fail(e.offset, e.message);
    throw e;
  }

  const out: object[] = [];
  spans.forEach(([start, end], i) => {
    let value: unknown;
    try {
      value = JSON.parse(spans.length === 1 ? text : text.slice(start, end));
    } catch (e) {
      // Unreachable while the scanner agrees with JSON.parse; still a ManifestSyntaxError if not.
      fail(start, firstLine(e instanceof Error ? e.message : String(e)));
    }
    try {
      flatten(value, [], out, true);
    } catch (e) {
      if (!(e instanceof ShapeError)) throw e;
      fail(scanJson(text, [i, ...e.path]).found ?? start, e.reason);
    }
  });
  return out;
}

class JsonError {
  constructor(
    readonly offset: number,
    readonly message: string,
  ) {}
}

interface Frame {
  array: boolean;
  /** Keys seen so far (objects only). */
  keys: Set<string> | null;
  /** Index of the current element, or the current key. */
  at: number | string;
}

/**
 * Checks that `text` is a whitespace-separated sequence of JSON values with no duplicate keys (which
 * JSON.parse silently accepts) and returns each value's [start, end). With `target` ([value index,
 * ...path]) it also returns the offset where the value at that path starts. Iterative, so nesting depth
 * is not limited by the call stack. Messages follow V8's JSON.parse wording.
 */
function scanJson(text: string, target?: Path): { spans: [number, number][]; found?: number } {
  const n = text.length;
  const spans: [number, number][] = [];
  let i = 0;
  let found: number | undefined;
  const stack: Frame[] = [];

  const skipWs = (): void => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      i++;
    }
  };
  const unexpected = (): never => {
    if (i >= n) throw new JsonError(n, 'Unexpected end of JSON input');
    const code = text.codePointAt(i) ?? 0;
    const ch = code < 0x20 || code === 0x7f ? `\\u${code.toString(16).padStart(4, '0')}` : String.fromCodePoint(code);
    throw new JsonError(i, `Unexpected token '${ch}'`);
  };
  /** Scans a string at text[i] === '"', returns its decoded value if `decode`. */
  const scanString = (decode: boolean): string => {
    const start = i;
    i++;
    let escaped = false;
    for (;;) {
      while (i < n) {
        const c = text.charCodeAt(i);
        if (c === 0x22 /* " */ || c === 0x5c /* \ */ || c < 0x20) break;
        i++;
      }
      if (i >= n) throw new JsonError(n, 'Unterminated string in JSON');
      const c = text.charCodeAt(i);
      if (c === 0x22) break;
      if (c === 0x5c) {
        escaped = true;
        i++;
        if (text.charCodeAt(i) === 0x75 /* u */) {
          for (let k = 0; k < 4; k++) {
            i++;
            if (!/[0-9a-fA-F]/.test(text.charAt(i))) throw new JsonError(Math.min(i, n), 'Bad Unicode escape in JSON');
          }
        } else if (i >= n || !'"\\/bfnrt'.includes(text.charAt(i))) {
          throw new JsonError(Math.min(i, n), 'Bad escaped character in JSON');
        }
        i++;
        continue;
      }
      throw new JsonError(i, 'Bad control character in string literal in JSON');
    }
    i++;
    if (!decode) return '';
    return escaped ? (JSON.parse(text.slice(start, i)) as string) : text.slice(start + 1, i - 1);
  };
  /** Scans true/false/null, failing at the first character that differs. */
  const scanLiteral = (word: string): void => {
    for (let k = 0; k < word.length; k++, i++) if (text.charCodeAt(i) !== word.charCodeAt(k)) unexpected();
  };
  const digits = (): boolean => {
    const from = i;
    while (i < n && text.charCodeAt(i) >= 0x30 && text.charCodeAt(i) <= 0x39) i++;
    return i > from;
  };
  /** Scans a number at text[i], or throws for whatever else is there. */
  const scanNumber = (): void => {
    const start = i;
    if (text.charCodeAt(i) === 0x2d /* - */) i++;
    if (text.charCodeAt(i) === 0x30 /* 0: no leading zeros, "01" is 0 followed by junk */) i++;
    else if (!digits()) {
      if (i === start) unexpected();
      throw new JsonError(i, 'No number after minus sign in JSON');
    }
    if (text.charCodeAt(i) === 0x2e /* . */) {
      i++;
      if (!digits()) throw new JsonError(i, 'Unterminated fractional number in JSON');
    }
    if ((text.charCodeAt(i) | 0x20) === 0x65 /* e, E */) {
      i++;
      if (text.charCodeAt(i) === 0x2b || text.charCodeAt(i) === 0x2d) i++;
      if (!digits()) throw new JsonError(i, 'Exponent part is missing a number in JSON');
    }
  };
  /** Reads `"key":` for the object on top of the stack, leaving i at the value. */
  const scanKey = (frame: Frame, afterComma: boolean): void => {
    skipWs();
    if (text.charCodeAt(i) !== 0x22) {
      if (i >= n) unexpected();
      throw new JsonError(i, afterComma ? 'Expected double-quoted property name in JSON' : "Expected property name or '}' in JSON");
    }
    const keyStart = i;
    const key = scanString(true);
    if (frame.keys?.has(key)) throw new JsonError(keyStart, `Duplicate key ${JSON.stringify(key)} in JSON object`);
    frame.keys?.add(key);
    frame.at = key;
    skipWs();
    if (text.charCodeAt(i) !== 0x3a) {
      if (i >= n) unexpected();
      throw new JsonError(i, "Expected ':' after property name in JSON");
    }
    i++;
  };
  const atTarget = (): boolean => {
    if (!target || found !== undefined || target.length !== stack.length + 1 || target[0] !== spans.length) return false;
    return stack.every((f, d) => target[d + 1] === f.at);
  };

  skipWs();
  while (i < n) {
    const start = i;
    // One top-level value: alternate between "expect a value" and "after a value" until the stack empties.
    value: for (;;) {
      skipWs();
      if (atTarget()) found = i;
      const c = text.charCodeAt(i);
      let opened = false;
      if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
        const array = c === 0x5b;
        i++;
        const frame: Frame = { array, keys: array ? null : new Set(), at: 0 };
        stack.push(frame);
        skipWs();
        if (text.charCodeAt(i) === (array ? 0x5d : 0x7d)) {
          i++;
          stack.pop();
        } else {
          if (!array) scanKey(frame, false);
          opened = true;
        }
      } else if (c === 0x22) {
        scanString(false);
      } else if (c === 0x74 /* t */) {
        scanLiteral('true');
      } else if (c === 0x66 /* f */) {
        scanLiteral('false');
      } else if (c === 0x6e /* n */) {
        scanLiteral('null');
      } else {
        scanNumber();
      }
      if (opened) continue value;

      // After a value: close containers or move to the next element.
      for (;;) {
        const frame = stack[stack.length - 1];
        if (!frame) break value;
        skipWs();
        const d = text.charCodeAt(i);
        if (d === 0x2c /* , */) {
          i++;
          if (frame.array) frame.at = (frame.at as number) + 1;
          else scanKey(frame, true);
          continue value;
        }
        if (d === (frame.array ? 0x5d : 0x7d)) {
          i++;
          stack.pop();
          continue;
        }
        if (i >= n) unexpected();
        throw new JsonError(
          i,
          frame.array ? "Expected ',' or ']' after array element in JSON" : "Expected ',' or '}' after property value in JSON",
        );
      }
    }
    spans.push([start, i]);
    skipWs();
  }
  return found === undefined ? { spans } : { spans, found };
}

function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let nl = text.indexOf('\n'); nl !== -1 && nl < offset; nl = text.indexOf('\n', nl + 1)) {
    line++;
    lineStart = nl + 1;
  }
  return { line, column: offset - lineStart + 1 };
}

// ---- files ----

const MANIFEST_EXTENSIONS = ['.yaml', '.yml', '.json'];

/** 'no such file or directory' out of "ENOENT: no such file or directory, open 'x'". */
function fsReason(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const m = /^[A-Z0-9_]+: (.*?), [a-z]+(?: '.*')?$/.exec(firstLine(e.message));
  return m?.[1] ?? firstLine(e.message);
}

async function readStream(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk);
  return Buffer.concat(chunks).toString('utf8');
}

/** Manifest files under `dir`, recursively, hidden entries skipped, sorted by path. */
async function listManifestFiles(dir: string, errors: ValidationError[], seen: Set<string>): Promise<string[]> {
  const files: string[] = [];
  const walk = async (d: string): Promise<void> => {
    let real: string;
    let entries;
    try {
      real = await realpath(d);
      if (seen.has(real)) return; // a symlink loop
      seen.add(real);
      entries = await readdir(d, { withFileTypes: true });
    } catch (e) {
      errors.push({ object: d, field: '', message: fsReason(e) });
      return;
    }
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const p = join(d, entry.name);
      let isDir = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        try {
          const s = await stat(p);
          isDir = s.isDirectory();
          isFile = s.isFile();
        } catch (e) {
          errors.push({ object: p, field: '', message: fsReason(e) });
          continue;
        }
      }
      if (isDir) await walk(p);
      else if (isFile && MANIFEST_EXTENSIONS.some((ext) => entry.name.endsWith(ext))) files.push(p);
    }
  };
  await walk(dir);
  return files.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Loads every manifest named by `paths`: files (any extension), directories (recursively: .yaml, .yml
 * and .json files in path order, hidden entries skipped) and '-' for `stdin`. Problems become errors
 * ('file:line:column' or the path as the object) and the other files still load; a file with a syntax
 * error contributes no objects.
 */
export async function readManifestPaths(
  paths: string[],
  stdin?: NodeJS.ReadableStream,
): Promise<{ objects: LoadedObject[]; errors: ValidationError[] }> {
  const objects: LoadedObject[] = [];
  const errors: ValidationError[] = [];
  let stdinText: Promise<string> | undefined;

  const load = (text: string, source: string): void => {
    try {
      for (const object of loadManifests(text, source)) objects.push({ object, source });
    } catch (e) {
      if (!(e instanceof ManifestSyntaxError)) throw e;
      errors.push({ object: `${e.source}:${e.line}:${e.column}`, field: '', message: e.reason });
    }
  };
  const loadFile = async (file: string): Promise<void> => {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      errors.push({ object: file, field: '', message: fsReason(e) });
      return;
    }
    load(text, file);
  };

  for (const path of paths) {
    if (path === '-') {
      // Read once; naming '-' again loads the same text again, as naming a file twice would.
      stdinText ??= readStream(stdin ?? process.stdin);
      let text: string;
      try {
        text = await stdinText;
      } catch (e) {
        errors.push({ object: '<stdin>', field: '', message: fsReason(e) });
        continue;
      }
      load(text, '<stdin>');
      continue;
    }
    let isDir: boolean;
    try {
      isDir = (await stat(path)).isDirectory();
    } catch (e) {
      errors.push({ object: path, field: '', message: fsReason(e) });
      continue;
    }
    if (!isDir) {
      await loadFile(path);
      continue;
    }
    for (const file of await listManifestFiles(path, errors, new Set())) await loadFile(file);
  }
  return { objects, errors };
}
