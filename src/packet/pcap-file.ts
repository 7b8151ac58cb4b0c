// A capture file on disk as a CaptureFile: read window by window (src/packet/pcap.ts), so a capture of any
// size is decoded without holding it whole.

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { CaptureFile } from './pcap.js';

/** Opens `path` for a CaptureReader; close() it when done. */
export function openCaptureFile(path: string, window?: number): CaptureFile & { close(): void } {
  const fd = openSync(path, 'r');
  const size = fstatSync(fd).size;
  return {
    size,
    ...(window !== undefined ? { window } : {}),
    read(out: Uint8Array, position: number): void {
      let done = 0;
      while (done < out.length) {
        const n = readSync(fd, out, done, out.length - done, position + done);
        if (n === 0) throw new Error(`${path}: ended at byte ${position + done} of ${size} (changed while read?)`);
        done += n;
      }
    },
    close: () => closeSync(fd),
  };
}
