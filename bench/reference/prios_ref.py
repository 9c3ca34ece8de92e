#!/usr/bin/python3
"""Reference for `lazylabel suggest-prios --manifest M`, written the way one would with h5py + NumPy.

    /usr/bin/python3 bench/reference/prios_ref.py --manifest dataset.json [--lazy-weight 0.5]

Per cube: stream the labels in chunk-aligned slabs, count voxels per class, read `info`, then
    labelled    = voxels of classes flagged labelled
    information = labelled + lazy_weight * (voxels - labelled) * not_present_flags / n_lab
(the same expression, in the same order, as lazylabel's core/prios.ts); validation cubes get prio 0 and
stay out of cube_prios. Prints JSON.
"""
import argparse
import json
import os
import sys

import h5py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import DEFAULT_SLAB_MB, emit, tally_dataset  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--manifest', required=True)
    p.add_argument('--lazy-weight', type=float, default=0.5)
    p.add_argument('--slab-mb', type=int, default=DEFAULT_SLAB_MB)
    p.add_argument('--tally', choices=['eq', 'bincount'], default='eq')
    a = p.parse_args()
    with open(a.manifest) as fh:
        man = json.load(fh)
    base = os.path.dirname(os.path.abspath(a.manifest))
    n_lab = man['n_lab']
    cubes = []
    for i, c in enumerate(man['cubes']):
        path = os.path.join(base, c['label'])
        with h5py.File(path, 'r') as f:
            t = tally_dataset(f[c.get('label_key', 'lab')], n_lab, a.slab_mb, a.tally)
            ik = c.get('info_key', 'info')
            if ik in f:
                info = f[ik][()]
                labeled, not_present = [int(v) for v in info[0]], [int(v) for v in info[1]]
            else:
                labeled, not_present = [1] * n_lab, [0] * n_lab
        voxels = t['voxels']
        labelled = sum(n for k, n in enumerate(t['class_counts']) if labeled[k])
        flags = sum(not_present)
        information = labelled + a.lazy_weight * (voxels - labelled) * flags / n_lab
        valid = bool(c.get('valid', False))
        cubes.append({'name': c.get('name', f'cube{i}'), 'valid': valid, 'voxels': voxels,
                      'class_counts': t['class_counts'], 'ignored': t['ignored'], 'labelled_voxels': labelled,
                      'labeled': labeled, 'not_present': not_present, 'information': information,
                      'prio': 0.0 if valid else information})
    emit({'command': 'suggest-prios', 'n_lab': n_lab, 'cubes': cubes,
          'cube_prios': [c['prio'] for c in cubes if not c['valid']]})
    return 0


if __name__ == '__main__':
    sys.exit(main())
