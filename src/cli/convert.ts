/** `lazylabel convert`: parse flags, convert masks or dense class volumes to -1-ignored labels with `info`, print the report. */
import type { Argv } from 'yargs';
import type { ConvertOptions, ConvertReport, VolumeInput } from '../ops/convert.js';
import { parseVolumeRef } from '../io/volumeRef.js';
import { usageError, ExitCode } from '../errors.js';
import { findingLine, percent, printJson, printLines, shape, statusText, table, visibleFindings, type GlobalFlags } from './output.js';
import { progressBar } from './progress.js';
import { parseShard, shardText } from '../core/shard.js';

interface ConvertArgs extends GlobalFlags {
  mask?: string;
  classes?: string;
  like?: string;
  raw?: string;
  maskKey: string;
  classesKey: string;
  likeKey: string;
  rawKey: string;
  fillClass?: string;
  allIgnore: boolean;
  ignoreValue?: number;
  unlabeledValue?: number;
  shift: boolean;
  ndim?: number;
  nLab?: number;
  manifest?: string;
  cubeName?: string;
  labeled?: string[];
  notPresent?: string[];
  allowEmpty: boolean;
  verify: boolean;
  output?: string;
  outKey: string;
  outFormat?: 'hdf5' | 'zarr';
  force: boolean;
  shard?: string;
}

export function builder(y: Argv): Argv<ConvertArgs> {
  return y
    .option('mask', { type: 'string', describe: 'mask volume (path or path:dataset): voxels > 0 are labelled, the rest becomes -1' })
    .option('classes', { type: 'string', describe: 'class volume (path or path:dataset)' })
    .option('like', { type: 'string', describe: 'raw volume whose spatial shape an --all-ignore output takes ((ch,x,y,z) drops the channel axis)' })
    .option('raw', { type: 'string', describe: 'raw volume of this cube: shape-checked, re-checked with the output, written to the manifest' })
    .option('mask-key', { type: 'string', default: 'mask', describe: 'mask dataset when --mask names only a file' })
    .option('classes-key', { type: 'string', default: 'lab', describe: 'class dataset when --classes names only a file' })
    .option('like-key', { type: 'string', default: 'raw', describe: 'raw dataset when --like names only a file' })
    .option('raw-key', { type: 'string', default: 'raw', describe: 'raw dataset when --raw names only a file' })
    .option('fill-class', { type: 'string', describe: 'class id or name painted inside --mask' })
    .option('all-ignore', { type: 'boolean', default: false, describe: 'write -1 everywhere (with --like; flag absent classes with --not-present)' })
    .option('ignore-value', { type: 'number', describe: 'dense --classes: this value becomes -1 (e.g. 255)' })
    .option('unlabeled-value', { type: 'number', describe: 'dense --classes: this value means not annotated and becomes -1 (e.g. 0)' })
    .option('shift', { type: 'boolean', default: false, describe: 'with --unlabeled-value: classes above it move down by one (1..n -> 0..n-1)' })
    .option('ndim', { type: 'number', describe: 'spatial dimensions of --like when its rank is ambiguous (2 or 3)' })
    .option('n-lab', { type: 'number', describe: 'number of classes (labels are 0..n_lab-1, -1 = ignore)' })
    .option('manifest', { type: 'string', describe: 'dataset manifest giving n_lab and class names; with --cube-name the cube entry is added or updated' })
    .option('cube-name', { type: 'string', describe: 'cube entry in --manifest to add or update with the output' })
    .option('labeled', { type: 'string', array: true, describe: 'classes annotated wherever they occur, e.g. 0,1 or names (default: the classes that occur in the output)' })
    .option('not-present', { type: 'string', array: true, describe: 'classes that occur nowhere in this cube, e.g. 2 or names' })
    .option('allow-empty', { type: 'boolean', default: false, describe: 'write a cube with no labelled voxel and no not-present class' })
    .option('output', { alias: 'o', type: 'string', describe: 'label HDF5 file to write (a zarr v2 folder when it ends in .zarr)' })
    .option('out-key', { type: 'string', default: 'lab', describe: 'label dataset in the output (info goes to info)' })
    .option('out-format', { type: 'string', choices: ['hdf5', 'zarr'], describe: 'output container (default: zarr for -o *.zarr, else HDF5)' })
    .option('force', { type: 'boolean', default: false, describe: 'replace an existing output (never an input)' })
    .option('verify', { type: 'boolean', default: false, describe: 're-read the whole written output in the re-check (default: the counts come from the values written)' })
    .option('shard', { type: 'string', describe: 'convert only shard i of n (0-based, contiguous blocks of chunk rows along axis 0) into OUT.part-i-of-n; lazylabel merge joins the parts into OUT' })
    .example('$0 convert --mask cube.h5:mask --classes cube.h5:lab --n-lab 3 -o cube_lazy.h5', 'classes inside the mask, -1 elsewhere')
    .example('$0 convert --mask mito.h5 --fill-class 1 --n-lab 2 --labeled 1 -o mito_lazy.h5', 'one class inside the mask')
    .example('$0 convert --mask cube.zarr:mask --classes cube.zarr:lab --n-lab 3 -o cube_lazy.zarr', 'the same, written as a zarr v2 group (lab, info)')
    .example('$0 convert --like raw.h5 --all-ignore --n-lab 3 --not-present 2 -o empty.h5', 'a cube that only says class 2 is absent')
    .example('$0 convert --classes seg.h5 --unlabeled-value 0 --shift --manifest dataset.json --cube-name c7 -o c7.h5', '0 = unlabelled, 1..n = classes, registered in the manifest') as unknown as Argv<ConvertArgs>;
}

/** `0,1 2` → ['0', '1', '2']: comma lists and repeated flags both work. */
function tokens(values: string[] | undefined): string[] | undefined {
  if (values === undefined) return undefined;
  return values.flatMap((v) => String(v).split(',')).map((t) => t.trim()).filter(Boolean);
}

function volume(text: string | undefined, defaultKey: string): VolumeInput | undefined {
  if (text === undefined) return undefined;
  if (!text) throw usageError('an empty path was given for a volume');
  const ref = parseVolumeRef(text);
  return { file: ref.file, key: ref.key ?? defaultKey };
}

export function optionsFromArgs(args: ConvertArgs): ConvertOptions {
  if (!args.output) throw usageError('no output given', 'pass -o OUT.h5');
  const opts: ConvertOptions = {
    output: args.output,
    outKey: args.outKey,
    ...(args.outFormat !== undefined ? { outFormat: args.outFormat } : {}),
    allIgnore: args.allIgnore,
    shift: args.shift,
    allowEmpty: args.allowEmpty,
    verify: args.verify,
    force: args.force,
    slabMB: args.slabMb,
    commandLine: ['lazylabel', ...process.argv.slice(2)],
  };
  const mask = volume(args.mask, args.maskKey);
  const classes = volume(args.classes, args.classesKey);
  const like = volume(args.like, args.likeKey);
  const raw = volume(args.raw, args.rawKey);
  if (mask) opts.mask = mask;
  if (classes) opts.classes = classes;
  if (like) opts.like = like;
  if (raw) opts.raw = raw;
  if (args.fillClass !== undefined) opts.fillClass = args.fillClass;
  if (args.ignoreValue !== undefined) opts.ignoreValue = args.ignoreValue;
  if (args.unlabeledValue !== undefined) opts.unlabeledValue = args.unlabeledValue;
  if (args.ndim !== undefined) opts.ndim = args.ndim;
  if (args.nLab !== undefined) opts.nLab = args.nLab;
  if (args.manifest !== undefined) opts.manifest = args.manifest;
  if (args.cubeName !== undefined) opts.cubeName = args.cubeName;
  const labeled = tokens(args.labeled);
  if (labeled) opts.labeled = labeled;
  const notPresent = tokens(args.notPresent);
  if (notPresent) opts.notPresent = notPresent;
  if (args.shard !== undefined) opts.shard = parseShard(args.shard);
  return opts;
}

export function renderConvert(report: ConvertReport, verbose: boolean): string[] {
  const lines: string[] = [];
  const out = report.output;
  lines.push(`${report.mode}: wrote ${out.path}:${out.dataset} ${shape(out.shape)} ${out.dtype} + ${out.infoDataset} in ${report.slabs} slab${report.slabs === 1 ? '' : 's'}`);
  const rows = report.classCounts.map((n, c) => [
    String(c),
    report.classNames?.[c] ?? '',
    String(n),
    percent(report.voxels ? n / report.voxels : 0),
    report.info.labeled[c] ? 'yes' : 'no',
    report.info.notPresent[c] ? 'yes' : 'no',
  ]);
  rows.push(['-1', 'ignore', String(report.ignored), percent(report.ignoredFraction), '', '']);
  lines.push(table(['class', 'name', 'voxels', 'share', 'labelled', 'not present'], rows));
  const from = report.labeledFrom === 'flag' ? 'labelled classes from --labeled' : 'labelled classes = those occurring in the output';
  lines.push(`info: L=${report.info.labeled.join('')} NP=${report.info.notPresent.join('')} (${from})`);
  lines.push(`ignored: ${report.ignored} of ${report.voxels} voxels (${percent(report.ignoredFraction)})`);
  if (report.attrsCopied.length) lines.push(`attributes copied: ${report.attrsCopied.join(', ')}`);
  lines.push(`check: ${statusText(report.check.status)}`);
  lines.push(...visibleFindings(report.check.findings, verbose).map((f) => findingLine(f)));
  if (report.shard) {
    const sh = report.shard;
    lines.push(`shard ${shardText(sh)}: rows ${sh.start}..${sh.end} of ${sh.total} along axis 0 (info above is this part's); join all parts with lazylabel merge --convert ... -o OUT`);
  }
  if (report.manifest) {
    const m = report.manifest;
    lines.push(`manifest ${m.path}: ${m.action} cube '${m.cube}'${m.lazyLabelsEnabled ? '; set lazy_labels to true' : ''}`);
  }
  return lines;
}

export async function handler(args: ConvertArgs): Promise<number> {
  const opts = optionsFromArgs(args);
  const bar = progressBar({ quiet: args.quiet || args.json, unit: 'voxels' });
  let report: ConvertReport;
  try {
    const { convert } = await import('../ops/convert.js');
    report = await convert({ ...opts, onProgress: bar.update });
  } finally {
    bar.stop();
  }
  if (args.json) printJson(report);
  else printLines(renderConvert(report, args.verbose));
  return report.ok ? ExitCode.ok : ExitCode.dataError;
}
