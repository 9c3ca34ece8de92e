/** `report`: check + prios + class balance + slice previews (+ training curves of a run) as one self-contained HTML page. */
import fs from 'node:fs';
import path from 'node:path';
import { isLazyLabelError, LazyLabelError, usageError } from '../errors.js';
import type { ClassMetrics } from '../core/metrics.js';
import { checkOutputPath, writeTextAtomically } from '../io/atomic.js';
import { encodePng } from '../io/png.js';
import { renderPreview } from '../report/preview.js';
import { renderReportHtml, reportSections, type PreviewFigure, type ReportData, type RunData, type SectionId } from '../report/html.js';
import { VERSION } from '../version.js';
import { checkManifest } from './check.js';
import { loadManifest } from './manifestFile.js';
import { previewSourceForCube } from './preview.js';
import type { ProgressFn } from './progress.js';
import { suggestPrios, type PriosReport } from './suggestPrios.js';

export interface ReportOptions {
  manifest: string;
  /** A training run folder (config.json, metrics.jsonl). */
  run?: string;
  out: string;
  force?: boolean;
  title?: string;
  /** Slices per cube preview (default 3). */
  slices?: number;
  axis?: number;
  /** Panel size in pixels of the previews (default 128). */
  previewSize?: number;
  /** At most this many cube previews (default 24); 0 = none. */
  maxPreviews?: number;
  slabMB?: number;
  onProgress?: ProgressFn;
  /** Fixed generation time (tests); default now. */
  now?: Date;
}

export interface ReportSummary {
  command: 'report';
  /** False when check found errors (the report is written all the same). */
  ok: boolean;
  output: string;
  bytes: number;
  manifest: string;
  run: string | null;
  sections: SectionId[];
  check: { ok: boolean; files: number; okFiles: number; warn: number; error: number; manifestStatus: 'ok' | 'warn' | 'error' | null };
  prios: { computed: boolean; lazyShare: number | null; error: string | null };
  classBalance: { classNames: string[]; labelledVoxels: number[] };
  previews: { rendered: number; failed: number; skipped: number };
  training: { trainSteps: number; lastStep: number | null; lastLoss: number | null; validations: number; lastValidationStep: number | null; skippedLines: number } | null;
}

interface MetricsRow {
  type?: unknown;
  step?: unknown;
  loss?: unknown;
  perClass?: unknown;
  notPresentMeanProb?: unknown;
}

const isNum = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);

/** Read a run folder as train writes it; damaged lines are skipped and counted, never fatal. */
export function readRun(dir: string): RunData {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(dir);
  } catch {
    throw usageError(`run folder ${dir} not found`, 'pass the --out folder of lazylabel train');
  }
  if (!stat.isDirectory()) throw usageError(`--run ${dir} is not a folder`, 'pass the --out folder of lazylabel train');
  const notes: string[] = [];
  let config: Record<string, unknown> | null = null;
  const cfgFile = path.join(dir, 'config.json');
  if (fs.existsSync(cfgFile)) {
    try {
      const parsed = JSON.parse(fs.readFileSync(cfgFile, 'utf8')) as unknown;
      if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) config = parsed as Record<string, unknown>;
      else notes.push('config.json does not hold an object');
    } catch (e) {
      notes.push(`config.json is not valid JSON: ${(e as Error).message}`);
    }
  } else notes.push('no config.json in the run folder');
  const train: RunData['train'] = [];
  const valid: RunData['valid'] = [];
  let skippedLines = 0;
  const metricsFile = path.join(dir, 'metrics.jsonl');
  if (fs.existsSync(metricsFile)) {
    for (const line of fs.readFileSync(metricsFile, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      let row: MetricsRow;
      try {
        row = JSON.parse(line) as MetricsRow;
      } catch {
        skippedLines++;
        continue;
      }
      if (!row || typeof row !== 'object' || !isNum(row.step)) {
        skippedLines++;
      } else if (row.type === 'train' && isNum(row.loss)) {
        train.push({ step: row.step, loss: row.loss });
      } else if (row.type === 'valid' && Array.isArray(row.perClass)) {
        valid.push({
          step: row.step,
          perClass: row.perClass as ClassMetrics[],
          notPresentMeanProb: Array.isArray(row.notPresentMeanProb) ? (row.notPresentMeanProb as (number | null)[]) : [],
        });
      } else if (row.type !== 'train') {
        skippedLines++;
      }
      // a train row with a non-finite loss (a diverged step) is left off the chart
    }
  } else notes.push('no metrics.jsonl in the run folder: nothing logged yet');
  return { dir: path.resolve(dir), config, train, valid, skippedLines, notes };
}

/** Gather everything the page shows. Data problems become content; usage problems throw. */
export async function buildReportData(o: ReportOptions): Promise<ReportData> {
  const scan = { ...(o.slabMB !== undefined ? { slabMB: o.slabMB } : {}), ...(o.onProgress ? { onProgress: o.onProgress } : {}) };
  if (!fs.existsSync(o.manifest)) {
    throw new LazyLabelError('manifest not found', { code: 'file-missing', file: o.manifest, hint: 'check the --manifest path' });
  }
  const check = await checkManifest(o.manifest, scan);
  const { manifest } = (() => {
    try {
      return loadManifest(o.manifest);
    } catch (e) {
      if (isLazyLabelError(e)) return { manifest: null };
      throw e;
    }
  })();
  let prios: PriosReport | null = null;
  let priosError: string | null = null;
  try {
    prios = await suggestPrios({ manifest: o.manifest, writeManifest: false, ...scan });
  } catch (e) {
    if (!isLazyLabelError(e)) throw e;
    priosError = e.message;
  }
  const nLab = manifest?.nLab ?? check.nLab;
  const classNames = Array.from({ length: nLab }, (_, c) => manifest?.classNames?.[c] ?? `class ${c}`);

  const previews: PreviewFigure[] = [];
  const maxPreviews = o.maxPreviews ?? 24;
  if (!(Number.isInteger(maxPreviews) && maxPreviews >= 0)) throw usageError(`--max-previews must be a non-negative integer, got ${o.maxPreviews}`);
  const cubes = manifest?.cubes ?? [];
  for (const cube of cubes.slice(0, maxPreviews)) {
    try {
      const img = await renderPreview({
        ...previewSourceForCube(manifest!, cube),
        slices: o.slices ?? 3,
        ...(o.axis !== undefined ? { axis: o.axis } : {}),
        size: o.previewSize ?? 128,
        textScale: 1,
        ...(o.slabMB !== undefined ? { slabMB: o.slabMB } : {}),
      });
      const where = img.meta.indices[0] === null ? '2-D' : `axis ${img.meta.axis} at ${img.meta.indices.join(', ')}`;
      previews.push({ cube: cube.name, pngBase64: encodePng(img).toString('base64'), width: img.width, height: img.height, caption: `${cube.valid ? 'valid, ' : ''}${where}` });
    } catch (e) {
      if (!isLazyLabelError(e)) throw e;
      // usage errors from options (bad --axis, ...) are the caller's to fix, not a cube's problem
      if (e.exitCode === 2 && e.code === 'usage') throw e;
      previews.push({ cube: cube.name, pngBase64: null, error: e.describe() });
    }
  }
  const run = o.run !== undefined ? readRun(o.run) : null;
  return {
    title: o.title ?? `lazylabel report: ${path.basename(o.manifest)}`,
    generated: (o.now ?? new Date()).toISOString(),
    version: VERSION,
    manifestPath: path.resolve(o.manifest),
    nLab,
    classNames,
    check,
    prios,
    priosError,
    previews,
    previewsSkipped: Math.max(0, cubes.length - maxPreviews),
    run,
  };
}

export function summarize(d: ReportData, output: string, bytes: number): ReportSummary {
  const lastTrain = d.run?.train[d.run.train.length - 1];
  const lastValid = d.run?.valid[d.run.valid.length - 1];
  const s = d.check.summary;
  const labelled = Array<number>(d.nLab).fill(0);
  for (const f of d.check.files) {
    if (!f.stats?.info) continue;
    for (let c = 0; c < d.nLab; c++) if (f.stats.info.labeled[c]) labelled[c]! += f.stats.classCounts[c] ?? 0;
  }
  return {
    command: 'report',
    ok: d.check.ok,
    output,
    bytes,
    manifest: d.manifestPath,
    run: d.run?.dir ?? null,
    sections: reportSections(d),
    check: { ok: d.check.ok, files: s.files, okFiles: s.ok, warn: s.warn, error: s.error, manifestStatus: d.check.manifest?.status ?? null },
    prios: { computed: d.prios !== null, lazyShare: d.prios?.lazyShare ?? null, error: d.priosError },
    classBalance: { classNames: d.classNames, labelledVoxels: labelled },
    previews: { rendered: d.previews.filter((p) => p.pngBase64).length, failed: d.previews.filter((p) => !p.pngBase64).length, skipped: d.previewsSkipped },
    training: d.run
      ? {
          trainSteps: d.run.train.length,
          lastStep: lastTrain?.step ?? null,
          lastLoss: lastTrain?.loss ?? null,
          validations: d.run.valid.length,
          lastValidationStep: lastValid?.step ?? null,
          skippedLines: d.run.skippedLines,
        }
      : null,
  };
}

/** Build the page and write it atomically (an existing output only with `force`; never over an input). */
export async function report(o: ReportOptions): Promise<ReportSummary> {
  const inputs = [o.manifest];
  checkOutputPath(o.out, { force: o.force ?? false, inputs });
  const data = await buildReportData(o);
  const html = renderReportHtml(data);
  // the cube files are inputs too: the report must never replace one of them
  const cubeFiles = data.check.files.flatMap((f) => [f.path, ...(f.raw ? [f.raw] : [])]);
  await writeTextAtomically(o.out, html, { force: o.force ?? false, inputs: [...inputs, ...cubeFiles] });
  return summarize(data, path.resolve(o.out), Buffer.byteLength(html));
}
