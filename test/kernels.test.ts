/** The wasm SIMD kernels (convert's mask + classes mapping against a per-voxel loop; committed bytes against their .wat source) and the prebuilt schema validators. */
import { execFileSync } from 'node:child_process';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ConvertTally, mapMaskClasses } from '../src/core/convert.js';

describe('mask + classes kernel', () => {
  it('labels and counts equal a per-voxel where(mask > 0, classes, -1), stray class values included', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 4096, max: 40000 }),
        fc.integer({ min: 0, max: 15 }),
        fc.boolean(),
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        (nLab, n, offset, strays, seed) => {
          let x = seed;
          const rnd = (): number => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32);
          const maskBuf = new Uint8Array(n + offset);
          const classBuf = new Uint8Array(n + offset);
          for (let i = 0; i < maskBuf.length; i++) {
            maskBuf[i] = rnd() < 0.3 ? 0 : 1 + Math.floor(rnd() * 255);
            classBuf[i] = strays && rnd() < 0.001 ? Math.floor(rnd() * 256) : Math.floor(rnd() * nLab);
          }
          const mask = maskBuf.subarray(offset);
          const classes = classBuf.subarray(offset);
          const tally = new ConvertTally(nLab);
          const out = mapMaskClasses(mask, classes, tally);
          const r = tally.result();
          const counts = Array<number>(nLab).fill(0);
          let ignored = 0;
          let stray = 0;
          for (let i = 0; i < n; i++) {
            const want = mask[i]! > 0 ? (classes[i]! < nLab ? classes[i]! : -1) : -1;
            if (out[i] !== want) expect({ i, got: out[i], want }).toBeNull();
            if (mask[i]! === 0) ignored++;
            else if (classes[i]! < nLab) counts[classes[i]!]!++;
            else stray++;
          }
          expect(r.classCounts).toEqual(counts);
          expect(r.ignored).toBe(ignored);
          expect(r.outOfRangeVoxels).toBe(stray);
          expect(r.voxels).toBe(n);
        },
      ),
      { numRuns: 120 },
    );
  });
});

describe('kernel build', () => {
  it('the committed kernel module is compiled from its .wat source', () => {
    expect(() => execFileSync(process.execPath, ['scripts/build-kernels.js', '--check'], { stdio: 'pipe' })).not.toThrow();
  });
});

describe('prebuilt schema validators', () => {
  it('the standalone validators npm run build generates judge manifests exactly like ajv compiling the schema', async () => {
    const fs = await import('node:fs');
    const path = await import('node:path');
    const { createRequire } = await import('node:module');
    const { Ajv } = await import('ajv');
    execFileSync(process.execPath, ['scripts/build-validators.js'], { stdio: 'pipe' });
    const require = createRequire(import.meta.url);
    const ajv = new Ajv({ allErrors: true, strict: false, useDefaults: false });
    const runtime = ajv.compile(JSON.parse(fs.readFileSync('schemas/manifest.schema.json', 'utf8')));
    const prebuilt = require(path.resolve('dist/validators/manifest.cjs')) as typeof runtime;
    const manifests = fs.readdirSync('fixtures/check').filter((f) => f.endsWith('.json') && f.startsWith('manifest'));
    expect(manifests.length).toBeGreaterThan(3);
    const samples: unknown[] = manifests.map((f) => JSON.parse(fs.readFileSync(path.join('fixtures/check', f), 'utf8')));
    samples.push({}, [], null, { n_lab: 0, cubes: [] }, { n_lab: 3, cubes: [{ label: '', prio: -1, offset: [1] }], extra: 1 });
    let invalid = 0;
    for (const m of samples) {
      const a = runtime(m);
      const b = prebuilt(m);
      expect(b).toBe(a);
      expect(prebuilt.errors ?? null).toEqual(runtime.errors ?? null);
      if (!a) invalid++;
    }
    expect(invalid).toBeGreaterThan(3);
  });
});
