/** convert's reader worker: opens the inputs and maps the pieces it claims from the shared counter, a bounded number ahead of the writer. */
import { parentPort } from 'node:worker_threads';
import { postableError } from '../errors.js';
import { ConvertTally } from '../core/convert.js';
import { initHdf5 } from '../io/hdf5.js';
import { IN_FLIGHT, LabelBuffers, mapPiece, NEXT, openMappingInputs, WRITTEN, type FromWorker, type ToWorker } from './convertMapping.js';

const port = parentPort!;

// convert may start this worker before it has opened its own inputs: initialise HDF5 while waiting for the
// pieces. (A failure here shows again, and is reported, when the inputs are opened.)
initHdf5().catch(() => undefined);

port.on('message', (m: ToWorker) => {
  run(m).catch((e: unknown) => port.postMessage({ type: 'error', error: postableError(e) } satisfies FromWorker));
});

async function run(m: ToWorker): Promise<void> {
  const shared = new Int32Array(m.shared);
  const inputs = await openMappingInputs(m.refs);
  try {
    const tally = new ConvertTally(m.plan.nLab);
    const buffers = new LabelBuffers(m.returned);
    for (;;) {
      // claim the next piece only while fewer than IN_FLIGHT are unwritten (Atomics.wait blocks this thread, no spinning)
      let written = Atomics.load(shared, WRITTEN);
      while (Atomics.load(shared, NEXT) - written >= IN_FLIGHT) {
        Atomics.wait(shared, WRITTEN, written, 1000);
        written = Atomics.load(shared, WRITTEN);
      }
      const index = Atomics.add(shared, NEXT, 1);
      if (index >= m.pieces.length) break;
      const labels = await mapPiece(m.plan, inputs, m.pieces[index]!, tally, buffers);
      port.postMessage({ type: 'piece', index, labels } satisfies FromWorker, [labels.buffer as ArrayBuffer]);
    }
    port.postMessage({ type: 'done', tally: tally.result() } satisfies FromWorker);
  } finally {
    m.returned?.close();
    inputs.mask?.close();
    if (inputs.classes !== inputs.mask) inputs.classes?.close();
  }
}
