/** The counting worker of tallyWorkerPool: opens the label volume itself and counts the units it claims. */
import { parentPort } from 'node:worker_threads';
import { postableError } from '../errors.js';
import { LabelTally } from '../core/labelTally.js';
import { DirectReadError } from '../io/h5chunks.js';
import { DirectH5File } from '../io/h5direct.js';
import { openLabelVolume } from './scan.js';
import { claimAndCount, WORKER_VOXELS, type FromTallyWorker, type ToTallyWorker, type UnitReader } from './tallyWorkerPool.js';

const port = parentPort!;

port.once('message', (m: ToTallyWorker) => {
  run(m).then(
    (msg) => port.postMessage(msg),
    (e: unknown) => port.postMessage({ type: 'error', error: postableError(e) } satisfies FromTallyWorker),
  );
});

async function run(m: ToTallyWorker): Promise<FromTallyWorker> {
  const shared = new BigInt64Array(m.shared);
  const { source } = m;
  let units: UnitReader;
  let close: () => void;
  if (source.kind === 'boxes') {
    const vol = await openLabelVolume(source.file, source.key);
    units = { count: source.boxes.length, isFloat: source.isFloat, read: (i) => vol.readBoxView!(source.boxes[i]!.starts, source.boxes[i]!.ends)! };
    close = () => vol.close();
  } else {
    const file = DirectH5File.open(source.file);
    const ds = file?.dataset(source.key);
    if (!file || !ds || ds === 'absent') {
      file?.close();
      throw new DirectReadError(`${source.file}: the dataset ${source.key} is no longer readable without libhdf5`);
    }
    units = { ...file.units(ds, source.pieceBytes), isFloat: false };
    close = () => file.close();
  }
  try {
    const tally = new LabelTally(m.nLab);
    claimAndCount(units, shared, tally, (n) => Atomics.add(shared, WORKER_VOXELS, BigInt(n)));
    const r = tally.result();
    return { type: 'done', tally: { ...r, outOfRange: [...r.outOfRange] } };
  } finally {
    close();
  }
}
