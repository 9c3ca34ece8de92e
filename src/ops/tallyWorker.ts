/** The counting worker of tallyWorkerPool: opens the label volume itself and counts the boxes it claims. */
import { parentPort } from 'node:worker_threads';
import { postableError } from '../errors.js';
import { LabelTally } from '../core/labelTally.js';
import { openLabelVolume } from './scan.js';
import { NEXT_BOX, WORKER_VOXELS, type FromTallyWorker, type ToTallyWorker } from './tallyWorkerPool.js';

const port = parentPort!;

port.once('message', (m: ToTallyWorker) => {
  run(m).then(
    (msg) => port.postMessage(msg),
    (e: unknown) => port.postMessage({ type: 'error', error: postableError(e) } satisfies FromTallyWorker),
  );
});

async function run(m: ToTallyWorker): Promise<FromTallyWorker> {
  const shared = new BigInt64Array(m.shared);
  const vol = await openLabelVolume(m.file, m.key);
  try {
    const tally = new LabelTally(m.nLab);
    for (;;) {
      const i = Number(Atomics.add(shared, NEXT_BOX, 1n));
      if (i >= m.boxes.length) break;
      const view = vol.readBoxView!(m.boxes[i]!.starts, m.boxes[i]!.ends)!;
      tally.add(view, m.isFloat);
      Atomics.add(shared, WORKER_VOXELS, BigInt(view.length));
    }
    const r = tally.result();
    return { type: 'done', tally: { ...r, outOfRange: [...r.outOfRange] } };
  } finally {
    vol.close();
  }
}
