// Re-renders the bar chart of a `svcplane bench` report: node build/bench/chart.js DIR/bench.json [OUT.svg]
// (the SVG is written beside the JSON as bench.svg by default).

import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { chartFromFile } from '../src/cli/bench.js';

const [input, output] = process.argv.slice(2);
if (!input) {
  console.error('usage: node build/bench/chart.js BENCH.json [OUT.svg]');
  process.exitCode = 2;
} else {
  const out = output ?? join(dirname(input), 'bench.svg');
  writeFileSync(out, chartFromFile(input));
  console.log(`wrote ${out}`);
}
