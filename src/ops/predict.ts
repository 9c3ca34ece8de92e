/** `predict`: tiled inference with cropped overlaps, streamed to chunked HDF5 (probabilities + argmax), bounded memory. */
import type * as tfType from '@tensorflow/tfjs';
import { LazyLabelError, usageError } from '../errors.js';
import { H5Sink } from '../io/hdf5.js';
import type { VolumeReader } from '../io/volume.js';
import { openLabelVolume } from './scan.js';
import { writeAtomically } from '../io/atomic.js';
import { rawSpatialShape } from '../core/checkRules.js';
import { tilesInRow, volumeTiles, type Tile } from '../core/tiles.js';
import { selectBackend, type BackendPreference, type NativeKernels } from '../train/backend.js';
import { loadModel } from '../train/checkpoint.js';
import { requiredMultiples } from '../train/models.js';
import type { RunConfig } from '../train/loop.js';
import { noProgress, type ProgressFn } from './progress.js';
import { VERSION } from '../version.js';
import os from 'node:os';
import path from 'node:path';
import { chooseThreads, TrainPool } from '../train/pool.js';
import { jobId, partPath, PART_KEY, shardItems, type Shard, type ShardInfo } from '../core/shard.js';

export interface PredictOptions {
  /** Run folder (or its model/ folder) written by `train`. */
  model: string;
  raw: string;
  rawKey?: string;
  out: string;
  probsKey?: string;
  labelKey?: string;
  /** Store probabilities as uint8 (p * 255, rounded) instead of float32. */
  uint8?: boolean;
  /** Tile size in label axis order (default: the training patch, in-plane axes doubled where the volume allows). */
  tile?: number[];
  /** Voxels cropped at inner tile edges, per axis (default: an eighth of the tile, aligned). */
  margin?: number[];
  /** Tiles per forward pass (default: one per compute thread). */
  batch?: number;
  /**
   * Compute threads on the wasm/cpu backends (the training pool's workers, each with its own backend and a
   * replica of the model, predict their share of each batch): a count, or 'auto' (default): one per core,
   * at most one per tile of the batch; the workers start after the first batch, and only when the rest of
   * the tiles would take longer than POOL_WORTH_SECONDS on one thread.
   */
  threads?: number | 'auto';
  backend?: BackendPreference;
  force?: boolean;
  onProgress?: ProgressFn;
  /** An already selected tf namespace and loaded model (the demo reuses them). */
  loaded?: { tf: typeof tfType; model: tfType.LayersModel; config: RunConfig; backend: string };
  /**
   * Predict only this shard's contiguous block of tile rows along axis 0 (see core/shard.ts) into the
   * part file `OUT.part-i-of-n`; `lazylabel merge` concatenates the parts into `out`.
   */
  shard?: Shard;
}

/** What a predict part file records (JSON in the `meta` attribute of its PART_KEY dataset). */
export interface PredictPartMeta {
  kind: 'predict';
  version: string;
  /** Voxel rows [start, end) of axis 0 in this part; total = rows of the whole volume. */
  shard: ShardInfo;
  /** The final output the shards were given (-o). */
  output: string;
  shape: number[];
  nLab: number;
  tile: number[];
  margin: number[];
  /** Tiles of the whole volume, and of this shard. */
  tiles: number;
  shardTiles: number;
  probsKey: string;
  labelKey: string;
  probsDtype: 'float32' | 'uint8';
  /** Chunk shapes and attributes of the whole output's datasets, as an unsharded run writes them. */
  probsChunks: number[];
  labChunks: number[];
  probsAttrs: Record<string, unknown>;
  labAttrs: Record<string, unknown>;
  /** Voxels per predicted class in this part. */
  classCounts: number[];
  backend: string;
  seconds: number;
}

export interface PredictReport {
  command: 'predict';
  ok: boolean;
  output: string;
  backend: string;
  /** The native (oneDNN) kernels the wasm backend ran, or null; absent when the caller passed a loaded model and in a report joined by `merge`. */
  nativeKernels?: NativeKernels | null;
  /** Compute threads that predicted (main thread + pool workers); absent in a report joined by `merge`. */
  threads?: number;
  shape: number[];
  nLab: number;
  tile: number[];
  margin: number[];
  tiles: number;
  probsKey: string;
  labelKey: string;
  probsDtype: 'float32' | 'uint8';
  /** Voxels per predicted class (argmax). */
  classCounts: number[];
  seconds: number;
  /** Present on a shard's report only: the voxel rows of axis 0 its part file holds (`output` is the part; `tiles` counts the whole volume's). */
  shard?: ShardInfo;
}

/** With threads 'auto', workers start only when one thread would need longer than this for the remaining tiles (their start-up takes ~0.3-2 s). */
export const POOL_WORTH_SECONDS = 3;

/** Read one input window (zero-padded past the volume) as channels-last float32, scaled like training. */
async function readWindow(src: VolumeReader, tile: Tile, spatial: number[], channelsFirst: boolean, nCh: number, divisor: number): Promise<Float32Array> {
  const dims = spatial.length;
  const lo = tile.inStart;
  const hi = tile.inStart.map((s, i) => Math.min(s + tile.size[i]!, spatial[i]!));
  const readShape = hi.map((h, i) => h - lo[i]!);
  const starts = channelsFirst ? [0, ...lo] : lo;
  const ends = channelsFirst ? [nCh, ...hi] : hi;
  const data = await src.readBox(starts, ends);
  const out = new Float32Array(tile.size.reduce((a, b) => a * b, 1) * nCh);
  const readVox = readShape.reduce((a, b) => a * b, 1);
  // strides of the padded window (voxel-major, channels last)
  const winStride = new Array<number>(dims).fill(1);
  for (let i = dims - 2; i >= 0; i--) winStride[i] = winStride[i + 1]! * tile.size[i + 1]!;
  const idx = new Array<number>(dims).fill(0);
  for (let v = 0; v < readVox; v++) {
    let rem = v;
    for (let i = dims - 1; i >= 0; i--) {
      idx[i] = rem % readShape[i]!;
      rem = Math.floor(rem / readShape[i]!);
    }
    let w = 0;
    for (let i = 0; i < dims; i++) w += idx[i]! * winStride[i]!;
    for (let c = 0; c < nCh; c++) out[w * nCh + c] = data[channelsFirst ? c * readVox + v : v]! / divisor;
  }
  return out;
}

/** Predict a raw volume with a trained model. */
export async function predict(opts: PredictOptions): Promise<PredictReport> {
  const t0 = performance.now();
  const onProgress = opts.onProgress ?? noProgress;
  let tf: typeof tfType;
  let model: tfType.LayersModel;
  let config: RunConfig;
  let backendName: string;
  let nativeKernels: NativeKernels | null | undefined;
  if (opts.loaded) {
    ({ tf, model, config } = opts.loaded);
    backendName = opts.loaded.backend;
  } else {
    const backend = await selectBackend(opts.backend ?? 'auto');
    tf = backend.tf;
    backendName = backend.name;
    nativeKernels = backend.nativeKernels;
    const loaded = await loadModel(tf, opts.model);
    model = loaded.model;
    config = loaded.state.config as RunConfig;
    if (!config?.unet) throw new LazyLabelError('saved model has no training config', { code: 'model-config', file: opts.model, hint: 'use a model folder written by lazylabel train' });
  }
  const nLab = config.nLab;
  const dims = config.unet.dims;
  const rawKey = opts.rawKey ?? 'raw';
  const probsKey = opts.probsKey ?? 'probs';
  const labelKey = opts.labelKey ?? 'lab';
  // any format openVolume reads (HDF5, zarr, N5, TIFF stack, PNG folder)
  const src = await openLabelVolume(opts.raw, rawKey);
  try {
    const info = { shape: src.shape, dtype: src.dtype, typeName: src.typeName };
    if (!info.dtype || info.dtype.kind === 'bool') throw new LazyLabelError(`raw data is ${info.typeName}`, { code: 'bad-dtype', file: opts.raw, dataset: rawKey, hint: 'raw must be an integer or float volume' });
    const spatial = rawSpatialShape(info.shape, dims);
    if (!spatial) throw new LazyLabelError(`raw shape (${info.shape.join(', ')}) is not ${dims}-D or channels-first ${dims + 1}-D`, { code: 'raw-ndim', file: opts.raw, dataset: rawKey, hint: `the model was trained on ${dims}-D cubes` });
    const channelsFirst = info.shape.length === dims + 1;
    const nCh = channelsFirst ? info.shape[0]! : 1;
    if (nCh !== config.unet.inChannels) throw new LazyLabelError(`raw has ${nCh} channel(s) but the model expects ${config.unet.inChannels}`, { code: 'raw-channels', file: opts.raw, dataset: rawKey });
    const divisor = info.dtype.kind === 'float' ? 1 : 255; // as in training (ELEKTRONN scales integer raw by 1/255)
    const align = requiredMultiples(config.unet);
    const tile = opts.tile ?? config.patch.map((p, i) => Math.max(p, Math.min(Math.ceil(spatial[i]! / align[i]!) * align[i]!, p * (i === 0 ? 1 : 2))));
    if (tile.length !== dims || tile.some((t, i) => t % align[i]! !== 0)) throw usageError(`--tile ${tile.join(',')} must have ${dims} entries, multiples of ${align.join(',')}`);
    const margin = opts.margin ?? tile.map((t, i) => Math.floor(Math.floor(t / 8) / align[i]!) * align[i]!);
    const perAxis = volumeTiles(spatial, tile, margin, align);
    const totalTiles = perAxis.reduce((a, t) => a * t.length, 1);
    // the tile rows this run predicts: all, or the shard's contiguous block (its voxel rows follow)
    const shard = opts.shard;
    if (shard && (probsKey === PART_KEY || labelKey === PART_KEY)) throw usageError(`'${PART_KEY}' is reserved in part files: choose other dataset names`);
    const allRows = perAxis[0]!;
    const mine = shard ? shardItems(allRows, shard) : { items: allRows, start: 0, end: allRows.length };
    const rowStart = mine.start < allRows.length ? allRows[mine.start]!.outStart : spatial[0]!;
    const rowEnd = mine.items.length ? mine.items[mine.items.length - 1]!.outEnd : rowStart;
    const partSpatial = [rowEnd - rowStart, ...spatial.slice(1)];
    const myTiles = mine.items.length * perAxis.slice(1).reduce((a, t) => a * t.length, 1);
    const target = shard ? partPath(opts.out, shard) : opts.out;
    let shardInfo: ShardInfo | undefined;
    // threads: asked for, or 'auto' (one per core, capped by the batch); the tensorflow backends thread natively
    const request = opts.threads ?? 'auto';
    const choice = chooseThreads(request, backendName, Math.max(1, Math.min(myTiles, opts.batch ?? (request === 'auto' ? os.availableParallelism() : request))), config.unet, tile);
    const batchSize = Math.max(1, opts.batch ?? choice.threads);
    let pool: TrainPool | null = null;
    const startPool = async (): Promise<void> => {
      pool = await TrainPool.start({
        tf, backend: backendName as 'wasm' | 'cpu', model, unet: config.unet, patch: tile, nChannels: nCh,
        loss: { normalisation: 'voxels', classWeights: null, lazyLabels: false }, // unused: the pool only predicts here
        threads: choice.threads,
      });
    };
    let firstBatchSeconds: number | null = null;
    const planeVoxels = spatial.slice(1).reduce((a, b) => a * b, 1);
    const classCounts = new Array<number>(nLab).fill(0);
    let done = 0;

    await writeAtomically(target, { force: opts.force, inputs: [opts.raw] }, async (tmp) => {
      const sink = await H5Sink.create(tmp);
      try {
        const chunkRows = Math.max(1, Math.min(spatial[0]!, tile[0]!));
        const probsChunks = [chunkRows, ...spatial.slice(1).map((n) => Math.min(n, 64)), nLab];
        const labChunks = [chunkRows, ...spatial.slice(1).map((n) => Math.min(n, 128))];
        // an empty shard (more shards than tile rows) writes no datasets, only its metadata
        const empty = shard !== undefined && partSpatial[0] === 0;
        const probsWriter = empty ? null : sink.createDataset(probsKey, { shape: [...partSpatial, nLab], dtype: opts.uint8 ? 'uint8' : 'float32', chunks: probsChunks, gzip: 1 });
        const labelWriter = empty ? null : sink.createDataset(labelKey, { shape: partSpatial, dtype: 'int16', chunks: labChunks, gzip: 1 });
        for (const row of mine.items) {
          const rows = row.outEnd - row.outStart;
          const probs = new Float32Array(rows * planeVoxels * nLab);
          const tiles = [...tilesInRow(perAxis, row)];
          for (let b = 0; b < tiles.length; b += batchSize) {
            const group = tiles.slice(b, b + batchSize);
            const tileVox = tile.reduce((p, q) => p * q, 1);
            const input = new Float32Array(group.length * tileVox * nCh);
            for (const [i, t] of group.entries()) input.set(await readWindow(src, t, spatial, channelsFirst, nCh, divisor), i * tileVox * nCh);
            const started = performance.now();
            let values: Float32Array;
            if (pool) values = await (pool as TrainPool).predict(input, group.length);
            else {
              const out = tf.tidy(() => model.predict(tf.tensor(input, [group.length, ...tile, nCh], 'float32')) as tfType.Tensor);
              values = (await out.data()) as Float32Array;
              out.dispose();
            }
            if (firstBatchSeconds === null) {
              firstBatchSeconds = (performance.now() - started) / 1000;
              const remaining = (myTiles - done - group.length) / batchSize;
              // an explicit --threads N starts the workers regardless; auto only when they pay for their start-up
              if (choice.threads > 1 && remaining > 0 && (request !== 'auto' || firstBatchSeconds * remaining > POOL_WORTH_SECONDS)) await startPool();
            }
            group.forEach((t, i) => copyOwned(values.subarray(i * tileVox * nLab, (i + 1) * tileVox * nLab), t, tile, spatial, row.outStart, probs, nLab));
            done += group.length;
            onProgress({ label: 'predict', done, total: myTiles });
          }
          const labels = new Int16Array(rows * planeVoxels);
          for (let v = 0; v < labels.length; v++) {
            let best = 0;
            for (let c = 1; c < nLab; c++) if (probs[v * nLab + c]! > probs[v * nLab + best]!) best = c;
            labels[v] = best;
            classCounts[best]!++;
          }
          probsWriter!.write(opts.uint8 ? Uint8Array.from(probs, (p) => Math.round(Math.min(1, Math.max(0, p)) * 255)) : probs);
          labelWriter!.write(labels);
        }
        const probsAttrs = { axes: [...(dims === 3 ? ['x', 'y', 'z'] : ['x', 'y']), 'class'], scale: opts.uint8 ? 1 / 255 : 1 };
        const labAttrs = { lazylabel: JSON.stringify({ command: 'predict', version: VERSION, model: opts.model, raw: `${opts.raw}:${rawKey}`, tile, margin }) };
        if (!empty) {
          sink.setAttrs(probsKey, probsAttrs);
          sink.setAttrs(labelKey, labAttrs);
        }
        if (shard) {
          shardInfo = {
            ...shard, start: rowStart, end: rowEnd, total: spatial[0]!,
            job: jobId({ command: 'predict', model: path.resolve(opts.model), raw: path.resolve(opts.raw), rawKey, shape: spatial, nLab, tile, margin, uint8: opts.uint8 ?? false, probsKey, labelKey, output: path.resolve(opts.out) }),
          };
          const meta: PredictPartMeta = {
            kind: 'predict', version: VERSION, shard: shardInfo, output: opts.out, shape: spatial, nLab, tile, margin, tiles: totalTiles, shardTiles: myTiles,
            probsKey, labelKey, probsDtype: opts.uint8 ? 'uint8' : 'float32', probsChunks, labChunks, probsAttrs, labAttrs, classCounts,
            backend: backendName, seconds: (performance.now() - t0) / 1000,
          };
          sink.writeSmall(PART_KEY, [1], 'uint8', Uint8Array.of(1));
          sink.setAttrs(PART_KEY, { meta: JSON.stringify(meta) });
        }
      } finally {
        sink.close();
        await (pool as TrainPool | null)?.close();
      }
    });
    return {
      command: 'predict',
      ok: true,
      output: target,
      backend: backendName,
      ...(nativeKernels !== undefined ? { nativeKernels } : {}),
      threads: (pool as TrainPool | null)?.threads ?? 1,
      shape: spatial,
      nLab,
      tile,
      margin,
      tiles: totalTiles,
      probsKey,
      labelKey,
      probsDtype: opts.uint8 ? 'uint8' : 'float32',
      classCounts,
      seconds: (performance.now() - t0) / 1000,
      ...(shardInfo ? { shard: shardInfo } : {}),
    };
  } finally {
    src.close();
  }
}

/** Copy the part of a tile's output that the tile owns into the row buffer (rows start at `rowStart`). */
function copyOwned(values: Float32Array, t: Tile, tile: number[], spatial: number[], rowStart: number, probs: Float32Array, nLab: number): void {
  const dims = spatial.length;
  const ownShape = t.outEnd.map((e, i) => e - t.outStart[i]!);
  const ownVox = ownShape.reduce((a, b) => a * b, 1);
  const tileStride = new Array<number>(dims).fill(1);
  const volStride = new Array<number>(dims).fill(1);
  for (let i = dims - 2; i >= 0; i--) {
    tileStride[i] = tileStride[i + 1]! * tile[i + 1]!;
    volStride[i] = volStride[i + 1]! * spatial[i + 1]!;
  }
  const idx = new Array<number>(dims).fill(0);
  for (let v = 0; v < ownVox; v++) {
    let rem = v;
    for (let i = dims - 1; i >= 0; i--) {
      idx[i] = rem % ownShape[i]!;
      rem = Math.floor(rem / ownShape[i]!);
    }
    let src = 0;
    let dst = 0;
    for (let i = 0; i < dims; i++) {
      const g = t.outStart[i]! + idx[i]!;
      src += (g - t.inStart[i]!) * tileStride[i]!;
      dst += (i === 0 ? g - rowStart : g) * volStride[i]!;
    }
    probs.set(values.subarray(src * nLab, src * nLab + nLab), dst * nLab);
  }
}
