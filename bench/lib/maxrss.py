"""Fallback peak-RSS probe when /usr/bin/time is missing: run a script, then write its peak RSS (KiB).

    /usr/bin/python3 bench/lib/maxrss.py OUT_FILE script.py args...
"""
import atexit
import resource
import runpy
import sys

out = sys.argv[1]
script = sys.argv[2]


def _write():
    with open(out, 'w') as fh:
        fh.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


atexit.register(_write)
sys.argv = sys.argv[2:]
runpy.run_path(script, run_name='__main__')
