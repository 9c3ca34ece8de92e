#!/usr/bin/env node
// Micro-benchmark: ways to count label values in an Int16Array slab (the hot loop of check and
// suggest-prios, core/labelTally.ts) and to map mask + classes (convert, core/convert.ts).
// Data: the bench scene (large constant regions, small objects, -1 areas), 16 Mi voxels = one slab.
//
//   node bench/micro/tally.js [--rows 128] [--reps 7]
import { makeScene, renderRows } from '../lib/scene.js';
import { LabelTally } from '../../dist/core/labelTally.js';
import { ConvertTally, mapMaskClasses } from '../../dist/core/convert.js';
import { median } from '../lib/measure.js';

const args = process.argv.slice(2);
const opt = (name, d) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : d);
const rows = opt('--rows', 128);
const reps = opt('--reps', 7);
const shape = [512, 512, 256];
const n = rows * shape[1] * shape[2];
const scene = makeScene(shape, 42);
const lab = new Int16Array(n);
const cls = new Uint8Array(n);
const mask = new Uint8Array(n);
renderRows(scene, 192, 192 + rows, { lab, cls, mask });
const N_LAB = 3;

function time(name, fn) {
  fn(); // warm up (JIT)
  const ts = [];
  let result;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    result = fn();
    ts.push(performance.now() - t0);
  }
  const ms = median(ts);
  console.log(`${name.padEnd(58)} ${ms.toFixed(1).padStart(7)} ms  ${(ms * 1e6 / n).toFixed(2).padStart(5)} ns/voxel  ${JSON.stringify(result)}`);
  return ms;
}

console.log(`${n} voxels (${rows} rows of 512x256), int16 labels; median of ${reps}\n`);
console.log('-- counting labels (check, suggest-prios) --');

time('current: LabelTally.add (range test, Float64Array counts)', () => {
  const t = new LabelTally(N_LAB);
  t.add(lab, false);
  const r = t.result();
  return [r.ignored, ...r.classCounts];
});

// Run-length: labels come in long runs of one value, so compare with the previous value and only
// do the range test and the count update when the run ends. Exact for any input.
function tallyRuns(values, nLab, counts, onOutOfRange) {
  const len = values.length;
  if (len === 0) return;
  let prev = values[0];
  let start = 0;
  for (let i = 1; i < len; i++) {
    const v = values[i];
    if (v !== prev) {
      if (prev >= -1 && prev < nLab) counts[prev + 1] += i - start;
      else onOutOfRange(prev, i - start);
      prev = v;
      start = i;
    }
  }
  if (prev >= -1 && prev < nLab) counts[prev + 1] += len - start;
  else onOutOfRange(prev, len - start);
}
time('run-length (count when the value changes)', () => {
  const counts = new Float64Array(N_LAB + 1);
  tallyRuns(lab, N_LAB, counts, () => {});
  return [...counts];
});

// Histogram of all 65536 int16 values, no branches; fold into classes and out-of-range afterwards.
time('histogram Uint32Array(65536), index v & 0xffff', () => {
  const h = new Uint32Array(65536);
  for (let i = 0; i < lab.length; i++) h[lab[i] & 0xffff]++;
  return [h[0xffff], h[0], h[1], h[2]];
});

// Two 16-bit labels at a time: equal neighbours in one 32-bit compare.
time('run-length on 32-bit pairs (Uint32Array view)', () => {
  const counts = new Float64Array(N_LAB + 1);
  const w = new Uint32Array(lab.buffer, lab.byteOffset, lab.length >> 1);
  let prev = w[0];
  let start = 0;
  const flush = (word, pairs) => {
    const a = (word << 16) >> 16;
    const b = word >> 16;
    if (a >= -1 && a < N_LAB) counts[a + 1] += pairs;
    if (b >= -1 && b < N_LAB) counts[b + 1] += pairs;
  };
  for (let i = 1; i < w.length; i++) {
    const v = w[i];
    if (v !== prev) {
      flush(prev, i - start);
      prev = v;
      start = i;
    }
  }
  flush(prev, w.length - start);
  if (lab.length & 1) {
    const v = lab[lab.length - 1];
    counts[v + 1]++;
  }
  return [...counts];
});

console.log('\n-- mask + classes -> int16 labels with counts (convert) --');

time('current: mapMaskClasses (tally.take per voxel)', () => {
  const t = new ConvertTally(N_LAB);
  mapMaskClasses(mask, cls, t);
  const r = t.result();
  return [r.ignored, ...r.classCounts];
});

// Map and count in one loop, counting into a small local array; validation (range, integrality)
// once per distinct value through a per-value table for 8/16-bit class volumes.
time('fused loop, local Float64Array counts, uint8 lookup', () => {
  const out = new Int16Array(n);
  const counts = new Float64Array(256);
  let outside = 0;
  for (let i = 0; i < n; i++) {
    if (mask[i] > 0) {
      const v = cls[i];
      out[i] = v;
      counts[v]++;
    } else {
      out[i] = -1;
      outside++;
    }
  }
  // values >= nLab would be refused here (out-of-range), like ConvertTally.take does
  return [outside, counts[0], counts[1], counts[2]];
});

time('run-length over (mask, class) pairs', () => {
  const out = new Int16Array(n);
  const counts = new Float64Array(257); // index 0: outside the mask, v+1: class v inside
  let prevKey = mask[0] > 0 ? cls[0] + 1 : 0;
  let start = 0;
  for (let i = 0; i < n; i++) {
    const key = mask[i] > 0 ? cls[i] + 1 : 0;
    out[i] = key - 1;
    if (key !== prevKey) {
      counts[prevKey] += i - start;
      prevKey = key;
      start = i;
    }
  }
  counts[prevKey] += n - start;
  return [counts[0], counts[1], counts[2], counts[3]];
});

// Runs of the mask: outside runs become one out.fill(-1), inside runs one out.set(classes) (a native,
// type-converting copy), and the classes inside are counted run by run.
time('mask runs: fill(-1) / set(classes), classes counted by runs', () => {
  const out = new Int16Array(n);
  const counts = new Float64Array(256);
  let outside = 0;
  let i = 0;
  while (i < n) {
    let j = i + 1;
    if (mask[i] > 0) {
      while (j < n && mask[j] > 0) j++;
      out.set(cls.subarray(i, j), i);
      let prev = cls[i];
      let start = i;
      for (let k = i + 1; k < j; k++) {
        const v = cls[k];
        if (v !== prev) {
          counts[prev] += k - start;
          prev = v;
          start = k;
        }
      }
      counts[prev] += j - start;
    } else {
      while (j < n && !(mask[j] > 0)) j++;
      out.fill(-1, i, j);
      outside += j - i;
    }
    i = j;
  }
  return [outside, counts[0], counts[1], counts[2]];
});

