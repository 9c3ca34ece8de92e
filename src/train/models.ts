/** 2D/3D U-Nets (tfjs layers, channels last, softmax output) for dense labelling, with patch-shape checks. */
import * as tf from '@tensorflow/tfjs';
import { ExitCode, LazyLabelError } from '../errors.js';

export interface UNetConfig {
  dims: 2 | 3;
  /** Number of labels (softmax channels). */
  nLab: number;
  inChannels: number;
  /** Number of pooling steps; the network has depth + 1 resolution levels. */
  depth: number;
  /** Filters at the finest level; doubled at every coarser level. */
  baseFilters: number;
  /** 3D only: the first k levels pool only in-plane, i.e. pool (1,2,2) over (z,y,x) (for anisotropic voxels). */
  anisotropicLevels?: number;
  /** Seed for the weight initialisers, for reproducible runs; random when absent. */
  seed?: number;
}

/**
 * Pool factors per level, each over the spatial axes ((y,x) or (z,y,x)). Level l < anisotropicLevels
 * keeps z, the others halve every axis.
 */
export function poolFactors(cfg: UNetConfig): number[][] {
  const k = cfg.dims === 3 ? (cfg.anisotropicLevels ?? 0) : 0;
  const out: number[][] = [];
  for (let l = 0; l < cfg.depth; l++) {
    out.push(cfg.dims === 2 ? [2, 2] : l < k ? [1, 2, 2] : [2, 2, 2]);
  }
  return out;
}

/**
 * What every patch axis must be a multiple of: the product of its pool factors, i.e. 2^depth in-plane
 * and 2^(depth - min(anisotropicLevels, depth)) along z. Then every pooling divides evenly and each
 * upsampled map has exactly the shape of its skip connection, so the output is as large as the input.
 */
export function requiredMultiples(cfg: UNetConfig): number[] {
  const m = new Array<number>(cfg.dims).fill(1);
  for (const f of poolFactors(cfg)) f.forEach((v, i) => (m[i] *= v));
  return m;
}

/** Returns what is wrong with a UNetConfig, or null. */
export function checkConfig(cfg: UNetConfig): string | null {
  const isInt = (v: unknown, min: number) => typeof v === 'number' && Number.isInteger(v) && v >= min;
  if (cfg.dims !== 2 && cfg.dims !== 3) return `dims must be 2 or 3, got ${String(cfg.dims)}`;
  if (!isInt(cfg.nLab, 2)) return `nLab must be an integer >= 2 (softmax over labels), got ${cfg.nLab}`;
  if (!isInt(cfg.inChannels, 1)) return `inChannels must be an integer >= 1, got ${cfg.inChannels}`;
  if (!isInt(cfg.depth, 0)) return `depth must be an integer >= 0, got ${cfg.depth}`;
  if (!isInt(cfg.baseFilters, 1)) return `baseFilters must be an integer >= 1, got ${cfg.baseFilters}`;
  if (cfg.seed !== undefined && !Number.isFinite(cfg.seed)) return `seed must be a finite number, got ${cfg.seed}`;
  if (cfg.anisotropicLevels !== undefined) {
    if (cfg.dims !== 3) return 'anisotropicLevels only applies to 3D U-Nets';
    if (!isInt(cfg.anisotropicLevels, 0) || cfg.anisotropicLevels > cfg.depth) {
      return `anisotropicLevels must be an integer in 0..depth (${cfg.depth}), got ${cfg.anisotropicLevels}`;
    }
  }
  return null;
}

/**
 * Checks a spatial patch shape ((y,x) for 2D, (z,y,x) for 3D; no batch or channel axes) against the
 * network. Returns an error message, or null when the patch fits.
 */
export function checkPatchShape(cfg: UNetConfig, patch: number[]): string | null {
  const bad = checkConfig(cfg);
  if (bad) return `invalid U-Net config: ${bad}`;
  const axes = cfg.dims === 2 ? ['y', 'x'] : ['z', 'y', 'x'];
  if (patch.length !== cfg.dims) {
    return `patch shape [${patch.join(', ')}] must have ${cfg.dims} spatial axes (${axes.join(', ')}) for a ${cfg.dims}D U-Net`;
  }
  const mult = requiredMultiples(cfg);
  const problems: string[] = [];
  patch.forEach((p, i) => {
    if (!Number.isInteger(p) || p < 1) {
      problems.push(`${axes[i]}=${p} is not a positive integer`);
    } else if (p % mult[i] !== 0) {
      const lo = Math.floor(p / mult[i]) * mult[i];
      const hi = lo + mult[i];
      const near = lo > 0 ? `${lo} or ${hi}` : `${hi}`;
      problems.push(`${axes[i]}=${p} is not a multiple of ${mult[i]} (try ${near})`);
    }
  });
  if (problems.length === 0) return null;
  const why = cfg.dims === 3 && (cfg.anisotropicLevels ?? 0) > 0
    ? `depth ${cfg.depth} with ${cfg.anisotropicLevels} in-plane-only poolings needs multiples of [${mult.join(', ')}]`
    : `depth ${cfg.depth} needs multiples of [${mult.join(', ')}]`;
  return `patch shape [${patch.join(', ')}] does not fit the U-Net: ${problems.join('; ')}; ${why}`;
}

/**
 * Nearest-neighbour upsampling by integer factors over the spatial axes of a channels-last tensor.
 * Built from reshape + concat (each axis: [pre, 1, post] -> f copies -> [pre, f, post]) because those
 * have kernels and gradients on every backend; tfjs has no UpSampling3D and Conv3DTranspose has no
 * gradient for its input in tfjs 4.x, so it cannot be trained.
 */
export class UpSamplingND extends tf.layers.Layer {
  static className = 'LazyLabelUpSampling';
  readonly factors: number[];

  constructor(args: { factors: number[]; name?: string; trainable?: boolean }) {
    super(args);
    this.factors = [...args.factors];
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    const s = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    return s.map((v, i) => {
      const f = i >= 1 && i <= this.factors.length ? this.factors[i - 1] : 1;
      return v == null ? null : v * f;
    });
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      let x = Array.isArray(inputs) ? inputs[0] : inputs;
      this.factors.forEach((f, i) => {
        if (f === 1) return;
        const axis = i + 1;
        const shape = x.shape;
        const pre = shape.slice(0, axis + 1).reduce((a, b) => a * b, 1);
        const post = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
        const x3 = tf.reshape(x, [pre, 1, post]);
        const rep = tf.concat(new Array<tf.Tensor>(f).fill(x3), 1);
        const outShape = [...shape];
        outShape[axis] *= f;
        x = tf.reshape(rep, outShape);
      });
      return x;
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), factors: this.factors };
  }
}
tf.serialization.registerClass(UpSamplingND);

/**
 * Each layer's own seed, so layers differ. Never 0: tfjs takes a seed of 0 as "no seed" (random init), which
 * made the first layer of every `--seed 0` run (the default) irreproducible.
 */
function layerSeed(seed: number, layer: number): number {
  const s = seed + 7919 * (layer + 1);
  return s !== 0 ? s : 1;
}

/** He-normal init (suits ReLU), seeded per layer. */
function heNormal(seed: number | undefined, layer: number): ReturnType<typeof tf.initializers.heNormal> {
  return tf.initializers.heNormal(seed === undefined ? {} : { seed: layerSeed(seed, layer) });
}

function convBlock(x: tf.SymbolicTensor, dims: 2 | 3, filters: number, name: string, seed: number | undefined, layerNo: () => number): tf.SymbolicTensor {
  for (const i of [1, 2]) {
    const args = { filters, kernelSize: 3, padding: 'same' as const, activation: 'relu' as const, kernelInitializer: heNormal(seed, layerNo()), name: `${name}_conv${i}` };
    const layer = dims === 2 ? tf.layers.conv2d(args) : tf.layers.conv3d(args);
    x = layer.apply(x) as tf.SymbolicTensor;
  }
  return x;
}

/**
 * A U-Net: per level two 3x3(x3) 'same' convs with ReLU, max pooling down, nearest upsampling +
 * concatenation with the skip connection up, then a 1x1(x1) conv with softmax over nLab labels.
 * Spatial input axes are left free (null), so any patch that passes checkPatchShape works and gives
 * an output of the same spatial shape: [batch, (z,) y, x, nLab].
 */
export function buildUNet(cfg: UNetConfig): tf.LayersModel {
  const bad = checkConfig(cfg);
  if (bad) throw new LazyLabelError(`invalid U-Net config: ${bad}`, { code: 'model-config', exitCode: ExitCode.usage });
  const { dims } = cfg;
  const input = tf.input({ shape: [...new Array<null>(dims).fill(null), cfg.inChannels], name: 'input' });
  const pools = poolFactors(cfg);
  let layers = 0;
  const layerNo = () => layers++;
  const skips: tf.SymbolicTensor[] = [];
  let x = input;
  for (let l = 0; l < cfg.depth; l++) {
    x = convBlock(x, dims, cfg.baseFilters * 2 ** l, `down${l}`, cfg.seed, layerNo);
    skips.push(x);
    const poolArgs = { poolSize: pools[l], strides: pools[l], padding: 'valid' as const, name: `down${l}_pool` };
    const pool = dims === 2
      ? tf.layers.maxPooling2d(poolArgs as Parameters<typeof tf.layers.maxPooling2d>[0])
      : tf.layers.maxPooling3d(poolArgs as Parameters<typeof tf.layers.maxPooling3d>[0]);
    x = pool.apply(x) as tf.SymbolicTensor;
  }
  x = convBlock(x, dims, cfg.baseFilters * 2 ** cfg.depth, 'bottom', cfg.seed, layerNo);
  for (let l = cfg.depth - 1; l >= 0; l--) {
    x = new UpSamplingND({ factors: pools[l], name: `up${l}_upsample` }).apply(x) as tf.SymbolicTensor;
    x = tf.layers.concatenate({ axis: -1, name: `up${l}_concat` }).apply([skips[l], x]) as tf.SymbolicTensor;
    x = convBlock(x, dims, cfg.baseFilters * 2 ** l, `up${l}`, cfg.seed, layerNo);
  }
  const headInit = tf.initializers.glorotUniform(cfg.seed === undefined ? {} : { seed: layerSeed(cfg.seed, layerNo()) });
  const headArgs = { filters: cfg.nLab, kernelSize: 1, activation: 'softmax' as const, kernelInitializer: headInit, name: 'probs' };
  const head = dims === 2 ? tf.layers.conv2d(headArgs) : tf.layers.conv3d(headArgs);
  const output = head.apply(x) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: output, name: `unet${dims}d` });
}

/** model.summary() as a string (tfjs prints it by default). */
export function modelSummary(model: tf.LayersModel, lineLength = 110): string {
  const lines: string[] = [];
  model.summary(lineLength, undefined, (...msg: unknown[]) => lines.push(msg.map(String).join(' ')));
  return lines.join('\n');
}
