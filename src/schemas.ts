/** JSON Schemas shipped in `schemas/`, compiled once with ajv; validation errors become plain-language field paths. */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { packageFile } from './packageRoot.js';
import type { Ajv as AjvInstance, ErrorObject, ValidateFunction } from 'ajv';

const SCHEMA_DIR = fileURLToPath(packageFile('schemas/'));

// ajv (~30 ms to load) is required on the first validation only: commands that never validate a
// manifest or report (check on label files, --help, --version) start without it. require keeps validation sync.
const requireCjs = createRequire(import.meta.url);
let ajv: AjvInstance | undefined;
const compiled = new Map<string, ValidateFunction>();

export function schemaPath(name: string): string {
  return `${SCHEMA_DIR}${name}.schema.json`;
}

export function loadSchema(name: string): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(schemaPath(name), 'utf8')) as Record<string, unknown>;
}

/**
 * The validator `npm run build` generated from the schema (scripts/build-validators.js: ajv standalone code),
 * when it exists and is not older than the schema; it saves loading ajv and compiling (~65 ms per command).
 */
function prebuilt(name: string): ValidateFunction | undefined {
  const file = fileURLToPath(packageFile(`dist/validators/${name}.cjs`));
  try {
    if (fs.statSync(file).mtimeMs < fs.statSync(schemaPath(name)).mtimeMs) return undefined;
  } catch {
    return undefined; // not built (e.g. running from the TypeScript sources)
  }
  return requireCjs(file) as ValidateFunction;
}

function validator(name: string): ValidateFunction {
  let v = compiled.get(name) ?? prebuilt(name);
  if (v) compiled.set(name, v);
  if (!v) {
    if (!ajv) {
      const { Ajv } = requireCjs('ajv') as typeof import('ajv');
      ajv = new Ajv({ allErrors: true, strict: false, useDefaults: false });
    }
    v = ajv.compile(loadSchema(name));
    compiled.set(name, v);
  }
  return v;
}

/** `/cubes/2/prio` → `cubes[2].prio` */
function fieldPath(instancePath: string): string {
  if (!instancePath) return '(top level)';
  return instancePath
    .split('/')
    .slice(1)
    .map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`))
    .join('')
    .replace(/^\./, '');
}

function describe(e: ErrorObject): string {
  const at = fieldPath(e.instancePath);
  switch (e.keyword) {
    case 'required':
      return `${at === '(top level)' ? '' : at + '.'}${String(e.params.missingProperty)} is missing`;
    case 'additionalProperties':
      return `${at}: unknown field '${String(e.params.additionalProperty)}'`;
    case 'type':
      return `${at} must be ${String(e.params.type)}`;
    case 'enum':
      return `${at} must be one of ${(e.params.allowedValues as unknown[]).join(', ')}`;
    default:
      return `${at} ${e.message ?? 'is invalid'}`;
  }
}

/** Validate against a named schema; returns plain-language messages, empty when valid. */
export function validateAgainst(name: string, value: unknown): string[] {
  const v = validator(name);
  if (v(value)) return [];
  return (v.errors ?? []).map(describe);
}
