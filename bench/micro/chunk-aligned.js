#!/usr/bin/env node
// Micro-benchmark: when one layer of chunks (chunk rows x the whole cross-section) is larger than the slab
// budget, core/slabs.ts gives up chunk alignment, and every compressed chunk is inflated once per slab that
// cuts it (HDF5's default 1 MiB chunk cache cannot hold a layer). This compares, at the same memory budget:
//   (a) today's slabs: rowsPerSlab rows of the whole cross-section (H5Source.readSlab)
//   (b) chunk-aligned boxes: whole chunk layers along axis 0, split along axis 1 into bands of whole
//       chunks that fit the budget (H5Source.readBox), so each chunk is inflated exactly once.
// Counts are checked to be identical.
//
//   node bench/micro/chunk-aligned.js FILE.h5[:lab] [--slab-mb 64]
//   e.g. the --big volume (2048x1536x704, chunks 64^3): one chunk layer is 138 MB of int16 > 64 MiB
//   or the default volume with a small budget: --slab-mb 8
import { H5Source } from '../../dist/io/hdf5.js';
import { LabelTally } from '../../dist/core/labelTally.js';
import { rowsPerSlab } from '../../dist/core/slabs.js';
import { slabBytesPerVoxel } from '../../dist/ops/scan.js';

const args = process.argv.slice(2);
if (!args[0]) {
  console.error('usage: node bench/micro/chunk-aligned.js FILE.h5[:key] [--slab-mb 64]');
  process.exit(2);
}
const [file, key = 'lab'] = args[0].split(':');
const slabMB = args.includes('--slab-mb') ? Number(args[args.indexOf('--slab-mb') + 1]) : 64;
const src = await H5Source.open(file);
const meta = src.info(key);
const shape = meta.shape;
const chunks = meta.chunks;
if (!chunks) throw new Error('dataset is not chunked');
const bpv = slabBytesPerVoxel(meta.dtype.bytes);
const voxels = shape.reduce((a, b) => a * b, 1);

function run(name, readAll) {
  const t = new LabelTally(3);
  const t0 = performance.now();
  const pieces = readAll((data) => t.add(data, false));
  const s = (performance.now() - t0) / 1000;
  const r = t.result();
  console.log(`  ${name.padEnd(60)} ${s.toFixed(2).padStart(6)} s  ${(voxels * meta.dtype.bytes / 1e6 / s).toFixed(0).padStart(5)} MB/s  ${pieces} reads  ${JSON.stringify([r.ignored, ...r.classCounts])}`);
  return r;
}

console.log(`${file}:${key} ${shape.join('x')} ${meta.dtype.name}, chunks ${chunks.join('x')} ${meta.filters.join(',')}; budget ${slabMB} MiB at ${bpv} bytes/voxel`);
const rows = rowsPerSlab(shape, bpv, slabMB, chunks[0]);
const a = run(`(a) slabs of ${rows} rows${rows % chunks[0] ? ` (cut ${chunks[0]}-row chunks)` : ''}`, (add) => {
  let n = 0;
  for (let s = 0; s < shape[0]; s += rows, n++) add(src.readSlab(key, s, Math.min(shape[0], s + rows)));
  return n;
});

// (b) whole chunk layers, split along axis 1 into bands of whole chunks within the budget
const layer = chunks[0];
const rest = shape.slice(2).reduce((x, y) => x * y, 1);
const bandFit = Math.floor((slabMB * 2 ** 20) / (layer * rest * bpv));
const band = Math.max(chunks[1], bandFit - (bandFit % chunks[1]));
const b = run(`(b) boxes of ${layer} rows x ${band} (whole chunks)`, (add) => {
  let n = 0;
  for (let s = 0; s < shape[0]; s += layer) {
    for (let y = 0; y < shape[1]; y += band, n++) {
      const starts = [s, y, ...shape.slice(2).map(() => 0)];
      const ends = [Math.min(shape[0], s + layer), Math.min(shape[1], y + band), ...shape.slice(2)];
      add(src.readBox(key, starts, ends));
    }
  }
  return n;
});
src.close();
const same = JSON.stringify([a.ignored, a.classCounts]) === JSON.stringify([b.ignored, b.classCounts]);
console.log(same ? '  ✓ identical counts' : '  FAIL: counts differ');
process.exitCode = same ? 0 : 1;
