#!/usr/bin/env node
// Micro-benchmark: where `convert --mask --classes` spends its time, phase by phase, in one process and
// with the same building blocks as ops/convert.ts: read both inputs (H5Source.readSlab), map + count
// (mapMaskClasses), write gzip 4 (SlabWriter), then the re-check of the written file (checkCube).
//
//   node bench/micro/convert-parts.js DIR   (DIR holds maskclasses.h5, e.g. a --data folder of run.js)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { H5Sink, H5Source } from '../../dist/io/hdf5.js';
import { ConvertTally, mapMaskClasses } from '../../dist/core/convert.js';
import { checkCube } from '../../dist/ops/check.js';
import { rowsPerSlab } from '../../dist/core/slabs.js';

const dir = process.argv[2];
if (!dir || !fs.existsSync(path.join(dir, 'maskclasses.h5'))) {
  console.error('usage: node bench/micro/convert-parts.js DIR  (DIR/maskclasses.h5 with datasets mask and classes)');
  process.exit(2);
}
const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'lazylabel-micro-conv-')), 'out.h5');
const src = await H5Source.open(path.join(dir, 'maskclasses.h5'));
const shape = src.info('mask').shape;
// ops/convert.ts: bytes per voxel = 2 * 1 (mask) + 2 * 1 (classes) + 2 * 2 (int16 output)
const step = rowsPerSlab(shape, 8, 64);
const t = { read: 0, map: 0, write: 0 };
const t0 = performance.now();
const sink = await H5Sink.create(out);
const w = sink.createDataset('lab', { shape, dtype: 'int16', chunks: [Math.min(64, step), 128, 64], gzip: 4 });
const tally = new ConvertTally(3);
for (let s = 0; s < shape[0]; s += step) {
  const e = Math.min(shape[0], s + step);
  let a = performance.now();
  const m = src.readSlab('mask', s, e);
  const c = src.readSlab('classes', s, e);
  t.read += performance.now() - a;
  a = performance.now();
  const lab = mapMaskClasses(m, c, tally);
  t.map += performance.now() - a;
  a = performance.now();
  w.write(lab);
  t.write += performance.now() - a;
}
let a = performance.now();
sink.writeSmall('info', [2, 3], 'int8', Int8Array.from([1, 1, 1, 0, 0, 0]));
sink.close();
t.write += performance.now() - a;
src.close();
a = performance.now();
const check = await checkCube({ label: out, labelKey: 'lab', infoKey: 'info' }, { nLab: 3 });
t.recheck = performance.now() - a;
const total = performance.now() - t0;
console.log(`convert phases on ${shape.join('x')} (${step} rows per slab), in-process, after module load and h5wasm init:`);
for (const [k, ms] of Object.entries(t)) console.log(`  ${k.padEnd(8)} ${ms.toFixed(0).padStart(6)} ms  ${(100 * ms / total).toFixed(0).padStart(3)}%`);
console.log(`  total    ${total.toFixed(0).padStart(6)} ms   (check: ${check.status}, counts ${JSON.stringify(tally.result().classCounts)})`);
fs.rmSync(path.dirname(out), { recursive: true, force: true });
