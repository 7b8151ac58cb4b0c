import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadManifests, ManifestSyntaxError, readManifestPaths } from '../src/k8s/load.js';

const FIX = fileURLToPath(new URL('./fixtures/load/', import.meta.url));
const fixture = (name: string): string => join(FIX, name);
const read = (name: string): string => readFileSync(fixture(name), 'utf8');

interface Meta {
  kind?: string;
  metadata?: { name?: string };
}
const names = (objs: object[]): (string | undefined)[] => objs.map((o) => (o as Meta).metadata?.name);
const kinds = (objs: object[]): (string | undefined)[] => objs.map((o) => (o as Meta).kind);

/** The ManifestSyntaxError loadManifests throws for `text`. */
function syntaxError(text: string, source?: string): ManifestSyntaxError {
  try {
    loadManifests(text, source);
  } catch (e) {
    if (e instanceof ManifestSyntaxError) return e;
    throw e;
  }
  throw new Error('expected a ManifestSyntaxError');
}

describe('loadManifests: YAML', () => {
  it('reads every document of a multi-document file and skips empty ones', () => {
    const objs = loadManifests(read('multi.yaml'), 'multi.yaml');
    expect(names(objs)).toEqual(['web', 'api', 'web-abc']);
    expect(kinds(objs)).toEqual(['Service', 'Service', 'EndpointSlice']);
    expect(objs[2]).toMatchObject({ addressType: 'IPv4', endpoints: [{ addresses: ['10.0.0.1'] }] });
  });

  it('uses the YAML 1.2 core schema: on/yes stay strings, numbers are numbers', () => {
    const [svc] = loadManifests(read('multi.yaml'));
    expect(svc).toMatchObject({
      metadata: { annotations: { 'example.com/enabled': 'on', 'example.com/answer': 'yes' } },
      spec: { ports: [{ port: 80, targetPort: 8080 }] },
    });
    const [o] = loadManifests('%YAML 1.1\n---\na: on\nb: no\nbig: 12345678901234567890\nhex: 0x1F\nq: "80"\nn: ~\n');
    expect(o).toEqual({ a: 'on', b: 'no', big: Number('12345678901234567890'), hex: 31, q: '80', n: null });
    expect(typeof (o as { big: unknown }).big).toBe('number');
  });

  it('keeps explicit YAML 1.1 tags as plain JSON values', () => {
    const [o] = loadManifests('t: !!timestamp 2001-12-14\n');
    expect(o).toEqual({ t: '2001-12-14' });
  });

  it('supports anchors, aliases and merge keys', () => {
    const [o] = loadManifests('base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\nc: *b\n');
    expect(o).toEqual({ base: { x: 1, y: 2 }, m: { x: 1, y: 3 }, c: { x: 1, y: 2 } });
  });

  it('returns nothing for empty text, only comments, or only separators', () => {
    expect(loadManifests('')).toEqual([]);
    expect(loadManifests('   \n\n')).toEqual([]);
    expect(loadManifests('# nothing here\n')).toEqual([]);
    expect(loadManifests('---\n---\n...\n')).toEqual([]);
    expect(loadManifests('~\n---\nnull\n')).toEqual([]);
  });

  it('yields the elements of a top-level sequence', () => {
    const objs = loadManifests('- kind: Service\n  metadata: {name: a}\n-\n- kind: Node\n  metadata: {name: b}\n');
    expect(names(objs)).toEqual(['a', 'b']);
  });

  it('reports a syntax error at its exact line and column, first line of the message only', () => {
    const e = syntaxError(read('bad-syntax.yaml'), 'examples/bad.yaml');
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('ManifestSyntaxError');
    expect(e.source).toBe('examples/bad.yaml');
    expect(e.line).toBe(11); // ' labels:' is indented by one space
    expect(e.column).toBe(1);
    expect(e.reason).toBe('All mapping items must start at the same column');
    expect(e.message).toBe('examples/bad.yaml:11:1: All mapping items must start at the same column');
    expect(e.message).not.toContain('\n');
  });

  it('fails the whole text on an error in a later document', () => {
    const e = syntaxError('kind: Service\n---\nkind: Service\nspec: [1, 2\n');
    expect([e.line, e.source]).toEqual([5, '<input>']);
  });

  it('rejects duplicate mapping keys, as kubectl does', () => {
    const e = syntaxError('apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  name: b\n', 'dup.yaml');
    expect([e.line, e.column]).toEqual([5, 3]);
    expect(e.reason).toMatch(/unique/i);
  });

  it('rejects a scalar document at that document’s line', () => {
    const e = syntaxError(read('scalar.yaml'), 'scalar.yaml');
    expect(e.message).toBe('scalar.yaml:7:1: expected a Kubernetes object (a mapping), got a string');
    expect(syntaxError('42\n').reason).toBe('expected a Kubernetes object (a mapping), got a number');
    expect(syntaxError('kind: A\n---\n- kind: B\n- true\n').message).toBe(
      '<input>:4:3: expected a Kubernetes object (a mapping), got a boolean',
    );
    expect(syntaxError('- - kind: A\n').reason).toBe('expected a Kubernetes object (a mapping), got an array');
  });

  it('reports an alias to an undefined anchor at the alias', () => {
    const e = syntaxError('a: 1\nb: *nope\n');
    expect([e.line, e.column]).toEqual([2, 4]);
    expect(e.reason).toContain('nope');
  });

  it('ignores a byte order mark', () => {
    expect(names(loadManifests('\uFEFFmetadata: {name: bom}\n'))).toEqual(['bom']);
    expect(names(loadManifests('\uFEFF{"metadata": {"name": "bom"}}'))).toEqual(['bom']);
  });
});

describe('loadManifests: Lists', () => {
  it('flattens kind: List as kubectl prints it, including nested Lists and *List kinds', () => {
    const objs = loadManifests(read('list.yaml'), 'list.yaml');
    expect(names(objs)).toEqual(['one', 'two', 'node-a', 'one-xyz']);
    expect(kinds(objs)).toEqual(['Service', 'Service', 'Node', 'EndpointSlice']);
  });

  it('treats a List without items as empty, and a *List kind without an items array as an object', () => {
    expect(loadManifests('apiVersion: v1\nkind: List\nitems: []\n')).toEqual([]);
    expect(loadManifests('apiVersion: v1\nkind: List\n')).toEqual([]);
    expect(loadManifests('kind: PlayList\nsongs: []\n')).toEqual([{ kind: 'PlayList', songs: [] }]);
  });

  it('reports a non-object List item at the item', () => {
    const e = syntaxError('apiVersion: v1\nkind: List\nitems:\n- kind: Service\n- just text\n');
    expect(e.message).toBe('<input>:5:3: expected a Kubernetes object (a mapping), got a string');
    const j = syntaxError('{"kind": "List",\n "items": [{"kind": "Node"},\n   7]}');
    expect([j.line, j.column, j.reason]).toEqual([3, 4, 'expected a Kubernetes object (a mapping), got a number']);
  });

  it('rejects List items that are not an array', () => {
    const e = syntaxError('kind: List\nitems:\n  a: 1\n');
    expect(e.line).toBe(3);
    expect(e.reason).toBe('List items must be an array, got a mapping');
  });
});

describe('loadManifests: JSON', () => {
  it('reads a JSON object', () => {
    expect(loadManifests(read('object.json'))).toEqual([
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'json-svc', namespace: 'default' },
        spec: { ports: [{ port: 8080 }] },
      },
    ]);
  });

  it('yields the elements of a JSON array', () => {
    const objs = loadManifests(read('array.json'));
    expect(names(objs)).toEqual(['node-a', 'node-b']);
    expect(kinds(objs)).toEqual(['Node', 'Node']);
  });

  it('reads a stream of whitespace-separated JSON values', () => {
    expect(names(loadManifests('{"metadata":{"name":"a"}}\n{"metadata":{"name":"b"}}[{"metadata":{"name":"c"}}]'))).toEqual(['a', 'b', 'c']);
  });

  it('reports a syntax error at its exact line and column', () => {
    const e = syntaxError(read('bad.json'), 'bad.json');
    expect(e.line).toBe(7); // the comma is missing at the end of line 6
    expect(e.column).toBe(5);
    expect(e.message).toBe("bad.json:7:5: Expected ',' or '}' after property value in JSON");
  });

  it.each([
    ['{"a": 1,\n}', 2, 1, 'Expected double-quoted property name in JSON'],
    ['{\n  "a": [1,\n  2', 3, 4, 'Unexpected end of JSON input'],
    ['[\n  tru ]', 2, 6, "Unexpected token ' '"],
    ['{"a":\n  01}', 2, 4, "Expected ',' or '}' after property value in JSON"],
    ['{"a": "x\ty"}', 1, 9, 'Bad control character in string literal in JSON'],
    ['{"a": "\\q"}', 1, 9, 'Bad escaped character in JSON'],
    ['{"a": "\\u12G4"}', 1, 12, 'Bad Unicode escape in JSON'],
    ['{"a": -x}', 1, 8, 'No number after minus sign in JSON'],
    ['{"a": 1.}', 1, 9, 'Unterminated fractional number in JSON'],
    ['{"a" 1}', 1, 6, "Expected ':' after property name in JSON"],
    ['{"a": "open', 1, 12, 'Unterminated string in JSON'],
    ['{"a": 1}\n{"b": 2} x', 2, 10, "Unexpected token 'x'"],
  ])('locates the JSON error in %j', (text, line, column, reason) => {
    const e = syntaxError(text);
    expect({ line: e.line, column: e.column, reason: e.reason }).toEqual({ line, column, reason });
  });

  it('agrees with JSON.parse about what is valid JSON', () => {
    const good = ['{}', '[]', '{"a":[1,-0.5e+3,true,false,null,"\\u00e9\\n"]}', ' [ {"a" : {} } ] '];
    for (const t of good) expect(() => loadManifests(t)).not.toThrow();
    const bad = ['{"a":1,}', '[1,]', "{'a':1}", '{"a":.5}', '{"a":+1}', '{"a":0x1}', '[NaN]', '{"a":1}}'];
    for (const t of bad) {
      expect(() => JSON.parse(t)).toThrow();
      expect(() => loadManifests(t)).toThrow(ManifestSyntaxError);
    }
  });

  it('rejects duplicate keys, which JSON.parse would silently accept', () => {
    const e = syntaxError('{\n  "metadata": {"name": "a"},\n  "metadata": {"name": "b"}\n}');
    expect([e.line, e.column, e.reason]).toEqual([3, 3, 'Duplicate key "metadata" in JSON object']);
    // Compared after unescaping; the same key in different objects is fine.
    expect(syntaxError('{"a": 1, "\\u0061": 2}').reason).toBe('Duplicate key "a" in JSON object');
    expect(loadManifests('[{"a": 1}, {"a": 2}]')).toEqual([{ a: 1 }, { a: 2 }]);
  });

  it('reports a non-object element at its position', () => {
    const e = syntaxError('[\n  {"kind": "Node"},\n  "text"\n]');
    expect(e.message).toBe('<input>:3:3: expected a Kubernetes object (a mapping), got a string');
  });

  it('handles deep nesting without overflowing the stack', () => {
    const depth = 20000;
    expect(loadManifests(`{"a":${'['.repeat(depth)}${']'.repeat(depth)}}`)).toHaveLength(1);
    const e = syntaxError(`{"a":${'['.repeat(depth)}${']'.repeat(depth - 1)}}`);
    expect([e.line, e.column]).toEqual([1, 5 + 2 * depth]);
  });
});

describe('readManifestPaths', () => {
  it('reads a directory recursively in path order, skipping hidden entries and other extensions', async () => {
    const { objects, errors } = await readManifestPaths([fixture('dir')]);
    expect(errors).toEqual([]);
    expect(objects.map((o) => [o.source, (o.object as Meta).metadata?.name])).toEqual([
      [join(FIX, 'dir', 'a', 'c.json'), 'from-a-c'],
      [join(FIX, 'dir', 'b.yaml'), 'from-b'],
    ]);
  });

  it('loads an explicitly named file whatever its extension', async () => {
    const { objects, errors } = await readManifestPaths([fixture('dir/notes.txt'), fixture('dir/.hidden.yaml')]);
    expect(errors).toEqual([]);
    expect(names(objects.map((o) => o.object))).toEqual(['from-txt', 'hidden-file']);
  });

  it('keeps the order of the paths given and records each object’s file', async () => {
    const { objects, errors } = await readManifestPaths([fixture('object.json'), fixture('multi.yaml')]);
    expect(errors).toEqual([]);
    expect(objects.map((o) => o.source)).toEqual([fixture('object.json'), ...Array(3).fill(fixture('multi.yaml'))]);
    expect(names(objects.map((o) => o.object))).toEqual(['json-svc', 'web', 'api', 'web-abc']);
  });

  it("reads '-' from the given stdin stream", async () => {
    const stdin = Readable.from(['apiVersion: v1\nkind: Service\n', 'metadata:\n  name: piped\n---\n', '{"kind": "Node", "metadata": {"name": "n"}}\n']);
    const { objects, errors } = await readManifestPaths(['-'], stdin);
    expect(errors).toEqual([]);
    expect(objects).toEqual([
      { source: '<stdin>', object: { apiVersion: 'v1', kind: 'Service', metadata: { name: 'piped' } } },
      { source: '<stdin>', object: { kind: 'Node', metadata: { name: 'n' } } },
    ]);
  });

  it('decodes UTF-8 split across stdin chunks', async () => {
    const bytes = Buffer.from('metadata:\n  name: café\n', 'utf8');
    const cut = bytes.indexOf(0xc3) + 1; // between the two bytes of 'é'
    const stdin = Readable.from([bytes.subarray(0, cut), bytes.subarray(cut)]);
    const { objects } = await readManifestPaths(['-'], stdin);
    expect(names(objects.map((o) => o.object))).toEqual(['café']);
  });

  it('reports a syntax error on stdin as <stdin>:line:column', async () => {
    const stdin = Readable.from(['kind: Service\nmetadata:\n  name: a\n  name: b\n']);
    const { objects, errors } = await readManifestPaths(['-'], stdin);
    expect(objects).toEqual([]);
    expect(errors).toHaveLength(1);
    expect(errors[0]?.object).toBe('<stdin>:4:3');
  });

  it('reports a missing path and still loads the rest', async () => {
    const missing = fixture('does-not-exist.yaml');
    const { objects, errors } = await readManifestPaths([missing, fixture('object.json')]);
    expect(errors).toEqual([{ object: missing, field: '', message: 'no such file or directory' }]);
    expect(names(objects.map((o) => o.object))).toEqual(['json-svc']);
  });

  it('fails a file with a syntax error as a whole and goes on with the other files', async () => {
    const { objects, errors } = await readManifestPaths([
      fixture('bad-syntax.yaml'),
      fixture('object.json'),
      fixture('bad.json'),
      fixture('mixed'),
      fixture('scalar.yaml'),
    ]);
    expect(errors).toEqual([
      { object: `${fixture('bad-syntax.yaml')}:11:1`, field: '', message: 'All mapping items must start at the same column' },
      { object: `${fixture('bad.json')}:7:5`, field: '', message: "Expected ',' or '}' after property value in JSON" },
      { object: `${join(FIX, 'mixed', '1-bad.yaml')}:11:1`, field: '', message: 'All mapping items must start at the same column' },
      { object: `${fixture('scalar.yaml')}:7:1`, field: '', message: 'expected a Kubernetes object (a mapping), got a string' },
    ]);
    // 'good-before-error' (bad-syntax.yaml) and 'fine' (scalar.yaml) come before the errors in their files
    // but are not loaded.
    expect(names(objects.map((o) => o.object))).toEqual(['json-svc', 'still-loaded']);
    expect(objects.map((o) => o.source)).toEqual([fixture('object.json'), join(FIX, 'mixed', '2-good.yaml')]);
  });
});
