/** Training data side: CubeStore (lazy, memory-bounded cube loading) and PatchSampler (ELEKTRONN-style patches). */
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { parseManifest, type Manifest } from '../src/core/manifest.js';
import { LazyLabelError } from '../src/errors.js';
import { CubeStore } from '../src/train/cubes.js';
import { Rng } from '../src/train/rng.js';
import { cubeProbabilities, ELEKTRONN_GREY_AUGMENT, ignoredFraction, PatchSampler, validationBatches, validationPositions, type Batch } from '../src/train/sampler.js';
import { fixture } from './helpers.js';

interface Expected {
  coords3d: { labelShape: number[]; rawShape: number[]; offset: number[]; nChannels: number };
  coords_centered: { labelShape: number[]; rawShape: number[]; offset: number[]; nChannels: number };
  uint8_3d: { shape: number[]; raw: number[]; labels: number[] };
  float_2d: { shape: number[]; raw: number[]; labels: number[] };
  mostly_ignore: { ignoredFraction: number };
  big: { shape: number[]; bytes: number; patch: { start: number[]; size: number[]; raw: number[]; labels: number[] } };
}
const expected = JSON.parse(fs.readFileSync(fixture('train', 'expected.json'), 'utf8')) as Expected;

type CubeJson = Record<string, unknown> & { label: string };
function manifest(cubes: CubeJson[], extra: Record<string, unknown> = {}): Manifest {
  const { manifest: m, findings } = parseManifest({ n_lab: 4, cubes, ...extra }, fixture('train', 'manifest.json'));
  if (!m) throw new Error(findings.map((f) => f.message).join('; '));
  return m;
}

const stores: CubeStore[] = [];
async function open(m: Manifest, cacheMB = 64): Promise<CubeStore> {
  const s = await CubeStore.open(m, { cacheMB });
  stores.push(s);
  return s;
}
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

/** The fixture script's label formula: ((7x + 3y + 5z) mod 5) - 1. */
const coordLabel = (c: readonly number[]): number => ([7, 3, 5].slice(0, c.length).reduce((a, w, i) => a + w * c[i]!, 0) % 5) - 1;
const prod = (a: readonly number[]): number => a.reduce((x, y) => x * y, 1);

/** Visit every voxel of a box in C order. */
function* coords(size: readonly number[]): Generator<number[]> {
  const c = size.map(() => 0);
  for (let n = 0; n < prod(size); n++) {
    yield [...c];
    for (let a = size.length - 1; a >= 0; a--) {
      if (++c[a]! < size[a]!) break;
      c[a] = 0;
    }
  }
}

/** Upper-tail chi-square critical values at p = 0.001, by degrees of freedom. */
const CHI2_CRIT_0_001: Record<number, number> = { 1: 10.828, 2: 13.816, 3: 16.266, 4: 18.467, 5: 20.515 };

const smallCubes = (prios: number[], validIndex: number): CubeJson[] =>
  prios.map((prio, i) => ({ name: `s${i}`, label: `small_${i}.h5`, raw: `small_${i}.h5`, prio, valid: i === validIndex }));

describe('Rng', () => {
  it('is deterministic under a seed, differs across seeds, and int(n) is in range and roughly uniform', () => {
    const a = new Rng(7);
    const b = new Rng(7);
    const c = new Rng(8);
    const xs = Array.from({ length: 100 }, () => a.next());
    expect(Array.from({ length: 100 }, () => b.next())).toEqual(xs);
    expect(Array.from({ length: 100 }, () => c.next())).not.toEqual(xs);
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    const r = new Rng(1);
    const counts = [0, 0, 0, 0, 0, 0, 0];
    for (let i = 0; i < 70_000; i++) counts[r.int(7)]!++;
    const chi2 = counts.reduce((s, n) => s + (n - 10_000) ** 2 / 10_000, 0);
    expect(chi2).toBeLessThan(22.458); // df = 6, p = 0.001
    const state = r.getState();
    const next = [r.nextUint32(), r.nextUint32()];
    r.setState(state);
    expect([r.nextUint32(), r.nextUint32()]).toEqual(next);
  });
});

describe('CubeStore: metadata, offsets, dtypes', () => {
  it('reads shapes, channels, offsets (given, and centred by default) and default prios without reading voxels', async () => {
    const store = await open(manifest([
      { name: 'c3', label: 'coords3d.h5', raw: 'coords3d_raw.h5', offset: [2, 3, 1] },
      { name: 'cc', label: 'coords_centered.h5' }, // no raw file: the label file's 'raw'
      { name: 'c2', label: 'coords2d.h5', raw: 'coords2d.h5', prio: 2.5 },
    ]));
    const [c3, cc, c2] = store.cubes;
    expect(c3).toMatchObject({ labelShape: expected.coords3d.labelShape, rawShape: expected.coords3d.rawShape, offset: expected.coords3d.offset, nChannels: 3, rawHasChannelAxis: true, lo: [0, 0, 0], hi: [10, 12, 8] });
    expect(cc).toMatchObject({ labelShape: expected.coords_centered.labelShape, rawShape: expected.coords_centered.rawShape, offset: expected.coords_centered.offset, nChannels: 1, rawHasChannelAxis: false });
    expect(c2).toMatchObject({ labelShape: [12, 12], nChannels: 2, offset: [0, 0], prio: 2.5 });
    // ELEKTRONN default prio: the label voxel count
    expect(c3!.prio).toBe(10 * 12 * 8);
    expect(cc!.prio).toBe(6 * 6 * 4);
    expect(store.stats().wholeLoads).toBe(0);
  });

  it('uint8 raw is divided by 255 and int64 labels become int32, equal to the h5py values', async () => {
    const store = await open(manifest([{ label: 'uint8_3d.h5', raw: 'uint8_3d.h5' }]));
    const exp = expected.uint8_3d;
    const p = await store.readPatch(0, [0, 0, 0], exp.shape);
    expect(store.cubes[0]!.rawDivisor).toBe(255);
    expect(Array.from(p.raw)).toEqual(exp.raw);
    expect(p.labels).toBeInstanceOf(Int32Array);
    expect(Array.from(p.labels)).toEqual(exp.labels);
    expect(Math.max(...p.raw)).toBeLessThanOrEqual(1);
  });

  it('float raw is kept (channels-last), int8 labels become int32, 2D', async () => {
    const store = await open(manifest([{ label: 'float_2d.h5', raw: 'float_2d.h5' }]));
    const exp = expected.float_2d;
    const p = await store.readPatch(0, [0, 0], exp.shape);
    expect(store.cubes[0]!.rawDivisor).toBe(1);
    expect(store.cubes[0]!.nChannels).toBe(2);
    expect(Array.from(p.raw)).toEqual(exp.raw);
    expect(Array.from(p.labels)).toEqual(exp.labels);
    // a sub-box is the same values, whether cached or read from disk
    const direct = await open(manifest([{ label: 'float_2d.h5', raw: 'float_2d.h5' }]), 0);
    const a = await store.readPatch(0, [2, 3], [4, 5]);
    const b = await direct.readPatch(0, [2, 3], [4, 5]);
    expect(Array.from(b.raw)).toEqual(Array.from(a.raw));
    expect(Array.from(b.labels)).toEqual(Array.from(a.labels));
    expect(direct.stats()).toMatchObject({ wholeLoads: 0, directReads: 2 });
    expect(Array.from(a.raw.slice(0, 2))).toEqual(exp.raw.slice((2 * 10 + 3) * 2, (2 * 10 + 3) * 2 + 2));
  });

  it('reads info only with lazy_labels, else the all-labelled default', async () => {
    const cubes = [{ label: 'mostly_ignore_np.h5', raw: 'mostly_ignore_np.h5' }];
    const lazy = await open(manifest(cubes, { lazy_labels: true, n_lab: 3 }));
    expect(lazy.cubes[0]!.info).toMatchObject({ labeled: [true, true, false], notPresent: [false, false, true], source: 'file' });
    const dense = await open(manifest(cubes, { n_lab: 3 }));
    expect(dense.cubes[0]!.info).toMatchObject({ labeled: [true, true, true], notPresent: [false, false, false], source: 'default' });
  });

  it('rejects a patch outside the usable box, and names a missing raw', async () => {
    const store = await open(manifest([{ label: 'coords3d.h5', raw: 'coords3d_raw.h5', offset: [5, 3, 1] }]));
    expect(store.cubes[0]!.hi).toEqual([9, 12, 8]); // raw ends at x = 14 = 5 + 9
    expect(() => store.readPatchSync(0, [6, 0, 0], [4, 4, 4])).toThrow(RangeError);
    expect(() => store.readPatchSync(0, [-1, 0, 0], [4, 4, 4])).toThrow(RangeError);
    await expect(CubeStore.open(manifest([{ label: 'coords3d.h5' }]))).rejects.toMatchObject({ code: 'raw-missing' });
  });
});

describe('CubeStore: cache bound', () => {
  it('never loads a cube bigger than cacheMB whole: patches are read from disk, values as h5py wrote them', async () => {
    const exp = expected.big;
    const store = await open(manifest([{ label: 'big.h5', raw: 'big.h5' }]), 0.25);
    expect(store.cubes[0]!.bytes).toBe(exp.bytes);
    expect(store.cubes[0]!.bytes).toBeGreaterThan(store.cacheBytes);
    const p = await store.readPatch(0, exp.patch.start, exp.patch.size);
    expect(Array.from(p.raw)).toEqual(exp.patch.raw);
    expect(Array.from(p.labels)).toEqual(exp.patch.labels);
    const sampler = new PatchSampler(store, { patchSize: [8, 8, 8], seed: 3 });
    await sampler.sampleBatch(20);
    expect(store.stats()).toMatchObject({ wholeLoads: 0, cacheHits: 0, directReads: 2 + 40, cachedBytes: 0, peakCachedBytes: 0 });

    const cached = await open(manifest([{ label: 'big.h5', raw: 'big.h5' }]), 1);
    const q = await cached.readPatch(0, exp.patch.start, exp.patch.size);
    expect(Array.from(q.raw)).toEqual(exp.patch.raw);
    expect(Array.from(q.labels)).toEqual(exp.patch.labels);
    await cached.readPatch(0, [0, 0, 0], [32, 32, 40]);
    expect(cached.stats()).toMatchObject({ wholeLoads: 1, directReads: 0, cacheHits: 4, cachedBytes: exp.bytes });
  });

  it('evicts least recently used cubes so the cached bytes never exceed the bound', async () => {
    const cubeBytes = 6 * 6 * 6 * 8;
    const cubes = smallCubes([1, 1, 1], -1);
    const one = await open(manifest(cubes), (cubeBytes * 1.5) / 2 ** 20);
    for (const i of [0, 1, 0, 2, 2]) {
      await one.readPatch(i, [1, 1, 1], [2, 2, 2]);
      expect(one.stats().cachedBytes).toBeLessThanOrEqual(one.cacheBytes);
      expect(one.cachedCubes()).toEqual([i]);
    }
    expect(one.stats()).toMatchObject({ wholeLoads: 4, evictions: 3, peakCachedBytes: cubeBytes, directReads: 0 });

    const two = await open(manifest(cubes), (cubeBytes * 2.5) / 2 ** 20);
    for (const i of [0, 1, 0, 2]) await two.readPatch(i, [0, 0, 0], [3, 3, 3]);
    expect(two.cachedCubes()).toEqual([0, 2]); // 1 was least recently used
    expect(two.stats()).toMatchObject({ wholeLoads: 3, evictions: 1, peakCachedBytes: 2 * cubeBytes });
  });
});

describe('PatchSampler: cube choice', () => {
  it('cubeProbabilities normalises and rejects bad priorities', () => {
    expect(cubeProbabilities([1, 3])).toEqual([0.25, 0.75]);
    expect(cubeProbabilities([0, 2, 2])).toEqual([0, 0.5, 0.5]);
    expect(() => cubeProbabilities([0, 0])).toThrow(RangeError);
    expect(() => cubeProbabilities([1, -1])).toThrow(RangeError);
    expect(() => cubeProbabilities([])).toThrow(RangeError);
  });

  it('draws cubes in proportion to prio (chi-square, p > 0.001) and never a valid cube', async () => {
    const prios = [1, 2, 7, 3, 4]; // cube 2 is the validation cube
    const store = await open(manifest(smallCubes(prios, 2)));
    const sampler = new PatchSampler(store, { patchSize: [3, 3, 3], seed: 12345 });
    expect(sampler.trainCubes).toEqual([0, 1, 3, 4]);
    expect(sampler.probabilities).toEqual(cubeProbabilities([1, 2, 3, 4]));
    const counts = new Map<number, number>();
    const n = 20_000;
    for (let i = 0; i < n / 1000; i++) {
      const batch = await sampler.sampleBatch(1000);
      for (const c of batch.cubeIndices) counts.set(c, (counts.get(c) ?? 0) + 1);
    }
    expect(counts.has(2)).toBe(false);
    let chi2 = 0;
    sampler.trainCubes.forEach((c, k) => {
      const e = n * sampler.probabilities[k]!;
      chi2 += ((counts.get(c) ?? 0) - e) ** 2 / e;
    });
    expect(chi2).toBeLessThan(CHI2_CRIT_0_001[sampler.trainCubes.length - 1]!);
  });

  it('with default prios draws cubes in proportion to their label voxel count', async () => {
    const store = await open(manifest([
      { name: 'a', label: 'uint8_3d.h5', raw: 'uint8_3d.h5' }, // 6*7*8 = 336 voxels
      { name: 'b', label: 'coords_centered.h5' }, // 6*6*4 = 144 voxels
    ]));
    const sampler = new PatchSampler(store, { patchSize: [3, 3, 3], seed: 5 });
    expect(sampler.probabilities).toEqual([336 / 480, 144 / 480]);
    let a = 0;
    const n = 10_000;
    for (let i = 0; i < n; i++) if (sampler.drawCube() === 0) a++;
    const e = n * (336 / 480);
    const chi2 = (a - e) ** 2 / e + (n - a - (n - e)) ** 2 / (n - e);
    expect(chi2).toBeLessThan(CHI2_CRIT_0_001[1]!);
  });

  it('refuses a manifest with only validation cubes, and a patch that does not fit', async () => {
    const store = await open(manifest(smallCubes([1, 1], 0).map((c) => ({ ...c, valid: true }))));
    expect(() => new PatchSampler(store, { patchSize: [3, 3, 3], seed: 1 })).toThrow(LazyLabelError);
    const store2 = await open(manifest(smallCubes([1], -1)));
    expect(() => new PatchSampler(store2, { patchSize: [7, 3, 3], seed: 1 })).toThrow(/does not fit/);
    expect(() => new PatchSampler(store2, { patchSize: [3, 3], seed: 1 })).toThrow(/2-D/);
  });
});

describe('PatchSampler: determinism and positions', () => {
  const sameBatch = (a: Batch, b: Batch): void => {
    expect(a.cubeIndices).toEqual(b.cubeIndices);
    expect(a.starts).toEqual(b.starts);
    expect(a.augmentations).toEqual(b.augmentations);
    expect(Array.from(a.raw)).toEqual(Array.from(b.raw));
    expect(Array.from(a.labels)).toEqual(Array.from(b.labels));
  };

  it('gives the same batches for the same seed, whatever the cache, and different ones for another seed', async () => {
    const cubes = smallCubes([1, 2, 1, 3], 1);
    const opts = { patchSize: [4, 4, 3], seed: 99, augment: { intensity: { gain: 0.1, bias: 0.05 } } };
    const a = new PatchSampler(await open(manifest(cubes)), opts);
    const b = new PatchSampler(await open(manifest(cubes), 0), opts);
    const c = new PatchSampler(await open(manifest(cubes)), { ...opts, seed: 100 });
    for (let i = 0; i < 5; i++) {
      const ba = await a.sampleBatch(16);
      sameBatch(ba, await b.sampleBatch(16));
      expect((await c.sampleBatch(16)).starts).not.toEqual(ba.starts);
    }
  });

  it('draws every start from first to last on each axis, and patches stay inside labels and raw', async () => {
    // offset (5, 3, 1) with raw (14, 16, 10): raw ends before the labels on x, so x starts go to 9 - 4 = 5
    const store = await open(manifest([{ label: 'coords3d.h5', raw: 'coords3d_raw.h5', offset: [5, 3, 1] }]));
    const ps = [4, 5, 3];
    const sampler = new PatchSampler(store, { patchSize: ps, seed: 2024, augment: { flip: false, transpose: false } });
    const seen = ps.map(() => new Set<number>());
    for (let i = 0; i < 20; i++) {
      const batch = await sampler.sampleBatch(50);
      batch.starts.forEach((s, b) => {
        s.forEach((v, a) => seen[a]!.add(v));
        // the raw channels are raw coordinates: patch voxel (0, 0, 0) sits at start + offset
        const raw = batch.raw.subarray(b * prod(ps) * 3, (b + 1) * prod(ps) * 3);
        expect([raw[0], raw[1], raw[2]]).toEqual([s[0]! + 5, s[1]! + 3, s[2]! + 1]);
        const last = (prod(ps) - 1) * 3;
        expect([raw[last], raw[last + 1], raw[last + 2]]).toEqual([s[0]! + 5 + 3, s[1]! + 3 + 4, s[2]! + 1 + 2]);
        expect(raw[last]!).toBeLessThan(14);
      });
    }
    expect([...seen[0]!].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5]);
    expect([...seen[1]!].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect([...seen[2]!].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5]);
  });
});

describe('PatchSampler: augmentation', () => {
  /** Check every voxel: raw decodes to a raw coordinate, its label coordinate's formula label equals the output label, and the mapping is the reported transpose+mirror. */
  function checkGeometry(batch: Batch, decode: (raw: Float32Array, at: number) => number[], offset: number[], labelOf: (c: number[]) => number): void {
    const ps = batch.patchSize;
    const ch = batch.nChannels;
    const voxels = prod(ps);
    batch.starts.forEach((start, b) => {
      const aug = batch.augmentations[b]!;
      let o = 0;
      for (const c of coords(ps)) {
        const rawCoord = decode(batch.raw, (b * voxels + o) * ch);
        const labCoord = rawCoord.map((r, i) => r - offset[i]!);
        expect(batch.labels[b * voxels + o]).toBe(labelOf(labCoord));
        // expected source: mirror each flipped axis, then swap x and y if transposed
        const m = c.map((v, a) => (aug.flips[a] ? ps[a]! - 1 - v : v));
        const local = aug.transposed ? [m[1]!, m[0]!, ...m.slice(2)] : m;
        expect(labCoord).toEqual(local.map((v, i) => v + start[i]!));
        o++;
      }
    });
  }

  it('3D: flips and x/y transposes move raw and labels together', async () => {
    const store = await open(manifest([{ label: 'coords3d.h5', raw: 'coords3d_raw.h5', offset: [2, 3, 1] }]));
    const sampler = new PatchSampler(store, { patchSize: [4, 4, 3], seed: 31 });
    expect(sampler.transposeEnabled).toBe(true);
    const batch = await sampler.sampleBatch(24);
    checkGeometry(batch, (raw, at) => [raw[at]!, raw[at + 1]!, raw[at + 2]!], [2, 3, 1], coordLabel);
    const augs = batch.augmentations;
    expect(new Set(augs.map((a) => a.transposed)).size).toBe(2);
    for (let a = 0; a < 3; a++) expect(new Set(augs.map((g) => g.flips[a])).size).toBe(2);
  });

  it('3D, single-channel raw centred around the labels', async () => {
    const store = await open(manifest([{ label: 'coords_centered.h5' }]));
    const sampler = new PatchSampler(store, { patchSize: [3, 3, 2], seed: 8 });
    const batch = await sampler.sampleBatch(16);
    const decode = (raw: Float32Array, at: number): number[] => {
      const v = raw[at]!;
      return [Math.floor(v / 10000), Math.floor((v % 10000) / 100), v % 100];
    };
    checkGeometry(batch, decode, [2, 2, 1], (c) => (coordLabel(c) < 0 ? 3 : coordLabel(c))); // uint8 stored -1 as 255; 255 % 4 = 3
  });

  it('2D: flips and transposes; no transposes when x and y patch sizes differ', async () => {
    const store = await open(manifest([{ label: 'coords2d.h5', raw: 'coords2d.h5' }]));
    const square = new PatchSampler(store, { patchSize: [5, 5], seed: 4 });
    const b1 = await square.sampleBatch(16);
    checkGeometry(b1, (raw, at) => [raw[at]!, raw[at + 1]!], [0, 0], coordLabel);
    expect(b1.augmentations.some((a) => a.transposed)).toBe(true);
    const oblong = new PatchSampler(store, { patchSize: [5, 7], seed: 4 });
    expect(oblong.transposeEnabled).toBe(false);
    const b2 = await oblong.sampleBatch(16);
    checkGeometry(b2, (raw, at) => [raw[at]!, raw[at + 1]!], [0, 0], coordLabel);
    expect(b2.augmentations.every((a) => !a.transposed)).toBe(true);
    expect(b2.augmentations.some((a) => a.flips[0] || a.flips[1])).toBe(true);
  });

  it('intensity jitter is gain and bias per channel on the raw only; ELEKTRONN grey augment stays in [0, 1]', async () => {
    const store = await open(manifest([{ label: 'uint8_3d.h5', raw: 'uint8_3d.h5' }]));
    const sampler = new PatchSampler(store, { patchSize: [3, 3, 3], seed: 6, augment: { flip: false, transpose: false, intensity: { gain: 0.2, bias: 0.1 } } });
    const batch = await sampler.sampleBatch(8);
    for (let b = 0; b < 8; b++) {
      const plain = await store.readPatch(0, batch.starts[b]!, [3, 3, 3]);
      const { gain, bias } = batch.augmentations[b]!;
      expect(gain[0]!).toBeGreaterThanOrEqual(0.8);
      expect(gain[0]!).toBeLessThanOrEqual(1.2);
      expect(Math.abs(bias[0]!)).toBeLessThanOrEqual(0.1);
      for (let v = 0; v < 27; v++) expect(batch.raw[b * 27 + v]).toBeCloseTo(plain.raw[v]! * gain[0]! + bias[0]!, 6);
      expect(Array.from(batch.labels.subarray(b * 27, (b + 1) * 27))).toEqual(Array.from(plain.labels));
    }
    const grey = new PatchSampler(store, { patchSize: [3, 3, 3], seed: 6, augment: { intensity: ELEKTRONN_GREY_AUGMENT } });
    const g = await grey.sampleBatch(16);
    expect(g.raw.every((v) => v >= 0 && v <= 1)).toBe(true);
    expect(g.augmentations.every((a) => a.gamma[0]! >= 0.5 && a.gamma[0]! <= 2)).toBe(true);
  });
});

describe('PatchSampler: example_ignore_threshold (ELEKTRONN semantics)', () => {
  const ps = [8, 8, 8];
  const fractions = (batch: Batch): number[] => batch.cubeIndices.map((_, b) => ignoredFraction(batch.labels.subarray(b * 512, (b + 1) * 512)));

  it('redraws patches whose ignored fraction exceeds the threshold', async () => {
    const store = await open(manifest([{ label: 'mostly_ignore.h5', raw: 'mostly_ignore.h5' }], { lazy_labels: true, n_lab: 3, example_ignore_threshold: 0.5 }));
    expect(expected.mostly_ignore.ignoredFraction).toBe(0.75);
    const sampler = new PatchSampler(store, { patchSize: ps, seed: 77 });
    expect(sampler.ignoreThreshold).toBe(0.5);
    const batch = await sampler.sampleBatch(300);
    expect(Math.max(...fractions(batch))).toBeLessThanOrEqual(0.5);
    expect(batch.redraws).toBeGreaterThan(300); // only ~1 cut in 5 passes
    expect(batch.overThreshold).toBe(0);
    // threshold 0 is "off" (ELEKTRONN): no redraws, over-threshold patches pass
    const off = new PatchSampler(store, { patchSize: ps, seed: 77, ignoreThreshold: 0 });
    const b0 = await off.sampleBatch(100);
    expect(b0.redraws).toBe(0);
    expect(Math.max(...fractions(b0))).toBe(1);
  });

  it('keeps over-threshold patches from a cube that flags a class not present (after ELEKTRONN\'s re-cuts in the same cube)', async () => {
    const m = manifest([
      { name: 'plain', label: 'mostly_ignore.h5', raw: 'mostly_ignore.h5' },
      { name: 'np', label: 'mostly_ignore_np.h5', raw: 'mostly_ignore_np.h5' },
    ], { lazy_labels: true, n_lab: 3, example_ignore_threshold: 0.5 });
    const store = await open(m);
    const sampler = new PatchSampler(store, { patchSize: ps, seed: 78 });
    const batch = await sampler.sampleBatch(600);
    const fr = fractions(batch);
    const over = batch.cubeIndices.filter((c, b) => fr[b]! > 0.5);
    expect(over.length).toBeGreaterThan(0);
    expect(over.every((c) => c === 1)).toBe(true); // only from the not-present cube
    expect(sampler.stats().keptNotPresent).toBe(over.length);
    expect(batch.maskClassNotPresent.every((row, b) => (batch.cubeIndices[b] === 1 ? row[2] === 1 : row[2] === 0))).toBe(true);

    // without the re-cuts, a not-present cube's patch is kept as drawn: all-ignored patches included, nothing redrawn
    const npOnly = await open(manifest([{ label: 'mostly_ignore_np.h5', raw: 'mostly_ignore_np.h5' }], { lazy_labels: true, n_lab: 3, example_ignore_threshold: 0.5 }));
    const direct = new PatchSampler(npOnly, { patchSize: ps, seed: 79, withinCubeRetries: 0 });
    const b2 = await direct.sampleBatch(200);
    expect(b2.redraws).toBe(0);
    expect(fractions(b2).filter((f) => f === 1).length).toBeGreaterThan(0);
  });

  it('accepts and counts a patch after maxRedraws when no cube can pass', async () => {
    const store = await open(manifest([{ label: 'all_ignore.h5', raw: 'all_ignore.h5' }], { n_lab: 3, example_ignore_threshold: 0.5 }));
    const sampler = new PatchSampler(store, { patchSize: [4, 4, 4], seed: 1, maxRedraws: 5, withinCubeRetries: 2 });
    const batch = await sampler.sampleBatch(3);
    expect(batch.overThreshold).toBe(3);
    expect(batch.redraws).toBe(3 * (5 * 3 - 1)); // 5 cube draws x 3 cuts each, the last one kept
    expect(sampler.stats()).toMatchObject({ patches: 3, overThreshold: 3, keptNotPresent: 0 });
  });
});

describe('validation batches', () => {
  it('tile every valid cube deterministically, with no augmentation', async () => {
    const store = await open(manifest([
      { name: 'train', label: 'small_0.h5', raw: 'small_0.h5' },
      { name: 'val', label: 'coords_centered.h5', valid: true },
    ]));
    const ps = [4, 5, 3];
    const pos = validationPositions(store, ps);
    expect(pos.every((p) => p.cubeIndex === 1)).toBe(true);
    expect(pos.map((p) => p.start)).toEqual([[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1], [2, 0, 0], [2, 0, 1], [2, 1, 0], [2, 1, 1]]);
    const covered = new Set<string>();
    const batches: Batch[] = [];
    for await (const batch of validationBatches(store, { patchSize: ps, batchSize: 3 })) batches.push(batch);
    expect(batches.map((b) => b.cubeIndices.length)).toEqual([3, 3, 2]);
    for (const batch of batches) {
      expect(batch.maskClassLabeled.every((row) => row.every((v) => v === 1))).toBe(true);
      batch.starts.forEach((start, b) => {
        let o = 0;
        for (const c of coords(ps)) {
          const v = batch.raw[b * prod(ps) + o]!;
          const lab = [Math.floor(v / 10000) - 2, Math.floor((v % 10000) / 100) - 2, (v % 100) - 1];
          expect(lab).toEqual(c.map((x, i) => x + start[i]!));
          const formula = coordLabel(lab);
          expect(batch.labels[b * prod(ps) + o]).toBe(formula < 0 ? 3 : formula);
          covered.add(lab.join(','));
          o++;
        }
      });
    }
    expect(covered.size).toBe(6 * 6 * 4);
    const again: number[][] = [];
    const sampler = new PatchSampler(store, { patchSize: ps, seed: 1 });
    for await (const batch of sampler.validationBatches(3)) again.push(...batch.starts);
    expect(again).toEqual(pos.map((p) => p.start));
  });
});
