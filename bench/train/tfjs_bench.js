#!/usr/bin/env node
// One tfjs measurement (run by bench/train/run.js in a fresh process per net and backend, so backends
// and heaps do not influence each other): ms per training step (forward + lazyNll + backward + Adam,
// exactly as src/train/loop.ts does it) and per forward pass, or with --profile the per-kernel times.
//
//   node bench/train/tfjs_bench.js --net net2d --backend wasm [--steps 20] [--warmup 3]
//        [--max-step-ms 10000] [--profile 3] [--net-json '{...}'] [--kernels MODULE.js] [--threads N]
//   --threads N (N >= 2): the trainer's own data-parallel pool (src/train/pool.ts, what `lazylabel train
//   --threads N` runs): training steps and the batched forward pass are split over N threads; the
//   batch-1 forward pass stays on the main thread (as `predict --batch 1`).
//   LAZYLABEL_WASM_THREADS=2 node bench/train/tfjs_bench.js ...   (prototype: multi-threaded wasm)
//
// Prints one JSON object on the last line of stdout.
import { parseArgs } from 'node:util';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { selectBackend } from '../../dist/train/backend.js';
import { buildUNet } from '../../dist/train/models.js';
import { lazyNll } from '../../dist/train/loss.js';
import { TrainPool } from '../../dist/train/pool.js';
import { NETS, unetConfig, makeBatch, cpuSnapshot, cpuStats, summary } from './common.js';

const here = path.dirname(fileURLToPath(import.meta.url));

const { values: a } = parseArgs({
  options: {
    net: { type: 'string', default: 'net2d' },
    'net-json': { type: 'string' },
    backend: { type: 'string', default: 'wasm' },
    steps: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '3' },
    'max-step-ms': { type: 'string', default: 'Infinity' },
    profile: { type: 'string', default: '0' },
    'no-infer': { type: 'boolean', default: false },
    kernels: { type: 'string' },
    threads: { type: 'string', default: '1' },
  },
});
const net = a['net-json'] ? { ...NETS[a.net], ...JSON.parse(a['net-json']) } : NETS[a.net];
if (!net) throw new Error(`unknown net ${a.net}`);
const steps = Number(a.steps);
const warmup = Number(a.warmup);
const maxStepMs = Number(a['max-step-ms']);
const profileSteps = Number(a.profile);

// Prototype (proto_threads.js): tfjs-backend-wasm's multi-threaded build, LAZYLABEL_WASM_THREADS=n.
const wasmThreads = Number(process.env.LAZYLABEL_WASM_THREADS ?? 0);
const threadsProto = wasmThreads > 0 && a.backend === 'wasm' ? await import('./proto_threads.js') : null;
if (threadsProto) threadsProto.enableWasmThreads(wasmThreads);
const sel = await selectBackend(a.backend);
const { tf } = sel;
if (threadsProto) threadsProto.restoreCpus();
const xnnThreads = sel.name === 'wasm' ? tf.backend().wasm.tfjs.getThreadsCount() : null;
let kernelNote = null;
if (a.kernels) {
  // Prototype kernels (bench/train/proto_*.js): registered on top of the backend's, for A/B runs.
  const mod = await import(pathToFileURL(path.resolve(here, a.kernels)).href);
  kernelNote = mod.register(tf);
}
const model = buildUNet(unetConfig(net));
const params = model.countParams();
const data = makeBatch(net, net.batch);
const x = tf.tensor(data.raw, [net.batch, ...net.patch, net.inChannels], 'float32');
const y = tf.tensor(data.labels, [net.batch, ...net.patch], 'int32');
const lossOpts = { normalisation: 'voxels', maskClassLabeled: data.maskClassLabeled, maskClassNotPresent: data.maskClassNotPresent };
const optimizer = tf.train.adam(1e-3);
const threads = Number(a.threads);
if (!Number.isInteger(threads) || threads < 1) throw new Error(`--threads: expected a count >= 1, got ${a.threads}`);
if (threads > 1 && a.profile !== '0') throw new Error('--profile measures one thread: leave out --threads');
const pool =
  threads > 1
    ? await TrainPool.start({
        tf,
        backend: sel.name,
        model,
        unet: unetConfig(net),
        patch: net.patch,
        nChannels: net.inChannels,
        loss: { normalisation: 'voxels', classWeights: null, lazyLabels: true },
        threads,
      })
    : null;
const batch = { ...data, patchSize: net.patch, nChannels: net.inChannels };

/** One training step exactly as src/train/loop.ts does it (with the pool: TrainPool.step); returns the loss (reading it also syncs). */
async function trainStep() {
  if (pool) return pool.step(batch, optimizer);
  const loss = optimizer.minimize(() => lazyNll(model.apply(x, { training: true }), y, lossOpts), true);
  const v = loss.dataSync()[0];
  loss.dispose();
  return v;
}

async function inferStep(inp) {
  if (pool && inp === x) {
    await pool.predict(data.raw, net.batch);
    return;
  }
  const out = model.predict(inp);
  out.dataSync();
  out.dispose();
}

const result = {
  impl: 'tfjs',
  backend: sel.name,
  backendDetail: sel.detail,
  tfjs: tf.version.tfjs,
  node: process.version,
  params,
  netSpec: net,
  kernels: kernelNote,
  xnnpackThreads: xnnThreads,
  threads,
};

const x1 = tf.slice(x, 0, 1);

if (profileSteps > 0) {
  // tf.profile times every kernel the engine runs (our custom wasm kernels count as one each, including
  // the XNNPACK calls they make). CHECK_COMPUTATION_FOR_ERRORS would read back every output: keep it off.
  tf.env().set('CHECK_COMPUTATION_FOR_ERRORS', false);
  for (let i = 0; i < warmup; i++) await trainStep();
  for (let i = 0; i < warmup; i++) await inferStep(x1);
  const prof = async (f, n) => {
    const byName = new Map();
    const byShape = new Map();
    let wall = 0;
    let kernelTotal = 0;
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      const p = await tf.profile(f);
      wall += performance.now() - t0;
      for (const k of p.kernels) {
        const ms = k.kernelTimeMs;
        // Entries that are not registered kernels are op scopes (e.g. fusedConv2d__op, a custom
        // gradient wrapper) that contain kernels listed separately: keep them out of the total.
        const scope = !tf.getKernel(k.name, tf.getBackend());
        if (!scope) kernelTotal += ms;
        const e = byName.get(k.name) ?? { ms: 0, calls: 0, scope };
        e.ms += ms;
        e.calls += 1;
        byName.set(k.name, e);
        const key = `${k.name} ${JSON.stringify(k.inputShapes)}`;
        if (scope) continue;
        const s = byShape.get(key) ?? { name: k.name, inputShapes: k.inputShapes, outputShapes: k.outputShapes, ms: 0, calls: 0 };
        s.ms += ms;
        s.calls += 1;
        byShape.set(key, s);
      }
    }
    const per = (v) => Math.round((v / n) * 100) / 100;
    const sortDesc = (m) => [...m.values()].sort((p, q) => q.ms - p.ms);
    return {
      runs: n,
      // Wall time of a profiled run is inflated by the profiler's bookkeeping; compare shares, not totals.
      wallMsPerRun: per(wall),
      kernelMsPerRun: per(kernelTotal),
      byKernel: [...byName.entries()].map(([name, e]) => ({ name, msPerRun: per(e.ms), callsPerRun: e.calls / n, share: e.scope ? null : Math.round((e.ms / kernelTotal) * 1000) / 1000, ...(e.scope ? { scope: true } : {}) })).sort((p, q) => q.msPerRun - p.msPerRun),
      topCalls: sortDesc(byShape).slice(0, 25).map((s) => ({ name: s.name, inputShapes: s.inputShapes, outputShapes: s.outputShapes, msPerRun: per(s.ms), callsPerRun: s.calls / n })),
    };
  };
  result.profile = {
    train: await prof(() => { void trainStep(); }, profileSteps),
    inferBatch1: await prof(() => { void inferStep(x1); }, profileSteps),
  };
  console.log(JSON.stringify(result));
  process.exit(0);
}

// Training steps.
const losses = [];
const first = performance.now();
losses.push(await trainStep());
const firstMs = performance.now() - first;
let nSteps = steps;
let nWarm = warmup - 1;
if (firstMs > maxStepMs) {
  // Too slow for the full protocol: report the first (cold) step only.
  result.train = { skipped: `first step took ${(firstMs / 1e3).toFixed(1)} s (> ${maxStepMs / 1e3} s cap); not measured further`, firstStepMs: firstMs };
  console.log(JSON.stringify(result));
  process.exit(0);
}
for (let i = 0; i < nWarm; i++) losses.push(await trainStep());
const tensorsBefore = tf.memory().numTensors;
const times = [];
const cpuTimes = [];
const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e3;
};
let s0 = cpuSnapshot();
for (let i = 0; i < nSteps; i++) {
  const c0 = cpuMs();
  const t0 = performance.now();
  losses.push(await trainStep());
  times.push(performance.now() - t0);
  cpuTimes.push(cpuMs() - c0);
}
result.train = {
  ms: summary(times),
  // CPU time of this process per step: for single-threaded wasm much less sensitive to other load than wall time.
  cpuMs: summary(cpuTimes),
  cpu: cpuStats(s0, cpuSnapshot()),
  firstStepMs: firstMs,
  lossFirst: losses[0],
  lossLast: losses[losses.length - 1],
  tensorLeakPerStep: (tf.memory().numTensors - tensorsBefore) / nSteps,
};

if (!a['no-infer']) {
  result.infer = {};
  for (const [name, inp] of [['batch1', x1], ['trainBatch', x]]) {
    for (let i = 0; i < warmup; i++) await inferStep(inp);
    const t = [];
    const c = [];
    s0 = cpuSnapshot();
    for (let i = 0; i < nSteps; i++) {
      const c0 = cpuMs();
      const t0 = performance.now();
      await inferStep(inp);
      t.push(performance.now() - t0);
      c.push(cpuMs() - c0);
    }
    result.infer[name] = { ms: summary(t), cpuMs: summary(c), cpu: cpuStats(s0, cpuSnapshot()) };
  }
}
await pool?.close();
result.maxRssMB = process.resourceUsage().maxRSS / 1024;
console.log(JSON.stringify(result));
process.exit(0);
