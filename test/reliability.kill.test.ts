/**
 * Reliability (issue #10): SIGKILL at seeded random points while `convert` writes (with and without --force
 * over a previous output) and while `suggest-prios --write-manifest` runs: afterwards the target is absent,
 * the previous file or the complete new one, never anything else; inputs are byte-identical; the next run
 * removes the temporaries of killed runs. Two concurrent converts to one output: one wins, the other fails
 * cleanly. Outputs are never written through a symbolic link.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { H5Sink, H5Source } from '../src/io/hdf5.js';
import { cleanStaleTemps, tempPathFor, writeAtomically } from '../src/io/atomic.js';
import { prng } from '../fixtures/fuzz/mutate.mjs';
import { BIN, contractProblem, pool, runCliBounded, sha256, writeSummary } from '../fixtures/fuzz/harness.mjs';
import { tmpDir } from './helpers.js';

interface Run { code: number | null; signal: string | null; stdout: string; stderr: string; ms: number; timedOut: boolean }

const SEED = 20261125;
const KILLS_PER_SCENARIO = 6;
const dir = tmpDir('lazylabel-kill-');
const input = path.join(dir, 'mask.h5');
const SHAPE = [128, 320, 320];
const tally = { seed: SEED, convertKills: 0, convertKilledWhileWriting: 0, convertKilledAfterPublish: 0, priosKills: 0, manifestsOld: 0, manifestsNew: 0, tempsLeftByKills: 0, concurrentRaces: 0, filesLost: 0, inputsChanged: 0 };
afterAll(() => {
  writeSummary('kill', tally);
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A mask volume big enough that converting it with --slab-mb 1 takes a few seconds (about 100 slabs). */
beforeAll(async () => {
  const sink = await H5Sink.create(input);
  const w = sink.createDataset('mask', { shape: SHAPE, dtype: 'uint8', gzip: 1 });
  const row = SHAPE[1]! * SHAPE[2]!;
  for (let z = 0; z < SHAPE[0]!; z++) w.write(Uint8Array.from({ length: row }, (_, j) => ((j * 7 + z * 13) % 11 > 5 ? 1 : 0)));
  sink.close();
});

const tmpsOf = (target: string): string[] => fs.readdirSync(path.dirname(target)).filter((n) => n.startsWith(`.${path.basename(target)}.lazylabel-tmp-`));

/** Per-class counts of a label file's `lab`, or null when it does not open as a complete label file. */
async function countsOf(file: string): Promise<number[] | null> {
  try {
    const src = await H5Source.open(file);
    try {
      if (!src.has('info')) return null;
      const counts = [0, 0, 0, 0];
      const data = src.readSlab('lab', 0, SHAPE[0]!);
      if (data.length !== SHAPE.reduce((a, b) => a * b, 1)) return null;
      for (const v of data) counts[v + 1]!++;
      return counts;
    } finally {
      src.close();
    }
  } catch {
    return null;
  }
}

/** Start `lazylabel ARGS`, SIGKILL it after `delayMs`; resolves with what the output folder held at that moment. */
function killAfter(args: string[], delayMs: number, target: string): Promise<{ exited: boolean; tmpSeen: boolean; targetSeen: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: 'ignore' });
    let exited = false;
    let seen = { tmpSeen: false, targetSeen: false };
    child.on('exit', () => {
      exited = true;
    });
    setTimeout(() => {
      seen = { tmpSeen: tmpsOf(target).length > 0, targetSeen: fs.existsSync(target) };
      child.kill('SIGKILL');
    }, delayMs);
    child.on('close', () => resolve({ exited: exited && !child.killed, ...seen }));
  });
}

const convertArgs = (out: string, fill: number, force: boolean): string[] =>
  ['convert', '--mask', `${input}:mask`, '--fill-class', String(fill), '--n-lab', '3', '-o', out, '--slab-mb', '1', '--quiet', ...(force ? ['--force'] : [])];
const reference = path.join(dir, 'reference.h5');
let referenceMs = 0;
let newCounts: number[] | null = null;

/** The complete new output, timed: the kills land anywhere from start-up to the end of writing. */
beforeAll(async () => {
  const full = (await runCliBounded(convertArgs(reference, 0, false), { timeoutMs: 60_000 })) as Run;
  expect(full.code, full.stderr).toBe(0);
  referenceMs = full.ms;
  newCounts = await countsOf(reference);
  expect(newCounts).not.toBeNull();
});

describe('SIGKILL during convert', () => {
  it(`${2 * KILLS_PER_SCENARIO} kills at random points: the output is absent, the old file or the complete new one; inputs untouched; temporaries cleaned by the next run`, async () => {
    const inputSha = sha256(input);
    const rand = prng(SEED);
    for (const force of [false, true]) {
      const out = path.join(dir, force ? 'replaced.h5' : 'fresh.h5');
      const oldCopy = path.join(dir, 'old-output.h5');
      if (force) {
        // the previous output: a different conversion of the same mask (class 1 instead of 0)
        const prev = (await runCliBounded(convertArgs(oldCopy, 1, false), { timeoutMs: 60_000 })) as Run;
        expect(prev.code, prev.stderr).toBe(0);
      }
      const oldSha = force ? sha256(oldCopy) : null;
      for (let k = 0; k < KILLS_PER_SCENARIO; k++) {
        // every kill starts from the same state: no output, or the previous complete one
        if (force) fs.copyFileSync(oldCopy, out);
        else fs.rmSync(out, { force: true });
        const delay = Math.round(300 + rand() * Math.max(500, referenceMs - 300));
        const seen = await killAfter(convertArgs(out, 0, force), delay, out);
        tally.convertKills++;
        if (seen.tmpSeen) tally.convertKilledWhileWriting++;
        tally.tempsLeftByKills += tmpsOf(out).length;
        if (sha256(input) !== inputSha) tally.inputsChanged++;
        if (!fs.existsSync(out)) {
          if (force) tally.filesLost++; // a killed --force run must leave the previous file
          continue;
        }
        if (force && sha256(out) === oldSha) continue;
        // anything else must be the complete new output
        if (JSON.stringify(await countsOf(out)) === JSON.stringify(newCounts)) tally.convertKilledAfterPublish++;
        else tally.filesLost++;
      }
      // the next complete run removes what the killed ones left behind (each killed run also removed its predecessors')
      const next = (await runCliBounded(convertArgs(out, 0, true), { timeoutMs: 60_000 })) as Run;
      expect(next.code, next.stderr).toBe(0);
      expect(tmpsOf(out)).toEqual([]);
      expect(await countsOf(out)).toEqual(newCounts);
    }
    expect(tally.filesLost).toBe(0);
    expect(tally.inputsChanged).toBe(0);
    expect(sha256(input)).toBe(inputSha);
  });

  it('cleanStaleTemps removes temporaries of dead writers only', async () => {
    const target = path.join(dir, 'stale.h5');
    const dead = await new Promise<number>((resolve) => {
      const c = spawn(process.execPath, ['-e', '0']);
      c.on('close', () => resolve(c.pid!));
    });
    const mine = tempPathFor(target);
    const deadTmp = path.join(dir, `.stale.h5.lazylabel-tmp-${dead}-abcdef`);
    const liveTmp = path.join(dir, `.stale.h5.lazylabel-tmp-${process.ppid}-abcdef`);
    for (const f of [mine, deadTmp, liveTmp]) fs.writeFileSync(f, 'partial');
    expect(cleanStaleTemps(target)).toEqual([path.basename(deadTmp)]);
    expect(fs.existsSync(mine) && fs.existsSync(liveTmp)).toBe(true);
    for (const f of [mine, liveTmp]) fs.rmSync(f);
  });
});

describe('SIGKILL during suggest-prios --write-manifest', () => {
  it('the manifest is always the old or the new one, valid JSON', async () => {
    const m = path.join(dir, 'prios', 'dataset.json');
    fs.mkdirSync(path.dirname(m));
    const cubes = [];
    for (let i = 0; i < 3; i++) {
      fs.copyFileSync(reference, path.join(dir, 'prios', `cube${i}.h5`));
      cubes.push({ name: `cube${i}`, label: `cube${i}.h5` });
    }
    fs.writeFileSync(m, JSON.stringify({ n_lab: 3, lazy_labels: true, cubes }, null, 2) + '\n');
    const oldText = fs.readFileSync(m, 'utf8');
    const full = (await runCliBounded(['suggest-prios', '--manifest', m, '--write-manifest', '--quiet', '--slab-mb', '1'], { timeoutMs: 60_000 })) as Run;
    expect(full.code, full.stderr).toBe(0);
    const newText = fs.readFileSync(m, 'utf8');
    expect(newText).not.toBe(oldText);
    const rand = prng(SEED + 1);
    for (let k = 0; k < KILLS_PER_SCENARIO; k++) {
      fs.writeFileSync(m, oldText);
      await killAfter(['suggest-prios', '--manifest', m, '--write-manifest', '--quiet', '--slab-mb', '1'], Math.round(200 + rand() * full.ms), m);
      tally.priosKills++;
      tally.tempsLeftByKills += tmpsOf(m).length;
      const text = fs.readFileSync(m, 'utf8');
      JSON.parse(text);
      if (text === oldText) tally.manifestsOld++;
      else if (text === newText) tally.manifestsNew++;
      else tally.filesLost++;
    }
    expect(tally.manifestsOld + tally.manifestsNew).toBe(KILLS_PER_SCENARIO);
    // the next run cleans what the killed ones left
    expect((await runCliBounded(['suggest-prios', '--manifest', m, '--write-manifest', '--quiet'], { timeoutMs: 60_000 })).code).toBe(0);
    expect(tmpsOf(m)).toEqual([]);
  });
});

describe('concurrent writers and links', () => {
  it('two converts to the same new output at once: one wins, the other fails with exit 2, the output is complete', async () => {
    const small = ['--mask', `${input}:mask`, '--fill-class', '0', '--n-lab', '3', '--slab-mb', '4', '--quiet'];
    const expected = newCounts;
    for (let round = 0; round < 3; round++) {
      const out = path.join(dir, `race${round}.h5`);
      const [a, b] = (await pool([() => runCliBounded(['convert', ...small, '-o', out], { timeoutMs: 60_000 }), () => runCliBounded(['convert', ...small, '-o', out], { timeoutMs: 60_000 })], 2)) as Run[];
      const codes = [a!.code, b!.code].sort();
      expect(codes, `${a!.stderr} ${b!.stderr}`).toEqual([0, 2]);
      const loser = a!.code === 2 ? a! : b!;
      expect(contractProblem(loser, [2])).toBeNull();
      expect(loser.stderr).toMatch(/already exists|appeared while writing/);
      expect(await countsOf(out)).toEqual(expected);
      expect(tmpsOf(out)).toEqual([]);
      tally.concurrentRaces++;
    }
  });

  it('writeAtomically without force: the second of two overlapping writers is refused, the first file stays', async () => {
    const target = path.join(dir, 'overlap.txt');
    const slow = (text: string, ms: number) => (tmp: string) => new Promise<void>((resolve) => setTimeout(() => {
      fs.writeFileSync(tmp, text);
      resolve();
    }, ms));
    const results = await Promise.allSettled([writeAtomically(target, {}, slow('first', 50)), writeAtomically(target, {}, slow('second', 150))]);
    expect(results[0]!.status).toBe('fulfilled');
    expect(results[1]!.status).toBe('rejected');
    expect(((results[1] as PromiseRejectedResult).reason as { code: string }).code).toBe('output-exists');
    expect(fs.readFileSync(target, 'utf8')).toBe('first');
    expect(tmpsOf(target)).toEqual([]);
  });

  it('an output that is a symlink (to an input or anywhere) is refused, even with --force; the input is unchanged', async () => {
    const inputSha = sha256(input);
    const toInput = path.join(dir, 'link-to-input.h5');
    fs.symlinkSync(input, toInput);
    const elsewhere = path.join(dir, 'link-to-new.h5');
    fs.symlinkSync(path.join(dir, 'nowhere.h5'), elsewhere);
    for (const out of [toInput, elsewhere]) {
      for (const force of [[], ['--force']]) {
        const r = (await runCliBounded(['convert', '--mask', `${input}:mask`, '--fill-class', '0', '--n-lab', '3', '-o', out, '--quiet', ...force], { timeoutMs: 60_000 })) as Run;
        expect(contractProblem(r, [2])).toBeNull();
        expect(r.stderr).toMatch(/is also an input|is a symbolic link/);
      }
    }
    expect(sha256(input)).toBe(inputSha);
    expect(fs.existsSync(path.join(dir, 'nowhere.h5'))).toBe(false);
  });
});
