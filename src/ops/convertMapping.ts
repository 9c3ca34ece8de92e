/** convert's mapping of input pieces into int16 labels: in this thread, or in a reader worker that reads and maps the next piece while this thread compresses and writes the current one. */
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
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

/**
 * Label arrays used again once the writer is done with them. A fresh array per piece costs its first touch of
 * every page (~1400 page faults for 2.8 M labels, ~10 µs each on the bench VM): on a 128 MiB volume that
 * was ~0.3 s of convert's CPU time. Arrays handed back by another thread arrive on `returned`.
 */
export class LabelBuffers {
  private readonly free: Int16Array[] = [];

  constructor(private readonly returned?: MessagePort) {}

  /** An array of n labels, on a returned buffer that is large enough when there is one. */
  take(n: number): Int16Array {
    for (let m = this.returned && receiveMessageOnPort(this.returned); m; m = receiveMessageOnPort(this.returned!)) this.give(m.message as Int16Array);
    const i = this.free.findIndex((b) => b.length >= n);
    if (i < 0) return new Int16Array(n);
    const [b] = this.free.splice(i, 1);
    return b!.length === n ? b! : new Int16Array(b!.buffer, 0, n);
  }

  /** Hand back an array that nobody reads any more. */
  give(labels: Int16Array): void {
    // pieces in flight are bounded (IN_FLIGHT), so is this list: keep a few, whole buffers
    if (this.free.length < 4) this.free.push(new Int16Array(labels.buffer as ArrayBuffer));
  }
}

/**
 * The piece of each input. When every input can give `readBoxView` views (HDF5 volumes of plain numeric types),
 * they are views on libhdf5's heap: no copy out of it and no new arrays. A view is valid until the next read,
 * which may grow the heap and so detach the views before it: those are made again on the heap's new buffer
 * (their bytes stay where they are). Otherwise every input is read by `readBox`.
 */
async function readPiece(volumes: VolumeReader[], piece: Piece): Promise<NumericArray[]> {
  const none = piece.starts.map(() => 0);
  if (!volumes.every((v) => v.readBoxView?.(none, none))) return Promise.all(volumes.map((v) => v.readBox(piece.starts, piece.ends)));
  // where each view lies, noted before the next read can detach it
  const placed = volumes.map((v) => {
    const view = v.readBoxView!(piece.starts, piece.ends)!;
    return { view, byteOffset: view.byteOffset, length: view.length };
  });
  const heap = placed[placed.length - 1]!.view.buffer;
  return placed.map(({ view, byteOffset, length }) =>
    view.length === length ? view : new (view.constructor as new (b: ArrayBufferLike, o: number, n: number) => NumericArray)(heap, byteOffset, length));
}

/** Map one piece read from the open inputs; the tally counts what is returned. `buffers`: where the labels go (default new arrays). */
export async function mapPiece(plan: MappingPlan, inputs: MappingInputs<VolumeReader>, piece: Piece, tally: ConvertTally, buffers?: LabelBuffers): Promise<Int16Array> {
  const n = piece.ends.reduce((a, e, i) => a * (e - piece.starts[i]!), 1);
  const out = buffers?.take(n);
  switch (plan.mode) {
    case 'mask-classes': {
      const [mask, classes] = await readPiece([inputs.mask!, inputs.classes!], piece);
      return mapMaskClasses(mask!, classes!, tally, out);
    }
    case 'mask-fill':
      return mapMaskFill((await readPiece([inputs.mask!], piece))[0]!, plan.fillClass!, tally, out);
    case 'all-ignore':
      return mapAllIgnore(n, tally, out);
    case 'ignore-value':
    case 'unlabeled-value':
      return mapMarkerValue((await readPiece([inputs.classes!], piece))[0]!, plan.marker!, plan.shift, tally, out);
  }
}

/** The pieces mapped in this thread, in order. Each array is reused once the next is asked for: write it, then drop it. */
export async function* mapPieces(plan: MappingPlan, inputs: MappingInputs<VolumeReader>, pieces: Iterable<Piece>, tally: ConvertTally): AsyncGenerator<Int16Array> {
  const buffers = new LabelBuffers();
  for (const piece of pieces) {
    const labels = await mapPiece(plan, inputs, piece, tally, buffers);
    yield labels;
    buffers.give(labels);
  }
}

/** Messages between this thread and the reader worker. `returned`: where this thread sends the worker's label arrays back once written (optional). */
export type ToWorker = { type: 'start'; plan: MappingPlan; refs: MappingInputs<{ file: string; key: string }>; pieces: Piece[]; shared: SharedArrayBuffer; returned?: MessagePort };
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
    this.worker.postMessage(m, m.returned ? [m.returned] : []);
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
  // label arrays go back to the thread that mapped them once written: the worker's over this channel
  const buffers = new LabelBuffers();
  const channel = new MessageChannel();
  try {
    reader.post({ type: 'start', plan, refs, pieces, shared: shared.buffer as SharedArrayBuffer, returned: channel.port2 });
    for (let i = 0; i < pieces.length; i++) {
      reader.assertAlive();
      // (inputs null: the worker maps every piece; tests use it to exercise the worker alone)
      if (inputs && Atomics.compareExchange(shared, NEXT, i, i + 1) === i) {
        const labels = await mapPiece(plan, inputs, pieces[i]!, tally, buffers);
        yield labels;
        buffers.give(labels);
      } else {
        const m = await reader.next();
        if (m.type !== 'piece' || m.index !== i) throw new Error(`convert's reader worker sent ${m.type} out of order`);
        yield m.labels;
        channel.port1.postMessage(m.labels, [m.labels.buffer as ArrayBuffer]);
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
    channel.port1.close();
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
