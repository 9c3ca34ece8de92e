#!/usr/bin/python3
"""Compare two label files value by value (slab by slab): lazylabel's convert output against the reference's.

    /usr/bin/python3 bench/reference/compare_outputs.py A.h5[:lab] B.h5[:lab]

Prints JSON {equal, voxels, differing, info_equal, dtypes, chunks, compression}; exit 0 when equal.
"""
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, slab_rows, slabs, split_ref  # noqa: E402


def main():
    (pa, ka), (pb, kb) = split_ref(sys.argv[1], 'lab'), split_ref(sys.argv[2], 'lab')
    with h5py.File(pa, 'r') as fa, h5py.File(pb, 'r') as fb:
        a, b = fa[ka], fb[kb]
        res = {'shapes': [list(a.shape), list(b.shape)], 'dtypes': [str(a.dtype), str(b.dtype)],
               'chunks': [a.chunks, b.chunks], 'compression': [[a.compression, a.compression_opts], [b.compression, b.compression_opts]]}
        differing = 0
        if a.shape == b.shape:
            for s, e in slabs(a, slab_rows(a)):
                differing += int(np.count_nonzero(a[s:e] != b[s:e]))
        res['voxels'] = int(np.prod(a.shape))
        res['differing'] = differing
        ia = fa['info'][()] if 'info' in fa else None
        ib = fb['info'][()] if 'info' in fb else None
        res['info_equal'] = ia is not None and ib is not None and np.array_equal(ia, ib)
        res['equal'] = a.shape == b.shape and a.dtype == b.dtype and differing == 0 and res['info_equal']
    emit(res)
    return 0 if res['equal'] else 1


if __name__ == '__main__':
    sys.exit(main())
