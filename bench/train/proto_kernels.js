// Scratch prototypes of faster wasm training kernels (NOT used by lazylabel; see bench/nets.md,
// "Proposals"). `register(tf)` installs them over the ones from src/train/wasmKernels.ts so that
// tfjs_bench.js --kernels proto_kernels.js[?list] can A/B a whole training step. The list after '?'
// (comma separated) picks prototypes; default all. Env LAZYLABEL_PROTO=identity,conv3d does the same.
//
//  - identity: zero-copy Identity. The stock wasm Identity copies the tensor (tfjs-core calls it for
//    every tensor saved for the backward pass, ~150-170 calls per step here); the cpu and webgl
//    backends share the buffer instead (incRef), as the wasm backend's own Reshape does. Safe because
//    no wasm kernel writes into its inputs and Variable.assign swaps dataIds instead of writing.
//  - conv3d: Conv3D / Conv3DBackpropInputV2 as ONE XNNPACK Conv2D with the filter depth folded into
//    the channels: xf[b*od+zo, y, x, kd*ci + c] = x[b, zo*sd + kd*dd - pf, y, x, c] (0 outside) and
//    filter [fd,fh,fw,ci,co] -> [fh,fw,fd*ci,co]. Replaces fd Conv2D calls with K = 9*ci plus fd-1 JS
//    accumulation passes over the output by one call with K = 27*ci (better XNNPACK efficiency,
//    especially for ci = 1), at the cost of gathering fd copies of the input.
import * as tfc from '@tensorflow/tfjs';

function heap(be) {
  return new Float32Array(be.wasm.HEAPU8.buffer);
}
const off = (be, t) => be.getMemoryOffset(t.dataId) >>> 2;

function identityZeroCopy(stock) {
  return (args) => {
    const { inputs: { x }, backend } = args;
    if (x.dtype === 'string') return stock(args);
    backend.incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  };
}

/** Gathers xf [n*od, h, w, fd*ci] (see header) on the heap. */
function foldDepth(be, x, g) {
  const { n, d, h, w, ci, od, fd, sd, dd, pf } = g;
  const K = fd * ci;
  const xf = be.makeOutput([n * od, h, w, K], 'float32');
  const F = heap(be);
  const xo = off(be, x);
  const fo = off(be, xf);
  const plane = h * w;
  for (let b = 0; b < n; b++) {
    for (let zo = 0; zo < od; zo++) {
      const dst0 = fo + (b * od + zo) * plane * K;
      for (let kd = 0; kd < fd; kd++) {
        const iz = zo * sd + kd * dd - pf;
        const dk = dst0 + kd * ci;
        if (iz < 0 || iz >= d) {
          for (let p = 0, t = dk; p < plane; p++, t += K) for (let c = 0; c < ci; c++) F[t + c] = 0;
          continue;
        }
        const src0 = xo + (b * d + iz) * plane * ci;
        if (ci === 1) {
          for (let p = 0; p < plane; p++) F[dk + p * K] = F[src0 + p];
        } else if (ci < 16) {
          for (let p = 0, s = src0, t = dk; p < plane; p++, s += ci, t += K) for (let c = 0; c < ci; c++) F[t + c] = F[s + c];
        } else {
          for (let p = 0, s = src0, t = dk; p < plane; p++, s += ci, t += K) F.copyWithin(t, s, s + ci);
        }
      }
    }
  }
  return xf;
}

/** [fd,fh,fw,ci,co] -> [fh,fw,fd,ci,co] (= [fh,fw,fd*ci,co]). */
function foldFilter(be, filter, fd, fh, fw, ci, co) {
  const out = be.makeOutput([fh, fw, fd * ci, co], 'float32');
  const F = heap(be);
  const so = off(be, filter);
  const oo = off(be, out);
  const blk = ci * co;
  for (let kd = 0; kd < fd; kd++) {
    for (let kh = 0; kh < fh; kh++) {
      for (let kw = 0; kw < fw; kw++) {
        const s = so + ((kd * fh + kh) * fw + kw) * blk;
        const t = oo + ((kh * fw + kw) * fd + kd) * blk;
        F.copyWithin(t, s, s + blk);
      }
    }
  }
  return out;
}

function conv3dFolded(be, x, filter, g, conv2d) {
  const xf = foldDepth(be, x, g);
  const wf = foldFilter(be, filter, g.fd, g.fh, g.fw, g.ci, g.co);
  const y = conv2d({ inputs: { x: xf, filter: wf }, backend: be, attrs: { strides: [g.sh, g.sw], pad: [[0, 0], [g.pt, g.pb], [g.pl, g.pr], [0, 0]], dilations: [g.dh, g.dw], dataFormat: 'NHWC' } });
  be.disposeData(xf.dataId);
  be.disposeData(wf.dataId);
  return { dataId: y.dataId, shape: [g.n, g.od, g.oh, g.ow, g.co], dtype: 'float32' };
}

function geom3d(c) {
  return {
    n: c.batchSize, d: c.inDepth, h: c.inHeight, w: c.inWidth, ci: c.inChannels,
    od: c.outDepth, oh: c.outHeight, ow: c.outWidth, co: c.outChannels,
    fd: c.filterDepth, fh: c.filterHeight, fw: c.filterWidth,
    sd: c.strideDepth, sh: c.strideHeight, sw: c.strideWidth,
    dd: c.dilationDepth, dh: c.dilationHeight, dw: c.dilationWidth,
    pf: c.padInfo.front, pt: c.padInfo.top, pb: c.padInfo.bottom, pl: c.padInfo.left, pr: c.padInfo.right,
  };
}

function conv3d(stock, conv2d) {
  return (args) => {
    const { inputs: { x, filter }, backend: be, attrs: a } = args;
    if (a.dataFormat === 'NCDHW' || x.dtype !== 'float32') return stock(args);
    const g = geom3d(tfc.backend_util.computeConv3DInfo(x.shape, filter.shape, a.strides, a.dilations, a.pad));
    return conv3dFolded(be, x, filter, g, conv2d);
  };
}

/** dx = stride-1 correlation of dy with the flipped, in/out-swapped filter (unit strides only here; else stock). */
function conv3dBackpropInput(stock, conv2d) {
  return (args) => {
    const { inputs: { dy, filter }, backend: be, attrs: a } = args;
    const info = tfc.backend_util.computeConv3DInfo(a.inputShape, filter.shape, a.strides, 1, a.pad);
    const f = geom3d(info);
    if (f.sd !== 1 || f.sh !== 1 || f.sw !== 1 || dy.dtype !== 'float32') return stock(args);
    const g = {
      n: f.n, d: f.od, h: f.oh, w: f.ow, ci: f.co, od: f.d, oh: f.h, ow: f.w, co: f.ci,
      fd: f.fd, fh: f.fh, fw: f.fw, sd: 1, sh: 1, sw: 1, dd: 1, dh: 1, dw: 1,
      pf: f.fd - 1 - f.pf, pt: f.fh - 1 - f.pt, pl: f.fw - 1 - f.pl,
    };
    g.pb = f.h - f.oh + f.fh - 1 - g.pt;
    g.pr = f.w - f.ow + f.fw - 1 - g.pl;
    if (Math.min(g.pf, g.pt, g.pl, g.pb, g.pr) < 0) return stock(args);
    // Flip all taps and swap ci/co: [fd,fh,fw,ci,co] -> [fd,fh,fw,co,ci] reversed.
    const taps = f.fd * f.fh * f.fw;
    const wf = be.makeOutput([f.fd, f.fh, f.fw, f.co, f.ci], 'float32');
    const F = heap(be);
    const so = off(be, filter);
    const oo = off(be, wf);
    for (let t = 0; t < taps; t++) {
      const s = so + (taps - 1 - t) * f.ci * f.co;
      const o = oo + t * f.ci * f.co;
      for (let i = 0; i < f.ci; i++) for (let j = 0; j < f.co; j++) F[o + j * f.ci + i] = F[s + i * f.co + j];
    }
    const out = conv3dFolded(be, dy, wf, g, conv2d);
    be.disposeData(wf.dataId);
    return out;
  };
}

export function register(tf, which) {
  const want = new Set((which ?? process.env.LAZYLABEL_PROTO ?? 'identity,conv3d').split(',').filter(Boolean));
  const conv2d = tf.getKernel('Conv2D', 'wasm').kernelFunc;
  const done = [];
  const swap = (name, make) => {
    const k = tf.getKernel(name, 'wasm');
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: make(k.kernelFunc), ...(k.setupFunc ? { setupFunc: k.setupFunc } : {}) });
    done.push(name);
  };
  if (want.has('identity')) swap('Identity', identityZeroCopy);
  if (want.has('conv3d')) {
    swap('Conv3D', (s) => conv3d(s, conv2d));
    swap('Conv3DBackpropInputV2', (s) => conv3dBackpropInput(s, conv2d));
  }
  return done;
}
