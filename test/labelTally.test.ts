/** LabelTally: the 16-bit run-length fast path counts exactly what a plain per-voxel count does. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LabelTally } from '../src/core/labelTally.js';

function naive(values: ArrayLike<number>, nLab: number): { counts: number[]; ignored: number; out: Map<number, number> } {
  const counts = Array<number>(nLab).fill(0);
  let ignored = 0;
  const out = new Map<number, number>();
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v === -1) ignored++;
    else if (v >= 0 && v < nLab) counts[v]!++;
    else out.set(v, (out.get(v) ?? 0) + 1);
  }
  return { counts, ignored, out };
}

describe('LabelTally', () => {
  it('int16 and uint16 runs, odd lengths and out-of-range values match a per-voxel count', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: -3, max: 5 }), fc.integer({ min: 1, max: 9 })), { minLength: 1, maxLength: 40 }),
        fc.integer({ min: 1, max: 4 }),
        fc.boolean(),
        (runs, nLab, unsigned) => {
          const flat = runs.flatMap(([v, k]) => Array<number>(k).fill(unsigned ? Math.abs(v) : v));
          const values = unsigned ? Uint16Array.from(flat) : Int16Array.from(flat);
          const t = new LabelTally(nLab);
          // split in two slabs at an odd position to exercise both the pair path and the trailing voxel
          const cut = Math.min(values.length, 3);
          t.add(values.slice(0, cut), false);
          t.add(values.slice(cut), false);
          const r = t.result();
          const ref = naive(flat, nLab);
          expect(r.classCounts).toEqual(ref.counts);
          expect(r.ignored).toBe(ref.ignored);
          expect(r.voxels).toBe(flat.length);
          expect(Object.fromEntries(r.outOfRange)).toEqual(Object.fromEntries(ref.out));
          expect(r.outOfRangeVoxels).toBe([...ref.out.values()].reduce((a, b) => a + b, 0));
        },
      ),
      { numRuns: 500 },
    );
  });
});
