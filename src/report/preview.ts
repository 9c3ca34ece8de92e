/**
 * Slice previews: a grid of slices through a label volume (and/or its raw data), raw in grey, each class
 * as a semi-transparent colour, ignored (-1) voxels dimmed and hatched, with a legend drawn into the image.
 *
 * Only the shown slices are read (`readBox`), a band of rows at a time within the slab budget, and slices
 * larger than the panel size are subsampled row by row, so previews of huge volumes need little memory.
 */
import { LazyLabelError, usageError } from '../errors.js';
import { H5Source } from '../io/hdf5.js';
import { createImage, type RgbImage } from '../io/png.js';
import type { DType } from '../io/dtype.js';
import { rawSpatialShape } from '../core/checkRules.js';
import { parseInfoMask, type InfoMask } from '../core/infoMask.js';
import { DEFAULT_SLAB_MB } from '../core/slabs.js';
import { info, warning, type Finding } from '../core/findings.js';
import { slabBytesPerVoxel } from '../ops/scan.js';
import { drawText, GLYPH_HEIGHT, LINE_HEIGHT, textWidth } from './font.js';

export type Rgb = [number, number, number];

/** Okabe-Ito colours (distinguishable with the common colour-vision deficiencies), then golden-angle hues. */
export const CLASS_PALETTE: readonly Rgb[] = [
  [0, 114, 178], // blue
  [230, 159, 0], // orange
  [0, 158, 115], // bluish green
  [204, 121, 167], // reddish purple
  [86, 180, 233], // sky blue
  [240, 228, 66], // yellow
  [213, 94, 0], // vermillion
];

/** Opacity of a class colour over the raw grey value. */
export const OVERLAY_ALPHA = 0.45;

/**
 * Ignored (-1) voxels: the raw grey is dimmed (so they read as "nothing here counts") and crossed by thin
 * light diagonal hatch lines on the screen-pixel grid (so they cannot be mistaken for dark raw data).
 */
export const IGNORE_STYLE = {
  /** Raw grey multiplied by this. */
  dim: 0.5,
  /** A hatch pixel where (x + y) % period === 0, in panel pixels. */
  hatchPeriod: 6,
  hatchColor: [255, 255, 255] as Rgb,
  hatchAlpha: 0.6,
} as const;

/** Label values outside -1..nLab-1 (or fractional): solid magenta, unblended, so that they stand out. */
export const INVALID_COLOR: Rgb = [255, 0, 255];
/** The grey under the overlay when there is no raw volume. */
export const NO_RAW_GREY = 128;
const BACKGROUND: Rgb = [255, 255, 255];
const TEXT: Rgb = [20, 20, 20];
const MUTED: Rgb = [110, 110, 110];

function hslToRgb(h: number, s: number, l: number): Rgb {
  const a = s * Math.min(l, 1 - l);
  const f = (n: number): number => {
    const k = (n + h / 30) % 12;
    return Math.round(255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [f(0), f(8), f(4)];
}

/** The overlay colour of class `c` (0-based). */
export function classColor(c: number): Rgb {
  if (c < CLASS_PALETTE.length) return [...CLASS_PALETTE[c]!] as Rgb;
  return hslToRgb(((c - CLASS_PALETTE.length) * 137.508 + 20) % 360, 0.7, 0.5);
}

const blend = (color: readonly number[], grey: number, alpha: number): Rgb => [
  Math.round(alpha * color[0]! + (1 - alpha) * grey),
  Math.round(alpha * color[1]! + (1 - alpha) * grey),
  Math.round(alpha * color[2]! + (1 - alpha) * grey),
];

/** Whether panel pixel (x, y) lies on an ignore hatch line. */
export const onHatch = (x: number, y: number): boolean => (x + y) % IGNORE_STYLE.hatchPeriod === 0;

/**
 * The colour of one panel pixel: `grey` is the raw value mapped to 0..255, `label` the class id
 * (null: no label volume), (x, y) the pixel's position in its panel (for the hatch).
 * `colors[c] === null` leaves class c uncoloured.
 */
export function shadePixel(grey: number, label: number | null, nLab: number, x: number, y: number, colors?: readonly (Rgb | null)[]): Rgb {
  if (label === null) return [grey, grey, grey];
  if (label === -1) {
    const dimmed = Math.round(grey * IGNORE_STYLE.dim);
    return onHatch(x, y) ? blend(IGNORE_STYLE.hatchColor, dimmed, IGNORE_STYLE.hatchAlpha) : [dimmed, dimmed, dimmed];
  }
  if (!Number.isInteger(label) || label < -1 || label >= nLab) return [...INVALID_COLOR] as Rgb;
  const color = colors ? colors[label] : classColor(label);
  return color ? blend(color, grey, OVERLAY_ALPHA) : [grey, grey, grey];
}

export interface OverlayOptions {
  /** Grey values 0..255, row-major `rows x cols`; null = flat NO_RAW_GREY. */
  raw: ArrayLike<number> | null;
  /** Class ids (-1 = ignore), row-major; null = raw only. */
  labels: ArrayLike<number> | null;
  rows: number;
  cols: number;
  nLab: number;
  /** Each voxel becomes zoom x zoom pixels. Default 1. */
  zoom?: number;
  /** Override the colour per class; null leaves that class uncoloured. Default: `classColor`. */
  colors?: readonly (Rgb | null)[];
}

/** One slice as an image: raw grey with the label overlay (the building block of a preview panel). */
export function overlaySlice(o: OverlayOptions): RgbImage {
  const zoom = o.zoom ?? 1;
  const img = createImage(o.cols * zoom, o.rows * zoom);
  for (let y = 0; y < img.height; y++) {
    const sy = Math.floor(y / zoom);
    for (let x = 0; x < img.width; x++) {
      const i = sy * o.cols + Math.floor(x / zoom);
      const grey = o.raw ? o.raw[i]! : NO_RAW_GREY;
      img.rgb.set(shadePixel(grey, o.labels ? o.labels[i]! : null, o.nLab, x, y, o.colors), (y * img.width + x) * 3);
    }
  }
  return img;
}

// ---------------------------------------------------------------------------------------------------
// Composition: panels in a grid, captions, legend.

export interface PreviewSlice {
  /** Position along the slicing axis (null for a 2-D volume). */
  index: number | null;
  /** Grey 0..255, row-major, `rows x cols` (after subsampling); null when there is no raw. */
  raw: Uint8Array | null;
  /** Class ids, row-major; null when there is no label volume. */
  labels: ArrayLike<number> | null;
}

export interface PreviewContent {
  title: string;
  /** Spatial shape of the previewed volume (label coordinates). */
  shape: number[];
  /** Slicing axis (ignored for 2-D volumes). */
  axis: number;
  /** Subsampled slice size. */
  rows: number;
  cols: number;
  slices: PreviewSlice[];
  nLab: number;
  classNames: string[];
  /** The info mask as training uses it; null when there are no labels or `info` is unusable. */
  info: InfoMask | null;
  hasRaw: boolean;
  hasLabels: boolean;
  /** Extra legend lines (e.g. "raw channel 0 of 2"). */
  notes?: string[];
}

export interface PreviewStyle {
  /** Each (subsampled) voxel becomes zoom x zoom pixels. */
  zoom: number;
  /** Panels per grid row (default: min(slices, 4)). */
  columns?: number;
  /** Font pixel size (default 2). */
  textScale?: number;
}

export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface PreviewLayout {
  /** Where each slice's pixels are (captions excluded), in slice order. */
  panels: (Box & { index: number | null })[];
  /** All panels with their captions. */
  grid: Box;
  /** The legend strip under the grid. */
  legend: Box;
  zoom: number;
}

export interface ShownCounts {
  /** Voxels drawn (after subsampling) per class id 0..nLab-1. */
  classVoxels: number[];
  ignored: number;
  outOfRange: number;
  voxels: number;
}

export interface PreviewImage extends RgbImage {
  layout: PreviewLayout;
  counts: ShownCounts | null;
}

/** numpy-style caption: axis 1, index 3 of a 3-D volume → "[:,3,:]". */
export function sliceCaption(ndim: number, axis: number, index: number | null): string {
  if (index === null) return `[${Array(ndim).fill(':').join(',')}]`;
  return `[${Array.from({ length: ndim }, (_, d) => (d === axis ? String(index) : ':')).join(',')}]`;
}

export function countShown(slices: readonly PreviewSlice[], nLab: number): ShownCounts | null {
  if (!slices.some((s) => s.labels)) return null;
  const classVoxels = Array<number>(nLab).fill(0);
  let ignored = 0;
  let outOfRange = 0;
  let voxels = 0;
  for (const s of slices) {
    const l = s.labels;
    if (!l) continue;
    for (let i = 0; i < l.length; i++) {
      const v = l[i]!;
      voxels++;
      if (v === -1) ignored++;
      else if (Number.isInteger(v) && v >= 0 && v < nLab) classVoxels[v]!++;
      else outOfRange++;
    }
  }
  return { classVoxels, ignored, outOfRange, voxels };
}

interface LegendLine {
  swatch: 'class' | 'ignore' | 'invalid' | null;
  cls?: number;
  text: string;
  muted?: boolean;
}

/** Above this many classes the legend lists only those in view or flagged by info. */
const MAX_LEGEND_CLASSES = 24;

function legendLines(c: PreviewContent, counts: ShownCounts | null): LegendLine[] {
  const lines: LegendLine[] = [];
  if (c.hasLabels) {
    // many classes (e.g. a guessed n_lab of 256 from an unconverted 255 ignore value): list those in view or flagged
    const flagged = (k: number): boolean => Boolean(c.info && (!c.info.labeled[k] || c.info.notPresent[k]));
    let listed = Array.from({ length: c.nLab }, (_, k) => k);
    if (c.nLab > MAX_LEGEND_CLASSES) listed = listed.filter((k) => (counts?.classVoxels[k] ?? 0) > 0 || flagged(k)).slice(0, MAX_LEGEND_CLASSES);
    const width = Math.max(...listed.map((k) => c.classNames[k]!.length), 4);
    const idWidth = String(c.nLab - 1).length;
    for (const k of listed) {
      const flags = c.info
        ? `labelled: ${c.info.labeled[k] ? 'yes' : 'no '}  not present: ${c.info.notPresent[k] ? 'yes' : 'no '}`
        : 'info unusable';
      const n = counts ? `  in view: ${counts.classVoxels[k]}` : '';
      lines.push({ swatch: 'class', cls: k, text: `${String(k).padStart(idWidth)} ${c.classNames[k]!.padEnd(width)}  ${flags}${n}` });
    }
    if (listed.length < c.nLab) lines.push({ swatch: null, text: `${c.nLab - listed.length} more classes not listed (none in view)`, muted: true });
    lines.push({ swatch: 'ignore', text: `-1 ignored (unlabelled: no loss)${counts ? `  in view: ${counts.ignored}` : ''}` });
    if (counts && counts.outOfRange > 0) lines.push({ swatch: 'invalid', text: `out of range (not -1..${c.nLab - 1})  in view: ${counts.outOfRange}` });
    if (c.info?.source === 'default') lines.push({ swatch: null, text: "no 'info' dataset: all classes labelled, none absent (default)", muted: true });
  } else {
    lines.push({ swatch: null, text: 'raw only (no labels)', muted: true });
  }
  if (c.hasLabels && !c.hasRaw) lines.push({ swatch: null, text: 'no raw data: labels over flat grey', muted: true });
  for (const n of c.notes ?? []) lines.push({ swatch: null, text: n, muted: true });
  return lines;
}

/** Lay out and draw the preview: title, a grid of captioned panels, the legend strip. Pure (no I/O). */
export function composePreview(content: PreviewContent, style: PreviewStyle): PreviewImage {
  const S = Math.max(1, Math.round(style.textScale ?? 2));
  const zoom = Math.max(1, Math.round(style.zoom));
  const lh = LINE_HEIGHT * S;
  const pad = 4 + 4 * S;
  const n = content.slices.length;
  const columns = Math.max(1, Math.min(n, style.columns ?? Math.min(n, 4)));
  const gridRows = Math.ceil(n / columns);
  const pw = content.cols * zoom;
  const ph = content.rows * zoom;
  const cellH = lh + ph;
  const gridW = columns * pw + (columns - 1) * pad;
  const gridH = gridRows * cellH + (gridRows - 1) * pad;
  const counts = countShown(content.slices, content.nLab);
  const lines = legendLines(content, counts);
  const swatch = GLYPH_HEIGHT * S;
  const textX = swatch + 4 * S;
  const legendW = Math.max(0, ...lines.map((l) => (l.swatch ? textX : 0) + textWidth(l.text, S)));
  const titleW = textWidth(content.title, S);
  const width = 2 * pad + Math.max(gridW, legendW, titleW);
  const gridY = pad + lh + Math.floor(pad / 2);
  const legendY = gridY + gridH + pad;
  const legendH = lines.length * lh;
  const height = legendY + legendH + pad;
  const img = createImage(width, height, BACKGROUND);

  drawText(img, content.title, pad, pad, TEXT, S);
  const panels: PreviewLayout['panels'] = [];
  const ndim = content.shape.length;
  content.slices.forEach((s, i) => {
    const x = pad + (i % columns) * (pw + pad);
    const y = gridY + Math.floor(i / columns) * (cellH + pad);
    drawText(img, sliceCaption(ndim, content.axis, s.index), x, y, TEXT, S);
    const panel = overlaySlice({ raw: s.raw, labels: s.labels, rows: content.rows, cols: content.cols, nLab: content.nLab, zoom });
    blitInto(img, panel, x, y + lh);
    panels.push({ x, y: y + lh, width: pw, height: ph, index: s.index });
  });

  lines.forEach((line, i) => {
    const y = legendY + i * lh;
    if (line.swatch) {
      for (let yy = 0; yy < swatch; yy++) {
        for (let xx = 0; xx < swatch; xx++) {
          const label = line.swatch === 'class' ? line.cls! : line.swatch === 'ignore' ? -1 : Number.NaN;
          img.rgb.set(shadePixel(NO_RAW_GREY, label, content.nLab, xx, yy), ((y + yy) * width + pad + xx) * 3);
        }
      }
    }
    drawText(img, line.text, pad + (line.swatch ? textX : 0), y, line.muted ? MUTED : TEXT, S);
  });

  return {
    ...img,
    layout: { panels, grid: { x: pad, y: gridY, width: gridW, height: gridH }, legend: { x: pad, y: legendY, width: legendW, height: legendH }, zoom },
    counts,
  };
}

function blitInto(dst: RgbImage, src: RgbImage, x: number, y: number): void {
  for (let r = 0; r < src.height; r++) {
    dst.rgb.set(src.rgb.subarray(r * src.width * 3, (r + 1) * src.width * 3), ((y + r) * dst.width + x) * 3);
  }
}

// ---------------------------------------------------------------------------------------------------
// Reading: only the shown slices, a band of rows at a time.

export interface VolumeSource {
  file: string;
  key: string;
}

export interface PreviewOptions {
  /** Label volume (2-D or 3-D class ids, -1 = ignore) and its lazy-label `info` dataset (default 'info'). */
  label?: VolumeSource & { infoKey?: string };
  /** Raw volume, (x,y,z)/(x,y) or channels-first; channel 0 (or `channel`) is shown. */
  raw?: VolumeSource & { channel?: number };
  /** Position of the labels inside a larger raw volume; default: same shape, or centred (as training does). */
  offset?: number[];
  /** Number of classes; default from `info`, else from the largest label value shown. */
  nLab?: number;
  classNames?: string[];
  /** Title of the image (default: the label or raw file name). */
  name?: string;
  /** Slices evenly spaced along `axis` (default 4); a 2-D volume always gives one. */
  slices?: number;
  axis?: number;
  /** Target length in pixels of a panel's longer side (default 256): larger slices are subsampled, smaller ones zoomed. */
  size?: number;
  columns?: number;
  textScale?: number;
  /** Memory budget per read in MiB (default: the slab default). */
  slabMB?: number;
}

export interface VolumeMeta {
  file: string;
  key: string;
  shape: number[];
  dtype: string;
}

export interface PreviewMeta {
  name: string;
  /** Spatial shape in label coordinates. */
  shape: number[];
  axis: number;
  indices: (number | null)[];
  /** Subsampling step (1 = every voxel) and zoom (pixels per shown voxel). */
  step: number;
  zoom: number;
  nLab: number;
  nLabSource: 'given' | 'info' | 'labels';
  classNames: string[];
  info: InfoMask | null;
  label: VolumeMeta | null;
  raw: (VolumeMeta & { channel: number | null; offset: number[] }) | null;
  /** Raw values mapped to grey 0..255 (null without raw). */
  rawWindow: [number, number] | null;
  findings: Finding[];
}

export interface RenderedPreview extends PreviewImage {
  meta: PreviewMeta;
}

/** Evenly spaced slice positions: the centres of `count` equal parts of `n`. */
export function sliceIndices(n: number, count: number): number[] {
  const k = Math.max(1, Math.min(n, Math.floor(count)));
  return Array.from({ length: k }, (_, i) => Math.floor(((i + 0.5) * n) / k));
}

interface Plane {
  /** Slicing axis, -1 for a 2-D volume. */
  axis: number;
  index: number;
  rowAxis: number;
  colAxis: number;
  rows: number;
  cols: number;
  step: number;
}

const outLen = (n: number, step: number): number => Math.ceil(n / step);
const sampled = (o: number, n: number, step: number): number => Math.min(n - 1, o * step + Math.floor(step / 2));

/**
 * Read one plane of a dataset, subsampled by `plane.step`, as float64 row-major values.
 * `lead` prefixes the box (a channel index); `offset` shifts the spatial box (labels inside larger raw).
 */
function readPlane(src: H5Source, key: string, dtype: DType, chunkRowsAlong: number | null, lead: number[], offset: number[], ndim: number, plane: Plane, slabMB: number): Float64Array {
  const oRows = outLen(plane.rows, plane.step);
  const oCols = outLen(plane.cols, plane.step);
  const out = new Float64Array(oRows * oCols);
  const box = (r0: number, r1: number): { starts: number[]; ends: number[] } => {
    const starts = [...lead];
    const ends = lead.map((c) => c + 1);
    for (let d = 0; d < ndim; d++) {
      const off = offset[d] ?? 0;
      if (d === plane.axis) {
        starts.push(plane.index + off);
        ends.push(plane.index + off + 1);
      } else if (d === plane.rowAxis) {
        starts.push(r0 + off);
        ends.push(r1 + off);
      } else {
        starts.push(off);
        ends.push(off + plane.cols);
      }
    }
    return { starts, ends };
  };
  // Bands of whole rows, within the slab budget, decompress each chunk once. When the step skips whole
  // chunk rows (or the data is contiguous), reading just the shown rows one at a time is cheaper.
  const chunkRows = chunkRowsAlong ?? 1;
  const perRow = plane.step > 1 && plane.step >= 2 * chunkRows;
  const budget = slabMB * 1024 * 1024;
  const bandRows = perRow ? 1 : Math.max(1, Math.floor(budget / (plane.cols * slabBytesPerVoxel(dtype.bytes))));
  let o = 0;
  while (o < oRows) {
    const r0 = sampled(o, plane.rows, plane.step);
    const r1 = Math.min(plane.rows, r0 + bandRows);
    const { starts, ends } = box(r0, r1);
    const data = src.readBox(key, starts, ends);
    for (; o < oRows; o++) {
      const r = sampled(o, plane.rows, plane.step);
      if (r >= r1) break;
      const rowAt = (r - r0) * plane.cols;
      for (let c = 0; c < oCols; c++) out[o * oCols + c] = data[rowAt + sampled(c, plane.cols, plane.step)]!;
    }
  }
  return out;
}

/** Grey window of raw values: identity for uint8, 0/1 for bool, else the 0.5th..99.5th percentile of what is shown. */
function rawWindow(dtype: DType, planes: readonly Float64Array[]): [number, number] {
  if (dtype.name === 'uint8') return [0, 255];
  if (dtype.name === 'bool') return [0, 1];
  const total = planes.reduce((a, p) => a + p.length, 0);
  const stride = Math.max(1, Math.floor(total / 200_000));
  const sample: number[] = [];
  let k = 0;
  for (const p of planes) {
    for (let i = 0; i < p.length; i++, k++) if (k % stride === 0 && Number.isFinite(p[i]!)) sample.push(p[i]!);
  }
  if (!sample.length) return [0, 1];
  sample.sort((a, b) => a - b);
  const q = (f: number): number => sample[Math.min(sample.length - 1, Math.max(0, Math.round(f * (sample.length - 1))))]!;
  let lo = q(0.005);
  let hi = q(0.995);
  if (!(hi > lo)) {
    lo = sample[0]!;
    hi = sample[sample.length - 1]!;
  }
  if (!(hi > lo)) hi = lo + 1;
  return [lo, hi];
}

function toGrey(values: Float64Array, [lo, hi]: [number, number]): Uint8Array {
  const out = new Uint8Array(values.length);
  const scale = 255 / (hi - lo);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    out[i] = Number.isFinite(v) ? Math.max(0, Math.min(255, Math.round((v - lo) * scale))) : 0;
  }
  return out;
}

const fmtShape = (s: readonly number[]): string => `(${s.join(',')})`;
const baseName = (p: string): string => p.split(/[\\/]/).pop() ?? p;

interface Opened {
  src: H5Source;
  meta: VolumeMeta;
  dtype: DType;
  chunks: number[] | null;
}

async function openVolume(v: VolumeSource, what: string): Promise<Opened> {
  const src = await H5Source.open(v.file);
  try {
    const info = src.info(v.key);
    if (!info.dtype) {
      throw new LazyLabelError(`${what} dataset holds ${info.typeName}, not numbers`, { code: 'label-dtype-unsupported', file: v.file, dataset: v.key, hint: 'store class ids / raw values as an integer or float array' });
    }
    return { src, dtype: info.dtype, chunks: info.chunks, meta: { file: v.file, key: v.key, shape: info.shape, dtype: info.dtype.name } };
  } catch (e) {
    src.close();
    throw e;
  }
}

/** Read the slices a preview needs and draw it. The result carries the layout and what was found (meta). */
export async function renderPreview(opts: PreviewOptions): Promise<RenderedPreview> {
  if (!opts.label && !opts.raw) throw usageError('nothing to preview', 'give a label volume, a raw volume, or both');
  const slabMB = opts.slabMB ?? DEFAULT_SLAB_MB;
  if (!(slabMB > 0)) throw usageError(`--slab-mb must be a positive number, got ${opts.slabMB}`);
  const findings: Finding[] = [];
  const opened: Opened[] = [];
  try {
    const lab = opts.label ? await openVolume(opts.label, 'label') : null;
    if (lab) opened.push(lab);
    const raw = opts.raw ? await openVolume(opts.raw, 'raw') : null;
    if (raw) opened.push(raw);

    // geometry: the label volume decides; raw alone may be channels-first 3-D (4 axes)
    let shape: number[];
    let rawLead: number[] = [];
    let rawChannels: number | null = null;
    let offset: number[] = [];
    if (lab) {
      shape = lab.meta.shape;
      if (shape.length !== 2 && shape.length !== 3) {
        throw new LazyLabelError(`labels have shape ${fmtShape(shape)}; a preview needs a 2-D or 3-D volume`, { code: 'label-ndim', file: lab.meta.file, dataset: lab.meta.key });
      }
    } else {
      const rs = raw!.meta.shape;
      if (rs.length < 2 || rs.length > 4) {
        throw new LazyLabelError(`raw has shape ${fmtShape(rs)}; a preview needs a 2-D or 3-D volume (or channels-first 3-D)`, { code: 'raw-ndim', file: raw!.meta.file, dataset: raw!.meta.key });
      }
      shape = rs.length === 4 ? rs.slice(1) : [...rs];
    }
    const ndim = shape.length;
    if (raw) {
      const spatial = lab ? rawSpatialShape(raw.meta.shape, ndim) : shape;
      if (!spatial) {
        throw new LazyLabelError(`raw has shape ${fmtShape(raw.meta.shape)}, neither ${ndim}-D like the labels ${fmtShape(shape)} nor channels-first`, { code: 'raw-ndim', file: raw.meta.file, dataset: raw.meta.key });
      }
      if (raw.meta.shape.length === ndim + 1) {
        rawChannels = raw.meta.shape[0]!;
        const channel = opts.raw!.channel ?? 0;
        if (!Number.isInteger(channel) || channel < 0 || channel >= rawChannels) throw usageError(`raw channel ${channel} does not exist: the raw has ${rawChannels} channel(s)`);
        rawLead = [channel];
        if (rawChannels > 1) findings.push(info('preview-raw-channel', `raw has ${rawChannels} channels; showing channel ${channel}`));
      }
      if (opts.offset) {
        if (opts.offset.length !== ndim) throw usageError(`offset [${opts.offset.join(', ')}] has ${opts.offset.length} entries but the volume is ${ndim}-D`, 'give one offset per spatial axis');
        offset = [...opts.offset];
      } else if (lab && spatial.every((n, i) => n >= shape[i]!)) {
        // training centres labels in a larger raw when no offset is given; show the same alignment
        offset = shape.map((n, i) => Math.floor((spatial[i]! - n) / 2));
        if (offset.some((o) => o > 0)) findings.push(info('preview-raw-centred', `labels ${fmtShape(shape)} centred in raw ${fmtShape(spatial)} at offset [${offset.join(', ')}] (no offset given; training does the same)`));
      } else {
        offset = shape.map(() => 0);
      }
      const fits = shape.every((n, i) => offset[i]! >= 0 && offset[i]! + n <= spatial[i]!);
      if (!fits) {
        throw new LazyLabelError(`labels ${fmtShape(shape)} at offset [${offset.join(', ')}] do not fit inside raw ${fmtShape(spatial)}`, { code: 'raw-shape-mismatch', file: raw.meta.file, dataset: raw.meta.key, hint: 'give the position of the labels inside the raw volume (manifest offset or --offset)' });
      }
    }

    // which slices
    const axis = ndim === 2 ? 0 : opts.axis ?? 0;
    if (ndim === 3 && (!Number.isInteger(axis) || axis < 0 || axis > 2)) throw usageError(`--axis must be 0, 1 or 2, got ${opts.axis}`);
    const slices = opts.slices ?? 4;
    if (!Number.isInteger(slices) || slices < 1) throw usageError(`--slices must be a positive integer, got ${opts.slices}`);
    const [rowAxis, colAxis] = ndim === 2 ? [0, 1] : [0, 1, 2].filter((d) => d !== axis) as [number, number];
    const indices: (number | null)[] = ndim === 2 ? [null] : sliceIndices(shape[axis]!, slices);
    if (ndim === 2 && slices > 1) findings.push(info('preview-2d', '2-D volume: one slice'));
    const rows = shape[rowAxis]!;
    const cols = shape[colAxis]!;
    if (rows === 0 || cols === 0 || (ndim === 3 && shape[axis]! === 0)) {
      throw new LazyLabelError(`volume ${fmtShape(shape)} is empty`, { code: 'empty-volume', file: (lab ?? raw)!.meta.file, dataset: (lab ?? raw)!.meta.key });
    }
    if (opts.columns !== undefined && !(Number.isInteger(opts.columns) && opts.columns >= 1)) throw usageError(`--columns must be a positive integer, got ${opts.columns}`);
    if (opts.textScale !== undefined && !(Number.isInteger(opts.textScale) && opts.textScale >= 1 && opts.textScale <= 8)) throw usageError(`--text-scale must be an integer from 1 to 8, got ${opts.textScale}`);
    const size = opts.size ?? 256;
    if (!(size >= 8)) throw usageError(`--size must be at least 8 pixels, got ${opts.size}`);
    const longest = Math.max(rows, cols);
    const step = longest > size ? Math.ceil(longest / size) : 1;
    const zoom = longest > size ? 1 : Math.max(1, Math.floor(size / longest));
    if (step > 1) findings.push(info('preview-subsampled', `slices of ${rows}x${cols} voxels shown at every ${step}th voxel`));

    // read
    const planeOf = (index: number | null): Plane => ({ axis: ndim === 2 ? -1 : axis, index: index ?? 0, rowAxis, colAxis, rows, cols, step });
    const labelPlanes = lab ? indices.map((i) => readPlane(lab.src, lab.meta.key, lab.dtype, lab.chunks?.[rowAxis] ?? null, [], [], ndim, planeOf(i), slabMB)) : null;
    const rawPlanes = raw ? indices.map((i) => readPlane(raw.src, raw.meta.key, raw.dtype, raw.chunks?.[rawLead.length + rowAxis] ?? null, rawLead, offset, ndim, planeOf(i), slabMB)) : null;

    // classes and info
    let nLab = opts.nLab;
    let nLabSource: PreviewMeta['nLabSource'] = 'given';
    let rawInfo: { shape: number[]; data: ArrayLike<number>; isFloat: boolean } | null = null;
    const infoKey = opts.label?.infoKey ?? 'info';
    if (lab && lab.src.has(infoKey)) {
      const r = lab.src.readAll(infoKey);
      rawInfo = { shape: r.shape, data: r.data, isFloat: r.dtype?.kind === 'float' };
    }
    if (nLab !== undefined && (!Number.isInteger(nLab) || nLab < 1)) throw usageError(`n_lab must be a positive integer, got ${nLab}`);
    if (nLab === undefined) {
      if (rawInfo && rawInfo.shape.length === 2 && rawInfo.shape[0] === 2 && rawInfo.shape[1]! >= 1) {
        nLab = rawInfo.shape[1]!;
        nLabSource = 'info';
      } else {
        let max = 0;
        for (const p of labelPlanes ?? []) for (let i = 0; i < p.length; i++) if (Number.isInteger(p[i]!) && p[i]! > max && p[i]! < 65536) max = p[i]!;
        nLab = max + 1;
        nLabSource = 'labels';
        if (lab) findings.push(warning('preview-n-lab-guessed', `n_lab not given and no usable 'info': assuming ${nLab} class(es) from the largest label in the shown slices; pass --n-lab`));
      }
    }
    let mask: InfoMask | null = null;
    if (lab) {
      const parsed = parseInfoMask(rawInfo, nLab);
      mask = parsed.mask;
      findings.push(...parsed.findings.filter((f) => f.code !== 'info-missing'));
    }
    const classNames = Array.from({ length: nLab }, (_, c) => opts.classNames?.[c] ?? `class ${c}`);
    if (opts.classNames && opts.classNames.length !== nLab) findings.push(warning('preview-class-names', `${opts.classNames.length} class names for ${nLab} classes`));

    const window = raw ? rawWindow(raw.dtype, rawPlanes!) : null;
    const name = opts.name ?? baseName((lab ?? raw)!.meta.file);
    const notes: string[] = [];
    if (rawChannels !== null && rawChannels > 1) notes.push(`raw channel ${rawLead[0]} of ${rawChannels}`);
    if (step > 1) notes.push(`every ${step}th voxel shown`);
    if (raw && window && raw.dtype.name !== 'uint8') notes.push(`raw grey window ${fmtNum(window[0])}..${fmtNum(window[1])}`);
    const content: PreviewContent = {
      title: `${name}  ${fmtShape(shape)}${lab ? ` ${lab.meta.dtype}` : ''}${ndim === 3 ? `  axis ${axis}` : ''}`,
      shape,
      axis,
      rows: outLen(rows, step),
      cols: outLen(cols, step),
      slices: indices.map((index, i) => ({ index, raw: rawPlanes ? toGrey(rawPlanes[i]!, window!) : null, labels: labelPlanes ? labelPlanes[i]! : null })),
      nLab,
      classNames,
      info: mask,
      hasRaw: raw !== null,
      hasLabels: lab !== null,
      notes,
    };
    const image = composePreview(content, { zoom, ...(opts.columns !== undefined ? { columns: opts.columns } : {}), ...(opts.textScale !== undefined ? { textScale: opts.textScale } : {}) });
    if (image.counts && image.counts.outOfRange > 0) {
      findings.push(warning('preview-out-of-range', `${image.counts.outOfRange} shown voxels hold values outside -1..${nLab - 1} (drawn magenta); run 'lazylabel check'`));
    }
    return {
      ...image,
      meta: {
        name,
        shape,
        axis,
        indices,
        step,
        zoom,
        nLab,
        nLabSource,
        classNames,
        info: mask,
        label: lab?.meta ?? null,
        raw: raw ? { ...raw.meta, channel: rawLead[0] ?? null, offset } : null,
        rawWindow: window,
        findings,
      },
    };
  } finally {
    for (const o of opened) o.src.close();
  }
}

function fmtNum(v: number): string {
  return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(4)));
}
