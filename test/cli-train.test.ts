/** train / predict / demo through the CLI: JSON reports follow their schemas, Ctrl-C checkpoints and exits 130, errors are one line. */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DNNL_ADDON_PATH, DNNL_KERNELS } from '../src/train/dnnlKernels.js';
import { BIN, runCli, schemaErrors, tmpDir } from './helpers.js';

describe('lazylabel demo', () => {
  it('runs the whole pipeline end to end (tiny step count) and reports both runs', () => {
    const out = path.join(tmpDir(), 'demo');
    const r = runCli(['demo', '--out', out, '--steps', '4', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { evaluation: { run: string }[]; figure: string; check: { errors: number }; prios: { lazy: boolean; share: number | null }[] };
    expect(schemaErrors('demo-report', report)).toEqual([]);
    expect(report.evaluation.map((e) => e.run)).toEqual(['dense only', 'dense + lazy']);
    expect(report.check.errors).toBe(0);
    expect(fs.statSync(report.figure).size).toBeGreaterThan(1000);
    const lazyShare = report.prios.filter((p) => p.lazy && p.share !== null).reduce((a, p) => a + p.share!, 0);
    expect(lazyShare).toBeCloseTo(0.25, 10);
    for (const f of ['dataset_lazy.json', 'dataset_dense.json', 'data/nucleus0_lazy.h5', 'data/nucleus1_painted.h5', 'run_lazy/model/model.json', 'pred_lazy.h5', 'pred_dense.h5']) {
      expect(fs.existsSync(path.join(out, f)), f).toBe(true);
    }
    // the demo's own manifests pass check
    expect(runCli(['check', '--manifest', path.join(out, 'dataset_lazy.json')]).code).toBe(0);
    // a second run into the same folder is refused without --force
    const again = runCli(['demo', '--out', out, '--steps', '1']);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('pass --force');
  });
});

describe('lazylabel train and predict', () => {
  const demoDir = (): string => {
    const out = path.join(tmpDir(), 'demo');
    // generate data only: demo with 1 step is the cheapest way to get a checked lazy manifest
    expect(runCli(['demo', '--out', out, '--steps', '1', '--quiet']).code).toBe(0);
    return out;
  };

  it('train --json and predict --json follow their schemas', () => {
    const demo = demoDir();
    const run = path.join(demo, 'run_cli');
    const t = runCli(['train', '--manifest', path.join(demo, 'dataset_lazy.json'), '--out', run, '--patch', '8,48,48', '--steps', '3', '--depth', '2', '--base-filters', '4', '--json']);
    expect(t.code, t.stderr).toBe(0);
    const tr = JSON.parse(t.stdout);
    expect(schemaErrors('train-report', tr)).toEqual([]);
    expect(tr.backend).toBe('wasm');
    // The native kernels are reported wherever the addon is built (null otherwise), the same in both reports.
    const native = fs.existsSync(DNNL_ADDON_PATH) ? { library: 'oneDNN', version: expect.any(String), kernels: [...DNNL_KERNELS] } : null;
    expect(tr.nativeKernels).toEqual(native);
    const p = runCli(['predict', '--model', run, '--raw', `${path.join(demo, 'data', 'test.h5')}:raw`, '-o', path.join(demo, 'p.h5'), '--json']);
    expect(p.code, p.stderr).toBe(0);
    const pr = JSON.parse(p.stdout);
    expect(schemaErrors('predict-report', pr)).toEqual([]);
    expect(pr.nativeKernels).toEqual(native);
    expect(pr.classCounts.reduce((a: number, b: number) => a + b, 0)).toBe(16 * 96 * 96);
    // human output names the backend
    const h = runCli(['predict', '--model', run, '--raw', path.join(demo, 'data', 'test.h5'), '-o', path.join(demo, 'p.h5'), '--force']);
    expect(h.stdout).toMatch(/tiles of .* on wasm/);
  });

  it('Ctrl-C saves a checkpoint and exits 130; --resume continues from it', async () => {
    const demo = demoDir();
    const run = path.join(demo, 'run_int');
    const args = [BIN, 'train', '--manifest', path.join(demo, 'dataset_dense.json'), '--out', run, '--patch', '8,48,48', '--steps', '100000', '--depth', '2', '--base-filters', '4', '--checkpoint-every', '1000'];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const metrics = path.join(run, 'metrics.jsonl');
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && !(fs.existsSync(metrics) && fs.readFileSync(metrics, 'utf8').split('\n').length > 4)) await new Promise((r) => setTimeout(r, 100));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    child.kill('SIGINT');
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const code = await exited;
    clearTimeout(timer);
    expect(code).toBe(130);
    expect(stderr).toContain('interrupted, saving a checkpoint');
    const steps = fs.readFileSync(metrics, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: string; step: number }).filter((l) => l.type === 'train');
    const last = steps.at(-1)!.step;
    const ckpt = path.join(run, 'checkpoints', `step-${String(last).padStart(7, '0')}`);
    expect(fs.existsSync(path.join(ckpt, 'state.json'))).toBe(true);
    const resumed = runCli(['train', '--manifest', path.join(demo, 'dataset_dense.json'), '--out', run, '--steps', String(last + 2), '--resume', '--json']);
    expect(resumed.code, resumed.stderr).toBe(0);
    const rr = JSON.parse(resumed.stdout) as { startStep: number; step: number };
    expect(rr).toMatchObject({ startStep: last, step: last + 2 });
  });

  it('user errors are one line, exit 2, no stack trace', () => {
    const demo = tmpDir();
    const cases: [string[], RegExp][] = [
      [['train', '--manifest', path.join(demo, 'missing.json'), '--out', path.join(demo, 'r')], /manifest not found/],
      [['train', '--manifest', path.join(demo, 'missing.json'), '--backend', 'tensorflow'], /manifest not found|tfjs-node/],
      [['predict', '--model', demo, '--raw', 'x.h5', '-o', path.join(demo, 'o.h5')], /no model.json here/],
    ];
    for (const [args, msg] of cases) {
      const r = runCli(args);
      expect([1, 2]).toContain(r.code);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });
});
