/** wasm SIMD kernels for the hot loops: exact counts of the values lo..lo+7 in 8/16-bit label arrays (LabelTally), and convert's mask + classes mapping. */
import { COUNT_WASM } from './kernels/countWasm.js';

/** How many consecutive values one call counts (the kernel keeps one SIMD counter per value). */
export const KERNEL_SPAN = 8;

type KernelFn = (ptr: number, n: number, lo: number, out: number) => void;
type MapFn = (mask: number, classes: number, labels: number, n: number, lo: number, out: number) => void;
/** The few WebAssembly APIs used here (the project's `lib` setting has no WebAssembly types). */
export interface WasmMemory { readonly buffer: ArrayBuffer; grow(pages: number): number }
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
  Memory: new (descriptor: { initial: number }) => WasmMemory;
}
/** One instance of the kernels, bound to one memory; its counters live at `out` (KERNEL_SCRATCH_BYTES). */
interface Kernel {
  memory: WasmMemory;
  out: number;
  i16: KernelFn;
  i8: KernelFn;
  u8: KernelFn;
  mapMaskClassesU8: MapFn;
}

/** Bytes of the counters (8 values x 4 lanes x u32) that an instance on a foreign heap needs reserved there. */
export const KERNEL_SCRATCH_BYTES = KERNEL_SPAN * 16;
/** In the kernels' own memory the counters come first, data right after. */
const OUT_BYTES = KERNEL_SCRATCH_BYTES;
/** Values are copied into the kernels' own memory in pieces of this many bytes: that memory stays small. */
const PIECE_BYTES = 1 << 22;

let compiled: object | null | undefined;
let own: Kernel | null | undefined;
/** Instances on wasm heaps whose arrays are counted where they are (countInPlaceOn). */
const hosted: Kernel[] = [];

function wasmApi(): WasmApi {
  return (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
}

function instantiate(memory: WasmMemory, out: number): Kernel | null {
  try {
    compiled ??= new (wasmApi().Module)(Uint8Array.from(atob(COUNT_WASM), (c) => c.charCodeAt(0)));
    const exports = new (wasmApi().Instance)(compiled, { env: { memory } }).exports;
    return { memory, out, i16: exports.count_i16 as KernelFn, i8: exports.count_i8 as KernelFn, u8: exports.count_u8 as KernelFn, mapMaskClassesU8: exports.map_mask_classes_u8 as MapFn };
  } catch {
    compiled = null; // no WebAssembly SIMD here: callers fall back to JS
    return null;
  }
}

/** The kernels on a memory of their own, created once per process; null where WebAssembly SIMD is unavailable. */
function ownKernel(): Kernel | null {
  if (own !== undefined) return own;
  if (compiled === null) return (own = null);
  own = instantiate(new (wasmApi().Memory)({ initial: Math.ceil((OUT_BYTES + PIECE_BYTES) / 65536) }), 0);
  return own;
}

/**
 * Count arrays that live in `memory` (a wasm heap, such as libhdf5's, that slabs are read into) where they are,
 * instead of copying them into the kernels' own memory: on a 128 MiB volume that copy was ~10% of `check`.
 * `scratch` is the address of KERNEL_SCRATCH_BYTES bytes on that heap which the kernels may overwrite at any
 * count. Returns false (and changes nothing) where WebAssembly SIMD is unavailable.
 */
export function countInPlaceOn(memory: WasmMemory, scratch: number): boolean {
  if (hosted.some((k) => k.memory === memory)) return true;
  const k = compiled === null ? null : instantiate(memory, scratch);
  if (k) hosted.push(k);
  return k !== null;
}

/** The instance bound to the heap `buffer` belongs to, if that heap was given to countInPlaceOn. */
function hostOf(buffer: ArrayBufferLike): Kernel | undefined {
  // compared with the memory's current buffer: growing a memory replaces its ArrayBuffer
  for (const k of hosted) if (k.memory.buffer === buffer) return k;
  return undefined;
}

/** Sum the four lanes of each counter at `out` into counts. */
function addCounters(k: Kernel, counts: Float64Array): void {
  const out = new Uint32Array(k.memory.buffer, k.out, KERNEL_SPAN * 4);
  for (let j = 0; j < KERNEL_SPAN; j++) counts[j]! += out[4 * j]! + out[4 * j + 1]! + out[4 * j + 2]! + out[4 * j + 3]!;
}

export type SmallIntArray = Int8Array | Uint8Array | Int16Array | Uint16Array;

/**
 * Count how many of `values` equal lo, lo+1, ..., lo+7 into `counts` (length KERNEL_SPAN, added to).
 * Only the leading multiple of 16 bytes is counted; returns how many values that was (the caller counts
 * the few left). Returns -1 when no kernel is available. For unsigned arrays pass lo >= 0.
 */
export function countSmallRange(values: SmallIntArray, lo: number, counts: Float64Array): number {
  const host = hostOf(values.buffer);
  const k = host ?? ownKernel();
  if (!k) return -1;
  const fn = values instanceof Int16Array || values instanceof Uint16Array ? k.i16 : values instanceof Int8Array ? k.i8 : k.u8;
  const bytesPer = values.BYTES_PER_ELEMENT;
  const usable = values.length - (values.length % (16 / bytesPer));
  new Uint32Array(k.memory.buffer, k.out, KERNEL_SPAN * 4).fill(0);
  if (host) {
    fn(values.byteOffset, usable, lo, k.out);
  } else {
    const src = new Uint8Array(values.buffer, values.byteOffset, usable * bytesPer);
    const heap = new Uint8Array(k.memory.buffer);
    for (let off = 0; off < src.length; off += PIECE_BYTES) {
      const piece = src.subarray(off, Math.min(src.length, off + PIECE_BYTES));
      heap.set(piece, OUT_BYTES);
      fn(OUT_BYTES, piece.length / bytesPer, lo, k.out);
    }
  }
  addCounters(k, counts);
  return usable;
}

/**
 * labels[i] = classes[i] where mask[i] != 0, else -1, for uint8 mask and classes, counting the labels written
 * like `countSmallRange` (values lo..lo+7 into `counts`). Maps the leading multiple of 16 voxels and returns
 * how many that was; -1 when no kernel is available.
 */
export function mapMaskClassesU8(mask: Uint8Array, classes: Uint8Array, labels: Int16Array, lo: number, counts: Float64Array): number {
  const k = ownKernel();
  if (!k) return -1;
  const usable = mask.length - (mask.length % 16);
  // one piece: mask bytes, class bytes, then two bytes per label, all after the counters
  const piece = PIECE_BYTES / 4;
  new Uint32Array(k.memory.buffer, k.out, KERNEL_SPAN * 4).fill(0);
  const heap = new Uint8Array(k.memory.buffer);
  for (let off = 0; off < usable; off += piece) {
    const n = Math.min(piece, usable - off);
    heap.set(mask.subarray(off, off + n), OUT_BYTES);
    heap.set(classes.subarray(off, off + n), OUT_BYTES + piece);
    k.mapMaskClassesU8(OUT_BYTES, OUT_BYTES + piece, OUT_BYTES + 2 * piece, n, lo, k.out);
    labels.set(new Int16Array(k.memory.buffer, OUT_BYTES + 2 * piece, n), off);
  }
  addCounters(k, counts);
  return usable;
}
