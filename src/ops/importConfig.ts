/**
 * `import-config`: an ELEKTRONN training config (a Python file, parsed and never run) → a dataset
 * manifest. The library entry point is `importConfig(options)`.
 *
 * What is mapped, following how ELEKTRONN itself reads these settings:
 * - `d_files` / `l_files` (lists of `(file, dataset)` tuples, same order) → one cube each; ELEKTRONN 1
 *   joins them to `data_path` / `label_path` by plain string concatenation (so those end in '/'),
 *   ELEKTRONN2's `data_init_kwargs` (`d_path`, `l_path`, ...) uses `os.path.join`. `~` is expanded as
 *   ELEKTRONN does; paths are written relative to the manifest's folder.
 * - `valid_cubes` (indices into the file lists) → `valid: true`; ELEKTRONN ignores indices out of range.
 * - `cube_prios` → `prio` of the TRAINING cubes in order: ELEKTRONN builds its sampling weights from
 *   `cube_prios` against the cubes left after removing `valid_cubes` (exactly the list that
 *   `suggest-prios --format elektronn` prints). `None` or `[]` means "by cube size" (no prio written).
 * - `n_lab`, `lazy_labels`, `example_ignore_threshold`, `class_weights` → the manifest fields of the
 *   same names; `desired_input` (x,y,z order, with `n_dim`, `zchxy_order`) or a `patch_size` /
 *   `patch_shape` variable → `patch_size` in label axis order.
 * The manifest is validated with its schema and the manifest rules before it is written (atomically);
 * with errors nothing is written. Unread statements never stop an import: they are listed.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseElektronnConfig, type JsValue, type ParsedConfig } from '../core/elektronnConfig.js';
import { Codes, error, info, warning, type Finding } from '../core/findings.js';
import { parseManifest } from '../core/manifest.js';
import { LazyLabelError, usageError } from '../errors.js';
import { checkOutputPath, writeTextAtomically } from '../io/atomic.js';

/** Stable finding codes of this command. */
export const ImportCodes = {
  configMissing: 'config-missing',
  configUnreadable: 'config-unreadable',
  configValue: 'config-value',
  configMaybeChanged: 'config-maybe-changed',
  configFileLists: 'config-file-lists',
  configCubePrios: 'config-cube-prios',
  configValidCubes: 'config-valid-cubes',
  configPath: 'config-path',
  configPatch: 'config-patch',
  configMode: 'config-mode',
  configNLab: 'config-n-lab',
  configNotImported: 'config-not-imported',
} as const;

/** Configs above this size are refused: real ones are a few kB. */
const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

export interface ImportConfigOptions {
  /** The ELEKTRONN config (.py); it is read, never executed. */
  config: string;
  /** Manifest to write. */
  output: string;
  /** Replace an existing output (never the config itself). */
  force?: boolean;
  /** Number of classes when the config has none (`n_lab = None`, or ELEKTRONN2 configs). */
  nLab?: number;
  /** Folder that relative `data_path` / `label_path` resolve against; default: the config's folder. */
  baseDir?: string;
  /** Home folder for `~`; default: the current user's. */
  home?: string;
  /** false: build and validate the manifest but write nothing (default true). */
  write?: boolean;
}

export interface ImportedCube {
  /** Position in `d_files` / `l_files` (what `valid_cubes` indexes). */
  index: number;
  name: string;
  /** Paths as written in the manifest (relative to its folder). */
  raw: string;
  rawKey: string;
  label: string;
  labelKey: string;
  valid: boolean;
  prio: number | null;
}

export interface UnreadLine {
  line: number;
  text: string;
  reason: string;
}

export interface ImportConfigReport {
  command: 'import-config';
  /** No errors: the manifest is (or, with write: false, would be) written. */
  ok: boolean;
  /** Absolute path of the config. */
  config: string;
  /** Absolute path of the manifest. */
  output: string;
  written: boolean;
  /** Which config layout was recognised: ELEKTRONN 1 top-level variables or ELEKTRONN2's data_init_kwargs. */
  dialect: 'elektronn' | 'elektronn2';
  cubes: ImportedCube[];
  /** ELEKTRONN setting → manifest field it was mapped to. */
  mapped: Record<string, string>;
  /** Statements not read (imports, calls, blocks, anything outside the supported subset). */
  unread: UnreadLine[];
  findings: Finding[];
  /** The manifest JSON (null when it could not be built). */
  manifest: Record<string, unknown> | null;
}

/** One ELEKTRONN setting as found in the config. */
interface Setting {
  /** How the setting is named in the config, e.g. `d_files` or `data_init_kwargs['d_files']`. */
  name: string;
  present: boolean;
  value: JsValue | undefined;
  line: number | undefined;
  /** Its last assignment could not be read. */
  failure: { line: number; reason: string } | undefined;
  /** Lines of skipped code after its assignment that may change it. */
  changedBy: number[];
}

type Dialect = ImportConfigReport['dialect'];

const isObject = (v: JsValue | undefined): v is { [key: string]: JsValue } => typeof v === 'object' && v !== null && !Array.isArray(v);
const has = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);
const lineList = (lines: number[]): string => `${lines.length === 1 ? 'line' : 'lines'} ${lines.join(', ')}`;
const show = (v: JsValue | undefined): string => {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
};

function topLevel(parsed: ParsedConfig, name: string): Setting {
  const present = parsed.py.has(name);
  const line = present ? parsed.lines.get(name) : undefined;
  const failure = present ? undefined : parsed.failed.get(name);
  const after = line ?? failure?.line ?? 0;
  const touched = [...(parsed.touched.get(name) ?? []), ...(parsed.touched.get('*') ?? [])];
  const changedBy = [...new Set(touched.filter((l) => l > after))].sort((a, b) => a - b);
  return { name, present, value: present ? parsed.values[name] : undefined, line, failure, changedBy };
}

function dictEntry(parsed: ParsedConfig, dictName: string, key: string): Setting {
  const dict = topLevel(parsed, dictName);
  const name = `${dictName}['${key}']`;
  const present = dict.present && isObject(dict.value) && has(dict.value, key);
  return { ...dict, name, present, value: present ? (dict.value as Record<string, JsValue>)[key] : undefined };
}

/** Expand `~` like os.path.expanduser. */
function expandUser(p: string, home: string): string {
  if (p === '~') return home;
  if (p.startsWith('~/')) return home.replace(/\/$/, '') + p.slice(1);
  return p;
}

const toPosix = (p: string): string => p.split(path.sep).join('/');

class Mapper {
  readonly findings: Finding[] = [];
  readonly mapped: Record<string, string> = {};

  constructor(
    private readonly parsed: ParsedConfig,
    readonly dialect: Dialect,
  ) {}

  setting(key: string): Setting {
    if (this.dialect === 'elektronn2') {
      const e2: Record<string, [string, string]> = {
        data_path: ['data_init_kwargs', 'd_path'],
        label_path: ['data_init_kwargs', 'l_path'],
        d_files: ['data_init_kwargs', 'd_files'],
        l_files: ['data_init_kwargs', 'l_files'],
        cube_prios: ['data_init_kwargs', 'cube_prios'],
        valid_cubes: ['data_init_kwargs', 'valid_cubes'],
        example_ignore_threshold: ['data_batch_args', 'ignore_thresh'],
      };
      const where = e2[key];
      if (where) return dictEntry(this.parsed, where[0], where[1]);
    }
    return topLevel(this.parsed, key);
  }

  /**
   * The value of a setting, or undefined when it is absent or unreadable (with findings saying so).
   * `required`: absence is an error. Skipped code that may change the value gives a warning.
   */
  read(s: Setting, required: boolean, hint = ''): JsValue | undefined {
    if (s.present) {
      if (s.changedBy.length) {
        this.findings.push(warning(ImportCodes.configMaybeChanged, `${s.name} (line ${s.line}) may be changed by code lazylabel skips (${lineList(s.changedBy)}): check the imported value ${show(s.value)}`));
      }
      return s.value;
    }
    if (s.failure) {
      this.findings.push(error(ImportCodes.configUnreadable, `${s.name} could not be read (line ${s.failure.line}: ${s.failure.reason})${hint ? `; ${hint}` : ''}`));
      return undefined;
    }
    if (s.changedBy.length) {
      const msg = `${s.name} is only set by code lazylabel skips (${lineList(s.changedBy)})`;
      this.findings.push(required ? error(ImportCodes.configUnreadable, `${msg}; assign it with a plain value${hint ? `, or ${hint}` : ''}`) : warning(ImportCodes.configMaybeChanged, `${msg}: not imported`));
      return undefined;
    }
    if (required) this.findings.push(error(ImportCodes.configMissing, `${s.name} is not set in the config${hint ? `; ${hint}` : ''}`));
    return undefined;
  }

  map(s: Setting, field: string): void {
    this.mapped[s.name] = field;
  }
}

function detectDialect(parsed: ParsedConfig): Dialect {
  const e1 = ['d_files', 'l_files', 'data_path', 'label_path'].some((n) => parsed.py.has(n) || parsed.failed.has(n) || parsed.touched.has(n));
  if (!e1 && (parsed.py.has('data_init_kwargs') || parsed.failed.has('data_init_kwargs'))) return 'elektronn2';
  return 'elektronn';
}

/** Read the (file, dataset) list; null entries for malformed ones (reported). */
function fileList(m: Mapper, s: Setting, value: JsValue | undefined): [string, string][] | null {
  if (value === undefined) return null;
  if (!Array.isArray(value)) {
    m.findings.push(error(ImportCodes.configValue, `${s.name} must be a list of (file name, dataset) tuples, got ${show(value)}`));
    return null;
  }
  const out: [string, string][] = [];
  let bad = false;
  value.forEach((entry, i) => {
    if (Array.isArray(entry) && entry.length === 2 && typeof entry[0] === 'string' && typeof entry[1] === 'string' && entry[0] && entry[1]) out.push([entry[0], entry[1]]);
    else {
      bad = true;
      m.findings.push(error(ImportCodes.configValue, `${s.name}[${i}] must be a (file name, dataset) tuple of two non-empty strings, got ${show(entry)}`));
    }
  });
  return bad ? null : out;
}

/** Absolute folder for data_path / label_path (null when unusable, with findings). */
function folderOf(m: Mapper, s: Setting, value: JsValue | undefined, opts: { home: string; baseDir: string }): string | null {
  if (value === undefined) {
    if (m.dialect === 'elektronn' && !s.failure && !s.changedBy.length) {
      m.findings.push(warning(ImportCodes.configPath, `${s.name} is not set: ELEKTRONN's default '/' is used`));
      return '/';
    }
    return null;
  }
  if (typeof value !== 'string') {
    m.findings.push(error(ImportCodes.configValue, `${s.name} must be a string (a folder), got ${show(value)}`));
    return null;
  }
  const expanded = expandUser(value, opts.home);
  if (m.dialect === 'elektronn' && expanded !== '' && !expanded.endsWith('/')) {
    m.findings.push(warning(ImportCodes.configPath, `${s.name} = ${show(value)} has no trailing '/': ELEKTRONN joins it to file names by plain concatenation, and so does this import`));
  }
  if (!path.isAbsolute(expanded)) {
    m.findings.push(warning(ImportCodes.configPath, `${s.name} = ${show(value)} is relative: resolved against ${opts.baseDir} (ELEKTRONN resolves it against the folder training runs in; pass --base-dir to choose)`));
    return path.join(opts.baseDir, expanded) + (expanded === '' || expanded.endsWith('/') ? '/' : '');
  }
  return expanded;
}

function joinData(dialect: Dialect, folder: string, file: string): string {
  // ELEKTRONN 1: d_path + file (string concatenation); ELEKTRONN2: os.path.join
  if (dialect === 'elektronn') return path.resolve(folder + file);
  return path.resolve(file.startsWith('/') ? file : path.join(folder, file));
}

function uniqueNames(files: [string, string][]): string[] {
  const base = files.map(([f, key]) => {
    const b = path.basename(f).replace(/\.(h5|hdf5|hdf)$/i, '');
    return b || key;
  });
  const counts = new Map<string, number>();
  for (const b of base) counts.set(b, (counts.get(b) ?? 0) + 1);
  const seen = new Set<string>();
  return base.map((b, i) => {
    let name = counts.get(b)! > 1 ? `${b}_${files[i]![1]}` : b;
    if (seen.has(name)) name = `${b}_${i}`;
    seen.add(name);
    return name;
  });
}

function readNLab(m: Mapper, nLabOpt: number | undefined): number | null {
  const s = m.setting('n_lab');
  const hint = m.dialect === 'elektronn2' ? 'ELEKTRONN2 configs set the number of classes in create_model(): pass --n-lab' : 'pass --n-lab';
  const quiet = !s.present && !s.failure && !s.changedBy.length && nLabOpt !== undefined;
  const value = quiet ? undefined : m.read(s, nLabOpt === undefined, hint);
  if (value === undefined || value === null) {
    if (nLabOpt !== undefined) {
      m.mapped['--n-lab'] = 'n_lab';
      return nLabOpt;
    }
    if (value === null) m.findings.push(error(ImportCodes.configNLab, `n_lab = None (line ${s.line}) asks ELEKTRONN to count the classes in the label files: ${hint}`));
    return null;
  }
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    m.findings.push(error(ImportCodes.configValue, `n_lab must be a positive integer, got ${show(value)}`));
    return null;
  }
  if (nLabOpt !== undefined && nLabOpt !== value) {
    m.findings.push(error(ImportCodes.configNLab, `the config says n_lab = ${value} (line ${s.line}) but --n-lab is ${nLabOpt}: drop --n-lab or fix the config`));
    return null;
  }
  m.map(s, 'n_lab');
  return value;
}

/** Valid cube indices: those ELEKTRONN would match (it tests `k in valid_cubes` for k = 0..n-1). */
function readValidCubes(m: Mapper, nCubes: number): Set<number> | null {
  const s = m.setting('valid_cubes');
  const v = m.read(s, false);
  if (v === undefined || v === null) return new Set();
  if (!Array.isArray(v)) {
    m.findings.push(error(ImportCodes.configValue, `valid_cubes must be a list of cube indices, got ${show(v)}`));
    return null;
  }
  const valid = new Set<number>();
  for (const x of v) {
    if (typeof x === 'number' && Number.isInteger(x) && x >= 0 && x < nCubes) valid.add(x);
    else m.findings.push(warning(ImportCodes.configValidCubes, `valid_cubes lists ${show(x)}, which is no index of the ${nCubes} cubes (0..${nCubes - 1}): ELEKTRONN ignores it, and so does this import`));
  }
  m.map(s, 'cubes[].valid');
  return valid;
}

/** Prios of the training cubes in order, null = none given (sampling by cube size), undefined = unusable. */
function readCubePrios(m: Mapper, nTrain: number, nCubes: number): number[] | null | undefined {
  const s = m.setting('cube_prios');
  const v = m.read(s, false);
  if (v === undefined) return s.failure || s.changedBy.length ? undefined : null;
  if (v === null || (Array.isArray(v) && v.length === 0)) {
    m.map(s, 'cubes[].prio (None: by cube size, nothing written)');
    return null;
  }
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) {
    m.findings.push(error(ImportCodes.configValue, `cube_prios must be None or a list of numbers, got ${show(v)}`));
    return undefined;
  }
  const prios = v as number[];
  if (prios.length !== nTrain) {
    const extra = prios.length === nCubes && nCubes !== nTrain ? ` (one per file, but ELEKTRONN applies cube_prios to the training cubes only, after removing valid_cubes: leave the validation cubes' entries out)` : '';
    m.findings.push(error(ImportCodes.configCubePrios, `cube_prios has ${prios.length} values but there are ${nTrain} training cubes${extra}`));
    return undefined;
  }
  if (prios.some((p) => p < 0)) m.findings.push(error(ImportCodes.configCubePrios, `cube_prios must not be negative, got ${show(v)}`));
  else if (prios.length && prios.every((p) => p === 0)) m.findings.push(warning(ImportCodes.configCubePrios, 'every cube_prios value is 0: no training cube can be drawn'));
  m.map(s, 'cubes[].prio (training cubes, in order)');
  return prios;
}

function readPatch(m: Mapper): number[] | null {
  const isIntList = (v: JsValue | undefined): v is number[] => Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 1);
  for (const key of ['patch_size', 'patch_shape']) {
    const s = m.setting(key);
    if (!s.present && !s.failure && !s.changedBy.length) continue;
    const v = m.read(s, false);
    if (v === undefined) return null;
    if (!isIntList(v)) {
      m.findings.push(warning(ImportCodes.configPatch, `${key} = ${show(v)} is not a list of positive integers: not imported`));
      return null;
    }
    m.map(s, 'patch_size');
    return v;
  }
  const s = m.setting('desired_input');
  const v = m.read(s, false);
  if (v === undefined || v === null) {
    if (m.dialect === 'elektronn2') m.findings.push(info(ImportCodes.configPatch, 'ELEKTRONN2 configs give the input shape inside create_model(), which is not read: no patch_size imported (pass --patch to train)'));
    return null;
  }
  const nDimS = m.setting('n_dim');
  const nDimV = nDimS.present ? nDimS.value : 2; // ELEKTRONN's default
  if (nDimV !== 2 && nDimV !== 3) {
    m.findings.push(warning(ImportCodes.configPatch, `n_dim = ${show(nDimV)} is neither 2 nor 3: desired_input not imported`));
    return null;
  }
  if (nDimV === 2) {
    m.findings.push(warning(ImportCodes.configPatch, `n_dim = 2: ELEKTRONN trains 2-D networks on z-slices of 3-D cubes, which lazylabel's 2-D models (2-D label volumes only) do not do; desired_input ${show(v)} not imported (pass --patch to train)`));
    return null;
  }
  const dims = typeof v === 'number' ? [v, v, v] : v;
  if (!isIntList(dims) || dims.length !== 3) {
    m.findings.push(warning(ImportCodes.configPatch, `desired_input = ${show(v)} is not an integer or 3 integers: not imported`));
    return null;
  }
  const zchxy = m.setting('zchxy_order');
  const zFirst = zchxy.present && Boolean(zchxy.value);
  // desired_input is (x,y,z); files are (x,y,z), or (z,x,y) with zchxy_order
  const patch = zFirst ? [dims[2]!, dims[0]!, dims[1]!] : dims;
  m.map(s, `patch_size${zFirst ? ' (reordered to z,x,y for zchxy_order)' : ''}`);
  if (nDimS.present) m.map(nDimS, 'patch_size (dimensions)');
  if (zFirst) m.map(zchxy, 'patch_size (axis order)');
  m.findings.push(info(ImportCodes.configPatch, `desired_input ${show(v)} became patch_size ${show(patch)} (label axis order): ELEKTRONN trains on the nearest size its CNN accepts, and lazylabel's U-Net needs sizes divisible by its pooling factor (train checks)`));
  return patch;
}

/** Settings that decide whether this config is something lazylabel can import at all. */
function checkMode(m: Mapper): void {
  const mode = m.setting('mode');
  if (mode.present && mode.value !== 'img-img') {
    m.findings.push(error(ImportCodes.configMode, `mode = ${show(mode.value)}: lazylabel handles img-img (voxel-wise segmentation) training only`));
  }
  const dataClass = m.setting('data_class_name');
  if (dataClass.present && dataClass.value !== null) {
    m.findings.push(error(ImportCodes.configMode, `data_class_name = ${show(dataClass.value)}: ELEKTRONN reads this data through a data class, not d_files/l_files, so there are no cubes to import`));
  }
  const target = m.setting('target');
  if (target.present && target.value !== 'nll') {
    m.findings.push(warning(ImportCodes.configMode, `target = ${show(target.value)}: lazylabel trains with the lazy-label NLL only`));
  }
  const lp = m.setting('label_prop_thresh');
  if (lp.present && lp.value !== null) {
    m.findings.push(info(ImportCodes.configNotImported, `label_prop_thresh = ${show(lp.value)} is not part of a manifest: pass labelPropThresh to the library's train()`));
  }
}

function checkFilesExist(findings: Finding[], cubes: { name: string; rawAbs: string; labelAbs: string }[]): void {
  for (const c of cubes) {
    for (const [what, p] of [
      ['raw', c.rawAbs],
      ['label', c.labelAbs],
    ] as const) {
      if (!fs.existsSync(p)) findings.push(warning(Codes.fileMissing, `cube '${c.name}': ${what} file ${p} does not exist (yet); the manifest still names it`));
    }
  }
}

function readConfigText(file: string): string {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    throw new LazyLabelError('config not found', { code: 'file-missing', file, hint: 'check the path of the ELEKTRONN config' });
  }
  if (!st.isFile()) throw new LazyLabelError('config is not a file', { code: 'file-missing', file, hint: 'give the path of the ELEKTRONN config (.py)' });
  if (st.size > MAX_CONFIG_BYTES) throw new LazyLabelError(`config is ${st.size} bytes, more than an ELEKTRONN config has`, { code: 'config-too-large', file, hint: 'give the config file itself' });
  const buf = fs.readFileSync(file);
  if (buf.includes(0)) throw new LazyLabelError('config is a binary file, not Python source', { code: 'config-value', file, hint: 'give the .py config' });
  return buf.toString('utf8');
}

function validateOptions(o: ImportConfigOptions): void {
  if (!o.config) throw usageError('no config given', 'lazylabel import-config neuro_3d_config.py -o dataset.json');
  if (!o.output) throw usageError('no output given', 'pass -o dataset.json');
  if (o.nLab !== undefined && (!Number.isInteger(o.nLab) || o.nLab < 1)) throw usageError(`--n-lab must be a positive integer, got ${o.nLab}`);
  if (o.baseDir !== undefined && !fs.existsSync(o.baseDir)) throw usageError(`--base-dir ${o.baseDir} does not exist`);
}

/** Read an ELEKTRONN config (never executing it) and write the dataset manifest it describes. */
export async function importConfig(options: ImportConfigOptions): Promise<ImportConfigReport> {
  validateOptions(options);
  const configAbs = path.resolve(options.config);
  const outputAbs = path.resolve(options.output);
  const write = options.write ?? true;
  if (write) checkOutputPath(outputAbs, { force: options.force ?? false, inputs: [configAbs] });
  const text = readConfigText(configAbs);
  const home = options.home ?? os.homedir();
  const baseDir = path.resolve(options.baseDir ?? path.dirname(configAbs));
  const parsed = parseElektronnConfig(text, { home });
  const dialect = detectDialect(parsed);
  const m = new Mapper(parsed, dialect);
  const unread = parsed.unread.map((u) => ({ line: u.line, text: u.text, reason: u.reason }));

  checkMode(m);
  const nLab = readNLab(m, options.nLab);

  const dS = m.setting('d_files');
  const lS = m.setting('l_files');
  const dFiles = fileList(m, dS, m.read(dS, true));
  const lFiles = fileList(m, lS, m.read(lS, true));
  const dpS = m.setting('data_path');
  const lpS = m.setting('label_path');
  const dataDir = folderOf(m, dpS, m.read(dpS, dialect === 'elektronn2' || dpS.changedBy.length > 0), { home, baseDir });
  const labelDir = folderOf(m, lpS, m.read(lpS, dialect === 'elektronn2' || lpS.changedBy.length > 0), { home, baseDir });
  if (dFiles && lFiles && dFiles.length !== lFiles.length) {
    m.findings.push(error(ImportCodes.configFileLists, `d_files has ${dFiles.length} entries but l_files has ${lFiles.length}: they pair up in order, so they must be equally long`));
  }
  if (dFiles && lFiles && dFiles.length === 0 && lFiles.length === 0) {
    m.findings.push(error(ImportCodes.configFileLists, 'd_files and l_files are empty: there are no cubes to import'));
  }

  const manifestCubes: Record<string, unknown>[] = [];
  const cubes: ImportedCube[] = [];
  let manifest: Record<string, unknown> | null = null;
  const usable = dFiles && lFiles && dFiles.length === lFiles.length && dFiles.length > 0 && dataDir !== null && labelDir !== null;
  if (usable) {
    m.map(dS, 'cubes[].raw, cubes[].raw_key');
    m.map(lS, 'cubes[].label, cubes[].label_key, cubes[].name');
    if (dpS.present) m.map(dpS, 'cubes[].raw (folder)');
    if (lpS.present) m.map(lpS, 'cubes[].label (folder)');
    const n = lFiles.length;
    const valid = readValidCubes(m, n);
    const nTrain = n - (valid?.size ?? 0);
    const prios = readCubePrios(m, nTrain, n);
    const names = uniqueNames(lFiles);
    const outDir = path.dirname(outputAbs);
    const rel = (abs: string): string => toPosix(path.relative(outDir, abs)) || '.';
    const located: { name: string; rawAbs: string; labelAbs: string }[] = [];
    let t = 0;
    for (let i = 0; i < n; i++) {
      const rawAbs = joinData(dialect, dataDir, dFiles[i]![0]);
      const labelAbs = joinData(dialect, labelDir, lFiles[i]![0]);
      const isValid = valid?.has(i) ?? false;
      const prio = !isValid && prios ? prios[t] ?? null : null;
      if (!isValid) t++;
      const cube: Record<string, unknown> = { name: names[i]!, raw: rel(rawAbs), raw_key: dFiles[i]![1], label: rel(labelAbs), label_key: lFiles[i]![1] };
      if (prio !== null) cube.prio = prio;
      if (isValid) cube.valid = true;
      manifestCubes.push(cube);
      cubes.push({ index: i, name: names[i]!, raw: cube.raw as string, rawKey: dFiles[i]![1], label: cube.label as string, labelKey: lFiles[i]![1], valid: isValid, prio });
      located.push({ name: names[i]!, rawAbs, labelAbs });
    }
    checkFilesExist(m.findings, located);
  }

  // settings without cubes still get read, so that every problem shows in one run
  const json: Record<string, unknown> = {};
  if (nLab !== null) json.n_lab = nLab;
  const lazyS = m.setting('lazy_labels');
  const lazy = m.read(lazyS, false);
  if (lazy !== undefined) {
    if (typeof lazy === 'boolean' || lazy === 0 || lazy === 1) {
      json.lazy_labels = Boolean(lazy);
      m.map(lazyS, 'lazy_labels');
    } else m.findings.push(error(ImportCodes.configValue, `lazy_labels must be True or False, got ${show(lazy)}`));
  }
  const eitS = m.setting('example_ignore_threshold');
  const eit = m.read(eitS, false);
  if (eit !== undefined && eit !== null && eit !== false) {
    if (typeof eit === 'number') {
      json.example_ignore_threshold = eit;
      m.map(eitS, 'example_ignore_threshold');
    } else m.findings.push(error(ImportCodes.configValue, `${eitS.name} must be a number in [0, 1], got ${show(eit)}`));
  }
  const cwS = m.setting('class_weights');
  const cw = m.read(cwS, false);
  if (cw !== undefined && cw !== null) {
    if (Array.isArray(cw) && cw.every((x) => typeof x === 'number')) {
      json.class_weights = cw;
      m.map(cwS, 'class_weights');
    } else m.findings.push(error(ImportCodes.configValue, `class_weights must be None or a list of numbers, got ${show(cw)}`));
  }
  const patch = readPatch(m);
  if (patch) json.patch_size = patch;
  if (usable) {
    json.cubes = manifestCubes;
    if (nLab !== null) {
      manifest = json;
      // the manifest's own rules: schema, duplicate cubes and names, class_weights length
      const { findings } = parseManifest(json, outputAbs);
      m.findings.push(...findings);
    }
  }

  const ok = manifest !== null && !m.findings.some((f) => f.severity === 'error');
  let written = false;
  if (ok && write) {
    await writeTextAtomically(outputAbs, JSON.stringify(manifest, null, 2) + '\n', { force: options.force ?? false, inputs: [configAbs] });
    written = true;
  }
  return { command: 'import-config', ok, config: configAbs, output: outputAbs, written, dialect, cubes, mapped: m.mapped, unread, findings: m.findings, manifest };
}
