// Manifest reloads for the proxy: read every path again, check the whole set on a scratch dataplane,
// and only when it has no error apply the difference to the live one (changed objects upserted,
// vanished objects deleted). A set with any error is rejected as a whole, so the live tables always
// come from one good set of files, never from a half-edited one.

import { createDataplane, readManifestPaths, type Dataplane, type DataplaneOptions, type Note, type ValidationError } from '../index.js';
import { isSecret, TlsStore } from './tls.js';

/** The kinds apply() keeps, by apiVersion/kind, and how delete() names them. */
type DeleteKind = Parameters<Dataplane['delete']>[0];
const KINDS: Record<string, DeleteKind> = {
  'v1/Service': 'Service',
  'discovery.k8s.io/v1/EndpointSlice': 'EndpointSlice',
  'v1/Node': 'Node',
  'networking.k8s.io/v1/Ingress': 'Ingress',
  'networking.k8s.io/v1/IngressClass': 'IngressClass',
};

interface Tracked {
  kind: DeleteKind;
  namespace: string;
  name: string;
  json: string;
}

export interface ReloadOutcome {
  ok: boolean;
  /** Why the set was rejected (syntax, validation, TLS Secrets); empty when ok. */
  errors: ValidationError[];
  /** Notes of the new state (skipped kinds, Ingress conflicts, ...), as apply() reports them. */
  notes: Note[];
  warnings: string[];
  applied: number;
  deleted: number;
  unchanged: number;
}

/** A good set of manifests, as the rest of the proxy needs it. */
export interface ManifestSet {
  /** Every object except Secrets (EndpointSlices for draining). */
  objects: object[];
  tls: TlsStore;
}

export class ManifestSource {
  private current = new Map<string, Tracked>();

  constructor(
    private readonly paths: string[],
    private readonly live: Dataplane,
    /** Options for the scratch dataplane (same node, class and seeds as the live one). */
    private readonly trialOptions: DataplaneOptions,
  ) {}

  /** Reads and checks the paths; applies the difference when the set is good. */
  async reload(): Promise<{ outcome: ReloadOutcome; set?: ManifestSet }> {
    const outcome: ReloadOutcome = { ok: false, errors: [], notes: [], warnings: [], applied: 0, deleted: 0, unchanged: 0 };
    const { objects: loaded, errors: readErrors } = await readManifestPaths(this.paths);
    outcome.errors.push(...readErrors);
    const objects: object[] = [];
    const secrets: object[] = [];
    for (const { object } of loaded) (isSecret(object) ? secrets : objects).push(object);

    const tls = TlsStore.build(secrets, objects);
    outcome.errors.push(...tls.errors);
    outcome.warnings.push(...tls.warnings);

    // The whole set on a fresh dataplane: every error apply() would report, none of them live yet.
    // WebAssembly whatever the live engine: validation does not depend on it, and a wasm instance is
    // reclaimed by the garbage collector like any object.
    const trial = await createDataplane({ ...this.trialOptions, engine: 'wasm' });
    outcome.errors.push(...trial.apply(objects));
    outcome.notes.push(...trial.lastReport.notes);
    if (outcome.errors.length > 0) return { outcome };

    const next = new Map<string, Tracked>();
    const changed = new Map<string, object>();
    for (const o of objects) {
      const m = o as { apiVersion?: unknown; kind?: unknown; metadata?: { name?: string; namespace?: string } };
      const kind = KINDS[`${String(m.apiVersion)}/${String(m.kind)}`];
      if (!kind) continue; // noted by the trial; the live dataplane has no use for it
      const namespace = kind === 'Node' || kind === 'IngressClass' ? '' : m.metadata?.namespace || 'default';
      const name = m.metadata?.name ?? '';
      const key = `${kind}|${namespace}|${name}`;
      const t: Tracked = { kind, namespace, name, json: JSON.stringify(o) };
      next.set(key, t); // a later copy of the same object wins, as it would in apply()
      if (this.current.get(key)?.json === t.json) changed.delete(key);
      else changed.set(key, o);
    }
    const applyErrors = this.live.apply([...changed.values()]);
    let deleted = 0;
    for (const [key, t] of this.current) {
      if (next.has(key)) continue;
      this.live.delete(t.kind, t.namespace, t.name);
      deleted++;
    }
    // The trial accepted these objects, so the live apply cannot refuse them; reported if it ever does.
    outcome.errors.push(...applyErrors);
    this.current = next;
    outcome.ok = applyErrors.length === 0;
    outcome.applied = changed.size;
    outcome.deleted = deleted;
    outcome.unchanged = next.size - changed.size;
    return { outcome, set: { objects, tls: tls.store } };
  }
}
