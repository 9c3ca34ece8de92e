/** `convert`: stream masks or class volumes into a -1-ignored int16 label volume with `info`, re-check it, and optionally register it in a manifest (library entry point). */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LazyLabelError, usageError } from '../errors.js';
import { H5Sink, SlabWriter, defaultChunks, type DatasetInfo } from '../io/hdf5.js';
import type { VolumeReader } from '../io/volume.js';
import { checkOutputPath, writeAtomically, writeTextAtomically } from '../io/atomic.js';
import { ZarrSink, checkZarrOutputPath, outputFormatFor, writeZarrAtomically, type LabelSink, type OutputFormat } from '../io/zarrSink.js';
import { boxes, slabs, rowsPerSlab, DEFAULT_SLAB_MB } from '../core/slabs.js';
import { rawSpatialShape } from '../core/checkRules.js';
import { infoMaskToArray, isLazy } from '../core/infoMask.js';
import { classIdOf, parseManifest, type Manifest } from '../core/manifest.js';
import { Codes } from '../core/findings.js';
import {
  ConvertTally, buildInfo, findContradictions,
  type ConvertInfo, type ConvertMode, type ConvertTallyResult,
} from '../core/convert.js';
import { checkCube, type FileReport } from './check.js';
import { requireManifest } from './manifestFile.js';
import { openLabelVolume, slabBytesPerVoxel, type ScanOptions } from './scan.js';
import { noProgress } from './progress.js';
import type { LabelTallyResult } from '../core/labelTally.js';
import { mapPieces, mapPiecesInWorker, ReaderWorker, type MappingPlan, type Piece } from './convertMapping.js';
import { VERSION } from '../version.js';
import { info as infoFinding } from '../core/findings.js';
import { jobId, partPath, PART_KEY, shardRows, shardText, type Shard, type ShardInfo } from '../core/shard.js';

export interface VolumeInput {
  file: string;
  key: string;
}

export interface ConvertOptions extends ScanOptions {
  /** Re-read the whole written output in the re-check (default: its counts come from the values written). */
  verify?: boolean;
  /**
   * Read and map the inputs in a worker thread while this one compresses the output (default, on a machine
   * with 2+ cores: when the inputs are EARLY_READER_MIN_BYTES or more on disk, the worker then starting before
   * they are opened, or the volume has READER_WORKER_MIN_VOXELS or more; its start-up costs ~0.2 s).
   */
  readerWorker?: boolean;
  /** The label file to write (a zarr v2 folder when it ends in `.zarr` or `outFormat` is `zarr`). */
  output: string;
  /** Output container: default zarr for `*.zarr`, else HDF5. */
  outFormat?: OutputFormat;
  /** Label dataset in the output (default `lab`); `info` always goes next to it at the root. */
  outKey?: string;
  mask?: VolumeInput;
  classes?: VolumeInput;
  /** Raw volume whose spatial shape an `allIgnore` output takes. */
  like?: VolumeInput;
  /** Class id or class name painted inside the mask. */
  fillClass?: string | number;
  allIgnore?: boolean;
  /** Dense `classes`: this value means ignore (e.g. 255). */
  ignoreValue?: number;
  /** Dense `classes`: this value means "not annotated" (e.g. 0); combine with `shift`. */
  unlabeledValue?: number;
  /** With `unlabeledValue`: classes above it move down by one. */
  shift?: boolean;
  /** Spatial dimensions of `like` when its rank is ambiguous (default: 3 for 4-D raw, else its rank). */
  ndim?: number;
  nLab?: number;
  /** Manifest giving n_lab and class names; with `cubeName`, the cube entry is added or updated. */
  manifest?: string;
  cubeName?: string;
  /** Raw volume of this cube: shape-checked before writing, passed to the re-check and written to the manifest. */
  raw?: VolumeInput;
  /** Classes annotated wherever they occur (ids or names); default: the classes that occur in the output. */
  labeled?: (string | number)[];
  /** Classes that occur nowhere in this cube (ids or names). */
  notPresent?: (string | number)[];
  /** Write a cube with no labelled voxel and no not-present flag. */
  allowEmpty?: boolean;
  force?: boolean;
  /** Recorded in the output's `lazylabel` attribute. */
  commandLine?: string[];
  /**
   * Convert only this shard's rows along axis 0 (contiguous blocks of output chunk rows, see
   * core/shard.ts) into the part file `OUTPUT.part-i-of-n`; `lazylabel merge` streams the parts into
   * `output` and computes `info` and the global refusals over all of them. The manifest is updated by merge.
   */
  shard?: Shard;
}

/** What a convert part file records (JSON in the `meta` attribute of its PART_KEY dataset). */
export interface ConvertPartMeta {
  kind: 'convert';
  version: string;
  /** Rows [start, end) of axis 0 in this part; total = rows of the whole output. */
  shard: ShardInfo;
  /** The final output the shards were given (-o). */
  output: string;
  outKey: string;
  /** Shape and chunks of the whole output. */
  shape: number[];
  chunks: number[];
  /** How many slabs an unsharded run streams the whole output in (the merged report's `slabs`). */
  slabs: number;
  mode: ConvertMode;
  nLab: number;
  classNames?: string[];
  labeled: number[] | null;
  notPresent: number[];
  allowEmpty: boolean;
  /** What this part's rows mapped to. */
  tally: ConvertTallyResult;
  /** For refusal messages: the volume the labels come from and how to say where. */
  primary: VolumeInput;
  where: string | null;
  inputs: ConvertInputReport[];
  attrsCopied: string[];
  /** The `lazylabel` provenance attribute an unsharded run writes. */
  provenance: Record<string, unknown>;
  /** Manifest update that merge performs (convert --manifest M --cube-name C). */
  manifest: string | null;
  cubeName: string | null;
  /** Raw volume written to the manifest entry, and the one the output is re-checked against (with the existing entry's offset). */
  manifestRaw: VolumeInput | null;
  checkRaw: VolumeInput | null;
  offset: number[] | null;
}

export interface ConvertInputReport {
  role: 'mask' | 'classes' | 'like' | 'raw';
  file: string;
  dataset: string;
  shape: number[];
  dtype: string;
}

export interface ConvertReport {
  command: 'convert';
  /** The written output passed its re-check (no error finding). */
  ok: boolean;
  /** `format` is present only for a zarr output (absent: HDF5, as before). */
  output: { path: string; format?: OutputFormat; dataset: string; infoDataset: string; shape: number[]; dtype: 'int16'; chunks: number[]; compression: string };
  mode: ConvertMode;
  inputs: ConvertInputReport[];
  nLab: number;
  classNames?: string[];
  /** The written `info`, as 0/1 rows. */
  info: { labeled: number[]; notPresent: number[] };
  labeledFrom: 'occurring' | 'flag';
  classCounts: number[];
  ignored: number;
  voxels: number;
  ignoredFraction: number;
  /** How many slabs the volume was streamed in (memory stays bounded by one slab). */
  slabs: number;
  /** Attributes copied from the input datasets onto the output label dataset. */
  attrsCopied: string[];
  /** The re-check of the written output, as `lazylabel check` reports it. */
  check: FileReport;
  manifestUpdated: boolean;
  manifest?: { path: string; cube: string; action: 'added' | 'updated'; lazyLabelsEnabled: boolean };
  /** Present on a shard's report only: the rows of axis 0 its part file holds (`output` is the part). */
  shard?: ShardInfo;
}

export const INFO_KEY = 'info';
/** int16 holds class ids up to 32767. */
const MAX_N_LAB = 32768;

const fmtShape = (s: readonly number[]): string => `(${s.join(', ')})`;
const refText = (v: VolumeInput): string => `${v.file}:${v.key}`;

interface Plan {
  mode: ConvertMode;
  nLab: number;
  classNames?: string[];
  manifest?: Manifest;
  fillClass?: number;
  marker?: number;
  shift: boolean;
  labeled: number[] | null;
  notPresent: number[];
  outKey: string;
  raw?: VolumeInput;
}

/** Which conversion the options ask for; every contradiction between flags is a usage error. */
function resolveMode(o: ConvertOptions): ConvertMode {
  const modes: string[] = [];
  if (o.mask) modes.push('--mask');
  if (o.allIgnore) modes.push('--all-ignore');
  if (o.ignoreValue !== undefined) modes.push('--ignore-value');
  if (o.unlabeledValue !== undefined) modes.push('--unlabeled-value');
  const usage = '--mask M --classes C | --mask M --fill-class K | --like RAW --all-ignore | --classes C --ignore-value V | --classes C --unlabeled-value V [--shift]';
  if (modes.length === 0) {
    throw usageError(o.classes ? '--classes alone does not say what to ignore' : 'nothing to convert', `choose one of: ${usage}`);
  }
  if (modes.length > 1) throw usageError(`${modes.join(' and ')} are different conversions; choose one`, usage);
  if (o.shift && o.unlabeledValue === undefined) throw usageError('--shift only goes with --unlabeled-value', 'e.g. --unlabeled-value 0 --shift maps 0 to -1 and 1..n to 0..n-1');
  if (o.like && !o.allIgnore) throw usageError('--like only goes with --all-ignore', 'give --raw to check the output against a raw volume');
  if (o.ndim !== undefined && !o.like) throw usageError('--ndim only goes with --like');
  if (o.ndim !== undefined && o.ndim !== 2 && o.ndim !== 3) throw usageError(`--ndim must be 2 or 3, got ${o.ndim}`);
  if (o.fillClass !== undefined && !o.mask) throw usageError('--fill-class needs --mask');
  if (o.mask) {
    if (o.classes && o.fillClass !== undefined) throw usageError('give --classes or --fill-class with --mask, not both');
    if (!o.classes && o.fillClass === undefined) throw usageError('--mask needs --classes C or --fill-class K', 'the mask says where labels are, not which class');
    return o.classes ? 'mask-classes' : 'mask-fill';
  }
  if (o.allIgnore) {
    if (o.classes) throw usageError('--all-ignore writes no classes: drop --classes');
    if (!o.like) throw usageError('--all-ignore needs --like RAW', 'the output takes the spatial shape of the raw volume');
    return 'all-ignore';
  }
  if (!o.classes) throw usageError(`${modes[0]} needs --classes C`, 'the dense class volume to convert');
  if (o.ignoreValue !== undefined && !Number.isFinite(o.ignoreValue)) throw usageError(`--ignore-value must be a number, got ${o.ignoreValue}`);
  if (o.unlabeledValue !== undefined && !Number.isFinite(o.unlabeledValue)) throw usageError(`--unlabeled-value must be a number, got ${o.unlabeledValue}`);
  return o.ignoreValue !== undefined ? 'ignore-value' : 'unlabeled-value';
}

function classIds(tokens: readonly (string | number)[], flag: string, nLab: number, classNames?: string[]): number[] {
  const ids: number[] = [];
  for (const token of tokens) {
    const id = classIdOf(String(token).trim(), nLab, classNames);
    if (id === null) {
      const names = classNames?.length ? ` (names: ${classNames.join(', ')})` : '';
      throw usageError(`${flag} ${token}: no such class; classes are 0..${nLab - 1}${names}`);
    }
    if (!ids.includes(id)) ids.push(id);
  }
  return ids.sort((a, b) => a - b);
}

/** Everything that can be decided from the flags and the manifest alone, before any volume is opened. */
function makePlan(o: ConvertOptions): Plan {
  const mode = resolveMode(o);
  const outKey = (o.outKey ?? 'lab').replace(/^\/+/, '');
  if (!outKey) throw usageError('--out-key must name a dataset');
  if (outKey === INFO_KEY) throw usageError(`--out-key cannot be '${INFO_KEY}': that dataset holds the info mask`);
  if (o.cubeName !== undefined && !o.manifest) throw usageError('--cube-name needs --manifest', 'it names the cube entry to add or update');
  if (o.cubeName !== undefined && !o.cubeName.trim()) throw usageError('--cube-name must not be empty');
  const manifest = o.manifest ? requireManifest(o.manifest) : undefined;
  let nLab = o.nLab;
  if (manifest) {
    if (nLab !== undefined && nLab !== manifest.nLab) throw usageError(`--n-lab ${nLab} contradicts n_lab ${manifest.nLab} in ${o.manifest}`, 'drop --n-lab: the manifest gives it');
    nLab = manifest.nLab;
  }
  if (nLab === undefined) throw usageError('--n-lab is required (or --manifest dataset.json giving n_lab)', 'e.g. --n-lab 3 for classes 0, 1, 2');
  if (!Number.isInteger(nLab) || nLab < 1 || nLab > MAX_N_LAB) throw usageError(`--n-lab must be an integer in 1..${MAX_N_LAB}, got ${nLab}`);
  const classNames = manifest?.classNames;
  let fillClass: number | undefined;
  if (o.fillClass !== undefined) {
    const id = classIdOf(String(o.fillClass).trim(), nLab, classNames);
    if (id === null) throw usageError(`--fill-class ${o.fillClass}: no such class; classes are 0..${nLab - 1}${classNames?.length ? ` (names: ${classNames.join(', ')})` : ''}`);
    fillClass = id;
  }
  return {
    mode,
    nLab,
    ...(classNames ? { classNames } : {}),
    ...(manifest ? { manifest } : {}),
    ...(fillClass !== undefined ? { fillClass } : {}),
    ...(o.ignoreValue !== undefined ? { marker: o.ignoreValue } : o.unlabeledValue !== undefined ? { marker: o.unlabeledValue } : {}),
    shift: o.shift ?? false,
    labeled: o.labeled ? classIds(o.labeled, '--labeled', nLab, classNames) : null,
    notPresent: classIds(o.notPresent ?? [], '--not-present', nLab, classNames),
    outKey,
    // an all-ignore cube's raw is the volume it was shaped like
    ...(o.raw ? { raw: o.raw } : mode === 'all-ignore' && o.like ? { raw: o.like } : {}),
  };
}

/** The manifest JSON with this cube's entry added or replaced; paths relative to the manifest folder. */
export function manifestWithCube(m: Manifest, cubeName: string, output: string, outKey: string, raw: VolumeInput | undefined, enableLazy: boolean): { json: Record<string, unknown>; action: 'added' | 'updated'; lazyLabelsEnabled: boolean } {
  const rel = (p: string): string => path.relative(path.dirname(m.path), path.resolve(p)) || '.';
  const json = structuredClone(m.json);
  const cubes = json.cubes as Record<string, unknown>[];
  const existing = m.cubes.find((c) => c.name === cubeName);
  const entry: Record<string, unknown> = existing ? { ...cubes[existing.index] } : { name: cubeName };
  entry.label = rel(output);
  // a stale key from the old entry would point training at the wrong dataset
  if (outKey === 'lab') delete entry.label_key;
  else entry.label_key = outKey;
  delete entry.info_key;
  if (raw) {
    entry.raw = rel(raw.file);
    if (raw.key === 'raw') delete entry.raw_key;
    else entry.raw_key = raw.key;
  }
  if (existing) cubes[existing.index] = entry;
  else cubes.push(entry);
  const lazyLabelsEnabled = enableLazy && json.lazy_labels !== true;
  if (lazyLabelsEnabled) json.lazy_labels = true;
  return { json, action: existing ? 'updated' : 'added', lazyLabelsEnabled };
}

/** Refuse a manifest update that would make the manifest invalid (e.g. the label file already listed under another name). */
export function assertManifestUpdatable(m: Manifest, json: Record<string, unknown>): void {
  const { manifest, findings } = parseManifest(json, m.path);
  const errors = findings.filter((f) => f.severity === 'error');
  if (!manifest || errors.length) {
    throw new LazyLabelError(`adding this cube would make the manifest invalid: ${errors.map((f) => f.message).join('; ')}`, {
      code: Codes.manifestSchema, file: m.path, hint: 'pick another --cube-name or output, or edit the manifest',
    });
  }
}

interface OpenInput {
  ref: VolumeInput;
  role: ConvertInputReport['role'];
  /** Any format openVolume reads: HDF5, zarr, N5, TIFF stack, PNG folder. */
  vol: VolumeReader;
  meta: Pick<DatasetInfo, 'shape' | 'dtype' | 'typeName'>;
}

function describeInput(i: OpenInput): ConvertInputReport {
  return { role: i.role, file: i.ref.file, dataset: i.ref.key, shape: i.meta.shape, dtype: i.meta.typeName };
}

/** Volumes from this size on use the reader worker by default (below it, its start-up outweighs the overlap). */
export const READER_WORKER_MIN_VOXELS = 16 << 20;

/**
 * Inputs of at least this many bytes on disk start the reader worker before they are opened. (Smaller ones may
 * still hold a big, well compressed volume: they start it once their voxel count is known.)
 */
export const EARLY_READER_MIN_BYTES = 1 << 20;

/** Bytes on disk of the mask and classes files (0 for what cannot be stat'ed as a file, e.g. a zarr folder). */
function inputBytesOnDisk(o: Pick<ConvertOptions, 'mask' | 'classes'>): number {
  let total = 0;
  for (const file of new Set([o.mask?.file, o.classes?.file])) {
    if (file === undefined) continue;
    try {
      const st = fs.statSync(file);
      if (st.isFile()) total += st.size;
    } catch {
      // a missing input is reported when it is opened
    }
  }
  return total;
}

/** Largest piece convert maps and writes at a time, in MiB (less when --slab-mb says less). */
export const PIECE_MB = 16;

/** Largest output chunk (int16) taken over from a chunked input; bigger input chunks fall back to ~1 MiB chunks. */
const MAX_INHERITED_CHUNK_BYTES = 4 << 20;

/**
 * Output chunks and the processing unit. Row slabs that cut the inputs' compressed chunks make HDF5 inflate
 * each chunk several times (its chunk cache is small and h5wasm cannot enlarge it). So the output takes the
 * chunk shape of a chunked input (when it is a sensible size), and with HDF5 output the volume is processed
 * in boxes of whole chunks (`unit`: per axis, the least common multiple of every chunk shape involved), which
 * keeps memory within the budget whatever the volume's size and inflates/deflates each chunk once.
 * Otherwise (contiguous inputs, zarr output, or a unit over the budget): chunks no thicker than a slab, and
 * row slabs.
 */
function outputLayout(shape: number[], inputChunks: (number[] | null)[], bytesPerVoxel: number, slabMB: number, outFormat: OutputFormat): { chunks: number[]; unit: number[] | null } {
  const chunked = inputChunks.filter((c): c is number[] => c !== null && c.length === shape.length);
  const inherited = chunked.length && shape.length ? chunked[0]!.map((c, i) => Math.min(c, shape[i]!)) : null;
  const inheritedBytes = inherited ? inherited.reduce((a, b) => a * b, 2) : 0;
  const chunks = inherited && inheritedBytes <= MAX_INHERITED_CHUNK_BYTES && inheritedBytes >= 64 << 10 ? inherited : defaultChunks(shape, 2);
  if (outFormat === 'hdf5' && chunked.length) {
    const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
    const unit = chunks.map((c, i) => chunked.reduce((u, ch) => {
      const k = Math.min(ch[i]!, shape[i]!);
      return Math.min(shape[i]!, (u / gcd(u, k)) * k);
    }, c));
    // a unit over the budget (odd chunk shapes whose multiple is huge) falls back to row slabs
    if (unit.reduce((a, b) => a * b, bytesPerVoxel) <= slabMB * 1024 * 1024) return { chunks, unit };
  }
  // row slabs: output chunks never span more rows than a slab, so each slab writes whole chunks
  chunks[0] = Math.min(chunks[0]!, rowsPerSlab(shape, bytesPerVoxel, slabMB));
  return { chunks, unit: null };
}

/** Open each input volume (mask and classes often share one file; each is its own reader). */
async function openAll(refs: { ref: VolumeInput; role: ConvertInputReport['role'] }[], sources: Map<string, VolumeReader>): Promise<OpenInput[]> {
  const out: OpenInput[] = [];
  for (const { ref, role } of refs) {
    const id = `${path.resolve(ref.file)}:${ref.key}`;
    let vol = sources.get(id);
    if (!vol) {
      vol = await openLabelVolume(ref.file, ref.key);
      sources.set(id, vol);
    }
    const meta = { shape: vol.shape, dtype: vol.dtype, typeName: vol.typeName };
    if (!meta.dtype) {
      throw new LazyLabelError(`the ${role} volume is stored as ${meta.typeName}`, { code: Codes.labelDtypeUnsupported, file: ref.file, dataset: ref.key, hint: 'masks and class volumes must be integer, boolean or float arrays' });
    }
    out.push({ ref, role, vol, meta });
  }
  return out;
}

/** Output shape from the inputs; shape problems are data errors naming both volumes. */
function outputShape(mode: ConvertMode, inputs: Map<string, OpenInput>, ndim: number | undefined): number[] {
  if (mode === 'all-ignore') {
    const like = inputs.get('like')!;
    const rank = like.meta.shape.length;
    const want = ndim ?? (rank === 4 ? 3 : rank);
    const spatial = rawSpatialShape(like.meta.shape, want);
    if (!spatial || (spatial.length !== 2 && spatial.length !== 3)) {
      throw new LazyLabelError(`raw volume has shape ${fmtShape(like.meta.shape)}, which is neither (x, y[, z]) nor channels-first (ch, x, y[, z])`, {
        code: Codes.rawNdim, file: like.ref.file, dataset: like.ref.key, hint: '--like needs a 2-D/3-D raw volume, or 4-D with channels first',
      });
    }
    return spatial;
  }
  const first = inputs.get('mask') ?? inputs.get('classes')!;
  const shape = first.meta.shape;
  if (shape.length !== 2 && shape.length !== 3) {
    throw new LazyLabelError(`the ${first.role} volume has shape ${fmtShape(shape)}; expected a 2-D (x, y) or 3-D (x, y, z) volume`, { code: Codes.labelNdim, file: first.ref.file, dataset: first.ref.key });
  }
  const classes = inputs.get('classes');
  if (mode === 'mask-classes' && classes) {
    const other = classes.meta.shape;
    if (other.length !== shape.length || other.some((n, i) => n !== shape[i])) {
      throw new LazyLabelError(`mask ${refText(first.ref)} has shape ${fmtShape(shape)} but classes ${refText(classes.ref)} has shape ${fmtShape(other)}`, {
        code: 'shape-mismatch', file: classes.ref.file, dataset: classes.ref.key, hint: 'mask and classes must cover the same voxels',
      });
    }
  }
  if (shape.some((n) => n === 0)) {
    throw new LazyLabelError(`the ${first.role} volume ${fmtShape(shape)} has no voxels`, { code: 'empty-volume', file: first.ref.file, dataset: first.ref.key });
  }
  return shape;
}

/** The raw volume of the cube must fit the output before anything is written (same rule as `check`). */
function assertRawFits(raw: OpenInput, shape: number[], offset: number[] | undefined): void {
  const spatial = rawSpatialShape(raw.meta.shape, shape.length);
  const fail = (message: string): never => {
    throw new LazyLabelError(message, { code: Codes.rawShapeMismatch, file: raw.ref.file, dataset: raw.ref.key, hint: 'pass the raw volume these labels belong to' });
  };
  if (!spatial) return fail(`raw data has shape ${fmtShape(raw.meta.shape)}, which is neither ${shape.length}-D like the output ${fmtShape(shape)} nor channels-first (ch, ...)`);
  if (offset && offset.length === shape.length) {
    if (!shape.every((n, i) => offset[i]! >= 0 && offset[i]! + n <= spatial[i]!)) fail(`output ${fmtShape(shape)} at the manifest offset [${offset.join(', ')}] does not fit inside raw ${fmtShape(spatial)}`);
  } else if (spatial.length !== shape.length || spatial.some((n, i) => n !== shape[i])) {
    fail(`raw spatial shape ${fmtShape(spatial)} differs from the output shape ${fmtShape(shape)}`);
  }
}

/** Attributes of the input datasets (e.g. resolution, offset) for the output; the class volume wins over the mask, the mask over the raw. */
function inheritedAttrs(inputs: Map<string, OpenInput>): Record<string, unknown> {
  const attrs: Record<string, unknown> = {};
  for (const role of ['like', 'mask', 'classes'] as const) {
    const i = inputs.get(role);
    if (i) Object.assign(attrs, i.vol.attrs());
  }
  delete attrs.lazylabel;
  return attrs;
}

/** Convert, refusing contradictions before anything appears at the output path. */
export async function convert(o: ConvertOptions): Promise<ConvertReport> {
  const plan = makePlan(o);
  const existingCube = plan.manifest && o.cubeName !== undefined ? plan.manifest.cubes.find((c) => c.name === o.cubeName) : undefined;
  // an updated cube keeps its raw: check the new labels against it too
  const raw = plan.raw ?? (existingCube?.raw ? { file: existingCube.raw, key: existingCube.rawKey } : undefined);
  const guard = {
    force: o.force ?? false,
    inputs: [o.mask?.file, o.classes?.file, o.like?.file, raw?.file, o.manifest].filter((f): f is string => f !== undefined),
  };
  // a shard writes its own part next to the output; merge writes the output
  const shard = o.shard;
  const target = shard ? partPath(o.output, shard) : o.output;
  if (shard && plan.outKey === PART_KEY) throw usageError(`--out-key cannot be '${PART_KEY}' with --shard: part files keep their metadata there`);
  const outFormat = outputFormatFor(o.output, o.outFormat);
  if (shard && outFormat === 'zarr') throw usageError('--shard writes HDF5 part files that lazylabel merge joins into an HDF5 output', 'shard to an .h5 output, or convert to zarr without --shard');
  // cheap usage checks on the output first, so a wrong -o fails before any volume is read
  if (outFormat === 'zarr') checkZarrOutputPath(target, guard);
  else checkOutputPath(target, guard);
  let updatedManifest: ReturnType<typeof manifestWithCube> | undefined;
  if (plan.manifest && o.cubeName !== undefined) {
    assertManifestUpdatable(plan.manifest, manifestWithCube(plan.manifest, o.cubeName, o.output, plan.outKey, plan.raw, true).json);
  }

  // The reader worker (see below) takes ~0.2 s to start (a Node isolate, its modules, its own HDF5): when the
  // inputs are big on disk, start it now, so that this overlaps opening the inputs here. Once started it is
  // used whatever the volume's size (measured: as fast as no worker on a 256x256x128 volume, where stopping
  // it unused cost ~30 ms).
  const mayUseWorker = plan.mode !== 'all-ignore' && (o.readerWorker ?? os.availableParallelism() > 1);
  let reader: ReaderWorker | null = mayUseWorker && (o.readerWorker === true || inputBytesOnDisk(o) >= EARLY_READER_MIN_BYTES) ? await ReaderWorker.start() : null;
  const sources = new Map<string, VolumeReader>();
  let written: { shape: number[]; chunks: number[]; slabCount: number; tally: ConvertTallyResult; info: ConvertInfo; attrsCopied: string[]; inputs: ConvertInputReport[]; partShape: number[]; shardInfo?: ShardInfo };
  try {
    const wanted: { ref: VolumeInput; role: ConvertInputReport['role'] }[] = [];
    if (o.mask) wanted.push({ ref: o.mask, role: 'mask' });
    if (o.classes) wanted.push({ ref: o.classes, role: 'classes' });
    if (plan.mode === 'all-ignore') wanted.push({ ref: o.like!, role: 'like' });
    const opened = await openAll(wanted, sources);
    const inputs = new Map(opened.map((i) => [i.role, i]));
    const shape = outputShape(plan.mode, inputs, o.ndim);
    let rawInput: OpenInput | undefined;
    if (raw) {
      rawInput = (await openAll([{ ref: raw, role: 'raw' }], sources))[0]!;
      assertRawFits(rawInput, shape, existingCube?.offset);
    }
    const attrs = inheritedAttrs(inputs);

    // bytes held per voxel while a slab is in flight: each read input, the int16 output and its copy into the wasm heap
    const readBytes = (['mask', 'classes'] as const).reduce((sum, role) => sum + slabBytesPerVoxel(inputs.get(role)?.meta.dtype?.bytes ?? 0), 0);
    const bytesPerVoxel = readBytes + 2 * 2;
    // pieces of at most PIECE_MB: the reader worker maps the next piece while this thread compresses one, and
    // filling and draining that pipeline costs about one piece each (64 -> 16 MiB: ~18% faster at 512x512x256)
    const slabMB = Math.min(o.slabMB ?? DEFAULT_SLAB_MB, PIECE_MB);
    // a reader worker maps the next piece while this thread compresses the current one (+2 bytes per voxel)
    const useWorker = mayUseWorker && (o.readerWorker ?? (reader !== null || shape.reduce((a, b) => a * b, 1) >= READER_WORKER_MIN_VOXELS));
    if (useWorker) reader ??= await ReaderWorker.start();
    const pieceBytes = bytesPerVoxel + (useWorker ? 2 : 0);
    const readInputs = (['mask', 'classes', 'like'] as const).map((r) => inputs.get(r)).filter((i): i is OpenInput => i !== undefined && i.role !== 'like');
    const layout = outputLayout(shape, readInputs.map((i) => (i.meta.shape.length === shape.length ? i.vol.chunks ?? null : null)), pieceBytes, slabMB, outFormat);
    const chunks = layout.chunks;
    const onProgress = o.onProgress ?? noProgress;
    const mask = inputs.get('mask');
    const classes = inputs.get('classes');
    const primary = classes ?? mask ?? inputs.get('like')!;
    const className = (c: number): string => (plan.classNames?.[c] ? `${c} (${plan.classNames[c]})` : String(c));
    // the rows this run writes: all of them, or the shard's block of whole chunk rows
    const rows = shard ? shardRows(shape[0]!, shard, chunks[0]!) : { start: 0, end: shape[0]! };
    const partShape = [rows.end - rows.start, ...shape.slice(1)];
    const partTotal = partShape.reduce((a, b) => a * b, 1);

    written = await (outFormat === 'zarr' ? writeZarrAtomically : writeAtomically)(target, guard, async (tmp) => {
      const sink: LabelSink = outFormat === 'zarr' ? ZarrSink.create(tmp) : await H5Sink.create(tmp);
      try {
        // an empty shard (more shards than chunk rows) writes no label dataset, only its metadata
        const writer = partShape[0]! > 0 ? sink.createDataset(plan.outKey, { shape: partShape, dtype: 'int16', chunks, gzip: 4 }) : null;
        const tally = new ConvertTally(plan.nLab);
        let slabCount = 0;
        // the pieces this run maps and writes, in input coordinates: boxes of whole chunks, or row slabs
        const boxMode = layout.unit !== null && writer instanceof SlabWriter;
        const pieces: Piece[] = boxMode
          ? [...boxes(partShape, pieceBytes, slabMB, layout.unit)].map((b) => ({ starts: [rows.start + b.starts[0]!, ...b.starts.slice(1)], ends: [rows.start + b.ends[0]!, ...b.ends.slice(1)] }))
          : [...slabs(partShape, pieceBytes, slabMB, chunks[0])].map((sl) => ({ starts: [rows.start + sl.start, ...shape.slice(1).map(() => 0)], ends: [rows.start + sl.end, ...shape.slice(1)] }));
        const mappingPlan: MappingPlan = { mode: plan.mode, nLab: plan.nLab, fillClass: plan.fillClass, marker: plan.marker, shift: plan.shift };
        const mapped = useWorker
          ? mapPiecesInWorker(mappingPlan, { ...(o.mask ? { mask: o.mask } : {}), ...(o.classes ? { classes: o.classes } : {}) }, { mask: mask?.vol, classes: classes?.vol }, pieces, tally, reader!)
          : mapPieces(mappingPlan, { mask: mask?.vol, classes: classes?.vol }, pieces, tally);
        let done = 0;
        let index = 0;
        for await (const labels of mapped) {
          const piece = pieces[index++]!;
          if (boxMode) (writer as SlabWriter).writeBox([piece.starts[0]! - rows.start, ...piece.starts.slice(1)], [piece.ends[0]! - rows.start, ...piece.ends.slice(1)], labels);
          else await writer!.write(labels);
          done += labels.length;
          onProgress({ label: target, done, total: partTotal });
        }
        slabCount = pieces.length;
        const result = tally.result();
        const info = buildInfo(plan.nLab, result.classCounts, plan.labeled, plan.notPresent);
        const where = plan.mode === 'mask-classes' ? `inside the mask (${refText(classes!.ref)})` : plan.mode === 'all-ignore' ? undefined : `of ${refText(primary.ref)}`;
        // a shard cannot know whether the whole output is empty: merge refuses that
        const problems = findContradictions(result, info, { nLab: plan.nLab, allowEmpty: shard ? true : (o.allowEmpty ?? false), className, ...(where ? { where } : {}) });
        if (problems.length) {
          // thrown inside the atomic write: the temporary is removed and nothing appears at the output
          throw new LazyLabelError(`refusing to write ${target}: ${problems.map((p) => p.message).join('; ')}`, {
            code: problems[0]!.code, file: primary.ref.file, dataset: primary.ref.key,
          });
        }
        const provenance = {
          command: o.commandLine ?? ['lazylabel', 'convert'],
          version: VERSION,
          mode: plan.mode,
          inputs: opened.concat(rawInput ? [rawInput] : []).map((i) => ({ role: i.role, file: path.resolve(i.ref.file), dataset: i.ref.key })),
        };
        const inputReports = opened.concat(rawInput ? [rawInput] : []).map(describeInput);
        if (writer) {
          sink.writeSmall(INFO_KEY, [2, plan.nLab], 'int8', infoMaskToArray({ ...info, source: 'file' }));
          sink.setAttrs(plan.outKey, { ...attrs, lazylabel: JSON.stringify(provenance) });
        }
        let shardInfo: ShardInfo | undefined;
        if (shard) {
          shardInfo = {
            ...shard, start: rows.start, end: rows.end, total: shape[0]!,
            job: jobId({
              command: 'convert', mode: plan.mode, inputs: inputReports.map((i) => [i.role, path.resolve(i.file), i.dataset, i.shape, i.dtype]),
              shape, chunks, outKey: plan.outKey, nLab: plan.nLab, labeled: plan.labeled, notPresent: plan.notPresent, fillClass: plan.fillClass ?? null,
              marker: plan.marker ?? null, shift: plan.shift, allowEmpty: o.allowEmpty ?? false, output: path.resolve(o.output),
              manifest: plan.manifest?.path ?? null, cubeName: o.cubeName ?? null,
            }),
          };
          const meta: ConvertPartMeta = {
            kind: 'convert', version: VERSION, shard: shardInfo, output: o.output, outKey: plan.outKey, shape, chunks,
            slabs: [...slabs(shape, pieceBytes, slabMB, chunks[0])].length,
            mode: plan.mode, nLab: plan.nLab, ...(plan.classNames ? { classNames: plan.classNames } : {}),
            labeled: plan.labeled, notPresent: plan.notPresent, allowEmpty: o.allowEmpty ?? false, tally: result,
            primary: primary.ref, where: where ?? null, inputs: inputReports, attrsCopied: Object.keys(attrs), provenance,
            manifest: plan.manifest?.path ?? null, cubeName: o.cubeName ?? null,
            manifestRaw: plan.raw ?? null, checkRaw: raw ?? null, offset: existingCube?.offset ?? null,
          };
          sink.writeSmall(PART_KEY, [1], 'uint8', Uint8Array.of(1));
          sink.setAttrs(PART_KEY, { meta: JSON.stringify(meta) });
        }
        return { shape, chunks, slabCount, tally: result, info, attrsCopied: Object.keys(attrs), inputs: inputReports, partShape, ...(shardInfo ? { shardInfo } : {}) };
      } finally {
        sink.close();
      }
    });
  } finally {
    for (const src of sources.values()) src.close();
    // mapPiecesInWorker stops the worker it used; this one stops it when the run failed before that
    await reader?.stop();
  }

  if (shard) return shardReport(o, plan, target, written);
  const cubeName = o.cubeName ?? path.basename(o.output).replace(/\.(h5|hdf5|hdf|zarr)$/i, '');
  const check = await checkCube(
    { name: cubeName, label: o.output, labelKey: plan.outKey, infoKey: INFO_KEY, ...(raw ? { raw: raw.file, rawKey: raw.key } : {}), ...(existingCube?.offset ? { offset: existingCube.offset } : {}) },
    { nLab: plan.nLab, slabMB: o.slabMB, onProgress: o.onProgress, ...writtenTally(written.tally, o.verify) },
  );
  const ok = check.status !== 'error';
  const { tally, info } = written;
  if (plan.manifest && o.cubeName !== undefined && ok) {
    const lazy = isLazy({ ...info, source: 'file' });
    updatedManifest = manifestWithCube(plan.manifest, o.cubeName, o.output, plan.outKey, plan.raw, lazy);
    await writeTextAtomically(plan.manifest.path, JSON.stringify(updatedManifest.json, null, 2) + '\n', { force: true });
  }
  return {
    command: 'convert',
    ok,
    output: { path: o.output, ...(outFormat === 'zarr' ? { format: outFormat } : {}), dataset: plan.outKey, infoDataset: INFO_KEY, shape: written.shape, dtype: 'int16', chunks: written.chunks, compression: outFormat === 'zarr' ? 'zlib' : 'gzip' },
    mode: plan.mode,
    inputs: written.inputs,
    ...countFields(plan.nLab, plan.classNames, info, tally),
    slabs: written.slabCount,
    attrsCopied: written.attrsCopied,
    check,
    manifestUpdated: updatedManifest !== undefined,
    ...(updatedManifest ? { manifest: { path: plan.manifest!.path, cube: o.cubeName!, action: updatedManifest.action, lazyLabelsEnabled: updatedManifest.lazyLabelsEnabled } } : {}),
  };
}

/**
 * The re-check's counts without reading the output again: ConvertTally counted every value handed to the
 * writer, which stores only -1..nLab-1 (a run with other values is refused before anything is kept). The
 * re-check still re-opens the output for its shape, dtype, `info` and raw pairing. `verify` re-reads it all.
 */
function writtenTally(tally: ConvertTallyResult, verify: boolean | undefined): { knownTally?: LabelTallyResult } {
  if (verify || tally.outOfRangeVoxels > 0 || tally.nonIntegral > 0) return {};
  return {
    knownTally: {
      voxels: tally.voxels, classCounts: [...tally.classCounts], ignored: tally.ignored,
      outOfRange: new Map(), outOfRangeVoxels: 0, nonIntegral: 0, nonIntegralExamples: [],
    },
  };
}

/** The report fields that describe what was written: classes, `info` and counts (shared by convert, its shards and merge). */
export function countFields(nLab: number, classNames: string[] | undefined, info: ConvertInfo, tally: ConvertTallyResult): Pick<ConvertReport, 'nLab' | 'classNames' | 'info' | 'labeledFrom' | 'classCounts' | 'ignored' | 'voxels' | 'ignoredFraction'> {
  return {
    nLab,
    ...(classNames ? { classNames } : {}),
    info: { labeled: info.labeled.map(Number), notPresent: info.notPresent.map(Number) },
    labeledFrom: info.labeledFrom,
    classCounts: tally.classCounts,
    ignored: tally.ignored,
    voxels: tally.voxels,
    ignoredFraction: tally.voxels > 0 ? tally.ignored / tally.voxels : 0,
  };
}

/** The report of one shard: its part file, re-checked on its own (no raw: the part is a block of rows); no manifest update. */
async function shardReport(
  o: ConvertOptions, plan: Plan, target: string,
  written: { shape: number[]; chunks: number[]; slabCount: number; tally: ConvertTallyResult; info: ConvertInfo; attrsCopied: string[]; inputs: ConvertInputReport[]; partShape: number[]; shardInfo?: ShardInfo },
): Promise<ConvertReport> {
  const sh = written.shardInfo!;
  const check: FileReport = written.partShape[0]! > 0
    ? await checkCube({ name: path.basename(target), label: target, labelKey: plan.outKey, infoKey: INFO_KEY }, { nLab: plan.nLab, slabMB: o.slabMB, onProgress: o.onProgress, ...writtenTally(written.tally, o.verify) })
    : {
      name: path.basename(target), path: target, dataset: plan.outKey, status: 'ok', stats: null,
      findings: [infoFinding('shard-empty', `shard ${shardText(sh)} owns no rows of the ${sh.total}-row output (more shards than chunk rows): its part holds only metadata`)],
    };
  const { tally, info } = written;
  return {
    command: 'convert',
    ok: check.status !== 'error',
    output: { path: target, dataset: plan.outKey, infoDataset: INFO_KEY, shape: written.partShape, dtype: 'int16', chunks: written.chunks, compression: 'gzip' },
    mode: plan.mode,
    inputs: written.inputs,
    ...countFields(plan.nLab, plan.classNames, info, tally),
    slabs: written.slabCount,
    attrsCopied: written.attrsCopied,
    check,
    manifestUpdated: false,
    shard: sh,
  };
}
