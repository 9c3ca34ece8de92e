/**
 * The HDF5 reader without libhdf5 (src/io/h5layout.ts, h5direct.ts, h5chunks.ts) against h5py: the files and the
 * expected values (shape, dtype, NumPy value counts, info, h5py's get_chunk_info) come from
 * fixtures/h5direct/make_h5direct_fixtures.py. Also: what it must hand to libhdf5, and that the counts of
 * check/suggest-prios are the same either way (and with a counting worker thread).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DirectH5File, type DirectDataset } from '../src/io/h5direct.js';
import { DirectReadError, unshuffle } from '../src/io/h5chunks.js';
import { gatherCubeFacts } from '../src/ops/scan.js';
import { tallyWithWorker } from '../src/ops/tallyWorkerPool.js';
import type { NumericArray } from '../src/io/dtype.js';
import { fixture, tmpDir } from './helpers.js';

interface Case {
  file: string;
  key: string;
  infoKey: string | null;
  shape: number[];
  dtype: string;
  counts: Record<string, number>;
  info: number[][] | null;
  /** true: the direct reader takes it; false: it must hand it to libhdf5; null: either. */
  direct: boolean | null;
  chunkShape: number[] | null;
  chunks: { offset: number[]; address: number; size: number; filterMask: number }[] | null;
}

const EXPECTED = JSON.parse(fs.readFileSync(fixture('h5direct', 'expected.json'), 'utf8')) as { cases: Case[] };
const CASES = EXPECTED.cases;
const file = (c: Case): string => fixture('h5direct', c.file);

/** Value counts of pieces, by a plain loop (independent of LabelTally and its kernels). */
function countValues(pieces: Iterable<NumericArray>): Record<string, number> {
  const counts = new Map<number, number>();
  for (const p of pieces) for (const v of p) counts.set(v, (counts.get(v) ?? 0) + 1);
  return Object.fromEntries([...counts].map(([v, n]) => [String(v), n]));
}

function sortedChunks(chunks: { offset: number[]; address: number; size: number; filterMask: number }[]): unknown[] {
  return [...chunks].sort((a, b) => a.address - b.address).map((c) => ({ offset: c.offset, address: c.address, size: c.size, filterMask: c.filterMask }));
}

function openDataset(c: Case): { f: DirectH5File | null; ds: DirectDataset | 'absent' | null } {
  const f = DirectH5File.open(file(c));
  return { f, ds: f ? f.dataset(c.key) : null };
}

describe('DirectH5File on h5py-written files', () => {
  it('the fixtures cover both sides: files it reads and files it hands to libhdf5', () => {
    expect(CASES.filter((c) => c.direct === true).length).toBeGreaterThanOrEqual(8);
    expect(CASES.filter((c) => c.direct === false).length).toBeGreaterThanOrEqual(5);
  });

  for (const c of CASES.filter((x) => x.direct === true)) {
    it(`${c.file}: shape, dtype, chunks, every value and info as h5py/NumPy`, () => {
      const { f, ds } = openDataset(c);
      expect(f).not.toBeNull();
      try {
        expect(ds).not.toBeNull();
        expect(ds).not.toBe('absent');
        const d = ds as DirectDataset;
        expect(d.shape).toEqual(c.shape);
        expect(d.dtype.name).toBe(c.dtype);
        expect(d.chunks).toEqual(c.chunkShape);
        expect(countValues(f!.pieces(d))).toEqual(c.counts);
        if (c.chunks) {
          expect(d.storage.kind).toBe('chunked');
          if (d.storage.kind === 'chunked') expect(sortedChunks(d.storage.layout.chunks)).toEqual(sortedChunks(c.chunks));
        }
        const info = f!.dataset(c.infoKey!);
        expect(info).not.toBeNull();
        expect(info).not.toBe('absent');
        expect(Array.from(f!.readAll(info as DirectDataset)!)).toEqual(c.info!.flat());
        expect(f!.dataset('no_such_dataset')).toBe('absent');
      } finally {
        f?.close();
      }
    });
  }

  for (const c of CASES.filter((x) => x.direct === false)) {
    it(`${c.file}: left to libhdf5`, () => {
      const { f, ds } = openDataset(c);
      f?.close();
      expect(ds).toBeNull();
    });
  }

  it('contiguous volumes stream in pieces of at most the given budget, and add up to the whole', () => {
    const c = CASES.find((x) => x.file === 'contiguous_int8.h5')!;
    const { f, ds } = openDataset(c);
    const sizes: number[] = [];
    const seen: number[] = [];
    for (const p of f!.pieces(ds as DirectDataset, 100)) {
      sizes.push(p.byteLength);
      seen.push(...p);
    }
    f!.close();
    expect(Math.max(...sizes)).toBeLessThanOrEqual(100);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(c.shape.reduce((a, b) => a * b, 1));
    expect(countValues([Int8Array.from(seen)])).toEqual(c.counts);
  });

  it('not an HDF5 file, a folder or a FIFO: null at once', () => {
    const dir = tmpDir();
    try {
      fs.writeFileSync(path.join(dir, 'text.h5'), 'hello, not hdf5');
      expect(DirectH5File.open(path.join(dir, 'text.h5'))).toBeNull();
      expect(DirectH5File.open(dir)).toBeNull();
      expect(DirectH5File.open(path.join(dir, 'missing.h5'))).toBeNull();
      const fifo = path.join(dir, 'fifo.h5');
      execFileSync('mkfifo', [fifo]);
      expect(DirectH5File.open(fifo)).toBeNull(); // returns at once: a blocking open would hang here
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('check/suggest-prios facts are the same with or without libhdf5', () => {
  const nLab = 3;
  for (const c of CASES.filter((x) => x.shape.length === 2 || x.shape.length === 3)) {
    it(`${c.file}: NumPy's counts and info`, async () => {
      const ref = { label: file(c), labelKey: c.key, infoKey: c.infoKey ?? 'info' };
      const { facts, failure } = await gatherCubeFacts(ref, nLab, {});
      expect(failure).toBeUndefined();
      const t = facts!.tally!;
      const classCounts = [0, 1, 2].map((k) => c.counts[String(k)] ?? 0);
      expect(t.classCounts).toEqual(classCounts);
      expect(t.ignored).toBe(c.counts['-1'] ?? 0);
      const outside = Object.entries(c.counts).filter(([v]) => Number(v) < -1 || Number(v) >= nLab);
      expect([...t.outOfRange]).toEqual(outside.map(([v, n]) => [Number(v), n]).sort((a, b) => a[0]! - b[0]!));
      expect(t.voxels).toBe(c.shape.reduce((a, b) => a * b, 1));
      expect(facts!.label.shape).toEqual(c.shape);
      expect(facts!.label.typeName).toBe(c.dtype);
      expect(Array.from(facts!.info!.data)).toEqual(c.info!.flat());
      expect(facts!.info!.shape).toEqual([2, 3]);
      // the same facts through libhdf5 only, and with a counting worker thread sharing the chunks
      const plain = (f: typeof facts) => ({ ...f!, info: { ...f!.info!, data: Array.from(f!.info!.data) } });
      const { facts: viaLibhdf5 } = await gatherCubeFacts(ref, nLab, { directRead: false });
      expect(plain(viaLibhdf5)).toEqual(plain(facts));
      if (c.direct) {
        const { facts: withWorker } = await gatherCubeFacts(ref, nLab, { tallyWorker: true, slabMB: 0.001 });
        expect(plain(withWorker)).toEqual(plain(facts));
      }
    });
  }
});

describe('two threads claiming the units of the direct reader', () => {
  it('count every voxel once, as NumPy (the worker reads the file itself)', async () => {
    const c = CASES.find((x) => x.file === 'gzip_edges.h5')!;
    const f = DirectH5File.open(file(c))!;
    try {
      const ds = f.dataset(c.key) as DirectDataset;
      const units = f.units(ds);
      let mineCounted = 0;
      const mine = { ...units, isFloat: false, read: (i: number) => { const v = units.read(i); mineCounted += v.length; return v; } };
      const total = c.shape.reduce((a, b) => a * b, 1);
      const t = await tallyWithWorker({ kind: 'direct', file: file(c), key: c.key, pieceBytes: 1 << 20 }, mine, 3, total, () => {});
      expect(t.voxels).toBe(total);
      expect(t.classCounts).toEqual([0, 1, 2].map((k) => c.counts[String(k)]));
      expect(t.ignored).toBe(c.counts['-1']);
      expect(mineCounted).toBeLessThanOrEqual(total);
    } finally {
      f.close();
    }
  });

  it('a worker that cannot read the file fails the tally (gatherCubeFacts then reads through libhdf5)', async () => {
    // the worker is told a file the direct reader declines; this thread has nothing to count
    const nothing = { count: 0, isFloat: false, read: (): never => { throw new Error('not reached'); } };
    const tally = tallyWithWorker({ kind: 'direct', file: fixture('h5direct', 'latest.h5'), key: 'lab', pieceBytes: 1 << 20 }, nothing, 3, 1, () => {});
    await expect(tally).rejects.toThrow(/no longer readable without libhdf5/);
  });
});

describe('damaged files: libhdf5 reports the damage, no counts from the direct reader', () => {
  const c = CASES.find((x) => x.file === 'gzip_edges.h5')!;

  it('a chunk whose zlib stream is broken', async () => {
    const dir = tmpDir();
    try {
      const copy = path.join(dir, 'broken.h5');
      const bytes = fs.readFileSync(file(c));
      const first = c.chunks![0]!;
      bytes.fill(0xff, first.address, first.address + 4); // no valid zlib header
      fs.writeFileSync(copy, bytes);
      const f = DirectH5File.open(copy)!;
      const d = f.dataset('lab');
      expect(d).not.toBeNull(); // the metadata is intact: the damage shows when the chunk is inflated
      expect(() => countValues(f.pieces(d as DirectDataset))).toThrow(/inflate failed/);
      f.close();
      const { facts, failure } = await gatherCubeFacts({ label: copy, labelKey: 'lab', infoKey: 'info' }, 3, {});
      expect(facts).toBeUndefined();
      expect(failure!.code).toBe('corrupt');
      expect(failure!.file).toBe(copy);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a file cut short: the direct reader declines, libhdf5 says it is damaged', async () => {
    const dir = tmpDir();
    try {
      const copy = path.join(dir, 'short.h5');
      const bytes = fs.readFileSync(file(c));
      fs.writeFileSync(copy, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
      const f = DirectH5File.open(copy);
      expect(f?.dataset('lab') ?? null).toBeNull();
      f?.close();
      const { facts, failure } = await gatherCubeFacts({ label: copy, labelKey: 'lab', infoKey: 'info' }, 3, {});
      expect(facts).toBeUndefined();
      expect(failure!.code).toBe('corrupt');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('damaged metadata never crashes or hangs the direct reader', () => {
  it('300 seeded byte flips in the metadata of three files: null, or a dataset whose voxels add up, or DirectReadError', () => {
    let seed = 12345;
    const random = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const dir = tmpDir();
    try {
      let read = 0;
      for (const name of ['gzip_edges.h5', 'many_names.h5', 'contiguous_int8.h5']) {
        const c = CASES.find((x) => x.file === name)!;
        const original = fs.readFileSync(file(c));
        // the metadata lies before the first chunk (h5py writes it first); past the end of a contiguous file's header
        const metadataEnd = c.chunks ? Math.min(...c.chunks.map((k) => k.address)) : 2048;
        for (let i = 0; i < 100; i++) {
          const bytes = Buffer.from(original);
          const at = Math.floor(random() * metadataEnd);
          bytes[at] = bytes[at]! ^ (1 << Math.floor(random() * 8));
          const copy = path.join(dir, `${name}.${i}.h5`);
          fs.writeFileSync(copy, bytes);
          const f = DirectH5File.open(copy);
          const ds = f?.dataset(c.key);
          if (f && ds && ds !== 'absent' && ds.dtype.bytes <= 4 && ds.dtype.kind !== 'float') {
            try {
              let voxels = 0;
              for (const p of f.pieces(ds)) voxels += p.length;
              expect(voxels).toBe(ds.shape.reduce((a, b) => a * b, 1));
              read++;
            } catch (e) {
              expect(e).toBeInstanceOf(DirectReadError); // the caller then reads through libhdf5
            }
          }
          f?.close();
        }
      }
      expect(read).toBeGreaterThan(0); // most flips land in fields the reader does not need
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('unshuffle', () => {
  it('undoes the byte planes of HDF5 shuffle (2 and 4 byte elements, leftover bytes kept)', () => {
    const values = Uint16Array.from([0x0102, 0x0304, 0x0506]);
    const bytes = new Uint8Array(values.buffer);
    // shuffled: all low bytes, then all high bytes (little-endian)
    const shuffled = Uint8Array.from([0x02, 0x04, 0x06, 0x01, 0x03, 0x05]);
    expect(Array.from(unshuffle(shuffled, 2))).toEqual(Array.from(bytes));
    const four = Uint8Array.from([1, 5, 2, 6, 3, 7, 4, 8, 99]);
    expect(Array.from(unshuffle(four, 4))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 99]);
  });
});
