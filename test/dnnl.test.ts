/** The oneDNN convolutions (native/ addon) on the wasm heap against the cpu backend, their fallbacks, thread settings and a training step. */
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../src/train/backend.js';
import { DNNL_ADDON_PATH, DNNL_KERNELS, dnnlCallCount, loadDnnl, registerDnnlKernels, setDnnlThreads } from '../src/train/dnnlKernels.js';
import { lazyNll } from '../src/train/loss.js';
import { buildUNet } from '../src/train/models.js';
import { expectMaxPool3dMatchesReference, expectWasmMatchesCpu, MAX_POOL_2D_CASES, maxPool2dGrad, maxPool3dWithGrad, runOn, withGrads } from './tfCompare.js';

// Where oneDNN's headers are installed (CI installs libdnnl-dev), `npm ci` must have built the addon:
// a missing addon then fails here instead of silently skipping everything.
const headers = ['/usr/include/dnnl.hpp', '/usr/local/include/dnnl.hpp'].some((p) => fs.existsSync(p));
const built = fs.existsSync(DNNL_ADDON_PATH);

const rnd = (shape: number[], seed: number) => tf.randomUniform(shape, -1, 1, 'float32', seed);
const MARK = Symbol.for('lazylabel.dnnlKernel');
const isDnnl = (name: string) => Boolean((tf.getKernel(name, 'wasm')?.kernelFunc as unknown as Record<symbol, unknown> | undefined)?.[MARK]);

/** wasm (with the oneDNN kernels) equals cpu, and oneDNN ran `native` convolutions (not the wasm fallbacks). */
async function expectMatchesCpu(f: () => tf.Tensor[], native: number) {
  expect(await expectWasmMatchesCpu(f, dnnlCallCount), 'convolutions run by oneDNN').toBe(native);
}

describe('oneDNN addon', () => {
  it.skipIf(!headers)('is built where oneDNN is installed', () => {
    expect(built, `${DNNL_ADDON_PATH} missing although dnnl.hpp is installed: run \`npm run build:native\``).toBe(true);
    expect(loadDnnl()).toEqual({ version: expect.stringMatching(/^\d+\.\d+\.\d+$/), problem: null });
  });
});

describe.skipIf(!built)('oneDNN convolutions on the wasm backend', () => {
  beforeAll(async () => {
    const sel = await selectBackend('wasm');
    expect(sel.detail).toMatch(/convolutions by oneDNN \d+\.\d+\.\d+ \(native\)/);
    expect(sel.nativeKernels).toEqual({ library: 'oneDNN', version: expect.stringMatching(/^\d+\.\d+\.\d+$/), kernels: [...DNNL_KERNELS] });
  });

  afterAll(async () => {
    await tf.setBackend('wasm');
  });

  it('replaces every convolution kernel, idempotently', () => {
    for (const k of DNNL_KERNELS) expect(isDnnl(k), k).toBe(true);
    expect(registerDnnlKernels().kernels).toEqual([...DNNL_KERNELS]);
    for (const k of DNNL_KERNELS) expect(isDnnl(k), k).toBe(true);
  });

  it('conv2d forward + both gradients match cpu (strides, dilation, explicit and uneven pads, 1x1)', async () => {
    const cases: Array<[number[], number[], number | [number, number], 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]]]> = [
      [[2, 9, 7, 3], [3, 3, 3, 5], 1, 'same'],
      [[1, 8, 9, 1], [3, 3, 1, 4], 1, 'same'],
      [[2, 9, 8, 3], [2, 2, 3, 4], 2, 'valid'],
      [[1, 9, 8, 17], [4, 2, 17, 4], [2, 1], 'same'],
      [[1, 6, 7, 2], [3, 3, 2, 4], 1, [[0, 0], [2, 0], [1, 3], [0, 0]]],
      [[2, 5, 5, 8], [1, 1, 8, 3], 1, 'same'],
    ];
    for (const [xs, ws, s, p] of cases) {
      await expectMatchesCpu(() => withGrads((x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, s, p), rnd(xs, 1), rnd(ws, 2)), 4); // y, the forward inside grads, dx, dw
    }
    // Dilated: forward only (tfjs has no gradient for dilated conv2d).
    await expectMatchesCpu(() => [tf.conv2d(rnd([1, 11, 10, 3], 1) as tf.Tensor4D, rnd([3, 3, 3, 2], 2) as tf.Tensor4D, 1, 'same', 'NHWC', 2)], 1);
    // A strided transposed convolution is Conv2DBackpropInput called directly.
    await expectMatchesCpu(() => [tf.conv2dTranspose(rnd([1, 4, 5, 6], 3) as tf.Tensor4D, rnd([3, 3, 2, 6], 4) as tf.Tensor4D, [1, 8, 10, 2], 2, 'same')], 1);
  });

  it('fused conv2d (bias, ReLU) matches cpu; other activations and NCHW fall back to the wasm kernels', async () => {
    for (const activation of ['linear', 'relu', 'elu'] as const) {
      await expectMatchesCpu(() => [
        tf.fused.conv2d({ x: rnd([2, 7, 6, 3], 1) as tf.Tensor4D, filter: rnd([3, 3, 3, 4], 2) as tf.Tensor4D, strides: 1, pad: 'same', bias: rnd([4], 3), activation }),
      ], activation === 'elu' ? 0 : 1);
    }
    await expectMatchesCpu(() => [tf.fused.conv2d({ x: rnd([1, 5, 6, 2], 1) as tf.Tensor4D, filter: rnd([3, 3, 2, 4], 2) as tf.Tensor4D, strides: 1, pad: 'valid', activation: 'relu' })], 1);
    // NCHW goes to the stock wasm Conv2D, which refuses it as before.
    await tf.setBackend('wasm');
    expect(() => tf.tidy(() => tf.engine().runKernel('Conv2D', { x: rnd([1, 3, 6, 7], 1), filter: rnd([3, 3, 3, 4], 2) }, { strides: 1, pad: 'same', dataFormat: 'NCHW', dilations: 1 })))
      .toThrow(/does not support dataFormat/);
  });

  it('conv3d forward + both gradients match cpu (anisotropic, strided odd sizes, dilation, transposed)', async () => {
    const cases: Array<[number[], number[], number | [number, number, number], 'same' | 'valid']> = [
      [[2, 5, 6, 7, 3], [3, 3, 3, 3, 4], 1, 'same'],
      [[1, 4, 6, 7, 2], [1, 3, 3, 2, 4], 1, 'valid'],
      [[2, 6, 6, 7, 3], [2, 2, 2, 3, 4], 2, 'same'],
      [[2, 3, 7, 6, 1], [1, 3, 3, 1, 4], [1, 2, 2], 'same'],
    ];
    for (const [xs, ws, s, p] of cases) {
      await expectMatchesCpu(() => withGrads((x, w) => tf.conv3d(x as tf.Tensor5D, w as tf.Tensor5D, s, p), rnd(xs, 1), rnd(ws, 2)), 4); // y, the forward inside grads, dx, dw
    }
    await expectMatchesCpu(() => [tf.conv3d(rnd([1, 7, 7, 7, 2], 1) as tf.Tensor5D, rnd([3, 3, 3, 2, 2], 2) as tf.Tensor5D, 1, 'same', 'NDHWC', 2)], 1);
    await expectMatchesCpu(() => [tf.conv3dTranspose(rnd([1, 3, 4, 4, 6], 3) as tf.Tensor5D, rnd([2, 2, 2, 3, 6], 4) as tf.Tensor5D, [1, 6, 8, 8, 3], 2, 'same')], 1);
  });

  it('max pooling gradients (2D, 3D) and the 3D forward match cpu or a direct reference, ties going to the first maximum', async () => {
    // 2D, including 'same' windows cut by the trailing pad (which the stock wasm kernel gets wrong).
    for (const [shape, size, pad] of MAX_POOL_2D_CASES) await expectMatchesCpu(() => maxPool2dGrad(shape, size, pad), 1);
    for (const size of [[1, 2, 2], [2, 2, 2]] as Array<[number, number, number]>) {
      await expectMatchesCpu(() => maxPool3dWithGrad(size), 3); // y, the forward inside grad, the gradient
    }
    await tf.setBackend('wasm');
    const calls = dnnlCallCount();
    expectMaxPool3dMatchesReference([1, 4, 6, 6, 2], [2, 3, 1], 'valid');
    expectMaxPool3dMatchesReference([1, 5, 7, 6, 2], [2, 3, 2], 'same');
    expect(dnnlCallCount() - calls).toBe(6);
    // All-zero windows (common after ReLU): the whole gradient goes to each window's first pixel.
    const [g2, g3] = tf.tidy(() => [
      Array.from(tf.grad((v: tf.Tensor) => tf.sum(tf.maxPool(v as tf.Tensor4D, 2, 2, 'valid')))(tf.zeros([1, 4, 4, 1])).dataSync()),
      Array.from(tf.grad((v: tf.Tensor) => tf.sum(tf.maxPool3d(v as tf.Tensor5D, 2, 2, 'valid')))(tf.zeros([1, 2, 2, 2, 1])).dataSync()),
    ]);
    expect(g2).toEqual([1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0]);
    expect(g3).toEqual([1, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('Concat / SplitV are row copies matching cpu (any axis, int32, empty pieces); bool falls back', async () => {
    const calls = await expectWasmMatchesCpu(() => [
      tf.concat([rnd([2, 3, 4, 5], 1), rnd([2, 3, 4, 7], 2)], -1),
      tf.concat([rnd([2, 3, 4], 1), rnd([2, 1, 4], 2), rnd([2, 5, 4], 3)], 1),
      tf.concat([rnd([1, 6], 1), rnd([3, 6], 2)], 0),
      tf.concat([tf.range(0, 12, 1, 'int32').reshape([3, 4]), tf.range(5, 8, 1, 'int32').reshape([3, 1]), tf.zeros([3, 0], 'int32')], 1),
      ...tf.split(rnd([2, 3, 4, 12], 4), [5, 0, 7], -1),
      ...tf.split(rnd([4, 6, 2], 5), 3, 1),
      ...tf.split(tf.range(0, 24, 1, 'int32').reshape([4, 6]), [1, 3], 0),
    ], dnnlCallCount);
    expect(calls).toBe(7);
    await tf.setBackend('wasm');
    const before = dnnlCallCount();
    const b = tf.tidy(() => Array.from(tf.concat([tf.tensor1d([true, false], 'bool'), tf.tensor1d([true], 'bool')]).dataSync()));
    expect(b).toEqual([1, 0, 1]);
    expect(dnnlCallCount()).toBe(before);
  });

  it('Sum over leading axes (bias gradients) matches cpu natively; other reductions fall back', async () => {
    expect(await expectWasmMatchesCpu(() => [
      tf.sum(rnd([4, 16, 16, 8], 1), [0, 1, 2]),
      tf.sum(rnd([2, 3, 5], 2), 0, true),
      tf.sum(rnd([3, 7], 3), [0]),
    ], dnnlCallCount)).toBe(3);
    expect(await expectWasmMatchesCpu(() => [tf.sum(rnd([3, 4, 5], 1)), tf.sum(rnd([3, 4, 5], 2), 1), tf.sum(tf.range(0, 6, 1, 'int32').reshape([2, 3]), 0)], dnnlCallCount)).toBe(0);
  });

  it('gives the same results with 1 and 2 threads per convolution', async () => {
    const f = () => withGrads((x, w) => tf.conv3d(x as tf.Tensor5D, w as tf.Tensor5D, 1, 'same'), rnd([2, 6, 16, 16, 8], 1), rnd([3, 3, 3, 8, 8], 2));
    const prev = setDnnlThreads(1);
    try {
      const one = await runOn('wasm', f);
      setDnnlThreads(2);
      const two = await runOn('wasm', f);
      one.forEach((o, i) => {
        const scale = Math.max(1, ...o.values.map(Math.abs));
        o.values.forEach((v, j) => expect(Math.abs(v - two[i]!.values[j]!) / scale).toBeLessThan(1e-5));
      });
    } finally {
      setDnnlThreads(prev);
    }
  });

  it('one training step of a small 3D U-Net matches the cpu backend (loss and every weight after Adam)', async () => {
    const cfg = { dims: 3 as const, nLab: 3, inChannels: 1, depth: 1, baseFilters: 4, anisotropicLevels: 1, seed: 3 };
    const step = async (backend: 'cpu' | 'wasm') => {
      await tf.setBackend(backend);
      const model = buildUNet(cfg);
      const opt = tf.train.adam(1e-3);
      const x = rnd([2, 4, 8, 8, 1], 5);
      const y = tf.tidy(() => tf.cast(tf.floor(tf.mul(tf.add(rnd([2, 4, 8, 8], 6), 1), 1.5)), 'int32'));
      const loss = opt.minimize(() => lazyNll(model.apply(x, { training: true }) as tf.Tensor, y, { normalisation: 'voxels' }), true) as tf.Scalar;
      const out = { loss: loss.dataSync()[0]!, weights: model.getWeights().map((w) => Array.from(w.dataSync())) };
      tf.dispose([x, y, loss]);
      opt.dispose();
      model.dispose();
      return out;
    };
    const cpu = await step('cpu');
    const wasm = await step('wasm');
    expect(wasm.loss).toBeCloseTo(cpu.loss, 5);
    wasm.weights.forEach((w, i) => w.forEach((v, j) => expect(Math.abs(v - cpu.weights[i]![j]!)).toBeLessThan(2e-5)));
  });
});
