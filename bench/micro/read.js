#!/usr/bin/env node
// Micro-benchmark: reading + counting a label volume slab by slab, as `check` does, split into its parts,
// against a zero-copy read (libhdf5 decodes into one reused buffer on the wasm heap, counted in place)
// and a faster counting loop. Generates its own 512x512x256 int16 volume (contiguous and chunked 64^3 gzip 1).
//
//   node bench/micro/read.js [--reps 5] [--keep DIR]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as h5 from 'h5wasm/node';
import { H5Source } from '../../dist/io/hdf5.js';
import { LabelTally } from '../../dist/core/labelTally.js';
import { rowsPerSlab } from '../../dist/core/slabs.js';
import { generateMain, LAYOUTS } from '../lib/generate.js';
import { median } from '../lib/measure.js';

const args = process.argv.slice(2);
const reps = args.includes('--reps') ? Number(args[args.indexOf('--reps') + 1]) : 5;
const keep = args.includes('--keep') ? path.resolve(args[args.indexOf('--keep') + 1]) : null;
const dir = keep ?? fs.mkdtempSync(path.join(os.tmpdir(), 'lazylabel-micro-read-'));
const shape = [512, 512, 256];
const N_LAB = 3;

/** Run-length count over 32-bit pairs of int16 labels (see micro/tally.js); exact, out-of-range via callback. */
function tallyPairs(lab, counts, nLab, onOutOfRange) {
  const one = (v, k) => {
    if (v >= -1 && v < nLab) counts[v + 1] += k;
    else onOutOfRange(v, k);
  };
  const words = lab.length >> 1;
  if (words > 0) {
    const w = new Uint32Array(lab.buffer, lab.byteOffset, words);
    let prev = w[0];
    let start = 0;
    for (let i = 1; i < words; i++) {
      const v = w[i];
      if (v !== prev) {
        one((prev << 16) >> 16, i - start);
        one(prev >> 16, i - start);
        prev = v;
        start = i;
      }
    }
    one((prev << 16) >> 16, words - start);
    one(prev >> 16, words - start);
  }
  if (lab.length & 1) one(lab[lab.length - 1], 1);
}

function time(name, fn) {
  fn();
  const ts = [];
  let result;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    result = fn();
    ts.push(performance.now() - t0);
  }
  const ms = median(ts);
  console.log(`  ${name.padEnd(62)} ${ms.toFixed(0).padStart(5)} ms  ${(shape[0] * shape[1] * shape[2] * 2 / 1e3 / ms).toFixed(0).padStart(5)} MB/s  ${JSON.stringify(result)}`);
}

try {
  for (const layout of ['contiguous', 'chunked']) {
    const d = path.join(dir, layout);
    if (!fs.existsSync(path.join(d, 'lab.h5'))) await generateMain(d, shape, 42, LAYOUTS[layout], { raw: false });
    const file = path.join(d, 'lab.h5');
    const src = await H5Source.open(file);
    const meta = src.info('lab');
    const step = rowsPerSlab(shape, 4, 64, meta.chunks?.[0] ?? 1);
    console.log(`\n${layout} (${step} rows per slab, as check reads it); median of ${reps}`);

    time('current: H5Source.readSlab + LabelTally.add', () => {
      const t = new LabelTally(N_LAB);
      for (let s = 0; s < shape[0]; s += step) t.add(src.readSlab('lab', s, Math.min(shape[0], s + step)), false);
      const r = t.result();
      return [r.ignored, ...r.classCounts];
    });
    time('  part: H5Source.readSlab only (decode + copy out of the heap)', () => {
      let n = 0;
      for (let s = 0; s < shape[0]; s += step) n += src.readSlab('lab', s, Math.min(shape[0], s + step)).length;
      return n;
    });

    // zero-copy: one buffer on the wasm heap, libhdf5 decodes into it, we count a view of it
    const f = new h5.File(file, 'r');
    const M = h5.Module;
    const rowVoxels = shape[1] * shape[2];
    const ptr = M._malloc(step * rowVoxels * 2);
    const readInto = (s, e) => {
      M.get_dataset_data(f.file_id, '/lab', [BigInt(e - s), BigInt(shape[1]), BigInt(shape[2])], [BigInt(s), 0n, 0n], [1n, 1n, 1n], BigInt(ptr));
      // a fresh view each time: the heap's ArrayBuffer is replaced when wasm memory grows
      return new Int16Array(M.HEAPU8.buffer, ptr, (e - s) * rowVoxels);
    };
    time('  part: zero-copy read into a reused wasm-heap buffer', () => {
      let n = 0;
      for (let s = 0; s < shape[0]; s += step) n += readInto(s, Math.min(shape[0], s + step)).length;
      return n;
    });
    time('zero-copy read + LabelTally.add on the heap view', () => {
      const t = new LabelTally(N_LAB);
      for (let s = 0; s < shape[0]; s += step) t.add(readInto(s, Math.min(shape[0], s + step)), false);
      const r = t.result();
      return [r.ignored, ...r.classCounts];
    });
    time('zero-copy read + run-length count on 32-bit pairs', () => {
      const counts = new Float64Array(N_LAB + 1);
      for (let s = 0; s < shape[0]; s += step) tallyPairs(readInto(s, Math.min(shape[0], s + step)), counts, N_LAB, () => {});
      return [...counts];
    });
    M._free(ptr);
    f.close();
    src.close();
  }
} finally {
  if (!keep) fs.rmSync(dir, { recursive: true, force: true });
}
