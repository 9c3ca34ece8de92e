/** Test helper shared by the kernel tests: a computation on the wasm backend against the same on cpu. */
import { expect } from 'vitest';
import * as tf from '@tensorflow/tfjs';

/** Runs f under tidy on a backend and returns shapes, dtypes and values of its results. */
export async function runOn(backend: 'cpu' | 'wasm', f: () => tf.Tensor[]) {
  await tf.setBackend(backend);
  return tf.tidy(() => f().map((t) => ({ shape: t.shape, dtype: t.dtype, values: Array.from(t.dataSync()) })));
}

/**
 * Results of f on wasm must equal those on cpu to 1e-4 relative to the largest magnitude, and the wasm run
 * may leak no heap buffers (our kernels allocate scratch tensors on the heap directly). Returns how much
 * `counter` (e.g. native calls made) went up during the checked wasm run.
 */
export async function expectWasmMatchesCpu(f: () => tf.Tensor[], counter: () => number = () => 0): Promise<number> {
  const cpu = await runOn('cpu', f);
  await runOn('wasm', f); // warm-up: moves any variables (model weights) to wasm first
  const before = (tf.backend() as unknown as { numDataIds(): number }).numDataIds();
  const counted = counter();
  const wasm = await runOn('wasm', f);
  const delta = counter() - counted;
  expect((tf.backend() as unknown as { numDataIds(): number }).numDataIds()).toBe(before);
  expect(wasm.length).toBe(cpu.length);
  cpu.forEach((c, i) => {
    const w = wasm[i]!;
    expect(w.shape).toEqual(c.shape);
    expect(w.dtype).toBe(c.dtype);
    const scale = Math.max(1, ...c.values.map(Math.abs));
    let worst = 0;
    c.values.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - w.values[j]!))));
    expect(worst / scale, `output ${i}`).toBeLessThan(1e-4);
  });
  return delta;
}

/** Forward value plus the gradients w.r.t. both operands of a binary op, seeded by a random dy. */
export function withGrads(op: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor, a: tf.Tensor, b: tf.Tensor): tf.Tensor[] {
  const y = op(a, b);
  const dy = tf.randomUniform(y.shape, -1, 1, 'float32', 99);
  const [da, db] = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(op(p, q), dy)))([a, b]);
  return [y, da!, db!];
}

/**
 * maxPool3d and its gradient on the current backend against a direct implementation (TF semantics:
 * 'same' pads with the smaller half in front, padded positions never win, dy goes to the first maximum).
 * The cpu backend's MaxPool3DGrad misroutes gradients when the window sizes differ between axes or 'same'
 * pads unevenly (checked against finite differences), hence a reference instead of cpu.
 */
export function expectMaxPool3dMatchesReference(shape: number[], size: [number, number, number], pad: 'same' | 'valid'): void {
  const rnd = (s: number[], seed: number) => tf.randomUniform(s, -1, 1, 'float32', seed);
  const [xv, dyv, yv, gv, outShape] = tf.tidy(() => {
    const x = rnd(shape, 7);
    const y = tf.maxPool3d(x as tf.Tensor5D, size, size, pad);
    const dy = rnd(y.shape, 8);
    const g = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.maxPool3d(v as tf.Tensor5D, size, size, pad), dy)))(x);
    return [x.dataSync(), dy.dataSync(), y.dataSync(), g.dataSync(), y.shape] as const;
  });
  const [, D, H, W, C] = shape as [number, number, number, number, number];
  const [, OD, OH, OW] = outShape as number[] as [number, number, number, number];
  const front = [D, H, W].map((n, i) => Math.floor(Math.max(([OD, OH, OW][i]! - 1) * size[i]! + size[i]! - n, 0) / 2));
  const refY = new Float32Array(yv.length);
  const refG = new Float32Array(xv.length);
  let o = 0;
  for (let z = 0; z < OD; z++) for (let y = 0; y < OH; y++) for (let x = 0; x < OW; x++) for (let c = 0; c < C; c++, o++) {
    let best = -Infinity;
    let arg = -1;
    for (let a = 0; a < size[0]; a++) for (let b = 0; b < size[1]; b++) for (let d = 0; d < size[2]; d++) {
      const [iz, iy, ix] = [z * size[0] + a - front[0]!, y * size[1] + b - front[1]!, x * size[2] + d - front[2]!];
      if (iz < 0 || iz >= D || iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
      const i = ((iz * H + iy) * W + ix) * C + c;
      if (xv[i]! > best) [best, arg] = [xv[i]!, i];
    }
    refY[o] = best;
    refG[arg] += dyv[o]!;
  }
  expect(Array.from(yv)).toEqual(Array.from(refY));
  Array.from(gv).forEach((g, i) => expect(g).toBeCloseTo(refG[i]!, 5));
}

/** 2D max-pooling cases: tiling windows, a remainder the stride leaves (its gradient is 0), and 'same' windows. */
export const MAX_POOL_2D_CASES: Array<[number[], number | [number, number], 'same' | 'valid']> = [
  [[2, 8, 6, 3], 2, 'valid'],
  [[1, 7, 9, 2], 2, 'valid'],
  [[1, 6, 9, 2], [2, 3], 'same'],
];

/** The gradient of a 2D max pooling of random x for a random dy (continuous values: no ties). */
export function maxPool2dGrad(shape: number[], size: number | [number, number], pad: 'same' | 'valid'): tf.Tensor[] {
  const x = tf.randomUniform(shape, -1, 1, 'float32', 7);
  const dy = tf.randomUniform(tf.maxPool(x as tf.Tensor4D, size, size, pad).shape, -1, 1, 'float32', 8);
  return [tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(v as tf.Tensor4D, size, size, pad), dy)))(x)];
}

/** A 'valid' 3D max pooling of random [2, 4, 6, 6, 3] values and its gradient for a random dy (no ties). */
export function maxPool3dWithGrad(size: [number, number, number]): tf.Tensor[] {
  const x = tf.randomUniform([2, 4, 6, 6, 3], -1, 1, 'float32', 7);
  const y = tf.maxPool3d(x as tf.Tensor5D, size, size, 'valid');
  const dy = tf.randomUniform(y.shape, -1, 1, 'float32', 8);
  return [y, tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.maxPool3d(v as tf.Tensor5D, size, size, 'valid'), dy)))(x)];
}
