/** Training kernels for the tfjs wasm backend: the missing Conv2DBackpropFilter plus faster or fixed replacements (3D/backprop convs via XNNPACK, MaxPool3D, Slice/SplitV, Sum), working in place on the wasm heap. */
import * as tf from '@tensorflow/tfjs';
// Side effect: registers the 'wasm' backend and its stock kernels. It must run before we look up the
// stock kernels we wrap, otherwise a later import would silently replace our registrations.
import '@tensorflow/tfjs-backend-wasm';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

type TensorInfo = tf.TensorInfo;
type KernelConfig = tf.KernelConfig;
type KernelFunc = tf.KernelFunc;
type Attrs = tf.NamedAttrMap;

/*
 * Why each kernel is here (measured with tfjs-backend-wasm 4.22 in Node 20, SIMD, no threads):
 *  - Conv2DBackpropFilter: not implemented by the wasm backend at all, so no 2D conv layer can train.
 *  - Conv2DBackpropInput: stock version is a naive loop (~10x slower than XNNPACK Conv2D). dx is a
 *    Conv2D of dy (zero-dilated by the strides) with the flipped, in/out-swapped filter.
 *  - Conv3D, Conv3DBackpropFilterV2: stock versions are naive loops, 10-20x slower than even the pure-JS
 *    cpu backend. A 3D conv is a sum over filter depth of 2D convs, which run on XNNPACK; the filter
 *    gradient is im2col + one (XNNPACK) matrix product.
 *  - Conv3DBackpropInputV2: same trick as Conv2DBackpropInput on top of our Conv3D. The stock kernel
 *    also disagrees with the cpu backend for strided 'same' convs with odd sizes (and so does the stock
 *    Conv3DBackpropFilterV2), which the tests against cpu pin down.
 *  - MaxPool3D: the stock kernel starts its running max at FLT_MIN (1.2e-38) instead of -inf, so
 *    windows of negative values come out as 1.2e-38, and all-zero windows (common after ReLU) too.
 *    Those tiny values then turn into denormals in the next conv, which made it ~10x slower.
 *    MaxPool3DGrad is replaced alongside so both agree on the argmax: the first maximum in the window,
 *    as TensorFlow does. (The cpu backend's MaxPool3DGrad takes the last one, and misroutes gradients
 *    when window sizes differ between axes or 'same' pads unevenly; the tests check those cases
 *    against a plain reference instead.)
 *  - MaxPoolGrad (2D): the stock kernel took ~11 ms per call on net2d's first level (13% of a step once the
 *    convolutions ran in oneDNN). Windows that tile the input (window = stride, no padding: every U-Net
 *    pool) take one pass over dy shared with MaxPool3DGrad; anything else goes to the stock kernel.
 *  - Slice, SplitV: the stock Slice copies the whole input out of the heap (readSync) on every call and
 *    has no fast path above rank 4; SplitV (the gradient of every skip-connection Concat) calls it once
 *    per piece. On a small 3D U-Net that was >50% of a training step. Ours copies strided runs in place.
 *  - Sum over leading axes (every bias gradient): the stock kernel first transposes the reduced axes
 *    to the end, which is slow for rank 5 with few channels. Ours accumulates rows directly.
 *  - Identity: the stock kernel copies the tensor, and tfjs-core clones (Identity) every tensor it saves
 *    for the backward pass (172 copies per net2d step). Ours shares the buffer by reference count, as
 *    the cpu backend and the wasm backend's own Reshape do. Safe because no kernel here or in the wasm
 *    backend writes into its inputs, and Variable.assign swaps the variable's buffer instead of writing.
 * Replacements fall back to the stock kernel only for what they do not handle (channels-first layouts,
 * non-float32 inputs, explicit paddings larger than the filter).
 */

/** Names registered by registerWasmTrainingKernels, in registration order. */
export const WASM_TRAINING_KERNELS = [
  'Conv2DBackpropFilter',
  'Conv2DBackpropInput',
  'Conv3D',
  'Conv3DBackpropFilterV2',
  'Conv3DBackpropInputV2',
  'MaxPool3D',
  'MaxPool3DGrad',
  'MaxPoolGrad',
  'Slice',
  'SplitV',
  'Sum',
  'Identity',
] as const;

/** Marks our kernel functions on the global registry so re-registration (even from a second copy of this module) is a no-op. */
const MARK = Symbol.for('lazylabel.wasmTrainingKernel');

/** im2col chunks are capped at this many floats (64 MiB) so memory stays bounded for big patches. */
let im2colChunkFloats = 1 << 24;

/** Test hook: a small cap forces the multi-chunk path of the filter-gradient kernels. Returns the previous cap. */
export function setIm2colChunkFloats(n: number): number {
  const prev = im2colChunkFloats;
  im2colChunkFloats = Math.max(1, Math.floor(n));
  return prev;
}

// ---------------------------------------------------------------------------------------------
// Heap helpers. All work happens directly on the wasm heap: no readSync copies. Any allocation can
// grow (and so detach) the heap buffer, hence heap() is re-read after every allocation or kernel call.

/** The current wasm memory. (Typed loosely: HEAPU8 comes from the emscripten typings, which are not always in scope.) */
export function heapBuffer(be: BackendWasm): ArrayBufferLike {
  return (be.wasm as unknown as { HEAPU8: Uint8Array }).HEAPU8.buffer;
}

function heap(be: BackendWasm): Float32Array {
  return new Float32Array(heapBuffer(be));
}

/** Float index of a tensor's first element in heap(). */
export function off(be: BackendWasm, t: TensorInfo): number {
  return be.getMemoryOffset(t.dataId) >>> 2;
}

export function alloc(be: BackendWasm, shape: number[]): TensorInfo {
  return be.makeOutput(shape, 'float32');
}

export function free(be: BackendWasm, ...ts: TensorInfo[]): void {
  for (const t of ts) be.disposeData(t.dataId);
}

/** Copies len floats inside the heap; copyWithin is a memmove but has call overhead for tiny runs. */
function copyRun(F: Float32Array, dst: number, src: number, len: number): void {
  if (len < 16) {
    for (let i = 0; i < len; i++) F[dst + i] = F[src + i];
  } else {
    F.copyWithin(dst, src, src + len);
  }
}

function wasmKernel(name: string): KernelFunc {
  const k = tf.getKernel(name, 'wasm');
  if (!k) throw new Error(`wasm backend has no '${name}' kernel (is @tensorflow/tfjs-backend-wasm loaded?)`);
  return k.kernelFunc;
}

function runKernel(name: string, be: BackendWasm, inputs: Record<string, TensorInfo>, attrs: Attrs): TensorInfo {
  return wasmKernel(name)({ inputs, backend: be, attrs }) as TensorInfo;
}

function assertFloat32(name: string, ...ts: TensorInfo[]): void {
  for (const t of ts) {
    if (t.dtype !== 'float32') throw new Error(`${name} on wasm needs float32 tensors, got ${t.dtype}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Geometry shared by 2D (d = od = fd = 1) and 3D convolutions, channels last.

export interface Geom {
  n: number;
  d: number; h: number; w: number; ci: number;
  od: number; oh: number; ow: number; co: number;
  fd: number; fh: number; fw: number;
  sd: number; sh: number; sw: number;
  dd: number; dh: number; dw: number;
  /** Leading pads (front/top/left) locate the window; trailing ones (bottom/right) are only needed by Conv2D. */
  pf: number; pt: number; pb: number; pl: number; pr: number;
}

export function geomFrom3D(c: tf.backend_util.Conv3DInfo): Geom {
  return {
    n: c.batchSize, d: c.inDepth, h: c.inHeight, w: c.inWidth, ci: c.inChannels,
    od: c.outDepth, oh: c.outHeight, ow: c.outWidth, co: c.outChannels,
    fd: c.filterDepth, fh: c.filterHeight, fw: c.filterWidth,
    sd: c.strideDepth, sh: c.strideHeight, sw: c.strideWidth,
    dd: c.dilationDepth, dh: c.dilationHeight, dw: c.dilationWidth,
    pf: c.padInfo.front, pt: c.padInfo.top, pb: c.padInfo.bottom, pl: c.padInfo.left, pr: c.padInfo.right,
  };
}

export function geomFrom2D(c: tf.backend_util.Conv2DInfo): Geom {
  return {
    n: c.batchSize, d: 1, h: c.inHeight, w: c.inWidth, ci: c.inChannels,
    od: 1, oh: c.outHeight, ow: c.outWidth, co: c.outChannels,
    fd: 1, fh: c.filterHeight, fw: c.filterWidth,
    sd: 1, sh: c.strideHeight, sw: c.strideWidth,
    dd: 1, dh: c.dilationHeight, dw: c.dilationWidth,
    pf: 0, pt: c.padInfo.top, pb: c.padInfo.bottom, pl: c.padInfo.left, pr: c.padInfo.right,
  };
}

/** Output indices o with 0 <= o*s + k*dil - pad < size, as [lo, hi] (empty when lo > hi). */
function validRange(size: number, outSize: number, s: number, k: number, dil: number, pad: number): [number, number] {
  const lo = Math.max(0, Math.ceil((pad - k * dil) / s));
  const hi = Math.min(outSize - 1, Math.floor((size - 1 + pad - k * dil) / s));
  return [lo, hi];
}

/**
 * Geometry of the backprop-input pass as a stride-1 correlation: dy is dilated by the forward strides
 * (zeros inserted, size (o-1)*s+1), padded by f-1-leading pad in front, and correlated with the flipped
 * filter; that yields dx. Returns null when it would need negative padding (only for odd explicit pads).
 */
function backpropInputGeom(g: Geom): Geom | null {
  const od = (g.od - 1) * g.sd + 1;
  const oh = (g.oh - 1) * g.sh + 1;
  const ow = (g.ow - 1) * g.sw + 1;
  const pf = g.fd - 1 - g.pf;
  const pt = g.fh - 1 - g.pt;
  const pl = g.fw - 1 - g.pl;
  // Trailing pads so that the output has the original input size.
  const pback = g.d - od + g.fd - 1 - pf;
  const pb = g.h - oh + g.fh - 1 - pt;
  const pr = g.w - ow + g.fw - 1 - pl;
  if (Math.min(pf, pt, pl, pback, pb, pr) < 0) return null;
  return {
    n: g.n, d: od, h: oh, w: ow, ci: g.co,
    od: g.d, oh: g.h, ow: g.w, co: g.ci,
    fd: g.fd, fh: g.fh, fw: g.fw,
    sd: 1, sh: 1, sw: 1, dd: 1, dh: 1, dw: 1,
    pf, pt, pb, pl, pr,
  };
}

/** dy [n,od,oh,ow,c] with (s-1) zeros inserted between elements along each strided axis; dy itself when all strides are 1. */
function dilateForStrides(be: BackendWasm, dy: TensorInfo, fwd: Geom, bwd: Geom): TensorInfo {
  if (fwd.sd === 1 && fwd.sh === 1 && fwd.sw === 1) return dy;
  const c = fwd.co;
  const out = alloc(be, [bwd.n, bwd.d, bwd.h, bwd.w, c]);
  const F = heap(be);
  const oo = off(be, out);
  const so = off(be, dy);
  F.fill(0, oo, oo + bwd.n * bwd.d * bwd.h * bwd.w * c);
  let src = so;
  for (let b = 0; b < fwd.n; b++) {
    for (let z = 0; z < fwd.od; z++) {
      for (let y = 0; y < fwd.oh; y++) {
        const rowDst = oo + (((b * bwd.d + z * fwd.sd) * bwd.h + y * fwd.sh) * bwd.w) * c;
        for (let x = 0; x < fwd.ow; x++, src += c) copyRun(F, rowDst + x * fwd.sw * c, src, c);
      }
    }
  }
  return out;
}

/** Filter [fd,fh,fw,ci,co] -> flipped along all spatial axes with ci/co swapped: [fd,fh,fw,co,ci]. */
function flipSwapFilter(be: BackendWasm, filter: TensorInfo, fd: number, fh: number, fw: number, ci: number, co: number, outShape: number[]): TensorInfo {
  const out = alloc(be, outShape);
  const F = heap(be);
  const src = off(be, filter);
  const dst = off(be, out);
  const taps = fd * fh * fw;
  const block = ci * co;
  for (let t = 0; t < taps; t++) {
    const s = src + (taps - 1 - t) * block; // reversing the flat tap index flips d, h and w at once
    const o = dst + t * block;
    for (let i = 0; i < ci; i++) {
      for (let j = 0; j < co; j++) F[o + j * ci + i] = F[s + i * co + j];
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Cores.

/**
 * Channels-last 3D convolution as a sum over filter depth of XNNPACK 2D convolutions:
 * out[b, z] += conv2d(x[b, z*sd + kd*dd - pf], filter[kd]). Depth slices are gathered so that each
 * kd is one Conv2D call over a batch of n*count planes.
 */
function conv3dViaConv2d(be: BackendWasm, x: TensorInfo, filter: TensorInfo, g: Geom): TensorInfo {
  const plane = g.h * g.w * g.ci;
  const oplane = g.oh * g.ow * g.co;
  const ftap = g.fh * g.fw * g.ci * g.co;
  const conv2dAttrs: Attrs = {
    strides: [g.sh, g.sw],
    pad: [[0, 0], [g.pt, g.pb], [g.pl, g.pr], [0, 0]],
    dilations: [g.dh, g.dw],
    dataFormat: 'NHWC',
  };
  // Filter depths that touch every output depth go first: the first one's Conv2D result (already laid
  // out as [n, od, oh, ow, co]) becomes the accumulator, saving a zero-fill and one add pass.
  const taps: Array<{ kd: number; lo: number; cnt: number }> = [];
  for (let kd = 0; kd < g.fd; kd++) {
    const [lo, hi] = validRange(g.d, g.od, g.sd, kd, g.dd, g.pf);
    if (hi >= lo) taps.push({ kd, lo, cnt: hi - lo + 1 });
  }
  taps.sort((p, q) => q.cnt - p.cnt);
  let out: TensorInfo | null = null;
  for (const { kd, lo, cnt } of taps) {
    const shift = kd * g.dd - g.pf;
    // When output depth z reads input depth z for every z, x itself is the batch of planes.
    const identity = cnt === g.d && g.od === g.d && g.sd === 1 && shift === 0;
    const xs = identity ? { dataId: x.dataId, shape: [g.n * g.d, g.h, g.w, g.ci], dtype: x.dtype } : alloc(be, [g.n * cnt, g.h, g.w, g.ci]);
    const wk = alloc(be, [g.fh, g.fw, g.ci, g.co]);
    let F = heap(be);
    if (!identity) {
      const xo = off(be, x);
      const so = off(be, xs);
      for (let b = 0; b < g.n; b++) {
        for (let j = 0; j < cnt; j++) {
          const src = xo + (b * g.d + (lo + j) * g.sd + shift) * plane;
          F.copyWithin(so + (b * cnt + j) * plane, src, src + plane);
        }
      }
    }
    const fo = off(be, filter) + kd * ftap;
    F.copyWithin(off(be, wk), fo, fo + ftap);
    const y = runKernel('Conv2D', be, { x: xs, filter: wk }, conv2dAttrs);
    if (!identity) free(be, xs);
    free(be, wk);
    if (!out && cnt === g.od) {
      out = { dataId: y.dataId, shape: [g.n, g.od, g.oh, g.ow, g.co], dtype: 'float32' };
      continue;
    }
    if (!out) {
      out = alloc(be, [g.n, g.od, g.oh, g.ow, g.co]);
      heap(be).fill(0, off(be, out), off(be, out) + g.n * g.od * oplane);
    }
    F = heap(be);
    const yo = off(be, y);
    const oo = off(be, out);
    for (let b = 0; b < g.n; b++) {
      for (let j = 0; j < cnt; j++) {
        const s = yo + (b * cnt + j) * oplane;
        const t = oo + (b * g.od + lo + j) * oplane;
        for (let i = 0; i < oplane; i++) F[t + i] += F[s + i];
      }
    }
    free(be, y);
  }
  if (!out) {
    // No filter depth overlaps the input (only possible with huge padding): all zeros.
    out = alloc(be, [g.n, g.od, g.oh, g.ow, g.co]);
    heap(be).fill(0, off(be, out), off(be, out) + g.n * g.od * oplane);
  }
  return out;
}

/**
 * Writes colT[k, m] for the output rows yo0..yo0+nrows-1 of plane (b, zo): colT row k = (kd,kh,kw,c)
 * holds x_cf[c, b, iz, iy, ix] for each output pixel (0 outside the input). dst points at colT[0, m0].
 * With unit H/W strides and w == ow, consecutive output rows read consecutive input rows, so a whole
 * segment is one copy; only the columns that fall outside the input are then zeroed.
 */
function fillSegment(
  F: Float32Array, dst: number, mc: number, xOff: number, spatialIn: number, g: Geom,
  b: number, zo: number, yo0: number, nrows: number, kwLo: number[], kwHi: number[],
): void {
  const { ci, ow, fd, fh, fw } = g;
  const len = nrows * ow;
  const block = g.sh === 1 && g.sw === 1 && g.w === ow;
  for (let kd = 0; kd < fd; kd++) {
    const iz = zo * g.sd + kd * g.dd - g.pf;
    const zOk = iz >= 0 && iz < g.d;
    for (let kh = 0; kh < fh; kh++) {
      // Output rows (within this segment) whose input row is inside the image.
      const [yLo, yHi] = validRange(g.h, g.oh, g.sh, kh, g.dh, g.pt);
      const r0 = zOk ? Math.max(0, yLo - yo0) : nrows;
      const r1 = zOk ? Math.min(nrows - 1, yHi - yo0) : -1;
      for (let kw = 0; kw < fw; kw++) {
        const lo = kwLo[kw];
        const hi = kwHi[kw];
        const shift = kw * g.dw - g.pl;
        let d = dst + ((kd * fh + kh) * fw + kw) * ci * mc;
        for (let c = 0; c < ci; c++, d += mc) {
          if (r0 > r1 || lo > hi) {
            F.fill(0, d, d + len);
            continue;
          }
          if (r0 > 0) F.fill(0, d, d + r0 * ow);
          if (r1 < nrows - 1) F.fill(0, d + (r1 + 1) * ow, d + len);
          // Start of x_cf[c, b, iz, iy(yo0), shift]; output row r reads input row iy(yo0) + r*sh.
          const src0 = xOff + c * spatialIn + ((b * g.d + iz) * g.h + yo0 * g.sh + kh * g.dh - g.pt) * g.w + shift;
          const srcRow = g.sh * g.w;
          if (block) {
            const s0 = src0 + r0 * srcRow;
            F.copyWithin(d + r0 * ow, s0, s0 + (r1 - r0 + 1) * ow);
            if (lo > 0 || hi < ow - 1) {
              for (let r = r0; r <= r1; r++) {
                const rd = d + r * ow;
                for (let xo = 0; xo < lo; xo++) F[rd + xo] = 0;
                for (let xo = hi + 1; xo < ow; xo++) F[rd + xo] = 0;
              }
            }
          } else {
            for (let r = r0; r <= r1; r++) {
              const rd = d + r * ow;
              const src = src0 + r * srcRow;
              for (let xo = 0; xo < lo; xo++) F[rd + xo] = 0;
              for (let xo = hi + 1; xo < ow; xo++) F[rd + xo] = 0;
              if (g.sw === 1) copyRun(F, rd + lo, src + lo, hi - lo + 1);
              else for (let xo = lo; xo <= hi; xo++) F[rd + xo] = F[src + xo * g.sw];
            }
          }
        }
      }
    }
  }
}

/**
 * Filter gradient dW[kd,kh,kw,ci,co] = sum over output pixels m of patch(x)[m, k] * dy[m, co], computed
 * as colT [K, M] @ dy [M, co] with a transposed im2col, chunked over output rows. This orientation
 * matters: wasm's BatchMatMul (XNNPACK) repacks its second operand on every call, so that operand must
 * be the small dy, not the 27x larger im2col matrix; transposed operands take a slow path, so colT is
 * built already transposed. It is filled from a channels-first copy of x, where each (k, output row)
 * is one contiguous run.
 */
function convBackpropFilterIm2col(be: BackendWasm, x: TensorInfo, dy: TensorInfo, g: Geom, outShape: number[]): TensorInfo {
  const { ci, co, ow, fd, fh, fw } = g;
  const K = fd * fh * fw * ci;
  const rows = g.n * g.od * g.oh; // each row is ow output pixels
  const spatialIn = g.n * g.d * g.h * g.w;
  const rowsPerChunk = Math.max(1, Math.floor(im2colChunkFloats / (ow * K)));
  const xcf = ci === 1 ? x : runKernel('Transpose', be, { x: { dataId: x.dataId, shape: [spatialIn, ci], dtype: x.dtype } }, { perm: [1, 0] });
  // Valid output-column ranges per kw do not depend on the row.
  const kwLo: number[] = [];
  const kwHi: number[] = [];
  for (let kw = 0; kw < fw; kw++) {
    const [lo, hi] = validRange(g.w, ow, g.sw, kw, g.dw, g.pl);
    kwLo.push(lo);
    kwHi.push(hi);
  }
  const single = rowsPerChunk >= rows;
  const acc = single ? null : new Float32Array(K * co);
  let result: TensorInfo | null = null;
  for (let r0 = 0; r0 < rows; r0 += rowsPerChunk) {
    const rc = Math.min(rowsPerChunk, rows - r0);
    const mc = rc * ow;
    const colT = alloc(be, [K, mc]);
    const dyc = single ? { dataId: dy.dataId, shape: [mc, co], dtype: dy.dtype } : alloc(be, [mc, co]);
    const F = heap(be);
    const colOff = off(be, colT);
    const xOff = off(be, xcf);
    // Walk the chunk as segments of consecutive output rows inside one (b, zo) plane.
    for (let r = 0; r < rc;) {
      const row = r0 + r;
      const yo0 = row % g.oh;
      const plane = Math.floor(row / g.oh); // = b * od + zo
      const zo = plane % g.od;
      const b = Math.floor(plane / g.od);
      const nrows = Math.min(g.oh - yo0, rc - r);
      fillSegment(F, colOff + r * ow, mc, xOff, spatialIn, g, b, zo, yo0, nrows, kwLo, kwHi);
      r += nrows;
    }
    if (!single) {
      const s = off(be, dy) + r0 * ow * co;
      F.copyWithin(off(be, dyc), s, s + mc * co);
    }
    const prod = runKernel('BatchMatMul', be, { a: colT, b: dyc }, { transposeA: false, transposeB: false });
    free(be, colT);
    if (single) {
      result = prod;
    } else {
      const P = heap(be);
      const po = off(be, prod);
      for (let i = 0; i < K * co; i++) acc![i] += P[po + i];
      free(be, dyc, prod);
    }
  }
  if (xcf !== x) free(be, xcf);
  if (result) return { dataId: result.dataId, shape: outShape, dtype: 'float32' };
  const out = alloc(be, outShape);
  heap(be).set(acc!, off(be, out));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Kernels.

export type Fallback = KernelFunc | undefined;

function conv2dBackpropFilter(_stock: Fallback): KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const be = backend as BackendWasm;
    let { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
    const a = attrs as unknown as tf.Conv2DBackpropFilterAttrs;
    assertFloat32('Conv2DBackpropFilter', x, dy);
    const temps: TensorInfo[] = [];
    let pad = a.pad;
    if (a.dataFormat === 'NCHW') {
      // Rare in practice (tfjs layers default to channels last): compute in NHWC.
      x = runKernel('Transpose', be, { x }, { perm: [0, 2, 3, 1] });
      dy = runKernel('Transpose', be, { x: dy }, { perm: [0, 2, 3, 1] });
      temps.push(x, dy);
      if (Array.isArray(pad)) pad = [pad[0], pad[2], pad[3], pad[1]];
    }
    const info = tf.backend_util.computeConv2DInfo(
      x.shape as [number, number, number, number], a.filterShape, a.strides, 1, pad, a.dimRoundingMode, false, 'channelsLast');
    const out = convBackpropFilterIm2col(be, x, dy, geomFrom2D(info), [...a.filterShape]);
    free(be, ...temps);
    return out;
  };
}

function conv2dBackpropInput(stock: Fallback): KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args;
    const be = backend as BackendWasm;
    const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
    const a = attrs as unknown as tf.Conv2DBackpropInputAttrs;
    const info = a.dataFormat === 'NCHW' ? null : tf.backend_util.computeConv2DInfo(
      a.inputShape, filter.shape as [number, number, number, number], a.strides, 1, a.pad, a.dimRoundingMode, false, 'channelsLast');
    const fwd = info ? geomFrom2D(info) : null;
    const g = fwd ? backpropInputGeom(fwd) : null;
    if (!fwd || !g || dy.dtype !== 'float32' || filter.dtype !== 'float32') {
      if (!stock) throw new Error('Conv2DBackpropInput: unsupported configuration on wasm');
      return stock(args);
    }
    const dyd = dilateForStrides(be, dy, fwd, g);
    const wf = flipSwapFilter(be, filter, 1, g.fh, g.fw, g.co, g.ci, [g.fh, g.fw, g.ci, g.co]);
    const dyIn = dyd === dy ? dy : { dataId: dyd.dataId, shape: [g.n, g.h, g.w, g.ci], dtype: dyd.dtype };
    const out = runKernel('Conv2D', be, { x: dyIn, filter: wf }, {
      strides: [1, 1],
      pad: [[0, 0], [g.pt, g.pb], [g.pl, g.pr], [0, 0]],
      dilations: [1, 1],
      dataFormat: 'NHWC',
    });
    free(be, wf);
    if (dyd !== dy) free(be, dyd);
    return out;
  };
}

function conv3d(stock: Fallback): KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args;
    const be = backend as BackendWasm;
    const { x, filter } = inputs as { x: TensorInfo; filter: TensorInfo };
    const a = attrs as unknown as tf.Conv3DAttrs;
    if (a.dataFormat === 'NCDHW' || x.dtype !== 'float32' || filter.dtype !== 'float32') {
      if (!stock) throw new Error('Conv3D: unsupported configuration on wasm');
      return stock(args);
    }
    const info = tf.backend_util.computeConv3DInfo(
      x.shape as [number, number, number, number, number], filter.shape as [number, number, number, number, number],
      a.strides, a.dilations, a.pad);
    return conv3dViaConv2d(be, x, filter, geomFrom3D(info));
  };
}

function conv3dBackpropFilter(stock: Fallback): KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args;
    const be = backend as BackendWasm;
    const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
    const a = attrs as unknown as tf.Conv3DBackpropFilterV2Attrs;
    if (x.dtype !== 'float32' || dy.dtype !== 'float32') {
      if (!stock) throw new Error('Conv3DBackpropFilterV2: unsupported dtype on wasm');
      return stock(args);
    }
    const info = tf.backend_util.computeConv3DInfo(
      x.shape as [number, number, number, number, number], a.filterShape, a.strides, 1, a.pad);
    return convBackpropFilterIm2col(be, x, dy, geomFrom3D(info), [...a.filterShape]);
  };
}

function conv3dBackpropInput(stock: Fallback): KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args;
    const be = backend as BackendWasm;
    const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
    const a = attrs as unknown as tf.Conv3DBackpropInputV2Attrs;
    const info = tf.backend_util.computeConv3DInfo(
      a.inputShape, filter.shape as [number, number, number, number, number], a.strides, 1, a.pad);
    const fwd = geomFrom3D(info);
    const g = backpropInputGeom(fwd);
    if (!g || dy.dtype !== 'float32' || filter.dtype !== 'float32') {
      if (!stock) throw new Error('Conv3DBackpropInputV2: unsupported configuration on wasm');
      return stock(args);
    }
    const dyd = dilateForStrides(be, dy, fwd, g);
    const wf = flipSwapFilter(be, filter, g.fd, g.fh, g.fw, g.co, g.ci, [g.fd, g.fh, g.fw, g.ci, g.co]);
    const out = conv3dViaConv2d(be, dyd, wf, g);
    free(be, wf);
    if (dyd !== dy) free(be, dyd);
    return out;
  };
}

/** Window geometry of a channels-last 3D pooling. */
export function pool3dInfo(x: TensorInfo, a: { filterSize: [number, number, number] | number; strides: [number, number, number] | number; pad: 'valid' | 'same' | number; dimRoundingMode?: 'floor' | 'round' | 'ceil' }): Geom {
  const info = tf.backend_util.computePool3DInfo(
    x.shape as [number, number, number, number, number], a.filterSize, a.strides, 1, a.pad, a.dimRoundingMode, 'NDHWC');
  return geomFrom3D(info);
}

/**
 * Visits every output pixel of a 3D pooling with the heap offsets (in floats, channel 0) of the output
 * and of each input pixel of its window (clipped to the input).
 */
function forEachPoolWindow(g: Geom, xOff: number, outOff: number, visit: (o: number, window: number[]) => void): void {
  const win: number[] = [];
  let o = outOff;
  for (let b = 0; b < g.n; b++) {
    for (let zo = 0; zo < g.od; zo++) {
      for (let yo = 0; yo < g.oh; yo++) {
        for (let xo = 0; xo < g.ow; xo++, o += g.ci) {
          win.length = 0;
          for (let kd = 0; kd < g.fd; kd++) {
            const z = zo * g.sd + kd - g.pf;
            if (z < 0 || z >= g.d) continue;
            for (let kh = 0; kh < g.fh; kh++) {
              const y = yo * g.sh + kh - g.pt;
              if (y < 0 || y >= g.h) continue;
              for (let kw = 0; kw < g.fw; kw++) {
                const xx = xo * g.sw + kw - g.pl;
                if (xx < 0 || xx >= g.w) continue;
                win.push(xOff + (((b * g.d + z) * g.h + y) * g.w + xx) * g.ci);
              }
            }
          }
          visit(o, win);
        }
      }
    }
  }
}

function maxPool3d(stock: Fallback): KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args;
    const be = backend as BackendWasm;
    const x = (inputs as { x: TensorInfo }).x;
    const a = attrs as unknown as tf.MaxPool3DAttrs;
    if (a.dataFormat === 'NCDHW' || x.dtype !== 'float32') {
      if (!stock) throw new Error('MaxPool3D: unsupported configuration on wasm');
      return stock(args);
    }
    const g = pool3dInfo(x, a);
    const c = g.ci;
    const out = alloc(be, [g.n, g.od, g.oh, g.ow, c]);
    const F = heap(be);
    if (tiles(g)) {
      maxPoolTiled(F, g, off(be, x), off(be, out));
      return out;
    }
    forEachPoolWindow(g, off(be, x), off(be, out), (o, win) => {
      for (let k = 0; k < c; k++) F[o + k] = -Infinity; // (an empty window stays -inf, as in TF)
      for (const p of win) {
        for (let k = 0; k < c; k++) {
          const v = F[p + k];
          if (v > F[o + k]) F[o + k] = v;
        }
      }
    });
    return out;
  };
}

/**
 * dx of a max pooling whose windows tile the input (window = stride, no padding; what U-Nets use), in
 * one pass: each dy goes to the first maximum of its window (kd, kh, kw order, as the general path).
 * dx must be zeroed; positions outside every window (a remainder the stride leaves) stay 0.
 */
function maxPoolGradTiled(F: Float32Array, g: Geom, xOff: number, dyOff: number, dxShift: number): void {
  const c = g.ci;
  const rowStride = g.w * c;
  const planeStride = g.h * rowStride;
  // Per window: the running max and its position per channel, updated one contiguous channel run at a
  // time (the window's pixels in kd, kh, kw order, so ties go to the first, as in the general path).
  const best = new Float32Array(c);
  const arg = new Int32Array(c);
  let o = dyOff;
  for (let b = 0; b < g.n; b++) {
    for (let zo = 0; zo < g.od; zo++) {
      for (let yo = 0; yo < g.oh; yo++) {
        let base = xOff + (((b * g.d + zo * g.fd) * g.h + yo * g.fh) * g.w) * c;
        for (let xo = 0; xo < g.ow; xo++, o += c, base += g.fw * c) {
          best.fill(-Infinity);
          arg.fill(-1);
          for (let kd = 0; kd < g.fd; kd++) {
            for (let kh = 0; kh < g.fh; kh++) {
              let p = base + kd * planeStride + kh * rowStride;
              for (let kw = 0; kw < g.fw; kw++, p += c) {
                for (let k = 0; k < c; k++) {
                  const v = F[p + k]!;
                  if (v > best[k]!) {
                    best[k] = v;
                    arg[k] = p + k;
                  }
                }
              }
            }
          }
          for (let k = 0; k < c; k++) if (arg[k]! >= 0) F[arg[k]! + dxShift] = F[o + k]!;
        }
      }
    }
  }
}

/**
 * Max pooling over tiling windows (see maxPoolGradTiled) in one pass: 1.2-1.4x the general path on net3d's
 * pools. The two tiled loops are written out rather than shared through per-window callbacks, which cost
 * back most of the gain (measured: 15.1 vs 11.9 ms here, 8.7 vs 7.3 ms for the gradient).
 */
function maxPoolTiled(F: Float32Array, g: Geom, xOff: number, outOff: number): void {
  const c = g.ci;
  const rowStride = g.w * c;
  const planeStride = g.h * rowStride;
  let o = outOff;
  for (let b = 0; b < g.n; b++) {
    for (let zo = 0; zo < g.od; zo++) {
      for (let yo = 0; yo < g.oh; yo++) {
        let base = xOff + (((b * g.d + zo * g.fd) * g.h + yo * g.fh) * g.w) * c;
        for (let xo = 0; xo < g.ow; xo++, o += c, base += g.fw * c) {
          for (let k = 0; k < c; k++) F[o + k] = -Infinity;
          for (let kd = 0; kd < g.fd; kd++) {
            for (let kh = 0; kh < g.fh; kh++) {
              let p = base + kd * planeStride + kh * rowStride;
              for (let kw = 0; kw < g.fw; kw++, p += c) {
                for (let k = 0; k < c; k++) {
                  const v = F[p + k]!;
                  if (v > F[o + k]!) F[o + k] = v;
                }
              }
            }
          }
        }
      }
    }
  }
}

/** Window = stride and no padding: every input pixel is in at most one window. */
function tiles(g: Geom): boolean {
  return g.fd === g.sd && g.fh === g.sh && g.fw === g.sw && g.pf === 0 && g.pt === 0 && g.pl === 0
    && g.od * g.fd <= g.d && g.oh * g.fh <= g.h && g.ow * g.fw <= g.w;
}

function maxPool3dGrad(stock: Fallback): KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args;
    const be = backend as BackendWasm;
    const { dy, input } = inputs as { dy: TensorInfo; input: TensorInfo };
    if (input.dtype !== 'float32' || dy.dtype !== 'float32') {
      if (!stock) throw new Error('MaxPool3DGrad: unsupported dtype on wasm');
      return stock(args);
    }
    const g = pool3dInfo(input, attrs as unknown as tf.MaxPool3DGradAttrs);
    const c = g.ci;
    const dx = alloc(be, input.shape);
    const F = heap(be);
    const dxShift = off(be, dx) - off(be, input); // same layout: dx index = input index + shift
    F.fill(0, off(be, dx), off(be, dx) + tf.util.sizeFromShape(input.shape));
    if (tiles(g)) {
      maxPoolGradTiled(F, g, off(be, input), off(be, dy), dxShift);
      return dx;
    }
    const best = new Float32Array(c);
    const arg = new Int32Array(c);
    // Walk dy with the output offsets; route each dy to the first maximum of its window.
    forEachPoolWindow(g, off(be, input), off(be, dy), (o, win) => {
      best.fill(-Infinity);
      arg.fill(-1);
      for (const p of win) {
        for (let k = 0; k < c; k++) {
          const v = F[p + k];
          if (v > best[k]) {
            best[k] = v;
            arg[k] = p + k;
          }
        }
      }
      for (let k = 0; k < c; k++) if (arg[k] >= 0) F[arg[k] + dxShift] += F[o + k];
    });
    return dx;
  };
}

/**
 * 2D MaxPoolGrad for tiling windows (the U-Net's 2x2 pools) through the same pass as 3D; the stock wasm
 * kernel took 11 ms per call on net2d's first level, ~13% of a step once convolutions ran in oneDNN.
 */
function maxPoolGrad(stock: Fallback): KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args;
    const be = backend as BackendWasm;
    const { dy, input } = inputs as { dy: TensorInfo; input: TensorInfo };
    const a = attrs as unknown as tf.MaxPoolGradAttrs;
    const g = geomFrom2D(tf.backend_util.computePool2DInfo(
      input.shape as [number, number, number, number], a.filterSize, a.strides, 1, a.pad, a.dimRoundingMode));
    if (input.dtype !== 'float32' || dy.dtype !== 'float32' || !tiles(g)) {
      if (!stock) throw new Error('MaxPoolGrad: unsupported configuration on wasm');
      return stock(args);
    }
    const dx = alloc(be, input.shape);
    const F = heap(be);
    F.fill(0, off(be, dx), off(be, dx) + tf.util.sizeFromShape(input.shape));
    maxPoolGradTiled(F, g, off(be, input), off(be, dy), off(be, dx) - off(be, input));
    return dx;
  };
}

/** Whole-heap view for raw element copies: 4-byte types copy as Int32 (bit-exact), bool as bytes. */
function rawHeap(be: BackendWasm, dtype: tf.DataType): Int32Array | Uint8Array {
  const buf = heapBuffer(be);
  return dtype === 'bool' ? new Uint8Array(buf) : new Int32Array(buf);
}

/** Copies x[begin : begin+size] into a new tensor, one contiguous run per index of the outer axes. */
function sliceRaw(be: BackendWasm, x: TensorInfo, begin: number[], size: number[]): TensorInfo {
  const out = be.makeOutput(size, x.dtype);
  const n = tf.util.sizeFromShape(size);
  if (n === 0) return out;
  const H = rawHeap(be, x.dtype);
  const bpe = H.BYTES_PER_ELEMENT;
  const xo = be.getMemoryOffset(x.dataId) / bpe;
  const oo = be.getMemoryOffset(out.dataId) / bpe;
  const rank = x.shape.length;
  const strides = [...tf.util.computeStrides(x.shape), 1];
  // Axes after k are taken whole, so each index of axes 0..k-1 is one run of size[k]*strides[k].
  let k = rank - 1;
  while (k >= 0 && begin[k] === 0 && size[k] === x.shape[k]) k--;
  if (k < 0) {
    H.copyWithin(oo, xo, xo + n);
    return out;
  }
  const run = size[k] * strides[k];
  const runs = n / run;
  let base = xo;
  for (let j = 0; j <= k; j++) base += begin[j] * strides[j];
  const idx = new Array<number>(k).fill(0);
  let src = base;
  for (let i = 0, dst = oo; i < runs; i++, dst += run) {
    if (run < 16) {
      for (let t = 0; t < run; t++) H[dst + t] = H[src + t];
    } else {
      H.copyWithin(dst, src, src + run);
    }
    // Odometer over axes k-1..0, keeping src in step.
    for (let j = k - 1; j >= 0; j--) {
      if (++idx[j] < size[j]) {
        src += strides[j];
        break;
      }
      idx[j] = 0;
      src -= (size[j] - 1) * strides[j];
    }
  }
  return out;
}

function slice(stock: Fallback): KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args;
    const x = (inputs as { x: TensorInfo }).x;
    if (x.dtype === 'string') {
      if (!stock) throw new Error('Slice of strings is not supported here');
      return stock(args);
    }
    const a = attrs as unknown as tf.SliceAttrs;
    const [begin, size] = tf.slice_util.parseSliceParams(x as tf.Tensor, a.begin, a.size);
    return sliceRaw(backend as BackendWasm, x, begin, size);
  };
}

function splitV(stock: Fallback): KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args;
    const x = (inputs as { x: TensorInfo }).x;
    if (x.dtype === 'string') {
      if (!stock) throw new Error('SplitV of strings is not supported here');
      return stock(args);
    }
    const a = attrs as unknown as tf.SplitVAttrs;
    const axis = tf.util.parseAxisParam(a.axis, x.shape)[0];
    const sizes = tf.backend_util.prepareSplitSize(x, a.numOrSizeSplits, axis);
    const begin = new Array<number>(x.shape.length).fill(0);
    return sizes.map((sz) => {
      const size = [...x.shape];
      size[axis] = sz;
      const piece = sliceRaw(backend as BackendWasm, x, [...begin], size);
      begin[axis] += sz;
      return piece;
    });
  };
}

function sum(stock: Fallback): KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args;
    const be = backend as BackendWasm;
    const x = (inputs as { x: TensorInfo }).x;
    const a = attrs as unknown as tf.SumAttrs;
    const rank = x.shape.length;
    const axes = [...new Set(tf.util.parseAxisParam(a.axis, x.shape))].sort((p, q) => p - q);
    const k = axes.length;
    // Only "reduce the leading k axes" (0..k-1, not all) is handled: that is the slow stock case.
    const leading = k > 0 && k < rank && axes.every((ax, i) => ax === i);
    if (!leading || x.dtype !== 'float32') {
      if (!stock) throw new Error('Sum: unsupported configuration on wasm');
      return stock(args);
    }
    const inner = tf.util.sizeFromShape(x.shape.slice(k));
    const outer = tf.util.sizeFromShape(x.shape.slice(0, k));
    const acc = new Float64Array(inner);
    const F = heap(be);
    const xo = off(be, x);
    for (let i = 0; i < outer; i++) {
      const base = xo + i * inner;
      for (let j = 0; j < inner; j++) acc[j] += F[base + j];
    }
    const outShape = a.keepDims ? [...new Array<number>(k).fill(1), ...x.shape.slice(k)] : x.shape.slice(k);
    const out = alloc(be, outShape);
    heap(be).set(acc, off(be, out)); // Float64 -> Float32 rounding happens in set()
    return out;
  };
}

/** Zero-copy Identity: the result shares x's heap buffer (reference-counted; disposing either keeps the other). */
function identity(stock: Fallback): KernelFunc {
  return (args) => {
    const { inputs, backend } = args;
    const x = (inputs as { x: TensorInfo }).x;
    if (x.dtype === 'string') {
      if (!stock) throw new Error('Identity of strings is not supported here');
      return stock(args);
    }
    (backend as BackendWasm).incRef(x.dataId);
    return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
  };
}

const FACTORIES: Record<(typeof WASM_TRAINING_KERNELS)[number], (stock: Fallback) => KernelFunc> = {
  Conv2DBackpropFilter: conv2dBackpropFilter,
  Conv2DBackpropInput: conv2dBackpropInput,
  Conv3D: conv3d,
  Conv3DBackpropFilterV2: conv3dBackpropFilter,
  Conv3DBackpropInputV2: conv3dBackpropInput,
  MaxPool3D: maxPool3d,
  MaxPool3DGrad: maxPool3dGrad,
  MaxPoolGrad: maxPoolGrad,
  Slice: slice,
  SplitV: splitV,
  Sum: sum,
  Identity: identity,
};

/**
 * Registers `factories[name](previous kernel)` for each name on 'wasm', replacing what is there; the
 * replaced kernel is handed to the factory as its fallback. Kernels carrying `mark` are already ours and
 * stay (idempotent, also across copies of this module). Works before or after the wasm backend is
 * initialised: the stock kernels' setup functions (which bind their C entry points) are kept on our
 * configs, so the fallbacks keep working, and our own kernels need no setup.
 */
export function registerWasmKernelsOver<N extends string>(names: readonly N[], factories: Record<N, (stock: Fallback) => KernelFunc>, mark: symbol): void {
  for (const name of names) {
    const existing = tf.getKernel(name, 'wasm');
    if (existing && (existing.kernelFunc as unknown as Record<symbol, unknown>)[mark]) continue;
    const kernelFunc = factories[name](existing?.kernelFunc);
    (kernelFunc as unknown as Record<symbol, unknown>)[mark] = true;
    const config: KernelConfig = { kernelName: name, backendName: 'wasm', kernelFunc };
    if (existing?.setupFunc) config.setupFunc = existing.setupFunc;
    // Unregister first: registerKernel would otherwise warn about the override.
    if (existing) tf.unregisterKernel(name, 'wasm');
    tf.registerKernel(config);
  }
}

/** Registers the training kernels above for the 'wasm' backend and returns their names. Idempotent. */
export function registerWasmTrainingKernels(): string[] {
  registerWasmKernelsOver(WASM_TRAINING_KERNELS, FACTORIES, MARK);
  return [...WASM_TRAINING_KERNELS];
}
