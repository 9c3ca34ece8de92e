/** Count label values slab by slab: per-class voxels, ignored (-1) voxels, out-of-range and non-integral values. */
import type { NumericArray } from '../io/dtype.js';

/** How many distinct offending values we keep for messages (counts stay exact for those kept). */
const MAX_TRACKED = 64;

export interface LabelTallyResult {
  voxels: number;
  /** Voxels per class 0..nLab-1. */
  classCounts: number[];
  /** Voxels equal to -1 (ignore). */
  ignored: number;
  /** Offending values (outside [-1, nLab-1], integral) and how often they occur; at most MAX_TRACKED values. */
  outOfRange: Map<number, number>;
  /** Total count of out-of-range voxels, including values past the tracking limit. */
  outOfRangeVoxels: number;
  /** Voxels whose value is not an integer (NaN included), and a few examples. */
  nonIntegral: number;
  nonIntegralExamples: number[];
}

export class LabelTally {
  private readonly counts: Float64Array;
  private voxels = 0;
  private outOfRangeVoxels = 0;
  private readonly outOfRange = new Map<number, number>();
  private nonIntegral = 0;
  private readonly nonIntegralExamples: number[] = [];

  constructor(readonly nLab: number) {
    // index 0 counts -1 (ignored), index c+1 counts class c
    this.counts = new Float64Array(nLab + 1);
  }

  /** Add one slab. `isFloat` enables the integrality check (integer arrays skip it on the hot path). */
  add(values: NumericArray, isFloat: boolean): void {
    const counts = this.counts;
    const top = this.nLab;
    const n = values.length;
    this.voxels += n;
    if (!isFloat) {
      for (let i = 0; i < n; i++) {
        const v = values[i]!;
        if (v >= -1 && v < top) counts[v + 1]!++;
        else this.recordOutOfRange(v);
      }
      return;
    }
    for (let i = 0; i < n; i++) {
      const v = values[i]!;
      if (!Number.isInteger(v)) {
        this.nonIntegral++;
        if (this.nonIntegralExamples.length < 5) this.nonIntegralExamples.push(v);
      } else if (v >= -1 && v < top) counts[v + 1]!++;
      else this.recordOutOfRange(v);
    }
  }

  private recordOutOfRange(v: number): void {
    this.outOfRangeVoxels++;
    const seen = this.outOfRange.get(v);
    if (seen !== undefined) this.outOfRange.set(v, seen + 1);
    else if (this.outOfRange.size < MAX_TRACKED) this.outOfRange.set(v, 1);
  }

  result(): LabelTallyResult {
    return {
      voxels: this.voxels,
      classCounts: Array.from(this.counts.subarray(1)),
      ignored: this.counts[0]!,
      outOfRange: new Map([...this.outOfRange].sort((a, b) => a[0] - b[0])),
      outOfRangeVoxels: this.outOfRangeVoxels,
      nonIntegral: this.nonIntegral,
      nonIntegralExamples: [...this.nonIntegralExamples],
    };
  }
}
