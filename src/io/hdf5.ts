/** HDF5 access on real paths through h5wasm's Node build: read-only sources, slab reads, streamed chunked writes. */
import fs from 'node:fs';
import h5wasm from 'h5wasm/node';
import type { Dataset as H5Dataset, File as H5FileHandle, Group as H5Group } from 'h5wasm/node';
import { LazyLabelError } from '../errors.js';
import { describeH5Type, dtypeFromH5, H5_TYPE_STRING, type DType, type DTypeName, type NumericArray } from './dtype.js';

export interface DatasetInfo {
  file: string;
  key: string;
  shape: number[];
  dtype: DType | null;
  /** Human-readable type, also for types `dtype` cannot represent. */
  typeName: string;
  chunks: number[] | null;
  filters: string[];
}

export interface DatasetListing {
  key: string;
  shape: number[];
  typeName: string;
}

let ready: Promise<unknown> | null = null;
/** h5wasm must finish loading its wasm module once per process before any file is opened. */
export async function initHdf5(): Promise<void> {
  ready ??= h5wasm.ready;
  await ready;
}

/**
 * Run an h5wasm call while capturing what libhdf5 prints to fd 2.
 * HDF5 reports failures as a diagnostic stack on stderr (h5wasm does not always throw),
 * so we swallow that text and turn its most specific line into our own error.
 */
function withDiagnostics<T>(fn: () => T): { value?: T; error?: unknown; diagnostics: string[] } {
  const original = fs.writeSync;
  const captured: string[] = [];
  (fs as { writeSync: typeof fs.writeSync }).writeSync = ((fd: number, buffer: unknown, ...rest: unknown[]) => {
    if (fd !== 2) return (original as (...a: unknown[]) => number)(fd, buffer, ...rest);
    if (typeof buffer === 'string') {
      captured.push(buffer);
      return Buffer.byteLength(buffer);
    }
    const view = buffer as ArrayBufferView;
    const offset = typeof rest[0] === 'number' ? rest[0] : 0;
    const length = typeof rest[1] === 'number' ? rest[1] : view.byteLength - offset;
    captured.push(Buffer.from(view.buffer, view.byteOffset + offset, length).toString('utf8'));
    return length;
  }) as typeof fs.writeSync;
  try {
    return { value: fn(), diagnostics: minorMessages(captured.join('')) };
  } catch (error) {
    return { error, diagnostics: minorMessages(captured.join('')) };
  } finally {
    (fs as { writeSync: typeof fs.writeSync }).writeSync = original;
  }
}

function minorMessages(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /minor:\s*(.+)$/.exec(line.trim());
    if (m && !out.includes(m[1]!)) out.push(m[1]!);
  }
  return out;
}

/** Pick the most telling HDF5 diagnostic (the generic ones come first in the stack). */
function explainDiagnostics(diagnostics: string[]): string {
  const generic = /^(Unable to open file|Can't open object|Unable to create file|Can't set value|Can't get value|Inappropriate type|Read failed)$/;
  const specific = diagnostics.filter((d) => !generic.test(d));
  return (specific.length ? specific : diagnostics).join('; ') || 'unknown HDF5 error';
}

const HDF5_SIGNATURE = Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]);

/** HDF5 puts its signature at byte 0, 512, 1024, ... (a user block may precede it). */
function hasHdf5Signature(path: string, size: number): boolean {
  const fd = fs.openSync(path, 'r');
  try {
    const buf = Buffer.alloc(8);
    for (let offset = 0; offset + 8 <= size; offset = offset === 0 ? 512 : offset * 2) {
      fs.readSync(fd, buf, 0, 8, offset);
      if (buf.equals(HDF5_SIGNATURE)) return true;
    }
    return false;
  } finally {
    fs.closeSync(fd);
  }
}

/** Check that a path is a readable HDF5 file before handing it to libhdf5, with errors that say what to do. */
export function assertHdf5File(path: string): void {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(path);
  } catch {
    throw new LazyLabelError('file not found', { code: 'file-missing', file: path, hint: 'check the path; relative paths in a manifest resolve against the manifest folder' });
  }
  if (stat.isDirectory()) {
    throw new LazyLabelError('is a folder, not an HDF5 file', { code: 'not-hdf5', file: path, hint: 'point at the .h5 file inside it' });
  }
  if (stat.size === 0 || !hasHdf5Signature(path, stat.size)) {
    throw new LazyLabelError(stat.size === 0 ? 'file is empty (0 bytes)' : 'not an HDF5 file (no HDF5 signature)', {
      code: 'not-hdf5', file: path, hint: 'label and raw volumes must be HDF5 files, as written by h5py',
    });
  }
}

function readShape(ds: H5Dataset): number[] {
  return ds.shape ?? [];
}

/** A read-only HDF5 file. Always close it (use `withH5`). */
export class H5Source {
  private constructor(readonly path: string, private readonly handle: H5FileHandle) {}

  static async open(path: string): Promise<H5Source> {
    await initHdf5();
    assertHdf5File(path);
    const opened = withDiagnostics(() => {
      const f = new h5wasm.File(path, 'r');
      f.keys(); // h5wasm returns a dead handle instead of throwing: touch it to find out
      return f;
    });
    if (opened.error !== undefined || opened.diagnostics.length > 0) {
      throw new LazyLabelError(`cannot open HDF5 file: ${explainDiagnostics(opened.diagnostics)}`, {
        code: 'corrupt', file: path, hint: 'the file is truncated or damaged; re-export it from its source',
      });
    }
    return new H5Source(path, opened.value!);
  }

  close(): void {
    withDiagnostics(() => this.handle.close());
  }

  private call<T>(what: string, dataset: string | undefined, fn: () => T): T {
    const r = withDiagnostics(fn);
    if (r.error !== undefined || (r.value === undefined && r.diagnostics.length > 0)) {
      const detail = r.diagnostics.length ? explainDiagnostics(r.diagnostics) : String((r.error as Error)?.message ?? r.error);
      throw new LazyLabelError(`${what} failed: ${detail}`, {
        code: 'corrupt', file: this.path, dataset, hint: 'the file is truncated or damaged; re-export it from its source',
      });
    }
    return r.value as T;
  }

  /** Every dataset in the file, depth first, following each group once (recursive links cannot loop). */
  listDatasets(): DatasetListing[] {
    return this.call('listing datasets', undefined, () => {
      const out: DatasetListing[] = [];
      // Depth and count limits: hard links can make a group its own descendant.
      let visited = 0;
      const walk = (group: H5Group, prefix: string, depth: number): void => {
        if (depth > 16) return;
        for (const name of group.keys()) {
          if (++visited > 100_000) return;
          const key = prefix ? `${prefix}/${name}` : name;
          const entity = group.get(name);
          if (entity instanceof h5wasm.Group) walk(entity, key, depth + 1);
          else if (entity instanceof h5wasm.Dataset) out.push({ key, shape: readShape(entity), typeName: describeH5Type(entity.metadata) });
        }
      };
      walk(this.handle, '', 0);
      return out;
    });
  }

  private dataset(key: string): H5Dataset | null {
    return this.call('opening dataset', key, () => {
      const parts = key.split('/').filter(Boolean);
      let group: H5Group = this.handle;
      for (let i = 0; i < parts.length; i++) {
        const name = parts[i]!;
        if (!group.keys().includes(name)) return null;
        const entity = group.get(name);
        if (i === parts.length - 1) return entity instanceof h5wasm.Dataset ? entity : null;
        if (!(entity instanceof h5wasm.Group)) return null;
        group = entity;
      }
      return null;
    });
  }

  has(key: string): boolean {
    return this.dataset(key) !== null;
  }

  /** Open a dataset or fail with the list of datasets that do exist. */
  private require(key: string): H5Dataset {
    const ds = this.dataset(key);
    if (!ds) {
      const existing = this.listDatasets().map((d) => d.key);
      throw new LazyLabelError(`dataset not found`, {
        code: 'dataset-missing', file: this.path, dataset: key,
        hint: existing.length ? `datasets in this file: ${existing.join(', ')}; pass the right one with the key option or path:key` : 'the file holds no datasets',
      });
    }
    return ds;
  }

  info(key: string): DatasetInfo {
    const ds = this.require(key);
    return this.call('reading dataset metadata', key, () => {
      const meta = ds.metadata;
      return {
        file: this.path,
        key,
        shape: readShape(ds),
        dtype: dtypeFromH5(meta),
        typeName: describeH5Type(meta),
        chunks: meta.chunks ?? null,
        filters: ds.filters.map((f) => f.name),
      };
    });
  }

  /** Attributes with their stored element types kept (typed arrays stay typed), so copying them round-trips. */
  attrs(key: string): Record<string, unknown> {
    const ds = this.require(key);
    return this.call('reading attributes', key, () => {
      const out: Record<string, unknown> = {};
      for (const name of Object.keys(ds.attrs)) {
        try {
          out[name] = ds.get_attribute(name, false);
        } catch {
          // an attribute of a type h5wasm cannot decode is skipped, not fatal
        }
      }
      return out;
    });
  }

  /**
   * Read rows [start, end) along the first axis (all of the other axes).
   * 64-bit integers are widened to float64: exact for every value a label volume can hold (|v| < 2^53).
   */
  readSlab(key: string, start: number, end: number): NumericArray {
    const ds = this.require(key);
    const data = this.call('reading data', key, () => (readShape(ds).length === 0 ? ds.value : ds.slice([[start, end]])));
    return toNumericArray(data, this.path, key);
  }

  /**
   * Read the hyperslab [starts[i], ends[i]) on every axis, flattened in C order (last axis fastest).
   * 64-bit integers are widened to float64, as in `readSlab`.
   */
  readBox(key: string, starts: number[], ends: number[]): NumericArray {
    const ds = this.require(key);
    const data = this.call('reading data', key, () => ds.slice(starts.map((s, i): [number, number] => [s, ends[i]!])));
    return toNumericArray(data, this.path, key);
  }

  /** Read a small dataset whole (e.g. `info`). */
  readAll(key: string): { shape: number[]; data: NumericArray; dtype: DType | null } {
    const ds = this.require(key);
    const shape = readShape(ds);
    const data = this.call('reading data', key, () => ds.value);
    return { shape, data: toNumericArray(data, this.path, key), dtype: dtypeFromH5(ds.metadata) };
  }
}

/** h5wasm type string for a typed-array attribute value, or null for anything else. */
function typedAttrDtype(value: unknown): string | null {
  if (value instanceof Float64Array) return '<d';
  if (value instanceof Float32Array) return '<f';
  if (value instanceof BigInt64Array) return '<q';
  if (value instanceof BigUint64Array) return '<Q';
  if (value instanceof Int32Array) return '<i';
  if (value instanceof Uint32Array) return '<I';
  if (value instanceof Int16Array) return '<h';
  if (value instanceof Uint16Array) return '<H';
  if (value instanceof Int8Array) return '<b';
  if (value instanceof Uint8Array) return '<B';
  return null;
}

function toNumericArray(data: unknown, file: string, key: string): NumericArray {
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
    const out = new Float64Array(data.length);
    for (let i = 0; i < data.length; i++) out[i] = Number(data[i]);
    return out;
  }
  if (ArrayBuffer.isView(data) && !(data instanceof DataView)) return data as NumericArray;
  if (typeof data === 'number') return Float64Array.of(data);
  if (typeof data === 'bigint') return Float64Array.of(Number(data));
  if (typeof data === 'boolean') return Uint8Array.of(data ? 1 : 0);
  throw new LazyLabelError('dataset does not hold numbers', { code: 'bad-dtype', file, dataset: key, hint: 'labels and raw data must be integer, boolean or float arrays' });
}

/** Open, use and always close a source. */
export async function withH5<T>(path: string, fn: (src: H5Source) => T | Promise<T>): Promise<T> {
  const src = await H5Source.open(path);
  try {
    return await fn(src);
  } finally {
    src.close();
  }
}

export interface CreateDatasetOptions {
  shape: number[];
  dtype: Exclude<DTypeName, 'bool'>;
  /** Chunk shape; defaults to a ~1 MiB chunk. */
  chunks?: number[];
  /** gzip level 0-9; 0 = no compression. Default 4 (h5py's). */
  gzip?: number;
}

/** Pick a chunk shape of roughly `targetBytes`, shrinking the leading axes first (like h5py's guess). */
export function defaultChunks(shape: number[], bytesPerElement: number, targetBytes = 1 << 20): number[] {
  const chunks = shape.map((n) => Math.max(1, n));
  let i = 0;
  while (chunks.reduce((a, b) => a * b, bytesPerElement) > targetBytes && chunks.some((c) => c > 1)) {
    const axis = i % chunks.length;
    if (chunks[axis]! > 1) chunks[axis] = Math.ceil(chunks[axis]! / 2);
    i++;
  }
  return chunks;
}

/** A dataset being written slab by slab along its first axis. */
export class SlabWriter {
  private written = 0;
  constructor(private readonly ds: H5Dataset, readonly shape: number[], private readonly path: string, readonly key: string) {}

  /** Append rows; slabs must arrive in order, so a partially written dataset is never mistaken for a whole one. */
  write(data: NumericArray | BigInt64Array): void {
    const rowSize = this.shape.slice(1).reduce((a, b) => a * b, 1);
    const rows = rowSize === 0 ? 0 : data.length / rowSize;
    if (!Number.isInteger(rows)) throw new Error(`slab of ${data.length} values is not a whole number of rows of ${rowSize}`);
    const end = this.written + rows;
    const r = withDiagnostics(() => {
      this.ds.resize([end, ...this.shape.slice(1)]);
      this.ds.write_slice([[this.written, end]], data);
    });
    if (r.error !== undefined || r.diagnostics.length) {
      throw new LazyLabelError(`writing data failed: ${explainDiagnostics(r.diagnostics) || String(r.error)}`, { code: 'write-failed', file: this.path, dataset: this.key, hint: 'check free disk space and permissions' });
    }
    this.written = end;
  }

  get rowsWritten(): number {
    return this.written;
  }
}

/** A new HDF5 file opened for writing (callers write to a temporary path and rename; see io/atomic). */
export class H5Sink {
  private constructor(readonly path: string, private readonly handle: H5FileHandle) {}

  static async create(path: string): Promise<H5Sink> {
    await initHdf5();
    // 'x' fails if the file exists: the atomic layer chose a fresh name, so existing means a bug or a race.
    const r = withDiagnostics(() => new h5wasm.File(path, 'x', { libver: ['earliest', 'v110'] }));
    if (r.error !== undefined || r.diagnostics.length) {
      throw new LazyLabelError(`cannot create HDF5 file: ${explainDiagnostics(r.diagnostics) || String(r.error)}`, { code: 'write-failed', file: path, hint: 'check that the folder exists and is writable' });
    }
    return new H5Sink(path, r.value!);
  }

  private ensureGroups(key: string): { parent: H5Group; name: string } {
    const parts = key.split('/').filter(Boolean);
    let group: H5Group = this.handle;
    for (const part of parts.slice(0, -1)) {
      group = group.keys().includes(part) ? (group.get(part) as H5Group) : group.create_group(part);
    }
    return { parent: group, name: parts[parts.length - 1]! };
  }

  /** Create an (initially empty, growable along axis 0) chunked dataset to be filled by `SlabWriter.write`. */
  createDataset(key: string, opts: CreateDatasetOptions): SlabWriter {
    const bytes = opts.dtype.endsWith('64') ? 8 : opts.dtype.endsWith('32') ? 4 : opts.dtype.endsWith('16') ? 2 : 1;
    const chunks = opts.chunks ?? defaultChunks(opts.shape, bytes);
    const gzip = opts.gzip ?? 4;
    const r = withDiagnostics(() => {
      const { parent, name } = this.ensureGroups(key);
      return parent.create_dataset({
        name,
        data: new (opts.dtype.endsWith('64') && opts.dtype !== 'float64' ? (opts.dtype === 'int64' ? BigInt64Array : BigUint64Array) : Uint8Array)(0) as never,
        shape: [0, ...opts.shape.slice(1)],
        maxshape: opts.shape,
        chunks: chunks.map((c, i) => Math.min(c, Math.max(1, opts.shape[i]!))),
        dtype: H5_TYPE_STRING[opts.dtype],
        ...(gzip > 0 ? { compression: 'gzip' as const, compression_opts: gzip } : {}),
      });
    });
    if (r.error !== undefined || r.diagnostics.length) {
      throw new LazyLabelError(`cannot create dataset: ${explainDiagnostics(r.diagnostics) || String(r.error)}`, { code: 'write-failed', file: this.path, dataset: key });
    }
    return new SlabWriter(r.value!, opts.shape, this.path, key);
  }

  /** Write a small array in one go (e.g. `info`), contiguous. */
  writeSmall(key: string, shape: number[], dtype: Exclude<DTypeName, 'bool'>, data: NumericArray | BigInt64Array): void {
    const r = withDiagnostics(() => {
      const { parent, name } = this.ensureGroups(key);
      parent.create_dataset({ name, data: data as never, shape, dtype: H5_TYPE_STRING[dtype] });
    });
    if (r.error !== undefined || r.diagnostics.length) {
      throw new LazyLabelError(`cannot write dataset: ${explainDiagnostics(r.diagnostics) || String(r.error)}`, { code: 'write-failed', file: this.path, dataset: key });
    }
  }

  /**
   * Attach attributes. Typed arrays keep their element type (what `H5Source.attrs` returns), numbers and
   * strings are stored as scalars, plain number arrays as int64 when all integral else float64, anything else as JSON text.
   */
  setAttrs(key: string, attrs: Record<string, unknown>): void {
    const r = withDiagnostics(() => {
      const target = key === '' || key === '/' ? this.handle : (this.handle.get(key) as H5Dataset | H5Group);
      for (const [name, value] of Object.entries(attrs)) {
        const typed = typedAttrDtype(value);
        if (typed) target.create_attribute(name, value as never, [(value as ArrayLike<unknown>).length], typed);
        else if (typeof value === 'number' || typeof value === 'string') target.create_attribute(name, value);
        else if (typeof value === 'bigint') target.create_attribute(name, BigInt64Array.of(value), [], '<q');
        else if (Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === 'number')) {
          if (value.every((v) => Number.isInteger(v))) target.create_attribute(name, BigInt64Array.from(value.map((v) => BigInt(v))), [value.length], '<q');
          else target.create_attribute(name, Float64Array.from(value), [value.length], '<d');
        } else if (Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === 'string')) {
          target.create_attribute(name, value as string[]);
        } else if (value !== undefined && value !== null) {
          target.create_attribute(name, JSON.stringify(value));
        }
      }
    });
    if (r.error !== undefined || r.diagnostics.length) {
      throw new LazyLabelError(`cannot write attributes: ${explainDiagnostics(r.diagnostics) || String(r.error)}`, { code: 'write-failed', file: this.path, dataset: key });
    }
  }

  close(): void {
    withDiagnostics(() => {
      this.handle.flush();
      this.handle.close();
    });
  }
}
