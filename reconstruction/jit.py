"""``one_thread``: run the small parallel kernels of a fitting step on one numba thread (see its docstring).

The first call of a numba kernel compiles it (~50 s for the rasterizer on a busy 2-core CPU) or loads it from the
disk cache (``NUMBA_CACHE_DIR``, set in ``reconstruction/__init__.py``; ~2 s). ``first_call`` wraps that call so a
long one is not a silent pause: when it has not returned after ``NOTICE_AFTER`` seconds, one line goes to stderr
(compiling, or loading from the cache when the cache already has the kernel's index), and the same line ends with
the seconds it took.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from pathlib import Path

NOTICE_AFTER = 2.0  # seconds: a cache load is usually quicker, a compile always slower
_done: set = set()  # names of the kernels whose first call in this process has returned
_lock = threading.Lock()


def cached(module_file: str, function: str) -> bool:
    """Whether ``NUMBA_CACHE_DIR`` holds an index for ``function`` of the module at ``module_file`` (numba names
    it ``<module>.<function>-<line>.py<ver>.nbi``; a stale one is recompiled, so this is a hint for the wording)."""
    root = os.environ.get("NUMBA_CACHE_DIR")
    stem = Path(module_file).stem
    return bool(root) and any(Path(root).rglob(f"{stem}.{function}-*.nbi"))


@contextlib.contextmanager
def first_call(name: str, what: str, module_file: str, function: str, stream=None):
    """Around the call of a numba kernel: on the first call in this process that takes longer than
    ``NOTICE_AFTER`` s, print "mvgen: compiling WHAT (first use, up to a minute; cached in DIR) ... done in N s"
    as one line on ``stream`` (stderr). Later calls pass straight through."""
    if name in _done:
        yield
        return
    stream = stream or sys.stderr
    loading = cached(module_file, function)
    told = threading.Event()

    def notice():
        where = os.environ.get("NUMBA_CACHE_DIR", "numba's cache")
        text = (f"mvgen: loading {what} from {where} ..." if loading else
                f"mvgen: compiling {what} (first use, up to a minute; cached in {where}) ...")
        with _lock:
            told.set()
            print(text, end="", file=stream, flush=True)

    timer = threading.Timer(NOTICE_AFTER, notice)
    timer.daemon = True
    t0 = time.perf_counter()
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()  # a notice already under way finishes its line first
        with _lock:
            if told.is_set():
                print(f" done in {time.perf_counter() - t0:.0f} s", file=stream, flush=True)
        _done.add(name)


@contextlib.contextmanager
def one_thread():
    """Launch this thread's numba parallel kernels on one thread inside the block, restoring the count after (numba's
    thread count is per calling thread, so concurrent fits keep theirs). For a fitting step's small stages (the
    tile binning's fill, Adam, the compiled loss): on two threads they took 1.3-1.6x the CPU time of one thread and
    no less wall time (lego 100 px, session 25), where the rasterizer and projection kernels, which do scale, stay
    parallel."""
    import numba

    n = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(n)
