/** The `check` rules for one cube: pure functions from facts gathered by the I/O layer to findings and stats. */
import type { DType } from '../io/dtype.js';
import { Codes, error, warning, type Finding } from './findings.js';
import { parseInfoMask, isLazy, type InfoMask, type RawInfo } from './infoMask.js';
import type { LabelTallyResult } from './labelTally.js';

export interface CubeFacts {
  nLab: number;
  label: { shape: number[]; dtype: DType | null; typeName: string };
  /** Null when the labels were not scanned (unusable dtype or shape). */
  tally: LabelTallyResult | null;
  /** The `info` dataset, or null when the file has none. */
  info: RawInfo | null;
  raw?: { shape: number[] };
  /** Position of the label volume inside the raw volume (spatial axes). */
  offset?: number[];
}

export interface CubeStats {
  shape: number[];
  dtype: string;
  voxels: number;
  /** Voxels per class id 0..nLab-1. */
  classCounts: number[];
  /** Voxels labelled -1. */
  ignored: number;
  outOfRange: number;
  /** Voxels that feed the loss: class id >= 0 and that class flagged labelled. */
  labelledVoxels: number;
  labelledFraction: number;
  /** The info mask as training will use it (null when `info` is unusable). */
  info: { labeled: number[]; notPresent: number[]; source: 'file' | 'default' } | null;
  lazy: boolean;
  rawShape?: number[];
}

const fmtShape = (s: readonly number[]): string => `(${s.join(', ')})`;

/** Voxels that contribute to the labelled part of the loss. */
export function labelledVoxelCount(classCounts: readonly number[], mask: InfoMask): number {
  return classCounts.reduce((sum, n, c) => sum + (mask.labeled[c] ? n : 0), 0);
}

function dtypeFindings(facts: CubeFacts): Finding[] {
  const { label, tally } = facts;
  if (!label.dtype) {
    return [error(Codes.labelDtypeUnsupported, `labels are stored as ${label.typeName}; store class ids as an integer array (-1 = ignore)`)];
  }
  if (label.dtype.kind !== 'float' || !tally) return [];
  if (tally.nonIntegral > 0) {
    return [error(Codes.labelNonIntegral, `labels are ${label.dtype.name} with ${tally.nonIntegral} non-integral values (e.g. ${tally.nonIntegralExamples.join(', ')}); class ids must be whole numbers`)];
  }
  return [warning(Codes.labelFloatIntegral, `labels are stored as ${label.dtype.name}; values are whole numbers, but store them as int16 to halve the size and avoid rounding surprises`)];
}

function rangeFindings(facts: CubeFacts): Finding[] {
  const t = facts.tally;
  if (!t || t.outOfRangeVoxels === 0) return [];
  const shown = [...t.outOfRange].slice(0, 8).map(([v, n]) => `${v} (${n} voxels)`).join(', ');
  const more = t.outOfRange.size > 8 ? `, and ${t.outOfRange.size - 8} more values` : '';
  return [error(Codes.labelOutOfRange, `${t.outOfRangeVoxels} voxels hold values outside [-1, ${facts.nLab - 1}]: ${shown}${more}; fix --n-lab or remap these values (-1 = ignore)`)];
}

function consistencyFindings(t: LabelTallyResult, mask: InfoMask): Finding[] {
  const out: Finding[] = [];
  t.classCounts.forEach((n, c) => {
    if (mask.notPresent[c] && n > 0) {
      out.push(error(Codes.notPresentHasVoxels, `class ${c} is flagged not present in 'info' but has ${n} voxels labelled with it; clear the flag or relabel those voxels`));
    } else if (!mask.labeled[c] && n > 0) {
      out.push(warning(Codes.unlabeledClassHasVoxels, `class ${c} has ${n} voxels but is flagged not labelled in 'info': these voxels are ignored by the loss`));
    }
  });
  if (labelledVoxelCount(t.classCounts, mask) === 0 && !mask.notPresent.some(Boolean)) {
    out.push(warning(Codes.noTrainingSignal, `no labelled voxel and no not-present flag: this cube carries no training signal; label something or flag absent classes in 'info'`));
  }
  return out;
}

/** Spatial shape of raw data: (x,y,z) as is, (ch,x,y,z) without the channel axis. */
export function rawSpatialShape(rawShape: readonly number[], labelNdim: number): number[] | null {
  if (rawShape.length === labelNdim) return [...rawShape];
  if (rawShape.length === labelNdim + 1) return rawShape.slice(1);
  return null;
}

function rawFindings(facts: CubeFacts): Finding[] {
  if (!facts.raw) return [];
  const lab = facts.label.shape;
  const spatial = rawSpatialShape(facts.raw.shape, lab.length);
  if (!spatial) {
    return [error(Codes.rawNdim, `raw data has shape ${fmtShape(facts.raw.shape)}, which is neither ${lab.length}-D like the labels ${fmtShape(lab)} nor channels-first (ch, ...)`)];
  }
  const offset = facts.offset;
  if (offset) {
    if (offset.length !== lab.length) {
      return [error(Codes.rawShapeMismatch, `offset [${offset.join(', ')}] has ${offset.length} entries but labels are ${lab.length}-D`)];
    }
    const fits = lab.every((n, i) => offset[i]! >= 0 && offset[i]! + n <= spatial[i]!);
    return fits ? [] : [error(Codes.rawShapeMismatch, `labels ${fmtShape(lab)} at offset [${offset.join(', ')}] do not fit inside raw ${fmtShape(spatial)}`)];
  }
  const same = spatial.length === lab.length && spatial.every((n, i) => n === lab[i]);
  return same ? [] : [error(Codes.rawShapeMismatch, `raw spatial shape ${fmtShape(spatial)} differs from label shape ${fmtShape(lab)}; give an offset if the labels sit inside a larger raw volume`)];
}

/** All rules for one cube. */
export function evaluateCube(facts: CubeFacts): { findings: Finding[]; stats: CubeStats; mask: InfoMask | null } {
  const findings: Finding[] = [];
  const ndim = facts.label.shape.length;
  if (ndim !== 2 && ndim !== 3) {
    findings.push(error(Codes.labelNdim, `labels have shape ${fmtShape(facts.label.shape)}; expected a 2-D (x, y) or 3-D (x, y, z) volume of class ids`));
  }
  findings.push(...dtypeFindings(facts), ...rangeFindings(facts));
  const parsed = parseInfoMask(facts.info, facts.nLab);
  findings.push(...parsed.findings);
  const mask = parsed.mask;
  const t = facts.tally;
  if (t && mask) findings.push(...consistencyFindings(t, mask));
  findings.push(...rawFindings(facts));

  const voxels = t?.voxels ?? facts.label.shape.reduce((a, b) => a * b, 1);
  const classCounts = t?.classCounts ?? Array(facts.nLab).fill(0);
  const labelledVoxels = mask ? labelledVoxelCount(classCounts, mask) : 0;
  const stats: CubeStats = {
    shape: facts.label.shape,
    dtype: facts.label.typeName,
    voxels,
    classCounts,
    ignored: t?.ignored ?? 0,
    outOfRange: t?.outOfRangeVoxels ?? 0,
    labelledVoxels,
    labelledFraction: voxels > 0 ? labelledVoxels / voxels : 0,
    info: mask ? { labeled: mask.labeled.map(Number), notPresent: mask.notPresent.map(Number), source: mask.source } : null,
    lazy: mask ? isLazy(mask) : false,
    ...(facts.raw ? { rawShape: facts.raw.shape } : {}),
  };
  return { findings, stats, mask };
}
