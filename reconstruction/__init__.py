"""Gaussian-splatting reconstruction: rasterizer backends, fitting, exports and consistency metrics.

The numba kernel and torch share one OpenMP runtime (libgomp). On a busy CPU, worker threads that spin between
parallel regions made a fitting step 2-5x slower (measured on the 2-core dev machine: a 15-step test fit took
24 s instead of 2.4 s). ``OMP_WAIT_POLICY=PASSIVE`` lets them sleep; it only takes effect when set before the
runtime loads, i.e. before torch is imported, so it is set here (importing ``reconstruction`` first, as the
``mvgen`` plugins do) unless the user chose a policy. A user's ``ACTIVE`` is kept, but the first CPU fit of the
process says on stderr what it costs (``warn_if_spinning``): beside two other busy processes on the 2-core machine,
a 300-step lego fit took 20.8-24.2 s wall instead of 10.5-11.5 s (2 numba threads; session 10).

numba caches the compiled CPU kernels on disk (``cache=True``); by default it writes them next to the sources, which
fails on a read-only install and then every process recompiles them (~50 s on 2 cores). ``NUMBA_CACHE_DIR`` is
pointed at a writable user cache folder (``$XDG_CACHE_HOME/mvgen/numba``, else ``~/.cache/mvgen/numba``; a temp
folder when that is not writable) unless the user set it; numba reads it when it is imported, which happens only
in modules of this package, after this file. ``reconstruction.jit`` announces the first compile on stderr.
"""

import os
import sys

_warned = []

def _numba_cache_dir() -> str:
    """A writable folder for numba's cache (created): the user cache, else a per-user temp folder."""
    import tempfile

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for folder in (os.path.join(base, "mvgen", "numba"),
                   os.path.join(tempfile.gettempdir(), f"mvgen-numba-{os.getuid() if hasattr(os, 'getuid') else 0}")):
        try:
            os.makedirs(folder, exist_ok=True)
            if os.access(folder, os.W_OK):
                return folder
        except OSError:
            continue
    return folder


os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# numba's parallel kernels: the OpenMP layer first (thread-safe, so fits in the app's worker threads can run
# kernels at the same time; it sleeps under the PASSIVE policy like torch's), then TBB; the workqueue layer,
# which aborts when two threads launch kernels at once, only as the last resort. Tested in
# tests/reconstruction/test_threads.py.
os.environ.setdefault("NUMBA_THREADING_LAYER_PRIORITY", "omp tbb workqueue")
if not os.environ.get("NUMBA_CACHE_DIR"):
    os.environ["NUMBA_CACHE_DIR"] = _numba_cache_dir()


def warn_if_spinning(stream=None) -> bool:
    """Once per process: when ``OMP_WAIT_POLICY`` is ``ACTIVE`` (the user's choice; we set PASSIVE otherwise),
    print why that slows a CPU fit on a busy machine and how to undo it. Returns whether it printed."""
    if _warned or os.environ.get("OMP_WAIT_POLICY", "").strip().upper() != "ACTIVE":
        return False
    _warned.append(True)
    print("mvgen: OMP_WAIT_POLICY=ACTIVE is set: fitting threads spin between parallel loops and slow down when "
          "other work shares the cores (a fit beside two busy processes ran ~2x slower); unset it or use PASSIVE",
          file=stream or sys.stderr, flush=True)
    return True
