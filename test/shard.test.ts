/** `--shard i/n` and `lazylabel merge`: the partition, and merged shards == the unsharded run (reports field for field, volumes voxel for voxel). */
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { assembleShards, parseShard, partPath, shardItems, shardRange, shardRows, type ShardInfo } from '../src/core/shard.js';
import { isLazyLabelError } from '../src/errors.js';
import { H5Sink, withH5 } from '../src/io/hdf5.js';
import { checkCubes, checkManifest, type CheckReport } from '../src/ops/check.js';
import { convert, type ConvertOptions, type ConvertReport } from '../src/ops/convert.js';
import { merge, type MergeReport } from '../src/ops/merge.js';
import { predict, type PredictReport } from '../src/ops/predict.js';
import type { CubeRef } from '../src/ops/scan.js';
import { suggestPrios, type PriosReport } from '../src/ops/suggestPrios.js';
import { generateDemoData } from '../src/demo/demo.js';
import { train } from '../src/train/loop.js';
import { loadModel } from '../src/train/checkpoint.js';
import type { RunConfig } from '../src/train/loop.js';
import { fixture, runCli, schemaErrors, tmpDir } from './helpers.js';

/** Expect a usage error (exit code 2) whose message matches. */
async function expectUsage(run: () => unknown, message: RegExp): Promise<void> {
  let caught: unknown;
  try {
    await run();
  } catch (e) {
    caught = e;
  }
  expect(isLazyLabelError(caught), String(caught)).toBe(true);
  if (isLazyLabelError(caught)) {
    expect(caught.exitCode, caught.message).toBe(2);
    expect(caught.message).toMatch(message);
  }
}

/** Write each shard report as its --json output would be, merge the files in a scrambled order. */
async function mergeReports<T>(dir: string, reports: T[], opts: { writeManifest?: boolean } = {}): Promise<MergeReport> {
  const files = reports.map((r, i) => {
    const f = path.join(dir, `shard-${i}-${Math.random().toString(36).slice(2)}.json`);
    fs.writeFileSync(f, JSON.stringify(r, null, 2) + '\n');
    return f;
  });
  // merge orders by the recorded index, not by argument order
  return merge({ inputs: [...files].reverse(), ...opts });
}

describe('the partition', () => {
  it('parses i/n and refuses everything else with a usage error', async () => {
    expect(parseShard('0/1')).toEqual({ index: 0, count: 1 });
    expect(parseShard(' 7 / 8 ')).toEqual({ index: 7, count: 8 });
    for (const [bad, msg] of [['8/8', /0\.\.7/], ['1/0', /count/], ['-1/4', /form i\/n/], ['/8', /no shard index/], ['3/', /no shard count/], ['a/b', /form i\/n/], ['1.5/4', /form i\/n/], ['3', /form i\/n/]] as const) {
      await expectUsage(() => parseShard(bad), msg);
    }
  });

  it('contiguous balanced blocks cover every item exactly once, in order, for any n (also n > items)', () => {
    for (const total of [0, 1, 2, 5, 17, 100]) {
      for (const n of [1, 2, 3, 7, 16, 150]) {
        const items = Array.from({ length: total }, (_, i) => i);
        const parts = Array.from({ length: n }, (_, i) => shardItems(items, { index: i, count: n }));
        expect(parts.flatMap((p) => p.items)).toEqual(items);
        const sizes = parts.map((p) => p.items.length);
        expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
        parts.forEach((p, i) => expect(p).toEqual({ items: items.slice(p.start, p.end), ...shardRange(total, { index: i, count: n }) }));
      }
    }
  });

  it('row blocks are aligned to whole chunks and tile the axis', () => {
    for (const [rows, align] of [[37, 4], [8, 8], [5, 8], [100, 1], [64, 16]] as const) {
      for (const n of [1, 2, 3, 5, 40]) {
        let at = 0;
        for (let i = 0; i < n; i++) {
          const r = shardRows(rows, { index: i, count: n }, align);
          expect(r.start).toBe(at);
          if (r.end > r.start && r.start > 0) expect(r.start % align).toBe(0);
          if (r.end < rows) expect(r.end % align).toBe(0);
          at = r.end;
        }
        expect(at).toBe(rows);
      }
    }
    expect(partPath('/d/out.h5', { index: 2, count: 8 })).toBe('/d/out.h5.part-2-of-8');
  });

  it('assembling refuses missing, repeated, foreign and overlapping shards', async () => {
    const piece = (index: number, count: number, start: number, end: number, job = 'aaaaaaaaaaaaaaaa', total = 10): { source: string; shard: ShardInfo } => ({ source: `s${index}.json`, shard: { index, count, start, end, total, job } });
    const good = [piece(2, 3, 6, 10), piece(0, 3, 0, 3), piece(1, 3, 3, 6)];
    expect(assembleShards(good).map((p) => p.shard.index)).toEqual([0, 1, 2]);
    await expectUsage(() => assembleShards([piece(0, 3, 0, 3), piece(2, 3, 6, 10)]), /1 of 3 shards missing: 1/);
    await expectUsage(() => assembleShards([...good, piece(1, 3, 3, 6)]), /given twice/);
    await expectUsage(() => assembleShards([piece(0, 3, 0, 3), piece(1, 3, 3, 6), piece(2, 3, 6, 10, 'bbbbbbbbbbbbbbbb')]), /different runs/);
    await expectUsage(() => assembleShards([piece(0, 2, 0, 5), piece(1, 3, 3, 6)]), /share one count/);
    await expectUsage(() => assembleShards([piece(0, 2, 0, 6), piece(1, 2, 5, 10)]), /shards before it end at 6/);
  });
});

const CHECK_FILES = ['dense3d_int16_chunked.h5', 'lazy_all_ignore.h5', 'unlabeled_class_has_voxels.h5', 'not_present_has_voxels.h5', 'out_of_range.h5', 'not_hdf5.h5', 'missing.h5'];

describe('check --shard + merge == check', () => {
  const dir = tmpDir('lazylabel-shard-check-');
  const refs: CubeRef[] = CHECK_FILES.map((f) => ({ label: fixture('check', f), labelKey: 'lab', infoKey: 'info' }));

  it('label files, strict and not: n = 1, 2, 3 and more shards than files', async () => {
    for (const strict of [false, true]) {
      const whole = await checkCubes(refs, { nLab: 3, strict });
      for (const n of [1, 2, 3, CHECK_FILES.length + 2]) {
        const shards: CheckReport[] = [];
        for (let i = 0; i < n; i++) {
          const r = await checkCubes(refs, { nLab: 3, strict, shard: { index: i, count: n } });
          expect(schemaErrors('check-report', r)).toEqual([]);
          expect(r.shard).toMatchObject({ index: i, count: n, total: CHECK_FILES.length });
          shards.push(r);
        }
        const merged = await mergeReports(dir, shards);
        expect(merged.kind).toBe('check');
        expect(merged.shards).toBe(n);
        expect(schemaErrors('merge-report', merged)).toEqual([]);
        expect(JSON.stringify(merged.report)).toBe(JSON.stringify(whole));
      }
    }
  });

  it('manifests, including the lazy_labels finding recomputed over all cubes and a broken manifest', async () => {
    for (const m of ['manifest_ok.json', 'manifest_lazy_disabled.json', 'manifest_duplicate.json', 'manifest_bad_schema.json']) {
      const file = fixture('check', m);
      const whole = await checkManifest(file, {});
      for (const n of [1, 2, 3, 6]) {
        const shards: CheckReport[] = [];
        for (let i = 0; i < n; i++) shards.push(await checkManifest(file, { shard: { index: i, count: n } }));
        const merged = await mergeReports(dir, shards);
        expect(JSON.stringify(merged.report), `${m} n=${n}`).toBe(JSON.stringify(whole));
      }
    }
    // the finding names cubes from several shards only after merging
    const whole = await checkManifest(fixture('check', 'manifest_lazy_disabled.json'), {});
    expect(whole.manifest!.findings.some((f) => f.code === 'manifest-lazy-disabled')).toBe(true);
  });

  it('refuses shards of different runs, whole-run reports and damaged reports', async () => {
    const a = await checkCubes(refs, { nLab: 3, shard: { index: 0, count: 2 } });
    const b = await checkCubes(refs.slice(1), { nLab: 3, shard: { index: 1, count: 2 } });
    await expectUsage(() => mergeReports(dir, [a, b]), /different runs/);
    await expectUsage(() => mergeReports(dir, [a, { ...b, shard: undefined }]), /whole check run, not of a shard/);
    const cut = path.join(dir, 'cut.json');
    fs.writeFileSync(cut, JSON.stringify(a).slice(0, 100));
    await expect(merge({ inputs: [cut] })).rejects.toThrow(/not a complete JSON report/);
  });
});

describe('suggest-prios --shard + merge == suggest-prios', () => {
  const dir = tmpDir('lazylabel-shard-prios-');

  it('prios and shares over all cubes, with and without --lazy-share, any n', async () => {
    for (const manifest of [fixture('prios', 'manifest.json'), fixture('prios', 'manifest_broken.json')]) {
      for (const lazyShare of [null, 0.2]) {
        const whole = await suggestPrios({ manifest, lazyShare });
        const cubes = whole.cubes.length;
        for (const n of [1, 2, 3, cubes + 2]) {
          const shards: PriosReport[] = [];
          for (let i = 0; i < n; i++) {
            const r = await suggestPrios({ manifest, lazyShare, shard: { index: i, count: n } });
            expect(schemaErrors('prios-report', r)).toEqual([]);
            expect(r.cubePrios).toBeNull();
            shards.push(r);
          }
          const merged = await mergeReports(dir, shards);
          expect(JSON.stringify(merged.report), `${path.basename(manifest)} lazyShare=${lazyShare} n=${n}`).toBe(JSON.stringify(whole));
        }
      }
    }
  });

  it('merge --write-manifest stores the same prios as suggest-prios --write-manifest', async () => {
    const copy = (name: string): string => {
      const d = path.join(dir, name);
      fs.cpSync(path.dirname(fixture('prios', 'manifest.json')), d, { recursive: true });
      return path.join(d, 'manifest.json');
    };
    const a = copy('a');
    const b = copy('b');
    await suggestPrios({ manifest: a, lazyShare: 0.2, writeManifest: true });
    await expectUsage(() => suggestPrios({ manifest: b, writeManifest: true, shard: { index: 0, count: 2 } }), /--write-manifest cannot go with --shard/);
    const shards = [0, 1, 2].map((i) => suggestPrios({ manifest: b, lazyShare: 0.2, shard: { index: i, count: 3 } }));
    const merged = await mergeReports(dir, await Promise.all(shards), { writeManifest: true });
    expect((merged.report as PriosReport).written).toBe(true);
    expect(fs.readFileSync(b, 'utf8')).toBe(fs.readFileSync(a, 'utf8'));
  });
});

/** A volume several chunk rows deep whose class 2 occurs only near the end, so that only the last shards see it. */
async function makeVolume(file: string, shape: number[]): Promise<void> {
  const n = shape.reduce((a, b) => a * b, 1);
  const rowVoxels = n / shape[0]!;
  const mask = new Uint8Array(n);
  const classes = new Int16Array(n);
  let s = 12345;
  const rand = (): number => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
  for (let v = 0; v < n; v++) {
    const row = Math.floor(v / rowVoxels);
    mask[v] = rand() < 0.6 ? 1 : 0;
    classes[v] = row >= shape[0]! - 5 ? Math.floor(rand() * 3) : Math.floor(rand() * 2);
  }
  const sink = await H5Sink.create(file);
  sink.createDataset('mask', { shape, dtype: 'uint8', chunks: [3, shape[1]!, shape[2]!] }).write(mask);
  sink.createDataset('classes', { shape, dtype: 'int16' }).write(classes);
  sink.setAttrs('classes', { resolution: Float64Array.of(30, 10, 10) });
  sink.close();
}

async function readVolume(file: string, key: string): Promise<{ shape: number[]; data: number[]; chunks: number[] | null; attrs: Record<string, unknown> }> {
  return withH5(file, (src) => {
    const info = src.info(key);
    return { shape: info.shape, data: Array.from(src.readSlab(key, 0, info.shape[0]!), Number), chunks: info.chunks, attrs: src.attrs(key) };
  });
}

/** A report with the output's path fields (the only ones that differ between two folders) blanked. */
function withoutPaths(r: ConvertReport): unknown {
  return { ...r, output: { ...r.output, path: '' }, check: { ...r.check, path: '' }, ...(r.manifest ? { manifest: { ...r.manifest, path: '' } } : {}) };
}

describe('convert --shard + merge --convert == convert', () => {
  const dir = tmpDir('lazylabel-shard-convert-');
  const vol = path.join(dir, 'vol.h5');
  const shape = [37, 12, 10];
  beforeAll(async () => {
    await makeVolume(vol, shape);
  });

  it('voxel for voxel, with info (labelled = classes occurring anywhere) decided over all parts, any n', async () => {
    // a tiny slab budget makes the output chunks a few rows deep, so that the shards differ
    const base: Omit<ConvertOptions, 'output'> = { mask: { file: vol, key: 'mask' }, classes: { file: vol, key: 'classes' }, nLab: 3, slabMB: 0.004 };
    const wholeFile = path.join(dir, 'whole', 'out.h5');
    fs.mkdirSync(path.dirname(wholeFile));
    const whole = await convert({ ...base, output: wholeFile });
    expect(whole.output.chunks[0]).toBeLessThan(10);
    expect(whole.info.labeled).toEqual([1, 1, 1]);
    const expected = await readVolume(wholeFile, 'lab');
    const expectedInfo = await readVolume(wholeFile, 'info');
    for (const n of [1, 2, 3, 50]) {
      const out = path.join(dir, `n${n}`, 'out.h5');
      fs.mkdirSync(path.dirname(out));
      const parts: string[] = [];
      for (let i = 0; i < n; i++) {
        const r = await convert({ ...base, output: out, shard: { index: i, count: n } });
        expect(schemaErrors('convert-report', r)).toEqual([]);
        expect(r.output.path).toBe(partPath(out, { index: i, count: n }));
        if (n === 3 && i === 0) expect(r.info.labeled).toEqual([1, 1, 0]); // class 2 occurs only in the last rows
        parts.push(r.output.path);
      }
      expect(fs.existsSync(out)).toBe(false);
      const merged = await merge({ inputs: parts.reverse(), output: out, kind: 'convert', slabMB: 0.004 });
      expect(schemaErrors('merge-report', merged)).toEqual([]);
      expect(schemaErrors('convert-report', merged.report)).toEqual([]);
      expect(withoutPaths(merged.report as ConvertReport), `n=${n}`).toEqual(withoutPaths(whole));
      const got = await readVolume(out, 'lab');
      expect(got.shape).toEqual(shape);
      expect(got.chunks).toEqual(expected.chunks);
      expect(got.data).toEqual(expected.data);
      expect(Array.from(got.attrs.resolution as Float64Array)).toEqual([30, 10, 10]);
      expect((await readVolume(out, 'info')).data).toEqual(expectedInfo.data);
    }
  });

  it('refusals that need the whole volume happen at merge; local ones in the shard; manifests are updated by merge', async () => {
    const base: Omit<ConvertOptions, 'output'> = { mask: { file: vol, key: 'mask' }, classes: { file: vol, key: 'classes' }, nLab: 3, slabMB: 0.004 };
    // class 2 flagged not present: only the shard holding the last rows refuses
    const np = path.join(dir, 'np.h5');
    await convert({ ...base, output: np, notPresent: [2], shard: { index: 0, count: 2 } });
    await expect(convert({ ...base, output: np, notPresent: [2], shard: { index: 1, count: 2 } })).rejects.toThrow(/not-present.*voxels hold it|flagged --not-present/);
    await expectUsage(() => merge({ inputs: [partPath(np, { index: 0, count: 2 })], output: np }), /1 of 2 shards missing: 1/);
    // a mask-fill of an all-zero mask: each shard may be empty, but merge refuses an empty whole (no --allow-empty)
    const zero = path.join(dir, 'zero.h5');
    const sink = await H5Sink.create(zero);
    sink.createDataset('mask', { shape: [9, 4, 4], dtype: 'uint8' }).write(new Uint8Array(144));
    sink.close();
    const zeroOut = path.join(dir, 'zero_out.h5');
    const zparts = [];
    for (let i = 0; i < 2; i++) zparts.push((await convert({ mask: { file: zero, key: 'mask' }, fillClass: 0, nLab: 3, output: zeroOut, slabMB: 0.0002, shard: { index: i, count: 2 } })).output.path);
    let caught: unknown;
    try {
      await merge({ inputs: zparts, output: zeroOut });
    } catch (e) {
      caught = e;
    }
    expect(isLazyLabelError(caught) && caught.code).toBe('no-training-signal');
    expect(fs.existsSync(zeroOut)).toBe(false);

    // --manifest M --cube-name C: the shards leave the manifest alone, merge adds the cube as convert does
    const manA = path.join(dir, 'ma', 'dataset.json');
    const manB = path.join(dir, 'mb', 'dataset.json');
    for (const m of [manA, manB]) {
      fs.mkdirSync(path.dirname(m));
      fs.writeFileSync(m, JSON.stringify({ n_lab: 3, lazy_labels: false, cubes: [{ name: 'other', label: '../vol.h5', label_key: 'classes' }] }, null, 2) + '\n');
    }
    await convert({ ...base, output: path.join(dir, 'ma', 'big.h5'), manifest: manA, cubeName: 'big', notPresent: [] });
    const before = fs.readFileSync(manB, 'utf8');
    const parts = [];
    for (let i = 0; i < 3; i++) parts.push((await convert({ ...base, output: path.join(dir, 'mb', 'big.h5'), manifest: manB, cubeName: 'big', shard: { index: i, count: 3 } })).output.path);
    expect(fs.readFileSync(manB, 'utf8')).toBe(before);
    const merged = (await merge({ inputs: parts, output: path.join(dir, 'mb', 'big.h5') })).report as ConvertReport;
    expect(merged.manifestUpdated).toBe(true);
    expect(fs.readFileSync(manB, 'utf8')).toBe(fs.readFileSync(manA, 'utf8'));
  });
});

describe('predict --shard + merge --predict == predict', () => {
  it('probabilities and labels voxel for voxel, any n (also more shards than tile rows)', async () => {
    const demo = await generateDemoData({ out: tmpDir('lazylabel-shard-predict-'), cubeShape: [8, 32, 32], denseCubes: 1, seed: 4 });
    const run = path.join(demo.out, 'run');
    await train({ manifest: demo.denseManifest, out: run, patch: [4, 16, 16], batch: 1, depth: 2, baseFilters: 2, anisotropicLevels: 1, backend: 'wasm', seed: 1, steps: 1 });
    const loadedModel = await loadModel(tf, run);
    const loaded = { tf, model: loadedModel.model, config: loadedModel.state.config as RunConfig, backend: 'wasm' };
    const shape = [20, 32, 32];
    const raw = path.join(demo.out, 'tall.h5');
    const values = new Uint8Array(shape[0]! * shape[1]! * shape[2]!);
    for (let i = 0; i < values.length; i++) values[i] = (i * 7919) % 251;
    const sink = await H5Sink.create(raw);
    sink.createDataset('raw', { shape, dtype: 'uint8' }).write(values);
    sink.close();
    const opts = { model: run, raw, tile: [8, 32, 32], margin: [2, 0, 0], loaded };
    const wholeFile = path.join(demo.out, 'whole.h5');
    const whole = await predict({ ...opts, out: wholeFile });
    const rows = 4; // tile rows along axis 0 with this tile and margin
    expect(whole.tiles).toBe(rows);
    const [wp, wl] = [await readVolume(wholeFile, 'probs'), await readVolume(wholeFile, 'lab')];
    for (const n of [1, 2, 3, rows + 2]) {
      const out = path.join(demo.out, `p${n}.h5`);
      const parts: string[] = [];
      for (let i = 0; i < n; i++) {
        const r = await predict({ ...opts, out, shard: { index: i, count: n } });
        expect(schemaErrors('predict-report', r)).toEqual([]);
        parts.push(r.output);
      }
      const merged = await merge({ inputs: parts, output: out, kind: 'predict' });
      const m = merged.report as PredictReport;
      expect(schemaErrors('predict-report', m)).toEqual([]);
      // (merge cannot know how many threads each shard used)
      expect({ ...m, output: '', seconds: 0, threads: undefined }).toEqual({ ...whole, output: '', seconds: 0, threads: undefined });
      const [p, l] = [await readVolume(out, 'probs'), await readVolume(out, 'lab')];
      expect(p.shape).toEqual(wp.shape);
      expect(p.chunks).toEqual(wp.chunks);
      expect(p.data).toEqual(wp.data);
      expect(l.data).toEqual(wl.data);
      expect(p.attrs).toEqual(wp.attrs);
    }
    await expectUsage(() => merge({ inputs: [partPath(path.join(demo.out, 'p2.h5'), { index: 0, count: 2 })], output: path.join(demo.out, 'x.h5'), kind: 'convert' }), /--convert was given but the inputs come from predict/);
  });
});

describe('CLI', () => {
  it('check shards in a job array, merged with -o; usage errors exit 2', () => {
    const dir = tmpDir('lazylabel-shard-cli-');
    const files = CHECK_FILES.slice(0, 4);
    const cwd = path.dirname(fixture('check', 'x'));
    const whole = runCli(['check', ...files, '--n-lab', '3', '--json'], { cwd });
    const reports = [0, 1, 2].map((i) => {
      const r = runCli(['check', ...files, '--n-lab', '3', '--json', '--shard', `${i}/3`], { cwd });
      const f = path.join(dir, `check-${i}.json`);
      fs.writeFileSync(f, r.stdout);
      return { f, code: r.code };
    });
    expect(reports.map((r) => r.code)).toEqual([0, 0, 1]); // the last shard holds the broken file
    const m = runCli(['merge', ...reports.map((r) => r.f), '-o', path.join(dir, 'check.json'), '--json']);
    expect(m.code).toBe(whole.code);
    const report = JSON.parse(m.stdout) as MergeReport;
    expect(schemaErrors('merge-report', report)).toEqual([]);
    expect(fs.readFileSync(path.join(dir, 'check.json'), 'utf8')).toBe(whole.stdout);
    // the human form, and refusals
    const human = runCli(['merge', ...reports.map((r) => r.f)]);
    expect(human.stdout).toMatch(/4 files: 2 ok, 1 warn, 1 error -> FAILED\nmerged 3 check shards/);
    const again = runCli(['merge', ...reports.map((r) => r.f), '-o', path.join(dir, 'check.json')]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/already exists/);
    const missing = runCli(['merge', reports[0]!.f, reports[2]!.f]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/1 of 3 shards missing: 1 \(rerun those array tasks/);
    for (const args of [['check', ...files, '--n-lab', '3', '--shard', '3/3'], ['check', ...files, '--n-lab', '3', '--shard', '/3'], ['suggest-prios', '--manifest', fixture('prios', 'manifest.json'), '--shard', '0/2', '--format', 'elektronn']]) {
      const r = runCli(args, { cwd });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/^lazylabel: .*shard/);
    }
  });

  it('convert shards write parts; merge --convert joins them into the output', () => {
    const dir = tmpDir('lazylabel-shard-cli-convert-');
    const mask = fixture('convert', 'mask_classes_3d.h5');
    const args = ['convert', '--quiet', '--mask', `${mask}:mask`, '--fill-class', '0', '--not-present', '2', '--n-lab', '3', '--slab-mb', '0.001'];
    const whole = runCli([...args, '-o', path.join(dir, 'whole.h5'), '--json']);
    expect(whole.code).toBe(0);
    const out = path.join(dir, 'painted.h5');
    for (let i = 0; i < 2; i++) {
      const r = runCli([...args, '-o', out, '--shard', `${i}/2`]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`shard ${i}/2: rows`));
    }
    const one = runCli(['merge', partPath(out, { index: 0, count: 2 }), '-o', out]);
    expect(one.code).toBe(2);
    expect(one.stderr).toMatch(/shards missing: 1/);
    const m = runCli(['merge', '--convert', partPath(out, { index: 1, count: 2 }), partPath(out, { index: 0, count: 2 }), '-o', out, '--json', '--quiet']);
    expect(m.code, m.stderr).toBe(0);
    const report = (JSON.parse(m.stdout) as MergeReport).report as ConvertReport;
    const expected = JSON.parse(whole.stdout) as ConvertReport;
    expect(report.classCounts).toEqual(expected.classCounts);
    expect(report.info).toEqual(expected.info);
    expect(report.check.status).toBe('ok');
  });
});

describe('without --shard nothing changes', () => {
  it('reports carry no shard field', async () => {
    const r = await checkCubes([{ label: fixture('check', 'dense3d_int16_chunked.h5'), labelKey: 'lab', infoKey: 'info' }], { nLab: 3 });
    expect('shard' in r).toBe(false);
    const p = await suggestPrios({ manifest: fixture('prios', 'manifest.json') });
    expect('shard' in p).toBe(false);
  });
});
