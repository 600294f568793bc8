"""``mvgen reconstruct PATH --out OUT``: posed views -> Gaussians -> exports + consistency metrics.

PATH is a folder with ``transforms.json`` (ours, a NeRF-synthetic-style folder with ``transforms_train.json``,
or a ``mvgen generate`` output). Writes OUT/scene.ply, .splat, .glb, .mp4, .gif, scene_camera_path.json,
metrics.json and heatmaps/view_XXX.png (target | render | error) for every scored view. OUT is built under a
temporary name and renamed when complete; an existing OUT is replaced only if it is an earlier
``mvgen reconstruct`` output (or with --overwrite).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "reconstruction.yaml"


def register(subparsers) -> None:
    p = subparsers.add_parser("reconstruct", help="fit 3D Gaussians to posed views; export .ply/.splat/.glb/.mp4",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", help="folder with transforms.json (or transforms_train.json) and RGBA views")
    p.add_argument("--out", required=True,
                   help="output folder (created; replaced only if it is an earlier `mvgen reconstruct` output)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out even if it is not an earlier output (only once this run has succeeded)")
    p.add_argument("--steps", type=int, help="optimisation steps (default: from the config)")
    p.add_argument("--holdout", default="every-2",
                   help="'every-K': fit without views K-1, 2K-1, ... and score them; 'none': fit all (default every-2)")
    p.add_argument("--downscale", type=float, default=1.0, help="shrink the views by this factor (>= 1)")
    p.add_argument("--backend", default="auto", choices=["auto", "cpu", "gsplat", "torch"],
                   help="rasterizer: gsplat (CUDA), cpu (compiled kernel), torch (slow reference)")
    p.add_argument("--max-gaussians", type=int, help="cap on the number of Gaussians")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML preset (section 'fit')")
    p.add_argument("--seed", type=int, help="random seed (default: from the config)")
    p.add_argument("--video-frames", type=int, default=60, help="frames of the orbit video")
    p.add_argument("--cross-render", action="store_true",
                   help="also run the MVGBench-style cross-render protocol (fits twice more)")
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS (saves loading the network)")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from mvgen.cameras import load_views
    from mvgen.checks import check_seed
    from mvgen.metrics import check_image_size
    from mvgen.fileio import build_output_dir, prepare_output_dir
    from reconstruction.fit import FitConfig
    from reconstruction.metrics import holdout_split, parse_holdout

    every = parse_holdout(args.holdout)
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be positive, got {args.steps}")
    if args.max_gaussians is not None and args.max_gaussians < 1:
        raise ValueError(f"--max-gaussians must be positive, got {args.max_gaussians}")
    if args.video_frames < 1:
        raise ValueError(f"--video-frames must be at least 1, got {args.video_frames}")
    config = FitConfig.from_yaml(args.config)
    overrides = {k: v for k, v in (("steps", args.steps), ("max_gaussians", args.max_gaussians),
                                   ("seed", args.seed)) if v is not None}
    config = FitConfig.from_dict({**config.to_dict(), **overrides})
    out = prepare_output_dir(args.out, "reconstruct", args.overwrite)  # refuse before loading or fitting
    check_seed(config.seed)
    views = load_views(args.path, args.downscale)
    holdout_split(len(views.cameras), every)  # fail before fitting if the split is impossible
    check_image_size(views.cameras.height, views.cameras.width, not args.no_lpips, f"views of {args.path}"
                     + (f" after --downscale {args.downscale:g}" if args.downscale != 1 else ""))
    torch.manual_seed(config.seed)
    with build_output_dir(out, "reconstruct", args.overwrite) as tmp:
        metrics = _fit_and_export(args, views, every, config, tmp)
    lp = f" LPIPS {metrics['lpips']:.4f} ({metrics['lpips_impl']})" if "lpips" in metrics else ""
    print(f"{metrics['protocol']}: PSNR {metrics['psnr']:.2f} dB  SSIM {metrics['ssim']:.4f}{lp}  "
          f"(fitted views {metrics['train_psnr']:.2f} dB, {metrics['n_gaussians']} Gaussians, "
          f"{metrics['seconds']:.1f} s)")
    print(f"wrote {', '.join(sorted(metrics['files'].values()))}, metrics.json, heatmaps/ to {out}")
    return 0


def _fit_and_export(args, views, every: int, config, out: Path) -> dict:
    """Fit, score the held-out views, write heatmaps, exports and metrics.json into ``out``; returns the metrics."""
    from PIL import Image
    from tqdm import tqdm

    from mvgen.cameras import orbit
    from mvgen.fileio import atomic_path, atomic_write_text
    from reconstruction.export import export_all
    from reconstruction.metrics import cross_render, error_heatmap, evaluate_holdout

    with tqdm(total=config.steps, desc="fit", unit="step") as bar:
        def progress(step, total, stats):
            bar.update(step - bar.n)
            bar.set_postfix(loss=f"{stats['loss']:.4f}", gaussians=stats["n_gaussians"])

        report = evaluate_holdout(views.images, views.cameras, every, config, args.backend, progress,
                                  with_lpips=not args.no_lpips)
    metrics = dict(report.metrics)
    metrics["view_files"] = [views.files[i].name for i in metrics["views"]]

    heat_dir = out / "heatmaps"
    heat_dir.mkdir(exist_ok=True)
    for k, i in enumerate(metrics["views"]):
        with atomic_path(heat_dir / f"view_{i:03d}.png") as tmp:
            Image.fromarray(error_heatmap(report.renders[k], report.targets[k])).save(tmp, format="PNG")

    if args.cross_render:
        cams = views.cameras  # novel orbit at the views' distance and field of view, between their azimuths
        radius = float(cams.centers.norm(dim=-1).median())
        fov = math.degrees(2 * math.atan(0.5 * cams.height / float(cams.K[0, 1, 1])))
        novel = orbit(8, 10.0, azimuth_start=11.25, radius=radius, fov_deg=fov, width=cams.width, height=cams.height)
        metrics["cross_render"] = cross_render(views.images, views.cameras, novel, config, args.backend,
                                               with_lpips=not args.no_lpips)

    width = max(128, views.cameras.width)
    paths = export_all(report.fit.gaussians, out, "scene", frames=args.video_frames, width=width,
                       backend=args.backend)
    metrics["files"] = {k: Path(v).name for k, v in paths.items()}
    metrics["config"] = config.to_dict()
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    return metrics
