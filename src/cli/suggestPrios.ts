/** `lazylabel suggest-prios`: parse flags, score the cubes, print a table, JSON, or an ELEKTRONN `cube_prios` line. */
import type { Argv } from 'yargs';
import { DEFAULT_LAZY_WEIGHT, elektronnCubePrios } from '../core/prios.js';
import { ExitCode, usageError } from '../errors.js';
import { parseVolumeRef } from '../io/volumeRef.js';
import type { CubeRef } from '../ops/scan.js';
import type { CubePrio, PriosReport } from '../ops/suggestPrios.js';
import { findingLine, percent, printJson, printLines, table, visibleFindings, type GlobalFlags } from './output.js';
import { progressBar } from './progress.js';
import { parseShard, shardText } from '../core/shard.js';

interface PriosArgs extends GlobalFlags {
  files: string[];
  nLab?: number;
  labelKey: string;
  infoKey: string;
  manifest?: string;
  lazyWeight: number;
  lazyShare?: number;
  format: 'table' | 'elektronn';
  writeManifest: boolean;
  shard?: string;
}

const RULE_HELP = [
  'How prios are scored (per cube, labels streamed in slabs):',
  '  labelled    = voxels with class id >= 0 whose class is flagged labelled in info',
  '  information = labelled + lazy_weight * (voxels - labelled) * not_present_flags / n_lab',
  '  prio        = information',
  'A not-present flag tells each voxel the labels leave open "not class c": 1/n_lab of a',
  `label, discounted by lazy_weight (default ${DEFAULT_LAZY_WEIGHT}): it is one negative statement for`,
  "the whole cube. A fully labelled cube scores its voxel count (ELEKTRONN's default prio)",
  'and no cube scores more; resizing a cube by k scales its prio by k. A cube with nothing',
  'labelled and no flag gets 0, with a warning.',
  '--lazy-share s keeps the dense prios and scales every lazy cube (info flags a class',
  'unlabelled or not present) by one factor, so that lazy cubes get s of all patches.',
  'Validation cubes get prio 0 and are left out of cube_prios.',
  'Exit codes: 0 ok, 1 a cube cannot be read or has check errors (the others are still',
  'reported), 2 usage error.',
].join('\n');

export function builder(y: Argv): Argv<PriosArgs> {
  return y
    .positional('files', { type: 'string', array: true, describe: 'label HDF5 files (path or path:dataset)', default: [] })
    .option('manifest', { type: 'string', describe: 'score every cube of a dataset manifest instead' })
    .option('n-lab', { type: 'number', describe: 'number of classes (required with label files)' })
    .option('label-key', { type: 'string', default: 'lab', describe: 'label dataset inside each file' })
    .option('info-key', { type: 'string', default: 'info', describe: 'lazy-label info dataset, shape (2, n_lab)' })
    .option('lazy-weight', { type: 'number', default: DEFAULT_LAZY_WEIGHT, describe: 'weight of a not-present flag per open voxel, in [0, 1]' })
    .option('lazy-share', { type: 'number', describe: 'total share of patches drawn from lazy cubes, in [0, 1)' })
    .option('format', { choices: ['table', 'elektronn'] as const, default: 'table' as const, describe: 'table, or a `cube_prios = [...]` line for an ELEKTRONN config' })
    .option('write-manifest', { type: 'boolean', default: false, describe: "store the prios in the manifest's cubes (atomic rewrite, other fields kept)" })
    .option('shard', { type: 'string', describe: 'score only shard i of n (0-based, contiguous blocks of cubes), e.g. 3/8 in a job array; lazylabel merge of the --json reports computes the prios' })
    .example('$0 suggest-prios --manifest dataset.json', 'prios from label density')
    .example('$0 suggest-prios --manifest dataset.json --lazy-share 0.2 --write-manifest', 'lazy cubes get 20% of patches; store the prios')
    .example('$0 suggest-prios a.h5 b.h5:volumes/lab --n-lab 3 --format elektronn', 'a line to paste into an ELEKTRONN config')
    .epilog(RULE_HELP) as unknown as Argv<PriosArgs>;
}

function refsFromArgs(args: PriosArgs): CubeRef[] {
  return args.files.map((text) => {
    const lab = parseVolumeRef(text);
    return { label: lab.file, labelKey: lab.key ?? args.labelKey, infoKey: args.infoKey };
  });
}

/** Numbers people read: whole numbers as they are, others with 2 decimals (JSON and --format elektronn keep full precision). */
const num = (x: number): string => (Number.isInteger(x) ? String(x) : x.toFixed(2));

function kind(c: CubePrio): string {
  if (c.valid) return 'valid';
  if (c.lazy === null) return '-';
  return c.lazy ? 'lazy' : 'dense';
}

export function renderPrios(report: PriosReport, verbose: boolean): string[] {
  const lines: string[] = [];
  if (report.manifest) lines.push(`manifest ${report.manifest}`);
  const rows = report.cubes.map((c) => [
    c.name,
    kind(c),
    c.voxels === null ? '-' : String(c.voxels),
    c.labelledFraction === null ? '-' : percent(c.labelledFraction),
    c.labeled && c.notPresent ? `L=${c.labeled.join('')} NP=${c.notPresent.join('')}` : '-',
    c.prio === null ? '-' : num(c.prio),
    c.share === null ? '-' : percent(c.share),
  ]);
  lines.push(table(['cube', 'kind', 'voxels', 'labelled', 'flags', 'prio', 'share'], rows));
  for (const c of report.cubes) {
    const shown = visibleFindings(c.findings, verbose);
    if (shown.length) lines.push(`${c.name}:`, ...shown.map((f) => findingLine(f)));
  }
  lines.push(...visibleFindings(report.findings, verbose).map((f) => findingLine(f, '')));
  lines.push(`rule: ${report.rule.text}`);
  if (report.lazyShare !== null) lines.push(`lazy cubes get ${percent(report.lazyShare)} of training patches`);
  if (report.cubes.some((c) => c.valid)) lines.push('validation cubes are never trained on: prio 0, not in cube_prios');
  if (report.written) lines.push(`wrote prios to ${report.manifest}`);
  if (report.shard) {
    const sh = report.shard;
    lines.push(`shard ${shardText(sh)}: cubes ${sh.start}..${sh.end - 1} of ${sh.total} (0-based)${sh.end === sh.start ? ', none here' : ''}; prios and shares need every cube: join the --json reports with lazylabel merge`);
  }
  const failed = report.cubes.filter((c) => c.status === 'error').length;
  lines.push(`${report.cubes.length} cube${report.cubes.length === 1 ? '' : 's'}${failed ? `, ${failed} with errors` : ''} -> ${report.ok ? 'OK' : 'FAILED'}`);
  return lines;
}

/** `--format elektronn`: only the line on stdout; problems and the valid_cubes reminder on stderr. */
function printElektronn(report: PriosReport): void {
  const problems = [...report.cubes.flatMap((c) => c.findings.filter((f) => f.severity !== 'info').map((f) => `${c.name}: ${findingLine(f, '')}`)), ...report.findings.filter((f) => f.severity !== 'info').map((f) => findingLine(f, ''))];
  if (problems.length) process.stderr.write(problems.join('\n') + '\n');
  if (report.cubePrios === null) {
    process.stderr.write('lazylabel: no cube_prios line: a training cube has no prio (fix the errors above)\n');
    return;
  }
  process.stdout.write(elektronnCubePrios(report.cubePrios) + '\n');
  const valid = report.cubes.flatMap((c, i) => (c.valid ? [i] : []));
  if (valid.length) process.stderr.write(`note: cube_prios lists the ${report.cubePrios.length} training cubes in manifest order; set valid_cubes = [${valid.join(', ')}] with the files in manifest order\n`);
}

export async function handler(args: PriosArgs): Promise<number> {
  if (args.json && args.format !== 'table') throw usageError('--json and --format elektronn both choose the output: pick one');
  if (args.manifest !== undefined && args.files.length) throw usageError('give label files or --manifest, not both');
  const shard = args.shard !== undefined ? parseShard(args.shard) : undefined;
  if (shard && args.format === 'elektronn') throw usageError('--format elektronn cannot go with --shard: a shard has no prios yet', 'run the shards with --json, then lazylabel merge them');
  const bar = progressBar({ quiet: args.quiet || args.json, unit: 'voxels' });
  let report: PriosReport;
  try {
    const { suggestPrios } = await import('../ops/suggestPrios.js');
    report = await suggestPrios({
      ...(args.manifest !== undefined ? { manifest: args.manifest } : { cubes: refsFromArgs(args) }),
      ...(args.nLab !== undefined ? { nLab: args.nLab } : {}),
      lazyWeight: args.lazyWeight,
      lazyShare: args.lazyShare ?? null,
      writeManifest: args.writeManifest,
      ...(shard ? { shard } : {}),
      slabMB: args.slabMb,
      onProgress: bar.update,
    });
  } finally {
    bar.stop();
  }
  if (args.json) printJson(report);
  else if (args.format === 'elektronn') printElektronn(report);
  else printLines(renderPrios(report, args.verbose));
  return report.ok ? ExitCode.ok : ExitCode.dataError;
}
