/** Tests for `lazylabel convert`: every mode on h5py-written fixtures, refusals, --force, manifests, slab streaming, h5py/h5dump interop. */
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { ConvertTally, buildInfo, findContradictions, mapMarkerValue, mapMaskClasses, mapMaskFill } from '../src/core/convert.js';
import { isLazyLabelError } from '../src/errors.js';
import { H5Sink, H5Source } from '../src/io/hdf5.js';
import { convert, type ConvertOptions, type ConvertReport } from '../src/ops/convert.js';
import { validateAgainst } from '../src/schemas.js';
import { VERSION } from '../src/version.js';

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FIX = path.join(ROOT, 'fixtures', 'convert');
const BIN = path.join(ROOT, 'bin', 'lazylabel.js');
const fx = (name: string): string => path.join(FIX, name);

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(...args: string[]): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, 'convert', '--quiet', ...args], { cwd: ROOT });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

async function cliJson(...args: string[]): Promise<ConvertReport> {
  const r = await cli(...args, '--json');
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const report = JSON.parse(r.stdout) as ConvertReport;
  expect(validateAgainst('convert-report', report)).toEqual([]);
  return report;
}

/** Read a whole dataset through the I/O layer (not the code under test). */
async function readAll(file: string, key: string): Promise<{ shape: number[]; data: number[] }> {
  const src = await H5Source.open(file);
  try {
    const { shape, data } = src.readAll(key);
    return { shape, data: Array.from(data, Number) };
  } finally {
    src.close();
  }
}

async function attrsOf(file: string, key: string): Promise<Record<string, unknown>> {
  const src = await H5Source.open(file);
  try {
    return src.attrs(key);
  } finally {
    src.close();
  }
}

/** Per-class counts of an expected label array, computed here. */
function countsOf(labels: number[], nLab: number): { classCounts: number[]; ignored: number } {
  const classCounts = Array(nLab).fill(0) as number[];
  let ignored = 0;
  for (const v of labels) {
    if (v === -1) ignored++;
    else classCounts[v]!++;
  }
  return { classCounts, ignored };
}

function sha(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** Nothing at the target and no temporary left next to it. */
function expectNothingWritten(dir: string, target: string): void {
  expect(fs.existsSync(target)).toBe(false);
  expect(fs.readdirSync(dir).filter((n) => n.includes('lazylabel-tmp'))).toEqual([]);
}

let tmp: string;
let n = 0;
const out = (name = `out${++n}.h5`): string => path.join(tmp, name);

function hasPythonH5py(): boolean {
  try {
    execFileSync('/usr/bin/python3', ['-c', 'import h5py, numpy'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
function hasH5dump(): boolean {
  try {
    execFileSync('h5dump', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const PY = hasPythonH5py();
const H5DUMP = hasH5dump();

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lazylabel-convert-'));
  // CLI tests run the compiled CLI: build when dist is missing or older than the sources under test
  const built = path.join(ROOT, 'dist', 'cli', 'convert.js');
  const sources = ['src/core/convert.ts', 'src/ops/convert.ts', 'src/cli/convert.ts', 'src/cli/main.ts'].map((p) => path.join(ROOT, p));
  const stale = !fs.existsSync(built) || sources.some((s) => fs.statSync(s).mtimeMs > fs.statSync(built).mtimeMs);
  if (stale) {
    try {
      execFileSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: ROOT, stdio: 'ignore' });
    } catch {
      // type errors elsewhere still emit JavaScript; a real failure shows up as failing CLI tests
    }
  }
});

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Write uint8 `mask` and `classes` datasets of `shape` into a new HDF5 file through the I/O layer. */
async function writeMaskClasses(file: string, shape: number[], mask: Uint8Array, classes: Uint8Array, layout: { chunks: number[]; gzip: number }): Promise<void> {
  const sink = await H5Sink.create(file);
  try {
    sink.createDataset('mask', { shape, dtype: 'uint8', ...layout }).write(mask);
    sink.createDataset('classes', { shape, dtype: 'uint8', ...layout }).write(classes);
  } finally {
    sink.close();
  }
}

describe('core mappings', () => {
  it('mask-classes ignores class values outside the mask and counts what it writes', () => {
    const t = new ConvertTally(3);
    const labels = mapMaskClasses(Uint8Array.of(1, 0, 2, 0, 1), Int32Array.of(2, 99, 0, -5, 1), t);
    expect(Array.from(labels)).toEqual([2, -1, 0, -1, 1]);
    const r = t.result();
    expect(r).toMatchObject({ voxels: 5, classCounts: [1, 1, 1], ignored: 2, outOfRangeVoxels: 0 });
  });

  it('records out-of-range and non-integral values inside the mask', () => {
    const t = new ConvertTally(2);
    mapMaskClasses(Uint8Array.of(1, 1, 1, 1, 0), Float32Array.of(5, 5, 0.5, Number.NaN, 7), t);
    const r = t.result();
    expect(r.outOfRange).toEqual([[5, 2]]);
    expect(r.nonIntegral).toBe(2);
  });

  it('mask-fill paints one class; marker mapping shifts classes above the marker', () => {
    const t = new ConvertTally(2);
    expect(Array.from(mapMaskFill(Int8Array.of(0, 3, -1, 1), 1, t))).toEqual([-1, 1, -1, 1]);
    expect(t.result().classCounts).toEqual([0, 2]);
    const s = new ConvertTally(3);
    expect(Array.from(mapMarkerValue(Int16Array.of(0, 1, 2, 3, -1), 0, true, s))).toEqual([-1, 0, 1, 2, -1]);
    expect(s.result()).toMatchObject({ classCounts: [1, 1, 1], ignored: 2 });
  });

  it('mappings into a reused buffer overwrite every element (same labels as into a new array)', () => {
    const mask = Uint8Array.from({ length: 5000 }, (_, i) => (i * 7) % 3);
    const classes = Uint8Array.from({ length: 5000 }, (_, i) => i % 3); // >= 4096 voxels: the wasm kernel maps them
    const stale = (): Int16Array => new Int16Array(5000).fill(77);
    const fresh = (f: (out?: Int16Array) => Int16Array): void => {
      const out = stale();
      expect(f(out)).toBe(out);
      expect(out).toEqual(f());
    };
    fresh((out) => mapMaskClasses(mask, classes, new ConvertTally(3), out));
    fresh((out) => mapMaskClasses(mask, Int16Array.from(classes), new ConvertTally(3), out)); // the loop
    fresh((out) => mapMaskFill(mask, 2, new ConvertTally(3), out));
    fresh((out) => mapMarkerValue(classes, 0, true, new ConvertTally(3), out));
    expect(() => mapMaskFill(mask, 2, new ConvertTally(3), new Int16Array(4999))).toThrow(/4999 labels for 5000 voxels/);
  });

  it('label buffers are handed out again: whole, or as a shorter view of a larger one', async () => {
    const { LabelBuffers } = await import('../src/ops/convertMapping.js');
    const buffers = new LabelBuffers();
    const a = buffers.take(100);
    buffers.give(a);
    expect(buffers.take(100).buffer).toBe(a.buffer);
    buffers.give(a);
    const shorter = buffers.take(60);
    expect(shorter.buffer).toBe(a.buffer);
    expect(shorter.length).toBe(60);
    buffers.give(shorter); // the whole buffer goes back
    expect(buffers.take(100).buffer).toBe(a.buffer);
    expect(buffers.take(100).buffer).not.toBe(a.buffer); // none left: a new one
  });

  it('info and contradictions: occurring classes, not-present conflicts, empty output', () => {
    const t = new ConvertTally(3);
    mapMaskClasses(Uint8Array.of(1, 1, 0), Uint8Array.of(0, 2, 1), t);
    const r = t.result();
    const occurring = buildInfo(3, r.classCounts, null, []);
    expect(occurring).toEqual({ labeled: [true, false, true], notPresent: [false, false, false], labeledFrom: 'occurring' });
    expect(findContradictions(r, buildInfo(3, r.classCounts, null, [2]), { nLab: 3, allowEmpty: false }).map((c) => c.code)).toEqual(['not-present-has-voxels']);
    const empty = new ConvertTally(3);
    mapMaskClasses(Uint8Array.of(0, 0), Uint8Array.of(1, 1), empty);
    const e = empty.result();
    expect(findContradictions(e, buildInfo(3, e.classCounts, null, []), { nLab: 3, allowEmpty: false }).map((c) => c.code)).toEqual(['no-training-signal']);
    expect(findContradictions(e, buildInfo(3, e.classCounts, null, []), { nLab: 3, allowEmpty: true })).toEqual([]);
    expect(findContradictions(e, buildInfo(3, e.classCounts, null, [1]), { nLab: 3, allowEmpty: false })).toEqual([]);
  });
});

describe('convert modes on h5py fixtures', () => {
  it('--mask M --classes C: classes inside the mask, -1 elsewhere; attributes and provenance on the output', async () => {
    const target = out();
    const report = await cliJson('--mask', `${fx('mask_classes_3d.h5')}:mask`, '--classes', fx('mask_classes_3d.h5'), '--n-lab', '3', '-o', target);
    const mask = await readAll(fx('mask_classes_3d.h5'), 'mask');
    const cls = await readAll(fx('mask_classes_3d.h5'), 'lab');
    const expected = mask.data.map((m, i) => (m > 0 ? cls.data[i]! : -1));
    const got = await readAll(target, 'lab');
    expect(got.shape).toEqual([12, 10, 8]);
    expect(got.data).toEqual(expected);
    const counts = countsOf(expected, 3);
    expect(report).toMatchObject({ command: 'convert', ok: true, mode: 'mask-classes', nLab: 3, labeledFrom: 'occurring', voxels: 960, ...counts });
    expect(report.info).toEqual({ labeled: [1, 1, 1], notPresent: [0, 0, 0] });
    expect((await readAll(target, 'info')).data).toEqual([1, 1, 1, 0, 0, 0]);
    expect(report.check.status).toBe('ok');
    expect(report.check.stats?.classCounts).toEqual(counts.classCounts);
    expect(report.manifestUpdated).toBe(false);
    const attrs = await attrsOf(target, 'lab');
    // the class volume's attributes win over the mask's
    expect(attrs.resolution).toBeInstanceOf(Float64Array); // stored types survive the copy
    expect(Array.from(attrs.resolution as Float64Array)).toEqual([10, 10, 25]);
    expect(Array.from(attrs.offset as BigInt64Array, Number)).toEqual([0, 4, 8]);
    expect(attrs.source).toBe('manual');
    const prov = JSON.parse(attrs.lazylabel as string) as { command: string[]; version: string; inputs: { file: string; dataset: string }[] };
    expect(prov.version).toBe(VERSION);
    expect(prov.command.slice(0, 2)).toEqual(['lazylabel', 'convert']);
    expect(prov.command).toContain('--n-lab');
    expect(prov.inputs.map((i) => `${path.basename(i.file)}:${i.dataset}`)).toEqual(['mask_classes_3d.h5:mask', 'mask_classes_3d.h5:lab']);
  });

  it.each(['mask_int8', 'mask_uint8', 'mask_int32', 'mask_int64', 'mask_bool', 'mask_neg'])('mask stored as %s (mask > 0 is labelled)', async (key) => {
    const target = out();
    const report = await convert({ mask: { file: fx('masks_dtypes.h5'), key }, classes: { file: fx('classes_3d.h5'), key: 'lab' }, nLab: 4, output: target });
    const mask = await readAll(fx('masks_dtypes.h5'), key);
    const cls = await readAll(fx('classes_3d.h5'), 'lab');
    const expected = mask.data.map((m, i) => (m > 0 ? cls.data[i]! : -1));
    expect((await readAll(target, 'lab')).data).toEqual(expected);
    expect(report.classCounts).toEqual(countsOf(expected, 4).classCounts);
    expect(report.check.status).toBe('ok');
  });

  it('--mask M --fill-class K on a 2-D bool mask, with --labeled', async () => {
    const target = out();
    const report = await cliJson('--mask', fx('mask_2d.h5'), '--fill-class', '1', '--n-lab', '2', '--labeled', '1', '-o', target);
    const mask = await readAll(fx('mask_2d.h5'), 'mask');
    const expected = mask.data.map((m) => (m > 0 ? 1 : -1));
    const got = await readAll(target, 'lab');
    expect(got.shape).toEqual([16, 9]);
    expect(got.data).toEqual(expected);
    expect(report).toMatchObject({ mode: 'mask-fill', labeledFrom: 'flag', info: { labeled: [0, 1], notPresent: [0, 0] } });
    expect(report.classCounts).toEqual(countsOf(expected, 2).classCounts);
    expect(report.check.status).toBe('ok');
  });

  it('--like RAW --all-ignore on a (ch,x,y,z) raw drops the channel axis', async () => {
    const target = out();
    const report = await cliJson('--like', fx('raw_4d.h5'), '--all-ignore', '--n-lab', '3', '--not-present', '2', '-o', target);
    const got = await readAll(target, 'lab');
    expect(got.shape).toEqual([6, 7, 5]);
    expect(got.data.every((v) => v === -1)).toBe(true);
    expect(report).toMatchObject({ mode: 'all-ignore', ignored: 210, voxels: 210, classCounts: [0, 0, 0], info: { labeled: [0, 0, 0], notPresent: [0, 0, 1] } });
    // the raw it was shaped like is its raw: paired in the re-check
    expect(report.check.raw).toBe(fx('raw_4d.h5'));
    expect(report.check.stats?.rawShape).toEqual([2, 6, 7, 5]);
    expect(report.check.status).toBe('ok');
    expect(Array.from((await attrsOf(target, 'lab')).resolution as BigInt64Array, Number)).toEqual([10, 10, 30]);
  });

  it('--like on a plain 3-D raw keeps its shape', async () => {
    const target = out();
    const report = await convert({ like: { file: fx('raw_3d.h5'), key: 'raw' }, allIgnore: true, nLab: 2, notPresent: [1], output: target });
    expect(report.output.shape).toEqual([12, 10, 8]);
    expect((await readAll(target, 'info')).data).toEqual([0, 0, 0, 1]);
    // --ndim 2 reads the same raw as channels-first (ch, x, y)
    const flat = await convert({ like: { file: fx('raw_3d.h5'), key: 'raw' }, ndim: 2, allIgnore: true, nLab: 2, notPresent: [1], output: out() });
    expect(flat.output.shape).toEqual([10, 8]);
  });

  it('--ignore-value 255 on a dense uint8 volume', async () => {
    const target = out();
    const report = await cliJson('--classes', fx('dense_255.h5'), '--ignore-value', '255', '--n-lab', '3', '-o', target);
    const cls = await readAll(fx('dense_255.h5'), 'lab');
    const expected = cls.data.map((v) => (v === 255 ? -1 : v));
    expect((await readAll(target, 'lab')).data).toEqual(expected);
    expect(report).toMatchObject({ mode: 'ignore-value', ...countsOf(expected, 3) });
  });

  it('--unlabeled-value 0 --shift: 0 becomes -1, 1..n become 0..n-1 (2-D int16, path:dataset)', async () => {
    const target = out();
    const report = await cliJson('--classes', `${fx('dense_unlabeled_2d.h5')}:seg`, '--unlabeled-value', '0', '--shift', '--n-lab', '3', '-o', target);
    const cls = await readAll(fx('dense_unlabeled_2d.h5'), 'seg');
    const expected = cls.data.map((v) => (v === 0 ? -1 : v - 1));
    expect((await readAll(target, 'lab')).data).toEqual(expected);
    expect(report).toMatchObject({ mode: 'unlabeled-value', ...countsOf(expected, 3) });
  });

  it('--unlabeled-value 0 without --shift keeps class ids', async () => {
    const target = out();
    await convert({ classes: { file: fx('dense_unlabeled_2d.h5'), key: 'seg' }, unlabeledValue: 0, nLab: 4, output: target, outKey: 'volumes/labels' });
    const cls = await readAll(fx('dense_unlabeled_2d.h5'), 'seg');
    expect((await readAll(target, 'volumes/labels')).data).toEqual(cls.data.map((v) => (v === 0 ? -1 : v)));
  });

  it('human summary shows class counts, ignored fraction and the info mask', async () => {
    const r = await cli('--mask', fx('mask_2d.h5'), '--fill-class', '1', '--n-lab', '2', '-o', out());
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/mask-fill: wrote .*:lab \(16,9\) int16/);
    expect(r.stdout).toMatch(/class\s+name\s+voxels/);
    expect(r.stdout).toMatch(/info: L=01 NP=00 \(labelled classes = those occurring in the output\)/);
    expect(r.stdout).toMatch(/ignored: \d+ of 144 voxels \(\d+\.\d%\)/);
    expect(r.stdout).toMatch(/check: ok/);
  });
});

describe('refusals: nothing is written', () => {
  const refusals: [string, string[], number, RegExp][] = [
    ['mask/classes shapes differ', ['--mask', fx('mismatch.h5'), '--classes', fx('mismatch.h5'), '--n-lab', '2'], 1, /mismatch\.h5.*\(6, 5, 4\).*\(6, 5, 3\)/],
    ['class values out of range', ['--mask', fx('out_of_range.h5'), '--classes', fx('out_of_range.h5'), '--n-lab', '3'], 1, /out_of_range\.h5.*5 \(1 voxels\), 7 \(2 voxels\)/],
    ['non-integral class values', ['--mask', fx('non_integral.h5'), '--classes', fx('non_integral.h5'), '--n-lab', '3'], 1, /non_integral\.h5.*non-integral class values \(e\.g\. 1\.5\)/],
    ['a not-present class occurs', ['--mask', fx('mask_classes_3d.h5'), '--classes', fx('mask_classes_3d.h5'), '--n-lab', '3', '--not-present', '1'], 1, /mask_classes_3d\.h5.*class 1 is flagged --not-present but \d+ output voxels hold it/],
    ['empty output, no not-present', ['--mask', fx('empty_mask.h5'), '--classes', fx('empty_mask.h5'), '--n-lab', '2'], 1, /empty_mask\.h5.*no training signal.*--allow-empty/],
    ['all-ignore without not-present', ['--like', fx('raw_4d.h5'), '--all-ignore', '--n-lab', '2'], 1, /raw_4d\.h5.*no training signal/],
    ['missing dataset', ['--mask', fx('mask_2d.h5'), '--mask-key', 'nope', '--fill-class', '0', '--n-lab', '2'], 1, /mask_2d\.h5, dataset 'nope': dataset not found/],
    ['--fill-class out of range', ['--mask', fx('mask_2d.h5'), '--fill-class', '5', '--n-lab', '3'], 2, /--fill-class 5: no such class; classes are 0\.\.2/],
    ['--labeled unknown class', ['--mask', fx('mask_2d.h5'), '--fill-class', '1', '--n-lab', '2', '--labeled', '0,7'], 2, /--labeled 7: no such class/],
    ['--not-present by name without names', ['--mask', fx('mask_2d.h5'), '--fill-class', '1', '--n-lab', '2', '--not-present', 'mito'], 2, /--not-present mito: no such class/],
    ['no mode', ['--n-lab', '2'], 2, /nothing to convert/],
    ['two modes', ['--mask', fx('mask_2d.h5'), '--fill-class', '1', '--classes', fx('dense_255.h5'), '--ignore-value', '255', '--n-lab', '2'], 2, /--mask and --ignore-value are different conversions/],
    ['--classes alone', ['--classes', fx('dense_255.h5'), '--n-lab', '3'], 2, /--classes alone does not say what to ignore/],
    ['--shift without --unlabeled-value', ['--classes', fx('dense_255.h5'), '--ignore-value', '255', '--shift', '--n-lab', '3'], 2, /--shift only goes with --unlabeled-value/],
    ['no --n-lab', ['--mask', fx('mask_2d.h5'), '--fill-class', '1'], 2, /--n-lab is required/],
    ['--out-key info', ['--mask', fx('mask_2d.h5'), '--fill-class', '1', '--n-lab', '2', '--out-key', 'info'], 2, /--out-key cannot be 'info'/],
  ];

  // child processes are independent: run them side by side (context expect keeps assertions per test)
  for (const [name, args, code, message] of refusals) {
    it.concurrent(name, async ({ expect }) => {
      const dir = fs.mkdtempSync(path.join(tmp, 'refuse-'));
      const target = path.join(dir, 'out.h5');
      const r = await cli(...args, '-o', target);
      expect(r.code, r.stderr).toBe(code);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
      expect(fs.existsSync(target)).toBe(false);
      expect(fs.readdirSync(dir).filter((f) => f.includes('lazylabel-tmp'))).toEqual([]);
    });
  }

  it('no -o is a usage error', async () => {
    const r = await cli('--mask', fx('mask_2d.h5'), '--fill-class', '1', '--n-lab', '2');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no output given/);
  });

  it('the library API throws LazyLabelError with the exit code and file, leaving no temporary', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'api-'));
    const target = path.join(dir, 'out.h5');
    const err = await convert({ mask: { file: fx('out_of_range.h5'), key: 'mask' }, classes: { file: fx('out_of_range.h5'), key: 'lab' }, nLab: 3, output: target }).catch((e: unknown) => e);
    expect(isLazyLabelError(err)).toBe(true);
    expect(err).toMatchObject({ exitCode: 1, code: 'label-out-of-range', file: fx('out_of_range.h5'), dataset: 'lab' });
    expectNothingWritten(dir, target);
  });

  it('--allow-empty writes an empty cube; its re-check warns', async () => {
    const report = await cliJson('--mask', fx('empty_mask.h5'), '--classes', fx('empty_mask.h5'), '--n-lab', '2', '--allow-empty', '-o', out());
    expect(report.ok).toBe(true);
    expect(report.ignored).toBe(report.voxels);
    expect(report.check.status).toBe('warn');
    expect(report.check.findings.map((f) => f.code)).toContain('no-training-signal');
  });
});

describe('output safety', () => {
  it('refuses an existing output without --force, replaces it with --force', async () => {
    const target = out();
    const args = ['--mask', fx('mask_2d.h5'), '--fill-class', '1', '--n-lab', '2', '-o', target];
    expect((await cli(...args)).code).toBe(0);
    fs.writeFileSync(target, 'not a label file');
    const refused = await cli(...args);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/already exists.*--force/);
    expect(fs.readFileSync(target, 'utf8')).toBe('not a label file');
    const forced = await cli(...args, '--force');
    expect(forced.code).toBe(0);
    expect((await readAll(target, 'lab')).shape).toEqual([16, 9]);
    expect(fs.readdirSync(tmp).filter((f) => f.includes('lazylabel-tmp'))).toEqual([]);
  });

  it('refuses an output that is an input, even with --force', async () => {
    const input = path.join(tmp, 'input-copy.h5');
    fs.copyFileSync(fx('mask_classes_3d.h5'), input);
    const before = sha(input);
    for (const force of [[], ['--force']]) {
      const r = await cli('--mask', input, '--classes', input, '--n-lab', '3', '-o', input, ...force);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/is also an input/);
    }
    // the same file under another spelling is the same input
    const r = await cli('--mask', input, '--classes', fx('mask_classes_3d.h5'), '--n-lab', '3', '-o', path.relative(ROOT, input), '--force');
    expect(r.code).toBe(2);
    expect(sha(input)).toBe(before);
  });
});

describe('manifest', () => {
  it('takes n_lab and class names from the manifest and adds/updates the cube entry atomically, keeping other fields', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'manifest-'));
    fs.mkdirSync(path.join(dir, 'labels'));
    const manifestPath = path.join(dir, 'dataset.json');
    fs.writeFileSync(manifestPath, JSON.stringify({
      n_lab: 3, class_names: ['bg', 'mito', 'syn'], lazy_labels: false, patch_size: [8, 8, 8],
      cubes: [{ name: 'c1', label: 'labels/old.h5', label_key: 'old', prio: 2, valid: true }],
    }, null, 2));
    const c1 = path.join(dir, 'labels', 'c1.h5');
    const rep1 = await cliJson('--manifest', manifestPath, '--cube-name', 'c1', '--mask', fx('mask_classes_3d.h5'), '--classes', fx('mask_classes_3d.h5'),
      '--labeled', 'bg,mito', '--raw', fx('raw_3d.h5'), '-o', c1);
    expect(rep1).toMatchObject({ nLab: 3, classNames: ['bg', 'mito', 'syn'], labeledFrom: 'flag', info: { labeled: [1, 1, 0] }, manifestUpdated: true });
    expect(rep1.manifest).toMatchObject({ cube: 'c1', action: 'updated', lazyLabelsEnabled: true });
    // class 2 occurs but is not flagged labelled: the re-check warns, the conversion stands
    expect(rep1.check.findings.map((f) => f.code)).toContain('unlabeled-class-has-voxels');

    const c2 = path.join(dir, 'labels', 'c2.h5');
    const rep2 = await cliJson('--manifest', manifestPath, '--cube-name', 'c2', '--like', fx('raw_4d.h5'), '--all-ignore', '--not-present', 'syn', '-o', c2);
    expect(rep2.manifest).toMatchObject({ cube: 'c2', action: 'added', lazyLabelsEnabled: false });

    const m = JSON.parse(fs.readFileSync(manifestPath, 'utf8')) as Record<string, unknown>;
    const rel = (p: string): string => path.relative(dir, p);
    expect(m).toEqual({
      n_lab: 3, class_names: ['bg', 'mito', 'syn'], lazy_labels: true, patch_size: [8, 8, 8],
      cubes: [
        { name: 'c1', label: 'labels/c1.h5', prio: 2, valid: true, raw: rel(fx('raw_3d.h5')) },
        { name: 'c2', label: 'labels/c2.h5', raw: rel(fx('raw_4d.h5')) },
      ],
    });
    expect(fs.readdirSync(dir).filter((f) => f.includes('lazylabel-tmp'))).toEqual([]);

    // re-converting c1 without --raw checks against the raw its entry already names
    const again = await cliJson('--manifest', manifestPath, '--cube-name', 'c1', '--mask', fx('mask_classes_3d.h5'), '--classes', fx('mask_classes_3d.h5'), '-o', c1, '--force');
    expect(again.check.raw).toBe(fx('raw_3d.h5'));
    expect(again.manifest).toMatchObject({ action: 'updated' });
    const misfit = await cli('--manifest', manifestPath, '--cube-name', 'c1', '--mask', fx('mask_2d.h5'), '--fill-class', '1', '-o', c1, '--force');
    expect(misfit.code).toBe(1);
    expect(misfit.stderr).toMatch(/raw_3d\.h5, dataset 'raw': raw spatial shape/);
    expect((await readAll(c1, 'lab')).shape).toEqual([12, 10, 8]);
    expect((JSON.parse(fs.readFileSync(manifestPath, 'utf8')) as { cubes: unknown[] }).cubes[0]).toEqual({ name: 'c1', label: 'labels/c1.h5', prio: 2, valid: true, raw: rel(fx('raw_3d.h5')) });

    // the updated manifest passes check as a whole
    const { stdout } = await run(process.execPath, [BIN, 'check', '--quiet', '--manifest', manifestPath, '--json'], { cwd: ROOT });
    expect((JSON.parse(stdout) as { ok: boolean }).ok).toBe(true);

    // --fill-class by name; a refused run leaves the manifest alone
    const before = fs.readFileSync(manifestPath, 'utf8');
    const refused = await cli('--manifest', manifestPath, '--cube-name', 'c3', '--mask', fx('mask_classes_3d.h5'), '--classes', fx('mask_classes_3d.h5'), '--not-present', 'syn', '-o', path.join(dir, 'c3.h5'));
    expect(refused.code).toBe(1);
    expect(fs.readFileSync(manifestPath, 'utf8')).toBe(before);
    const byName = await cliJson('--manifest', manifestPath, '--mask', fx('mask_2d.h5'), '--fill-class', 'mito', '-o', path.join(dir, 'c4.h5'));
    expect(byName.classCounts[1]).toBeGreaterThan(0);
    expect(byName.manifestUpdated).toBe(false);
  });

  it('--n-lab contradicting the manifest and a clashing label path are refused before writing', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'manifest-bad-'));
    const manifestPath = path.join(dir, 'dataset.json');
    fs.writeFileSync(manifestPath, JSON.stringify({ n_lab: 2, cubes: [{ name: 'a', label: 'x.h5' }] }));
    const target = path.join(dir, 'x.h5');
    const r1 = await cli('--manifest', manifestPath, '--n-lab', '3', '--mask', fx('mask_2d.h5'), '--fill-class', '1', '-o', target);
    expect(r1.code).toBe(2);
    expect(r1.stderr).toMatch(/--n-lab 3 contradicts n_lab 2/);
    // cube 'b' would point at the same label file as cube 'a'
    const r2 = await cli('--manifest', manifestPath, '--cube-name', 'b', '--mask', fx('mask_2d.h5'), '--fill-class', '1', '-o', target);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/dataset\.json: adding this cube would make the manifest invalid/);
    expectNothingWritten(dir, target);
    const r3 = await cli('--cube-name', 'b', '--n-lab', '2', '--mask', fx('mask_2d.h5'), '--fill-class', '1', '-o', target);
    expect(r3.code).toBe(2);
    expect(r3.stderr).toMatch(/--cube-name needs --manifest/);
  });

  it('--raw whose spatial shape differs from the output is refused before writing', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'raw-'));
    const target = path.join(dir, 'out.h5');
    const r = await cli('--mask', fx('mask_2d.h5'), '--fill-class', '1', '--n-lab', '2', '--raw', fx('raw_3d.h5'), '-o', target);
    expect(r.code).toBe(1);
    // a 3-D raw next to 2-D labels reads as channels-first (ch, x, y), as in `check`
    expect(r.stderr).toMatch(/raw_3d\.h5, dataset 'raw': raw spatial shape \(10, 8\) differs from the output shape \(16, 9\)/);
    expectNothingWritten(dir, target);
  });
});

/** A deterministic pseudo-random 40x64x64 mask + classes, written here through the I/O layer. */
async function writeBigInputs(file: string): Promise<void> {
  const shape = [40, 64, 64];
  const nVox = shape.reduce((a, b) => a * b, 1);
  const mask = new Uint8Array(nVox);
  const cls = new Int16Array(nVox);
  let s = 12345;
  for (let i = 0; i < nVox; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    mask[i] = (s >>> 16) % 3 === 0 ? 1 : 0;
    cls[i] = (s >>> 8) % 4;
  }
  const sink = await H5Sink.create(file);
  try {
    sink.createDataset('mask', { shape, dtype: 'uint8', chunks: [7, 64, 64] }).write(mask);
    sink.createDataset('lab', { shape, dtype: 'int16', chunks: [5, 32, 64] }).write(cls);
  } finally {
    sink.close();
  }
}

describe('slab streaming', () => {
  it('a volume many times the slab budget converts identically to a one-slab run', async () => {
    const input = path.join(tmp, 'big-in.h5');
    await writeBigInputs(input);
    const small = out('big-small.h5');
    const big = out('big-big.h5');
    const common = ['--mask', `${input}:mask`, '--classes', `${input}:lab`, '--n-lab', '4'];
    const [rs, rb] = await Promise.all([cliJson(...common, '--slab-mb', '0.01', '-o', small), cliJson(...common, '--slab-mb', '256', '-o', big)]);
    // 0.01 MiB holds less than one 64x64 row of mask + classes + output: one row per slab
    expect(rs.slabs).toBe(40);
    expect(rb.slabs).toBe(1);
    expect(rs.output.chunks[0]).toBe(1);
    const a = await readAll(small, 'lab');
    const b = await readAll(big, 'lab');
    const mask = await readAll(input, 'mask');
    const cls = await readAll(input, 'lab');
    const expected = mask.data.map((m, i) => (m > 0 ? cls.data[i]! : -1));
    expect(a.data).toEqual(expected);
    expect(b.data).toEqual(expected);
    expect(rs.classCounts).toEqual(rb.classCounts);
    expect(rs.check.status).toBe('ok');
  });
});

describe('chunk-aligned boxes', () => {
  it('chunked inputs are converted in boxes of whole chunks within the budget, output chunked like the mask, values exact', async () => {
    // mask chunks (32, 32, 64), classes chunks (32, 16, 64): unit = (32, 32, 64); 8 bytes per voxel in flight
    // (two uint8 inputs read and copied, int16 output and its heap copy): a 0.5 MiB budget holds one unit, not a
    // whole 32-row layer, so the 96x64x64 volume goes in 3 layers x 2 boxes
    const input = fx('chunked_boxes.h5');
    const common = ['--mask', `${input}:mask`, '--classes', `${input}:classes`, '--n-lab', '3'];
    const boxed = out('boxes-small.h5');
    const whole = out('boxes-big.h5');
    const [rs, rb] = await Promise.all([cliJson(...common, '--slab-mb', '0.5', '-o', boxed), cliJson(...common, '--slab-mb', '256', '-o', whole)]);
    expect(rs.output.chunks).toEqual([32, 32, 64]);
    expect(rb.output.chunks).toEqual([32, 32, 64]);
    expect(rs.slabs).toBe(6);
    expect(rb.slabs).toBe(1);
    const mask = await readAll(input, 'mask');
    const cls = await readAll(input, 'classes');
    const expected = mask.data.map((m, i) => (m > 0 ? cls.data[i]! : -1));
    for (const f of [boxed, whole]) {
      const got = await readAll(f, 'lab');
      expect(got.shape).toEqual([96, 64, 64]);
      expect(got.data).toEqual(expected);
    }
    const counts = [0, 1, 2].map((c) => expected.filter((v) => v === c).length);
    expect(rs.classCounts).toEqual(counts);
    expect(rs.ignored).toBe(expected.filter((v) => v === -1).length);
    expect(rs.check.status).toBe('ok');
    expect(rs.check.stats!.classCounts).toEqual(counts);
  });

  it('--verify re-reads the written output and reports the same counts', async () => {
    const input = fx('chunked_boxes.h5');
    const r = await convert({ mask: { file: input, key: 'mask' }, classes: { file: input, key: 'classes' }, nLab: 3, output: out('verify.h5'), verify: true, slabMB: 0.5 });
    const fast = await convert({ mask: { file: input, key: 'mask' }, classes: { file: input, key: 'classes' }, nLab: 3, output: out('noverify.h5'), slabMB: 0.5 });
    expect(r.check).toEqual({ ...fast.check, path: r.check.path, name: r.check.name });
  });
});

describe('interop', () => {
  it.skipIf(!PY)('h5py opens the output: int16, chunked, gzip, values match a NumPy computation, info as written', async () => {
    const target = out('interop.h5');
    const opts: ConvertOptions = { mask: { file: fx('mask_classes_3d.h5'), key: 'mask' }, classes: { file: fx('mask_classes_3d.h5'), key: 'lab' }, nLab: 3, notPresent: [], labeled: [0, 2], output: target };
    const report = await convert(opts);
    const script = [
      'import h5py, json, sys, numpy as np',
      'f = h5py.File(sys.argv[1], "r"); d = f["lab"]; src = h5py.File(sys.argv[2], "r")',
      'exp = np.where(src["mask"][()] > 0, src["lab"][()], -1)',
      'print(json.dumps({"shape": list(d.shape), "dtype": str(d.dtype), "chunks": list(d.chunks) if d.chunks else None, "compression": d.compression,',
      '  "sum": int(d[()].astype(np.int64).sum()), "equal": bool(np.array_equal(d[()], exp)), "info": f["info"][()].tolist(), "info_dtype": str(f["info"].dtype),',
      '  "resolution": d.attrs["resolution"].tolist(), "version": json.loads(d.attrs["lazylabel"])["version"]}))',
    ].join('\n');
    const { stdout } = await run('/usr/bin/python3', ['-c', script, target, fx('mask_classes_3d.h5')]);
    const py = JSON.parse(stdout) as Record<string, unknown>;
    const got = await readAll(target, 'lab');
    expect(py).toEqual({
      shape: [12, 10, 8], dtype: 'int16', chunks: report.output.chunks, compression: 'gzip',
      sum: got.data.reduce((a, b) => a + b, 0), equal: true, info: [[1, 0, 1], [0, 0, 0]], info_dtype: 'int8',
      resolution: [10, 10, 25], version: VERSION,
    });
  });

  it.skipIf(!H5DUMP)('h5dump -H reads the output', async () => {
    const target = out('dump.h5');
    await convert({ classes: { file: fx('dense_255.h5'), key: 'lab' }, ignoreValue: 255, nLab: 3, output: target });
    const { stdout } = await run('h5dump', ['-H', target]);
    expect(stdout).toMatch(/DATASET "lab"[\s\S]*H5T_STD_I16LE[\s\S]*\( 12, 10, 8 \)/);
    expect(stdout).toMatch(/DATASET "info"[\s\S]*H5T_STD_I8LE[\s\S]*\( 2, 3 \)/);
  });
});

describe('reader worker', () => {
  it('convert with the reader worker writes the same labels and report as without it (boxes and row slabs)', async () => {
    const cases: ConvertOptions[] = [
      { mask: { file: fx('chunked_boxes.h5'), key: 'mask' }, classes: { file: fx('chunked_boxes.h5'), key: 'classes' }, nLab: 3, output: '', slabMB: 1 },
      { mask: { file: fx('mask_classes_3d.h5'), key: 'mask' }, classes: { file: fx('mask_classes_3d.h5'), key: 'lab' }, nLab: 3, output: '', slabMB: 0.001 },
      { classes: { file: fx('dense_255.h5'), key: 'lab' }, ignoreValue: 255, nLab: 3, output: '', slabMB: 0.001 },
    ];
    for (const c of cases) {
      const a = await convert({ ...c, output: out(), readerWorker: false });
      const b = await convert({ ...c, output: out(), readerWorker: true });
      expect(b.slabs).toBeGreaterThan(1);
      expect((await readAll(b.output.path, 'lab')).data).toEqual((await readAll(a.output.path, 'lab')).data);
      // under a tight budget the worker's extra piece in flight can mean thinner slabs, hence other chunks
      const strip = (r: ConvertReport): unknown => ({ ...r, output: { ...r.output, path: '', chunks: [] }, check: { ...r.check, path: '', name: '' }, slabs: 0 });
      expect(strip(b)).toEqual(strip(a));
    }
  });

  it('convert starts the reader worker early for inputs of 1 MiB or more and then uses it; a run that fails stops it', async () => {
    const { ReaderWorker } = await import('../src/ops/convertMapping.js');
    const { EARLY_READER_MIN_BYTES, READER_WORKER_MIN_VOXELS } = await import('../src/ops/convert.js');
    const start = vi.spyOn(ReaderWorker, 'start');
    const stop = vi.spyOn(ReaderWorker.prototype, 'stop');
    const post = vi.spyOn(ReaderWorker.prototype, 'post');
    const cores = os.availableParallelism();
    try {
      // a tiny file: no worker
      const tiny: ConvertOptions = { mask: { file: fx('mask_classes_3d.h5'), key: 'mask' }, classes: { file: fx('mask_classes_3d.h5'), key: 'lab' }, nLab: 3, output: '' };
      await convert({ ...tiny, output: out() });
      expect(start).not.toHaveBeenCalled();
      // 1.5 MiB on disk (uncompressed) but 0.75 Mi voxels, below READER_WORKER_MIN_VOXELS: started early, then used
      const file = out('early-reader.h5');
      const shape = [96, 128, 64];
      const nVox = shape[0]! * shape[1]! * shape[2]!;
      expect(nVox).toBeLessThan(READER_WORKER_MIN_VOXELS);
      const mask = new Uint8Array(nVox).map((_, i) => (i % 7 === 0 ? 0 : 1));
      const cls = new Uint8Array(nVox).map((_, i) => (i * 2654435761) % 3);
      await writeMaskClasses(file, shape, mask, cls, { chunks: [32, 64, 64], gzip: 0 });
      expect(fs.statSync(file).size).toBeGreaterThanOrEqual(EARLY_READER_MIN_BYTES);
      const small: ConvertOptions = { mask: { file, key: 'mask' }, classes: { file, key: 'classes' }, nLab: 3, output: '', slabMB: 0.5 };
      const plain = await convert({ ...small, output: out(), readerWorker: false });
      expect(start).not.toHaveBeenCalled();
      const dflt = await convert({ ...small, output: out() });
      expect(dflt.slabs).toBeGreaterThan(1);
      // (on a one-core machine there is no worker)
      expect(start).toHaveBeenCalledTimes(cores > 1 ? 1 : 0);
      expect(post).toHaveBeenCalledTimes(cores > 1 ? 1 : 0);
      expect(stop).toHaveBeenCalledTimes(cores > 1 ? 2 : 0); // by mapPiecesInWorker and by convert's cleanup (idempotent)
      expect((await readAll(dflt.output.path, 'lab')).data).toEqual((await readAll(plain.output.path, 'lab')).data);
      // a run refused after the worker started (mask and classes of different shapes) stops it unused
      stop.mockClear();
      post.mockClear();
      const bad = convert({ mask: { file, key: 'mask' }, classes: { file: fx('chunked_boxes.h5'), key: 'classes' }, nLab: 3, output: out(), readerWorker: true });
      await expect(bad).rejects.toMatchObject({ code: 'shape-mismatch' });
      expect(post).not.toHaveBeenCalled();
      expect(stop).toHaveBeenCalledTimes(1);
    } finally {
      start.mockRestore();
      stop.mockRestore();
      post.mockRestore();
    }
  });

  it('a reader worker that fails while nobody waits on it keeps the error for the next request (no crash)', async () => {
    const { ReaderWorker } = await import('../src/ops/convertMapping.js');
    const broken = out('broken-worker.mjs');
    fs.writeFileSync(broken, "throw new Error('cannot load the mapping modules');\n");
    const reader = await ReaderWorker.start(new URL(`file://${broken}`));
    await new Promise((r) => setTimeout(r, 300)); // it fails with no listener waiting
    await expect(reader.next()).rejects.toThrow('cannot load the mapping modules');
    expect(() => reader.assertAlive()).toThrow('cannot load the mapping modules');
    await reader.stop();
    await reader.stop(); // twice is fine
  });

  it('mask and classes read as views on a heap the second read grows are both mapped (the first view is made again)', async () => {
    const { mapPiece, LabelBuffers } = await import('../src/ops/convertMapping.js');
    const { openVolume } = await import('../src/io/volume.js');
    const { Module } = await import('h5wasm/node');
    // 2 x 40 MiB views: larger than any read before in this process, so the second read has to grow the heap
    const shape = [40, 1024, 1024];
    const n = shape.reduce((a, b) => a * b, 1);
    const mask = new Uint8Array(n);
    const classes = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      mask[i] = (i >> 9) & 1;
      classes[i] = (i >> 3) % 3;
    }
    const file = out('views-grow.h5');
    await writeMaskClasses(file, shape, mask, classes, { chunks: [8, 256, 256], gzip: 1 });
    const inputs = { mask: await openVolume(file, 'mask'), classes: await openVolume(file, 'classes') };
    try {
      const heapBefore = Module.HEAPU8.buffer;
      const tally = new ConvertTally(3);
      const labels = await mapPiece({ mode: 'mask-classes', nLab: 3, shift: false }, inputs, { starts: [0, 0, 0], ends: shape }, tally, new LabelBuffers());
      expect(Module.HEAPU8.buffer).not.toBe(heapBefore); // the heap did grow
      const expected = mapMaskClasses(mask, classes, new ConvertTally(3));
      const bytes = (a: Int16Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
      expect(labels.length).toBe(n);
      expect(bytes(labels).equals(bytes(expected))).toBe(true); // (toEqual on 40 M elements runs out of memory)
      expect(tally.result().ignored).toBe(n / 2);
    } finally {
      inputs.mask.close();
      inputs.classes.close();
    }
  });

  it('pieces mapped by the worker alone equal pieces mapped here, and its read errors come back as the same user error', async () => {
    const { mapPieces, mapPiecesInWorker } = await import('../src/ops/convertMapping.js');
    const { openVolume } = await import('../src/io/volume.js');
    const file = fx('chunked_boxes.h5');
    const plan = { mode: 'mask-classes' as const, nLab: 3, shift: false };
    const pieces = [0, 32, 64].map((s) => ({ starts: [s, 0, 0], ends: [s + 32, 64, 64] }));
    const local = new ConvertTally(3);
    const mask = await openVolume(file, 'mask');
    const classes = await openVolume(file, 'classes');
    // each array is valid until the next is asked for (it is reused): keep copies
    const here: Int16Array[] = [];
    const yielded: Int16Array[] = [];
    for await (const p of mapPieces(plan, { mask, classes }, pieces, local)) {
      here.push(p.slice());
      yielded.push(p);
    }
    mask.close();
    classes.close();
    // pieces of one size: every piece after the first is mapped into the first one's buffer
    expect(yielded.every((p) => p.buffer === yielded[0]!.buffer)).toBe(true);
    const remote = new ConvertTally(3);
    const there: Int16Array[] = [];
    const fromWorker: Int16Array[] = [];
    for await (const p of mapPiecesInWorker(plan, { mask: { file, key: 'mask' }, classes: { file, key: 'classes' } }, null, pieces, remote)) {
      there.push(p.slice());
      fromWorker.push(p);
    }
    expect(there).toEqual(here);
    expect(remote.result()).toEqual(local.result());
    // the worker's arrays went back to it once written (transferred: empty here)
    expect(fromWorker.map((p) => p.length)).toEqual([0, 0, 0]);

    // lzf is a filter this HDF5 build lacks: the worker's read fails with the error the main thread would raise
    const lzf = path.join(ROOT, 'fixtures', 'fuzz', 'hostile', 'lzf.h5');
    const inWorker = async (): Promise<void> => {
      for await (const _ of mapPiecesInWorker({ mode: 'ignore-value', nLab: 3, marker: 255, shift: false }, { classes: { file: lzf, key: 'lab' } }, null, [{ starts: [0, 0, 0], ends: [2, 5, 6] }], new ConvertTally(3))) void _;
    };
    const err = await inWorker().then(() => null, (e: unknown) => e);
    expect(isLazyLabelError(err)).toBe(true);
    expect((err as { code: string }).code).toBe('unsupported-filter');
    expect((err as { file: string }).file).toBe(lzf);
  });
});
