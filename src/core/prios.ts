/** ELEKTRONN `cube_prios` from label density: the information rule, lazy-share rescaling, expected shares (pure). */
import { usageError } from '../errors.js';

/**
 * How much a not-present flag counts, per open voxel and per class, relative to a real label.
 * A flag only says "not class c" (one of n_lab per-class outputs), the same thing for the whole
 * cube, and never where a boundary is; half weight keeps flagged cubes in the mix without letting
 * a cube of painted background crowd out densely labelled ones. docs/suggest-prios.md has the full argument.
 */
export const DEFAULT_LAZY_WEIGHT = 0.5;

/** Stable finding codes of this command (check's codes live in core/findings.ts). */
export const PrioCodes = {
  prioZero: 'prio-zero',
  validCube: 'valid-cube',
  noTrainCubes: 'no-training-cubes',
  priosAllZero: 'prios-all-zero',
  manifestNotWritten: 'manifest-not-written',
  lazyShareUnreachable: 'lazy-share-unreachable',
} as const;

export interface CubeDensity {
  voxels: number;
  /** Voxels whose class id is >= 0 and flagged labelled (what the up-vote part of the loss sees). */
  labelledVoxels: number;
  /** How many classes are flagged not present in this cube. */
  notPresentFlags: number;
  nLab: number;
}

/** Refuse a lazy weight outside [0, 1]: above 1 a flag would count more than a label. */
export function checkLazyWeight(lazyWeight: number): void {
  if (!Number.isFinite(lazyWeight) || lazyWeight < 0 || lazyWeight > 1) {
    throw usageError(`lazy weight must be in [0, 1], got ${lazyWeight}`, '0 ignores not-present flags, 1 counts a flag on every open voxel as 1/n_lab of a label');
  }
}

/** Refuse a lazy share outside [0, 1): at 1 the dense cubes would never be drawn. */
export function checkLazyShare(lazyShare: number): void {
  if (!Number.isFinite(lazyShare) || lazyShare < 0 || lazyShare >= 1) {
    throw usageError(`lazy share must be in [0, 1), got ${lazyShare}`, 'e.g. 0.2 draws 20% of training patches from lazy cubes');
  }
}

/**
 * Information of a cube, in voxel units:
 *   labelled + lazyWeight * (voxels - labelled) * notPresentFlags / nLab.
 * A labelled voxel already rules every other class out, so a flag only adds information on the
 * voxels the labels leave open (ignore, or a class flagged unlabelled). Hence a fully labelled cube
 * scores exactly its voxel count, ELEKTRONN's default prio, and no cube scores more than its size.
 * The expression order is part of the contract: fixtures/prios/make_prios_fixtures.py repeats it
 * so that the tests can compare bit for bit.
 */
export function cubeInformation(d: CubeDensity, lazyWeight: number = DEFAULT_LAZY_WEIGHT): number {
  const { voxels, labelledVoxels: labelled, notPresentFlags: flags, nLab } = d;
  return labelled + lazyWeight * (voxels - labelled) * flags / nLab;
}

/** Expected fraction of sampled patches per cube: prio / sum of prios (ELEKTRONN normalises the same way). All zero when nothing can be drawn. */
export function sharesFromPrios(prios: readonly number[]): number[] {
  for (const p of prios) {
    if (!Number.isFinite(p) || p < 0) throw new RangeError(`prios must be finite and >= 0, got ${p}`);
  }
  const total = prios.reduce((a, b) => a + b, 0);
  return prios.map((p) => (total > 0 ? p / total : 0));
}

export interface PrioInput {
  information: number;
  lazy: boolean;
}

/**
 * Prios that give the lazy group `lazyShare` of all patches in total. Dense cubes keep their
 * information (so a dense cube keeps ELEKTRONN's default prio) and every lazy cube is scaled by one
 * factor, which keeps relative prios within each group.
 */
export function applyLazyShare(cubes: readonly PrioInput[], lazyShare: number): { prios: number[]; factor: number } {
  checkLazyShare(lazyShare);
  const dense = cubes.filter((c) => !c.lazy);
  const lazy = cubes.filter((c) => c.lazy);
  if (lazy.length === 0) throw usageError(`a lazy share was requested but no training cube is lazy`, 'lazy cubes are those whose info flags a class unlabelled or not present; drop --lazy-share');
  if (dense.length === 0) throw usageError(`a lazy share was requested but every training cube is lazy`, 'with no dense cube there is nothing to share with; drop --lazy-share');
  const sumDense = dense.reduce((a, c) => a + c.information, 0);
  const sumLazy = lazy.reduce((a, c) => a + c.information, 0);
  if (sumDense === 0) throw usageError('a lazy share was requested but the dense cubes carry no information (no labelled voxel)', 'label the dense cubes, or drop --lazy-share');
  if (sumLazy === 0) throw usageError('a lazy share was requested but the lazy cubes carry no information (no labelled voxel, no not-present flag)', 'drop --lazy-share');
  const factor = lazyShare * sumDense / ((1 - lazyShare) * sumLazy);
  return { prios: cubes.map((c) => (c.lazy ? c.information * factor : c.information)), factor };
}

/** One line of the rule for reports and --help. */
export function ruleText(lazyWeight: number, lazyShare: number | null): string {
  const base = `information = labelled + ${lazyWeight} * (voxels - labelled) * notPresentFlags / n_lab; prio = information`;
  return lazyShare === null ? base : `${base}, lazy cubes scaled by one factor so that they get ${lazyShare} of all patches`;
}

/** A float in Python syntax that parses back to the same double (shortest round-trip digits, like Python's repr). */
export function pythonFloat(x: number): string {
  if (!Number.isFinite(x)) throw new RangeError(`cannot write ${x} as a prio`);
  const s = String(x);
  return /^-?\d+$/.test(s) ? `${s}.0` : s;
}

/** The line to paste into an ELEKTRONN config: one prio per training cube, in file-list order. */
export function elektronnCubePrios(prios: readonly number[]): string {
  return `cube_prios = [${prios.map(pythonFloat).join(', ')}]`;
}
