/** Gather the facts about one label cube from disk: label metadata, a slab-by-slab tally, `info`, raw shape. */
import { isLazyLabelError, LazyLabelError } from '../errors.js';
import { H5Source, withH5 } from '../io/hdf5.js';
import type { CubeFacts } from '../core/checkRules.js';
import { LabelTally } from '../core/labelTally.js';
import type { RawInfo } from '../core/infoMask.js';
import { DEFAULT_SLAB_MB, slabs } from '../core/slabs.js';
import { noProgress, type ProgressFn } from './progress.js';

export interface CubeRef {
  name?: string;
  label: string;
  labelKey: string;
  infoKey: string;
  raw?: string;
  rawKey?: string;
  offset?: number[];
}

export interface ScanOptions {
  slabMB?: number;
  onProgress?: ProgressFn;
}

/** Bytes held per voxel while a slab is in flight: the wasm heap copy, the JS copy, and float64 widening of 64-bit ints. */
export function slabBytesPerVoxel(bytes: number): number {
  return 2 * bytes + (bytes === 8 ? 8 : 0);
}

/** Stream the label dataset through a LabelTally, one slab at a time. */
export function tallyLabels(src: H5Source, key: string, nLab: number, opts: ScanOptions = {}): ReturnType<LabelTally['result']> {
  const meta = src.info(key);
  if (!meta.dtype) throw new Error(`cannot tally ${meta.typeName}`);
  const tally = new LabelTally(nLab);
  const isFloat = meta.dtype.kind === 'float';
  const onProgress = opts.onProgress ?? noProgress;
  const total = meta.shape.reduce((a, b) => a * b, 1);
  const rowVoxels = meta.shape.slice(1).reduce((a, b) => a * b, 1);
  for (const slab of slabs(meta.shape, slabBytesPerVoxel(meta.dtype.bytes), opts.slabMB ?? DEFAULT_SLAB_MB, meta.chunks?.[0] ?? 1)) {
    tally.add(src.readSlab(key, slab.start, slab.end), isFloat);
    onProgress({ label: src.path, done: slab.end * rowVoxels, total });
  }
  return tally.result();
}

/** Read `info` if the file has it. */
export function readInfo(src: H5Source, infoKey: string): RawInfo | null {
  if (!src.has(infoKey)) return null;
  const { shape, data, dtype } = src.readAll(infoKey);
  return { shape, data, isFloat: dtype?.kind === 'float' };
}

/** Facts for the rules, or the user error that prevented reading them (missing file, corrupt, no dataset). */
export async function gatherCubeFacts(ref: CubeRef, nLab: number, opts: ScanOptions = {}): Promise<{ facts?: CubeFacts; failure?: LazyLabelError }> {
  try {
    const facts = await withH5(ref.label, (src) => {
      const meta = src.info(ref.labelKey);
      const scannable = meta.dtype !== null && (meta.shape.length === 2 || meta.shape.length === 3);
      return {
        nLab,
        label: { shape: meta.shape, dtype: meta.dtype, typeName: meta.typeName },
        tally: scannable ? tallyLabels(src, ref.labelKey, nLab, opts) : null,
        info: readInfo(src, ref.infoKey),
        offset: ref.offset,
      } satisfies CubeFacts;
    });
    if (ref.raw) {
      const rawShape = await withH5(ref.raw, (src) => src.info(ref.rawKey ?? 'raw').shape);
      return { facts: { ...facts, raw: { shape: rawShape } } };
    }
    return { facts };
  } catch (e) {
    if (isLazyLabelError(e)) return { failure: e };
    throw e;
  }
}
