/** `path:dataset` references to volumes, as users type them on the command line. */
import fs from 'node:fs';

export interface VolumeRef {
  file: string;
  /** Dataset path inside the file, if the reference named one. */
  key?: string;
}

/**
 * Split `cube.h5:volumes/labels` into file and key. The split happens at the last ':' only when the
 * part before it exists on disk or has an HDF5 extension, so plain paths containing ':' still work.
 */
export function parseVolumeRef(text: string): VolumeRef {
  const i = text.lastIndexOf(':');
  if (i > 0 && i < text.length - 1) {
    const file = text.slice(0, i);
    if (/\.(h5|hdf5|hdf|he5|n5|zarr)$/i.test(file) || fs.existsSync(file)) {
      return { file, key: text.slice(i + 1).replace(/^\/+/, '') };
    }
  }
  return { file: text };
}
