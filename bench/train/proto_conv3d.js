#!/usr/bin/env node
// Scratch A/B per kernel call: lazylabel's Conv3D / Conv3DBackpropInputV2 (src/train/wasmKernels.ts,
// a sum over filter depth of XNNPACK Conv2Ds) against the depth-folded prototype in proto_kernels.js
// (one XNNPACK Conv2D with K = 27*ci), on the shapes of net3d. Checks that both agree, interleaves the
// variants round-robin, reports medians.
//
//   node bench/train/proto_conv3d.js [--reps 7]
import { parseArgs } from 'node:util';
import os from 'node:os';
import { selectBackend } from '../../dist/train/backend.js';
import { register } from './proto_kernels.js';
import { summary } from './common.js';

const { values: a } = parseArgs({ options: { reps: { type: 'string', default: '7' } } });
const reps = Number(a.reps);
const { tf } = await selectBackend('wasm');
const current = { Conv3D: tf.getKernel('Conv3D', 'wasm').kernelFunc, Conv3DBackpropInputV2: tf.getKernel('Conv3DBackpropInputV2', 'wasm').kernelFunc };
register(tf, 'conv3d');
const proto = { Conv3D: tf.getKernel('Conv3D', 'wasm').kernelFunc, Conv3DBackpropInputV2: tf.getKernel('Conv3DBackpropInputV2', 'wasm').kernelFunc };
const be = tf.backend();

// Forward convs of net3d ([x shape], co) in training (batch 2); backprop-input for all but the first.
const CASES = [
  [[2, 16, 64, 64, 1], 16], [[2, 16, 64, 64, 16], 16], [[2, 16, 32, 32, 16], 32], [[2, 16, 32, 32, 32], 32],
  [[2, 8, 16, 16, 32], 64], [[2, 8, 16, 16, 64], 64], [[2, 16, 32, 32, 96], 32], [[2, 16, 64, 64, 48], 16],
];

const rows = [];
const tot = { fwdCur: 0, fwdProto: 0, bwdCur: 0, bwdProto: 0 };
for (const [xs, co] of CASES) {
  const ci = xs[4];
  const x = tf.randomNormal(xs);
  const w = tf.randomNormal([3, 3, 3, ci, co], 0, 0.1);
  const dy = tf.randomNormal([...xs.slice(0, 4), co]);
  const fwd = (k) => k({ inputs: { x, filter: w }, backend: be, attrs: { strides: [1, 1, 1], pad: 'same', dataFormat: 'NDHWC', dilations: [1, 1, 1] } });
  const bwd = (k) => k({ inputs: { dy, filter: w }, backend: be, attrs: { strides: [1, 1, 1], pad: 'same', inputShape: xs } });
  const read = (t) => new Float32Array(be.readSync(t.dataId));
  let maxDiff = 0;
  for (const op of [fwd, bwd]) {
    const r1 = op(current[op === fwd ? 'Conv3D' : 'Conv3DBackpropInputV2']);
    const r2 = op(proto[op === fwd ? 'Conv3D' : 'Conv3DBackpropInputV2']);
    const v1 = read(r1);
    const v2 = read(r2);
    for (let i = 0; i < v1.length; i++) maxDiff = Math.max(maxDiff, Math.abs(v1[i] - v2[i]) / (1 + Math.abs(v1[i])));
    be.disposeData(r1.dataId);
    be.disposeData(r2.dataId);
  }
  const t = { fwdCur: [], fwdProto: [], bwdCur: [], bwdProto: [] };
  const time = (f) => {
    const t0 = performance.now();
    const r = f();
    const dt = performance.now() - t0;
    be.disposeData(r.dataId);
    return dt;
  };
  for (let i = 0; i < reps; i++) {
    t.fwdCur.push(time(() => fwd(current.Conv3D)));
    t.fwdProto.push(time(() => fwd(proto.Conv3D)));
    t.bwdCur.push(time(() => bwd(current.Conv3DBackpropInputV2)));
    t.bwdProto.push(time(() => bwd(proto.Conv3DBackpropInputV2)));
  }
  const med = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, Math.round(summary(v).median * 10) / 10]));
  for (const k of Object.keys(tot)) if (!(k.startsWith('bwd') && ci === 1)) tot[k] += med[k];
  const row = { x: xs, co, ...med, maxRelDiff: maxDiff, loadavg: os.loadavg()[0] };
  rows.push(row);
  console.log(JSON.stringify(row));
  tf.dispose([x, w, dy]);
}
console.log(JSON.stringify({ totalsMs: Object.fromEntries(Object.entries(tot).map(([k, v]) => [k, Math.round(v * 10) / 10])) }));
