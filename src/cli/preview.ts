/** `lazylabel preview`: a PNG grid of slices (raw grey, class overlay, ignored voxels hatched) with a legend. */
import type { Argv } from 'yargs';
import { ExitCode, usageError } from '../errors.js';
import { parseVolumeRef } from '../io/volumeRef.js';
import type { PreviewReport } from '../ops/preview.js';
import { findingLine, printJson, printLines, shape, visibleFindings, type GlobalFlags } from './output.js';

interface PreviewArgs extends GlobalFlags {
  target?: string;
  manifest?: string;
  cube?: string;
  label?: string;
  labelKey: string;
  infoKey: string;
  raw?: string;
  rawKey: string;
  rawChannel?: number;
  offset?: string;
  nLab?: number;
  classNames?: string;
  o: string;
  force: boolean;
  slices: number;
  axis: number;
  size: number;
  columns?: number;
  textScale: number;
}

export function builder(y: Argv): Argv<PreviewArgs> {
  return y
    .positional('target', { type: 'string', describe: 'cube name (with --manifest) or a label file (path or path:dataset)' })
    .option('manifest', { type: 'string', describe: 'dataset manifest holding the cube' })
    .option('cube', { type: 'string', describe: 'cube name (or index) in the manifest' })
    .option('label', { type: 'string', describe: 'label volume, path or path:dataset (-1 = ignore)' })
    .option('label-key', { type: 'string', default: 'lab', describe: 'label dataset when --label names none' })
    .option('info-key', { type: 'string', default: 'info', describe: 'lazy-label info dataset, shape (2, n_lab)' })
    .option('raw', { type: 'string', describe: 'raw volume, path or path:dataset' })
    .option('raw-key', { type: 'string', default: 'raw', describe: 'raw dataset when --raw names none' })
    .option('raw-channel', { type: 'number', describe: 'channel shown for channels-first raw (default 0)' })
    .option('offset', { type: 'string', describe: 'position of the labels inside a larger raw, e.g. 2,16,16 (default: centred)' })
    .option('n-lab', { type: 'number', describe: "number of classes (default: the manifest, the file's info, or the largest label shown)" })
    .option('class-names', { type: 'string', describe: 'comma-separated class names for the legend' })
    .option('o', { alias: 'out', type: 'string', demandOption: true, describe: 'output PNG' })
    .option('force', { type: 'boolean', default: false, describe: 'replace an existing output' })
    .option('slices', { type: 'number', default: 4, describe: 'slices evenly spaced along --axis (a 2-D volume has one)' })
    .option('axis', { type: 'number', default: 0, describe: 'axis the slices cut across: 0, 1 or 2' })
    .option('size', { type: 'number', default: 256, describe: "panel size in pixels (longer side): bigger slices are subsampled, smaller ones zoomed" })
    .option('columns', { type: 'number', describe: 'panels per row (default min(slices, 4))' })
    .option('text-scale', { type: 'number', default: 2, describe: 'legend font size (pixels per font pixel)' })
    .example('$0 preview nucleus --manifest dataset.json -o nucleus.png', 'a manifest cube')
    .example('$0 preview --label cube.h5:lab --raw cube.h5:raw --slices 6 --axis 2 -o slices.png', 'files')
    .epilog(
      'Raw is grey; each class is a semi-transparent colour; ignored (-1) voxels are dimmed and hatched with light diagonal lines; ' +
        'values outside -1..n_lab-1 are solid magenta. The legend lists each class with its info flags (labelled / not present) and ' +
        'its voxel count in the shown slices. Only the shown slices are read.',
    ) as unknown as Argv<PreviewArgs>;
}

const ints = (flag: string, text: string | undefined): number[] | undefined => {
  if (text === undefined) return undefined;
  const v = text.split(/[,x ]+/).filter(Boolean).map(Number);
  if (!v.length || v.some((n) => !Number.isInteger(n) || n < 0)) throw usageError(`--${flag} ${text} is not a list of non-negative integers`);
  return v;
};

export function renderPreviewReport(r: PreviewReport, verbose: boolean): string[] {
  const where = r.slices[0] === null ? '2-D' : `axis ${r.axis} at ${r.slices.join(', ')}`;
  const lines = [`wrote ${r.output}: ${r.image.width}x${r.image.height} px, ${r.cube} ${shape(r.shape)}, ${r.slices.length} slice${r.slices.length === 1 ? '' : 's'} (${where})${r.step > 1 ? `, every ${r.step}th voxel` : ''}`];
  if (r.shown) {
    const many = r.nLab > 24;
    const names = r.classNames.flatMap((n, c) => (many && !r.shown!.classVoxels[c] ? [] : [`${n}=${r.shown!.classVoxels[c]}`])).join(' ');
    lines.push(`shown voxels: ${names}${many ? ` (other of ${r.nLab} classes: 0)` : ''} ignored=${r.shown.ignored}${r.shown.outOfRange ? ` out-of-range=${r.shown.outOfRange}` : ''}`);
  }
  if (r.info && r.nLab <= 24) lines.push(`info: L=${r.info.labeled.join('')} NP=${r.info.notPresent.join('')}${r.info.source === 'default' ? ' (default)' : ''}`);
  lines.push(...visibleFindings(r.findings, verbose).map((f) => findingLine(f, '')));
  return lines;
}

export async function handler(args: PreviewArgs): Promise<number> {
  let { manifest, cube, label } = args;
  if (args.target !== undefined) {
    if (manifest !== undefined) {
      if (cube !== undefined && cube !== args.target) throw usageError(`two cubes named: '${args.target}' and --cube '${cube}'`);
      cube = args.target;
    } else if (label === undefined) label = args.target;
    else throw usageError(`unexpected argument '${args.target}'`, 'give the label file once: as the argument or with --label');
  }
  const lab = label !== undefined ? parseVolumeRef(label) : undefined;
  const raw = args.raw !== undefined ? parseVolumeRef(args.raw) : undefined;
  const offset = ints('offset', args.offset);
  const { preview } = await import('../ops/preview.js');
  const report = await preview({
    ...(manifest !== undefined ? { manifest } : {}),
    ...(cube !== undefined ? { cube } : {}),
    ...(lab ? { label: lab.file, labelKey: lab.key ?? args.labelKey } : {}),
    infoKey: args.infoKey,
    ...(raw ? { raw: raw.file, rawKey: raw.key ?? args.rawKey } : {}),
    ...(args.rawChannel !== undefined ? { rawChannel: args.rawChannel } : {}),
    ...(offset ? { offset } : {}),
    ...(args.nLab !== undefined ? { nLab: args.nLab } : {}),
    ...(args.classNames !== undefined ? { classNames: args.classNames.split(',').map((s) => s.trim()) } : {}),
    out: args.o,
    force: args.force,
    slices: args.slices,
    axis: args.axis,
    size: args.size,
    ...(args.columns !== undefined ? { columns: args.columns } : {}),
    textScale: args.textScale,
    slabMB: args.slabMb,
  });
  if (args.json) printJson(report);
  else printLines(renderPreviewReport(report, args.verbose));
  return report.ok ? ExitCode.ok : ExitCode.dataError;
}
