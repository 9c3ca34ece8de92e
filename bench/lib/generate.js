// Bench data sets, written slab by slab with h5wasm (see h5write.js):
//   lab.h5          lab (int16, -1 ignore, classes 0/1) + info (2, 3) int8: L=110 NP=001 (lazy: class 2 absent)
//   raw.h5          raw (uint8), same spatial shape
//   maskclasses.h5  mask (uint8 0/1) + classes (uint8 0/1/2) for `convert --mask --classes`
//   prios/          8 cubes of 128^3 (dense, lazy, all-ignore, painted, a validation cube) + manifest.json
import fs from 'node:fs';
import path from 'node:path';
import { makeScene, renderRows } from './scene.js';
import { BenchFile } from './h5write.js';

export const N_LAB = 3;
/** Bumped whenever the generated data changes, so a reused --data folder is regenerated. */
export const GENERATOR_VERSION = 3;

export const LAYOUTS = {
  contiguous: { kind: 'contiguous' },
  chunked: { kind: 'chunked', chunks: [64, 64, 64], gzip: 1 },
};

/** Rows per slab: whole 64-row chunk layers, at least 64 rows, about `targetVoxels` voxels. */
function slabRows(shape, targetVoxels = 16 << 20) {
  const row = shape[1] * shape[2];
  const rows = Math.max(64, Math.floor(targetVoxels / row / 64) * 64);
  return Math.min(rows, shape[0]);
}

/** The main volumes. Returns timing and object counts. */
export async function generateMain(dir, shape, seed, layout, { raw = true, log = () => {} } = {}) {
  fs.mkdirSync(dir, { recursive: true });
  const t0 = performance.now();
  const scene = makeScene(shape, seed);
  const rows = slabRows(shape);
  const labF = await BenchFile.create(path.join(dir, 'lab.h5'), layout);
  const rawF = raw ? await BenchFile.create(path.join(dir, 'raw.h5'), layout) : null;
  const mcF = await BenchFile.create(path.join(dir, 'maskclasses.h5'), layout);
  try {
    const labW = labF.volume('lab', shape, 'int16');
    const rawW = rawF?.volume('raw', shape, 'uint8');
    const maskW = mcF.volume('mask', shape, 'uint8');
    const clsW = mcF.volume('classes', shape, 'uint8');
    const rowVoxels = shape[1] * shape[2];
    const bufs = {
      lab: new Int16Array(rows * rowVoxels),
      cls: new Uint8Array(rows * rowVoxels),
      mask: new Uint8Array(rows * rowVoxels),
      ...(raw ? { raw: new Uint8Array(rows * rowVoxels) } : {}),
    };
    let renderMs = 0;
    for (let x0 = 0; x0 < shape[0]; x0 += rows) {
      const x1 = Math.min(shape[0], x0 + rows);
      const n = (x1 - x0) * rowVoxels;
      const r0 = performance.now();
      renderRows(scene, x0, x1, bufs);
      renderMs += performance.now() - r0;
      labW.write(bufs.lab.subarray(0, n));
      rawW?.write(bufs.raw.subarray(0, n));
      maskW.write(bufs.mask.subarray(0, n));
      clsW.write(bufs.cls.subarray(0, n));
      log(`  rows ${x1}/${shape[0]}`);
    }
    labF.small('info', [2, N_LAB], 'int8', Int8Array.from([1, 1, 0, 0, 0, 1]));
    return { seconds: (performance.now() - t0) / 1000, renderSeconds: renderMs / 1000, objects: scene.counts, slabRows: rows };
  } finally {
    labF.close();
    rawF?.close();
    mcF.close();
  }
}

/** The 8 prio cubes: [name, kind, info rows, valid]. */
const PRIO_CUBES = [
  ['dense_a', 'dense', [1, 1, 1, 0, 0, 0], false],
  ['dense_b', 'dense', [1, 1, 1, 0, 0, 0], false],
  ['lazy_a', 'lazy', [1, 1, 0, 0, 0, 1], false],
  ['lazy_b', 'lazy', [1, 1, 0, 0, 0, 1], false],
  ['partial', 'lazy', [1, 1, 1, 0, 0, 0], false], // ignore areas, but every class labelled (not lazy by info)
  ['nucleus', 'ignore', [1, 1, 0, 0, 0, 1], false], // all -1, class 2 flagged absent
  ['painted', 'painted', [1, 0, 0, 0, 1, 1], false], // background painted in the annotated area only
  ['valid', 'dense', [1, 1, 1, 0, 0, 0], true],
];

export async function generatePrios(dir, seed, layout, { side = 128 } = {}) {
  fs.mkdirSync(dir, { recursive: true });
  const t0 = performance.now();
  const shape = [side, side, side];
  const n = side * side * side;
  const cubes = [];
  for (const [i, [name, kind, info, valid]] of PRIO_CUBES.entries()) {
    const scene = makeScene(shape, seed + 101 * (i + 1));
    const lab = new Int16Array(n);
    if (kind === 'dense') renderRows(scene, 0, side, { dense: lab });
    else if (kind === 'lazy') renderRows(scene, 0, side, { lab });
    else if (kind === 'ignore') lab.fill(-1);
    else if (kind === 'painted') {
      const mask = new Uint8Array(n);
      renderRows(scene, 0, side, { mask });
      for (let k = 0; k < n; k++) lab[k] = mask[k] ? 0 : -1;
    }
    // 128^3 int16 is 4 MiB: each cube is written as two slabs of 64 rows, like the big volumes
    const f = await BenchFile.create(path.join(dir, `${name}.h5`), layout);
    try {
      const w = f.volume('lab', shape, 'int16');
      const half = (side / 2) * side * side;
      w.write(lab.subarray(0, half));
      w.write(lab.subarray(half));
      f.small('info', [2, N_LAB], 'int8', Int8Array.from(info));
    } finally {
      f.close();
    }
    cubes.push({ name, label: `${name}.h5`, ...(valid ? { valid: true } : {}) });
  }
  const manifest = { n_lab: N_LAB, class_names: ['background', 'mito', 'vesicle_cloud'], lazy_labels: true, cubes };
  fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
  return { seconds: (performance.now() - t0) / 1000, cubes: cubes.length, voxels: n * cubes.length };
}
