#!/usr/bin/env node
// Where does a lazylabel command spend its time? Runs the CLI under `node --cpu-prof` and sums the
// samples' self time by category (wasm = libhdf5 + zlib inside h5wasm; h5wasm JS glue; our loops;
// module loading; GC) and by function.
//
//   node bench/profile.js [--top 25] [--keep DIR] [--cli bin/lazylabel.js] -- check lab.h5 --n-lab 3 --json --quiet
//   node bench/profile.js --summarize FILE.cpuprofile
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function category(frame) {
  const { url, functionName } = frame;
  if (functionName === '(garbage collector)') return 'GC';
  if (functionName === '(program)' || functionName === '(root)') return 'node/V8 internals (program)';
  if (functionName === '(idle)') return 'idle (waiting for I/O)';
  if (url.startsWith('wasm://')) return 'wasm (libhdf5 + zlib in h5wasm)';
  if (url.includes('/h5wasm/')) return 'h5wasm JS glue (heap copies, metadata)';
  if (url.includes('/dist/core/labelTally')) return 'ours: LabelTally.add loop';
  if (url.includes('/dist/core/convert')) return 'ours: convert mapping loops';
  if (url.includes('/dist/io/hdf5')) return 'ours: io/hdf5 (withDiagnostics, slab read/write)';
  if (url.includes('/dist/')) return 'ours: other dist/ code';
  if (url.includes('/@tensorflow/')) return 'module loading: tfjs';
  if (url.includes('/node_modules/')) return 'module loading/other deps';
  if (url.startsWith('node:') || url === '') return 'node internals (module loader, fs)';
  return 'other';
}

export function summarize(profile, top = 25) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const { samples, timeDeltas } = profile;
  for (let i = 0; i < samples.length; i++) {
    // timeDeltas[i] is the time before sample i; attribute the next delta to this sample (Chrome's convention)
    const dt = (timeDeltas[i + 1] ?? 0) / 1000;
    self.set(samples[i], (self.get(samples[i]) ?? 0) + dt);
  }
  const total = (profile.endTime - profile.startTime) / 1000;
  const cats = new Map();
  const fns = new Map();
  for (const [id, ms] of self) {
    const f = byId.get(id).callFrame;
    const c = category(f);
    cats.set(c, (cats.get(c) ?? 0) + ms);
    const key = `${f.functionName || '(anonymous)'}  ${f.url ? path.basename(f.url) : ''}${f.url && !f.url.startsWith('wasm') ? `:${f.lineNumber + 1}` : ''}`;
    const e = fns.get(key) ?? { ms: 0, cat: c };
    e.ms += ms;
    fns.set(key, e);
  }
  const lines = [`profile: ${total.toFixed(0)} ms sampled`, '', 'self time by category:'];
  for (const [c, ms] of [...cats].sort((a, b) => b[1] - a[1])) lines.push(`  ${ms.toFixed(0).padStart(7)} ms  ${(100 * ms / total).toFixed(1).padStart(5)}%  ${c}`);
  lines.push('', `top ${top} functions by self time:`);
  for (const [k, e] of [...fns].sort((a, b) => b[1].ms - a[1].ms).slice(0, top)) lines.push(`  ${e.ms.toFixed(0).padStart(7)} ms  ${(100 * e.ms / total).toFixed(1).padStart(5)}%  ${k}`);
  return { total, categories: Object.fromEntries(cats), text: lines.join('\n') };
}

function main() {
  const argv = process.argv.slice(2);
  let top = 25;
  let keep = null;
  let cliPath = path.join(root, 'bin', 'lazylabel.js');
  let i = 0;
  for (; i < argv.length; i++) {
    if (argv[i] === '--top') top = Number(argv[++i]);
    else if (argv[i] === '--keep') keep = path.resolve(argv[++i]);
    else if (argv[i] === '--cli') cliPath = path.resolve(argv[++i]);
    else if (argv[i] === '--summarize') {
      process.stdout.write(summarize(JSON.parse(fs.readFileSync(argv[i + 1], 'utf8')), top).text + '\n');
      return;
    } else if (argv[i] === '--') {
      i++;
      break;
    } else break;
  }
  const cli = argv.slice(i);
  if (!cli.length) {
    process.stderr.write('usage: node bench/profile.js [--top N] [--keep DIR] [--cli PATH/bin/lazylabel.js] -- <lazylabel arguments>\n');
    process.exitCode = 2;
    return;
  }
  const dir = keep ?? fs.mkdtempSync(path.join(os.tmpdir(), 'lazylabel-prof-'));
  fs.mkdirSync(dir, { recursive: true });
  const t0 = performance.now();
  const r = spawnSync(process.execPath, ['--cpu-prof', '--cpu-prof-dir', dir, '--cpu-prof-interval', '200', cliPath, ...cli], { stdio: ['ignore', 'ignore', 'inherit'] });
  const wall = performance.now() - t0;
  const file = fs.readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).map((f) => path.join(dir, f)).sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs)[0];
  if (!file) throw new Error(`no profile written (exit ${r.status})`);
  process.stdout.write(`lazylabel ${cli.join(' ')}\nexit ${r.status}, wall ${wall.toFixed(0)} ms (profiling adds overhead)\n`);
  process.stdout.write(summarize(JSON.parse(fs.readFileSync(file, 'utf8')), top).text + '\n');
  if (keep) process.stdout.write(`\nprofile kept: ${file} (open in Chrome DevTools > Performance)\n`);
  else fs.rmSync(dir, { recursive: true, force: true });
}

main();
