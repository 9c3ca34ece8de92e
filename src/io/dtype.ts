/** Element types of volumes: what HDF5 stores, mapped to one small vocabulary the core understands. */

export type DTypeName =
  | 'int8' | 'int16' | 'int32' | 'int64'
  | 'uint8' | 'uint16' | 'uint32' | 'uint64'
  | 'float32' | 'float64'
  | 'bool';

export type DTypeKind = 'int' | 'uint' | 'float' | 'bool';

export interface DType {
  name: DTypeName;
  kind: DTypeKind;
  bytes: number;
}

/** The typed arrays a slab may come back as (64-bit integers are widened to Float64Array on read). */
export type NumericArray =
  | Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array
  | Float32Array | Float64Array;

const KIND_OF: Record<DTypeName, DTypeKind> = {
  int8: 'int', int16: 'int', int32: 'int', int64: 'int',
  uint8: 'uint', uint16: 'uint', uint32: 'uint', uint64: 'uint',
  float32: 'float', float64: 'float', bool: 'bool',
};

const BYTES_OF: Record<DTypeName, number> = {
  int8: 1, int16: 2, int32: 4, int64: 8, uint8: 1, uint16: 2, uint32: 4, uint64: 8,
  float32: 4, float64: 8, bool: 1,
};

export function dtype(name: DTypeName): DType {
  return { name, kind: KIND_OF[name], bytes: BYTES_OF[name] };
}

/** h5wasm's numpy-style type strings, used when creating datasets. */
export const H5_TYPE_STRING: Record<Exclude<DTypeName, 'bool'>, string> = {
  int8: '<b', int16: '<h', int32: '<i', int64: '<q',
  uint8: '<B', uint16: '<H', uint32: '<I', uint64: '<Q',
  float32: '<f', float64: '<d',
};

/** HDF5 type classes as h5wasm reports them in `metadata.type`. */
const H5T_INTEGER = 0;
const H5T_FLOAT = 1;
const H5T_ENUM = 8;

interface H5TypeMetadata {
  type: number;
  size: number;
  signed: boolean;
  enum_type?: { members: Record<string, number> };
}

/**
 * Map h5wasm type metadata to a DType, or null for types no volume can have
 * (strings, compounds, references). h5py writes numpy bools as an int8 enum {FALSE, TRUE}.
 */
export function dtypeFromH5(meta: H5TypeMetadata): DType | null {
  if (meta.type === H5T_INTEGER) {
    const bits = meta.size * 8;
    const name = `${meta.signed ? 'int' : 'uint'}${bits}` as DTypeName;
    return name in KIND_OF ? dtype(name) : null;
  }
  if (meta.type === H5T_FLOAT) {
    if (meta.size === 4) return dtype('float32');
    if (meta.size === 8) return dtype('float64');
    return null;
  }
  if (meta.type === H5T_ENUM && meta.enum_type) {
    const names = Object.keys(meta.enum_type.members).map((n) => n.toUpperCase()).sort();
    if (names.length === 2 && names[0] === 'FALSE' && names[1] === 'TRUE') return dtype('bool');
    // Other enums are stored as integers; treat them as such.
    const name = `${meta.signed ? 'int' : 'uint'}${meta.size * 8}` as DTypeName;
    return name in KIND_OF ? dtype(name) : null;
  }
  return null;
}

/** A readable description for messages, e.g. "string" for types we cannot map. */
export function describeH5Type(meta: H5TypeMetadata): string {
  const mapped = dtypeFromH5(meta);
  if (mapped) return mapped.name;
  const classes: Record<number, string> = { 2: 'time', 3: 'string', 4: 'bitfield', 5: 'opaque', 6: 'compound', 7: 'reference', 9: 'variable-length', 10: 'array' };
  return classes[meta.type] ?? `HDF5 type class ${meta.type}`;
}

/** Allocate an empty typed array able to hold values of this dtype after reading (int64 → Float64Array). */
export function typedArrayFor(name: DTypeName, length: number): NumericArray {
  switch (name) {
    case 'int8': return new Int8Array(length);
    case 'uint8': case 'bool': return new Uint8Array(length);
    case 'int16': return new Int16Array(length);
    case 'uint16': return new Uint16Array(length);
    case 'int32': return new Int32Array(length);
    case 'uint32': return new Uint32Array(length);
    case 'float32': return new Float32Array(length);
    case 'int64': case 'uint64': case 'float64': return new Float64Array(length);
  }
}
