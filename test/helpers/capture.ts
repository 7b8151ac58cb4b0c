// Whether this machine can record live loopback traffic with tcpdump: the tools, root, and a capture
// socket the sandbox allows. A test that needs it skips with the reason printed (CI installs the tools
// and runs as root; a sandbox without packet sockets makes tcpdump fail at once with "permission").
import { spawnSync } from 'node:child_process';

export interface CaptureSupport {
  ok: boolean;
  reason: string;
}

let cached: CaptureSupport | undefined;

export function liveCaptureSupport(tools: readonly string[] = ['tcpdump', 'tshark']): CaptureSupport {
  const missing = tools.filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
  if (missing.length > 0) return { ok: false, reason: `missing ${missing.join(', ')} (apt-get install tcpdump tshark)` };
  if (process.getuid?.() !== 0) return { ok: false, reason: 'not root, cannot capture' };
  if (!cached) {
    // A capture that works keeps running (nothing matches the filter) until the timeout kills it; one the
    // sandbox refuses exits at once with an error.
    const r = spawnSync('tcpdump', ['-i', 'lo', '-c', '1', '-w', '/dev/null', 'udp port 9 and host 127.0.0.255'], { encoding: 'utf8', timeout: 1500 });
    cached = r.signal !== null || r.status === 0
      ? { ok: true, reason: '' }
      : { ok: false, reason: `tcpdump cannot capture on lo here: ${(r.stderr || '').trim().split('\n').pop() ?? `exit ${r.status}`}` };
  }
  return cached;
}
