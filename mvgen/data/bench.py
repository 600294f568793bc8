"""`mvgen bench dataset`: how fast the procedural dataset is made on this machine.

Runs the real ``mvgen dataset`` code path into a temporary folder (end to end: process start-up, mesh building,
ray casting, PNG writing, index) with 1 worker and with ``--workers`` workers, and prints objects/s, views/s
and the projected time for the target size, 1,000 objects x 16 views at 128 x 128 (goal: <= 10 minutes on a
2-core CPU). A second table splits the time of a single process into build / render / write per object.
"""

from __future__ import annotations

import json

TARGET_OBJECTS, TARGET_VIEWS, TARGET_RES = 1000, 16, 128
TARGET_SECONDS = 600.0


def register(subparsers) -> None:
    p = subparsers.add_parser("dataset", help="procedural dataset generation speed (objects/s, views/s)",
                              description=__doc__)
    p.add_argument("--objects", type=int, default=40, help="objects to render (default 40)")
    p.add_argument("--views", type=int, default=TARGET_VIEWS, help=f"views per object (default {TARGET_VIEWS})")
    p.add_argument("--resolution", type=int, default=TARGET_RES, help=f"image size (default {TARGET_RES})")
    p.add_argument("--workers", type=int, default=2, help="render processes (default 2)")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    import os
    import tempfile
    from pathlib import Path

    from mvgen.fileio import atomic_write_text

    from .generate import MAX_WORKERS, DatasetConfig, generate_dataset

    cfg = DatasetConfig(views=args.views, resolution=args.resolution)
    cfg.validate()
    if not (isinstance(args.workers, int) and 1 <= args.workers <= MAX_WORKERS):
        raise ValueError(f"--workers must be an integer in [1, {MAX_WORKERS}], got {args.workers!r}")
    # Projection: worker start-up once, then the measured per-object time (scaled by pixel count when the
    # run's views x resolution differ from the target's).
    scale = (TARGET_VIEWS * TARGET_RES**2) / (args.views * args.resolution**2)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mvgen-bench-") as tmp:
        for workers in sorted({1, args.workers}):
            startup = _worker_startup_seconds(workers) if workers > 1 else 0.0
            result = generate_dataset(Path(tmp) / f"w{workers}", args.objects, cfg, workers=workers, progress=False)
            per_object = max(result.seconds - startup, 1e-9) / result.written
            rows.append({"workers": workers, "objects": result.written, "seconds": result.seconds,
                         "worker_startup_seconds": startup, "objects_per_s": result.written / result.seconds,
                         "views_per_s": result.written * args.views / result.seconds,
                         "projected_target_seconds": startup + TARGET_OBJECTS * per_object * scale})
        stages = _stage_ms(Path(tmp) / "stages", min(args.objects, 10), cfg)
    figures = {"views": args.views, "resolution": args.resolution, "supersample": cfg.supersample,
               "cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "runs": rows,
               "projection_scaled_by_pixels": scale != 1.0, "stage_ms_per_object": stages}
    note = " (scaled by pixel count)" if scale != 1.0 else ""
    print(f"## mvgen bench dataset  ({os.cpu_count()} CPUs, {args.views} views @ {args.resolution}², "
          f"supersample {cfg.supersample})\n")
    print("| workers | objects | seconds | start-up s | objects/s | views/s | "
          f"projected {TARGET_OBJECTS} x {TARGET_VIEWS} @ {TARGET_RES}² (target ≤ {TARGET_SECONDS / 60:.0f} min) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['workers']} | {r['objects']} | {r['seconds']:.1f} | {r['worker_startup_seconds']:.1f} | "
              f"{r['objects_per_s']:.2f} | {r['views_per_s']:.1f} | {r['projected_target_seconds'] / 60:.1f} min{note} |")
    print(f"\nStart-up = spawning the worker processes and importing the renderer, counted once in the projection. "
          f"Load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} (the machine is shared).")
    print(f"\nSingle process, mean over {min(args.objects, 10)} objects (warm caches):\n")
    print("| stage | ms / object |")
    print("|---|---:|")
    for k, v in stages.items():
        print(f"| {k} | {v:.0f} |")
    if args.json:
        atomic_write_text(args.json, json.dumps(figures, indent=2))
    return 0


def _stage_ms(out: "Path", n: int, cfg) -> dict:
    """Mean ms per object of each stage in this process: build mesh, render, write files."""
    import time

    from .captions import sample_specs
    from .generate import object_cameras
    from .objects import build_mesh
    from .render import render_rgba
    from .writer import write_object

    out.mkdir()
    totals = {"build mesh": 0.0, "render": 0.0, "write files": 0.0}
    for spec in sample_specs(n, 0):
        t0 = time.perf_counter()
        mesh = build_mesh(spec)
        t1 = time.perf_counter()
        cams, extra = object_cameras(spec.slug(), cfg)
        rgba = render_rgba(mesh, cams, supersample=cfg.supersample)
        t2 = time.perf_counter()
        write_object(out, spec.slug(), spec, cams, rgba, extra)
        t3 = time.perf_counter()
        totals["build mesh"] += t1 - t0
        totals["render"] += t2 - t1
        totals["write files"] += t3 - t2
    return {k: 1000 * v / n for k, v in totals.items()}


def _worker_startup_seconds(workers: int) -> float:
    """Time to start ``workers`` spawned processes that import the renderer (what a dataset run pays once)."""
    import multiprocessing
    import time

    from .generate import _init_worker

    t0 = time.perf_counter()
    pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker)
    pool.close()
    pool.join()  # returns once every worker has run its initializer and exited
    return time.perf_counter() - t0
