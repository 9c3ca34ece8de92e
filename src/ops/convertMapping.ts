/** convert's mapping of input pieces into int16 labels: in this thread, or in a reader worker that reads and maps the next piece while this thread compresses and writes the current one. */
import { Worker } from 'node:worker_threads';
import { workerUrl } from '../packageRoot.js';
import { revivedError, type PostedError } from '../errors.js';
import { ConvertTally, mapAllIgnore, mapMarkerValue, mapMaskClasses, mapMaskFill, type ConvertMode, type ConvertTallyResult } from '../core/convert.js';
import type { NumericArray } from '../io/dtype.js';
import type { VolumeReader } from '../io/volume.js';
import { hdf5WorkerData } from '../io/hdf5.js';
import { openLabelVolume } from './scan.js';

/** What the mapping needs to know of the plan (plain data: it is posted to the worker). */
export interface MappingPlan {
  mode: ConvertMode;
  nLab: number;
  fillClass?: number;
  marker?: number;
  shift: boolean;
}

/** One piece of the output, in input coordinates (a slab of rows, or a box of whole chunks). */
export interface Piece {
  starts: number[];
  ends: number[];
}

export interface MappingInputs<T> {
  mask?: T;
  classes?: T;
}

/** Map one piece read from the open inputs; the tally counts what is returned. */
export async function mapPiece(plan: MappingPlan, inputs: MappingInputs<VolumeReader>, piece: Piece, tally: ConvertTally): Promise<Int16Array> {
  const read = (v: VolumeReader | undefined): Promise<NumericArray> => v!.readBox(piece.starts, piece.ends);
  switch (plan.mode) {
    case 'mask-classes':
      return mapMaskClasses(await read(inputs.mask), await read(inputs.classes), tally);
    case 'mask-fill':
      return mapMaskFill(await read(inputs.mask), plan.fillClass!, tally);
    case 'all-ignore':
      return mapAllIgnore(piece.ends.reduce((a, e, i) => a * (e - piece.starts[i]!), 1), tally);
    case 'ignore-value':
    case 'unlabeled-value':
      return mapMarkerValue(await read(inputs.classes), plan.marker!, plan.shift, tally);
  }
}

/** The pieces mapped in this thread, in order. */
export async function* mapPieces(plan: MappingPlan, inputs: MappingInputs<VolumeReader>, pieces: Iterable<Piece>, tally: ConvertTally): AsyncGenerator<Int16Array> {
  for (const piece of pieces) yield await mapPiece(plan, inputs, piece, tally);
}

/** Messages between this thread and the reader worker. */
export type ToWorker = { type: 'start'; plan: MappingPlan; refs: MappingInputs<{ file: string; key: string }>; pieces: Piece[]; shared: SharedArrayBuffer };
export type FromWorker =
  | { type: 'piece'; index: number; labels: Int16Array }
  | { type: 'done'; tally: ConvertTallyResult }
  | { type: 'error'; error: PostedError };

/** Slots of the shared Int32Array: the next unclaimed piece, and how many pieces the writer is done with. */
export const NEXT = 0;
export const WRITTEN = 1;
/** Pieces claimed but not yet written, at most: the one being written and the one mapped next. */
export const IN_FLIGHT = 2;


/**
 * convert's reader worker, listening from the moment it is created: it can be started before the inputs are
 * opened and the pieces planned (its start-up, a Node isolate plus its own HDF5, then overlaps that work), and
 * a failure while nobody waits on it is kept for whoever asks next instead of crashing the process.
 */
export class ReaderWorker {
  private readonly worker: Worker;
  private readonly queue: FromWorker[] = [];
  private wake: (() => void) | null = null;
  private failure: unknown = null;
  /** Set by stop(): an exit after it is no failure. */
  private stopped: Promise<unknown> | null = null;

  /** Starts the worker, handing it this thread's compiled libhdf5 when there is one. `url`: the worker module (tests pass others). */
  static async start(url: URL = workerUrl('ops/convertWorker.js')): Promise<ReaderWorker> {
    return new ReaderWorker(url, await hdf5WorkerData());
  }

  private constructor(url: URL, workerData: unknown) {
    this.worker = new Worker(url, { workerData });
    this.worker.on('message', (m: FromWorker) => {
      this.queue.push(m);
      this.wake?.();
    });
    this.worker.on('error', (e) => {
      this.failure ??= e;
      this.wake?.();
    });
    this.worker.on('exit', (code) => {
      if (code !== 0 && !this.stopped) this.failure ??= new Error(`convert's reader worker exited with code ${code}`);
      this.wake?.();
    });
  }

  /** Throws what the worker failed with, if anything. */
  assertAlive(): void {
    if (this.failure) throw this.failure;
  }

  post(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  /** The next message; the worker's errors are rethrown as the same LazyLabelError. */
  async next(): Promise<FromWorker> {
    while (!this.queue.length) {
      if (this.failure) throw this.failure;
      await new Promise<void>((r) => (this.wake = r));
      this.wake = null;
    }
    const m = this.queue.shift()!;
    if (m.type === 'error') throw revivedError(m.error);
    return m;
  }

  /** Stops the worker (also one still starting, or one that was never used); safe to call more than once. */
  async stop(): Promise<void> {
    this.stopped ??= this.worker.terminate();
    await this.stopped;
  }
}

/**
 * The pieces in order, mapped by this thread and a reader worker with its own HDF5 instance (libhdf5 in
 * wasm is single-threaded: this is how reading and mapping overlap with compressing the output). Both
 * claim pieces from a shared counter: this thread maps a piece itself only when it needs it next and the
 * worker has not claimed it (so the worker's ~0.3 s start-up costs nothing), the worker claims ahead while
 * fewer than IN_FLIGHT pieces are unwritten (bounded memory). The worker's counts are added to `tally`
 * when it finishes; its errors are rethrown here as the same LazyLabelError; closing early stops it.
 * `started`: a worker started earlier (default: one started now); it is stopped at the end either way.
 */
export async function* mapPiecesInWorker(plan: MappingPlan, refs: MappingInputs<{ file: string; key: string }>, inputs: MappingInputs<VolumeReader> | null, pieces: Piece[], tally: ConvertTally, started?: ReaderWorker): AsyncGenerator<Int16Array> {
  const shared = new Int32Array(new SharedArrayBuffer(8));
  const reader = started ?? (await ReaderWorker.start());
  try {
    reader.post({ type: 'start', plan, refs, pieces, shared: shared.buffer as SharedArrayBuffer });
    for (let i = 0; i < pieces.length; i++) {
      reader.assertAlive();
      // (inputs null: the worker maps every piece; tests use it to exercise the worker alone)
      if (inputs && Atomics.compareExchange(shared, NEXT, i, i + 1) === i) {
        yield await mapPiece(plan, inputs, pieces[i]!, tally);
      } else {
        const m = await reader.next();
        if (m.type !== 'piece' || m.index !== i) throw new Error(`convert's reader worker sent ${m.type} out of order`);
        yield m.labels;
      }
      Atomics.add(shared, WRITTEN, 1);
      Atomics.notify(shared, WRITTEN);
    }
    const end = await reader.next();
    if (end.type !== 'done') throw new Error(`convert's reader worker sent ${end.type} after the last piece`);
    tally.addResult(end.tally);
  } finally {
    // unblock a worker waiting for the writer, then stop it
    Atomics.store(shared, WRITTEN, pieces.length + IN_FLIGHT);
    Atomics.store(shared, NEXT, pieces.length);
    Atomics.notify(shared, WRITTEN);
    await reader.stop();
  }
}

/** Open the inputs in the worker (by reference: the worker has its own HDF5 instance). */
export async function openMappingInputs(refs: MappingInputs<{ file: string; key: string }>): Promise<MappingInputs<VolumeReader>> {
  const out: MappingInputs<VolumeReader> = {};
  if (refs.mask) out.mask = await openLabelVolume(refs.mask.file, refs.mask.key);
  if (refs.classes) out.classes = await openLabelVolume(refs.classes.file, refs.classes.key);
  return out;
}
