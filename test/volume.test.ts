/**
 * One read interface over HDF5, zarr (v2, v3, OME-Zarr), N5, TIFF stacks and PNG slice folders: every fixture that
 * fixtures/formats/make_format_fixtures.py wrote reads back (whole, as slabs, as boxes) as the values it wrote.
 * Values are recomputed here from the same formula, so these tests need no Python; the last block checks, when
 * zarr-python / tifffile / PIL are installed, that the reference readers see the same values in the fixtures.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LazyLabelError } from '../src/errors.js';
import { H5Source } from '../src/io/hdf5.js';
import { naturalSort, openVolume, volumeFormat, type VolumeReader } from '../src/io/volume.js';
import { fixture, tmpDir } from './helpers.js';

interface Entry {
  format: 'zarr' | 'n5' | 'tiff' | 'png';
  path: string;
  key?: string;
  /** when present, the key to open with (null: none), which must land on `key` (OME-Zarr level 0) */
  openKey?: string | null;
  shape: number[];
  dtype: string;
  seed: number;
  chunks?: number[];
  holes?: { start: number[]; end: number[]; value: number }[];
}

const FORMATS = fixture('formats');
const expected = JSON.parse(fs.readFileSync(path.join(FORMATS, 'expected.json'), 'utf8')) as { volumes: Record<string, Entry> };
const entries = Object.entries(expected.volumes);
const at = (p: string): string => path.join(FORMATS, ...p.split('/'));

/** Mirror of `pattern` in make_format_fixtures.py: a function of the C-order linear index and the seed. */
function pattern(shape: number[], dtype: string, seed: number): number[] {
  const n = shape.reduce((a, b) => a * b, 1);
  const mod = (a: number, m: number): number => ((a % m) + m) % m;
  const f: Record<string, (i: number) => number> = {
    uint8: (i) => mod(seed + 7 * i, 256),
    int8: (i) => mod(seed + 7 * i, 256) - 128,
    uint16: (i) => mod(seed + 37 * i, 65536),
    int16: (i) => mod(seed + 37 * i, 65536) - 32768,
    uint32: (i) => mod(seed + 2654435761 * i, 2 ** 32),
    int32: (i) => mod(seed + 2654435761 * i, 2 ** 32) - 2 ** 31,
    uint64: (i) => (seed + i) * 2 ** 33 + 1,
    int64: (i) => (seed + i) * 2 ** 33 - 2 ** 45,
    bool: (i) => (mod(seed + 7 * i, 3) === 0 ? 1 : 0),
    float32: (i) => Math.fround((seed + i) * 0.25 - 100),
    float64: (i) => (seed + i) * 0.125 - 1000.5,
  };
  return Array.from({ length: n }, (_, i) => f[dtype]!(i));
}

function strides(shape: number[]): number[] {
  const s = shape.map(() => 1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1]! * shape[i + 1]!;
  return s;
}

/** All index tuples in [starts, ends), C order. */
function* indices(starts: number[], ends: number[]): Generator<number[]> {
  if (starts.some((s, i) => s >= ends[i]!)) return;
  const idx = starts.slice();
  for (;;) {
    yield idx.slice();
    let a = idx.length - 1;
    for (; a >= 0; a--) {
      if (++idx[a]! < ends[a]!) break;
      idx[a] = starts[a]!; // this axis wrapped: reset it and carry into the one before
    }
    if (a < 0) return;
  }
}

function expectedValues(e: Entry): number[] {
  const v = pattern(e.shape, e.dtype, e.seed);
  const st = strides(e.shape);
  for (const h of e.holes ?? []) {
    for (const idx of indices(h.start, h.end)) v[idx.reduce((a, x, i) => a + x * st[i]!, 0)] = h.value;
  }
  return v;
}

function crop(values: number[], shape: number[], starts: number[], ends: number[]): number[] {
  const st = strides(shape);
  return [...indices(starts, ends)].map((idx) => values[idx.reduce((a, x, i) => a + x * st[i]!, 0)]!);
}

const ARRAY_OF: Record<string, string> = {
  int8: 'Int8Array', uint8: 'Uint8Array', int16: 'Int16Array', uint16: 'Uint16Array', int32: 'Int32Array',
  uint32: 'Uint32Array', bool: 'Uint8Array', float32: 'Float32Array', float64: 'Float64Array', int64: 'Float64Array', uint64: 'Float64Array',
};

async function open(e: Entry): Promise<VolumeReader> {
  const key = e.openKey !== undefined ? e.openKey : e.key;
  return key ? openVolume(at(e.path), key) : openVolume(at(e.path));
}

async function withVolume<T>(p: string, key: string | undefined, fn: (v: VolumeReader) => Promise<T>): Promise<T> {
  const v = await openVolume(p, key);
  try {
    return await fn(v);
  } finally {
    v.close();
  }
}

async function failure(p: Promise<unknown>): Promise<LazyLabelError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(LazyLabelError);
    return e as LazyLabelError;
  }
  throw new Error('expected a LazyLabelError');
}

describe('every fixture reads back as written', () => {
  it.each(entries)('%s', async (_name, e) => {
    const v = await open(e);
    try {
      expect(v.format).toBe(e.format);
      expect(v.shape).toEqual(e.shape);
      expect(v.dtype?.name).toBe(e.dtype);
      expect(v.typeName).toBe(e.dtype);
      if (e.key !== undefined) expect(v.key).toBe(e.key);
      if (e.chunks) expect(v.chunks).toEqual(e.chunks);
      const want = expectedValues(e);
      const zero = e.shape.map(() => 0);

      const all = await v.readBox(zero, e.shape);
      expect(all.constructor.name).toBe(ARRAY_OF[e.dtype]);
      expect(Array.from(all)).toEqual(want);

      // slabs along axis 0, crossing chunk borders, and an empty one
      const n0 = e.shape[0]!;
      for (const [s, t] of [[0, 1], [1, Math.min(n0, 5)], [n0 - 1, n0], [2, 2]] as [number, number][]) {
        const starts = [s, ...e.shape.slice(1).map(() => 0)];
        const ends = [t, ...e.shape.slice(1)];
        expect(Array.from(await v.readSlab(s, t)), `slab ${s}:${t}`).toEqual(crop(want, e.shape, starts, ends));
      }

      // an off-grid interior box and a one-voxel box at the far corner
      const starts = e.shape.map((n) => Math.min(1, n - 1));
      const ends = e.shape.map((n) => Math.max(Math.min(n, Math.ceil(n * 0.7) + 1), Math.min(1, n - 1) + 1));
      expect(Array.from(await v.readBox(starts, ends)), 'box').toEqual(crop(want, e.shape, starts, ends));
      const last = e.shape.map((n) => n - 1);
      expect(Array.from(await v.readBox(last, e.shape)), 'corner').toEqual(crop(want, e.shape, last, e.shape));
    } finally {
      v.close();
    }
  });
});

describe('volumeFormat', () => {
  it('tells formats apart by what the path is', () => {
    expect(volumeFormat(at('zarr/v2.zarr'))).toBe('zarr');
    expect(volumeFormat(at('zarr/v2.zarr/u8_zlib'))).toBe('zarr'); // an array folder inside a container
    expect(volumeFormat(at('zarr/v3.zarr'))).toBe('zarr');
    expect(volumeFormat(at('zarr/ome_v3.zarr/s0'))).toBe('zarr');
    expect(volumeFormat(at('n5/spec.n5'))).toBe('n5');
    expect(volumeFormat(at('n5/spec.n5/volumes/labels'))).toBe('n5'); // dataset folder: attributes.json with dimensions
    expect(volumeFormat(at('tiff/stack_u8.tif'))).toBe('tiff');
    expect(volumeFormat(at('tiff/stack_u16_tiled.tiff'))).toBe('tiff');
    expect(volumeFormat(at('tiff/slices_u16'))).toBe('tiff');
    expect(volumeFormat(at('png/slices_u8'))).toBe('png');
    expect(volumeFormat(at('png/single.png'))).toBe('png');
    expect(volumeFormat(fixture('check', 'dense3d_int16_chunked.h5'))).toBe('hdf5');
    expect(volumeFormat(fixture('check'))).toBeNull(); // a folder of .h5 files is not one volume
    expect(volumeFormat(fixture('check', 'expected.json'))).toBeNull();
  });

  it('judges paths that do not exist by their extension, and sniffs files without one', () => {
    expect(volumeFormat('/no/such/cube.h5')).toBe('hdf5');
    expect(volumeFormat('/no/such/cube.zarr')).toBe('zarr');
    expect(volumeFormat('/no/such/cube.n5')).toBe('n5');
    expect(volumeFormat('/no/such/stack.TIFF')).toBe('tiff');
    expect(volumeFormat('/no/such/thing')).toBeNull();
    const dir = tmpDir();
    fs.copyFileSync(at('tiff/stack_u8.tif'), path.join(dir, 'stack'));
    fs.copyFileSync(at('png/single.png'), path.join(dir, 'image'));
    fs.copyFileSync(fixture('check', 'dense2d_uint8.h5'), path.join(dir, 'cube'));
    expect(volumeFormat(path.join(dir, 'stack'))).toBe('tiff');
    expect(volumeFormat(path.join(dir, 'image'))).toBe('png');
    expect(volumeFormat(path.join(dir, 'cube'))).toBe('hdf5');
  });

  it('sorts slice names naturally', () => {
    expect(naturalSort(['z_10.tif', 'z_2.tif', 'z_1.tif', 'z_11.tif'])).toEqual(['z_1.tif', 'z_2.tif', 'z_10.tif', 'z_11.tif']);
  });
});

describe('opening', () => {
  it('reads HDF5 through the same interface as H5Source', async () => {
    const file = fixture('check', 'dense3d_int16_chunked.h5');
    const src = await H5Source.open(file);
    try {
      const info = src.info('lab');
      await withVolume(file, 'lab', async (v) => {
        expect(v.format).toBe('hdf5');
        expect([v.shape, v.dtype?.name, v.chunks]).toEqual([info.shape, 'int16', info.chunks]);
        expect(Array.from(await v.readSlab(3, 7))).toEqual(Array.from(src.readSlab('lab', 3, 7)));
        expect(Array.from(await v.readBox([2, 4, 10], [5, 9, 13]))).toEqual(Array.from(src.readBox('lab', [2, 4, 10], [5, 9, 13])));
        expect(v.attrs()).toEqual(src.attrs('lab'));
      });
    } finally {
      src.close();
    }
    // path:key, and a file holding one dataset needs no key
    await withVolume(`${fixture('check', 'nested_groups.h5')}:volumes/labels/clefts`, undefined, async (v) => expect(v.shape).toEqual([4, 5, 6]));
    await withVolume(fixture('check', 'nested_groups.h5'), undefined, async (v) => expect(v.key).toBe('volumes/labels/clefts'));
  });

  it('opens a sibling dataset (info next to the labels) through the open HDF5 file; closing it keeps the file open', async () => {
    const file = fixture('check', 'lazy_all_ignore.h5'); // h5py wrote info = [[1,1,0],[0,0,1]]
    await withVolume(file, 'lab', async (v) => {
      const info = v.openSibling!('/info');
      expect([info.key, info.shape, info.dtype?.kind]).toEqual(['info', [2, 3], 'int']);
      expect(Array.from(await info.readBox([0, 0], [2, 3]))).toEqual([1, 1, 0, 0, 0, 1]);
      info.close();
      expect((await v.readBox([0, 0, 0], [1, 1, 1])).length).toBe(1); // the labels still read
      expect(() => v.openSibling!('nope')).toThrow(expect.objectContaining({ code: 'dataset-missing', file }));
    });
  });

  it('takes path:key for zarr and N5 containers', async () => {
    await withVolume(`${at('zarr/v2.zarr')}:volumes/labels`, undefined, async (v) => expect([v.key, v.shape]).toEqual(['volumes/labels', [13, 6]]));
    await withVolume(`${at('n5/spec.n5')}:volumes/raw`, undefined, async (v) => expect([v.format, v.key, v.dtype?.name]).toEqual(['n5', 'volumes/raw', 'uint8']));
  });

  it('opens OME-Zarr at level 0 and keeps its multiscales with the attributes', async () => {
    await withVolume(at('zarr/ome_v2.zarr'), undefined, async (v) => {
      expect(v.key).toBe('full');
      const ms = v.attrs()['multiscales'] as { datasets: { path: string }[] }[];
      expect(ms[0]!.datasets.map((d) => d.path)).toEqual(['full', 'down2']);
    });
    await withVolume(at('zarr/ome_v3.zarr'), undefined, async (v) => expect([v.key, v.shape]).toEqual(['s0', [6, 10, 12]]));
    // a key naming a multiscale group (an OME-Zarr label image) lands on its level 0
    await withVolume(at('zarr/ome_v2.zarr'), 'labels/cells', async (v) => {
      expect(v.key).toBe('labels/cells/0');
      expect(v.attrs()['multiscales']).toBeDefined();
    });
  });

  it('returns array and dataset attributes without format keywords', async () => {
    await withVolume(at('zarr/v2.zarr'), 'u8_zlib', async (v) => expect(v.attrs()).toEqual({ resolution: [20, 10, 10] }));
    await withVolume(at('zarr/v3.zarr'), 'u16_gzip', async (v) => expect(v.attrs()).toEqual({ resolution: [20, 10, 10] }));
    await withVolume(at('n5/spec.n5'), 'volumes/labels', async (v) => expect(v.attrs()).toEqual({ resolution: [10, 10, 20] }));
    await withVolume(at('tiff/stack_u8.tif'), undefined, async (v) => expect(v.attrs()).toEqual({}));
  });
});

describe('errors', () => {
  it('file-missing for paths that do not exist', async () => {
    for (const p of ['/no/such/cube.h5', '/no/such/cube.zarr', at('png/nothing_here'), '/no/such/cube.n5:volumes/labels']) {
      expect((await failure(openVolume(p))).code, p).toBe('file-missing');
    }
  });

  it('dataset-missing lists the arrays that exist', async () => {
    const z = await failure(openVolume(at('zarr/v2.zarr'), 'nope'));
    expect(z.code).toBe('dataset-missing');
    expect(z.dataset).toBe('nope');
    expect(z.hint).toContain('u8_zlib');
    expect(z.hint).toContain('volumes/labels');
    const z3 = await failure(openVolume(at('zarr/v3.zarr'), 'labels/nope'));
    expect(z3.hint).toContain('labels/sharded');
    const group = await failure(openVolume(at('zarr/v2.zarr'))); // several arrays, no key
    expect(group.code).toBe('dataset-missing');
    const sub = await failure(openVolume(at('zarr/v2.zarr'), 'volumes')); // a group, not an array
    expect(sub.code).toBe('dataset-missing');
    const n5 = await failure(openVolume(at('n5/spec.n5'), 'volumes/nope'));
    expect(n5.code).toBe('dataset-missing');
    expect(n5.hint).toContain('volumes/labels');
    expect(n5.hint).toContain('i32_raw');
    expect((await failure(openVolume(at('n5/spec.n5')))).code).toBe('dataset-missing');
    const h5 = await failure(openVolume(fixture('check', 'dense3d_int16_chunked.h5'))); // lab and raw, no key
    expect(h5.code).toBe('dataset-missing');
  });

  it('corrupt for a damaged chunk or block, and only when a read touches it', async () => {
    await withVolume(at('zarr/v2.zarr'), 'broken', async (v) => {
      const e = await failure(v.readBox([0, 0, 0], [2, 2, 2])); // chunk 0.0.0 is garbage
      expect(e.code).toBe('corrupt');
      expect(e.dataset).toBe('broken');
      const ok = await v.readBox([4, 0, 0], [7, 9, 11]); // chunks with z ≥ 4 are intact
      expect(Array.from(ok)).toEqual(crop(pattern([7, 9, 11], 'uint8', 10), [7, 9, 11], [4, 0, 0], [7, 9, 11]));
    });
    await withVolume(at('zarr/v3.zarr'), 'broken', async (v) => {
      expect((await failure(v.readSlab(0, 1))).code).toBe('corrupt');
      expect((await v.readSlab(4, 7)).length).toBe(3 * 9 * 11);
    });
    await withVolume(at('n5/spec.n5'), 'broken', async (v) => {
      const e = await failure(v.readBox([4, 5, 6], [5, 6, 7])); // block x/y/z = 1/1/1 is cut short
      expect(e.code).toBe('corrupt');
      expect(e.message).toContain('1/1/1');
      expect(Array.from(await v.readSlab(0, 4))).toEqual(crop(pattern([7, 9, 11], 'uint16', 39), [7, 9, 11], [0, 0, 0], [4, 9, 11]));
    });
    expect((await failure(openVolume(at('tiff/truncated.tif')))).code).toBe('corrupt');
  });

  it('PNG folders: mismatched sizes, truncated and colour slices', async () => {
    const mismatch = await failure(openVolume(at('png/mismatch')));
    expect(mismatch.code).toBe('corrupt');
    expect(mismatch.message).toContain('2.png');
    await withVolume(at('png/truncated'), undefined, async (v) => {
      expect((await v.readSlab(0, 2)).length).toBe(2 * 6 * 8);
      const e = await failure(v.readSlab(2, 3));
      expect(e.code).toBe('corrupt');
      expect(e.file).toContain('3.png');
    });
    await withVolume(at('png/colour'), undefined, async (v) => {
      expect((await failure(v.readSlab(0, 1))).code).toBe('unsupported-format');
    });
  });

  it('unsupported-format for what is no volume', async () => {
    const dir = tmpDir();
    expect((await failure(openVolume(dir))).code).toBe('unsupported-format');
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'hello');
    expect((await failure(openVolume(path.join(dir, 'notes.txt')))).code).toBe('unsupported-format');
    fs.copyFileSync(at('png/single.png'), path.join(dir, 'a.png'));
    fs.copyFileSync(at('tiff/single_u16.tif'), path.join(dir, 'b.tif'));
    const mixed = await failure(openVolume(dir));
    expect(mixed.code).toBe('unsupported-format');
    expect(mixed.hint).toContain('mixes');
    // a multi-page TIFF among single-page slices
    const slices = tmpDir();
    fs.copyFileSync(at('tiff/single_u16.tif'), path.join(slices, '1.tif'));
    fs.copyFileSync(at('tiff/stack_u8.tif'), path.join(slices, '2.tif'));
    expect((await failure(openVolume(slices))).code).toBe('unsupported-format');
    // N5 compression we cannot decode
    const n5 = path.join(tmpDir(), 'x.n5');
    fs.mkdirSync(n5);
    fs.writeFileSync(path.join(n5, 'attributes.json'), JSON.stringify({ n5: '2.5.1', dimensions: [4, 3], blockSize: [2, 2], dataType: 'uint8', compression: { type: 'xz' } }));
    const xz = await failure(openVolume(n5));
    expect(xz.code).toBe('unsupported-format');
    expect(xz.message).toContain('xz');
  });

  it('out-of-bounds for boxes that do not fit', async () => {
    await withVolume(at('zarr/v2.zarr'), 'u8_zlib', async (v) => {
      expect((await failure(v.readBox([0, 0, 0], [8, 9, 11]))).code).toBe('out-of-bounds');
      expect((await failure(v.readBox([0, 0], [1, 1]))).code).toBe('out-of-bounds');
      expect((await failure(v.readSlab(3, 2))).code).toBe('out-of-bounds');
    });
    await withVolume(at('tiff/slices_u16'), undefined, async (v) => {
      expect((await failure(v.readSlab(0, 13))).code).toBe('out-of-bounds');
    });
  });
});

/** zarr-python (python3-zarr, python3-numcodecs), tifffile (python3-tifffile) and PIL (python3-pil). */
const hasReferenceReaders = spawnSync('/usr/bin/python3', ['-c', 'import numpy, zarr, numcodecs, tifffile, PIL'], { encoding: 'utf8' }).status === 0;

describe('interop', () => {
  it.skipIf(!hasReferenceReaders)('zarr-python, tifffile and PIL read the fixtures as the same values', () => {
    const r = spawnSync('/usr/bin/python3', [path.join(FORMATS, 'make_format_fixtures.py'), '--verify'], { encoding: 'utf8' });
    const report = JSON.parse(r.stdout) as Record<string, string>;
    const bad = Object.entries(report).filter(([, s]) => s !== 'ok' && !s.startsWith('skipped: no reference reader'));
    expect(bad).toEqual([]);
    expect(r.status).toBe(0);
    // the hand-written N5 (spec layout, truncated edge blocks) is among what zarr's N5Store checked
    expect(report['n5_spec_volumes_labels']).toBe('ok');
  });
});
