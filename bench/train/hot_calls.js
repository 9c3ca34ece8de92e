#!/usr/bin/env node
// The slowest kernel calls of one training step (tf.profile, after 2 warm-up steps), with their input
// shapes: where a per-kernel total (tfjs_bench.js --profile) does not say which call is slow.
//   node bench/train/hot_calls.js --net net2d [--kernel Sum] [--top 15]
import { parseArgs } from 'node:util';
import { selectBackend } from '../../dist/train/backend.js';
import { buildUNet } from '../../dist/train/models.js';
import { lazyNll } from '../../dist/train/loss.js';
import { NETS, unetConfig, makeBatch } from './common.js';

const { values: a } = parseArgs({ options: { net: { type: 'string', default: 'net2d' }, kernel: { type: 'string' }, top: { type: 'string', default: '15' } } });
const net = NETS[a.net];
const { tf, detail } = await selectBackend('wasm');
const model = buildUNet(unetConfig(net));
const opt = tf.train.adam(1e-3);
const data = makeBatch(net, net.batch);
const x = tf.tensor(data.raw, [net.batch, ...net.patch, net.inChannels], 'float32');
const y = tf.tensor(data.labels, [net.batch, ...net.patch], 'int32');
const opts = { normalisation: 'voxels', maskClassLabeled: data.maskClassLabeled, maskClassNotPresent: data.maskClassNotPresent };
const step = () => tf.dispose(opt.minimize(() => lazyNll(model.apply(x, { training: true }), y, opts), true));
step();
step();
const p = await tf.profile(step);
const calls = p.kernels.filter((k) => !a.kernel || k.name === a.kernel).sort((x, y) => y.kernelTimeMs - x.kernelTimeMs);
console.log(`${a.net} on ${detail}`);
for (const k of calls.slice(0, Number(a.top))) console.log(`${k.name.padEnd(24)} ${k.kernelTimeMs.toFixed(2).padStart(7)} ms  in ${JSON.stringify(k.inputShapes)} out ${JSON.stringify(k.outputShapes)}`);
