#!/usr/bin/env node
// Entry point: the compiled CLI lives in dist/ (built by `npm install` through the prepare script).
import v8 from 'node:v8';

// V8 recompiles hot wasm functions with its optimising compiler in the background, and Node waits for
// those jobs before it exits: with the default budget a short command (a small file, a few cubes) spent
// ~60 ms compiling libhdf5/zlib code it no longer needed. A 100x budget keeps short runs on the baseline
// code; long runs still tier up within a second (measured: no change on the 4 GiB bench volume or on
// training steps). Set before h5wasm and tfjs compile their modules.
v8.setFlagsFromString('--wasm-tiering-budget=180000000');

const { main } = await import('../dist/cli/main.js');

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`lazylabel: internal error: ${err?.message ?? err}\n`);
    process.exitCode = 3;
  },
);
