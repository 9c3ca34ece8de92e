/** LabelTally: the wasm SIMD kernel and the 16-bit run-length path count exactly what a plain per-voxel count does. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LabelTally } from '../src/core/labelTally.js';
import { countInPlaceOn, countSmallRange, KERNEL_SCRATCH_BYTES, KERNEL_SPAN } from '../src/core/countKernel.js';

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

  it('slabs counted by the SIMD kernel (8/16-bit, any length and offset, out-of-range values) match a per-voxel count', () => {
    const types = [Int16Array, Uint16Array, Int8Array, Uint8Array] as const;
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 3 }),
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 4096, max: 20000 }),
        fc.integer({ min: 0, max: 7 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        (ti, nLab, n, offset, strayShare, seed) => {
          const T = types[ti]!;
          const signed = T === Int16Array || T === Int8Array;
          const buf = new T(n + offset);
          let x = seed;
          const rnd = (): number => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32);
          // long runs of in-range labels, and (sometimes) a few stray values anywhere in the type's range
          let v = 0;
          for (let i = 0; i < buf.length; i++) {
            if (rnd() < 0.05) v = Math.floor(rnd() * (nLab + (signed ? 1 : 0))) - (signed ? 1 : 0);
            buf[i] = rnd() < strayShare * 0.001 ? Math.floor(rnd() * 2 ** (8 * T.BYTES_PER_ELEMENT)) : v;
          }
          const values = buf.subarray(offset);
          const t = new LabelTally(nLab);
          t.add(values, false);
          const r = t.result();
          const ref = naive(values, nLab);
          expect(r.classCounts).toEqual(ref.counts);
          expect(r.ignored).toBe(ref.ignored);
          expect(r.voxels).toBe(values.length);
          expect(r.outOfRangeVoxels).toBe([...ref.out.values()].reduce((a, b) => a + b, 0));
        },
      ),
      { numRuns: 150 },
    );
  });

  it('the kernel counts lo..lo+7 for every int16 value range, including wrap-around at the type limits', () => {
    const values = new Int16Array(1 << 16);
    for (let i = 0; i < values.length; i++) values[i] = i - 32768; // every int16 value once
    for (const lo of [-32768, -1, 0, 32760]) {
      const counts = new Float64Array(KERNEL_SPAN);
      expect(countSmallRange(values, lo, counts)).toBe(values.length);
      expect([...counts]).toEqual(Array.from({ length: KERNEL_SPAN }, (_, j) => (lo + j <= 32767 ? 1 : 0)));
    }
  });

  it('counts arrays on a foreign wasm heap where they are, writing only its scratch bytes, also after the heap grows', () => {
    // a stand-in for libhdf5's heap (src/io/hdf5.ts hosts the kernels on that one)
    const memory = new WebAssembly.Memory({ initial: 2 });
    const scratch = 1024;
    expect(countInPlaceOn(memory, scratch)).toBe(true);
    expect(countInPlaceOn(memory, scratch)).toBe(true); // once per memory
    const fillAndCount = (offset: number, n: number): void => {
      const heap = new Uint8Array(memory.buffer);
      for (let i = 0; i < heap.length; i++) heap[i] = (i * 7 + 3) & 0xff; // noise everywhere else
      const values = new Int16Array(memory.buffer, offset, n);
      for (let i = 0; i < n; i++) values[i] = ((i * 2654435761) >>> 7) % 6 - 1; // -1..4
      const before = heap.slice();
      const counts = new Float64Array(KERNEL_SPAN);
      const counted = countSmallRange(values, -1, counts);
      expect(counted).toBe(n - (n % 8));
      const want = naive(values.subarray(0, counted), 7);
      expect([...counts]).toEqual([want.ignored, ...want.counts]);
      // counted there: the lane counters are in the scratch bytes
      const lanes = new Uint32Array(memory.buffer, scratch, KERNEL_SPAN * 4);
      expect(Array.from({ length: KERNEL_SPAN }, (_, j) => lanes[4 * j]! + lanes[4 * j + 1]! + lanes[4 * j + 2]! + lanes[4 * j + 3]!)).toEqual([...counts]);
      // nothing outside the scratch bytes changed, the values included
      const after = new Uint8Array(memory.buffer);
      for (let i = 0; i < after.length; i++) if (i < scratch || i >= scratch + KERNEL_SCRATCH_BYTES) expect(after[i]).toBe(before[i]);
    };
    fillAndCount(4096 + 2, 20_003); // not 16-byte aligned, odd length
    memory.grow(3); // the heap's ArrayBuffer is replaced: views of the new one are still counted in place
    fillAndCount(65536 * 3 + 6, 50_000);
    // arrays elsewhere are still counted (copied into the kernels' own memory)
    const plain = new Int16Array(9000).map((_, i) => (i % 3) - 1);
    const counts = new Float64Array(KERNEL_SPAN);
    expect(countSmallRange(plain, -1, counts)).toBe(9000);
    expect([...counts.slice(0, 3)]).toEqual([3000, 3000, 3000]);
  });

});
