/** Tiling for inference: overlapping input tiles whose central parts (margins cropped) cover a volume exactly once. */

export interface AxisTile {
  /** Input window [inStart, inStart + size) read and fed to the network (zero-padded past the volume end). */
  inStart: number;
  size: number;
  /** Output range [outStart, outEnd) this tile is responsible for (a sub-range of the input window). */
  outStart: number;
  outEnd: number;
}

const alignUp = (v: number, a: number): number => Math.ceil(v / a) * a;

/**
 * Tiles along one axis of length `n`, tile size `size`, cropping `margin` voxels on each inner side.
 * Margins are cropped because 'same' padding makes predictions near a tile edge see zeros instead of context;
 * at the volume border there is no better context, so the margin is kept there.
 * Window starts are multiples of `align` (the network's total pooling factor): a U-Net is only
 * translation-equivariant under shifts by that factor, so aligned tiles reproduce a whole-volume prediction.
 * A short axis gets one window of `n` rounded up to `align`.
 */
export function axisTiles(n: number, size: number, margin: number, align = 1): AxisTile[] {
  if (n <= 0) return [];
  if (size % align !== 0) throw new Error(`tile size ${size} must be a multiple of ${align}`);
  if (alignUp(n, align) <= size) return [{ inStart: 0, size: alignUp(n, align), outStart: 0, outEnd: n }];
  const step = Math.floor((size - 2 * margin) / align) * align;
  if (step <= 0) throw new Error(`tile size ${size} leaves no room after cropping margins of ${margin} (alignment ${align})`);
  const lastStart = alignUp(n - size, align);
  const tiles: AxisTile[] = [];
  let outStart = 0;
  for (let k = 0; outStart < n; k++) {
    const inStart = Math.min(k * step, lastStart);
    const isLast = inStart === lastStart || inStart + size - margin >= n;
    const outEnd = isLast ? n : inStart + size - margin;
    tiles.push({ inStart, size, outStart, outEnd });
    outStart = outEnd;
  }
  return tiles;
}

export interface Tile {
  inStart: number[];
  size: number[];
  outStart: number[];
  outEnd: number[];
}

/** All tiles of a volume, axis 0 outermost (so output can be written slab by slab along axis 0). */
export function volumeTiles(shape: readonly number[], size: readonly number[], margin: readonly number[], align: readonly number[] = shape.map(() => 1)): AxisTile[][] {
  return shape.map((n, i) => axisTiles(n, size[i]!, margin[i]!, align[i]!));
}

/** The tiles of one row along axis 0 (every combination of the other axes' tiles). */
export function* tilesInRow(perAxis: AxisTile[][], row: AxisTile): Generator<Tile> {
  const rest = perAxis.slice(1);
  const idx = rest.map(() => 0);
  if (rest.some((a) => a.length === 0)) return;
  for (;;) {
    const parts = [row, ...rest.map((a, i) => a[idx[i]!]!)];
    yield { inStart: parts.map((p) => p.inStart), size: parts.map((p) => p.size), outStart: parts.map((p) => p.outStart), outEnd: parts.map((p) => p.outEnd) };
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
