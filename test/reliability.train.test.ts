/**
 * Reliability (issue #10): SIGKILL of `train` at seeded random steps loses at most the steps since the last
 * checkpoint; the newest checkpoint verifies (every checksum in its state.json); half-written checkpoint
 * folders (the `.tmp-PID` of a killed save, or a step folder without state.json) are ignored, and `--resume`
 * continues from the newest intact checkpoint.
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { prng } from '../fixtures/fuzz/mutate.mjs';
import { BIN, runCliBounded, writeSummary } from '../fixtures/fuzz/harness.mjs';
import { tmpDir } from './helpers.js';

interface Run { code: number | null; signal: string | null; stdout: string; stderr: string; ms: number; timedOut: boolean }

const SEED = 20261125;
const EVERY = 3;
const tally = { seed: SEED, kills: 0, checkpointEvery: EVERY, stepsLost: [] as number[], maxStepsLost: 0, checkpointsVerified: 0, halfWrittenIgnored: 0, resumes: 0 };
afterAll(() => writeSummary('train', tally));

const sha = (buf: Buffer): string => crypto.createHash('sha256').update(buf).digest('hex');

/** Checkpoint folders that look complete by name, newest last. */
const checkpoints = (run: string): string[] => {
  const root = path.join(run, 'checkpoints');
  return fs.existsSync(root) ? fs.readdirSync(root).filter((n) => /^step-\d+$/.test(n)).sort() : [];
};
const trainSteps = (run: string): number[] => {
  const p = path.join(run, 'metrics.jsonl');
  if (!fs.existsSync(p)) return [];
  // the last line may be cut by the kill
  return fs.readFileSync(p, 'utf8').split('\n').flatMap((l) => {
    try {
      const j = JSON.parse(l) as { type: string; step: number };
      return j.type === 'train' ? [j.step] : [];
    } catch {
      return [];
    }
  });
};

/** Every file listed in state.json is there with its checksum. */
function verifies(dir: string): boolean {
  const statePath = path.join(dir, 'state.json');
  if (!fs.existsSync(statePath)) return false;
  const state = JSON.parse(fs.readFileSync(statePath, 'utf8')) as { checksums?: Record<string, string> };
  const sums = Object.entries(state.checksums ?? {});
  return sums.length > 0 && sums.every(([name, sum]) => fs.existsSync(path.join(dir, name)) && sha(fs.readFileSync(path.join(dir, name))) === sum);
}

/** Start training and SIGKILL it once the metrics reach `killAt` steps (and a checkpoint exists). */
async function trainAndKill(args: string[], run: string, killAt: number): Promise<void> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: 'ignore' });
  const closed = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline && child.exitCode === null) {
    const steps = trainSteps(run);
    if (steps.length && steps.at(-1)! >= killAt && checkpoints(run).length > 0) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  child.kill('SIGKILL');
  await closed;
  tally.kills++;
}

describe('SIGKILL during train', () => {
  it('loses at most the steps since the last checkpoint; resume ignores half-written checkpoints and continues', async () => {
    const demo = path.join(tmpDir(), 'demo');
    const d = (await runCliBounded(['demo', '--out', demo, '--steps', '1', '--quiet'], { timeoutMs: 120_000 })) as Run;
    expect(d.code, d.stderr).toBe(0);
    const run = path.join(demo, 'run_kill');
    const common = ['--manifest', path.join(demo, 'dataset_dense.json'), '--out', run, '--patch', '8,48,48', '--depth', '2', '--base-filters', '4', '--checkpoint-every', String(EVERY), '--quiet'];
    const rand = prng(SEED);
    let resumeFrom = 0;
    for (let k = 0; k < 2; k++) {
      // kill at a random step between the first checkpoint after the start and a few steps later
      const killAt = resumeFrom + EVERY + 1 + Math.floor(rand() * (2 * EVERY));
      await trainAndKill(['train', ...common, '--steps', '100000', ...(k > 0 ? ['--resume'] : [])], run, killAt);
      const steps = trainSteps(run);
      const newest = checkpoints(run).at(-1)!;
      const saved = Number(newest.slice('step-'.length));
      expect(verifies(path.join(run, 'checkpoints', newest)), `${newest} verifies`).toBe(true);
      tally.checkpointsVerified++;
      const lost = steps.at(-1)! - saved;
      tally.stepsLost.push(lost);
      tally.maxStepsLost = Math.max(tally.maxStepsLost, lost);
      expect(lost).toBeGreaterThanOrEqual(0);
      expect(lost, `metrics reached step ${steps.at(-1)}, newest checkpoint ${saved}`).toBeLessThanOrEqual(EVERY);

      // what a kill in the middle of a save leaves: the temporary folder, and a step folder cut short
      const root = path.join(run, 'checkpoints');
      const tmp = path.join(root, `step-9999998.tmp-${999_999 - k}`);
      fs.mkdirSync(tmp);
      fs.writeFileSync(path.join(tmp, 'model.json'), '{"format": "layers-mo');
      const cut = path.join(root, `step-${String(9_999_990 + k).padStart(7, '0')}`);
      fs.mkdirSync(cut);
      fs.writeFileSync(path.join(cut, 'weights.bin'), Buffer.alloc(10));
      tally.halfWrittenIgnored += 2;

      const r = (await runCliBounded(['train', ...common, '--steps', String(saved + 1), '--resume', '--json'], { timeoutMs: 120_000 })) as Run;
      expect(r.code, r.stderr).toBe(0);
      const report = JSON.parse(r.stdout) as { startStep: number; step: number };
      expect(report).toMatchObject({ startStep: saved, step: saved + 1 });
      tally.resumes++;
      fs.rmSync(cut, { recursive: true });
      resumeFrom = saved + 1;
    }
  });
});
