#!/usr/bin/python3
"""h5py side of bench/micro/write.js: write an int16 label volume (chunks (64,128,64), gzip 0/1/4/6) slab by slab.

    /usr/bin/python3 bench/micro/write_ref.py LAB.h5[:lab] [--reps 3]

Takes the label values from an existing file (e.g. a convert output or the bench's lab.h5) so that the data
is the bench's; only the write is timed.
"""
import os
import sys
import tempfile
import time

import h5py
import numpy as np

src = sys.argv[1]
reps = int(sys.argv[sys.argv.index('--reps') + 1]) if '--reps' in sys.argv else 3
path, key = (src.rsplit(':', 1) + ['lab'])[:2] if ':' in src else (src, 'lab')
with h5py.File(path, 'r') as f:
    data = f[key][()]
slabs = [data[a : a + 64] for a in range(0, data.shape[0], 64)]
print(f'{"x".join(map(str, data.shape))} {data.dtype} ({data.nbytes >> 20} MiB) from {src}, chunks (64,128,64); median of {reps}')
with tempfile.TemporaryDirectory() as d:
    for gzip in (0, 1, 4, 6):
        ts = []
        for r in range(reps):
            out = os.path.join(d, f'o{gzip}{r}.h5')
            t0 = time.perf_counter()
            with h5py.File(out, 'w') as fo:
                kw = dict(compression='gzip', compression_opts=gzip) if gzip else {}
                ds = fo.create_dataset('lab', shape=data.shape, dtype=np.int16, chunks=(64, 128, 64), **kw)
                for i, s in enumerate(slabs):
                    ds[i * 64 : i * 64 + s.shape[0]] = s
            ts.append(time.perf_counter() - t0)
            size = os.path.getsize(out)
            os.remove(out)
        ms = sorted(ts)[len(ts) // 2] * 1000
        print(f'  h5py gzip {gzip}: {ms:5.0f} ms  {data.nbytes / 1e3 / ms:5.0f} MB/s  file {size / 2**20:.1f} MiB')
