/** Masked evaluation shared by training validation, predict and the demo: per-class confusion on labelled voxels, not-present pressure, FP rate in a region. */

export interface ClassMetrics {
  precision: number | null;
  recall: number | null;
  iou: number | null;
  /** Labelled voxels of this class that were evaluated. */
  support: number;
}

/** Accumulates counts over many patches or tiles, then reports. */
export class MaskedConfusion {
  /** tp/fp/fn per class, counted only on voxels whose label is >= 0 and whose class is labelled. */
  private readonly tp: Float64Array;
  private readonly fp: Float64Array;
  private readonly fn: Float64Array;
  /** Sum and count of predicted probability for classes flagged not present (per class). */
  private readonly npSum: Float64Array;
  private readonly npCount: Float64Array;

  constructor(readonly nLab: number) {
    this.tp = new Float64Array(nLab);
    this.fp = new Float64Array(nLab);
    this.fn = new Float64Array(nLab);
    this.npSum = new Float64Array(nLab);
    this.npCount = new Float64Array(nLab);
  }

  /**
   * Add one volume: `probs` channels-last (voxel-major, nLab per voxel), `labels` with -1 = ignore.
   * A voxel counts for the confusion only when its label is >= 0 and that class is labelled (exactly the
   * voxels the loss trains on); not-present classes contribute their mean predicted probability everywhere.
   */
  add(probs: ArrayLike<number>, labels: ArrayLike<number>, labeled: readonly boolean[], notPresent: readonly boolean[]): void {
    const n = labels.length;
    const k = this.nLab;
    for (let i = 0; i < n; i++) {
      const base = i * k;
      let best = 0;
      let bestP = probs[base]!;
      for (let c = 1; c < k; c++) {
        const p = probs[base + c]!;
        if (p > bestP) {
          bestP = p;
          best = c;
        }
      }
      for (let c = 0; c < k; c++) {
        if (notPresent[c]) {
          this.npSum[c]! += probs[base + c]!;
          this.npCount[c]!++;
        }
      }
      const y = labels[i]!;
      if (y < 0 || y >= k || !labeled[y]) continue;
      if (best === y) this.tp[y]!++;
      else {
        this.fn[y]!++;
        // a wrong prediction is a false positive for the predicted class only where that class is labelled too
        if (labeled[best]) this.fp[best]!++;
      }
    }
  }

  perClass(): ClassMetrics[] {
    const ratio = (a: number, b: number): number | null => (b > 0 ? a / b : null);
    return Array.from({ length: this.nLab }, (_, c) => {
      const tp = this.tp[c]!;
      const fp = this.fp[c]!;
      const fn = this.fn[c]!;
      return { precision: ratio(tp, tp + fp), recall: ratio(tp, tp + fn), iou: ratio(tp, tp + fp + fn), support: tp + fn };
    });
  }

  /** Mean predicted probability of each class over voxels where it was flagged not present (null: never flagged). */
  notPresentMeanProb(): (number | null)[] {
    return Array.from({ length: this.nLab }, (_, c) => (this.npCount[c]! > 0 ? this.npSum[c]! / this.npCount[c]! : null));
  }
}

/** Fraction of voxels inside `region` (non-zero) whose argmax is `cls`: the false-positive rate lazy labels are for. */
export function falsePositiveRate(predicted: ArrayLike<number>, region: ArrayLike<number>, cls: number): { rate: number | null; voxels: number } {
  let inside = 0;
  let hits = 0;
  for (let i = 0; i < predicted.length; i++) {
    if (region[i]) {
      inside++;
      if (predicted[i] === cls) hits++;
    }
  }
  return { rate: inside > 0 ? hits / inside : null, voxels: inside };
}

/** F1 of class `cls` over voxels inside `region` (non-zero), against ground truth `truth`. */
export function f1InRegion(predicted: ArrayLike<number>, truth: ArrayLike<number>, region: ArrayLike<number> | null, cls: number): number | null {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  for (let i = 0; i < predicted.length; i++) {
    if (region && !region[i]) continue;
    const p = predicted[i] === cls;
    const t = truth[i] === cls;
    if (p && t) tp++;
    else if (p) fp++;
    else if (t) fn++;
  }
  const denom = 2 * tp + fp + fn;
  return denom > 0 ? (2 * tp) / denom : null;
}

/** Argmax over the last axis of a channels-last probability array. */
export function argmaxChannelsLast(probs: ArrayLike<number>, nLab: number): Int32Array {
  const n = probs.length / nLab;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    let bestP = probs[i * nLab]!;
    for (let c = 1; c < nLab; c++) {
      const p = probs[i * nLab + c]!;
      if (p > bestP) {
        bestP = p;
        best = c;
      }
    }
    out[i] = best;
  }
  return out;
}
