"""The text-to-3D job as a library: prompt -> views -> Gaussians (score + asset) -> exports -> report. The app's
handlers, `mvgen run`, `mvgen reconstruct` and `mvgen bench e2e` call these functions; nothing here imports gradio.

Stages are plain functions over typed results, each reporting to a ``StageProgress``:

    generate_stage  prompt            -> Views     views/, grid.png, transforms.json, manifest.json, views.zip
    fit_stage       Views             -> AssetFit  fit the even views, score the odd ones, continue on all views
    export_stage    AssetFit, Views   -> Exports   scene.{ply,splat,glb,mp4,gif}, scene_camera_path.json, viewer.ply
    report_stage    AssetFit, Exports -> Report    heatmaps/view_XXX.png, heatmaps.png, metrics.json

``reconstruct_stages`` runs the last three: the one 3D path for generated views (``run_prompt``), a user's views
(``run_views``, the app's "Evaluate your own views") and `mvgen reconstruct`. A mesh that cannot be extracted is
a warning, never a failed run. Every folder is built under a temporary name and renamed when complete
(``mvgen.fileio``); an existing folder is replaced only if it is a finished output of the same kind, or with
``overwrite``.
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mvgen.fileio import atomic_path, atomic_write_text, build_output_dir, prepare_output_dir
from mvgen.settings import AppConfig

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
class Views:
    """The views the 3D stages start from: ``posed`` (``mvgen.cameras.PosedViews``: images, cameras, files),
    ``angles`` [(azimuth, elevation)] in degrees per view, and the generation ``manifest`` (None: a user's
    views)."""

    posed: object
    angles: list
    manifest: dict | None = None

    def captions(self) -> list:
        """[(image path, caption with the view's azimuth and elevation)]."""
        return [(f, f"view {i} · az {a:.0f}° · el {e:.0f}°")
                for i, (f, (a, e)) in enumerate(zip(self.posed.files, self.angles))]


@dataclass
class Exports:
    """``files``: kind -> path (ply, viewer_ply, splat, glb, mp4, gif, camera_path); ``warnings`` (e.g. no mesh);
    ``seconds`` spent."""

    files: dict
    warnings: list
    seconds: float


@dataclass
class Report:
    """``metrics`` (as in metrics.json, plus ``seconds_total``); ``heatmaps`` [(path, caption)] per scored view;
    ``files``: heatmaps (the sheet), metrics."""

    metrics: dict
    heatmaps: list
    files: dict


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


# -------------------------------------------------------------------------------------------------- model

def model_problem(path: str | os.PathLike) -> str | None:
    """A user-facing message when ``path`` holds no saved pipeline, else None."""
    path = Path(path)
    if not (path / "model_index.json").is_file():
        return (f"model not found at {path}; see README (train it with `mvgen train`, or point MVGEN_MODEL / "
                f"--model at a saved pipeline folder)")
    return None


def model_output_sizes(path: str | os.PathLike) -> tuple[int, ...]:
    """The view sizes the saved pipeline at ``path`` makes, read from its config files (nothing is loaded): the
    native size (transformer sample_size x the VAE's downsampling), and twice it when model_index.json names a 2x
    decoder (``decoder_2x``); () when the folder cannot be read (loading it then says why)."""
    path = Path(path)
    try:
        index = json.loads((path / "model_index.json").read_text())
        latent = json.loads((path / "transformer" / "config.json").read_text())["sample_size"]
        levels = len(json.loads((path / "vae" / "config.json").read_text())["block_out_channels"])
        native = int(latent) * 2 ** (levels - 1)
    except (OSError, ValueError, KeyError, TypeError):
        return ()
    entry = index.get("decoder_2x") if isinstance(index, dict) else None
    return (native, 2 * native) if isinstance(entry, list) and entry and entry[0] is not None else (native,)


def load_model(path: str | os.PathLike, device=None):
    """(pipeline with its progress bar off, path) via ``mvgen.generate.load_pipeline``, on ``device``
    (``mvgen.device``: None / "auto" = CUDA when available, else CPU).

    ``mvgen.models.ptdit`` is imported first: diffusers only loads the transformer's class from a module that
    is already imported, and nothing else imports it in a fresh process (`mvgen generate` has the same need).
    """
    import mvgen.models.ptdit  # noqa: F401  (defines PTDiTTransformer3DModel for from_pretrained)
    from mvgen.generate import load_pipeline

    pipe, path = load_pipeline(path, device)
    pipe.set_progress_bar_config(disable=True)
    return pipe, path


def view_angles(cameras) -> list[tuple[float, float]]:
    """[(azimuth, elevation)] in degrees per camera (``mvgen.cameras.orbit_angles``), rounded to 0.1°."""
    from mvgen.cameras import orbit_angles

    return [(round(a, 1), round(e, 1)) for a, e in zip(*orbit_angles(cameras))]


def zip_views(folder: Path, dest: Path) -> Path:
    """``dest``: views/*.png + transforms.json (+ manifest.json) — a folder `mvgen reconstruct` reads."""
    members = sorted((folder / "views").glob("*.png")) + [folder / n for n in ("transforms.json", "manifest.json")
                                                          if (folder / n).is_file()]
    with atomic_path(dest) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for m in members:
            z.write(m, m.relative_to(folder).as_posix())
    return dest


# ------------------------------------------------------------------------------------------------- stages

def generate_stage(pipe, prompt: str, out: Path, settings: dict, fit_config, backend: str,
                   model_path: Path | None, progress: StageProgress) -> Views:
    """Views of ``prompt`` into ``out`` (an existing folder being built), with a progress update per denoising
    step; ``settings["steer"]`` turns on 3D-consistent sampling (fitting with ``fit_config`` on ``backend``);
    ``settings.get("autocast")``: ``AppConfig.autocast()``; ``settings.get("part_guidance")``: part-colour
    guidance (0 when absent); ``settings.get("output_size")``: the views' size (None:
    the model's native size); ``settings.get("rings")``: several elevations instead of ``settings["elevation"]``
    (views taken in pairs from ring to ring, ``mvgen.rigs.ring_elevations``; None: one ring). Runs on the
    pipeline's device."""
    from mvgen.cameras import load_views
    from mvgen.generate import write_generation

    steps = settings["steps"]
    progress("generate", 0.0, "encoding the prompt")

    def on_step(pipe_, i, t, kwargs):
        progress("generate", (i + 1) / (steps + 1), f"generating views: step {i + 1}/{steps}")
        return {}

    manifest = write_generation(pipe, prompt, out, views=settings["views"], elevation=settings["elevation"],
                                steps=steps, guidance=settings["guidance"], seed=settings["seed"],
                                model_path=model_path, callback=on_step, steer=settings["steer"],
                                fit_config=fit_config, backend=backend, autocast=settings.get("autocast"),
                                output_size=settings.get("output_size"), rings=settings.get("rings"),
                                part_guidance=settings.get("part_guidance", 0.0))
    zip_views(out, out / "views.zip")
    progress("generate", 1.0, "views done")
    posed = load_views(out)
    return Views(posed, view_angles(posed.cameras), manifest)


def fit_stage(views: Views, cfg: AppConfig, fit_config, progress: StageProgress):
    """Fit the views that are not held out (``cfg.holdout``), score the held-out ones, then continue the fit on
    every view for ``cfg.asset_steps`` (the asset), on ``cfg.device`` (the views are moved there; the asset's
    Gaussians and the report's renders stay there). Returns ``mvgen.asset.AssetFit``."""
    from mvgen.asset import fit_asset
    from mvgen.device import resolve_device
    from reconstruction.protocols import holdout_split, parse_holdout

    from reconstruction.fit import scheduled

    every = parse_holdout(cfg.holdout)
    train, _ = holdout_split(len(views.posed.cameras), every)  # fail before fitting when the split is impossible
    cams = views.posed.cameras
    fit_config = scheduled(fit_config, len(train), cams.height, cams.width)  # steps 0: from the fitted views

    def on_fit(step, total, stats):
        phase = "fitting Gaussians" if step <= fit_config.steps else "fitting the asset on all views"
        desc = f"{phase}: step {step}/{total}, {stats['n_gaussians']} Gaussians"
        progress("fit", step / total, desc if step < total else "scoring held-out views")

    device = resolve_device(cfg.device, "device")
    return fit_asset(views.posed.images.to(device), views.posed.cameras.to(device), every, fit_config,
                     cfg.asset_steps, cfg.backend, on_fit, with_lpips=cfg.with_lpips)


def export_stage(asset, views: Views, out: Path, cfg: AppConfig, progress: StageProgress) -> Exports:
    """The asset's exports into ``out``, the orbit video framed by the input cameras (rendered where the asset
    is); and viewer.ply, the asset turned upright and framed for the app's splat viewer. Files are written from
    CPU copies."""
    from mvgen.exports import splat_viewer_gaussians, video_cameras
    from reconstruction.export import export_all, save_ply

    t0 = time.perf_counter()
    cameras = video_cameras(views.posed.cameras, cfg.video_frames, cfg.video_width)
    files, warnings = export_all(asset.gaussians, out, cameras, "scene", cfg.mesh_resolution, cfg.backend,
                                 progress=lambda f, desc: progress("export", 0.9 * f, desc))
    files["viewer_ply"] = save_ply(splat_viewer_gaussians(asset.gaussians.to("cpu")), out / "viewer.ply")
    progress("export", 1.0, "exports done")
    return Exports(files, warnings, time.perf_counter() - t0)


def report_stage(asset, views: Views, exports: Exports, out: Path, fit_config, progress: StageProgress,
                 extra: dict | None = None) -> Report:
    """Heatmaps of the scored views, their labelled sheet and metrics.json (the score, the asset, the views'
    files and angles, the exports, ``extra`` entries, the fit config, seconds per stage, warnings)."""
    from mvgen.exports import heatmap_sheet, write_heatmaps

    t0 = time.perf_counter()
    progress("report", 0.0, "writing heatmaps")
    report = asset.report
    heatmaps = write_heatmaps(report, views.angles, out / "heatmaps")
    files = {"heatmaps": heatmap_sheet(heatmaps, out / "heatmaps.png")}
    m = dict(report.metrics)
    m.update(asset_views=asset.asset_views, asset_steps=asset.asset_steps,
             asset_seconds=round(asset.asset_seconds, 2), asset_gaussians=len(asset.gaussians), **(extra or {}))
    m["view_files"] = [views.posed.files[i].name for i in m["views"]]
    m["view_angles"] = [list(views.angles[i]) for i in m["views"]]
    m["files"] = {k: Path(v).name for k, v in {**files, **exports.files}.items()}
    m["config"] = asset.report.fit.config.to_dict()  # as run: steps fixed for the scene (``scheduled``)
    m["stage_seconds"] = {"fit": round(m["fit_seconds"] + asset.asset_seconds, 2),
                          "evaluate": round(m["seconds"] - m["fit_seconds"], 2),
                          "export": round(exports.seconds + time.perf_counter() - t0, 2)}
    m["warnings"] = list(exports.warnings)
    files["metrics"] = out / "metrics.json"
    atomic_write_text(files["metrics"], json.dumps(m, indent=2))
    progress("report", 1.0, "report done")
    m["seconds_total"] = round(m["seconds"] + asset.asset_seconds + exports.seconds + time.perf_counter() - t0, 2)
    return Report(m, heatmaps, files)


def reconstruct_stages(views: Views, out: Path, cfg: AppConfig, fit_config,
                       progress: StageProgress) -> tuple[Report, Exports]:
    """Fit and score, export, report: the 3D half of every run, into ``out`` (an existing folder being built)."""
    asset = fit_stage(views, cfg, fit_config, progress)
    exports = export_stage(asset, views, out, cfg, progress)
    return report_stage(asset, views, exports, out, fit_config, progress), exports


# ------------------------------------------------------------------------------------------- whole runs

def run_prompt(pipe, prompt: str, out: str | os.PathLike, cfg: AppConfig, settings: dict,
               model_path: Path | None = None, stop_after_views: bool = False, sink: Sink | None = None,
               overwrite: bool = False) -> RunResult:
    """All stages for one prompt into ``out`` (built as a temporary sibling, then renamed over ``out``).

    ``settings``: the output of ``mvgen.settings.check_run_settings``. ``sink(fraction, desc)`` sees progress.
    An existing ``out`` is replaced only if it is an earlier `mvgen run` output, or with ``overwrite``
    (``mvgen.fileio.OutputExistsError`` otherwise, before any work).
    """
    out = prepare_output_dir(out, "run", overwrite)
    stages = ["generate"] if stop_after_views else ["generate", "fit", "export", "report"]
    progress = StageProgress(sink, stages)
    t0 = time.perf_counter()
    fit_config = cfg.fit_config(settings["recon_steps"], settings["seed"])
    with build_output_dir(out, "run", overwrite) as tmp:
        views = generate_stage(pipe, prompt, tmp, dict(settings, autocast=cfg.autocast()), fit_config, cfg.backend,
                               model_path, progress)
        result = RunResult(folder=out, manifest=views.manifest)
        result.seconds["generate"] = round(time.perf_counter() - t0, 2)
        files = {"views_zip": "views.zip", "transforms": "transforms.json", "manifest": "manifest.json",
                 "grid": "grid.png"}
        result.views = [(out / "views" / Path(f).name, c) for f, c in views.captions()]
        if not stop_after_views:
            report, exports = reconstruct_stages(views, tmp, cfg, fit_config, progress)
            _add_report(result, report, exports, out)
            files.update({k: Path(v).name for k, v in {**exports.files, **report.files}.items()})
        result.files = {k: out / v for k, v in files.items()}
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
    from mvgen.limits import MIN_LPIPS_SIDE

    out = prepare_output_dir(out, "run-views", overwrite)
    cams, _ = read_transforms(find_transforms(folder))
    if len(cams) > cfg.max_upload_views:
        raise CameraError(f"transforms.json has {len(cams)} views; the limit is {cfg.max_upload_views}")
    downscale = max(1.0, max(cams.width, cams.height) / cfg.max_image_size)
    if min(cams.width, cams.height) / downscale < MIN_LPIPS_SIDE:
        raise CameraError(f"views are {cams.width}x{cams.height}; at least {MIN_LPIPS_SIDE} px on each side "
                          f"are needed")
    fit_config = cfg.fit_config(recon_steps, seed)
    progress = StageProgress(sink, ["fit", "export", "report"])
    progress("fit", 0.0, "loading the views")
    posed = load_views(folder, downscale)
    views = Views(posed, view_angles(posed.cameras))
    t0 = time.perf_counter()
    result = RunResult(folder=out, views=views.captions())
    with build_output_dir(out, "run-views", overwrite) as tmp:
        report, exports = reconstruct_stages(views, tmp, cfg, fit_config, progress)
    _add_report(result, report, exports, out)
    result.files = {k: out / Path(v).name for k, v in {**exports.files, **report.files}.items()}
    result.seconds["total"] = round(time.perf_counter() - t0, 2)
    if sink is not None:
        sink(1.0, "done")
    return result


def _add_report(result: RunResult, report: Report, exports: Exports, out: Path) -> None:
    """The 3D stages' metrics, warnings, seconds and heatmaps (at their final place in ``out``) into ``result``."""
    result.metrics, result.warnings = report.metrics, list(exports.warnings)
    result.seconds.update(report.metrics["stage_seconds"])
    result.heatmaps = [(out / "heatmaps" / Path(p).name, c) for p, c in report.heatmaps]


def summary_line(result: RunResult) -> str:
    """One line: held-out PSNR / SSIM / LPIPS (naming the LPIPS implementation), Gaussians, seconds."""
    m = result.metrics
    if m is None:
        return f"{len(result.views)} views in {result.seconds.get('generate', 0):.1f} s (stopped after the views)"
    lp = f"  LPIPS {m['lpips']:.4f} ({m['lpips_impl']})" if "lpips" in m else ""
    return (f"{m['protocol']}: PSNR {m['psnr']:.2f} dB  SSIM {m['ssim']:.4f}{lp}  "
            f"(fitted views {m['train_psnr']:.2f} dB, {m['n_gaussians']} Gaussians, {result.seconds['total']:.1f} s)")
