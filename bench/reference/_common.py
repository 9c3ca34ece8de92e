"""Shared pieces of the h5py + NumPy reference scripts: chunk-aligned slab iteration and the label tally.

Run with Debian's interpreter (/usr/bin/python3, python3-h5py, python3-numpy). Memory stays bounded by one
slab (about --slab-mb MiB of label values plus NumPy temporaries), like lazylabel's own streaming.
"""
import json
import sys

import numpy as np

DEFAULT_SLAB_MB = 64
MAX_TRACKED = 64


def split_ref(text, default_key):
    """'file.h5' or 'file.h5:key' -> (file, key)."""
    if ':' in text and not text.endswith(':'):
        f, k = text.rsplit(':', 1)
        return f, k
    return text, default_key


def slab_rows(ds, slab_mb=DEFAULT_SLAB_MB, bytes_per_voxel=None):
    """Rows per slab: about slab_mb MiB at bytes_per_voxel, whole chunk layers when chunked (as lazylabel does)."""
    shape = ds.shape
    row = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    # same budget rule as lazylabel (ops/scan.ts slabBytesPerVoxel): the slab plus one copy per voxel
    bpv = bytes_per_voxel or 2 * ds.dtype.itemsize
    rows = max(1, (slab_mb << 20) // max(1, row * bpv))
    align = ds.chunks[0] if ds.chunks else 1
    if align > 1:
        rows = max(align, rows - rows % align)
    return min(rows, shape[0]) if shape else 1


def slabs(ds, rows):
    for a in range(0, ds.shape[0], rows):
        yield a, min(ds.shape[0], a + rows)


class Tally:
    """Per-class counts, ignored (-1), out-of-range values and non-integral values of a label volume."""

    def __init__(self, n_lab, method='eq'):
        self.n_lab = n_lab
        self.method = method
        self.counts = np.zeros(n_lab + 1, np.int64)  # index 0: -1, index c+1: class c
        self.voxels = 0
        self.out_of_range = {}
        self.out_of_range_voxels = 0
        self.non_integral = 0

    def add(self, slab):
        flat = slab.reshape(-1)
        self.voxels += flat.size
        if flat.dtype.kind == 'f':
            bad = ~np.isfinite(flat) | (flat != np.floor(flat))
            nbad = int(np.count_nonzero(bad))
            if nbad:
                self.non_integral += nbad
                flat = flat[~bad]
            flat = flat.astype(np.int64)
        if flat.dtype == np.bool_:
            flat = flat.view(np.uint8)
        if flat.size == 0:
            return
        lo, hi = int(flat.min()), int(flat.max())
        top = self.n_lab
        if lo < -1 or hi >= top:
            bad = (flat < -1) | (flat >= top)
            vals, cnts = np.unique(flat[bad], return_counts=True)
            for v, c in zip(vals.tolist(), cnts.tolist()):
                self.out_of_range_voxels += c
                if v in self.out_of_range or len(self.out_of_range) < MAX_TRACKED:
                    self.out_of_range[v] = self.out_of_range.get(v, 0) + c
            flat = flat[~bad]
            if flat.size == 0:
                return
            lo, hi = int(flat.min()), int(flat.max())
        if self.method == 'eq' and top + 1 <= 16:
            # few classes: one vectorised comparison per value present is several times faster than
            # np.bincount, which first widens every value to intp (measured in bench/README.md)
            for v in range(lo, hi + 1):
                self.counts[v + 1] += np.count_nonzero(flat == v)
        else:
            idx = flat.astype(np.intp)
            idx += 1
            self.counts += np.bincount(idx, minlength=top + 1)[: top + 1]

    def result(self):
        return {
            'voxels': int(self.voxels),
            'class_counts': [int(c) for c in self.counts[1:]],
            'ignored': int(self.counts[0]),
            'out_of_range': {str(k): v for k, v in sorted(self.out_of_range.items())},
            'out_of_range_voxels': int(self.out_of_range_voxels),
            'non_integral': int(self.non_integral),
        }


def tally_dataset(ds, n_lab, slab_mb=DEFAULT_SLAB_MB, method='eq'):
    """Stream a label dataset through a Tally, reading whole chunk layers into one reused buffer."""
    t = Tally(n_lab, method)
    if ds.ndim == 0:
        t.add(np.asarray(ds[()]).reshape(1))
        return t.result()
    rows = slab_rows(ds, slab_mb)
    buf = np.empty((rows,) + ds.shape[1:], ds.dtype)
    for a, b in slabs(ds, rows):
        view = buf[: b - a]
        ds.read_direct(view, np.s_[a:b], np.s_[0 : b - a])
        t.add(view)
    return t.result()


def emit(obj):
    json.dump(obj, sys.stdout, indent=1)
    sys.stdout.write('\n')
