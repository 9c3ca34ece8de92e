/** Where a worker thread's compiled module is: always the tsc output in dist/, also when the caller runs from its TypeScript source (the test runner) or from the bundled CLI. */
import { packageFile } from './packageRoot.js';

/** `name` is the module's path under dist/, e.g. `ops/tallyWorker.js`. */
export function workerUrl(name: string): URL {
  return packageFile(`dist/${name}`);
}
