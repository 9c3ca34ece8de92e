/** `import-config`: the Python subset read exactly (and checked against CPython), unread statements listed, hostile configs never run, the mapping onto a manifest that `check` accepts, the report schema, and the cube_prios round trip with `suggest-prios --format elektronn`. */
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseElektronnConfig, type ParsedConfig } from '../src/core/elektronnConfig.js';
import { isLazyLabelError } from '../src/errors.js';
import { importConfig, type ImportConfigReport } from '../src/ops/importConfig.js';
import { suggestPrios } from '../src/ops/suggestPrios.js';
import { fixture, hasH5py, python, ROOT, runCli, schemaErrors, tmpDir } from './helpers.js';

const HOME = '/home/annotator';
const read = (src: string): ParsedConfig => parseElektronnConfig(src, { home: HOME });
const values = (src: string): Record<string, unknown> => read(src).values;
const pyType = (src: string, name: string): string | undefined => read(src).py.get(name)?.t;
const codes = (r: ImportConfigReport): string[] => r.findings.map((f) => f.code);
const errorCodes = (r: ImportConfigReport): string[] => r.findings.filter((f) => f.severity === 'error').map((f) => f.code);

/** Write a config into a fresh temp dir; returns the dir and the config path. */
function configIn(text: string, name = 'config.py'): { dir: string; config: string; out: string } {
  const dir = tmpDir('lazylabel-import-');
  const config = path.join(dir, name);
  fs.writeFileSync(config, text);
  return { dir, config, out: path.join(dir, 'dataset.json') };
}

const MINIMAL = ["n_lab = 2", "data_path = '/data/'", "label_path = '/data/'", "d_files = [('raw_0.h5', 'raw'), ('raw_1.h5', 'raw')]", "l_files = [('lab_0.h5', 'lab'), ('lab_1.h5', 'lab')]"].join('\n');

describe('reading the Python subset (pure)', () => {
  it('strings: every quote style, raw strings, prefixes, escapes, implicit concatenation', () => {
    const v = values(
      [
        `a = 'single'`,
        `b = "double"`,
        `c = '''tri\nple'''`,
        `d = """it's"""`,
        String.raw`e = r'\d+\.h5'`,
        String.raw`f = R"C:\data\x"`,
        String.raw`g = r'a\'b'`,
        String.raw`h = u'caf\u00e9' U"!"`,
        String.raw`i = 'tab\tnl\nbs\\ q\' oct\101 hex\x42 keep\d'`,
        `j = 'raw_' "cube" '''_''' u'.h5'`,
        `k = ('/data/'\n     'em/'  # comment\n     'raw.h5')`,
        `l = ''`,
      ].join('\n'),
    );
    expect(v).toEqual({
      a: 'single',
      b: 'double',
      c: 'tri\nple',
      d: "it's",
      e: String.raw`\d+\.h5`,
      f: String.raw`C:\data\x`,
      g: String.raw`a\'b`,
      h: 'café!',
      i: 'tab\tnl\nbs\\ q\' octA hexB keep\\d',
      j: 'raw_cube_.h5',
      k: '/data/em/raw.h5',
      l: '',
    });
  });

  it('numbers: ints, floats, negative, scientific, other bases; int and float stay apart', () => {
    const src = ['a = 3', 'b = -7', 'c = 2.5', 'd = .5', 'e = 5.', 'f = 1e-3', 'g = -2.5E+4', 'h = 0x1F', 'i = 0o17', 'j = 0b101', 'k = 1_000', 'l = 10L', 'm = 10**12', 'n = -2**2', 'o = 4 * 24 * 3600', 'p = 7 // 2', 'q = -7 % 3', 'r = 7.0 / 2', 's = 6 / 3', 't = 1 + 0.5', 'u = 2 ** -1', 'v = 0.1 + 0.2'].join('\n');
    expect(values(src)).toEqual({ a: 3, b: -7, c: 2.5, d: 0.5, e: 5, f: 0.001, g: -25000, h: 31, i: 15, j: 5, k: 1000, l: 10, m: 1e12, n: -4, o: 345600, p: 3, q: 2, r: 3.5, s: 2, t: 1.5, u: 0.5, v: 0.1 + 0.2 });
    expect(pyType(src, 'a')).toBe('int');
    expect(pyType(src, 'e')).toBe('float');
    expect(pyType(src, 's')).toBe('float'); // Python 3 semantics for an exact division
    expect(pyType(src, 'm')).toBe('int');
  });

  it('integer division that differs between Python 2 and 3 is not guessed', () => {
    const r = read('a = 7 / 2\nb = 017\nc = 1j');
    expect(r.values).toEqual({});
    expect(r.unread.map((u) => u.line)).toEqual([1, 2, 3]);
    expect(r.unread[0]!.reason).toMatch(/Python 2 \(ELEKTRONN\) gives 3, Python 3 gives 3\.5/);
    expect(r.unread[1]!.reason).toMatch(/octal in Python 2/);
    expect(r.failed.get('a')).toMatchObject({ line: 1 });
  });

  it('tuples, lists, dicts, True/False/None, names of earlier assignments', () => {
    const v = values(
      [
        't0 = ()',
        't1 = (1,)',
        't2 = 1, 2',
        "l = [2,]",
        "n = [[4, 4, 1], (2, 2)]",
        "d = {'export_class': 1, 'k': {'c': None}, 3: 'three'}",
        'dc = dict(LR=0.005, momentum=0.90)',
        'b = [True, False, None]',
        "base = '/data/'",
        "raw = base + 'raw/'",
        'alias = t2',
      ].join('\n'),
    );
    expect(v).toEqual({ t0: [], t1: [1], t2: [1, 2], l: [2], n: [[4, 4, 1], [2, 2]], d: { export_class: 1, k: { c: null }, 3: 'three' }, dc: { LR: 0.005, momentum: 0.9 }, b: [true, false, null], base: '/data/', raw: '/data/raw/', alias: [1, 2] });
    expect(pyType('t = (1, 2)', 't')).toBe('tuple');
  });

  it("string '%' formatting: %i, %s_%i with a tuple, %05d, floats, flags, mappings", () => {
    const v = values(
      [
        "i = 2",
        "a = '%i' % i",
        "b = '%s_%i' % ('raw', i)",
        "c = 'cube_%05d.h5' % 42",
        "d = '%.3f|%e|%g|%g' % (2.0 / 3, 12345.678, 0.0001, 1e-5)",
        "e = '%x %X %#x %o' % (255, 255, 255, 8)",
        "f = '[%-5s][%5s][%+d][% d][%%]' % ('ab', 'ab', 3, 4)",
        "g = '%(name)s_%(n)02d' % {'name': 'cube', 'n': 7}",
        "h = '%r %s' % ('q', [1, 'a'])",
        "j = '%d' % 3.99",
        "k = '%.0f %.0f %.2f' % (0.5, 1.5, 0.125)",
      ].join('\n'),
    );
    expect(v).toMatchObject({ a: '2', b: 'raw_2', c: 'cube_00042.h5', d: '0.667|1.234568e+04|0.0001|1e-05', e: 'ff FF 0xff 10', f: '[ab   ][   ab][+3][ 4][%]', g: 'cube_07', h: "'q' [1, 'a']", j: '3', k: '0 2 0.12' });
    const r = read("a = '%i %i' % (1,)\nb = '%i' % (1, 2)\nc = '%i' % 'x'");
    expect(r.unread.map((u) => [u.line, u.reason])).toEqual([
      [1, 'not enough arguments for format string'],
      [2, 'not all arguments converted during string formatting'],
      [3, "format 'i' needs a number, not 'str'"],
    ]);
  });

  it('str.format, f-strings and a few pure string methods', () => {
    const v = values(
      [
        "name = 'c'",
        "a = 'raw_{}_{}.h5'.format('x', 1)",
        "b = '{1}{0}{1}'.format('x', 'y')",
        "c = '{name}_{n:03d}'.format(name=name, n=5)",
        "d = f'{name}-{3 + 4:03d}-{0.5!r}-{{}}'",
        "e = '_'.join(['a', 'b']) + 'Raw'.upper() + ' x '.strip() + str(7).zfill(3)",
        "f = '/data/raw/'.replace('raw/', 'labels/')",
      ].join('\n'),
    );
    expect(v).toMatchObject({ a: 'raw_x_1.h5', b: 'yxy', c: 'c_005', d: 'c-007-0.5-{}', e: 'a_bRAWx007', f: '/data/labels/' });
  });

  it('+ and * on strings and lists', () => {
    expect(values("a = 'a' + 'b' * 3\nb = [1, 2] + [3]\nc = [1.0] * 3\nd = (1,) + (2,)\ne = 2 * 'ab'")).toEqual({ a: 'abbb', b: [1, 2, 3], c: [1, 1, 1], d: [1, 2], e: 'abab' });
  });

  it('list comprehensions over range(...) with start, stop, step, conditions, several for clauses', () => {
    const v = values(
      [
        "a = ['raw_%i.h5' % i for i in range(3)]",
        "b = [('barrier_int16_%i.h5' % i, 'lab') for i in range(1, 4)]",
        'c = [i for i in range(10, 0, -3)]',
        'd = [i * i for i in range(10) if i % 3 == 0]',
        "e = [(x, y) for x in range(2) for y in 'ab']",
        'f = [k + v for k, v in enumerate([10, 20])]',
        'g = list(range(3)) + list(xrange(2))',
        'h = range(2, 5)',
        'n = 4',
        "i = ['c%i' % i for i in range(n) if i != 2]",
      ].join('\n'),
    );
    expect(v).toEqual({
      a: ['raw_0.h5', 'raw_1.h5', 'raw_2.h5'],
      b: [['barrier_int16_1.h5', 'lab'], ['barrier_int16_2.h5', 'lab'], ['barrier_int16_3.h5', 'lab']],
      c: [10, 7, 4, 1],
      d: [0, 9, 36, 81],
      e: [[0, 'a'], [0, 'b'], [1, 'a'], [1, 'b']],
      f: [10, 21],
      g: [0, 1, 2, 0, 1],
      h: [2, 3, 4],
      n: 4,
      i: ['c0', 'c1', 'c3'],
    });
  });

  it('comments, line continuations (brackets and backslash), augmented assignments, unpacking, items, del', () => {
    const r = read(
      [
        '# a comment',
        'a = 1 + \\',
        '    2  # trailing',
        'b = [',
        "    'x',  # first",
        "    'y',",
        ']',
        "save_path = '~/CNN/'",
        "save_name = 'run'",
        "save_path += save_name + '/'",
        'x = y = 5',
        'u, (v, w) = 1, (2, 3)',
        "d = {'k': [0, 0]}",
        "d['k'][1] = 5",
        "b.append('z')",
        'tmp = 1',
        'del tmp',
        'del i  # the loop variable of Python 2',
        'p = 1; q = 2',
      ].join('\n'),
    );
    expect(r.values).toEqual({ a: 3, b: ['x', 'y', 'z'], save_path: '~/CNN/run/', save_name: 'run', x: 5, y: 5, u: 1, v: 2, w: 3, d: { k: [0, 5] }, p: 1, q: 2 });
    expect(r.unread).toEqual([]);
    expect(r.lines.get('a')).toBe(2);
    expect(r.lines.get('save_path')).toBe(10);
  });

  it('os.path.join / expanduser / basename are understood without running the import', () => {
    const r = read("import os\na = os.path.join('/data', 'em', 'raw.h5')\nb = os.path.expanduser('~/em/')\nc = os.path.basename('/x/y.h5')\nd = os.path.join('/a', '/abs')");
    expect(r.values).toEqual({ a: '/data/em/raw.h5', b: `${HOME}/em/`, c: 'y.h5', d: '/abs' });
    expect(r.unread.map((u) => [u.line, u.text])).toEqual([[1, 'import os']]);
  });

  it('everything else is listed with line numbers, text and reason, and never stops the reading', () => {
    const src = [
      'import numpy as np', // 1
      'n_lab = 3', // 2
      'def helper(x):', // 3
      '    return x * 2', // 4
      '', // 5
      'if n_lab > 2:', // 6
      '    cube_prios = [1, 2]', // 7
      'else:', // 8
      '    cube_prios = None', // 9
      'weights = np.ones(3)', // 10
      'print "python 2"', // 11
      'x = lambda: 1', // 12
      'y = {1, 2}', // 13
      "z = 'ok'", // 14
      'w = undefined_name + 1', // 15
      'v = w', // 16
      '    indented = 1', // 17
      "s = 'unterminated", // 18
      'after = True', // 19
    ].join('\n');
    const r = read(src);
    expect(r.values).toEqual({ n_lab: 3, z: 'ok', after: true });
    expect(r.unread.map((u) => [u.line, u.endLine, u.text])).toEqual([
      [1, 1, 'import numpy as np'],
      [3, 4, 'def helper(x):'],
      [6, 9, 'if n_lab > 2:'],
      [10, 10, 'weights = np.ones(3)'],
      [11, 11, 'print "python 2"'],
      [12, 12, 'x = lambda: 1'],
      [13, 13, 'y = {1, 2}'],
      [15, 15, 'w = undefined_name + 1'],
      [16, 16, 'v = w'],
      [17, 17, 'indented = 1'],
      [18, 18, "s = 'unterminated"],
    ]);
    const reason = (line: number): string => r.unread.find((u) => u.line === line)!.reason;
    expect(reason(1)).toMatch(/import statements are never executed/);
    expect(reason(3)).toMatch(/function definition skipped \(lines 3-4\)/);
    expect(reason(6)).toMatch(/conditional block skipped \(lines 6-9\)/);
    expect(reason(10)).toMatch(/np\.ones\(3\) is a call, and calls are never executed/);
    expect(reason(11)).toMatch(/print/);
    expect(reason(12)).toMatch(/lambda/);
    expect(reason(13)).toMatch(/set literals/);
    expect(reason(15)).toMatch(/name 'undefined_name' is not defined/);
    expect(reason(16)).toMatch(/'w' could not be read \(line 15/);
    expect(reason(17)).toMatch(/unexpected indentation/);
    expect(reason(18)).toMatch(/string not closed/);
    // the skipped block assigns cube_prios: recorded, so the mapping can warn about it
    expect(r.touched.get('cube_prios')).toEqual([6]);
    expect(r.failed.get('w')).toMatchObject({ line: 15 });
    expect(r.failed.get('weights')).toMatchObject({ line: 10 });
  });

  it('an assignment that cannot be read makes the variable unknown instead of keeping a stale value', () => {
    const r = read("d_files = [('a.h5', 'raw')]\nd_files = get_files()");
    expect(r.values.d_files).toBeUndefined();
    expect(r.failed.get('d_files')).toMatchObject({ line: 2 });
  });

  it('the idioms fixture reads exactly as CPython runs it', () => {
    const text = fs.readFileSync(fixture('elektronn', 'idioms.py'), 'utf8');
    const r = parseElektronnConfig(text, { home: process.env.HOME ?? HOME });
    expect(r.unread.map((u) => u.text)).toEqual(['import os']);
    expect(r.values).toMatchObject({
      s_raw: String.raw`\d+\.h5`,
      s_concat: String.raw`raw_cube_\0.h5`,
      n_sci2: -25000,
      p_05d: 'cube_00042.h5',
      r_tuples: [['raw_1.h5', 'raw'], ['raw_2.h5', 'raw'], ['raw_3.h5', 'raw']],
      item: { k: 2, new: [0, 5] },
    });
    if (!hasH5py) return; // Debian's python3 is what CI has; skip the comparison without it
    const cpython = JSON.parse(
      python(`import json, types\ng = {}\nexec(open(${JSON.stringify(fixture('elektronn', 'idioms.py'))}).read(), g)\nprint(json.dumps({k: v for k, v in g.items() if not k.startswith('__') and not isinstance(v, types.ModuleType)}))`),
    ) as Record<string, unknown>;
    expect(r.values).toEqual(cpython);
  });

  it.skipIf(!hasH5py)('number formatting matches CPython on random numbers', () => {
    const doubles = fc.sample(fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.double({ min: -1e6, max: 1e6, noNaN: true }), fc.integer({ min: -1e6, max: 1e6 }).map((i) => i / 8)), { numRuns: 200, seed: 20261125 });
    const ints = fc.sample(fc.oneof(fc.integer({ min: -100000, max: 100000 }), fc.integer()), { numRuns: 100, seed: 7 });
    const floatFormats = ["'%.3f'", "'%10.3f'", "'%e'", "'%-14.3e|'", "'%g'", "'%.0f'", "'%12.4g'", "'%.15g'", "'%.17g'", "'%s'", "'%r'", "'%+.2e'", "'%#g'", "'%d'", "'{:.2e}'.format", "'{:g}'.format", "'{:.5}'.format", "'{:.0}'.format", "'{:>10.1%}'.format", "'{:+09.3f}'.format", "'{}'.format", "'{:E}'.format"];
    const intFormats = ["'%i'", "'%05d'", "'%-6d|'", "'%+d'", "'%x'", "'%#o'", "'%.3d'", "'%s'", "'{:03d}'.format", "'{:x}'.format", "'{:#b}'.format", "'{:^9}'.format", "'{:,}'.replace(',', '').format", "'{:.2f}'.format", "'{:e}'.format"];
    const lines: string[] = [];
    const add = (name: string, f: string, lit: string): void => {
      lines.push(f.endsWith('.format') ? `${name} = ${f}(${lit})` : `${name} = ${f} % ${lit}`);
    };
    doubles.forEach((x, i) => {
      const lit = Object.is(x, -0) ? '-0.0' : String(x).includes('e') || String(x).includes('.') ? String(x) : `${x}.0`;
      floatFormats.forEach((f, j) => add(`v_${i}_${j}`, f, lit));
    });
    ints.forEach((x, i) => intFormats.forEach((f, j) => add(`v_i${i}_${j}`, f, String(x))));
    const src = lines.join('\n');
    const ours = read(src);
    expect(ours.unread).toEqual([]);
    const file = path.join(tmpDir('lazylabel-fmt-'), 'formats.py'); // too long for a command-line argument
    fs.writeFileSync(file, src);
    const cpython = JSON.parse(python(`import json\ng = {}\nexec(open(${JSON.stringify(file)}).read(), g)\nprint(json.dumps({k: v for k, v in g.items() if k.startswith('v_')}))`)) as Record<string, unknown>;
    expect(ours.values).toEqual(cpython);
  });
});

describe('hostile configs are never run', () => {
  it('imports, exec, eval, __import__, open, os.system, subprocess: listed, no side effect', () => {
    const dir = tmpDir('lazylabel-hostile-');
    const config = path.join(dir, 'hostile_exec.py');
    fs.copyFileSync(fixture('elektronn', 'hostile_exec.py'), config);
    const r = runCli(['import-config', config, '-o', path.join(dir, 'dataset.json'), '--json'], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as ImportConfigReport;
    expect(schemaErrors('import-config-report', report)).toEqual([]);
    // nothing the config asks for happened, wherever it would have happened
    for (const where of [dir, ROOT, fixture('elektronn'), process.cwd()]) expect(fs.readdirSync(where).filter((f) => f.startsWith('PWNED'))).toEqual([]);
    const hostileLines = fs
      .readFileSync(config, 'utf8')
      .split('\n')
      .flatMap((l, i) => (/PWNED|^import|^def|^if|^for|side_effect\(\)/.test(l) && !l.startsWith('#') && !l.startsWith(' ') ? [i + 1] : []));
    expect(report.unread.map((u) => u.line)).toEqual(expect.arrayContaining(hostileLines));
    for (const u of report.unread) expect(u.reason).toMatch(/never executed|not supported|skipped|not run/);
    expect(report.unread.find((u) => u.text.startsWith('__import__'))!.reason).toMatch(/calls are never executed/);
    // and the plain data settings after all that are still imported
    expect(report.ok).toBe(true);
    expect(report.cubes.map((c) => [c.name, c.valid])).toEqual([
      ['lab_0', false],
      ['lab_1', true],
    ]);
  });

  it('memory and time bombs are refused quickly, and the rest is still read', () => {
    const t0 = Date.now();
    const r = parseElektronnConfig(fs.readFileSync(fixture('elektronn', 'hostile_resources.py'), 'utf8'));
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(r.values).toEqual({ n_lab: 2, d_files: [['raw.h5', 'raw']], l_files: [['lab.h5', 'lab']], data_path: '/data/', label_path: '/data/' });
    const reasons = Object.fromEntries(r.unread.map((u) => [u.text.split(' ')[0], u.reason]));
    expect(reasons).toMatchObject({
      huge_string: expect.stringMatching(/too long/),
      huge_int: expect.stringMatching(/too large/),
      huge_range: expect.stringMatching(/too large/),
      aliased: expect.stringMatching(/too large to import/),
      busy: expect.stringMatching(/too much computation/),
      deep: expect.stringMatching(/nested too deeply/),
      'self_ref.append(self_ref)': expect.stringMatching(/contains itself/),
    });
  });
});

describe('mapping onto a manifest', () => {
  it('a realistic ELEKTRONN lazy-label config: every mapped field, prios of training cubes in order', async () => {
    const { dir, out } = configIn('');
    const report = await importConfig({ config: fixture('elektronn', 'neuro_3d_lazy_config.py'), output: out, home: dir });
    expect(report.ok).toBe(true);
    expect(report.written).toBe(true);
    expect(report.dialect).toBe('elektronn');
    const manifest = JSON.parse(fs.readFileSync(out, 'utf8')) as Record<string, unknown>;
    expect(manifest).toEqual(report.manifest);
    expect(schemaErrors('manifest', manifest)).toEqual([]);
    const cube = (name: string, i: number, raw: string, extra: object = {}): object => ({ name, raw: `lazy_em/raw/${raw}`, raw_key: 'raw', label: `lazy_em/labels/${name}.h5`, label_key: 'lab', ...extra, ...(i >= 0 ? {} : {}) });
    expect(manifest).toEqual({
      n_lab: 3,
      lazy_labels: true,
      example_ignore_threshold: 0.6,
      class_weights: [0.5, 1, 1.5],
      patch_size: [96, 96, 16],
      cubes: [
        cube('barrier_int16_0', 0, 'raw_0.h5', { prio: 1 }),
        cube('barrier_int16_1', 1, 'raw_1.h5', { prio: 1 }),
        cube('barrier_int16_2', 2, 'raw_2.h5', { prio: 1 }),
        cube('barrier_int16_3', 3, 'raw_3.h5', { valid: true }),
        cube('nucleus_lazy', 4, 'nucleus_raw.h5', { prio: 0.25 }),
      ],
    });
    expect(report.mapped).toMatchObject({
      n_lab: 'n_lab',
      d_files: expect.stringContaining('cubes[].raw'),
      l_files: expect.stringContaining('cubes[].label'),
      data_path: expect.any(String),
      label_path: expect.any(String),
      valid_cubes: 'cubes[].valid',
      cube_prios: expect.stringContaining('cubes[].prio'),
      lazy_labels: 'lazy_labels',
      example_ignore_threshold: 'example_ignore_threshold',
      class_weights: 'class_weights',
      desired_input: 'patch_size',
    });
    expect(report.unread).toEqual([{ line: 7, text: 'import os', reason: 'import statements are never executed' }]);
    expect(codes(report).filter((c) => c !== 'file-missing' && c !== 'config-patch')).toEqual([]);
    expect(schemaErrors('import-config-report', report)).toEqual([]);
  });

  it.skipIf(!hasH5py)('the imported manifest passes `lazylabel check --manifest` on real h5py files', () => {
    const home = tmpDir('lazylabel-home-');
    python(`
import os, h5py, numpy as np
rng = np.random.default_rng(7)
raw_dir = os.path.join(${JSON.stringify(home)}, 'lazy_em', 'raw')
lab_dir = os.path.join(${JSON.stringify(home)}, 'lazy_em', 'labels')
os.makedirs(raw_dir); os.makedirs(lab_dir)
shape = (24, 24, 8)
def raw(name):
    with h5py.File(os.path.join(raw_dir, name), 'w') as f:
        f.create_dataset('raw', data=rng.integers(0, 256, size=shape).astype(np.uint8))
for i in range(4):
    raw('raw_%i.h5' % i)
    with h5py.File(os.path.join(lab_dir, 'barrier_int16_%i.h5' % i), 'w') as f:
        f.create_dataset('lab', data=rng.integers(-1, 3, size=shape).astype(np.int16), chunks=(12, 12, 4), compression='gzip')
raw('nucleus_raw.h5')
with h5py.File(os.path.join(lab_dir, 'nucleus_lazy.h5'), 'w') as f:
    f.create_dataset('lab', data=np.full(shape, -1, np.int16))
    f.create_dataset('info', data=np.array([[1, 1, 0], [0, 0, 1]], np.int16))
`);
    const outDir = path.join(home, 'manifests');
    fs.mkdirSync(outDir);
    const out = path.join(outDir, 'dataset.json');
    const imp = runCli(['import-config', fixture('elektronn', 'neuro_3d_lazy_config.py'), '-o', out], { env: { HOME: home } });
    expect(imp.code, imp.stdout + imp.stderr).toBe(0);
    expect(imp.stdout).toMatch(/not read \(1 statement; nothing in it was run\):\n {2}line 7: import os/);
    expect(imp.stdout).toMatch(/-> OK/);
    expect(imp.stdout).not.toMatch(/file-missing/);
    const manifest = JSON.parse(fs.readFileSync(out, 'utf8')) as { cubes: { raw: string }[] };
    expect(manifest.cubes[0]!.raw).toBe('../lazy_em/raw/raw_0.h5');
    const check = runCli(['check', '--manifest', out, '--json']);
    expect(check.code, check.stdout + check.stderr).toBe(0);
    const rep = JSON.parse(check.stdout) as { ok: boolean; files: { name: string; status: string }[] };
    expect(rep.ok).toBe(true);
    expect(rep.files.map((f) => f.name)).toEqual(['barrier_int16_0', 'barrier_int16_1', 'barrier_int16_2', 'barrier_int16_3', 'nucleus_lazy']);
  });

  it('an ELEKTRONN2 config (data_init_kwargs) needs --n-lab and then maps with os.path.join', async () => {
    const { dir, out } = configIn('');
    const without = await importConfig({ config: fixture('elektronn', 'elektronn2_neuro3d.py'), output: out, home: dir });
    expect(without.ok).toBe(false);
    expect(without.written).toBe(false);
    expect(fs.existsSync(out)).toBe(false);
    expect(without.findings.find((f) => f.severity === 'error')!.message).toMatch(/n_lab is not set in the config; ELEKTRONN2 configs set the number of classes in create_model\(\): pass --n-lab/);
    expect(schemaErrors('import-config-report', without)).toEqual([]);
    const r = await importConfig({ config: fixture('elektronn', 'elektronn2_neuro3d.py'), output: out, home: dir, nLab: 2 });
    expect(r.ok).toBe(true);
    expect(r.dialect).toBe('elektronn2');
    expect(r.manifest).toMatchObject({ n_lab: 2, example_ignore_threshold: 0.5 });
    expect(r.cubes.map((c) => [c.raw, c.label, c.valid])).toEqual([
      ['neuro_data_zxy/raw_0.h5', 'neuro_data_zxy/barrier_int16_0.h5', false],
      ['neuro_data_zxy/raw_1.h5', 'neuro_data_zxy/barrier_int16_1.h5', false],
      ['neuro_data_zxy/raw_2.h5', 'neuro_data_zxy/barrier_int16_2.h5', true],
    ]);
    expect(r.mapped).toMatchObject({ "data_init_kwargs['d_files']": expect.any(String), "data_batch_args['ignore_thresh']": 'example_ignore_threshold', '--n-lab': 'n_lab' });
    expect(r.unread.map((u) => [u.line, u.text])).toEqual([
      [48, 'def create_model():'],
      [58, "if __name__ == '__main__':"],
    ]);
  });

  it('paths: ELEKTRONN concatenates data_path and file names, ~ is expanded, relative ones resolve against the config folder', async () => {
    const { dir, config, out } = configIn(MINIMAL.replace("data_path = '/data/'", "data_path = 'cubes/'").replace("label_path = '/data/'", "label_path = '~/labels'"));
    const r = await importConfig({ config, output: out, home: '/home/x' });
    expect(r.ok).toBe(true);
    expect(r.cubes.map((c) => [c.raw, path.resolve(dir, c.label)])).toEqual([
      ['cubes/raw_0.h5', '/home/x/labelslab_0.h5'],
      ['cubes/raw_1.h5', '/home/x/labelslab_1.h5'],
    ]);
    expect(r.findings.filter((f) => f.code === 'config-path').map((f) => f.message)).toEqual([
      expect.stringMatching(/data_path = "cubes\/" is relative: resolved against/),
      expect.stringMatching(/label_path = "~\/labels" has no trailing '\/'/),
    ]);
    const elsewhere = tmpDir('lazylabel-base-');
    const b = await importConfig({ config, output: out, home: '/home/x', baseDir: elsewhere, force: true });
    expect(path.resolve(dir, b.cubes[0]!.raw)).toBe(path.join(elsewhere, 'cubes', 'raw_0.h5'));
  });

  it('desired_input: scalar, zchxy_order, n_dim 2; patch_size variables win', async () => {
    const run = async (extra: string): Promise<ImportConfigReport> => {
      const { config, out } = configIn(`${MINIMAL}\n${extra}`);
      return importConfig({ config, output: out, write: false });
    };
    expect((await run('n_dim = 3\ndesired_input = 64')).manifest!.patch_size).toEqual([64, 64, 64]);
    expect((await run('n_dim = 3\ndesired_input = [96, 96, 16]\nzchxy_order = True')).manifest!.patch_size).toEqual([16, 96, 96]);
    const twoD = await run('n_dim = 2\ndesired_input = [128, 128]');
    expect(twoD.manifest!.patch_size).toBeUndefined();
    expect(twoD.findings.find((f) => f.code === 'config-patch')!.message).toMatch(/n_dim = 2/);
    expect((await run('patch_size = [8, 32, 32]\nn_dim = 3\ndesired_input = 100')).manifest!.patch_size).toEqual([8, 32, 32]);
  });

  it('refuses contradictions and writes nothing: prio count, list lengths, n_lab, mode, unreadable settings', async () => {
    const cases: [string, string, RegExp][] = [
      ['valid_cubes = [1]\ncube_prios = [1.0, 0.5]', 'config-cube-prios', /cube_prios has 2 values but there are 1 training cubes \(one per file, but ELEKTRONN applies cube_prios to the training cubes only/],
      ["l_files = [('lab_0.h5', 'lab')]", 'config-file-lists', /d_files has 2 entries but l_files has 1/],
      ['n_lab = None', 'config-n-lab', /n_lab = None .* pass --n-lab/],
      ["mode = 'img-scalar'", 'config-mode', /img-img/],
      ['d_files = sorted(glob.glob("/data/*.h5"))', 'config-unreadable', /d_files could not be read \(line 6: glob\.glob\("\/data\/\*\.h5"\) is a call/],
      ["d_files = [('raw_0.h5', 'raw'), 'raw_1.h5']", 'config-value', /d_files\[1\] must be a \(file name, dataset\) tuple/],
      ['class_weights = [1.0, -1.0]', 'manifest-schema', /class_weights\[1\]/],
      ['class_weights = [1.0] * 3', 'manifest-class-weights', /class_weights has 3 entries but n_lab is 2/],
      ["l_files = [('lab.h5', 'lab'), ('lab.h5', 'lab')]", 'manifest-duplicate-cube', /repeats/],
    ];
    for (const [extra, code, message] of cases) {
      const { config, out } = configIn(`${MINIMAL}\n${extra}`);
      const r = await importConfig({ config, output: out });
      expect(errorCodes(r), extra).toContain(code);
      expect(r.findings.find((f) => f.code === code)!.message, extra).toMatch(message);
      expect(r.ok).toBe(false);
      expect(fs.existsSync(out)).toBe(false);
      expect(schemaErrors('import-config-report', r), extra).toEqual([]);
    }
  });

  it('warns when skipped code may change a mapped setting, and about valid_cubes out of range', async () => {
    const { config, out } = configIn(`${MINIMAL}\nvalid_cubes = [1, 5]\nif fancy:\n    l_files = l_files[::-1]\ncube_prios = [1.0]`);
    const r = await importConfig({ config, output: out });
    expect(r.ok).toBe(true);
    expect(r.findings.find((f) => f.code === 'config-maybe-changed')!.message).toMatch(/l_files \(line 5\) may be changed by code lazylabel skips \(line 7\)/);
    expect(r.findings.find((f) => f.code === 'config-valid-cubes')!.message).toMatch(/valid_cubes lists 5/);
    expect(r.cubes.map((c) => [c.valid, c.prio])).toEqual([
      [false, 1],
      [true, null],
    ]);
  });
});

describe('CLI', () => {
  it('--force to replace, never the config itself; --dry-run writes nothing; usage errors exit 2', async () => {
    const { config, out } = configIn(MINIMAL);
    expect(runCli(['import-config', config, '-o', out, '--dry-run']).code).toBe(0);
    expect(fs.existsSync(out)).toBe(false);
    expect(runCli(['import-config', config, '-o', out]).code).toBe(0);
    const again = runCli(['import-config', config, '-o', out]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/already exists \(pass --force to replace it\)/);
    expect((await importConfig({ config, output: out, force: true })).written).toBe(true);
    const self = runCli(['import-config', config, '-o', config, '--force']);
    expect(self.code).toBe(2);
    expect(self.stderr).toMatch(/is also an input/);
    expect(fs.readFileSync(config, 'utf8')).toBe(MINIMAL);
    await expect(importConfig({ config: path.join(path.dirname(config), 'nope.py'), output: out, force: true })).rejects.toSatisfy((e: unknown) => isLazyLabelError(e) && e.exitCode === 1 && /config not found/.test(e.message));
    await expect(importConfig({ config, output: out, nLab: 0 })).rejects.toSatisfy((e: unknown) => isLazyLabelError(e) && e.exitCode === 2);
  });

  it('round trip: the cube_prios line of `suggest-prios --format elektronn` imports back to the same prios', async () => {
    const manifestOk = fixture('check', 'manifest_ok.json');
    for (const lazyShare of [null, 0.2]) {
      const line = runCli(['suggest-prios', '--manifest', manifestOk, '--format', 'elektronn', ...(lazyShare === null ? [] : ['--lazy-share', String(lazyShare)])]);
      expect(line.code, line.stderr).toBe(0);
      expect(line.stdout).toMatch(/^cube_prios = \[[^\]]+\]\n$/);
      const prios = (await suggestPrios({ manifest: manifestOk, lazyShare })).cubePrios!;
      // manifest_ok.json's cubes in order; dense_offset (index 1) is its validation cube
      const config = [
        '# the cubes of fixtures/check/manifest_ok.json',
        'n_lab = 3',
        'lazy_labels = True',
        `data_path = ${JSON.stringify(fixture('check') + '/')}`,
        'label_path = data_path',
        "d_files = [('pair_raw_same.h5', 'raw'), ('pair_raw_larger.h5', 'raw'), ('lazy_all_ignore.h5', 'lab')]",
        "l_files = [('pair_labels.h5', 'lab'), ('pair_labels_inner.h5', 'lab'), ('lazy_all_ignore.h5', 'lab')]",
        'valid_cubes = [1]',
        'cube_prios = None  # replaced by the suggest-prios line',
      ].join('\n');
      const spliced = config.replace(/^cube_prios = None.*$/m, line.stdout.trim());
      expect(spliced).toContain(line.stdout.trim());
      const { config: cfg, out } = configIn(spliced);
      const r = lazyShare === null ? (JSON.parse(runCli(['import-config', cfg, '-o', out, '--json']).stdout) as ImportConfigReport) : await importConfig({ config: cfg, output: out });
      expect(r.ok).toBe(true);
      expect(schemaErrors('import-config-report', r)).toEqual([]);
      const written = JSON.parse(fs.readFileSync(out, 'utf8')) as { cubes: { prio?: number; valid?: boolean }[] };
      const imported = written.cubes.filter((c) => !c.valid).map((c) => c.prio);
      expect(imported).toEqual(prios);
      imported.forEach((p, i) => expect(Object.is(p, prios[i])).toBe(true)); // bit for bit
      expect(written.cubes[1]).toMatchObject({ valid: true });
      expect(written.cubes[1]!.prio).toBeUndefined();
    }
  });

  it('prints the table, the mapping and the unread lines for people', () => {
    const { config, out } = configIn(`import os\n${MINIMAL}\nvalid_cubes = [1]\nos.makedirs('x')`);
    const r = runCli(['import-config', config, '-o', out]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('cube   raw');
    expect(r.stdout).toMatch(/lab_1 +\.\.\/\.\.\/.*data\/raw_1\.h5:raw +.*lab_1\.h5:lab +yes +-/);
    expect(r.stdout).toMatch(/mapped:\n {2}n_lab +-> n_lab/);
    expect(r.stdout).toMatch(/line 1: import os\n {4}import statements are never executed\n {2}line 8: os\.makedirs\('x'\)\n {4}os\.makedirs\('x'\) is a call, and calls are never executed/);
    expect(r.stdout).toMatch(/wrote .*dataset\.json -> OK\n$/);
  });
});
