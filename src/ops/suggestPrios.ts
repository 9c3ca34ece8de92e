/** `suggest-prios`: scan each cube like check does, score its information, turn that into ELEKTRONN cube_prios (library entry point). */
import fs from 'node:fs';
import path from 'node:path';
import { evaluateCube } from '../core/checkRules.js';
import { Codes, error, info, statusOf, warning, type Finding, type Status } from '../core/findings.js';
import type { Manifest } from '../core/manifest.js';
import { applyLazyShare, checkLazyShare, checkLazyWeight, cubeInformation, DEFAULT_LAZY_WEIGHT, PrioCodes, ruleText, sharesFromPrios } from '../core/prios.js';
import { isLazyLabelError, usageError } from '../errors.js';
import { writeTextAtomically } from '../io/atomic.js';
import { requireManifest } from './manifestFile.js';
import { jobId, shardItems, type Shard, type ShardInfo } from '../core/shard.js';
import { gatherCubeFacts, type CubeRef, type ScanOptions } from './scan.js';

export interface SuggestPriosOptions extends ScanOptions {
  /** A dataset manifest; its valid cubes are listed but never get a prio. */
  manifest?: string;
  /** Label files instead of a manifest (all treated as training cubes). */
  cubes?: CubeRef[];
  /** Required with `cubes`; with a manifest it must match the manifest's n_lab. */
  nLab?: number;
  lazyWeight?: number;
  /** Total share of patches for the lazy cubes, in [0, 1); null/undefined = prios are the information as is. */
  lazyShare?: number | null;
  /** Store the prios in the manifest's cubes (atomic rewrite; needs `manifest` and no errors). */
  writeManifest?: boolean;
  /**
   * Score only this shard's contiguous block of the cubes (see core/shard.ts). Prios and shares need
   * every cube, so a shard report leaves them null; `lazylabel merge` computes them over all cubes.
   */
  shard?: Shard;
}

export interface CubePrio {
  name: string;
  path: string;
  dataset: string;
  /** Validation cube: never trained on, so prio 0 and no share. */
  valid: boolean;
  status: Status;
  /** Null when the cube could not be read. */
  voxels: number | null;
  labelledVoxels: number | null;
  labelledFraction: number | null;
  ignoredFraction: number | null;
  classCounts: number[] | null;
  /** The info mask as training uses it, 0/1 per class; null when unreadable or unusable. */
  labeled: number[] | null;
  notPresent: number[] | null;
  lazy: boolean | null;
  /** Null when the cube has errors: it gets no prio until it is fixed. */
  information: number | null;
  prio: number | null;
  /** Expected fraction of training patches drawn from this cube. */
  share: number | null;
  findings: Finding[];
}

export interface PriosReport {
  command: 'suggest-prios';
  ok: boolean;
  nLab: number;
  /** Absolute manifest path, null for label files. */
  manifest: string | null;
  rule: { lazyWeight: number; lazyShare: number | null; text: string };
  cubes: CubePrio[];
  /** One prio per training cube in order (ELEKTRONN's cube_prios); null when some training cube has no prio. */
  cubePrios: number[] | null;
  /** Expected share of patches from lazy training cubes (null when some training cube has no prio). */
  lazyShare: number | null;
  /** Dataset-level findings (not about one cube). */
  findings: Finding[];
  /** Whether --write-manifest rewrote the manifest. */
  written: boolean;
  /** Present on a shard's report only: which cubes of the whole list it scored. */
  shard?: ShardInfo;
}

interface Target {
  ref: CubeRef & { name: string };
  valid: boolean;
}

/** Label volumes only: raw pairing does not change a prio and is check's business. */
function targetsFromManifest(manifest: Manifest): Target[] {
  return manifest.cubes.map((c) => ({
    ref: { name: c.name, label: c.label, labelKey: c.labelKey, infoKey: c.infoKey },
    valid: c.valid,
  }));
}

/** Scan one cube and score it; unreadable cubes and cubes with check errors get no information. */
async function scoreCube(t: Target, nLab: number, lazyWeight: number, manifest: Manifest | null, opts: ScanOptions): Promise<CubePrio> {
  const base = { name: t.ref.name, path: t.ref.label, dataset: t.ref.labelKey, valid: t.valid };
  const empty = { voxels: null, labelledVoxels: null, labelledFraction: null, ignoredFraction: null, classCounts: null, labeled: null, notPresent: null, lazy: null, information: null, prio: null, share: null };
  const { facts, failure } = await gatherCubeFacts(t.ref, nLab, opts);
  if (!facts) {
    const hint = failure!.hint ? ` (${failure!.hint})` : '';
    const findings = [error(failure!.code, `${failure!.message}${hint}`)];
    return { ...base, status: 'error', ...empty, findings };
  }
  const { findings, stats, mask } = evaluateCube(facts);
  if (manifest && !manifest.lazyLabels && mask?.source === 'file' && stats.lazy) {
    // training would ignore this info (check reports the same at manifest level)
    findings.push(error(Codes.manifestLazyDisabled, `lazy_labels is false, so training ignores this cube's lazy 'info'; set "lazy_labels": true in the manifest`));
  }
  const usable = mask !== null && facts.tally !== null && statusOf(findings) !== 'error';
  const flags = mask ? mask.notPresent.filter(Boolean).length : 0;
  const information = usable ? cubeInformation({ voxels: stats.voxels, labelledVoxels: stats.labelledVoxels, notPresentFlags: flags, nLab }, lazyWeight) : null;
  if (t.valid) findings.push(info(PrioCodes.validCube, 'validation cube: never trained on, so prio 0 and no share of patches (and not in cube_prios)'));
  else if (information === 0) {
    const why = flags > 0 ? 'no labelled voxel, and flags count nothing at lazy weight 0' : 'no labelled voxel and no not-present flag';
    findings.push(warning(PrioCodes.prioZero, `information 0 (${why}): prio 0, this cube is never drawn for training`));
  }
  return {
    ...base,
    status: statusOf(findings),
    voxels: stats.voxels,
    labelledVoxels: stats.labelledVoxels,
    labelledFraction: stats.labelledFraction,
    ignoredFraction: stats.voxels > 0 ? stats.ignored / stats.voxels : 0,
    classCounts: stats.classCounts,
    labeled: stats.info?.labeled ?? null,
    notPresent: stats.info?.notPresent ?? null,
    lazy: mask ? stats.lazy : null,
    information,
    prio: null,
    share: null,
    findings,
  };
}

function validateOptions(o: SuggestPriosOptions): { lazyWeight: number; lazyShare: number | null } {
  const lazyWeight = o.lazyWeight ?? DEFAULT_LAZY_WEIGHT;
  checkLazyWeight(lazyWeight);
  const lazyShare = o.lazyShare ?? null;
  if (lazyShare !== null) checkLazyShare(lazyShare);
  if (o.manifest !== undefined && o.cubes?.length) throw usageError('give label files or a manifest, not both');
  if (o.manifest === undefined && !o.cubes?.length) throw usageError('no label files given', 'pass label files with --n-lab, or --manifest dataset.json');
  if (o.writeManifest && o.manifest === undefined) throw usageError('--write-manifest needs --manifest', 'prios can only be stored in a manifest; use --format elektronn for label files');
  if (o.nLab !== undefined && (!Number.isInteger(o.nLab) || o.nLab < 1)) throw usageError(`--n-lab must be a positive integer, got ${o.nLab}`);
  if (o.manifest === undefined && o.nLab === undefined) throw usageError('--n-lab is required with label files', 'e.g. --n-lab 3 for classes 0, 1, 2');
  if (o.shard && o.writeManifest) throw usageError('--write-manifest cannot go with --shard: a shard sees only some cubes', 'run the shards without it, then: lazylabel merge shard reports... --write-manifest');
  return { lazyWeight, lazyShare };
}

/** Detect the manifest's indentation so a rewrite changes the prio lines only. */
function indentOf(text: string): string | number {
  const m = /\n([ \t]+)"/.exec(text);
  return m ? m[1]! : 2;
}

/** Store prios in the training cubes of the manifest, keeping every other field and the key order. */
async function writePrios(manifest: Manifest, cubes: readonly CubePrio[]): Promise<void> {
  const text = fs.readFileSync(manifest.path, 'utf8');
  const json = structuredClone(manifest.json) as { cubes: Record<string, unknown>[] };
  cubes.forEach((c, i) => {
    // assigning an existing key keeps its position; a new key goes last
    if (!c.valid) json.cubes[i]!.prio = c.prio;
  });
  const out = JSON.stringify(json, null, indentOf(text)) + (text.endsWith('\n') ? '\n' : '');
  await writeTextAtomically(manifest.path, out, { force: true });
}

/** Suggest ELEKTRONN cube_prios for label files or a manifest. Usage problems throw; data problems become findings. */
export async function suggestPrios(options: SuggestPriosOptions): Promise<PriosReport> {
  const { lazyWeight, lazyShare } = validateOptions(options);
  const manifest = options.manifest !== undefined ? requireManifest(options.manifest) : null;
  if (manifest && options.nLab !== undefined && options.nLab !== manifest.nLab) {
    throw usageError(`--n-lab ${options.nLab} differs from the manifest's n_lab ${manifest.nLab}`, 'drop --n-lab: the manifest decides');
  }
  const nLab = manifest?.nLab ?? options.nLab!;
  const targets: Target[] = manifest
    ? targetsFromManifest(manifest)
    : options.cubes!.map((ref) => ({ ref: { ...ref, name: ref.name ?? path.basename(ref.label) }, valid: false }));

  if (options.shard) {
    const part = shardItems(targets, options.shard);
    const job = jobId({
      command: 'suggest-prios', manifest: manifest?.path ?? null, nLab, lazyWeight, lazyShare,
      cubes: targets.map((t) => [t.ref.name, path.resolve(t.ref.label), t.ref.labelKey, t.ref.infoKey, t.valid]),
    });
    const cubes: CubePrio[] = [];
    for (const t of part.items) cubes.push(await scoreCube(t, nLab, lazyWeight, manifest, options));
    return {
      command: 'suggest-prios',
      ok: !cubes.some((c) => c.findings.some((f) => f.severity === 'error')),
      nLab,
      manifest: manifest?.path ?? null,
      rule: { lazyWeight, lazyShare, text: ruleText(lazyWeight, lazyShare) },
      cubes,
      // prios, shares and dataset-level findings need every cube: merge computes them
      cubePrios: null,
      lazyShare: null,
      findings: [],
      written: false,
      shard: { ...options.shard, start: part.start, end: part.end, total: targets.length, job },
    };
  }

  const cubes: CubePrio[] = [];
  for (const t of targets) cubes.push(await scoreCube(t, nLab, lazyWeight, manifest, options));
  return finishPrios(cubes, { nLab, manifestPath: manifest?.path ?? null, lazyWeight, lazyShare, write: options.writeManifest ? manifest : null });
}

export interface FinishPriosContext {
  nLab: number;
  manifestPath: string | null;
  lazyWeight: number;
  lazyShare: number | null;
  /** Store the prios in this manifest when every cube is fine (--write-manifest). */
  write: Manifest | null;
}

/**
 * The dataset-level half of suggest-prios, from scored cubes (prio and share still null): lazy-share
 * rescaling, shares over all training cubes, dataset findings, the manifest rewrite. `merge` runs it
 * on the cubes of all shards, so a merged report is the unsharded one.
 */
export async function finishPrios(cubes: CubePrio[], ctx: FinishPriosContext): Promise<PriosReport> {
  const { nLab, lazyWeight, lazyShare } = ctx;
  // prios among the training cubes that could be scored; valid cubes are never drawn
  const train = cubes.filter((c) => !c.valid);
  const scored = train.filter((c) => c.information !== null);
  const findings: Finding[] = [];
  const complete = scored.length === train.length;
  let prios = scored.map((c) => c.information!);
  if (lazyShare !== null) {
    try {
      prios = applyLazyShare(scored.map((c) => ({ information: c.information!, lazy: c.lazy! })), lazyShare).prios;
    } catch (e) {
      // with every cube read, an unreachable share is the request's fault; otherwise the broken cubes may be why
      if (complete || !isLazyLabelError(e)) throw e;
      findings.push(error(PrioCodes.lazyShareUnreachable, `no prios: ${e.message} among the cubes that could be read`));
      prios = [];
    }
  }
  const shares = sharesFromPrios(prios);
  prios.forEach((p, i) => {
    scored[i]!.prio = p;
    scored[i]!.share = shares[i]!;
  });
  for (const c of cubes) {
    if (c.valid && c.status !== 'error') {
      c.prio = 0;
      c.share = 0;
    }
  }

  if (train.length === 0) findings.push(warning(PrioCodes.noTrainCubes, 'every cube is a validation cube: there is nothing to train on'));
  else if (prios.length > 0 && prios.every((p) => p === 0)) {
    findings.push(error(PrioCodes.priosAllZero, 'every training cube has prio 0: ELEKTRONN cannot draw a patch (it divides by the sum of prios); label something or flag absent classes'));
  }
  const ok = ![...findings, ...cubes.flatMap((c) => c.findings)].some((f) => f.severity === 'error');

  let written = false;
  const manifest = ctx.write;
  if (manifest) {
    if (ok) {
      await writePrios(manifest, cubes);
      written = true;
    } else {
      findings.push(warning(PrioCodes.manifestNotWritten, `${manifest.path} left unchanged: fix the errors first, so that every training cube gets a prio`));
    }
  }
  return {
    command: 'suggest-prios',
    ok,
    nLab,
    manifest: ctx.manifestPath,
    rule: { lazyWeight, lazyShare, text: ruleText(lazyWeight, lazyShare) },
    cubes,
    cubePrios: complete ? train.map((c) => c.prio!) : null,
    // clamped: summing shares can overshoot 1 by an ulp when every cube is lazy
    lazyShare: complete && train.length > 0 ? Math.min(1, train.reduce((a, c) => a + (c.lazy ? c.share! : 0), 0)) : null,
    findings,
    written,
  };
}
