/** The `info` dataset: row 0 `mask_class_labeled`, row 1 `mask_class_not_present`, one column per class. */
import { Codes, error, info, warning, type Finding } from './findings.js';

export interface InfoMask {
  /** Row 0: class c was annotated wherever it occurs in this cube. */
  labeled: boolean[];
  /** Row 1: class c occurs nowhere in this cube. */
  notPresent: boolean[];
  /** Where the mask came from: the file's `info` dataset or the ELEKTRONN default. */
  source: 'file' | 'default';
}

/** ELEKTRONN's default when a file has no `info`: every class labelled, none absent. */
export function defaultInfoMask(nLab: number): InfoMask {
  return { labeled: Array(nLab).fill(true), notPresent: Array(nLab).fill(false), source: 'default' };
}

/** A lazy cube is one whose info differs from the default: some class unlabelled or flagged absent. */
export function isLazy(mask: InfoMask): boolean {
  return mask.labeled.some((l) => !l) || mask.notPresent.some((n) => n);
}

export interface RawInfo {
  shape: number[];
  data: ArrayLike<number>;
  isFloat: boolean;
}

/**
 * Validate a raw `info` array against `nLab` and turn it into an InfoMask.
 * Returns no mask when the array cannot be used (wrong shape or non-0/1 entries).
 */
export function parseInfoMask(raw: RawInfo | null, nLab: number): { mask: InfoMask | null; findings: Finding[] } {
  if (raw === null) {
    return {
      mask: defaultInfoMask(nLab),
      findings: [info(Codes.infoMissing, `no 'info' dataset: all ${nLab} classes treated as labelled, none as not present (ELEKTRONN default)`)],
    };
  }
  const { shape, data } = raw;
  if (shape.length !== 2 || shape[0] !== 2 || shape[1] !== nLab) {
    const hint = shape.length === 2 && shape[0] === nLab && shape[1] === 2 ? ' (it looks transposed: write info.T)' : '';
    return {
      mask: null,
      findings: [error(Codes.infoShape, `'info' has shape (${shape.join(',')}) but must be (2, ${nLab}): row 0 mask_class_labeled, row 1 mask_class_not_present${hint}`)],
    };
  }
  const bad = new Set<number>();
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (v !== 0 && v !== 1) bad.add(v);
  }
  if (bad.size > 0) {
    return {
      mask: null,
      findings: [error(Codes.infoValues, `'info' entries must be 0 or 1, found ${[...bad].slice(0, 5).join(', ')}`)],
    };
  }
  const findings: Finding[] = [];
  if (raw.isFloat) {
    findings.push(warning(Codes.infoFloat, `'info' is stored as float (0.0/1.0); store it as an integer or bool array`));
  }
  const labeled = Array.from({ length: nLab }, (_, c) => data[c] === 1);
  const notPresent = Array.from({ length: nLab }, (_, c) => data[nLab + c] === 1);
  return { mask: { labeled, notPresent, source: 'file' }, findings };
}

/** The two rows as 0/1 integers, in the layout ELEKTRONN reads. */
export function infoMaskToArray(mask: InfoMask): Int8Array {
  const n = mask.labeled.length;
  const out = new Int8Array(2 * n);
  for (let c = 0; c < n; c++) {
    out[c] = mask.labeled[c] ? 1 : 0;
    out[n + c] = mask.notPresent[c] ? 1 : 0;
  }
  return out;
}
