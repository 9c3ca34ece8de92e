/** The data-parallel training pool: one pooled step equals one single-threaded step, pooled runs resume exactly, workers fail loudly and always shut down. (Workers run the compiled dist/: build first.) */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateDemoData, type DemoData } from '../src/demo/demo.js';
import { selectBackend } from '../src/train/backend.js';
import { loadModel } from '../src/train/checkpoint.js';
import { train } from '../src/train/loop.js';
import { lazyNll } from '../src/train/loss.js';
import { buildUNet, type UNetConfig } from '../src/train/models.js';
import { AUTO_MIN_MACS_PER_THREAD, chooseThreads, replicaOf, shardLossOptions, splitBatch, TrainPool, unetForwardMacs, type LossSettings } from '../src/train/pool.js';
import type { Batch } from '../src/train/sampler.js';
import { BIN, schemaErrors, tmpDir } from './helpers.js';

// Tiny nets (seed != 0: tfjs treats a seed of 0 as "no seed"), so every pool start and step is fast.
const NET2D: UNetConfig = { dims: 2, nLab: 3, inChannels: 1, depth: 2, baseFilters: 4, seed: 5 };
const NET3D: UNetConfig = { dims: 3, nLab: 3, inChannels: 1, depth: 2, baseFilters: 4, anisotropicLevels: 1, seed: 5 };

/** A deterministic batch; odd examples are lazy (class 2 unlabelled, flagged not present when `flags`). */
function makeBatch(patch: number[], examples: number, flags: boolean): Batch {
  const voxels = patch.reduce((a, b) => a * b, 1);
  const raw = Float32Array.from({ length: examples * voxels }, (_, i) => Math.sin(i * 0.37) + 0.3 * Math.cos(i * 0.011));
  const labels = Int32Array.from({ length: examples * voxels }, (_, i) => {
    const lazy = Math.floor(i / voxels) % 2 === 1;
    return ((i * 7919) % 7) % (lazy ? 3 : 4) - 1; // -1 = unlabelled; lazy examples only use classes 0, 1
  });
  const lazy = (b: number): boolean => b % 2 === 1;
  return {
    raw,
    labels,
    maskClassLabeled: Array.from({ length: examples }, (_, b) => (lazy(b) ? [1, 1, 0] : [1, 1, 1])),
    maskClassNotPresent: Array.from({ length: examples }, (_, b) => (lazy(b) && flags ? [0, 0, 1] : [0, 0, 0])),
    cubeIndices: [],
    starts: [],
    augmentations: [],
    redraws: 0,
    overThreshold: 0,
    patchSize: patch,
    nChannels: 1,
  };
}

interface StepComparison {
  refLoss: number;
  poolLoss: number;
  relLossDiff: number;
  maxWeightDiff: number;
  maxWeightMove: number;
}

/** One Adam step single-threaded (optimizer.minimize on the whole batch, as the loop does) and one with a 2-thread pool, from the same weights. */
async function compareOneStep(unet: UNetConfig, patch: number[], examples: number, loss: LossSettings, flags: boolean): Promise<StepComparison> {
  const batch = makeBatch(patch, examples, flags);
  const ref = buildUNet(unet);
  const pooled = buildUNet(unet);
  const r = replicaOf(tf, ref);
  const p = replicaOf(tf, pooled);
  const before = r.vars.map((v) => v.dataSync().slice());
  p.vars.forEach((v, i) => v.assign(tf.tensor(before[i]!, v.shape)));

  const x = tf.tensor(batch.raw, [examples, ...patch, 1]);
  const y = tf.tensor(batch.labels, [examples, ...patch], 'int32');
  const refLossT = tf.train.adam(1e-3).minimize(() => lazyNll(ref.apply(x, { training: true }) as tf.Tensor, y, shardLossOptions(loss, batch)), true)!;
  const refLoss = refLossT.dataSync()[0]!;
  tf.dispose([x, y, refLossT]);

  const pool = await TrainPool.start({ tf, backend: 'wasm', model: pooled, unet, patch, nChannels: 1, loss, threads: 2 });
  let poolLoss: number;
  try {
    poolLoss = await pool.step(batch, tf.train.adam(1e-3));
  } finally {
    await pool.close();
  }
  let maxWeightDiff = 0;
  let maxWeightMove = 0;
  r.vars.forEach((v, i) => {
    const a = v.dataSync();
    const b = p.vars[i]!.dataSync();
    for (let j = 0; j < a.length; j++) {
      maxWeightDiff = Math.max(maxWeightDiff, Math.abs(a[j]! - b[j]!));
      maxWeightMove = Math.max(maxWeightMove, Math.abs(a[j]! - before[i]![j]!));
    }
  });
  ref.dispose();
  pooled.dispose();
  return { refLoss, poolLoss, relLossDiff: Math.abs(poolLoss - refLoss) / Math.abs(refLoss), maxWeightDiff, maxWeightMove };
}

beforeAll(async () => {
  await selectBackend('wasm');
});

describe('splitBatch and chooseThreads', () => {
  it('splits into contiguous shards differing by at most one example, the smaller ones first', () => {
    const b = makeBatch([4, 4], 5, true);
    const shards = splitBatch(b, 2);
    expect(shards.map((s) => s.examples)).toEqual([2, 3]);
    expect(Array.from(shards[1]!.labels)).toEqual(Array.from(b.labels.subarray(2 * 16)));
    expect(shards[1]!.maskClassNotPresent).toEqual(b.maskClassNotPresent.slice(2));
    expect(() => splitBatch(b, 6)).toThrow(/cannot split a batch of 5 into 6/);
  });

  it('auto: min(cores, batch), 1 for small steps and for tensorflow; explicit counts capped at the batch', () => {
    const big: UNetConfig = { ...NET3D, baseFilters: 16 };
    const patch = [16, 64, 64];
    expect(unetForwardMacs(big, patch)).toBeGreaterThan(2 * AUTO_MIN_MACS_PER_THREAD);
    expect(chooseThreads('auto', 'wasm', 2, big, patch, 16).threads).toBe(2);
    expect(chooseThreads('auto', 'wasm', 4, big, patch, 2).threads).toBe(2);
    expect(chooseThreads('auto', 'cpu', 4, big, patch, 1).threads).toBe(1);
    expect(chooseThreads('auto', 'tensorflow', 4, big, patch, 16).threads).toBe(1);
    expect(chooseThreads(4, 'tensorflow', 4, big, patch, 16)).toMatchObject({ threads: 1, why: expect.stringMatching(/multi-threaded natively/) });
    const tiny = chooseThreads('auto', 'wasm', 2, NET3D, [4, 16, 16], 16);
    expect(tiny).toMatchObject({ threads: 1, why: expect.stringMatching(/too small/) });
    expect(chooseThreads(2, 'wasm', 2, NET3D, [4, 16, 16], 16).threads).toBe(2); // explicit wins
    expect(chooseThreads(3, 'wasm', 2, NET3D, [4, 16, 16], 16)).toMatchObject({ threads: 2, why: expect.stringMatching(/capped/) });
  });
});

describe('one pooled step equals one single-threaded step', () => {
  const results: Record<string, StepComparison> = {};
  const cases: [string, UNetConfig, number[], number][] = [
    ['2D, batch 3 (shards of 1 and 2)', NET2D, [16, 16], 3],
    ['3D, batch 2', NET3D, [4, 8, 8], 2],
  ];
  for (const [name, unet, patch, examples] of cases) {
    for (const normalisation of ['voxels', 'flags'] as const) {
      for (const flags of [true, false]) {
        const label = `${name}, ${normalisation}, ${flags ? 'with' : 'without'} not-present flags`;
        it(label, async () => {
          const c = await compareOneStep(unet, patch, examples, { normalisation, classWeights: null, lazyLabels: true }, flags);
          results[label] = c;
          expect(c.relLossDiff).toBeLessThan(1e-5);
          // Adam's first step moves every weight by ~lr = 1e-3; float32 summation order changes it by far less
          expect(c.maxWeightMove).toBeGreaterThan(5e-4);
          expect(c.maxWeightDiff).toBeLessThan(2e-5);
        });
      }
    }
  }

  it('with label propagation (the normaliser comes from each shard\'s predictions) and class weights', async () => {
    const c = await compareOneStep(NET2D, [16, 16], 2, { normalisation: 'voxels', classWeights: [1, 2, 0.5], lazyLabels: true, labelPropThresh: 0.3 }, true);
    results['2D, label propagation 0.3, class weights'] = c;
    expect(c.relLossDiff).toBeLessThan(1e-5);
    expect(c.maxWeightDiff).toBeLessThan(2e-5);
  });

  it('without lazy-label masks (manifest lazy_labels off)', async () => {
    const c = await compareOneStep(NET3D, [4, 8, 8], 2, { normalisation: 'voxels', classWeights: null, lazyLabels: false }, true);
    results['3D, no masks'] = c;
    expect(c.relLossDiff).toBeLessThan(1e-5);
    expect(c.maxWeightDiff).toBeLessThan(2e-5);
    // the numbers behind the tolerances, for the record
    console.log(Object.entries(results).map(([k, v]) => `${k}: loss ${v.refLoss.toFixed(6)} vs ${v.poolLoss.toFixed(6)} (rel ${v.relLossDiff.toExponential(1)}), max |dw| ${v.maxWeightDiff.toExponential(1)} (step ${v.maxWeightMove.toExponential(1)})`).join('\n'));
  });
});

describe('pooled training runs', () => {
  let demo: DemoData;
  const base = { patch: [4, 16, 16], batch: 2, depth: 2, baseFilters: 4, anisotropicLevels: 1, backend: 'wasm' as const, seed: 3, lr: 3e-3, threads: 2 };
  beforeAll(async () => {
    demo = await generateDemoData({ out: tmpDir('lazylabel-pool-'), cubeShape: [8, 32, 32], denseCubes: 2, seed: 2 });
  });

  it('resume from a checkpoint continues exactly as an uninterrupted pooled run', async () => {
    const straight = path.join(demo.out, 'pool_straight');
    const split = path.join(demo.out, 'pool_split');
    const full = await train({ ...base, manifest: demo.lazyManifest, out: straight, steps: 8, checkpointEvery: 4 });
    expect(full.threads).toBe(2);
    await train({ ...base, manifest: demo.lazyManifest, out: split, steps: 4, checkpointEvery: 4 });
    const second = await train({ ...base, manifest: demo.lazyManifest, out: split, steps: 8, checkpointEvery: 4, resume: true });
    expect(second).toMatchObject({ startStep: 4, step: 8, threads: 2 });
    expect(second.lastLoss).toBe(full.lastLoss);
    const a = await loadModel(tf, straight);
    const b = await loadModel(tf, split);
    const wa = a.model.getWeights().map((w) => Array.from(w.dataSync()));
    const wb = b.model.getWeights().map((w) => Array.from(w.dataSync()));
    expect(wb).toEqual(wa);
  });

  it('inference split over the pool (validation) equals model.predict, also after a step', async () => {
    const patch = [4, 8, 8];
    const model = buildUNet(NET3D);
    const pool = await TrainPool.start({ tf, backend: 'wasm', model, unet: NET3D, patch, nChannels: 1, loss: { normalisation: 'voxels', classWeights: null, lazyLabels: true }, threads: 2 });
    try {
      const batch = makeBatch(patch, 3, true);
      const direct = (): Float32Array => tf.tidy(() => (model.predict(tf.tensor(batch.raw, [3, ...patch, 1])) as tf.Tensor).dataSync() as Float32Array);
      const maxDiff = (a: Float32Array, b: Float32Array): number => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
      const before = await pool.predict(batch.raw, 3);
      expect(before).toHaveLength(3 * 256 * 3);
      expect(maxDiff(before, direct())).toBeLessThan(1e-6);
      await pool.step(makeBatch(patch, 2, true), tf.train.adam(1e-2)); // the workers must see the new weights
      const after = await pool.predict(batch.raw, 3);
      expect(maxDiff(after, before)).toBeGreaterThan(1e-4);
      expect(maxDiff(after, direct())).toBeLessThan(1e-6);
      expect(maxDiff(await pool.predict(batch.raw.subarray(0, 256), 1), direct().subarray(0, 256 * 3))).toBeLessThan(1e-6); // 1 patch: main thread only
    } finally {
      await pool.close();
    }
    model.dispose();
  });

  it('a failing step in a worker rejects with a clear error, and the pool still closes', async () => {
    const model = buildUNet(NET2D);
    const pool = await TrainPool.start({ tf, backend: 'wasm', model, unet: NET2D, patch: [8, 8], nChannels: 1, loss: { normalisation: 'voxels', classWeights: null, lazyLabels: true }, threads: 2 });
    const batch = makeBatch([8, 8], 2, true);
    batch.maskClassLabeled[1] = [1, 1]; // the worker's shard: a mask of the wrong width
    try {
      await expect(pool.step(batch, tf.train.adam(1e-3))).rejects.toThrow(/training worker 1 failed: .*maskClassLabeled has shape \[1,2\]/);
    } finally {
      await pool.close();
    }
    model.dispose();
  });

  it('a worker that crashes at start-up or exits mid-step is reported, never waited for', async () => {
    const dir = tmpDir('lazylabel-pool-worker-');
    const crash = path.join(dir, 'crash.mjs');
    fs.writeFileSync(crash, "throw new Error('boom at start-up');\n");
    const quit = path.join(dir, 'quit.mjs');
    fs.writeFileSync(quit, "import { parentPort } from 'node:worker_threads';\nparentPort.on('message', () => process.exit(7));\nparentPort.postMessage({ type: 'ready', detail: 'fake' });\n");
    const model = buildUNet(NET2D);
    const opts = { tf, backend: 'wasm' as const, model, unet: NET2D, patch: [8, 8], nChannels: 1, loss: { normalisation: 'voxels' as const, classWeights: null, lazyLabels: true }, threads: 2 };
    await expect(TrainPool.start({ ...opts, workerUrl: pathToFileURL(crash) })).rejects.toThrow(/training worker 1 crashed: boom at start-up/);
    const pool = await TrainPool.start({ ...opts, workerUrl: pathToFileURL(quit) });
    try {
      await expect(pool.step(makeBatch([8, 8], 2, true), tf.train.adam(1e-3))).rejects.toThrow(/training worker 1 exited unexpectedly \(exit code 7\)/);
    } finally {
      await pool.close();
    }
    model.dispose();
  });

  it('the CLI with --threads 2 reports its threads and exits on a normal end, a divergence and Ctrl-C', async () => {
    const run = (args: string[], onStart?: (child: ReturnType<typeof spawn>) => void): Promise<{ code: number | null; stdout: string; stderr: string }> =>
      new Promise((resolve) => {
        const child = spawn(process.execPath, [BIN, 'train', '--manifest', demo.denseManifest, '--patch', '4,16,16', '--depth', '2', '--base-filters', '4', '--seed', '3', '--threads', '2', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
        child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
        const timer = setTimeout(() => child.kill('SIGKILL'), 60_000); // a hang shows up as a null exit code
        child.on('exit', (code) => {
          clearTimeout(timer);
          resolve({ code, stdout, stderr });
        });
        onStart?.(child);
      });
    const ok = await run(['--out', path.join(demo.out, 'cli_ok'), '--steps', '3', '--json']);
    expect(ok.code, ok.stderr).toBe(0);
    const report = JSON.parse(ok.stdout) as { threads: number };
    expect(schemaErrors('train-report', report)).toEqual([]);
    expect(report.threads).toBe(2);

    const nan = await run(['--out', path.join(demo.out, 'cli_nan'), '--steps', '30', '--lr', '1e9']);
    expect(nan.code, nan.stderr).toBe(1);
    expect(nan.stdout).toMatch(/lower --lr/);
    expect(nan.stdout).toMatch(/2 threads/);

    const out = path.join(demo.out, 'cli_int');
    const metrics = path.join(out, 'metrics.jsonl');
    const interrupted = await run(['--out', out, '--steps', '100000', '--checkpoint-every', '100000'], (child) => {
      const poll = setInterval(() => {
        if (fs.existsSync(metrics) && fs.readFileSync(metrics, 'utf8').split('\n').length > 3) {
          clearInterval(poll);
          child.kill('SIGINT');
        }
      }, 50);
      child.on('exit', () => clearInterval(poll));
    });
    expect(interrupted.code, interrupted.stderr).toBe(130);
    expect(interrupted.stderr).toMatch(/training on 2 threads/);
    expect(fs.readdirSync(path.join(out, 'checkpoints')).filter((n) => /^step-\d+$/.test(n))).toHaveLength(1);
  });
});
