#!/usr/bin/env node
// Repeated A/B of tfjs-wasm variants (the prototypes of bench/nets.md "Proposals"), alternating
// A, B, A, B, ... in fresh processes with the same quiet-machine protocol as run.js, so that a few
// percent can be told from noise. Prints per-variant medians (and all repeats) of the per-run medians.
//
//   node bench/train/ab.js --net net3d [--rounds 3] [--steps 10] [--variants base,proto,threads2]
//
// Variants: base (lazylabel as is), proto (proto_kernels.js: zero-copy Identity + depth-folded 3D
// convs), identity / conv3d (one of the two), threads2 (multi-threaded wasm, proto_threads.js),
// threads2+proto.
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { sampleBusyCores, summary } from './common.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values: a } = parseArgs({
  options: {
    net: { type: 'string', default: 'net2d' },
    rounds: { type: 'string', default: '3' },
    steps: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    variants: { type: 'string', default: 'base,proto' },
    'max-load': { type: 'string', default: '1.5' },
  },
});
const VARIANTS = {
  base: { args: [], env: {} },
  proto: { args: ['--kernels', 'proto_kernels.js'], env: { LAZYLABEL_PROTO: 'identity,conv3d' } },
  identity: { args: ['--kernels', 'proto_kernels.js'], env: { LAZYLABEL_PROTO: 'identity' } },
  conv3d: { args: ['--kernels', 'proto_kernels.js'], env: { LAZYLABEL_PROTO: 'conv3d' } },
  threads2: { args: [], env: { LAZYLABEL_WASM_THREADS: '2' } },
  'threads2+proto': { args: ['--kernels', 'proto_kernels.js'], env: { LAZYLABEL_WASM_THREADS: '2', LAZYLABEL_PROTO: 'identity,conv3d' } },
};
const names = a.variants.split(',');
const log = (...m) => console.error(`[${new Date().toISOString().slice(11, 19)}]`, ...m);

async function waitQuiet() {
  for (;;) {
    const busy = await sampleBusyCores(2000);
    if (os.loadavg()[0] <= Number(a['max-load']) && busy < 0.5) return;
    await new Promise((r) => setTimeout(r, 5000));
  }
}

function run(v) {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [path.join(here, 'tfjs_bench.js'), '--net', a.net, '--backend', 'wasm', '--steps', a.steps, '--warmup', a.warmup, ...VARIANTS[v].args], { env: { ...process.env, ...VARIANTS[v].env } });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.on('close', () => resolve(JSON.parse(out.trim().split('\n').pop())));
  });
}

const res = Object.fromEntries(names.map((n) => [n, { train: [], infer: [], other: [] }]));
for (let r = 0; r < Number(a.rounds); r++) {
  for (const v of names) {
    await waitQuiet();
    const out = await run(v);
    const other = Math.max(out.train.cpu.otherCores, out.infer.batch1.cpu.otherCores);
    res[v].train.push(out.train.ms.median);
    res[v].infer.push(out.infer.batch1.ms.median);
    res[v].other.push(other);
    log(`${a.net} ${v} round ${r + 1}: train ${out.train.ms.median.toFixed(1)} ms, infer ${out.infer.batch1.ms.median.toFixed(1)} ms, others ${other.toFixed(2)} cores, loss ${out.train.lossLast}`);
  }
}
const base = summary(res[names[0]].train).median;
const baseI = summary(res[names[0]].infer).median;
for (const v of names) {
  const t = summary(res[v].train);
  const i = summary(res[v].infer);
  console.log(`${a.net} ${v.padEnd(15)} train ${t.median.toFixed(1)} ms (x${(base / t.median).toFixed(3)}; runs ${res[v].train.map((x) => x.toFixed(0)).join(' ')})  infer ${i.median.toFixed(1)} ms (x${(baseI / i.median).toFixed(3)}; runs ${res[v].infer.map((x) => x.toFixed(1)).join(' ')})  max others ${Math.max(...res[v].other).toFixed(2)}`);
}
