#!/usr/bin/env node
// Entry point: the compiled CLI lives in dist/ (built by `npm install` through the prepare script).
import fs from 'node:fs';
import os from 'node:os';
import v8 from 'node:v8';

// V8 recompiles hot wasm functions with its optimising compiler in the background, and Node waits for
// those jobs before it exits: with the default budget a short command (a small file, a few cubes) spent
// ~60 ms compiling libhdf5/zlib code it no longer needed. A 100x budget keeps short runs on the baseline
// code; long runs still tier up within a second (measured: no change on the 4 GiB bench volume or on
// training steps). Set before h5wasm and tfjs compile their modules.
v8.setFlagsFromString('--wasm-tiering-budget=180000000');
// The vendored libhdf5 names the functions commands run (scripts/hdf5-hints.js): V8 compiles those on background
// threads with the module, not one by one on the main thread on first call (~18 ms less per start).
v8.setFlagsFromString('--experimental-wasm-compilation-hints');
// Leave a core to this thread: by default V8 compiles wasm on all its workers, and on 2 cores those took the
// core that this thread and libuv's file reads (module loading) need, while the compile had time to spare.
// Measured on 2 cores (1 task, A/B): 16^3 `check` 291 -> 281 ms, 128 MiB chunked `check` 529 -> 504 ms,
// `convert` 1056 -> 1013 ms; no change on the 4 GiB volume (there the background work is tier-up).
v8.setFlagsFromString(`--wasm-num-compilation-tasks=${Math.max(1, os.availableParallelism() - 1)}`);

// The bundled CLI (scripts/build-cli.js: fewer modules to load, HDF5's WebAssembly read from a file) starts
// ~150 ms faster; it is used only when it is at least as new as the tsc output, so that a bare `tsc` rebuild
// never runs stale code.
function newestEntry() {
  const plain = new URL('../dist/cli/main.js', import.meta.url);
  const bundled = new URL('../dist/cli-bundle/main.js', import.meta.url);
  try {
    if (fs.statSync(bundled).mtimeMs >= fs.statSync(plain).mtimeMs) return bundled.href;
  } catch {
    // no bundle (or no build at all: the import below says so)
  }
  return plain.href;
}

const entry = newestEntry();
const args = process.argv.slice(2);

// A command run (not --help, --version or completion) of the bundled CLI opens HDF5 files: start reading and
// compiling HDF5's 3.5 MB WebAssembly now, on V8's background threads, while the CLI's modules load and parse
// the arguments. The vendored h5wasm instantiates this module (scripts/build-cli.js); ~15 ms less per start.
const hdf5Wasm = new URL('../dist/vendor/h5wasm/hdf5_util.wasm', import.meta.url);
// Except for `check` and `suggest-prios`: they read files in h5py's and h5wasm's default format without libhdf5
// (src/io/h5direct.ts), and an unused compile still held the process ~30 ms at exit (V8 finishes it first).
// Files in other formats make them load libhdf5 when they get to one.
const readsWithoutLibhdf5 = args[0] === 'check' || args[0] === 'suggest-prios';
const runsCommand = args.length > 0 && !args[0].startsWith('-') && args[0] !== 'completion' && !args.some((a) => a === '--help' || a === '-h');
if (runsCommand && !readsWithoutLibhdf5 && entry.includes('/dist/cli-bundle/') && fs.existsSync(hdf5Wasm)) {
  // Read synchronously (~10 ms): fs.promises.readFile reads in 512 KiB steps, each waiting for a turn of this
  // thread's event loop, which is busy loading modules; the read then finished ~100 ms later and the compile
  // after it was on every command's critical path. null on failure: the vendored h5wasm then compiles the
  // file itself (and reports what goes wrong there).
  let compiled;
  try {
    compiled = WebAssembly.compile(fs.readFileSync(hdf5Wasm));
  } catch {
    compiled = Promise.resolve(null);
  }
  globalThis[Symbol.for('lazylabel.hdf5WasmModule')] = compiled.catch(() => null);
}

const { main } = await import(entry);

main(args).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`lazylabel: internal error: ${err?.message ?? err}\n`);
    process.exitCode = 3;
  },
);
