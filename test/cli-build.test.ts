// The fast-starting CLI build (scripts/build-cli.js): the vendored h5wasm reads what the stock one reads,
// the bundled CLI answers exactly like the plain tsc output, and package files resolve from any depth.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import stock from 'h5wasm/node';
import { findPackageRoot, PACKAGE_ROOT, workerUrl } from '../src/packageRoot.js';
import { fixture, ROOT } from './helpers.js';

const VENDOR = path.join(ROOT, 'dist', 'vendor', 'h5wasm');
const BUNDLE_MAIN = path.join(ROOT, 'dist', 'cli-bundle', 'main.js');
const PLAIN_MAIN = path.join(ROOT, 'dist', 'cli', 'main.js');

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

describe('package files', () => {
  it('resolve to the package root from src/, dist/ and dist/cli-bundle/', () => {
    const root = pathToFileURL(ROOT + path.sep).href;
    expect(PACKAGE_ROOT.href).toBe(root);
    for (const from of ['src/io/hdf5.ts', 'dist/io/hdf5.js', 'dist/cli-bundle/chunk-X.js']) {
      expect(findPackageRoot(pathToFileURL(path.join(ROOT, from))).href, from).toBe(root);
    }
    expect(fs.existsSync(workerUrl('ops/tallyWorker.js'))).toBe(true);
    expect(fs.existsSync(workerUrl('train/poolWorker.js'))).toBe(true);
  });
});
