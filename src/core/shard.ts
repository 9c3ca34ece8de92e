/**
 * Deterministic partitions for running one job as n independent shards (a Slurm job array, a
 * Kubernetes indexed Job) and checking, when the pieces come back, that they form the whole (pure).
 *
 * The partition is always **contiguous, balanced blocks**: of `total` units, shard i of n gets
 * [floor(i·total/n), floor((i+1)·total/n)). Block sizes differ by at most one unit, the same
 * `total` and `n` give the same blocks on every machine, and putting the shards back together is a
 * concatenation in shard order, which `merge` verifies from the recorded ranges. Units are list
 * items (cubes or label files) for `check` and `suggest-prios`, chunk rows along axis 0 for
 * `convert` and tile rows for `predict`. More shards than units is allowed: the extra shards are
 * empty and still report, so a fixed `--array=0-(n-1)` works for any input.
 */
import { createRequire } from 'node:module';
import { usageError } from '../errors.js';

// node:crypto (~2 ms) is required when a job id is hashed, not on import: every CLI start loads this file (--shard parsing)
const requireCjs = createRequire(import.meta.url);

/** Which shard of how many: `index` is 0-based. */
export interface Shard {
  index: number;
  count: number;
}

/** What a shard's report or part file records: its place in the whole, so that merge can check coverage. */
export interface ShardInfo extends Shard {
  /** First unit of this shard, inclusive (list index, or voxel row along axis 0). */
  start: number;
  /** Last unit, exclusive. */
  end: number;
  /** Units in the whole job (list length, or rows along axis 0). */
  total: number;
  /** Fingerprint of the whole job (inputs and options): shards of different runs are never merged. */
  job: string;
}

/** A shard count beyond this is almost certainly a typo (and would make job arrays absurd). */
export const MAX_SHARDS = 100_000;

const SHARD_USAGE = 'give --shard i/n with 0 <= i < n, e.g. --shard 0/8 ... --shard 7/8 (Slurm: --shard ${SLURM_ARRAY_TASK_ID}/8 with --array=0-7)';

/** Parse `i/n` (0-based i). Every malformed value is a usage error that says what is expected. */
export function parseShard(text: string, flag = '--shard'): Shard {
  const s = String(text).trim();
  const m = /^(\d*)\s*\/\s*(\d*)$/.exec(s);
  if (!m) throw usageError(`${flag} '${text}' is not of the form i/n`, SHARD_USAGE);
  if (m[1] === '') throw usageError(`${flag} '${text}' has no shard index before the '/'`, 'is the array index variable set (SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX)? Run inside an array job, or pass the index by hand');
  if (m[2] === '') throw usageError(`${flag} '${text}' has no shard count after the '/'`, SHARD_USAGE);
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (!Number.isSafeInteger(count) || count < 1 || count > MAX_SHARDS) throw usageError(`${flag} '${text}': the shard count must be 1..${MAX_SHARDS}, got ${m[2]}`, SHARD_USAGE);
  if (!Number.isSafeInteger(index) || index >= count) {
    const hint = index === count ? `shard indices are 0-based: the last of ${count} shards is ${count - 1}/${count} (Slurm: --array=0-${count - 1})` : SHARD_USAGE;
    throw usageError(`${flag} '${text}': the shard index must be 0..${count - 1}, got ${m[1]}`, hint);
  }
  return { index, count };
}

/** `i/n`, as people type it. */
export const shardText = (s: Shard): string => `${s.index}/${s.count}`;

function assertShard(s: Shard): void {
  if (!Number.isSafeInteger(s.count) || s.count < 1 || !Number.isSafeInteger(s.index) || s.index < 0 || s.index >= s.count) {
    throw usageError(`shard ${s.index}/${s.count} is not a valid shard`, SHARD_USAGE);
  }
}

/** The balanced contiguous block [start, end) of `total` units that shard i of n owns. */
export function shardRange(total: number, shard: Shard): { start: number; end: number } {
  assertShard(shard);
  if (!Number.isSafeInteger(total) || total < 0) throw new RangeError(`cannot shard ${total} units`);
  // exact in doubles: total and n are far below 2^26 in practice, their product below 2^53
  return { start: Math.floor((shard.index * total) / shard.count), end: Math.floor(((shard.index + 1) * total) / shard.count) };
}

/** The items (cubes, label files) of one shard, with their positions in the full list. */
export function shardItems<T>(items: readonly T[], shard: Shard): { items: T[]; start: number; end: number } {
  const { start, end } = shardRange(items.length, shard);
  return { items: items.slice(start, end), start, end };
}

/**
 * Rows [start, end) along axis 0 of a volume with `rows` rows that one shard owns. The partition is of
 * whole blocks of `align` rows (the output's chunk rows), so no HDF5 chunk is split between shards;
 * only the last block may be shorter.
 */
export function shardRows(rows: number, shard: Shard, align = 1): { start: number; end: number } {
  if (!Number.isSafeInteger(align) || align < 1) throw new RangeError(`row alignment must be a positive integer, got ${align}`);
  const blocks = Math.ceil(rows / align);
  const b = shardRange(blocks, shard);
  return { start: Math.min(rows, b.start * align), end: Math.min(rows, b.end * align) };
}

/** Where shard i of n of a volume command writes its part: next to the final output, never the output itself. */
export function partPath(output: string, shard: Shard): string {
  return `${output}.part-${shard.index}-of-${shard.count}`;
}

/** A short stable fingerprint of a JSON-able value (object keys in the order given). */
export function jobId(value: unknown): string {
  const { createHash } = requireCjs('node:crypto') as typeof import('node:crypto');
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 16);
}

/** One shard as merge receives it: where it came from, and what it recorded. */
export interface ShardPiece {
  /** File name, for messages. */
  source: string;
  shard: ShardInfo;
}

/**
 * Order the pieces of one sharded job and prove that they are all of it: one count, one job, every
 * index 0..n-1 exactly once, and ranges that tile [0, total) in order. Problems are usage errors
 * that name the files and say what to rerun.
 */
export function assembleShards<T extends ShardPiece>(pieces: readonly T[]): T[] {
  if (pieces.length === 0) throw usageError('nothing to merge', 'pass the shard reports or part files of one run');
  const first = pieces[0]!;
  for (const p of pieces) {
    if (p.shard.count !== first.shard.count) {
      throw usageError(`${first.source} is shard ${shardText(first.shard)} but ${p.source} is shard ${shardText(p.shard)}: the shards of one run share one count n`, 'merge the shards of one run only');
    }
    if (p.shard.job !== first.shard.job || p.shard.total !== first.shard.total) {
      throw usageError(`${first.source} and ${p.source} come from different runs (other inputs, options or volume)`, 'merge the shards of one run only; rerun the shards that were started with other arguments');
    }
  }
  const n = first.shard.count;
  const byIndex = new Map<number, T>();
  for (const p of pieces) {
    const seen = byIndex.get(p.shard.index);
    if (seen) throw usageError(`shard ${shardText(p.shard)} is given twice: ${seen.source} and ${p.source}`, 'pass each shard once');
    byIndex.set(p.shard.index, p);
  }
  const missing: number[] = [];
  for (let i = 0; i < n; i++) if (!byIndex.has(i)) missing.push(i);
  if (missing.length) {
    const shown = missing.length > 10 ? `${missing.slice(0, 10).join(', ')}, ... (${missing.length} in all)` : missing.join(', ');
    throw usageError(`${missing.length} of ${n} shards missing: ${shown}`, `rerun those array tasks (e.g. sbatch --array=${missing.slice(0, 10).join(',')}), then merge all ${n}`);
  }
  const ordered = Array.from({ length: n }, (_, i) => byIndex.get(i)!);
  let at = 0;
  for (const p of ordered) {
    if (p.shard.start !== at || p.shard.end < p.shard.start) {
      throw usageError(`${p.source} (shard ${shardText(p.shard)}) covers [${p.shard.start}, ${p.shard.end}) but the shards before it end at ${at}`, 'the shards were not cut from the same partition: rerun them with the same lazylabel version and arguments');
    }
    at = p.shard.end;
  }
  if (at !== first.shard.total) {
    throw usageError(`the shards cover [0, ${at}) of ${first.shard.total}`, 'rerun the shards with the same lazylabel version and arguments');
  }
  return ordered;
}

/**
 * The small dataset in a part file (of `convert` or `predict` run with --shard) whose `meta` attribute
 * holds what merge needs as JSON: the shard's place, its tallies and the job's settings. Empty shards
 * write only this dataset.
 */
export const PART_KEY = 'lazylabel_part';
