/** `check`: run the rules over label files or a manifest and build the report (library entry point). */
import path from 'node:path';
import { evaluateCube, type CubeStats } from '../core/checkRules.js';
import { Codes, error, statusOf, type Finding, type Status } from '../core/findings.js';
import { gatherCubeFacts, type CubeRef, type ScanOptions } from './scan.js';
import { loadManifest } from './manifestFile.js';
import { isLazyLabelError } from '../errors.js';
import { jobId, shardItems, type Shard, type ShardInfo } from '../core/shard.js';

export interface CheckOptions extends ScanOptions {
  nLab: number;
  /** Warnings count as failures. */
  strict?: boolean;
  /** Check only this shard's contiguous block of the files (see core/shard.ts); `lazylabel merge` joins the reports. */
  shard?: Shard;
}

export interface FileReport {
  name: string;
  path: string;
  dataset: string;
  raw?: string;
  status: Status;
  findings: Finding[];
  stats: CubeStats | null;
}

export interface CheckReport {
  command: 'check';
  ok: boolean;
  strict: boolean;
  nLab: number;
  manifest?: { path: string; status: Status; findings: Finding[] };
  files: FileReport[];
  summary: { files: number; ok: number; warn: number; error: number };
  /** Present on a shard's report only: which files of the whole list it covers. */
  shard?: ShardInfo;
}

/** Check one cube; a file that cannot be read becomes an error entry, never an exception. */
export async function checkCube(ref: CubeRef, opts: CheckOptions): Promise<FileReport> {
  const base = {
    name: ref.name ?? path.basename(ref.label),
    path: ref.label,
    dataset: ref.labelKey,
    ...(ref.raw ? { raw: ref.raw } : {}),
  };
  const { facts, failure } = await gatherCubeFacts(ref, opts.nLab, opts);
  if (!facts) {
    const where = failure!.file && failure!.file !== ref.label ? `${failure!.file}: ` : '';
    const hint = failure!.hint ? ` (${failure!.hint})` : '';
    const findings = [error(failure!.code, `${where}${failure!.message}${hint}`)];
    return { ...base, status: 'error', findings, stats: null };
  }
  const { findings, stats } = evaluateCube(facts);
  return { ...base, status: statusOf(findings), findings, stats };
}

/** What makes two shards part of one run: the full list of cubes and the options that change a verdict. */
function checkJob(refs: readonly CubeRef[], opts: CheckOptions, manifestPath?: string): string {
  const cubes = refs.map((r) => [r.name ?? null, path.resolve(r.label), r.labelKey, r.infoKey, r.raw ? path.resolve(r.raw) : null, r.rawKey ?? null, r.offset ?? null]);
  return jobId({ command: 'check', manifest: manifestPath ? path.resolve(manifestPath) : null, nLab: opts.nLab, strict: opts.strict ?? false, cubes });
}

function shardOf(refs: readonly CubeRef[], opts: CheckOptions, manifestPath?: string): { refs: CubeRef[]; info?: ShardInfo } {
  if (!opts.shard) return { refs: [...refs] };
  const part = shardItems(refs, opts.shard);
  return { refs: part.items, info: { ...opts.shard, start: part.start, end: part.end, total: refs.length, job: checkJob(refs, opts, manifestPath) } };
}

/** The manifest-level finding for lazy cubes under `lazy_labels: false`, or null when there are none. */
export function lazyDisabledFinding(files: readonly FileReport[]): Finding | null {
  const lazy = files.filter((f) => f.stats?.lazy && f.stats.info?.source === 'file');
  if (!lazy.length) return null;
  return error(Codes.manifestLazyDisabled, `lazy_labels is false but ${lazy.map((f) => f.name).join(', ')} ${lazy.length === 1 ? 'has' : 'have'} lazy 'info' (unlabelled or not-present classes) that training would ignore; set "lazy_labels": true`);
}

function withShard(report: CheckReport, info: ShardInfo | undefined): CheckReport {
  return info ? { ...report, shard: info } : report;
}

function finish(files: FileReport[], opts: CheckOptions, manifest?: CheckReport['manifest']): CheckReport {
  const count = (s: Status): number => files.filter((f) => f.status === s).length;
  const statuses = [...files.map((f) => f.status), ...(manifest ? [manifest.status] : [])];
  const ok = !statuses.includes('error') && !(opts.strict && statuses.includes('warn'));
  return {
    command: 'check',
    ok,
    strict: opts.strict ?? false,
    nLab: opts.nLab,
    ...(manifest ? { manifest } : {}),
    files,
    summary: { files: files.length, ok: count('ok'), warn: count('warn'), error: count('error') },
  };
}

/** Check label files (optionally paired with raw files). */
export async function checkCubes(refs: CubeRef[], opts: CheckOptions): Promise<CheckReport> {
  const part = shardOf(refs, opts);
  const files: FileReport[] = [];
  for (const ref of part.refs) files.push(await checkCube(ref, opts));
  return withShard(finish(files, opts), part.info);
}

/** Check every cube of a manifest, plus the manifest's own rules. */
export async function checkManifest(manifestPath: string, opts: Omit<CheckOptions, 'nLab'> & { nLab?: number }): Promise<CheckReport> {
  let loaded;
  try {
    loaded = loadManifest(manifestPath);
  } catch (e) {
    if (!isLazyLabelError(e)) throw e;
    const findings = [error(e.code, e.message)];
    const failed = { ...opts, nLab: opts.nLab ?? 0 };
    return withShard(finish([], failed, { path: manifestPath, status: 'error', findings }), shardOf([], failed, manifestPath).info);
  }
  const { manifest, findings } = loaded;
  if (!manifest) {
    const failed = { ...opts, nLab: opts.nLab ?? 0 };
    return withShard(finish([], failed, { path: manifestPath, status: 'error', findings }), shardOf([], failed, manifestPath).info);
  }
  const nLab = manifest.nLab;
  const part = shardOf(manifest.cubes, { ...opts, nLab }, manifest.path);
  const files: FileReport[] = [];
  for (const cube of part.refs) {
    files.push(await checkCube({ ...cube }, { ...opts, nLab }));
  }
  if (!manifest.lazyLabels) {
    // a shard names its own cubes only; merge recomputes this finding over all of them
    const lazy = lazyDisabledFinding(files);
    if (lazy) findings.push(lazy);
  }
  return withShard(finish(files, { ...opts, nLab }, { path: manifest.path, status: statusOf(findings), findings }), part.info);
}
