/**
 * `merge`: put the shards of one run back together (library entry point).
 *
 * - `check` and `suggest-prios` shard reports (`--shard i/n --json`) become the report the unsharded
 *   run prints: files/cubes concatenated in shard order, summaries and `ok` recomputed, the
 *   manifest-level lazy finding recomputed over all cubes, and for suggest-prios the prios, the
 *   lazy-share rescaling, the shares and the dataset findings computed over all cubes.
 * - `convert` and `predict` part files (`OUT.part-i-of-n`) are streamed slab by slab, in shard
 *   order, into one output written atomically; for convert, `info` (labelled classes = those
 *   occurring anywhere, by default) and the refusals that need the whole volume are decided here,
 *   the output is re-checked and the manifest updated, as an unsharded convert does.
 * Every input must carry its shard record; merge refuses missing, repeated or foreign shards.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Codes, statusOf } from '../core/findings.js';
import { buildInfo, findContradictions, type ConvertTallyResult } from '../core/convert.js';
import { isLazy } from '../core/infoMask.js';
import { assembleShards, PART_KEY, shardText, type ShardInfo } from '../core/shard.js';
import { slabs, DEFAULT_SLAB_MB } from '../core/slabs.js';
import { LazyLabelError, usageError } from '../errors.js';
import { checkOutputPath, writeAtomically, writeTextAtomically } from '../io/atomic.js';
import type { H5Source } from '../io/hdf5.js';
import { validateAgainst } from '../schemas.js';
import { checkCube, lazyDisabledFinding, type CheckReport } from './check.js';
import type { ConvertPartMeta, ConvertReport } from './convert.js';
import { requireManifest } from './manifestFile.js';
import type { PredictPartMeta, PredictReport } from './predict.js';
import { noProgress, type ProgressFn } from './progress.js';
import { finishPrios, type PriosReport } from './suggestPrios.js';
import { infoMaskToArray } from '../core/infoMask.js';
import type { Manifest } from '../core/manifest.js';

// HDF5 (h5wasm) and convert's writers are loaded only for part files: merging --json reports needs neither
const hdf5 = (): Promise<typeof import('../io/hdf5.js')> => import('../io/hdf5.js');

export type MergeKind = 'check' | 'suggest-prios' | 'convert' | 'predict';

export interface MergeOptions {
  /** Shard reports (JSON) or part files (HDF5) of one run, in any order. */
  inputs: string[];
  /** Merged volume (convert, predict: required) or merged report JSON (check, suggest-prios: optional). */
  output?: string;
  /** Refuse inputs of another kind (the CLI's --convert / --predict). */
  kind?: MergeKind;
  force?: boolean;
  /** suggest-prios: store the merged prios in the manifest (atomic rewrite, as suggest-prios --write-manifest). */
  writeManifest?: boolean;
  slabMB?: number;
  onProgress?: ProgressFn;
}

export interface MergeReport {
  command: 'merge';
  /** The merged report's `ok`. */
  ok: boolean;
  kind: MergeKind;
  shards: number;
  /** The inputs in shard order. */
  inputs: string[];
  /** What merge wrote: the merged volume, the merged report JSON, or null (report merged to stdout only). */
  output: string | null;
  /** The merged report, as the unsharded command reports it (its schema: check-report, prios-report, convert-report, predict-report). */
  report: CheckReport | PriosReport | ConvertReport | PredictReport;
}

const HDF5_SIGNATURE = Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]);
const SCHEMA_OF = { check: 'check-report', 'suggest-prios': 'prios-report' } as const;
const KIND_FLAG: Record<MergeKind, string> = { check: 'check', 'suggest-prios': 'suggest-prios', convert: '--convert', predict: '--predict' };

type Input =
  | { kind: 'check'; source: string; shard: ShardInfo; report: CheckReport }
  | { kind: 'suggest-prios'; source: string; shard: ShardInfo; report: PriosReport }
  | { kind: 'convert'; source: string; shard: ShardInfo; meta: ConvertPartMeta }
  | { kind: 'predict'; source: string; shard: ShardInfo; meta: PredictPartMeta };

function isHdf5(file: string): boolean {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    throw new LazyLabelError('file not found', { code: Codes.fileMissing, file, hint: 'pass the shard reports or part files of one run' });
  }
  try {
    const buf = Buffer.alloc(8);
    return fs.readSync(fd, buf, 0, 8, 0) === 8 && buf.equals(HDF5_SIGNATURE);
  } finally {
    fs.closeSync(fd);
  }
}

function readReport(file: string): Input {
  const text = fs.readFileSync(file, 'utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new LazyLabelError(text.trim() ? 'not a complete JSON report' : 'empty file', {
      code: Codes.corrupt, file, hint: 'was the shard killed before it finished writing? rerun that shard (with --json)',
    });
  }
  const r = json as { command?: unknown; shard?: unknown; output?: unknown };
  if (!r || typeof r !== 'object' || typeof r.command !== 'string') throw usageError(`${file} is not a lazylabel report`, 'pass the --json reports of check/suggest-prios shards, or the part files of convert/predict shards');
  if (r.command === 'convert' || r.command === 'predict') {
    const out = typeof r.output === 'object' && r.output ? (r.output as { path?: string }).path : r.output;
    throw usageError(`${file} is the report of a ${r.command} shard`, `merge its part files instead (${String(out ?? 'OUT.part-i-of-n')}), e.g. lazylabel merge --${r.command} OUT.part-*-of-N -o OUT`);
  }
  if (r.command !== 'check' && r.command !== 'suggest-prios') throw usageError(`${file}: lazylabel ${r.command} reports cannot be merged`, 'merge supports check, suggest-prios, convert and predict shards');
  if (r.shard === undefined) throw usageError(`${file} is the report of a whole ${r.command} run, not of a shard`, `run ${r.command} with --shard i/n --json to get shard reports`);
  const problems = validateAgainst(SCHEMA_OF[r.command], json);
  if (problems.length) throw new LazyLabelError(`not a valid ${r.command} report: ${problems.slice(0, 3).join('; ')}`, { code: Codes.corrupt, file, hint: 'rerun that shard' });
  const report = json as CheckReport | PriosReport;
  const items = report.command === 'check' ? report.files.length : report.cubes.length;
  const shard = report.shard!;
  if (items !== shard.end - shard.start) {
    throw new LazyLabelError(`shard ${shardText(shard)} should hold ${shard.end - shard.start} entries but holds ${items}`, { code: Codes.corrupt, file, hint: 'the report was edited or damaged: rerun that shard' });
  }
  return report.command === 'check'
    ? { kind: 'check', source: file, shard, report }
    : { kind: 'suggest-prios', source: file, shard, report };
}

async function readPart(file: string): Promise<Input> {
  const { withH5 } = await hdf5();
  return withH5(file, (src) => {
    if (!src.has(PART_KEY)) throw usageError(`${file} is an HDF5 file but not a part file of a sharded run`, `part files come from convert/predict --shard i/n (named OUT.part-i-of-n) and hold '${PART_KEY}'`);
    const raw = src.attrs(PART_KEY).meta;
    let meta: ConvertPartMeta | PredictPartMeta;
    try {
      meta = JSON.parse(String(raw)) as ConvertPartMeta | PredictPartMeta;
    } catch {
      throw new LazyLabelError(`the part metadata is not valid JSON`, { code: Codes.corrupt, file, dataset: PART_KEY, hint: 'rerun that shard' });
    }
    if (meta.kind !== 'convert' && meta.kind !== 'predict') throw new LazyLabelError(`unknown part kind '${String((meta as { kind?: unknown }).kind)}'`, { code: Codes.corrupt, file, dataset: PART_KEY, hint: 'was it written by another lazylabel version? rerun the shards' });
    // the stored rows must be what the record says, or the merge would shift data
    const rows = meta.shard.end - meta.shard.start;
    const keys = meta.kind === 'convert' ? [meta.outKey] : [meta.probsKey, meta.labelKey];
    for (const key of keys) {
      if (rows === 0) continue;
      const got = src.info(key).shape;
      const want = meta.kind === 'predict' && key === meta.probsKey ? [rows, ...meta.shape.slice(1), meta.nLab] : [rows, ...meta.shape.slice(1)];
      if (got.length !== want.length || got.some((n, i) => n !== want[i])) {
        throw new LazyLabelError(`part holds shape (${got.join(', ')}) but its record says (${want.join(', ')})`, { code: Codes.corrupt, file, dataset: key, hint: 'rerun that shard' });
      }
    }
    return meta.kind === 'convert'
      ? { kind: 'convert', source: file, shard: meta.shard, meta }
      : { kind: 'predict', source: file, shard: meta.shard, meta };
  });
}

/** Merge the shards of one run. Usage problems (missing or foreign shards, bad output) throw; data verdicts are in the report. */
export async function merge(o: MergeOptions): Promise<MergeReport> {
  if (!o.inputs.length) throw usageError('nothing to merge', 'pass the shard reports (check/suggest-prios --json) or part files (convert/predict OUT.part-i-of-n) of one run');
  const inputs: Input[] = [];
  for (const file of o.inputs) inputs.push(isHdf5(file) ? await readPart(file) : readReport(file));
  const kind = inputs[0]!.kind;
  const other = inputs.find((i) => i.kind !== kind);
  if (other) throw usageError(`${inputs[0]!.source} comes from ${kind} but ${other.source} from ${other.kind}`, 'merge the shards of one run only');
  if (o.kind && o.kind !== kind) throw usageError(`${KIND_FLAG[o.kind]} was given but the inputs come from ${kind}`, 'drop the flag or pass the right files');
  if (o.writeManifest && kind !== 'suggest-prios') throw usageError('--write-manifest only goes with suggest-prios shard reports');
  if ((kind === 'convert' || kind === 'predict') && !o.output) throw usageError(`merging ${kind} parts needs -o OUT.h5`, `the parts say they belong to ${(inputs[0] as { meta: { output: string } }).meta.output}`);
  const ordered = assembleShards(inputs);
  const sources = ordered.map((i) => i.source);
  let report: MergeReport['report'];
  switch (kind) {
    case 'check':
      report = mergeCheck(ordered.map((i) => (i as Extract<Input, { kind: 'check' }>).report));
      break;
    case 'suggest-prios':
      report = await mergePrios(ordered.map((i) => (i as Extract<Input, { kind: 'suggest-prios' }>).report), o.writeManifest ?? false);
      break;
    case 'convert':
      report = await mergeConvert(ordered as Extract<Input, { kind: 'convert' }>[], o);
      break;
    case 'predict':
      report = await mergePredict(ordered as Extract<Input, { kind: 'predict' }>[], o);
      break;
  }
  if ((kind === 'check' || kind === 'suggest-prios') && o.output) {
    // the file the unsharded command's --json would have printed
    await writeTextAtomically(o.output, JSON.stringify(report, null, 2) + '\n', { force: o.force ?? false, inputs: o.inputs });
  }
  return { command: 'merge', ok: report.ok, kind, shards: ordered.length, inputs: sources, output: o.output ?? null, report };
}

/** Check reports of all shards → the unsharded check report. */
export function mergeCheck(shards: readonly CheckReport[]): CheckReport {
  const first = shards[0]!;
  const files = shards.flatMap((r) => r.files);
  let manifest = first.manifest;
  if (manifest) {
    // every shard read the same manifest; only the lazy-disabled finding depends on the shard's cubes
    const findings = manifest.findings.filter((f) => f.code !== Codes.manifestLazyDisabled);
    if (shards.some((r) => r.manifest?.findings.some((f) => f.code === Codes.manifestLazyDisabled))) {
      const lazy = lazyDisabledFinding(files);
      if (lazy) findings.push(lazy);
    }
    manifest = { path: manifest.path, status: statusOf(findings), findings };
  }
  const count = (s: string): number => files.filter((f) => f.status === s).length;
  const statuses = [...files.map((f) => f.status), ...(manifest ? [manifest.status] : [])];
  const ok = !statuses.includes('error') && !(first.strict && statuses.includes('warn'));
  return {
    command: 'check',
    ok,
    strict: first.strict,
    nLab: first.nLab,
    ...(manifest ? { manifest } : {}),
    files,
    summary: { files: files.length, ok: count('ok'), warn: count('warn'), error: count('error') },
  };
}

/** Prios reports of all shards → the unsharded prios report (prios and shares over all cubes). */
export async function mergePrios(shards: readonly PriosReport[], writeManifest: boolean): Promise<PriosReport> {
  const first = shards[0]!;
  const cubes = shards.flatMap((r) => r.cubes).map((c) => ({ ...c, prio: null, share: null }));
  let write: Manifest | null = null;
  if (writeManifest) {
    if (first.manifest === null) throw usageError('--write-manifest needs shards of a manifest run', 'prios of label files can only be printed; use the report');
    write = requireManifest(first.manifest);
    // prios are written by position: the manifest must still list the cubes the shards scored
    const same = write.cubes.length === cubes.length && write.cubes.every((m, i) => m.name === cubes[i]!.name && path.resolve(m.label) === path.resolve(cubes[i]!.path) && m.labelKey === cubes[i]!.dataset && m.valid === cubes[i]!.valid);
    if (!same) throw usageError(`${first.manifest} no longer lists the cubes the shards scored`, 'the manifest changed since the shards ran: rerun them');
  }
  return finishPrios(cubes, { nLab: first.nLab, manifestPath: first.manifest, lazyWeight: first.rule.lazyWeight, lazyShare: first.rule.lazyShare, write });
}

function sumTallies(tallies: readonly ConvertTallyResult[], nLab: number): ConvertTallyResult {
  const outOfRange = new Map<number, number>();
  for (const t of tallies) for (const [v, n] of t.outOfRange) outOfRange.set(v, (outOfRange.get(v) ?? 0) + n);
  return {
    voxels: tallies.reduce((a, t) => a + t.voxels, 0),
    classCounts: Array.from({ length: nLab }, (_, c) => tallies.reduce((a, t) => a + (t.classCounts[c] ?? 0), 0)),
    ignored: tallies.reduce((a, t) => a + t.ignored, 0),
    outOfRange: [...outOfRange].sort((a, b) => a[0] - b[0]).slice(0, 16),
    outOfRangeVoxels: tallies.reduce((a, t) => a + t.outOfRangeVoxels, 0),
    nonIntegral: tallies.reduce((a, t) => a + t.nonIntegral, 0),
    nonIntegralExamples: tallies.flatMap((t) => t.nonIntegralExamples).slice(0, 5),
  };
}

/** Stream one dataset's rows of every part, in shard order, into writers (bounded memory: one slab of each). */
async function concatParts(parts: readonly { source: string; shard: ShardInfo }[], keys: { key: string; write: (data: ReturnType<H5Source['readSlab']>) => void; bytesPerRow: number }[], rowVoxels: number, total: number, o: MergeOptions, label: string, alignRows: number): Promise<void> {
  const { withH5 } = await hdf5();
  const onProgress = o.onProgress ?? noProgress;
  const bytesPerRow = keys.reduce((a, k) => a + k.bytesPerRow, 0);
  for (const part of parts) {
    const rows = part.shard.end - part.shard.start;
    if (rows === 0) continue;
    await withH5(part.source, (src) => {
      // rows per slab from the budget: read copy plus the copy into the wasm heap on write
      for (const slab of slabs([rows, 1], 2 * bytesPerRow, o.slabMB ?? DEFAULT_SLAB_MB, alignRows)) {
        for (const k of keys) k.write(src.readSlab(k.key, slab.start, slab.end));
        onProgress({ label, done: (part.shard.start + slab.end) * rowVoxels, total });
      }
    });
  }
}

async function mergeConvert(parts: Extract<Input, { kind: 'convert' }>[], o: MergeOptions): Promise<ConvertReport> {
  const [{ H5Sink, withH5 }, { assertManifestUpdatable, countFields, INFO_KEY, manifestWithCube }] = await Promise.all([hdf5(), import('./convert.js')]);
  const output = o.output!;
  const m = parts[0]!.meta;
  const guard = { force: o.force ?? false, inputs: [...o.inputs, ...m.inputs.map((i) => i.file), ...(m.manifest ? [m.manifest] : [])] };
  checkOutputPath(output, guard);
  // what an unsharded run decides over the whole volume: info from all classes that occur, then the refusals
  const tally = sumTallies(parts.map((p) => p.meta.tally), m.nLab);
  const info = buildInfo(m.nLab, tally.classCounts, m.labeled, m.notPresent);
  const className = (c: number): string => (m.classNames?.[c] ? `${c} (${m.classNames[c]})` : String(c));
  const problems = findContradictions(tally, info, { nLab: m.nLab, allowEmpty: m.allowEmpty, className, ...(m.where ? { where: m.where } : {}) });
  if (problems.length) {
    throw new LazyLabelError(`refusing to write ${output}: ${problems.map((p) => p.message).join('; ')}`, { code: problems[0]!.code, file: m.primary.file, dataset: m.primary.key });
  }
  const manifest = m.manifest && m.cubeName !== null ? requireManifest(m.manifest) : undefined;
  if (manifest) assertManifestUpdatable(manifest, manifestWithCube(manifest, m.cubeName!, output, m.outKey, m.manifestRaw ?? undefined, true).json);
  const firstFull = parts.find((p) => p.shard.end > p.shard.start)!;
  const attrs = await withH5(firstFull.source, (src) => src.attrs(m.outKey));
  delete attrs.lazylabel;
  const rowVoxels = m.shape.slice(1).reduce((a, b) => a * b, 1);

  await writeAtomically(output, guard, async (tmp) => {
    const sink = await H5Sink.create(tmp);
    try {
      const writer = sink.createDataset(m.outKey, { shape: m.shape, dtype: 'int16', chunks: m.chunks, gzip: 4 });
      await concatParts(parts, [{ key: m.outKey, write: (d) => writer.write(d), bytesPerRow: 2 * rowVoxels }], rowVoxels, rowVoxels * m.shape[0]!, o, output, m.chunks[0]!);
      if (writer.rowsWritten !== m.shape[0]) throw new Error(`merged ${writer.rowsWritten} of ${m.shape[0]} rows`);
      sink.writeSmall(INFO_KEY, [2, m.nLab], 'int8', infoMaskToArray({ ...info, source: 'file' }));
      sink.setAttrs(m.outKey, { ...attrs, lazylabel: JSON.stringify(m.provenance) });
    } finally {
      sink.close();
    }
  });

  const cubeName = m.cubeName ?? path.basename(output).replace(/\.(h5|hdf5|hdf)$/i, '');
  const check = await checkCube(
    { name: cubeName, label: output, labelKey: m.outKey, infoKey: INFO_KEY, ...(m.checkRaw ? { raw: m.checkRaw.file, rawKey: m.checkRaw.key } : {}), ...(m.offset ? { offset: m.offset } : {}) },
    { nLab: m.nLab, slabMB: o.slabMB, onProgress: o.onProgress },
  );
  const ok = check.status !== 'error';
  let updated: ReturnType<typeof manifestWithCube> | undefined;
  if (manifest && ok) {
    updated = manifestWithCube(manifest, m.cubeName!, output, m.outKey, m.manifestRaw ?? undefined, isLazy({ ...info, source: 'file' }));
    await writeTextAtomically(manifest.path, JSON.stringify(updated.json, null, 2) + '\n', { force: true });
  }
  return {
    command: 'convert',
    ok,
    output: { path: output, dataset: m.outKey, infoDataset: INFO_KEY, shape: m.shape, dtype: 'int16', chunks: m.chunks, compression: 'gzip' },
    mode: m.mode,
    inputs: m.inputs,
    ...countFields(m.nLab, m.classNames, info, tally),
    slabs: m.slabs,
    attrsCopied: m.attrsCopied,
    check,
    manifestUpdated: updated !== undefined,
    ...(updated ? { manifest: { path: manifest!.path, cube: m.cubeName!, action: updated.action, lazyLabelsEnabled: updated.lazyLabelsEnabled } } : {}),
  };
}

async function mergePredict(parts: Extract<Input, { kind: 'predict' }>[], o: MergeOptions): Promise<PredictReport> {
  const { H5Sink } = await hdf5();
  const output = o.output!;
  const m = parts[0]!.meta;
  const guard = { force: o.force ?? false, inputs: [...o.inputs] };
  checkOutputPath(output, guard);
  const rowVoxels = m.shape.slice(1).reduce((a, b) => a * b, 1);
  const probBytes = m.probsDtype === 'uint8' ? 1 : 4;
  await writeAtomically(output, guard, async (tmp) => {
    const sink = await H5Sink.create(tmp);
    try {
      const probs = sink.createDataset(m.probsKey, { shape: [...m.shape, m.nLab], dtype: m.probsDtype, chunks: m.probsChunks, gzip: 1 });
      const labels = sink.createDataset(m.labelKey, { shape: m.shape, dtype: 'int16', chunks: m.labChunks, gzip: 1 });
      await concatParts(parts, [
        { key: m.probsKey, write: (d) => probs.write(d), bytesPerRow: rowVoxels * m.nLab * probBytes },
        { key: m.labelKey, write: (d) => labels.write(d), bytesPerRow: rowVoxels * 2 },
      ], rowVoxels, rowVoxels * m.shape[0]!, o, output, m.labChunks[0]!);
      if (probs.rowsWritten !== m.shape[0] || labels.rowsWritten !== m.shape[0]) throw new Error(`merged ${labels.rowsWritten} of ${m.shape[0]} rows`);
      sink.setAttrs(m.probsKey, m.probsAttrs);
      sink.setAttrs(m.labelKey, m.labAttrs);
    } finally {
      sink.close();
    }
  });
  const backends = [...new Set(parts.map((p) => p.meta.backend))];
  return {
    command: 'predict',
    ok: true,
    output,
    backend: backends.join(','),
    shape: m.shape,
    nLab: m.nLab,
    tile: m.tile,
    margin: m.margin,
    tiles: m.tiles,
    probsKey: m.probsKey,
    labelKey: m.labelKey,
    probsDtype: m.probsDtype,
    classCounts: Array.from({ length: m.nLab }, (_, c) => parts.reduce((a, p) => a + (p.meta.classCounts[c] ?? 0), 0)),
    // compute time of all shards together (they ran in parallel: wall time is about the slowest one's)
    seconds: parts.reduce((a, p) => a + p.meta.seconds, 0),
  };
}
