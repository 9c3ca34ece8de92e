/** Pure per-slab mappings for `convert`: masks, dense class volumes and ignore conventions to int16 labels (-1 = ignore), plus the `info` and refusal rules. */
import type { NumericArray } from '../io/dtype.js';
import { KERNEL_SPAN, mapMaskClassesU8 } from './countKernel.js';

/** The label value ELEKTRONN's loss skips. */
export const IGNORE = -1;

/**
 * The conversions `convert` knows:
 * - `mask-classes`: class volume where the mask is > 0, -1 elsewhere
 * - `mask-fill`: one class where the mask is > 0, -1 elsewhere
 * - `all-ignore`: -1 everywhere (a cube that only says which classes are absent)
 * - `ignore-value`: a dense class volume whose ignore marker is some other value (e.g. 255)
 * - `unlabeled-value`: a dense volume where one value means "not annotated", optionally shifting classes above it down by one
 */
export type ConvertMode = 'mask-classes' | 'mask-fill' | 'all-ignore' | 'ignore-value' | 'unlabeled-value';

/** Distinct offending values kept for messages (their counts stay exact). */
const MAX_TRACKED = 16;

export interface ConvertTallyResult {
  voxels: number;
  /** Output voxels per class 0..nLab-1. */
  classCounts: number[];
  /** Output voxels equal to -1. */
  ignored: number;
  /** Mapped values outside [-1, nLab-1] and how often they occur (at most MAX_TRACKED values, ascending). */
  outOfRange: [number, number][];
  outOfRangeVoxels: number;
  /** Mapped values that are not whole numbers (NaN included), with a few examples. */
  nonIntegral: number;
  nonIntegralExamples: number[];
}

/** Counts what the mappings produce, so refusals and the report need no second pass over the output. */
export class ConvertTally {
  // index 0 counts -1, index c+1 counts class c
  private readonly counts: Float64Array;
  private voxels = 0;
  private outOfRangeVoxels = 0;
  private readonly outOfRange = new Map<number, number>();
  private nonIntegral = 0;
  private readonly nonIntegralExamples: number[] = [];

  constructor(readonly nLab: number) {
    this.counts = new Float64Array(nLab + 1);
  }

  /**
   * Record `count` voxels of one mapped class value; returns what to store.
   * Values that will be refused are stored as -1 (the output is discarded anyway).
   */
  take(v: number, count = 1): number {
    // (v | 0) === v is the cheap integrality test; valid ids are far below 2^31
    if (v >= 0 && v < this.nLab && (v | 0) === v) {
      this.counts[v + 1]! += count;
      return v;
    }
    if (v === IGNORE) {
      this.counts[0]! += count;
      return IGNORE;
    }
    if (!Number.isInteger(v)) {
      this.nonIntegral += count;
      if (this.nonIntegralExamples.length < 5) this.nonIntegralExamples.push(v);
    } else {
      this.outOfRangeVoxels += count;
      const seen = this.outOfRange.get(v);
      if (seen !== undefined) this.outOfRange.set(v, seen + count);
      else if (this.outOfRange.size < MAX_TRACKED) this.outOfRange.set(v, count);
    }
    return IGNORE;
  }

  /** Voxels the mapping sets to -1 by itself (outside the mask, the ignore marker). */
  addIgnored(n: number): void {
    this.counts[0]! += n;
  }

  addVoxels(n: number): void {
    this.voxels += n;
  }

  /** Add a tally counted elsewhere (convert's reader worker). */
  addResult(r: ConvertTallyResult): void {
    this.voxels += r.voxels;
    this.counts[0]! += r.ignored;
    r.classCounts.forEach((n, c) => (this.counts[c + 1]! += n));
    this.outOfRangeVoxels += r.outOfRangeVoxels;
    for (const [v, n] of r.outOfRange) {
      const seen = this.outOfRange.get(v);
      if (seen !== undefined) this.outOfRange.set(v, seen + n);
      else if (this.outOfRange.size < MAX_TRACKED) this.outOfRange.set(v, n);
    }
    this.nonIntegral += r.nonIntegral;
    for (const x of r.nonIntegralExamples) if (this.nonIntegralExamples.length < 5) this.nonIntegralExamples.push(x);
  }

  result(): ConvertTallyResult {
    return {
      voxels: this.voxels,
      classCounts: Array.from(this.counts.subarray(1)),
      ignored: this.counts[0]!,
      outOfRange: [...this.outOfRange].sort((a, b) => a[0] - b[0]),
      outOfRangeVoxels: this.outOfRangeVoxels,
      nonIntegral: this.nonIntegral,
      nonIntegralExamples: [...this.nonIntegralExamples],
    };
  }
}

function sameLength(a: ArrayLike<number>, b: ArrayLike<number>): void {
  // a bug in the caller, not a user error: shapes are checked before any slab is read
  if (a.length !== b.length) throw new Error(`slab lengths differ: ${a.length} vs ${b.length}`);
}

/** Where a mapping writes its labels: `out` when given (every element is written), else a new array. */
function labelsFor(n: number, out: Int16Array | undefined): Int16Array {
  if (!out) return new Int16Array(n);
  if (out.length !== n) throw new Error(`output of ${out.length} labels for ${n} voxels`);
  return out;
}

/**
 * `mask-classes`: labels = classes where mask > 0, else -1. Class values outside the mask are never looked at.
 * `out`: where to write the labels (a reused buffer; default a new array).
 */
export function mapMaskClasses(mask: NumericArray, classes: NumericArray, tally: ConvertTally, out?: Int16Array): Int16Array {
  sameLength(mask, classes);
  const n = mask.length;
  out = labelsFor(n, out);
  if (mask instanceof Uint8Array && classes instanceof Uint8Array && mapByKernel(mask, classes, out, tally)) return out;
  let outside = 0;
  for (let i = 0; i < n; i++) {
    // NaN > 0 is false: a NaN mask voxel is outside
    if (mask[i]! > 0) out[i] = tally.take(classes[i]!);
    else {
      out[i] = IGNORE;
      outside++;
    }
  }
  tally.addIgnored(outside);
  tally.addVoxels(n);
  return out;
}

/**
 * The common case (uint8 mask and classes, at most 7 classes) by the wasm SIMD kernel, ~10x faster than the
 * loop. When a class value falls outside 0..nLab-1 it returns false without touching the tally, and the loop
 * maps the slab again, recording the offending values.
 */
function mapByKernel(mask: Uint8Array, classes: Uint8Array, out: Int16Array, tally: ConvertTally): boolean {
  const span = tally.nLab + 1; // -1 and classes 0..nLab-1
  if (span > KERNEL_SPAN || mask.length < 4096) return false;
  const found = new Float64Array(KERNEL_SPAN);
  const done = mapMaskClassesU8(mask, classes, out, IGNORE, found);
  if (done < 0) return false;
  let inRange = 0;
  for (let j = 0; j < span; j++) inRange += found[j]!;
  if (inRange !== done) return false;
  tally.addIgnored(found[0]!);
  for (let c = 0; c < tally.nLab; c++) if (found[c + 1]! > 0) tally.take(c, found[c + 1]!);
  let outside = 0;
  for (let i = done; i < mask.length; i++) {
    if (mask[i]! > 0) out[i] = tally.take(classes[i]!);
    else {
      out[i] = IGNORE;
      outside++;
    }
  }
  tally.addIgnored(outside);
  tally.addVoxels(mask.length);
  return true;
}

/** `mask-fill`: `fillClass` where mask > 0, else -1. */
export function mapMaskFill(mask: NumericArray, fillClass: number, tally: ConvertTally, out?: Int16Array): Int16Array {
  const n = mask.length;
  out = labelsFor(n, out);
  let inside = 0;
  for (let i = 0; i < n; i++) {
    if (mask[i]! > 0) inside++;
    out[i] = IGNORE;
  }
  if (inside > 0) {
    const stored = tally.take(fillClass, inside);
    for (let i = 0; i < n; i++) if (mask[i]! > 0) out[i] = stored;
  }
  tally.addIgnored(n - inside);
  tally.addVoxels(n);
  return out;
}

/** `all-ignore`: a slab of -1. */
export function mapAllIgnore(n: number, tally: ConvertTally, out?: Int16Array): Int16Array {
  tally.addIgnored(n);
  tally.addVoxels(n);
  return labelsFor(n, out).fill(IGNORE);
}

/**
 * `ignore-value` / `unlabeled-value`: voxels equal to `marker` become -1. With `shift`, values above the
 * marker move down by one, so 1..n after an unlabelled 0 become 0..n-1. An existing -1 stays -1.
 */
export function mapMarkerValue(values: NumericArray, marker: number, shift: boolean, tally: ConvertTally, out?: Int16Array): Int16Array {
  const n = values.length;
  out = labelsFor(n, out);
  let marked = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i]!;
    if (v === marker) {
      out[i] = IGNORE;
      marked++;
    } else out[i] = tally.take(shift && v > marker ? v - 1 : v);
  }
  tally.addIgnored(marked);
  tally.addVoxels(n);
  return out;
}

export interface ConvertInfo {
  labeled: boolean[];
  notPresent: boolean[];
  /** `flag`: --labeled named the classes; `occurring`: every class with a voxel in the output. */
  labeledFrom: 'occurring' | 'flag';
}

/** The `info` mask for the output: labelled classes from the flag, or else the classes that occur. */
export function buildInfo(nLab: number, classCounts: readonly number[], labeled: readonly number[] | null, notPresent: readonly number[]): ConvertInfo {
  const np = Array.from({ length: nLab }, (_, c) => notPresent.includes(c));
  if (labeled) {
    return { labeled: Array.from({ length: nLab }, (_, c) => labeled.includes(c)), notPresent: np, labeledFrom: 'flag' };
  }
  return { labeled: Array.from({ length: nLab }, (_, c) => (classCounts[c] ?? 0) > 0), notPresent: np, labeledFrom: 'occurring' };
}

export interface Contradiction {
  code: 'label-out-of-range' | 'label-non-integral' | 'not-present-has-voxels' | 'no-training-signal';
  message: string;
}

/** Why this output must not be written; empty when it may be. `className` turns ids into readable names. */
export function findContradictions(
  t: ConvertTallyResult,
  info: ConvertInfo,
  opts: { nLab: number; allowEmpty: boolean; className?: (c: number) => string; where?: string },
): Contradiction[] {
  const out: Contradiction[] = [];
  const name = opts.className ?? ((c: number) => String(c));
  const where = opts.where ? ` ${opts.where}` : '';
  if (t.nonIntegral > 0) {
    out.push({ code: 'label-non-integral', message: `${t.nonIntegral} voxels${where} hold non-integral class values (e.g. ${t.nonIntegralExamples.join(', ')}); class ids must be whole numbers` });
  }
  if (t.outOfRangeVoxels > 0) {
    const shown = t.outOfRange.map(([v, n]) => `${v} (${n} voxels)`).join(', ');
    out.push({ code: 'label-out-of-range', message: `${t.outOfRangeVoxels} voxels${where} map to class values outside [0, ${opts.nLab - 1}]: ${shown}; fix --n-lab or the class volume` });
  }
  info.notPresent.forEach((np, c) => {
    if (np && (t.classCounts[c] ?? 0) > 0) {
      out.push({ code: 'not-present-has-voxels', message: `class ${name(c)} is flagged --not-present but ${t.classCounts[c]} output voxels hold it` });
    }
  });
  const labelledVoxels = t.classCounts.reduce((sum, n, c) => sum + (info.labeled[c] ? n : 0), 0);
  if (labelledVoxels === 0 && !info.notPresent.some(Boolean) && !opts.allowEmpty) {
    out.push({ code: 'no-training-signal', message: `the output has no labelled voxel and no class is flagged --not-present, so it carries no training signal; flag absent classes with --not-present, or pass --allow-empty` });
  }
  return out;
}
