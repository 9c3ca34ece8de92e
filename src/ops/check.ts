/** `check`: run the rules over label files or a manifest and build the report (library entry point). */
import path from 'node:path';
import { evaluateCube, type CubeStats } from '../core/checkRules.js';
import { Codes, error, statusOf, type Finding, type Status } from '../core/findings.js';
import { gatherCubeFacts, type CubeRef, type ScanOptions } from './scan.js';
import { loadManifest } from './manifestFile.js';
import { isLazyLabelError } from '../errors.js';

export interface CheckOptions extends ScanOptions {
  nLab: number;
  /** Warnings count as failures. */
  strict?: boolean;
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
  const files: FileReport[] = [];
  for (const ref of refs) files.push(await checkCube(ref, opts));
  return finish(files, opts);
}

/** Check every cube of a manifest, plus the manifest's own rules. */
export async function checkManifest(manifestPath: string, opts: Omit<CheckOptions, 'nLab'> & { nLab?: number }): Promise<CheckReport> {
  let loaded;
  try {
    loaded = loadManifest(manifestPath);
  } catch (e) {
    if (!isLazyLabelError(e)) throw e;
    const findings = [error(e.code, e.message)];
    return finish([], { ...opts, nLab: opts.nLab ?? 0 }, { path: manifestPath, status: 'error', findings });
  }
  const { manifest, findings } = loaded;
  if (!manifest) {
    return finish([], { ...opts, nLab: opts.nLab ?? 0 }, { path: manifestPath, status: 'error', findings });
  }
  const nLab = manifest.nLab;
  const files: FileReport[] = [];
  for (const cube of manifest.cubes) {
    files.push(await checkCube({ ...cube }, { ...opts, nLab }));
  }
  if (!manifest.lazyLabels) {
    const lazy = files.filter((f) => f.stats?.lazy && f.stats.info?.source === 'file');
    if (lazy.length) {
      findings.push(error(Codes.manifestLazyDisabled, `lazy_labels is false but ${lazy.map((f) => f.name).join(', ')} ${lazy.length === 1 ? 'has' : 'have'} lazy 'info' (unlabelled or not-present classes) that training would ignore; set "lazy_labels": true`));
    }
  }
  return finish(files, { ...opts, nLab }, { path: manifest.path, status: statusOf(findings), findings });
}
