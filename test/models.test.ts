/** U-Net shapes and patch checks, wasm training kernels against the cpu backend, and tiny U-Nets training on wasm. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { buildUNet, checkPatchShape, modelSummary, requiredMultiples, type UNetConfig } from '../src/train/models.js';
import { registerWasmTrainingKernels, setIm2colChunkFloats, WASM_TRAINING_KERNELS } from '../src/train/wasmKernels.js';
import { selectBackend } from '../src/train/backend.js';
import { expectMaxPool3dMatchesReference, expectWasmMatchesCpu, MAX_POOL_2D_CASES, maxPool2dGrad, maxPool3dWithGrad, withGrads } from './tfCompare.js';

// This file checks the wasm (XNNPACK + JS) kernels, so the oneDNN ones, which would replace the
// convolutions where the native addon is built, stay off here; test/dnnl.test.ts checks those.
process.env.LAZYLABEL_NATIVE = '0';

const rnd = (shape: number[], seed: number) => tf.randomUniform(shape, -1, 1, 'float32', seed);

beforeAll(async () => {
  await selectBackend('wasm'); // registers the training kernels and initialises wasm
});

afterAll(async () => {
  await tf.setBackend('wasm');
});

describe('buildUNet', () => {
  it('the same seed gives the same weights, seed 0 (the CLI default) and negative seeds included', () => {
    for (const seed of [0, -7919, 3]) {
      const a = buildUNet({ dims: 2, nLab: 3, inChannels: 1, depth: 1, baseFilters: 2, seed });
      const b = buildUNet({ dims: 2, nLab: 3, inChannels: 1, depth: 1, baseFilters: 2, seed });
      const wa = a.getWeights().map((w) => Array.from(w.dataSync()));
      const wb = b.getWeights().map((w) => Array.from(w.dataSync()));
      expect(wa.length).toBeGreaterThan(0);
      expect(wa).toEqual(wb);
      a.dispose();
      b.dispose();
    }
  });

  it('keeps the spatial shape and ends in a softmax over nLab (2D)', () => {
    const model = buildUNet({ dims: 2, nLab: 3, inChannels: 1, depth: 2, baseFilters: 4, seed: 1 });
    const y = tf.tidy(() => model.predict(rnd([2, 16, 24, 1], 1)) as tf.Tensor);
    expect(y.shape).toEqual([2, 16, 24, 3]);
    const sums = tf.tidy(() => tf.sum(y, -1).dataSync());
    for (const s of sums) expect(s).toBeCloseTo(1, 5);
    y.dispose();
    model.dispose();
  });

  it('keeps the spatial shape in 3D, isotropic and anisotropic', () => {
    const iso = buildUNet({ dims: 3, nLab: 2, inChannels: 2, depth: 2, baseFilters: 2, seed: 1 });
    const y = tf.tidy(() => (iso.predict(rnd([1, 8, 8, 12, 2], 2)) as tf.Tensor).shape);
    expect(y).toEqual([1, 8, 8, 12, 2]);
    iso.dispose();

    const cfg: UNetConfig = { dims: 3, nLab: 4, inChannels: 1, depth: 2, baseFilters: 2, anisotropicLevels: 1, seed: 1 };
    expect(requiredMultiples(cfg)).toEqual([2, 4, 4]);
    const aniso = buildUNet(cfg);
    const shapes = tf.tidy(() => {
      const x = rnd([1, 2, 8, 12, 1], 3);
      const bottom = tf.model({ inputs: aniso.inputs, outputs: aniso.getLayer('bottom_conv2').output as tf.SymbolicTensor });
      return [(aniso.predict(x) as tf.Tensor).shape, (bottom.predict(x) as tf.Tensor).shape];
    });
    expect(shapes[0]).toEqual([1, 2, 8, 12, 4]);
    // First level pools (1,2,2), second (2,2,2): z 2 -> 2 -> 1, y 8 -> 4 -> 2, x 12 -> 6 -> 3.
    expect(shapes[1]).toEqual([1, 1, 2, 3, 8]);
    aniso.dispose();
  });

  it('works with depth 0 and round-trips through save/load (custom upsampling layer registered)', async () => {
    const flat = buildUNet({ dims: 2, nLab: 2, inChannels: 1, depth: 0, baseFilters: 2 });
    expect(tf.tidy(() => (flat.predict(rnd([1, 5, 7, 1], 4)) as tf.Tensor).shape)).toEqual([1, 5, 7, 2]);
    flat.dispose();

    const model = buildUNet({ dims: 3, nLab: 2, inChannels: 1, depth: 1, baseFilters: 2, anisotropicLevels: 1, seed: 5 });
    let saved: tf.io.ModelArtifacts | undefined;
    await model.save(tf.io.withSaveHandler(async (a) => {
      saved = a;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }));
    const loaded = await tf.loadLayersModel(tf.io.fromMemory(saved!));
    const [a, b] = tf.tidy(() => {
      const x = rnd([1, 3, 4, 4, 1], 6);
      return [(model.predict(x) as tf.Tensor).dataSync(), (loaded.predict(x) as tf.Tensor).dataSync()];
    });
    expect(Array.from(b!)).toEqual(Array.from(a!));
    model.dispose();
    loaded.dispose();
  });

  it('rejects bad configs', () => {
    expect(() => buildUNet({ dims: 2, nLab: 1, inChannels: 1, depth: 2, baseFilters: 4 })).toThrow(/nLab/);
    expect(() => buildUNet({ dims: 2, nLab: 2, inChannels: 1, depth: 2, baseFilters: 4, anisotropicLevels: 1 })).toThrow(/3D/);
    expect(() => buildUNet({ dims: 3, nLab: 2, inChannels: 1, depth: 2, baseFilters: 4, anisotropicLevels: 3 })).toThrow(/anisotropicLevels/);
    expect(() => buildUNet({ dims: 4 as 2, nLab: 2, inChannels: 1, depth: 2, baseFilters: 4 })).toThrow(/dims/);
  });

  it('summarises', () => {
    const model = buildUNet({ dims: 2, nLab: 2, inChannels: 1, depth: 1, baseFilters: 2 });
    const text = modelSummary(model);
    expect(text).toMatch(/probs/);
    expect(text).toMatch(/up0_upsample/);
    expect(text).toMatch(/Total params/);
    model.dispose();
  });
});

describe('checkPatchShape', () => {
  const c2: UNetConfig = { dims: 2, nLab: 2, inChannels: 1, depth: 3, baseFilters: 4 };
  const c3: UNetConfig = { dims: 3, nLab: 2, inChannels: 1, depth: 3, baseFilters: 4, anisotropicLevels: 2 };

  it('accepts multiples of the pooling product', () => {
    expect(checkPatchShape(c2, [64, 128])).toBeNull();
    expect(checkPatchShape(c3, [2, 64, 64])).toBeNull(); // only one z pooling
    expect(checkPatchShape({ ...c3, anisotropicLevels: 0 }, [8, 8, 8])).toBeNull();
  });

  it('explains what is wrong', () => {
    expect(checkPatchShape(c2, [60, 64])).toMatch(/y=60 is not a multiple of 8 \(try 56 or 64\)/);
    expect(checkPatchShape(c2, [64, 4])).toMatch(/x=4 is not a multiple of 8 \(try 8\)/);
    expect(checkPatchShape(c2, [64, 64, 64])).toMatch(/2 spatial axes/);
    expect(checkPatchShape(c3, [3, 64, 64])).toMatch(/z=3 is not a multiple of 2.*in-plane-only/);
    expect(checkPatchShape({ ...c3, anisotropicLevels: 0 }, [4, 64, 64])).toMatch(/z=4 is not a multiple of 8/);
    expect(checkPatchShape(c2, [64.5, 64])).toMatch(/not a positive integer/);
    expect(checkPatchShape({ ...c2, depth: -1 }, [64, 64])).toMatch(/invalid U-Net config.*depth/);
  });
});

describe('wasm training kernels', () => {
  it('registers idempotently and without override warnings', () => {
    const warnings: unknown[] = [];
    const orig = console.warn;
    console.warn = (...m: unknown[]) => void warnings.push(m);
    try {
      expect(registerWasmTrainingKernels()).toEqual([...WASM_TRAINING_KERNELS]);
      expect(registerWasmTrainingKernels()).toEqual([...WASM_TRAINING_KERNELS]);
    } finally {
      console.warn = orig;
    }
    expect(warnings).toEqual([]);
    for (const k of WASM_TRAINING_KERNELS) expect(tf.getKernel(k, 'wasm')).toBeDefined();
  });

  it('Conv2DBackpropFilter / Conv2DBackpropInput match cpu (conv2d forward + gradients)', async () => {
    const cases: Array<[number[], number[], number | [number, number], 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]]]> = [
      [[2, 9, 7, 3], [3, 3, 3, 5], 1, 'same'],
      [[1, 8, 9, 1], [3, 3, 1, 4], 1, 'same'], // single input channel (first layer)
      [[2, 9, 8, 3], [2, 2, 3, 4], 2, 'valid'],
      [[1, 9, 8, 17], [4, 2, 17, 4], [2, 1], 'same'], // even kernel, asymmetric padding, long channel runs
      [[1, 6, 7, 2], [3, 3, 2, 4], 1, [[0, 0], [2, 0], [1, 3], [0, 0]]],
      [[2, 5, 5, 8], [1, 1, 8, 3], 1, 'same'],
    ];
    for (const [xs, ws, s, p] of cases) {
      await expectWasmMatchesCpu(() => withGrads((x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, s, p), rnd(xs, 1), rnd(ws, 2)));
    }
    // Channels-first filter gradient (computed via transposes), with explicit padding in NCHW order.
    await expectWasmMatchesCpu(() => [
      tf.engine().runKernel('Conv2DBackpropFilter', { x: rnd([1, 3, 6, 7], 1), dy: rnd([1, 4, 6, 7], 2) }, {
        strides: 1, pad: [[0, 0], [0, 0], [1, 1], [2, 0]], dataFormat: 'NCHW', filterShape: [3, 3, 3, 4],
      }) as tf.Tensor,
    ]);
    // Strided transposed conv calls Conv2DBackpropInput directly (dilated-dy path).
    await expectWasmMatchesCpu(() => [tf.conv2dTranspose(rnd([1, 4, 5, 6], 3) as tf.Tensor4D, rnd([3, 3, 2, 6], 4) as tf.Tensor4D, [1, 8, 10, 2], 2, 'same')]);
  });

  it('Conv3D / Conv3DBackpropFilterV2 / Conv3DBackpropInputV2 match cpu (conv3d forward + gradients)', async () => {
    const cases: Array<[number[], number[], number | [number, number, number], 'same' | 'valid']> = [
      [[2, 5, 6, 7, 3], [3, 3, 3, 3, 4], 1, 'same'],
      [[1, 4, 6, 7, 2], [1, 3, 3, 2, 4], 1, 'valid'],
      [[2, 6, 6, 7, 3], [2, 2, 2, 3, 4], 2, 'same'], // strided, odd size: the stock wasm kernels get this wrong
      [[2, 3, 7, 6, 1], [1, 3, 3, 1, 4], [1, 2, 2], 'same'],
    ];
    for (const [xs, ws, s, p] of cases) {
      await expectWasmMatchesCpu(() => withGrads((x, w) => tf.conv3d(x as tf.Tensor5D, w as tf.Tensor5D, s, p), rnd(xs, 1), rnd(ws, 2)));
    }
    await expectWasmMatchesCpu(() => [tf.conv3d(rnd([1, 7, 7, 7, 2], 1) as tf.Tensor5D, rnd([3, 3, 3, 2, 2], 2) as tf.Tensor5D, 1, 'same', 'NDHWC', 2)]);
    await expectWasmMatchesCpu(() => [tf.conv3dTranspose(rnd([1, 3, 4, 4, 6], 3) as tf.Tensor5D, rnd([2, 2, 2, 3, 6], 4) as tf.Tensor5D, [1, 6, 8, 8, 3], 2, 'same')]);
  });

  it('filter gradients agree when im2col is split into many chunks', async () => {
    const prev = setIm2colChunkFloats(500); // a few output rows per chunk, chunks end mid-plane
    try {
      await expectWasmMatchesCpu(() => withGrads((x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'same'), rnd([2, 9, 7, 3], 1), rnd([3, 3, 3, 5], 2)));
      await expectWasmMatchesCpu(() => withGrads((x, w) => tf.conv3d(x as tf.Tensor5D, w as tf.Tensor5D, [1, 2, 2], 'valid'), rnd([2, 5, 7, 7, 3], 1), rnd([3, 3, 3, 3, 4], 2)));
    } finally {
      setIm2colChunkFloats(prev);
    }
  });

  it('MaxPool3D / MaxPool3DGrad match cpu (incl. negative values)', async () => {
    for (const size of [[1, 2, 2], [2, 2, 2]] as Array<[number, number, number]>) {
      // Continuous random inputs: no ties, so the argmax convention does not matter.
      await expectWasmMatchesCpu(() => maxPool3dWithGrad(size));
    }
    // The stock kernel started its max at FLT_MIN: all-zero and all-negative windows must give 0 / the max.
    await tf.setBackend('wasm');
    const out = tf.tidy(() => [
      Array.from(tf.maxPool3d(tf.zeros([1, 2, 2, 2, 1]) as tf.Tensor5D, 2, 2, 'valid').dataSync()),
      Array.from(tf.maxPool3d(tf.fill([1, 2, 2, 2, 1], -3) as tf.Tensor5D, 2, 2, 'valid').dataSync()),
    ]);
    expect(out).toEqual([[0], [-3]]);
  });

  it('MaxPoolGrad (2D) matches cpu: tiling windows, and a remainder the stride leaves', async () => {
    // (Padded windows go to the stock kernel, unchanged; U-Net patches are multiples of the pool factors.)
    for (const [shape, size, pad] of MAX_POOL_2D_CASES) await expectWasmMatchesCpu(() => maxPool2dGrad(shape, size, pad));
  });

  it('MaxPool3D / MaxPool3DGrad with uneven windows or padding match a plain reference', async () => {
    // The cpu backend's MaxPool3DGrad misroutes gradients when the window sizes differ between axes or
    // 'same' pads unevenly (checked against finite differences), so these are checked against a direct
    // implementation instead.
    const cases: Array<[number[], [number, number, number], 'same' | 'valid']> = [
      [[1, 4, 6, 6, 2], [2, 3, 1], 'valid'],
      [[1, 5, 7, 6, 2], [2, 3, 2], 'same'],
    ];
    await tf.setBackend('wasm');
    for (const [shape, size, pad] of cases) expectMaxPool3dMatchesReference(shape, size, pad);
  });

  it('Slice / SplitV / Sum match cpu', async () => {
    await expectWasmMatchesCpu(() => [
      tf.slice(rnd([2, 3, 4, 5, 6], 1), [1, 0, 1, 2, 3], [1, 3, 2, 2, 2]),
      tf.slice(rnd([2, 3, 4, 5, 6], 1), [0, 0, 0, 0, 3], [-1, -1, -1, -1, 3]),
      tf.slice(rnd([7, 5], 2), [0, 0], [7, 5]),
      tf.slice(rnd([70], 3), [3], [50]),
      tf.slice(tf.reshape(tf.range(0, 120, 1, 'int32'), [4, 5, 6]), [1, 2, 0], [2, 2, 6]),
      tf.slice(tf.greater(rnd([4, 5, 6], 2), 0), [1, 2, 1], [2, 2, 3]),
      tf.stridedSlice(rnd([6, 7, 8], 1), [1, 0, 2], [5, 7, 8], [2, 1, 3]),
      ...tf.split(rnd([2, 3, 4, 5, 24], 1), [8, 16], -1),
      ...tf.split(rnd([16, 2, 16], 1), 2, 1),
      ...tf.split(rnd([4, 3], 1), [0, 3], 1),
      tf.sum(rnd([2, 3, 4, 5, 6], 1), [0, 1, 2, 3]),
      tf.sum(rnd([2, 3, 4], 1), [0], true),
      tf.sum(rnd([2, 3, 4], 1), [1, 0]),
      tf.sum(rnd([2, 3, 4], 1), [1]),
      tf.sum(tf.reshape(tf.range(0, 24, 1, 'int32'), [2, 3, 4]), [0]),
      // Gradient of a channel concat (a U-Net skip) is a SplitV; of a bias add, a leading-axes Sum.
      tf.grad((v: tf.Tensor) => tf.sum(tf.square(tf.concat([v, tf.relu(v)], -1))))(rnd([1, 2, 3, 4, 5], 4)),
    ]);
  });

  it('Identity shares the buffer: a clone reads the same values, and either survives disposing the other', async () => {
    await tf.setBackend('wasm');
    const be = tf.backend() as unknown as { numDataIds(): number; getMemoryOffset(id: object): number };
    const ids = be.numDataIds();
    const x = tf.tensor3d([1.5, -2, 3, 4, 5, 6], [1, 2, 3]);
    const c = tf.clone(x);
    expect(be.getMemoryOffset(c.dataId)).toBe(be.getMemoryOffset(x.dataId));
    expect(be.numDataIds()).toBe(ids + 1); // one buffer, two tensors
    x.dispose();
    expect(Array.from(c.dataSync())).toEqual([1.5, -2, 3, 4, 5, 6]);
    const d = tf.clone(c);
    c.dispose();
    expect(d.shape).toEqual([1, 2, 3]);
    expect(Array.from(await d.data())).toEqual([1.5, -2, 3, 4, 5, 6]);
    d.dispose();
    expect(be.numDataIds()).toBe(ids); // freed with the last reference
    // A variable keeps its value when the tensor it was assigned from (or a clone of it) is disposed,
    // and a clone taken before assign() keeps the old value: assign swaps buffers, never writes.
    const v = tf.variable(tf.ones([4]));
    const before = tf.clone(v);
    const next = tf.fill([4], 7);
    v.assign(next);
    next.dispose();
    expect(Array.from(before.dataSync())).toEqual([1, 1, 1, 1]);
    expect(Array.from(v.dataSync())).toEqual([7, 7, 7, 7]);
    tf.dispose([before, v]);
  });

  it('gives the same U-Net gradients as cpu (2D and anisotropic 3D)', async () => {
    const cfgs: Array<[UNetConfig, number[]]> = [
      [{ dims: 2, nLab: 3, inChannels: 1, depth: 2, baseFilters: 4, seed: 11 }, [2, 16, 16, 1]],
      [{ dims: 3, nLab: 3, inChannels: 1, depth: 2, baseFilters: 4, anisotropicLevels: 1, seed: 12 }, [1, 4, 16, 16, 1]],
    ];
    for (const [cfg, shape] of cfgs) {
      await tf.setBackend('cpu');
      const model = buildUNet(cfg);
      const f = () => {
        const x = tf.randomUniform(shape, 0, 1, 'float32', 3);
        const y = tf.oneHot(tf.cast(tf.greater(tf.squeeze(x, [-1]), 0.5), 'int32'), cfg.nLab);
        const { value, grads } = tf.variableGrads(() => tf.mean(tf.metrics.categoricalCrossentropy(y, model.apply(x) as tf.Tensor)) as tf.Scalar);
        return [value, ...Object.values(grads)];
      };
      await expectWasmMatchesCpu(f);
      model.dispose();
    }
  });
});

describe('training tiny U-Nets on wasm', () => {
  async function trainLosses(cfg: UNetConfig, shape: number[], steps: number): Promise<number[]> {
    await tf.setBackend('wasm');
    const model = buildUNet(cfg);
    model.compile({ optimizer: tf.train.adam(3e-3), loss: 'categoricalCrossentropy' });
    const x = tf.randomUniform([...shape, cfg.inChannels], 0, 1, 'float32', 21);
    // A learnable target: label = which third of [0,1) the (first channel of the) voxel falls in.
    const y = tf.tidy(() => tf.oneHot(tf.cast(tf.floor(tf.mul(tf.squeeze(x, [-1]), cfg.nLab)), 'int32'), cfg.nLab));
    const losses: number[] = [];
    for (let i = 0; i < steps; i++) losses.push((await model.trainOnBatch(x, y)) as number);
    tf.dispose([x, y]);
    model.dispose();
    return losses;
  }

  it('2D: loss decreases over 5 steps', async () => {
    const losses = await trainLosses({ dims: 2, nLab: 3, inChannels: 1, depth: 2, baseFilters: 4, seed: 1 }, [2, 32, 32], 6);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses[5]!).toBeLessThan(losses[0]!);
  });

  it('3D (anisotropic): loss decreases over 5 steps', async () => {
    const losses = await trainLosses({ dims: 3, nLab: 3, inChannels: 1, depth: 2, baseFilters: 4, anisotropicLevels: 1, seed: 2 }, [2, 4, 16, 16], 6);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses[5]!).toBeLessThan(losses[0]!);
  });

  it('does not leak tensors across training steps', async () => {
    await tf.setBackend('wasm');
    const model = buildUNet({ dims: 3, nLab: 2, inChannels: 1, depth: 1, baseFilters: 2, seed: 3 });
    const opt = tf.train.adam(1e-3);
    const x = tf.randomUniform([1, 4, 8, 8, 1], 0, 1, 'float32', 1);
    const y = tf.oneHot(tf.zeros([1, 4, 8, 8], 'int32'), 2);
    const step = () => tf.tidy(() => {
      opt.minimize(() => tf.mean(tf.metrics.categoricalCrossentropy(y, model.apply(x) as tf.Tensor)) as tf.Scalar);
    });
    step();
    const be = tf.backend() as unknown as { numDataIds(): number };
    const [tensors, ids] = [tf.memory().numTensors, be.numDataIds()];
    step();
    step();
    expect(tf.memory().numTensors).toBe(tensors);
    expect(be.numDataIds()).toBe(ids);
    tf.dispose([x, y]);
    opt.dispose();
    model.dispose();
  });
});
