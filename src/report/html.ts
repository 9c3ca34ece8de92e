/**
 * The dataset report as one self-contained HTML page: no scripts, no external requests (a Content-Security-Policy
 * forbids them), images as data: URIs, charts as inline SVG. Pure: data in, HTML string out.
 */
import type { CheckReport } from '../ops/check.js';
import type { PriosReport, CubePrio } from '../ops/suggestPrios.js';
import type { ClassMetrics } from '../core/metrics.js';
import type { Finding } from '../core/findings.js';
import { barChart, escapeHtml as esc, lineChart, type Series } from './svg.js';
import { classColor } from './preview.js';

export interface PreviewFigure {
  cube: string;
  /** PNG bytes, base64; null when the preview could not be drawn. */
  pngBase64: string | null;
  width?: number;
  height?: number;
  caption?: string;
  error?: string;
}

export interface TrainPoint {
  step: number;
  loss: number;
}

export interface ValidPoint {
  step: number;
  perClass: ClassMetrics[];
  notPresentMeanProb: (number | null)[];
}

export interface RunData {
  dir: string;
  /** config.json as written by train (null when missing or unreadable). */
  config: Record<string, unknown> | null;
  train: TrainPoint[];
  valid: ValidPoint[];
  /** Lines of metrics.jsonl that were not valid JSON records (a run being written, a damaged file). */
  skippedLines: number;
  /** Why the run could not be read in part (missing metrics.jsonl, ...). */
  notes: string[];
}

export interface ReportData {
  title: string;
  /** ISO time of generation. */
  generated: string;
  version: string;
  manifestPath: string;
  nLab: number;
  classNames: string[];
  check: CheckReport;
  /** Null when prios could not be computed (priosError says why). */
  prios: PriosReport | null;
  priosError: string | null;
  previews: PreviewFigure[];
  /** Cubes left out of the previews (over the limit). */
  previewsSkipped: number;
  run: RunData | null;
}

/** Section ids, in page order (the --json summary lists those present). */
export const SECTIONS = ['summary', 'check', 'cubes', 'balance', 'previews', 'training'] as const;
export type SectionId = (typeof SECTIONS)[number];

const CSS = [
  'body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1200px;padding:0 16px;color:#222;line-height:1.4}',
  'h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}h3{font-size:14px;margin:18px 0 6px}',
  '.meta{color:#666;font-size:13px}nav{font-size:13px;margin:10px 0}nav a{margin-right:12px}',
  'table{border-collapse:collapse;font-size:13px;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right;vertical-align:top}th{background:#f4f4f4}',
  'td.l,th.l{text-align:left}.msg{text-align:left;max-width:720px}',
  '.error,.err{color:#b00020;font-weight:600}.warning,.warn{color:#a65e00;font-weight:600}.info{color:#666}.ok{color:#087f23;font-weight:600}',
  '.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:120px}.card b{display:block;font-size:20px}',
  'figure{display:inline-block;margin:8px 16px 8px 0;vertical-align:top}figcaption{font-size:13px;color:#444;margin-top:4px}',
  'img.preview{image-rendering:pixelated;border:1px solid #ccc;max-width:100%}',
  '.sw{display:inline-block;width:10px;height:10px;margin-right:4px;border:1px solid #888;vertical-align:middle}',
  'details{margin:6px 0}summary{cursor:pointer;font-size:13px}code{font-size:12px}',
].join('');

const num = (x: number | null | undefined, digits = 3): string => (x === null || x === undefined || !Number.isFinite(x) ? '–' : Number.isInteger(x) ? String(x) : x.toFixed(digits));
const pct = (x: number | null | undefined): string => (x === null || x === undefined || !Number.isFinite(x) ? '–' : `${(100 * x).toFixed(1)}%`);
const flags = (xs: readonly number[] | null | undefined): string => (xs ? xs.join('') : '–');
const hex = (rgb: readonly number[]): string => `#${rgb.map((v) => v.toString(16).padStart(2, '0')).join('')}`;

function table(header: string[], rows: string[][], leftCols: number[] = [0]): string {
  const cls = (i: number): string => (leftCols.includes(i) ? ' class="l"' : '');
  const head = `<tr>${header.map((h, i) => `<th${cls(i)}>${esc(h)}</th>`).join('')}</tr>`;
  // cells are pre-escaped HTML
  const body = rows.map((r) => `<tr>${r.map((c, i) => `<td${cls(i)}>${c}</td>`).join('')}</tr>`).join('');
  return `<table>${head}${body}</table>`;
}

function section(id: SectionId, title: string, body: string): string {
  return `<section id="${id}"><h2>${esc(title)}</h2>${body}</section>`;
}

const statusCell = (s: string): string => `<span class="${s}">${esc(s)}</span>`;
const sevCell = (f: Finding): string => `<span class="${f.severity}">${esc(f.severity)}</span>`;

function classLabel(d: Pick<ReportData, 'classNames'>, c: number): string {
  return `<span class="sw" style="background:${hex(classColor(c))}"></span>${c} ${esc(d.classNames[c] ?? `class ${c}`)}`;
}

function summarySection(d: ReportData): string {
  const s = d.check.summary;
  const files = d.check.files;
  const valid = d.prios?.cubes.filter((c) => c.valid).length ?? 0;
  const lazy = d.prios?.cubes.filter((c) => c.lazy && !c.valid).length ?? files.filter((f) => f.stats?.lazy).length;
  const cards = [
    ['check', `<b class="${d.check.ok ? 'ok' : 'err'}">${d.check.ok ? 'OK' : 'FAILED'}</b>${s.error} error, ${s.warn} warn`],
    ['cubes', `<b>${files.length}</b>${files.length - valid} train, ${valid} valid`],
    ['lazy cubes', `<b>${lazy}</b>info flags a class unlabelled or absent`],
    ['classes', `<b>${d.nLab}</b>${esc(d.classNames.join(', '))}`],
    ['lazy share', `<b>${d.prios?.lazyShare === null || !d.prios ? '–' : pct(d.prios.lazyShare)}</b>of training patches`],
  ];
  if (d.run) {
    const last = d.run.train[d.run.train.length - 1];
    cards.push(['training', `<b>${last ? `step ${last.step}` : '–'}</b>${last ? `loss ${num(last.loss, 4)}` : 'no steps logged'}`]);
  }
  return section('summary', 'Summary', `<div class="cards">${cards.map(([k, v]) => `<div class="card">${esc(k!)}${v}</div>`).join('')}</div>`);
}

function checkSection(d: ReportData): string {
  const rows: string[][] = [];
  const infos: string[][] = [];
  const add = (where: string, f: Finding): void => {
    (f.severity === 'info' ? infos : rows).push([esc(where), sevCell(f), `<code>${esc(f.code)}</code>`, `<span class="msg">${esc(f.message)}</span>`]);
  };
  for (const f of d.check.manifest?.findings ?? []) add('manifest', f);
  for (const file of d.check.files) for (const f of file.findings) add(file.name, f);
  for (const f of d.prios?.findings ?? []) add('prios', f);
  const header = ['cube', 'severity', 'code', 'message'];
  let body = `<p>${d.check.ok ? '<span class="ok">check passed</span>' : '<span class="err">check failed</span>'}: ${d.check.summary.files} cubes, ${d.check.summary.ok} ok, ${d.check.summary.warn} warn, ${d.check.summary.error} error${d.check.strict ? ' (strict)' : ''}.</p>`;
  body += rows.length ? table(header, rows, [0, 1, 2, 3]) : '<p>No errors or warnings.</p>';
  if (infos.length) body += `<details><summary>${infos.length} informational finding${infos.length === 1 ? '' : 's'}</summary>${table(header, infos, [0, 1, 2, 3])}</details>`;
  if (d.priosError) body += `<p class="err">prios not computed: ${esc(d.priosError)}</p>`;
  return section('check', 'Check findings', body);
}

function kindOf(file: { stats: { lazy: boolean } | null }, prio: CubePrio | undefined): string {
  if (prio?.valid) return 'valid';
  if (!file.stats) return '–';
  return file.stats.lazy ? 'lazy' : 'dense';
}

function cubesSection(d: ReportData): string {
  const byName = new Map((d.prios?.cubes ?? []).map((c) => [c.name, c]));
  const rows = d.check.files.map((f) => {
    const s = f.stats;
    const p = byName.get(f.name);
    return [
      esc(f.name),
      esc(kindOf(f, p)),
      statusCell(f.status),
      s ? esc(`(${s.shape.join(',')})`) : '–',
      s ? esc(s.dtype) : '–',
      s ? String(s.voxels) : '–',
      s ? pct(s.labelledFraction) : '–',
      s ? pct(s.voxels ? s.ignored / s.voxels : 0) : '–',
      s ? esc(s.classCounts.join(' / ')) : '–',
      s?.info ? esc(`L=${flags(s.info.labeled)} NP=${flags(s.info.notPresent)}${s.info.source === 'default' ? ' (default)' : ''}`) : '–',
      p ? num(p.prio, 2) : '–',
      p ? pct(p.share) : '–',
    ];
  });
  const header = ['cube', 'kind', 'status', 'shape', 'dtype', 'voxels', 'labelled', 'ignored', `class voxels (${d.classNames.join(' / ')})`, 'info', 'prio', 'share'];
  let body = table(header, rows, [0, 1, 2, 3, 4, 8, 9]);
  if (d.prios) body += `<p class="meta">prio rule: ${esc(d.prios.rule.text)}. Prios are suggestions (suggest-prios); the manifest was not changed.</p>`;
  return section('cubes', 'Cubes', body);
}

/** Labelled voxels per class over all cubes (class counted only where flagged labelled), split train/valid. */
export function classBalance(d: Pick<ReportData, 'check' | 'prios' | 'nLab'>): { train: number[]; valid: number[]; notPresentCubes: number[] } {
  const validNames = new Set((d.prios?.cubes ?? []).filter((c) => c.valid).map((c) => c.name));
  const train = Array<number>(d.nLab).fill(0);
  const valid = Array<number>(d.nLab).fill(0);
  const notPresentCubes = Array<number>(d.nLab).fill(0);
  for (const f of d.check.files) {
    const s = f.stats;
    if (!s?.info) continue;
    const into = validNames.has(f.name) ? valid : train;
    for (let c = 0; c < d.nLab; c++) {
      if (s.info.labeled[c]) into[c]! += s.classCounts[c] ?? 0;
      if (s.info.notPresent[c]) notPresentCubes[c]!++;
    }
  }
  return { train, valid, notPresentCubes };
}

function balanceSection(d: ReportData): string {
  const b = classBalance(d);
  const total = b.train.map((t, c) => t + b.valid[c]!);
  const sum = total.reduce((a, x) => a + x, 0) || 1;
  const chart = barChart(
    'labelled voxels per class (all cubes)',
    total.map((v, c) => ({ label: `${c} ${d.classNames[c] ?? ''}`.trim(), value: v, color: hex(classColor(c)) })),
    { width: 640 },
  );
  const rows = total.map((v, c) => [classLabel(d, c), String(b.train[c]), String(b.valid[c]), String(v), pct(v / sum), String(b.notPresentCubes[c])]);
  const body = `<figure>${chart}</figure>${table(['class', 'train voxels', 'valid voxels', 'all', 'share', 'cubes flagging it not present'], rows)}<p class="meta">Voxels of a class count where the cube's info flags that class labelled (what the loss sees). Not-present flags add negative evidence for the whole cube.</p>`;
  return section('balance', 'Class balance', body);
}

function previewsSection(d: ReportData): string {
  const figs = d.previews.map((p) => {
    const img = p.pngBase64
      ? `<img class="preview" alt="slices of ${esc(p.cube)}" src="data:image/png;base64,${p.pngBase64}"${p.width ? ` width="${p.width}" height="${p.height}"` : ''}>`
      : `<p class="err">no preview: ${esc(p.error ?? 'unknown error')}</p>`;
    return `<figure>${img}<figcaption>${esc(p.cube)}${p.caption ? ` — ${esc(p.caption)}` : ''}</figcaption></figure>`;
  });
  let body = `<p class="meta">Raw in grey; classes as semi-transparent colours; ignored (-1) voxels dimmed and hatched; magenta = label values out of range.</p>${figs.join('')}`;
  if (d.previewsSkipped > 0) body += `<p class="meta">${d.previewsSkipped} more cube${d.previewsSkipped === 1 ? '' : 's'} not shown (raise --max-previews).</p>`;
  return section('previews', 'Slice previews', body);
}

function trainingSection(d: ReportData, run: RunData): string {
  const nLab = run.valid[0]?.perClass.length ?? (typeof run.config?.nLab === 'number' ? run.config.nLab : d.nLab);
  const name = (c: number): string => (nLab === d.nLab && d.classNames[c] ? `${c} ${d.classNames[c]}` : `class ${c}`);
  const color = (c: number): string => hex(classColor(c));
  const parts: string[] = [`<p class="meta">run <code>${esc(run.dir)}</code></p>`];
  const cfg = run.config;
  if (cfg) {
    const pick = (k: string): string => {
      const v = cfg[k];
      return v === undefined || v === null ? '–' : esc(Array.isArray(v) ? v.join(',') : typeof v === 'object' ? JSON.stringify(v) : String(v));
    };
    parts.push(table(['patch', 'batch', 'lr', 'seed', 'normalisation', 'lazy labels', 'model'], [[pick('patch'), pick('batch'), pick('lr'), pick('seed'), pick('normalisation'), pick('lazyLabels'), esc(modelText(cfg.unet))]], [6]));
  }
  for (const n of run.notes) parts.push(`<p class="warn">${esc(n)}</p>`);
  if (run.skippedLines) parts.push(`<p class="warn">${run.skippedLines === 1 ? '1 line of metrics.jsonl could not be read and was skipped' : `${run.skippedLines} lines of metrics.jsonl could not be read and were skipped`}.</p>`);
  if (run.train.length) {
    const loss: Series[] = [{ name: 'loss', color: '#9ab8d8', points: run.train.map((r) => [r.step, r.loss]) }];
    const window = Math.round(run.train.length / 20);
    if (window >= 2) loss.push({ name: `mean of ${window}`, color: '#1f4e99', points: movingAverage(run.train, window) });
    parts.push(`<figure>${lineChart('training loss', loss, { xLabel: 'step', yLabel: 'loss', logY: run.train.every((r) => r.loss > 0) })}</figure>`);
  } else parts.push('<p>No training steps logged yet.</p>');
  if (run.valid.length) {
    const series = (f: (v: ValidPoint, c: number) => number | null | undefined) =>
      Array.from({ length: nLab }, (_, c) => ({
        name: name(c),
        color: color(c),
        points: run.valid.flatMap((v) => {
          const y = f(v, c);
          return y === null || y === undefined ? [] : [[v.step, y] as [number, number]];
        }),
      }));
    parts.push(`<figure>${lineChart('validation IoU (labelled voxels)', series((v, c) => v.perClass[c]?.iou), { xLabel: 'step' })}</figure>`);
    // only the classes some validation cube flags not present have a curve
    const np = series((v, c) => v.notPresentMeanProb[c]).filter((s) => s.points.length);
    parts.push(
      np.length
        ? `<figure>${lineChart('mean p(class) where flagged not present', np, { xLabel: 'step' })}</figure>`
        : '<p class="meta">No validation cube flags a class not present: no not-present probability to plot.</p>',
    );
    const last = run.valid[run.valid.length - 1]!;
    const rows = Array.from({ length: nLab }, (_, c) => {
      const m = last.perClass[c];
      return [
        nLab === d.nLab ? classLabel(d, c) : esc(name(c)),
        num(m?.precision ?? null),
        num(m?.recall ?? null),
        num(m?.iou ?? null),
        m ? String(m.support) : '–',
        num(last.notPresentMeanProb[c] ?? null),
      ];
    });
    parts.push(`<h3>Last validation (step ${last.step})</h3>`, table(['class', 'precision', 'recall', 'IoU', 'support', 'mean p where not present'], rows));
  } else parts.push('<p>No validation results logged (the manifest has no valid cubes, or validation has not run yet).</p>');
  return section('training', 'Training', parts.join(''));
}

/** Trailing moving average of the loss (the raw curve is noisy: one batch per step). */
export function movingAverage(points: readonly TrainPoint[], window: number): [number, number][] {
  const out: [number, number][] = [];
  let sum = 0;
  points.forEach((p, i) => {
    sum += p.loss;
    if (i >= window) sum -= points[i - window]!.loss;
    if (i >= window - 1) out.push([p.step, sum / window]);
  });
  return out;
}

/** config.json's `unet` in words: "3-D U-Net, depth 2, 8 base filters, 1 anisotropic level". */
function modelText(unet: unknown): string {
  if (!unet || typeof unet !== 'object') return '–';
  const u = unet as Record<string, unknown>;
  const parts = [`${u.dims ?? '?'}-D U-Net`];
  if (typeof u.depth === 'number') parts.push(`depth ${u.depth}`);
  if (typeof u.baseFilters === 'number') parts.push(`${u.baseFilters} base filters`);
  if (typeof u.anisotropicLevels === 'number' && u.anisotropicLevels > 0) parts.push(`${u.anisotropicLevels} anisotropic level${u.anisotropicLevels === 1 ? '' : 's'}`);
  if (typeof u.inChannels === 'number' && u.inChannels !== 1) parts.push(`${u.inChannels} input channels`);
  return parts.join(', ');
}

/** The sections the page will have, in order. */
export function reportSections(d: ReportData): SectionId[] {
  return SECTIONS.filter((s) => s !== 'training' || d.run !== null);
}

/** The whole page. */
export function renderReportHtml(d: ReportData): string {
  const titles: Record<SectionId, string> = { summary: 'Summary', check: 'Check findings', cubes: 'Cubes', balance: 'Class balance', previews: 'Slice previews', training: 'Training' };
  const ids = reportSections(d);
  const body = [
    `<h1>${esc(d.title)}</h1>`,
    `<p class="meta">manifest <code>${esc(d.manifestPath)}</code> · generated ${esc(d.generated)} · lazylabel ${esc(d.version)}</p>`,
    `<nav>${ids.map((id) => `<a href="#${id}">${titles[id]}</a>`).join('')}</nav>`,
    summarySection(d),
    checkSection(d),
    cubesSection(d),
    balanceSection(d),
    previewsSection(d),
    d.run ? trainingSection(d, d.run) : '',
  ].join('\n');
  const csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'";
  return `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="${csp}"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${esc(d.title)}</title><style>${CSS}</style></head><body>\n${body}\n</body></html>\n`;
}
