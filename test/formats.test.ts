/** Commands take zarr, N5, TIFF and PNG volumes wherever they take HDF5: check and suggest-prios on a zarr cube, convert from a TIFF mask, predict a TIFF stack. */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkCube } from '../src/ops/check.js';
import { convert } from '../src/ops/convert.js';
import { suggestPrios } from '../src/ops/suggestPrios.js';
import { withH5 } from '../src/io/hdf5.js';
import { fixture, tmpDir } from './helpers.js';

/** A zarr v2 group written by hand (uncompressed chunks), the layout zarr-python writes. */
function writeZarrArray(root: string, name: string, shape: number[], chunks: number[], dtype: '<i2' | '|i1', values: Int16Array | Int8Array): void {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, '.zarray'), JSON.stringify({ zarr_format: 2, shape, chunks, dtype, compressor: null, fill_value: 0, order: 'C', filters: null }));
  // chunk (i, 0, ...) holds rows [i*chunks[0], ...) — chunks span every other axis whole
  const rowSize = shape.slice(1).reduce((a, b) => a * b, 1);
  for (let c = 0; c * chunks[0]! < shape[0]!; c++) {
    const part = values.subarray(c * chunks[0]! * rowSize, Math.min(shape[0]!, (c + 1) * chunks[0]!) * rowSize);
    const full = new (values.constructor as Int16ArrayConstructor)(chunks.reduce((a, b) => a * b, 1));
    full.set(part as Int16Array);
    fs.writeFileSync(path.join(dir, [c, ...shape.slice(1).map(() => 0)].join('.')), Buffer.from(full.buffer));
  }
}

describe('zarr label cubes', () => {
  const dir = tmpDir('lazylabel-zarr-');
  const cube = path.join(dir, 'cube.zarr');
  fs.mkdirSync(cube);
  fs.writeFileSync(path.join(cube, '.zgroup'), JSON.stringify({ zarr_format: 2 }));
  const shape = [5, 6, 7];
  const lab = Int16Array.from({ length: 5 * 6 * 7 }, (_, i) => (i % 5 === 0 ? -1 : i % 2)); // classes 0/1 and ignored voxels, no class 2
  writeZarrArray(cube, 'lab', shape, [2, 6, 7], '<i2', lab);
  writeZarrArray(cube, 'info', [2, 3], [2, 3], '|i1', Int8Array.from([1, 1, 0, 0, 0, 1]));
  const expected = [0, 1, 2].map((c) => lab.filter((v) => v === c).length);

  it('check reads labels and info from the zarr container', async () => {
    const r = await checkCube({ label: cube, labelKey: 'lab', infoKey: 'info' }, { nLab: 3 });
    expect(r.status).toBe('ok');
    expect(r.stats?.classCounts).toEqual(expected);
    expect(r.stats?.ignored).toBe(lab.filter((v) => v === -1).length);
    expect(r.stats?.info).toEqual({ labeled: [1, 1, 0], notPresent: [0, 0, 1], source: 'file' });
  });

  it('suggest-prios scores the zarr cube like an HDF5 one', async () => {
    const r = await suggestPrios({ cubes: [{ label: cube, labelKey: 'lab', infoKey: 'info' }], nLab: 3 });
    const labelled = expected[0]! + expected[1]!;
    // information = labelled + 0.5 * (voxels - labelled) * flags / n_lab
    expect(r.cubes[0]!.information).toBeCloseTo(labelled + 0.5 * (lab.length - labelled) * (1 / 3), 10);
  });
});

describe('image stacks', () => {
  // values of fixtures/formats/tiff/stack_u8.tif: (51 + 7 * linear index) % 256, shape (7, 9, 11)
  const shape = [7, 9, 11];
  const n = 7 * 9 * 11;
  const mask = Array.from({ length: n }, (_, i) => (51 + 7 * i) % 256);

  it('convert --mask a multi-page TIFF --fill-class writes the class inside the mask', async () => {
    const out = path.join(tmpDir(), 'from_tiff.h5');
    const r = await convert({ output: out, mask: { file: fixture('formats', 'tiff', 'stack_u8.tif'), key: '' }, fillClass: 1, notPresent: [2], nLab: 3 });
    expect(r.output.shape).toEqual(shape);
    const got = await withH5(out, (src) => src.readSlab('lab', 0, 7));
    expect(Array.from(got)).toEqual(mask.map((v) => (v > 0 ? 1 : -1)));
    expect(r.check.status).not.toBe('error');
  });

  it('check takes a PNG slice folder and a TIFF stack as label volumes', async () => {
    const t = await checkCube({ label: fixture('formats', 'tiff', 'stack_u8.tif'), labelKey: 'lab', infoKey: 'info' }, { nLab: 256 });
    expect(t.stats?.shape).toEqual(shape);
    expect(t.stats?.classCounts.reduce((a, b) => a + b, 0)).toBe(n);
    expect(t.stats?.info?.source).toBe('default');
    const p = await checkCube({ label: fixture('formats', 'png', 'slices_u8'), labelKey: 'lab', infoKey: 'info' }, { nLab: 256 });
    expect(p.status).not.toBe('error');
    expect(p.stats?.voxels).toBeGreaterThan(0);
  });
});
