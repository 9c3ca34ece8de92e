/**
 * Chunks of an HDF5 dataset read straight from the file and inflated by Node's native zlib (h5layout.ts says
 * where they lie): libhdf5's zlib in WebAssembly took ~3x as long for the same chunks.
 */
import fs from 'node:fs';
import zlib from 'node:zlib';
import type { ChunkedLayout, ChunkEntry } from './h5layout.js';

/** Chunks larger than this once inflated are left to libhdf5 (which also holds a whole chunk at once): memory stays bounded. */
export const MAX_DIRECT_CHUNK_BYTES = 64 << 20;

/** Data could not be read or decoded outside libhdf5; the caller reads the dataset through libhdf5, which reports the damage. */
export class DirectReadError extends Error {}

/** Undo HDF5's shuffle filter: bytes were stored as all first bytes of each element, then all second bytes, ... */
export function unshuffle(bytes: Uint8Array, elementSize: number): Uint8Array {
  if (elementSize <= 1) return bytes;
  const n = Math.floor(bytes.length / elementSize);
  const out = new Uint8Array(bytes.length);
  for (let b = 0; b < elementSize; b++) {
    const plane = bytes.subarray(b * n, (b + 1) * n);
    for (let i = 0, o = b; i < n; i++, o += elementSize) out[o] = plane[i]!;
  }
  out.set(bytes.subarray(n * elementSize), n * elementSize); // leftover bytes are stored unshuffled
  return out;
}

/** The stored bytes of one chunk with its filters undone: a whole chunk (edge chunks are padded), little-endian. */
export function decodeChunk(stored: Uint8Array, layout: ChunkedLayout, filterMask: number): Uint8Array {
  const expected = layout.chunkShape.reduce((a, b) => a * b, 1) * layout.elementSize;
  let bytes = stored;
  for (let i = layout.filters.length - 1; i >= 0; i--) {
    if (filterMask & (1 << i)) continue; // this filter was skipped for this chunk
    const filter = layout.filters[i]!;
    if (filter.id === 'deflate') {
      try {
        // one output buffer of the chunk's size (+1 so that zlib finds the stream's end without a second one)
        bytes = zlib.inflateSync(bytes, { chunkSize: Math.max(64, expected + 1), maxOutputLength: Math.max(1, expected) });
      } catch (e) {
        throw new DirectReadError(`inflate failed: ${(e as Error).message}`);
      }
    } else {
      bytes = unshuffle(bytes, filter.elementSize);
    }
  }
  if (bytes.length !== expected) throw new DirectReadError(`chunk holds ${bytes.length} bytes, not ${expected}`);
  return bytes;
}

/** The part of a decoded chunk inside the dataset (edge chunks are padded to the whole chunk shape), as a contiguous copy. */
export function cropChunk(bytes: Uint8Array, layout: ChunkedLayout, entry: ChunkEntry): Uint8Array {
  const { shape, chunkShape, elementSize } = layout;
  const inside = chunkShape.map((c, d) => Math.min(c, shape[d]! - entry.offset[d]!));
  if (inside.every((n, d) => n === chunkShape[d])) return bytes;
  const rank = chunkShape.length;
  const rowBytes = inside[rank - 1]! * elementSize;
  const rows = inside.slice(0, -1).reduce((a, b) => a * b, 1);
  const out = new Uint8Array(rows * rowBytes);
  // strides of the padded chunk, in bytes
  const stride = new Array<number>(rank);
  stride[rank - 1] = elementSize;
  for (let d = rank - 2; d >= 0; d--) stride[d] = stride[d + 1]! * chunkShape[d + 1]!;
  const index = new Array<number>(Math.max(0, rank - 1)).fill(0);
  for (let r = 0; r < rows; r++) {
    let src = 0;
    for (let d = 0; d < rank - 1; d++) src += index[d]! * stride[d]!;
    out.set(bytes.subarray(src, src + rowBytes), r * rowBytes);
    for (let d = rank - 2; d >= 0; d--) {
      if (++index[d]! < inside[d]!) break;
      index[d] = 0;
    }
  }
  return out;
}

/** One chunk of `layout` read from `fd` and decoded, cropped to the dataset: the bytes of its voxels (valid until the next call). */
export function readChunk(fd: number, layout: ChunkedLayout, entry: ChunkEntry): { bytes: Uint8Array; voxels: number } {
  // the stored bytes go to a reused buffer (not from Buffer's pool, so aligned for typed-array views)
  if (storedBuffer.length < entry.size) storedBuffer = new Uint8Array(entry.size);
  const input = storedBuffer.subarray(0, entry.size);
  if (readFully(fd, input, entry.address) !== entry.size) throw new DirectReadError('chunk truncated');
  const bytes = cropChunk(decodeChunk(input, layout, entry.filterMask), layout, entry);
  return { bytes, voxels: bytes.length / layout.elementSize };
}

let storedBuffer = new Uint8Array(0);

/** Read `into.length` bytes at `position`; how many there were. I/O errors become DirectReadError. */
export function readFully(fd: number, into: Uint8Array, position: number): number {
  try {
    return fs.readSync(fd, into, 0, into.length, position);
  } catch (e) {
    throw new DirectReadError(`read failed: ${(e as Error).message}`);
  }
}
