#!/usr/bin/env node
// Compute ceiling of one tfjs backend on this machine: GFLOP/s of a large matrix product and of one
// 3x3 convolution (both XNNPACK on wasm), to compare with the same ops in PyTorch
// (torch_ref.py --ceiling). This bounds what any kernel-level tuning of the trainer can achieve.
//
//   node bench/train/ceiling.js [--backend wasm] [--reps 10]
import { parseArgs } from 'node:util';
import { selectBackend } from '../../dist/train/backend.js';
import { summary } from './common.js';

const { values: a } = parseArgs({ options: { backend: { type: 'string', default: 'wasm' }, reps: { type: 'string', default: '10' } } });
const reps = Number(a.reps);
const { tf, name } = await selectBackend(a.backend);

/** The ops of the ceiling test; flops = 2 * multiply-adds. Shapes shared with torch_ref.py CEILING_OPS. */
export const CEILING_OPS = [
  { op: 'matmul', m: 2048, k: 1024, n: 1024 },
  { op: 'conv2d', n: 1, h: 64, w: 64, ci: 64, co: 64, f: 3 },
  { op: 'conv2d', n: 4, h: 128, w: 128, ci: 16, co: 16, f: 3 },
];

// (Not tf.tidy(() => t.dataSync()): tidy then walks the returned typed array element by element.)
function sync(t) {
  t.dataSync();
  t.dispose();
}

function flops(o) {
  return o.op === 'matmul' ? 2 * o.m * o.k * o.n : 2 * o.n * o.h * o.w * o.ci * o.co * o.f * o.f;
}

const out = { impl: 'tfjs', backend: name, ops: [] };
for (const o of CEILING_OPS) {
  let run;
  if (o.op === 'matmul') {
    const x = tf.randomNormal([o.m, o.k]);
    const w = tf.randomNormal([o.k, o.n]);
    run = () => sync(tf.matMul(x, w));
  } else {
    const x = tf.randomNormal([o.n, o.h, o.w, o.ci]);
    const w = tf.randomNormal([o.f, o.f, o.ci, o.co]);
    run = () => sync(tf.conv2d(x, w, 1, 'same'));
  }
  for (let i = 0; i < 3; i++) run();
  const t = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    run();
    t.push(performance.now() - t0);
  }
  const s = summary(t);
  out.ops.push({ ...o, ms: s.median, gflops: Math.round((flops(o) / (s.median / 1e3) / 1e9) * 10) / 10 });
}
console.log(JSON.stringify(out));
