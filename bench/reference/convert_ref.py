#!/usr/bin/python3
"""Reference for `lazylabel convert --mask M --classes C`, written the way one would with h5py + NumPy.

    /usr/bin/python3 bench/reference/convert_ref.py --mask F[:mask] --classes F[:lab] --n-lab N -o OUT.h5
        [--chunks 64,128,64] [--gzip 4]

labels = where(mask > 0, classes, -1) as int16, streamed in chunk-aligned slabs and written chunked + gzip
(same chunk shape and level as lazylabel unless told otherwise), with `info` (2, n_lab) int8: row 0 = the
classes that occur, row 1 = 0. Inputs are read through an HDF5 chunk cache that holds one layer of
their chunks (h5py's rdcc_nbytes), so output slabs thinner than the input chunks do not re-inflate them. Refuses (exit 1, nothing written) when mapped values are out of range or
non-integral, or nothing is labelled. Written to a temporary sibling and renamed, like lazylabel. Prints
JSON with the counts. Unlike lazylabel it does not re-read the written file to check it.
"""
import argparse
import math
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import DEFAULT_SLAB_MB, Tally, emit, split_ref  # noqa: E402


def default_chunks(shape, nbytes, target=1 << 20):
    """lazylabel's io/hdf5.ts defaultChunks: halve axes round-robin until a chunk is <= target bytes."""
    chunks = [max(1, n) for n in shape]
    i = 0
    while math.prod(chunks) * nbytes > target and any(c > 1 for c in chunks):
        axis = i % len(chunks)
        if chunks[axis] > 1:
            chunks[axis] = -(-chunks[axis] // 2)
        i += 1
    return chunks


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--mask', required=True)
    p.add_argument('--classes', required=True)
    p.add_argument('--n-lab', type=int, required=True)
    p.add_argument('-o', '--output', required=True)
    p.add_argument('--out-key', default='lab')
    p.add_argument('--chunks', help='output chunk shape, e.g. 64,128,64 (default: lazylabel\'s rule)')
    p.add_argument('--gzip', type=int, default=4)
    p.add_argument('--slab-mb', type=int, default=DEFAULT_SLAB_MB)
    p.add_argument('--tally', choices=['eq', 'bincount'], default='eq')
    a = p.parse_args()
    mpath, mkey = split_ref(a.mask, 'mask')
    cpath, ckey = split_ref(a.classes, 'lab')
    # Output slabs follow the output chunks (a few rows when a row is large), which can cut the inputs'
    # chunks; a chunk cache that holds one layer of input chunks keeps each of them inflated once.
    cache = {}
    for path, key in ((mpath, mkey), (cpath, ckey)):
        with h5py.File(path, 'r') as f:
            d = f[key]
            if d.chunks:
                layer = d.chunks[0] * math.prod(-(-n // k) * k for n, k in zip(d.shape[1:], d.chunks[1:])) * d.dtype.itemsize
                cache[path] = max(cache.get(path, 1 << 20), min(layer + (1 << 20), 1 << 30))
    opts = lambda path: dict(rdcc_nbytes=cache.get(path, 1 << 20), rdcc_nslots=100_003, rdcc_w0=1.0)
    fm = h5py.File(mpath, 'r', **opts(mpath))
    fc = fm if os.path.abspath(cpath) == os.path.abspath(mpath) else h5py.File(cpath, 'r', **opts(cpath))
    m, c = fm[mkey], fc[ckey]
    if m.shape != c.shape:
        sys.exit(f'mask {m.shape} and classes {c.shape} differ')
    shape = m.shape
    row = math.prod(shape[1:])
    # lazylabel's budget: each input slab plus its copy, and the int16 output plus its copy
    bpv = 2 * m.dtype.itemsize + 2 * c.dtype.itemsize + 4
    rows_budget = max(1, (a.slab_mb << 20) // (row * bpv))
    if a.chunks:
        chunks = [int(v) for v in a.chunks.split(',')]
    else:
        chunks = default_chunks(shape, 2)
        chunks[0] = min(chunks[0], rows_budget)
    # slabs of whole output chunk layers within the budget, as lazylabel does
    rows = max(chunks[0], rows_budget - rows_budget % chunks[0])
    tally = Tally(a.n_lab, a.tally)
    out_dir = os.path.dirname(os.path.abspath(a.output))
    tmp = os.path.join(out_dir, f'.{os.path.basename(a.output)}.ref-tmp-{os.getpid()}')
    try:
        with h5py.File(tmp, 'w') as fo:
            out = fo.create_dataset(a.out_key, shape=shape, dtype=np.int16, chunks=tuple(chunks),
                                    compression='gzip' if a.gzip > 0 else None,
                                    compression_opts=a.gzip if a.gzip > 0 else None)
            mbuf = np.empty((rows,) + shape[1:], m.dtype)
            cbuf = np.empty((rows,) + shape[1:], c.dtype)
            for s in range(0, shape[0], rows):
                e = min(shape[0], s + rows)
                mv, cv = mbuf[: e - s], cbuf[: e - s]
                m.read_direct(mv, np.s_[s:e], np.s_[0 : e - s])
                c.read_direct(cv, np.s_[s:e], np.s_[0 : e - s])
                inside = mv > 0
                if cv.dtype.kind == 'f':
                    tally.add(np.where(inside, cv, -1.0))
                    lab = np.where(inside, cv, -1).astype(np.int16)
                else:
                    lab = np.where(inside, cv, np.int16(-1)).astype(np.int16, copy=False)
                    tally.add(lab)
                out[s:e] = lab
            t = tally.result()
            problems = []
            if t['non_integral']:
                problems.append('label-non-integral')
            if t['out_of_range_voxels']:
                problems.append('label-out-of-range')
            labeled = [1 if n > 0 else 0 for n in t['class_counts']]
            if not any(labeled):
                problems.append('no-training-signal')
            if problems:
                raise SystemExit(f'refusing to write {a.output}: {", ".join(problems)}')
            fo.create_dataset('info', data=np.array([labeled, [0] * a.n_lab], np.int8))
            attrs = {**dict(m.attrs), **dict(c.attrs)}
            for k, v in attrs.items():
                out.attrs[k] = v
        os.replace(tmp, a.output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    emit({'command': 'convert', 'output': a.output, 'chunks': chunks, 'gzip': a.gzip, 'slab_rows': rows,
          'info': {'labeled': labeled, 'not_present': [0] * a.n_lab}, **t})
    return 0


if __name__ == '__main__':
    sys.exit(main())
