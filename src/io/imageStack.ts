/**
 * Image stacks as volumes: a multi-page TIFF (one page per z slice), a folder of single-page TIFFs, a folder of
 * PNG slices (natural filename order: img2 before img10), or one TIFF / PNG image (a 2-D volume, as tifffile and
 * PIL read it). Greyscale only: 8/16-bit integers (signed too, for TIFF) and 32/64-bit float TIFFs.
 *
 * Only the pages / slices overlapping a request are read. For a multi-page TIFF we walk the IFD chain ourselves
 * (a few bytes per page) and hand the `tiff` package a small single-page TIFF holding just the page asked for,
 * so a stack of any size is never read into memory whole.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { PNG } from 'pngjs';
import type { decode as DecodeTiff } from 'tiff';
import { LazyLabelError } from '../errors.js';
import { dtype as makeDtype, typedArrayFor, type DType, type DTypeName, type NumericArray } from './dtype.js';
import { checkBox, checkSlab, copyRegion, naturalSort, product, slabBox, type VolumeReader } from './volume.js';

const TIFF_EXT = /\.tiff?$/i;
const PNG_EXT = /\.png$/i;

// Each decoder is loaded by the first open of its kind (set before any stack of that kind exists):
// a PNG folder never loads `tiff`, a TIFF stack never loads pngjs.
let decodeTiff!: typeof DecodeTiff;
let PngDecoder!: typeof PNG;

/** One slice source: a page of a TIFF file or a PNG file. */
interface Slice {
  file: string;
  /** TIFF only: the page's IFD. */
  page?: TiffPage;
}

abstract class StackVolume implements VolumeReader {
  abstract readonly format: 'tiff' | 'png';
  readonly key = '';
  readonly shape: number[];
  readonly chunks: number[];
  readonly dtype: DType;
  readonly typeName: string;

  /** `flat`: one image, shape [height, width]; otherwise [slices, height, width]. */
  constructor(readonly file: string, protected readonly slices: Slice[], readonly height: number, readonly width: number, dtypeName: DTypeName, flat: boolean) {
    this.shape = flat ? [height, width] : [slices.length, height, width];
    this.chunks = flat ? [height, width] : [1, height, width];
    this.dtype = makeDtype(dtypeName);
    this.typeName = dtypeName;
  }

  /** Decode one slice to `height × width` values in C order. */
  protected abstract decode(slice: Slice): NumericArray;

  async readSlab(start: number, end: number): Promise<NumericArray> {
    checkSlab(this.shape, start, end, this.file, this.key);
    const { starts, ends } = slabBox(this.shape, start, end);
    return this.read(starts, ends);
  }

  async readBox(starts: number[], ends: number[]): Promise<NumericArray> {
    checkBox(this.shape, starts, ends, this.file, this.key);
    return this.read(starts, ends);
  }

  private read(starts: number[], ends: number[]): NumericArray {
    const outShape = starts.map((s, i) => ends[i]! - s);
    const out = typedArrayFor(this.dtype.name, product(outShape));
    if (out.length === 0) return out;
    const flat = this.shape.length === 2;
    const [z0, z1] = flat ? [0, 1] : [starts[0]!, ends[0]!];
    for (let z = z0; z < z1; z++) {
      const img = this.decode(this.slices[z]!);
      if (flat) copyRegion(out, outShape, starts, img, [this.height, this.width], [0, 0], starts, ends);
      else copyRegion(out, outShape, starts, img, [1, this.height, this.width], [z, 0, 0], [z, starts[1]!, starts[2]!], [z + 1, ends[1]!, ends[2]!]);
    }
    return out;
  }

  attrs(): Record<string, unknown> {
    return {};
  }

  close(): void {
    // files are opened per read
  }
}

function corrupt(file: string, message: string, hint = 'the image file is truncated or damaged; re-export it from its source'): LazyLabelError {
  return new LazyLabelError(message, { code: 'corrupt', file, hint });
}

function unsupported(file: string, message: string, hint: string): LazyLabelError {
  return new LazyLabelError(message, { code: 'unsupported-format', file, hint });
}

/** Image files of one kind in a folder, natural order, hidden files skipped. */
function slicesIn(dir: string, ext: RegExp): string[] {
  return naturalSort(fs.readdirSync(dir).filter((n) => ext.test(n) && !n.startsWith('.'))).map((n) => path.join(dir, n));
}

// ---------------------------------------------------------------- TIFF

/** Bytes per value of each TIFF field type (classic TIFF). */
const TYPE_SIZE: Record<number, number> = { 1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8 };

/** The tags a page needs to be decoded; everything else (EXIF, descriptions, sub-IFDs) is left behind. */
const KEEP_TAGS = new Set([254, 256, 257, 258, 259, 262, 266, 273, 274, 277, 278, 279, 284, 317, 320, 322, 323, 324, 325, 338, 339]);
const T = {
  subfileType: 254, width: 256, height: 257, bits: 258, compression: 259, photometric: 262, stripOffsets: 273,
  samplesPerPixel: 277, rowsPerStrip: 278, stripByteCounts: 279, planar: 284, predictor: 317,
  tileWidth: 322, tileLength: 323, tileOffsets: 324, tileByteCounts: 325, sampleFormat: 339,
} as const;

interface IfdEntry {
  tag: number;
  type: number;
  count: number;
  /** The value bytes, in the file's byte order. */
  raw: Buffer;
}

interface TiffPage {
  littleEndian: boolean;
  entries: Map<number, IfdEntry>;
  width: number;
  height: number;
  bits: number;
  sampleFormat: number;
  samplesPerPixel: number;
}

function values(e: IfdEntry | undefined, le: boolean): number[] {
  if (!e) return [];
  const out: number[] = [];
  const size = TYPE_SIZE[e.type]!;
  for (let i = 0; i < e.count; i++) {
    const o = i * size;
    switch (e.type) {
      case 1: case 7: out.push(e.raw.readUInt8(o)); break;
      case 6: out.push(e.raw.readInt8(o)); break;
      case 3: out.push(le ? e.raw.readUInt16LE(o) : e.raw.readUInt16BE(o)); break;
      case 8: out.push(le ? e.raw.readInt16LE(o) : e.raw.readInt16BE(o)); break;
      case 4: out.push(le ? e.raw.readUInt32LE(o) : e.raw.readUInt32BE(o)); break;
      case 9: out.push(le ? e.raw.readInt32LE(o) : e.raw.readInt32BE(o)); break;
      default: return out;
    }
  }
  return out;
}

/** Positional reads with a clear error past the end of the file. */
class FileReader {
  readonly size: number;
  private constructor(readonly file: string, private readonly fd: number) {
    this.size = fs.fstatSync(fd).size;
  }

  static open(file: string): FileReader {
    try {
      return new FileReader(file, fs.openSync(file, 'r'));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new LazyLabelError(code === 'ENOENT' ? 'file not found' : `cannot open: ${(e as Error).message}`, { code: code === 'ENOENT' ? 'file-missing' : 'corrupt', file });
    }
  }

  read(offset: number, length: number, what: string): Buffer {
    if (offset < 0 || offset + length > this.size) throw corrupt(this.file, `TIFF ${what} lies past the end of the file (${this.size} bytes): the file is truncated`);
    const buf = Buffer.alloc(length);
    if (length > 0) fs.readSync(this.fd, buf, 0, length, offset);
    return buf;
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

/** Walk a TIFF's IFD chain (classic TIFF), keeping what decoding needs; at most `maxPages` pages. */
function readTiffPages(file: string, maxPages = Infinity): { pages: TiffPage[]; more: boolean } {
  const r = FileReader.open(file);
  try {
    const head = r.read(0, 8, 'header');
    const order = head.toString('latin1', 0, 2);
    if (order !== 'II' && order !== 'MM') throw corrupt(file, 'not a TIFF file (no II/MM byte-order mark)');
    const le = order === 'II';
    const magic = le ? head.readUInt16LE(2) : head.readUInt16BE(2);
    if (magic === 43) throw unsupported(file, 'BigTIFF files are not supported', 'save the stack as classic TIFF (< 4 GiB), a folder of TIFF slices, HDF5 or zarr');
    if (magic !== 42) throw corrupt(file, 'not a TIFF file (bad magic number)');
    const u16 = (b: Buffer, o: number): number => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
    const u32 = (b: Buffer, o: number): number => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
    let next = u32(head, 4);
    const seen = new Set<number>();
    const pages: TiffPage[] = [];
    while (next !== 0 && pages.length < maxPages) {
      if (seen.has(next)) throw corrupt(file, 'the TIFF page chain loops');
      seen.add(next);
      const n = u16(r.read(next, 2, `page ${pages.length} directory`), 0);
      const body = r.read(next + 2, n * 12 + 4, `page ${pages.length} directory`);
      const entries = new Map<number, IfdEntry>();
      for (let i = 0; i < n; i++) {
        const o = i * 12;
        const tag = u16(body, o);
        const type = u16(body, o + 2);
        const count = u32(body, o + 4);
        const size = TYPE_SIZE[type];
        if (!KEEP_TAGS.has(tag) || size === undefined) continue;
        const bytes = size * count;
        const raw = bytes <= 4 ? Buffer.from(body.subarray(o + 8, o + 8 + bytes)) : r.read(u32(body, o + 8), bytes, `page ${pages.length} tag ${tag}`);
        entries.set(tag, { tag, type, count, raw });
      }
      next = u32(body, n * 12);
      const one = (tag: number, dflt: number): number => values(entries.get(tag), le)[0] ?? dflt;
      // reduced-resolution copies (thumbnails, pyramid levels) are not z slices
      if (one(T.subfileType, 0) & 1) continue;
      pages.push({
        littleEndian: le, entries,
        width: one(T.width, 0), height: one(T.height, 0), bits: one(T.bits, 1),
        sampleFormat: one(T.sampleFormat, 1), samplesPerPixel: one(T.samplesPerPixel, 1),
      });
    }
    return { pages, more: next !== 0 };
  } finally {
    r.close();
  }
}

/** The volume dtype of a page, or an error saying why lazylabel cannot read it. */
function tiffDtype(file: string, p: TiffPage): DTypeName {
  const le = p.littleEndian;
  const one = (tag: number, dflt: number): number => values(p.entries.get(tag), le)[0] ?? dflt;
  if (p.width < 1 || p.height < 1) throw corrupt(file, 'TIFF page has no width or height');
  if (p.samplesPerPixel !== 1) {
    throw unsupported(file, `TIFF pages with ${p.samplesPerPixel} samples per pixel (colour) are not supported`, 'save the stack as single-channel (greyscale) TIFF');
  }
  const compression = one(T.compression, 1);
  if (![1, 5, 8, 32946].includes(compression)) {
    throw unsupported(file, `TIFF compression ${compression} is not supported`, 'save the stack uncompressed or with LZW / deflate (zlib) compression');
  }
  if (one(T.predictor, 1) === 3) throw unsupported(file, 'TIFF floating-point predictor is not supported', 'save the stack without a predictor');
  const { bits, sampleFormat: sf } = p;
  if (bits === 8 && sf !== 3) return sf === 2 ? 'int8' : 'uint8';
  if (bits === 16 && sf !== 3) return sf === 2 ? 'int16' : 'uint16';
  if (bits === 32 && sf === 3) return 'float32';
  if (bits === 64 && sf === 3) return 'float64';
  throw unsupported(file, `${bits}-bit ${sf === 3 ? 'float' : sf === 2 ? 'signed integer' : 'integer'} TIFF pages are not supported`,
    'TIFF stacks must be 8/16-bit greyscale or 32/64-bit float; use HDF5, zarr or N5 for 32-bit labels');
}

/** A standalone single-page TIFF holding one page of `file`: its decoding tags and its strips / tiles only. */
function extractPage(file: string, p: TiffPage): Uint8Array {
  const le = p.littleEndian;
  const tiled = p.entries.has(T.tileOffsets);
  const offTag = tiled ? T.tileOffsets : T.stripOffsets;
  const cntTag = tiled ? T.tileByteCounts : T.stripByteCounts;
  const offsets = values(p.entries.get(offTag), le);
  let counts = values(p.entries.get(cntTag), le);
  if (offsets.length === 0) throw corrupt(file, 'TIFF page has no image data offsets');
  if (counts.length !== offsets.length) {
    const one = (tag: number, dflt: number): number => values(p.entries.get(tag), le)[0] ?? dflt;
    if (tiled || one(T.compression, 1) !== 1) throw corrupt(file, 'TIFF page lacks the byte counts of its strips');
    const rows = Math.min(one(T.rowsPerStrip, p.height), p.height);
    counts = offsets.map(() => rows * p.width * (p.bits / 8));
  }
  const entries = [...p.entries.values()].sort((a, b) => a.tag - b.tag);
  const ifdSize = 2 + entries.length * 12 + 4;
  // layout: header, IFD, out-of-line values, image data
  const valueOf = new Map<number, Buffer>();
  for (const e of entries) {
    if (e.tag === offTag) {
      const b = Buffer.alloc(4 * e.count);
      valueOf.set(e.tag, b); // filled once the data offsets are known
    } else if (e.tag === T.photometric && values(e, le)[0] === 0) {
      // WhiteIsZero: `tiff` would invert the values; tifffile (and we) return them as stored
      const b = Buffer.alloc(2);
      if (le) b.writeUInt16LE(1); else b.writeUInt16BE(1);
      valueOf.set(e.tag, b);
    } else valueOf.set(e.tag, e.raw);
  }
  let cursor = 8 + ifdSize;
  const valueAt = new Map<number, number>();
  for (const e of entries) {
    const v = valueOf.get(e.tag)!;
    if (v.length > 4) {
      cursor += cursor % 2;
      valueAt.set(e.tag, cursor);
      cursor += v.length;
    }
  }
  cursor += cursor % 2;
  const dataStart = cursor;
  const total = counts.reduce((a, b) => a + b, 0);
  const out = Buffer.alloc(dataStart + total);
  const w16 = (v: number, o: number): number => (le ? out.writeUInt16LE(v, o) : out.writeUInt16BE(v, o));
  const w32 = (v: number, o: number): number => (le ? out.writeUInt32LE(v, o) : out.writeUInt32BE(v, o));
  out.write(le ? 'II' : 'MM', 0, 'latin1');
  w16(42, 2);
  w32(8, 4);
  // image data, and the new offsets of each strip / tile
  const r = FileReader.open(file);
  const offsetValues = valueOf.get(offTag)!;
  try {
    let at = dataStart;
    for (let i = 0; i < offsets.length; i++) {
      r.read(offsets[i]!, counts[i]!, `${tiled ? 'tile' : 'strip'} ${i}`).copy(out, at);
      if (le) offsetValues.writeUInt32LE(at, 4 * i); else offsetValues.writeUInt32BE(at, 4 * i);
      at += counts[i]!;
    }
  } finally {
    r.close();
  }
  w16(entries.length, 8);
  entries.forEach((e, i) => {
    const o = 10 + i * 12;
    const v = valueOf.get(e.tag)!;
    const type = e.tag === offTag ? 4 : v !== e.raw ? 3 : e.type; // rewritten offsets are LONG, a rewritten photometric SHORT
    w16(e.tag, o);
    w16(type, o + 2);
    w32(e.count, o + 4);
    if (v.length <= 4) v.copy(out, o + 8);
    else {
      w32(valueAt.get(e.tag)!, o + 8);
      v.copy(out, valueAt.get(e.tag)!);
    }
  });
  w32(0, 10 + entries.length * 12); // no next page
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

class TiffStack extends StackVolume {
  readonly format = 'tiff' as const;

  protected decode(slice: Slice): NumericArray {
    const mini = extractPage(slice.file, slice.page!);
    let data: ArrayLike<number> & { buffer: ArrayBufferLike; byteOffset: number; length: number };
    try {
      const ifd = decodeTiff(mini)[0];
      if (!ifd) throw new Error('no page decoded');
      data = ifd.data;
    } catch (e) {
      throw corrupt(slice.file, `TIFF page cannot be decoded: ${(e as Error).message}`);
    }
    const n = this.height * this.width;
    if (data.length < n) throw corrupt(slice.file, `TIFF page decoded to ${data.length} values, expected ${n}`);
    // `tiff` returns unsigned arrays for signed 8/16-bit data: reinterpret the same bytes
    switch (this.dtype.name) {
      case 'int8': return new Int8Array(data.buffer, data.byteOffset, n);
      case 'int16': return new Int16Array(data.buffer, data.byteOffset, n);
      default: return (data as NumericArray).subarray(0, n);
    }
  }
}

/** A multi-page TIFF file, a single-page TIFF (2-D) or a folder of single-page TIFFs. */
export async function openTiffStack(file: string): Promise<VolumeReader> {
  decodeTiff ??= (await import('tiff')).decode;
  const isDir = fs.statSync(file).isDirectory();
  const slices: Slice[] = [];
  if (isDir) {
    const files = slicesIn(file, TIFF_EXT);
    if (files.length === 0) throw unsupported(file, 'the folder holds no .tif / .tiff files', 'point at a folder of TIFF slices or at a TIFF stack');
    for (const f of files) {
      const { pages, more } = readTiffPages(f, 1);
      if (pages.length === 0) throw corrupt(f, 'TIFF file holds no full-resolution page');
      if (more) throw unsupported(f, 'a TIFF slice in a folder holds several pages', 'a folder must hold one single-page TIFF per z slice; open multi-page stacks one file at a time');
      slices.push({ file: f, page: pages[0]! });
    }
  } else {
    const { pages } = readTiffPages(file);
    if (pages.length === 0) throw corrupt(file, 'TIFF file holds no full-resolution page');
    for (const page of pages) slices.push({ file, page });
  }
  const first = slices[0]!.page!;
  const dt = tiffDtype(slices[0]!.file, first);
  slices.forEach((s, i) => {
    const p = s.page!;
    const where = isDir ? path.basename(s.file) : `page ${i}`;
    if (p.width !== first.width || p.height !== first.height) {
      throw corrupt(s.file, `${where} is ${p.width}×${p.height}, the first slice is ${first.width}×${first.height}`, 'all slices of a stack must have the same size');
    }
    if (tiffDtype(s.file, p) !== dt) throw corrupt(s.file, `${where} is ${tiffDtype(s.file, p)}, the first slice is ${dt}`, 'all slices of a stack must have the same pixel type');
  });
  return new TiffStack(file, slices, first.height, first.width, dt, !isDir && slices.length === 1);
}

// ---------------------------------------------------------------- PNG

interface PngHeader {
  width: number;
  height: number;
  depth: number;
  colorType: number;
}

function readPngHeader(file: string): PngHeader {
  const r = FileReader.open(file);
  let head: Buffer;
  try {
    if (r.size < 29) throw corrupt(file, 'PNG file is too short to hold a header');
    head = r.read(0, 29, 'header');
  } finally {
    r.close();
  }
  if (!head.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) || head.toString('latin1', 12, 16) !== 'IHDR') {
    throw corrupt(file, 'not a PNG file');
  }
  return { width: head.readUInt32BE(16), height: head.readUInt32BE(20), depth: head[24]!, colorType: head[25]! };
}

class PngStack extends StackVolume {
  readonly format = 'png' as const;

  protected decode(slice: Slice): NumericArray {
    let png: PNG;
    try {
      png = PngDecoder.sync.read(fs.readFileSync(slice.file), { skipRescale: true });
    } catch (e) {
      throw corrupt(slice.file, `PNG cannot be decoded: ${(e as Error).message}`);
    }
    if (png.width !== this.width || png.height !== this.height) throw corrupt(slice.file, `PNG is ${png.width}×${png.height}, the stack is ${this.width}×${this.height}`);
    const n = this.width * this.height;
    const rgba = png.data as unknown as ArrayLike<number>; // Buffer, or Uint16Array for 16-bit images
    const out = typedArrayFor(this.dtype.name, n);
    for (let i = 0; i < n; i++) {
      const v = rgba[4 * i]!;
      if (rgba[4 * i + 1] !== v || rgba[4 * i + 2] !== v) {
        throw unsupported(slice.file, 'PNG slice is in colour (red, green and blue differ)', 'save the slices as 8/16-bit greyscale PNGs');
      }
      out[i] = v;
    }
    return out;
  }
}

/** A folder of PNG slices (natural filename order) or one PNG image (2-D). */
export async function openPngStack(file: string): Promise<VolumeReader> {
  PngDecoder ??= (await import('pngjs')).PNG;
  const isDir = fs.statSync(file).isDirectory();
  const files = isDir ? slicesIn(file, PNG_EXT) : [file];
  if (files.length === 0) throw unsupported(file, 'the folder holds no .png files', 'point at a folder of PNG slices');
  const headers = files.map(readPngHeader);
  const first = headers[0]!;
  headers.forEach((h, i) => {
    const f = files[i]!;
    if (h.colorType === 3) throw unsupported(f, 'palette PNGs are not supported', 'save the slices as 8/16-bit greyscale PNGs');
    if (h.width !== first.width || h.height !== first.height) {
      throw corrupt(f, `${path.basename(f)} is ${h.width}×${h.height}, ${path.basename(files[0]!)} is ${first.width}×${first.height}`, 'all slices of a stack must have the same size');
    }
    if ((h.depth === 16) !== (first.depth === 16)) {
      throw corrupt(f, `${path.basename(f)} has ${h.depth}-bit pixels, ${path.basename(files[0]!)} ${first.depth}-bit`, 'all slices of a stack must have the same bit depth');
    }
  });
  return new PngStack(file, files.map((f) => ({ file: f })), first.height, first.width, first.depth === 16 ? 'uint16' : 'uint8', !isDir);
}
