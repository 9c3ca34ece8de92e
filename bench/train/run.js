#!/usr/bin/env node
// Trainer benchmark (issue #8, trainer half): ms per training step (forward + lazyNll + backward +
// Adam) and per inference patch, for the reference nets of bench/nets.md, on every available tfjs
// backend and on the PyTorch CPU reference (bench/train/torch_ref.py), in one run.
//
//   node bench/train/run.js [--label NAME] [--nets net2d,net3d] [--backends wasm,cpu]
//        [--steps 20] [--warmup 3] [--torch-threads 2,1] [--no-torch] [--profile]
//        [--max-load 1.5] [--max-other-cores 0.3] [--retries 2] [--max-wait-s 900] [--variants]
//
// When the machine has >= 2 cores, wasm also runs with the trainer's own worker pool (`train --threads N`,
// src/train/pool.ts; N = cores), which is what `lazylabel train` uses by default there. Where the oneDNN
// addon is built (native/), wasm runs with its convolutions (what the trainer uses) and again without
// them (LAZYLABEL_NATIVE=0, XNNPACK in wasm), so the table shows what the addon buys.
// --variants adds rows for the prototypes of bench/nets.md "Proposals" (not what lazylabel runs):
// wasm with proto_kernels.js, the multi-threaded wasm build with 2 threads (proto_threads.js), and a
// data-parallel pool of 2 worker threads (proto_pool.js).
//
// Every measurement runs in a fresh process (tfjs_bench.js / torch_ref.py). Before each one we wait
// until the machine is quiet (1-min load average <= --max-load and < 0.5 busy cores over 2 s); during
// it we record how many cores other processes used (from /proc/stat); if that exceeds
// --max-other-cores the measurement is repeated (up to --retries times; every attempt is kept in the
// JSON). The cpu backend is ~100x slower than wasm for training, so it runs only on `net2d-small`
// (see bench/nets.md) and with a reduced protocol. Results: a table on stdout and
// bench/results/<date>-train-<label>.json (next to the data benchmark's results).
import { spawnSync, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { NETS, sampleBusyCores } from './common.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const PYTHON = '/usr/bin/python3';

/** Extra nets for the cpu backend only (its training is ~100x slower than wasm). */
const EXTRA_NETS = {
  'net2d-small': { ...NETS.net2d, patch: [64, 64], batch: 1 },
};

const { values: a } = parseArgs({
  options: {
    label: { type: 'string', default: 'local' },
    nets: { type: 'string', default: 'net2d,net3d' },
    backends: { type: 'string' },
    steps: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '3' },
    'torch-threads': { type: 'string', default: '2,1' },
    'no-torch': { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    'profile-runs': { type: 'string', default: '3' },
    'max-load': { type: 'string', default: '1.5' },
    'max-other-cores': { type: 'string', default: '0.3' },
    retries: { type: 'string', default: '2' },
    'max-wait-s': { type: 'string', default: '900' },
    'cpu-steps': { type: 'string', default: '3' },
    variants: { type: 'boolean', default: false },
    'no-ceiling': { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});
const steps = Number(a.steps);
const warmup = Number(a.warmup);
const maxLoad = Number(a['max-load']);
const maxOther = Number(a['max-other-cores']);
const retries = Number(a.retries);
const maxWaitS = Number(a['max-wait-s']);
const nets = a.nets.split(',');
for (const n of nets) if (!NETS[n]) throw new Error(`unknown net '${n}' (have ${Object.keys(NETS).join(', ')})`);
const torchThreads = a['torch-threads'].split(',').map(Number);
const outFile = a.out ?? path.join(here, '..', 'results', `${new Date().toISOString().slice(0, 10)}-train-${a.label}.json`);

const log = (...m) => console.error(`[${new Date().toISOString().slice(11, 19)}]`, ...m);

function hasPackage(p) {
  try {
    require.resolve(p);
    return true;
  } catch {
    return false;
  }
}

/** tfjs backends to measure: tensorflow (when tfjs-node(-gpu) is installed), wasm, cpu. */
function backends() {
  if (a.backends) return a.backends.split(',');
  const list = [];
  if (hasPackage('@tensorflow/tfjs-node-gpu') || hasPackage('@tensorflow/tfjs-node')) list.push('tensorflow');
  list.push('wasm', 'cpu');
  return list;
}

/** PyTorch from Debian's python3-torch in the system Python; waits a few minutes if it is being installed. */
async function torchVersion() {
  for (let i = 0; ; i++) {
    const r = spawnSync(PYTHON, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
    if (r.status === 0) return r.stdout.trim();
    if (i >= 20) {
      log(`PyTorch not importable with ${PYTHON}: ${(r.stderr || r.error?.message || '').trim().split('\n').pop()}`);
      return null;
    }
    log(`waiting for ${PYTHON} -c 'import torch' (attempt ${i + 1}/20)`);
    await new Promise((res) => setTimeout(res, 15000));
  }
}

/** Waits until the machine is quiet; returns what it saw. */
async function waitQuiet() {
  const t0 = Date.now();
  for (;;) {
    const busy = await sampleBusyCores(2000);
    const load = os.loadavg();
    const waited = (Date.now() - t0) / 1e3;
    if ((load[0] <= maxLoad && (busy ?? 0) < 0.5) || waited > maxWaitS) {
      return { loadavg: load, busyCores: busy, waitedS: Math.round(waited), quiet: load[0] <= maxLoad && (busy ?? 0) < 0.5 };
    }
    if (Math.round(waited) % 60 < 12) log(`  waiting for a quiet machine: load ${load.map((v) => v.toFixed(2)).join(' ')}, ${busy?.toFixed(2)} cores busy (${Math.round(waited)} s)`);
    await new Promise((res) => setTimeout(res, 10000));
  }
}

/** Runs a child that prints JSON on its last stdout line. */
function runChild(cmd, args, timeoutS, env = {}) {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { cwd: path.resolve(here, '../..'), stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutS * 1e3);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      const last = out.trim().split('\n').pop();
      try {
        resolve(JSON.parse(last));
      } catch {
        resolve({ error: signal ? `killed (${signal}) after ${timeoutS} s` : `exit ${code}: ${err.trim().split('\n').slice(-3).join(' | ')}` });
      }
    });
  });
}

/** Largest interference (cores used by other processes) over the timed parts of a result. */
function interference(r) {
  const parts = [r.train?.cpu, ...Object.values(r.infer ?? {}).map((i) => i.cpu)].filter(Boolean);
  return parts.length ? Math.max(...parts.map((c) => c.otherCores ?? 0)) : 0;
}

/** One measurement with the quiet-machine protocol and retries. */
async function measure(what, cmd, args, timeoutS, env = {}) {
  const attempts = [];
  for (let i = 0; i <= retries; i++) {
    const before = await waitQuiet();
    log(`${what}${i ? ` (retry ${i})` : ''}: load ${before.loadavg.map((v) => v.toFixed(2)).join(' ')}`);
    const r = await runChild(cmd, args, timeoutS, env);
    const after = os.loadavg();
    const other = interference(r);
    attempts.push({ before, loadavgAfter: after, otherCoresMax: other, result: r });
    if (r.error) {
      log(`  ${what}: ${r.error}`);
      break;
    }
    if (other <= maxOther) break;
    log(`  other processes used up to ${other.toFixed(2)} cores during the measurement: repeating`);
  }
  // Keep the attempt with the least interference.
  const best = attempts.reduce((p, q) => (q.otherCoresMax < p.otherCoresMax && !q.result.error ? q : p));
  return {
    ...best.result,
    loadavgBefore: best.before.loadavg,
    loadavgAfter: best.loadavgAfter,
    quietBefore: best.before.quiet,
    otherCoresMax: best.otherCoresMax,
    clean: best.otherCoresMax <= maxOther && best.before.quiet,
    attempts: attempts.map((t) => ({ loadavgBefore: t.before.loadavg, busyBefore: t.before.busyCores, waitedS: t.before.waitedS, otherCoresMax: t.otherCoresMax, trainMedianMs: t.result.train?.ms?.median ?? null })),
  };
}

const fmt = (v, d = 1) => (v == null ? '-' : v.toFixed(d));

async function main() {
  const torch = a['no-torch'] ? null : await torchVersion();
  // The oneDNN addon (native/, scripts/build-native.js) is used by the wasm backend when it is built.
  const native = fs.existsSync(path.join(here, '..', '..', 'native', 'build', 'Release', 'lazylabel_dnnl.node')) && process.env.LAZYLABEL_NATIVE !== '0';
  const bes = backends();
  const machine = {
    cpuModel: os.cpus()[0]?.model,
    cores: os.cpus().length,
    totalMemGB: Math.round(os.totalmem() / 2 ** 30),
    platform: `${os.platform()} ${os.release()}`,
    node: process.version,
    tfjs: require('@tensorflow/tfjs/package.json').version,
    tfjsBackendWasm: require('@tensorflow/tfjs-backend-wasm/package.json').version,
    torch,
    python: torch ? spawnSync(PYTHON, ['-c', 'import sys; print(sys.version.split()[0])'], { encoding: 'utf8' }).stdout.trim() : null,
    // Debian's libblas.so.3 alternative (reference BLAS or OpenBLAS) decides PyTorch's matmul speed.
    blas: (() => {
      try {
        return fs.realpathSync('/usr/lib/x86_64-linux-gnu/libblas.so.3');
      } catch {
        return null;
      }
    })(),
    nativeConvolutions: native ? 'oneDNN (native/ addon)' : 'none (addon not built or LAZYLABEL_NATIVE=0)',
    cpuFlags: (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:\s*(.*)$/m)?.[1] ?? '').split(' ').filter((f) => /^(avx2|avx512f|fma)$/.test(f)),
  };
  const results = [];
  const plan = [];
  for (const net of nets) {
    for (const be of bes) {
      if (be === 'cpu') continue;
      const cores = os.cpus().length;
      if (be !== 'wasm') {
        plan.push({ net, spec: NETS[net], impl: 'tfjs', backend: be });
        continue;
      }
      // wasm: with the oneDNN convolutions where the addon is built (what the trainer uses), and
      // without them (LAZYLABEL_NATIVE=0: XNNPACK in wasm), so one run shows what the addon buys.
      const convs = native ? [['oneDNN', {}], ['XNNPACK', { LAZYLABEL_NATIVE: '0' }]] : [['XNNPACK', {}]];
      for (const [name, env] of convs) {
        const trainer = name === convs[0][0];
        plan.push({ net, spec: NETS[net], impl: 'tfjs', backend: be, variant: name, trainer, env });
        if (cores >= 2) plan.push({ net, spec: NETS[net], impl: 'tfjs', backend: be, variant: `${name} pool ${cores}t`, trainer, args: ['--threads', String(cores)], env });
      }
    }
    if (a.variants && bes.includes('wasm')) {
      plan.push({ net, spec: NETS[net], impl: 'tfjs', backend: 'wasm', variant: '+proto', args: ['--kernels', 'proto_kernels.js'] });
      plan.push({ net, spec: NETS[net], impl: 'tfjs', backend: 'wasm', variant: 'threads2', env: { LAZYLABEL_WASM_THREADS: '2' } });
      plan.push({ net, spec: NETS[net], impl: 'tfjs', backend: 'wasm', variant: 'threads2+proto', args: ['--kernels', 'proto_kernels.js'], env: { LAZYLABEL_WASM_THREADS: '2' } });
      plan.push({ net, spec: NETS[net], impl: 'tfjs', backend: 'wasm', variant: 'pool2', pool: ['--threads', '2'] });
      plan.push({ net, spec: NETS[net], impl: 'tfjs', backend: 'wasm', variant: 'pool2+proto', pool: ['--threads', '2', '--kernels', './proto_kernels.js'] });
    }
    if (torch) for (const t of torchThreads) plan.push({ net, spec: NETS[net], impl: 'pytorch', threads: t });
  }
  if (bes.includes('cpu')) {
    const spec = EXTRA_NETS['net2d-small'];
    plan.push({ net: 'net2d-small', spec, impl: 'tfjs', backend: 'cpu', reduced: true });
    if (torch) for (const t of torchThreads) plan.push({ net: 'net2d-small', spec, impl: 'pytorch', threads: t });
  }

  for (const p of plan) {
    const what = p.impl === 'tfjs' ? `${p.net} tfjs-${p.backend}${p.variant ? ` ${p.variant}` : ''}` : `${p.net} pytorch (${p.threads} thread${p.threads > 1 ? 's' : ''})`;
    let r;
    if (p.pool) {
      r = await measure(what, process.execPath, [path.join(here, 'proto_pool.js'), '--net', p.net, '--steps', String(steps), '--warmup', String(warmup), ...p.pool], 900);
    } else if (p.impl === 'tfjs') {
      const reduced = p.reduced ? ['--steps', a['cpu-steps'], '--warmup', '1'] : ['--steps', String(steps), '--warmup', String(warmup)];
      r = await measure(what, process.execPath, [path.join(here, 'tfjs_bench.js'), '--net', p.net in NETS ? p.net : 'net2d', '--net-json', JSON.stringify(p.spec), '--backend', p.backend, ...reduced, ...(p.args ?? [])], p.reduced ? 1800 : 900, p.env);
    } else {
      r = await measure(what, PYTHON, [path.join(here, 'torch_ref.py'), '--net', JSON.stringify(p.spec), '--threads', String(p.threads), '--steps', String(steps), '--warmup', String(warmup)], 600);
    }
    results.push({ ...r, net: p.net, netSpec: p.spec, impl: p.impl, backend: p.backend ?? 'cpu', variant: p.variant ?? null, trainer: p.impl === 'tfjs' && (p.trainer ?? !p.variant), threads: p.threads ?? r.threads ?? r.xnnpackThreads ?? 1, reducedProtocol: !!p.reduced });
    if (r.train?.ms) log(`  train ${fmt(r.train.ms.median)} ms/step, infer ${fmt(r.infer?.batch1?.ms?.median ?? r.infer?.trainBatch?.ms?.median / p.spec.batch)} ms/patch, params ${r.params}`);
  }

  // Parameter counts must agree between the implementations of each net.
  const params = {};
  for (const r of results) if (r.params != null) (params[r.net] ??= new Set()).add(r.params);
  const paramCheck = Object.fromEntries(Object.entries(params).map(([n, s]) => [n, { params: [...s], equal: s.size === 1 }]));
  for (const [n, c] of Object.entries(paramCheck)) {
    console.log(`${n}: ${c.equal ? `${c.params[0]} parameters in every implementation` : `PARAMETER COUNTS DIFFER: ${c.params.join(' vs ')}`}`);
  }

  // Table.
  const ref = (net) => results.find((r) => r.net === net && r.impl === 'pytorch' && r.threads === torchThreads[0] && r.train?.ms);
  const table = results.map((r) => {
    const spec = r.netSpec;
    const tr = r.train?.ms?.median ?? null;
    const inf = r.infer?.batch1?.ms?.median ?? null;
    const infB = r.infer?.trainBatch?.ms?.median != null ? r.infer.trainBatch.ms.median / spec.batch : null;
    const pt = ref(r.net);
    const ptInfB = pt?.infer?.trainBatch?.ms?.median != null ? pt.infer.trainBatch.ms.median / spec.batch : null;
    return {
      net: r.net,
      backend: r.impl === 'pytorch' ? `pytorch-cpu ${r.threads}t` : `tfjs-${r.backend}${r.variant ? ` ${r.variant}` : ''}`,
      trainMsPerStep: tr,
      inferMsPerPatch: inf,
      inferMsPerPatchBatched: infB,
      trainRatio: tr != null && pt ? tr / pt.train.ms.median : null,
      inferRatio: inf != null && pt ? inf / pt.infer.batch1.ms.median : null,
      inferRatioBatched: infB != null && ptInfB ? infB / ptInfB : null,
      otherCoresMax: r.otherCoresMax,
      clean: r.clean,
      note: r.error ?? r.train?.skipped ?? (r.reducedProtocol ? `reduced protocol: ${a['cpu-steps']} steps after 1 warm-up` : r.variant && /pool/.test(r.variant) ? `worker pool (train --threads)${r.trainer ? ', what train runs here' : ''}` : r.variant && /^(oneDNN|XNNPACK)$/.test(r.variant) ? (r.trainer ? 'train --threads 1' : 'LAZYLABEL_NATIVE=0') : r.variant ? 'prototype (bench/nets.md Proposals)' : ''),
    };
  });
  const refName = `pytorch ${torchThreads[0]}t`;
  const head = ['net', 'backend', 'train ms/step', 'infer ms/patch', 'infer ms/patch batched', `train x ${refName}`, `infer x ${refName}`, 'batched x', 'others (cores)', 'note'];
  const rows = table.map((t) => [t.net, t.backend, fmt(t.trainMsPerStep), fmt(t.inferMsPerPatch), fmt(t.inferMsPerPatchBatched), fmt(t.trainRatio, 2), fmt(t.inferRatio, 2), fmt(t.inferRatioBatched, 2), `${fmt(t.otherCoresMax, 2)}${t.clean ? '' : ' !'}`, t.note]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (r) => r.map((c, i) => String(c).padEnd(widths[i])).join('  ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
  console.log(`(medians of ${steps} after ${warmup} warm-up; infer = forward of one patch; batched = forward of the training batch / batch size; '!' = other processes used > ${maxOther} cores during it or the machine was not quiet before)`);

  // Compute ceiling: GFLOP/s of a big matmul and two 3x3 convs, tfjs-wasm vs PyTorch (same shapes).
  let ceiling = null;
  if (!a['no-ceiling']) {
    ceiling = [];
    const runs = [];
    if (bes.includes('wasm')) {
      if (native) runs.push(['wasm+oneDNN', process.execPath, [path.join(here, 'ceiling.js'), '--backend', 'wasm']]);
      runs.push(['tfjs-wasm', process.execPath, [path.join(here, 'ceiling.js'), '--backend', 'wasm'], { LAZYLABEL_NATIVE: '0' }]);
    }
    if (torch) for (const t of torchThreads) runs.push([`pytorch ${t}t`, PYTHON, [path.join(here, 'torch_ref.py'), '--net', '{}', '--ceiling', '--threads', String(t), '--steps', '10']]);
    for (const [name, cmd, args, env] of runs) {
      const before = await waitQuiet();
      const r = await runChild(cmd, args, 600, env);
      ceiling.push({ name, loadavgBefore: before.loadavg, loadavgAfter: os.loadavg(), ...r });
    }
    console.log('\ncompute ceiling (GFLOP/s, median of 10):');
    const opName = (o) => (o.op === 'matmul' ? `matmul ${o.m}x${o.k}x${o.n}` : `conv${o.f}x${o.f} [${o.n},${o.h},${o.w},${o.ci}]->${o.co}`);
    const names = ceiling[0]?.ops?.map(opName) ?? [];
    console.log(['op'.padEnd(34), ...ceiling.map((c) => c.name.padStart(12))].join(''));
    names.forEach((n, i) => console.log([n.padEnd(34), ...ceiling.map((c) => fmt(c.ops?.[i]?.gflops).padStart(12))].join('')));
  }

  let profile = null;
  if (a.profile) {
    profile = {};
    for (const net of nets) {
      const r = await measure(`${net} tfjs-wasm profile`, process.execPath, [path.join(here, 'tfjs_bench.js'), '--net', net, '--backend', 'wasm', '--warmup', '2', '--profile', a['profile-runs']], 900);
      profile[net] = { loadavgBefore: r.loadavgBefore, loadavgAfter: r.loadavgAfter, ...r.profile };
      if (!r.profile) continue;
      for (const part of ['train', 'inferBatch1']) {
        const p = r.profile[part];
        console.log(`\n${net} tfjs-wasm ${part}: ${fmt(p.kernelMsPerRun)} ms in kernels per run (${p.runs} profiled runs; wall ${fmt(p.wallMsPerRun)} ms)`);
        for (const k of p.byKernel.filter((k) => !k.scope).slice(0, 12)) console.log(`  ${k.name.padEnd(26)} ${fmt(k.msPerRun).padStart(8)} ms  ${fmt(k.share * 100).padStart(5)}%  ${k.callsPerRun} calls`);
      }
    }
  }

  const doc = {
    label: a.label,
    date: new Date().toISOString(),
    machine,
    protocol: { steps, warmup, maxLoad, maxOtherCores: maxOther, retries, torchThreads, inference: 'forward of one patch (batch 1), training mode off; trainBatch = forward of the whole training batch' },
    nets: { ...Object.fromEntries(nets.map((n) => [n, NETS[n]])), ...(bes.includes('cpu') ? EXTRA_NETS : {}) },
    paramCheck,
    table,
    ceiling,
    results,
    ...(profile ? { profile } : {}),
  };
  fs.writeFileSync(outFile, JSON.stringify(doc, null, 1) + '\n');
  console.log(`\nwrote ${path.relative(process.cwd(), outFile)}`);
}

await main();
