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

export interface Box {
  /** Per-axis start (inclusive) and end (exclusive). */
  starts: number[];
  ends: number[];
  /** Index of this box, 0-based, and how many there are. */
  index: number;
  count: number;
}

/**
 * Boxes covering a volume within a memory budget, cut along chunk boundaries so that every compressed
 * chunk is inflated exactly once (HDF5's small chunk cache cannot hold a chunk layer of a big volume).
 * Whole chunk layers along axis 0 when they fit; otherwise the first axis whose chunk extent, with the
 * axes after it whole, fits the budget is split into runs of whole chunks. Without chunks (contiguous
 * storage) these are the slabs of `slabs`, as boxes.
 */
export function* boxes(shape: readonly number[], bytesPerVoxel: number, budgetMB: number = DEFAULT_SLAB_MB, chunks?: readonly number[] | null): Generator<Box> {
  const nd = shape.length;
  if (nd === 0 || shape.some((n) => n === 0)) {
    if (nd === 0) yield { starts: [], ends: [], index: 0, count: 1 };
    return;
  }
  if (!chunks || chunks.length !== nd) {
    for (const s of slabs(shape, bytesPerVoxel, budgetMB)) {
      yield { starts: [s.start, ...shape.slice(1).map(() => 0)], ends: [s.end, ...shape.slice(1)], index: s.index, count: s.count };
    }
    return;
  }
  const budget = budgetMB * 1024 * 1024;
  // split axis k: axes before it one chunk thick, axes after it whole
  let k = 0;
  const unitBytes = (axis: number): number => {
    let v = bytesPerVoxel;
    for (let i = 0; i < nd; i++) v *= i <= axis ? Math.min(chunks[i]!, shape[i]!) : shape[i]!;
    return v;
  };
  while (k < nd - 1 && unitBytes(k) > budget) k++;
  // along axis k, as many whole chunks as fit (at least one)
  const stepK = Math.min(shape[k]!, Math.max(1, Math.floor(budget / unitBytes(k))) * chunks[k]!);
  const steps = shape.map((n, i) => (i < k ? Math.min(chunks[i]!, n) : i === k ? stepK : n));
  const counts = shape.map((n, i) => Math.ceil(n / steps[i]!));
  const count = counts.reduce((a, b) => a * b, 1);
  const at = new Array<number>(nd).fill(0);
  for (let index = 0; index < count; index++) {
    const starts = at.map((a, i) => a * steps[i]!);
    yield { starts, ends: starts.map((s, i) => Math.min(shape[i]!, s + steps[i]!)), index, count };
    for (let i = nd - 1; i >= 0; i--) {
      if (++at[i]! < counts[i]!) break;
      at[i] = 0;
    }
  }
}
