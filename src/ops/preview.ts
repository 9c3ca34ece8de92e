/** `preview`: resolve a manifest cube or label/raw files, render the slice grid, write the PNG atomically (library entry point). */
import path from 'node:path';
import { LazyLabelError, usageError } from '../errors.js';
import type { Manifest, ManifestCube } from '../core/manifest.js';
import type { Finding } from '../core/findings.js';
import { writePng } from '../io/png.js';
import { checkOutputPath } from '../io/atomic.js';
import { loadManifest } from './manifestFile.js';
import { renderPreview, type PreviewLayout, type PreviewOptions, type RenderedPreview, type ShownCounts } from '../report/preview.js';

export interface PreviewCommandOptions {
  /** A dataset manifest and the cube in it (by name, or by position when no name matches). */
  manifest?: string;
  cube?: string;
  /** Or files: label and/or raw volumes. */
  label?: string;
  labelKey?: string;
  infoKey?: string;
  raw?: string;
  rawKey?: string;
  rawChannel?: number;
  offset?: number[];
  nLab?: number;
  classNames?: string[];
  out: string;
  force?: boolean;
  slices?: number;
  axis?: number;
  size?: number;
  columns?: number;
  textScale?: number;
  slabMB?: number;
}

export interface PreviewReport {
  command: 'preview';
  ok: boolean;
  output: string;
  manifest: string | null;
  cube: string;
  label: { file: string; key: string; shape: number[]; dtype: string } | null;
  raw: { file: string; key: string; shape: number[]; dtype: string; channel: number | null; offset: number[] } | null;
  shape: number[];
  axis: number;
  /** Positions along `axis` of the shown slices (null for a 2-D volume). */
  slices: (number | null)[];
  step: number;
  zoom: number;
  nLab: number;
  nLabSource: 'given' | 'info' | 'labels';
  classNames: string[];
  /** The info mask as training uses it, 0/1 per class; null without labels or with an unusable info. */
  info: { labeled: number[]; notPresent: number[]; source: 'file' | 'default' } | null;
  rawWindow: [number, number] | null;
  shown: ShownCounts | null;
  image: { width: number; height: number };
  layout: PreviewLayout;
  findings: Finding[];
}

/** Find a cube by name, or by its position in `cubes` when no name matches an integer. */
export function findCube(manifest: Manifest, which: string): ManifestCube {
  const byName = manifest.cubes.find((c) => c.name === which);
  if (byName) return byName;
  if (/^\d+$/.test(which) && Number(which) < manifest.cubes.length) return manifest.cubes[Number(which)]!;
  throw usageError(`no cube '${which}' in ${manifest.path}`, `cubes: ${manifest.cubes.map((c) => c.name).join(', ') || '(none)'}`);
}

/** What `renderPreview` needs for a manifest cube: label, raw, offset, classes and names. */
export function previewSourceForCube(manifest: Manifest, cube: ManifestCube): PreviewOptions {
  return {
    name: cube.name,
    label: { file: cube.label, key: cube.labelKey, infoKey: cube.infoKey },
    ...(cube.raw ? { raw: { file: cube.raw, key: cube.rawKey } } : {}),
    ...(cube.offset ? { offset: cube.offset } : {}),
    nLab: manifest.nLab,
    ...(manifest.classNames ? { classNames: manifest.classNames } : {}),
  };
}

/** Load a manifest that only needs to parse (a preview helps debug manifests that check rejects). */
function manifestForPreview(file: string): Manifest {
  const { manifest, findings } = loadManifest(file);
  if (!manifest) {
    throw new LazyLabelError(`manifest is invalid: ${findings.map((f) => f.message).join('; ')}`, { code: 'manifest-schema', file, hint: `run 'lazylabel check --manifest ${file}' for details` });
  }
  return manifest;
}

function sourceFromOptions(o: PreviewCommandOptions): { source: PreviewOptions; manifest: Manifest | null } {
  if (o.manifest !== undefined) {
    if (o.label !== undefined || o.raw !== undefined) throw usageError('give --manifest with --cube, or --label/--raw files, not both');
    if (o.cube === undefined) throw usageError('--manifest needs a cube', 'name it: lazylabel preview CUBE --manifest dataset.json (or --cube NAME)');
    const manifest = manifestForPreview(o.manifest);
    const source = previewSourceForCube(manifest, findCube(manifest, o.cube));
    if (o.nLab !== undefined && o.nLab !== manifest.nLab) throw usageError(`--n-lab ${o.nLab} differs from the manifest's n_lab ${manifest.nLab}`, 'drop --n-lab: the manifest decides');
    if (o.rawChannel !== undefined && source.raw) source.raw.channel = o.rawChannel;
    if (o.offset) source.offset = o.offset;
    if (o.classNames) source.classNames = o.classNames;
    return { source, manifest };
  }
  if (o.cube !== undefined) throw usageError(`cube '${o.cube}' needs --manifest`, 'or give the volumes with --label and --raw');
  if (o.label === undefined && o.raw === undefined) throw usageError('nothing to preview', 'give --manifest dataset.json --cube NAME, or --label L.h5[:key] and/or --raw R.h5[:key]');
  return {
    manifest: null,
    source: {
      ...(o.label !== undefined ? { label: { file: o.label, key: o.labelKey ?? 'lab', infoKey: o.infoKey ?? 'info' } } : {}),
      ...(o.raw !== undefined ? { raw: { file: o.raw, key: o.rawKey ?? 'raw', ...(o.rawChannel !== undefined ? { channel: o.rawChannel } : {}) } } : {}),
      ...(o.offset ? { offset: o.offset } : {}),
      ...(o.nLab !== undefined ? { nLab: o.nLab } : {}),
      ...(o.classNames ? { classNames: o.classNames } : {}),
    },
  };
}

export function previewReport(img: RenderedPreview, output: string, manifest: string | null): PreviewReport {
  const m = img.meta;
  return {
    command: 'preview',
    ok: !m.findings.some((f) => f.severity === 'error'),
    output,
    manifest,
    cube: m.name,
    label: m.label,
    raw: m.raw,
    shape: m.shape,
    axis: m.axis,
    slices: m.indices,
    step: m.step,
    zoom: m.zoom,
    nLab: m.nLab,
    nLabSource: m.nLabSource,
    classNames: m.classNames,
    info: m.info ? { labeled: m.info.labeled.map(Number), notPresent: m.info.notPresent.map(Number), source: m.info.source } : null,
    rawWindow: m.rawWindow,
    shown: img.counts,
    image: { width: img.width, height: img.height },
    layout: img.layout,
    findings: m.findings,
  };
}

/** Render a preview of one cube and write it as a PNG (atomically; an existing file only with `force`). */
export async function preview(o: PreviewCommandOptions): Promise<PreviewReport> {
  const { source, manifest } = sourceFromOptions(o);
  const inputs = [source.label?.file, source.raw?.file, manifest?.path].filter((f): f is string => f !== undefined);
  // refuse a bad output before reading anything (writePng checks again right before the rename)
  checkOutputPath(o.out, { force: o.force ?? false, inputs });
  const img = await renderPreview({
    ...source,
    ...(o.slices !== undefined ? { slices: o.slices } : {}),
    ...(o.axis !== undefined ? { axis: o.axis } : {}),
    ...(o.size !== undefined ? { size: o.size } : {}),
    ...(o.columns !== undefined ? { columns: o.columns } : {}),
    ...(o.textScale !== undefined ? { textScale: o.textScale } : {}),
    ...(o.slabMB !== undefined ? { slabMB: o.slabMB } : {}),
  });
  await writePng(o.out, img, { force: o.force ?? false, inputs });
  return previewReport(img, path.resolve(o.out), manifest?.path ?? null);
}
