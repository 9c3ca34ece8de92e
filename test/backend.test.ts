/** Backend selection: explicit cpu/wasm, auto fallback to wasm without tfjs-node, and the install hint for 'tensorflow'. */
import { createRequire } from 'node:module';
import { afterAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { selectBackend, type BackendPreference } from '../src/train/backend.js';
import { WASM_TRAINING_KERNELS } from '../src/train/wasmKernels.js';
import { isLazyLabelError } from '../src/errors.js';

const require = createRequire(import.meta.url);
const installed = (pkg: string) => {
  try {
    require.resolve(pkg);
    return true;
  } catch {
    return false;
  }
};
// The native packages are optional; this machine normally has neither (no internet to fetch libtensorflow).
const hasTfNode = installed('@tensorflow/tfjs-node-gpu') || installed('@tensorflow/tfjs-node');

afterAll(async () => {
  await tf.setBackend('wasm');
});

describe('selectBackend', () => {
  it("'cpu' activates the cpu backend", async () => {
    const sel = await selectBackend('cpu');
    expect(sel.nativeKernels).toBeNull();
    expect(sel.name).toBe('cpu');
    expect(sel.tf.getBackend()).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    expect(sel.detail).toMatch(/^cpu \(/);
    expect(tf.tidy(() => sel.tf.add(1, 2).dataSync()[0])).toBe(3);
  });

  it("'wasm' activates wasm with SIMD info and the training kernels", async () => {
    const sel = await selectBackend('wasm');
    expect(sel.name).toBe('wasm');
    expect(sel.tf.getBackend()).toBe('wasm');
    expect(sel.detail).toMatch(/^wasm \(SIMD (on|off), threads off/);
    for (const k of WASM_TRAINING_KERNELS) expect(sel.tf.getKernel(k, 'wasm')).toBeDefined();
    // Conv2DBackpropFilter does not exist in stock tfjs-backend-wasm: a conv gradient proves ours is there.
    const g = tf.tidy(() => sel.tf.grad((w: tf.Tensor) => sel.tf.sum(sel.tf.conv2d(sel.tf.ones([1, 4, 4, 1]) as tf.Tensor4D, w as tf.Tensor4D, 1, 'same')))(sel.tf.ones([3, 3, 1, 1])).dataSync());
    expect(Array.from(g)).toEqual([9, 12, 9, 12, 16, 12, 9, 12, 9]);
  });

  it('switches back and forth', async () => {
    expect((await selectBackend('cpu')).name).toBe('cpu');
    expect((await selectBackend('wasm')).name).toBe('wasm');
    expect((await selectBackend('cpu')).tf.getBackend()).toBe('cpu');
  });

  it.skipIf(hasTfNode)("'auto' picks wasm when tfjs-node is not installed and says why", async () => {
    const sel = await selectBackend('auto');
    expect(sel.name).toBe('wasm');
    expect(sel.tf.getBackend()).toBe('wasm');
    expect(sel.detail).toMatch(/@tensorflow\/tfjs-node-gpu is not installed/);
    expect(sel.detail).toMatch(/@tensorflow\/tfjs-node is not installed/);
    expect(await selectBackend()).toMatchObject({ name: 'wasm' }); // 'auto' is the default
  });

  it.skipIf(hasTfNode)("'tensorflow' without tfjs-node fails with install instructions", async () => {
    const err = await selectBackend('tensorflow').then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(Error);
    expect(isLazyLabelError(err)).toBe(true);
    const e = err as Error & { code: string; exitCode: number };
    expect(e.code).toBe('backend-unavailable');
    expect(e.exitCode).toBe(2);
    expect(e.message).toMatch(/npm install @tensorflow\/tfjs-node-gpu/);
    expect(e.message).toMatch(/npm install @tensorflow\/tfjs-node`/);
    expect(e.message).toMatch(/CUDA/);
    expect(e.message).toMatch(/internet/);
    // A failed request leaves the previous backend active.
    expect(tf.getBackend()).not.toBe('tensorflow');
  });

  it.runIf(hasTfNode)("'tensorflow' activates the native backend on the returned namespace", async () => {
    const sel = await selectBackend('tensorflow');
    expect(sel.name).toBe('tensorflow');
    expect(sel.tf.getBackend()).toBe('tensorflow');
  });

  it('rejects unknown names', async () => {
    await expect(selectBackend('webgpu' as BackendPreference)).rejects.toThrow(/unknown backend 'webgpu'/);
  });
});
