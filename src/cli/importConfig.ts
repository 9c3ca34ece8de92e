/** `lazylabel import-config`: read an ELEKTRONN config (parsed, never run) into a dataset manifest; print what was mapped and what was not read. */
import type { Argv } from 'yargs';
import { ExitCode, usageError } from '../errors.js';
import type { ImportConfigReport } from '../ops/importConfig.js';
import { color, findingLine, printJson, printLines, table, visibleFindings, type GlobalFlags } from './output.js';

interface ImportConfigArgs extends GlobalFlags {
  config: string;
  output?: string;
  force: boolean;
  nLab?: number;
  baseDir?: string;
  dryRun: boolean;
}

const HELP = [
  'The config is parsed, never executed: assignments of literals, names, % / .format() / f-string',
  'formatting, + and * on strings and lists, list comprehensions over range(...), dict(...),',
  'os.path.join/expanduser. Anything else (imports, calls, def/if/for blocks) is listed as not read,',
  'with its line and the reason; it never stops the import.',
  'Mapped: data_path/label_path + d_files/l_files -> cubes (paths relative to the manifest),',
  'valid_cubes -> valid, cube_prios -> prio of the training cubes in order, n_lab, lazy_labels,',
  'example_ignore_threshold, class_weights, desired_input (n_dim 3) -> patch_size.',
  "ELEKTRONN2 configs (data_init_kwargs) are read too; they need --n-lab.",
  'Exit codes: 0 written, 1 errors (nothing written), 2 usage error.',
].join('\n');

export function builder(y: Argv): Argv<ImportConfigArgs> {
  return y
    .positional('config', { type: 'string', describe: 'ELEKTRONN config file (.py); read, never run', demandOption: true })
    .option('output', { alias: 'o', type: 'string', describe: 'dataset manifest to write (JSON)' })
    .option('force', { type: 'boolean', default: false, describe: 'replace an existing manifest (never the config)' })
    .option('n-lab', { type: 'number', describe: 'number of classes when the config has none (n_lab = None, ELEKTRONN2 configs)' })
    .option('base-dir', { type: 'string', describe: "folder that relative data_path/label_path resolve against (default: the config's folder)" })
    .option('dry-run', { type: 'boolean', default: false, describe: 'validate and report, write nothing' })
    .example('$0 import-config neuro_3d_config.py -o dataset.json', 'an ELEKTRONN training config as a manifest')
    .example('$0 import-config neuro3d.py -o dataset.json --n-lab 2 --json', 'an ELEKTRONN2 config, JSON report')
    .epilog(HELP) as unknown as Argv<ImportConfigArgs>;
}

const firstLine = (s: string): string => {
  const lines = s.split('\n');
  return lines.length > 1 ? `${lines[0]} ...` : s;
};

export function renderImport(report: ImportConfigReport, verbose: boolean): string[] {
  const lines: string[] = [];
  const n = report.cubes.length;
  lines.push(`config ${report.config} (${report.dialect === 'elektronn2' ? 'ELEKTRONN2' : 'ELEKTRONN'}): ${n} cube${n === 1 ? '' : 's'}`);
  if (n) {
    const rows = report.cubes.map((c) => [c.name, `${c.raw}:${c.rawKey}`, `${c.label}:${c.labelKey}`, c.valid ? 'yes' : 'no', c.prio === null ? '-' : String(c.prio)]);
    lines.push(table(['cube', 'raw', 'label', 'valid', 'prio'], rows));
  }
  const mapped = Object.entries(report.mapped);
  if (mapped.length) {
    const w = Math.max(...mapped.map(([k]) => k.length));
    lines.push('mapped:', ...mapped.map(([k, v]) => `  ${k.padEnd(w)}  -> ${v}`));
  }
  if (report.unread.length) {
    const one = report.unread.length === 1;
    lines.push(`not read (${report.unread.length} statement${one ? '' : 's'}; nothing in ${one ? 'it' : 'them'} was run):`);
    for (const u of report.unread) lines.push(`  line ${u.line}: ${firstLine(u.text)}`, `    ${color.dim(u.reason)}`);
  }
  lines.push(...visibleFindings(report.findings, verbose).map((f) => findingLine(f, '')));
  const verdict = report.ok ? 'OK' : 'FAILED';
  if (report.written) lines.push(`wrote ${report.output} -> ${verdict}`);
  else lines.push(`${report.ok ? 'dry run, nothing written' : 'nothing written'} -> ${verdict}`);
  return lines;
}

export async function handler(args: ImportConfigArgs): Promise<number> {
  if (!args.output && !args.dryRun) throw usageError('no output given', 'pass -o dataset.json (or --dry-run)');
  const { importConfig } = await import('../ops/importConfig.js');
  const report = await importConfig({
    config: args.config,
    output: args.output ?? 'dataset.json',
    force: args.force,
    write: !args.dryRun,
    ...(args.nLab !== undefined ? { nLab: args.nLab } : {}),
    ...(args.baseDir !== undefined ? { baseDir: args.baseDir } : {}),
  });
  if (args.json) printJson(report);
  else printLines(renderImport(report, args.verbose));
  return report.ok ? ExitCode.ok : ExitCode.dataError;
}
