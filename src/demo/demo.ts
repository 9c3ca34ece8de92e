/**
 * `demo`: the whole pipeline on synthetic EM data through the same operations as the CLI —
 * check, convert (lazy cubes), suggest-prios, train with and without the lazy cubes, predict, evaluate.
 */
import fs from 'node:fs';
import path from 'node:path';
import { H5Sink, withH5 } from '../io/hdf5.js';
import { writeTextAtomically } from '../io/atomic.js';
import { usageError } from '../errors.js';
import { checkManifest, type CheckReport } from '../ops/check.js';
import { convert, type ConvertReport } from '../ops/convert.js';
import { suggestPrios, type PriosReport } from '../ops/suggestPrios.js';
import { predict } from '../ops/predict.js';
import { falsePositiveRate, f1InRegion } from '../core/metrics.js';
import { synthCube, DEMO_CLASSES, type SynthCube } from './synth.js';
import type { TrainReport } from '../train/loop.js';
import { createImage, blit, writePng, type RgbImage } from '../io/png.js';
import { overlaySlice } from '../report/preview.js';

export interface DemoOptions {
  out: string;
  steps?: number;
  seed?: number;
  /** Cube shape (z, y, x); smaller for tests. */
  cubeShape?: [number, number, number];
  patch?: number[];
  denseCubes?: number;
  backend?: 'auto' | 'tensorflow' | 'wasm' | 'cpu';
  force?: boolean;
  log?: (line: string) => void;
  onStep?: (run: string, step: number, total: number, loss: number) => void;
}

export interface DemoEvaluation {
  run: 'dense only' | 'dense + lazy';
  /** Fraction of nucleus voxels predicted as vesicle cloud (class 2): the false positives lazy labels target. */
  class2FalsePositiveRateInNuclei: number | null;
  /** F1 of vesicle clouds outside nuclei (the real task). */
  class2F1OutsideNuclei: number | null;
  /** F1 of mitochondria outside nuclei. */
  class1F1OutsideNuclei: number | null;
  finalLoss: number | null;
  seconds: number;
}

export interface DemoReport {
  command: 'demo';
  ok: boolean;
  out: string;
  backend: string;
  steps: number;
  check: { ok: boolean; files: number; errors: number; warnings: number };
  convert: { output: string; mode: string; info: { labeled: number[]; notPresent: number[] } }[];
  prios: { name: string; prio: number | null; share: number | null; lazy: boolean }[];
  evaluation: DemoEvaluation[];
  figure: string;
  seconds: number;
}

async function writeVolume(file: string, datasets: Record<string, { data: Uint8Array | Int16Array; dtype: 'uint8' | 'int16' }>, shape: number[]): Promise<void> {
  const sink = await H5Sink.create(file);
  try {
    for (const [key, { data, dtype }] of Object.entries(datasets)) {
      sink.createDataset(key, { shape, dtype, chunks: [Math.min(8, shape[0]!), ...shape.slice(1).map((n) => Math.min(64, n))], gzip: 1 }).write(data);
      sink.setAttrs(key, { resolution: Float64Array.from([20, 10, 10]) });
    }
  } finally {
    sink.close();
  }
}

/** The preview's label overlay (class 1 red, class 2 green) with the nucleus outlined in blue, so false positives are easy to place. */
function overlay(cube: SynthCube, z: number, labels: ArrayLike<number> | null, scale: number): RgbImage {
  const [, Y, X] = cube.shape;
  const plane = Y * X;
  const img = overlaySlice({
    raw: cube.raw.subarray(z * plane, (z + 1) * plane),
    labels: labels ? Int32Array.from({ length: plane }, (_, i) => labels[z * plane + i]!) : null,
    rows: Y,
    cols: X,
    nLab: 3,
    zoom: scale,
    colors: [null, [230, 50, 50], [40, 200, 40]],
  });
  if (!labels) return img;
  const n = cube.nucleus.subarray(z * plane, (z + 1) * plane);
  for (let y = 0; y < Y * scale; y++) {
    for (let x = 0; x < X * scale; x++) {
      const yy = Math.floor(y / scale);
      const xx = Math.floor(x / scale);
      const i = yy * X + xx;
      const edge = n[i] && (yy === 0 || xx === 0 || yy === Y - 1 || xx === X - 1 || !n[i - 1] || !n[i + 1] || !n[i - X] || !n[i + X]);
      if (edge) img.rgb.set([60, 90, 255], (y * X * scale + x) * 3);
    }
  }
  return img;
}

export interface DemoData {
  out: string;
  data: string;
  shape: [number, number, number];
  denseManifest: string;
  lazyManifest: string;
  testFile: string;
  test: SynthCube;
  conversions: ConvertReport[];
  checks: CheckReport[];
  prios: PriosReport;
}

/**
 * Steps 1-5 of the demo: synthetic cubes, manifests, convert (lazy cubes), check, suggest-prios.
 * Exported for tests, which train on the same data at tiny sizes.
 */
export async function generateDemoData(opts: Pick<DemoOptions, 'out' | 'seed' | 'cubeShape' | 'denseCubes' | 'log'>): Promise<DemoData> {
  const log = opts.log ?? (() => {});
  const out = path.resolve(opts.out);
  const data = path.join(out, 'data');
  fs.mkdirSync(data, { recursive: true });
  const seed = opts.seed ?? 1;
  const shape = opts.cubeShape ?? [16, 96, 96];
  const nDense = opts.denseCubes ?? 4;

  // 1. Synthetic data: dense cubes without nuclei, nucleus cubes without vesicle clouds, one test cube with both.
  log(`generating ${nDense} dense cubes, 2 nucleus cubes and a test cube of ${shape.join('x')} voxels`);
  const dense = Array.from({ length: nDense }, (_, i) => synthCube({ shape, mitochondria: 4, vesicleClouds: 5, nuclei: 0, seed: seed * 100 + i }));
  const nuclei = [0, 1].map((i) => synthCube({ shape, mitochondria: 2, vesicleClouds: 0, nuclei: 1, seed: seed * 100 + 50 + i }));
  const test = synthCube({ shape, mitochondria: 3, vesicleClouds: 5, nuclei: 1, seed: seed * 100 + 99 });
  for (const [i, c] of dense.entries()) await writeVolume(path.join(data, `dense${i}.h5`), { raw: { data: c.raw, dtype: 'uint8' }, lab: { data: c.labels, dtype: 'int16' } }, shape);
  for (const [i, c] of nuclei.entries()) await writeVolume(path.join(data, `nucleus${i}.h5`), { raw: { data: c.raw, dtype: 'uint8' }, mask: { data: c.nucleus, dtype: 'uint8' } }, shape);
  await writeVolume(path.join(data, 'test.h5'), { raw: { data: test.raw, dtype: 'uint8' }, lab: { data: test.labels, dtype: 'int16' }, nucleus: { data: test.nucleus, dtype: 'uint8' } }, shape);

  // 2. Manifests: one with only dense cubes, one adding the lazy nucleus cubes.
  const lazyManifest = path.join(out, 'dataset_lazy.json');
  const denseManifest = path.join(out, 'dataset_dense.json');
  const denseCubes = dense.map((_, i) => ({ name: `dense${i}`, raw: `data/dense${i}.h5`, label: `data/dense${i}.h5` }));
  const validCube = { name: 'test', raw: 'data/test.h5', label: 'data/test.h5', valid: true };
  const base = { n_lab: 3, class_names: [...DEMO_CLASSES], lazy_labels: true, example_ignore_threshold: 0 };
  await writeTextAtomically(denseManifest, JSON.stringify({ ...base, cubes: [...denseCubes, validCube] }, null, 2) + '\n');
  await writeTextAtomically(lazyManifest, JSON.stringify({ ...base, cubes: [...denseCubes, validCube] }, null, 2) + '\n');

  // 3. convert: nucleus cubes become lazy label files, added to the lazy manifest.
  const conversions: ConvertReport[] = [];
  conversions.push(
    await convert({
      output: path.join(data, 'nucleus0_lazy.h5'),
      like: { file: path.join(data, 'nucleus0.h5'), key: 'raw' },
      allIgnore: true,
      notPresent: ['vesicle_cloud'],
      manifest: lazyManifest,
      cubeName: 'nucleus0_all_ignore',
      raw: { file: path.join(data, 'nucleus0.h5'), key: 'raw' },
    }),
  );
  conversions.push(
    await convert({
      output: path.join(data, 'nucleus1_painted.h5'),
      mask: { file: path.join(data, 'nucleus1.h5'), key: 'mask' },
      fillClass: 'background',
      labeled: ['background'],
      notPresent: ['vesicle_cloud'],
      manifest: lazyManifest,
      cubeName: 'nucleus1_painted_background',
      raw: { file: path.join(data, 'nucleus1.h5'), key: 'raw' },
    }),
  );
  log(`converted ${conversions.length} nucleus cubes into lazy label files`);

  // 4. check both manifests.
  const checks: CheckReport[] = [await checkManifest(denseManifest, {}), await checkManifest(lazyManifest, {})];
  for (const c of checks) {
    if (!c.ok) throw new Error(`demo data failed its own check: ${JSON.stringify(c.manifest?.findings ?? c.files.flatMap((f) => f.findings))}`);
  }

  // 5. suggest-prios: lazy cubes get 25% of the patches; stored in the lazy manifest.
  const prios: PriosReport = await suggestPrios({ manifest: lazyManifest, lazyShare: 0.25, writeManifest: true });
  await suggestPrios({ manifest: denseManifest, writeManifest: true });

  return { out, data, shape, denseManifest, lazyManifest, testFile: path.join(data, 'test.h5'), test, conversions, checks, prios };
}

export async function runDemo(opts: DemoOptions): Promise<DemoReport> {
  const t0 = performance.now();
  const log = opts.log ?? (() => {});
  const out = path.resolve(opts.out);
  if (fs.existsSync(out) && fs.readdirSync(out).length > 0) {
    if (!opts.force) throw usageError(`demo folder ${out} is not empty`, 'pass --force to replace it, or choose another --out');
    fs.rmSync(out, { recursive: true, force: true });
  }
  const seed = opts.seed ?? 1;
  const { data, shape, denseManifest, lazyManifest, test, conversions, checks, prios } = await generateDemoData(opts);

  // 6. train twice (same seed, same steps), 7. predict the test cube, 8. evaluate.
  const { train } = await import('../train/loop.js');
  const steps = opts.steps ?? 400;
  const patch = opts.patch ?? [8, 48, 48];
  const runs: { name: DemoEvaluation['run']; manifest: string; dir: string }[] = [
    { name: 'dense only', manifest: denseManifest, dir: path.join(out, 'run_dense') },
    { name: 'dense + lazy', manifest: lazyManifest, dir: path.join(out, 'run_lazy') },
  ];
  const evaluation: DemoEvaluation[] = [];
  const predictions: Int16Array[] = [];
  let backendName = '';
  for (const run of runs) {
    log(`training '${run.name}' for ${steps} steps`);
    const report: TrainReport = await train({
      manifest: run.manifest,
      out: run.dir,
      patch,
      batch: 2,
      steps,
      lr: 2e-3,
      seed,
      depth: 2,
      baseFilters: 8,
      anisotropicLevels: 1,
      backend: opts.backend ?? 'auto',
      validEvery: Math.max(1, Math.floor(steps / 3)),
      validBatches: 4,
      onStep: (e) => opts.onStep?.(run.name, e.step, e.totalSteps, e.loss),
      onBackend: (name, detail) => {
        backendName = name;
        log(`backend: ${name} (${detail})`);
      },
    });
    if (!report.ok) throw new Error(`training '${run.name}' stopped: ${report.message ?? report.stoppedBy}`);
    const probsFile = path.join(out, `pred_${run.dir.endsWith('lazy') ? 'lazy' : 'dense'}.h5`);
    await predict({ model: run.dir, raw: path.join(data, 'test.h5'), rawKey: 'raw', out: probsFile, backend: opts.backend ?? 'auto' });
    const labels = await withH5(probsFile, (src) => src.readSlab('lab', 0, shape[0]!)) as Int16Array;
    predictions.push(labels);
    const outside = Uint8Array.from(test.nucleus, (v) => (v ? 0 : 1));
    evaluation.push({
      run: run.name,
      class2FalsePositiveRateInNuclei: falsePositiveRate(labels, test.nucleus, 2).rate,
      class2F1OutsideNuclei: f1InRegion(labels, test.labels, outside, 2),
      class1F1OutsideNuclei: f1InRegion(labels, test.labels, outside, 1),
      finalLoss: report.meanLossEnd,
      seconds: report.seconds,
    });
  }

  // Figure: raw slice with ground truth, then the two predictions, at the slice with the most nucleus.
  let z = 0;
  let best = -1;
  for (let k = 0; k < shape[0]!; k++) {
    let n = 0;
    for (let i = k * shape[1]! * shape[2]!; i < (k + 1) * shape[1]! * shape[2]!; i++) n += test.nucleus[i]!;
    if (n > best) {
      best = n;
      z = k;
    }
  }
  const scale = 3;
  const panels = [overlay(test, z, null, scale), overlay(test, z, test.labels, scale), ...predictions.map((p) => overlay(test, z, p, scale))];
  const gap = 6;
  const page = createImage(panels.length * (panels[0]!.width + gap) - gap, panels[0]!.height);
  panels.forEach((p, i) => blit(page, p, i * (p.width + gap), 0));
  const figure = path.join(out, 'demo.png');
  await writePng(figure, page, { force: true });

  return {
    command: 'demo',
    ok: true,
    out,
    backend: backendName,
    steps,
    check: {
      ok: checks.every((c) => c.ok),
      files: checks[1]!.files.length,
      errors: checks.reduce((a, c) => a + c.summary.error, 0),
      warnings: checks.reduce((a, c) => a + c.summary.warn, 0),
    },
    convert: conversions.map((c) => ({ output: c.output.path, mode: c.mode, info: c.info })),
    prios: prios.cubes.map((c) => ({ name: c.name, prio: c.prio, share: c.share, lazy: c.lazy ?? false })),
    evaluation,
    figure,
    seconds: (performance.now() - t0) / 1000,
  };
}
