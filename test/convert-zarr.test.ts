/** `convert -o OUT.zarr`: a zarr v2 group equal to the HDF5 output, read by zarr-python and by `check --manifest`; atomic folder writes, --force, refusals. */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isLazyLabelError } from '../src/errors.js';
import { H5Sink } from '../src/io/hdf5.js';
import { openVolume } from '../src/io/volume.js';
import { ZarrSink, outputFormatFor } from '../src/io/zarrSink.js';
import { convert, type ConvertReport } from '../src/ops/convert.js';
import { ROOT, runCli, schemaErrors, tmpDir } from './helpers.js';

const HAS_ZARR = spawnSync('/usr/bin/python3', ['-c', 'import zarr, numcodecs, numpy'], { encoding: 'utf8' }).status === 0;

let tmp: string;

beforeAll(() => {
  tmp = tmpDir('lazylabel-convert-zarr-');
  // CLI tests run the compiled CLI: build when dist is missing or older than the sources under test
  const built = path.join(ROOT, 'dist', 'io', 'zarrSink.js');
  const sources = ['src/io/zarrSink.ts', 'src/io/atomic.ts', 'src/ops/convert.ts', 'src/cli/convert.ts', 'src/cli/main.ts'].map((p) => path.join(ROOT, p));
  const stale = !fs.existsSync(built) || sources.some((s) => fs.statSync(s).mtimeMs > fs.statSync(built).mtimeMs);
  if (stale) {
    try {
      execFileSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: ROOT, stdio: 'ignore' });
    } catch {
      // type errors elsewhere still emit JavaScript; a real failure shows up as failing CLI tests
    }
  }
});

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Every value of a volume through our own readers (openVolume: HDF5 or zarr). */
async function readVolume(file: string, key: string): Promise<{ shape: number[]; chunks: number[] | null; typeName: string; data: Int16Array | number[]; attrs: Record<string, unknown> }> {
  const vol = await openVolume(file, key);
  try {
    const data = await vol.readSlab(0, vol.shape[0]!);
    return { shape: vol.shape, chunks: vol.chunks, typeName: vol.typeName, data: data instanceof Int16Array ? data : Array.from(data), attrs: vol.attrs() };
  } finally {
    vol.close();
  }
}

async function readSmall(file: string, key: string): Promise<number[]> {
  const vol = await openVolume(file, key);
  try {
    return Array.from(await vol.readBox(vol.shape.map(() => 0), vol.shape));
  } finally {
    vol.close();
  }
}

/** Temporaries (files or folders) next to outputs in `dir`. */
const temps = (dir: string): string[] => fs.readdirSync(dir).filter((n) => n.includes('lazylabel-tmp'));

/** A dead process id: a child that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

/** Inputs in one HDF5 file: uint8 mask and classes of shape (17, 301, 300) with attributes (a volume large enough for several chunks per axis). */
const SHAPE = [17, 301, 300];
const N = SHAPE.reduce((a, b) => a * b, 1);
let inputs: string;
let expected: Int16Array;

beforeAll(async () => {
  inputs = path.join(tmp, 'inputs.h5');
  const mask = new Uint8Array(N);
  const classes = new Uint8Array(N);
  expected = new Int16Array(N);
  let seed = 12345;
  for (let i = 0; i < N; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const z = Math.floor(i / (SHAPE[1]! * SHAPE[2]!));
    mask[i] = (seed >>> 16) % 3 === 0 || z === 5 ? 0 : 1;
    classes[i] = (seed >>> 8) % 3;
    expected[i] = mask[i] ? classes[i]! : -1;
  }
  const sink = await H5Sink.create(inputs);
  try {
    sink.createDataset('mask', { shape: SHAPE, dtype: 'uint8' }).write(mask);
    sink.createDataset('lab', { shape: SHAPE, dtype: 'uint8' }).write(classes);
    sink.setAttrs('lab', { resolution: Float64Array.of(10, 10, 25), offset: BigInt64Array.of(0n, 4n, 8n), source: 'manual' });
  } finally {
    sink.close();
  }
});

describe('ZarrSink', () => {
  it('streams slabs of any row count into whole chunks (edges padded with 0); .zarray appears with the last row', async () => {
    const dir = path.join(tmp, 'sink.zarr');
    const shape = [7, 5, 6];
    const values = Int16Array.from({ length: 7 * 5 * 6 }, (_, i) => (i % 11) - 1);
    const sink = ZarrSink.create(dir);
    const w = sink.createDataset('grp/lab', { shape, dtype: 'int16', chunks: [3, 2, 4] });
    const rowSize = 30;
    let row = 0;
    for (const rows of [1, 4, 2]) {
      await w.write(values.subarray(row * rowSize, (row + rows) * rowSize));
      row += rows;
      if (row < 7) expect(fs.existsSync(path.join(dir, 'grp', 'lab', '.zarray'))).toBe(false);
    }
    await expect(w.write(values.subarray(0, rowSize))).rejects.toThrow(/overruns/);
    sink.writeSmall('info', [2, 3], 'int8', Int8Array.of(1, 0, 1, 0, 1, 0));
    sink.setAttrs('grp/lab', { resolution: Float64Array.of(1.5, 2, 3), offset: BigInt64Array.of(1n, 2n, 3n), names: ['a', 'b'], bad: Number.NaN });
    sink.close();
    expect(fs.readdirSync(path.join(dir, 'grp', 'lab')).filter((n) => !n.startsWith('.')).sort()).toHaveLength(3 * 3 * 2);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'grp', '.zgroup'), 'utf8'))).toEqual({ zarr_format: 2 });
    const got = await readVolume(dir, 'grp/lab');
    expect(got.shape).toEqual(shape);
    expect(got.chunks).toEqual([3, 2, 4]);
    expect(Array.from(got.data)).toEqual(Array.from(values));
    expect(got.attrs).toEqual({ resolution: [1.5, 2, 3], offset: [1, 2, 3], names: ['a', 'b'], bad: 'NaN' });
    expect(await readSmall(dir, 'info')).toEqual([1, 0, 1, 0, 1, 0]);
  });

  it('gzip 0 writes raw little-endian chunks; keys cannot leave the folder', async () => {
    const dir = path.join(tmp, 'raw.zarr');
    const sink = ZarrSink.create(dir);
    await sink.createDataset('a', { shape: [2, 3], dtype: 'int16', chunks: [2, 3], gzip: 0 }).write(Int16Array.of(1, -1, 2, 3, 256, -32768));
    expect(Array.from(fs.readFileSync(path.join(dir, 'a', '0.0')))).toEqual([1, 0, 255, 255, 2, 0, 3, 0, 0, 1, 0, 128]);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'a', '.zarray'), 'utf8')).compressor).toBeNull();
    expect(() => sink.createDataset('../escape', { shape: [1], dtype: 'int16' })).toThrow(/not a valid zarr array path/);
    expect(() => sink.createDataset('a', { shape: [1], dtype: 'int16' })).toThrow(/cannot create zarr array/);
    expect(fs.existsSync(path.join(tmp, 'escape'))).toBe(false);
  });

  it('picks the format from the extension or --out-format, refusing contradictions', () => {
    expect(outputFormatFor('a/b.zarr')).toBe('zarr');
    expect(outputFormatFor('a/b.ZARR/')).toBe('zarr');
    expect(outputFormatFor('a/b.h5')).toBe('hdf5');
    expect(outputFormatFor('a/b', 'zarr')).toBe('zarr');
    expect(() => outputFormatFor('b.h5', 'zarr')).toThrow(/HDF5 extension/);
    expect(() => outputFormatFor('b.zarr', 'hdf5')).toThrow(/ends in .zarr/);
  });
});

describe('convert to zarr', () => {
  const reports: Record<string, ConvertReport> = {};

  it.each([[undefined], [3]])('mask + classes (slab MB %s): the .zarr output equals the HDF5 output voxel for voxel, with info and attributes', async (slabMB) => {
    const tag = String(slabMB ?? 'default');
    const h5 = path.join(tmp, `ref-${tag}.h5`);
    const zr = path.join(tmp, `out-${tag}.zarr`);
    const opts = { mask: { file: inputs, key: 'mask' }, classes: { file: inputs, key: 'lab' }, nLab: 3, ...(slabMB ? { slabMB } : {}) };
    const a = await convert({ ...opts, output: h5 });
    const b = await convert({ ...opts, output: zr });
    reports[tag] = b;
    expect(b.output).toMatchObject({ path: zr, format: 'zarr', dataset: 'lab', infoDataset: 'info', dtype: 'int16', compression: 'zlib', chunks: a.output.chunks, shape: SHAPE });
    expect(a.output.format).toBeUndefined(); // HDF5 reports are unchanged
    expect(schemaErrors('convert-report', b)).toEqual([]);
    expect(b.classCounts).toEqual(a.classCounts);
    expect(b.slabs).toBe(a.slabs);
    expect(b.check.status).toBe('ok');
    expect(b.check.stats?.classCounts).toEqual(a.check.stats?.classCounts);
    expect(b.check.stats?.info).toEqual({ labeled: [1, 1, 1], notPresent: [0, 0, 0], source: 'file' });

    const fromH5 = await readVolume(h5, 'lab');
    const fromZarr = await readVolume(zr, 'lab');
    expect(fromZarr.shape).toEqual(SHAPE);
    expect(fromZarr.typeName).toBe('int16');
    expect(fromZarr.chunks).toEqual(fromH5.chunks);
    expect(Buffer.from((fromZarr.data as Int16Array).buffer).equals(Buffer.from((fromH5.data as Int16Array).buffer))).toBe(true);
    expect(Buffer.from((fromZarr.data as Int16Array).buffer).equals(Buffer.from(expected.buffer))).toBe(true);
    expect(await readSmall(zr, 'info')).toEqual(await readSmall(h5, 'info'));
    // attributes: copied from the class volume, plus provenance
    expect(fromZarr.attrs.resolution).toEqual([10, 10, 25]);
    expect(fromZarr.attrs.offset).toEqual([0, 4, 8]);
    expect(fromZarr.attrs.source).toBe('manual');
    const prov = JSON.parse(fromZarr.attrs.lazylabel as string) as { mode: string; inputs: { dataset: string }[] };
    expect(prov).toMatchObject({ mode: 'mask-classes', inputs: [{ dataset: 'mask' }, { dataset: 'lab' }] });
    expect(b.attrsCopied.sort()).toEqual(['offset', 'resolution', 'source']);
    expect(temps(tmp)).toEqual([]);
  });

  it.skipIf(!HAS_ZARR)('zarr-python reads it: dtype, chunks, compressor, fill value, values, info, attributes', () => {
    const zr = path.join(tmp, 'out-3.zarr');
    const r = reports['3'];
    expect(r).toBeDefined();
    const code = `
import json, sys, hashlib, zarr, numpy as np
g = zarr.open_group(sys.argv[1], mode="r")
a = g["lab"]
data = a[...]
print(json.dumps({
  "dtype": str(a.dtype), "shape": list(a.shape), "chunks": list(a.chunks), "order": a.order, "fill": int(a.fill_value),
  "compressor": a.compressor.get_config(), "nchunks": a.nchunks_initialized,
  "sha": hashlib.sha256(data.astype("<i2").tobytes()).hexdigest(),
  "counts": [int((data == c).sum()) for c in (-1, 0, 1, 2)],
  "info": g["info"][...].tolist(), "info_dtype": str(g["info"].dtype),
  "attrs": sorted(a.attrs.keys()), "resolution": a.attrs["resolution"],
}))`;
    const py = spawnSync('/usr/bin/python3', ['-c', code, zr], { encoding: 'utf8' });
    expect(py.stderr).toBe('');
    const got = JSON.parse(py.stdout) as Record<string, unknown>;
    expect(got).toMatchObject({
      dtype: 'int16', shape: SHAPE, chunks: r!.output.chunks, order: 'C', fill: 0,
      compressor: { id: 'zlib', level: 4 },
      sha: createHash('sha256').update(Buffer.from(expected.buffer)).digest('hex'),
      counts: [r!.ignored, ...r!.classCounts],
      info: [[1, 1, 1], [0, 0, 0]], info_dtype: 'int8',
      attrs: ['lazylabel', 'offset', 'resolution', 'source'], resolution: [10, 10, 25],
    });
    const c = r!.output.chunks;
    expect(got.nchunks).toBe(SHAPE.reduce((n, s, i) => n * Math.ceil(s / c[i]!), 1));
  });

  it('a manifest cube pointing at the zarr label passes check --manifest; convert --manifest registers a .zarr output', () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'manifest-'));
    fs.cpSync(path.join(tmp, 'out-default.zarr'), path.join(dir, 'out.zarr'), { recursive: true });
    const manifest = path.join(dir, 'dataset.json');
    fs.writeFileSync(manifest, JSON.stringify({ n_lab: 3, class_names: ['bg', 'mito', 'syn'], cubes: [{ name: 'c1', label: 'out.zarr', label_key: 'lab' }] }));
    const first = runCli(['check', '--quiet', '--json', '--manifest', manifest]);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect((JSON.parse(first.stdout) as { ok: boolean }).ok).toBe(true);

    const c2 = path.join(dir, 'c2.zarr');
    const conv = runCli(['convert', '--quiet', '--json', '--manifest', manifest, '--cube-name', 'c2', '--mask', `${inputs}:mask`, '--classes', `${inputs}:lab`, '-o', c2]);
    expect(conv.stderr).toBe('');
    expect(conv.code).toBe(0);
    const report = JSON.parse(conv.stdout) as ConvertReport;
    expect(schemaErrors('convert-report', report)).toEqual([]);
    expect(report.manifest).toMatchObject({ cube: 'c2', action: 'added' });
    expect(report.check.name).toBe('c2');
    const m = JSON.parse(fs.readFileSync(manifest, 'utf8')) as { cubes: Record<string, unknown>[] };
    expect(m.cubes[1]).toEqual({ name: 'c2', label: 'c2.zarr' });
    const again = runCli(['check', '--quiet', '--json', '--manifest', manifest]);
    expect(again.code).toBe(0);
    expect((JSON.parse(again.stdout) as { ok: boolean }).ok).toBe(true);
    expect(temps(dir)).toEqual([]);
  });

  it('--force replaces the folder whole; without it the existing output is kept; stale temporaries of killed runs go', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'force-'));
    const target = path.join(dir, 'cube.zarr');
    const base = ['convert', '--quiet', '--mask', `${inputs}:mask`, '--n-lab', '3', '-o', target];
    expect(runCli([...base, '--fill-class', '1']).code).toBe(0);
    fs.writeFileSync(path.join(target, 'stray.txt'), 'old');
    const kept = runCli([...base, '--fill-class', '2']);
    expect(kept.code).toBe(2);
    expect(kept.stderr).toMatch(/already exists/);
    expect(new Set((await readVolume(target, 'lab')).data)).toEqual(new Set([-1, 1]));

    // leftovers of a killed run: a half-written temporary, and an old output moved aside next to a live target
    const dead = deadPid();
    const staleTmp = path.join(dir, `.cube.zarr.lazylabel-tmpdir-${dead}-abc123`);
    fs.mkdirSync(path.join(staleTmp, 'lab'), { recursive: true });
    fs.writeFileSync(path.join(staleTmp, 'lab', '0.0.0'), 'partial');
    const staleOld = path.join(dir, `.cube.zarr.lazylabel-tmpold-${dead}-def456`);
    fs.mkdirSync(staleOld);

    const forced = runCli([...base, '--fill-class', '2', '--force', '--out-key', 'labels']);
    expect(forced.stderr).toBe('');
    expect(forced.code).toBe(0);
    expect(fs.readdirSync(target).sort()).toEqual(['.zgroup', 'info', 'labels']);
    expect(new Set((await readVolume(target, 'labels')).data)).toEqual(new Set([-1, 2]));
    expect(fs.readdirSync(dir)).toEqual(['cube.zarr']);
  });

  it('an old output moved aside by a killed --force run goes back into place', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'restore-'));
    const target = path.join(dir, 'cube.zarr');
    await convert({ mask: { file: inputs, key: 'mask' }, fillClass: 1, nLab: 2, output: target });
    fs.renameSync(target, path.join(dir, `.cube.zarr.lazylabel-tmpold-${deadPid()}-zz9`));
    // without --force the restored output is kept and the new one refused
    await expect(convert({ mask: { file: inputs, key: 'mask' }, fillClass: 0, nLab: 2, output: target })).rejects.toThrow(/appeared while writing|already exists/);
    expect(fs.readdirSync(dir)).toEqual(['cube.zarr']);
    expect(new Set((await readVolume(target, 'lab')).data)).toEqual(new Set([-1, 1]));
  });

  it('refusals write nothing and leave no temporary folder', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'refuse-'));
    const target = path.join(dir, 'out.zarr');
    // a contradiction found after the data was streamed: the temporary (with its chunks) is removed
    const contra = runCli(['convert', '--quiet', '--mask', `${inputs}:mask`, '--classes', `${inputs}:lab`, '--n-lab', '3', '--not-present', '2', '-o', target]);
    expect(contra.code).toBe(1);
    expect(contra.stderr).toMatch(/refusing to write/);
    expect(fs.readdirSync(dir)).toEqual([]);

    // usage refusals, before any volume is read
    const usage = async (o: Parameters<typeof convert>[0], re: RegExp): Promise<void> => {
      try {
        await convert(o);
        throw new Error('expected a refusal');
      } catch (e) {
        expect(isLazyLabelError(e) && e.exitCode === 2, String(e)).toBe(true);
        expect((e as Error).message).toMatch(re);
      }
    };
    const m = { mask: { file: inputs, key: 'mask' }, fillClass: 1, nLab: 2 };
    await usage({ ...m, output: path.join(dir, 'x.h5'), outFormat: 'zarr' }, /HDF5 extension/);
    await usage({ ...m, output: target, shard: { index: 0, count: 2 } }, /--shard/);
    // a folder that is not a zarr store is never replaced, even with --force
    const other = path.join(dir, 'photos');
    fs.mkdirSync(other);
    fs.writeFileSync(path.join(other, 'keep.jpg'), 'x');
    await usage({ ...m, output: other, outFormat: 'zarr', force: true }, /not a zarr store/);
    expect(fs.readdirSync(other)).toEqual(['keep.jpg']);

    // the output is an input, holds an input, or lies inside an input folder
    const src = path.join(dir, 'src.zarr');
    await convert({ ...m, output: src });
    const fromZarr = { mask: { file: src, key: 'lab' }, fillClass: 1, nLab: 2 };
    await usage({ ...fromZarr, output: src, force: true }, /also an input/);
    await usage({ ...fromZarr, mask: { file: path.join(src, 'lab'), key: '' }, output: src, force: true }, /lies inside the output folder/);
    await usage({ ...fromZarr, output: path.join(src, 'nested.zarr') }, /lies inside the input folder/);
    expect(fs.readdirSync(src).sort()).toEqual(['.zgroup', 'info', 'lab']);
    expect(fs.readdirSync(dir).sort()).toEqual(['photos', 'src.zarr']);
  });
});
