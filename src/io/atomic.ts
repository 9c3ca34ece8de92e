/** Write outputs safely: to a temporary sibling, then rename; never overwrite without force; never clobber an input. */
import fs from 'node:fs';
import path from 'node:path';
import { LazyLabelError, usageError } from '../errors.js';

const TMP_MARK = '.lazylabel-tmp-';

/** The temporary name for a target: hidden sibling in the same folder so the final rename is atomic. */
export function tempPathFor(target: string): string {
  const dir = path.dirname(target);
  const rand = Math.random().toString(36).slice(2, 8);
  return path.join(dir, `.${path.basename(target)}${TMP_MARK}${process.pid}-${rand}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Remove temporaries left by killed runs for this target (those whose writer process is gone). */
export function cleanStaleTemps(target: string): string[] {
  const dir = path.dirname(target);
  const prefix = `.${path.basename(target)}${TMP_MARK}`;
  const removed: string[] = [];
  let names: string[] = [];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return removed;
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length).split('-')[0]);
    if (Number.isInteger(pid) && pid !== process.pid && !isAlive(pid)) {
      fs.rmSync(path.join(dir, name), { force: true });
      removed.push(name);
    }
  }
  return removed;
}

function sameFile(a: string, b: string): boolean {
  const ra = path.resolve(a);
  const rb = path.resolve(b);
  if (ra === rb) return true;
  try {
    const sa = fs.statSync(a);
    const sb = fs.statSync(b);
    return sa.ino === sb.ino && sa.dev === sb.dev;
  } catch {
    return false;
  }
}

export interface OutputGuard {
  force?: boolean;
  /** Files the command reads: the output may never be one of them, even with --force. */
  inputs?: string[];
}

/** Refuse an output that exists (without force), that is an input, or that is a symlink to one. */
export function checkOutputPath(target: string, guard: OutputGuard = {}): void {
  for (const input of guard.inputs ?? []) {
    if (sameFile(target, input)) {
      throw usageError(`output ${target} is also an input`, 'inputs are never modified: choose another output path');
    }
  }
  let lst: fs.Stats | undefined;
  try {
    lst = fs.lstatSync(target);
  } catch {
    lst = undefined;
  }
  if (lst?.isSymbolicLink()) {
    throw usageError(`output ${target} is a symbolic link`, 'outputs are never written through links: remove the link or choose another path');
  }
  if (lst && !guard.force) {
    throw usageError(`output ${target} already exists`, 'pass --force to replace it');
  }
  const dir = path.dirname(path.resolve(target));
  if (!fs.existsSync(dir)) {
    throw usageError(`folder ${dir} for output ${target} does not exist`, 'create it first');
  }
}

function outputAppeared(target: string): LazyLabelError {
  return new LazyLabelError(`output ${target} appeared while writing`, { code: 'output-exists', exitCode: 2, hint: 'another process wrote it; pass --force to replace it' });
}

/**
 * Move a finished temporary to `target` only if `target` does not exist, atomically: a hard link fails
 * with EEXIST when another process got there first (an exists-check followed by a rename would let two
 * concurrent runs both "win" and the later one silently replace the earlier output).
 */
function publishExclusive(tmp: string, target: string): void {
  try {
    fs.linkSync(tmp, target);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw outputAppeared(target);
    // file systems without hard links: the best we can do is check, then rename
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EXDEV' && code !== 'EMLINK') throw e;
    if (fs.existsSync(target)) throw outputAppeared(target);
    fs.renameSync(tmp, target);
    return;
  }
  fs.rmSync(tmp, { force: true });
}

/** Make a rename durable: fsync the folder entry too (best effort; not every platform can open a folder). */
function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // Windows and some file systems refuse: the rename itself is still atomic
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/**
 * Produce `target` through `write(tmpPath)`: the target is either untouched or the complete new file.
 * A failure or exception removes the temporary.
 */
export async function writeAtomically<T>(target: string, guard: OutputGuard, write: (tmpPath: string) => Promise<T>): Promise<T> {
  checkOutputPath(target, guard);
  cleanStaleTemps(target);
  const tmp = tempPathFor(target);
  const cleanup = (): void => {
    fs.rmSync(tmp, { force: true });
  };
  process.once('exit', cleanup);
  try {
    const result = await write(tmp);
    // fsync so that the rename never exposes a file whose data is still only in the page cache
    const fd = fs.openSync(tmp, 'r');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    if (guard.force) {
      fs.renameSync(tmp, target); // atomic replace: readers see the old file or the new one
    } else {
      publishExclusive(tmp, target);
    }
    fsyncDir(path.dirname(path.resolve(target)));
    return result;
  } catch (e) {
    cleanup();
    throw e;
  } finally {
    process.removeListener('exit', cleanup);
  }
}

/** Atomically write a text file (JSON manifests, reports). */
export async function writeTextAtomically(target: string, text: string, guard: OutputGuard = {}): Promise<void> {
  await writeAtomically(target, guard, async (tmp) => {
    fs.writeFileSync(tmp, text, { flag: 'wx' });
  });
}
