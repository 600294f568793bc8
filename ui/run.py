"""Prompt -> views -> Gaussians -> exports -> held-out evaluation, headless: the stages the app's button runs,
`mvgen run` and `mvgen bench e2e`. No gradio here.

A run folder holds (names as `mvgen generate` and `mvgen reconstruct` write them)::

    views/000.png ...  grid.png  transforms.json  manifest.json   views.zip          (generation)
    scene.ply  scene.splat  scene.glb  scene.mp4  scene.gif  scene_camera_path.json  (exports)
    metrics.json  heatmaps/view_XXX.png  heatmaps.png (all of them, labelled)        (held-out evaluation)

Every folder is built under a temporary name and renamed when complete (``mvgen.fileio``); an existing folder is
replaced only if it is a finished output of the same kind, or with ``overwrite``.
"""

from __future__ import annotations

import json
import math
import os
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mvgen.fileio import atomic_path, build_output_dir, prepare_output_dir
from ui.settings import AppConfig

# Share of the progress bar per stage (measured on the shipped model: fitting dominates, then generation).
STAGE_WEIGHTS = {"generate": 0.30, "fit": 0.50, "export": 0.15, "report": 0.05}
Sink = Callable[[float, str], None]  # (overall fraction in [0, 1], description)


class StageProgress:
    """Turns (stage, fraction within the stage) into one overall fraction for ``sink(fraction, desc)``.

    ``stages`` lists the stages this run goes through; their weights are renormalised to sum to 1.
    """

    def __init__(self, sink: Sink | None, stages: list[str]):
        self.sink = sink
        total = sum(STAGE_WEIGHTS[s] for s in stages)
        start, self.span = 0.0, {}
        for s in stages:
            self.span[s] = (start, STAGE_WEIGHTS[s] / total)
            start += STAGE_WEIGHTS[s] / total

    def __call__(self, stage: str, fraction: float, desc: str) -> None:
        if self.sink is not None:
            start, width = self.span[stage]
            self.sink(min(1.0, start + width * min(max(fraction, 0.0), 1.0)), desc)


@dataclass
class RunResult:
    """What one run wrote. ``files``: kind -> path (views_zip, transforms, manifest, grid, heatmaps, ply,
    viewer_ply, splat, glb, mp4, gif, camera_path, metrics); ``views``: [(image path, caption)] of the input
    views; ``heatmaps`` likewise for the scored views; ``seconds``: per stage; ``warnings``: what the user should
    know (e.g. no mesh)."""

    folder: Path
    files: dict = field(default_factory=dict)
    views: list = field(default_factory=list)
    heatmaps: list = field(default_factory=list)
    metrics: dict | None = None
    manifest: dict | None = None
    seconds: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)


def model_problem(path: str | os.PathLike) -> str | None:
    """A user-facing message when ``path`` holds no saved pipeline, else None."""
    path = Path(path)
    if not (path / "model_index.json").is_file():
        return (f"model not found at {path}; see README (train it with `mvgen train`, or point MVGEN_MODEL / "
                f"--model at a saved pipeline folder)")
    return None


def load_model(path: str | os.PathLike):
    """(pipeline with its progress bar off, path) via ``mvgen.generate.load_pipeline``.

    ``mvgen.models.ptdit`` is imported first: diffusers only loads the transformer's class from a module that
    is already imported, and nothing else imports it in a fresh process (`mvgen generate` has the same need).
    """
    import mvgen.models.ptdit  # noqa: F401  (defines PTDiTTransformer3DModel for from_pretrained)
    from mvgen.generate import load_pipeline

    pipe, path = load_pipeline(path)
    pipe.set_progress_bar_config(disable=True)
    return pipe, path


def view_angles(cameras) -> list[tuple[float, float]]:
    """[(azimuth, elevation)] in degrees per camera, in mvgen's orbit convention (azimuth 0 = front, on -Y)."""
    out = []
    for x, y, z in cameras.centers.tolist():
        r = math.sqrt(x * x + y * y + z * z) or 1.0
        out.append((round(math.degrees(math.atan2(x, -y)) % 360, 1), round(math.degrees(math.asin(z / r)), 1)))
    return out


def zip_views(folder: Path, dest: Path) -> Path:
    """``dest``: views/*.png + transforms.json (+ manifest.json) — a folder `mvgen reconstruct` reads."""
    members = sorted((folder / "views").glob("*.png")) + [folder / n for n in ("transforms.json", "manifest.json")
                                                          if (folder / n).is_file()]
    with atomic_path(dest) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for m in members:
            z.write(m, m.relative_to(folder).as_posix())
    return dest


# ------------------------------------------------------------------------------------------------- stages

def generate_stage(pipe, prompt: str, out: Path, settings: dict, model_path: Path | None,
                   progress: StageProgress) -> dict:
    """Views into ``out`` (an existing folder being built) with a progress update per denoising step."""
    from mvgen.generate import write_generation

    steps = settings["steps"]
    progress("generate", 0.0, "encoding the prompt")

    def on_step(pipe_, i, t, kwargs):
        progress("generate", (i + 1) / (steps + 1), f"generating views: step {i + 1}/{steps}")
        return {}

    manifest = write_generation(pipe, prompt, out, views=settings["views"], elevation=settings["elevation"],
                                steps=steps, guidance=settings["guidance"], seed=settings["seed"],
                                model_path=model_path, callback=on_step)
    zip_views(out, out / "views.zip")
    progress("generate", 1.0, "views done")
    return manifest


def reconstruct_stage(views, out: Path, cfg: AppConfig, fit_config,
                      progress: StageProgress) -> tuple[dict, dict, list, list]:
    """Fit on the non-held-out views, score the held-out ones, write heatmaps, exports and metrics.json.

    Args: views: ``mvgen.cameras.PosedViews``; out: an existing folder.
    Returns: (metrics, files {kind: path}, heatmaps [(path, caption)], warnings).
    """
    from PIL import Image

    from mvgen.cameras import atomic_write_text
    from reconstruction.export import (atomic_path, render_orbit, save_camera_path, save_gif, save_glb, save_ply,
                                       save_splat, save_video)
    from mvgen.asset import fit_asset
    from reconstruction.metrics import error_heatmap, holdout_split, parse_holdout

    every = parse_holdout(cfg.holdout)
    holdout_split(len(views.cameras), every)  # fail before fitting when the split is impossible
    t0 = time.perf_counter()

    def on_fit(step, total, stats):
        phase = "fitting Gaussians" if step <= fit_config.steps else "fitting the asset on all views"
        desc = f"{phase}: step {step}/{total}, {stats['n_gaussians']} Gaussians"
        progress("fit", step / total, desc if step < total else "scoring held-out views")

    asset = fit_asset(views.images, views.cameras, every, fit_config, cfg.asset_steps, cfg.backend, on_fit,
                      with_lpips=cfg.with_lpips)
    report = asset.report
    metrics = dict(report.metrics)
    metrics.update(asset_views=asset.asset_views, asset_steps=asset.asset_steps,
                   asset_seconds=round(asset.asset_seconds, 2), asset_gaussians=len(asset.gaussians))
    angles = view_angles(views.cameras)
    metrics["view_files"] = [views.files[i].name for i in metrics["views"]]
    metrics["view_angles"] = [list(angles[i]) for i in metrics["views"]]
    seconds = {"fit": round(metrics["fit_seconds"] + asset.asset_seconds, 2),
               "evaluate": round(metrics["seconds"] - metrics["fit_seconds"], 2)}

    t1 = time.perf_counter()
    progress("export", 0.0, "writing heatmaps")
    heat_dir = out / "heatmaps"
    heat_dir.mkdir(exist_ok=True)
    heatmaps = []
    for k, i in enumerate(metrics["views"]):
        path = heat_dir / f"view_{i:03d}.png"
        with atomic_path(path) as tmp:
            Image.fromarray(error_heatmap(report.renders[k], report.targets[k])).save(tmp, format="PNG")
        caption = f"view {i} · az {angles[i][0]:.0f}° · PSNR {metrics['psnr_per_view'][k]:.1f} dB"
        heatmaps.append((path, caption))
    files = {"heatmaps": heatmap_sheet(heatmaps, out / "heatmaps.png")}

    g = asset.gaussians  # the asset: every view seen (the scoring fit continued), see mvgen/asset.py
    warnings = []
    progress("export", 0.1, "exporting .ply / .splat")
    files["ply"] = save_ply(g, out / "scene.ply")
    files["viewer_ply"] = save_ply(splat_viewer_gaussians(g), out / "viewer.ply")  # upright in the app's viewer
    files["splat"] = save_splat(g, out / "scene.splat")
    progress("export", 0.3, "extracting the mesh (.glb)")
    try:
        files["glb"] = save_glb(g, out / "scene.glb", cfg.mesh_resolution)
    except ValueError as e:  # e.g. too faint to mesh: the other exports are still useful
        warnings.append(f"no .glb mesh: {e}")
    progress("export", 0.6, "rendering the orbit video")
    cams = _video_orbit(views.cameras, cfg)
    frames = render_orbit(g, cams, cfg.backend)
    files["mp4"] = save_video(frames, out / "scene.mp4")
    step = max(1, len(frames) // 30)
    files["gif"] = save_gif(frames[::step], out / "scene.gif", fps=max(1, round(24 / step)))
    files["camera_path"] = save_camera_path(cams, out / "scene_camera_path.json")
    seconds["export"] = round(time.perf_counter() - t1, 2)

    metrics["files"] = {k: Path(v).name for k, v in files.items()}
    metrics["config"] = fit_config.to_dict()
    metrics["stage_seconds"] = seconds
    metrics["warnings"] = warnings
    files["metrics"] = out / "metrics.json"
    atomic_write_text(files["metrics"], json.dumps(metrics, indent=2))
    progress("export", 1.0, "exports done")
    metrics["seconds_total"] = round(time.perf_counter() - t0, 2)
    return metrics, files, heatmaps, warnings


# Gradio's splat viewer (gsplat.js) opens at 5 units from the origin with a ~25-32° field of view, so it frames
# about ±0.8 units vertically at the app's 360 px height; the object is centred and scaled to this radius.
SPLAT_VIEWER_RADIUS = 0.6


def splat_viewer_gaussians(gaussians, radius: float = SPLAT_VIEWER_RADIUS):
    """The Gaussians turned upright for Gradio's splat viewer (gsplat.js: world up is -Y, it looks from -Z):
    (x, y, z) -> (x, -z, y), a +90° turn about X, so mvgen's +Z up / front -Y shows standing, front first;
    then centred on the visible Gaussians and scaled so that they fit in ``radius`` (the viewer's fixed opening
    camera frames the whole object). Only the degree-0 colour is kept (the viewer ignores higher SH bands,
    which would need rotating too)."""
    import torch

    from reconstruction.gaussians import Gaussians

    g = gaussians.detach()
    R = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    qr = torch.tensor([math.cos(math.pi / 4), math.sin(math.pi / 4), 0.0, 0.0])  # the same turn, wxyz
    q = torch.nn.functional.normalize(g.quats, dim=-1)
    w1, x1, y1, z1 = qr
    w2, x2, y2, z2 = q.unbind(-1)
    quats = torch.stack([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                         w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2], dim=-1)
    means = g.means @ R.T
    seen = torch.sigmoid(g.opacities) > 0.2
    core = means[seen] if int(seen.sum()) >= 10 else means
    lo, hi = torch.quantile(core, 0.01, dim=0), torch.quantile(core, 0.99, dim=0)
    centre = (lo + hi) / 2
    extent = float((core - centre).norm(dim=-1).quantile(0.99)) if len(core) else 1.0
    scale = radius / max(extent, 1e-6)
    return Gaussians((means - centre) * scale, quats, g.scales + math.log(scale), g.opacities, g.sh0,
                     torch.zeros(len(g), 0, 3), sh_degree=0)


def heatmap_sheet(heatmaps: list, path: Path, min_height: int = 128) -> Path:
    """One labelled PNG of every scored view's heatmap strip (target | render | error), one row per view;
    small views are enlarged (nearest neighbour) to ``min_height`` so they stay readable."""
    from PIL import Image

    from mvgen.imageutil import grid, save_png

    strips = []
    for p, _ in heatmaps:
        with Image.open(p) as im:
            scale = max(1, -(-min_height // im.height))
            strips.append(im.convert("RGB").resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST))
    save_png(grid([[s] for s in strips], labels=[c for _, c in heatmaps]), path)
    return path


def _video_orbit(cameras, cfg: AppConfig):
    """Orbit video cameras at the input views' median distance and elevation and their vertical fov."""
    import statistics

    from reconstruction.export import orbit_path

    radius = float(cameras.centers.norm(dim=-1).median())
    elevation = max(-80.0, min(80.0, statistics.median(el for _, el in view_angles(cameras))))
    fov = math.degrees(2 * math.atan(0.5 * cameras.height / float(cameras.K[0, 1, 1])))
    return orbit_path(cfg.video_frames, elevation, cfg.video_width, radius=radius, fov_deg=fov)


# ------------------------------------------------------------------------------------------- whole runs

def run_prompt(pipe, prompt: str, out: str | os.PathLike, cfg: AppConfig, settings: dict,
               model_path: Path | None = None, stop_after_views: bool = False, sink: Sink | None = None,
               overwrite: bool = False) -> RunResult:
    """All stages for one prompt into ``out`` (built as a temporary sibling, then renamed over ``out``).

    ``settings``: the output of ``ui.settings.check_run_settings``. ``sink(fraction, desc)`` sees progress.
    An existing ``out`` is replaced only if it is an earlier `mvgen run` output, or with ``overwrite``
    (``mvgen.fileio.OutputExistsError`` otherwise, before any work).
    """
    from mvgen.cameras import load_views

    out = prepare_output_dir(out, "run", overwrite)
    stages = ["generate"] if stop_after_views else ["generate", "fit", "export"]
    progress = StageProgress(sink, stages)
    t0 = time.perf_counter()
    with build_output_dir(out, "run", overwrite) as tmp:
        manifest = generate_stage(pipe, prompt, tmp, settings, model_path, progress)
        result = RunResult(folder=out, manifest=manifest)
        result.seconds["generate"] = round(time.perf_counter() - t0, 2)
        names = {"views_zip": "views.zip", "transforms": "transforms.json", "manifest": "manifest.json",
                 "grid": "grid.png"}
        views = load_views(tmp)
        angles = view_angles(views.cameras)
        result.views = [(out / "views" / f.name, f"view {i} · az {a:.0f}° · el {e:.0f}°")
                        for i, (f, (a, e)) in enumerate(zip(views.files, angles))]
        if not stop_after_views:
            fit_config = cfg.fit_config(settings["recon_steps"], settings["seed"])
            metrics, files, heatmaps, warnings = reconstruct_stage(views, tmp, cfg, fit_config, progress)
            result.metrics, result.warnings = metrics, warnings
            result.seconds.update(metrics["stage_seconds"])
            names.update({k: Path(v).name for k, v in files.items()})
            result.heatmaps = [(out / "heatmaps" / Path(p).name, c) for p, c in heatmaps]
        result.files = {k: out / v for k, v in names.items()}
    result.seconds["total"] = round(time.perf_counter() - t0, 2)
    if sink is not None:
        sink(1.0, "done")
    return result


def run_views(folder: str | os.PathLike, out: str | os.PathLike, cfg: AppConfig, recon_steps: int | None = None,
              seed: int = 0, sink: Sink | None = None, overwrite: bool = False) -> RunResult:
    """Reconstruction and the consistency report for a user's posed views (a transforms.json folder).

    Views larger than ``cfg.max_image_size`` are downscaled (area filter) before fitting. An existing ``out`` is
    replaced only if it is an earlier report of this function, or with ``overwrite``.
    """
    from mvgen.cameras import CameraError, find_transforms, load_views, read_transforms

    out = prepare_output_dir(out, "run-views", overwrite)
    cams, _ = read_transforms(find_transforms(folder))
    if len(cams) > cfg.max_upload_views:
        raise CameraError(f"transforms.json has {len(cams)} views; the limit is {cfg.max_upload_views}")
    downscale = max(1.0, max(cams.width, cams.height) / cfg.max_image_size)
    if min(cams.width, cams.height) / downscale < 32:
        raise CameraError(f"views are {cams.width}x{cams.height}; at least 32 px on each side are needed")
    fit_config = cfg.fit_config(recon_steps, seed)
    progress = StageProgress(sink, ["fit", "export"])
    progress("fit", 0.0, "loading the views")
    views = load_views(folder, downscale)
    t0 = time.perf_counter()
    with build_output_dir(out, "run-views", overwrite) as tmp:
        metrics, files, heatmaps, warnings = reconstruct_stage(views, tmp, cfg, fit_config, progress)
    angles = view_angles(views.cameras)
    result = RunResult(folder=out, metrics=metrics, warnings=warnings, seconds=dict(metrics["stage_seconds"]))
    result.files = {k: out / Path(v).name for k, v in files.items()}
    result.views = [(f, f"view {i} · az {a:.0f}° · el {e:.0f}°")
                    for i, (f, (a, e)) in enumerate(zip(views.files, angles))]
    result.heatmaps = [(out / "heatmaps" / Path(p).name, c) for p, c in heatmaps]
    result.seconds["total"] = round(time.perf_counter() - t0, 2)
    if sink is not None:
        sink(1.0, "done")
    return result


def summary_line(result: RunResult) -> str:
    """One line: held-out PSNR / SSIM / LPIPS (naming the LPIPS implementation), Gaussians, seconds."""
    m = result.metrics
    if m is None:
        return f"{len(result.views)} views in {result.seconds.get('generate', 0):.1f} s (stopped after the views)"
    lp = f"  LPIPS {m['lpips']:.4f} ({m['lpips_impl']})" if "lpips" in m else ""
    return (f"{m['protocol']}: PSNR {m['psnr']:.2f} dB  SSIM {m['ssim']:.4f}{lp}  "
            f"(fitted views {m['train_psnr']:.2f} dB, {m['n_gaussians']} Gaussians, {result.seconds['total']:.1f} s)")

