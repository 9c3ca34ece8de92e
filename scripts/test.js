#!/usr/bin/env node
// `npm test`: type-check and build (tsc, validators, CLI bundle), run vitest, and end with a plain "N passed, N failed" line for CI logs.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const npx = process.platform === 'win32' ? 'npx.cmd' : 'npx';
const build = spawnSync(npx, ['tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);
const validators = spawnSync(process.execPath, ['scripts/build-validators.js'], { stdio: 'inherit' });
if (validators.status !== 0) process.exit(validators.status ?? 1);
const cli = spawnSync(process.execPath, ['scripts/build-cli.js'], { stdio: 'inherit' });
if (cli.status !== 0) process.exit(cli.status ?? 1);

const results = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'lazylabel-vitest-')), 'results.json');
const run = spawnSync(npx, ['vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile=${results}`, ...process.argv.slice(2)], { stdio: 'inherit' });
try {
  const r = JSON.parse(fs.readFileSync(results, 'utf8'));
  const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  console.log(`\ntests: ${r.numPassedTests} passed, ${r.numFailedTests} failed${skipped ? `, ${skipped} skipped` : ''}`);
} catch {
  // no results file: vitest itself failed to start; its exit code says so
}
process.exit(run.status ?? 1);
