"""Fallback probe when /usr/bin/time is missing: run a script, then write its peak RSS (KiB) and CPU seconds.

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
        u = resource.getrusage(resource.RUSAGE_SELF)
        fh.write(f'{u.ru_maxrss} {u.ru_utime + u.ru_stime}')


atexit.register(_write)
sys.argv = sys.argv[2:]
runpy.run_path(script, run_name='__main__')
