#!/usr/bin/env node
// Scratch prototype: data-parallel training over a pool of worker threads, each with its own tfjs-wasm
// instance (tfjs-backend-wasm 4.22 runs single-threaded in Node, so this is the only way to use a
// second core). The batch is split into shards; every thread computes the lazyNll gradient of its
// shard; the main thread combines them exactly (weighted by each shard's loss normaliser N, so the
// result equals the full-batch gradient), applies Adam, and publishes the new weights through a
// SharedArrayBuffer. Inference: shards of a batch of patches run in parallel the same way.
//
//   node bench/train/proto_pool.js --net net2d --threads 2 [--steps 10] [--warmup 2] [--check]
//        [--kernels proto_kernels.js]
//
// --threads counts compute threads including the main one (1 = no workers, the baseline). --check
// compares the loss and the weights after one step with a plain single-thread minimize() step.
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { parseArgs } from 'node:util';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { selectBackend } from '../../dist/train/backend.js';
import { buildUNet } from '../../dist/train/models.js';
import { lazyNll } from '../../dist/train/loss.js';
import { NETS, unetConfig, makeBatch, summary, cpuSnapshot, cpuStats } from './common.js';

/** Loss normaliser of lazyNll ('voxels'): labelled voxels of labelled classes + V * sum(not present). */
function normaliser(labels, labelled, notPresent, vox, nLab) {
  let n = 0;
  for (let b = 0; b < labelled.length; b++) {
    for (let v = 0; v < vox; v++) {
      const y = labels[b * vox + v];
      if (y >= 0 && y < nLab && labelled[b][y]) n++;
    }
    for (let c = 0; c < nLab; c++) n += vox * notPresent[b][c];
  }
  return n === 0 ? 1 : n;
}

/** A shard of the synthetic batch: examples [b0, b1). */
function shard(net, data, b0, b1) {
  const vox = net.patch.reduce((p, q) => p * q, 1);
  return {
    raw: data.raw.subarray(b0 * vox * net.inChannels, b1 * vox * net.inChannels),
    labels: data.labels.subarray(b0 * vox, b1 * vox),
    maskClassLabeled: data.maskClassLabeled.slice(b0, b1),
    maskClassNotPresent: data.maskClassNotPresent.slice(b0, b1),
    batch: b1 - b0,
    vox,
  };
}

/** Per-thread state: model, shard tensors, flat weight/gradient views. */
async function setup(net, sh, weightsSab, kernels) {
  const { tf } = await selectBackend('wasm');
  if (kernels) (await import(new URL(kernels, import.meta.url).href)).register(tf);
  const model = buildUNet(unetConfig(net));
  const vars = model.trainableWeights.map((w) => w.val);
  const sizes = vars.map((v) => v.size);
  const offsets = sizes.map((_, i) => sizes.slice(0, i).reduce((p, q) => p + q, 0));
  const x = tf.tensor(sh.raw, [sh.batch, ...net.patch, net.inChannels], 'float32');
  const y = tf.tensor(sh.labels, [sh.batch, ...net.patch], 'int32');
  const opts = { normalisation: 'voxels', maskClassLabeled: sh.maskClassLabeled, maskClassNotPresent: sh.maskClassNotPresent };
  const weights = weightsSab ? new Float32Array(weightsSab) : null;
  return {
    tf, model, vars, offsets, x, y, opts,
    /** Copies the published weights into this thread's variables. */
    loadWeights() {
      vars.forEach((v, i) => v.assign(tf.tensor(weights.subarray(offsets[i], offsets[i] + v.size), v.shape)));
    },
    /** Gradient of this shard's lazyNll into `out` (flat); returns the shard loss. */
    grads(out) {
      const { value, grads } = tf.variableGrads(() => lazyNll(model.apply(x, { training: true }), y, opts), vars);
      vars.forEach((v, i) => out.set(grads[v.name].dataSync(), offsets[i]));
      const loss = value.dataSync()[0];
      tf.dispose([value, ...Object.values(grads)]);
      return loss;
    },
    infer() {
      const o = model.predict(x);
      o.dataSync();
      o.dispose();
    },
  };
}

if (!isMainThread) {
  const { net, sh, weightsSab, gradSab, kernels } = workerData;
  const st = await setup(net, sh, weightsSab, kernels);
  const grad = new Float32Array(gradSab);
  parentPort.on('message', (m) => {
    if (m.op === 'grad') {
      st.loadWeights();
      const loss = st.grads(grad);
      parentPort.postMessage({ loss });
    } else if (m.op === 'infer') {
      st.infer();
      parentPort.postMessage({});
    } else if (m.op === 'exit') {
      process.exit(0);
    }
  });
  parentPort.postMessage({ ready: true });
} else {
  const { values: a } = parseArgs({
    options: {
      net: { type: 'string', default: 'net2d' },
      threads: { type: 'string', default: '2' },
      steps: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '2' },
      check: { type: 'boolean', default: false },
      kernels: { type: 'string' },
    },
  });
  const net = NETS[a.net];
  const T = Number(a.threads);
  if (net.batch % T !== 0) throw new Error(`batch ${net.batch} does not split into ${T} shards`);
  const per = net.batch / T;
  const data = makeBatch(net, net.batch);
  const shards = Array.from({ length: T }, (_, i) => shard(net, data, i * per, (i + 1) * per));
  const N = shards.map((s) => normaliser(s.labels, s.maskClassLabeled, s.maskClassNotPresent, s.vox, net.nLab));
  const Ntot = N.reduce((p, q) => p + q, 0);

  // Main thread = shard 0; it owns the optimizer and the published weights.
  await selectBackend('wasm');
  const probe = buildUNet(unetConfig(net));
  const nParams = probe.countParams();
  probe.dispose();
  const weightsSab = new SharedArrayBuffer(nParams * 4);
  const gradSabs = shards.map(() => new SharedArrayBuffer(nParams * 4));
  const st = await setup(net, shards[0], weightsSab, a.kernels);
  const { tf } = st;
  const weights = new Float32Array(weightsSab);
  const publish = () => st.vars.forEach((v, i) => weights.set(v.dataSync(), st.offsets[i]));
  publish();
  const workers = [];
  for (let w = 1; w < T; w++) {
    const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { net, sh: shards[w], weightsSab, gradSab: gradSabs[w], kernels: a.kernels } });
    await new Promise((res) => worker.once('message', res));
    workers.push(worker);
  }
  const ask = (worker, msg) => new Promise((res) => { worker.once('message', res); worker.postMessage(msg); });
  const optimizer = tf.train.adam(1e-3);
  const grads = gradSabs.map((s) => new Float32Array(s));

  async function step() {
    const pending = workers.map((w) => ask(w, { op: 'grad' })); // workers start now, in parallel with us
    const l0 = st.grads(grads[0]);
    const losses = [l0, ...(await Promise.all(pending)).map((r) => r.loss)];
    // Full-batch gradient = sum_w N_w g_w / N (each g_w is the gradient of its shard's normalised loss).
    const named = {};
    st.vars.forEach((v, i) => {
      const acc = new Float32Array(v.size);
      for (let w = 0; w < T; w++) {
        const g = grads[w].subarray(st.offsets[i], st.offsets[i] + v.size);
        const f = N[w] / Ntot;
        for (let j = 0; j < acc.length; j++) acc[j] += f * g[j];
      }
      named[v.name] = tf.tensor(acc, v.shape);
    });
    optimizer.applyGradients(named);
    tf.dispose(Object.values(named));
    publish();
    return losses.reduce((p, l, w) => p + (l * N[w]) / Ntot, 0);
  }

  const out = { impl: 'tfjs', backend: 'wasm', variant: `pool of ${T} threads (data parallel, shards of ${per})${a.kernels ? ` + ${a.kernels}` : ''}`, params: nParams, net: a.net, threads: T, shardBatch: per, cores: os.cpus().length };
  if (a.check) {
    // Reference: one plain minimize() step on the full batch, same initial weights.
    const ref = buildUNet(unetConfig(net));
    ref.trainableWeights.forEach((w, i) => w.val.assign(st.vars[i].clone()));
    const x = tf.tensor(data.raw, [net.batch, ...net.patch, net.inChannels]);
    const y = tf.tensor(data.labels, [net.batch, ...net.patch], 'int32');
    const opt = tf.train.adam(1e-3);
    const refLoss = opt.minimize(() => lazyNll(ref.apply(x, { training: true }), y, { normalisation: 'voxels', maskClassLabeled: data.maskClassLabeled, maskClassNotPresent: data.maskClassNotPresent }), true).dataSync()[0];
    const loss = await step();
    let maxDiff = 0;
    ref.trainableWeights.forEach((w, i) => {
      const r = w.val.dataSync();
      const p = st.vars[i].dataSync();
      for (let j = 0; j < r.length; j++) maxDiff = Math.max(maxDiff, Math.abs(r[j] - p[j]));
    });
    Object.assign(out, { check: { refLoss, poolLoss: loss, maxAbsWeightDiffAfterStep: maxDiff } });
  }
  const steps = Number(a.steps);
  for (let i = 0; i < Number(a.warmup); i++) await step();
  const t = [];
  let s0 = cpuSnapshot();
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    await step();
    t.push(performance.now() - t0);
  }
  out.train = { ms: summary(t), cpu: cpuStats(s0, cpuSnapshot()) };
  // Inference throughput: each thread runs the forward pass of its shard (per patches).
  for (let i = 0; i < 2; i++) await Promise.all([...workers.map((w) => ask(w, { op: 'infer' })), Promise.resolve(st.infer())]);
  const ti = [];
  s0 = cpuSnapshot();
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    const pending = workers.map((w) => ask(w, { op: 'infer' }));
    st.infer();
    await Promise.all(pending);
    ti.push(performance.now() - t0);
  }
  // Throughput of a batch of patches (no batch-1 latency gain: one patch is not split).
  out.infer = { trainBatch: { ms: summary(ti), cpu: cpuStats(s0, cpuSnapshot()) } };
  out.maxRssMB = process.resourceUsage().maxRSS / 1024; // whole process, workers included
  console.log(JSON.stringify(out));
  for (const w of workers) w.postMessage({ op: 'exit' });
}
