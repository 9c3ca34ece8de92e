#!/usr/bin/env node
// Builds the fast-starting CLI after tsc (run by `npm run build`, `prepare` and `npm test`):
//  - dist/vendor/h5wasm/: h5wasm's Node build with its WebAssembly moved out of the JavaScript into
//    hdf5_util.wasm. The stock file embeds the 3.5 MB binary as a string literal, which Node reads as UTF-8,
//    parses and decodes on every start (~90 ms of a 16^3 `check`); read from a file it costs ~3 ms.
//  - dist/cli-bundle/: the compiled CLI and its pure-JS dependencies (yargs, ndarray, ...) bundled by esbuild
//    into a few chunks (lazy commands stay lazy), which saves resolving and compiling ~150 modules (~50 ms).
// bin/lazylabel.js runs the bundle when it is at least as new as dist/cli/main.js, else the plain tsc output,
// so a `tsc`-only rebuild never runs stale code. Worker threads started by the bundle run bundled worker
// entries (dist/cli-bundle/ops/*.js, train/*.js); the library API (dist/index.js) uses the plain tsc output
// and the stock h5wasm.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { addCompilationHints, hotFunctionsFor } from './hdf5-hints.js';

const root = path.resolve(fileURLToPath(new URL('..', import.meta.url)));
const dist = path.join(root, 'dist');
const vendorDir = path.join(dist, 'vendor', 'h5wasm');
const bundleDir = path.join(dist, 'cli-bundle');

/**
 * Emscripten's `instantiateWasm` hook of the vendored h5wasm. When bin/lazylabel.js left a promise of the compiled
 * HDF5 module under this global symbol, V8 compiled it on background threads while the CLI's own modules loaded
 * (~15 ms less per start); the promise resolves to null when that failed, and the hook then compiles
 * hdf5_util.wasm itself (as it does without the promise). A worker thread gets the main thread's compiled module in
 * its workerData (src/io/hdf5.ts `hdf5WorkerData`, same key as a string): PREFETCH_FROM_WORKER_DATA puts it under
 * the symbol, so the worker shares the code the main thread compiled. The hook also leaves libhdf5's
 * WebAssembly.Memory under MEMORY_KEY (h5wasm exposes only its views), so that the counting kernels can count boxes
 * where libhdf5 read them (src/io/hdf5.ts, src/core/countKernel.ts `countInPlaceOn`).
 */
const PREFETCH_KEY = "Symbol.for('lazylabel.hdf5WasmModule')";
const MEMORY_KEY = "Symbol.for('lazylabel.hdf5Memory')";
const PREFETCH_FROM_WORKER_DATA =
  "import { workerData as __lazylabelWorkerData } from 'node:worker_threads';\n" +
  "import { readFileSync as __lazylabelReadFileSync } from 'node:fs';\n" +
  `if (!globalThis[${PREFETCH_KEY}] && __lazylabelWorkerData && __lazylabelWorkerData['lazylabel.hdf5WasmModule'] instanceof WebAssembly.Module) ` +
  `globalThis[${PREFETCH_KEY}] = Promise.resolve(__lazylabelWorkerData['lazylabel.hdf5WasmModule']);\n`;
// Without a prefetched module the file is read synchronously, as Emscripten itself does: a missing file then
// rejects h5wasm's `ready` (Emscripten catches only synchronous throws of this hook).
const READ_AND_COMPILE = "WebAssembly.compile(__lazylabelReadFileSync(new URL('./hdf5_util.wasm', import.meta.url)))";
const INSTANTIATE_HOOK =
  '{ instantiateWasm(imports, receive) { ' +
  `const pending = globalThis[${PREFETCH_KEY}]; ` +
  `(pending ? Promise.resolve(pending).then((module) => module ?? ${READ_AND_COMPILE}) : ${READ_AND_COMPILE})` +
  '.then((module) => WebAssembly.instantiate(module, imports).then((instance) => { ' +
  `globalThis[${MEMORY_KEY}] = instance.exports.memory; receive(instance, module); })); ` +
  'return {}; } }';

/** Returns true when the vendored copy was written; false (with a warning) when this h5wasm has another layout. */
function vendorH5wasm() {
  const hl = fileURLToPath(import.meta.resolve('h5wasm/node'));
  const pkgDir = path.resolve(path.dirname(hl), '..', '..');
  const utilFile = path.join(path.dirname(hl), 'hdf5_util.js');
  const src = fs.readFileSync(utilFile, 'utf8');
  fs.rmSync(vendorDir, { recursive: true, force: true }); // never leave a copy of an older h5wasm behind
  const head = "function findWasmBinary(){return binaryDecode('";
  const at = src.indexOf(head);
  const end = at < 0 ? -1 : src.indexOf("')}", at + head.length);
  const decoder = /function binaryDecode\(bin\)\{[^}]*\}return o\}/.exec(src)?.[0];
  if (at < 0 || end < 0 || src.indexOf(head, at + 1) >= 0 || !decoder) {
    console.warn(`build-cli: ${utilFile} does not embed its WebAssembly the way h5wasm 0.10 does; the CLI uses the stock h5wasm`);
    return false;
  }
  // The literal and its decoder are evaluated exactly as the module would evaluate them.
  const literal = (0, eval)(`'${src.slice(at + head.length, end)}'`);
  const binaryDecode = (0, eval)(`(${decoder})`);
  const wasm = binaryDecode(literal);
  if (!WebAssembly.validate(wasm)) throw new Error(`build-cli: the WebAssembly decoded from ${utilFile} does not validate`);
  // the functions commands run, compiled eagerly in the background (scripts/hdf5-hints.js)
  const hot = hotFunctionsFor(wasm);
  if (!hot) console.warn(`build-cli: scripts/hdf5-hot-functions.json is for another hdf5_util.wasm; no compilation hints (run node scripts/hdf5-hints.js --profile after this build)`);
  const vendoredWasm = hot ? addCompilationHints(wasm, hot) : wasm;
  if (!WebAssembly.validate(vendoredWasm)) throw new Error('build-cli: hdf5_util.wasm with compilation hints does not validate');
  const util =
    src.slice(0, at) +
    'function findWasmBinary(){return require("fs").readFileSync(new URL("./hdf5_util.wasm",import.meta.url))}' +
    src.slice(end + 3);
  fs.mkdirSync(vendorDir, { recursive: true });
  fs.writeFileSync(path.join(vendorDir, 'hdf5_util.wasm'), vendoredWasm);
  fs.writeFileSync(path.join(vendorDir, 'hdf5_util.js'), util);
  // hdf5_hl.js: instantiate a module that bin/lazylabel.js already started compiling, when there is one
  const hlSrc = fs.readFileSync(hl, 'utf8');
  const factoryCall = 'ModuleFactory({ noInitialRun: true })';
  if (hlSrc.split(factoryCall).length !== 2) {
    console.warn(`build-cli: ${hl} does not create its module the way h5wasm 0.10 does; the CLI uses the stock h5wasm`);
    fs.rmSync(vendorDir, { recursive: true, force: true });
    return false;
  }
  fs.writeFileSync(path.join(vendorDir, 'hdf5_hl.js'), PREFETCH_FROM_WORKER_DATA + hlSrc.replace(factoryCall, `ModuleFactory({ noInitialRun: true, ...${INSTANTIATE_HOOK} })`));
  const version = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8')).version;
  fs.writeFileSync(
    path.join(vendorDir, 'README.md'),
    `h5wasm ${version} (https://github.com/usnistgov/h5wasm), dist/node/, generated by scripts/build-cli.js: ` +
      'identical except that hdf5_util.js reads its WebAssembly from hdf5_util.wasm instead of an embedded string ' +
      '(with a compilationHints section: scripts/hdf5-hints.js), and hdf5_hl.js instantiates it through a hook. ' +
      'License: LICENSE.txt (copied from the package).\n',
  );
  for (const name of ['LICENSE.txt', 'LICENSE']) {
    if (fs.existsSync(path.join(pkgDir, name))) fs.copyFileSync(path.join(pkgDir, name), path.join(vendorDir, name));
  }
  return true;
}

/** Worker thread modules (as named to packageRoot.workerUrl, without .js). */
const WORKERS = ['ops/tallyWorker', 'ops/convertWorker', 'train/poolWorker'];

const stringWidthShim = path.join(root, 'scripts', 'cli-shims', 'string-width.js');

async function bundleCli(vendored) {
  fs.rmSync(bundleDir, { recursive: true, force: true });
  const h5wasmTarget = vendored ? '../vendor/h5wasm/hdf5_hl.js' : 'h5wasm/node';
  await esbuild.build({
    // worker threads get bundled entries too (packageRoot.workerUrl picks them when the caller is bundled)
    entryPoints: Object.fromEntries(['cli/main', ...WORKERS].map((name) => [name === 'cli/main' ? 'main' : name, path.join(dist, `${name}.js`)])),
    outdir: bundleDir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    minifySyntax: true,
    // tfjs finds its .wasm files and native bindings next to its own modules; playwright is a test tool
    external: ['@tensorflow/*', 'playwright-core'],
    logLevel: 'warning',
    // CommonJS dependencies (pngjs, ...) call require() on Node built-ins; in an ES module bundle esbuild
    // routes those through a `require` in scope, which this defines once per chunk.
    banner: { js: "import { createRequire as __lazylabelCreateRequire } from 'node:module'; const require = __lazylabelCreateRequire(import.meta.url);" },
    plugins: [
      {
        name: 'h5wasm-vendored',
        setup(build) {
          build.onResolve({ filter: /^h5wasm\/node$/ }, () => ({ path: h5wasmTarget, external: true }));
        },
      },
      {
        // yargs guesses a version from the package.json nearest to its own module, found by listing every folder
        // upwards; bundled (no node_modules in the path) it starts at the working directory instead, and listing
        // a data folder of thousands of files, then its parents, cost every command up to ~10 ms (/tmp: 800
        // entries). Start at this package's package.json, two levels above the bundle (a file: yargs takes the
        // folder of anything with an extension, and a folder named like `pkg.v2` would look like one).
        name: 'yargs-package-root',
        setup(build) {
          build.onLoad({ filter: /yargs[\\/]lib[\\/]platform-shims[\\/]esm\.mjs$/ }, (args) => {
            const text = fs.readFileSync(args.path, 'utf8');
            const guess = "const mainFilename = __dirname.substring(0, __dirname.lastIndexOf('node_modules'));";
            if (!text.includes(guess)) throw new Error(`build-cli: yargs' shim changed (${args.path}); update the yargs-package-root plugin`);
            return { contents: text.replace(guess, "const mainFilename = fileURLToPath(new URL('../../package.json', import.meta.url));"), loader: 'js' };
          });
        },
      },
      {
        // yargs' help layout measures text with string-width, whose import alone costs ~15 ms (see the shim)
        name: 'string-width-ascii-first',
        setup(build) {
          build.onResolve({ filter: /^string-width$/ }, (args) => (args.importer === stringWidthShim ? undefined : { path: stringWidthShim }));
        },
      },
    ],
  });
  // The banner's `require` must be the only top-level one in each chunk (bundled ES modules keep their own
  // top-level names): a second declaration would be a SyntaxError at load time, so fail the build instead.
  for (const f of fs.readdirSync(bundleDir, { recursive: true }).filter((name) => name.endsWith('.js'))) {
    const text = fs.readFileSync(path.join(bundleDir, f), 'utf8');
    if (/^(?:const|let|var|function)\s+require\b/m.test(text)) throw new Error(`build-cli: ${f} declares its own top-level \`require\`; rename it (e.g. requireCjs)`);
  }
}

const vendored = vendorH5wasm();
await bundleCli(vendored);
