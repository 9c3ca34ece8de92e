/** `lazylabel merge`: join the shards of one run (check/suggest-prios reports, convert/predict part files) into what the unsharded run gives. */
import type { Argv } from 'yargs';
import type { MergeKind, MergeReport } from '../ops/merge.js';
import { ExitCode, usageError } from '../errors.js';
import type { CheckReport } from '../ops/check.js';
import type { PriosReport } from '../ops/suggestPrios.js';
import type { ConvertReport } from '../ops/convert.js';
import type { PredictReport } from '../ops/predict.js';
import { renderCheck } from './check.js';
import { renderPrios } from './suggestPrios.js';
import { renderConvert } from './convert.js';
import { renderPredict } from './predict.js';
import { printJson, printLines, type GlobalFlags } from './output.js';
import { progressBar } from './progress.js';

interface MergeArgs extends GlobalFlags {
  inputs: string[];
  output?: string;
  convert: boolean;
  predict: boolean;
  force: boolean;
  writeManifest: boolean;
}

const HELP = [
  'Shards come from --shard i/n (0-based; contiguous blocks of files, cubes, chunk rows or tile rows).',
  'Inputs may be given in any order (a shell glob is fine): merge orders them by their recorded shard',
  'index and refuses a set with a missing, repeated or foreign shard, naming the array tasks to rerun.',
  'Exit codes: 0 ok, 1 the merged report has errors (as the unsharded command would exit), 2 usage error.',
].join('\n');

export function builder(y: Argv): Argv<MergeArgs> {
  return y
    .positional('inputs', { type: 'string', array: true, describe: 'shard reports (check / suggest-prios --shard i/n --json) or part files (convert / predict --shard i/n: OUT.part-i-of-n)', default: [] })
    .option('output', { alias: 'o', type: 'string', describe: 'merged volume (convert/predict parts: required) or merged report JSON (check/suggest-prios: optional)' })
    .option('convert', { type: 'boolean', default: false, describe: 'the inputs are convert part files (checked, not required: merge reads the kind from the inputs)' })
    .option('predict', { type: 'boolean', default: false, describe: 'the inputs are predict part files (checked, not required)' })
    .option('force', { type: 'boolean', default: false, describe: 'replace an existing output (never an input)' })
    .option('write-manifest', { type: 'boolean', default: false, describe: "suggest-prios shards: store the merged prios in the manifest's cubes (atomic rewrite)" })
    .example('$0 merge check-*.json -o check.json', 'one check report from the reports of all shards')
    .example('$0 merge prios-*.json --write-manifest', 'prios over all cubes, stored in the manifest')
    .example('$0 merge --convert big_lab.h5.part-*-of-8 -o big_lab.h5', 'one label volume (with info over all parts) from 8 part files')
    .epilog(HELP) as unknown as Argv<MergeArgs>;
}

export function renderMerge(r: MergeReport, verbose: boolean): string[] {
  let lines: string[];
  switch (r.kind) {
    case 'check':
      lines = renderCheck(r.report as CheckReport, verbose);
      break;
    case 'suggest-prios':
      lines = renderPrios(r.report as PriosReport, verbose);
      break;
    case 'convert':
      lines = renderConvert(r.report as ConvertReport, verbose);
      break;
    case 'predict':
      lines = renderPredict(r.report as PredictReport);
      break;
  }
  const wrote = r.output ? ` -> ${r.output}` : '';
  return [...lines, `merged ${r.shards} ${r.kind} shard${r.shards === 1 ? '' : 's'}${wrote}`];
}

export async function handler(args: MergeArgs): Promise<number> {
  if (args.convert && args.predict) throw usageError('--convert and --predict both name the kind of the inputs: pick one');
  const kind: MergeKind | undefined = args.convert ? 'convert' : args.predict ? 'predict' : undefined;
  const bar = progressBar({ quiet: args.quiet || args.json, unit: 'voxels' });
  let report: MergeReport;
  try {
    const { merge } = await import('../ops/merge.js');
    report = await merge({
      inputs: args.inputs,
      ...(args.output !== undefined ? { output: args.output } : {}),
      ...(kind ? { kind } : {}),
      force: args.force,
      writeManifest: args.writeManifest,
      slabMB: args.slabMb,
      onProgress: bar.update,
    });
  } finally {
    bar.stop();
  }
  if (args.json) printJson(report);
  else printLines(renderMerge(report, args.verbose));
  return report.ok ? ExitCode.ok : ExitCode.dataError;
}
