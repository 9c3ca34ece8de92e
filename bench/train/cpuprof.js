#!/usr/bin/env node
// Where does a tfjs-wasm training step spend its CPU time at the function level? Runs tfjs_bench.js
// under `node --cpu-prof` and splits self time into XNNPACK (wasm), other wasm kernels, our JS kernels
// (dist/train/wasmKernels.js), the tfjs engine/autograd JS, GC, ... Complements tf.profile, which
// only sees whole kernels (a custom kernel's JS loops and the XNNPACK calls inside it look alike there).
//
//   node bench/train/cpuprof.js --net net3d [--steps 5] [--top 25] [-- extra tfjs_bench args]
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values: a, positionals } = parseArgs({
  options: { net: { type: 'string', default: 'net2d' }, steps: { type: 'string', default: '5' }, top: { type: 'string', default: '25' } },
  allowPositionals: true,
});

function category(f) {
  const { url, functionName: fn } = f;
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(program)' || fn === '(root)' || fn === '(idle)') return 'V8/node internals';
  if (url.startsWith('wasm://')) {
    if (/xnn|ukernel|gemm|igemm|pthreadpool/i.test(fn)) return 'wasm: XNNPACK';
    if (/memcpy|memset|memmove/i.test(fn)) return 'wasm: memcpy/memset';
    return 'wasm: other tfjs kernels';
  }
  if (url.includes('/dist/train/wasmKernels')) return 'JS: our wasm training kernels (src/train/wasmKernels.ts)';
  if (url.includes('/dist/train/')) return 'JS: other dist/train';
  if (url.includes('tfjs-backend-wasm')) return 'JS: tfjs-backend-wasm glue';
  if (url.includes('tfjs-core')) return 'JS: tfjs-core (engine, autograd, optimizer)';
  if (url.includes('tfjs-layers')) return 'JS: tfjs-layers';
  if (url.includes('/bench/train/')) return 'JS: benchmark';
  return 'other';
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lazylabel-trainprof-'));
const r = spawnSync(process.execPath, ['--cpu-prof', '--cpu-prof-dir', dir, '--cpu-prof-interval', '500', path.join(here, 'tfjs_bench.js'), '--net', a.net, '--backend', 'wasm', '--steps', a.steps, '--warmup', '1', '--no-infer', ...positionals], { encoding: 'utf8' });
if (r.status !== 0) throw new Error(r.stderr);
const bench = JSON.parse(r.stdout.trim().split('\n').pop());
const file = fs.readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
const prof = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8'));
fs.rmSync(dir, { recursive: true, force: true });

const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const self = new Map();
for (let i = 0; i < prof.samples.length; i++) self.set(prof.samples[i], (self.get(prof.samples[i]) ?? 0) + (prof.timeDeltas[i + 1] ?? 0) / 1000);
const total = [...self.values()].reduce((p, q) => p + q, 0);
const cats = new Map();
const fns = new Map();
for (const [id, ms] of self) {
  const f = byId.get(id).callFrame;
  const c = category(f);
  cats.set(c, (cats.get(c) ?? 0) + ms);
  const key = `${f.functionName || '(anonymous)'} ${f.url.startsWith('wasm') ? '[wasm]' : `${path.basename(f.url)}:${f.lineNumber + 1}`}`;
  fns.set(key, (fns.get(key) ?? 0) + ms);
}
console.log(`${a.net}: ${bench.train.ms.median.toFixed(0)} ms/step (median of ${a.steps}; the whole process is profiled: ${total.toFixed(0)} ms incl. startup and model building)`);
console.log('self time by category:');
for (const [c, ms] of [...cats].sort((p, q) => q[1] - p[1])) console.log(`  ${ms.toFixed(0).padStart(7)} ms ${((100 * ms) / total).toFixed(1).padStart(5)}%  ${c}`);
console.log(`top ${a.top} functions:`);
for (const [k, ms] of [...fns].sort((p, q) => q[1] - p[1]).slice(0, Number(a.top))) console.log(`  ${ms.toFixed(0).padStart(7)} ms ${((100 * ms) / total).toFixed(1).padStart(5)}%  ${k}`);
