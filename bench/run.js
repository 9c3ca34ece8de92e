#!/usr/bin/env node
// `npm run bench`: time lazylabel's data commands (check, convert, suggest-prios) as whole processes
// against h5py + NumPy reference scripts on generated EM-like volumes. See bench/README.md.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GENERATOR_VERSION, LAYOUTS, N_LAB, generateMain, generatePrios } from './lib/generate.js';
import { PYTHON, cleanupScratch, median, rssMethod, runMeasured } from './lib/measure.js';

// the reference scripts import reference/_common.py: keep __pycache__ out of the work tree
process.env.PYTHONDONTWRITEBYTECODE = '1';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
/** The CLI the bench runs: a private snapshot of bin/ + dist/ taken at start (see snapshotPackage). */
let BIN = path.join(root, 'bin', 'lazylabel.js');
const REF = path.join(here, 'reference');

const HELP = `usage: node bench/run.js [options]      (npm run bench -- [options])

  --quick            256x256x128 volume and 3 timed runs: a smoke run of about a minute
  --repeat N         timed runs per tool and case (default 5; 3 with --quick), after --warmup runs
  --warmup N         untimed runs first (default 1)
  --only LIST        cases to run, comma-separated: check,convert,prios (default all)
  --data DIR         keep generated data in DIR and reuse it next time (default: a temporary folder, removed)
  --big              also run the >4 GiB case (2048x1536x704 int16 = 4.1 GiB, chunked 64^3 gzip 1), once per tool
  --big-only         run only the big case
  --big-shape XxYxZ  shape of the big case
  --no-ref           skip the h5py reference scripts (and the h5py-written layouts)
  --label NAME       results file bench/results/<date>-NAME.json (default local; -quick/-big appended)
  --no-save          do not write a results file
  --build            compile src/ (npx tsc) into the bench's private copy of the CLI instead of copying dist/
  --build-head       compile the committed code (git archive HEAD) into the private copy: reproducible numbers
  --seed N           data seed (default 42)
  --keep-env         keep NODE_EXTRA_CA_CERTS for the timed runs (by default it is removed: see bench/README.md)
`;

function parseArgs(argv) {
  const o = { quick: false, repeat: null, warmup: 1, only: ['check', 'convert', 'prios'], data: null, big: false, bigOnly: false, bigShape: [2048, 1536, 704], ref: true, label: 'local', save: true, build: false, buildHead: false, seed: 42, keepEnv: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--quick') o.quick = true;
    else if (a === '--repeat') o.repeat = Number(next());
    else if (a === '--warmup') o.warmup = Number(next());
    else if (a === '--only') o.only = next().split(',').map((s) => (s.trim() === 'suggest-prios' ? 'prios' : s.trim())).filter(Boolean);
    else if (a === '--data') o.data = path.resolve(next());
    else if (a === '--big') o.big = true;
    else if (a === '--big-only') o.big = o.bigOnly = true;
    else if (a === '--big-shape') o.bigShape = next().split('x').map(Number);
    else if (a === '--no-ref') o.ref = false;
    else if (a === '--label') o.label = next();
    else if (a === '--no-save') o.save = false;
    else if (a === '--build') o.build = true;
    else if (a === '--build-head') o.buildHead = true;
    else if (a === '--seed') o.seed = Number(next());
    else if (a === '--keep-env') o.keepEnv = true;
    else if (a === '--help' || a === '-h') {
      process.stdout.write(HELP);
      process.exit(0);
    } else throw new Error(`unknown option ${a}\n\n${HELP}`);
  }
  o.repeat ??= o.quick ? 3 : 5;
  for (const c of o.only) if (!['check', 'convert', 'prios'].includes(c)) throw new Error(`--only: unknown case ${c} (check, convert, prios)`);
  if (!(o.repeat >= 1) || !(o.warmup >= 0)) throw new Error('--repeat must be >= 1 and --warmup >= 0');
  if (o.bigShape.length !== 3 || o.bigShape.some((n) => !(n >= 64))) throw new Error('--big-shape takes XxYxZ, each >= 64');
  return o;
}

const log = (s) => process.stderr.write(s + '\n');
const fmtShape = (s) => s.join('x');

function pythonFacts() {
  const r = spawnSync(PYTHON, ['-c', 'import sys, h5py, numpy; print(sys.version.split()[0], h5py.__version__, numpy.__version__, h5py.version.hdf5_version)'], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  const [python, h5py, numpy, hdf5] = r.stdout.trim().split(' ');
  return { python, h5py, numpy, hdf5 };
}

function machineFacts(py, method) {
  const cpus = os.cpus();
  const pkg = (p) => JSON.parse(fs.readFileSync(p, 'utf8')).version;
  const git = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' });
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    lazylabel: pkg(path.join(root, 'package.json')),
    commit: git.status === 0 ? git.stdout.trim() : null,
    h5wasm: pkg(path.join(root, 'node_modules', 'h5wasm', 'package.json')),
    ...(py ? { python: py.python, h5py: py.h5py, numpy: py.numpy, hdf5: py.hdf5 } : { python: null }),
    rssMethod: method === 'gnu-time' ? '/usr/bin/time -v' : 'process.resourceUsage().maxRSS / resource.getrusage probe',
  };
}

/** Newest mtime under a folder (to warn about a dist/ older than src/). */
function newest(dir) {
  let t = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : fs.statSync(p).mtimeMs);
  }
  return t;
}

/**
 * A private, runnable copy of the package (bin/, dist/, schemas/, package.json; node_modules linked), so that
 * a rebuild of the shared dist/ during a long run (npm test, another checkout user) cannot change or break
 * the CLI half-way. With --build, dist/ is compiled from src/ straight into the snapshot (the shared dist/
 * is left alone). The snapshot must answer `--version` before the bench starts.
 */
/** The rest of `npm run build` after tsc, in the snapshot: prebuilt validators and the bundled CLI (what users run). */
function finishBuild(snap) {
  for (const script of ['build-validators.js', 'build-cli.js']) {
    const r = spawnSync(process.execPath, [path.join(snap, 'scripts', script)], { cwd: snap, stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`scripts/${script} failed in the snapshot`);
  }
}

function snapshotPackage(o, into) {
  const snap = path.join(into, 'lazylabel');
  fs.mkdirSync(snap, { recursive: true });
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(snap, 'node_modules'), 'dir');
  if (o.buildHead) {
    // the committed code only: git archive HEAD, compiled in the snapshot
    log('building HEAD: git archive HEAD | tar -x, npx tsc -p tsconfig.json (in a private folder)');
    const tar = spawnSync('sh', ['-c', `git archive HEAD bin schemas scripts src package.json tsconfig.json | tar -x -C '${snap}'`], { cwd: root, stdio: 'inherit' });
    if (tar.status !== 0) throw new Error('git archive HEAD failed');
    const r = spawnSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: snap, stdio: 'inherit' });
    if (r.status !== 0) log('note: tsc reported errors (files were still emitted)');
    finishBuild(snap);
    const bin = path.join(snap, 'bin', 'lazylabel.js');
    const ok = spawnSync(process.execPath, [bin, 'check', '--help'], { encoding: 'utf8' });
    if (ok.status !== 0) throw new Error(`HEAD's CLI does not start:\n${ok.stderr.slice(-800)}`);
    return bin;
  }
  for (const p of ['bin', 'schemas', 'package.json']) fs.cpSync(path.join(root, p), path.join(snap, p), { recursive: true });
  if (o.build) {
    log('building: npx tsc -p tsconfig.json --outDir <snapshot>/dist');
    const r = spawnSync('npx', ['tsc', '-p', 'tsconfig.json', '--outDir', path.join(snap, 'dist')], { cwd: root, stdio: 'inherit' });
    if (r.status !== 0) log('note: tsc reported errors (files were still emitted)');
    fs.cpSync(path.join(root, 'scripts'), path.join(snap, 'scripts'), { recursive: true });
    finishBuild(snap);
  } else {
    const main = path.join(root, 'dist', 'cli', 'main.js');
    if (!fs.existsSync(main)) throw new Error('dist/ is missing: build first (npx tsc -p tsconfig.json), or pass --build');
    if (newest(path.join(root, 'src')) > fs.statSync(main).mtimeMs) log('note: src/ has changes newer than dist/; the bench runs dist/ as it is (pass --build to compile src/ into a private copy)');
    fs.cpSync(path.join(root, 'dist'), path.join(snap, 'dist'), { recursive: true });
  }
  const bin = path.join(snap, 'bin', 'lazylabel.js');
  for (let attempt = 0; ; attempt++) {
    const r = spawnSync(process.execPath, [bin, 'check', '--help'], { encoding: 'utf8' });
    if (r.status === 0) break;
    if (attempt >= 2 || o.build) throw new Error(`the CLI in dist/ does not start (is a build half-way?):\n${r.stderr.slice(-800)}`);
    log('dist/ does not start (a build may be under way); copying it again in 10 s');
    spawnSync('sleep', ['10']);
    fs.rmSync(path.join(snap, 'dist'), { recursive: true, force: true });
    fs.cpSync(path.join(root, 'dist'), path.join(snap, 'dist'), { recursive: true });
  }
  return bin;
}

// ---------------------------------------------------------------- data

/** Generate (or reuse) a data folder; `make` writes it. A stamp file records what is there. */
async function ensure(dir, stamp, make) {
  const file = path.join(dir, '.bench-stamp.json');
  const want = JSON.stringify({ ...stamp, version: GENERATOR_VERSION });
  const genFile = path.join(dir, '.bench-generation.json');
  if (fs.existsSync(file) && fs.readFileSync(file, 'utf8') === want) {
    // what the first generation measured, kept beside the data
    const saved = fs.existsSync(genFile) ? JSON.parse(fs.readFileSync(genFile, 'utf8')) : {};
    return { ...saved, reused: true };
  }
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const t0 = performance.now();
  const info = await make();
  const result = { reused: false, seconds: (performance.now() - t0) / 1000, ...info };
  fs.writeFileSync(genFile, JSON.stringify(result));
  fs.writeFileSync(file, want);
  return result;
}

function rewriteWithH5py(src, dst, layout) {
  const r = spawnSync(PYTHON, [path.join(REF, 'rewrite_h5py.py'), src, dst, '--layout', layout], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`rewrite_h5py.py failed: ${r.stderr}`);
  return {};
}

const LAYOUT_NAME = { contiguous: 'contiguous', chunked: 'chunk64-gz1' };

async function prepareData(o, dataRoot, shape, py) {
  const base = path.join(dataRoot, `${fmtShape(shape)}-seed${o.seed}`);
  const sets = [];
  for (const layout of ['contiguous', 'chunked']) {
    const dir = path.join(base, `h5wasm-${layout}`);
    log(`data: ${fmtShape(shape)} ${LAYOUT_NAME[layout]} written by h5wasm (${layout === 'contiguous' ? 'fixed-size dataset, write_slice per slab' : 'H5Sink + SlabWriter'}) -> ${dir}`);
    const g = await ensure(dir, { shape, seed: o.seed, layout, writer: 'h5wasm' }, async () => ({
      main: await generateMain(dir, shape, o.seed, LAYOUTS[layout]),
      prios: await generatePrios(path.join(dir, 'prios'), o.seed, LAYOUTS[layout]),
    }));
    log(g.reused ? `  reused${g.seconds ? ` (generated in ${g.seconds.toFixed(1)} s)` : ''}` : `  generated in ${g.seconds.toFixed(1)} s`);
    sets.push({ dir, layout: `${LAYOUT_NAME[layout]}/h5wasm`, gen: g });
  }
  if (py) {
    for (const layout of ['contiguous', 'chunked']) {
      const src = path.join(base, `h5wasm-${layout}`);
      const dir = path.join(base, `h5py-${layout}`);
      log(`data: same volumes rewritten by h5py as ${LAYOUT_NAME[layout]} -> ${dir}`);
      const g = await ensure(dir, { shape, seed: o.seed, layout, writer: 'h5py' }, async () => rewriteWithH5py(src, dir, layout));
      log(g.reused ? `  reused${g.seconds ? ` (written in ${g.seconds.toFixed(1)} s)` : ''}` : `  written in ${g.seconds.toFixed(1)} s`);
      sets.push({ dir, layout: `${LAYOUT_NAME[layout]}/h5py`, gen: g });
    }
  }
  return sets;
}

// ---------------------------------------------------------------- cases and verification

const sameArr = (a, b) => Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((v, i) => v === b[i]);

function verifyCheck(ours, ref) {
  const bad = [];
  if (ours.files.length !== ref.files.length) return [`${ours.files.length} vs ${ref.files.length} files`];
  ours.files.forEach((f, i) => {
    const r = ref.files[i];
    const s = f.stats;
    if (!s) return bad.push(`${f.name}: no stats (${f.status})`);
    if (s.voxels !== r.voxels) bad.push(`voxels ${s.voxels} vs ${r.voxels}`);
    if (!sameArr(s.classCounts, r.class_counts)) bad.push(`class counts ${s.classCounts} vs ${r.class_counts}`);
    if (s.ignored !== r.ignored) bad.push(`ignored ${s.ignored} vs ${r.ignored}`);
    if (s.outOfRange !== r.out_of_range_voxels) bad.push(`out of range ${s.outOfRange} vs ${r.out_of_range_voxels}`);
    if (!sameArr(s.info?.labeled, r.info?.labeled) || !sameArr(s.info?.notPresent, r.info?.not_present)) bad.push(`info ${JSON.stringify(s.info)} vs ${JSON.stringify(r.info)}`);
    if (f.status !== r.status) bad.push(`status ${f.status} vs ${r.status}`);
  });
  return bad;
}

function verifyConvert(ours, ref) {
  const bad = [];
  if (!sameArr(ours.classCounts, ref.class_counts)) bad.push(`class counts ${ours.classCounts} vs ${ref.class_counts}`);
  if (ours.ignored !== ref.ignored) bad.push(`ignored ${ours.ignored} vs ${ref.ignored}`);
  if (ours.voxels !== ref.voxels) bad.push(`voxels ${ours.voxels} vs ${ref.voxels}`);
  if (!sameArr(ours.info.labeled, ref.info.labeled) || !sameArr(ours.info.notPresent, ref.info.not_present)) bad.push('info differs');
  if (!sameArr(ours.output.chunks, ref.chunks)) bad.push(`chunks ${ours.output.chunks} vs ${ref.chunks}`);
  if (!ours.ok) bad.push(`our re-check: ${ours.check.status}`);
  return bad;
}

function verifyPrios(ours, ref) {
  const bad = [];
  if (ours.cubes.length !== ref.cubes.length) return [`${ours.cubes.length} vs ${ref.cubes.length} cubes`];
  ours.cubes.forEach((c, i) => {
    const r = ref.cubes[i];
    if (c.name !== r.name) bad.push(`cube ${i}: ${c.name} vs ${r.name}`);
    if (!sameArr(c.classCounts, r.class_counts)) bad.push(`${c.name}: class counts ${c.classCounts} vs ${r.class_counts}`);
    if (c.labelledVoxels !== r.labelled_voxels) bad.push(`${c.name}: labelled ${c.labelledVoxels} vs ${r.labelled_voxels}`);
    if (c.voxels !== r.voxels) bad.push(`${c.name}: voxels ${c.voxels} vs ${r.voxels}`);
    if (c.information !== r.information) bad.push(`${c.name}: information ${c.information} vs ${r.information}`);
  });
  if (!sameArr(ours.cubePrios, ref.cube_prios)) bad.push(`cube_prios ${ours.cubePrios} vs ${ref.cube_prios}`);
  return bad;
}

/** What must not change from run to run (a cheap guard that every timed run did the same work). */
const fingerprint = {
  check: (j) => JSON.stringify(j.files.map((f) => [f.status, f.stats?.classCounts, f.stats?.ignored])),
  convert: (j) => JSON.stringify([j.classCounts, j.ignored, j.info]),
  prios: (j) => JSON.stringify(j.cubePrios),
};
const refFingerprint = {
  check: (j) => JSON.stringify(j.files.map((f) => [f.status, f.class_counts, f.ignored])),
  convert: (j) => JSON.stringify([j.class_counts, j.ignored, j.info]),
  prios: (j) => JSON.stringify(j.cube_prios),
};
const VERIFY = { check: verifyCheck, convert: verifyConvert, prios: verifyPrios };
const CASE_NAME = { check: 'check', convert: 'convert', prios: 'suggest-prios' };

/** The commands of one case on one data folder. `labelFile`/`maskFile` are relative to `dir`. */
function commands(kind, dir, outDir, opts) {
  const { withRaw = true, prioArgs = null } = opts;
  const oursOut = path.join(outDir, 'ours.h5');
  const refOut = path.join(outDir, 'ref.h5');
  switch (kind) {
    case 'check':
      return {
        ours: () => ['node', BIN, 'check', 'lab.h5', ...(withRaw ? ['--raw', 'raw.h5'] : []), '--n-lab', String(N_LAB), '--json', '--quiet'],
        ref: () => [PYTHON, path.join(REF, 'check_ref.py'), 'lab.h5', ...(withRaw ? ['--raw', 'raw.h5'] : []), '--n-lab', String(N_LAB)],
      };
    case 'convert':
      return {
        ours: () => ['node', BIN, 'convert', '--mask', 'maskclasses.h5:mask', '--classes', 'maskclasses.h5:classes', '--n-lab', String(N_LAB), '-o', oursOut, '--force', '--json', '--quiet'],
        // same output chunk shape as ours (taken from our report), same gzip level (4)
        ref: (oursReport) => [PYTHON, path.join(REF, 'convert_ref.py'), '--mask', 'maskclasses.h5:mask', '--classes', 'maskclasses.h5:classes', '--n-lab', String(N_LAB), '-o', refOut, ...(oursReport ? ['--chunks', oursReport.output.chunks.join(',')] : []), '--gzip', '4'],
        outputs: [oursOut, refOut],
      };
    case 'prios':
      return prioArgs ?? {
        ours: () => ['node', BIN, 'suggest-prios', '--manifest', 'prios/manifest.json', '--json', '--quiet'],
        ref: () => [PYTHON, path.join(REF, 'prios_ref.py'), '--manifest', 'prios/manifest.json'],
      };
  }
  throw new Error(kind);
}

function parseJson(tool, argv, r) {
  if (r.code !== 0) {
    throw new Error(`${tool} exited ${r.code}: ${argv.join(' ')}\n${r.stderr.slice(-2000)}`);
  }
  try {
    return JSON.parse(r.stdout);
  } catch {
    throw new Error(`${tool} printed no JSON: ${argv.join(' ')}\n${r.stdout.slice(0, 500)}\n${r.stderr.slice(-1000)}`);
  }
}

/**
 * Warm-up + timed runs of ours and the reference, interleaved (ours, ref, ours, ref, ...) so that drift in
 * the machine's speed hits both alike. Returns both series and the verification result.
 */
async function timeCase(kind, set, outDir, o, method, extra = {}) {
  const cmds = commands(kind, set.dir, outDir, extra);
  const tools = o.ref && extra.ref !== false ? ['ours', 'ref'] : ['ours'];
  const series = { ours: [], ref: [] };
  const fps = { ours: new Set(), ref: new Set() };
  let first = { ours: null, ref: null };
  const warmup = extra.warmup ?? o.warmup;
  const repeat = extra.repeat ?? o.repeat;
  for (let i = 0; i < warmup + repeat; i++) {
    for (const tool of tools) {
      const argv = tool === 'ours' ? cmds.ours() : cmds.ref(first.ours);
      const r = await runMeasured(argv, { cwd: set.dir, method });
      const json = parseJson(tool === 'ours' ? 'lazylabel' : path.basename(argv[1]), argv, r);
      first[tool] ??= json;
      fps[tool].add(tool === 'ours' ? fingerprint[kind](json) : refFingerprint[kind](json));
      if (i >= warmup) series[tool].push({ seconds: r.seconds, cpuSeconds: r.cpuSeconds, rssMiB: r.rssMiB });
    }
  }
  const problems = [];
  if (fps.ours.size > 1) problems.push('our runs disagree with each other');
  if (fps.ref.size > 1) problems.push('reference runs disagree with each other');
  if (tools.includes('ref')) problems.push(...VERIFY[kind](first.ours, first.ref));
  let outputsEqual = null;
  if (kind === 'convert' && tools.includes('ref')) {
    // value-by-value comparison of the two written files (untimed)
    const r = spawnSync(PYTHON, [path.join(REF, 'compare_outputs.py'), cmds.outputs[0], cmds.outputs[1]], { encoding: 'utf8' });
    outputsEqual = r.status === 0;
    if (!outputsEqual) problems.push(`written labels differ: ${r.stdout.replace(/\s+/g, ' ').slice(0, 400)}${r.stderr.slice(-300)}`);
  }
  if (cmds.outputs) for (const f of cmds.outputs) fs.rmSync(f, { force: true });
  return { series, problems, outputsEqual, oursReport: first.ours };
}

const cpuRatio = (ours, ref) => (ref && ours.medianCpuSeconds != null && ref.medianCpuSeconds ? ours.medianCpuSeconds / ref.medianCpuSeconds : null);

function summarize(s) {
  if (!s.length) return null;
  return {
    medianSeconds: median(s.map((x) => x.seconds)),
    minSeconds: Math.min(...s.map((x) => x.seconds)),
    maxSeconds: Math.max(...s.map((x) => x.seconds)),
    seconds: s.map((x) => +x.seconds.toFixed(4)),
    medianCpuSeconds: s.every((x) => x.cpuSeconds !== null) ? median(s.map((x) => x.cpuSeconds)) : null,
    peakRssMiB: s.every((x) => x.rssMiB !== null) ? Math.max(...s.map((x) => x.rssMiB)) : null,
  };
}

// ---------------------------------------------------------------- table

function table(rows) {
  const header = ['case', 'layout', 'tool', 'median s', 'MB/s', 'peak RSS MiB', 'ours/ref', 'excl. start-up', 'CPU s', 'CPU ours/ref', 'agree'];
  const cells = rows.map((r) => [
    r.case, r.layout, r.tool, r.medianSeconds.toFixed(3), r.mbPerSecond.toFixed(0), r.peakRssMiB == null ? '-' : r.peakRssMiB.toFixed(0),
    r.ratio == null ? '' : r.ratio.toFixed(2), r.dataRatio == null ? '' : r.dataRatio.toFixed(2), r.medianCpuSeconds == null ? '-' : r.medianCpuSeconds.toFixed(2), r.cpuRatio == null ? '' : r.cpuRatio.toFixed(2),
    r.agree == null ? '' : r.agree ? '✓' : 'FAIL',
  ]);
  const w = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const num = [false, false, false, true, true, true, true, true, true, true, false];
  const line = (c) => c.map((x, i) => (num[i] ? x.padStart(w[i]) : x.padEnd(w[i]))).join('  ').trimEnd();
  return [line(header), line(w.map((n) => '-'.repeat(n))), ...cells.map(line)].join('\n');
}

/** Markdown version for bench/README.md. */
function markdownTable(rows) {
  const out = ['| case | layout | tool | median s | MB/s | peak RSS MiB | ours/ref | excl. start-up | CPU s | CPU ours/ref | agree |', '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |'];
  for (const r of rows) {
    out.push(`| ${r.case} | ${r.layout} | ${r.tool} | ${r.medianSeconds.toFixed(3)} | ${r.mbPerSecond.toFixed(0)} | ${r.peakRssMiB == null ? '-' : r.peakRssMiB.toFixed(0)} | ${r.ratio == null ? '' : r.ratio.toFixed(2)} | ${r.dataRatio == null ? '' : r.dataRatio.toFixed(2)} | ${r.medianCpuSeconds == null ? '-' : r.medianCpuSeconds.toFixed(2)} | ${r.cpuRatio == null ? '' : r.cpuRatio.toFixed(2)} | ${r.agree == null ? '' : r.agree ? '✓' : 'FAIL'} |`);
  }
  return out.join('\n');
}

const TARGET = { check: 1.0, convert: 1.25, 'suggest-prios': 1.0 };

function targetLines(rows) {
  const lines = [];
  for (const r of rows.filter((x) => x.tool === 'lazylabel' && x.case !== 'start-up')) {
    const t = TARGET[r.case.replace(/ \(big\)$/, '')];
    const parts = [];
    if (r.ratio != null) parts.push(`ratio ${r.ratio.toFixed(2)} ${r.ratio <= t ? '<=' : '>'} ${t} ${r.ratio <= t ? 'met' : 'MISSED'}${r.cpuRatio != null ? ` (CPU-time ratio ${r.cpuRatio.toFixed(2)}${r.dataRatio != null ? `, excluding start-up ${r.dataRatio.toFixed(2)}` : ''})` : ''}`);
    if (r.peakRssMiB != null) parts.push(`RSS ${r.peakRssMiB.toFixed(0)} MiB ${r.peakRssMiB <= 512 ? '<= 512 met' : '> 512 MISSED'}`);
    lines.push(`  ${r.case} ${r.layout}: ${parts.join(', ')}`);
  }
  return lines;
}

// ---------------------------------------------------------------- main

/**
 * Fixed costs: each tool's `check` of a 16^3 volume (interpreter, libraries, HDF5 initialisation, argument
 * parsing), timed like the cases. Subtracted from both sides, it gives the ratio of the data work alone.
 */
async function timeStartup(o, dataRoot, outDir, method) {
  const dir = path.join(dataRoot, `startup-16x16x16-seed${o.seed}`);
  await ensure(dir, { shape: [16, 16, 16], seed: o.seed, layout: 'chunked', writer: 'h5wasm' }, async () => ({
    main: await generateMain(dir, [16, 16, 16], o.seed, { kind: 'chunked', chunks: [8, 8, 8], gzip: 1 }),
  }));
  log(`start-up: check of a 16x16x16 volume, ${o.warmup} warm-up + ${o.repeat} timed runs each`);
  const res = await timeCase('check', { dir }, outDir, o, method);
  const ours = summarize(res.series.ours);
  const ref = summarize(res.series.ref);
  log(`  lazylabel ${ours.medianSeconds.toFixed(3)} s${ref ? `, reference ${ref.medianSeconds.toFixed(3)} s` : ''}`);
  return { ours, ref };
}

/** (ours - our start-up) / (reference - its start-up): how the data work compares, fixed costs aside. */
function dataRatio(ours, ref, startup) {
  if (!ref || !startup?.ref) return null;
  const a = ours.medianSeconds - startup.ours.medianSeconds;
  const b = ref.medianSeconds - startup.ref.medianSeconds;
  return b > 0.005 ? Math.max(0, a) / b : null;
}

async function runSuite(o, sets, shape, outDir, method, rows, startup) {
  const labelBytes = shape[0] * shape[1] * shape[2] * 2;
  const prioBytes = 8 * 128 ** 3 * 2;
  let failures = 0;
  if (startup) {
    const common = { case: 'start-up', layout: 'check 16^3', shape: [16, 16, 16], labelBytes: 16 ** 3 * 2 };
    rows.push({ ...common, tool: 'lazylabel', ...startup.ours, mbPerSecond: common.labelBytes / 1e6 / startup.ours.medianSeconds, ratio: startup.ref ? startup.ours.medianSeconds / startup.ref.medianSeconds : null, cpuRatio: cpuRatio(startup.ours, startup.ref), agree: null });
    if (startup.ref) rows.push({ ...common, tool: 'h5py+numpy', ...startup.ref, mbPerSecond: common.labelBytes / 1e6 / startup.ref.medianSeconds, ratio: null, cpuRatio: null, agree: null });
  }
  for (const kind of ['check', 'convert', 'prios']) {
    if (!o.only.includes(kind)) continue;
    for (const set of sets) {
      const isPy = set.layout.endsWith('/h5py');
      log(`${CASE_NAME[kind]} on ${set.layout}: ${o.warmup} warm-up + ${o.repeat} timed runs${o.ref ? ' each, ours and reference interleaved' : ''}`);
      const res = await timeCase(kind, set, outDir, o, method);
      const ours = summarize(res.series.ours);
      const ref = summarize(res.series.ref);
      const agree = ref ? res.problems.length === 0 : res.problems.length === 0 ? null : false;
      if (res.problems.length) {
        failures++;
        log(`  FAIL: ours and the reference disagree:\n    ${res.problems.join('\n    ')}`);
      } else if (ref) log(`  ✓ counts agree${res.outputsEqual ? ', written labels identical' : ''}`);
      const bytes = kind === 'prios' ? prioBytes : labelBytes;
      const common = { case: CASE_NAME[kind], layout: set.layout, shape: kind === 'prios' ? [8, 128, 128, 128] : shape, labelBytes: bytes };
      rows.push({ ...common, tool: 'lazylabel', ...ours, mbPerSecond: bytes / 1e6 / ours.medianSeconds, ratio: ref ? ours.medianSeconds / ref.medianSeconds : null, dataRatio: dataRatio(ours, ref, startup), cpuRatio: cpuRatio(ours, ref), agree, ...(res.outputsEqual !== null ? { outputsEqual: res.outputsEqual } : {}) });
      if (ref) rows.push({ ...common, tool: 'h5py+numpy', ...ref, mbPerSecond: bytes / 1e6 / ref.medianSeconds, ratio: null, cpuRatio: null, agree: null });
      log(`  lazylabel ${ours.medianSeconds.toFixed(3)} s${ref ? `, reference ${ref.medianSeconds.toFixed(3)} s, ratio ${(ours.medianSeconds / ref.medianSeconds).toFixed(2)}` : ''}${isPy ? ' (h5py-written file)' : ''}`);
    }
  }
  return failures;
}

async function runBig(o, dataRoot, outDir, method, py, rows) {
  const shape = o.bigShape;
  const bytes = shape[0] * shape[1] * shape[2] * 2;
  const dir = path.join(dataRoot, `big-${fmtShape(shape)}-seed${o.seed}`, 'h5wasm-chunked');
  log(`big: ${fmtShape(shape)} int16 = ${(bytes / 2 ** 30).toFixed(2)} GiB of labels (plus uint8 mask and classes), chunked 64^3 gzip 1 -> ${dir}`);
  const g = await ensure(dir, { shape, seed: o.seed, layout: 'chunked', writer: 'h5wasm', raw: false }, async () => ({
    main: await generateMain(dir, shape, o.seed, LAYOUTS.chunked, { raw: false, log: (s) => process.stderr.write(`\r${s}   `) }),
  }));
  process.stderr.write('\n');
  log(g.reused && !g.seconds ? '  reused' : `  ${g.reused ? 'reused; ' : ''}generated in ${g.seconds.toFixed(1)} s (rendering ${g.main.renderSeconds.toFixed(1)} s, the rest is h5wasm gzip + writes)`);
  const sizes = Object.fromEntries(fs.readdirSync(dir).filter((f) => f.endsWith('.h5')).map((f) => [f, fs.statSync(path.join(dir, f)).size]));
  const set = { dir, layout: 'chunk64-gz1/h5wasm' };
  const big = { shape, labelBytes: bytes, generation: g, fileBytes: sizes, cases: [] };
  let failures = 0;
  const oo = { ...o, ref: o.ref && !!py };
  for (const kind of ['check', 'convert', 'prios']) {
    if (!o.only.includes(kind)) continue;
    const extra = { warmup: 0, repeat: 1, withRaw: false };
    if (kind === 'prios') {
      extra.prioArgs = {
        ours: () => ['node', BIN, 'suggest-prios', 'lab.h5', '--n-lab', String(N_LAB), '--json', '--quiet'],
        ref: () => [PYTHON, path.join(REF, 'prios_ref.py'), '--manifest', 'manifest.json'],
      };
      fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify({ n_lab: N_LAB, lazy_labels: true, cubes: [{ name: 'lab.h5', label: 'lab.h5' }] }, null, 2) + '\n');
    }
    log(`big ${CASE_NAME[kind]}: one run per tool`);
    const res = await timeCase(kind, set, outDir, oo, method, extra);
    const ours = summarize(res.series.ours);
    const ref = summarize(res.series.ref);
    if (res.problems.length) {
      failures++;
      log(`  FAIL: ${res.problems.join('; ')}`);
    } else if (ref) log(`  ✓ counts agree${res.outputsEqual ? ', written labels identical' : ''}`);
    const common = { case: `${CASE_NAME[kind]} (big)`, layout: set.layout, shape, labelBytes: bytes };
    const agree = ref ? res.problems.length === 0 : null;
    rows.push({ ...common, tool: 'lazylabel', ...ours, mbPerSecond: bytes / 1e6 / ours.medianSeconds, ratio: ref ? ours.medianSeconds / ref.medianSeconds : null, cpuRatio: cpuRatio(ours, ref), agree });
    if (ref) rows.push({ ...common, tool: 'h5py+numpy', ...ref, mbPerSecond: bytes / 1e6 / ref.medianSeconds, ratio: null, cpuRatio: null, agree: null });
    log(`  lazylabel ${ours.medianSeconds.toFixed(1)} s, peak RSS ${ours.peakRssMiB?.toFixed(0)} MiB${ref ? `; reference ${ref.medianSeconds.toFixed(1)} s, ${ref.peakRssMiB?.toFixed(0)} MiB` : ''}`);
    big.cases.push({ case: kind, ours, ref, problems: res.problems });
  }
  return { big, failures };
}

/** Temporary folders to remove on exit, also when interrupted (Ctrl-C, SIGTERM, a closed pipe). */
const temporaries = new Set();
function temporary(prefix, parent = os.tmpdir()) {
  const dir = fs.mkdtempSync(path.join(parent, prefix));
  temporaries.add(dir);
  return dir;
}
function removeTemporaries() {
  for (const dir of temporaries) fs.rmSync(dir, { recursive: true, force: true });
  temporaries.clear();
  cleanupScratch();
}
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', () => {
    // EPIPE: the reader went away (e.g. `| head`)
    removeTemporaries();
    process.exit(141);
  });
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    removeTemporaries();
    process.exit(128 + (os.constants.signals[sig] ?? 1));
  });
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  try {
    BIN = snapshotPackage(o, temporary('lazylabel-bench-cli-'));
    await bench(o);
  } finally {
    removeTemporaries();
  }
}

/**
 * NODE_EXTRA_CA_CERTS (a CA bundle for a TLS-intercepting proxy, set machine-wide on some VMs, this bench's
 * included) makes every Node process parse that bundle before any JavaScript runs: ~40 ms per start on the bench
 * VM, for a tool that opens no network connection, and nothing on Python's side. By default the timed runs of both
 * tools go without it (the results record that, and what a bare `node -e 0` costs with and without it).
 */
function nodeCaCertsSetting(o) {
  const file = process.env.NODE_EXTRA_CA_CERTS;
  if (!file) return { set: false };
  const startSeconds = (env) => {
    const times = [];
    for (let i = 0; i < 11; i++) {
      const t0 = process.hrtime.bigint();
      spawnSync(process.execPath, ['-e', '0'], { env, stdio: 'ignore' });
      if (i) times.push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
    return times.sort((a, b) => a - b)[times.length >> 1];
  };
  const without = { ...process.env };
  delete without.NODE_EXTRA_CA_CERTS;
  const nodeStartSeconds = { with: startSeconds(process.env), without: startSeconds(without) };
  if (!o.keepEnv) delete process.env.NODE_EXTRA_CA_CERTS;
  log(`note: NODE_EXTRA_CA_CERTS is set (node -e 0: ${nodeStartSeconds.with.toFixed(3)} s with it, ${nodeStartSeconds.without.toFixed(3)} s without); ${o.keepEnv ? 'kept for the timed runs (--keep-env)' : 'removed for the timed runs of both tools (--keep-env keeps it)'}`);
  return { set: true, keptForTimedRuns: o.keepEnv, nodeStartSeconds };
}

async function bench(o) {
  const nodeExtraCaCerts = nodeCaCertsSetting(o);
  const py = o.ref ? pythonFacts() : null;
  if (o.ref && !py) {
    log(`note: ${PYTHON} cannot import h5py and numpy (Debian: apt-get install python3-h5py python3-numpy); running without the reference`);
    o.ref = false;
  }
  const method = rssMethod();
  if (method !== 'gnu-time') log('note: /usr/bin/time not found (Debian package `time`); peak RSS comes from an in-process probe');
  const machine = machineFacts(py, method);
  const loadBefore = os.loadavg();
  if (loadBefore[0] > 0.5 * machine.cores) log(`note: 1-minute load average ${loadBefore[0].toFixed(2)} on ${machine.cores} cores: other processes are running, timings will be noisy (ours and the reference alternate, so ratios suffer less)`);
  log(`machine: ${machine.cpu}, ${machine.cores} cores, node ${machine.node}${py ? `, h5py ${py.h5py}, numpy ${py.numpy}, HDF5 ${py.hdf5}` : ''}`);

  const dataRoot = o.data ?? temporary('lazylabel-bench-data-');
  if (o.data) fs.mkdirSync(o.data, { recursive: true });
  // convert outputs go next to the data (same file system)
  const outDir = temporary('lazylabel-bench-out-', dataRoot);
  const shape = o.quick ? [256, 256, 128] : [512, 512, 256];
  const rows = [];
  let failures = 0;
  let sets = [];
  let big = null;
  const started = new Date();
  try {
    if (!o.bigOnly) {
      sets = await prepareData(o, dataRoot, shape, py);
      const startup = await timeStartup(o, dataRoot, outDir, method);
      failures += await runSuite(o, sets, shape, outDir, method, rows, startup);
    }
    if (o.big) {
      const r = await runBig(o, dataRoot, outDir, method, py, rows);
      big = r.big;
      failures += r.failures;
    }
  } finally {
    fs.rmSync(outDir, { recursive: true, force: true });
    temporaries.delete(outDir);
  }

  process.stdout.write(`\nlazylabel bench — ${machine.cpu}, ${machine.cores} cores, node ${machine.node}${py ? `, h5py ${py.h5py} / numpy ${py.numpy}` : ''}\n`);
  const what = o.bigOnly
    ? `big volume ${fmtShape(o.bigShape)} int16 labels (${(o.bigShape.reduce((a, b) => a * b, 2) / 2 ** 30).toFixed(2)} GiB), chunked 64^3 gzip 1; one run per tool, no warm-up`
    : `volume ${fmtShape(shape)} int16 labels (${(shape[0] * shape[1] * shape[2] * 2 / 2 ** 20).toFixed(0)} MiB), suggest-prios on 8 cubes of 128^3; median of ${o.repeat} after ${o.warmup} warm-up${o.big ? ' (big case: one run per tool)' : ''}`;
  process.stdout.write(`${what}; MB/s = int16 label bytes / median wall time; CPU s = user + system, all threads\n\n`);
  process.stdout.write(table(rows) + '\n\n');
  if (rows.some((r) => r.ratio != null || r.peakRssMiB != null)) process.stdout.write(`targets (reported, not asserted): check and suggest-prios ratio <= 1.0, convert <= 1.25, peak RSS <= 512 MiB\n${targetLines(rows).join('\n')}\n`);

  if (o.save) {
    const date = started.toISOString().slice(0, 10);
    const label = `${o.label}${o.quick ? '-quick' : ''}${o.bigOnly ? '-big' : ''}`;
    const file = path.join(here, 'results', `${date}-${label}.json`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const result = {
      date: started.toISOString(),
      machine,
      cli: o.buildHead ? `HEAD ${machine.commit} compiled into a private snapshot (--build-head)` : o.build ? 'working-tree src/ compiled into a private snapshot (--build)' : `snapshot of dist/ (dist/cli/main.js built ${new Date(fs.statSync(path.join(root, 'dist', 'cli', 'main.js')).mtimeMs).toISOString()})`,
      // bin/lazylabel.js runs the esbuild bundle (scripts/build-cli.js) when the snapshot has it, else the tsc output
      bundled: fs.existsSync(path.join(path.dirname(path.dirname(BIN)), 'dist', 'cli-bundle', 'main.js')),
      options: { quick: o.quick, repeat: o.repeat, warmup: o.warmup, only: o.only, seed: o.seed, reference: o.ref, big: o.big, bigOnly: o.bigOnly },
      volume: o.bigOnly ? null : { shape, dtype: 'int16', nLab: N_LAB, labelBytes: shape[0] * shape[1] * shape[2] * 2 },
      loadAverage: { before: loadBefore, after: os.loadavg() },
      nodeExtraCaCerts,
      generation: sets.map((s) => ({ layout: s.layout, ...s.gen })),
      rows,
      ...(big ? { big } : {}),
      markdown: markdownTable(rows),
      failures,
    };
    fs.writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
    process.stdout.write(`\nwrote ${path.relative(process.cwd(), file)}\n`);
  }
  if (failures) {
    process.stderr.write(`\nFAILED: ${failures} case(s) where lazylabel and the reference disagree\n`);
    process.exitCode = 1;
  }
}

main().catch((e) => {
  process.stderr.write(`bench: ${e.message}\n`);
  process.exitCode = 1;
});
