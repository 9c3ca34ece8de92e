/** Tiling covers every voxel exactly once, inside each tile's input window, for any size and margin. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { axisTiles, tilesInRow, volumeTiles } from '../src/core/tiles.js';

describe('axisTiles', () => {
  it('covers [0, n) exactly once with owned ranges inside input windows', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 16 }), fc.integer({ min: 0, max: 20 }), fc.constantFrom(1, 2, 4, 8), (n, units, margin, align) => {
        const size = units * align;
        fc.pre(size - 2 * margin >= align);
        const tiles = axisTiles(n, size, margin, align);
        let next = 0;
        for (const t of tiles) {
          expect(t.outStart).toBe(next);
          expect(t.outEnd).toBeGreaterThan(t.outStart);
          expect(t.inStart).toBeLessThanOrEqual(t.outStart);
          expect(t.outEnd).toBeLessThanOrEqual(Math.min(n, t.inStart + t.size));
          expect(t.inStart).toBeGreaterThanOrEqual(0);
          expect(t.inStart % align).toBe(0);
          expect(t.size % align).toBe(0);
          // windows never run past the volume by a whole alignment unit
          expect(t.inStart + t.size).toBeLessThan(Math.ceil(n / align) * align + align);
          // inner edges keep at least `margin` voxels of context
          if (t.outStart > 0) expect(t.outStart - t.inStart).toBeGreaterThanOrEqual(Math.min(margin, t.outStart));
          if (t.outEnd < n) expect(t.inStart + t.size - t.outEnd).toBeGreaterThanOrEqual(margin);
          next = t.outEnd;
        }
        expect(next).toBe(n);
      }),
      { numRuns: 500 },
    );
  });

  it('a 100-voxel axis with 32-voxel tiles and 4-voxel margins', () => {
    expect(axisTiles(100, 32, 4)).toEqual([
      { inStart: 0, size: 32, outStart: 0, outEnd: 28 },
      { inStart: 24, size: 32, outStart: 28, outEnd: 52 },
      { inStart: 48, size: 32, outStart: 52, outEnd: 76 },
      { inStart: 68, size: 32, outStart: 76, outEnd: 100 },
    ]);
    // aligned to 8: starts on multiples of 8, the last window reaches past the end by less than 8
    expect(axisTiles(100, 32, 4, 8).map((t) => t.inStart)).toEqual([0, 24, 48, 72]);
    expect(axisTiles(10, 32, 4, 8)).toEqual([{ inStart: 0, size: 16, outStart: 0, outEnd: 10 }]);
  });
});

describe('tilesInRow', () => {
  it('enumerates every combination of the other axes', () => {
    const per = volumeTiles([10, 20, 30], [8, 8, 8], [1, 1, 1]);
    const rows = per[0]!;
    let count = 0;
    const covered = new Uint8Array(10 * 20 * 30);
    for (const row of rows) {
      for (const t of tilesInRow(per, row)) {
        count++;
        for (let z = t.outStart[0]!; z < t.outEnd[0]!; z++)
          for (let y = t.outStart[1]!; y < t.outEnd[1]!; y++) for (let x = t.outStart[2]!; x < t.outEnd[2]!; x++) covered[(z * 20 + y) * 30 + x]!++;
      }
    }
    expect(count).toBe(per[0]!.length * per[1]!.length * per[2]!.length);
    expect(covered.every((c) => c === 1)).toBe(true);
  });
});
