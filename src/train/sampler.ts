/**
 * Random training patches from a CubeStore, ELEKTRONN-style (elektronn/training/CNNData.py `getbatch`).
 *
 * * Cube: drawn with probability prio / sum(prios) over the training cubes (`valid` cubes never).
 * * Position: uniform over every start that keeps the patch inside the labels and the raw; both the
 *   first and the last start are reachable (ELEKTRONN's `randint(0, s - p)` never reached the last one).
 * * `example_ignore_threshold` (0 = off): a patch whose fraction of negative labels exceeds it is re-cut
 *   up to `withinCubeRetries` times in the same cube (ELEKTRONN's `_cutPatch`, 10); if it still
 *   exceeds it, a cube that flags some class not present keeps it, any other cube is dropped and a new
 *   cube is drawn. ELEKTRONN loops without bound there; here after `maxRedraws` cube draws the last
 *   patch is accepted and counted (`Batch.overThreshold`).
 * * Augmentation (training only): an x/y transpose with probability 1/2 when the x and y patch sizes
 *   are equal, then a mirror of each spatial axis with probability 1/2, applied identically to raw and
 *   labels (ELEKTRONN's `_randomFlip` with anisotropic data); optional intensity jitter on the raw
 *   (ELEKTRONN's `_greyAugment` is `ELEKTRONN_GREY_AUGMENT`).
 * * Deterministic: the same store, options and seed give the same batches, whatever the cache does.
 */
import { LazyLabelError } from '../errors.js';
import type { CubeMeta, CubeStore } from './cubes.js';
import { Rng } from './rng.js';

export interface IntensityJitter {
  /** Gain drawn from [1 - gain, 1 + gain] (default 0.15). */
  gain?: number;
  /** Bias drawn from [-bias, bias] (default 0.15). */
  bias?: number;
  /** Clip to [0, 1] after gain and bias (default false). */
  clip?: boolean;
  /** Then raise to a power 2^u, u uniform in [-1, 1] (default false; needs non-negative raw, so use with clip). */
  gamma?: boolean;
  /** Channels to jitter (default all); each channel gets its own draw. */
  channels?: number[];
}

/** ELEKTRONN's `_greyAugment`: contrast 1 ± 0.15, shift ± 0.15, clip to [0, 1], gamma in [0.5, 2]. */
export const ELEKTRONN_GREY_AUGMENT: IntensityJitter = { gain: 0.15, bias: 0.15, clip: true, gamma: true };

export interface AugmentOptions {
  /** Mirror each spatial axis with probability 1/2 (default true). */
  flip?: boolean;
  /** Swap x and y with probability 1/2, only when the x and y patch sizes are equal (default true). */
  transpose?: boolean;
  /** Intensity jitter on the raw (default off). */
  intensity?: IntensityJitter | false;
}

export interface SamplerOptions {
  /** Spatial patch size, one entry per label axis: (x, y) or (x, y, z). */
  patchSize: number[];
  seed: number;
  augment?: AugmentOptions;
  /** Override the manifest's `example_ignore_threshold` (0 = off). */
  ignoreThreshold?: number;
  /** Cube draws per patch before an over-threshold patch is accepted anyway (default 50). */
  maxRedraws?: number;
  /** Re-cuts inside the same cube before it is given up (default 10, ELEKTRONN's `_cutPatch`). */
  withinCubeRetries?: number;
}

export interface PatchAugmentation {
  /** Mirrored spatial axes (label axis order). */
  flips: boolean[];
  /** x and y swapped (before mirroring). */
  transposed: boolean;
  /** Per-channel intensity jitter applied as ((raw * gain + bias) clipped) ^ gamma; empty when off. */
  gain: number[];
  bias: number[];
  gamma: number[];
}

export interface Batch {
  /** [batch, ...patchSize, ch], channels-last. */
  raw: Float32Array;
  /** [batch, ...patchSize]; negative = ignore. */
  labels: Int32Array;
  /** [batch][n_lab] 0/1 from each patch's cube (ELEKTRONN info row 0). */
  maskClassLabeled: number[][];
  /** [batch][n_lab] 0/1 from each patch's cube (ELEKTRONN info row 1). */
  maskClassNotPresent: number[][];
  /** Store/manifest index of each patch's cube. */
  cubeIndices: number[];
  /** Label-coordinate start of each patch in its cube (before augmentation). */
  starts: number[][];
  augmentations: PatchAugmentation[];
  /** Patches cut and rejected for the ignore threshold while filling this batch. */
  redraws: number;
  /** Patches accepted over the threshold after `maxRedraws` cube draws. */
  overThreshold: number;
  patchSize: number[];
  nChannels: number;
}

export interface SamplerStats {
  patches: number;
  redraws: number;
  overThreshold: number;
  /** Over-threshold patches kept because their cube flags a class not present. */
  keptNotPresent: number;
}

/** Normalised sampling probabilities; prios must be finite, >= 0, with a positive sum. */
export function cubeProbabilities(prios: readonly number[]): number[] {
  if (prios.length === 0) throw new RangeError('no cubes to sample from');
  let sum = 0;
  for (const p of prios) {
    if (!Number.isFinite(p) || p < 0) throw new RangeError(`cube priorities must be finite and >= 0, got ${p}`);
    sum += p;
  }
  if (!(sum > 0)) throw new RangeError('cube priorities sum to 0: no cube can be drawn');
  return prios.map((p) => p / sum);
}

/** Fraction of negative (ignored) labels. */
export function ignoredFraction(labels: Int32Array): number {
  let n = 0;
  for (let i = 0; i < labels.length; i++) if (labels[i]! < 0) n++;
  return labels.length === 0 ? 0 : n / labels.length;
}

const prod = (a: readonly number[]): number => a.reduce((x, y) => x * y, 1);

function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

/**
 * out[c] = in[src(c)] with src(c) = transpose(mirror(c)): the patch transposed in x/y, then mirrored.
 * Writes raw (ch values per voxel) and labels of one patch into the batch arrays at the given offsets.
 */
export function applyGeometry(
  raw: Float32Array, labels: Int32Array, size: readonly number[], ch: number, aug: Pick<PatchAugmentation, 'flips' | 'transposed'>,
  rawOut: Float32Array, rawAt: number, labOut: Int32Array, labAt: number,
): void {
  const nd = size.length;
  if (aug.transposed && size[0] !== size[1]) throw new RangeError('transpose needs equal x and y patch sizes');
  if (!aug.transposed && !aug.flips.some(Boolean)) {
    rawOut.set(raw, rawAt);
    labOut.set(labels, labAt);
    return;
  }
  const st = stridesOf(size);
  // Per output axis: which source axis it reads, and that axis's stride and mirror.
  const srcAxis = size.map((_, a) => (aug.transposed && a < 2 ? 1 - a : a));
  const c = new Array<number>(nd).fill(0);
  const n = prod(size);
  for (let o = 0; o < n; o++) {
    let s = 0;
    for (let a = 0; a < nd; a++) {
      const m = aug.flips[a] ? size[a]! - 1 - c[a]! : c[a]!;
      s += m * st[srcAxis[a]!]!;
    }
    labOut[labAt + o] = labels[s]!;
    if (ch === 1) rawOut[rawAt + o] = raw[s]!;
    else for (let k = 0; k < ch; k++) rawOut[rawAt + o * ch + k] = raw[s * ch + k]!;
    for (let a = nd - 1; a >= 0; a--) {
      if (++c[a]! < size[a]!) break;
      c[a] = 0;
    }
  }
}

function jitter(raw: Float32Array, at: number, voxels: number, ch: number, aug: PatchAugmentation, channels: readonly number[], clip: boolean): void {
  channels.forEach((k, j) => {
    const g = aug.gain[j]!;
    const b = aug.bias[j]!;
    const gm = aug.gamma[j] ?? 1;
    for (let v = 0; v < voxels; v++) {
      const i = at + v * ch + k;
      let x = raw[i]! * g + b;
      if (clip) x = x < 0 ? 0 : x > 1 ? 1 : x;
      if (gm !== 1) x = Math.pow(x, gm);
      raw[i] = x;
    }
  });
}

function patchFits(cube: CubeMeta, size: readonly number[]): boolean {
  return size.every((p, i) => p <= cube.hi[i]! - cube.lo[i]!);
}

function checkPatchSize(cubes: readonly CubeMeta[], size: readonly number[]): void {
  if (!size.every((p) => Number.isInteger(p) && p >= 1)) throw new RangeError(`patch size must be positive integers, got [${size.join(', ')}]`);
  for (const cube of cubes) {
    if (cube.labelShape.length !== size.length) {
      throw new LazyLabelError(`patch size [${size.join(', ')}] is ${size.length}-D but cube '${cube.name}' has ${cube.labelShape.length}-D labels`, {
        code: 'patch-size', file: cube.labelFile, dataset: cube.labelKey, hint: 'give one patch size per label axis',
      });
    }
    if (!patchFits(cube, size)) {
      const usable = cube.hi.map((h, i) => h - cube.lo[i]!);
      throw new LazyLabelError(`patch size [${size.join(', ')}] does not fit cube '${cube.name}' (labels with raw under them: [${usable.join(', ')}])`, {
        code: 'patch-size', file: cube.labelFile, dataset: cube.labelKey, hint: 'use a smaller patch size, or leave the cube out of the manifest',
      });
    }
  }
}

const maskRow = (flags: readonly boolean[]): number[] => flags.map((f) => (f ? 1 : 0));

interface Cut {
  cube: number;
  start: number[];
  labels: Int32Array;
}

export class PatchSampler {
  readonly patchSize: number[];
  readonly nChannels: number;
  /** Store indices of the training cubes (not `valid`, prio > 0), and their probabilities. */
  readonly trainCubes: number[];
  readonly probabilities: number[];
  readonly ignoreThreshold: number;
  /** Whether x/y transposes happen (requested and x, y patch sizes equal). */
  readonly transposeEnabled: boolean;
  readonly flipEnabled: boolean;
  readonly intensity: IntensityJitter | null;
  readonly rng: Rng;
  private readonly cumulative: number[];
  private readonly maxRedraws: number;
  private readonly withinCubeRetries: number;
  private readonly counters: SamplerStats = { patches: 0, redraws: 0, overThreshold: 0, keptNotPresent: 0 };

  constructor(private readonly store: CubeStore, opts: SamplerOptions) {
    this.patchSize = [...opts.patchSize];
    const candidates = store.cubes.filter((c) => !c.valid && c.prio > 0);
    if (candidates.length === 0) {
      throw new LazyLabelError('no training cubes: every cube is a validation cube or has prio 0', { code: 'no-training-cubes', hint: 'mark at least one cube as not valid, with a positive prio' });
    }
    checkPatchSize(candidates, this.patchSize);
    const channels = new Set(store.cubes.map((c) => c.nChannels));
    if (channels.size !== 1) {
      throw new LazyLabelError(`cubes have different raw channel counts (${[...channels].join(', ')})`, { code: 'raw-channels', hint: 'every raw volume must have the same number of channels' });
    }
    this.nChannels = store.cubes[0]!.nChannels;
    this.trainCubes = candidates.map((c) => c.index);
    this.probabilities = cubeProbabilities(candidates.map((c) => c.prio));
    this.cumulative = [];
    let acc = 0;
    for (const p of this.probabilities) this.cumulative.push((acc += p));
    this.ignoreThreshold = opts.ignoreThreshold ?? store.exampleIgnoreThreshold;
    if (!(this.ignoreThreshold >= 0 && this.ignoreThreshold <= 1)) throw new RangeError(`ignore threshold must be in [0, 1], got ${this.ignoreThreshold}`);
    this.maxRedraws = Math.max(1, opts.maxRedraws ?? 50);
    this.withinCubeRetries = Math.max(0, opts.withinCubeRetries ?? 10);
    const aug = opts.augment ?? {};
    this.flipEnabled = aug.flip ?? true;
    this.transposeEnabled = (aug.transpose ?? true) && this.patchSize.length >= 2 && this.patchSize[0] === this.patchSize[1];
    this.intensity = aug.intensity ? { ...aug.intensity } : null;
    if (this.intensity?.channels?.some((k) => !Number.isInteger(k) || k < 0 || k >= this.nChannels)) {
      throw new RangeError(`intensity channels [${this.intensity.channels.join(', ')}] out of range for ${this.nChannels} channel(s)`);
    }
    this.rng = new Rng(opts.seed);
  }

  stats(): SamplerStats {
    return { ...this.counters };
  }

  /** A training cube index, drawn with probability proportional to its prio. */
  drawCube(): number {
    const u = this.rng.next();
    const cum = this.cumulative;
    let lo = 0;
    let hi = cum.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (u < cum[mid]!) hi = mid;
      else lo = mid + 1;
    }
    // Rounding can leave the last cumulative just below 1: fall back to the last cube with weight.
    let i = lo;
    while (this.probabilities[i] === 0 && i > 0) i--;
    return this.trainCubes[i]!;
  }

  /** A uniform start (label coordinates) such that the patch lies inside the cube's usable box. */
  drawPosition(cubeIndex: number): number[] {
    const cube = this.store.cubes[cubeIndex]!;
    return this.patchSize.map((p, i) => this.rng.intBetween(cube.lo[i]!, cube.hi[i]! - p));
  }

  private drawAugmentation(): PatchAugmentation {
    const transposed = this.transposeEnabled ? this.rng.bool() : false;
    const flips = this.patchSize.map(() => (this.flipEnabled ? this.rng.bool() : false));
    const aug: PatchAugmentation = { flips, transposed, gain: [], bias: [], gamma: [] };
    const j = this.intensity;
    if (j) {
      const channels = j.channels ?? Array.from({ length: this.nChannels }, (_, k) => k);
      for (let n = 0; n < channels.length; n++) {
        aug.gain.push(1 + this.rng.uniform(-1, 1) * (j.gain ?? 0.15));
        aug.bias.push(this.rng.uniform(-1, 1) * (j.bias ?? 0.15));
        aug.gamma.push(j.gamma ? Math.pow(2, this.rng.uniform(-1, 1)) : 1);
      }
    }
    return aug;
  }

  /** One accepted cut (cube, start, labels), applying the ignore threshold. */
  private cut(): { cut: Cut; redraws: number; over: boolean } {
    const thresh = this.ignoreThreshold;
    let redraws = 0;
    for (let draw = 1; ; draw++) {
      const cube = this.drawCube();
      const meta = this.store.cubes[cube]!;
      for (let it = 0; ; it++) {
        const start = this.drawPosition(cube);
        const labels = this.store.readLabelsSync(cube, start, this.patchSize);
        if (thresh === 0 || ignoredFraction(labels) <= thresh) return { cut: { cube, start, labels }, redraws, over: false };
        if (it < this.withinCubeRetries) {
          redraws++;
          continue;
        }
        if (meta.info.notPresent.some(Boolean)) {
          this.counters.keptNotPresent++;
          return { cut: { cube, start, labels }, redraws, over: false };
        }
        if (draw >= this.maxRedraws) return { cut: { cube, start, labels }, redraws, over: true };
        redraws++;
        break;
      }
    }
  }

  /** A training batch: prio-weighted cubes, uniform positions, ignore threshold, augmentation. */
  async sampleBatch(batchSize: number): Promise<Batch> {
    return this.sampleBatchSync(batchSize);
  }

  sampleBatchSync(batchSize: number): Batch {
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batch size must be a positive integer, got ${batchSize}`);
    const ps = this.patchSize;
    const voxels = prod(ps);
    const ch = this.nChannels;
    const batch = emptyBatch(batchSize, ps, ch);
    const channels = this.intensity?.channels ?? Array.from({ length: ch }, (_, k) => k);
    for (let b = 0; b < batchSize; b++) {
      const { cut, redraws, over } = this.cut();
      const aug = this.drawAugmentation();
      const raw = this.store.readRawSync(cut.cube, cut.start, ps);
      applyGeometry(raw, cut.labels, ps, ch, aug, batch.raw, b * voxels * ch, batch.labels, b * voxels);
      if (this.intensity) jitter(batch.raw, b * voxels * ch, voxels, ch, aug, channels, this.intensity.clip ?? false);
      const info = this.store.cubes[cut.cube]!.info;
      batch.maskClassLabeled.push(maskRow(info.labeled));
      batch.maskClassNotPresent.push(maskRow(info.notPresent));
      batch.cubeIndices.push(cut.cube);
      batch.starts.push(cut.start);
      batch.augmentations.push(aug);
      batch.redraws += redraws;
      if (over) batch.overThreshold++;
      this.counters.patches++;
      this.counters.redraws += redraws;
      if (over) this.counters.overThreshold++;
    }
    return batch;
  }

  /** Deterministic validation batches over the `valid` cubes (see `validationBatches`). */
  validationBatches(batchSize: number): AsyncGenerator<Batch> {
    return validationBatches(this.store, { patchSize: this.patchSize, batchSize });
  }
}

function emptyBatch(batchSize: number, ps: readonly number[], ch: number): Batch {
  const voxels = prod(ps);
  return {
    raw: new Float32Array(batchSize * voxels * ch),
    labels: new Int32Array(batchSize * voxels),
    maskClassLabeled: [],
    maskClassNotPresent: [],
    cubeIndices: [],
    starts: [],
    augmentations: [],
    redraws: 0,
    overThreshold: 0,
    patchSize: [...ps],
    nChannels: ch,
  };
}

/** Grid starts along one axis covering [lo, hi) with tiles of p: lo, lo+p, ..., and hi-p last (may overlap). */
function gridStarts(lo: number, hi: number, p: number): number[] {
  const out: number[] = [];
  for (let s = lo; s + p <= hi; s += p) out.push(s);
  if (out[out.length - 1]! + p < hi) out.push(hi - p);
  return out;
}

/**
 * Every validation patch, in a fixed order: valid cubes in manifest order, then a grid of starts
 * (C order) tiling each cube's usable box; the last tile on an axis is moved back to end at the box's
 * edge, so every voxel is covered (some twice).
 */
export function validationPositions(store: CubeStore, patchSize: readonly number[]): { cubeIndex: number; start: number[] }[] {
  const cubes = store.cubes.filter((c) => c.valid);
  checkPatchSize(cubes, patchSize);
  const out: { cubeIndex: number; start: number[] }[] = [];
  for (const cube of cubes) {
    const axes = patchSize.map((p, i) => gridStarts(cube.lo[i]!, cube.hi[i]!, p));
    const idx = axes.map(() => 0);
    for (;;) {
      out.push({ cubeIndex: cube.index, start: axes.map((a, i) => a[idx[i]!]!) });
      let a = axes.length - 1;
      for (; a >= 0; a--) {
        if (++idx[a]! < axes[a]!.length) break;
        idx[a] = 0;
      }
      if (a < 0) break;
    }
  }
  return out;
}

/** Validation batches (no augmentation, no ignore threshold); the last batch may be smaller. */
export async function* validationBatches(store: CubeStore, opts: { patchSize: readonly number[]; batchSize: number }): AsyncGenerator<Batch> {
  const { patchSize, batchSize } = opts;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batch size must be a positive integer, got ${batchSize}`);
  const positions = validationPositions(store, patchSize);
  const cubes = store.cubes.filter((c) => c.valid);
  if (cubes.length === 0) return;
  const ch = cubes[0]!.nChannels;
  const voxels = prod(patchSize);
  for (let first = 0; first < positions.length; first += batchSize) {
    const chunk = positions.slice(first, first + batchSize);
    const batch = emptyBatch(chunk.length, patchSize, ch);
    chunk.forEach(({ cubeIndex, start }, b) => {
      const cube = store.cubes[cubeIndex]!;
      if (cube.nChannels !== ch) throw new LazyLabelError(`validation cubes have different raw channel counts`, { code: 'raw-channels', file: cube.rawFile });
      const patch = store.readPatchSync(cubeIndex, start, patchSize);
      batch.raw.set(patch.raw, b * voxels * ch);
      batch.labels.set(patch.labels, b * voxels);
      batch.maskClassLabeled.push(maskRow(cube.info.labeled));
      batch.maskClassNotPresent.push(maskRow(cube.info.notPresent));
      batch.cubeIndices.push(cubeIndex);
      batch.starts.push(start);
      batch.augmentations.push({ flips: patchSize.map(() => false), transposed: false, gain: [], bias: [], gamma: [] });
    });
    yield batch;
  }
}
