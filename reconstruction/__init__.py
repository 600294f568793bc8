"""Gaussian-splatting reconstruction: rasterizer backends, fitting, exports and consistency metrics.

The numba kernel and torch share one OpenMP runtime (libgomp). On a busy CPU, worker threads that spin between
parallel regions made a fitting step 2-5x slower (measured on the 2-core dev machine: a 15-step test fit took
24 s instead of 2.4 s). ``OMP_WAIT_POLICY=PASSIVE`` lets them sleep; it only takes effect when set before the
runtime loads, i.e. before torch is imported, so it is set here (importing ``reconstruction`` first, as the
``mvgen`` plugins do) unless the user chose a policy.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
