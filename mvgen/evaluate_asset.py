"""`mvgen evaluate asset`: the product's headline metric (design.md §6, "asset vs ground truth").

For each caption: generate the views as the text-to-3D job does (its cameras, steps, guidance; views written as
PNGs and read back, alpha estimated from the white background), fit the asset as the job does
(``mvgen.asset.fit_asset``: score on the held-out views, then continue on all views), render the asset at
cameras the pipeline never used — ``novel_cameras``: elevation 35° and azimuths halfway between the generated
ones — and score PSNR / SSIM / LPIPS against ground-truth renders of the caption's object there. More novel
elevations (``novel_elevations``, e.g. 35 and 5, symmetric about a 20° orbit) score the same fits again there
(``by_elevation``), so that a layout is not favoured by the one novel ring lying near one of its rings.

Beside it on every row:
- ``fitted_only``: the scoring fit alone (half of the views) rendered at the same novel cameras, i.e. the asset
  before it saw every view;
- ``oracle``: ground-truth views at the generation cameras through the same reconstruction, which bounds what
  the 3D stage can give;
- ``consistency``: the held-out PSNR of the generated views (the job's report), and seconds per asset.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mvgen.limits import DEFAULT_GUIDANCE, DEFAULT_PART_GUIDANCE, PART_GUIDANCE

NOVEL_ELEVATION = 35.0


@dataclass
class AssetEvalSettings:
    """What the job runs per caption (the app's defaults unless changed)."""

    views: int = 8
    elevation: float = 20.0
    rings: tuple[float, ...] | None = None  # several elevations instead of one (mvgen.rigs.ring_elevations)
    steps: int = 20
    guidance: float = DEFAULT_GUIDANCE
    part_guidance: float = DEFAULT_PART_GUIDANCE  # for captions that name a part colour (mvgen.generate.part_contrast)
    seed: int = 0
    asset_steps: int = 200
    holdout: int = 2
    backend: str = "auto"
    steer: object = None  # mvgen.sampling3d.SteerSettings (None: off)
    novel_elevations: tuple[float, ...] = (NOVEL_ELEVATION,)  # the first is the headline; the others: by_elevation


def novel_cameras(cameras, elevation: float = NOVEL_ELEVATION):
    """Cameras the job never used: the generation orbit's radius and intrinsics, ``elevation`` degrees, and
    azimuths halfway between the generated ones."""
    import torch

    from mvgen.cameras import Cameras, look_at, orbit_angles, orbit_positions

    az, _ = orbit_angles(cameras)
    radius = float(cameras.centers.norm(dim=-1).median())
    step = 360.0 / len(cameras)
    c2w = look_at(orbit_positions(torch.tensor(az) + step / 2, torch.full((len(cameras),), elevation), radius))
    return Cameras(c2w, cameras.K.clone(), cameras.width, cameras.height)


def _score(pred, target, lpips_fn) -> dict:
    import torch

    from mvgen.metrics import psnr, ssim

    with torch.no_grad():
        lp = lpips_fn(pred, target)
    return {"psnr": float(psnr(pred, target).mean()), "ssim": float(ssim(pred, target).mean()),
            "lpips": float(lp.mean())}


def _generated_views(pipe, caption: str, s: AssetEvalSettings, seed: int, fit_config):
    """The job's views of ``caption`` (written as the job writes them and read back), as ``PosedViews``, and
    the 3D-consistent sampling log (empty when off)."""
    import torch

    from mvgen.cameras import load_views
    from mvgen.generate import part_contrast, write_views
    from mvgen.sampling3d import GaussianSteer

    steer = None
    if s.steer is not None and s.steer.mode != "off":
        steer = GaussianSteer(fit_config, s.steer, s.backend)
    from mvgen.rigs import ring_elevations

    elevation = ring_elevations(s.views, s.rings) if s.rings else s.elevation
    res = pipe(caption, num_views=s.views, elevation=elevation, num_inference_steps=s.steps,
               guidance_scale=s.guidance, generator=torch.Generator().manual_seed(seed), output_type="np",
               steer=steer, steer_steps=s.steer.step_indices(s.steps) if steer else (),
               steer_strength=s.steer.strength if steer else 1.0, **part_contrast(caption, s.part_guidance))
    with tempfile.TemporaryDirectory() as tmp:
        write_views(Path(tmp), res.images[0], res.cameras)
        return load_views(tmp), (steer.log if steer else [])


def evaluate_caption(pipe, caption: str, fit_config, s: AssetEvalSettings, seed: int, lpips_fn,
                     grid_path: Path | None = None) -> dict:
    """One row of the table (see the module docstring)."""
    import torch

    from mvgen.asset import fit_asset
    from mvgen.data.captions import parse_caption
    from mvgen.data.objects import build_mesh
    from mvgen.data.render import render_rgba
    from mvgen.evaluate import render_truth
    from reconstruction.fit import composite
    from reconstruction.gaussians import render

    t0 = time.perf_counter()
    views, steer_log = _generated_views(pipe, caption, s, seed, fit_config)
    t_gen = time.perf_counter() - t0
    t1 = time.perf_counter()
    gen = fit_asset(views.images, views.cameras, s.holdout, fit_config, s.asset_steps, s.backend, with_lpips=False)
    t_fit = time.perf_counter() - t1
    mesh = build_mesh(parse_caption(caption))
    gt_views = torch.from_numpy(render_rgba(mesh, views.cameras)).float().div(255).permute(0, 3, 1, 2)
    oracle_fit = fit_asset(gt_views.contiguous(), views.cameras, s.holdout, fit_config, s.asset_steps, s.backend,
                           with_lpips=False)
    fits = {"asset": gen.gaussians, "fitted_only": gen.report.fit.gaussians, "oracle": oracle_fit.gaussians}
    by_elevation, images = {}, {}
    for el in s.novel_elevations:
        novel = novel_cameras(views.cameras, el)
        truth = render_truth(caption, novel, mesh)
        renders = {k: render(g, novel, fit_config.background, s.backend)[0] for k, g in fits.items()}
        by_elevation[f"{el:g}"] = {k: _score(r, truth, lpips_fn) for k, r in renders.items()}
        images.setdefault("truth", truth)
        for k, r in renders.items():
            images.setdefault(k, r)  # the grid shows the headline (first) elevation
    asset, truth, oracle = images["asset"], images["truth"], images["oracle"]
    row = {"caption": caption, **by_elevation[f"{s.novel_elevations[0]:g}"], "by_elevation": by_elevation,
           "consistency_psnr": gen.report.metrics["psnr"], "oracle_consistency_psnr": oracle_fit.report.metrics["psnr"],
           "gaussians": len(gen.gaussians), "steer": steer_log,
           "seconds": {"generate": round(t_gen, 2), "fit": round(t_fit, 2),
                       "asset_continuation": round(gen.asset_seconds, 2), "asset": round(t_gen + t_fit, 2)}}
    if grid_path is not None:
        from mvgen.imageutil import grid, save_png

        hwc = lambda x: list(x.permute(0, 2, 3, 1))  # noqa: E731
        rows = [hwc(composite(views.images, fit_config.background)), hwc(asset), hwc(truth), hwc(oracle)]
        save_png(grid(rows, labels=[f"generated: {caption}", "asset, novel cameras", "truth, novel cameras",
                                    "oracle asset"]), grid_path)
    return row


def evaluate_assets(pipe, captions: list[str], fit_config, s: AssetEvalSettings, grids: Path | None = None,
                    progress=None) -> dict:
    """The table's rows and their means (see the module docstring)."""
    from mvgen.metrics import get_lpips

    lpips_fn = get_lpips()
    rows = []
    for i, cap in enumerate(captions):
        rows.append(evaluate_caption(pipe, cap, fit_config, s, s.seed + i, lpips_fn,
                                     grids / f"{i:03d}.png" if grids else None))
        if progress:
            progress(i + 1, len(captions))
    def means(get):
        return {k: {m: float(np.mean([get(r)[k][m] for r in rows])) for m in ("psnr", "ssim", "lpips")}
                for k in ("asset", "fitted_only", "oracle")}

    els = [f"{e:g}" for e in s.novel_elevations]
    return {"n": len(rows), "settings": {**s.__dict__, "steer": s.steer.__dict__ if s.steer else None},
            "fit_steps": fit_config.steps, "lpips_impl": lpips_fn.impl,
            "novel_cameras": f"elevation {els[0]} deg, azimuths halfway between the {s.views} generated",
            "mean": means(lambda r: r), "mean_by_elevation": {e: means(lambda r: r["by_elevation"][e]) for e in els},
            "consistency_psnr": float(np.mean([r["consistency_psnr"] for r in rows])),
            "oracle_consistency_psnr": float(np.mean([r["oracle_consistency_psnr"] for r in rows])),
            "seconds_per_asset": float(np.mean([r["seconds"]["asset"] for r in rows])), "per_caption": rows}


def table(rep: dict, label: str = "") -> str:
    """Markdown: one row of means (asset, fitted-only, oracle, consistency, s/asset)."""
    m = rep["mean"]
    head = (f"| setting | captions | asset PSNR | SSIM | LPIPS ({rep['lpips_impl']}) | half-views fit PSNR | "
            f"oracle PSNR | oracle LPIPS | consistency PSNR | s/asset |\n|---|---|---|---|---|---|---|---|---|---|")
    row = (f"| {label or 'default'} | {rep['n']} | {m['asset']['psnr']:.2f} | {m['asset']['ssim']:.3f} | "
           f"{m['asset']['lpips']:.3f} | {m['fitted_only']['psnr']:.2f} | {m['oracle']['psnr']:.2f} | "
           f"{m['oracle']['lpips']:.3f} | {rep['consistency_psnr']:.2f} | {rep['seconds_per_asset']:.1f} |")
    extra = [f"| {label or 'default'}, novel elevation {e}° | {rep['n']} | {v['asset']['psnr']:.2f} | "
             f"{v['asset']['ssim']:.3f} | {v['asset']['lpips']:.3f} | {v['fitted_only']['psnr']:.2f} | "
             f"{v['oracle']['psnr']:.2f} | {v['oracle']['lpips']:.3f} | | |"
             for e, v in list(rep.get("mean_by_elevation", {}).items())[1:]]
    return "\n".join([head, row, *extra])


def job_defaults(path: str | Path | None = None) -> dict:
    """The text-to-3D job's defaults from configs/app.yaml (``mvgen.settings.AppConfig``, as the app and
    `mvgen run` read it)."""
    from mvgen.settings import DEFAULT_CONFIG, AppConfig

    cfg = AppConfig.from_yaml(path or DEFAULT_CONFIG)
    keys = ("views", "elevation", "rings", "steps", "guidance", "part_guidance", "recon_steps", "asset_steps", "recon_config",
            "holdout", "backend")
    return {k: getattr(cfg, k) for k in keys}


def add_parser(what) -> None:
    """`mvgen evaluate asset` (registered by mvgen/evaluate.py)."""
    import argparse

    d = job_defaults()
    p = what.add_parser("asset", help="the exported asset at novel cameras vs ground truth (the headline metric)",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--split", choices=["heldout", "train"], default="heldout")
    p.add_argument("--limit", type=int, default=12, help="number of captions")
    p.add_argument("--views", type=int, default=d.get("views", 8))
    p.add_argument("--elevation", type=float, default=d.get("elevation", 20.0))
    rings = ",".join(f"{r:g}" for r in d["rings"]) if d.get("rings") else "none"
    p.add_argument("--rings", help="several elevations instead of --elevation, e.g. 10,30: views taken in pairs from "
                                   "ring to ring (mvgen.rigs.ring_elevations); none: one ring at --elevation "
                                   f"(default: the job's, {rings}, where --views cover them)")
    p.add_argument("--steps", type=int, default=d.get("steps", 20), help="denoising steps")
    p.add_argument("--guidance", type=float, default=d.get("guidance", DEFAULT_GUIDANCE))
    p.add_argument("--part-guidance", type=float, default=d.get("part_guidance", DEFAULT_PART_GUIDANCE),
                   help="part-colour guidance for captions that name a part colour (0: off)")
    p.add_argument("--recon-steps", type=int, default=d.get("recon_steps", 400), help="scoring-fit steps")
    p.add_argument("--asset-steps", type=int, default=d.get("asset_steps", 200),
                   help="steps of the asset's continuation on all views (0: the asset is the scoring fit)")
    p.add_argument("--steer", choices=["off", "gaussians"], default="off", help="3D-consistent sampling")
    p.add_argument("--steer-at", type=float, nargs="+", default=[0.5, 0.65, 0.8],
                   help="steering points as fractions of the denoising steps")
    p.add_argument("--novel-elevations", default=f"{NOVEL_ELEVATION:g}",
                   help="elevations (degrees, comma-separated) of the novel cameras; the first is the headline, the "
                        "others score the same fits again (e.g. 35,5: symmetric about a 20° orbit)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", help="pipeline folder (default: the shipped model)")
    p.add_argument("--json", help="write the report here")
    p.add_argument("--grids", help="folder for per-caption PNGs (generated | asset | truth | oracle)")
    p.add_argument("--label", default="", help="row label of the printed table")
    p.set_defaults(func=_run)


def _parse_novel_elevations(text: str) -> tuple[float, ...]:
    """``--novel-elevations``: comma-separated degrees in [-89, 89], at least one, no repeats."""
    try:
        els = tuple(float(t) for t in text.split(","))
    except ValueError:
        raise ValueError(f"--novel-elevations must be comma-separated degrees, e.g. 35,5; got {text!r}") from None
    if not all(np.isfinite(e) and -89 <= e <= 89 for e in els) or len(set(els)) != len(els):
        raise ValueError(f"--novel-elevations must be distinct degrees in [-89, 89]; got {text!r}")
    return els


def _run(args) -> int:
    import json
    from dataclasses import replace

    from tqdm.auto import tqdm

    from mvgen.data.captions import example_captions
    from mvgen.fileio import atomic_write_text, check_output_file
    from mvgen.generate import load_pipeline
    from mvgen.limits import RUN_VIEWS
    from mvgen.sampling3d import SteerSettings
    from reconstruction.fit import FitConfig
    from reconstruction.protocols import parse_holdout

    d = job_defaults()
    if args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    RUN_VIEWS.check_int("--views", args.views)
    if args.recon_steps < 1 or args.asset_steps < 0:
        raise ValueError("--recon-steps must be >= 1 and --asset-steps >= 0")
    steer = SteerSettings(mode=args.steer, at=tuple(args.steer_at))
    rings = None
    if args.rings is None:
        from mvgen.settings import AppConfig, default_rings

        rings = default_rings(AppConfig.from_yaml(), args.views)
    elif args.rings.strip().lower() not in ("", "none"):
        from mvgen.rigs import ring_elevations

        rings = tuple(ring_elevations(2 * len(args.rings.split(",")), args.rings.split(",")))[::2]
        ring_elevations(args.views, rings)  # the message names the field
    novel_elevations = _parse_novel_elevations(args.novel_elevations)
    if args.json:
        check_output_file(args.json, "--json")
    if args.grids and Path(args.grids).exists() and not Path(args.grids).is_dir():
        raise ValueError(f"--grids {args.grids}: is a file, not a folder")
    recon = Path(d.get("recon_config", "configs/reconstruction.yaml"))
    recon = recon if recon.is_absolute() else Path(__file__).resolve().parent.parent / recon
    fit_config = replace(FitConfig.from_yaml(recon), steps=args.recon_steps)
    settings = AssetEvalSettings(views=args.views, elevation=args.elevation, rings=rings, steps=args.steps,
                                 guidance=args.guidance, part_guidance=PART_GUIDANCE.check_number(
                                     "--part-guidance", args.part_guidance), seed=args.seed, asset_steps=args.asset_steps,
                                 holdout=parse_holdout(d.get("holdout", "every-2")), backend=d.get("backend", "auto"),
                                 steer=steer, novel_elevations=novel_elevations)
    pipe, path = load_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    captions = example_captions(args.split, args.limit, seed=args.seed)
    grids = Path(args.grids) if args.grids else None
    if grids:
        grids.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(captions), desc=f"evaluate asset ({args.split})")
    rep = evaluate_assets(pipe, captions, fit_config, settings, grids, progress=lambda i, n: bar.update(1))
    bar.close()
    rep.update({"split": args.split, "model": str(path)})
    print(f"novel cameras: {rep['novel_cameras']}; LPIPS: {rep['lpips_impl']}")
    print(table(rep, args.label))
    if args.json:
        atomic_write_text(args.json, json.dumps(rep, indent=2))
    return 0

