/** Where a worker thread's compiled module is: next to the caller in dist/, or in dist/ when the caller runs from its TypeScript source (the test runner). */
import fs from 'node:fs';

/** `name` is a path relative to the caller's folder, e.g. `./tallyWorker.js`; `from` is the caller's import.meta.url. */
export function workerUrl(name: string, from: string): URL {
  const here = new URL(name, from);
  if (fs.existsSync(here)) return here;
  // src/<dir>/x.ts -> dist/<dir>/x.js
  const fromPath = new URL('.', from).pathname;
  const dir = fromPath.replace(/\/$/, '').split('/').pop()!;
  return new URL(`../../dist/${dir}/${name.replace(/^\.\//, '')}`, from);
}
