#!/usr/bin/env node
// Micro-benchmark: writing a 512x512x256 int16 label volume through H5Sink/SlabWriter (what `convert`
// does for its output: chunks (64,128,64), gzip) at several gzip levels, and the size it takes.
// The same volume through h5py is timed by bench/micro/write_ref.py for comparison.
//
//   node bench/micro/write.js [--reps 3]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { H5Sink } from '../../dist/io/hdf5.js';
import { makeScene, renderRows } from '../lib/scene.js';
import { median } from '../lib/measure.js';

const args = process.argv.slice(2);
const reps = args.includes('--reps') ? Number(args[args.indexOf('--reps') + 1]) : 3;
const shape = [512, 512, 256];
const rows = 64;
const scene = makeScene(shape, 42);
const rowVoxels = shape[1] * shape[2];
// render the whole volume once (outside the timing), slab by slab
const slabs = [];
for (let x = 0; x < shape[0]; x += rows) {
  const cls = new Uint8Array(rows * rowVoxels);
  const mask = new Uint8Array(rows * rowVoxels);
  renderRows(scene, x, x + rows, { cls, mask });
  const lab = new Int16Array(rows * rowVoxels);
  for (let i = 0; i < lab.length; i++) lab[i] = mask[i] ? cls[i] : -1;
  slabs.push(lab);
}
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lazylabel-micro-write-'));
try {
  console.log(`${shape.join('x')} int16 (${(shape[0] * rowVoxels * 2 / 2 ** 20).toFixed(0)} MiB) written in ${slabs.length} slabs of ${rows} rows, chunks (64,128,64); median of ${reps}`);
  for (const gzip of [0, 1, 4, 6]) {
    const ts = [];
    let size = 0;
    for (let r = 0; r < reps; r++) {
      const file = path.join(dir, `out-${gzip}-${r}.h5`);
      const t0 = performance.now();
      const sink = await H5Sink.create(file);
      const w = sink.createDataset('lab', { shape, dtype: 'int16', chunks: [64, 128, 64], gzip });
      for (const s of slabs) w.write(s);
      sink.close();
      ts.push(performance.now() - t0);
      size = fs.statSync(file).size;
      fs.rmSync(file);
    }
    const ms = median(ts);
    console.log(`  h5wasm H5Sink gzip ${gzip}: ${ms.toFixed(0).padStart(5)} ms  ${(shape[0] * rowVoxels * 2 / 1e3 / ms).toFixed(0).padStart(5)} MB/s  file ${(size / 2 ** 20).toFixed(1)} MiB`);
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
