/** Where lazylabel's own files are (package.json, schemas/, dist/), whether this code runs from src/, dist/ or the bundled CLI. */
import fs from 'node:fs';

/**
 * The nearest folder above `from` that holds a package.json: src/x.ts, dist/x/y.js and dist/cli-bundle/chunk.js all
 * resolve to the package root, so no module depends on how deep the build put it.
 */
export function findPackageRoot(from: string | URL): URL {
  let dir = new URL('./', from);
  for (;;) {
    if (fs.existsSync(new URL('package.json', dir))) return dir;
    const up = new URL('../', dir);
    if (up.href === dir.href) throw new Error(`lazylabel: no package.json above ${String(from)}`);
    dir = up;
  }
}

export const PACKAGE_ROOT: URL = findPackageRoot(import.meta.url);

/** A file of the package, e.g. `packageFile('schemas/')` or `packageFile('dist/ops/tallyWorker.js')`. */
export function packageFile(relative: string): URL {
  return new URL(relative, PACKAGE_ROOT);
}

/** A worker thread's module: always the tsc output under dist/ (`name` e.g. `ops/tallyWorker.js`), also when the caller runs from src/ (the test runner) or from the bundled CLI. */
export function workerUrl(name: string): URL {
  return packageFile(`dist/${name}`);
}
