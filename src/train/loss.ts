/** Lazy-label masked negative log-likelihood: a port of ELEKTRONN's `ConvLayer3d.NLL` / `ConvLayer2d.NLL`. */
//
// Semantics (ELEKTRONN/ELEKTRONN, elektronn/net/convlayer3d.py `NLL`; eps = 1e-6), per example b,
// voxel v, class c, with p = predicted probability, y = label, w = class weight, e = example weight:
//
//   sel[b,v,c]  = (y[b,v] == c) * maskClassLabeled[b,c]           (y < 0 or y >= n_lab never matches)
//   up          = sum  -log(p + eps) * sel * w * e
//   prop[b,v,c] = (p > labelPropThresh) * (1 - maskClassLabeled[b,c])   (only if a threshold is given)
//   up         += sum  -log(p + eps) * prop * w * e
//   dn          = sum  -log(1 - p * maskClassNotPresent[b,c] * w * e + eps)   (over ALL b,v,c)
//   N_up        = sum(sel) + sum(prop)                    (plain counts: weights do not enter)
//   N_dn        = V * sum(maskClassNotPresent)   'voxels' (ConvLayer3d broadcasts the mask over voxels)
//               =     sum(maskClassNotPresent)   'flags'  (ConvLayer2d counts only the flags)
//   loss        = (up + dn) / (N_up + N_dn, patched to 1 when it is 0)
//
// Deliberate choices / deviations (all numerically equivalent or documented ELEKTRONN behaviour):
// * Omitted `maskClassNotPresent` means ELEKTRONN's `None`: no down-vote block at all (dn = 0, N_dn = 0).
//   An explicit all-zero mask instead reproduces ELEKTRONN's lazy mode exactly, including its tiny
//   constant -log(1 + eps) per (voxel, class), i.e. about -1e-6 * n_lab per voxel before normalisation.
// * Omitted `maskClassLabeled` means "all classes labelled" (ELEKTRONN `None` in the up-vote block).
//   ELEKTRONN crashes when label propagation is used without that mask (`1 - None`); here it is simply
//   a no-op, because with every class labelled the propagation mask (1 - labelled) is zero.
// * Label propagation follows the code, not the docstring: it is NOT restricted to y < 0 voxels, it
//   applies to every voxel and every *unlabelled class* whose probability exceeds the threshold, and
//   thresholds <= 0.5 are NOT disabled (several classes can then pass). The comparison is done in
//   float32 like Theano's `fscalar`. The mask carries no gradient (it is a selection, as in Theano).
// * Class weights are used raw (the "normalised internally" remark in ELEKTRONN's config is not
//   implemented in its code). Weights also multiply p inside the down-vote log, so w * p > 1 + eps
//   gives NaN exactly as in ELEKTRONN.
// * `exampleWeights` (ConvLayer3d only; the 2D layer has none) is an optional extra of this API.
// * Float32 accuracy: log(p + eps) and log(1 - a*p + eps) are evaluated via log1p of the small
//   complementary quantity where that avoids cancellation (p >= 0.5 resp. a*p < 0.5). This is the
//   same function, just evaluated more accurately in float32 than Theano did.
// * fromLogits: ELEKTRONN always applies softmax first; here p = exp(logSoftmax(z)) and 1 - p is
//   computed as the sum of the other classes' probabilities, so confident logits neither overflow nor
//   lose 1 - p to cancellation.
import * as tf from '@tensorflow/tfjs';

/** Stabiliser added inside every log, as in ELEKTRONN (`eps = 1e-6`). */
export const LAZY_NLL_EPS = 1e-6;

export type LazyNllNormalisation = 'voxels' | 'flags';

export interface LazyNllOptions {
  /** [batch, n_lab] 0/1: class is properly labelled in this example. Default: all 1. */
  maskClassLabeled?: number[][] | tf.Tensor;
  /** [batch, n_lab] 0/1: class does not occur in this example. Default: no down-vote block. */
  maskClassNotPresent?: number[][] | tf.Tensor;
  /** [n_lab] class weights (used unnormalised, as in ELEKTRONN). Default: all 1. */
  classWeights?: number[] | tf.Tensor;
  /** [batch, ...spatial] per-voxel weights (ConvLayer3d `example_weights`). Default: all 1. */
  exampleWeights?: number[] | tf.Tensor;
  /** ELEKTRONN label propagation threshold; null/undefined = off. */
  labelPropThresh?: number | null;
  /** 'voxels' (ConvLayer3d, default) or 'flags' (ConvLayer2d) counting of the down-vote terms. */
  normalisation?: LazyNllNormalisation;
  /** If true, `probs` are logits and a softmax over the last axis is applied (stably). */
  fromLogits?: boolean;
}

interface Geometry {
  batch: number;
  nLab: number;
  voxels: number;
  spatial: number[];
}

function geometry(shape: readonly number[], labelShape: readonly number[]): Geometry {
  if (shape.length < 2) {
    throw new Error(`lazyNll: probs must be [batch, ...spatial, n_lab], got shape [${shape.join(',')}]`);
  }
  const spatial = shape.slice(1, -1);
  const expected = [shape[0]!, ...spatial];
  if (labelShape.length !== expected.length || labelShape.some((d, i) => d !== expected[i])) {
    throw new Error(`lazyNll: labels shape [${labelShape.join(',')}] must be [${expected.join(',')}]`);
  }
  return {
    batch: shape[0]!,
    nLab: shape[shape.length - 1]!,
    voxels: spatial.reduce((a, b) => a * b, 1),
    spatial,
  };
}

function checkNormalisation(n: unknown): LazyNllNormalisation {
  if (n === undefined) return 'voxels';
  if (n !== 'voxels' && n !== 'flags') throw new Error(`lazyNll: unknown normalisation '${String(n)}'`);
  return n;
}

/** Converts a per-(batch, class) mask / per-class weight vector to float32 of exactly `shape`. */
function asFloat(x: number[][] | number[] | tf.Tensor, shape: number[], name: string): tf.Tensor {
  const t = x instanceof tf.Tensor ? x : tf.tensor(x as number[][]);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new Error(`lazyNll: ${name} has shape [${t.shape.join(',')}], expected [${shape.join(',')}]`);
  }
  return t.dtype === 'float32' ? t : tf.cast(t, 'float32');
}

/** The two halves of the loss before the division: loss = total / (n == 0 ? 1 : n). */
export interface LazyNllParts {
  /** up + dn: the unnormalised sum (differentiable w.r.t. `probs`). */
  total: tf.Scalar;
  /** N_up + N_dn, not yet patched to 1 when 0 (no gradient; depends on `probs` with label propagation). */
  n: tf.Scalar;
}

/**
 * ELEKTRONN lazy-label NLL. `probs`: [batch, ...spatial, n_lab] probabilities (or logits with
 * `fromLogits`), `labels`: integer [batch, ...spatial] with -1 = ignore. Returns a scalar that is
 * differentiable w.r.t. `probs` (masks, labels and normalising counts carry no gradient).
 */
export function lazyNll(probs: tf.Tensor, labels: tf.Tensor, opts: LazyNllOptions = {}): tf.Scalar {
  const prep = prepare(probs, labels, opts);
  return tf.tidy(() => {
    const { total, n } = partsOf(probs, labels, opts, prep);
    // ELEKTRONN: N_total = switch(N_total == 0, 1, N_total) (the sum is 0 then anyway, up to eps terms).
    // (n can depend on p through label propagation, so test n == 0 with grad-registered ops only.)
    const nSafe = tf.where(tf.greaterEqual(0, tf.abs(n)), tf.onesLike(n), n);
    return tf.div(total, nSafe) as tf.Scalar;
  });
}

/**
 * The loss split into its sum and its normaliser, for data-parallel training: over shards of a batch,
 * sum(total) / max-patched sum(n) is exactly the loss of the whole batch, and the gradient of the sum
 * of totals divided by that N is its gradient (n carries no gradient). Same options and checks as
 * {@link lazyNll}; the caller owns (disposes) both scalars.
 */
export function lazyNllParts(probs: tf.Tensor, labels: tf.Tensor, opts: LazyNllOptions = {}): LazyNllParts {
  const prep = prepare(probs, labels, opts);
  const parts = tf.tidy(() => {
    const { total, n } = partsOf(probs, labels, opts, prep);
    return [total, n];
  });
  return { total: parts[0] as tf.Scalar, n: parts[1] as tf.Scalar };
}

interface Prepared {
  g: Geometry;
  norm: LazyNllNormalisation;
  thresh: number | null;
}

function prepare(probs: tf.Tensor, labels: tf.Tensor, opts: LazyNllOptions): Prepared {
  const g = geometry(probs.shape, labels.shape);
  const norm = checkNormalisation(opts.normalisation);
  const thresh = opts.labelPropThresh ?? null;
  if (thresh !== null && !Number.isFinite(thresh)) throw new Error('lazyNll: labelPropThresh must be finite');
  return { g, norm, thresh };
}

/** Builds up + dn and N_up + N_dn (call inside a tidy). */
function partsOf(probs: tf.Tensor, labels: tf.Tensor, opts: LazyNllOptions, prep: Prepared): { total: tf.Tensor; n: tf.Tensor } {
  const { g, norm, thresh } = prep;
  const { batch: B, nLab: C, voxels: V } = g;
  const x = tf.reshape(probs.dtype === 'float32' ? probs : tf.cast(probs, 'float32'), [B, V, C]);
  const y = tf.reshape(labels.dtype === 'int32' ? labels : tf.cast(labels, 'int32'), [B, V]);

  // p and 1 - p. Logits: 1 - p_c = sum_{j != c} p_j (a sum of positives: no cancellation at p ~ 1).
  let p: tf.Tensor;
  let oneMinusP: tf.Tensor;
  if (opts.fromLogits) {
    p = tf.exp(tf.logSoftmax(x, -1));
    const offDiag = tf.sub(1, tf.eye(C));
    oneMinusP = tf.reshape(tf.matMul(tf.reshape(p, [B * V, C]), offDiag), [B, V, C]);
  } else {
    p = x;
    oneMinusP = tf.sub(1, p); // exact in float32 for p >= 0.5 (Sterbenz), which is where it is used
  }
  // Masks must come from ops that have (zero) gradients registered in tfjs: greaterEqual / step.
  const pHigh = tf.greaterEqual(p, 0.5);
  // log(p + eps); for p >= 0.5 as log1p(eps - (1 - p)) so confident voxels keep their precision.
  // The clamp only touches the branch `where` discards, keeping its value and gradient finite
  // (0 * NaN would otherwise poison the gradient).
  const logPEps = tf.where(
    pHigh,
    tf.log1p(tf.sub(LAZY_NLL_EPS, tf.minimum(oneMinusP, 0.5))),
    tf.log(tf.add(p, LAZY_NLL_EPS)),
  );

  // [B, V, C]; labels -1 / >= n_lab give all-zero rows. (oneHot, not equal(y, range(C)): the wasm
  // backend's broadcasting Equal took 8-9% of a training step.)
  let sel = tf.cast(tf.oneHot(y, C), 'float32');
  const labelled =
    opts.maskClassLabeled === undefined
      ? null
      : tf.reshape(asFloat(opts.maskClassLabeled, [B, C], 'maskClassLabeled'), [B, 1, C]);
  if (labelled) sel = tf.mul(sel, labelled);

  // Combined multiplicative weight w_c * e_bv (null = 1).
  let weight: tf.Tensor | null = null;
  if (opts.classWeights !== undefined) {
    weight = tf.reshape(asFloat(opts.classWeights, [C], 'classWeights'), [1, 1, C]);
  }
  if (opts.exampleWeights !== undefined) {
    const ew = opts.exampleWeights instanceof tf.Tensor ? opts.exampleWeights : tf.tensor1d(opts.exampleWeights);
    if (ew.size !== B * V) {
      throw new Error(`lazyNll: exampleWeights has ${ew.size} entries, expected ${B * V} ([batch, ...spatial])`);
    }
    const e = tf.reshape(ew.dtype === 'float32' ? ew : tf.cast(ew, 'float32'), [B, V, 1]);
    weight = weight ? tf.mul(weight, e) : e;
  }
  const weighted = (t: tf.Tensor): tf.Tensor => (weight ? tf.mul(t, weight) : t);

  // Up vote: push labelled voxels towards their class.
  let upMask = sel;
  let nUp = tf.sum(sel);
  if (thresh !== null && labelled) {
    // Label propagation: confident predictions of classes that are not labelled in this example
    // are treated as targets. step(p - t) == (p > t) exactly and has a zero gradient.
    const prop = tf.mul(tf.step(tf.sub(p, tf.scalar(thresh, 'float32'))), tf.sub(1, labelled));
    upMask = tf.add(upMask, prop);
    nUp = tf.add(nUp, tf.sum(prop));
  }
  let total = tf.sum(weighted(tf.mul(tf.neg(logPEps), upMask)));

  // Down vote: push classes known to be absent towards 0 in every voxel of the example.
  let nDn: tf.Tensor = tf.scalar(0);
  if (opts.maskClassNotPresent !== undefined) {
    const absent = tf.reshape(asFloat(opts.maskClassNotPresent, [B, C], 'maskClassNotPresent'), [B, 1, C]);
    const a = weighted(absent); // a = np * w * e, broadcast to [B, V|1, C]
    const ap = tf.mul(p, a);
    // 1 - a p: for logits via (1 - p) + (1 - a) p, keeping the stable 1 - p.
    const oneMinusAp = opts.fromLogits ? tf.add(oneMinusP, tf.mul(tf.sub(1, a), p)) : tf.sub(1, ap);
    const logDn = tf.where(
      tf.greaterEqual(ap, 0.5),
      tf.log(tf.add(oneMinusAp, LAZY_NLL_EPS)),
      // Small a p: log1p keeps the -log(1 + eps - a p) ~ a p terms exact (clamp: discarded branch only).
      tf.log1p(tf.sub(LAZY_NLL_EPS, tf.minimum(ap, 0.5))),
    );
    total = tf.add(total, tf.neg(tf.sum(logDn)));
    nDn = norm === 'voxels' ? tf.mul(tf.sum(absent), V) : tf.sum(absent);
  }

  return { total, n: tf.add(nUp, nDn) };
}

/** Options of {@link lazyNllJs}: as {@link LazyNllOptions}, plain arrays only. */
export interface LazyNllJsOptions {
  maskClassLabeled?: ArrayLike<ArrayLike<number>>;
  maskClassNotPresent?: ArrayLike<ArrayLike<number>>;
  classWeights?: ArrayLike<number>;
  /** Flattened [batch, ...spatial]. */
  exampleWeights?: ArrayLike<number>;
  labelPropThresh?: number | null;
  normalisation?: LazyNllNormalisation;
  fromLogits?: boolean;
}

/**
 * Plain float64 JavaScript evaluation of the same loss (no tfjs): `values` is the flattened
 * channels-last [batch, ...spatial, n_lab] array described by `shape`, `labels` the flattened
 * [batch, ...spatial] labels. Useful for checks (e.g. finite differences in double precision).
 */
export function lazyNllJs(
  values: ArrayLike<number>,
  labels: ArrayLike<number>,
  shape: readonly number[],
  opts: LazyNllJsOptions = {},
): number {
  const g = geometry(shape, [shape[0]!, ...shape.slice(1, -1)]);
  const { batch: B, nLab: C, voxels: V } = g;
  if (values.length !== B * V * C || labels.length !== B * V) throw new Error('lazyNllJs: size mismatch');
  const norm = checkNormalisation(opts.normalisation);
  const thresh = opts.labelPropThresh ?? null;
  const thresh32 = thresh === null ? null : Math.fround(thresh); // Theano compares in float32
  const ml = opts.maskClassLabeled;
  const np = opts.maskClassNotPresent;
  const cw = opts.classWeights;
  const ew = opts.exampleWeights;
  const p = new Float64Array(C);
  let total = 0;
  let nUp = 0;
  let nDn = 0;
  for (let b = 0; b < B; b++) {
    if (np) for (let c = 0; c < C; c++) nDn += Number(np[b]![c]) * (norm === 'voxels' ? V : 1);
    for (let v = 0; v < V; v++) {
      const off = (b * V + v) * C;
      if (opts.fromLogits) {
        let m = -Infinity;
        for (let c = 0; c < C; c++) m = Math.max(m, values[off + c]!);
        let s = 0;
        for (let c = 0; c < C; c++) s += (p[c] = Math.exp(values[off + c]! - m));
        for (let c = 0; c < C; c++) p[c]! /= s;
      } else {
        for (let c = 0; c < C; c++) p[c] = values[off + c]!;
      }
      const y = labels[b * V + v]!;
      const e = ew ? ew[b * V + v]! : 1;
      for (let c = 0; c < C; c++) {
        const w = (cw ? cw[c]! : 1) * e;
        const lab = ml ? Number(ml[b]![c]) : 1;
        let up = (y === c ? 1 : 0) * lab;
        if (thresh32 !== null && ml) up += (p[c]! > thresh32 ? 1 : 0) * (1 - lab);
        nUp += up;
        if (up !== 0) total += -Math.log(p[c]! + LAZY_NLL_EPS) * up * w;
        if (np) total += -Math.log(1 - p[c]! * Number(np[b]![c]) * w + LAZY_NLL_EPS);
      }
    }
  }
  const n = nUp + nDn;
  return total / (n === 0 ? 1 : n);
}
