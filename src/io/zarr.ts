/**
 * zarr v2 and v3 volumes (incl. OME-Zarr multiscale images, sharded v3 arrays) through zarrita, on the local
 * file system. zarrita fetches only the chunks (or inner chunks of shards) that overlap a request.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as zarr from 'zarrita';
import FileSystemStore from '@zarrita/storage/fs';
import { LazyLabelError } from '../errors.js';
import { dtype as makeDtype, typedArrayFor, type DType, type DTypeName, type NumericArray } from './dtype.js';
import { checkBox, listContainerArrays, checkSlab, mapLimited, product, slabBox, stridesOf, type VolumeReader } from './volume.js';

type ZArray = zarr.Array<zarr.DataType, FileSystemStore>;
type ZGroup = zarr.Group<FileSystemStore>;

/** Chunks decoded at once per read: bounds the compressed + decoded chunks held in memory beside the output. */
const CHUNKS_IN_FLIGHT = 8;

const DTYPES: Record<string, DTypeName> = {
  int8: 'int8', int16: 'int16', int32: 'int32', int64: 'int64',
  uint8: 'uint8', uint16: 'uint16', uint32: 'uint32', uint64: 'uint64',
  float32: 'float32', float64: 'float64', bool: 'bool',
};

function hintFor(e: unknown): string {
  const cause = (e as { cause?: unknown }).cause;
  const parts = [(e as Error)?.message ?? String(e)];
  if (cause instanceof Error && cause.message && !parts[0]!.includes(cause.message)) parts.push(cause.message);
  return parts.join(': ');
}

function translate(e: unknown, file: string, key: string, what: string): LazyLabelError {
  if (e instanceof LazyLabelError) return e;
  if (zarr.isZarritaError(e, 'UnknownCodecError')) {
    return new LazyLabelError(`${what}: the array uses the codec '${e.codec}', which lazylabel cannot decode`, {
      code: 'unsupported-format', file, dataset: key || undefined, hint: 're-save the array with gzip, zlib, blosc or zstd compression',
    });
  }
  if (zarr.isZarritaError(e, 'InvalidMetadataError') || e instanceof SyntaxError) {
    return new LazyLabelError(`${what}: invalid zarr metadata (${hintFor(e)})`, { code: 'corrupt', file, dataset: key || undefined, hint: 'the .zarray / zarr.json is damaged or not a zarr array lazylabel can read' });
  }
  if (zarr.isZarritaError(e, 'UnsupportedError')) {
    return new LazyLabelError(`${what}: ${hintFor(e)}`, { code: 'unsupported-format', file, dataset: key || undefined });
  }
  return new LazyLabelError(`${what} failed: ${hintFor(e)}`, {
    code: 'corrupt', file, dataset: key || undefined, hint: 'a chunk is truncated or damaged; re-export the array from its source',
  });
}

async function openNode(store: FileSystemStore, key: string): Promise<ZArray | ZGroup | null> {
  const loc = key ? zarr.root(store).resolve(key) : zarr.root(store);
  try {
    return (await zarr.open(loc)) as ZArray | ZGroup;
  } catch (e) {
    if (zarr.isZarritaError(e, 'NotFoundError')) return null;
    throw e;
  }
}

function isArray(node: ZArray | ZGroup): node is ZArray {
  return node instanceof zarr.Array;
}

interface Multiscale {
  datasets?: { path?: unknown }[];
}

/** OME-NGFF multiscales: `multiscales` in the group attributes (0.4, zarr v2) or `ome.multiscales` (0.5, zarr v3). */
function multiscalesOf(attrs: Record<string, unknown>): Multiscale[] | null {
  const direct = attrs['multiscales'];
  if (Array.isArray(direct)) return direct as Multiscale[];
  const ome = attrs['ome'];
  if (ome && typeof ome === 'object' && Array.isArray((ome as Record<string, unknown>)['multiscales'])) {
    return (ome as Record<string, unknown>)['multiscales'] as Multiscale[];
  }
  return null;
}

/** Array paths under a zarr folder (v2 `.zarray` or v3 `zarr.json` with node_type array), for error hints. */
export function listZarrArrays(root: string, limit = 200): string[] {
  return listContainerArrays(root, (dir) => {
    if (fs.existsSync(path.join(dir, '.zarray'))) return true;
    try {
      const v3 = path.join(dir, 'zarr.json');
      return fs.existsSync(v3) && (JSON.parse(fs.readFileSync(v3, 'utf8')) as { node_type?: string }).node_type === 'array';
    } catch {
      return false; // unreadable metadata: not listed
    }
  }, limit);
}

function missing(file: string, key: string, message: string): LazyLabelError {
  const arrays = listZarrArrays(file);
  return new LazyLabelError(message, {
    code: 'dataset-missing', file, dataset: key || undefined,
    hint: arrays.length
      ? `arrays in this zarr: ${arrays.map((a) => a || '(root)').join(', ')}; pass the right one with the key option or path:key`
      : 'the zarr holds no arrays',
  });
}

/**
 * Resolve a key to an array: an array as is; a group with OME-Zarr multiscales → its level 0
 * (`multiscales[0].datasets[0].path`); with no key, a group holding exactly one array → that array.
 */
async function resolveArray(store: FileSystemStore, file: string, key: string, keyGiven: boolean): Promise<{ array: ZArray; key: string; group?: ZGroup }> {
  const node = await openNode(store, key);
  if (!node) throw missing(file, key, keyGiven ? 'array not found' : 'no zarr array or group here');
  if (isArray(node)) return { array: node, key };
  const scales = multiscalesOf(node.attrs as Record<string, unknown>);
  const level0 = scales?.[0]?.datasets?.[0]?.path;
  if (scales) {
    if (typeof level0 !== 'string') {
      throw new LazyLabelError('OME-Zarr multiscales lists no datasets', { code: 'corrupt', file, dataset: key || undefined, hint: 'multiscales[0].datasets[0].path should name the full-resolution array' });
    }
    const sub = key ? `${key}/${level0}` : level0;
    const arr = await openNode(store, sub);
    if (!arr || !isArray(arr)) throw missing(file, sub, 'OME-Zarr level 0 array not found');
    return { array: arr, key: sub, group: node };
  }
  if (!keyGiven) {
    const arrays = listZarrArrays(file);
    if (arrays.length === 1) {
      const arr = await openNode(store, arrays[0]!);
      if (arr && isArray(arr)) return { array: arr, key: arrays[0]! };
    }
    throw missing(file, key, arrays.length ? 'no array named; the zarr holds several' : 'the zarr holds no arrays');
  }
  throw missing(file, key, 'is a zarr group, not an array');
}

/** BigInt → Float64 (exact below 2^53), bool → Uint8; other typed arrays pass through. */
function toNumeric(data: unknown, file: string, key: string, typeName: string): NumericArray {
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
    const out = new Float64Array(data.length);
    for (let i = 0; i < data.length; i++) out[i] = Number(data[i]);
    return out;
  }
  if (data instanceof zarr.BoolArray) return new Uint8Array(data.buffer, data.byteOffset, data.length);
  if (
    data instanceof Int8Array || data instanceof Uint8Array || data instanceof Int16Array || data instanceof Uint16Array ||
    data instanceof Int32Array || data instanceof Uint32Array || data instanceof Float32Array || data instanceof Float64Array
  ) return data;
  throw toNumericError(file, key, typeName);
}

function toNumericError(file: string, key: string, typeName: string): LazyLabelError {
  return new LazyLabelError(`arrays of type ${typeName} cannot be read as a volume`, { code: 'bad-dtype', file, dataset: key || undefined, hint: 'labels and raw data must be integer, boolean or float32/float64 arrays' });
}

/** zarrita returns F-ordered output for F-ordered arrays: copy into C order. */
function toCOrder(data: NumericArray, shape: number[], stride: number[]): NumericArray {
  const c = stridesOf(shape);
  if (shape.length === 0 || stride.every((s, i) => s === c[i] || shape[i]! <= 1)) return data;
  const out = new (data.constructor as new (n: number) => NumericArray)(data.length);
  const n = shape.length;
  const idx = new Array<number>(n).fill(0);
  for (let o = 0; o < out.length; o++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += idx[i]! * stride[i]!;
    out[o] = data[s]!;
    for (let axis = n - 1; axis >= 0; axis--) {
      if (++idx[axis]! < shape[axis]!) break;
      idx[axis] = 0;
    }
  }
  return out;
}

function limitedQueue(limit: number): zarr.GetOptions['createQueue'] {
  return () => {
    const tasks: (() => Promise<void>)[] = [];
    return { add: (fn: () => Promise<void>) => void tasks.push(fn), onIdle: () => mapLimited(tasks, limit, (t) => t()) };
  };
}

class ZarrVolume implements VolumeReader {
  readonly format = 'zarr' as const;
  readonly shape: number[];
  readonly dtype: DType | null;
  readonly typeName: string;
  readonly chunks: number[] | null;

  constructor(readonly file: string, readonly key: string, private readonly array: ZArray, private readonly group?: ZGroup) {
    this.shape = array.shape.slice();
    this.typeName = String(array.dtype);
    const name = DTYPES[this.typeName];
    this.dtype = name ? makeDtype(name) : null;
    this.chunks = array.chunks.slice();
  }

  async readSlab(start: number, end: number): Promise<NumericArray> {
    checkSlab(this.shape, start, end, this.file, this.key);
    const { starts, ends } = slabBox(this.shape, start, end);
    return this.read(starts, ends);
  }

  async readBox(starts: number[], ends: number[]): Promise<NumericArray> {
    checkBox(this.shape, starts, ends, this.file, this.key);
    return this.read(starts, ends);
  }

  private async read(starts: number[], ends: number[]): Promise<NumericArray> {
    const outShape = starts.map((s, i) => ends[i]! - s);
    if (this.shape.length > 0 && product(outShape) === 0) {
      if (!this.dtype) throw toNumericError(this.file, this.key, this.typeName);
      return typedArrayFor(this.dtype.name, 0);
    }
    let got: unknown;
    try {
      got = this.shape.length === 0
        ? await zarr.get(this.array, null, { createQueue: limitedQueue(CHUNKS_IN_FLIGHT) })
        : await zarr.get(this.array, starts.map((s, i) => zarr.slice(s, ends[i]!)), { createQueue: limitedQueue(CHUNKS_IN_FLIGHT) });
    } catch (e) {
      throw translate(e, this.file, this.key, 'reading data');
    }
    if (this.shape.length === 0) {
      const v = got as number | bigint | boolean;
      return Float64Array.of(typeof v === 'boolean' ? (v ? 1 : 0) : Number(v));
    }
    const chunk = got as zarr.Chunk<zarr.DataType>;
    return toCOrder(toNumeric(chunk.data, this.file, this.key, this.typeName), chunk.shape, chunk.stride);
  }

  /** The array's attributes; for an OME-Zarr level, the group's `multiscales` too (voxel size lives there). */
  attrs(): Record<string, unknown> {
    const own = { ...(this.array.attrs as Record<string, unknown>) };
    if (this.group) {
      const scales = multiscalesOf(this.group.attrs as Record<string, unknown>);
      if (scales && !('multiscales' in own)) own['multiscales'] = scales;
    }
    return own;
  }

  close(): void {
    // the file-system store holds no open handles between reads
  }
}

/** Open the zarr array at `key` inside the zarr folder `file` (see `openVolume` for how a missing key resolves). */
export async function openZarr(file: string, key?: string): Promise<VolumeReader> {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch {
    throw new LazyLabelError('zarr folder not found', { code: 'file-missing', file });
  }
  if (!stat.isDirectory()) {
    throw new LazyLabelError('a zarr store must be a folder', { code: 'unsupported-format', file, hint: 'zipped zarr stores are not supported; unzip it first' });
  }
  const store = new FileSystemStore(path.resolve(file));
  const k = (key ?? '').replace(/^\/+|\/+$/g, '');
  try {
    const { array, key: resolved, group } = await resolveArray(store, file, k, key !== undefined && k !== '');
    return new ZarrVolume(file, resolved, array, group);
  } catch (e) {
    throw translate(e, file, k, 'opening zarr array');
  }
}
