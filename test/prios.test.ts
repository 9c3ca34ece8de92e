/** `suggest-prios`: the rule's properties, exact numbers on h5py fixtures, --lazy-share, the ELEKTRONN line, the manifest rewrite, CLI exit codes and schema. */
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyLazyShare, cubeInformation, DEFAULT_LAZY_WEIGHT, elektronnCubePrios, pythonFloat, sharesFromPrios } from '../src/core/prios.js';
import { isLazyLabelError } from '../src/errors.js';
import { suggestPrios, type CubePrio, type PriosReport } from '../src/ops/suggestPrios.js';
import { fixture, python, runCli, schemaErrors, tmpDir } from './helpers.js';

interface ExpectedCube {
  voxels: number;
  classCounts: number[];
  ignored: number;
  labelledVoxels: number;
  labeled: number[];
  notPresent: number[];
  lazy: boolean;
  information: number;
}
interface Expected {
  nLab: number;
  lazyWeight: number;
  lazyShare: number;
  trainOrder: string[];
  cubes: Record<string, ExpectedCube>;
  prios: number[];
  shares: number[];
  lazyShareFactor: number;
  priosLazyShare: number[];
  sharesLazyShare: number[];
  elektronnLine: string;
}

// computed independently with NumPy by fixtures/prios/make_prios_fixtures.py
const expected = JSON.parse(fs.readFileSync(fixture('prios', 'expected.json'), 'utf8')) as Expected;
const MANIFEST = fixture('prios', 'manifest.json');
const byName = (r: PriosReport, name: string): CubePrio => r.cubes.find((c) => c.name === name)!;

/** Expect a promise or function to fail with a usage error (exit code 2). */
async function expectUsage(run: () => unknown, message?: RegExp): Promise<void> {
  let caught: unknown;
  try {
    await run();
  } catch (e) {
    caught = e;
  }
  expect(isLazyLabelError(caught), String(caught)).toBe(true);
  if (isLazyLabelError(caught)) {
    expect(caught.exitCode).toBe(2);
    if (message) expect(caught.message).toMatch(message);
  }
}

const density = fc
  .record({ voxels: fc.integer({ min: 1, max: 1e9 }), nLab: fc.integer({ min: 1, max: 16 }), l: fc.double({ min: 0, max: 1, noNaN: true }), f: fc.double({ min: 0, max: 1, noNaN: true }) })
  .map(({ voxels, nLab, l, f }) => ({ voxels, nLab, labelledVoxels: Math.floor(l * voxels), notPresentFlags: Math.floor(f * nLab) }));
// lazy weights as users give them: 0, 1, or a normal double in between (subnormal weights would underflow)
const weight = fc.oneof(fc.constant(0), fc.constant(1), fc.double({ min: 1e-6, max: 1, noNaN: true }));
/** Equal up to a relative error of `tol`. */
const near = (a: number, b: number, tol = 1e-12): boolean => Math.abs(a - b) <= tol * Math.max(Math.abs(a), Math.abs(b));

describe('information rule (pure)', () => {
  it('hand-computed values', () => {
    // painted: 512 labelled of 2048, one of 3 classes flagged absent -> 512 + 0.5 * 1536 / 3 = 768
    expect(cubeInformation({ voxels: 2048, labelledVoxels: 512, notPresentFlags: 1, nLab: 3 })).toBe(768);
    // all ignore, one flag: 0.5 * 864 / 3
    expect(cubeInformation({ voxels: 864, labelledVoxels: 0, notPresentFlags: 1, nLab: 3 })).toBe(144);
    expect(cubeInformation({ voxels: 144, labelledVoxels: 0, notPresentFlags: 0, nLab: 3 })).toBe(0);
    expect(cubeInformation({ voxels: 1152, labelledVoxels: 576, notPresentFlags: 0, nLab: 3 })).toBe(576);
    expect(cubeInformation({ voxels: 90, labelledVoxels: 0, notPresentFlags: 2, nLab: 3 }, 1)).toBe(60);
    expect(DEFAULT_LAZY_WEIGHT).toBe(0.5);
  });

  it("a fully dense cube scores its voxel count (ELEKTRONN's default prio), whatever its flags", () => {
    fc.assert(
      fc.property(density, weight, (d, w) => {
        expect(cubeInformation({ ...d, labelledVoxels: d.voxels }, w)).toBe(d.voxels);
      }),
    );
  });

  it('never scores more than the cube size, never less than its labelled voxels', () => {
    fc.assert(
      fc.property(density, weight, (d, w) => {
        const i = cubeInformation(d, w);
        expect(i).toBeLessThanOrEqual(d.voxels);
        expect(i).toBeGreaterThanOrEqual(d.labelledVoxels);
      }),
    );
  });

  it('rises with labelled voxels', () => {
    fc.assert(
      fc.property(density, fc.double({ min: 0, max: 0.99, noNaN: true }), fc.integer({ min: 1, max: 1000 }), (d, w, more) => {
        fc.pre(d.labelledVoxels + more <= d.voxels);
        expect(cubeInformation({ ...d, labelledVoxels: d.labelledVoxels + more }, w)).toBeGreaterThan(cubeInformation(d, w));
        // at weight 1 with every class flagged a label adds nothing new, but never takes away
        expect(cubeInformation({ ...d, labelledVoxels: d.labelledVoxels + more }, 1)).toBeGreaterThanOrEqual(cubeInformation(d, 1));
      }),
    );
  });

  it('rises with not-present flags while some voxel is open, and never falls', () => {
    fc.assert(
      fc.property(density, fc.double({ min: 0.01, max: 1, noNaN: true }), (d, w) => {
        fc.pre(d.notPresentFlags < d.nLab);
        const more = { ...d, notPresentFlags: d.notPresentFlags + 1 };
        if (d.labelledVoxels < d.voxels) expect(cubeInformation(more, w)).toBeGreaterThan(cubeInformation(d, w));
        else expect(cubeInformation(more, w)).toBe(cubeInformation(d, w));
        expect(cubeInformation(more, 0)).toBe(cubeInformation(d, 0));
      }),
    );
  });

  it('is scale-free: resizing a cube by k at the same density scales its prio by k', () => {
    fc.assert(
      fc.property(density, weight, fc.integer({ min: 2, max: 1000 }), fc.integer({ min: 1, max: 20 }), (d, w, k, j) => {
        const scaled = (f: number): number => cubeInformation({ ...d, voxels: f * d.voxels, labelledVoxels: f * d.labelledVoxels }, w);
        const base = cubeInformation(d, w);
        expect(Math.abs(scaled(k) - k * base)).toBeLessThanOrEqual(1e-12 * k * d.voxels);
        // powers of two scale every intermediate exactly
        expect(scaled(2 ** j)).toBe(2 ** j * base);
      }),
    );
  });

  it('resizing every cube alike leaves the shares unchanged', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(density, fc.boolean()), { minLength: 1, maxLength: 8 }), weight, fc.integer({ min: 1, max: 20 }), fc.integer({ min: 2, max: 1000 }), (cubes, w, j, k) => {
        const nLab = cubes[0]![0].nLab;
        const infoAt = (f: number): number[] => cubes.map(([d]) => cubeInformation({ ...d, nLab, notPresentFlags: Math.min(d.notPresentFlags, nLab), voxels: f * d.voxels, labelledVoxels: f * d.labelledVoxels }, w));
        fc.pre(infoAt(1).some((x) => x > 0));
        expect(sharesFromPrios(infoAt(2 ** j))).toEqual(sharesFromPrios(infoAt(1)));
        sharesFromPrios(infoAt(k)).forEach((s, i) => expect(s).toBeCloseTo(sharesFromPrios(infoAt(1))[i]!, 12));
      }),
    );
  });
});

describe('sharesFromPrios', () => {
  it('normalises like ELEKTRONN (prio / sum) and sums to 1', () => {
    expect(sharesFromPrios([1, 3])).toEqual([0.25, 0.75]);
    expect(sharesFromPrios([5, 0, 5])).toEqual([0.5, 0, 0.5]);
    fc.assert(
      fc.property(fc.array(fc.double({ min: 0, max: 1e12, noNaN: true }), { minLength: 1, maxLength: 20 }), (prios) => {
        fc.pre(prios.some((p) => p > 0));
        const s = sharesFromPrios(prios);
        expect(s.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
        s.forEach((x) => expect(x).toBeGreaterThanOrEqual(0));
      }),
    );
  });
  it('all zero when nothing can be drawn; refuses negative or non-finite prios', () => {
    expect(sharesFromPrios([0, 0])).toEqual([0, 0]);
    expect(sharesFromPrios([])).toEqual([]);
    expect(() => sharesFromPrios([1, -1])).toThrow(RangeError);
    expect(() => sharesFromPrios([Number.NaN])).toThrow(RangeError);
    expect(() => sharesFromPrios([Infinity])).toThrow(RangeError);
  });
});

describe('applyLazyShare (pure)', () => {
  const groups = fc
    .array(fc.record({ information: fc.double({ min: 1e-3, max: 1e9, noNaN: true }), lazy: fc.boolean() }), { minLength: 2, maxLength: 10 })
    .filter((cs) => cs.some((c) => c.lazy) && cs.some((c) => !c.lazy));

  it('gives the lazy cubes the requested share, keeps dense prios and relative prios within each group', () => {
    fc.assert(
      // shares far below an ulp of the dense sum would underflow the lazy prios to 0: not a meaningful request
      fc.property(groups, fc.oneof(fc.constant(0), fc.double({ min: 1e-6, max: 0.999, noNaN: true })), (cubes, s) => {
        const { prios } = applyLazyShare(cubes, s);
        const shares = sharesFromPrios(prios);
        expect(cubes.reduce((a, c, i) => a + (c.lazy ? shares[i]! : 0), 0)).toBeCloseTo(s, 12);
        cubes.forEach((c, i) => {
          if (!c.lazy) expect(prios[i]).toBe(c.information);
        });
        const lazy = cubes.map((c, i) => [c, prios[i]!] as const).filter(([c]) => c.lazy);
        for (const [c, p] of lazy) if (s > 0) expect(near(p / lazy[0]![1], c.information / lazy[0]![0].information), `${p} ${c.information}`).toBe(true);
      }),
    );
  });

  it('hand-computed: dense 300, lazy 100 + 100, share 0.25 -> lazy prios 50 each', () => {
    const r = applyLazyShare([{ information: 300, lazy: false }, { information: 100, lazy: true }, { information: 100, lazy: true }], 0.25);
    expect(r.factor).toBe(0.5);
    expect(r.prios).toEqual([300, 50, 50]);
    expect(sharesFromPrios(r.prios)).toEqual([0.75, 0.125, 0.125]);
    expect(applyLazyShare([{ information: 300, lazy: false }, { information: 100, lazy: true }], 0).prios).toEqual([300, 0]);
  });

  it('refuses shares outside [0, 1) and groups that cannot reach a share', async () => {
    const mixed = [{ information: 1, lazy: false }, { information: 1, lazy: true }];
    for (const s of [1, 1.5, -0.1, Number.NaN]) await expectUsage(() => applyLazyShare(mixed, s), /lazy share must be in \[0, 1\)/);
    await expectUsage(() => applyLazyShare([{ information: 1, lazy: false }], 0.2), /no training cube is lazy/);
    await expectUsage(() => applyLazyShare([{ information: 1, lazy: true }], 0.2), /every training cube is lazy/);
    await expectUsage(() => applyLazyShare([{ information: 0, lazy: false }, { information: 1, lazy: true }], 0.2), /dense cubes carry no information/);
    await expectUsage(() => applyLazyShare([{ information: 1, lazy: false }, { information: 0, lazy: true }], 0.2), /lazy cubes carry no information/);
  });
});

describe('ELEKTRONN cube_prios line', () => {
  it('Python float syntax', () => {
    expect(pythonFloat(1152)).toBe('1152.0');
    expect(pythonFloat(0)).toBe('0.0');
    expect(pythonFloat(0.1)).toBe('0.1');
    expect(elektronnCubePrios([1152, 135.52941176470588])).toBe('cube_prios = [1152.0, 135.52941176470588]');
    expect(elektronnCubePrios([])).toBe('cube_prios = []');
  });
  it('parses back in Python to the very same doubles', () => {
    const prios = [...fc.sample(fc.double({ min: 0, max: 1e300, noNaN: true }), 200), 0, 1, 1e21, 5e-324, 2 ** 53 + 2, 123456789.123];
    const line = elektronnCubePrios(prios);
    const out = python(`import ast, json; t = ${JSON.stringify(line)}; print(json.dumps(ast.literal_eval(t.split('=', 1)[1].strip())))`);
    expect(JSON.parse(out)).toEqual(prios);
  });
});

describe('suggestPrios on h5py fixtures (numbers from NumPy)', () => {
  it('per-cube counts, information, prios and shares match exactly', async () => {
    const r = await suggestPrios({ manifest: MANIFEST });
    expect(r.ok).toBe(true);
    expect(r.nLab).toBe(3);
    expect(r.cubes.map((c) => c.name)).toEqual(['dense', 'half', 'painted', 'painted2x', 'flagged_ignore', 'ignore_noflags', 'valid']);
    for (const file of [...expected.trainOrder, 'valid.h5']) {
      const c = r.cubes.find((x) => path.basename(x.path) === file)!;
      const e = expected.cubes[file]!;
      expect({ voxels: c.voxels, classCounts: c.classCounts, labelledVoxels: c.labelledVoxels, labeled: c.labeled, notPresent: c.notPresent, lazy: c.lazy, information: c.information }, file).toEqual({
        voxels: e.voxels, classCounts: e.classCounts, labelledVoxels: e.labelledVoxels, labeled: e.labeled, notPresent: e.notPresent, lazy: e.lazy, information: e.information,
      });
      expect(c.ignoredFraction).toBe(e.ignored / e.voxels);
    }
    expect(r.cubePrios).toEqual(expected.prios);
    expect(r.cubes.filter((c) => !c.valid).map((c) => c.share)).toEqual(expected.shares);
  });

  it('the fixture densities, by hand', async () => {
    const r = await suggestPrios({ manifest: MANIFEST });
    // dense: (8,12,12), every voxel labelled -> ELEKTRONN's default, the voxel count
    expect(byName(r, 'dense').prio).toBe(8 * 12 * 12);
    // half: 4 of 8 slices ignored, default info -> half the voxels
    expect(byName(r, 'half').labelledFraction).toBe(0.5);
    expect(byName(r, 'half').prio).toBe(576);
    expect(byName(r, 'half').lazy).toBe(false);
    // painted: 8*8*8 = 512 background voxels labelled; 64 voxels of the unlabelled class 1 stay open
    expect(byName(r, 'painted').classCounts).toEqual([512, 64, 0]);
    expect(byName(r, 'painted').prio).toBe(512 + (0.5 * (2048 - 512)) / 3);
    // flagged_ignore: nothing labelled, class 2 flagged absent -> 0.5 * 864 / 3
    expect(byName(r, 'flagged_ignore').prio).toBe(144);
    expect(byName(r, 'flagged_ignore').lazy).toBe(true);
    // painted2x: the same density at twice the size -> exactly twice the prio and share
    expect(byName(r, 'painted2x').prio).toBe(2 * byName(r, 'painted').prio!);
    expect(byName(r, 'painted2x').share).toBe(2 * byName(r, 'painted').share!);
    const total = 1152 + 576 + 768 + 1536 + 144 + 0;
    expect(byName(r, 'dense').share).toBe(1152 / total);
    expect(r.lazyShare).toBeCloseTo((768 + 1536 + 144) / total, 15);
  });

  it('an all-ignore cube without flags gets prio 0 with a warning', async () => {
    const c = byName(await suggestPrios({ manifest: MANIFEST }), 'ignore_noflags');
    expect(c.information).toBe(0);
    expect(c.prio).toBe(0);
    expect(c.share).toBe(0);
    expect(c.status).toBe('warn');
    expect(c.findings.find((f) => f.code === 'prio-zero')?.severity).toBe('warning');
  });

  it('a validation cube is listed and scored but gets prio 0, share 0, and stays out of cube_prios', async () => {
    const r = await suggestPrios({ manifest: MANIFEST });
    const v = byName(r, 'valid');
    expect(v.valid).toBe(true);
    expect(v.information).toBe(256);
    expect([v.prio, v.share]).toEqual([0, 0]);
    expect(v.findings.map((f) => f.code)).toContain('valid-cube');
    expect(r.cubePrios).toHaveLength(6);
  });

  it('--lazy-share 0.2: exact prios and shares, dense prios kept, lazy cubes get 20% in total', async () => {
    const r = await suggestPrios({ manifest: MANIFEST, lazyShare: 0.2 });
    expect(r.cubePrios).toEqual(expected.priosLazyShare);
    expect(r.cubes.filter((c) => !c.valid).map((c) => c.share)).toEqual(expected.sharesLazyShare);
    expect(byName(r, 'dense').prio).toBe(1152);
    expect(byName(r, 'half').prio).toBe(576);
    // dense 1728 in total, so the lazy group must sum to 1728 * 0.2 / 0.8 = 432 = 2448 * factor
    expect(expected.lazyShareFactor).toBeCloseTo(432 / 2448, 15);
    expect(byName(r, 'painted2x').prio! / byName(r, 'painted').prio!).toBe(2);
    expect(r.lazyShare).toBeCloseTo(0.2, 15);
    expect(r.rule).toMatchObject({ lazyWeight: 0.5, lazyShare: 0.2 });
  });

  it('streaming in tiny slabs gives the same report', async () => {
    const events: number[] = [];
    const small = await suggestPrios({ manifest: MANIFEST, slabMB: 0.0005, onProgress: (e) => events.push(e.done) });
    expect(events.length).toBeGreaterThan(20);
    expect(small).toEqual(await suggestPrios({ manifest: MANIFEST }));
  });

  it('label files: path and path:key, all training cubes', async () => {
    const r = await suggestPrios({ cubes: [{ label: fixture('prios', 'dense.h5'), labelKey: 'lab', infoKey: 'info' }, { label: fixture('prios', 'painted.h5'), labelKey: 'lab', infoKey: 'info' }], nLab: 3 });
    expect(r.manifest).toBeNull();
    expect(r.cubes.map((c) => c.name)).toEqual(['dense.h5', 'painted.h5']);
    expect(r.cubePrios).toEqual([1152, 768]);
  });

  it('an unreadable cube gets no prio; the others are still scored among themselves', async () => {
    const r = await suggestPrios({ manifest: fixture('prios', 'manifest_broken.json') });
    expect(r.ok).toBe(false);
    const missing = byName(r, 'missing');
    expect(missing.findings.map((f) => f.code)).toEqual(['file-missing']);
    expect([missing.voxels, missing.information, missing.prio, missing.share]).toEqual([null, null, null, null]);
    expect(byName(r, 'dense').share).toBe(1152 / (1152 + 768));
    expect(r.cubePrios).toBeNull();
  });

  it('lazy info in a manifest with lazy_labels false is an error, as in check', async () => {
    const r = await suggestPrios({ manifest: fixture('prios', 'manifest_lazy_disabled.json') });
    expect(r.ok).toBe(false);
    expect(byName(r, 'painted').findings.map((f) => f.code)).toContain('manifest-lazy-disabled');
    expect(byName(r, 'painted').prio).toBeNull();
  });

  it('usage errors', async () => {
    const dense = { label: fixture('prios', 'dense.h5'), labelKey: 'lab', infoKey: 'info' };
    await expectUsage(() => suggestPrios({ manifest: MANIFEST, lazyShare: 1 }));
    await expectUsage(() => suggestPrios({ manifest: MANIFEST, lazyWeight: 1.5 }), /lazy weight/);
    await expectUsage(() => suggestPrios({ cubes: [dense], nLab: 3, lazyShare: 0.2 }), /no training cube is lazy/);
    await expectUsage(() => suggestPrios({ cubes: [dense] }), /--n-lab is required/);
    await expectUsage(() => suggestPrios({ cubes: [dense], nLab: 3, writeManifest: true }), /--write-manifest needs --manifest/);
    await expectUsage(() => suggestPrios({ manifest: MANIFEST, nLab: 4 }), /differs from the manifest/);
    await expectUsage(() => suggestPrios({ cubes: [{ ...dense, label: fixture('prios', 'painted.h5') }], nLab: 3, lazyShare: 0.2 }), /every training cube is lazy/);
    await expectUsage(() => suggestPrios({}), /no label files given/);
    await expectUsage(() => suggestPrios({ manifest: MANIFEST, cubes: [dense] }), /not both/);
  });
});

describe('lazylabel suggest-prios CLI', () => {
  it('table: exit 0 with prio and share per cube', () => {
    const r = runCli(['suggest-prios', '--manifest', MANIFEST]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/cube\s+kind\s+voxels\s+labelled\s+flags\s+prio\s+share/);
    expect(r.stdout).toMatch(/painted2x\s+lazy\s+4096\s+25\.0%\s+L=100 NP=001\s+1536\s+36\.8%/);
    expect(r.stdout).toMatch(/valid\s+valid\s+256/);
    expect(r.stdout).toContain('prio-zero');
    expect(r.stdout).toContain('7 cubes -> OK');
  });

  it('--json follows the schema and carries the exact numbers', () => {
    const r = runCli(['suggest-prios', '--manifest', MANIFEST, '--json', '--lazy-share', '0.2']);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as PriosReport;
    expect(schemaErrors('prios-report', report)).toEqual([]);
    expect(report.command).toBe('suggest-prios');
    expect(report.cubePrios).toEqual(expected.priosLazyShare);
    expect(report.rule.lazyShare).toBe(0.2);
    const files = runCli(['suggest-prios', `${fixture('prios', 'dense.h5')}:lab`, fixture('prios', 'flagged_ignore.h5'), '--n-lab', '3', '--json']);
    expect(files.code).toBe(0);
    const fr = JSON.parse(files.stdout) as PriosReport;
    expect(schemaErrors('prios-report', fr)).toEqual([]);
    expect(fr.cubePrios).toEqual([1152, 144]);
  });

  it('exit 1 for an unreadable cube; the JSON still follows the schema and reports the others', () => {
    const r = runCli(['suggest-prios', '--manifest', fixture('prios', 'manifest_broken.json'), '--json']);
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout) as PriosReport;
    expect(schemaErrors('prios-report', report)).toEqual([]);
    expect(byName(report, 'painted').prio).toBe(768);
    const t = runCli(['suggest-prios', '--manifest', fixture('prios', 'manifest_broken.json')]);
    expect(t.code).toBe(1);
    expect(t.stdout).toContain('file-missing');
    expect(t.stdout + t.stderr).not.toMatch(/\n\s+at /);
  });

  it('--format elektronn prints the same line as Python, parsing to the exact prios', () => {
    const r = runCli(['suggest-prios', '--manifest', MANIFEST, '--format', 'elektronn']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(expected.elektronnLine + '\n');
    expect(r.stderr).toContain('valid_cubes = [6]');
    const ls = runCli(['suggest-prios', '--manifest', MANIFEST, '--format', 'elektronn', '--lazy-share', '0.2']);
    expect(ls.code).toBe(0);
    const parsed = python(`import ast, json; print(json.dumps(ast.literal_eval(${JSON.stringify(ls.stdout.trim().split('=')[1]!.trim())})))`);
    expect(JSON.parse(parsed)).toEqual(expected.priosLazyShare);
    const broken = runCli(['suggest-prios', '--manifest', fixture('prios', 'manifest_broken.json'), '--format', 'elektronn']);
    expect(broken.code).toBe(1);
    expect(broken.stdout).toBe('');
    expect(broken.stderr).toContain('no cube_prios line');
  });

  // the library tests above cover every refusal; these check that the CLI turns them into exit 2
  it('exit 2 for usage errors', () => {
    const lazyOnly = [fixture('prios', 'painted.h5'), '--n-lab', '3'];
    const denseOnly = [fixture('prios', 'dense.h5'), fixture('prios', 'half.h5'), '--n-lab', '3'];
    const cases: [string[], RegExp][] = [
      [['--manifest', MANIFEST, '--lazy-share', '1'], /lazy share must be in \[0, 1\)/],
      [['--manifest', MANIFEST, '--lazy-share', '-0.1'], /lazy share must be in \[0, 1\)/],
      [[...denseOnly, '--lazy-share', '0.2'], /no training cube is lazy/],
      [[...lazyOnly, '--lazy-share', '0.2'], /every training cube is lazy/],
      [[...denseOnly, '--write-manifest'], /--write-manifest needs --manifest/],
      [['--manifest', MANIFEST, '--json', '--format', 'elektronn'], /pick one/],
      [[], /no label files given/],
    ];
    for (const [args, message] of cases) {
      const r = runCli(['suggest-prios', ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(message);
    }
  });
});

describe('--write-manifest', () => {
  function copyFixtures(): string {
    const dir = tmpDir('lazylabel-prios-');
    for (const name of fs.readdirSync(fixture('prios'))) {
      if (/\.(h5|json)$/.test(name) && name !== 'expected.json') fs.copyFileSync(fixture('prios', name), path.join(dir, name));
    }
    return dir;
  }

  it('stores the prios in place, keeps every other field and the key order, atomically; check still passes', () => {
    const dir = copyFixtures();
    const target = path.join(dir, 'manifest.json');
    const before = JSON.parse(fs.readFileSync(target, 'utf8')) as { cubes: Record<string, unknown>[] } & Record<string, unknown>;
    const filesBefore = fs.readdirSync(dir).sort();
    const r = runCli(['suggest-prios', '--manifest', target, '--lazy-share', '0.2', '--write-manifest', '--json']);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as PriosReport;
    expect(report.written).toBe(true);

    const text = fs.readFileSync(target, 'utf8');
    const after = JSON.parse(text) as typeof before;
    // what the manifest should be: the same object with prio set on training cubes (new keys last)
    const want = structuredClone(before);
    want.cubes.forEach((c, i) => {
      if (c.valid !== true) c.prio = expected.priosLazyShare[i]!;
    });
    expect(text).toBe(JSON.stringify(want, null, 2) + '\n');
    expect(Object.keys(after)).toEqual(Object.keys(before));
    expect(Object.keys(after.cubes[0]!)).toEqual(['name', 'prio', 'label', 'label_key']);
    expect(after.cubes[6]).toEqual(before.cubes[6]);
    // no temporary left behind, nothing else touched
    expect(fs.readdirSync(dir).sort()).toEqual(filesBefore);
    for (const name of filesBefore.filter((n) => n.endsWith('.h5'))) expect(fs.readFileSync(path.join(dir, name))).toEqual(fs.readFileSync(fixture('prios', name)));

    expect(schemaErrors('manifest', after)).toEqual([]);
    expect(runCli(['check', '--manifest', target]).code).toBe(0);
    // the stored prios are what ELEKTRONN gets: reading them back through the manifest gives the same list
    const again = runCli(['suggest-prios', '--manifest', target, '--lazy-share', '0.2', '--json']);
    expect((JSON.parse(again.stdout) as PriosReport).cubePrios).toEqual(after.cubes.filter((c) => c.valid !== true).map((c) => c.prio));
  });

  it('with an error the manifest is left byte for byte unchanged', () => {
    const dir = copyFixtures();
    const target = path.join(dir, 'manifest_broken.json');
    const before = fs.readFileSync(target);
    const filesBefore = fs.readdirSync(dir).sort();
    const r = runCli(['suggest-prios', '--manifest', target, '--write-manifest']);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('manifest-not-written');
    expect(fs.readFileSync(target)).toEqual(before);
    expect(fs.readdirSync(dir).sort()).toEqual(filesBefore);
  });
});
