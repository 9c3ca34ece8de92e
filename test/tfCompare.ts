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
