/** `lazylabel check`: parse flags, run the check, print the report. */
import type { Argv } from 'yargs';
import type { CheckReport } from '../ops/check.js';
import { parseVolumeRef } from '../io/volumeRef.js';
import { usageError, ExitCode } from '../errors.js';
import type { CubeRef } from '../ops/scan.js';
import { findingLine, percent, printJson, printLines, shape, statusText, table, visibleFindings, type GlobalFlags } from './output.js';
import { progressBar } from './progress.js';
import { parseShard, shardText } from '../core/shard.js';

interface CheckArgs extends GlobalFlags {
  files: string[];
  nLab?: number;
  labelKey: string;
  infoKey: string;
  raw: string[];
  rawKey: string;
  manifest?: string;
  strict: boolean;
  shard?: string;
}

export function builder(y: Argv): Argv<CheckArgs> {
  return y
    .positional('files', { type: 'string', array: true, describe: 'label HDF5 files (path or path:dataset)', default: [] })
    .option('n-lab', { type: 'number', describe: 'number of classes (labels are 0..n_lab-1, -1 = ignore)' })
    .option('label-key', { type: 'string', default: 'lab', describe: 'label dataset inside each file' })
    .option('info-key', { type: 'string', default: 'info', describe: 'lazy-label info dataset, shape (2, n_lab)' })
    .option('raw', { type: 'string', array: true, default: [], describe: 'raw file paired with the label file at the same position (repeatable)' })
    .option('raw-key', { type: 'string', default: 'raw', describe: 'raw dataset inside each raw file' })
    .option('manifest', { type: 'string', describe: 'check every cube of a dataset manifest instead' })
    .option('strict', { type: 'boolean', default: false, describe: 'warnings fail the check too' })
    .option('shard', { type: 'string', describe: 'check only shard i of n (0-based, contiguous blocks of files), e.g. 3/8 in a job array; join the --json reports with lazylabel merge' })
    .example('$0 check cube1.h5 cube2.h5 --n-lab 3', 'check two label files')
    .example('$0 check --manifest dataset.json --json', 'check a training set, JSON report') as unknown as Argv<CheckArgs>;
}

function refsFromArgs(args: CheckArgs): CubeRef[] {
  if (args.raw.length > 0 && args.raw.length !== args.files.length) {
    throw usageError(`${args.files.length} label files but ${args.raw.length} --raw files`, '--raw pairs with label files in order: give one per label file');
  }
  return args.files.map((text, i) => {
    const lab = parseVolumeRef(text);
    const raw = args.raw[i] !== undefined ? parseVolumeRef(args.raw[i]!) : undefined;
    return {
      label: lab.file,
      labelKey: lab.key ?? args.labelKey,
      infoKey: args.infoKey,
      ...(raw ? { raw: raw.file, rawKey: raw.key ?? args.rawKey } : {}),
    };
  });
}

export function renderCheck(report: CheckReport, verbose: boolean): string[] {
  const lines: string[] = [];
  if (report.manifest) {
    lines.push(`manifest ${report.manifest.path}: ${statusText(report.manifest.status)}`);
    lines.push(...visibleFindings(report.manifest.findings, verbose).map((f) => findingLine(f)));
  }
  if (report.files.length) {
    const rows = report.files.map((f) => {
      const s = f.stats;
      const info = s?.info ? `L=${s.info.labeled.join('')} NP=${s.info.notPresent.join('')}${s.info.source === 'default' ? ' (default)' : ''}` : '-';
      return [f.name, statusText(f.status), s ? shape(s.shape) : '-', s?.dtype ?? '-', s ? percent(s.labelledFraction) : '-', s ? percent(s.voxels ? s.ignored / s.voxels : 0) : '-', s ? s.classCounts.join('/') : '-', info];
    });
    lines.push(table(['cube', 'status', 'shape', 'dtype', 'labelled', 'ignored', 'class voxels', 'info'], rows));
    for (const f of report.files) {
      const shown = visibleFindings(f.findings, verbose);
      if (shown.length) lines.push(`${f.name}:`, ...shown.map((x) => findingLine(x)));
    }
  }
  const s = report.summary;
  lines.push(`${s.files} file${s.files === 1 ? '' : 's'}: ${s.ok} ok, ${s.warn} warn, ${s.error} error${report.strict ? ' (strict)' : ''} -> ${report.ok ? 'OK' : 'FAILED'}`);
  if (report.shard) {
    const sh = report.shard;
    lines.push(`shard ${shardText(sh)}: files ${sh.start}..${sh.end - 1} of ${sh.total} (0-based)${sh.end === sh.start ? ', none here' : ''}; join the --json reports of all shards with lazylabel merge`);
  }
  return lines;
}

export async function handler(args: CheckArgs): Promise<number> {
  const shard = args.shard !== undefined ? { shard: parseShard(args.shard) } : {};
  const bar = progressBar({ quiet: args.quiet || args.json, unit: 'voxels' });
  let report: CheckReport;
  try {
    const { checkCubes, checkManifest } = await import('../ops/check.js');
    if (args.manifest) {
      if (args.files.length) throw usageError('give label files or --manifest, not both');
      report = await checkManifest(args.manifest, { strict: args.strict, slabMB: args.slabMb, onProgress: bar.update, ...(args.nLab ? { nLab: args.nLab } : {}), ...shard });
    } else {
      if (!args.files.length) throw usageError('no label files given', 'pass label files, or --manifest dataset.json');
      if (args.nLab === undefined) throw usageError('--n-lab is required when checking label files', 'e.g. --n-lab 3 for classes 0, 1, 2');
      if (!Number.isInteger(args.nLab) || args.nLab < 1) throw usageError(`--n-lab must be a positive integer, got ${args.nLab}`);
      report = await checkCubes(refsFromArgs(args), { nLab: args.nLab, strict: args.strict, slabMB: args.slabMb, onProgress: bar.update, ...shard });
    }
  } finally {
    bar.stop();
  }
  if (args.json) printJson(report);
  else printLines(renderCheck(report, args.verbose));
  return report.ok ? ExitCode.ok : ExitCode.dataError;
}
