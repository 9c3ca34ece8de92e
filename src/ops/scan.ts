/** Gather the facts about one label cube from disk: label metadata, a slab-by-slab tally, `info`, raw shape. */
import os from 'node:os';
import { isLazyLabelError, LazyLabelError } from '../errors.js';
import type { H5Source } from '../io/hdf5.js';
import { openVolume, type VolumeReader } from '../io/volume.js';
import { DirectReadError } from '../io/h5chunks.js';
import { DirectH5File } from '../io/h5direct.js';
import type { NumericArray } from '../io/dtype.js';
import type { CubeFacts } from '../core/checkRules.js';
import { LabelTally, type LabelTallyResult } from '../core/labelTally.js';
import type { RawInfo } from '../core/infoMask.js';
import { boxes, DEFAULT_SLAB_MB, slabs } from '../core/slabs.js';
import { noProgress, type ProgressFn } from './progress.js';

export interface CubeRef {
  name?: string;
  label: string;
  labelKey: string;
  infoKey: string;
  raw?: string;
  rawKey?: string;
  offset?: number[];
}

export interface ScanOptions {
  slabMB?: number;
  onProgress?: ProgressFn;
  /**
   * The label counts, when the caller already has them exactly (convert counts every value it writes): the
   * volume is then not read again; its metadata, `info` and raw are still read and every rule still applies.
   */
  knownTally?: LabelTallyResult;
  /**
   * Count an HDF5 volume with a worker thread sharing the boxes or chunks (default: volumes of TALLY_WORKER_MIN_VOXELS
   * or more on a machine with 2+ cores; the worker's start-up, ~0.3 s, would outweigh it on smaller ones).
   */
  tallyWorker?: boolean;
  /**
   * Read files in h5py's and h5wasm's default format without libhdf5 (io/h5direct.ts; default true). false:
   * everything through libhdf5 (for comparisons).
   */
  directRead?: boolean;
}

/** Volumes from this size on are counted by two threads by default. */
export const TALLY_WORKER_MIN_VOXELS = 256 << 20;

/**
 * Boxes read as heap views are kept this small even under a larger --slab-mb: counting a box that was just
 * decoded hits the CPU cache, and the wasm heap stays small, so fewer fresh pages are touched (each first touch is a
 * page fault; ~10 us on the bench VM). Measured on 128 MiB volumes: 64 -> 8 MiB was 10-25% faster, 8 -> 2 MiB
 * another 5-9% (contiguous / chunked), 1 MiB no better.
 */
const VIEW_BOX_MB = 2;

/** Bytes held per voxel while a slab is in flight: the wasm heap copy, the JS copy, and float64 widening of 64-bit ints. */
export function slabBytesPerVoxel(bytes: number): number {
  return 2 * bytes + (bytes === 8 ? 8 : 0);
}

/** Stream a label volume through a LabelTally, one slab at a time (any format: HDF5, zarr, N5, TIFF, PNG). */
export async function tallyLabels(vol: VolumeReader, nLab: number, opts: ScanOptions = {}): Promise<ReturnType<LabelTally['result']>> {
  if (!vol.dtype) throw new Error(`cannot tally ${vol.typeName}`);
  const tally = new LabelTally(nLab);
  const isFloat = vol.dtype.kind === 'float';
  const onProgress = opts.onProgress ?? noProgress;
  const total = vol.shape.reduce((a, b) => a * b, 1);
  const slabMB = opts.slabMB ?? DEFAULT_SLAB_MB;
  if (vol.readBoxView && total > 0 && vol.readBoxView(vol.shape.map(() => 0), vol.shape.map(() => 0)) !== null) {
    // HDF5: count views of one reused heap buffer, in boxes of whole chunks (each chunk inflated once);
    // a view holds only the heap copy of the voxels
    const all = [...boxes(vol.shape, vol.dtype.bytes, Math.min(slabMB, VIEW_BOX_MB), vol.chunks)];
    const useWorker = opts.tallyWorker ?? (total >= TALLY_WORKER_MIN_VOXELS && os.availableParallelism() > 1);
    if (useWorker && vol.format === 'hdf5') {
      // loaded here: it brings worker_threads and libhdf5's loader, which a command that never gets here need not load
      const { tallyWithWorker } = await import('./tallyWorkerPool.js');
      const mine = { count: all.length, isFloat, read: (i: number) => vol.readBoxView!(all[i]!.starts, all[i]!.ends)! };
      return tallyWithWorker({ kind: 'boxes', file: vol.file, key: vol.key, isFloat, boxes: all.map(({ starts, ends }) => ({ starts, ends })) }, mine, nLab, total, onProgress);
    }
    let done = 0;
    for (const box of all) {
      const view = vol.readBoxView(box.starts, box.ends)!;
      tally.add(view, isFloat);
      done += view.length;
      onProgress({ label: vol.file, done, total });
    }
    return tally.result();
  }
  const rowVoxels = vol.shape.slice(1).reduce((a, b) => a * b, 1);
  for (const slab of slabs(vol.shape, slabBytesPerVoxel(vol.dtype.bytes), slabMB, vol.chunks?.[0] ?? 1)) {
    tally.add(await vol.readSlab(slab.start, slab.end), isFloat);
    onProgress({ label: vol.file, done: slab.end * rowVoxels, total });
  }
  return tally.result();
}

/** Count every voxel of a volume given in units of any order; null when one cannot be read outside libhdf5 or they do not add up. */
function tallyUnits(units: { count: number; read(i: number): NumericArray }, nLab: number, total: number, label: string, onProgress: ProgressFn): LabelTallyResult | null {
  const tally = new LabelTally(nLab);
  let done = 0;
  try {
    for (let i = 0; i < units.count; i++) {
      const values = units.read(i);
      tally.add(values, false);
      done += values.length;
      onProgress({ label, done, total });
    }
  } catch (e) {
    if (e instanceof DirectReadError) return null;
    throw e;
  }
  return done === total ? tally.result() : null;
}

/**
 * The label's facts read without libhdf5 (h5direct.ts: the default format of h5py and h5wasm, integer labels of
 * at most 4 bytes), or null where that reader does not apply: then they are read through libhdf5. Saves a short
 * command the wait for libhdf5 to load, and inflates chunks with native zlib.
 */
async function labelFactsDirect(ref: CubeRef, nLab: number, opts: ScanOptions): Promise<CubeFacts | null> {
  const file = DirectH5File.open(ref.label);
  if (!file) return null;
  try {
    const label = file.dataset(ref.labelKey);
    if (!label || label === 'absent' || (label.shape.length !== 2 && label.shape.length !== 3)) return null;
    if (label.dtype.kind === 'float' || label.dtype.bytes > 4) return null;
    const infoDs = file.dataset(ref.infoKey);
    if (infoDs === null) return null;
    const infoData = infoDs === 'absent' ? null : file.readAll(infoDs);
    if (infoDs !== 'absent' && !infoData) return null;
    const total = label.shape.reduce((a, b) => a * b, 1);
    const onProgress = opts.onProgress ?? noProgress;
    const pieceBytes = (opts.slabMB ?? DEFAULT_SLAB_MB) * 2 ** 20;
    const units = file.units(label, pieceBytes);
    let tally: LabelTallyResult | null;
    if (opts.knownTally && opts.knownTally.voxels === total) tally = opts.knownTally;
    else if (opts.tallyWorker ?? (total >= TALLY_WORKER_MIN_VOXELS && os.availableParallelism() > 1)) {
      const { tallyWithWorker } = await import('./tallyWorkerPool.js');
      // any failure (a chunk that does not decode, here or in the worker): libhdf5 reads the volume and reports it
      tally = await tallyWithWorker({ kind: 'direct', file: ref.label, key: ref.labelKey, pieceBytes }, { ...units, isFloat: false }, nLab, total, onProgress).catch(() => null);
    } else tally = tallyUnits(units, nLab, total, ref.label, onProgress);
    if (!tally) return null;
    return {
      nLab,
      label: { shape: label.shape, dtype: label.dtype, typeName: label.dtype.name },
      tally,
      info: infoDs === 'absent' ? null : { shape: infoDs.shape, data: infoData!, isFloat: infoDs.dtype.kind === 'float' },
      offset: ref.offset,
    };
  } finally {
    file.close();
  }
}

/** The label's facts through the volume readers (libhdf5 for HDF5; zarr, N5, TIFF, PNG). */
async function labelFacts(ref: CubeRef, nLab: number, opts: ScanOptions): Promise<CubeFacts> {
  const vol = await openLabelVolume(ref.label, ref.labelKey);
  try {
    const scannable = vol.dtype !== null && (vol.shape.length === 2 || vol.shape.length === 3);
    return {
      nLab,
      label: { shape: vol.shape, dtype: vol.dtype, typeName: vol.typeName },
      tally: !scannable ? null : opts.knownTally && opts.knownTally.voxels === vol.shape.reduce((a, b) => a * b, 1) ? opts.knownTally : await tallyLabels(vol, nLab, opts),
      info: await readInfoOf(ref.label, ref.infoKey, vol),
      offset: ref.offset,
    };
  } finally {
    vol.close();
  }
}

/** The raw volume's shape: without libhdf5 where h5direct.ts reads the file, else through the volume readers. */
async function rawShapeOf(raw: string, rawKey: string, directRead: boolean): Promise<number[]> {
  const file = directRead ? DirectH5File.open(raw) : null;
  const ds = file?.dataset(rawKey);
  file?.close();
  if (ds && ds !== 'absent') return ds.shape;
  const vol = await openVolume(raw, rawKey).catch(async (e: unknown) => {
    if (isLazyLabelError(e) && e.code === 'dataset-missing' && !/\.(h5|hdf5|hdf|he5)$/i.test(raw)) return openVolume(raw);
    throw e;
  });
  const shape = vol.shape;
  vol.close();
  return shape;
}

/**
 * Open the label volume. In HDF5 the key names a dataset; zarr/N5 containers may hold the key as an
 * array, or be the array themselves (then the default key does not apply); image stacks have no keys.
 */
export async function openLabelVolume(file: string, key: string): Promise<VolumeReader> {
  try {
    return await openVolume(file, key);
  } catch (e) {
    if (isLazyLabelError(e) && e.code === 'dataset-missing' && !/\.(h5|hdf5|hdf|he5)$/i.test(file)) {
      const whole = await openVolume(file).catch(() => null);
      if (whole && whole.format !== 'hdf5') return whole;
      whole?.close();
    }
    throw e;
  }
}

/** `info` next to the labels (same HDF5 file or zarr/N5 container), or null when there is none; `open`: the label volume, whose open HDF5 file is used. */
export async function readInfoOf(file: string, infoKey: string, open?: VolumeReader): Promise<RawInfo | null> {
  let vol: VolumeReader;
  try {
    // through the label volume's open file when it is one (HDF5): not opened a second time
    vol = open?.file === file && open.openSibling ? open.openSibling(infoKey) : await openVolume(file, infoKey);
  } catch (e) {
    if (isLazyLabelError(e) && (e.code === 'dataset-missing' || e.code === 'unsupported-format')) return null;
    throw e;
  }
  try {
    if (vol.format === 'tiff' || vol.format === 'png' || vol.key === '') return null; // an image stack has no info inside
    const data = await vol.readBox(vol.shape.map(() => 0), vol.shape);
    return { shape: vol.shape, data, isFloat: vol.dtype?.kind === 'float' };
  } finally {
    vol.close();
  }
}

/** Read `info` from an open HDF5 file if it has it (the trainer's cube store holds files open). */
export function readInfo(src: H5Source, infoKey: string): RawInfo | null {
  if (!src.has(infoKey)) return null;
  const { shape, data, dtype } = src.readAll(infoKey);
  return { shape, data, isFloat: dtype?.kind === 'float' };
}

/** Facts for the rules, or the user error that prevented reading them (missing file, corrupt, no dataset). */
export async function gatherCubeFacts(ref: CubeRef, nLab: number, opts: ScanOptions = {}): Promise<{ facts?: CubeFacts; failure?: LazyLabelError }> {
  try {
    const directRead = opts.directRead !== false;
    const facts = (directRead ? await labelFactsDirect(ref, nLab, opts) : null) ?? (await labelFacts(ref, nLab, opts));
    if (!ref.raw) return { facts };
    return { facts: { ...facts, raw: { shape: await rawShapeOf(ref.raw, ref.rawKey ?? 'raw', directRead) } } };
  } catch (e) {
    if (isLazyLabelError(e)) return { failure: e };
    throw e;
  }
}
