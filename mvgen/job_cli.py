"""The job's commands: `mvgen run` (prompt -> views -> asset -> exports + report, headless; one prompt or a batch
file) and `mvgen reconstruct` (a folder of posed views -> the same 3D stages, exports and report).

Both call the stage functions of ``mvgen.job``; heavy imports (torch, the pipeline) happen inside the commands so
`mvgen --help` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from mvgen.limits import RUN_VIEWS

BACKENDS = ["auto", "cpu", "gsplat", "torch"]
DEVICE_HELP = ("where every stage runs: auto | cpu | cuda | cuda:K (default: configs/app.yaml; auto = CUDA when "
               "available, else CPU)")
RECONSTRUCT_DOC = """``mvgen reconstruct PATH --out OUT``: posed views -> Gaussians -> exports + consistency metrics.

PATH is a folder with ``transforms.json`` (ours, a NeRF-synthetic-style folder with ``transforms_train.json``,
or a ``mvgen generate`` output). The same stages as `mvgen run` and the app (mvgen/job.py): fit the views not
held out and score the held-out ones, continue the fit on every view (the asset), export it (the orbit video
framed by the input cameras) and write OUT/scene.ply, .splat, .glb, .mp4, .gif, scene_camera_path.json,
viewer.ply, metrics.json, heatmaps.png and heatmaps/view_XXX.png (target | render | error) for every scored
view. A mesh that cannot be extracted is a warning. OUT is built under a temporary name and renamed when
complete; an existing OUT is replaced only if it is an earlier ``mvgen reconstruct`` output (or with
--overwrite). Export settings not given as options come from configs/app.yaml.
"""


@contextlib.contextmanager
def progress_bar(desc: str):
    """A tqdm bar on stderr as a ``sink(fraction, description)`` for ``mvgen.job.StageProgress``."""
    from tqdm import tqdm

    with tqdm(total=1000, desc=desc[:30], unit="‰", bar_format="{l_bar}{bar}| {postfix}") as bar:
        def sink(fraction: float, text: str) -> None:
            bar.update(int(fraction * 1000) - bar.n)
            bar.set_postfix_str(text, refresh=False)

        yield sink


# ----------------------------------------------------------------------------------------------- `mvgen run`

def register_run(subparsers) -> None:
    p = subparsers.add_parser("run", help="prompt -> views -> .ply/.splat/.glb/.mp4 + metrics.json, headless",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("prompt", nargs="?", help='e.g. "a blue vase" (or use --prompts FILE)')
    p.add_argument("--prompts", help="batch: a text file with one prompt a line (# comments); one folder each")
    p.add_argument("--out", required=True, help="output folder (replaced only if it is an earlier `mvgen run` output)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out even if it is not an earlier output (only once this run has succeeded)")
    p.add_argument("--views", type=int,
                   help=f"orbit views, {RUN_VIEWS.low}-{RUN_VIEWS.high} (default: configs/app.yaml)")
    p.add_argument("--elevation", type=float, help="camera elevation in degrees (one ring; default: configs/app.yaml)")
    p.add_argument("--rings", help="several elevations instead of --elevation, e.g. 10,30: views evenly spaced in "
                   "azimuth, taken in pairs from ring to ring, 2 views per ring at least (default: configs/app.yaml's "
                   "rings, null = one ring)")
    p.add_argument("--steps", type=int, help="denoising steps")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    p.add_argument("--part-guidance", type=float, help="part-colour guidance for prompts that name a part colour "
                   "(0: off; default: configs/app.yaml)")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--steer", help="3D-consistent sampling: off | gaussians (slower; default: configs/app.yaml)")
    p.add_argument("--output-size", help="views' size in px: the model's native size (default; 128 for the shipped "
                   "model) or twice it (256), which needs a model with a 2x decoder (decoder_2x)")
    p.add_argument("--recon-steps", type=int, help="reconstruction (fitting) steps")
    p.add_argument("--views-only", action="store_true", help="stop after the views (no 3D stages)")
    p.add_argument("--backend", choices=BACKENDS, help="rasterizer backend")
    p.add_argument("--video-frames", type=int, help="frames of the orbit video")
    p.add_argument("--model", help="pipeline folder (default: the shipped assets/mvgen-tiny, or MVGEN_MODEL)")
    p.add_argument("--config", help="defaults (default: configs/app.yaml)")
    p.add_argument("--device", help=DEVICE_HELP)
    p.set_defaults(func=run_prompts)


def read_prompts(path: str | os.PathLike) -> list[str]:
    """Prompts of a batch file: one a line; blank lines and lines starting with '#' are skipped."""
    from mvgen.settings import check_prompt

    try:
        lines = Path(path).read_text().splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"--prompts {path}: cannot read ({e})") from None
    except OSError as e:  # missing, a folder, unreadable: name the flag and the file
        raise ValueError(f"--prompts {path}: cannot read ({e.strerror or e})") from None
    prompts = [check_prompt(line) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise ValueError(f"--prompts {path}: no prompts in the file")
    return prompts


def run_prompts(args) -> int:
    """`mvgen run "prompt" --out DIR`, or `mvgen run --prompts FILE --out DIR` (one sub-folder per prompt; sharded
    across processes under `accelerate launch` and resumable: ``mvgen.batch``)."""
    import torch

    from mvgen.batch import Processes, batch_key, run_batch
    from mvgen.checks import check_output_size
    from mvgen.device import resolve_device
    from mvgen.fileio import prepare_output_dir
    from mvgen.generate import default_model_path, vocabulary_warning
    from mvgen.job import load_model, model_output_sizes, model_problem, run_prompt, summary_line
    from mvgen.pipeline import model_hash
    from mvgen.settings import CLI_RANGES, DEFAULT_CONFIG, AppConfig, check_prompt, check_run_settings, pick_rings

    if (args.prompt is None) == (args.prompts is None):
        raise ValueError("give either a prompt or --prompts FILE (not both)")
    prompts = [check_prompt(args.prompt)] if args.prompt is not None else read_prompts(args.prompts)
    rings = pick_rings(args.elevation, args.rings, ("--elevation", "--rings"))
    cfg = AppConfig.from_yaml(args.config or DEFAULT_CONFIG, **CLI_RANGES)
    settings = check_run_settings(cfg, *(v if v is not None else getattr(cfg, k) for k, v in (
        ("views", args.views), ("elevation", args.elevation), ("steps", args.steps), ("guidance", args.guidance),
        ("seed", args.seed), ("recon_steps", args.recon_steps))), steer=args.steer, output_size=args.output_size,
        rings=rings, part_guidance=args.part_guidance)
    cfg = cfg.with_overrides(backend=args.backend, video_frames=args.video_frames, device=args.device)
    device = resolve_device(cfg.device)  # a missing GPU is one line naming --device, before anything loads
    if not args.views_only or settings["steer"].mode != "off":
        cfg.fit_config(settings["recon_steps"])  # a broken preset fails before the model loads
    model_path = Path(args.model) if args.model else default_model_path()
    check_output_size(settings["output_size"], model_output_sizes(model_path))  # the model's sizes, before it loads

    if args.prompts is not None:
        def check():
            problem = model_problem(model_path)
            if problem:
                raise ValueError(problem)

        def load(procs):
            here = torch.device("cuda", procs.local) if device.type == "cuda" and procs.world > 1 else device
            torch.manual_seed(settings["seed"])
            return load_model(model_path, here)

        def run_one(pipe, path, prompt, folder, sink):
            return run_prompt(pipe, prompt, folder, cfg, settings, path, args.views_only, sink,
                              overwrite=args.overwrite)

        key = batch_key(settings, cfg, model_hash(model_path) if not model_problem(model_path) else None,
                        args.views_only)
        return run_batch(prompts, args.out, args.overwrite, load, run_one, key, progress_bar, check,
                         cpu=device.type == "cpu")

    if Processes().world > 1:
        raise ValueError("one prompt runs in one process; shard a batch across processes with --prompts FILE")
    out = prepare_output_dir(args.out, "run", args.overwrite)  # refuse before the model loads
    problem = model_problem(model_path)
    if problem:
        raise ValueError(problem)
    pipe, model_path = load_model(model_path, device)
    torch.manual_seed(settings["seed"])
    prompt = prompts[0]
    warn = vocabulary_warning(prompt, model_path)
    if warn:
        print(f"warning: {warn}", file=sys.stderr)
    with progress_bar(prompt) as sink:
        result = run_prompt(pipe, prompt, out, cfg, settings, model_path, args.views_only, sink,
                            overwrite=args.overwrite)
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(summary_line(result))
    print(f"wrote {out}: {', '.join(sorted(p.name for p in result.files.values()))}")
    return 0


# ----------------------------------------------------------------------------------------- `mvgen reconstruct`

def register_reconstruct(subparsers) -> None:
    p = subparsers.add_parser("reconstruct", help="fit 3D Gaussians to posed views; export .ply/.splat/.glb/.mp4",
                              description=RECONSTRUCT_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", help="folder with transforms.json (or transforms_train.json) and RGBA views")
    p.add_argument("--out", required=True,
                   help="output folder (created; replaced only if it is an earlier `mvgen reconstruct` output)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out even if it is not an earlier output (only once this run has succeeded)")
    p.add_argument("--steps", type=int, help="optimisation steps (default: from the config: 0 = from the scene, "
                                             "views x pixels)")
    p.add_argument("--holdout", default="every-2",
                   help="'every-K': fit without views K-1, 2K-1, ... and score them; 'none': fit all (default every-2)")
    p.add_argument("--asset-steps", type=int,
                   help="steps of the asset's continuation on all views (0: export the scoring fit; default: "
                        "configs/app.yaml)")
    p.add_argument("--downscale", type=float, default=1.0, help="shrink the views by this factor (>= 1)")
    p.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="rasterizer: gsplat (CUDA), cpu (compiled kernel), torch (slow reference)")
    p.add_argument("--max-gaussians", type=int, help="cap on the number of Gaussians")
    p.add_argument("--config", help="FitConfig YAML preset (section 'fit'; default: configs/reconstruction.yaml)")
    p.add_argument("--seed", type=int, help="random seed (default: from the config)")
    p.add_argument("--video-frames", type=int, default=60, help="frames of the orbit video")
    p.add_argument("--cross-render", action="store_true",
                   help="also run the MVGBench-style cross-render protocol (fits twice more)")
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS (saves loading the network)")
    p.add_argument("--device", help=DEVICE_HELP)
    p.set_defaults(func=reconstruct_folder)


def reconstruct_folder(args) -> int:
    """`mvgen reconstruct PATH --out OUT`: ``mvgen.job``'s fit, export and report stages on a folder of views."""
    import torch

    from mvgen.cameras import load_views
    from mvgen.checks import check_seed
    from mvgen.device import resolve_device
    from mvgen.fileio import build_output_dir, prepare_output_dir
    from mvgen.job import StageProgress, Views, export_stage, fit_stage, report_stage, view_angles
    from mvgen.metrics import check_image_size
    from mvgen.settings import CLI_RANGES, AppConfig
    from reconstruction.protocols import holdout_split, parse_holdout

    every = parse_holdout(args.holdout)
    fit_config = _fit_config(args)
    if args.video_frames < 1:
        raise ValueError(f"--video-frames must be at least 1, got {args.video_frames}")
    cfg = AppConfig.from_yaml(**CLI_RANGES).with_overrides(
        holdout=args.holdout, backend=args.backend, video_frames=args.video_frames, asset_steps=args.asset_steps,
        with_lpips=False if args.no_lpips else None, device=args.device)
    resolve_device(cfg.device)  # a missing GPU is one line naming --device, before loading or fitting
    out = prepare_output_dir(args.out, "reconstruct", args.overwrite)  # refuse before loading or fitting
    check_seed(fit_config.seed)
    posed = load_views(args.path, args.downscale)
    holdout_split(len(posed.cameras), every)  # fail before fitting if the split is impossible
    check_image_size(posed.cameras.height, posed.cameras.width, cfg.with_lpips, f"views of {args.path}"
                     + (f" after --downscale {args.downscale:g}" if args.downscale != 1 else ""))
    torch.manual_seed(fit_config.seed)
    views = Views(posed, view_angles(posed.cameras))
    with progress_bar(Path(args.path).name) as sink, build_output_dir(out, "reconstruct", args.overwrite) as tmp:
        progress = StageProgress(sink, ["fit", "export", "report"])
        asset = fit_stage(views, cfg, fit_config, progress)
        exports = export_stage(asset, views, tmp, cfg, progress)
        extra = {"cross_render": cross_render_stage(views, fit_config, cfg)} if args.cross_render else None
        report = report_stage(asset, views, exports, tmp, fit_config, progress, extra)
    m = report.metrics
    for w in exports.warnings:
        print(f"warning: {w}", file=sys.stderr)
    lp = f" LPIPS {m['lpips']:.4f} ({m['lpips_impl']})" if "lpips" in m else ""
    print(f"{m['protocol']}: PSNR {m['psnr']:.2f} dB  SSIM {m['ssim']:.4f}{lp}  "
          f"(fitted views {m['train_psnr']:.2f} dB, {m['n_gaussians']} Gaussians, {m['seconds']:.1f} s)")
    print(f"wrote {', '.join(sorted(m['files'].values()))}, metrics.json, heatmaps/ to {out}")
    return 0


def _fit_config(args):
    """The FitConfig preset ``args.config`` with --steps, --max-gaussians and --seed on top."""
    from reconstruction.fit import DEFAULT_CONFIG, FitConfig

    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be positive, got {args.steps}")
    if args.max_gaussians is not None and args.max_gaussians < 1:
        raise ValueError(f"--max-gaussians must be positive, got {args.max_gaussians}")
    config = FitConfig.from_yaml(args.config or DEFAULT_CONFIG)
    overrides = {k: v for k, v in (("steps", args.steps), ("max_gaussians", args.max_gaussians),
                                   ("seed", args.seed)) if v is not None}
    return FitConfig.from_dict({**config.to_dict(), **overrides})


def cross_render_stage(views, fit_config, cfg) -> dict:
    """The MVGBench-style cross-render protocol at 8 novel cameras between the views' azimuths, framed like them,
    on ``cfg.device``."""
    from mvgen.device import resolve_device
    from mvgen.exports import orbit_around
    from reconstruction.protocols import cross_render

    cams = views.posed.cameras
    novel = orbit_around(cams, 8, 10.0, azimuth_start=11.25, width=cams.width, height=cams.height)
    images = views.posed.images.to(resolve_device(cfg.device))
    return cross_render(images, cams, novel, fit_config, cfg.backend, with_lpips=cfg.with_lpips)
