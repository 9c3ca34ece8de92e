#!/usr/bin/env node
// Compilation hints for the vendored libhdf5 WebAssembly (scripts/build-cli.js): the functions a command runs
// are compiled eagerly, on V8's background threads, while the CLI's modules load, instead of one by one on the
// main thread on first call. V8 compiles wasm lazily; HDF5's initialisation alone calls ~200 type-conversion
// functions once each, and a `check` compiles ~1050 functions, a `convert` ~1400 (measured: ~18 ms less per
// start on the bench VM). bin/lazylabel.js enables V8's `--experimental-wasm-compilation-hints`, without which
// the section is an ignored custom section.
//
// The list of functions is committed (hdf5-hot-functions.json) for the exact hdf5_util.wasm of the installed
// h5wasm (its SHA-256); another build of h5wasm gets no hints (and a warning) until the list is regenerated:
//   node scripts/hdf5-hints.js --profile      (after `npm run build`; Linux: reads V8's /tmp/perf-PID.map)
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const LIST = path.join(root, 'scripts', 'hdf5-hot-functions.json');

export const sha256 = (bytes) => crypto.createHash('sha256').update(bytes).digest('hex');

/** Reads the sections of a wasm binary: imported functions, declared functions, where the code section starts. */
function layout(bytes) {
  let p = 8;
  const u32 = () => {
    let r = 0;
    let shift = 0;
    let b;
    do {
      b = bytes[p++];
      r |= (b & 0x7f) << shift;
      shift += 7;
    } while (b & 0x80);
    return r >>> 0;
  };
  const skip = (n) => {
    p += n;
  };
  const skipLimits = () => {
    const flags = u32();
    u32();
    if (flags & 1) u32();
  };
  let importedFunctions = 0;
  let declaredFunctions = 0;
  let codeSection = -1;
  let hints = null;
  while (p < bytes.length) {
    const start = p;
    const id = bytes[p++];
    const size = u32();
    const end = p + size;
    if (id === 0) {
      const len = u32();
      if (Buffer.from(bytes.subarray(p, p + len)).toString() === 'compilationHints') hints = { start, end };
    } else if (id === 2) {
      for (let n = u32(); n > 0; n--) {
        skip(u32()); // module name (read the length first: `p += u32()` would add to the old p)
        skip(u32()); // field name
        const kind = bytes[p++];
        if (kind === 0) {
          u32();
          importedFunctions++;
        } else if (kind === 1) {
          p++; // element type
          skipLimits();
        } else if (kind === 2) skipLimits();
        else if (kind === 3) p += 2; // value type, mutability
        else if (kind === 4) {
          p++; // tag attribute
          u32(); // type index
        }
        else throw new Error(`hdf5-hints: unknown import kind ${kind}`);
      }
    } else if (id === 3) declaredFunctions = u32();
    else if (id === 10) codeSection = start;
    p = end;
  }
  return { importedFunctions, declaredFunctions, codeSection, hints };
}

const leb128 = (v) => {
  const out = [];
  do {
    let b = v & 0x7f;
    v >>>= 7;
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return out;
};

/**
 * `bytes` with a `compilationHints` custom section (V8's format: one byte per declared function, bits 0-1 the
 * strategy: 1 lazy, 2 eager; bits 2-3 the baseline tier: 1 Liftoff) placed before the code section, as V8 requires.
 * `eager` holds function indices (imports included, as in V8's `wasm-function[N]`).
 */
export function addCompilationHints(bytes, eager) {
  const { importedFunctions, declaredFunctions, codeSection, hints: present } = layout(bytes);
  if (present) throw new Error('hdf5-hints: the module already has a compilationHints section');
  if (codeSection < 0 || declaredFunctions === 0) throw new Error('hdf5-hints: no code section');
  const wanted = new Set(eager);
  const hints = Buffer.alloc(declaredFunctions);
  for (let i = 0; i < declaredFunctions; i++) hints[i] = (wanted.has(importedFunctions + i) ? 2 : 1) | (1 << 2);
  const name = Buffer.from('compilationHints');
  const body = Buffer.concat([Buffer.from(leb128(name.length)), name, Buffer.from(leb128(declaredFunctions)), hints]);
  const section = Buffer.concat([Buffer.from([0, ...leb128(body.length)]), body]);
  return Buffer.concat([bytes.subarray(0, codeSection), section, bytes.subarray(codeSection)]);
}

/** `bytes` without its compilationHints section (as extracted from h5wasm). */
export function withoutCompilationHints(bytes) {
  const { hints } = layout(bytes);
  return hints ? Buffer.concat([bytes.subarray(0, hints.start), bytes.subarray(hints.end)]) : bytes;
}

/** The committed hot functions when they were profiled on exactly this wasm, else null. */
export function hotFunctionsFor(bytes) {
  if (!fs.existsSync(LIST)) return null;
  const list = JSON.parse(fs.readFileSync(LIST, 'utf8'));
  return list.wasmSha256 === sha256(bytes) ? list.functions : null;
}

/** Runs representative commands of the bundled CLI on the fixtures and records which libhdf5 functions V8 compiled. */
function profile() {
  const bin = path.join(root, 'bin', 'lazylabel.js');
  const wasmFile = path.join(root, 'dist', 'vendor', 'h5wasm', 'hdf5_util.wasm');
  if (!fs.existsSync(wasmFile)) throw new Error('run `npm run build` first');
  const fx = (...p) => path.join(root, 'fixtures', ...p);
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'lazylabel-hints-'));
  const runs = [
    ['check', fx('check', 'dense3d_int16_chunked.h5'), fx('check', 'dense2d_uint8.h5'), fx('check', 'lazy_all_ignore.h5'), '--n-lab', '3'],
    ['check', fx('check', 'nested_groups.h5'), '--n-lab', '3'],
    ['suggest-prios', '--manifest', fx('prios', 'manifest.json')],
    ['convert', '--mask', `${fx('convert', 'mask_classes_3d.h5')}:mask`, '--classes', `${fx('convert', 'mask_classes_3d.h5')}:lab`, '--n-lab', '3', '-o', path.join(out, 'labels.h5')],
  ];
  // profiled without hints (V8 would report every hinted function as compiled), then the built file is put back
  const built = fs.readFileSync(wasmFile);
  const stock = withoutCompilationHints(built);
  const { importedFunctions } = layout(stock);
  const seen = new Set();
  fs.writeFileSync(wasmFile, stock);
  try {
    for (const args of runs) {
      // (in the temporary folder: V8 also writes an isolate-*.log into the working directory)
      const r = spawnSync(process.execPath, ['--perf-basic-prof', bin, ...args, '--json', '--quiet'], { cwd: out, encoding: 'utf8' });
      const map = `/tmp/perf-${r.pid}.map`;
      if (!fs.existsSync(map)) throw new Error(`no ${map}: V8's --perf-basic-prof needs Linux`);
      const text = fs.readFileSync(map, 'utf8');
      fs.rmSync(map);
      if (r.status !== 0 && r.status !== 1) throw new Error(`lazylabel ${args.join(' ')} exited with ${r.status}: ${r.stderr}`);
      // other modules' functions (the counting kernels) have indices below libhdf5's imports
      for (const m of text.matchAll(/wasm-function\[(\d+)\]/g)) if (Number(m[1]) >= importedFunctions) seen.add(Number(m[1]));
      console.log(`${args[0]}: ${seen.size} functions so far`);
    }
  } finally {
    fs.writeFileSync(wasmFile, built);
    fs.rmSync(out, { recursive: true, force: true });
  }
  const h5wasm = JSON.parse(fs.readFileSync(path.join(root, 'node_modules', 'h5wasm', 'package.json'), 'utf8')).version;
  const list = { h5wasm, wasmSha256: sha256(stock), generatedBy: 'node scripts/hdf5-hints.js --profile', functions: [...seen].sort((a, b) => a - b) };
  fs.writeFileSync(LIST, JSON.stringify(list) + '\n');
  console.log(`wrote ${path.relative(process.cwd(), LIST)}: ${list.functions.length} functions`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1]) && process.argv.includes('--profile')) profile();
