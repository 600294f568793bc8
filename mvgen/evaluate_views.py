"""`mvgen evaluate views PATH... --rig RIG`: multiview consistency of any generator's views, one object or a folder
of objects per PATH, one PATH per model; several models side by side.

Each object's views (``mvgen.views_input``: a transforms.json folder, a folder or zip of images, a grid image, a
video) get cameras from the rig (``mvgen.rigs``; or from their transforms.json when no rig is given), are written
as an RGBA posed-views folder (views/, transforms.json, masks.png) and go through the job's 3D stages
(``mvgen.job.fit_stage`` and ``report_stage``, the asset continuation off: it does not change the score):

- held-out (VideoMV protocol, design.md §6): fit the even views, score the odd ones: PSNR / SSIM / LPIPS;
- cross-render (MVGBench style): fit the even and the odd views apart, render both at 8 novel cameras between
  the views' azimuths and score one against the other (``mvgen.job_cli.cross_render_stage``).

OUT/MODEL/OBJECT/ holds each object's views, masks.png, heatmaps and metrics.json, written when the object is
done (built under a temporary name, then renamed), so a rerun with the same settings skips finished objects.
OUT/results.json and OUT/results.csv hold per-object and mean rows; with two or more models OUT/compare.md is the
side-by-side table and OUT/compare_<metric>.png a bar plot per metric (``mvgen.views_report``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

PROTOCOLS = ("heldout", "cross-render")
METRICS = ("psnr", "ssim", "lpips")
SETTINGS_FILE = "settings.json"
COMMAND = "evaluate-views"


@dataclass(frozen=True)
class EvalSettings:
    """What decides the numbers of an evaluation (stored in OUT/settings.json; a rerun must match it)."""

    rig: str | None = None  # rig text (``mvgen.rigs.parse_rig``); None: every object has a transforms.json
    grid: str | None = None  # "RxC" for grid images (None: the preset's grid, if any)
    frame_step: int = 1  # every k-th frame of a video
    mask: str = "auto"  # auto | background | none (``mvgen.views_input.read_views``)
    tolerance: float = 0.1  # background tolerance, share of the 0-255 range
    protocols: tuple = PROTOCOLS
    steps: int = 400  # fitting steps of each fit
    seed: int = 0
    max_side: int = 256  # views are shrunk to this longer side before fitting
    with_lpips: bool = True  # (``evaluate_models`` takes the app config's)
    fit: dict | None = None  # the FitConfig (filled in by ``evaluate_models``)

    def signature(self) -> dict:
        """The settings as JSON reads them back (tuples become lists), for comparing with a stored copy."""
        return json.loads(json.dumps(asdict(self)))


def parse_protocols(text: str) -> tuple:
    names = tuple(p.strip() for p in str(text).split(",") if p.strip())
    bad = [p for p in names if p not in PROTOCOLS]
    if bad or not names:
        raise ValueError(f"--protocols must be a comma list of {', '.join(PROTOCOLS)}, got {text!r}")
    return names


# ---------------------------------------------------------------------------------------------- objects

def layout_grid(settings: EvalSettings):
    """(rows, cols) of grid images: ``settings.grid`` or the rig preset's grid (None: views are separate)."""
    from mvgen.rigs import parse_rig
    from mvgen.views_input import parse_grid

    grid = parse_grid(settings.grid)
    if grid is None and settings.rig:
        grid = parse_rig(settings.rig).grid
    return grid


def find_objects(path: str | Path, grid) -> list[tuple[str, Path]]:
    """[(object id, input)] of one PATH: itself when it is one object (a transforms.json folder, a folder of
    images, a zip, a video, a grid image), else its entries that are objects (sub-folders, zips, videos, and
    images when ``grid`` says each image is a grid: a folder of images is one object's views otherwise)."""
    from mvgen.views_input import IMAGE_SUFFIXES, VIDEO_SUFFIXES, ViewsError, kind_of

    path = Path(path)
    if not path.exists():
        raise ViewsError(f"views: {path} not found")
    if path.is_file():
        return [(path.stem, path)]
    kind = kind_of(path)
    direct_images = any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir() if p.is_file())
    if kind == "transforms" or (path / "views").is_dir() or (direct_images and grid is None):
        return [(path.name, path)]
    found = []
    for p in sorted(path.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir() and (kind_of(p) == "transforms" or (p / "views").is_dir()
                           or any(q.suffix.lower() in IMAGE_SUFFIXES for q in p.iterdir() if q.is_file())):
            found.append((p.name, p))
        elif p.is_file() and (p.suffix.lower() in (".zip", *VIDEO_SUFFIXES)
                              or (grid is not None and p.suffix.lower() in IMAGE_SUFFIXES)):
            found.append((p.stem, p))
    if not found:
        raise ViewsError(f"views: no objects in {path} (folders of views, zips, videos, or grid images with a grid)")
    ids = [i for i, _ in found]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ViewsError(f"views: several inputs in {path} are named {dup[0]!r}; object names must be unique")
    return found


def views_with_cameras(path: Path, rig: str | None, grid=None, frame_step: int = 1, mask: str = "auto",
                       tolerance: float = 0.1, **limits):
    """(``InputViews``, cameras) of one input: the rig's cameras (``mvgen.rigs``) at the views' size, or its
    transforms.json's when ``rig`` is None. ``limits``: ``mvgen.views_input.read_views``' size limits."""
    from mvgen.rigs import RigError, parse_rig
    from mvgen.views_input import read_views

    if grid is None and rig is not None:
        grid = parse_rig(rig).grid  # a preset's grid, used when the input is one image
    views = read_views(path, grid, frame_step, mask, tolerance, use_transforms=rig is None, **limits)
    if rig is None:
        if views.cameras is None:
            raise RigError(f"rig: {path.name} has no transforms.json; give --rig (e.g. orbit:views=8,elev=20 or a "
                           f"preset)")
        return views, views.cameras
    rig = parse_rig(rig).with_views(len(views.images))
    H, W = views.images.shape[-2:]
    return views, rig.cameras(W, H)


def posed_folder(path: Path, folder: Path, rig: str | None, grid=None, frame_step: int = 1, mask: str = "auto",
                 tolerance: float = 0.1, **limits):
    """Write one input with its rig's cameras as a posed-views folder (views/*.png RGBA, transforms.json,
    masks.png) into ``folder`` (created): what `mvgen reconstruct`, ``mvgen.job.run_views`` (the app's report) and
    the fit read. Returns the ``InputViews`` (their mask report). Nothing is written when reading fails."""
    from mvgen.views_input import write_object

    views, cameras = views_with_cameras(Path(path), rig, grid, frame_step, mask, tolerance, **limits)
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_object(folder, views, cameras)
    return views


def load_object(path: Path, settings: EvalSettings, grid):
    """(``InputViews``, cameras) of one object of a batch (``views_with_cameras`` with ``settings``)."""
    return views_with_cameras(path, settings.rig, grid, settings.frame_step, settings.mask, settings.tolerance,
                              max_side=settings.max_side)


def check_object(path: Path, settings: EvalSettings, grid) -> int:
    """Everything that can fail before fitting (reading, masking, rig, image size, hold-out, cross-render);
    returns the number of views."""
    from mvgen.metrics import check_image_size
    from reconstruction.protocols import holdout_split

    views, cameras = load_object(path, settings, grid)
    check_image_size(cameras.height, cameras.width, settings.with_lpips, f"views of {path.name}")
    holdout_split(len(cameras), 2)
    if "cross-render" in settings.protocols and len(cameras) < 4:
        raise ValueError(f"protocols: cross-render needs at least 4 views, {path.name} has {len(cameras)}")
    return len(cameras)


# --------------------------------------------------------------------------------------------- evaluation

def evaluate_object(path: Path, dest: Path, settings: EvalSettings, cfg, fit_config, grid) -> dict:
    """Evaluate one object into ``dest`` (built under a temporary name, renamed when done); returns its row."""
    import torch

    from mvgen.cameras import load_views
    from mvgen.fileio import build_output_dir
    from mvgen.job import Exports, StageProgress, Views, fit_stage, report_stage, view_angles
    from mvgen.job_cli import cross_render_stage
    from mvgen.views_input import write_object

    views_in, cameras = load_object(path, settings, grid)
    with build_output_dir(dest, COMMAND) as tmp:
        write_object(tmp, views_in, cameras)
        posed = load_views(tmp)  # the posed-views loader of every other path: the same images and cameras
        views = Views(posed, view_angles(posed.cameras))
        progress = StageProgress(None, ["fit", "report"])
        torch.manual_seed(fit_config.seed)
        extra = {"input": {"source": views_in.source, "kind": views_in.kind, "view_names": views_in.names,
                           "mask": views_in.mask}, COMMAND: settings.signature()}
        if "cross-render" in settings.protocols:
            extra["cross_render"] = cross_render_stage(views, fit_config, cfg)
        if "heldout" in settings.protocols:
            asset = fit_stage(views, cfg, fit_config, progress)
            report = report_stage(asset, views, Exports({}, [], 0.0), tmp, fit_config, progress, extra)
            metrics = report.metrics
        else:
            from mvgen.fileio import atomic_write_text

            metrics = dict(extra)
            atomic_write_text(tmp / "metrics.json", json.dumps(metrics, indent=2))
    return object_row(metrics)


def object_row(metrics: dict) -> dict:
    """The flat row of one object's metrics.json: views, mask, held-out and cross-render metrics, seconds."""
    inp = metrics["input"]
    row = {"object": None, "views": len(inp["view_names"]), "kind": inp["kind"], "mask": inp["mask"]["mode"],
           "background": inp["mask"]["background"], "tolerance": inp["mask"]["tolerance"]}
    if "psnr" in metrics:
        row.update({f"heldout_{k}": metrics.get(k) for k in METRICS})
        row["seconds"] = round(metrics["seconds"], 2)
        row["lpips_impl"] = metrics.get("lpips_impl")
    cr = metrics.get("cross_render")
    if cr:
        row.update({f"cross_{k}": cr.get(k) for k in METRICS})
        row["seconds"] = round(row.get("seconds", 0.0) + cr["seconds"], 2)
        row["lpips_impl"] = row.get("lpips_impl") or cr.get("lpips_impl")
    return row


def done_row(dest: Path, settings: EvalSettings) -> dict | None:
    """The row of a finished object folder evaluated with these settings, else None."""
    from mvgen.fileio import is_output_of

    if not is_output_of(dest, COMMAND):
        return None
    try:
        metrics = json.loads((dest / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return object_row(metrics) if metrics.get(COMMAND) == settings.signature() else None


def prepare_out(out: str | Path, signatures: dict) -> Path:
    """OUT checked before any work: new, empty, or an earlier evaluation (resumed) whose models evaluated with
    ``signatures`` (model name -> ``EvalSettings.signature()``) had the same settings; new models may be added."""
    from mvgen.fileio import OutputExistsError, check_output_file

    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"--out {out}: is a file, not a folder")
    check_output_file(out / SETTINGS_FILE, "--out")
    if out.is_dir() and any(out.iterdir()):
        try:
            old = json.loads((out / SETTINGS_FILE).read_text())["models"]
        except (OSError, ValueError, KeyError, TypeError):
            raise OutputExistsError(f"--out {out}: exists and is not an earlier `mvgen evaluate views` output; "
                                    f"choose a new folder") from None
        for name, new in signatures.items():
            prev = old.get(name, new)
            diff = sorted(k for k in set(prev) | set(new) if prev.get(k) != new.get(k))
            if diff:
                raise OutputExistsError(f"--out {out}: {name} was evaluated with other settings ({', '.join(diff)}); "
                                        f"choose a new folder or the same settings to resume")
    return out


def evaluate_models(models: list[tuple], out: str | Path, settings: EvalSettings, cfg,
                    show_progress: bool = True) -> dict:
    """Evaluate every object of every model into ``out`` (resuming); returns the results (also written).

    ``models``: [(name, PATH)] or [(name, PATH, rig, grid)] where a model's own rig / grid (None: ``settings``')
    replace the shared ones.
    """
    from dataclasses import replace

    from tqdm import tqdm

    from mvgen.fileio import atomic_write_text, prepare_output_dir
    from mvgen.views_input import parse_grid
    from mvgen.views_report import mean_row, write_results

    fit_config = cfg.fit_config(settings.steps, settings.seed)
    settings = replace(settings, fit=fit_config.to_dict(), with_lpips=cfg.with_lpips)
    per_model, plan = {}, []
    for name, path, *own in models:
        rig, grid_text = (own + [None, None])[:2]
        s = replace(settings, rig=rig if rig is not None else settings.rig,
                    grid=grid_text if grid_text is not None else settings.grid)
        explicit = parse_grid(s.grid)  # a folder of images is a folder of grids only when a grid is given
        per_model[name] = (s, layout_grid(s))
        plan += [(name, oid, p) for oid, p in find_objects(path, explicit)]
    for name, oid, p in plan:  # every input is read and checked before anything is written
        check_object(p, *per_model[name])
    signatures = {name: s.signature() for name, (s, _) in per_model.items()}
    out = prepare_out(out, signatures)
    todo, rows = [], {name: [] for name in per_model}
    for name, oid, p in plan:
        row = done_row(out / name / oid, per_model[name][0])
        if row is None:
            todo.append((name, oid, p))
        else:
            rows[name].append({**row, "object": oid})
    for name, oid, _ in todo:  # a folder in the way that is not ours is refused before any fit
        prepare_output_dir(out / name / oid, COMMAND)
    out.mkdir(parents=True, exist_ok=True)
    try:
        old = json.loads((out / SETTINGS_FILE).read_text())["models"]
    except (OSError, ValueError, KeyError):
        old = {}
    atomic_write_text(out / SETTINGS_FILE, json.dumps({"models": {**old, **signatures}}, indent=2))
    skipped = len(plan) - len(todo)
    bar = tqdm(total=len(plan), initial=skipped, desc="evaluate views", unit="object", disable=not show_progress,
               file=sys.stderr)
    for name, oid, p in todo:
        bar.set_postfix_str(f"{name}/{oid}")
        (out / name).mkdir(exist_ok=True)
        model_settings, grid = per_model[name]
        row = evaluate_object(p, out / name / oid, model_settings, cfg, fit_config, grid)
        rows[name].append({**row, "object": oid})
        bar.update(1)
    bar.close()
    order = {(name, oid): i for i, (name, oid, _) in enumerate(plan)}
    results = {"settings": signatures, "skipped": skipped, "models": {}}
    for name, rs in rows.items():
        rs.sort(key=lambda r: order[(name, r["object"])])
        results["models"][name] = {"objects": rs, "mean": mean_row(rs)}
    write_results(out, results)
    return results


# --------------------------------------------------------------------------------------------------- CLI

def add_parser(what) -> None:
    p = what.add_parser("views", help="multiview consistency of any generator's views (rigs, grids, videos)",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="one model's views: one object (folder, zip, grid image, video) or a folder of objects; "
                        "several PATHs are compared side by side")
    p.add_argument("--rig", action="append",
                   help="cameras: 'orbit:views=8,elev=20,fov=40' or a preset (zero123pp-v1.2, zero123pp-v1.1, "
                        "mvdream, sv3d-p); once for every PATH or once per PATH; default: each object's "
                        "transforms.json")
    p.add_argument("--grid", action="append",
                   help="ROWSxCOLS tiles of grid images (default: the preset's); once, or once per PATH ('-': "
                        "none); a folder of images is a folder of grid images only with --grid")
    p.add_argument("--frame-step", type=int, default=1, help="take every k-th frame of a video")
    p.add_argument("--mask", default="auto", help="auto (the files' alpha, else from the background) | "
                                                  "background | none")
    p.add_argument("--tolerance", type=float, default=0.1,
                   help="background tolerance: max |RGB - border colour| as a share of 255")
    p.add_argument("--protocols", default=",".join(PROTOCOLS), help="heldout, cross-render or both")
    p.add_argument("--steps", type=int, help="fitting steps (default: recon_steps of configs/app.yaml)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-size", type=int, help="views are shrunk to this side (default: max_image_size of the "
                                                "app config)")
    p.add_argument("--names", help="comma list of model names (default: the PATHs' names)")
    p.add_argument("--out", required=True, help="results folder (rerun with the same settings to resume)")
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    p.add_argument("--backend", help="rasterizer backend (default: configs/app.yaml)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:K")
    p.add_argument("--config", help="app config (default: configs/app.yaml)")
    p.set_defaults(func=run)


def run(args) -> int:
    from mvgen.checks import check_int, check_seed
    from mvgen.device import resolve_device
    from mvgen.limits import FIT_STEPS
    from mvgen.rigs import parse_rig
    from mvgen.settings import CLI_RANGES, DEFAULT_CONFIG, AppConfig

    cfg = AppConfig.from_yaml(args.config or DEFAULT_CONFIG, **CLI_RANGES)
    cfg = cfg.with_overrides(asset_steps=0, backend=args.backend, device=args.device,
                             with_lpips=False if args.no_lpips else None)
    resolve_device(cfg.device)
    rigs = _per_path("--rig", args.rig, len(args.paths))
    grids = _per_path("--grid", args.grid, len(args.paths))
    for rig in rigs:
        if rig is not None:
            parse_rig(rig)
    names = [Path(p).resolve().name or "model" for p in args.paths]
    if args.names:
        names = [n.strip() for n in args.names.split(",")]
        if len(names) != len(args.paths) or not all(names):
            raise ValueError(f"--names: give {len(args.paths)} comma-separated names, got {args.names!r}")
    if len(set(names)) != len(names):
        names = [f"{i}_{n}" for i, n in enumerate(names)]
    for n in names:
        if "/" in n or n in (".", ".."):
            raise ValueError(f"--names: {n!r} cannot be a folder name")
    settings = EvalSettings(
        frame_step=check_int("--frame-step", args.frame_step, 1, 10**6),
        mask=args.mask, tolerance=args.tolerance, protocols=parse_protocols(args.protocols),
        steps=FIT_STEPS.check_int("--steps", args.steps if args.steps is not None else cfg.recon_steps),
        seed=check_seed(args.seed, "--seed"),
        max_side=check_int("--max-size", args.max_size if args.max_size is not None else cfg.max_image_size, 32,
                           4096), with_lpips=cfg.with_lpips)
    results = evaluate_models(list(zip(names, map(Path, args.paths), rigs, grids)), args.out, settings, cfg)
    from mvgen.views_report import markdown_table

    print(markdown_table(results))
    skipped = f" ({results['skipped']} done before, skipped)" if results["skipped"] else ""
    print(f"wrote {Path(args.out)}: results.json, results.csv, results.md"
          + (", compare.md, compare_*.png" if len(names) > 1 else "") + f", one folder per object{skipped}")
    return 0


def _per_path(flag: str, values: list | None, n: int) -> list:
    """A flag given never (None for every PATH), once (for every PATH) or once per PATH ('-': none)."""
    values = [None if v in ("-", "") else v for v in (values or [None])]
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ValueError(f"{flag}: give it once or once per PATH ({n}), got {len(values)}")
    return values
