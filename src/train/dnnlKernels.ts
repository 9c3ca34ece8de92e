/** Kernels for the wasm backend run natively by the optional `native/` addon, in place on the wasm heap: convolutions and max pooling in oneDNN, Concat/SplitV as row copies, bias-gradient sums; the wasm kernels stay the fallback. */
//
// Why: 77-88% of a wasm training step is convolution, and XNNPACK's 128-bit wasm SIMD reaches ~25 GFLOP/s
// per core where oneDNN (what PyTorch's CPU convolutions run on) reaches ~100 with AVX-512 FMA. The
// addon is built at install time only where libdnnl-dev is present (scripts/build-native.js); without it
// nothing here registers. The tensors never leave the wasm heap: oneDNN reads and writes them where
// they are, channels last, with tfjs' filter layout.
import os from 'node:os';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { packageFile } from '../packageRoot.js';
import { alloc, geomFrom2D, geomFrom3D, heapBuffer, pool3dInfo, registerWasmKernelsOver, type Fallback, type Geom } from './wasmKernels.js';

type TensorInfo = tf.TensorInfo;
type KernelFunc = tf.KernelFunc;

/** What the addon exports (native/dnnl_conv.cc). */
interface DnnlAddon {
  conv(op: number, dims: Int32Array, heap: ArrayBufferLike, offsets: number[], threads: number): void;
  /** Strided row copies in the heap: [dst, dstStride, src, srcStride, rowBytes, rows] per job, in bytes. */
  copyRows(heap: ArrayBufferLike, jobs: Float64Array): void;
  /** dst[c] = sum over rows of src[r, c], float32, byte offsets. */
  sumRows(heap: ArrayBufferLike, src: number, rows: number, cols: number, dst: number): void;
  version(): string;
}

/** The kernels registered when the addon loads; each falls back to the kernel registered before it. */
export const DNNL_KERNELS = [
  'Conv2D',
  'FusedConv2D',
  'Conv2DBackpropInput',
  'Conv2DBackpropFilter',
  'Conv3D',
  'Conv3DBackpropInputV2',
  'Conv3DBackpropFilterV2',
  'MaxPoolGrad',
  'MaxPool3D',
  'MaxPool3DGrad',
  'Concat',
  'SplitV',
  'Sum',
] as const;

const OP_FORWARD = 0;
const OP_BACKWARD_DATA = 1;
const OP_BACKWARD_WEIGHTS = 2;
const OP_MAX_POOL = 3;
const OP_MAX_POOL_GRAD = 4;
const MARK = Symbol.for('lazylabel.dnnlKernel');

export interface DnnlStatus {
  /** oneDNN version when the addon loaded, else null. */
  version: string | null;
  /** Why it is not used (not built, disabled, failed to load); null when it is. */
  problem: string | null;
}

let addon: DnnlAddon | null = null;
let status: DnnlStatus | null = null;
/** OpenMP threads per convolution: all cores for one training thread, 1 per thread in the data-parallel pool. */
let threads = Math.max(1, os.availableParallelism());

/** Native kernel calls on this thread (the tests check that the kernels did not fall back). */
let calls = 0;
export function dnnlCallCount(): number {
  return calls;
}

/** The addon's path: built in place by node-gyp under native/build/Release. */
export const DNNL_ADDON_PATH = fileURLToPath(packageFile('native/build/Release/lazylabel_dnnl.node'));

/** Loads the addon once. `LAZYLABEL_NATIVE=0` turns it off (for comparisons and to rule it out). */
export function loadDnnl(): DnnlStatus {
  if (status) return status;
  if (process.env.LAZYLABEL_NATIVE === '0') {
    status = { version: null, problem: 'turned off by LAZYLABEL_NATIVE=0' };
    return status;
  }
  try {
    addon = createRequire(import.meta.url)(DNNL_ADDON_PATH) as DnnlAddon;
    status = { version: addon.version(), problem: null };
  } catch (e) {
    const code = (e as { code?: string }).code;
    status = {
      version: null,
      problem: code === 'MODULE_NOT_FOUND'
        ? 'the oneDNN addon is not built (install libdnnl-dev, then `npm run build:native`)'
        : `the oneDNN addon failed to load (${e instanceof Error ? e.message.split('\n')[0] : String(e)})`,
    };
  }
  return status;
}

/** Sets the OpenMP threads each convolution uses on this thread; returns the previous value. */
export function setDnnlThreads(n: number): number {
  const prev = threads;
  threads = Math.max(1, Math.floor(n));
  return prev;
}

/**
 * Trailing pad for oneDNN, which sizes outputs as floor((i - k_eff + lead + trail) / s) + 1: the pad
 * that makes o outputs fit, or 0 when the stride leaves the last input rows unused (negative); null
 * when no pad gives o.
 */
function trailingPad(i: number, o: number, k: number, s: number, dil: number, lead: number): number | null {
  const kEff = (k - 1) * dil + 1;
  const trail = Math.max(0, (o - 1) * s + kEff - i - lead);
  return Math.floor((i - kEff + lead + trail) / s) + 1 === o ? trail : null;
}

/** The addon's dims vector for geometry g, or null when oneDNN cannot take it as is (empty tensors, odd pads). */
function dimsOf(g: Geom, rank: 2 | 3, bias: boolean, relu: boolean): Int32Array | null {
  const pbk = trailingPad(g.d, g.od, g.fd, g.sd, g.dd, g.pf);
  const pb = trailingPad(g.h, g.oh, g.fh, g.sh, g.dh, g.pt);
  const pr = trailingPad(g.w, g.ow, g.fw, g.sw, g.dw, g.pl);
  if (pbk === null || pb === null || pr === null) return null;
  if (Math.min(g.n, g.ci, g.co, g.d, g.h, g.w, g.od, g.oh, g.ow) <= 0 || Math.min(g.pf, g.pt, g.pl) < 0) return null;
  return Int32Array.from([rank, g.n, g.ci, g.co, g.d, g.h, g.w, g.od, g.oh, g.ow, g.fd, g.fh, g.fw, g.sd, g.sh, g.sw,
    g.dd, g.dh, g.dw, g.pf, g.pt, g.pl, pbk, pb, pr, bias ? 1 : 0, relu ? 1 : 0]);
}

const byteOff = (be: BackendWasm, t: TensorInfo): number => be.getMemoryOffset(t.dataId);

function isF32(...ts: Array<TensorInfo | undefined>): boolean {
  return ts.every((t) => !t || t.dtype === 'float32');
}

/** Runs one addon call; the output is allocated first because that may grow (and move) the heap. */
function run(be: BackendWasm, op: number, dims: Int32Array, outShape: number[], operands: Array<TensorInfo | null>): TensorInfo {
  const out = alloc(be, outShape);
  const offs = operands.map((t) => (t ? byteOff(be, t) : -1));
  offs.push(byteOff(be, out));
  addon!.conv(op, dims, heapBuffer(be), offs, threads);
  calls++;
  return out;
}

function conv2dInfo(xShape: number[], filterShape: number[], a: { strides: number | [number, number]; pad: tf.Conv2DAttrs['pad']; dilations?: number | [number, number]; dimRoundingMode?: tf.Conv2DAttrs['dimRoundingMode'] }): Geom {
  return geomFrom2D(tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number], filterShape as [number, number, number, number],
    a.strides, a.dilations ?? 1, a.pad, a.dimRoundingMode, false, 'channelsLast'));
}

function conv3dInfo(xShape: number[], filterShape: number[], a: { strides: number | [number, number, number]; pad: 'valid' | 'same'; dilations?: number | [number, number, number] }): Geom {
  return geomFrom3D(tf.backend_util.computeConv3DInfo(
    xShape as [number, number, number, number, number], filterShape as [number, number, number, number, number],
    a.strides, a.dilations ?? 1, a.pad));
}

/** One addon call: the operation, its dims (null: oneDNN cannot take the geometry), output shape and operands. */
interface Plan {
  op: number;
  dims: Int32Array | null;
  outShape: number[];
  operands: Array<TensorInfo | null>;
}

type Inputs = Record<string, TensorInfo | undefined>;

/**
 * A kernel that runs `plan`'s call in oneDNN; when plan returns null (a layout, dtype or option it does not
 * take) or the geometry does not fit, the kernel registered before ours runs instead.
 */
function dnnlKernel<A>(name: string, plan: (inputs: Inputs, attrs: A) => Plan | null): (stock: Fallback) => KernelFunc {
  return (stock) => (args) => {
    const p = plan(args.inputs as Inputs, args.attrs as unknown as A);
    if (p?.dims) return run(args.backend as BackendWasm, p.op, p.dims, p.outShape, p.operands);
    return fallbackTo(name, stock, args);
  };
}

/** 4-byte element types, which the row copies handle (bool, string and complex go to the fallback). */
const isWord = (t: TensorInfo): boolean => t.dtype === 'float32' || t.dtype === 'int32';

/**
 * Concat as one strided row copy per input (each input is [outer, inner_i] inside the output's
 * [outer, sum inner]). The skip connections' channel concatenations were ~10% of a net2d step in wasm.
 */
function concat(stock: Fallback): KernelFunc {
  return (args) => {
    const xs = args.inputs as unknown as TensorInfo[];
    const a = args.attrs as unknown as tf.ConcatAttrs;
    if (xs.length < 2 || !xs.every((t) => isWord(t) && t.dtype === xs[0]!.dtype)) return fallbackTo('Concat', stock, args);
    const be = args.backend as BackendWasm;
    const axis = tf.util.parseAxisParam(a.axis, xs[0]!.shape)[0]!;
    const outShape = tf.backend_util.computeOutShape(xs.map((t) => t.shape), axis);
    const out = be.makeOutput(outShape, xs[0]!.dtype);
    const outer = tf.util.sizeFromShape(outShape.slice(0, axis));
    const outRow = tf.util.sizeFromShape(outShape.slice(axis)) * 4;
    const jobs = new Float64Array(6 * xs.length);
    let col = byteOff(be, out);
    xs.forEach((t, i) => {
      const row = tf.util.sizeFromShape(t.shape.slice(axis)) * 4;
      if (row > 0) jobs.set([col, outRow, byteOff(be, t), row, row, outer], 6 * i);
      col += row;
    });
    addon!.copyRows(heapBuffer(be), jobs);
    calls++;
    return out;
  };
}

/** SplitV (the gradient of every Concat) as one strided row copy per piece. */
function splitV(stock: Fallback): KernelFunc {
  return (args) => {
    const x = (args.inputs as { x: TensorInfo }).x;
    if (!isWord(x)) return fallbackTo('SplitV', stock, args);
    const a = args.attrs as unknown as tf.SplitVAttrs;
    const be = args.backend as BackendWasm;
    const axis = tf.util.parseAxisParam(a.axis, x.shape)[0]!;
    const sizes = tf.backend_util.prepareSplitSize(x, a.numOrSizeSplits, axis);
    const outer = tf.util.sizeFromShape(x.shape.slice(0, axis));
    const inner = tf.util.sizeFromShape(x.shape.slice(axis + 1)) * 4;
    const inRow = x.shape[axis]! * inner;
    // All outputs first: an allocation can move the heap, so offsets are taken afterwards.
    const outs = sizes.map((sz) => be.makeOutput(x.shape.map((d, i) => (i === axis ? sz : d)), x.dtype));
    const jobs = new Float64Array(6 * outs.length);
    let col = byteOff(be, x);
    outs.forEach((o, i) => {
      const row = sizes[i]! * inner;
      if (row > 0) jobs.set([byteOff(be, o), row, col, inRow, row, outer], 6 * i);
      col += row;
    });
    addon!.copyRows(heapBuffer(be), jobs);
    calls++;
    return outs;
  };
}

/** Sum over the leading axes of a float32 tensor (every bias gradient) natively; other reductions fall back. */
function sum(stock: Fallback): KernelFunc {
  return (args) => {
    const x = (args.inputs as { x: TensorInfo }).x;
    const a = args.attrs as unknown as tf.SumAttrs;
    const rank = x.shape.length;
    const axes = [...new Set(tf.util.parseAxisParam(a.axis, x.shape))].sort((p, q) => p - q);
    const k = axes.length;
    if (x.dtype !== 'float32' || k === 0 || k >= rank || !axes.every((ax, i) => ax === i)) return fallbackTo('Sum', stock, args);
    const be = args.backend as BackendWasm;
    const cols = tf.util.sizeFromShape(x.shape.slice(k));
    const rows = tf.util.sizeFromShape(x.shape.slice(0, k));
    const out = be.makeOutput(a.keepDims ? [...new Array<number>(k).fill(1), ...x.shape.slice(k)] : x.shape.slice(k), 'float32');
    if (cols > 0) addon!.sumRows(heapBuffer(be), byteOff(be, x), rows, cols, byteOff(be, out));
    calls++;
    return out;
  };
}

function fallbackTo(name: string, stock: Fallback, args: Parameters<KernelFunc>[0]): ReturnType<KernelFunc> {
  if (!stock) throw new Error(`${name}: configuration not supported on wasm`);
  return stock(args);
}

const FACTORIES: Record<(typeof DNNL_KERNELS)[number], (stock: Fallback) => KernelFunc> = {
  Conv2D: dnnlKernel<tf.Conv2DAttrs>('Conv2D', ({ x, filter }, a) => {
    if (!x || !filter || a.dataFormat === 'NCHW' || !isF32(x, filter)) return null;
    const g = conv2dInfo(x.shape, filter.shape, a);
    return { op: OP_FORWARD, dims: dimsOf(g, 2, false, false), outShape: [g.n, g.oh, g.ow, g.co], operands: [x, filter, null] };
  }),
  // Conv2D + bias + linear/ReLU (what tfjs layers run at inference); other activations go to the stock kernel.
  FusedConv2D: dnnlKernel<tf.FusedConv2DAttrs>('FusedConv2D', ({ x, filter, bias, preluActivationWeights }, a) => {
    const act = a.activation ?? 'linear';
    if (!x || !filter || a.dataFormat === 'NCHW' || !isF32(x, filter, bias) || preluActivationWeights || (act !== 'linear' && act !== 'relu')) return null;
    if (bias && tf.util.sizeFromShape(bias.shape) !== filter.shape[3]) return null;
    const g = conv2dInfo(x.shape, filter.shape, a);
    return { op: OP_FORWARD, dims: dimsOf(g, 2, Boolean(bias), act === 'relu'), outShape: [g.n, g.oh, g.ow, g.co], operands: [x, filter, bias ?? null] };
  }),
  Conv2DBackpropInput: dnnlKernel<tf.Conv2DBackpropInputAttrs>('Conv2DBackpropInput', ({ dy, filter }, a) => {
    if (!dy || !filter || a.dataFormat === 'NCHW' || !isF32(dy, filter)) return null;
    const g = conv2dInfo(a.inputShape, filter.shape, { ...a, dilations: 1 });
    return { op: OP_BACKWARD_DATA, dims: dimsOf(g, 2, false, false), outShape: [...a.inputShape], operands: [dy, filter] };
  }),
  Conv2DBackpropFilter: dnnlKernel<tf.Conv2DBackpropFilterAttrs>('Conv2DBackpropFilter', ({ x, dy }, a) => {
    if (!x || !dy || a.dataFormat === 'NCHW' || !isF32(x, dy)) return null;
    const g = conv2dInfo(x.shape, a.filterShape, { ...a, dilations: 1 });
    return { op: OP_BACKWARD_WEIGHTS, dims: dimsOf(g, 2, false, false), outShape: [...a.filterShape], operands: [x, dy] };
  }),
  Conv3D: dnnlKernel<tf.Conv3DAttrs>('Conv3D', ({ x, filter }, a) => {
    if (!x || !filter || a.dataFormat === 'NCDHW' || !isF32(x, filter)) return null;
    const g = conv3dInfo(x.shape, filter.shape, a);
    return { op: OP_FORWARD, dims: dimsOf(g, 3, false, false), outShape: [g.n, g.od, g.oh, g.ow, g.co], operands: [x, filter, null] };
  }),
  Conv3DBackpropInputV2: dnnlKernel<tf.Conv3DBackpropInputV2Attrs>('Conv3DBackpropInputV2', ({ dy, filter }, a) => {
    if (!dy || !filter || !isF32(dy, filter)) return null;
    const g = conv3dInfo(a.inputShape, filter.shape, a);
    return { op: OP_BACKWARD_DATA, dims: dimsOf(g, 3, false, false), outShape: [...a.inputShape], operands: [dy, filter] };
  }),
  Conv3DBackpropFilterV2: dnnlKernel<tf.Conv3DBackpropFilterV2Attrs>('Conv3DBackpropFilterV2', ({ x, dy }, a) => {
    if (!x || !dy || !isF32(x, dy)) return null;
    const g = conv3dInfo(x.shape, a.filterShape, a);
    return { op: OP_BACKWARD_WEIGHTS, dims: dimsOf(g, 3, false, false), outShape: [...a.filterShape], operands: [x, dy] };
  }),
  // Max pooling and its gradients (the 2D forward stays XNNPACK's, which is as fast): oneDNN reruns the
  // forward pass to record the argmax, then routes dy; the JS kernels were ~20x slower.
  MaxPoolGrad: dnnlKernel<tf.MaxPoolGradAttrs>('MaxPoolGrad', ({ dy, input }, a) => {
    if (!dy || !input || !isF32(dy, input)) return null;
    const g = geomFrom2D(tf.backend_util.computePool2DInfo(
      input.shape as [number, number, number, number], a.filterSize, a.strides, 1, a.pad, a.dimRoundingMode));
    return { op: OP_MAX_POOL_GRAD, dims: dimsOf(g, 2, false, false), outShape: [...input.shape], operands: [input, dy] };
  }),
  MaxPool3D: dnnlKernel<tf.MaxPool3DAttrs>('MaxPool3D', ({ x }, a) => {
    if (!x || a.dataFormat === 'NCDHW' || !isF32(x)) return null;
    const g = pool3dInfo(x, a);
    return { op: OP_MAX_POOL, dims: dimsOf(g, 3, false, false), outShape: [g.n, g.od, g.oh, g.ow, g.co], operands: [x] };
  }),
  MaxPool3DGrad: dnnlKernel<tf.MaxPool3DGradAttrs>('MaxPool3DGrad', ({ dy, input }, a) => {
    if (!dy || !input || !isF32(dy, input)) return null;
    const g = pool3dInfo(input, a);
    return { op: OP_MAX_POOL_GRAD, dims: dimsOf(g, 3, false, false), outShape: [...input.shape], operands: [input, dy] };
  }),
  Concat: concat,
  SplitV: splitV,
  Sum: sum,
};

/**
 * Registers the oneDNN convolutions for 'wasm' on top of whatever is registered (call after
 * registerWasmTrainingKernels, whose kernels become the fallbacks). Idempotent; registers nothing and
 * says why when the addon is unavailable.
 */
export function registerDnnlKernels(): DnnlStatus & { kernels: string[] } {
  const st = loadDnnl();
  if (!addon) return { ...st, kernels: [] };
  registerWasmKernelsOver(DNNL_KERNELS, FACTORIES, MARK);
  return { ...st, kernels: [...DNNL_KERNELS] };
}
