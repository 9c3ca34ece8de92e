/** `check`: exact codes and stats on h5py-written fixtures, CLI exit codes and JSON schema, bounded-memory scanning. */
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { checkCube, checkCubes, checkManifest } from '../src/ops/check.js';
import { fixture, runCli, schemaErrors } from './helpers.js';

interface Expected {
  key: string;
  n_lab: number;
  status: 'ok' | 'warn' | 'error';
  codes: string[];
  dtype?: string;
  shape?: number[];
  classCounts?: number[];
  ignored?: number;
  voxels?: number;
  outOfRange?: Record<string, number>;
  flaggedCount?: number;
}

const expected = JSON.parse(fs.readFileSync(fixture('check', 'expected.json'), 'utf8')) as Record<string, Expected>;

describe('check rules on h5py fixtures', () => {
  for (const [name, exp] of Object.entries(expected)) {
    it(`${name}: status ${exp.status}, codes ${exp.codes.join(',') || '(none)'}`, async () => {
      const report = await checkCube({ label: fixture('check', name), labelKey: exp.key, infoKey: 'info' }, { nLab: exp.n_lab });
      expect(report.findings.map((f) => f.code).sort()).toEqual(exp.codes);
      expect(report.status).toBe(exp.status);
      if (exp.classCounts) {
        // counts computed independently by NumPy in make_check_fixtures.py
        expect(report.stats?.classCounts).toEqual(exp.classCounts);
        expect(report.stats?.ignored).toBe(exp.ignored);
        expect(report.stats?.voxels).toBe(exp.voxels);
        expect(report.stats?.shape).toEqual(exp.shape);
      }
    });
  }

  it('names offending values with their counts', async () => {
    const r = await checkCube({ label: fixture('check', 'out_of_range.h5'), labelKey: 'lab', infoKey: 'info' }, { nLab: 3 });
    const msg = r.findings.find((f) => f.code === 'label-out-of-range')!.message;
    for (const [v, n] of Object.entries(expected['out_of_range.h5']!.outOfRange!)) expect(msg).toContain(`${v} (${n} voxels)`);
  });

  it('reports the voxel count of a class flagged not present', async () => {
    const r = await checkCube({ label: fixture('check', 'not_present_has_voxels.h5'), labelKey: 'lab', infoKey: 'info' }, { nLab: 3 });
    expect(r.findings.find((f) => f.code === 'not-present-has-voxels')!.message).toContain(`has ${expected["not_present_has_voxels.h5"]!.flaggedCount} voxels labelled with it`);
  });

  it('reports the info mask as used and the labelled fraction of a lazy cube', async () => {
    const r = await checkCube({ label: fixture('check', 'lazy_painted_background.h5'), labelKey: 'lab', infoKey: 'info' }, { nLab: 3 });
    expect(r.stats?.info).toEqual({ labeled: [1, 0, 0], notPresent: [0, 0, 1], source: 'file' });
    expect(r.stats?.lazy).toBe(true);
    const exp = expected['lazy_painted_background.h5']!;
    expect(r.stats?.labelledVoxels).toBe(exp.classCounts![0]);
    expect(r.stats?.labelledFraction).toBeCloseTo(exp.classCounts![0]! / exp.voxels!, 12);
  });

  it('suggests the transpose for an (n_lab, 2) info', async () => {
    const r = await checkCube({ label: fixture('check', 'info_transposed.h5'), labelKey: 'lab', infoKey: 'info' }, { nLab: 3 });
    expect(r.findings[0]!.message).toMatch(/must be \(2, 3\).*transposed/);
  });
});

describe('broken files', () => {
  const cases: [string, string][] = [
    ['missing.h5', 'file-missing'],
    ['not_hdf5.h5', 'not-hdf5'],
    ['empty.h5', 'not-hdf5'],
    ['truncated.h5', 'corrupt'],
  ];
  for (const [name, code] of cases) {
    it(`${name} → ${code}`, async () => {
      const r = await checkCube({ label: fixture('check', name), labelKey: 'lab', infoKey: 'info' }, { nLab: 3 });
      expect(r.status).toBe('error');
      expect(r.findings.map((f) => f.code)).toEqual([code]);
      expect(r.stats).toBeNull();
    });
  }

  it('a missing dataset lists the datasets that exist', async () => {
    const r = await checkCube({ label: fixture('check', 'dense3d_int16_chunked.h5'), labelKey: 'labels', infoKey: 'info' }, { nLab: 3 });
    expect(r.findings[0]!.code).toBe('dataset-missing');
    expect(r.findings[0]!.message).toContain('datasets in this file: lab, raw');
  });

  it('a batch with broken files still reports on the others', async () => {
    const refs = ['dense2d_uint8.h5', 'truncated.h5', 'not_hdf5.h5', 'lazy_all_ignore.h5'].map((n) => ({ label: fixture('check', n), labelKey: 'lab', infoKey: 'info' }));
    const report = await checkCubes(refs, { nLab: 3 });
    expect(report.files.map((f) => f.status)).toEqual(['ok', 'error', 'error', 'ok']);
    expect(report.ok).toBe(false);
    expect(report.summary).toEqual({ files: 4, ok: 2, warn: 0, error: 2 });
  });
});

describe('raw pairing', () => {
  const lab = { label: fixture('check', 'pair_labels.h5'), labelKey: 'lab', infoKey: 'info', rawKey: 'raw' };
  it('same spatial shape, and (ch,x,y,z) raw, are accepted', async () => {
    for (const raw of ['pair_raw_same.h5', 'pair_raw_channels.h5']) {
      const r = await checkCube({ ...lab, raw: fixture('check', raw) }, { nLab: 3 });
      expect(r.findings.filter((f) => f.severity === 'error')).toEqual([]);
    }
  });
  it('a mismatch is an error showing both shapes', async () => {
    const r = await checkCube({ ...lab, raw: fixture('check', 'pair_raw_mismatch.h5') }, { nLab: 3 });
    const f = r.findings.find((x) => x.code === 'raw-shape-mismatch')!;
    expect(f.message).toContain('(6, 10, 13)');
    expect(f.message).toContain('(6, 10, 12)');
  });
  it('labels inside a larger raw volume fit at an offset, and not past its edge', async () => {
    const ok = await checkCube({ ...lab, raw: fixture('check', 'pair_raw_larger.h5'), offset: [2, 2, 2] }, { nLab: 3 });
    expect(ok.findings.map((f) => f.code)).not.toContain('raw-shape-mismatch');
    const bad = await checkCube({ ...lab, raw: fixture('check', 'pair_raw_larger.h5'), offset: [5, 2, 2] }, { nLab: 3 });
    expect(bad.findings.map((f) => f.code)).toContain('raw-shape-mismatch');
  });
});

describe('manifests', () => {
  it('a valid manifest checks every cube, resolving paths against its folder', async () => {
    const r = await checkManifest(fixture('check', 'manifest_ok.json'), {});
    expect(r.ok).toBe(true);
    expect(r.nLab).toBe(3);
    expect(r.files.map((f) => f.name)).toEqual(['dense', 'dense_offset', 'nucleus']);
    expect(r.files[0]!.path).toBe(fixture('check', 'pair_labels.h5'));
  });
  it('schema errors are reported as field paths in plain words', async () => {
    const r = await checkManifest(fixture('check', 'manifest_bad_schema.json'), {});
    const messages = r.manifest!.findings.map((f) => f.message);
    expect(messages).toContain('n_lab must be >= 1');
    expect(messages).toContain('cubes[0].label is missing');
    expect(messages).toContain("cubes[0]: unknown field 'colour'");
    expect(messages).toContain('cubes[0].prio must be >= 0');
    expect(r.ok).toBe(false);
  });
  it('duplicate cubes are an error', async () => {
    const r = await checkManifest(fixture('check', 'manifest_duplicate.json'), {});
    expect(r.manifest!.findings.map((f) => f.code)).toContain('manifest-duplicate-cube');
  });
  it('lazy info with lazy_labels false is an error', async () => {
    const r = await checkManifest(fixture('check', 'manifest_lazy_disabled.json'), {});
    const f = r.manifest!.findings.find((x) => x.code === 'manifest-lazy-disabled')!;
    expect(f.message).toContain('nucleus');
    expect(r.ok).toBe(false);
  });
});

describe('counting with a worker thread', () => {
  it('two threads sharing the boxes count exactly what one does (NumPy counts), progress reaches the total', async () => {
    for (const name of ['dense3d_int16_chunked.h5', 'dense2d_uint8.h5']) {
      const ref = { label: fixture('check', name), labelKey: 'lab', infoKey: 'info' };
      const events: number[] = [];
      const shared = await checkCube(ref, { nLab: 3, slabMB: 0.001, tallyWorker: true, onProgress: (e) => events.push(e.done) });
      const alone = await checkCube(ref, { nLab: 3, slabMB: 0.001, tallyWorker: false });
      expect(shared).toEqual(alone);
      expect(shared.stats!.classCounts).toEqual(expected[name]!.classCounts);
      expect(events.at(-1)).toBe(shared.stats!.voxels);
    }
  });

  it('a file that cannot be read fails the same way with or without the worker', async () => {
    const lzf = { label: fixture('fuzz', 'hostile', 'lzf.h5'), labelKey: 'lab', infoKey: 'info' };
    const a = await checkCube(lzf, { nLab: 3, slabMB: 0.0001, tallyWorker: true });
    const b = await checkCube(lzf, { nLab: 3, slabMB: 0.0001, tallyWorker: false });
    expect(a).toEqual(b);
    expect(a.findings.map((f) => f.code)).toContain('unsupported-filter');
  });
});

describe('bounded memory', () => {
  it('a volume larger than the slab budget is streamed in many slabs with identical stats', async () => {
    const ref = { label: fixture('check', 'dense3d_int16_chunked.h5'), labelKey: 'lab', infoKey: 'info' };
    const events: number[] = [];
    // 16x20x24 int16 read as heap views: 2 bytes per voxel in flight, so a 0.002 MiB budget (2097 bytes)
    // allows at most 1048 voxels per read: at least 8 reads of whole chunks
    const small = await checkCube(ref, { nLab: 3, slabMB: 0.002, onProgress: (e) => events.push(e.done) });
    const big = await checkCube(ref, { nLab: 3 });
    const steps = events.map((d, i) => d - (i ? events[i - 1]! : 0));
    expect(events.length).toBeGreaterThanOrEqual(8);
    expect(Math.max(...steps)).toBeLessThanOrEqual(Math.floor((0.002 * 1024 * 1024) / 2));
    expect(Math.min(...steps)).toBeGreaterThan(0);
    expect(events.at(-1)).toBe(16 * 20 * 24);
    expect(small.stats).toEqual(big.stats);
    expect(small.stats!.classCounts).toEqual(expected['dense3d_int16_chunked.h5']!.classCounts);
  });
});

describe('lazylabel check CLI', () => {
  it('exit 0 for valid files, human table on stdout', () => {
    const r = runCli(['check', fixture('check', 'dense2d_uint8.h5'), fixture('check', 'lazy_all_ignore.h5'), '--n-lab', '3']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/dense2d_uint8\.h5\s+ok/);
    expect(r.stdout).toContain('2 files: 2 ok, 0 warn, 0 error -> OK');
  });
  it('exit 1 when a file has an error; the error names the file; no stack trace', () => {
    const r = runCli(['check', fixture('check', 'truncated.h5'), '--n-lab', '3']);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('corrupt');
    expect(r.stdout + r.stderr).not.toMatch(/\n\s+at /);
    expect(r.stderr).not.toContain('HDF5-DIAG');
  });
  it('warnings pass, but fail with --strict', () => {
    const args = ['check', fixture('check', 'float_integral.h5'), '--n-lab', '3'];
    expect(runCli(args).code).toBe(0);
    expect(runCli([...args, '--strict']).code).toBe(1);
  });
  it('exit 2 for usage errors', () => {
    expect(runCli(['check', fixture('check', 'dense2d_uint8.h5')]).code).toBe(2);
    const huge = runCli(['check', fixture('check', 'dense2d_uint8.h5'), '--n-lab', '1e12']);
    expect(huge.code).toBe(2);
    expect(huge.stderr).toContain('--n-lab must be an integer from 1 to 65535');
    expect(runCli(['check', '--bogus']).code).toBe(2);
    const r = runCli(['check', fixture('check', 'pair_labels.h5'), '--n-lab', '3', '--raw', 'a.h5', '--raw', 'b.h5']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--raw pairs with label files in order');
  });
  it('--json follows the check-report schema, with path:key and --raw', () => {
    const r = runCli(['check', `${fixture('check', 'nested_groups.h5')}:volumes/labels/clefts`, '--n-lab', '3', '--json']);
    expect(r.code).toBe(0);
    const nested = JSON.parse(r.stdout) as { files: { dataset: string }[] };
    expect(schemaErrors('check-report', nested)).toEqual([]);
    expect(nested.files[0]!.dataset).toBe('volumes/labels/clefts');
    const p = runCli(['check', fixture('check', 'pair_labels.h5'), fixture('check', 'pair_labels_inner.h5'), '--raw', fixture('check', 'pair_raw_same.h5'), '--raw', fixture('check', 'pair_raw_channels.h5'), '--n-lab', '3', '--json']);
    expect(p.code).toBe(0);
    const paired = JSON.parse(p.stdout) as { files: { raw: string; stats: { rawShape?: number[] } }[] };
    expect(schemaErrors('check-report', paired)).toEqual([]);
    expect(paired.files[1]!.raw).toBe(fixture('check', 'pair_raw_channels.h5'));
    expect(paired.files[1]!.stats.rawShape).toEqual([2, 6, 10, 12]);
  });
  it('--manifest --json follows the schema too, also when the manifest is broken', () => {
    for (const m of ['manifest_ok.json', 'manifest_bad_schema.json', 'manifest_lazy_disabled.json']) {
      const r = runCli(['check', '--manifest', fixture('check', m), '--json']);
      expect(schemaErrors('check-report', JSON.parse(r.stdout))).toEqual([]);
      expect(r.code).toBe(m === 'manifest_ok.json' ? 0 : 1);
    }
  });
});
