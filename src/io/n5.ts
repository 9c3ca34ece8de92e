/**
 * A small N5 reader (https://github.com/saalfeldlab/n5, format 2.x / 4.x on the file system).
 *
 * Conventions, checked against what zarr-python's N5Store and the N5 spec (Java N5, z5py) write:
 *  - `attributes.json` gives `dimensions` and `blockSize` in N5 (Fortran) order: fastest axis first, i.e. the
 *    reverse of the C-order shape numpy shows. We reverse them, so `shape`/`chunks` here are C order.
 *  - A block at C-order grid position (z, y, x) lives at `x/y/z` under the dataset folder.
 *  - Each block: uint16 BE mode, uint16 BE ndim, ndim × uint32 BE block size (N5 order), [mode 1: uint32 BE
 *    element count], then the (optionally compressed) elements, big-endian, fastest N5 axis first, which is
 *    exactly C order for the reversed shape.
 *  - Edge blocks are truncated by the spec (Java N5, z5py) but written full-size, zero-padded, by zarr's N5Store;
 *    the size in each block header tells which, so both read correctly.
 *  - A block that does not exist reads as 0 (N5 has no fill value).
 */
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { LazyLabelError } from '../errors.js';
import { dtype as makeDtype, typedArrayFor, type DType, type DTypeName, type NumericArray } from './dtype.js';
import { checkBox, listContainerArrays, checkSlab, chunksOverlapping, copyRegion, mapLimited, product, slabBox, type VolumeReader } from './volume.js';

const BLOCKS_IN_FLIGHT = 8;
const N5_KEYWORDS = new Set(['n5', 'dimensions', 'blockSize', 'dataType', 'compression', 'compressionType']);
const DATA_TYPES: Record<string, DTypeName> = {
  uint8: 'uint8', uint16: 'uint16', uint32: 'uint32', uint64: 'uint64',
  int8: 'int8', int16: 'int16', int32: 'int32', int64: 'int64',
  float32: 'float32', float64: 'float64',
};
const BYTES: Record<DTypeName, number> = {
  uint8: 1, int8: 1, bool: 1, uint16: 2, int16: 2, uint32: 4, int32: 4, float32: 4, uint64: 8, int64: 8, float64: 8,
};

function readJson(file: string): Record<string, unknown> | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  try {
    const v = JSON.parse(text) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  } catch {
    throw new LazyLabelError('attributes.json is not valid JSON', { code: 'corrupt', file, hint: 'the N5 metadata is damaged' });
  }
}

function isDataset(attrs: Record<string, unknown> | null): boolean {
  return !!attrs && Array.isArray(attrs['dimensions']);
}

/** Dataset paths under an N5 root (folders whose attributes.json has `dimensions`), for error hints. */
export function listN5Datasets(root: string, limit = 200): string[] {
  return listContainerArrays(root, (dir) => {
    try {
      return isDataset(readJson(path.join(dir, 'attributes.json')));
    } catch {
      return false; // unreadable metadata: not listed
    }
  }, limit);
}

function missing(file: string, key: string, message: string): LazyLabelError {
  const datasets = listN5Datasets(file);
  return new LazyLabelError(message, {
    code: 'dataset-missing', file, dataset: key || undefined,
    hint: datasets.length
      ? `datasets in this N5: ${datasets.map((d) => d || '(root)').join(', ')}; pass the right one with the key option or path:key`
      : 'the N5 container holds no datasets',
  });
}

function intList(v: unknown): number[] | null {
  return Array.isArray(v) && v.every((x) => Number.isInteger(x) && x >= 0) ? (v as number[]) : null;
}

type Compression = { type: 'raw' } | { type: 'gzip' };

function parseCompression(attrs: Record<string, unknown>, file: string, key: string): Compression {
  const c = attrs['compression'];
  // format 1.x wrote "compressionType": "gzip"
  const type = c && typeof c === 'object' ? (c as Record<string, unknown>)['type'] : attrs['compressionType'] ?? 'raw';
  if (type === 'raw' || type === 'gzip') return { type };
  throw new LazyLabelError(`N5 compression '${String(type)}' is not supported`, {
    code: 'unsupported-format', file, dataset: key || undefined, hint: 'lazylabel reads raw and gzip N5 blocks; re-save the dataset with gzip or raw compression',
  });
}

class N5Volume implements VolumeReader {
  readonly format = 'n5' as const;
  readonly dtype: DType | null;
  readonly typeName: string;
  private readonly dir: string;

  constructor(
    readonly file: string, readonly key: string, readonly shape: number[], readonly chunks: number[],
    dataType: string, private readonly compression: Compression, private readonly attributes: Record<string, unknown>,
  ) {
    this.dir = path.join(file, key);
    this.typeName = dataType;
    const name = DATA_TYPES[dataType];
    this.dtype = name ? makeDtype(name) : null;
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
    if (!this.dtype) {
      throw new LazyLabelError(`N5 datasets of type ${this.typeName} cannot be read as a volume`, { code: 'bad-dtype', file: this.file, dataset: this.key || undefined, hint: 'labels and raw data must be integer or float arrays' });
    }
    const outShape = starts.map((s, i) => ends[i]! - s);
    const out = typedArrayFor(this.dtype.name, product(outShape)); // zeros: what a missing block holds
    if (out.length === 0) return out;
    const positions = [...chunksOverlapping(this.chunks, starts, ends)];
    await mapLimited(positions, BLOCKS_IN_FLIGHT, async (pos) => {
      const block = await this.readBlock(pos);
      if (!block) return;
      const origin = pos.map((p, i) => p * this.chunks[i]!);
      const lo = origin.map((o, i) => Math.max(o, starts[i]!));
      // a block header may claim more than the grid cell (padded edge blocks): never read past the cell or the request
      const hi = origin.map((o, i) => Math.min(o + Math.min(block.shape[i]!, this.chunks[i]!), ends[i]!));
      copyRegion(out, outShape, starts, block.data, block.shape, origin, lo, hi);
    });
    return out;
  }

  /** One block (C-order shape and data) or null when the block file does not exist. */
  private async readBlock(pos: number[]): Promise<{ shape: number[]; data: NumericArray } | null> {
    const rel = pos.slice().reverse().map(String);
    const file = path.join(this.dir, ...rel);
    const where = `block ${rel.join('/')}`;
    let buf: Buffer;
    try {
      buf = await fs.promises.readFile(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new LazyLabelError(`cannot read ${where}: ${(e as Error).message}`, { code: 'corrupt', file: this.file, dataset: this.key || undefined });
    }
    const corrupt = (why: string): LazyLabelError =>
      new LazyLabelError(`${where} is damaged: ${why}`, { code: 'corrupt', file: this.file, dataset: this.key || undefined, hint: 'the block file is truncated or damaged; re-export the dataset from its source' });
    const ndim = this.shape.length;
    if (buf.length < 4) throw corrupt('shorter than its header');
    const mode = buf.readUInt16BE(0);
    if (buf.readUInt16BE(2) !== ndim) throw corrupt(`header says ${buf.readUInt16BE(2)} dimensions, the dataset has ${ndim}`);
    let offset = 4 + 4 * ndim;
    if (buf.length < offset + (mode === 1 ? 4 : 0)) throw corrupt('shorter than its header');
    const sizesN5: number[] = [];
    for (let i = 0; i < ndim; i++) sizesN5.push(buf.readUInt32BE(4 + 4 * i));
    const shape = sizesN5.reverse();
    let count = product(shape);
    if (mode === 1) {
      count = buf.readUInt32BE(offset);
      offset += 4;
      if (count < product(shape)) throw corrupt(`holds ${count} elements for a ${shape.join('×')} block`);
    } else if (mode === 2) {
      throw new LazyLabelError(`${where} is an object block (mode 2)`, { code: 'unsupported-format', file: this.file, dataset: this.key || undefined, hint: 'only numeric N5 datasets can be read as volumes' });
    } else if (mode !== 0) {
      throw corrupt(`unknown block mode ${mode}`);
    }
    let body: Buffer = buf.subarray(offset);
    if (this.compression.type === 'gzip') {
      try {
        // gzip framing (default) or plain zlib (`"useZlib": true`): tell them apart by the gzip magic
        body = body[0] === 0x1f && body[1] === 0x8b ? zlib.gunzipSync(body) : zlib.inflateSync(body);
      } catch (e) {
        throw corrupt(`gzip data cannot be inflated (${(e as Error).message})`);
      }
    }
    const name = this.dtype!.name;
    const bytes = BYTES[name];
    const elements = product(shape);
    if (body.length < elements * bytes) throw corrupt(`${body.length} bytes of data for ${elements} elements of ${name}`);
    // own, aligned copy, then big-endian → native in place
    const raw = new Uint8Array(elements * bytes);
    raw.set(body.subarray(0, elements * bytes));
    const view = Buffer.from(raw.buffer, 0, raw.length);
    if (bytes === 2) view.swap16();
    else if (bytes === 4) view.swap32();
    else if (bytes === 8) view.swap64();
    return { shape, data: typedView(name, raw.buffer, elements) };
  }

  attrs(): Record<string, unknown> {
    return { ...this.attributes };
  }

  close(): void {
    // block files are opened per read
  }
}

function typedView(name: DTypeName, buffer: ArrayBuffer, n: number): NumericArray {
  switch (name) {
    case 'int8': return new Int8Array(buffer, 0, n);
    case 'uint8': case 'bool': return new Uint8Array(buffer, 0, n);
    case 'int16': return new Int16Array(buffer, 0, n);
    case 'uint16': return new Uint16Array(buffer, 0, n);
    case 'int32': return new Int32Array(buffer, 0, n);
    case 'uint32': return new Uint32Array(buffer, 0, n);
    case 'float32': return new Float32Array(buffer, 0, n);
    case 'float64': return new Float64Array(buffer, 0, n);
    case 'int64': return Float64Array.from(new BigInt64Array(buffer, 0, n), Number);
    case 'uint64': return Float64Array.from(new BigUint64Array(buffer, 0, n), Number);
  }
}

/**
 * Open the N5 dataset `key` under the container folder `file` (or `file` itself when it is a dataset folder).
 * Without a key, a container holding exactly one dataset opens that one.
 */
export async function openN5(file: string, key?: string): Promise<VolumeReader> {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch {
    throw new LazyLabelError('N5 folder not found', { code: 'file-missing', file });
  }
  if (!stat.isDirectory()) throw new LazyLabelError('an N5 container must be a folder', { code: 'unsupported-format', file });
  let k = (key ?? '').replace(/^\/+|\/+$/g, '');
  let attrs = readJson(path.join(file, k, 'attributes.json'));
  if (!k && !isDataset(attrs)) {
    const all = listN5Datasets(file);
    if (all.length !== 1) throw missing(file, k, all.length ? 'no dataset named; the N5 container holds several' : 'the N5 container holds no datasets');
    k = all[0]!;
    attrs = readJson(path.join(file, k, 'attributes.json'));
  }
  if (!isDataset(attrs)) {
    throw missing(file, k, fs.existsSync(path.join(file, k)) ? 'is an N5 group, not a dataset' : 'dataset not found');
  }
  const a = attrs!;
  const dims = intList(a['dimensions']);
  const block = intList(a['blockSize']);
  const dataType = a['dataType'];
  if (!dims || !block || block.length !== dims.length || block.some((b) => b < 1) || typeof dataType !== 'string') {
    throw new LazyLabelError('attributes.json needs dimensions, blockSize (same length, ≥ 1) and dataType', {
      code: 'corrupt', file, dataset: k || undefined, hint: 'the N5 metadata is damaged',
    });
  }
  const compression = parseCompression(a, file, k);
  const user: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(a)) if (!N5_KEYWORDS.has(name)) user[name] = value;
  // N5 lists axes fastest first; C order is the reverse
  return new N5Volume(file, k, dims.slice().reverse(), block.slice().reverse(), dataType, compression, user);
}
