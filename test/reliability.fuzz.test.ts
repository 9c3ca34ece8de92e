/**
 * Reliability (issue #10): seeded corruptions of the valid fixtures, the hand-made hostile files and the kept
 * regressions go through `check`, `suggest-prios` and `convert` as child processes. Every run must end within
 * its time limit with exit 0/1/2 (never 3), at most one line on stderr and no stack trace; a batch reports on
 * every file, and a good file in a batch of bad ones gets the same verdict as alone.
 * Reproduce a case: node fixtures/fuzz/mutate.mjs --seed SEED --count N --out DIR.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { baseFixtures, caseFor, describeCase, mutate } from '../fixtures/fuzz/mutate.mjs';
import { contractProblem, pool, runCliBounded, writeSummary } from '../fixtures/fuzz/harness.mjs';
import { H5Source } from '../src/io/hdf5.js';
import { isLazyLabelError } from '../src/errors.js';
import { fixture, tmpDir } from './helpers.js';

interface Run { code: number | null; signal: string | null; stdout: string; stderr: string; ms: number; timedOut: boolean }
interface Case { name: string; file: string; key: string; origin: 'mutated' | 'hostile' | 'regression'; what: string }
interface FileVerdict { status: string; findings: { severity: string; code: string; message: string }[]; stats: unknown }

const SEED = 20261125;
const N_MUTATED = 150;
const BATCH = 20;
/** Per process: a batch of 20 small files takes about a second; a hang or a crawl through fill values takes far longer. */
const TIMEOUT_MS = 45_000;

const HOSTILE = fixture('fuzz', 'hostile');
const REGRESS = fixture('fuzz', 'regress');
/** A good file appended to every batch: its verdict must not depend on the bad files before it. */
const SENTINEL = { file: fixture('check', 'dense3d_int16_chunked.h5'), key: 'lab' };

const work = tmpDir('lazylabel-fuzz-');
const cases: Case[] = [];
const bases = baseFixtures() as { file: string; key: string }[];
const byKind: Record<string, number> = {};
for (let i = 0; i < N_MUTATED; i++) {
  const c = caseFor(SEED, i, bases);
  byKind[c.kind] = (byKind[c.kind] ?? 0) + 1;
  const file = path.join(work, `case-${SEED}-${String(i).padStart(4, '0')}.h5`);
  fs.writeFileSync(file, mutate(fs.readFileSync(fixture('..', c.base)), c));
  cases.push({ name: path.basename(file), file, key: c.key, origin: 'mutated', what: describeCase(c) });
}
const hostile = JSON.parse(fs.readFileSync(path.join(HOSTILE, 'expected.json'), 'utf8')) as Record<string, { key: string }>;
for (const [name, e] of Object.entries(hostile)) cases.push({ name, file: path.join(HOSTILE, name), key: e.key, origin: 'hostile', what: `hostile ${name}` });
const regressions = JSON.parse(fs.readFileSync(fixture('fuzz', 'regressions.json'), 'utf8')) as { cases: { file: string; key: string; seed: number; index: number; failed: string; readAll?: string }[] };
// a kept regression is also reproducible from its seed while the fixtures it came from are unchanged (counted, not required)
const reproducible = regressions.cases.filter((r) => {
  const c = caseFor(r.seed, r.index, bases);
  return fs.readFileSync(path.join(REGRESS, r.file)).equals(mutate(fs.readFileSync(fixture('..', c.base)), c));
}).length;
for (const r of regressions.cases) cases.push({ name: r.file, file: path.join(REGRESS, r.file), key: r.key, origin: 'regression', what: `regression seed ${r.seed} #${r.index} (${r.failed.slice(0, 60)}...)` });

const problems: string[] = [];
let problemCount = 0;
const exits: Record<string, Record<string, number>> = { check: {}, 'suggest-prios': {}, convert: {} };
const runs: Record<string, number> = { check: 0, 'suggest-prios': 0, convert: 0 };
let slowest = 0;
let sentinelChecked = 0;

function record(command: string, r: Run): void {
  runs[command]!++;
  const k = r.timedOut ? 'timeout' : r.signal ? String(r.signal) : String(r.code);
  exits[command]![k] = (exits[command]![k] ?? 0) + 1;
  slowest = Math.max(slowest, r.ms);
}

const batches: Case[][] = [];
for (let i = 0; i < cases.length; i += BATCH) batches.push(cases.slice(i, i + BATCH));
const ref = (c: { file: string; key: string }): string => `${c.file}:${c.key}`;

/** The sentinel's verdict when checked alone (the reference every batch must reproduce). */
async function sentinelAlone(command: 'check' | 'suggest-prios'): Promise<unknown> {
  const r = (await runCliBounded([command, ref(SENTINEL), '--n-lab', '3', '--json'], { cwd: HOSTILE, timeoutMs: TIMEOUT_MS })) as Run;
  const j = JSON.parse(r.stdout) as { files?: FileVerdict[]; cubes?: unknown[] };
  return command === 'check' ? j.files![0] : j.cubes![0];
}

/** What a verdict says about the file itself: prio and share are relative to the other cubes of the run. */
function own(v: unknown): unknown {
  const { prio: _p, share: _s, ...rest } = v as Record<string, unknown>;
  return rest;
}

/** Run one batch through check or suggest-prios and judge every file's entry. */
async function judgeBatch(command: 'check' | 'suggest-prios', batch: Case[], sentinel: unknown): Promise<void> {
  const args = [command, ...batch.map(ref), ref(SENTINEL), '--n-lab', '3', '--json'];
  // external storage in hostile/ resolves against the working folder (see make_hostile_fixtures.py)
  const r = (await runCliBounded(args, { cwd: HOSTILE, timeoutMs: TIMEOUT_MS })) as Run;
  record(command, r);
  const where = `${command} batch [${batch[0]!.name} .. ${batch.at(-1)!.name}]`;
  const bad = contractProblem(r, [0, 1]);
  if (bad) {
    problems.push(`${where}: ${bad}`);
    return;
  }
  if (r.stderr.trim()) problems.push(`${where}: stderr not empty with --json: ${r.stderr.trim()}`);
  let report: { files?: (FileVerdict & { name: string })[]; cubes?: (FileVerdict & { name: string })[] };
  try {
    report = JSON.parse(r.stdout);
  } catch {
    problems.push(`${where}: stdout is not JSON`);
    return;
  }
  const entries = (command === 'check' ? report.files : report.cubes) ?? [];
  if (entries.length !== batch.length + 1) {
    problems.push(`${where}: ${entries.length} entries for ${batch.length + 1} files`);
    return;
  }
  batch.forEach((c, i) => {
    const e = entries[i]!;
    if (!['ok', 'warn', 'error'].includes(e.status)) problems.push(`${command} ${c.what}: status ${e.status}`);
    for (const f of e.findings) if (f.message.includes('\n') || !f.code) problems.push(`${command} ${c.what}: finding not one line with a code: ${JSON.stringify(f)}`);
  });
  const last = own(entries.at(-1)!);
  if (JSON.stringify(last) !== JSON.stringify(own(sentinel))) problems.push(`${where}: the good file at the end got ${JSON.stringify(last).slice(0, 300)} instead of its verdict alone`);
  else sentinelChecked++;
}

describe('fuzzed, hostile and regression files through the CLI', () => {
  afterAll(() => {
    writeSummary('fuzz', {
      seed: SEED,
      cases: cases.length,
      byOrigin: { mutated: N_MUTATED, hostile: Object.keys(hostile).length, regression: regressions.cases.length },
      mutations: byKind,
      regressionsReproducibleFromSeed: reproducible,
      runs,
      exits,
      batchesWithGoodFileVerified: sentinelChecked,
      slowestRunMs: slowest,
      problems: problemCount + problems.length,
    });
    fs.rmSync(work, { recursive: true, force: true });
  });

  it(`check and suggest-prios: ${cases.length} files in batches of ${BATCH}, every file gets a one-line verdict, exit 0/1 only`, async () => {
    const [checkRef, priosRef] = await Promise.all([sentinelAlone('check'), sentinelAlone('suggest-prios')]);
    expect((checkRef as FileVerdict).status).toBe('ok');
    await pool([...batches.map((b) => () => judgeBatch('check', b, checkRef)), ...batches.map((b) => () => judgeBatch('suggest-prios', b, priosRef))]);
    const found = problems.splice(0);
    problemCount += found.length;
    expect(found).toEqual([]);
  });

  it('convert: a subset, one process each: exit 0/1/2, and either a complete output or nothing at all', async () => {
    const subset = cases.filter((c, i) => c.origin !== 'mutated' || i % 10 === 0);
    const outDir = path.join(work, 'out');
    fs.mkdirSync(outDir);
    await pool(subset.map((c) => async () => {
      const out = path.join(outDir, `${c.name}.out.h5`);
      const r = (await runCliBounded(['convert', '--mask', ref(c), '--fill-class', '0', '--n-lab', '3', '--allow-empty', '-o', out, '--json'], { cwd: HOSTILE, timeoutMs: TIMEOUT_MS })) as Run;
      record('convert', r);
      const bad = contractProblem(r, [0, 1, 2]);
      if (bad) return void problems.push(`convert ${c.what}: ${bad}`);
      if (r.code === 0) {
        const report = JSON.parse(r.stdout) as { ok: boolean; check: { status: string } };
        if (!fs.existsSync(out)) problems.push(`convert ${c.what}: exit 0 but no output`);
        if (report.check.status === 'error') problems.push(`convert ${c.what}: exit 0 but the written output fails its re-check`);
      } else if (fs.existsSync(out)) {
        problems.push(`convert ${c.what}: exit ${r.code} but ${out} exists`);
      }
    }));
    const leftovers = fs.readdirSync(outDir).filter((n) => n.includes('.lazylabel-tmp'));
    expect(leftovers, 'temporary files left behind').toEqual([]);
    const found = problems.splice(0);
    problemCount += found.length;
    expect(found).toEqual([]);
    expect(runs.convert).toBe(subset.length);
  });

  it('regressions: the library never throws anything but a LazyLabelError on them (readAll included)', async () => {
    for (const r of regressions.cases) {
      const file = path.join(REGRESS, r.file);
      for (const key of [r.key, ...(r.readAll ? [r.readAll] : [])]) {
        try {
          const src = await H5Source.open(file);
          try {
            src.info(key);
            src.readAll(key);
          } finally {
            src.close();
          }
        } catch (e) {
          expect(isLazyLabelError(e), `${r.file}:${key} threw ${String(e)}`).toBe(true);
          expect((e as Error).message).not.toContain('\n');
        }
      }
    }
  });
});
