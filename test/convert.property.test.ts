/** Property tests for `convert`: random small masks, classes and n_lab through the library API, checked against an expectation computed here. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { isLazyLabelError } from '../src/errors.js';
import { H5Sink, H5Source } from '../src/io/hdf5.js';
import type { DTypeName } from '../src/io/dtype.js';
import { convert } from '../src/ops/convert.js';

let tmp: string;
let runs = 0;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lazylabel-convert-prop-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

type Writable = Exclude<DTypeName, 'bool' | 'int64' | 'uint64'>;

const ARRAYS: Record<Writable, new (values: number[]) => ArrayLike<number>> = {
  int8: Int8Array, uint8: Uint8Array, int16: Int16Array, uint16: Uint16Array, int32: Int32Array, uint32: Uint32Array, float32: Float32Array, float64: Float64Array,
} as Record<Writable, new (values: number[]) => ArrayLike<number>>;

/** Write datasets through the I/O layer: chunked (streamed) or contiguous (one go). */
async function writeVolumes(file: string, volumes: { key: string; shape: number[]; dtype: Writable; values: number[]; chunked: boolean }[]): Promise<void> {
  const sink = await H5Sink.create(file);
  try {
    for (const v of volumes) {
      const data = new ARRAYS[v.dtype](v.values) as never;
      if (v.chunked) sink.createDataset(v.key, { shape: v.shape, dtype: v.dtype, chunks: v.shape.map((n) => Math.max(1, Math.ceil(n / 2))) }).write(data);
      else sink.writeSmall(v.key, v.shape, v.dtype, data);
    }
  } finally {
    sink.close();
  }
}

async function readAll(file: string, key: string): Promise<number[]> {
  const src = await H5Source.open(file);
  try {
    return Array.from(src.readAll(key).data, Number);
  } finally {
    src.close();
  }
}

const shapeArb = fc.oneof(fc.tuple(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 6 })), fc.tuple(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 5 })));

/** Mask values per dtype: zero and negatives are outside, anything > 0 inside. */
const MASK_VALUES: Record<'uint8' | 'int8' | 'int32' | 'float32', number[]> = {
  uint8: [0, 1, 255],
  int8: [-1, 0, 1, 3],
  int32: [-5, 0, 1, 1000],
  float32: [-0.5, 0, 0.25, 1],
};

const caseArb = fc
  .record({
    shape: shapeArb,
    nLab: fc.integer({ min: 1, max: 5 }),
    maskDtype: fc.constantFrom('uint8', 'int8', 'int32', 'float32') as fc.Arbitrary<keyof typeof MASK_VALUES>,
    classDtype: fc.constantFrom('int16', 'uint8', 'int32', 'float64') as fc.Arbitrary<Writable>,
    chunked: fc.boolean(),
    slabMB: fc.constantFrom(0.00001, 64),
    seed: fc.integer(),
    notPresentBits: fc.nat({ max: 31 }),
    // how --not-present is chosen: none, only classes absent from the output, or any (often a contradiction)
    notPresentMode: fc.constantFrom('none', 'absent', 'absent', 'any'),
    labeledBits: fc.option(fc.nat({ max: 31 }), { nil: undefined }),
  })
  .chain((c) => {
    const voxels = c.shape.reduce((a: number, b: number) => a * b, 1);
    return fc.record({
      c: fc.constant(c),
      mask: fc.array(fc.constantFrom(...MASK_VALUES[c.maskDtype]), { minLength: voxels, maxLength: voxels }),
      classes: fc.array(fc.integer({ min: 0, max: c.nLab - 1 }), { minLength: voxels, maxLength: voxels }),
    });
  });

const bitsToIds = (bits: number, nLab: number): number[] => Array.from({ length: nLab }, (_, i) => i).filter((i) => (bits >> i) & 1);

describe('convert properties', () => {
  it('mask + classes: outside the mask is -1, inside keeps its class, info follows the flags, output passes check, contradictions write nothing', async () => {
    await fc.assert(
      fc.asyncProperty(caseArb, async ({ c, mask, classes }) => {
        const id = ++runs;
        const input = path.join(tmp, `in${id}.h5`);
        const output = path.join(tmp, `out${id}.h5`);
        const shape = [...c.shape];
        await writeVolumes(input, [
          { key: 'mask', shape, dtype: c.maskDtype, values: mask, chunked: c.chunked },
          { key: 'lab', shape, dtype: c.classDtype, values: classes, chunked: !c.chunked },
        ]);
        // the expectation, computed here
        const expected = mask.map((m, i) => (m > 0 ? classes[i]! : -1));
        const counts = Array(c.nLab).fill(0) as number[];
        for (const v of expected) if (v >= 0) counts[v]!++;
        const picked = bitsToIds(c.notPresentBits, c.nLab);
        const notPresent = c.notPresentMode === 'none' ? [] : c.notPresentMode === 'absent' ? picked.filter((k) => counts[k] === 0) : picked;
        const labeled = c.labeledBits === undefined ? undefined : bitsToIds(c.labeledBits, c.nLab);
        const labeledMask = labeled ?? counts.map((_, k) => k).filter((k) => counts[k]! > 0);
        const conflict = notPresent.some((k) => counts[k]! > 0);
        const empty = labeledMask.every((k) => counts[k] === 0) && notPresent.length === 0;

        const run = convert({ mask: { file: input, key: 'mask' }, classes: { file: input, key: 'lab' }, nLab: c.nLab, notPresent, ...(labeled ? { labeled } : {}), slabMB: c.slabMB, output });
        if (conflict || empty) {
          const err = await run.catch((e: unknown) => e);
          expect(isLazyLabelError(err)).toBe(true);
          expect(err).toMatchObject({ exitCode: 1, code: conflict ? 'not-present-has-voxels' : 'no-training-signal', file: input });
          expect(fs.existsSync(output)).toBe(false);
          expect(fs.readdirSync(tmp).filter((f) => f.includes('lazylabel-tmp'))).toEqual([]);
          return;
        }
        const report = await run;
        expect(report.check.status).not.toBe('error');
        expect(report.ok).toBe(true);
        const got = await readAll(output, 'lab');
        expect(got).toEqual(expected);
        expect(report.classCounts).toEqual(counts);
        expect(report.ignored).toBe(expected.filter((v) => v === -1).length);
        expect(report.labeledFrom).toBe(labeled ? 'flag' : 'occurring');
        const info = await readAll(output, 'info');
        expect(info).toEqual([...counts.map((_, k) => (labeledMask.includes(k) ? 1 : 0)), ...counts.map((_, k) => (notPresent.includes(k) ? 1 : 0))]);
        // 1e-5 MiB is less than one row: one slab per row
        if (c.slabMB < 0.001) expect(report.slabs).toBe(shape[0]);
        else expect(report.slabs).toBe(1);
      }),
      { numRuns: 60, seed: 4242 },
    );
  });

  it('dense volume with an unlabelled value: marker → -1, classes above it shift down, out-of-range refused', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }).chain((nLab) =>
          fc.record({
            nLab: fc.constant(nLab),
            shape: shapeArb,
            marker: fc.integer({ min: 0, max: nLab }),
          }).chain((c) => {
            const voxels = c.shape.reduce((a: number, b: number) => a * b, 1);
            // values up to nLab always map into range; some runs allow nLab + 1, a class that does not exist after the shift
            return fc.record({
              c: fc.constant(c),
              values: fc.constantFrom(c.nLab, c.nLab, c.nLab, c.nLab + 1).chain((max) => fc.array(fc.integer({ min: 0, max }), { minLength: voxels, maxLength: voxels })),
            });
          }),
        ),
        async ({ c, values }) => {
          const id = ++runs;
          const input = path.join(tmp, `dense${id}.h5`);
          const output = path.join(tmp, `dense-out${id}.h5`);
          await writeVolumes(input, [{ key: 'seg', shape: [...c.shape], dtype: 'int16', values, chunked: id % 2 === 0 }]);
          const expected = values.map((v) => (v === c.marker ? -1 : v > c.marker ? v - 1 : v));
          const bad = expected.some((v) => v >= c.nLab);
          const empty = expected.every((v) => v === -1);
          const run = convert({ classes: { file: input, key: 'seg' }, unlabeledValue: c.marker, shift: true, nLab: c.nLab, allowEmpty: true, output });
          if (bad) {
            await expect(run).rejects.toMatchObject({ exitCode: 1, code: 'label-out-of-range', file: input, dataset: 'seg' });
            expect(fs.existsSync(output)).toBe(false);
            return;
          }
          const report = await run;
          expect(await readAll(output, 'lab')).toEqual(expected);
          expect(report.check.status).toBe(empty ? 'warn' : report.check.status);
          expect(report.check.status).not.toBe('error');
        },
      ),
      { numRuns: 40, seed: 777 },
    );
  });
});
