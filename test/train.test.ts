/** The trainer end to end on tiny demo data: loss drops, checkpoints reload to identical predictions, resume continues exactly, predict tiles agree. */
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateDemoData, type DemoData } from '../src/demo/demo.js';
import { train } from '../src/train/loop.js';
import { loadModel, listCheckpoints } from '../src/train/checkpoint.js';
import { predict } from '../src/ops/predict.js';
import { H5Sink, withH5 } from '../src/io/hdf5.js';
import { synthCube } from '../src/demo/synth.js';
import { CubeStore } from '../src/train/cubes.js';
import { PatchSampler } from '../src/train/sampler.js';
import { requireManifest } from '../src/ops/manifestFile.js';
import { schemaErrors, tmpDir } from './helpers.js';

let demo: DemoData;
const base = { patch: [4, 16, 16], batch: 2, depth: 2, baseFilters: 4, anisotropicLevels: 1, backend: 'wasm' as const, seed: 3, lr: 3e-3 };

beforeAll(async () => {
  demo = await generateDemoData({ out: tmpDir('lazylabel-train-'), cubeShape: [8, 32, 32], denseCubes: 2, seed: 2 });
});

describe('train', () => {
  it('the loss drops, and the saved model reloads to identical predictions', async () => {
    const out = path.join(demo.out, 'run_a');
    const r = await train({ ...base, manifest: demo.lazyManifest, out, steps: 60, validEvery: 30 });
    expect(r.ok).toBe(true);
    expect(r.backend).toBe('wasm');
    expect(r.step).toBe(60);
    expect(r.meanLossEnd!).toBeLessThan(r.meanLossStart!);
    expect(r.validation?.perClass).toHaveLength(3);
    for (const f of ['config.json', 'metrics.jsonl', 'plot.html', 'model/model.json', 'model/weights.bin']) expect(fs.existsSync(path.join(out, f)), f).toBe(true);
    const lines = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: string });
    expect(lines.filter((l) => l.type === 'train')).toHaveLength(60);
    expect(lines.filter((l) => l.type === 'valid')).toHaveLength(2);

    // reload the saved model and the last checkpoint: same predictions as each other on the same input
    const a = await loadModel(tf, out);
    const b = await loadModel(tf, listCheckpoints(out).at(-1)!);
    const x = tf.randomUniform([1, 4, 16, 16, 1], 0, 1, 'float32', 7);
    const pa = (a.model.predict(x) as tf.Tensor).dataSync();
    const pb = (b.model.predict(x) as tf.Tensor).dataSync();
    expect(Array.from(pa)).toEqual(Array.from(pb));
    expect(a.state.step).toBe(60);
  });

  it('resume continues from the checkpoint exactly as an uninterrupted run', async () => {
    const straight = path.join(demo.out, 'run_straight');
    const split = path.join(demo.out, 'run_split');
    const full = await train({ ...base, manifest: demo.denseManifest, out: straight, steps: 20, checkpointEvery: 10 });
    const first = await train({ ...base, manifest: demo.denseManifest, out: split, steps: 10, checkpointEvery: 10 });
    expect(first.step).toBe(10);
    const second = await train({ ...base, manifest: demo.denseManifest, out: split, steps: 20, checkpointEvery: 10, resume: true });
    expect(second.startStep).toBe(10);
    expect(second.step).toBe(20);
    expect(second.lastLoss).toBe(full.lastLoss);
    const a = await loadModel(tf, straight);
    const b = await loadModel(tf, split);
    const x = tf.randomUniform([1, 4, 16, 16, 1], 0, 1, 'float32', 9);
    const pa = (a.model.predict(x) as tf.Tensor).dataSync();
    const pb = (b.model.predict(x) as tf.Tensor).dataSync();
    let meanDiff = 0;
    for (let i = 0; i < pa.length; i++) meanDiff += Math.abs(pa[i]! - pb[i]!) / pa.length;
    expect(meanDiff).toBe(0);
    // and an unrelated run (other seed) differs by far more, so the comparison has teeth
    const other = await train({ ...base, seed: 99, manifest: demo.denseManifest, out: path.join(demo.out, 'run_other'), steps: 20 });
    const c = await loadModel(tf, path.join(demo.out, 'run_other'));
    const pc = (c.model.predict(x) as tf.Tensor).dataSync();
    let otherDiff = 0;
    for (let i = 0; i < pa.length; i++) otherDiff += Math.abs(pa[i]! - pc[i]!) / pa.length;
    expect(otherDiff).toBeGreaterThan(1e-3);
    expect(other.step).toBe(20);
  });

  it('a damaged newest checkpoint is skipped and the previous one used', async () => {
    const out = path.join(demo.out, 'run_damaged');
    await train({ ...base, manifest: demo.denseManifest, out, steps: 8, checkpointEvery: 4 });
    const newest = listCheckpoints(out).at(-1)!;
    const weights = path.join(newest, 'weights.bin');
    const buf = fs.readFileSync(weights);
    buf[0] = buf[0]! ^ 0xff;
    fs.writeFileSync(weights, buf);
    const logs: string[] = [];
    // a save killed mid-write leaves a temp folder of a dead process: ignored on resume, removed by the next save
    const stale = path.join(out, 'checkpoints', 'step-0000009.tmp-999999');
    fs.mkdirSync(stale);
    const r = await train({ ...base, manifest: demo.denseManifest, out, steps: 10, resume: true, log: (l) => logs.push(l) });
    expect(fs.existsSync(stale)).toBe(false);
    expect(r.startStep).toBe(4);
    expect(r.skippedCheckpoints[0]).toMatch(/step-0000008: weights.bin is damaged/);
    expect(logs.join('\n')).toContain('resuming from step-0000004');
  });

  it('refuses to overwrite a run without --resume or --force, and a patch that does not fit the network', async () => {
    const out = path.join(demo.out, 'run_a');
    await expect(train({ ...base, manifest: demo.lazyManifest, out, steps: 1 })).rejects.toThrow(/already holds a run/);
    await expect(train({ ...base, manifest: demo.lazyManifest, out: path.join(demo.out, 'run_bad'), patch: [4, 15, 16], steps: 1 })).rejects.toThrow(/not a multiple of 4/);
  });

  it('stops on a diverging loss with a clear message and keeps the last good checkpoint', async () => {
    const out = path.join(demo.out, 'run_nan');
    const r = await train({ ...base, manifest: demo.denseManifest, out, steps: 30, lr: 1e9, checkpointEvery: 1 });
    expect(r.ok).toBe(false);
    expect(r.stoppedBy).toBe('divergence');
    expect(r.message).toMatch(/lower --lr/);
    if (r.lastCheckpoint) {
      const state = JSON.parse(fs.readFileSync(path.join(r.lastCheckpoint, 'state.json'), 'utf8')) as { step: number };
      expect(state.step).toBe(r.step);
    }
  });

  it('the sampler draws cubes with the shares suggest-prios printed when it wrote the prios', async () => {
    const prios = demo.prios; // suggest-prios --lazy-share 0.25 --write-manifest, run by generateDemoData
    const manifest = requireManifest(demo.lazyManifest);
    const store = await CubeStore.open(manifest, { cacheMB: 64 });
    try {
      const sampler = new PatchSampler(store, { patchSize: [4, 16, 16], seed: 11 });
      const n = 6000;
      const counts = new Map<number, number>();
      for (let i = 0; i < n; i++) {
        const c = sampler.drawCube();
        counts.set(c, (counts.get(c) ?? 0) + 1);
      }
      // chi-square against the printed shares (df = training cubes - 1; 0.001 critical values)
      const train = prios.cubes.map((c, i) => ({ i, share: c.share })).filter((c) => c.share !== null && c.share > 0);
      const chi = train.reduce((acc, c) => acc + ((counts.get(c.i) ?? 0) - n * c.share!) ** 2 / (n * c.share!), 0);
      const critical: Record<number, number> = { 1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 6: 22.46 };
      expect(chi).toBeLessThan(critical[train.length - 1]!);
    } finally {
      store.close();
    }
  });
});

describe('predict', () => {
  it('a volume predicted in many tiles equals one whole-volume tile when margins cover the receptive field', async () => {
    const out = path.join(demo.out, 'run_pred');
    await train({ ...base, manifest: demo.denseManifest, out, steps: 5 });
    // a wider raw volume so that tiles with 24-voxel margins (over the depth-2 U-Net's receptive radius of 23) fit
    const cube = synthCube({ shape: [8, 96, 96], mitochondria: 3, vesicleClouds: 3, nuclei: 1, seed: 5 });
    const rawFile = path.join(demo.out, 'wide.h5');
    const sink = await H5Sink.create(rawFile);
    sink.createDataset('raw', { shape: [8, 96, 96], dtype: 'uint8', chunks: [4, 32, 32] }).write(cube.raw);
    sink.close();
    const whole = path.join(demo.out, 'whole.h5');
    const tiled = path.join(demo.out, 'tiled.h5');
    const rw = await predict({ model: out, raw: rawFile, out: whole, tile: [8, 96, 96], margin: [0, 0, 0], backend: 'wasm' });
    const rt = await predict({ model: out, raw: rawFile, out: tiled, tile: [8, 64, 64], margin: [0, 24, 24], backend: 'wasm', batch: 2 });
    expect(rw.tiles).toBe(1);
    expect(rt.tiles).toBe(9);
    const [pw, pt] = await Promise.all([whole, tiled].map((f) => withH5(f, (src) => ({ info: src.info('probs'), data: src.readSlab('probs', 0, 8), lab: src.readSlab('lab', 0, 8) }))));
    expect(pw!.info.shape).toEqual([8, 96, 96, 3]);
    let maxDiff = 0;
    for (let i = 0; i < pw!.data.length; i++) maxDiff = Math.max(maxDiff, Math.abs(pw!.data[i]! - pt!.data[i]!));
    expect(maxDiff).toBeLessThan(1e-4);
    // probabilities sum to one per voxel, and the argmax volume matches them
    for (let v = 0; v < 200; v++) {
      const p = [0, 1, 2].map((c) => pt!.data[v * 3 + c]!);
      expect(p[0]! + p[1]! + p[2]!).toBeCloseTo(1, 5);
      expect(pt!.lab[v]).toBe(p.indexOf(Math.max(...p)));
    }
  });

  it('--uint8 stores p*255 and refuses to overwrite without force', async () => {
    const out = path.join(demo.out, 'run_pred');
    const f32 = path.join(demo.out, 'whole.h5');
    const u8 = path.join(demo.out, 'u8.h5');
    await predict({ model: out, raw: path.join(demo.out, 'wide.h5'), out: u8, tile: [8, 96, 96], margin: [0, 0, 0], backend: 'wasm', uint8: true });
    const [a, b] = await Promise.all([f32, u8].map((f) => withH5(f, (src) => ({ dtype: src.info('probs').dtype?.name, data: src.readSlab('probs', 0, 2) }))));
    expect(b!.dtype).toBe('uint8');
    for (let i = 0; i < 500; i++) expect(b!.data[i]).toBe(Math.round(a!.data[i]! * 255));
    await expect(predict({ model: out, raw: path.join(demo.out, 'wide.h5'), out: u8, backend: 'wasm' })).rejects.toThrow(/already exists/);
  });

  it('--threads 2 (pool workers predict their share of each batch) writes what one thread writes', async () => {
    const out = path.join(demo.out, 'run_pred');
    const tiled = path.join(demo.out, 'tiled.h5');
    const pooled = path.join(demo.out, 'pooled.h5');
    const r = await predict({ model: out, raw: path.join(demo.out, 'wide.h5'), out: pooled, tile: [8, 64, 64], margin: [0, 24, 24], backend: 'wasm', threads: 2 });
    expect(r.threads).toBe(2);
    expect(schemaErrors('predict-report', r)).toEqual([]);
    const [one, two] = await Promise.all([tiled, pooled].map((f) => withH5(f, (src) => ({ data: src.readSlab('probs', 0, 8), lab: src.readSlab('lab', 0, 8) }))));
    let maxDiff = 0;
    for (let i = 0; i < one!.data.length; i++) maxDiff = Math.max(maxDiff, Math.abs(one!.data[i]! - two!.data[i]!));
    expect(maxDiff).toBeLessThan(1e-6);
    expect(Array.from(two!.lab)).toEqual(Array.from(one!.lab));
    // one thread was asked for, or the batch holds one tile: no workers
    expect((await predict({ model: out, raw: path.join(demo.out, 'wide.h5'), out: pooled, tile: [8, 64, 64], margin: [0, 24, 24], backend: 'wasm', threads: 2, batch: 1, force: true })).threads).toBe(1);
  });
});

describe('2D cubes', () => {
  it('a 2D U-Net trains on (x, y) cubes with a lazy cube, and predicts a 2D volume', async () => {
    const dir = tmpDir('lazylabel-2d-');
    const cubes: object[] = [];
    for (let i = 0; i < 4; i++) {
      const c = synthCube({ shape: [1, 64, 64], mitochondria: 3, vesicleClouds: i === 3 ? 0 : 3, nuclei: i === 3 ? 1 : 0, seed: 40 + i });
      const sink = await H5Sink.create(path.join(dir, `c${i}.h5`));
      sink.createDataset('raw', { shape: [64, 64], dtype: 'uint8' }).write(c.raw);
      // cube 3 (a nucleus, no vesicle clouds) is lazy: all -1 with "vesicle cloud not present"
      const lazy = i === 3;
      sink.createDataset('lab', { shape: [64, 64], dtype: 'int16' }).write(lazy ? new Int16Array(64 * 64).fill(-1) : c.labels);
      if (lazy) sink.writeSmall('info', [2, 3], 'int8', Int8Array.from([1, 1, 0, 0, 0, 1]));
      sink.close();
      cubes.push({ name: `c${i}`, raw: `c${i}.h5`, label: `c${i}.h5`, ...(i === 2 ? { valid: true } : {}) });
    }
    const manifest = path.join(dir, 'd2.json');
    fs.writeFileSync(manifest, JSON.stringify({ n_lab: 3, lazy_labels: true, cubes }));
    const r = await train({ manifest, out: path.join(dir, 'run'), patch: [32, 32], batch: 4, steps: 40, depth: 2, baseFilters: 8, backend: 'wasm', seed: 1, lr: 3e-3, validEvery: 20 });
    expect(r.ok).toBe(true);
    expect(r.meanLossEnd!).toBeLessThan(r.meanLossStart!);
    expect(r.validation?.batches).toBeGreaterThan(0);
    const p = await predict({ model: path.join(dir, 'run'), raw: path.join(dir, 'c2.h5'), out: path.join(dir, 'p.h5'), backend: 'wasm' });
    expect(p.shape).toEqual([64, 64]);
    expect(p.classCounts.reduce((a, b) => a + b, 0)).toBe(64 * 64);
  });
});
