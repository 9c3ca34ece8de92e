/**
 * Count a label volume with this thread and one worker thread, both claiming units from a shared counter: whole-chunk
 * boxes read through libhdf5 (each thread its own HDF5 instance), or the units of the reader without libhdf5
 * (h5direct.ts: chunks inflated by native zlib, or pieces of contiguous data).
 */
import { Worker } from 'node:worker_threads';
import { hdf5WorkerData } from '../io/hdf5.js';
import { workerUrl } from '../packageRoot.js';
import { revivedError, type PostedError } from '../errors.js';
import { LabelTally, type LabelTallyResult } from '../core/labelTally.js';
import type { Box } from '../core/slabs.js';
import type { NumericArray } from '../io/dtype.js';
import type { ProgressFn } from './progress.js';

/** What both threads count, as each of them opens it. */
export type TallySource =
  | { kind: 'boxes'; file: string; key: string; isFloat: boolean; boxes: Pick<Box, 'starts' | 'ends'>[] }
  | { kind: 'direct'; file: string; key: string; pieceBytes: number };

export type ToTallyWorker = { source: TallySource; nLab: number; shared: SharedArrayBuffer };
export type FromTallyWorker =
  | { type: 'done'; tally: Omit<LabelTallyResult, 'outOfRange'> & { outOfRange: [number, number][] } }
  | { type: 'error'; error: PostedError };

/** The units of a source as one thread opened it; `read(i)` is valid until the next read. */
export interface UnitReader {
  count: number;
  isFloat: boolean;
  read(i: number): NumericArray;
}

/** Slots of the shared BigInt64Array: the next unclaimed unit, and voxels counted by the worker (for progress). */
export const NEXT_UNIT = 0;
export const WORKER_VOXELS = 1;

/** Claim units until none is left, counting each into `tally`; `counted(n)` after each. */
export function claimAndCount(units: UnitReader, shared: BigInt64Array, tally: LabelTally, counted: (voxels: number) => void): void {
  for (;;) {
    const i = Number(Atomics.add(shared, NEXT_UNIT, 1n));
    if (i >= units.count) break;
    const values = units.read(i);
    tally.add(values, units.isFloat);
    counted(values.length);
  }
}

/**
 * Both threads claim units until none is left (tallies do not care about order), so the worker's start-up
 * delays nothing: this thread counts from the first unit on (`mine`: the source as this thread opened it). A
 * worker error becomes the same error here.
 */
export async function tallyWithWorker(source: TallySource, mine: UnitReader, nLab: number, total: number, onProgress: ProgressFn): Promise<LabelTallyResult> {
  const shared = new BigInt64Array(new SharedArrayBuffer(16));
  // the reader without libhdf5 needs no compiled libhdf5 in the worker
  const worker = new Worker(workerUrl('ops/tallyWorker.js'), { workerData: source.kind === 'boxes' ? await hdf5WorkerData() : {} });
  const finished = new Promise<FromTallyWorker>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the counting worker exited with code ${code}`)));
  });
  finished.catch(() => {}); // handled below; a rejection before we await it is not unhandled
  try {
    worker.postMessage({ source, nLab, shared: shared.buffer as SharedArrayBuffer } satisfies ToTallyWorker);
    const tally = new LabelTally(nLab);
    let counted = 0;
    claimAndCount(mine, shared, tally, (n) => {
      counted += n;
      onProgress({ label: source.file, done: counted + Number(Atomics.load(shared, WORKER_VOXELS)), total });
    });
    const m = await finished;
    if (m.type === 'error') throw revivedError(m.error);
    tally.addResult({ ...m.tally, outOfRange: new Map(m.tally.outOfRange) });
    onProgress({ label: source.file, done: total, total });
    return tally.result();
  } finally {
    Atomics.store(shared, NEXT_UNIT, BigInt(Number.MAX_SAFE_INTEGER)); // a worker still claiming stops
    await worker.terminate();
  }
}
