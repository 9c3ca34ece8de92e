/** wasm SIMD kernels for the hot loops: exact counts of the values lo..lo+7 in 8/16-bit label arrays (LabelTally), and convert's mask + classes mapping. */
import { COUNT_WASM } from './kernels/countWasm.js';

/** How many consecutive values one call counts (the kernel keeps one SIMD counter per value). */
export const KERNEL_SPAN = 8;

type KernelFn = (ptr: number, n: number, lo: number, out: number) => void;
type MapFn = (mask: number, classes: number, labels: number, n: number, lo: number, out: number) => void;
/** The few WebAssembly APIs used here (the project's `lib` setting has no WebAssembly types). */
interface WasmMemory { readonly buffer: ArrayBuffer; grow(pages: number): number }
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
}
interface Kernel {
  memory: WasmMemory;
  i16: KernelFn;
  i8: KernelFn;
  u8: KernelFn;
  mapMaskClassesU8: MapFn;
}

/** Counters live at the start of the kernel's memory (8 values x 4 lanes x u32), data right after. */
const OUT_BYTES = KERNEL_SPAN * 16;
/** Values are copied into the kernel's memory in pieces of this many bytes: its memory stays small. */
const PIECE_BYTES = 1 << 22;

let kernel: Kernel | null | undefined;

/** The kernel, compiled once per process; null where WebAssembly SIMD is unavailable (callers fall back to JS). */
function loadKernel(): Kernel | null {
  if (kernel !== undefined) return kernel;
  try {
    const bytes = Uint8Array.from(atob(COUNT_WASM), (c) => c.charCodeAt(0));
    const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
    const exports = new wasm.Instance(new wasm.Module(bytes), {}).exports;
    const memory = exports.memory as WasmMemory;
    const need = OUT_BYTES + PIECE_BYTES;
    if (memory.buffer.byteLength < need) memory.grow(Math.ceil((need - memory.buffer.byteLength) / 65536));
    kernel = { memory, i16: exports.count_i16 as KernelFn, i8: exports.count_i8 as KernelFn, u8: exports.count_u8 as KernelFn, mapMaskClassesU8: exports.map_mask_classes_u8 as MapFn };
  } catch {
    kernel = null;
  }
  return kernel;
}

export type SmallIntArray = Int8Array | Uint8Array | Int16Array | Uint16Array;

/**
 * Count how many of `values` equal lo, lo+1, ..., lo+7 into `counts` (length KERNEL_SPAN, added to).
 * Only the leading multiple of 16 bytes is counted; returns how many values that was (the caller counts
 * the few left). Returns -1 when no kernel is available. For unsigned arrays pass lo >= 0.
 */
export function countSmallRange(values: SmallIntArray, lo: number, counts: Float64Array): number {
  const k = loadKernel();
  if (!k) return -1;
  const fn = values instanceof Int16Array || values instanceof Uint16Array ? k.i16 : values instanceof Int8Array ? k.i8 : k.u8;
  const bytesPer = values.BYTES_PER_ELEMENT;
  const usable = values.length - (values.length % (16 / bytesPer));
  const src = new Uint8Array(values.buffer, values.byteOffset, usable * bytesPer);
  const heap = new Uint8Array(k.memory.buffer);
  const out = new Uint32Array(k.memory.buffer, 0, KERNEL_SPAN * 4);
  out.fill(0);
  for (let off = 0; off < src.length; off += PIECE_BYTES) {
    const piece = src.subarray(off, Math.min(src.length, off + PIECE_BYTES));
    heap.set(piece, OUT_BYTES);
    fn(OUT_BYTES, piece.length / bytesPer, lo, 0);
  }
  for (let j = 0; j < KERNEL_SPAN; j++) counts[j]! += out[4 * j]! + out[4 * j + 1]! + out[4 * j + 2]! + out[4 * j + 3]!;
  return usable;
}

/**
 * labels[i] = classes[i] where mask[i] != 0, else -1, for uint8 mask and classes, counting the labels written
 * like `countSmallRange` (values lo..lo+7 into `counts`). Maps the leading multiple of 16 voxels and returns
 * how many that was; -1 when no kernel is available.
 */
export function mapMaskClassesU8(mask: Uint8Array, classes: Uint8Array, labels: Int16Array, lo: number, counts: Float64Array): number {
  const k = loadKernel();
  if (!k) return -1;
  const usable = mask.length - (mask.length % 16);
  // one piece: mask bytes, class bytes, then two bytes per label, all after the counters
  const piece = PIECE_BYTES / 4;
  const out = new Uint32Array(k.memory.buffer, 0, KERNEL_SPAN * 4);
  out.fill(0);
  const heap = new Uint8Array(k.memory.buffer);
  for (let off = 0; off < usable; off += piece) {
    const n = Math.min(piece, usable - off);
    heap.set(mask.subarray(off, off + n), OUT_BYTES);
    heap.set(classes.subarray(off, off + n), OUT_BYTES + piece);
    k.mapMaskClassesU8(OUT_BYTES, OUT_BYTES + piece, OUT_BYTES + 2 * piece, n, lo, 0);
    labels.set(new Int16Array(k.memory.buffer, OUT_BYTES + 2 * piece, n), off);
  }
  for (let j = 0; j < KERNEL_SPAN; j++) counts[j]! += out[4 * j]! + out[4 * j + 1]! + out[4 * j + 2]! + out[4 * j + 3]!;
  return usable;
}
