/** A training pool worker thread (see pool.ts): its own tfjs backend and U-Net replica; per step it loads the published weights and writes its shard's gradient. */
import { parentPort, workerData } from 'node:worker_threads';
import { selectBackend } from './backend.js';
import { setDnnlThreads } from './dnnlKernels.js';
import { buildUNet } from './models.js';
import { loadWeights, predictShard, replicaOf, shardGradient, type FromWorker, type Replica, type ToWorker, type WorkerInit } from './pool.js';

const init = workerData as WorkerInit;
const port = parentPort!;
const send = (m: FromWorker): void => port.postMessage(m);
const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** This thread's replica with its variables put in the main thread's order (matched by layer weight name). */
async function setUp(): Promise<Replica> {
  // selectBackend also registers our wasm training kernels in this thread's tfjs
  const sel = await selectBackend(init.backend);
  setDnnlThreads(init.convThreads);
  if (sel.name !== init.backend) throw new Error(`backend ${init.backend} requested, ${sel.name} started`);
  const own = replicaOf(sel.tf, buildUNet(init.unet));
  const byName = new Map(own.names.map((n, i) => [n, own.vars[i]!]));
  if (byName.size !== own.names.length) throw new Error("model has duplicate weight names; cannot match them to the main thread's");
  const vars = init.names.map((name, i) => {
    const v = byName.get(name);
    const want = init.shapes[i]!;
    if (!v || v.shape.length !== want.length || v.shape.some((d, k) => d !== want[k])) {
      throw new Error(`model mismatch: the main thread's ${name} [${want.join(', ')}] is ${v ? `[${v.shape.join(', ')}]` : 'missing'} here`);
    }
    return v;
  });
  if (vars.length !== own.vars.length) throw new Error(`model mismatch: ${own.vars.length} trainable weights here, ${vars.length} on the main thread`);
  const offsets: number[] = [];
  let size = 0;
  for (const v of vars) {
    offsets.push(size);
    size += v.size;
  }
  return { ...own, vars, names: init.names, offsets, size };
}

try {
  const replica = await setUp();
  const weights = new Float32Array(init.weights);
  const grads = new Float32Array(init.grads);
  const sync = new Int32Array(init.sync);
  let loaded = 0; // version of the weights in our variables
  port.on('message', (m: ToWorker) => {
    try {
      if (m.weights !== loaded) {
        // Atomics.load pairs with the main thread's Atomics.store: the weights it wrote are visible now
        const published = Atomics.load(sync, 0);
        if (published !== m.weights) throw new Error(`weights version ${m.weights} expected, ${published} published`);
        loadWeights(replica, weights);
        loaded = published;
      }
      if (m.type === 'step') {
        const { total, n } = shardGradient(replica, m.shard, init.patch, init.nChannels, init.loss, grads);
        Atomics.store(sync, init.index, m.seq); // publishes the gradient writes before the reply
        send({ type: 'done', seq: m.seq, total, n });
      } else {
        const probs = predictShard(replica, m.raw, m.examples, init.patch, init.nChannels);
        send({ type: 'probs', seq: m.seq, probs }); // copied, not transferred: on the cpu backend it may be tensor storage
      }
    } catch (e) {
      send({ type: 'error', seq: m.seq, message: message(e) });
    }
  });
  send({ type: 'ready', detail: replica.tf.getBackend() });
} catch (e) {
  send({ type: 'error', seq: null, message: message(e) });
}
