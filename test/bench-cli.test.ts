// `svcplane bench --quick`: runs every suite on small clusters and writes a report and a chart.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type BenchReport, Progress, renderChart, runBench } from '../src/cli/bench.js';

describe('svcplane bench', () => {
  it('--quick writes bench.json and an SVG chart with one bar per result', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'svcplane-bench-'));
    let out = '';
    let err = '';
    const code = await runBench(['--quick', '-o', dir], { stdout: (s) => (out += s), stderr: (s) => (err += s), stderrIsTTY: false });
    expect(err).not.toMatch(/sanity check failed/);
    expect(code).toBe(0);
    // Plain progress lines (stderr is not a terminal), a table on stdout.
    expect(err).toMatch(/^bench: compile 100 services x 10 endpoints$/m);
    expect(err).not.toContain('\r');
    expect(out).toMatch(/Full compile/);
    expect(out).toMatch(/One EndpointSlice change/);
    expect(out).toMatch(/wrote .*bench\.json and .*bench\.svg/);

    const r = JSON.parse(readFileSync(join(dir, 'bench.json'), 'utf8')) as BenchReport;
    expect(r.benchmark).toBe('svcplane');
    expect(r.quick).toBe(true);
    const isStats = (s: unknown): void => {
      expect(s).toMatchObject({ min: expect.any(Number), median: expect.any(Number), max: expect.any(Number), samples: expect.any(Number) });
      const { min, median, max } = s as { min: number; median: number; max: number };
      expect(min).toBeGreaterThan(0);
      expect(min).toBeLessThanOrEqual(median);
      expect(median).toBeLessThanOrEqual(max);
    };
    expect(r.compile.map((c) => [c.services, c.endpointsPerService])).toEqual([[100, 10], [1000, 10], [1, 1000]]);
    for (const c of r.compile) {
      isStats(c.applyMs);
      isStats(c.imageMs);
      expect(c.endpoints).toBe(c.services * c.endpointsPerService);
      expect(c.imageBytes).toBeGreaterThan(0);
    }
    expect(r.update.map((u) => u.services)).toEqual([100, 1000]);
    for (const u of r.update) {
      isStats(u.incrementalNs);
      isStats(u.fullRecompileNs);
      // An incremental change beats rebuilding the whole image even at 100 services.
      expect(u.speedup).toBeGreaterThan(1);
    }
    expect(r.size).toMatchObject({ services: 1000, endpoints: 10000 });
    expect(r.size.bytesPerEndpoint).toBeCloseTo(r.size.bytes / 10000);
    expect(r.size.bytesPerService).toBeCloseTo(r.size.bytes / 1000);
    expect(r.size.canonicalBytes).toBeLessThanOrEqual(r.size.bytes);
    expect(r.select).toHaveLength(1);
    isStats(r.select[0]?.wasmNs);
    isStats(r.select[0]?.jsNs);
    for (const t of r.targets) expect(t).toMatchObject({ name: expect.any(String), value: expect.any(Number), met: expect.any(Boolean) });

    const svg = readFileSync(join(dir, 'bench.svg'), 'utf8');
    expect(svg.startsWith('<svg ')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg).toContain('xmlns="http://www.w3.org/2000/svg"');
    // bars: 2 per select size, 2 per update size, 1 per compile case
    expect(r.chart.bars).toHaveLength(2 * 1 + 2 * 2 + 3);
    expect(svg.match(/<rect\b/g)).toHaveLength(r.chart.bars.length);
    // XML-ish: every element that opens is closed or self-closed, in order.
    const stack: string[] = [];
    for (const m of svg.matchAll(/<(\/?)([a-z]+)\b[^>]*?(\/?)>/g)) {
      if (m[1]) expect(stack.pop()).toBe(m[2]);
      else if (!m[3]) stack.push(m[2] as string);
    }
    expect(stack).toEqual([]);
  }, 60_000);

  it('draws a progress bar when stderr is a terminal', () => {
    let err = '';
    const p = new Progress({ stdout: () => undefined, stderr: (s) => (err += s) }, 4, true);
    p.start('compile');
    p.tick();
    p.tick();
    expect(err).toContain('\r');
    expect(err).toMatch(/\[#{14}\.{14}\] {2}50% compile$/);
    p.finish();
    expect(err.endsWith('\r\x1b[2K')).toBe(true);
  });

  it('escapes chart text', () => {
    const svg = renderChart([{ group: 'g', label: 'a <b>', ns: 50, baseline: false }, { group: 'g', label: 'c', ns: 5e6, baseline: true }], 't & u');
    expect(svg.match(/<rect\b/g)).toHaveLength(2);
    expect(svg).toContain('a &lt;b&gt;');
    expect(svg).toContain('t &amp; u');
  });

  it('rejects unknown options', async () => {
    let err = '';
    const code = await runBench(['--bogus'], { stdout: () => undefined, stderr: (s) => (err += s) });
    expect(code).toBe(2);
    expect(err).toMatch(/bogus/);
  });
});
