/** `lazylabel report`: one self-contained HTML page about a dataset (and optionally a training run). */
import type { Argv } from 'yargs';
import { ExitCode } from '../errors.js';
import type { ReportSummary } from '../ops/report.js';
import { printJson, printLines, type GlobalFlags } from './output.js';
import { progressBar } from './progress.js';

interface ReportArgs extends GlobalFlags {
  manifest: string;
  run?: string;
  o: string;
  force: boolean;
  title?: string;
  slices: number;
  axis: number;
  previewSize: number;
  maxPreviews: number;
}

export function builder(y: Argv): Argv<ReportArgs> {
  return y
    .option('manifest', { type: 'string', demandOption: true, describe: 'dataset manifest' })
    .option('run', { type: 'string', describe: 'training run folder (lazylabel train --out): adds loss, validation IoU and not-present curves' })
    .option('o', { alias: 'out', type: 'string', demandOption: true, describe: 'output HTML file' })
    .option('force', { type: 'boolean', default: false, describe: 'replace an existing output' })
    .option('title', { type: 'string', describe: 'page title' })
    .option('slices', { type: 'number', default: 3, describe: 'slices per cube preview' })
    .option('axis', { type: 'number', default: 0, describe: 'axis the preview slices cut across' })
    .option('preview-size', { type: 'number', default: 128, describe: 'preview panel size in pixels' })
    .option('max-previews', { type: 'number', default: 24, describe: 'preview at most this many cubes (0 = none)' })
    .example('$0 report --manifest dataset.json -o report.html', 'dataset report')
    .example('$0 report --manifest dataset.json --run run/ -o report.html', 'with training curves')
    .epilog(
      'The page is self-contained (no scripts, no external requests; images inlined as data: URIs): check findings, ' +
        'per-cube stats and suggested prios (the manifest is not changed), class balance, slice previews and, with --run, ' +
        'training curves and the last validation metrics. Exit 0 when check passes, 1 when it finds errors (the report is written either way).',
    ) as unknown as Argv<ReportArgs>;
}

export function renderReportSummary(r: ReportSummary): string[] {
  const lines = [`wrote ${r.output} (${(r.bytes / 1024).toFixed(0)} KiB): ${r.sections.join(', ')}`];
  lines.push(`check: ${r.check.files} cubes, ${r.check.okFiles} ok, ${r.check.warn} warn, ${r.check.error} error -> ${r.check.ok ? 'OK' : 'FAILED'}`);
  lines.push(`previews: ${r.previews.rendered}${r.previews.failed ? `, ${r.previews.failed} failed` : ''}${r.previews.skipped ? `, ${r.previews.skipped} skipped` : ''}`);
  if (r.prios.error) lines.push(`prios not computed: ${r.prios.error}`);
  if (r.training) lines.push(`training: ${r.training.trainSteps} steps logged${r.training.lastLoss !== null ? `, last loss ${r.training.lastLoss.toFixed(4)}` : ''}, ${r.training.validations} validations`);
  return lines;
}

export async function handler(args: ReportArgs): Promise<number> {
  const bar = progressBar({ quiet: args.quiet || args.json, unit: 'voxels' });
  let summary: ReportSummary;
  try {
    const { report } = await import('../ops/report.js');
    summary = await report({
      manifest: args.manifest,
      ...(args.run !== undefined ? { run: args.run } : {}),
      out: args.o,
      force: args.force,
      ...(args.title !== undefined ? { title: args.title } : {}),
      slices: args.slices,
      axis: args.axis,
      previewSize: args.previewSize,
      maxPreviews: args.maxPreviews,
      slabMB: args.slabMb,
      onProgress: bar.update,
    });
  } finally {
    bar.stop();
  }
  if (args.json) printJson(summary);
  else printLines(renderReportSummary(summary));
  return summary.ok ? ExitCode.ok : ExitCode.dataError;
}
