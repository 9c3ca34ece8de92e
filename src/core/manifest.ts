/** Dataset manifests: parse and validate (ajv schema plus cross-field rules), resolve paths against the manifest folder. */
import path from 'node:path';
import { validateAgainst } from '../schemas.js';
import { Codes, error, type Finding } from './findings.js';

export interface ManifestCube {
  /** Position in the manifest's `cubes` array. */
  index: number;
  name: string;
  raw?: string;
  rawKey: string;
  label: string;
  labelKey: string;
  infoKey: string;
  prio?: number;
  valid: boolean;
  offset?: number[];
}

export interface Manifest {
  /** Absolute path of the manifest file. */
  path: string;
  nLab: number;
  classNames?: string[];
  lazyLabels: boolean;
  exampleIgnoreThreshold?: number;
  classWeights?: number[];
  patchSize?: number[];
  cubes: ManifestCube[];
  /** The JSON as read, so a rewrite keeps fields we do not model. */
  json: Record<string, unknown>;
}

interface CubeJson {
  name?: string;
  raw?: string;
  raw_key?: string;
  label: string;
  label_key?: string;
  info_key?: string;
  prio?: number;
  valid?: boolean;
  offset?: number[];
}

interface ManifestJson {
  n_lab: number;
  class_names?: string[];
  lazy_labels?: boolean;
  example_ignore_threshold?: number;
  class_weights?: number[];
  patch_size?: number[];
  cubes: CubeJson[];
}

/** Resolve a manifest-relative path (absolute paths are kept). */
export function resolveFrom(manifestPath: string, p: string): string {
  return path.resolve(path.dirname(manifestPath), p);
}

/**
 * Validate parsed JSON as a manifest. Returns the manifest (null when the schema fails) and findings;
 * manifest-level findings never stop the cubes from being checked when the schema holds.
 */
export function parseManifest(json: unknown, manifestPath: string): { manifest: Manifest | null; findings: Finding[] } {
  const absPath = path.resolve(manifestPath);
  const schemaErrors = validateAgainst('manifest', json);
  if (schemaErrors.length > 0) {
    return { manifest: null, findings: schemaErrors.map((m) => error(Codes.manifestSchema, m)) };
  }
  const j = json as ManifestJson;
  const findings: Finding[] = [];
  if (j.class_names && j.class_names.length !== j.n_lab) {
    findings.push(error(Codes.manifestSchema, `class_names has ${j.class_names.length} names but n_lab is ${j.n_lab}`));
  }
  if (j.class_weights && j.class_weights.length !== j.n_lab) {
    findings.push(error(Codes.manifestClassWeights, `class_weights has ${j.class_weights.length} entries but n_lab is ${j.n_lab}`));
  }
  const cubes: ManifestCube[] = j.cubes.map((c, index) => ({
    index,
    name: c.name ?? path.basename(c.label).replace(/\.(h5|hdf5|hdf)$/i, ''),
    raw: c.raw === undefined ? undefined : resolveFrom(absPath, c.raw),
    rawKey: c.raw_key ?? 'raw',
    label: resolveFrom(absPath, c.label),
    labelKey: c.label_key ?? 'lab',
    infoKey: c.info_key ?? 'info',
    prio: c.prio,
    valid: c.valid ?? false,
    offset: c.offset,
  }));
  const seen = new Map<string, number>();
  for (const cube of cubes) {
    const id = `${cube.label}:${cube.labelKey}`;
    const first = seen.get(id);
    if (first !== undefined) {
      findings.push(error(Codes.manifestDuplicateCube, `cubes[${cube.index}] repeats cubes[${first}] (${cube.label}:${cube.labelKey}); remove one, or raise its prio instead`));
    } else seen.set(id, cube.index);
  }
  const names = new Map<string, number>();
  for (const cube of cubes) {
    const first = names.get(cube.name);
    if (first !== undefined) findings.push(error(Codes.manifestDuplicateCube, `cubes[${cube.index}] and cubes[${first}] share the name '${cube.name}'; names must be unique`));
    else names.set(cube.name, cube.index);
  }
  return {
    manifest: {
      path: absPath,
      nLab: j.n_lab,
      classNames: j.class_names,
      lazyLabels: j.lazy_labels ?? false,
      exampleIgnoreThreshold: j.example_ignore_threshold,
      classWeights: j.class_weights,
      patchSize: j.patch_size,
      cubes,
      json: json as Record<string, unknown>,
    },
    findings,
  };
}

/** Turn `2`, `"2"` or a class name into a class id; null when unknown. */
export function classIdOf(token: string, nLab: number, classNames?: readonly string[]): number | null {
  if (/^\d+$/.test(token)) {
    const id = Number(token);
    return id < nLab ? id : null;
  }
  const id = classNames?.indexOf(token) ?? -1;
  return id >= 0 ? id : null;
}
