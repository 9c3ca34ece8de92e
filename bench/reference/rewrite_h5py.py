#!/usr/bin/python3
"""Rewrite the bench files that lazylabel's generator wrote with h5wasm as files written by h5py.

    /usr/bin/python3 bench/reference/rewrite_h5py.py SRC_DIR DST_DIR --layout contiguous|chunked

Copies every .h5 file under SRC_DIR (and manifest.json files) to DST_DIR, dataset by dataset, in
chunk-aligned slabs (never a whole volume in memory). Volumes (3-D) get the layout asked for: contiguous,
or chunked 64^3 + gzip level 1; small datasets (info) are written as they are. The values are identical;
only the writer (h5py/libhdf5 with its default file format) differs.
"""
import argparse
import os
import shutil
import sys

import h5py
import numpy as np


def copy_file(src, dst, layout):
    tmp = dst + '.tmp'
    with h5py.File(src, 'r') as fi, h5py.File(tmp, 'w') as fo:
        def visit(name, obj):
            if not isinstance(obj, h5py.Dataset):
                return
            if obj.ndim < 3:
                fo.create_dataset(name, data=obj[()])
            else:
                kw = {}
                if layout == 'chunked':
                    kw = dict(chunks=tuple(min(64, n) for n in obj.shape), compression='gzip', compression_opts=1)
                out = fo.create_dataset(name, shape=obj.shape, dtype=obj.dtype, **kw)
                rows = obj.chunks[0] if obj.chunks else 64
                rows = max(rows, (64 << 20) // (obj.dtype.itemsize * int(np.prod(obj.shape[1:]))) // rows * rows)
                for a in range(0, obj.shape[0], rows):
                    out[a : a + rows] = obj[a : a + rows]
            for k, v in obj.attrs.items():
                fo[name].attrs[k] = v
        fi.visititems(visit)
    os.replace(tmp, dst)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('src')
    p.add_argument('dst')
    p.add_argument('--layout', choices=['contiguous', 'chunked'], required=True)
    a = p.parse_args()
    for root, _, names in os.walk(a.src):
        rel = os.path.relpath(root, a.src)
        out_dir = os.path.normpath(os.path.join(a.dst, rel))
        os.makedirs(out_dir, exist_ok=True)
        for n in sorted(names):
            if n.endswith('.h5'):
                copy_file(os.path.join(root, n), os.path.join(out_dir, n), a.layout)
            elif n == 'manifest.json':
                shutil.copyfile(os.path.join(root, n), os.path.join(out_dir, n))
    return 0


if __name__ == '__main__':
    sys.exit(main())
