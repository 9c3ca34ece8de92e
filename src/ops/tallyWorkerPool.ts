/** Count an HDF5 label volume with this thread and one worker thread (its own HDF5 instance) claiming whole-chunk boxes from a shared counter. */
import { Worker } from 'node:worker_threads';
import { hdf5WorkerData } from '../io/hdf5.js';
import { workerUrl } from '../packageRoot.js';
import { revivedError, type PostedError } from '../errors.js';
import { LabelTally, type LabelTallyResult } from '../core/labelTally.js';
import type { Box } from '../core/slabs.js';
import type { VolumeReader } from '../io/volume.js';
import type { ProgressFn } from './progress.js';

export type ToTallyWorker = { file: string; key: string; nLab: number; isFloat: boolean; boxes: Pick<Box, 'starts' | 'ends'>[]; shared: SharedArrayBuffer };
export type FromTallyWorker =
  | { type: 'done'; tally: Omit<LabelTallyResult, 'outOfRange'> & { outOfRange: [number, number][] } }
  | { type: 'error'; error: PostedError };

/** Slots of the shared BigInt64Array: the next unclaimed box, and voxels counted by the worker (for progress). */
export const NEXT_BOX = 0;
export const WORKER_VOXELS = 1;


/**
 * Both threads claim boxes until none is left (tallies do not care about order), so the worker's start-up
 * delays nothing: this thread counts from the first box on. A worker error becomes the same user error here.
 */
export async function tallyBoxesWithWorker(vol: VolumeReader, nLab: number, boxes: Box[], isFloat: boolean, onProgress: ProgressFn): Promise<LabelTallyResult> {
  const shared = new BigInt64Array(new SharedArrayBuffer(16));
  const total = vol.shape.reduce((a, b) => a * b, 1);
  const worker = new Worker(workerUrl('ops/tallyWorker.js'), { workerData: await hdf5WorkerData() });
  const finished = new Promise<FromTallyWorker>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the counting worker exited with code ${code}`)));
  });
  finished.catch(() => {}); // handled below; a rejection before we await it is not unhandled
  try {
    worker.postMessage({ file: vol.file, key: vol.key, nLab, isFloat, boxes: boxes.map(({ starts, ends }) => ({ starts, ends })), shared: shared.buffer as SharedArrayBuffer } satisfies ToTallyWorker);
    const tally = new LabelTally(nLab);
    let mine = 0;
    for (;;) {
      const i = Number(Atomics.add(shared, NEXT_BOX, 1n));
      if (i >= boxes.length) break;
      const view = vol.readBoxView!(boxes[i]!.starts, boxes[i]!.ends)!;
      tally.add(view, isFloat);
      mine += view.length;
      onProgress({ label: vol.file, done: mine + Number(Atomics.load(shared, WORKER_VOXELS)), total });
    }
    const m = await finished;
    if (m.type === 'error') throw revivedError(m.error);
    tally.addResult({ ...m.tally, outOfRange: new Map(m.tally.outOfRange) });
    onProgress({ label: vol.file, done: total, total });
    return tally.result();
  } finally {
    Atomics.store(shared, NEXT_BOX, BigInt(boxes.length)); // a worker still claiming stops
    await worker.terminate();
  }
}
