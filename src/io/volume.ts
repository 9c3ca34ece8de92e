/**
 * One read interface over every volume format lazylabel takes: HDF5, zarr (v2, v3, OME-Zarr), N5, TIFF stacks and
 * PNG slice folders. `openVolume` decides the format from what the path is; each reader touches only the
 * chunks (or pages, or slices) that overlap a request.
 */
import fs from 'node:fs';
import path from 'node:path';
import { LazyLabelError } from '../errors.js';
import type { DType, NumericArray } from './dtype.js';
import { parseVolumeRef } from './volumeRef.js';
import type { H5Source } from './hdf5.js';

export type VolumeFormat = 'hdf5' | 'zarr' | 'n5' | 'tiff' | 'png';

export interface VolumeReader {
  /** The path that was opened (container, file or folder). */
  readonly file: string;
  /** The dataset / array path inside the container ('' when the path is the array itself). */
  readonly key: string;
  readonly format: VolumeFormat;
  /** C order (slowest axis first), as numpy shows it. */
  readonly shape: number[];
  /** null for element types no volume can have (strings, float16, ...); reads then fail. */
  readonly dtype: DType | null;
  readonly typeName: string;
  /** Storage chunk shape (a page or slice for image stacks); null when stored contiguously. */
  readonly chunks: number[] | null;
  /** Rows [start, end) along axis 0 (all of the other axes), flattened in C order. */
  readSlab(start: number, end: number): Promise<NumericArray>;
  /** The box [starts[i], ends[i]) on every axis, flattened in C order. 64-bit integers come back as Float64Array. */
  readBox(starts: number[], ends: number[]): Promise<NumericArray>;
  /**
   * HDF5 only: the box as a transient view of a reused buffer (no copy, no allocation), valid until the next
   * read; null when the element type needs conversion (then use readBox).
   */
  readBoxView?(starts: number[], ends: number[]): NumericArray | null;
  /**
   * HDF5 only: another dataset of the same file (`info` next to the labels), read through this reader's open
   * file instead of opening it again; errors as `openVolume(file, key)`. Closing it leaves the file open: close
   * this reader last.
   */
  openSibling?(key: string): VolumeReader;
  attrs(): Record<string, unknown>;
  close(): void;
}

const HDF5_EXT = /\.(h5|hdf5|hdf|he5)$/i;
const TIFF_EXT = /\.tiff?$/i;
const PNG_EXT = /\.png$/i;

function readHead(file: string, n: number): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(n);
    const got = fs.readSync(fd, buf, 0, n, 0);
    return buf.subarray(0, got);
  } finally {
    fs.closeSync(fd);
  }
}

function sniffFile(file: string): VolumeFormat | null {
  let head: Buffer;
  try {
    head = readHead(file, 8);
  } catch {
    return null;
  }
  if (head.length >= 8 && head.equals(Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'hdf5';
  if (head.length >= 8 && head.equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'png';
  if (head.length >= 4 && ((head[0] === 0x49 && head[1] === 0x49 && head[2] === 42) || (head[0] === 0x4d && head[1] === 0x4d && head[3] === 42))) return 'tiff';
  return null;
}

function isN5Attributes(file: string): boolean {
  try {
    const attrs = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    return typeof attrs === 'object' && attrs !== null && ('n5' in attrs || 'dimensions' in attrs);
  } catch {
    return false;
  }
}

/** Image files in a folder (hidden files skipped), by kind. */
function imageFiles(dir: string): { tiff: string[]; png: string[] } {
  const names = fs.readdirSync(dir).filter((n) => !n.startsWith('.'));
  return { tiff: names.filter((n) => TIFF_EXT.test(n)), png: names.filter((n) => PNG_EXT.test(n)) };
}

/**
 * The format of a volume path, from what it is on disk: a zarr / N5 container (folder with `.zarray`, `.zgroup`,
 * `zarr.json` or an N5 `attributes.json`; or named `*.zarr` / `*.n5`), an HDF5, TIFF or PNG file (by extension, else
 * by signature), or a folder of TIFF or PNG slices. Paths that do not exist are judged by extension; null when unknown.
 */
export function volumeFormat(p: string): VolumeFormat | null {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(p);
  } catch {
    if (HDF5_EXT.test(p)) return 'hdf5';
    if (/\.zarr\/?$/i.test(p)) return 'zarr';
    if (/\.n5\/?$/i.test(p)) return 'n5';
    if (TIFF_EXT.test(p)) return 'tiff';
    if (PNG_EXT.test(p)) return 'png';
    return null;
  }
  if (stat.isDirectory()) {
    if (['zarr.json', '.zarray', '.zgroup'].some((f) => fs.existsSync(path.join(p, f)))) return 'zarr';
    if (isN5Attributes(path.join(p, 'attributes.json'))) return 'n5';
    if (/\.zarr\/?$/i.test(p)) return 'zarr';
    if (/\.n5\/?$/i.test(p)) return 'n5';
    let files: { tiff: string[]; png: string[] };
    try {
      files = imageFiles(p);
    } catch {
      return null;
    }
    if (files.tiff.length > 0 && files.png.length === 0) return 'tiff';
    if (files.png.length > 0 && files.tiff.length === 0) return 'png';
    return null;
  }
  if (HDF5_EXT.test(p)) return 'hdf5';
  if (TIFF_EXT.test(p)) return 'tiff';
  if (PNG_EXT.test(p)) return 'png';
  return sniffFile(p);
}

/**
 * Open a volume for reading. `key` is the dataset / array path inside a container (HDF5 dataset, zarr array path,
 * N5 dataset path); without it, `pathOrRef` may carry one as `path:key`. A zarr group with OME-Zarr `multiscales`
 * opens at level 0 (`multiscales[0].datasets[0]`); a container holding exactly one array opens that array;
 * otherwise a missing key is a `dataset-missing` error listing the arrays there are. Always `close()` the reader.
 */
export async function openVolume(pathOrRef: string, key?: string): Promise<VolumeReader> {
  let file = pathOrRef;
  if (key === undefined && !fs.existsSync(pathOrRef)) {
    const ref = parseVolumeRef(pathOrRef);
    file = ref.file;
    key = ref.key;
  }
  if (!fs.existsSync(file)) {
    throw new LazyLabelError('file not found', { code: 'file-missing', file, hint: 'check the path; relative paths in a manifest resolve against the manifest folder' });
  }
  const format = volumeFormat(file);
  switch (format) {
    case 'hdf5':
      return openHdf5Volume(file, key);
    case 'zarr':
      return (await import('./zarr.js')).openZarr(file, key);
    case 'n5':
      return (await import('./n5.js')).openN5(file, key);
    case 'tiff':
      return (await import('./imageStack.js')).openTiffStack(file);
    case 'png':
      return (await import('./imageStack.js')).openPngStack(file);
    case null: {
      const isDir = fs.statSync(file).isDirectory();
      let hint = 'volumes can be HDF5 (.h5), zarr (v2/v3, OME-Zarr), N5, TIFF stacks or folders of TIFF / PNG slices';
      if (isDir) {
        const files = imageFiles(file);
        if (files.tiff.length && files.png.length) hint = `the folder mixes ${files.tiff.length} TIFF and ${files.png.length} PNG files; keep one kind of slice per folder`;
      }
      throw new LazyLabelError(isDir ? 'folder holds no volume lazylabel can read' : 'unknown volume format', { code: 'unsupported-format', file, hint });
    }
  }
}

// ---------------------------------------------------------------- HDF5 adapter

async function openHdf5Volume(file: string, key: string | undefined): Promise<VolumeReader> {
  // h5wasm (~130 ms to load and start) only when an HDF5 volume is opened, as the other formats' readers above
  const { H5Source } = await import('./hdf5.js');
  const src = await H5Source.open(file);
  try {
    let k = key?.replace(/^\/+/, '');
    if (!k) {
      const all = src.listDatasets();
      if (all.length !== 1) {
        throw new LazyLabelError(all.length ? 'no dataset named; the file holds several' : 'the file holds no datasets', {
          code: 'dataset-missing', file,
          hint: all.length ? `datasets in this file: ${all.map((d) => d.key).join(', ')}; pass one with the key option or path:key` : 'write the volume into the file first',
        });
      }
      k = all[0]!.key;
    }
    return hdf5Reader(src, file, k, true);
  } catch (e) {
    src.close();
    throw e;
  }
}

/** A reader of dataset `key` of the open `src`; `owner`: closing it closes the file (a sibling's does not). */
function hdf5Reader(src: H5Source, file: string, key: string, owner: boolean): VolumeReader {
  const info = src.info(key); // dataset-missing with the list of datasets when absent
  return {
    file, key, format: 'hdf5', shape: info.shape, dtype: info.dtype, typeName: info.typeName, chunks: info.chunks,
    readSlab: async (start, end) => {
      checkSlab(info.shape, start, end, file, key);
      return src.readSlab(key, start, end);
    },
    readBox: async (starts, ends) => {
      checkBox(info.shape, starts, ends, file, key);
      return src.readBox(key, starts, ends);
    },
    readBoxView: (starts, ends) => {
      checkBox(info.shape, starts, ends, file, key);
      return src.readBoxView(key, starts, ends);
    },
    openSibling: (other) => hdf5Reader(src, file, other.replace(/^\/+/, ''), false),
    attrs: () => src.attrs(key),
    close: () => {
      if (owner) src.close();
    },
  };
}

// ---------------------------------------------------------------- helpers shared by the readers

/** Reject a box that does not fit the volume, naming the axis. */
export function checkBox(shape: number[], starts: number[], ends: number[], file: string, key: string): void {
  if (starts.length !== shape.length || ends.length !== shape.length) {
    throw new LazyLabelError(`box has ${starts.length}/${ends.length} bounds for a ${shape.length}-D volume`, { code: 'out-of-bounds', file, dataset: key || undefined });
  }
  for (let i = 0; i < shape.length; i++) {
    const s = starts[i]!;
    const e = ends[i]!;
    if (!Number.isInteger(s) || !Number.isInteger(e) || s < 0 || e < s || e > shape[i]!) {
      throw new LazyLabelError(`box [${s}, ${e}) on axis ${i} is outside the volume (size ${shape[i]})`, { code: 'out-of-bounds', file, dataset: key || undefined });
    }
  }
}

export function checkSlab(shape: number[], start: number, end: number, file: string, key: string): void {
  if (shape.length === 0) return;
  checkBox(shape, [start, ...shape.slice(1).map(() => 0)], [end, ...shape.slice(1)], file, key);
}

/** The box of a slab: rows [start, end) on axis 0, everything on the other axes. */
export function slabBox(shape: number[], start: number, end: number): { starts: number[]; ends: number[] } {
  if (shape.length === 0) return { starts: [], ends: [] };
  return { starts: [start, ...shape.slice(1).map(() => 0)], ends: [end, ...shape.slice(1)] };
}

export function product(xs: readonly number[]): number {
  return xs.reduce((a, b) => a * b, 1);
}

/**
 * Copy the part of a C-order source block that lies in [lo, hi) (global coordinates) into a C-order destination.
 * `dstOrigin` / `srcOrigin` are the global coordinates of element 0 of each. The last axis is copied as runs.
 */
export function copyRegion(
  dst: NumericArray, dstShape: readonly number[], dstOrigin: readonly number[],
  src: ArrayLike<number> & { subarray?: unknown }, srcShape: readonly number[], srcOrigin: readonly number[],
  lo: readonly number[], hi: readonly number[],
): void {
  const n = dstShape.length;
  if (n === 0) {
    dst[0] = src[0]!;
    return;
  }
  for (let i = 0; i < n; i++) if (hi[i]! <= lo[i]!) return;
  const dstStrides = stridesOf(dstShape);
  const srcStrides = stridesOf(srcShape);
  const run = hi[n - 1]! - lo[n - 1]!;
  const idx = lo.slice(0, n - 1);
  const typedSrc = ArrayBuffer.isView(src) ? (src as unknown as NumericArray) : null;
  for (;;) {
    let d = lo[n - 1]! - dstOrigin[n - 1]!;
    let s = lo[n - 1]! - srcOrigin[n - 1]!;
    for (let i = 0; i < n - 1; i++) {
      d += (idx[i]! - dstOrigin[i]!) * dstStrides[i]!;
      s += (idx[i]! - srcOrigin[i]!) * srcStrides[i]!;
    }
    if (typedSrc) dst.set(typedSrc.subarray(s, s + run), d);
    else for (let k = 0; k < run; k++) dst[d + k] = src[s + k]!;
    // odometer over the leading axes
    let axis = n - 2;
    while (axis >= 0) {
      idx[axis]!++;
      if (idx[axis]! < hi[axis]!) break;
      idx[axis] = lo[axis]!;
      axis--;
    }
    if (axis < 0) return;
  }
}

export function stridesOf(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let step = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = step;
    step *= shape[i]!;
  }
  return strides;
}

/** Fill the part of `dst` inside [lo, hi) with one value (a chunk that was never written). */
export function fillRegion(dst: NumericArray, dstShape: readonly number[], dstOrigin: readonly number[], lo: readonly number[], hi: readonly number[], value: number): void {
  const n = dstShape.length;
  if (n === 0) {
    dst[0] = value;
    return;
  }
  for (let i = 0; i < n; i++) if (hi[i]! <= lo[i]!) return;
  const strides = stridesOf(dstShape);
  const run = hi[n - 1]! - lo[n - 1]!;
  const idx = lo.slice(0, n - 1);
  for (;;) {
    let d = lo[n - 1]! - dstOrigin[n - 1]!;
    for (let i = 0; i < n - 1; i++) d += (idx[i]! - dstOrigin[i]!) * strides[i]!;
    dst.fill(value, d, d + run);
    let axis = n - 2;
    while (axis >= 0) {
      idx[axis]!++;
      if (idx[axis]! < hi[axis]!) break;
      idx[axis] = lo[axis]!;
      axis--;
    }
    if (axis < 0) return;
  }
}

/** Intersect a chunk [origin, origin+shape) with a request [starts, ends); null when they do not overlap. */
export function overlap(origin: readonly number[], shape: readonly number[], starts: readonly number[], ends: readonly number[]): { lo: number[]; hi: number[] } | null {
  const lo: number[] = [];
  const hi: number[] = [];
  for (let i = 0; i < origin.length; i++) {
    const l = Math.max(origin[i]!, starts[i]!);
    const h = Math.min(origin[i]! + shape[i]!, ends[i]!);
    if (h <= l) return null;
    lo.push(l);
    hi.push(h);
  }
  return { lo, hi };
}

/** Chunk grid positions (C order) of the chunks that overlap [starts, ends). */
export function* chunksOverlapping(chunks: readonly number[], starts: readonly number[], ends: readonly number[]): Generator<number[]> {
  const n = chunks.length;
  if (n === 0) {
    yield [];
    return;
  }
  const first = starts.map((s, i) => Math.floor(s / chunks[i]!));
  const last = ends.map((e, i) => Math.ceil(e / chunks[i]!) - 1);
  for (let i = 0; i < n; i++) if (last[i]! < first[i]!) return;
  const pos = first.slice();
  for (;;) {
    yield pos.slice();
    let axis = n - 1;
    while (axis >= 0) {
      pos[axis]!++;
      if (pos[axis]! <= last[axis]!) break;
      pos[axis] = first[axis]!;
      axis--;
    }
    if (axis < 0) return;
  }
}

let collator: Intl.Collator | undefined;
/** Natural filename order: img2 before img10; ties broken by plain code-unit order so the result is stable. */
export function naturalSort(names: string[]): string[] {
  // made on first use: creating it loads ICU's collation data (~19 ms of every command's start-up)
  collator ??= new Intl.Collator('en', { numeric: true, sensitivity: 'variant' });
  return names.slice().sort((a, b) => collator!.compare(a, b) || (a < b ? -1 : a > b ? 1 : 0));
}

/** Run async tasks with at most `limit` in flight; results in task order; the first failure rejects. */
export async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/**
 * Paths of the arrays inside a folder-based container (zarr, N5), depth first in name order, for
 * "dataset not found" hints; `isArray` tells a leaf from a group. Bounded in depth, count and folders visited.
 */
export function listContainerArrays(root: string, isArray: (dir: string) => boolean, limit = 200): string[] {
  const found: string[] = [];
  let visited = 0;
  const walk = (dir: string, prefix: string, depth: number): void => {
    if (depth > 8 || found.length >= limit || ++visited > 5000) return;
    if (isArray(dir)) {
      found.push(prefix);
      return;
    }
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      if (entry.isDirectory() && !entry.name.startsWith('.')) walk(path.join(dir, entry.name), prefix ? `${prefix}/${entry.name}` : entry.name, depth + 1);
    }
  };
  walk(root, '', 0);
  return found;
}
