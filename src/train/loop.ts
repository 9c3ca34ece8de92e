/** The training loop: sample patches by prio, minimise the lazy-label loss, validate, checkpoint, resume. */
import fs from 'node:fs';
import path from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { LazyLabelError, usageError } from '../errors.js';
import { MaskedConfusion, type ClassMetrics } from '../core/metrics.js';
import { requireManifest } from '../ops/manifestFile.js';
import { CubeStore } from './cubes.js';
import { PatchSampler, validationBatches, ELEKTRONN_GREY_AUGMENT, type Batch } from './sampler.js';
import { buildUNet, checkPatchShape, type UNetConfig } from './models.js';
import { lazyNll } from './loss.js';
import { selectBackend, type BackendPreference, type NativeKernels } from './backend.js';
import { chooseThreads, TrainPool } from './pool.js';
import { listCheckpoints, loadLatestCheckpoint, saveCheckpoint, saveModel } from './checkpoint.js';
import { lineChart, htmlPage } from '../report/svg.js';
import { VERSION } from '../version.js';

export interface TrainOptions {
  manifest: string;
  out: string;
  model?: 'unet2d' | 'unet3d';
  /** Spatial patch size in label axis order; defaults to the manifest's patch_size. */
  patch?: number[];
  batch?: number;
  steps?: number;
  lr?: number;
  seed?: number;
  backend?: BackendPreference;
  resume?: boolean;
  force?: boolean;
  depth?: number;
  baseFilters?: number;
  anisotropicLevels?: number;
  normalisation?: 'voxels' | 'flags';
  validEvery?: number;
  validBatches?: number;
  checkpointEvery?: number;
  cacheMB?: number;
  jitter?: boolean;
  /**
   * Compute threads (data-parallel worker pool, wasm and cpu backends): a count, or 'auto' (default):
   * min(cores, batch), 1 for small steps and for the natively multi-threaded tensorflow backend.
   */
  threads?: number | 'auto';
  /** Called after every step (for a progress bar). */
  onStep?: (e: StepEvent) => void;
  /** Polled between steps: when true, the loop checkpoints and returns (Ctrl-C). */
  shouldStop?: () => boolean;
  /** Told once which backend runs. */
  onBackend?: (name: string, detail: string) => void;
  log?: (line: string) => void;
}

export interface StepEvent {
  step: number;
  totalSteps: number;
  loss: number;
  patchesPerSec: number;
}

export interface ValidationResult {
  step: number;
  perClass: ClassMetrics[];
  /** Mean predicted probability of each class where it was flagged not present (null: never flagged). */
  notPresentMeanProb: (number | null)[];
  batches: number;
}

export interface TrainReport {
  command: 'train';
  ok: boolean;
  backend: string;
  backendDetail: string;
  /** The native (oneDNN) kernels the wasm backend ran, or null. */
  nativeKernels: NativeKernels | null;
  /** Compute threads used (main thread + pool workers). */
  threads: number;
  runDir: string;
  modelDir: string;
  startStep: number;
  step: number;
  stoppedBy: 'steps' | 'interrupt' | 'divergence';
  message?: string;
  firstLoss: number | null;
  lastLoss: number | null;
  /** Mean loss over the first and last tenth of the steps of this run (noise-robust). */
  meanLossStart: number | null;
  meanLossEnd: number | null;
  patchesPerSec: number;
  seconds: number;
  lastCheckpoint: string | null;
  skippedCheckpoints: string[];
  validation: ValidationResult | null;
}

export interface RunConfig {
  version: string;
  manifest: string;
  nLab: number;
  unet: UNetConfig;
  patch: number[];
  batch: number;
  lr: number;
  seed: number;
  normalisation: 'voxels' | 'flags';
  lazyLabels: boolean;
  classWeights: number[] | null;
  /** Raw values are scaled the same way at prediction time. */
  rawDivisor: number;
}

const DIVERGENCE_FACTOR = 1e3;

/**
 * tfjs's Adam keeps beta1^t and beta2^t as running products but `setWeights` recomputes them with pow(),
 * which rounds differently; saving and restoring them makes a resumed run continue bit for bit.
 */
interface AdamAccumulators {
  accBeta1?: tfType.Variable;
  accBeta2?: tfType.Variable;
}

function adamState(optimizer: tfType.Optimizer): number[] | null {
  const o = optimizer as unknown as AdamAccumulators;
  return o.accBeta1 && o.accBeta2 ? [o.accBeta1.dataSync()[0]!, o.accBeta2.dataSync()[0]!] : null;
}

function restoreAdamState(tf: typeof tfType, optimizer: tfType.Optimizer, state: unknown): void {
  const o = optimizer as unknown as AdamAccumulators;
  if (!Array.isArray(state) || !o.accBeta1 || !o.accBeta2) return;
  o.accBeta1.assign(tf.scalar(state[0] as number));
  o.accBeta2.assign(tf.scalar(state[1] as number));
}

/** Per-batch tensors for the loss; masks are left out when the manifest has lazy labels off (ELEKTRONN passes none). */
function lossInputs(tf: typeof tfType, batch: Batch, cfg: RunConfig): { x: tfType.Tensor; y: tfType.Tensor; opts: Parameters<typeof lazyNll>[2] } {
  const b = batch.labels.length / batch.patchSize.reduce((p, q) => p * q, 1);
  const x = tf.tensor(batch.raw, [b, ...batch.patchSize, batch.nChannels], 'float32');
  const y = tf.tensor(batch.labels, [b, ...batch.patchSize], 'int32');
  return {
    x,
    y,
    opts: {
      normalisation: cfg.normalisation,
      ...(cfg.classWeights ? { classWeights: cfg.classWeights } : {}),
      ...(cfg.lazyLabels ? { maskClassLabeled: batch.maskClassLabeled, maskClassNotPresent: batch.maskClassNotPresent } : {}),
    },
  };
}

/**
 * Masked precision/recall/IoU on the valid cubes, and the not-present pressure. `infer` (raw patches,
 * count -> flat probabilities) replaces `model.predict`, e.g. by the training pool's threads.
 */
export async function validate(
  tf: typeof tfType, model: tfType.LayersModel, store: CubeStore, cfg: RunConfig, step: number, maxBatches: number,
  infer?: (raw: Float32Array, examples: number) => Promise<Float32Array>,
): Promise<ValidationResult | null> {
  if (!store.cubes.some((c) => c.valid)) return null;
  const confusion = new MaskedConfusion(cfg.nLab);
  const perPatch = cfg.patch.reduce((p, q) => p * q, 1);
  let batches = 0;
  for await (const batch of validationBatches(store, { patchSize: cfg.patch, batchSize: cfg.batch })) {
    const b = batch.labels.length / perPatch;
    let values: Float32Array;
    if (infer) {
      values = await infer(batch.raw, b);
    } else {
      const probs = tf.tidy(() => model.predict(tf.tensor(batch.raw, [b, ...cfg.patch, batch.nChannels], 'float32')) as tfType.Tensor);
      values = (await probs.data()) as Float32Array;
      probs.dispose();
    }
    batch.cubeIndices.forEach((_, i) => {
      confusion.add(
        values.subarray(i * perPatch * cfg.nLab, (i + 1) * perPatch * cfg.nLab),
        batch.labels.subarray(i * perPatch, (i + 1) * perPatch),
        batch.maskClassLabeled[i]!.map(Boolean),
        batch.maskClassNotPresent[i]!.map(Boolean),
      );
    });
    if (++batches >= maxBatches) break;
  }
  return { step, perClass: confusion.perClass(), notPresentMeanProb: confusion.notPresentMeanProb(), batches };
}

function appendMetrics(runDir: string, entry: object): void {
  fs.appendFileSync(path.join(runDir, 'metrics.jsonl'), JSON.stringify(entry) + '\n');
}

/** Self-contained HTML plot of the loss and validation metrics, rewritten at every checkpoint. */
export function writePlot(runDir: string): void {
  const file = path.join(runDir, 'metrics.jsonl');
  if (!fs.existsSync(file)) return;
  const rows = fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { type: string; step: number; loss?: number; perClass?: ClassMetrics[]; notPresentMeanProb?: (number | null)[] });
  const train = rows.filter((r) => r.type === 'train' && typeof r.loss === 'number');
  const valid = rows.filter((r) => r.type === 'valid');
  const figures = [lineChart('training loss', [{ name: 'loss', points: train.map((r) => [r.step, r.loss!]) }], { xLabel: 'step', yLabel: 'loss', logY: true })];
  if (valid.length) {
    const nLab = valid[0]!.perClass!.length;
    figures.push(
      lineChart('validation IoU (labelled voxels)', Array.from({ length: nLab }, (_, c) => ({ name: `class ${c}`, points: valid.filter((r) => r.perClass![c]!.iou !== null).map((r) => [r.step, r.perClass![c]!.iou!] as [number, number]) })), { xLabel: 'step' }),
      lineChart('mean p(class) where flagged not present', Array.from({ length: nLab }, (_, c) => ({ name: `class ${c}`, points: valid.filter((r) => r.notPresentMeanProb?.[c] != null).map((r) => [r.step, r.notPresentMeanProb![c]!] as [number, number]) })), { xLabel: 'step' }),
    );
  }
  const tmp = path.join(runDir, `.plot.html.tmp-${process.pid}`);
  fs.writeFileSync(tmp, htmlPage(`lazylabel training: ${path.basename(path.resolve(runDir))}`, figures.map((f) => `<figure>${f}</figure>`).join('')));
  fs.renameSync(tmp, path.join(runDir, 'plot.html'));
}

function mean(xs: number[]): number | null {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null;
}

/** Train a U-Net on a manifest. Returns a report; user errors throw LazyLabelError. */
export async function train(opts: TrainOptions): Promise<TrainReport> {
  const log = opts.log ?? (() => {});
  const manifest = requireManifest(opts.manifest);
  const runDir = path.resolve(opts.out);
  const configPath = path.join(runDir, 'config.json');
  const existing = fs.existsSync(configPath);
  if (existing && !opts.resume && !opts.force) {
    throw usageError(`run folder ${runDir} already holds a run`, 'pass --resume to continue it, or --force to start over');
  }
  if (opts.resume && !existing) throw usageError(`nothing to resume in ${runDir}`, 'start a run without --resume first');
  if (existing && opts.force && !opts.resume) fs.rmSync(runDir, { recursive: true, force: true });
  fs.mkdirSync(runDir, { recursive: true });

  const backend = await selectBackend(opts.backend ?? 'auto');
  const tf = backend.tf;
  opts.onBackend?.(backend.name, backend.detail);

  const store = await CubeStore.open(manifest, { cacheMB: opts.cacheMB ?? 1024 });
  try {
    let cfg: RunConfig;
    if (opts.resume) {
      cfg = JSON.parse(fs.readFileSync(configPath, 'utf8')) as RunConfig;
    } else {
      const dims = store.cubes[0]!.labelShape.length as 2 | 3;
      const modelDims = opts.model === 'unet2d' ? 2 : opts.model === 'unet3d' ? 3 : dims;
      if (modelDims !== dims) throw usageError(`--model unet${modelDims}d does not fit ${dims}-D cubes`, `use --model unet${dims}d`);
      const patch = opts.patch ?? manifest.patchSize ?? (dims === 3 ? [16, 64, 64] : [128, 128]);
      const unet: UNetConfig = {
        dims,
        nLab: manifest.nLab,
        inChannels: store.cubes[0]!.nChannels,
        depth: opts.depth ?? 3,
        baseFilters: opts.baseFilters ?? 16,
        ...(dims === 3 ? { anisotropicLevels: opts.anisotropicLevels ?? 1 } : {}),
        seed: opts.seed ?? 0, // weight init follows --seed, so a run is reproducible
      };
      const bad = checkPatchShape(unet, patch);
      if (bad) throw usageError(bad);
      cfg = {
        version: VERSION,
        manifest: manifest.path,
        nLab: manifest.nLab,
        unet,
        patch,
        batch: opts.batch ?? 2,
        lr: opts.lr ?? 1e-3,
        seed: opts.seed ?? 0,
        normalisation: opts.normalisation ?? 'voxels',
        lazyLabels: manifest.lazyLabels,
        classWeights: manifest.classWeights ?? null,
        rawDivisor: store.cubes[0]!.rawDivisor,
      };
      fs.writeFileSync(configPath, JSON.stringify(cfg, null, 2) + '\n');
      fs.writeFileSync(path.join(runDir, 'metrics.jsonl'), '');
    }

    const sampler = new PatchSampler(store, { patchSize: cfg.patch, seed: cfg.seed, augment: { flip: true, transpose: true, intensity: opts.jitter ? ELEKTRONN_GREY_AUGMENT : false } });
    let model: tfType.LayersModel;
    const optimizer = tf.train.adam(cfg.lr);
    let step = 0;
    let skipped: string[] = [];
    if (opts.resume) {
      const found = await loadLatestCheckpoint(tf, runDir);
      skipped = found.skipped;
      for (const s of skipped) log(`skipped damaged checkpoint ${s}`);
      if (!found.point) throw new LazyLabelError('no usable checkpoint to resume from', { code: 'checkpoint-missing', file: runDir, hint: 'start over with --force' });
      model = found.point.model;
      step = found.point.state.step;
      await optimizer.setWeights(found.point.optimizerWeights);
      restoreAdamState(tf, optimizer, found.point.state.adam);
      sampler.rng.setState(found.point.state.rng as number[]);
      log(`resuming from ${path.basename(found.point.dir)} (step ${step})`);
    } else {
      model = buildUNet(cfg.unet);
    }
    const startStep = step;
    const totalSteps = Math.max(startStep, opts.steps ?? 200);
    const validEvery = opts.validEvery ?? Math.max(1, Math.min(100, Math.ceil(totalSteps / 4)));
    const checkpointEvery = opts.checkpointEvery ?? validEvery;
    const losses: number[] = [];
    let lastCheckpoint: string | null = listCheckpoints(runDir).at(-1) ?? null;
    let validation: ValidationResult | null = null;
    let stoppedBy: TrainReport['stoppedBy'] = 'steps';
    let message: string | undefined;
    let reference: number | null = null;
    const choice = chooseThreads(opts.threads ?? 'auto', backend.name, cfg.batch, cfg.unet, cfg.patch);
    const threads = choice.threads;
    log(`training on ${threads === 1 ? '1 thread' : `${threads} threads (main + ${threads - 1} worker${threads > 2 ? 's' : ''}, data-parallel over the batch of ${cfg.batch})`}${choice.why ? `: ${choice.why}` : ''}`);

    const checkpoint = async (): Promise<void> => {
      lastCheckpoint = await saveCheckpoint(tf, model, optimizer, runDir, { step, rng: sampler.rng.getState(), adam: adamState(optimizer) });
      await saveModel(tf, model, path.join(runDir, 'model'), { step, config: cfg });
      writePlot(runDir);
    };

    let pool: TrainPool | null = null;
    const poolStart = performance.now();
    if (threads > 1) {
      pool = await TrainPool.start({
        tf,
        backend: backend.name as 'wasm' | 'cpu', // chooseThreads gives more than 1 thread only for these
        model,
        unet: cfg.unet,
        patch: cfg.patch,
        nChannels: sampler.nChannels,
        loss: { normalisation: cfg.normalisation, classWeights: cfg.classWeights, lazyLabels: cfg.lazyLabels },
        threads,
      });
    }
    const t0 = performance.now();
    try {
      if (pool) log(`started ${threads - 1} training worker${threads > 2 ? 's' : ''} in ${((t0 - poolStart) / 1000).toFixed(1)} s`);
      while (step < totalSteps) {
        // give the event loop a turn: wasm work resolves as microtasks only, so without this a Ctrl-C would never be seen
        await new Promise((resolve) => setImmediate(resolve));
        if (opts.shouldStop?.()) {
          stoppedBy = 'interrupt';
          break;
        }
        const batch = await sampler.sampleBatch(cfg.batch);
        let loss: number;
        if (pool) {
          loss = await pool.step(batch, optimizer);
        } else {
          const lossTensor = tf.tidy(() => {
            const { x, y, opts: lossOpts } = lossInputs(tf, batch, cfg);
            return optimizer.minimize(() => lazyNll(model.apply(x, { training: true }) as tfType.Tensor, y, lossOpts), true) as tfType.Scalar;
          });
          loss = (await lossTensor.data())[0]!;
          lossTensor.dispose();
        }
        reference ??= Number.isFinite(loss) ? Math.max(loss, 1e-3) : null;
        if (!Number.isFinite(loss) || (reference !== null && loss > DIVERGENCE_FACTOR * reference)) {
          stoppedBy = 'divergence';
          message = `loss ${Number.isFinite(loss) ? `exploded to ${loss.toExponential(2)}` : 'became NaN'} at step ${step + 1}; kept the last good checkpoint${lastCheckpoint ? ` (${path.basename(lastCheckpoint)})` : ' (none yet)'}; lower --lr (now ${cfg.lr}) and --resume or start over`;
          break;
        }
        step++;
        losses.push(loss);
        const seconds = (performance.now() - t0) / 1000;
        const patchesPerSec = ((step - startStep) * cfg.batch) / Math.max(seconds, 1e-9);
        appendMetrics(runDir, { type: 'train', step, loss, patchesPerSec, redraws: batch.redraws, time: Date.now() });
        opts.onStep?.({ step, totalSteps, loss, patchesPerSec });
        if (step % validEvery === 0 || step === totalSteps) {
          const infer = pool ? pool.predict.bind(pool) : undefined;
          validation = (await validate(tf, model, store, cfg, step, opts.validBatches ?? 8, infer)) ?? validation;
          if (validation?.step === step) appendMetrics(runDir, { type: 'valid', ...validation });
        }
        if (step % checkpointEvery === 0 || step === totalSteps) await checkpoint();
      }
      if (stoppedBy === 'interrupt' && step > startStep && !lastCheckpoint?.endsWith(String(step).padStart(7, '0'))) await checkpoint();
    } finally {
      await pool?.close(); // on every exit path: live workers would keep the process from exiting
    }
    const seconds = (performance.now() - t0) / 1000;
    const tenth = Math.max(1, Math.floor(losses.length / 10));
    return {
      command: 'train',
      ok: stoppedBy === 'steps',
      backend: backend.name,
      backendDetail: backend.detail,
      nativeKernels: backend.nativeKernels,
      threads,
      runDir,
      modelDir: path.join(runDir, 'model'),
      startStep,
      step,
      stoppedBy,
      ...(message ? { message } : {}),
      firstLoss: losses[0] ?? null,
      lastLoss: losses.at(-1) ?? null,
      meanLossStart: mean(losses.slice(0, tenth)),
      meanLossEnd: mean(losses.slice(-tenth)),
      patchesPerSec: ((step - startStep) * cfg.batch) / Math.max(seconds, 1e-9),
      seconds,
      lastCheckpoint,
      skippedCheckpoints: skipped,
      validation,
    };
  } finally {
    store.close();
  }
}
