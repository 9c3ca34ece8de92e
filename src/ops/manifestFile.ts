/** Read a manifest from disk; parse errors become user errors naming the file. */
import fs from 'node:fs';
import { LazyLabelError } from '../errors.js';
import { parseManifest, type Manifest } from '../core/manifest.js';
import type { Finding } from '../core/findings.js';

export function readManifestJson(file: string): unknown {
  let text: string;
  try {
    // a pipe or device would block the read forever: only regular files are manifests
    if (!fs.statSync(file).isFile()) {
      throw new LazyLabelError('manifest is not a regular file', { code: 'manifest-schema', file, hint: 'pass the path of a .json file' });
    }
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof LazyLabelError) throw e;
    throw new LazyLabelError('manifest not found', { code: 'file-missing', file, hint: 'check the --manifest path' });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new LazyLabelError(`manifest is not valid JSON: ${(e as Error).message}`, { code: 'manifest-schema', file, hint: 'fix the JSON syntax' });
  }
}

export function loadManifest(file: string): { manifest: Manifest | null; findings: Finding[] } {
  return parseManifest(readManifestJson(file), file);
}

/** Load a manifest that must be valid (for commands other than check). */
export function requireManifest(file: string): Manifest {
  const { manifest, findings } = loadManifest(file);
  const errors = findings.filter((f) => f.severity === 'error');
  if (!manifest || errors.length) {
    throw new LazyLabelError(`manifest is invalid: ${errors.map((f) => f.message).join('; ')}`, { code: 'manifest-schema', file, hint: `run 'lazylabel check --manifest ${file}' for details` });
  }
  return manifest;
}
