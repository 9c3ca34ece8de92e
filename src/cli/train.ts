/** `lazylabel train`: parse flags, run the training loop with a progress bar, Ctrl-C checkpoints and exits 130. */
import type { Argv } from 'yargs';
import type { TrainReport } from '../train/loop.js';
import { usageError, ExitCode } from '../errors.js';
import { parseThreads, printJson, printLines, table, type GlobalFlags } from './output.js';
import { progressBar } from './progress.js';

interface TrainArgs extends GlobalFlags {
  manifest: string;
  out: string;
  model?: 'unet2d' | 'unet3d';
  patch?: string;
  batch: number;
  steps: number;
  lr: number;
  seed: number;
  backend: 'auto' | 'tensorflow' | 'wasm' | 'cpu';
  resume: boolean;
  force: boolean;
  depth: number;
  baseFilters: number;
  anisotropicLevels: number;
  normalisation: 'voxels' | 'flags';
  validEvery?: number;
  validBatches: number;
  checkpointEvery?: number;
  cacheMb: number;
  jitter: boolean;
  threads: string;
}

/** Exit code after Ctrl-C, as shells report a SIGINT death. */
export const EXIT_INTERRUPTED = 130;

export function builder(y: Argv): Argv<TrainArgs> {
  return y
    .option('manifest', { type: 'string', demandOption: true, describe: 'dataset manifest (see schemas/manifest.schema.json)' })
    .option('out', { type: 'string', default: 'run', describe: 'run folder: model/, checkpoints/, config.json, metrics.jsonl, plot.html' })
    .option('model', { choices: ['unet2d', 'unet3d'] as const, describe: 'network (default: from the cubes\' dimensionality)' })
    .option('patch', { type: 'string', describe: 'patch size in label axis order, e.g. 16,96,96 (default: manifest patch_size)' })
    .option('batch', { type: 'number', default: 2 })
    .option('steps', { type: 'number', default: 200, describe: 'train until this step count (also when resuming)' })
    .option('lr', { type: 'number', default: 1e-3, describe: 'Adam learning rate' })
    .option('seed', { type: 'number', default: 0, describe: 'seeds sampling, augmentation (and so the run)' })
    .option('backend', { choices: ['auto', 'tensorflow', 'wasm', 'cpu'] as const, default: 'auto' as const, describe: 'auto: tfjs-node-gpu with a GPU, then tfjs-node, then wasm, then cpu' })
    .option('resume', { type: 'boolean', default: false, describe: 'continue from the newest intact checkpoint in --out' })
    .option('force', { type: 'boolean', default: false, describe: 'replace an existing run folder' })
    .option('depth', { type: 'number', default: 3, describe: 'U-Net poolings' })
    .option('base-filters', { type: 'number', default: 16 })
    .option('anisotropic-levels', { type: 'number', default: 1, describe: '3D: first levels pool only in-plane (thick EM sections)' })
    .option('normalisation', { choices: ['voxels', 'flags'] as const, default: 'voxels' as const, describe: "loss normaliser: 'voxels' = ELEKTRONN 3D (flagged voxel-class pairs), 'flags' = ELEKTRONN 2D (flags only)" })
    .option('valid-every', { type: 'number', describe: 'validate on the valid cubes every K steps' })
    .option('valid-batches', { type: 'number', default: 8, describe: 'validation batches per validation' })
    .option('checkpoint-every', { type: 'number', describe: 'checkpoint every K steps (default: as validation)' })
    .option('cache-mb', { type: 'number', default: 1024, describe: 'memory for whole cubes; larger cubes are read patch by patch' })
    .option('jitter', { type: 'boolean', default: false, describe: 'intensity augmentation (ELEKTRONN grey-value jitter)' })
    .option('threads', { type: 'string', default: 'auto', describe: 'compute threads on wasm/cpu (data-parallel over the batch); auto: min(cores, batch), 1 for small steps and for the tensorflow backends' })
    .example('$0 train --manifest dataset.json --out run/ --patch 16,96,96 --steps 2000', '')
    .example('$0 train --manifest dataset.json --out run/ --steps 4000 --resume', 'continue to step 4000') as unknown as Argv<TrainArgs>;
}

function parsePatch(text: string | undefined): number[] | undefined {
  if (text === undefined) return undefined;
  const parts = text.split(/[,x ]+/).filter(Boolean).map(Number);
  if (!parts.length || parts.some((p) => !Number.isInteger(p) || p < 1)) throw usageError(`--patch ${text} is not a list of positive integers`, 'e.g. --patch 16,96,96');
  return parts;
}

export function renderTrain(r: TrainReport): string[] {
  const fmt = (v: number | null | undefined, d = 4): string => (v === null || v === undefined ? '-' : v.toFixed(d));
  const lines = [
    `backend: ${r.backend} (${r.backendDetail}); ${r.threads} thread${r.threads === 1 ? '' : 's'}`,
    `steps ${r.startStep} -> ${r.step} (${r.stoppedBy}), ${r.seconds.toFixed(1)} s, ${r.patchesPerSec.toFixed(2)} patches/s`,
    `loss: first ${fmt(r.firstLoss)}, last ${fmt(r.lastLoss)}; mean of first/last tenth ${fmt(r.meanLossStart)} -> ${fmt(r.meanLossEnd)}`,
  ];
  if (r.validation) {
    const v = r.validation;
    lines.push(`validation at step ${v.step} (${v.batches} batches, labelled voxels only):`);
    lines.push(table(['class', 'precision', 'recall', 'IoU', 'support', 'mean p where not present'], v.perClass.map((m, c) => [String(c), fmt(m.precision, 3), fmt(m.recall, 3), fmt(m.iou, 3), String(m.support), fmt(v.notPresentMeanProb[c], 4)])));
  }
  if (r.message) lines.push(r.message);
  lines.push(`model: ${r.modelDir}${r.lastCheckpoint ? `; last checkpoint: ${r.lastCheckpoint}` : ''}`);
  return lines;
}

export async function handler(args: TrainArgs): Promise<number> {
  const threads = parseThreads(String(args.threads));
  let interrupted = 0;
  const onSigint = (): void => {
    interrupted++;
    if (interrupted > 1) process.exit(EXIT_INTERRUPTED);
    process.stderr.write('\nlazylabel: interrupted, saving a checkpoint (Ctrl-C again to quit now)\n');
  };
  process.on('SIGINT', onSigint);
  const bar = progressBar({ quiet: args.quiet || args.json, unit: 'steps' });
  let report: TrainReport;
  try {
    // tfjs loads only for the commands that need it, so check/convert start fast
    const { train } = await import('../train/loop.js');
    report = await train({
      manifest: args.manifest,
      out: args.out,
      ...(args.model ? { model: args.model } : {}),
      ...(args.patch ? { patch: parsePatch(args.patch) } : {}),
      batch: args.batch,
      steps: args.steps,
      lr: args.lr,
      seed: args.seed,
      backend: args.backend,
      resume: args.resume,
      force: args.force,
      depth: args.depth,
      baseFilters: args.baseFilters,
      anisotropicLevels: args.anisotropicLevels,
      normalisation: args.normalisation,
      ...(args.validEvery ? { validEvery: args.validEvery } : {}),
      validBatches: args.validBatches,
      ...(args.checkpointEvery ? { checkpointEvery: args.checkpointEvery } : {}),
      cacheMB: args.cacheMb,
      jitter: args.jitter,
      threads,
      shouldStop: () => interrupted > 0,
      onBackend: (name, detail) => {
        if (!args.json && !args.quiet) process.stderr.write(`lazylabel: training on backend ${name} (${detail})\n`);
      },
      onStep: (e) => bar.update({ label: 'train', done: e.step, total: e.totalSteps, detail: `loss ${e.loss.toFixed(4)} | ${e.patchesPerSec.toFixed(1)} patches/s` }),
      log: (line) => {
        if (!args.quiet) process.stderr.write(`lazylabel: ${line}\n`);
      },
    });
  } finally {
    bar.stop();
    process.removeListener('SIGINT', onSigint);
  }
  if (args.json) printJson(report);
  else printLines(renderTrain(report));
  if (report.stoppedBy === 'interrupt') return EXIT_INTERRUPTED;
  return report.ok ? ExitCode.ok : ExitCode.dataError;
}
