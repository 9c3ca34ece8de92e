/** Data-parallel training on worker threads: every thread takes the lazy-label loss gradient of its shard of the batch, the main thread sums them exactly and applies Adam; validation batches are split the same way. */
//
// Why: tfjs-backend-wasm runs single-threaded in Node (tensorflow/tfjs#3830), so the only way to use a
// second core is a second wasm instance. Each worker holds its own tfjs (wasm or cpu backend, with our
// training kernels) and a replica of the U-Net. Per step the main thread
//   1. publishes its weights in a SharedArrayBuffer (workers copy them into their variables),
//   2. sends each worker its shard (examples [a, b) of the batch) and computes shard 0 itself,
//   3. gets from every shard w the gradient g_w of the unnormalised loss sum `total_w` and the
//      normaliser n_w (lazyNllParts; with label propagation n_w depends on the predictions, so it has
//      to come from the shard's own graph),
//   4. applies Adam to g = sum_w g_w / N with N = sum_w n_w (patched to 1 when 0), which is exactly the
//      gradient of the full-batch loss sum_w total_w / N (N has no gradient), i.e. sum_w (n_w / N) times
//      the gradient of shard w's own normalised loss. The loss is that value.
// Results differ from one thread only by float32 summation order; they are deterministic for a given
// thread count, so a run resumed with the same thread count continues bit for bit. Inference (the
// validation batches) is split over the threads the same way; each patch's prediction is independent.
import fs from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type * as tfType from '@tensorflow/tfjs';
import { LazyLabelError } from '../errors.js';
import type { Tf } from './backend.js';
import { setDnnlThreads } from './dnnlKernels.js';
import { lazyNllParts, type LazyNllOptions } from './loss.js';
import { poolFactors, type UNetConfig } from './models.js';
import type { Batch } from './sampler.js';
import { workerUrl } from '../packageRoot.js';

/** How the loss is built from a shard (fixed for a run). */
export interface LossSettings {
  normalisation: 'voxels' | 'flags';
  classWeights: number[] | null;
  /** Pass the per-example masks (manifest `lazy_labels`); without them ELEKTRONN's `None` semantics apply. */
  lazyLabels: boolean;
  labelPropThresh?: number | null;
}

/** Examples [a, b) of a batch as plain arrays: what a thread trains on in one step. */
export interface Shard {
  examples: number;
  /** [examples, ...patch, nChannels], channels last. */
  raw: Float32Array;
  /** [examples, ...patch]. */
  labels: Int32Array;
  maskClassLabeled: number[][];
  maskClassNotPresent: number[][];
}

/** Loss sum and normaliser of one shard (see lazyNllParts). */
export interface ShardLoss {
  total: number;
  n: number;
}

type ShardableBatch = Pick<Batch, 'raw' | 'labels' | 'maskClassLabeled' | 'maskClassNotPresent' | 'patchSize' | 'nChannels'>;

/**
 * Splits a batch into `parts` contiguous shards of sizes differing by at most one; the first (the main
 * thread's, which also combines the gradients and runs Adam) gets the smaller ones.
 */
export function splitBatch(batch: ShardableBatch, parts: number): Shard[] {
  const voxels = batch.patchSize.reduce((a, b) => a * b, 1);
  const examples = batch.labels.length / voxels;
  if (!Number.isInteger(parts) || parts < 1 || parts > examples) throw new RangeError(`cannot split a batch of ${examples} into ${parts} shards`);
  const base = Math.floor(examples / parts);
  const extra = examples % parts;
  const shards: Shard[] = [];
  let a = 0;
  for (let i = 0; i < parts; i++) {
    const b = a + base + (i >= parts - extra ? 1 : 0);
    shards.push({
      examples: b - a,
      // slice (a copy), so a worker's shard can be transferred without touching the batch
      raw: batch.raw.slice(a * voxels * batch.nChannels, b * voxels * batch.nChannels),
      labels: batch.labels.slice(a * voxels, b * voxels),
      maskClassLabeled: batch.maskClassLabeled.slice(a, b),
      maskClassNotPresent: batch.maskClassNotPresent.slice(a, b),
    });
    a = b;
  }
  return shards;
}

/** lazyNll options of a shard, as the single-threaded loop builds them. */
export function shardLossOptions(loss: LossSettings, shard: Pick<Shard, 'maskClassLabeled' | 'maskClassNotPresent'>): LazyNllOptions {
  return {
    normalisation: loss.normalisation,
    ...(loss.classWeights ? { classWeights: loss.classWeights } : {}),
    ...(loss.lazyLabels ? { maskClassLabeled: shard.maskClassLabeled, maskClassNotPresent: shard.maskClassNotPresent } : {}),
    ...(loss.labelPropThresh != null ? { labelPropThresh: loss.labelPropThresh } : {}),
  };
}

/** A model's trainable variables in a fixed order, with their offsets in one flat float32 vector. */
export interface Replica {
  tf: Tf;
  model: tfType.LayersModel;
  vars: tfType.Variable[];
  /** Layer weight names without tfjs's uniquifying suffixes (e.g. `down0_conv1/kernel`): the same in every thread. */
  names: string[];
  offsets: number[];
  size: number;
}

/**
 * The trainable variables in the order `optimizer.minimize()` uses (variable registration order), so
 * Adam's per-variable slots line up whether a run (or the checkpoint it resumes from) was trained with
 * the pool or without.
 */
export function replicaOf(tf: Tf, model: tfType.LayersModel): Replica {
  const order = new Map(Object.keys(tf.engine().registeredVariables).map((name, i) => [name, i]));
  const weights = model.trainableWeights.map((w) => ({ name: w.originalName, v: w.read() as tfType.Variable }));
  weights.sort((a, b) => (order.get(a.v.name) ?? 0) - (order.get(b.v.name) ?? 0));
  const offsets: number[] = [];
  let size = 0;
  for (const w of weights) {
    offsets.push(size);
    size += w.v.size;
  }
  return { tf, model, vars: weights.map((w) => w.v), names: weights.map((w) => w.name), offsets, size };
}

/**
 * Gradient of the shard's loss sum w.r.t. every variable, written flat into `out`; returns the sum and
 * the normaliser. The same code runs on the main thread and in the workers.
 */
export function shardGradient(r: Replica, shard: Shard, patch: readonly number[], nChannels: number, loss: LossSettings, out: Float32Array): ShardLoss {
  const { tf } = r;
  const x = tf.tensor(shard.raw, [shard.examples, ...patch, nChannels], 'float32');
  const y = tf.tensor(shard.labels, [shard.examples, ...patch], 'int32');
  let n: tfType.Scalar | null = null;
  let result: { value: tfType.Scalar; grads: tfType.NamedTensorMap } | null = null;
  try {
    result = tf.variableGrads(() => {
      const parts = lazyNllParts(r.model.apply(x, { training: true }) as tfType.Tensor, y, shardLossOptions(loss, shard));
      n = tf.keep(parts.n); // computed in the same graph (label propagation makes it depend on p), no gradient
      return parts.total;
    }, r.vars);
    const grads = result.grads;
    r.vars.forEach((v, i) => {
      const g = grads[v.name];
      if (!g) throw new Error(`no gradient reaches ${r.names[i]}`);
      out.set(g.dataSync() as Float32Array, r.offsets[i]);
    });
    return { total: result.value.dataSync()[0]!, n: (n as tfType.Scalar | null)?.dataSync()[0] ?? 0 };
  } finally {
    tf.dispose([x, y, ...(n ? [n] : []), ...(result ? [result.value, ...Object.values(result.grads)] : [])]);
  }
}

/** The model's output for `examples` raw patches, flat (the same code on every thread). */
export function predictShard(r: Replica, raw: Float32Array, examples: number, patch: readonly number[], nChannels: number): Float32Array {
  const { tf } = r;
  const probs = tf.tidy(() => r.model.predict(tf.tensor(raw, [examples, ...patch, nChannels], 'float32')) as tfType.Tensor);
  try {
    return probs.dataSync() as Float32Array;
  } finally {
    probs.dispose();
  }
}

/** Copies a flat weight vector into the replica's variables. */
export function loadWeights(r: Replica, flat: Float32Array): void {
  const { tf } = r;
  r.vars.forEach((v, i) => tf.tidy(() => v.assign(tf.tensor(flat.subarray(r.offsets[i]!, r.offsets[i]! + v.size), v.shape, 'float32'))));
}

/** Copies the replica's variables into a flat weight vector. */
export function storeWeights(r: Replica, flat: Float32Array): void {
  r.vars.forEach((v, i) => flat.set(v.dataSync() as Float32Array, r.offsets[i]));
}

// ---------------------------------------------------------------------------------------------
// Thread count.

/**
 * Below this many forward multiply-adds per step and thread (~50 ms of wasm compute per step on one
 * core, forward + backward), `auto` stays on one thread (see chooseThreads).
 */
export const AUTO_MIN_MACS_PER_THREAD = 5e7;

/** Multiply-adds of one forward pass of the U-Net over one patch (convolutions only; they dominate). */
export function unetForwardMacs(cfg: UNetConfig, patch: readonly number[]): number {
  const k = 3 ** cfg.dims;
  const pools = poolFactors(cfg);
  const voxelsAt: number[] = [patch.reduce((a, b) => a * b, 1)];
  for (const f of pools) voxelsAt.push(voxelsAt.at(-1)! / f.reduce((a, b) => a * b, 1));
  const width = (l: number): number => cfg.baseFilters * 2 ** l;
  let macs = 0;
  const block = (l: number, cin: number): void => {
    macs += voxelsAt[l]! * k * (cin * width(l) + width(l) * width(l));
  };
  for (let l = 0; l < cfg.depth; l++) block(l, l === 0 ? cfg.inChannels : width(l - 1));
  block(cfg.depth, cfg.depth === 0 ? cfg.inChannels : width(cfg.depth - 1));
  for (let l = cfg.depth - 1; l >= 0; l--) block(l, width(l) + width(l + 1)); // skip + upsampled
  return macs + voxelsAt[0]! * width(0) * cfg.nLab;
}

export interface ThreadChoice {
  threads: number;
  /** Why, for the log (empty when the request was simply honoured). */
  why: string;
}

/**
 * Compute threads for a run. The tensorflow backends are multi-threaded natively: always 1. Otherwise
 * at most one per example of the batch; `auto` takes min(cores, batch), but stays on 1 when a step is
 * so small (under AUTO_MIN_MACS_PER_THREAD per thread) that the workers' start-up (0.3-2 s) and the
 * per-step messaging would eat the gain. The rule depends only on the run's config and the machine
 * (not on the step count), so a resumed run gets the same count and continues bit for bit.
 */
export function chooseThreads(request: number | 'auto', backend: string, batch: number, cfg: UNetConfig, patch: readonly number[], cores = os.availableParallelism()): ThreadChoice {
  if (backend !== 'wasm' && backend !== 'cpu') {
    const native = `the ${backend} backend is multi-threaded natively`;
    return { threads: 1, why: request === 'auto' ? native : request > 1 ? `${native}, so --threads ${request} is not used` : '' };
  }
  if (request !== 'auto') {
    if (!Number.isInteger(request) || request < 1) throw new RangeError(`threads must be a positive integer or 'auto', got ${request}`);
    return request > batch ? { threads: batch, why: `--threads ${request} capped at the batch size (one example per thread at least)` } : { threads: request, why: '' };
  }
  const threads = Math.max(1, Math.min(cores, batch));
  if (threads === 1) return { threads, why: cores === 1 ? 'one core' : 'batch of 1' };
  const macs = unetForwardMacs(cfg, patch) * batch;
  if (macs / threads < AUTO_MIN_MACS_PER_THREAD) return { threads: 1, why: 'steps too small to gain from worker threads' };
  return { threads, why: '' };
}

// ---------------------------------------------------------------------------------------------
// The pool.

/** What a worker is started with (workerData). */
export interface WorkerInit {
  index: number;
  backend: 'wasm' | 'cpu';
  unet: UNetConfig;
  patch: number[];
  nChannels: number;
  loss: LossSettings;
  /** The main thread's variable names, in its order: the worker maps its own variables onto them. */
  names: string[];
  shapes: number[][];
  weights: SharedArrayBuffer;
  grads: SharedArrayBuffer;
  /** Int32 [0] = version of the published weights; [index] = request whose gradient worker `index` (1-based) wrote. */
  sync: SharedArrayBuffer;
  /** OpenMP threads per oneDNN convolution on this worker (the cores shared out among the pool's threads). */
  convThreads: number;
}

/** Requests carry the weights version they expect (the worker reloads its variables when it changed). */
export type ToWorker =
  | { type: 'step'; seq: number; weights: number; shard: Shard }
  | { type: 'predict'; seq: number; weights: number; raw: Float32Array; examples: number };
export type FromWorker =
  | { type: 'ready'; detail: string }
  | { type: 'done'; seq: number; total: number; n: number }
  | { type: 'probs'; seq: number; probs: Float32Array }
  | { type: 'error'; seq: number | null; message: string };

export interface PoolOptions {
  tf: Tf;
  backend: 'wasm' | 'cpu';
  /** The model the optimizer trains (the main thread's replica; its weights are the published ones). */
  model: tfType.LayersModel;
  unet: UNetConfig;
  patch: number[];
  nChannels: number;
  loss: LossSettings;
  /** Compute threads including the main one (>= 2). */
  threads: number;
  /** The compiled worker module (default: poolWorker.js next to this module in dist/). */
  workerUrl?: URL;
}

function workerError(index: number, what: string): LazyLabelError {
  return new LazyLabelError(`training worker ${index} ${what}`, { code: 'train-worker', hint: 'rerun with --threads 1 to compute on the main thread only' });
}

/** One worker and the request it is answering. */
class PoolWorker {
  private pending: { resolve: (m: FromWorker) => void; reject: (e: Error) => void } | null = null;
  failure: Error | null = null;
  private closing = false;

  constructor(readonly index: number, readonly worker: Worker) {
    worker.on('message', (m: FromWorker) => {
      const p = this.pending;
      this.pending = null;
      if (m.type === 'error') this.fail(workerError(index, `failed${m.seq === null ? ' to start' : ''}: ${m.message}`), p);
      else p?.resolve(m);
    });
    worker.on('error', (e: Error) => this.fail(workerError(index, `crashed: ${e.message}`), this.take()));
    worker.on('messageerror', (e: Error) => this.fail(workerError(index, `sent an unreadable message: ${e.message}`), this.take()));
    worker.on('exit', (code) => {
      if (!this.closing) this.fail(workerError(index, `exited unexpectedly (exit code ${code})`), this.take());
    });
  }

  private take(): typeof this.pending {
    const p = this.pending;
    this.pending = null;
    return p;
  }

  private fail(e: Error, p: typeof this.pending): void {
    this.failure ??= e;
    p?.reject(this.failure);
  }

  /** The next message (a reply to `msg`, or 'ready' when msg is null); rejects once the worker failed. */
  request(msg: ToWorker | null, transfer: ArrayBuffer[] = []): Promise<FromWorker> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.pending) return Promise.reject(new Error(`training worker ${this.index} is busy`));
    return new Promise<FromWorker>((resolve, reject) => {
      this.pending = { resolve, reject };
      if (msg) this.worker.postMessage(msg, transfer);
    });
  }

  async terminate(): Promise<void> {
    this.closing = true;
    this.pending?.reject(workerError(this.index, 'was shut down'));
    this.pending = null;
    await this.worker.terminate();
  }
}

/** Each pool thread's share of the cores for its native (oneDNN) convolutions, so the pool never oversubscribes them. */
function convThreadsPer(poolThreads: number): number {
  return Math.max(1, Math.floor(os.availableParallelism() / poolThreads));
}

export class TrainPool {
  private seq = 0;
  /** Version of the main thread's weights (bumped by every step) and the one last published. */
  private version = 1;
  private published = 0;
  private closed = false;
  private readonly weights: Float32Array;
  private readonly grads: Float32Array[];
  private readonly sync: Int32Array;
  private readonly sum: Float32Array;
  /** The main thread's oneDNN thread count before the pool took its share; restored by close(). */
  private readonly convThreadsBefore: number;

  private constructor(
    private readonly opts: PoolOptions,
    private readonly replica: Replica,
    private readonly workers: PoolWorker[],
    buffers: { weights: SharedArrayBuffer; grads: SharedArrayBuffer[]; sync: SharedArrayBuffer },
  ) {
    this.weights = new Float32Array(buffers.weights);
    this.grads = [new Float32Array(replica.size), ...buffers.grads.map((b) => new Float32Array(b))];
    this.sync = new Int32Array(buffers.sync);
    this.sum = new Float32Array(replica.size);
    this.convThreadsBefore = setDnnlThreads(convThreadsPer(opts.threads));
  }

  /** Compute threads, the main one included. */
  get threads(): number {
    return this.workers.length + 1;
  }

  /** Starts threads - 1 workers and waits until each has its model; on any failure all are shut down and it throws. */
  static async start(opts: PoolOptions): Promise<TrainPool> {
    if (!Number.isInteger(opts.threads) || opts.threads < 2) throw new RangeError(`a pool needs at least 2 threads, got ${opts.threads}`);
    const replica = replicaOf(opts.tf, opts.model);
    const n = opts.threads - 1;
    const weights = new SharedArrayBuffer(replica.size * 4);
    const grads = Array.from({ length: n }, () => new SharedArrayBuffer(replica.size * 4));
    const sync = new SharedArrayBuffer(4 * (1 + n));
    const url = opts.workerUrl ?? workerUrl('train/poolWorker.js');
    const workers: PoolWorker[] = [];
    try {
      for (let i = 0; i < n; i++) {
        const init: WorkerInit = {
          index: i + 1,
          backend: opts.backend,
          unet: opts.unet,
          patch: opts.patch,
          nChannels: opts.nChannels,
          loss: opts.loss,
          names: replica.names,
          shapes: replica.vars.map((v) => [...v.shape]),
          weights,
          grads: grads[i]!,
          sync,
          convThreads: convThreadsPer(opts.threads),
        };
        if (url.protocol === 'file:' && !fs.existsSync(fileURLToPath(url))) {
          throw workerError(i + 1, `cannot start: ${fileURLToPath(url)} is missing (build with \`npm run build\`)`);
        }
        workers.push(new PoolWorker(i + 1, new Worker(url, { workerData: init, name: `lazylabel-train-${i + 1}` })));
      }
      // workers load tfjs and build their models in parallel
      await Promise.all(workers.map((w) => w.request(null)));
    } catch (e) {
      await Promise.all(workers.map((w) => w.terminate()));
      throw e;
    }
    return new TrainPool(opts, replica, workers, { weights, grads, sync });
  }

  /** Makes the main thread's current weights visible to the workers (once per version). */
  private publish(): number {
    if (this.published !== this.version) {
      storeWeights(this.replica, this.weights);
      Atomics.store(this.sync, 0, this.version); // orders the weight writes before the workers' reads
      this.published = this.version;
    }
    return this.version;
  }

  /** One optimizer step on `batch` (split over the threads); returns the batch's loss. */
  async step(batch: Batch, optimizer: tfType.Optimizer): Promise<number> {
    if (this.closed) throw new Error('the training pool is closed');
    const { tf } = this.opts;
    const r = this.replica;
    const shards = splitBatch(batch, this.threads);
    const seq = ++this.seq;
    const weights = this.publish();
    const pending = this.workers.map((w, i) => {
      const shard = shards[i + 1]!;
      return w.request({ type: 'step', seq, weights, shard }, [shard.raw.buffer as ArrayBuffer, shard.labels.buffer as ArrayBuffer]);
    });
    let own: ShardLoss;
    try {
      own = shardGradient(r, shards[0]!, this.opts.patch, this.opts.nChannels, this.opts.loss, this.grads[0]!);
    } catch (e) {
      await Promise.allSettled(pending); // leave no worker mid-request
      throw e;
    }
    const parts: ShardLoss[] = [own];
    for (const [i, reply] of (await Promise.all(pending)).entries()) {
      if (reply.type !== 'done' || reply.seq !== seq || Atomics.load(this.sync, i + 1) !== seq) throw workerError(i + 1, `answered out of turn (pool step ${seq})`);
      parts.push(reply);
    }
    // Full-batch gradient: sum of the shards' gradients of their loss sums, over the full-batch normaliser.
    let total = 0;
    let n = 0;
    for (const p of parts) {
      total += p.total;
      n += p.n;
    }
    const norm = n === 0 ? 1 : n; // as lazyNll: an empty normaliser counts as 1
    const g = this.grads;
    const sum = this.sum;
    for (let j = 0; j < sum.length; j++) {
      let s = 0;
      for (let w = 0; w < g.length; w++) s += g[w]![j]!;
      sum[j] = s / norm;
    }
    const named = r.vars.map((v, i) => ({ name: v.name, tensor: tf.tensor(sum.subarray(r.offsets[i]!, r.offsets[i]! + v.size), v.shape, 'float32') }));
    try {
      optimizer.applyGradients(named);
    } finally {
      this.version++;
      tf.dispose(named.map((t) => t.tensor));
    }
    return total / norm;
  }

  /**
   * The model's output (softmax probabilities, [examples, ...patch, nLab] flat) for a batch of raw
   * patches ([examples, ...patch, nChannels]), split over up to `threads` threads.
   */
  async predict(raw: Float32Array, examples: number): Promise<Float32Array> {
    if (this.closed) throw new Error('the training pool is closed');
    const { patch, nChannels, unet } = this.opts;
    const voxels = patch.reduce((a, b) => a * b, 1);
    const parts = Math.min(this.threads, examples);
    const base = Math.floor(examples / parts);
    const extra = examples % parts;
    const sizes = Array.from({ length: parts }, (_, i) => base + (i >= parts - extra ? 1 : 0));
    const starts = sizes.map((_, i) => sizes.slice(0, i).reduce((a, b) => a + b, 0));
    const seq = ++this.seq;
    const weights = this.publish();
    const pending = this.workers.slice(0, parts - 1).map((w, i) => {
      const part = raw.slice(starts[i + 1]! * voxels * nChannels, (starts[i + 1]! + sizes[i + 1]!) * voxels * nChannels);
      return w.request({ type: 'predict', seq, weights, raw: part, examples: sizes[i + 1]! }, [part.buffer as ArrayBuffer]);
    });
    const out = new Float32Array(examples * voxels * unet.nLab);
    try {
      out.set(predictShard(this.replica, raw.subarray(0, sizes[0]! * voxels * nChannels), sizes[0]!, patch, nChannels), 0);
    } catch (e) {
      await Promise.allSettled(pending);
      throw e;
    }
    for (const [i, reply] of (await Promise.all(pending)).entries()) {
      if (reply.type !== 'probs' || reply.seq !== seq) throw workerError(i + 1, `answered out of turn (pool request ${seq})`);
      out.set(reply.probs, starts[i + 1]! * voxels * unet.nLab);
    }
    return out;
  }

  /** Shuts every worker down (idempotent); call on every exit path, or the process will not exit. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    setDnnlThreads(this.convThreadsBefore);
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
