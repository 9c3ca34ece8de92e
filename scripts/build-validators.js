#!/usr/bin/env node
// Compile every JSON Schema in schemas/ into a standalone ajv validator module (dist/validators/NAME.cjs),
// so the CLI validates a manifest without loading ajv and compiling the schema at start-up (~65 ms).
// Part of `npm run build` / `prepare`; src/schemas.ts falls back to compiling at run time without them.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import standaloneCode from 'ajv/dist/standalone/index.js';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist', 'validators');
fs.mkdirSync(out, { recursive: true });
// the same options as src/schemas.ts, plus code generation
const ajv = new Ajv({ allErrors: true, strict: false, useDefaults: false, code: { source: true } });
for (const file of fs.readdirSync(path.join(root, 'schemas')).filter((f) => f.endsWith('.schema.json')).sort()) {
  const name = file.replace(/\.schema\.json$/, '');
  const validate = ajv.compile(JSON.parse(fs.readFileSync(path.join(root, 'schemas', file), 'utf8')));
  const tmp = path.join(out, `.${name}.cjs.tmp`);
  fs.writeFileSync(tmp, standaloneCode.default(ajv, validate));
  fs.renameSync(tmp, path.join(out, `${name}.cjs`));
}
