#!/usr/bin/env node
// Entry point: the compiled CLI lives in dist/ (built by `npm install` through the prepare script).
import fs from 'node:fs';
import v8 from 'node:v8';

// V8 recompiles hot wasm functions with its optimising compiler in the background, and Node waits for
// those jobs before it exits: with the default budget a short command (a small file, a few cubes) spent
// ~60 ms compiling libhdf5/zlib code it no longer needed. A 100x budget keeps short runs on the baseline
// code; long runs still tier up within a second (measured: no change on the 4 GiB bench volume or on
// training steps). Set before h5wasm and tfjs compile their modules.
v8.setFlagsFromString('--wasm-tiering-budget=180000000');

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

const { main } = await import(newestEntry());

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`lazylabel: internal error: ${err?.message ?? err}\n`);
    process.exitCode = 3;
  },
);
