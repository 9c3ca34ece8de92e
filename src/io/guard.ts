/**
 * Confine the files libhdf5 may open while it reads one file: external links, virtual-dataset sources
 * and external raw storage all make libhdf5 open other paths on its own (h5wasm's Node build reaches the
 * real file system). By default only the file's own folder tree is allowed; `allowExternal` lifts that.
 */
import fs from 'node:fs';
import path from 'node:path';

export interface AccessPolicy {
  /** Let libhdf5 open any path (the user trusts the file's external links and VDS sources). */
  allowExternal: boolean;
  /** Absolute folders whose files (and subfolders' files) may be opened. */
  allowedDirs: string[];
}

/** Whether `LAZYLABEL_ALLOW_EXTERNAL` asks for external references (the CLI's `--allow-external` sets it). */
export function allowExternalFromEnv(): boolean {
  const v = process.env.LAZYLABEL_ALLOW_EXTERNAL;
  return v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
}

/** The path with every symlink of its existing part resolved (so a link inside an allowed folder cannot point out of it). */
export function canonicalPath(p: string): string {
  const abs = path.resolve(p);
  try {
    return fs.realpathSync.native(abs);
  } catch {
    const parent = path.dirname(abs);
    return parent === abs ? abs : path.join(canonicalPath(parent), path.basename(abs));
  }
}

/** Is `file` inside one of `dirs` (or one of their subfolders)? Both sides canonical. */
export function isInside(file: string, dirs: readonly string[]): boolean {
  const real = canonicalPath(file);
  return dirs.some((d) => {
    const rel = path.relative(canonicalPath(d), real);
    return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
  });
}

/** Where libhdf5 looks for a relative external file first: the folder of the file that refers to it. */
export function resolveExternal(referrer: string, target: string): string {
  return path.isAbsolute(target) ? target : path.resolve(path.dirname(referrer), target);
}

function kindOf(p: string): 'file' | 'folder' | 'missing' {
  try {
    return fs.statSync(p).isDirectory() ? 'folder' : 'file';
  } catch {
    return 'missing';
  }
}

/**
 * Run `fn` (an h5wasm call) with `fs.openSync` limited to the policy: a refused open fails inside
 * libhdf5 with EACCES (so the HDF5 call fails cleanly), and the refused paths are returned.
 */
export function confined<T>(policy: AccessPolicy, fn: () => T): { value?: T; error?: unknown; refused: string[] } {
  const refused: string[] = [];
  const original = fs.openSync;
  (fs as { openSync: typeof fs.openSync }).openSync = ((p: fs.PathLike, ...rest: unknown[]) => {
    const target = typeof p === 'string' ? p : p instanceof URL ? p.pathname : p.toString();
    const kind = kindOf(target);
    if (kind !== 'file') {
      // libhdf5 probes plugin folders (missing filters) and candidate paths: never load code, never count a probe
      throw Object.assign(new Error(`ENOENT: lazylabel lets libhdf5 open files only (${target})`), { code: 'ENOENT' });
    }
    if (!policy.allowExternal && !isInside(target, policy.allowedDirs)) {
      if (!refused.includes(path.resolve(target))) refused.push(path.resolve(target));
      // emscripten's NODERAWFS turns a Node error code into an errno for libhdf5
      throw Object.assign(new Error(`EACCES: refused by lazylabel, ${target} is outside the allowed folders`), { code: 'EACCES' });
    }
    return (original as (...a: unknown[]) => number)(p, ...rest);
  }) as typeof fs.openSync;
  try {
    return { value: fn(), refused };
  } catch (error) {
    return { error, refused };
  } finally {
    (fs as { openSync: typeof fs.openSync }).openSync = original;
  }
}
