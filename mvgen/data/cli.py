"""`mvgen dataset`: render the procedural multiview dataset (design.md section 5).

    mvgen dataset --out DIR --objects N [--views V] [--resolution R] [--elevation MIN MAX] [--elevation-per-view] [--seed S]
                  [--workers W] [--preview]

Resumable: run the same command again after an interruption and finished objects are skipped.
"""

from __future__ import annotations

import argparse

from mvgen.limits import DATASET_VIEWS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "dataset", help="render procedural objects as multiview RGBA views with cameras (resumable)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (new, empty, or a dataset to resume)")
    p.add_argument("--objects", type=int, required=True, help="number of distinct captions/objects")
    p.add_argument("--views", type=int, default=16,
                   help=f"orbit views per object ({DATASET_VIEWS.low}-{DATASET_VIEWS.high}, default 16)")
    p.add_argument("--resolution", type=int, default=128, help="square image size in pixels (16-1024, default 128)")
    p.add_argument("--elevation", type=float, nargs=2, metavar=("MIN", "MAX"), default=(10.0, 40.0),
                   help="per-object camera elevation range in degrees (default 10 40)")
    p.add_argument("--elevation-per-view", action="store_true",
                   help="draw every view's elevation from the range (default: one elevation per object)")
    p.add_argument("--seed", type=int, default=0, help="chooses the objects and their cameras (default 0)")
    p.add_argument("--workers", type=int, default=1, help="parallel render processes (default 1)")
    p.add_argument("--preview", action="store_true", help="also write DIR/preview.png (objects x views)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from .generate import DatasetConfig, generate_dataset
    from .writer import contact_sheet

    cfg = DatasetConfig(views=args.views, resolution=args.resolution, elevation=tuple(args.elevation),
                        elevation_per_view=args.elevation_per_view, seed=args.seed)
    result = generate_dataset(args.out, args.objects, cfg, workers=args.workers, progress=not args.quiet)
    out = Path(args.out)
    rate = result.written / result.seconds if result.seconds > 0 else float("inf")
    print(f"{out}: {result.written} objects written, {result.skipped} already done, "
          f"{len(result.entries)} in index.jsonl ({result.seconds:.1f} s, {rate:.2f} objects/s)")
    if args.preview:
        print(f"preview: {contact_sheet(out, result.entries)}")
    return 0
