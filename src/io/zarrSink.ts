/**
 * zarr v2 output: a group folder of chunked, zlib-compressed arrays, the layout zarr-python 2.x writes and reads
 * by default (and our own zarrita-based reader reads). Written by hand (zarrita's `create` writes only zarr v3):
 * `.zgroup`, per array `.zarray` / `.zattrs` JSON and one file per chunk named `i.j.k`.
 *
 * `ZarrSink` has the API `ops/convert` uses on `H5Sink` (createDataset → write(slab), writeSmall, setAttrs,
 * close). Slabs arrive in order along axis 0; at most one chunk row is buffered before its chunks are
 * compressed and written, and an array's `.zarray` is written only once its last row is in, so an array cut
 * short is never mistaken for a whole one. `writeZarrAtomically` builds the folder under a temporary sibling
 * name and renames it into place (see `writeDirAtomically` in io/atomic).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { promisify } from 'node:util';
import { LazyLabelError, usageError } from '../errors.js';
import { checkDirOutputPath, writeDirAtomically, type OutputGuard } from './atomic.js';
import type { DTypeName, NumericArray } from './dtype.js';
import { defaultChunks, type CreateDatasetOptions } from './hdf5.js';
import { chunksOverlapping, copyRegion, mapLimited, product } from './volume.js';

export type OutputFormat = 'hdf5' | 'zarr';

type WritableDType = Exclude<DTypeName, 'bool'>;
type AnyTypedArray = NumericArray | BigInt64Array | BigUint64Array;

/** What convert needs of an output container; `H5Sink` and `ZarrSink` both have it. */
export interface LabelSink {
  createDataset(key: string, opts: CreateDatasetOptions): { write(data: NumericArray | BigInt64Array): void | Promise<void> };
  writeSmall(key: string, shape: number[], dtype: WritableDType, data: NumericArray | BigInt64Array): void;
  setAttrs(key: string, attrs: Record<string, unknown>): void;
  close(): void;
}

/** numpy type strings of zarr v2 `.zarray` (little-endian, as zarr-python writes them). */
export const ZARR_V2_DTYPE: Record<WritableDType, string> = {
  int8: '|i1', uint8: '|u1', int16: '<i2', uint16: '<u2', int32: '<i4', uint32: '<u4',
  int64: '<i8', uint64: '<u8', float32: '<f4', float64: '<f8',
};

const CTOR: Record<WritableDType, new (n: number) => AnyTypedArray> = {
  int8: Int8Array, uint8: Uint8Array, int16: Int16Array, uint16: Uint16Array, int32: Int32Array, uint32: Uint32Array,
  int64: BigInt64Array, uint64: BigUint64Array, float32: Float32Array, float64: Float64Array,
};

/** Chunks compressed and written at once (node:zlib runs on libuv's pool of 4 threads by default). */
const CHUNKS_IN_FLIGHT = 4;
const deflate = promisify(zlib.deflate);
const LITTLE_ENDIAN = os.endianness() === 'LE';

const HDF5_EXT = /\.(h5|hdf5|hdf|he5)$/i;
const ZARR_EXT = /\.zarr$/i;
const stripSep = (p: string): string => (p.length > 1 ? p.replace(/[\\/]+$/, '') : p);

/**
 * The format to write: `requested` (`--out-format`), else zarr for an output path ending in `.zarr`, else HDF5.
 * A request contradicting the extension (`--out-format zarr -o x.h5`, `--out-format hdf5 -o x.zarr`) is a usage error.
 */
export function outputFormatFor(output: string, requested?: OutputFormat): OutputFormat {
  const p = stripSep(output);
  if (requested !== undefined && requested !== 'hdf5' && requested !== 'zarr') throw usageError(`--out-format must be hdf5 or zarr, got ${String(requested)}`);
  if (requested === 'zarr' && HDF5_EXT.test(p)) throw usageError(`--out-format zarr but the output ${output} has an HDF5 extension`, 'name a zarr output *.zarr');
  if (requested === 'hdf5' && ZARR_EXT.test(p)) throw usageError(`--out-format hdf5 but the output ${output} ends in .zarr`, 'name an HDF5 output *.h5');
  return requested ?? (ZARR_EXT.test(p) ? 'zarr' : 'hdf5');
}

/** A zarr store as far as replacing it is concerned: zarr metadata at its top, or an empty folder. */
function isZarrFolder(dir: string): boolean {
  try {
    const names = fs.readdirSync(dir);
    return names.length === 0 || names.some((n) => n === '.zgroup' || n === '.zarray' || n === 'zarr.json');
  } catch {
    return false;
  }
}

/**
 * `checkOutputPath` for a zarr output folder, plus: no input inside it, it not inside an input folder, and
 * `--force` replaces only a zarr store (or a file), never some other folder that happens to be there.
 */
export function checkZarrOutputPath(target: string, guard: OutputGuard = {}): void {
  const t = stripSep(target);
  checkDirOutputPath(t, guard);
  let st: fs.Stats | undefined;
  try {
    st = fs.lstatSync(t);
  } catch {
    st = undefined;
  }
  if (st?.isDirectory() && !isZarrFolder(t)) {
    throw usageError(`output ${target} is a folder that is not a zarr store`, 'refusing to replace it even with --force: choose another output path or remove the folder yourself');
  }
}

/** Build a zarr output folder through `write(tmpDir)` (the sink creates tmpDir), then rename it into place atomically. */
export async function writeZarrAtomically<T>(target: string, guard: OutputGuard, write: (tmpDir: string) => Promise<T>): Promise<T> {
  checkZarrOutputPath(target, guard);
  return writeDirAtomically(stripSep(target), guard, write);
}

function writeFailed(e: unknown, file: string, key?: string): LazyLabelError {
  if (e instanceof LazyLabelError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new LazyLabelError(`writing zarr data failed: ${msg}`, { code: 'write-failed', file, dataset: key, hint: 'check free disk space and permissions' });
}

/** Array paths are folder paths inside the store: plain names only, no `.`/`..` segments, nothing hidden. */
function keyParts(key: string, file: string): string[] {
  const parts = key.split('/').filter(Boolean);
  if (!parts.length || parts.some((p) => p === '.' || p === '..' || p.startsWith('.') || p.includes('\\') || p.includes('\0'))) {
    throw new LazyLabelError(`'${key}' is not a valid zarr array path`, { code: 'usage', exitCode: 2, file, dataset: key, hint: 'use plain names separated by /, e.g. lab or labels/lab' });
  }
  return parts;
}

/** JSON for an attribute value: typed arrays as lists, 64-bit integers as numbers, non-finite floats as "NaN"/"Infinity" (zarr's convention). */
function jsonValue(v: unknown): unknown {
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (typeof v === 'number') return Number.isFinite(v) ? v : Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity';
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return Array.from(v as unknown as ArrayLike<unknown>, jsonValue);
  if (Array.isArray(v)) return v.map(jsonValue);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = jsonValue(x);
    return out;
  }
  return v;
}

/** Little-endian bytes of a typed array (a view on little-endian machines, a swapped copy otherwise). */
function leBytes(a: AnyTypedArray): Buffer {
  const view = Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  if (LITTLE_ENDIAN || a.BYTES_PER_ELEMENT === 1) return view;
  const copy = Buffer.from(view);
  if (a.BYTES_PER_ELEMENT === 2) copy.swap16();
  else if (a.BYTES_PER_ELEMENT === 4) copy.swap32();
  else copy.swap64();
  return copy;
}

/** `data` as the array type of `dtype` (no copy when it already is). */
function asType(data: NumericArray | BigInt64Array | BigUint64Array, dtype: WritableDType): AnyTypedArray {
  const Ctor = CTOR[dtype];
  if (data instanceof Ctor) return data;
  const out = new Ctor(data.length);
  if (out instanceof BigInt64Array || out instanceof BigUint64Array) {
    for (let i = 0; i < data.length; i++) out[i] = BigInt(Math.trunc(Number(data[i])));
  } else {
    for (let i = 0; i < data.length; i++) out[i] = Number(data[i]);
  }
  return out;
}

interface ZArrayMeta {
  chunks: number[];
  compressor: { id: 'zlib'; level: number } | null;
  dimension_separator: '.';
  dtype: string;
  fill_value: number;
  filters: null;
  order: 'C';
  shape: number[];
  zarr_format: 2;
}

function zarrayMeta(shape: number[], chunks: number[], dtype: WritableDType, level: number): ZArrayMeta {
  return {
    chunks, compressor: level > 0 ? { id: 'zlib', level } : null, dimension_separator: '.', dtype: ZARR_V2_DTYPE[dtype],
    fill_value: 0, filters: null, order: 'C', shape, zarr_format: 2,
  };
}

const json = (v: unknown): string => `${JSON.stringify(v, null, 4)}\n`;

/** A zarr array being written slab by slab along axis 0, one chunk row at a time. */
export class ZarrSlabWriter {
  private written = 0;
  private chunkRow = 0;
  private pending: AnyTypedArray | null = null;
  private pendingRows = 0;
  private readonly rowSize: number;

  constructor(
    private readonly dir: string,
    readonly shape: number[],
    readonly chunks: number[],
    private readonly dtype: WritableDType,
    private readonly level: number,
    private readonly file: string,
    readonly key: string,
  ) {
    this.rowSize = product(shape.slice(1));
    // nothing to stream into an array without voxels: it is complete as created
    if (product(shape) === 0) this.finish();
  }

  get rowsWritten(): number {
    return this.written;
  }

  /** Append rows; slabs must arrive in order. The `.zarray` appears with the last row. */
  async write(data: NumericArray | BigInt64Array): Promise<void> {
    const rows = this.rowSize === 0 ? 0 : data.length / this.rowSize;
    if (!Number.isInteger(rows)) throw new Error(`slab of ${data.length} values is not a whole number of rows of ${this.rowSize}`);
    if (this.written + rows > this.shape[0]!) throw new Error(`slab of ${rows} rows overruns the ${this.shape[0]} rows of ${this.key} (${this.written} written)`);
    const typed = asType(data, this.dtype);
    const c0 = this.chunks[0]!;
    let offset = 0;
    try {
      while (offset < rows) {
        const rowStart = this.chunkRow * c0;
        const full = Math.min(c0, this.shape[0]! - rowStart);
        const need = full - this.pendingRows;
        if (this.pendingRows === 0 && rows - offset >= need) {
          // a whole chunk row in the slab: compress straight from it
          await this.emit(typed.subarray(offset * this.rowSize, (offset + need) * this.rowSize) as AnyTypedArray, full);
          offset += need;
          continue;
        }
        const take = Math.min(need, rows - offset);
        this.pending ??= new CTOR[this.dtype](c0 * this.rowSize);
        (this.pending as unknown as { set(a: ArrayLike<unknown>, o: number): void })
          .set(typed.subarray(offset * this.rowSize, (offset + take) * this.rowSize), this.pendingRows * this.rowSize);
        this.pendingRows += take;
        offset += take;
        if (this.pendingRows === full) {
          await this.emit(this.pending.subarray(0, full * this.rowSize) as AnyTypedArray, full);
          this.pendingRows = 0;
        }
      }
    } catch (e) {
      throw writeFailed(e, this.file, this.key);
    }
    this.written += rows;
    if (this.written === this.shape[0]) {
      this.pending = null;
      this.finish();
    }
  }

  /** Compress and write every chunk of the current chunk row from `src`, which holds its `rows` rows. */
  private async emit(src: AnyTypedArray, rows: number): Promise<void> {
    const row0 = this.chunkRow * this.chunks[0]!;
    const srcShape = [rows, ...this.shape.slice(1)];
    const srcOrigin = [row0, ...this.shape.slice(1).map(() => 0)];
    const starts = srcOrigin;
    const ends = [row0 + rows, ...this.shape.slice(1)];
    const positions = [...chunksOverlapping(this.chunks, starts, ends)];
    const chunkSize = product(this.chunks);
    await mapLimited(positions, CHUNKS_IN_FLIGHT, async (pos) => {
      const origin = pos.map((p, i) => p * this.chunks[i]!);
      const lo = origin.map((o, i) => Math.max(o, starts[i]!));
      const hi = origin.map((o, i) => Math.min(o + this.chunks[i]!, ends[i]!));
      // edge chunks are stored whole, the part outside the array holding the fill value 0
      const chunk = new CTOR[this.dtype](chunkSize);
      copyRegion(chunk as unknown as NumericArray, this.chunks, origin, src as unknown as NumericArray, srcShape, srcOrigin, lo, hi);
      const bytes = leBytes(chunk);
      const body = this.level > 0 ? await deflate(bytes, { level: this.level }) : bytes;
      await fs.promises.writeFile(path.join(this.dir, pos.join('.')), body, { flag: 'wx' });
    });
    this.chunkRow++;
  }

  private finish(): void {
    try {
      fs.writeFileSync(path.join(this.dir, '.zarray'), json(zarrayMeta(this.shape, this.chunks, this.dtype, this.level)), { flag: 'wx' });
    } catch (e) {
      throw writeFailed(e, this.file, this.key);
    }
  }
}

/** A new zarr v2 group folder opened for writing (callers write to a temporary path and rename; see `writeZarrAtomically`). */
export class ZarrSink implements LabelSink {
  private constructor(readonly path: string) {}

  /** Create the group folder; it must not exist (the atomic layer chose a fresh name). */
  static create(dir: string): ZarrSink {
    try {
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, '.zgroup'), json({ zarr_format: 2 }), { flag: 'wx' });
    } catch (e) {
      throw new LazyLabelError(`cannot create zarr folder: ${e instanceof Error ? e.message : String(e)}`, { code: 'write-failed', file: dir, hint: 'check that the folder exists and is writable' });
    }
    return new ZarrSink(dir);
  }

  /** The folder of a new array at `key`, with `.zgroup` in every intermediate group. */
  private arrayDir(key: string): string {
    const parts = keyParts(key, this.path);
    let dir = this.path;
    try {
      for (const part of parts.slice(0, -1)) {
        dir = path.join(dir, part);
        if (!fs.existsSync(dir)) {
          fs.mkdirSync(dir);
          fs.writeFileSync(path.join(dir, '.zgroup'), json({ zarr_format: 2 }), { flag: 'wx' });
        } else if (!fs.existsSync(path.join(dir, '.zgroup'))) {
          throw new Error(`'${path.relative(this.path, dir)}' is an array, not a group`);
        }
      }
      dir = path.join(dir, parts[parts.length - 1]!);
      fs.mkdirSync(dir); // EEXIST: two arrays (or an array and a group) under one name
    } catch (e) {
      throw new LazyLabelError(`cannot create zarr array: ${e instanceof Error ? e.message : String(e)}`, { code: 'write-failed', file: this.path, dataset: key });
    }
    return dir;
  }

  /** Create a chunked array filled by `ZarrSlabWriter.write`; `gzip` is the zlib level (default 4; 0 = uncompressed). */
  createDataset(key: string, opts: CreateDatasetOptions): ZarrSlabWriter {
    if (opts.shape.length === 0) throw new Error('a 0-d array has no rows to stream: use writeSmall');
    const bytes = new CTOR[opts.dtype](0).BYTES_PER_ELEMENT;
    const chunks = (opts.chunks ?? defaultChunks(opts.shape, bytes)).map((c, i) => Math.max(1, Math.min(c, Math.max(1, opts.shape[i]!))));
    if (chunks.length !== opts.shape.length) throw new Error(`chunks ${JSON.stringify(chunks)} do not match the shape ${JSON.stringify(opts.shape)}`);
    const dir = this.arrayDir(key);
    return new ZarrSlabWriter(dir, opts.shape, chunks, opts.dtype, opts.gzip ?? 4, this.path, key);
  }

  /** Write a small array (e.g. `info`) in one go, as one zlib-compressed chunk. */
  writeSmall(key: string, shape: number[], dtype: WritableDType, data: NumericArray | BigInt64Array): void {
    if (data.length !== product(shape)) throw new Error(`${data.length} values do not fill the shape ${JSON.stringify(shape)}`);
    const dir = this.arrayDir(key);
    const chunks = shape.map((n) => Math.max(1, n));
    try {
      if (data.length > 0) {
        const body = zlib.deflateSync(leBytes(asType(data, dtype)), { level: 4 });
        fs.writeFileSync(path.join(dir, shape.length === 0 ? '0' : shape.map(() => 0).join('.')), body, { flag: 'wx' });
      }
      fs.writeFileSync(path.join(dir, '.zarray'), json(zarrayMeta(shape, chunks, dtype, 4)), { flag: 'wx' });
    } catch (e) {
      throw writeFailed(e, this.path, key);
    }
  }

  /** Merge attributes into the `.zattrs` of an array or group (`''` = the root group), as JSON. */
  setAttrs(key: string, attrs: Record<string, unknown>): void {
    const dir = key === '' || key === '/' ? this.path : path.join(this.path, ...keyParts(key, this.path));
    const file = path.join(dir, '.zattrs');
    try {
      if (!fs.existsSync(dir)) throw new Error(`no array or group '${key}'`);
      const current = fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>) : {};
      for (const [name, value] of Object.entries(attrs)) if (value !== undefined && value !== null) current[name] = jsonValue(value);
      fs.writeFileSync(file, json(current));
    } catch (e) {
      throw new LazyLabelError(`cannot write attributes: ${e instanceof Error ? e.message : String(e)}`, { code: 'write-failed', file: this.path, dataset: key || undefined });
    }
  }

  /** Every write has completed when its promise resolved: nothing is held open. */
  close(): void {
    // nothing to flush; writeDirAtomically fsyncs the folder tree before the rename
  }
}
