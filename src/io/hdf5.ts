/** HDF5 access on real paths through h5wasm's Node build: read-only sources, slab reads, streamed chunked writes. */
import fs from 'node:fs';
import nodePath from 'node:path';
import h5wasm, { Module as h5Module } from 'h5wasm/node';
import type { Dataset as H5Dataset, File as H5FileHandle, Group as H5Group, Metadata } from 'h5wasm/node';
import { isLazyLabelError, LazyLabelError } from '../errors.js';
import { allowExternalFromEnv, canonicalPath, confined, isInside, resolveExternal, type AccessPolicy } from './guard.js';
import { describeH5Type, dtypeFromH5, H5_TYPE_STRING, type DType, type DTypeName, type NumericArray } from './dtype.js';
import { countInPlaceOn, KERNEL_SCRATCH_BYTES, type WasmMemory } from '../core/countKernel.js';

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

/**
 * The compiled libhdf5 (WebAssembly.Module) of this thread, under this key: a global symbol on the main thread
 * (bin/lazylabel.js starts compiling it while the bundled CLI loads) and a workerData entry in worker threads.
 * The vendored h5wasm of the bundled CLI (scripts/build-cli.js) instantiates it instead of compiling its own.
 */
export const HDF5_MODULE_KEY = 'lazylabel.hdf5WasmModule';

/**
 * workerData for a worker thread that opens HDF5 files: this thread's compiled libhdf5, when there is one (the
 * bundled CLI). V8 shares compiled code between threads, so the worker neither compiles the 3.5 MB module nor the
 * functions this thread already ran. Empty elsewhere (library use: h5wasm compiles as usual).
 */
export async function hdf5WorkerData(): Promise<Record<string, unknown>> {
  const pending = (globalThis as Record<symbol, unknown>)[Symbol.for(HDF5_MODULE_KEY)] as Promise<unknown> | undefined;
  const compiled = pending ? await Promise.resolve(pending).catch(() => null) : null;
  // (WebAssembly is typed only as a namespace here, so its Module class is looked up on globalThis)
  const wasmModule = (globalThis as unknown as { WebAssembly: { Module: abstract new (bytes: never) => object } }).WebAssembly.Module;
  return compiled instanceof wasmModule ? { [HDF5_MODULE_KEY]: compiled } : {};
}

/**
 * libhdf5's WebAssembly.Memory, which the bundled CLI's vendored h5wasm leaves under this global symbol
 * (scripts/build-cli.js; the stock h5wasm exposes only views of it).
 */
const HDF5_MEMORY_KEY = Symbol.for('lazylabel.hdf5Memory');
let kernelHosted = false;

/**
 * Let the counting kernels count `readBoxView` boxes where libhdf5 read them, on its heap, instead of copying each
 * box into their own memory. Only where the memory is known (the bundled CLI); otherwise boxes are copied as before.
 */
function hostCountKernel(): void {
  if (kernelHosted) return;
  kernelHosted = true;
  const memory = (globalThis as Record<symbol, unknown>)[HDF5_MEMORY_KEY] as WasmMemory | undefined;
  if (!memory || memory.buffer !== h5Module.HEAPU8.buffer) return;
  const scratch = h5Module._malloc(KERNEL_SCRATCH_BYTES);
  if (scratch && !countInPlaceOn(memory, scratch)) h5Module._free(scratch);
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
  // emscripten's own warnings (e.g. "Invalid UTF-8 leading byte" for a garbled name) go through console.error
  const stderrWrite = process.stderr.write;
  process.stderr.write = ((chunk: unknown, ...rest: unknown[]): boolean => {
    captured.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('utf8'));
    const cb = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
    cb?.();
    return true;
  }) as typeof process.stderr.write;
  try {
    return { value: fn(), diagnostics: minorMessages(captured.join('')) };
  } catch (error) {
    return { error, diagnostics: minorMessages(captured.join('')) };
  } finally {
    (fs as { writeSync: typeof fs.writeSync }).writeSync = original;
    process.stderr.write = stderrWrite;
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
  if (!stat.isFile()) {
    // a pipe would block the signature read forever; a device has no end
    throw new LazyLabelError('is not a regular file (a pipe, socket or device)', { code: 'not-hdf5', file: path, hint: 'label and raw volumes must be HDF5 files, as written by h5py' });
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

/** Options for `H5Source.open`. */
export interface H5OpenOptions {
  /**
   * Follow external links, virtual-dataset sources and external storage wherever they point. Default:
   * refuse those outside the file's own folder and `allowedDirs` (the environment variable
   * `LAZYLABEL_ALLOW_EXTERNAL=1`, which the CLI's `--allow-external` sets, changes the default).
   */
  allowExternal?: boolean;
  /** Folders external references may point into besides the file's own folder (e.g. the manifest's folder). */
  allowedDirs?: string[];
  /** Size limits, overriding `READ_LIMITS` one by one. */
  limits?: Partial<ReadLimits>;
}

/** Sizes checked before anything is allocated, so a damaged or hostile header cannot exhaust memory or time. */
export interface ReadLimits {
  /** Largest single read (slab or box) in bytes. h5wasm's heap stops at 2 GiB and a read holds a copy there. */
  maxReadBytes: number;
  /** Largest `readAll` (meant for small datasets such as `info`). */
  maxSmallReadBytes: number;
  /** Attributes larger than this are skipped by `attrs`. */
  maxAttrBytes: number;
  /** A dataset may declare this many bytes whatever the size of the file that stores it. */
  freeDeclaredBytes: number;
  /**
   * Beyond `freeDeclaredBytes`, a dataset may declare at most this many times the bytes of the files that
   * store it (gzip stops near 1000:1; only never-written chunks go further, i.e. an empty or damaged header).
   */
  maxDeclaredRatio: number;
}

export const READ_LIMITS: Readonly<ReadLimits> = Object.freeze({
  maxReadBytes: 1024 * 1024 * 1024,
  maxSmallReadBytes: 16 * 1024 * 1024,
  maxAttrBytes: 16 * 1024 * 1024,
  freeDeclaredBytes: 256 * 1024 * 1024,
  maxDeclaredRatio: 65536,
});

/** Filters compiled into h5wasm's libhdf5: deflate, shuffle, fletcher32, szip, n-bit, scale-offset. */
const BUILTIN_FILTERS = new Set([1, 2, 3, 4, 5, 6]);

const fmtShape = (s: readonly number[]): string => `(${s.join(', ')})`;

/** Bytes in human units, for messages. */
export function formatBytes(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} bytes` : `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

const fileSize = (p: string): number => {
  try {
    return fs.statSync(p).size;
  } catch {
    return 0;
  }
};

/** A resolved dataset and the files its data lives in (for the declared-size check). */
interface Resolved {
  ds: H5Dataset;
  meta: Metadata;
  storage: string[];
}

type ViewConstructor = { new (buffer: ArrayBufferLike, byteOffset: number, length: number): NumericArray; new (length: number): NumericArray; readonly BYTES_PER_ELEMENT: number };

/** Typed arrays that can view the heap bytes libhdf5 decodes (64-bit integers would need widening; booleans are enums). */
const VIEW_TYPES: Partial<Record<DTypeName, ViewConstructor>> = {
  int8: Int8Array, uint8: Uint8Array, int16: Int16Array, uint16: Uint16Array, int32: Int32Array, uint32: Uint32Array,
  float32: Float32Array, float64: Float64Array,
};

/** A read-only HDF5 file. Always close it (use `withH5`). */
export class H5Source {
  private readonly resolved = new Map<string, Resolved>();
  /** The reused wasm-heap buffer of `readBoxView`. */
  private scratch = { ptr: 0, bytes: 0 };

  private constructor(
    readonly path: string,
    private readonly handle: H5FileHandle,
    private readonly policy: AccessPolicy,
    private readonly limits: ReadLimits,
  ) {}

  static async open(path: string, options: H5OpenOptions = {}): Promise<H5Source> {
    await initHdf5();
    assertHdf5File(path);
    if (wasmBroken) {
      throw new LazyLabelError(`not read: libhdf5 crashed on ${wasmBroken.file} earlier in this run (${wasmBroken.what})`, {
        code: 'not-read', file: path, hint: 'run lazylabel again without the damaged file',
      });
    }
    const policy: AccessPolicy = {
      allowExternal: options.allowExternal ?? allowExternalFromEnv(),
      allowedDirs: [...new Set([nodePath.dirname(nodePath.resolve(path)), nodePath.dirname(canonicalPath(path)), ...(options.allowedDirs ?? []).map((d) => nodePath.resolve(d))])],
    };
    const limits = { ...READ_LIMITS, ...options.limits };
    let refused: string[] = [];
    const opened = withDiagnostics(() => {
      const c = confined(policy, () => {
        const f = new h5wasm.File(path, 'r');
        f.keys(); // h5wasm returns a dead handle instead of throwing: touch it to find out
        return f;
      });
      refused = c.refused;
      if (c.error !== undefined) throw c.error;
      return c.value!;
    });
    if (opened.error === undefined && opened.diagnostics.length === 0 && refused.length === 0) {
      return new H5Source(path, opened.value!, policy, limits);
    }
    if (opened.value) withDiagnostics(() => opened.value!.close());
    if (refused.length) throw refusedError(path, undefined, refused, policy);
    if (isWasmTrap(opened.error)) throw wasmFailure(path, undefined, opened.error);
    const detail = opened.diagnostics.length ? explainDiagnostics(opened.diagnostics) : errorText(opened.error);
    throw new LazyLabelError(`cannot open HDF5 file: ${detail}`, {
      code: 'corrupt', file: path, hint: 'the file is truncated or damaged; re-export it from its source',
    });
  }

  close(): void {
    if (this.scratch.ptr) h5Module._free(this.scratch.ptr);
    this.scratch = { ptr: 0, bytes: 0 };
    withDiagnostics(() => this.handle.close());
  }

  /**
   * Every h5wasm call goes through here: libhdf5's diagnostics are captured, the files it may open are
   * confined to the policy, and whatever it throws becomes a LazyLabelError naming file and dataset.
   */
  private call<T>(what: string, dataset: string | undefined, fn: () => T): T {
    let refused: string[] = [];
    const r = withDiagnostics(() => {
      const c = confined(this.policy, fn);
      refused = c.refused;
      if (c.error !== undefined) throw c.error;
      return c.value as T;
    });
    if (isLazyLabelError(r.error)) throw r.error;
    if (refused.length) throw refusedError(this.path, dataset, refused, this.policy);
    if (isWasmTrap(r.error)) throw wasmFailure(this.path, dataset, r.error);
    // libhdf5 printed an error: the call failed even when h5wasm returned something (a failed H5Dread
    // leaves the buffer uninitialised, and h5wasm ignores the status)
    if (r.error !== undefined || r.diagnostics.length > 0) {
      const detail = r.diagnostics.length ? explainDiagnostics(r.diagnostics) : errorText(r.error);
      throw new LazyLabelError(`${what} failed: ${detail}`, {
        code: 'corrupt', file: this.path, dataset, hint: 'the file is truncated or damaged; re-export it from its source',
      });
    }
    return r.value as T;
  }

  /** Is `target` (a path named inside this file) somewhere libhdf5 may go? */
  private allowed(target: string): boolean {
    return this.policy.allowExternal || isInside(target, this.policy.allowedDirs);
  }

  /** An external link, as `{ file, object }`, or null for any other kind of link. */
  private externalLink(group: H5Group, fullPath: string): { file: string; object: string } | null {
    const link = group.get_external_link(fullPath) as { filename?: string; obj_path?: string } | undefined;
    return link?.filename !== undefined ? { file: link.filename, object: link.obj_path ?? '/' } : null;
  }

  /** Every dataset in the file, depth first, following each group once (recursive links cannot loop). */
  listDatasets(): DatasetListing[] {
    return this.call('listing datasets', undefined, () => {
      const out: DatasetListing[] = [];
      // Hard and soft links can make a group its own descendant: each group is walked once (identified by
      // its object address, what an HDF5 object reference holds), with depth and count limits besides.
      const seen = new Set<string>();
      let visited = 0;
      const walk = (group: H5Group, prefix: string, depth: number): void => {
        if (depth > 256) return;
        const id = Array.from(group.create_reference().ref_data as ArrayLike<number>).join(',');
        if (seen.has(id)) return;
        seen.add(id);
        for (const name of group.keys()) {
          if (++visited > 20_000) return;
          const key = prefix ? `${prefix}/${name}` : name;
          const link = this.externalLink(group, `/${key}`);
          if (link) {
            // listed, never followed: a listing must not open other files
            out.push({ key, shape: [], typeName: `external link to ${link.file}:${link.object}` });
            continue;
          }
          const entity = group.get(name);
          if (entity instanceof h5wasm.Group) walk(entity, key, depth + 1);
          else if (entity instanceof h5wasm.Dataset) out.push({ key, shape: readShape(entity), typeName: describeH5Type(entity.metadata) });
        }
      };
      walk(this.handle, '', 0);
      return out;
    });
  }

  /** Resolve a dataset path part by part, refusing external links that leave the allowed folders. */
  private resolve(key: string): Resolved | null {
    const cached = this.resolved.get(key);
    if (cached) return cached;
    const found = this.call('opening dataset', key, (): Resolved | null => {
      const parts = key.split('/').filter(Boolean);
      let group: H5Group = this.handle;
      let storage = this.path;
      for (let i = 0; i < parts.length; i++) {
        const name = parts[i]!;
        const fullPath = `/${parts.slice(0, i + 1).join('/')}`;
        if (!group.keys().includes(name)) return null;
        const link = this.externalLink(group, fullPath);
        if (link) {
          const target = resolveExternal(storage, link.file);
          if (!this.allowed(target)) {
            throw refusedError(this.path, key, [target], this.policy, `'${fullPath}' is an external link to ${link.file}:${link.object}`);
          }
          if (!fs.existsSync(target)) {
            throw new LazyLabelError(`'${fullPath}' is an external link to ${link.file}:${link.object}, but ${target} does not exist`, {
              code: 'link-broken', file: this.path, dataset: key, hint: 'put the linked file there, or store the data in this file',
            });
          }
          storage = target;
        }
        const entity = group.get(name);
        if (link && !(entity instanceof h5wasm.Dataset || entity instanceof h5wasm.Group)) {
          throw new LazyLabelError(`'${fullPath}' is an external link to ${link.file}:${link.object}, which cannot be opened (not an HDF5 file, or no such object in it)`, {
            code: 'link-broken', file: this.path, dataset: key, hint: 'fix the link target, or store the data in this file',
          });
        }
        const broken = entity as unknown as { type?: string; target?: string } | null;
        if (broken?.type === 'BrokenSoftLink') {
          throw new LazyLabelError(`'${fullPath}' is a soft link to '${broken.target}', which does not exist`, {
            code: 'link-broken', file: this.path, dataset: key, hint: 'the file refers to a dataset it does not hold; re-export it from its source',
          });
        }
        if (i === parts.length - 1) {
          if (!(entity instanceof h5wasm.Dataset)) return null;
          const meta = entity.metadata;
          return { ds: entity, meta, storage: [storage, ...this.virtualSources(key, storage, meta)] };
        }
        if (!(entity instanceof h5wasm.Group)) return null;
        group = entity;
      }
      return null;
    });
    if (found) this.resolved.set(key, found);
    return found;
  }

  /** Source files of a virtual dataset: each must be allowed and present (a missing one would silently read as fill values). */
  private virtualSources(key: string, storage: string, meta: Metadata): string[] {
    const files: string[] = [];
    for (const src of meta.virtual_sources ?? []) {
      if (src.file_name === '.') continue; // a source inside this same file
      const target = resolveExternal(storage, src.file_name);
      if (!this.allowed(target)) {
        throw refusedError(this.path, key, [target], this.policy, `virtual dataset reads from ${src.file_name}:${src.dset_name}`);
      }
      if (!fs.existsSync(target)) {
        throw new LazyLabelError(`virtual dataset reads from ${src.file_name}:${src.dset_name}, but ${target} does not exist (its voxels would silently read as the fill value)`, {
          code: 'link-broken', file: this.path, dataset: key, hint: 'put the source file there, or store the data in this file',
        });
      }
      if (!files.includes(target)) files.push(target);
    }
    return files;
  }

  private dataset(key: string): H5Dataset | null {
    return this.resolve(key)?.ds ?? null;
  }

  has(key: string): boolean {
    return this.dataset(key) !== null;
  }

  /** Open a dataset or fail with the list of datasets that do exist. */
  private require(key: string): Resolved {
    const r = this.resolve(key);
    if (!r) {
      const existing = this.listDatasets().map((d) => d.key);
      throw new LazyLabelError(`dataset not found`, {
        code: 'dataset-missing', file: this.path, dataset: key,
        hint: existing.length ? `datasets in this file: ${existing.join(', ')}; pass the right one with the key option or path:key` : 'the file holds no datasets',
      });
    }
    this.assertPlausible(key, r);
    return r;
  }

  /**
   * Refuse declared sizes no file can back: dimensions that are not exact integers, more elements than
   * 2^53, or (beyond `freeDeclaredBytes`) more than `maxDeclaredRatio` times the bytes stored. Streaming
   * such a dataset would take hours of fill values; it is a damaged header or a hostile file.
   */
  private assertPlausible(key: string, r: Resolved): void {
    const shape = r.meta.shape ?? [];
    const elemBytes = Math.max(1, r.meta.size ?? 1);
    const fail = (why: string, hint: string): never => {
      throw new LazyLabelError(`dataset declares shape ${fmtShape(shape)} of ${describeH5Type(r.meta)}: ${why}`, { code: 'implausible-size', file: this.path, dataset: key, hint });
    };
    if (!shape.every((n) => Number.isSafeInteger(n) && n >= 0)) fail('a dimension is not a valid size', 'the header is damaged; re-export the file from its source');
    const elements = shape.reduce((a, b) => a * b, 1);
    if (elements > Number.MAX_SAFE_INTEGER) fail(`${elements.toExponential(2)} elements, more than can be counted exactly`, 'the header is damaged; re-export the file from its source');
    const declared = elements * elemBytes;
    if (declared <= this.limits.freeDeclaredBytes) return;
    const stored = r.storage.reduce((a, f) => a + fileSize(f), 0);
    if (declared > stored * this.limits.maxDeclaredRatio) {
      fail(`${formatBytes(declared)} of data, but the file${r.storage.length > 1 ? 's' : ''} holding it ${r.storage.length > 1 ? 'have' : 'has'} only ${formatBytes(stored)}`,
        'a volume that sparse is a damaged header or chunks that were never written; re-export it, or write its ignore value (-1) explicitly');
    }
  }

  /** Refuse a read larger than `limit` bytes before anything is allocated. */
  private assertReadSize(key: string, r: Resolved, counts: number[], what: string, limit: number, hint: string): void {
    const bytes = counts.reduce((a, b) => a * Math.max(0, b), 1) * Math.max(1, r.meta.size ?? 1);
    if (bytes > limit) {
      throw new LazyLabelError(`${what} of shape ${fmtShape(r.meta.shape ?? [])} ${describeH5Type(r.meta)} needs ${formatBytes(bytes)}, more than the ${formatBytes(limit)} one read may take`, {
        code: 'too-large', file: this.path, dataset: key, hint,
      });
    }
  }

  /** A data read; a failure on a dataset compressed with a filter this build lacks says so instead of "damaged". */
  private read<T>(key: string, r: Resolved, fn: () => T): T {
    try {
      return this.call('reading data', key, fn);
    } catch (e) {
      if (!isLazyLabelError(e) || e.code !== 'corrupt') throw e;
      let filters: { id: number; name: string }[] = [];
      try {
        filters = this.call('reading filters', key, () => r.ds.filters);
      } catch {
        throw e;
      }
      const missing = filters.filter((f) => !BUILTIN_FILTERS.has(f.id));
      if (!missing.length) throw e;
      throw new LazyLabelError(`the data is compressed with ${missing.map((f) => `${f.name || 'an unnamed filter'} (HDF5 filter ${f.id})`).join(', ')}, which lazylabel cannot decode`, {
        code: 'unsupported-filter', file: this.path, dataset: key, hint: 'rewrite it with gzip, e.g. h5repack -f GZIP=4 in.h5 out.h5, or h5py compression="gzip"',
      });
    }
  }

  info(key: string): DatasetInfo {
    const r = this.require(key);
    return this.call('reading dataset metadata', key, () => ({
      file: this.path,
      key,
      shape: r.meta.shape ?? [],
      dtype: dtypeFromH5(r.meta),
      typeName: describeH5Type(r.meta),
      chunks: r.meta.chunks ?? null,
      filters: r.ds.filters.map((f) => f.name),
    }));
  }

  /** Attributes with their stored element types kept (typed arrays stay typed), so copying them round-trips. */
  attrs(key: string): Record<string, unknown> {
    const { ds } = this.require(key);
    return this.call('reading attributes', key, () => {
      const out: Record<string, unknown> = {};
      const all = ds.attrs;
      for (const name of Object.keys(all)) {
        try {
          const meta = all[name]!.metadata;
          // a damaged attribute header can declare gigabytes: skip it like an undecodable one
          if ((meta.total_size ?? 0) * Math.max(1, meta.size ?? 1) > this.limits.maxAttrBytes) continue;
          out[name] = ds.get_attribute(name, false);
        } catch (e) {
          if (isWasmTrap(e)) throw e;
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
    const r = this.require(key);
    const shape = r.meta.shape ?? [];
    if (shape.length > 0) {
      const rows = Math.max(0, Math.min(end, shape[0]!) - Math.max(0, start));
      this.assertReadSize(key, r, [rows, ...shape.slice(1)], rows === 1 ? 'one row' : `rows ${start}..${end}`, this.limits.maxReadBytes,
        rows <= 1 ? 'a single row along the first axis is too big to stream; store the volume with a smaller extent on the trailing axes' : 'use a smaller --slab-mb');
    }
    const data = this.read(key, r, () => (shape.length === 0 ? r.ds.value : r.ds.slice([[start, end]])));
    return toNumericArray(data, this.path, key);
  }

  /**
   * Read the hyperslab [starts[i], ends[i]) on every axis, flattened in C order (last axis fastest).
   * 64-bit integers are widened to float64, as in `readSlab`.
   */
  readBox(key: string, starts: number[], ends: number[]): NumericArray {
    const r = this.require(key);
    const shape = r.meta.shape ?? [];
    const counts = shape.map((n, i) => Math.max(0, Math.min(ends[i] ?? n, n) - Math.max(0, starts[i] ?? 0)));
    this.assertReadSize(key, r, counts, 'a box', this.limits.maxReadBytes, 'read smaller boxes (smaller tiles or patches)');
    const data = this.read(key, r, () => r.ds.slice(starts.map((s, i): [number, number] => [s, ends[i]!])));
    return toNumericArray(data, this.path, key);
  }

  /**
   * Read the box [starts, ends) into a buffer on the wasm heap that this source reuses, and return a view of
   * it: no copy out of the heap and no allocation per read. The view is valid only until the next call on
   * any H5Source (libhdf5 may grow the heap, which detaches it); count it and drop it. Returns null for
   * element types the view cannot represent (64-bit integers, booleans, non-numeric): use `readBox`.
   */
  readBoxView(key: string, starts: number[], ends: number[]): NumericArray | null {
    const r = this.require(key);
    const shape = r.meta.shape ?? [];
    const dt = dtypeFromH5(r.meta);
    const View = dt ? VIEW_TYPES[dt.name] : undefined;
    if (!View || shape.length === 0) return null;
    const counts = shape.map((n, i) => Math.max(0, Math.min(ends[i] ?? n, n) - Math.max(0, starts[i] ?? 0)));
    this.assertReadSize(key, r, counts, 'a box', this.limits.maxReadBytes, 'use a smaller --slab-mb');
    const n = counts.reduce((a, b) => a * b, 1);
    const bytes = n * View.BYTES_PER_ELEMENT;
    const M = h5Module;
    hostCountKernel();
    if (this.scratch.bytes < bytes) {
      if (this.scratch.ptr) M._free(this.scratch.ptr);
      this.scratch = { ptr: 0, bytes: 0 };
      const ptr = M._malloc(Math.max(bytes, 8));
      if (!ptr) throw new LazyLabelError(`cannot allocate ${formatBytes(bytes)} on the wasm heap`, { code: 'too-large', file: this.path, dataset: key, hint: 'use a smaller --slab-mb' });
      this.scratch = { ptr, bytes };
    }
    if (n === 0) return new View(0);
    const ptr = this.scratch.ptr;
    const status = this.read(key, r, () => M.get_dataset_data(r.ds.file_id, r.ds.path, counts.map(BigInt), starts.map((s) => BigInt(Math.max(0, s))), counts.map(() => 1n), BigInt(ptr)));
    if (typeof status === 'number' && status < 0) {
      throw new LazyLabelError('reading data failed', { code: 'corrupt', file: this.path, dataset: key, hint: 'the file is truncated or damaged; re-export it from its source' });
    }
    // a fresh view after the read: the heap's ArrayBuffer is replaced when wasm memory grows
    return new View(M.HEAPU8.buffer, ptr, n);
  }

  /** Read a small dataset whole (e.g. `info`); anything over `maxSmallReadBytes` (16 MiB by default) is refused. */
  readAll(key: string): { shape: number[]; data: NumericArray; dtype: DType | null } {
    const r = this.require(key);
    const shape = r.meta.shape ?? [];
    this.assertReadSize(key, r, shape, 'the whole dataset', this.limits.maxSmallReadBytes, 'this dataset should be small (like info, shape (2, n_lab)); is it the right one?');
    const data = this.read(key, r, () => r.ds.value);
    return { shape, data: toNumericArray(data, this.path, key), dtype: dtypeFromH5(r.meta) };
  }
}

function errorText(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  // one line, whatever the library put in its message
  return text.split('\n')[0]!.trim() || 'unknown HDF5 error';
}

function refusedError(file: string, dataset: string | undefined, targets: string[], policy: AccessPolicy, what?: string): LazyLabelError {
  const where = policy.allowedDirs.length === 1 ? `the allowed folder ${policy.allowedDirs[0]}` : `the allowed folders (${policy.allowedDirs.join(', ')})`;
  const head = what ? `${what}, outside ${where}` : `refers to ${targets.join(', ')}, outside ${where}`;
  return new LazyLabelError(`${head}: refused`, {
    code: 'external-refused', file, dataset,
    hint: 'external links, virtual datasets and external storage are followed only inside the file\'s folder; pass --allow-external if you trust this file',
  });
}

/** A trap or abort inside the wasm module (WebAssembly.RuntimeError: unreachable, out of bounds, Aborted(...)). */
function isWasmTrap(e: unknown): boolean {
  return e instanceof Error && (e.name === 'RuntimeError' || /^Aborted\(/.test(e.message));
}

/**
 * libhdf5 trapped or aborted inside wasm: its memory can no longer be trusted, so this process opens no
 * further file (a later result could be silently wrong); the batch reports each remaining file as not read.
 */
let wasmBroken: { file: string; what: string } | null = null;
function wasmFailure(file: string, dataset: string | undefined, e: unknown): LazyLabelError {
  wasmBroken ??= { file, what: errorText(e) };
  return new LazyLabelError(`libhdf5 crashed inside WebAssembly: ${errorText(e)}`, {
    code: 'corrupt', file, dataset, hint: 'the file is damaged; re-export it from its source',
  });
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
  private layerStart = 0;
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

  /**
   * Write a box. Boxes come layer by layer along the first axis (every box of rows [a, b) before any row past
   * b): the dataset grows to b with the first box of a layer, so it never looks longer than what was written
   * except within the layer being written.
   */
  writeBox(starts: number[], ends: number[], data: NumericArray | BigInt64Array): void {
    const n = ends.reduce((a, e, i) => a * (e - starts[i]!), 1);
    if (data.length !== n) throw new Error(`box of ${data.length} values does not match its bounds (${n})`);
    const newLayer = starts[0] === this.written;
    if (!newLayer && !(starts[0] === this.layerStart && ends[0] === this.written)) {
      throw new Error(`box rows ${starts[0]}..${ends[0]} out of order (written ${this.written})`);
    }
    const r = withDiagnostics(() => {
      if (newLayer) this.ds.resize([ends[0]!, ...this.shape.slice(1)]);
      this.ds.write_slice(starts.map((s, i): [number, number] => [s, ends[i]!]), data);
    });
    if (r.error !== undefined || r.diagnostics.length) {
      throw new LazyLabelError(`writing data failed: ${explainDiagnostics(r.diagnostics) || String(r.error)}`, { code: 'write-failed', file: this.path, dataset: this.key, hint: 'check free disk space and permissions' });
    }
    if (newLayer) {
      this.layerStart = starts[0]!;
      this.written = ends[0]!;
    }
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
