/**
 * HDF5 files in the format h5py, h5wasm and ELEKTRONN write by default (superblock 0/1, version-1 object headers,
 * symbol-table groups), read without libhdf5: enough for `check` and `suggest-prios` to find a dataset, its shape
 * and type, and stream its voxels, so that a short command never waits for libhdf5 to load (~30-40 ms of every
 * start) and inflates chunks natively. Anything else (newer formats, links, other files, filters other than
 * deflate/shuffle, chunks never written, any inconsistency) makes `dataset` return null: the caller then opens
 * the file with libhdf5 (src/io/hdf5.ts), which handles every case and reports damage with its own words.
 */
import fs from 'node:fs';
import type { DType, NumericArray } from './dtype.js';
import { DirectReadError, MAX_DIRECT_CHUNK_BYTES, readChunk, readFully } from './h5chunks.js';
import {
  Fields, listChunks, MSG_DATASPACE, MSG_DATATYPE, MSG_EXTERNAL_FILES, MSG_FILTERS, MSG_LAYOUT, MSG_LINK, MSG_LINK_INFO, MSG_SYMBOL_TABLE,
  only, readDataspace, readDatatype, readLayout, readObjectHeader, readSuperblock, Unsupported, unsupported,
  type ChunkedLayout, type Message, type ReadAt, type Superblock,
} from './h5layout.js';

/** Contiguous volumes are read in pieces of this many bytes (one reused buffer). */
const PIECE_BYTES = 4 << 20;
/**
 * The buffer contiguous pieces are read into, shared by every file of the process: a fresh 4 MiB per file cost
 * ~1000 first-touch page faults (~3 ms on the bench VM), more than reading the cube.
 */
let pieceBuffer = new Uint8Array(0);
/** `readAll` takes datasets up to this size (info is (2, n_lab)). */
const MAX_SMALL_BYTES = 16 << 20;

export interface DirectDataset {
  key: string;
  shape: number[];
  dtype: DType;
  /** Chunk shape, null when stored contiguously or compact (as VolumeReader.chunks). */
  chunks: number[] | null;
  storage: { kind: 'contiguous'; address: number; size: number } | { kind: 'compact'; bytes: Uint8Array } | { kind: 'chunked'; layout: ChunkedLayout };
}

type ViewOf = new (buffer: ArrayBufferLike, byteOffset: number, length: number) => NumericArray;
const VIEWS: Partial<Record<DType['name'], ViewOf>> = {
  int8: Int8Array, uint8: Uint8Array, int16: Int16Array, uint16: Uint16Array, int32: Int32Array, uint32: Uint32Array,
  float32: Float32Array, float64: Float64Array,
};

export class DirectH5File {
  private constructor(
    readonly path: string,
    private readonly fd: number,
    private readonly sb: Superblock,
    private readonly readAt: ReadAt,
  ) {}

  /** The file, when it is an HDF5 file with a version 0 or 1 superblock; null otherwise (or unreadable). */
  static open(path: string): DirectH5File | null {
    let fd: number;
    try {
      // non-blocking, so that a FIFO does not hang the open; then regular files only (folders are zarr/N5/stacks)
      fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    } catch {
      return null;
    }
    try {
      const stat = fs.fstatSync(fd);
      if (!stat.isFile()) throw new Unsupported('not a regular file');
      const size = stat.size;
      const readAt: ReadAt = (position, length) => {
        const buf = new Uint8Array(Math.max(0, Math.min(length, size - position)));
        const n = buf.length ? fs.readSync(fd, buf, 0, buf.length, position) : 0;
        return buf.subarray(0, n);
      };
      const sb = readSuperblock(readAt, size);
      return new DirectH5File(path, fd, sb, readAt);
    } catch {
      // not in the format read here, or unreadable: libhdf5 then opens it and says what is wrong
      fs.closeSync(fd);
      return null;
    }
  }

  close(): void {
    fs.closeSync(this.fd);
  }

  /**
   * The dataset at `key` ('a/b/c' from the root group); 'absent' when the file certainly has no object there;
   * null when this reader cannot tell or not read it (ask libhdf5).
   */
  dataset(key: string): DirectDataset | 'absent' | null {
    try {
      let header = this.sb.base + this.sb.root;
      for (const name of key.split('/').filter(Boolean)) {
        const found = this.lookup(readObjectHeader(this.readAt, this.sb, header), name);
        if (found === 'absent') return found;
        header = this.sb.base + found;
      }
      const messages = readObjectHeader(this.readAt, this.sb, header);
      if (messages.some((m) => m.type === MSG_EXTERNAL_FILES)) return null;
      const space = only(messages, MSG_DATASPACE);
      const type = only(messages, MSG_DATATYPE);
      const layout = only(messages, MSG_LAYOUT);
      if (!space || !type || !layout) return null; // a group, or a dataset this reader does not know
      const shape = readDataspace(space);
      const dt = readDatatype(type);
      if (!dt || shape.length === 0 || shape.some((n) => n === 0)) return null;
      const storage = readLayout(layout, shape.length, this.sb.base);
      const bytes = shape.reduce((a, b) => a * b, 1) * dt.bytes;
      if (storage.kind === 'chunked') {
        if (storage.elementSize !== dt.bytes) return null;
        if (storage.chunkShape.reduce((a, b) => a * b, 1) * dt.bytes > MAX_DIRECT_CHUNK_BYTES) return null;
        const chunked = listChunks(this.readAt, this.sb, shape, storage, only(messages, MSG_FILTERS));
        return { key, shape, dtype: dt, chunks: storage.chunkShape, storage: { kind: 'chunked', layout: chunked } };
      }
      if (only(messages, MSG_FILTERS)) return null; // filters apply to chunked data only
      if (storage.kind === 'compact') {
        if (storage.bytes.length !== bytes) return null;
        return { key, shape, dtype: dt, chunks: null, storage };
      }
      if (storage.size !== bytes || storage.address + storage.size > this.sb.fileSize) return null;
      return { key, shape, dtype: dt, chunks: null, storage };
    } catch (e) {
      // Unsupported, or an I/O error: libhdf5 then reads the dataset and reports any damage
      if (e instanceof Unsupported || (e as NodeJS.ErrnoException).code !== undefined) return null;
      throw e;
    }
  }

  /** The object header address that `name` hard-links to in the group with these messages, or 'absent'; throws Unsupported for anything else. */
  private lookup(group: Message[], name: string): number | 'absent' {
    const table = only(group, MSG_SYMBOL_TABLE);
    if (table) {
      const btree = table.body.u64() ?? unsupported('undefined group B-tree');
      const heap = table.body.u64() ?? unsupported('undefined group heap');
      return this.symbolTableLookup(this.sb.base + btree, this.sb.base + heap, name);
    }
    // a new-style group: its links as messages (compact storage); dense storage (a fractal heap) is not read here
    for (const m of group.filter((x) => x.type === MSG_LINK)) {
      const f = m.body;
      if (f.u8() !== 1) unsupported('link message version');
      const flags = f.u8();
      const linkType = flags & 0x08 ? f.u8() : 0;
      if (flags & 0x04) f.skip(8);
      if (flags & 0x10) f.skip(1);
      const length = f.uN(1 << (flags & 3));
      if (new TextDecoder().decode(f.bytes.subarray(f.offset, f.offset + length)) !== name) continue;
      f.skip(length);
      if (linkType !== 0) unsupported('soft or external link');
      return f.u64() ?? unsupported('undefined link');
    }
    const info = only(group, MSG_LINK_INFO);
    if (info) {
      const f = info.body;
      f.u8();
      const flags = f.u8();
      if (flags & 0x01) f.skip(8);
      if (f.u64() !== undefined) unsupported('dense link storage');
    } else if (!group.some((x) => x.type === MSG_LINK)) {
      unsupported('not a group');
    }
    return 'absent';
  }

  /** Find `name` in an old-style group: a version-1 B-tree (node type 0) of symbol table nodes, names in a local heap. */
  private symbolTableLookup(btree: number, heap: number, name: string): number | 'absent' {
    const h = new Fields(this.readAt(heap, 32));
    if (h.ascii(4) !== 'HEAP' || h.u8() !== 0) unsupported('not a local heap');
    h.skip(3);
    const heapSize = h.u64() ?? unsupported('undefined heap size');
    h.u64(); // free list
    const dataAt = this.sb.base + (h.u64() ?? unsupported('undefined heap data'));
    if (heapSize > MAX_SMALL_BYTES || dataAt + heapSize > this.sb.fileSize) unsupported('local heap outside the file');
    const names = this.readAt(dataAt, heapSize);
    const nameAt = (offset: number): string => {
      if (offset >= names.length) unsupported('name outside the heap');
      const end = names.indexOf(0, offset);
      if (end < 0) unsupported('unterminated name');
      return new TextDecoder().decode(names.subarray(offset, end));
    };
    const visited = new Set<number>();
    const visit = (at: number, depth: number): number | null => {
      if (depth > 32 || visited.has(at) || visited.size > 100_000) unsupported('group B-tree loops or is too large');
      visited.add(at);
      const head = new Fields(this.readAt(at, 24));
      if (head.ascii(4) !== 'TREE' || head.u8() !== 0) unsupported('not a group B-tree node');
      const level = head.u8();
      const entries = head.u16();
      head.skip(16); // siblings
      const f = new Fields(this.readAt(at + 24, entries * 16 + 8));
      for (let i = 0; i < entries; i++) {
        f.skip(8); // key: heap offset of the largest name so far
        const child = this.sb.base + (f.u64() ?? unsupported('undefined child'));
        const found = level > 0 ? visit(child, depth + 1) : this.symbolNodeLookup(child, name, nameAt);
        if (found !== null) return found;
      }
      return null;
    };
    return visit(btree, 0) ?? 'absent';
  }

  private symbolNodeLookup(at: number, name: string, nameAt: (offset: number) => string): number | null {
    const head = new Fields(this.readAt(at, 8));
    if (head.ascii(4) !== 'SNOD' || head.u8() !== 1) unsupported('not a symbol table node');
    head.skip(1);
    const count = head.u16();
    const f = new Fields(this.readAt(at + 8, count * 40));
    for (let i = 0; i < count; i++) {
      const nameOffset = f.u64() ?? unsupported('undefined name');
      const header = f.u64();
      const cacheType = f.u32();
      f.skip(20);
      if (nameAt(nameOffset) !== name) continue;
      if (cacheType === 2 || header === undefined) unsupported('soft link');
      return header;
    }
    return null;
  }

  /**
   * The dataset's voxels as `count` units that can be read in any order, by any thread that opened the file:
   * chunks, or pieces of at most `maxPieceBytes` of contiguous data (the caller's memory budget; chunks come
   * whole). `read(i)` gives unit i as a typed array of the dataset's type, valid until the next read; it throws
   * DirectReadError when the data cannot be read or decoded. 64-bit integers are not streamed here.
   */
  units(ds: DirectDataset, maxPieceBytes = PIECE_BYTES): { count: number; read(i: number): NumericArray } {
    const View = VIEWS[ds.dtype.name];
    if (!View) throw new Error(`${ds.dtype.name} is not streamed by DirectH5File`);
    const { storage } = ds;
    const elem = ds.dtype.bytes;
    if (storage.kind === 'chunked') {
      const { layout } = storage;
      return {
        count: layout.chunks.length,
        read: (i) => {
          const { bytes, voxels } = readChunk(this.fd, layout, layout.chunks[i]!);
          const aligned = bytes.byteOffset % elem === 0 ? bytes : bytes.slice();
          return new View(aligned.buffer, aligned.byteOffset, voxels);
        },
      };
    }
    if (storage.kind === 'compact') {
      return { count: 1, read: () => new View(storage.bytes.slice().buffer, 0, storage.bytes.length / elem) };
    }
    const budget = Math.max(1, Math.min(PIECE_BYTES, Math.floor(maxPieceBytes)));
    const piece = Math.max(elem, budget - (budget % elem));
    return {
      count: Math.ceil(storage.size / piece),
      read: (i) => {
        const n = Math.min(piece, storage.size - i * piece);
        if (pieceBuffer.length < n) pieceBuffer = new Uint8Array(Math.min(piece, storage.size));
        const buf = pieceBuffer.subarray(0, n);
        if (readFully(this.fd, buf, storage.address + i * piece) !== n) throw new DirectReadError('file ended inside the data');
        return new View(buf.buffer, 0, n / elem);
      },
    };
  }

  /** Every voxel once, unit by unit (see `units`); each array is valid until the next. */
  *pieces(ds: DirectDataset, maxPieceBytes = PIECE_BYTES): Generator<NumericArray> {
    const { count, read } = this.units(ds, maxPieceBytes);
    for (let i = 0; i < count; i++) yield read(i);
  }

  /** A small dataset whole (such as `info`), C order; 64-bit integers widened to float64 (exact below 2^53). */
  readAll(ds: DirectDataset): NumericArray | null {
    const n = ds.shape.reduce((a, b) => a * b, 1);
    if (n * ds.dtype.bytes > MAX_SMALL_BYTES || ds.storage.kind === 'chunked') return null;
    let bytes: Uint8Array;
    try {
      bytes = ds.storage.kind === 'compact' ? ds.storage.bytes.slice() : this.readAt(ds.storage.address, ds.storage.size).slice();
    } catch {
      return null; // libhdf5 then reads it and reports the error
    }
    if (bytes.length !== n * ds.dtype.bytes) return null;
    if (ds.dtype.bytes === 8 && ds.dtype.kind !== 'float') {
      const view = new DataView(bytes.buffer);
      const out = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        const v = ds.dtype.kind === 'int' ? view.getBigInt64(8 * i, true) : view.getBigUint64(8 * i, true);
        if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) return null;
        out[i] = Number(v);
      }
      return out;
    }
    return new (VIEWS[ds.dtype.name]!)(bytes.buffer, 0, n);
  }
}
