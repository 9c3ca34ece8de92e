/** Shared test helpers: run the built CLI as a child process, locate fixtures, validate against our schemas. */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const BIN = path.join(ROOT, 'bin', 'lazylabel.js');
export const fixture = (...p: string[]): string => path.join(ROOT, 'fixtures', ...p);

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: opts.cwd ?? ROOT,
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1', ...opts.env },
    maxBuffer: 64 * 1024 * 1024,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export function tmpDir(prefix = 'lazylabel-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

const ajv = new Ajv({ allErrors: true, strict: false });
export function schemaErrors(schemaName: string, value: unknown): string[] {
  const schema = JSON.parse(fs.readFileSync(path.join(ROOT, 'schemas', `${schemaName}.schema.json`), 'utf8')) as object;
  const validate = ajv.getSchema(schemaName) ?? (ajv.addSchema(schema, schemaName), ajv.getSchema(schemaName)!);
  return validate(value) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`);
}

/** True when Debian's h5py (system Python) is importable: interop tests run only then. */
export const hasH5py = spawnSync('/usr/bin/python3', ['-c', 'import h5py, numpy'], { encoding: 'utf8' }).status === 0;
export const hasH5dump = spawnSync('h5dump', ['--version'], { encoding: 'utf8' }).status === 0;

export function python(code: string): string {
  const r = spawnSync('/usr/bin/python3', ['-c', code], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python failed: ${r.stderr}`);
  return r.stdout;
}
