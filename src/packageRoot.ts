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

/** True when this code runs from the bundled CLI (scripts/build-cli.js writes dist/cli-bundle/). */
const IN_CLI_BUNDLE = new URL('./', import.meta.url).pathname.endsWith('/dist/cli-bundle/');

/**
 * A worker thread's module (`name` e.g. `ops/tallyWorker.js`): the bundled entry when the caller is the bundled
 * CLI (fewer modules to load, the vendored h5wasm), else the tsc output under dist/, also when the caller runs
 * from src/ (the test runner).
 */
export function workerUrl(name: string): URL {
  return packageFile(IN_CLI_BUNDLE ? `dist/cli-bundle/${name}` : `dist/${name}`);
}
