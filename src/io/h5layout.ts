/**
 * The structures of the HDF5 file format that h5direct.ts reads without libhdf5: superblock, object headers and
 * their messages (dataspace, datatype, layout, filter pipeline, links), version-1 B-trees of chunks. Only what
 * h5py, h5wasm and ELEKTRONN write by default is understood (superblock 0/1, version-1 object headers, layout
 * message version 3, deflate and shuffle);
 * anything else or inconsistent throws Unsupported, and the caller reads through libhdf5, which knows every case
 * and reports damage properly. (h5wasm 0.10 is built without H5Dget_chunk_info / H5Dread_chunk, so chunk
 * positions cannot be had from libhdf5.) Spec: "HDF5 File Format Specification Version 3.0", II.B, III, IV.A.
 */

import { dtype, type DType, type DTypeName } from './dtype.js';

/** Reads `length` bytes at absolute file position `position`; fewer only at the end of the file. */
export type ReadAt = (position: number, length: number) => Uint8Array;

export interface ChunkEntry {
  /** Element coordinates of the chunk's first voxel (multiples of the chunk shape). */
  offset: number[];
  /** Absolute file position and stored (compressed) size. */
  address: number;
  size: number;
  /** Bit i set: filter i of the pipeline was not applied to this chunk. */
  filterMask: number;
}

/** The pipeline filters this reader can undo, in the order they were applied on writing. */
export type ChunkFilter = { id: 'deflate' } | { id: 'shuffle'; elementSize: number };

export interface ChunkedLayout {
  shape: number[];
  chunkShape: number[];
  elementSize: number;
  filters: ChunkFilter[];
  chunks: ChunkEntry[];
}

const SIGNATURE = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a];
export const MSG_DATASPACE = 0x0001;
export const MSG_LINK_INFO = 0x0002;
export const MSG_DATATYPE = 0x0003;
export const MSG_LINK = 0x0006;
export const MSG_EXTERNAL_FILES = 0x0007;
export const MSG_LAYOUT = 0x0008;
export const MSG_FILTERS = 0x000b;
const MSG_CONTINUATION = 0x0010;
export const MSG_SYMBOL_TABLE = 0x0011;
const FILTER_DEFLATE = 1;
const FILTER_SHUFFLE = 2;

/** Parsing stops at the first inconsistency: the caller falls back to libhdf5. */
export class Unsupported extends Error {}

export function unsupported(why: string): never {
  throw new Unsupported(why);
}

/** Little-endian fields of one block read from the file. */
export class Fields {
  constructor(readonly bytes: Uint8Array, private pos = 0) {}
  get offset(): number {
    return this.pos;
  }
  skip(n: number): void {
    this.need(n);
    this.pos += n;
  }
  private need(n: number): void {
    if (this.pos + n > this.bytes.length) unsupported('structure runs past its block');
  }
  u8(): number {
    this.need(1);
    return this.bytes[this.pos++]!;
  }
  u16(): number {
    this.need(2);
    const v = this.bytes[this.pos]! | (this.bytes[this.pos + 1]! << 8);
    this.pos += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const b = this.bytes;
    const p = this.pos;
    this.pos += 4;
    return (b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16)) + b[p + 3]! * 0x1000000;
  }
  /** An 8-byte unsigned value; undefined for the all-ones "undefined address"; refused past 2^53. */
  u64(): number | undefined {
    const lo = this.u32();
    const hi = this.u32();
    if (hi === 0xffffffff && lo === 0xffffffff) return undefined;
    if (hi >= 0x200000) unsupported('value past 2^53');
    return hi * 0x100000000 + lo;
  }
  /** Unsigned value of 1, 2, 4 or 8 bytes. */
  uN(n: number): number {
    if (n === 1) return this.u8();
    if (n === 2) return this.u16();
    if (n === 4) return this.u32();
    if (n === 8) return this.u64() ?? unsupported('undefined value');
    return unsupported(`field of ${n} bytes`);
  }
  ascii(n: number): string {
    this.need(n);
    const s = String.fromCharCode(...this.bytes.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }
}

export interface Superblock {
  /** Absolute position that the file's addresses are relative to. */
  base: number;
  fileSize: number;
  /** The root group's object header, relative to `base`. */
  root: number;
}

export function readSuperblock(readAt: ReadAt, fileSize: number): Superblock {
  // the superblock sits at 0, 512, 1024, 2048, ... (a user block may precede it)
  for (let at = 0; at + 48 <= fileSize; at = at === 0 ? 512 : at * 2) {
    const head = readAt(at, 96);
    if (!SIGNATURE.every((b, i) => head[i] === b)) continue;
    const f = new Fields(head, 8);
    const version = f.u8();
    // superblocks 2 and 3 (libver 'v108' and newer) come with version-2 object headers: left to libhdf5
    if (version !== 0 && version !== 1) unsupported(`superblock version ${version}`);
    f.skip(4); // free-space, root group and shared-header versions, reserved
    if (f.u8() !== 8 || f.u8() !== 8) unsupported('offsets or lengths not 8 bytes');
    const baseField = version === 0 ? 24 : 28;
    const rootField = baseField + 32 + 8; // base, free space, end of file, driver info; then the root's symbol table entry
    // addresses are relative to the superblock's position (a user block may precede it); libhdf5 uses that
    // position whatever the base address field says, as here
    if (new Fields(head, baseField).u64() === undefined) unsupported('undefined base address');
    const base = at;
    const root = new Fields(head, rootField).u64() ?? unsupported('undefined root group');
    return { base, fileSize, root };
  }
  return unsupported('no superblock');
}

export interface Message {
  type: number;
  flags: number;
  body: Fields;
}

/**
 * Every message of the version-1 object header at absolute position `at`, continuation blocks followed. Version-2
 * headers ("OHDR", with checksums libhdf5 verifies) are not read here.
 */
export function readObjectHeader(readAt: ReadAt, sb: Superblock, at: number): Message[] {
  const prefix = new Fields(readAt(at, 16));
  if (prefix.u8() !== 1) unsupported('object header version');
  prefix.skip(7); // reserved, number of messages, reference count
  // the 12-byte prefix is padded to 16; then the first block of messages
  const blocks = [{ at: at + 16, length: prefix.u32() }];
  const messages: Message[] = [];
  for (let b = 0; b < blocks.length; b++) {
    if (b > 64) unsupported('too many header blocks');
    const block = blocks[b]!;
    if (block.at + block.length > sb.fileSize || block.length > 1 << 24) unsupported('header block outside the file');
    const bytes = readAt(block.at, block.length);
    if (bytes.length !== block.length) unsupported('header block truncated');
    const f = new Fields(bytes);
    while (f.offset + 8 <= bytes.length) {
      const type = f.u16();
      const size = f.u16();
      const flags = f.u8();
      f.skip(3);
      const body = new Fields(bytes.subarray(f.offset, f.offset + size));
      f.skip(size);
      if (type === MSG_CONTINUATION) {
        const next = body.u64() ?? unsupported('undefined continuation');
        const nextLength = body.u64() ?? unsupported('undefined continuation length');
        blocks.push({ at: sb.base + next, length: nextLength });
      } else {
        messages.push({ type, flags, body });
      }
    }
  }
  return messages;
}

export function only(messages: Message[], type: number): Message | undefined {
  const found = messages.filter((m) => m.type === type);
  if (found.length > 1) unsupported(`message ${type} more than once`);
  const m = found[0];
  if (m && (m.flags & 0x02) !== 0) unsupported(`shared message ${type}`); // stored elsewhere in the file
  return m;
}

export function readDataspace(m: Message): number[] {
  const f = m.body;
  const version = f.u8();
  const rank = f.u8();
  f.u8(); // flags (maximum sizes follow the sizes; not needed)
  if (version === 1) f.skip(5);
  else if (version === 2) {
    if (f.u8() !== 1) unsupported('dataspace is not simple'); // 0 scalar, 2 null
  } else unsupported(`dataspace version ${version}`);
  const shape: number[] = [];
  for (let i = 0; i < rank; i++) shape.push(f.u64() ?? unsupported('undefined dimension'));
  return shape;
}

/**
 * The element type of a datatype message: little-endian integers of 1-8 bytes and IEEE floats of 4 or 8 bytes,
 * as numpy stores them; null for anything else (big-endian, enums, strings, padded or unusual precisions).
 */
export function readDatatype(m: Message): DType | null {
  const f = m.body;
  const typeClass = f.u8() & 0x0f;
  const bits = f.u8();
  f.skip(2);
  const size = f.u32();
  const bitOffset = f.u16();
  const precision = f.u16();
  if (bitOffset !== 0 || precision !== size * 8) return null;
  if (typeClass === 0) {
    if ((bits & 0x01) !== 0 || ![1, 2, 4, 8].includes(size)) return null;
    return dtype(`${(bits & 0x08) !== 0 ? 'int' : 'uint'}${size * 8}` as DTypeName);
  }
  if (typeClass === 1) {
    if ((bits & 0x41) !== 0) return null; // big-endian or VAX order
    const ieee = size === 4 ? [23, 8, 0, 23, 127] : size === 8 ? [52, 11, 0, 52, 1023] : null;
    const actual = [f.u8(), f.u8(), f.u8(), f.u8(), f.u32()];
    if (!ieee || actual.some((v, i) => v !== ieee[i])) return null;
    return dtype(size === 4 ? 'float32' : 'float64');
  }
  return null;
}

function readFilters(m: Message | undefined, elementSize: number): ChunkFilter[] {
  if (!m) return [];
  const f = m.body;
  const version = f.u8();
  const n = f.u8();
  if (version === 1) f.skip(6);
  else if (version !== 2) unsupported(`filter pipeline version ${version}`);
  const filters: ChunkFilter[] = [];
  for (let i = 0; i < n; i++) {
    const id = f.u16();
    const nameLength = version === 1 || id >= 256 ? f.u16() : 0;
    f.u16(); // flags: optional or not; the chunk's filter mask says what was applied
    const nValues = f.u16();
    f.skip(nameLength);
    const values: number[] = [];
    for (let v = 0; v < nValues; v++) values.push(f.u32());
    if (version === 1 && nValues % 2 === 1) f.skip(4);
    if (id === FILTER_DEFLATE) filters.push({ id: 'deflate' });
    else if (id === FILTER_SHUFFLE) filters.push({ id: 'shuffle', elementSize: values[0] ?? elementSize });
    else unsupported(`filter ${id}`);
  }
  return filters;
}

export interface ChunkIndex {
  /** Absolute position of the B-tree's root node. */
  btree: number;
  chunkShape: number[];
  elementSize: number;
}

/** Where a dataset's elements are: in the file (contiguous), in the layout message itself (compact), or in chunks. */
export type Storage =
  | { kind: 'contiguous'; address: number; size: number }
  | { kind: 'compact'; bytes: Uint8Array }
  | ({ kind: 'chunked' } & ChunkIndex);

/** A layout message of version 3 (what every HDF5 since 1.6 writes unless asked for the newest format). */
export function readLayout(m: Message, rank: number, base: number): Storage {
  const f = m.body;
  const version = f.u8();
  if (version !== 3) unsupported(`layout version ${version}`);
  const layoutClass = f.u8();
  if (layoutClass === 0) {
    const size = f.u16();
    return { kind: 'compact', bytes: f.bytes.subarray(f.offset, f.offset + size) };
  }
  if (layoutClass === 1) {
    const address = f.u64() ?? unsupported('contiguous storage never allocated');
    return { kind: 'contiguous', address: base + address, size: f.u64() ?? unsupported('undefined size') };
  }
  if (layoutClass !== 2) unsupported(`layout class ${layoutClass}`);
  const dims = f.u8();
  if (dims !== rank + 1) unsupported('chunk rank differs from the dataspace');
  const btree = base + (f.u64() ?? unsupported('no chunks allocated'));
  const chunkShape: number[] = [];
  for (let i = 0; i < rank; i++) chunkShape.push(f.u32());
  const elementSize = f.u32();
  if (chunkShape.some((c) => c < 1)) unsupported('empty chunk dimension');
  return { kind: 'chunked', btree, chunkShape, elementSize };
}

/** Walk the version-1 B-tree of raw-data chunks (node type 1) depth first. */
function readChunkTree(readAt: ReadAt, sb: Superblock, index: ChunkIndex, rank: number, maxChunks: number): ChunkEntry[] {
  const keySize = 8 + 8 * (rank + 1);
  const chunks: ChunkEntry[] = [];
  const visited = new Set<number>();
  const visit = (at: number, expectLevel: number | null, depth: number): void => {
    if (depth > 32 || visited.has(at)) unsupported('B-tree loops or is too deep');
    visited.add(at);
    const head = new Fields(readAt(at, 24));
    if (head.ascii(4) !== 'TREE' || head.u8() !== 1) unsupported('not a chunk B-tree node');
    const level = head.u8();
    if (expectLevel !== null && level !== expectLevel) unsupported('B-tree levels inconsistent');
    const entries = head.u16();
    if (entries > maxChunks) unsupported('B-tree node has too many entries');
    const length = entries * (keySize + 8) + keySize;
    if (at + 24 + length > sb.fileSize) unsupported('B-tree node outside the file');
    const f = new Fields(readAt(at + 24, length));
    for (let i = 0; i < entries; i++) {
      const size = f.u32();
      const filterMask = f.u32();
      const offset: number[] = [];
      for (let d = 0; d < rank; d++) offset.push(f.u64() ?? unsupported('undefined chunk offset'));
      f.skip(8); // the element-size dimension, always 0
      const child = f.u64() ?? unsupported('undefined child');
      if (level > 0) {
        visit(sb.base + child, level - 1, depth + 1);
      } else {
        if (chunks.length >= maxChunks) unsupported('more chunks than the dataset holds');
        chunks.push({ offset, address: sb.base + child, size, filterMask });
      }
    }
  };
  visit(index.btree, null, 0);
  return chunks;
}

/**
 * The chunks of a chunked dataset of `shape`: every chunk stored (a missing one reads as the fill value), each
 * exactly once, inside the file. Throws Unsupported otherwise.
 */
export function listChunks(readAt: ReadAt, sb: Superblock, shape: number[], index: ChunkIndex, filterMessage: Message | undefined): ChunkedLayout {
  const filters = readFilters(filterMessage, index.elementSize);
  const grid = shape.map((n, i) => Math.ceil(n / index.chunkShape[i]!));
  const total = grid.reduce((a, b) => a * b, 1);
  if (total === 0) unsupported('empty dataset');
  const chunks = readChunkTree(readAt, sb, index, shape.length, total);
  if (chunks.length !== total) unsupported('chunks never written');
  const seen = new Set<number>();
  for (const c of chunks) {
    let linear = 0;
    for (let d = 0; d < shape.length; d++) {
      const o = c.offset[d]!;
      if (o % index.chunkShape[d]! !== 0 || o >= shape[d]!) unsupported('chunk offset off the grid');
      linear = linear * grid[d]! + o / index.chunkShape[d]!;
    }
    if (seen.has(linear)) unsupported('chunk stored twice');
    seen.add(linear);
    if (c.size === 0 || c.address + c.size > sb.fileSize) unsupported('chunk outside the file');
  }
  return { shape, chunkShape: index.chunkShape, elementSize: index.elementSize, filters, chunks };
}
