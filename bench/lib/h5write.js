// Writing bench volumes with h5wasm, slab by slab (the generator never holds a whole volume).
// Chunked layouts go through our own H5Sink/SlabWriter (dist/io/hdf5.js). Contiguous layouts cannot:
// SlabWriter grows the dataset along axis 0, which HDF5 only allows for chunked datasets. For those we
// create a fixed-size contiguous dataset with h5wasm's low-level create_dataset and no data (libhdf5 then
// skips the initial write with a "no input buffer" diagnostic, which we swallow) and fill it with
// write_slice, one slab at a time.
import fs from 'node:fs';
import h5wasm, * as h5 from 'h5wasm/node';
import { H5Sink } from '../../dist/io/hdf5.js';

const TYPE = {
  int8: { type: 0, size: 1, signed: true, code: '<b' },
  uint8: { type: 0, size: 1, signed: false, code: '<B' },
  int16: { type: 0, size: 2, signed: true, code: '<h' },
  uint16: { type: 0, size: 2, signed: false, code: '<H' },
};

/** Run fn with libhdf5's stderr diagnostics (written through fs.writeSync(2, ...)) swallowed; return them. */
function quietly(fn) {
  const original = fs.writeSync;
  const captured = [];
  fs.writeSync = (fd, buf, ...rest) => {
    if (fd !== 2) return original(fd, buf, ...rest);
    if (typeof buf === 'string') {
      captured.push(buf);
      return Buffer.byteLength(buf);
    }
    // emscripten passes (fd, HEAP8, offset, length): only that window is the message
    const offset = typeof rest[0] === 'number' ? rest[0] : 0;
    const length = typeof rest[1] === 'number' ? rest[1] : buf.byteLength - offset;
    captured.push(Buffer.from(buf.buffer, buf.byteOffset + offset, length).toString('utf8'));
    return length;
  };
  try {
    return { value: fn(), diagnostics: captured.join('') };
  } finally {
    fs.writeSync = original;
  }
}

/**
 * An HDF5 file being written. `layout` is 'contiguous' or 'chunked' ({ chunks, gzip } per dataset).
 * Use: const f = await BenchFile.create(path, layout); const w = f.volume('lab', shape, 'int16'); w.write(slab) ...; f.small('info', ...); f.close().
 */
export class BenchFile {
  static async create(path, layout) {
    fs.rmSync(path, { force: true });
    if (layout.kind === 'chunked') {
      const sink = await H5Sink.create(path);
      return new BenchFile(path, layout, sink, null);
    }
    await h5wasm.ready;
    const file = new h5wasm.File(path, 'w', { libver: ['earliest', 'v110'] });
    return new BenchFile(path, layout, null, file);
  }

  constructor(path, layout, sink, file) {
    this.path = path;
    this.layout = layout;
    this.sink = sink;
    this.file = file;
  }

  /** A volume filled by `write(slab)` calls along axis 0, in order. */
  volume(key, shape, dtype) {
    if (this.sink) {
      const chunks = this.layout.chunks.map((c, i) => Math.min(c, shape[i]));
      return this.sink.createDataset(key, { shape, dtype, chunks, gzip: this.layout.gzip });
    }
    const t = TYPE[dtype];
    const meta = {
      type: t.type, size: t.size, signed: t.signed, littleEndian: true, vlen: false,
      shape: shape.map(BigInt), maxshape: shape.map(BigInt), chunks: null,
      compression: 0, compression_opts: [], track_order: false,
    };
    const r = quietly(() => h5.Module.create_dataset(this.file.file_id, `/${key}`, 0n, meta));
    if (!/no input buffer/.test(r.diagnostics) && r.diagnostics.trim()) throw new Error(`creating ${key}: ${r.diagnostics}`);
    const ds = this.file.get(key);
    if (!ds || ds.metadata.chunks !== null) throw new Error(`could not create contiguous dataset ${key}`);
    let written = 0;
    const rowSize = shape.slice(1).reduce((a, b) => a * b, 1);
    return {
      write(data) {
        const rows = data.length / rowSize;
        ds.write_slice([[written, written + rows]], data);
        written += rows;
      },
      get rowsWritten() {
        return written;
      },
    };
  }

  /** A small dataset written in one go (info), contiguous. */
  small(key, shape, dtype, data) {
    if (this.sink) return this.sink.writeSmall(key, shape, dtype, data);
    this.file.create_dataset({ name: key, data, shape, dtype: TYPE[dtype].code });
  }

  close() {
    if (this.sink) this.sink.close();
    else {
      this.file.flush();
      this.file.close();
    }
  }
}
