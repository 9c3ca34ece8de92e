#!/usr/bin/env node
// Scratch A/B: does a smaller im2col chunk (setIm2colChunkFloats in src/train/wasmKernels.ts; default
// 1<<24 floats = 64 MiB) speed up the filter-gradient kernels? A chunk that fits in L2 keeps the
// im2col matrix and the packed dy in cache between the fill and the XNNPACK product. Variants are
// interleaved round-robin so a changing machine load hits all of them alike.
//
//   node bench/train/proto_chunk.js [--reps 7] [--chunks 16777216,1048576,262144,65536]
import { parseArgs } from 'node:util';
import os from 'node:os';
import { selectBackend } from '../../dist/train/backend.js';
import { setIm2colChunkFloats } from '../../dist/train/wasmKernels.js';
import { summary } from './common.js';

const { values: a } = parseArgs({ options: { reps: { type: 'string', default: '7' }, chunks: { type: 'string', default: '16777216,4194304,1048576,262144,65536' } } });
const reps = Number(a.reps);
const chunks = a.chunks.split(',').map(Number);
const { tf } = await selectBackend('wasm');

// [x shape, dy channels] of the filter gradients of net2d and net3d (bench/nets.md).
const CASES = [
  { x: [4, 128, 128, 48], co: 16, f: [3, 3] },
  { x: [4, 128, 128, 16], co: 16, f: [3, 3] },
  { x: [4, 64, 64, 96], co: 32, f: [3, 3] },
  { x: [4, 32, 32, 192], co: 64, f: [3, 3] },
  { x: [2, 16, 64, 64, 48], co: 16, f: [3, 3, 3] },
  { x: [2, 16, 32, 32, 96], co: 32, f: [3, 3, 3] },
];

const out = [];
for (const c of CASES) {
  const threeD = c.x.length === 5;
  const x = tf.randomNormal(c.x);
  const dy = tf.randomNormal([...c.x.slice(0, -1), c.co]);
  const filterShape = [...c.f, c.x[c.x.length - 1], c.co];
  const run = () => {
    const r = threeD
      ? tf.engine().runKernel('Conv3DBackpropFilterV2', { x, dy }, { strides: [1, 1, 1], pad: 'same', filterShape })
      : tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { strides: [1, 1], pad: 'same', dataFormat: 'NHWC', filterShape });
    r.dataSync();
    return r;
  };
  const ref = run(); // reference result with the default chunk
  const refVals = ref.dataSync().slice();
  ref.dispose();
  const times = new Map(chunks.map((k) => [k, []]));
  let maxRel = 0;
  for (let i = 0; i < reps + 1; i++) {
    for (const k of chunks) {
      setIm2colChunkFloats(k);
      const t0 = performance.now();
      const r = run();
      const dt = performance.now() - t0;
      if (i > 0) times.get(k).push(dt); // first round = warm-up
      const v = r.dataSync();
      for (let j = 0; j < v.length; j++) maxRel = Math.max(maxRel, Math.abs(v[j] - refVals[j]) / (Math.abs(refVals[j]) + 1));
      r.dispose();
    }
  }
  setIm2colChunkFloats(1 << 24);
  const row = { x: c.x, co: c.co, ms: Object.fromEntries(chunks.map((k) => [k, Math.round(summary(times.get(k)).median * 10) / 10])), maxRelDiff: maxRel, loadavg: os.loadavg()[0] };
  out.push(row);
  console.log(JSON.stringify(row));
  x.dispose();
  dy.dispose();
}
