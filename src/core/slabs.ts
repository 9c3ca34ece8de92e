/** The one slab iterator: split a volume along its first axis into pieces that fit a memory budget. */

export interface Slab {
  /** First row (index along axis 0), inclusive. */
  start: number;
  /** Last row, exclusive. */
  end: number;
  /** Index of this slab, 0-based, and how many there are. */
  index: number;
  count: number;
}

export const DEFAULT_SLAB_MB = 64;

/**
 * Rows per slab so that one slab of `bytesPerVoxel`-sized voxels (counting every buffer the caller
 * holds per voxel) stays within `budgetMB`. Always at least one row: a single row larger than the
 * budget is still processed, and callers that care check `rowBytes` first.
 */
export function rowsPerSlab(shape: readonly number[], bytesPerVoxel: number, budgetMB: number = DEFAULT_SLAB_MB, alignRows = 1): number {
  const rowVoxels = shape.slice(1).reduce((a, b) => a * b, 1);
  const rowBytes = Math.max(1, rowVoxels * bytesPerVoxel);
  const rows = Math.max(1, Math.floor((budgetMB * 1024 * 1024) / rowBytes));
  // Whole chunks per slab: a slab that cuts a compressed chunk makes HDF5 inflate it twice.
  if (alignRows > 1 && rows >= alignRows) return rows - (rows % alignRows);
  return rows;
}

/** Slabs covering rows [0, shape[0]). A 0-d or empty volume yields nothing. */
export function* slabs(shape: readonly number[], bytesPerVoxel: number, budgetMB: number = DEFAULT_SLAB_MB, alignRows = 1): Generator<Slab> {
  const rows = shape.length === 0 ? 1 : shape[0]!;
  if (rows === 0) return;
  const step = shape.length === 0 ? 1 : rowsPerSlab(shape, bytesPerVoxel, budgetMB, alignRows);
  const count = Math.ceil(rows / step);
  for (let index = 0; index < count; index++) {
    const start = index * step;
    yield { start, end: Math.min(rows, start + step), index, count };
  }
}
