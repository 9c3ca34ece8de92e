// The fast-starting CLI build (scripts/build-cli.js): the vendored h5wasm reads what the stock one reads (also
// from a module bin/lazylabel.js compiled ahead), the bundled CLI and its worker entries answer exactly like the
// plain tsc output, the string-width shim measures like string-width, and package files resolve from any depth.
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import stock from 'h5wasm/node';
import { findPackageRoot, PACKAGE_ROOT, workerUrl } from '../src/packageRoot.js';
import { LabelTally } from '../src/core/labelTally.js';
import { ConvertTally, mapMaskClasses } from '../src/core/convert.js';
import { fixture, ROOT } from './helpers.js';

const VENDOR = path.join(ROOT, 'dist', 'vendor', 'h5wasm');
const BUNDLE_MAIN = path.join(ROOT, 'dist', 'cli-bundle', 'main.js');
const PLAIN_MAIN = path.join(ROOT, 'dist', 'cli', 'main.js');
const BUNDLE = path.join(ROOT, 'dist', 'cli-bundle');

type H5 = typeof stock;

/** Every dataset under the root of `file`: path -> dtype, shape and values as plain numbers/strings. */
function datasets(h5: H5, file: string): Record<string, unknown> {
  const f = new h5.File(file, 'r');
  const out: Record<string, unknown> = {};
  const walk = (g: InstanceType<H5['Group']>, prefix: string): void => {
    for (const name of g.keys()) {
      const item = g.get(name);
      const p = `${prefix}/${name}`;
      if (item instanceof h5.Group) walk(item, p);
      else if (item instanceof h5.Dataset) {
        const v = item.value as ArrayLike<number | bigint> | number | string;
        const values = typeof v === 'object' && v !== null && 'length' in v ? Array.from(v as ArrayLike<number | bigint>, String) : [String(v)];
        out[p] = { dtype: item.dtype, shape: item.shape, values };
      }
    }
  };
  try {
    walk(f, '');
  } finally {
    f.close();
  }
  return out;
}

describe('vendored h5wasm (dist/vendor/h5wasm)', () => {
  it('keeps its WebAssembly in a separate, valid file instead of the JavaScript', () => {
    expect(fs.existsSync(path.join(VENDOR, 'hdf5_hl.js')), 'run `npm run build`').toBe(true);
    const util = fs.statSync(path.join(VENDOR, 'hdf5_util.js')).size;
    const stockUtil = fs.statSync(path.join(ROOT, 'node_modules', 'h5wasm', 'dist', 'node', 'hdf5_util.js')).size;
    expect(util).toBeLessThan(stockUtil / 10);
    const wasm = fs.readFileSync(path.join(VENDOR, 'hdf5_util.wasm'));
    expect(WebAssembly.validate(wasm)).toBe(true);
    expect(fs.existsSync(path.join(VENDOR, 'LICENSE.txt'))).toBe(true);
  });

  it('names the functions commands run in a compilationHints section, profiled on exactly the installed h5wasm', async () => {
    const { sha256, withoutCompilationHints } = await import('../scripts/hdf5-hints.js');
    const list = JSON.parse(fs.readFileSync(path.join(ROOT, 'scripts', 'hdf5-hot-functions.json'), 'utf8')) as { wasmSha256: string; functions: number[] };
    const wasm = fs.readFileSync(path.join(VENDOR, 'hdf5_util.wasm'));
    expect(sha256(withoutCompilationHints(wasm)), 'another h5wasm: run node scripts/hdf5-hints.js --profile').toBe(list.wasmSha256);
    const module = new WebAssembly.Module(wasm);
    const [section] = WebAssembly.Module.customSections(module, 'compilationHints');
    const hints = new Uint8Array(section!);
    // a LEB128 count of declared functions, then one byte each: eager + Liftoff (0x06) or lazy + Liftoff (0x05)
    let count = 0;
    let at = 0;
    for (let shift = 0; ; shift += 7) {
      const b = hints[at++]!;
      count |= (b & 0x7f) << shift;
      if (!(b & 0x80)) break;
    }
    const imported = WebAssembly.Module.imports(module).filter((i) => i.kind === 'function').length;
    expect(hints.length - at).toBe(count);
    const eager = new Set(list.functions);
    expect(list.functions.length).toBeGreaterThan(500);
    for (let i = 0; i < count; i++) expect(hints[at + i]).toBe(eager.has(imported + i) ? 0x06 : 0x05);
    // V8 with the flag bin/lazylabel.js sets accepts the section (a malformed one fails compilation there)
    const script = `const m = await WebAssembly.compile((await import('node:fs')).readFileSync(${JSON.stringify(path.join(VENDOR, 'hdf5_util.wasm'))})); console.log(WebAssembly.Module.exports(m).length > 0);`;
    const r = spawnSync(process.execPath, ['--experimental-wasm-compilation-hints', '--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('true');
  });

  it('compilation hints change when functions compile, not what they do', async () => {
    const { addCompilationHints, withoutCompilationHints } = await import('../scripts/hdf5-hints.js');
    const wabt = await (await import('wabt')).default();
    const wat = '(module (import "env" "f" (func $f (result i32))) (func (export "a") (result i32) (i32.add (call $f) (i32.const 1))) (func (export "b") (result i32) (i32.const 2)))';
    const mod = wabt.parseWat('t.wat', wat);
    const plain = Buffer.from(mod.toBinary({}).buffer);
    mod.destroy();
    const hinted = addCompilationHints(plain, [2]); // function 2 = "b" (index 0 is the import)
    expect(WebAssembly.validate(hinted)).toBe(true);
    expect(Buffer.compare(withoutCompilationHints(hinted), plain)).toBe(0);
    expect(() => addCompilationHints(hinted, [1])).toThrow(/already/);
    const script = `const { instance } = await WebAssembly.instantiate(Buffer.from(${JSON.stringify(hinted.toString('base64'))}, 'base64'), { env: { f: () => 40 } }); console.log(instance.exports.a(), instance.exports.b());`;
    for (const flags of [['--experimental-wasm-compilation-hints'], []]) {
      const r = spawnSync(process.execPath, [...flags, '--input-type=module', '-e', script], { encoding: 'utf8' });
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe('41 2');
    }
  });

  it('reads h5py-written files (chunked, gzip, groups, every integer dtype) exactly like the stock h5wasm', async () => {
    const vendored = (await import(pathToFileURL(path.join(VENDOR, 'hdf5_hl.js')).href)).default as H5;
    await Promise.all([vendored.ready, stock.ready]);
    const files = ['dense3d_int16_chunked.h5', 'nested_groups.h5', 'dtype_uint64.h5', 'dtype_int8.h5', 'info_float.h5', 'labels_4d.h5'].map((f) => fixture('check', f));
    for (const file of files) {
      const a = datasets(vendored, file);
      expect(Object.keys(a).length, file).toBeGreaterThan(0);
      expect(a, file).toEqual(datasets(stock, file));
    }
  });
});

describe('HDF5 WebAssembly compiled ahead (bin/lazylabel.js)', () => {
  /** Imports the vendored h5wasm in a fresh process (the hook is read on first import) with `promise` under the symbol. */
  function readWithPrefetch(promise: string): { used: number; n: number; sum: number; memory: boolean } {
    const script = `
      const key = Symbol.for('lazylabel.hdf5WasmModule');
      let used = 0;
      const compiled = ${promise};
      globalThis[key] = { then: (ok, bad) => (used++, compiled.then(ok, bad)) };
      const ns = await import(${JSON.stringify(pathToFileURL(path.join(VENDOR, 'hdf5_hl.js')).href)});
      const h5 = ns.default;
      await h5.ready;
      const f = new h5.File(${JSON.stringify(fixture('check', 'dense3d_int16_chunked.h5'))}, 'r');
      const v = f.get('lab').value;
      // the hook also leaves libhdf5's WebAssembly.Memory for the counting kernels (src/io/hdf5.ts hostCountKernel)
      const memory = globalThis[Symbol.for('lazylabel.hdf5Memory')];
      const isHeap = memory instanceof WebAssembly.Memory && memory.buffer === ns.Module.HEAPU8.buffer;
      console.log(JSON.stringify({ used, n: v.length, sum: v.reduce((a, b) => a + b, 0), memory: isHeap }));
      f.close();`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    return JSON.parse(r.stdout) as { used: number; n: number; sum: number; memory: boolean };
  }

  it('the vendored h5wasm instantiates the module left under the global symbol (or compiles its own when that is null), and reads with it', () => {
    const f = new stock.File(fixture('check', 'dense3d_int16_chunked.h5'), 'r');
    const ref = (f.get('lab') as InstanceType<H5['Dataset']>).value as Int16Array;
    f.close();
    const want = { used: 1, n: ref.length, sum: ref.reduce((a, b) => a + b, 0), memory: true };
    const wasm = JSON.stringify(path.join(VENDOR, 'hdf5_util.wasm'));
    expect(readWithPrefetch(`(async () => WebAssembly.compile((await import('node:fs')).readFileSync(${wasm})))()`)).toEqual(want);
    // bin/lazylabel.js leaves null when its read or compile failed
    expect(readWithPrefetch('Promise.resolve(null)')).toEqual(want);
  });
});

describe('string-width shim (scripts/cli-shims/string-width.js)', () => {
  it('measures like string-width 7 and 8, for ASCII help text and everything else', async () => {
    const shim = (await import('../scripts/cli-shims/string-width.js')).default as (s: string) => number;
    const require = createRequire(import.meta.url);
    const real8 = (await import(pathToFileURL(require.resolve('string-width')).href)).default as (s: string) => number;
    const real7 = (await import(pathToFileURL(require.resolve('string-width', { paths: [path.dirname(require.resolve('cliui'))] })).href)).default as (s: string) => number;
    const texts = ['', 'lazylabel check [files..]', 'two\nlines\twith tab\r\n', 'ctrl \x00\x07\x7f', '\x1b[31mred\x1b[39m', 'naïve ≤ 2 × 3', '漢字', '👍🏽 ok', 'a\u0301'];
    for (const t of texts) {
      expect(shim(t), JSON.stringify(t)).toBe(real8(t));
      expect(shim(t), JSON.stringify(t)).toBe(real7(t));
    }
  });
});

describe('bundled CLI (dist/cli-bundle)', () => {
  /** Runs `main(args)` of one CLI entry in a fresh process; stdout and the exit code. */
  function runEntry(entry: string, args: string[]): { code: number; stdout: string } {
    const script = `const { main } = await import(${JSON.stringify(pathToFileURL(entry).href)}); process.exitCode = await main(${JSON.stringify(args)});`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
    return { code: r.status ?? -1, stdout: r.stdout };
  }

  it('gives the same reports and exit codes as the plain build', () => {
    expect(fs.existsSync(BUNDLE_MAIN), 'run `npm run build`').toBe(true);
    const cases = [
      ['check', fixture('check', 'dense3d_int16_chunked.h5'), fixture('check', 'lazy_all_ignore.h5'), '--n-lab', '3', '--json'],
      ['check', fixture('check', 'info_bad_values.h5'), '--n-lab', '3', '--json'],
      ['suggest-prios', '--manifest', fixture('check', 'manifest_ok.json'), '--json'],
      ['--version'],
    ];
    for (const args of cases) {
      const plain = runEntry(PLAIN_MAIN, args);
      const bundled = runEntry(BUNDLE_MAIN, args);
      expect(plain.stdout.length, args.join(' ')).toBeGreaterThan(0);
      expect(bundled, args.join(' ')).toEqual(plain);
    }
  });
});

describe('bundled CLI start-up', () => {
  it('lists no folder outside the package looking for a package.json (yargs would walk up from the working directory)', () => {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'lazylabel-cwd-'));
    // the package in a folder with a dot in its name (yargs takes anything with an extension for a file)
    const pkg = path.join(work, 'lazylabel.v2');
    for (const d of ['dist/cli-bundle', 'dist/vendor', 'dist/validators', 'schemas']) fs.cpSync(path.join(ROOT, d), path.join(pkg, d), { recursive: true });
    fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(pkg, 'package.json'));
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(pkg, 'node_modules'));
    const cwd = path.join(work, 'data', 'deeper');
    fs.mkdirSync(cwd, { recursive: true });
    // record every folder the process lists (the bundle imports readdirSync from 'fs': re-export the wrapper)
    const log = path.join(work, 'listed.txt');
    const preload = `import fs from 'node:fs'; import { syncBuiltinESMExports } from 'node:module';
const seen = []; const orig = fs.readdirSync;
fs.readdirSync = function (p, ...rest) { seen.push(String(p)); return orig.call(this, p, ...rest); };
syncBuiltinESMExports();
process.on('exit', () => fs.writeFileSync(${JSON.stringify(log)}, seen.join('\\n')));`;
    const args = ['check', fixture('check', 'dense3d_int16_chunked.h5'), '--n-lab', '3', '--json', '--quiet'];
    const script = `const { main } = await import(${JSON.stringify(pathToFileURL(path.join(pkg, 'dist', 'cli-bundle', 'main.js')).href)}); process.exitCode = await main(${JSON.stringify(args)});`;
    try {
      const r = spawnSync(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(preload)}`, '--input-type=module', '-e', script], { cwd, encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).ok).toBe(true);
      const listed = fs.readFileSync(log, 'utf8').split('\n').filter(Boolean).map((p) => path.resolve(cwd, p));
      expect(listed.length).toBeGreaterThan(0); // yargs did look, at the package root
      for (const dir of listed) expect(dir.startsWith(pkg), dir).toBe(true);
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  });
});

/** The h5py-written mask + classes fixture, read by the stock h5wasm, and its labels as the library maps them. */
function maskClassesCase(): { file: string; shape: number[]; expected: Int16Array } {
  const file = fixture('convert', 'mask_classes_3d.h5');
  const f = new stock.File(file, 'r');
  const mask = (f.get('mask') as InstanceType<H5['Dataset']>).value as Uint8Array;
  const cls = f.get('lab') as InstanceType<H5['Dataset']>;
  const [shape, classes] = [cls.shape as number[], cls.value as Int32Array];
  f.close();
  return { file, shape, expected: mapMaskClasses(mask, classes, new ConvertTally(3)) };
}

describe('bundled worker entries', () => {
  for (const kind of ['boxes', 'direct'] as const) {
    it(`the tally worker counts an h5py-written volume as the library does (${kind === 'boxes' ? 'boxes through libhdf5' : 'chunks without libhdf5'})`, async () => {
      const file = fixture('check', 'dense3d_int16_chunked.h5');
      const f = new stock.File(file, 'r');
      const ds = f.get('lab') as InstanceType<H5['Dataset']>;
      const [shape, values] = [ds.shape as number[], ds.value as Int16Array];
      f.close();
      const expected = new LabelTally(3);
      expected.add(values, false);
      const worker = new Worker(pathToFileURL(path.join(BUNDLE, 'ops', 'tallyWorker.js')));
      try {
        const shared = new BigInt64Array(new SharedArrayBuffer(16));
        const half = Math.floor(shape[0]! / 2);
        const source = kind === 'boxes'
          ? { kind, file, key: 'lab', isFloat: false, boxes: [{ starts: [0, 0, 0], ends: [half, shape[1], shape[2]] }, { starts: [half, 0, 0], ends: shape }] }
          : { kind, file, key: 'lab', pieceBytes: 1 << 20 };
        worker.postMessage({ source, nLab: 3, shared: shared.buffer });
        const [m] = (await once(worker, 'message')) as [{ type: string; tally: { classCounts: number[]; ignored: number; voxels: number } }];
        expect(m.type).toBe('done');
        const want = expected.result();
        expect({ classCounts: m.tally.classCounts, ignored: m.tally.ignored, voxels: m.tally.voxels }).toEqual({ classCounts: want.classCounts, ignored: want.ignored, voxels: want.voxels });
      } finally {
        await worker.terminate();
      }
    });
  }

  it('the convert worker maps mask + classes as the library does', async () => {
    const { file, shape, expected } = maskClassesCase();
    const worker = new Worker(pathToFileURL(path.join(BUNDLE, 'ops', 'convertWorker.js')));
    try {
      const shared = new Int32Array(new SharedArrayBuffer(8));
      worker.postMessage({ type: 'start', plan: { mode: 'mask-classes', nLab: 3, shift: false }, refs: { mask: { file, key: 'mask' }, classes: { file, key: 'lab' } }, pieces: [{ starts: [0, 0, 0], ends: shape }], shared: shared.buffer });
      const [piece] = (await once(worker, 'message')) as [{ type: string; labels: Int16Array }];
      expect(piece.type).toBe('piece');
      expect(Array.from(piece.labels)).toEqual(Array.from(expected));
    } finally {
      await worker.terminate();
    }
  });
});

describe('compiled libhdf5 shared with worker threads', () => {
  it('a bundled worker instantiates the module it gets in workerData (hdf5WorkerData) instead of compiling its own', async () => {
    // A copy of the bundle whose vendored h5wasm has no hdf5_util.wasm: a worker can only work with the module it is handed.
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lazylabel-shared-wasm-'));
    try {
      fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(tmp, 'package.json'));
      fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(tmp, 'node_modules'));
      fs.cpSync(BUNDLE, path.join(tmp, 'dist', 'cli-bundle'), { recursive: true });
      fs.cpSync(VENDOR, path.join(tmp, 'dist', 'vendor', 'h5wasm'), { recursive: true });
      fs.rmSync(path.join(tmp, 'dist', 'vendor', 'h5wasm', 'hdf5_util.wasm'));
      const { file, shape, expected: labels } = maskClassesCase();
      const expected = Array.from(labels);
      const mapInWorker = async (workerData: Record<string, unknown>): Promise<{ type: string; labels?: Int16Array; error?: { message: string } }> => {
        const worker = new Worker(pathToFileURL(path.join(tmp, 'dist', 'cli-bundle', 'ops', 'convertWorker.js')), { workerData });
        try {
          const shared = new Int32Array(new SharedArrayBuffer(8));
          worker.postMessage({ type: 'start', plan: { mode: 'mask-classes', nLab: 3, shift: false }, refs: { mask: { file, key: 'mask' }, classes: { file, key: 'lab' } }, pieces: [{ starts: [0, 0, 0], ends: shape }], shared: shared.buffer });
          const got = await Promise.race([once(worker, 'message'), once(worker, 'error').then(([e]) => [{ type: 'crash', error: e as Error }])]);
          return got[0] as { type: string; labels?: Int16Array; error?: { message: string } };
        } finally {
          await worker.terminate();
        }
      };
      // without the module the copy cannot load libhdf5
      expect((await mapInWorker({})).type).not.toBe('piece');
      // with this thread's compiled module (as hdf5WorkerData hands it over) it maps like the library
      const { hdf5WorkerData, HDF5_MODULE_KEY } = await import('../src/io/hdf5.js');
      const key = Symbol.for(HDF5_MODULE_KEY);
      const g = globalThis as Record<symbol, unknown>;
      const before = g[key];
      g[key] = WebAssembly.compile(fs.readFileSync(path.join(VENDOR, 'hdf5_util.wasm')));
      try {
        const data = await hdf5WorkerData();
        expect(Object.keys(data)).toEqual([HDF5_MODULE_KEY]);
        const piece = await mapInWorker(data);
        expect(piece.type).toBe('piece');
        expect(Array.from(piece.labels!)).toEqual(expected);
      } finally {
        g[key] = before;
      }
      // no module (library use, or a failed compile left null): nothing to hand over
      g[key] = Promise.resolve(null);
      try {
        expect(await hdf5WorkerData()).toEqual({});
      } finally {
        g[key] = before;
      }
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe('package files', () => {
  it('resolve to the package root from src/, dist/ and dist/cli-bundle/', () => {
    const root = pathToFileURL(ROOT + path.sep).href;
    expect(PACKAGE_ROOT.href).toBe(root);
    for (const from of ['src/io/hdf5.ts', 'dist/io/hdf5.js', 'dist/cli-bundle/chunk-X.js']) {
      expect(findPackageRoot(pathToFileURL(path.join(ROOT, from))).href, from).toBe(root);
    }
    expect(fs.existsSync(workerUrl('ops/tallyWorker.js'))).toBe(true);
    expect(fs.existsSync(workerUrl('train/poolWorker.js'))).toBe(true);
    // the bundled CLI's workers are bundled entries next to it
    for (const name of ['ops/tallyWorker.js', 'ops/convertWorker.js', 'train/poolWorker.js']) expect(fs.existsSync(path.join(BUNDLE, name)), name).toBe(true);
  });
});
