/** HDF5 layer: dtype mapping, slab and box reads, streamed writes that h5py reads back, attribute round trips. */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { H5Sink, H5Source, withH5 } from '../src/io/hdf5.js';
import { fixture, hasH5py, python, tmpDir } from './helpers.js';

describe('reading h5py files', () => {
  it('maps every integer dtype, bool and float', async () => {
    const cases: [string, string][] = [
      ['dtype_int8.h5', 'int8'], ['dtype_int32.h5', 'int32'], ['dtype_int64.h5', 'int64'],
      ['dtype_uint16.h5', 'uint16'], ['dtype_uint32.h5', 'uint32'], ['dtype_uint64.h5', 'uint64'],
      ['bool_2class.h5', 'bool'], ['float_integral.h5', 'float32'], ['float_nonintegral.h5', 'float64'],
      ['dense2d_uint8.h5', 'uint8'], ['dense3d_int16_chunked.h5', 'int16'],
    ];
    for (const [file, name] of cases) {
      const info = await withH5(fixture('check', file), (src) => src.info('lab'));
      expect(info.dtype?.name, file).toBe(name);
    }
  });

  it('reports chunking and filters, and resolves nested groups', async () => {
    await withH5(fixture('check', 'dense3d_int16_chunked.h5'), (src) => {
      const info = src.info('lab');
      expect(info.chunks).toEqual([4, 10, 12]);
      expect(info.filters).toEqual(['deflate']);
    });
    await withH5(fixture('check', 'nested_groups.h5'), (src) => {
      expect(src.listDatasets().map((d) => d.key)).toEqual(['volumes/labels/clefts']);
      expect(src.info('volumes/labels/clefts').shape).toEqual([4, 5, 6]);
      expect(src.has('volumes/labels')).toBe(false); // a group, not a dataset
    });
  });

  it.skipIf(!hasH5py)('slab and box reads equal what h5py reads', async () => {
    const file = fixture('check', 'dense3d_int16_chunked.h5');
    const ref = JSON.parse(python(`import h5py, json; d = h5py.File(${JSON.stringify(file)}, 'r')['lab']; print(json.dumps({'slab': d[3:7].ravel().tolist(), 'box': d[2:5, 4:9, 10:13].ravel().tolist()}))`)) as { slab: number[]; box: number[] };
    await withH5(file, (src) => {
      expect(Array.from(src.readSlab('lab', 3, 7))).toEqual(ref.slab);
      expect(Array.from(src.readBox('lab', [2, 4, 10], [5, 9, 13]))).toEqual(ref.box);
    });
  });
});

describe('writing', () => {
  it.skipIf(!hasH5py)('a slab-by-slab chunked gzip dataset and typed attributes open in h5py', async () => {
    const dir = tmpDir();
    const file = path.join(dir, 'out.h5');
    const sink = await H5Sink.create(file);
    const w = sink.createDataset('volumes/lab', { shape: [5, 3, 4], dtype: 'int16', chunks: [2, 3, 4], gzip: 1 });
    for (let z = 0; z < 5; z++) w.write(Int16Array.from({ length: 12 }, (_, i) => z * 12 + i - 1));
    sink.setAttrs('volumes/lab', { resolution: Float64Array.from([10, 10, 25]), offset: [1, 2, 3], unit: 'nm', scale: 0.5 });
    sink.close();
    const out = JSON.parse(python(`
import h5py, json
d = h5py.File(${JSON.stringify(file)}, 'r')['volumes/lab']
print(json.dumps({'shape': d.shape, 'dtype': str(d.dtype), 'chunks': d.chunks, 'compression': d.compression,
  'sum': int(d[:].sum()), 'first': int(d[0,0,0]), 'res': str(d.attrs['resolution'].dtype), 'off': str(d.attrs['offset'].dtype),
  'unit': d.attrs['unit'], 'scale': float(d.attrs['scale'])}))`)) as Record<string, unknown>;
    expect(out).toEqual({ shape: [5, 3, 4], dtype: 'int16', chunks: [2, 3, 4], compression: 'gzip', sum: Array.from({ length: 60 }, (_, i) => i - 1).reduce((a, b) => a + b, 0), first: -1, res: 'float64', off: 'int64', unit: 'nm', scale: 0.5 });
    fs.rmSync(dir, { recursive: true });
  });

  it('attributes read from one file are written to another with their types', async () => {
    const dir = tmpDir();
    const file = path.join(dir, 'copy.h5');
    const attrs = await withH5(fixture('check', 'dense3d_int16_chunked.h5'), (src) => src.attrs('lab'));
    expect(attrs.resolution).toBeInstanceOf(BigInt64Array); // h5py stored np.array([10, 10, 20]) as int64
    const sink = await H5Sink.create(file);
    sink.createDataset('lab', { shape: [1], dtype: 'int8' }).write(Int8Array.of(0));
    sink.setAttrs('lab', attrs);
    sink.close();
    const back = await withH5(file, (src) => src.attrs('lab'));
    expect(Array.from(back.resolution as BigInt64Array)).toEqual([10n, 10n, 20n]);
    fs.rmSync(dir, { recursive: true });
  });

  it('refuses to create over an existing file', async () => {
    const dir = tmpDir();
    const file = path.join(dir, 'exists.h5');
    fs.writeFileSync(file, 'x');
    await expect(H5Sink.create(file)).rejects.toThrow(/cannot create HDF5 file/);
    fs.rmSync(dir, { recursive: true });
  });
});

describe('H5Source errors', () => {
  it('a missing dataset names the datasets that exist', async () => {
    const src = await H5Source.open(fixture('check', 'dense3d_int16_chunked.h5'));
    try {
      expect(() => src.info('nope')).toThrow(/dataset not found/);
      try {
        src.info('nope');
      } catch (e) {
        expect((e as { hint: string }).hint).toContain('lab, raw');
      }
    } finally {
      src.close();
    }
  });
});
