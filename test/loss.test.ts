/** Tests for the ELEKTRONN lazy-label NLL against the independent NumPy reference (fixtures/loss). */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';

import { lazyNll, lazyNllJs, type LazyNllJsOptions, type LazyNllOptions } from '../src/train/loss.js';

interface RefCase {
  name: string;
  shape: number[];
  fromLogits: boolean;
  input: number[];
  labels: number[];
  options: {
    maskClassLabeled?: number[][];
    maskClassNotPresent?: number[][];
    classWeights?: number[];
    exampleWeights?: number[];
    labelPropThresh?: number;
  };
  expected: { voxels: number; flags: number };
  nTotal: { voxels: number; flags: number };
}

const here = dirname(fileURLToPath(import.meta.url));
const ref = JSON.parse(readFileSync(join(here, '..', 'fixtures', 'loss', 'reference.json'), 'utf8')) as {
  eps: number;
  cases: RefCase[];
};
const NORMS = ['voxels', 'flags'] as const;

function jsOpts(c: RefCase, normalisation: 'voxels' | 'flags'): LazyNllJsOptions {
  return { ...c.options, normalisation, fromLogits: c.fromLogits };
}

function tfOpts(c: RefCase, normalisation: 'voxels' | 'flags'): LazyNllOptions {
  return { ...c.options, normalisation, fromLogits: c.fromLogits };
}

function tensors(c: RefCase): { x: tf.Tensor; y: tf.Tensor } {
  return { x: tf.tensor(c.input, c.shape, 'float32'), y: tf.tensor(c.labels, c.shape.slice(0, -1), 'int32') };
}

function evalTf(c: RefCase, norm: 'voxels' | 'flags'): number {
  return tf.tidy(() => {
    const { x, y } = tensors(c);
    return lazyNll(x, y, tfOpts(c, norm)).arraySync();
  });
}

function relErr(a: number, b: number): number {
  return Math.abs(a - b) / Math.max(Math.abs(b), 1e-30);
}

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('fixture sanity', () => {
  it('covers the required scenarios', () => {
    const names = ref.cases.map((c) => c.name);
    expect(ref.eps).toBe(1e-6);
    for (const n of ['dense_3d', 'all_ignore_not_present_3d', 'lazy_not_present_3d', 'mixed_batch_3d',
      'class_weights_2d', 'label_prop_3d', 'logits_dense_3d', 'logits_lazy_large_2d']) {
      expect(names).toContain(n);
    }
    expect(ref.cases.some((c) => c.shape.length === 4)).toBe(true); // 2D spatial
    expect(ref.cases.some((c) => c.shape.length === 5)).toBe(true); // 3D spatial
  });
});

describe('lazyNll matches the NumPy reference (cpu backend)', () => {
  for (const c of ref.cases) {
    for (const norm of NORMS) {
      it(`${c.name} [${norm}]`, () => {
        const expected = c.expected[norm];
        const got = evalTf(c, norm);
        const input = c.input.map(Math.fround); // identical values (they are float32 already)
        const js = lazyNllJs(input, c.labels, c.shape, jsOpts(c, norm));
        expect(relErr(js, expected)).toBeLessThan(1e-9);
        expect(relErr(got, expected)).toBeLessThan(1e-6);
      });
    }
  }
});

describe('lazyNll semantics', () => {
  it('plain NLL when no lazy masks are given', () => {
    const p = [0.7, 0.2, 0.1, 0.25, 0.25, 0.5];
    const got = lazyNll(tf.tensor(p, [1, 2, 1, 3]), tf.tensor([0, 2], [1, 2, 1], 'int32')).arraySync();
    const want = -(Math.log(0.7 + 1e-6) + Math.log(0.5 + 1e-6)) / 2;
    expect(relErr(got, want)).toBeLessThan(1e-6);
  });

  it('all-ignore cube with an absent class only down-votes that class', () => {
    const c = ref.cases.find((k) => k.name === 'all_ignore_not_present_3d')!;
    expect(c.nTotal.voxels).toBe(27); // one flag x 27 voxels
    expect(c.nTotal.flags).toBe(1);
    const { x, y } = tensors(c);
    const g = tf.grad((t: tf.Tensor) => lazyNll(t, y, tfOpts(c, 'voxels')))(x);
    const gv = g.arraySync() as number[][][][][];
    // only class 2 gets a gradient, and it pushes p_2 down (positive dL/dp)
    for (const plane of gv[0]!) for (const row of plane) for (const vox of row) {
      expect(vox[0]).toBe(0);
      expect(vox[1]).toBe(0);
      expect(vox[2]!).toBeGreaterThan(0);
    }
  });

  it('rejects mismatched shapes', () => {
    const x = tf.ones([2, 3, 3, 4]);
    expect(() => lazyNll(x, tf.zeros([2, 3, 4], 'int32'))).toThrow(/labels shape/);
    expect(() => lazyNll(x, tf.zeros([2, 3, 3], 'int32'), { maskClassLabeled: [[1, 1, 1, 1]] })).toThrow(
      /maskClassLabeled/,
    );
    expect(() => lazyNll(x, tf.zeros([2, 3, 3], 'int32'), { classWeights: [1, 2] })).toThrow(/classWeights/);
  });

  it('does not leak tensors', () => {
    const c = ref.cases.find((k) => k.name === 'label_prop_3d')!;
    const { x, y } = tensors(c);
    const before = tf.memory().numTensors;
    const l = lazyNll(x, y, tfOpts(c, 'voxels'));
    expect(tf.memory().numTensors).toBe(before + 1);
    l.dispose();
  });

  it('stays finite for extreme logits and trains with an optimizer', () => {
    const z = tf.variable(tf.tensor([80, -80, 0, -60, 70, 10, 0, 0, 0, 5, -5, 90], [1, 2, 2, 3]));
    const y = tf.tensor([[[0, -1], [2, 1]]], [1, 2, 2], 'int32');
    const opts: LazyNllOptions = {
      fromLogits: true,
      maskClassLabeled: [[1, 1, 0]],
      maskClassNotPresent: [[0, 0, 1]],
    };
    const opt = tf.train.sgd(0.5);
    const first = lazyNll(z, y, opts).arraySync();
    expect(Number.isFinite(first)).toBe(true);
    let last = first;
    for (let i = 0; i < 20; i++) {
      last = (opt.minimize(() => lazyNll(z, y, opts), true) as tf.Scalar).arraySync();
      expect(Number.isFinite(last)).toBe(true);
    }
    expect(last).toBeLessThan(first);
    const g = tf.grad((t: tf.Tensor) => lazyNll(t, y, opts))(z);
    expect((g.dataSync() as Float32Array).every(Number.isFinite)).toBe(true);
  });
});

describe('gradients vs central finite differences', () => {
  // Float32 finite differences of an O(1) loss whose per-element derivatives are O(1/N) drown in
  // rounding, so element-wise FDs are taken on the float64 lazyNllJs (verified above to equal the
  // reference to 1e-9) and compared with the float32 tf.grad. A float32 directional-derivative check on
  // the tf function itself (large step, aggregated direction) guards against the two implementations
  // sharing a mistake.
  for (const c of ref.cases) {
    for (const norm of NORMS) {
      it(`${c.name} [${norm}]`, () => {
        const { x, y } = tensors(c);
        const g = Array.from(
          tf.grad((t: tf.Tensor) => lazyNll(t, y, tfOpts(c, norm)))(x).dataSync() as Float32Array,
        );
        const base = c.input.map(Math.fround);
        const o = jsOpts(c, norm);
        const fd = base.map((v, i) => {
          // probabilities: step relative to min(p, 1 - p), the scales of the log(p + eps) and
          // log(1 - p + eps) kinks; logits: absolute step
          const h = c.fromLogits ? 1e-5 : Math.max(1e-9, 1e-4 * Math.min(v, 1 - v));
          const xp = base.slice();
          const xm = base.slice();
          xp[i] = v + h;
          xm[i] = v - h;
          return (lazyNllJs(xp, c.labels, c.shape, o) - lazyNllJs(xm, c.labels, c.shape, o)) / (2 * h);
        });
        const scale = Math.max(...fd.map(Math.abs));
        for (let i = 0; i < fd.length; i++) {
          expect(Math.abs(g[i]! - fd[i]!)).toBeLessThanOrEqual(2e-5 * Math.abs(fd[i]!) + 2e-6 * scale);
        }

        // float32 directional derivative of the tf function itself
        // (probabilities move by at most 1% of min(p, 1 - p): stays inside the loss's domain)
        const dir = base.map((v, i) => (c.fromLogits ? 1 : Math.min(v, 1 - v)) * Math.sin(1.7 * i + 0.3));
        const hd = 1e-2;
        const at = (s: number): number =>
          tf.tidy(() =>
            lazyNll(tf.tensor(base.map((v, i) => v + s * dir[i]!), c.shape), y, tfOpts(c, norm)).arraySync(),
          );
        const dirFd = (at(hd) - at(-hd)) / (2 * hd);
        const dirGrad = g.reduce((acc, gi, i) => acc + gi * dir[i]!, 0);
        expect(Math.abs(dirFd - dirGrad)).toBeLessThanOrEqual(2e-2 * Math.abs(dirGrad) + 1e-4);
      });
    }
  }
});

describe('wasm backend', () => {
  it('gives the same values as the cpu backend', async () => {
    await import('@tensorflow/tfjs-backend-wasm');
    const cpu = ref.cases.map((c) => NORMS.map((n) => evalTf(c, n)));
    let ok = false;
    try {
      ok = await tf.setBackend('wasm');
    } catch {
      ok = false;
    }
    expect(ok).toBe(true); // the wasm backend is expected to initialise in Node
    try {
      expect(tf.getBackend()).toBe('wasm');
      ref.cases.forEach((c, i) =>
        NORMS.forEach((n, j) => {
          const w = evalTf(c, n);
          // wasm reduces in float32 (cpu accumulates in float64) and its log1p is a plain float32
          // log(1 + x) (so -log(1 + eps) comes out as 9.54e-7, not 1e-6): 1e-5 relative plus a tiny
          // absolute slack that only matters for the degenerate near-zero 'empty_2d' loss.
          const tol = (ref: number): number => 1e-5 * Math.abs(ref) + 1e-6;
          expect(Math.abs(w - cpu[i]![j]!)).toBeLessThanOrEqual(tol(cpu[i]![j]!));
          expect(Math.abs(w - c.expected[n])).toBeLessThanOrEqual(tol(c.expected[n]));
        }),
      );
      const c = ref.cases.find((k) => k.name === 'logits_label_prop_3d')!;
      const { x, y } = tensors(c);
      const gw = tf.grad((t: tf.Tensor) => lazyNll(t, y, tfOpts(c, 'voxels')))(x).dataSync();
      await tf.setBackend('cpu');
      const gc = tf.grad((t: tf.Tensor) => lazyNll(t, y, tfOpts(c, 'voxels')))(x).dataSync();
      const scale = Math.max(...Array.from(gc, Math.abs));
      gc.forEach((v, i) => expect(Math.abs(gw[i]! - v)).toBeLessThanOrEqual(1e-5 * scale));
    } finally {
      await tf.setBackend('cpu');
    }
  });
});
