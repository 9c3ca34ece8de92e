/** Count label values slab by slab: per-class voxels, ignored (-1) voxels, out-of-range and non-integral values. */
import type { NumericArray } from '../io/dtype.js';
import { countSmallRange, KERNEL_SPAN } from './countKernel.js';

/** Below this many voxels the kernel's call overhead is not worth it. */
const KERNEL_MIN = 4096;

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
    if (!isFloat && n >= KERNEL_MIN && this.addByKernel(values)) return;
    if (!isFloat && (values instanceof Int16Array || values instanceof Uint16Array) && values.byteOffset % 4 === 0 && n >= 2) {
      this.addPairs16(values);
      return;
    }
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

  /**
   * 8- and 16-bit labels with at most 8 possible values (-1 and classes 0..6, or 0..7 unsigned) are counted by
   * the wasm SIMD kernel (~10x faster than any JS loop). When some value falls outside that range the slab is
   * counted again by the JS loops, which record the offending values; returns false then (nothing added).
   */
  private addByKernel(values: NumericArray): boolean {
    if (!(values instanceof Int16Array || values instanceof Uint16Array || values instanceof Int8Array || values instanceof Uint8Array)) return false;
    const signed = values instanceof Int16Array || values instanceof Int8Array;
    const lo = signed ? -1 : 0;
    const span = this.nLab - lo; // values lo..nLab-1
    if (span > KERNEL_SPAN) return false;
    const found = new Float64Array(KERNEL_SPAN);
    const counted = countSmallRange(values, lo, found);
    if (counted < 0) return false;
    let inRange = 0;
    for (let j = 0; j < span; j++) inRange += found[j]!;
    if (inRange !== counted) return false; // nothing added yet: the JS loops count the whole slab
    for (let j = 0; j < span; j++) this.counts[lo + j + 1]! += found[j]!;
    for (let i = counted; i < values.length; i++) this.countValue(values[i]!, 1);
    return true;
  }

  /**
   * 16-bit labels come in long runs (background, ignored areas, objects), so read them two at a time as one
   * 32-bit word and count only when the word changes: exact for any input, and ~2.5x faster than a test per voxel.
   */
  private addPairs16(values: Int16Array | Uint16Array): void {
    const signed = values instanceof Int16Array;
    const words = new Uint32Array(values.buffer, values.byteOffset, values.length >> 1);
    let prev = words[0]!;
    let run = 0;
    for (let i = 0; i < words.length; i++) {
      const w = words[i]!;
      if (w === prev) run++;
      else {
        this.countWord(prev, run, signed);
        prev = w;
        run = 1;
      }
    }
    this.countWord(prev, run, signed);
    if (values.length % 2 === 1) this.countValue(values[values.length - 1]!, 1);
  }

  /** Little-endian: the first label of the pair is the low half. */
  private countWord(w: number, times: number, signed: boolean): void {
    if (times === 0) return;
    const first = signed ? (w << 16) >> 16 : w & 0xffff;
    const second = signed ? w >> 16 : w >>> 16;
    this.countValue(first, times);
    this.countValue(second, times);
  }

  private countValue(v: number, times: number): void {
    if (v >= -1 && v < this.nLab) this.counts[v + 1]! += times;
    else this.recordOutOfRange(v, times);
  }

  private recordOutOfRange(v: number, times = 1): void {
    this.outOfRangeVoxels += times;
    const seen = this.outOfRange.get(v);
    if (seen !== undefined) this.outOfRange.set(v, seen + times);
    else if (this.outOfRange.size < MAX_TRACKED) this.outOfRange.set(v, times);
  }

  /** Add a tally counted elsewhere (a worker thread's share of the same volume). */
  addResult(r: LabelTallyResult): void {
    this.voxels += r.voxels;
    this.counts[0]! += r.ignored;
    r.classCounts.forEach((n, c) => (this.counts[c + 1]! += n));
    for (const [v, n] of r.outOfRange) {
      this.outOfRangeVoxels += n;
      const seen = this.outOfRange.get(v);
      if (seen !== undefined) this.outOfRange.set(v, seen + n);
      else if (this.outOfRange.size < MAX_TRACKED) this.outOfRange.set(v, n);
    }
    // offending values past the other side's tracking limit are counted, not listed
    this.outOfRangeVoxels += r.outOfRangeVoxels - [...r.outOfRange.values()].reduce((a, b) => a + b, 0);
    this.nonIntegral += r.nonIntegral;
    for (const x of r.nonIntegralExamples) if (this.nonIntegralExamples.length < 5) this.nonIntegralExamples.push(x);
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
