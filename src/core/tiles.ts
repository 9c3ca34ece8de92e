/** Tiling for inference: overlapping input tiles whose central parts (margins cropped) cover a volume exactly once. */

export interface AxisTile {
  /** Input window [inStart, inStart + size) read and fed to the network. */
  inStart: number;
  /** Output range [outStart, outEnd) this tile is responsible for (a sub-range of the input window). */
  outStart: number;
  outEnd: number;
}

/**
 * Tiles along one axis of length `n`, tile size `size`, cropping `margin` voxels on each inner side.
 * Margins are cropped because 'same' padding makes predictions near a tile edge see zeros instead of context;
 * at the volume border there is no better context, so the margin is kept there.
 * When `n <= size` a single tile covers everything (the caller pads the input up to `size`).
 */
export function axisTiles(n: number, size: number, margin: number): AxisTile[] {
  if (n <= 0) return [];
  if (size <= 2 * margin) throw new Error(`tile size ${size} must exceed twice the margin ${margin}`);
  if (n <= size) return [{ inStart: 0, outStart: 0, outEnd: n }];
  const tiles: AxisTile[] = [];
  let outStart = 0;
  while (outStart < n) {
    // the tile's input starts `margin` before the voxels it owns, clamped to the volume
    let inStart = Math.max(0, outStart - margin);
    if (inStart + size > n) inStart = n - size;
    const isLast = inStart + size >= n;
    const outEnd = isLast ? n : Math.min(n, inStart + size - margin);
    tiles.push({ inStart, outStart, outEnd });
    outStart = outEnd;
    if (tiles.length > n) throw new Error('tiling did not advance'); // guard against a logic error looping forever
  }
  return tiles;
}

export interface Tile {
  inStart: number[];
  outStart: number[];
  outEnd: number[];
}

/** All tiles of a volume, axis 0 outermost (so output can be written slab by slab along axis 0). */
export function volumeTiles(shape: readonly number[], size: readonly number[], margin: readonly number[]): AxisTile[][] {
  return shape.map((n, i) => axisTiles(n, size[i]!, margin[i]!));
}

/** The tiles of one row along axis 0 (every combination of the other axes' tiles). */
export function* tilesInRow(perAxis: AxisTile[][], row: AxisTile): Generator<Tile> {
  const rest = perAxis.slice(1);
  const idx = rest.map(() => 0);
  if (rest.some((a) => a.length === 0)) return;
  for (;;) {
    const parts = [row, ...rest.map((a, i) => a[idx[i]!]!)];
    yield { inStart: parts.map((p) => p.inStart), outStart: parts.map((p) => p.outStart), outEnd: parts.map((p) => p.outEnd) };
    let k = rest.length - 1;
    while (k >= 0) {
      idx[k]!++;
      if (idx[k]! < rest[k]!.length) break;
      idx[k] = 0;
      k--;
    }
    if (k < 0) return;
  }
}
