/**
 * Training cubes from a manifest: metadata up front, voxels loaded lazily under a memory bound.
 *
 * Conventions (ELEKTRONN's, elektronn/training/CNNData.py `_read_images`):
 * * Raw volumes are (x, y, z) / (x, y) or channels-first (ch, x, y, z) / (ch, x, y) in the file.
 *   Patches come back channels-last: [...spatial, ch].
 * * Integer raw (any integer type) is divided by 255, float raw is taken as is (ELEKTRONN: `m = 255`
 *   for every integer dtype, `m = 1` otherwise). So uint8 lands in [0, 1]; float64 raw is rounded to float32.
 * * Labels of any integer (or bool) type become Int32; negative values are "ignore".
 * * The info mask is the file's `info` dataset when the manifest sets `lazy_labels`, otherwise the
 *   default (every class labelled, none absent).
 * * Priority defaults to the label voxel count (ELEKTRONN: `prios.append(l.size)`).
 *
 * Patch coordinates are label coordinates; the raw box is the same box shifted by the cube's `offset`
 * (the position of the labels inside the raw volume). Without a manifest offset, labels smaller than
 * the raw are centred on each axis where the raw is larger (ELEKTRONN's `_stripCubes` assumption).
 *
 * Memory: whole cubes (the part of the label volume that has raw under it, as float32 raw plus int32
 * labels) are cached LRU within `cacheMB`. A cube that alone exceeds the bound is never loaded whole:
 * each patch is read from the HDF5 files with a hyperslab read.
 */
import { LazyLabelError } from '../errors.js';
import { H5Source } from '../io/hdf5.js';
import type { DTypeName, NumericArray } from '../io/dtype.js';
import { defaultInfoMask, parseInfoMask, type InfoMask } from '../core/infoMask.js';
import { rawSpatialShape } from '../core/checkRules.js';
import type { Manifest } from '../core/manifest.js';
import { readInfo } from '../ops/scan.js';

export interface CubeMeta {
  /** Position in the manifest's `cubes` (and in `CubeStore.cubes`). */
  index: number;
  name: string;
  labelFile: string;
  labelKey: string;
  rawFile: string;
  rawKey: string;
  /** Spatial shape of the labels: (x, y) or (x, y, z). */
  labelShape: number[];
  /** Spatial shape of the raw volume (channel axis removed). */
  rawShape: number[];
  nChannels: number;
  /** True when the raw file stores a leading channel axis. */
  rawHasChannelAxis: boolean;
  rawDtype: DTypeName;
  labelDtype: DTypeName;
  /** Raw values are divided by this: 255 for integer raw, 1 for float raw (ELEKTRONN). */
  rawDivisor: number;
  /** Position of label voxel (0, ...) in raw coordinates. */
  offset: number[];
  /** Label-coordinate box [lo, hi) where both labels and raw exist: patches must lie inside it. */
  lo: number[];
  hi: number[];
  /** Sampling weight (not normalised). */
  prio: number;
  valid: boolean;
  info: InfoMask;
  /** Bytes the cube takes when cached whole (float32 raw per channel + int32 labels over lo..hi). */
  bytes: number;
}

export interface CubeStoreOptions {
  /** Memory bound for whole cubes held in memory, in MiB (default 1024). 0 = read every patch from disk. */
  cacheMB?: number;
  /** Expected number of raw channels; a cube with another count is an error. */
  nChannels?: number;
}

export interface Patch {
  /** Channels-last: [...size, ch]. */
  raw: Float32Array;
  /** [...size], negative = ignore. */
  labels: Int32Array;
}

export interface CubeStoreStats {
  /** Whole cubes read from disk into the cache (a cube evicted and read again counts twice). */
  wholeLoads: number;
  /** Box reads (labels or raw, each counts one) served from a cached cube. */
  cacheHits: number;
  /** Box reads (labels or raw, each counts one) sent straight to the HDF5 files because the cube does not fit the cache. */
  directReads: number;
  /** Cubes dropped from the cache to make room. */
  evictions: number;
  /** Bytes held by cached cubes now, and the most ever held at once. */
  cachedBytes: number;
  peakCachedBytes: number;
}

interface LoadedCube {
  raw: Float32Array; // [...(hi-lo), ch]
  labels: Int32Array; // [...(hi-lo)]
  bytes: number;
}

const prod = (a: readonly number[]): number => a.reduce((x, y) => x * y, 1);

/** C-order strides of a shape. */
function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

/** Labels as int32 (typed-array assignment truncates and wraps like numpy's astype; `check` rejects values that would wrap). */
function toInt32(data: NumericArray): Int32Array {
  if (data instanceof Int32Array) return data;
  const out = new Int32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = data[i]!;
  return out;
}

/**
 * Channels-first flat raw [ch, ...box] (or [...box] when ch = 1) → channels-last float32, divided by `divisor`.
 * Dividing in float64 and rounding once to float32 gives the same bits as NumPy's float32(raw) / 255.
 */
function toChannelsLast(data: NumericArray, voxels: number, ch: number, divisor: number): Float32Array {
  const out = new Float32Array(voxels * ch);
  if (ch === 1) {
    if (divisor === 1) out.set(data);
    else for (let v = 0; v < voxels; v++) out[v] = data[v]! / divisor;
    return out;
  }
  for (let c = 0; c < ch; c++) {
    const base = c * voxels;
    for (let v = 0; v < voxels; v++) out[v * ch + c] = data[base + v]! / divisor;
  }
  return out;
}

/** Copy a sub-box [start, start+size) out of a C-order array of `shape` with `ch` interleaved values per voxel. */
function copyBox<T extends Float32Array | Int32Array>(src: T, shape: readonly number[], ch: number, start: readonly number[], size: readonly number[], out: T): T {
  const nd = shape.length;
  const st = stridesOf(shape);
  const last = nd - 1;
  const run = size[last]! * ch;
  const outer = prod(size.slice(0, last));
  const idx = new Array<number>(last).fill(0);
  let o = 0;
  for (let r = 0; r < outer; r++) {
    let base = start[last]!;
    for (let a = 0; a < last; a++) base += (start[a]! + idx[a]!) * st[a]!;
    out.set(src.subarray(base * ch, base * ch + run), o);
    o += run;
    for (let a = last - 1; a >= 0; a--) {
      if (++idx[a]! < size[a]!) break;
      idx[a] = 0;
    }
  }
  return out;
}

function dataError(message: string, file: string, dataset: string | undefined, hint: string, code = 'train-data'): LazyLabelError {
  return new LazyLabelError(message, { code, file, dataset, hint });
}

/** The training cubes of a manifest, with lazy, memory-bounded loading. Call `close()` when done. */
export class CubeStore {
  readonly cubes: CubeMeta[];
  readonly nLab: number;
  /** The manifest's `lazy_labels`: when false, every cube has the default info mask. */
  readonly lazyLabels: boolean;
  /** The manifest's `example_ignore_threshold` (0 = off, as in ELEKTRONN). */
  readonly exampleIgnoreThreshold: number;
  readonly cacheBytes: number;
  private readonly sources: Map<string, H5Source>;
  /** Insertion order = recency (oldest first). */
  private readonly cache = new Map<number, LoadedCube>();
  private readonly counters: CubeStoreStats = { wholeLoads: 0, cacheHits: 0, directReads: 0, evictions: 0, cachedBytes: 0, peakCachedBytes: 0 };

  private constructor(cubes: CubeMeta[], manifest: Manifest, cacheBytes: number, sources: Map<string, H5Source>) {
    this.cubes = cubes;
    this.nLab = manifest.nLab;
    this.lazyLabels = manifest.lazyLabels;
    this.exampleIgnoreThreshold = manifest.exampleIgnoreThreshold ?? 0;
    this.cacheBytes = cacheBytes;
    this.sources = sources;
  }

  /** Read every cube's metadata (shapes, dtypes, info, offsets) without reading voxels. */
  static async open(manifest: Manifest, opts: CubeStoreOptions = {}): Promise<CubeStore> {
    const cacheMB = opts.cacheMB ?? 1024;
    if (!(cacheMB >= 0)) throw new RangeError(`cacheMB must be >= 0, got ${cacheMB}`);
    const sources = new Map<string, H5Source>();
    const source = async (file: string): Promise<H5Source> => {
      let s = sources.get(file);
      if (!s) {
        s = await H5Source.open(file);
        sources.set(file, s);
      }
      return s;
    };
    try {
      const cubes: CubeMeta[] = [];
      for (const mc of manifest.cubes) {
        const labelSrc = await source(mc.label);
        const labelInfo = labelSrc.info(mc.labelKey);
        const labelShape = labelInfo.shape;
        const where = `cube '${mc.name}'`;
        if (labelShape.length !== 2 && labelShape.length !== 3) {
          throw dataError(`${where}: labels have shape (${labelShape.join(', ')}); expected (x, y) or (x, y, z)`, mc.label, mc.labelKey, `run 'lazylabel check' on the manifest`, 'label-ndim');
        }
        const ld = labelInfo.dtype;
        if (!ld || ld.kind === 'float') {
          throw dataError(`${where}: labels are ${labelInfo.typeName}; training needs integer class ids`, mc.label, mc.labelKey, `convert the labels to an integer type (run 'lazylabel check' for details)`, 'label-dtype-unsupported');
        }
        // Raw: its own file, or (when the manifest names none) the label file's raw dataset.
        const rawFile = mc.raw ?? mc.label;
        const rawSrc = await source(rawFile);
        if (!mc.raw && !rawSrc.has(mc.rawKey)) {
          throw dataError(`${where}: no raw volume: the manifest gives no 'raw' file and the label file has no '${mc.rawKey}' dataset`, mc.label, undefined, `add "raw": "<file>.h5" to the cube in the manifest`, 'raw-missing');
        }
        const rawInfo = rawSrc.info(mc.rawKey);
        const rawShape = rawSpatialShape(rawInfo.shape, labelShape.length);
        if (!rawShape) {
          throw dataError(`${where}: raw has shape (${rawInfo.shape.join(', ')}), neither ${labelShape.length}-D like the labels nor channels-first`, rawFile, mc.rawKey, `run 'lazylabel check' on the manifest`, 'raw-ndim');
        }
        const rd = rawInfo.dtype;
        if (!rd) throw dataError(`${where}: raw is ${rawInfo.typeName}, not numbers`, rawFile, mc.rawKey, 'raw must be an integer or float array', 'raw-dtype');
        const rawHasChannelAxis = rawInfo.shape.length === labelShape.length + 1;
        const nChannels = rawHasChannelAxis ? rawInfo.shape[0]! : 1;
        if (opts.nChannels !== undefined && nChannels !== opts.nChannels) {
          throw dataError(`${where}: raw has ${nChannels} channel(s), expected ${opts.nChannels}`, rawFile, mc.rawKey, 'every cube must have the same number of raw channels', 'raw-channels');
        }
        let offset: number[];
        if (mc.offset) {
          if (mc.offset.length !== labelShape.length) {
            throw dataError(`${where}: offset [${mc.offset.join(', ')}] has ${mc.offset.length} entries but labels are ${labelShape.length}-D`, mc.label, undefined, 'give one offset per spatial axis', 'raw-shape-mismatch');
          }
          offset = [...mc.offset];
        } else {
          offset = labelShape.map((n, i) => Math.max(0, Math.floor((rawShape[i]! - n) / 2)));
        }
        const lo = labelShape.map((_, i) => Math.max(0, -offset[i]!));
        const hi = labelShape.map((n, i) => Math.min(n, rawShape[i]! - offset[i]!));
        if (hi.some((h, i) => h <= lo[i]!)) {
          throw dataError(`${where}: labels (${labelShape.join(', ')}) at offset [${offset.join(', ')}] do not overlap raw (${rawShape.join(', ')})`, mc.label, undefined, 'fix the offset in the manifest', 'raw-shape-mismatch');
        }
        let info: InfoMask;
        if (manifest.lazyLabels) {
          const parsed = parseInfoMask(readInfo(labelSrc, mc.infoKey), manifest.nLab);
          if (!parsed.mask) {
            throw dataError(`${where}: ${parsed.findings.map((f) => f.message).join('; ')}`, mc.label, mc.infoKey, `run 'lazylabel check' on the manifest`, parsed.findings[0]?.code ?? 'info-shape');
          }
          info = parsed.mask;
        } else {
          info = defaultInfoMask(manifest.nLab);
        }
        const prio = mc.prio ?? prod(labelShape);
        const boxVoxels = prod(hi.map((h, i) => h - lo[i]!));
        cubes.push({
          index: mc.index,
          name: mc.name,
          labelFile: mc.label,
          labelKey: mc.labelKey,
          rawFile,
          rawKey: mc.rawKey,
          labelShape,
          rawShape,
          nChannels,
          rawHasChannelAxis,
          rawDtype: rd.name,
          labelDtype: ld.name,
          rawDivisor: rd.kind === 'float' ? 1 : 255,
          offset,
          lo,
          hi,
          prio,
          valid: mc.valid,
          info,
          bytes: boxVoxels * (4 * nChannels + 4),
        });
      }
      return new CubeStore(cubes, manifest, cacheMB * 1024 * 1024, sources);
    } catch (e) {
      for (const s of sources.values()) s.close();
      throw e;
    }
  }

  /** A snapshot of the loading counters. */
  stats(): CubeStoreStats {
    return { ...this.counters };
  }

  /** Indices of the cubes currently cached, least recently used first. */
  cachedCubes(): number[] {
    return [...this.cache.keys()];
  }

  private src(file: string): H5Source {
    const s = this.sources.get(file);
    if (!s) throw new Error(`internal: ${file} is not open (store closed?)`);
    return s;
  }

  private rawFromDisk(cube: CubeMeta, start: readonly number[], size: readonly number[]): Float32Array {
    const rawStart = start.map((s, i) => s + cube.offset[i]!);
    const rawEnd = rawStart.map((s, i) => s + size[i]!);
    const ch = cube.nChannels;
    const src = this.src(cube.rawFile);
    const data = cube.rawHasChannelAxis ? src.readBox(cube.rawKey, [0, ...rawStart], [ch, ...rawEnd]) : src.readBox(cube.rawKey, rawStart, rawEnd);
    return toChannelsLast(data, prod(size), ch, cube.rawDivisor);
  }

  private labelsFromDisk(cube: CubeMeta, start: readonly number[], size: readonly number[]): Int32Array {
    return toInt32(this.src(cube.labelFile).readBox(cube.labelKey, [...start], start.map((s, i) => s + size[i]!)));
  }

  /** The cached cube (loading it if it fits the bound), or null when it is too big to cache. */
  private load(cube: CubeMeta): LoadedCube | null {
    const hit = this.cache.get(cube.index);
    if (hit) {
      this.cache.delete(cube.index); // re-insert: most recently used
      this.cache.set(cube.index, hit);
      return hit;
    }
    if (cube.bytes > this.cacheBytes) return null;
    while (this.counters.cachedBytes + cube.bytes > this.cacheBytes) {
      const [oldest, victim] = this.cache.entries().next().value as [number, LoadedCube];
      this.cache.delete(oldest);
      this.counters.cachedBytes -= victim.bytes;
      this.counters.evictions++;
    }
    const size = cube.hi.map((h, i) => h - cube.lo[i]!);
    const loaded: LoadedCube = { raw: this.rawFromDisk(cube, cube.lo, size), labels: this.labelsFromDisk(cube, cube.lo, size), bytes: cube.bytes };
    this.cache.set(cube.index, loaded);
    this.counters.wholeLoads++;
    this.counters.cachedBytes += cube.bytes;
    this.counters.peakCachedBytes = Math.max(this.counters.peakCachedBytes, this.counters.cachedBytes);
    return loaded;
  }

  private checkBox(cubeIndex: number, start: readonly number[], size: readonly number[]): CubeMeta {
    const cube = this.cubes[cubeIndex];
    if (!cube) throw new RangeError(`no cube ${cubeIndex} (store has ${this.cubes.length})`);
    const nd = cube.labelShape.length;
    if (start.length !== nd || size.length !== nd) {
      throw new RangeError(`cube '${cube.name}' is ${nd}-D but the patch box has start [${start.join(', ')}], size [${size.join(', ')}]`);
    }
    for (let i = 0; i < nd; i++) {
      if (!Number.isInteger(start[i]) || !Number.isInteger(size[i]) || size[i]! < 1 || start[i]! < cube.lo[i]! || start[i]! + size[i]! > cube.hi[i]!) {
        throw new RangeError(`patch [${start.join(', ')}] + [${size.join(', ')}] is outside cube '${cube.name}' (usable box [${cube.lo.join(', ')}]..[${cube.hi.join(', ')}])`);
      }
    }
    return cube;
  }

  private cutCached(loaded: LoadedCube, cube: CubeMeta, which: 'raw' | 'labels', start: readonly number[], size: readonly number[]): Float32Array | Int32Array {
    const shape = cube.hi.map((h, i) => h - cube.lo[i]!);
    const rel = start.map((s, i) => s - cube.lo[i]!);
    const voxels = prod(size);
    return which === 'raw'
      ? copyBox(loaded.raw, shape, cube.nChannels, rel, size, new Float32Array(voxels * cube.nChannels))
      : copyBox(loaded.labels, shape, 1, rel, size, new Int32Array(voxels));
  }

  /**
   * Raw (channels-last [...size, ch], scaled) and labels (int32 [...size]) over the label-coordinate
   * box [start, start+size), which must lie inside the cube's [lo, hi).
   */
  async readPatch(cubeIndex: number, start: readonly number[], size: readonly number[]): Promise<Patch> {
    return this.readPatchSync(cubeIndex, start, size);
  }

  /** `readPatch` without the promise (h5wasm reads are synchronous). */
  readPatchSync(cubeIndex: number, start: readonly number[], size: readonly number[]): Patch {
    return { labels: this.readLabelsSync(cubeIndex, start, size), raw: this.readRawSync(cubeIndex, start, size) };
  }

  /** Only the labels of a box (to test a patch before paying for its raw). */
  readLabelsSync(cubeIndex: number, start: readonly number[], size: readonly number[]): Int32Array {
    const cube = this.checkBox(cubeIndex, start, size);
    const loaded = this.load(cube);
    if (loaded) {
      this.counters.cacheHits++;
      return this.cutCached(loaded, cube, 'labels', start, size) as Int32Array;
    }
    this.counters.directReads++;
    return this.labelsFromDisk(cube, start, size);
  }

  /** Only the raw of a box, channels-last and scaled. */
  readRawSync(cubeIndex: number, start: readonly number[], size: readonly number[]): Float32Array {
    const cube = this.checkBox(cubeIndex, start, size);
    const loaded = this.load(cube);
    if (loaded) {
      this.counters.cacheHits++;
      return this.cutCached(loaded, cube, 'raw', start, size) as Float32Array;
    }
    this.counters.directReads++;
    return this.rawFromDisk(cube, start, size);
  }

  /** Drop every cached cube and close the files. */
  close(): void {
    this.cache.clear();
    this.counters.cachedBytes = 0;
    for (const s of this.sources.values()) s.close();
    this.sources.clear();
  }
}
