"""Where a fit's time goes: named, nestable stage timers that cost nothing unless a ``profiling()`` block is open.

The fit loop (``reconstruction.fit``) and the CPU kernels' wrappers (``raster_cpu``, ``project_cpu``,
``ssim_cpu``) mark their stages with ``stage(name)``. Inside ``profiling()`` each stage's time is summed
*exclusive* of the stages opened within it (so the rows add up to the profiled total), as both CPU seconds of the
process (``time.process_time``: all threads) and wall seconds; their ratio says whether a stage uses both cores.
``mvgen bench fit-real --profile`` prints the table (``profile_rows``).
"""

from __future__ import annotations

import time
from contextlib import contextmanager

_active: list = []  # the open profile: [totals, stack]; empty when not profiling


@contextmanager
def profiling():
    """Collect stage times while the block runs; yields the dict ``{stage: [cpu_s, wall_s, calls]}`` (filled in
    as stages end). Not re-entrant: a nested ``profiling()`` raises."""
    if _active:
        raise RuntimeError("profiling() is already active")
    totals: dict[str, list] = {}
    _active[:] = [totals, []]
    try:
        yield totals
    finally:
        _active.clear()


@contextmanager
def stage(name: str):
    """Time the block as stage ``name`` (exclusive of inner stages) when profiling; else do nothing."""
    if not _active:
        yield
        return
    totals, stack = _active
    frame = [time.process_time(), time.perf_counter(), 0.0, 0.0]  # start cpu, start wall, inner cpu, inner wall
    stack.append(frame)
    try:
        yield
    finally:
        cpu = time.process_time() - frame[0]
        wall = time.perf_counter() - frame[1]
        stack.pop()
        row = totals.setdefault(name, [0.0, 0.0, 0])
        row[0] += cpu - frame[2]
        row[1] += wall - frame[3]
        row[2] += 1
        if stack:
            stack[-1][2] += cpu
            stack[-1][3] += wall


def profile_rows(totals: dict, steps: int, fit_cpu: float, fit_wall: float) -> list[dict]:
    """Rows for a table: per stage CPU and wall ms per step, its share of the fit's CPU time, CPU / wall; plus
    "outside the stages" (the fit's time no stage covered) and the total. Sorted by CPU time."""
    steps = max(steps, 1)
    rows = [{"stage": k, "cpu_ms_per_step": 1e3 * v[0] / steps, "wall_ms_per_step": 1e3 * v[1] / steps,
             "cpu_share": v[0] / fit_cpu if fit_cpu > 0 else 0.0, "cpu_per_wall": v[0] / v[1] if v[1] > 0 else 0.0,
             "calls": v[2]} for k, v in totals.items()]
    rows.sort(key=lambda r: -r["cpu_ms_per_step"])
    cpu_in = sum(v[0] for v in totals.values())
    wall_in = sum(v[1] for v in totals.values())
    rest_cpu, rest_wall = max(fit_cpu - cpu_in, 0.0), max(fit_wall - wall_in, 0.0)
    rows.append({"stage": "outside the stages", "cpu_ms_per_step": 1e3 * rest_cpu / steps,
                 "wall_ms_per_step": 1e3 * rest_wall / steps, "cpu_share": rest_cpu / fit_cpu if fit_cpu else 0.0,
                 "cpu_per_wall": rest_cpu / rest_wall if rest_wall > 0 else 0.0, "calls": ""})
    rows.append({"stage": "fit step (total)", "cpu_ms_per_step": 1e3 * fit_cpu / steps,
                 "wall_ms_per_step": 1e3 * fit_wall / steps, "cpu_share": 1.0,
                 "cpu_per_wall": fit_cpu / fit_wall if fit_wall > 0 else 0.0, "calls": steps})
    return rows
