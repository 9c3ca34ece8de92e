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

// ---------------------------------------------------------------- folder outputs (zarr)

/** Temporaries of folder outputs: a mark of their own, so `cleanStaleTemps` (files) never meets a folder. */
const DIR_TMP_MARK = '.lazylabel-tmpdir-';
/** An existing output folder moved aside during a --force replace, until the new one is in place. */
const DIR_OLD_MARK = '.lazylabel-tmpold-';

function dirSibling(target: string, mark: string): string {
  const rand = Math.random().toString(36).slice(2, 8);
  return path.join(path.dirname(target), `.${path.basename(target)}${mark}${process.pid}-${rand}`);
}

function lexists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/** The path with the symlinks of its existing part resolved. */
function realPath(p: string): string {
  const abs = path.resolve(p);
  try {
    return fs.realpathSync.native(abs);
  } catch {
    const parent = path.dirname(abs);
    return parent === abs ? abs : path.join(realPath(parent), path.basename(abs));
  }
}

function within(inner: string, outer: string): boolean {
  const rel = path.relative(realPath(outer), realPath(inner));
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

/**
 * `checkOutputPath` for an output that is a folder: also refuse an input inside the output folder (a --force
 * replace would delete it) and an output inside an input folder (it would change that input).
 */
export function checkDirOutputPath(target: string, guard: OutputGuard = {}): void {
  checkOutputPath(target, guard);
  for (const input of guard.inputs ?? []) {
    if (within(input, target)) {
      throw usageError(`input ${input} lies inside the output folder ${target}`, 'inputs are never modified: choose another output path');
    }
    let isDir = false;
    try {
      isDir = fs.statSync(input).isDirectory();
    } catch {
      isDir = false;
    }
    if (isDir && within(target, input)) {
      throw usageError(`output ${target} lies inside the input folder ${input}`, 'inputs are never modified: choose an output outside it');
    }
  }
}

/**
 * Remove folder temporaries left by killed runs for this target (those whose writer process is gone). An old
 * output moved aside by a killed --force replace goes back into place when nothing took its place, else it is removed.
 */
export function cleanStaleDirTemps(target: string): string[] {
  const dir = path.dirname(target);
  const base = `.${path.basename(target)}`;
  const removed: string[] = [];
  let names: string[] = [];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return removed;
  }
  for (const name of names) {
    const mark = name.startsWith(base + DIR_TMP_MARK) ? DIR_TMP_MARK : name.startsWith(base + DIR_OLD_MARK) ? DIR_OLD_MARK : null;
    if (!mark) continue;
    const pid = Number(name.slice(base.length + mark.length).split('-')[0]);
    if (!Number.isInteger(pid) || pid === process.pid || isAlive(pid)) continue;
    const full = path.join(dir, name);
    if (mark === DIR_OLD_MARK && !lexists(target)) {
      fs.renameSync(full, target);
      continue;
    }
    fs.rmSync(full, { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

/** fsync every file and folder under `root` (best effort for folders, as in `fsyncDir`). */
function fsyncTree(root: string): void {
  for (const entry of fs.readdirSync(root, { withFileTypes: true })) {
    const p = path.join(root, entry.name);
    if (entry.isDirectory()) fsyncTree(p);
    else if (entry.isFile()) {
      const fd = fs.openSync(p, 'r');
      try {
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
  }
  fsyncDir(root);
}

/**
 * Produce the folder `target` through `write(tmpDir)` (which creates tmpDir, a fresh sibling path): the target
 * is either untouched or the complete new folder. Without force the target is claimed with an exclusive mkdir
 * (two concurrent runs cannot both win) and the finished folder renamed over that empty claim; with force an
 * existing target is renamed aside, the new folder renamed in, and the old one removed. A failure removes the
 * temporary; the next run removes temporaries of killed runs (`cleanStaleDirTemps`).
 */
export async function writeDirAtomically<T>(target: string, guard: OutputGuard, write: (tmpDir: string) => Promise<T>): Promise<T> {
  // first: a killed --force replace may put the old output back, which the check must then see
  cleanStaleDirTemps(target);
  checkDirOutputPath(target, guard);
  const tmp = dirSibling(target, DIR_TMP_MARK);
  const cleanup = (): void => {
    fs.rmSync(tmp, { recursive: true, force: true });
  };
  process.once('exit', cleanup);
  try {
    const result = await write(tmp);
    fsyncTree(tmp);
    const parent = path.dirname(path.resolve(target));
    if (guard.force && lexists(target)) {
      const old = dirSibling(target, DIR_OLD_MARK);
      fs.renameSync(target, old);
      try {
        fs.renameSync(tmp, target);
      } catch (e) {
        fs.renameSync(old, target);
        throw e;
      }
      fsyncDir(parent);
      try {
        fs.rmSync(old, { recursive: true, force: true });
      } catch {
        // the new output is in place; a later run removes what is left of the old one
      }
    } else {
      try {
        fs.mkdirSync(target);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw outputAppeared(target);
        throw e;
      }
      try {
        fs.renameSync(tmp, target); // replaces only the empty folder this run just claimed
      } catch (e) {
        try {
          fs.rmdirSync(target); // give back the claim (only ever an empty folder)
        } catch {
          // not empty: no longer ours
        }
        const code = (e as NodeJS.ErrnoException).code;
        // platforms that cannot rename over a folder (Windows): the best we can do is check, then rename
        if (code !== 'EPERM' && code !== 'EEXIST' && code !== 'EACCES') throw e;
        if (lexists(target)) throw outputAppeared(target);
        fs.renameSync(tmp, target);
      }
      fsyncDir(parent);
    }
    return result;
  } catch (e) {
    cleanup();
    throw e;
  } finally {
    process.removeListener('exit', cleanup);
  }
}
