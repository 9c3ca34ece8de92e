#!/usr/bin/python3
"""Reference for `lazylabel check`, written the way one would with h5py + NumPy.

    /usr/bin/python3 bench/reference/check_ref.py LABEL[:key]... --n-lab N [--raw RAW[:key]]... [--info-key info]

Per file: stream the label dataset in chunk-aligned slabs (bounded memory), count voxels per class,
ignored (-1), out-of-range and non-integral values; validate `info` (shape (2, n_lab), 0/1 entries,
float storage) and its consistency with the counts; compare the raw spatial shape. Prints JSON.
"""
import argparse
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import DEFAULT_SLAB_MB, emit, split_ref, tally_dataset  # noqa: E402


def parse_info(f, key, n_lab, findings):
    """(labeled, not_present) lists of 0/1, the ELEKTRONN default when absent, or None when unusable."""
    if key not in f:
        findings.append(('info', 'info-missing'))
        return [1] * n_lab, [0] * n_lab, 'default'
    info = f[key][()]
    if info.shape != (2, n_lab):
        findings.append(('error', 'info-shape'))
        return None
    if not np.isin(info, (0, 1)).all():
        findings.append(('error', 'info-values'))
        return None
    if info.dtype.kind == 'f':
        findings.append(('warning', 'info-float'))
    return [int(v) for v in info[0]], [int(v) for v in info[1]], 'file'


def check_file(label, raw, n_lab, info_key, slab_mb, method):
    path, key = label
    findings = []
    with h5py.File(path, 'r') as f:
        ds = f[key]
        if ds.ndim not in (2, 3):
            findings.append(('error', 'label-ndim'))
        tally = tally_dataset(ds, n_lab, slab_mb, method)
        if ds.dtype.kind == 'f':
            findings.append(('error', 'label-non-integral') if tally['non_integral'] else ('warning', 'label-float-integral'))
        if tally['out_of_range_voxels']:
            findings.append(('error', 'label-out-of-range'))
        parsed = parse_info(f, info_key, n_lab, findings)
        shape = list(ds.shape)
    info = None
    if parsed is not None:
        labeled, not_present, source = parsed
        info = {'labeled': labeled, 'not_present': not_present, 'source': source}
        counts = tally['class_counts']
        for c, n in enumerate(counts):
            if not_present[c] and n > 0:
                findings.append(('error', 'not-present-has-voxels'))
            elif not labeled[c] and n > 0:
                findings.append(('warning', 'unlabeled-class-has-voxels'))
        labelled = sum(n for c, n in enumerate(counts) if labeled[c])
        if labelled == 0 and not any(not_present):
            findings.append(('warning', 'no-training-signal'))
        tally['labelled_voxels'] = labelled
    if raw is not None:
        with h5py.File(raw[0], 'r') as g:
            rshape = list(g[raw[1]].shape)
        spatial = rshape if len(rshape) == len(shape) else rshape[1:] if len(rshape) == len(shape) + 1 else None
        if spatial is None:
            findings.append(('error', 'raw-ndim'))
        elif spatial != shape:
            findings.append(('error', 'raw-shape-mismatch'))
    sev = {s for s, _ in findings}
    status = 'error' if 'error' in sev else 'warn' if 'warning' in sev else 'ok'
    return {'path': path, 'dataset': key, 'shape': shape, 'status': status, 'info': info,
            'findings': [code for _, code in findings], **tally}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('files', nargs='+')
    p.add_argument('--n-lab', type=int, required=True)
    p.add_argument('--label-key', default='lab')
    p.add_argument('--info-key', default='info')
    p.add_argument('--raw', action='append', default=[])
    p.add_argument('--raw-key', default='raw')
    p.add_argument('--slab-mb', type=int, default=DEFAULT_SLAB_MB)
    p.add_argument('--tally', choices=['eq', 'bincount'], default='eq', help='counting method (eq: one comparison per class value; bincount)')
    a = p.parse_args()
    if a.raw and len(a.raw) != len(a.files):
        p.error('--raw pairs with label files in order')
    files = []
    for i, text in enumerate(a.files):
        raw = split_ref(a.raw[i], a.raw_key) if a.raw else None
        files.append(check_file(split_ref(text, a.label_key), raw, a.n_lab, a.info_key, a.slab_mb, a.tally))
    ok = all(f['status'] != 'error' for f in files)
    emit({'command': 'check', 'ok': ok, 'files': files})
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
