/** `lazylabel predict`: parse flags, run tiled inference, print the summary. */
import type { Argv } from 'yargs';
import type { PredictReport } from '../ops/predict.js';
import { parseVolumeRef } from '../io/volumeRef.js';
import { usageError, ExitCode } from '../errors.js';
import { parseThreads, printJson, printLines, shape, table, type GlobalFlags } from './output.js';
import { progressBar } from './progress.js';
import { parseShard, shardText } from '../core/shard.js';

interface PredictArgs extends GlobalFlags {
  model: string;
  raw: string;
  rawKey: string;
  o: string;
  uint8: boolean;
  tile?: string;
  margin?: string;
  batch?: number;
  threads: string;
  backend: 'auto' | 'tensorflow' | 'wasm' | 'cpu';
  force: boolean;
  shard?: string;
}

export function builder(y: Argv): Argv<PredictArgs> {
  return y
    .option('model', { type: 'string', demandOption: true, describe: 'run folder written by lazylabel train (or its model/ folder)' })
    .option('raw', { type: 'string', demandOption: true, describe: 'raw volume, path or path:dataset' })
    .option('raw-key', { type: 'string', default: 'raw' })
    .option('o', { alias: 'out', type: 'string', demandOption: true, describe: 'output HDF5: probs (x,y,z,class) and lab (argmax)' })
    .option('uint8', { type: 'boolean', default: false, describe: 'store probabilities as uint8 (p*255) instead of float32' })
    .option('tile', { type: 'string', describe: 'tile size, e.g. 16,128,128 (multiples of the network pooling)' })
    .option('margin', { type: 'string', describe: 'voxels cropped at inner tile edges per axis, e.g. 2,16,16' })
    .option('batch', { type: 'number', describe: 'tiles per forward pass (default: one per compute thread)' })
    .option('threads', { type: 'string', default: 'auto', describe: "compute threads on wasm/cpu (each predicts its share of a batch); auto: one per core, started only when the volume's tiles would take more than a few seconds on one" })
    .option('backend', { choices: ['auto', 'tensorflow', 'wasm', 'cpu'] as const, default: 'auto' as const })
    .option('force', { type: 'boolean', default: false, describe: 'replace an existing output' })
    .option('shard', { type: 'string', describe: 'predict only shard i of n (0-based, contiguous blocks of tile rows along axis 0) into OUT.part-i-of-n; lazylabel merge joins the parts into OUT' })
    .example('$0 predict --model run/ --raw cube.h5:raw -o prob.h5', '') as unknown as Argv<PredictArgs>;
}

const ints = (flag: string, text: string | undefined): number[] | undefined => {
  if (text === undefined) return undefined;
  const v = text.split(/[,x ]+/).filter(Boolean).map(Number);
  if (!v.length || v.some((n) => !Number.isInteger(n) || n < 0)) throw usageError(`--${flag} ${text} is not a list of integers`);
  return v;
};

export function renderPredict(r: PredictReport): string[] {
  const total = r.classCounts.reduce((a, b) => a + b, 0) || 1;
  return [
    `wrote ${r.output}: ${r.probsKey} ${shape([...r.shape, r.nLab])} ${r.probsDtype}, ${r.labelKey} ${shape(r.shape)} int16`,
    `${r.tiles} tiles of ${shape(r.tile)} (margins ${shape(r.margin)}) on ${r.backend}${r.threads && r.threads > 1 ? ` with ${r.threads} threads` : ''} in ${r.seconds.toFixed(1)} s`,
    table(['class', 'voxels', 'fraction'], r.classCounts.map((n, c) => [String(c), String(n), `${((100 * n) / total).toFixed(1)}%`])),
    ...(r.shard ? [`shard ${shardText(r.shard)}: voxel rows ${r.shard.start}..${r.shard.end} of ${r.shard.total} along axis 0 (tiles above: the whole volume's); join all parts with lazylabel merge --predict ... -o OUT`] : []),
  ];
}

export async function handler(args: PredictArgs): Promise<number> {
  const raw = parseVolumeRef(args.raw);
  const shard = args.shard !== undefined ? parseShard(args.shard) : undefined;
  const bar = progressBar({ quiet: args.quiet || args.json, unit: 'tiles' });
  let report: PredictReport;
  try {
    const { predict } = await import('../ops/predict.js');
    report = await predict({
      model: args.model,
      raw: raw.file,
      rawKey: raw.key ?? args.rawKey,
      out: args.o,
      uint8: args.uint8,
      ...(args.tile ? { tile: ints('tile', args.tile) } : {}),
      ...(args.margin ? { margin: ints('margin', args.margin) } : {}),
      ...(args.batch !== undefined ? { batch: args.batch } : {}),
      threads: parseThreads(args.threads),
      backend: args.backend,
      force: args.force,
      ...(shard ? { shard } : {}),
      onProgress: bar.update,
    });
  } finally {
    bar.stop();
  }
  if (args.json) printJson(report);
  else printLines(renderPredict(report));
  return report.ok ? ExitCode.ok : ExitCode.dataError;
}
