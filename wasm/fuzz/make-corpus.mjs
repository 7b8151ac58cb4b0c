// Writes seed inputs for the fuzzer: real images compiled from the examples, followed by flows aimed at
// their frontends. Input format (see fuzz_select.c): u16 flow byte count, 2 pad bytes, image, flows.
// Run after `npm run build`: node wasm/fuzz/make-corpus.mjs
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createDataplane, encodeFlows, loadManifests } from '../../dist/index.js';

const dir = new URL('./corpus/', import.meta.url);
mkdirSync(dir, { recursive: true });
const files = readdirSync('examples/cluster').map((f) => `examples/cluster/${f}`);
const sets = [files, files.filter((f) => f.endsWith('web.yaml') || f.endsWith('nodes.yaml')), files.filter((f) => f.endsWith('api.yaml'))];
let n = 0;
for (const set of sets) {
  const dp = await createDataplane({ node: 'node-a', tableSeed: n, podCIDRs: ['10.244.1.0/24'] });
  dp.apply(set.flatMap((f) => loadManifests(readFileSync(f, 'utf8'), f)));
  const flows = [...dp.tables.frontends()].slice(0, 16).map((fe, i) => ({
    protocol: fe.protocol, src: fe.address.includes(':') ? `fd00::${i + 1}` : `192.168.10.${i + 1}`, sport: 1000 + i, dst: fe.address, dport: fe.port,
  }));
  const flowBytes = encodeFlows(flows);
  const input = new Uint8Array(4 + dp.image.length + flowBytes.length);
  input[0] = flowBytes.length & 0xff;
  input[1] = flowBytes.length >> 8;
  input.set(dp.image, 4);
  input.set(flowBytes, 4 + dp.image.length);
  writeFileSync(new URL(`seed-${n++}`, dir), input);
}
console.log(`wrote ${n} seeds to wasm/fuzz/corpus/`);
