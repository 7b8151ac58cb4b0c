// Watching the manifest paths: directories recursively, files through their parent directory (editors
// and `kubectl`-style tools replace files by rename, which a watch on the file itself would miss).
// Events are debounced: one reload per burst of writes.

import { watch, statSync, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import type { Logger } from './log.js';

export function watchPaths(paths: readonly string[], debounceMs: number, onChange: () => void, log: Logger): () => void {
  const watchers: FSWatcher[] = [];
  let timer: NodeJS.Timeout | undefined;
  const fire = (): void => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(onChange, debounceMs);
  };
  for (const p of paths) {
    if (p === '-') {
      log('warn', 'watch_skipped', { path: p, reason: 'standard input cannot be watched' });
      continue;
    }
    const abs = resolve(p);
    let isDir = false;
    try {
      isDir = statSync(abs).isDirectory();
    } catch {
      // A missing file is watched through its directory: creating it triggers a reload.
    }
    try {
      const w = isDir
        ? watch(abs, { recursive: true, persistent: false }, (_ev, name) => {
            if (name === null || !String(name).split('/').some((part) => part.startsWith('.'))) fire();
          })
        : watch(dirname(abs), { persistent: false }, (_ev, name) => {
            if (name === null || String(name) === basename(abs)) fire();
          });
      w.on('error', (e) => log('warn', 'watch_error', { path: p, error: e.message }));
      watchers.push(w);
    } catch (e) {
      log('warn', 'watch_failed', { path: p, error: (e as Error).message });
    }
  }
  return () => {
    if (timer) clearTimeout(timer);
    for (const w of watchers) w.close();
  };
}
