"""The Python API: ``from mvgen import ...`` (README "Python API"). Thin functions over ``mvgen.generate`` and
``mvgen.job``, the same code the CLI and the app run, returning typed results:

    load_generator(model=None, device="auto") -> ViewGenerator    gen("a red mug") -> GeneratedViews
    reconstruct(views_or_folder, out, ...)     -> mvgen.job.RunResult   (`mvgen reconstruct`)
    text_to_3d(prompt, out, ...)               -> mvgen.job.RunResult   (`mvgen run`)
    evaluate_generator_views(paths, out, rig=...) -> per-object and mean rows   (`mvgen evaluate views`)

Defaults come from configs/app.yaml (``AppConfig``); ``device`` is ``mvgen.device``'s (auto = CUDA when available);
bad input raises ``ValueError`` subclasses naming the field, as everywhere. Nothing heavy is imported until a
function is called, so ``import mvgen`` stays light.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class GeneratedViews:
    """The views of one prompt. ``images``: [V,H,W,3] float numpy array in [0,1] (white background); ``cameras``:
    ``mvgen.cameras.Cameras`` of the views; ``manifest``: the settings, model, device and seconds (as
    manifest.json); ``folder``: where ``save`` last wrote them (None: not saved)."""

    prompt: str
    images: object
    cameras: object
    manifest: dict
    folder: Path | None = None

    def __len__(self) -> int:
        return len(self.images)

    def pil(self) -> list:
        """The views as PIL images (RGB)."""
        import numpy as np
        from PIL import Image

        return [Image.fromarray((v * 255).round().astype(np.uint8)) for v in self.images]

    def save(self, folder: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write views/ (RGBA PNGs), transforms.json, grid.png and manifest.json into ``folder`` — what `mvgen
        generate` writes and ``reconstruct`` reads. An existing folder is replaced only if it is an earlier output
        of this kind, or with ``overwrite`` (``mvgen.fileio``)."""
        from mvgen.fileio import build_output_dir
        from mvgen.generate import save_views

        with build_output_dir(folder, "generate", overwrite) as tmp:
            save_views(tmp, self.images, self.cameras, self.manifest)
        self.folder = Path(folder)
        return self.folder


@dataclass
class ViewGenerator:
    """A loaded text-to-multiview pipeline (``pipe``: ``mvgen.pipeline.PTDiTMultiViewPipeline`` on ``device``) and
    the job's defaults (``config``: ``mvgen.settings.AppConfig``). Call it with a prompt."""

    pipe: object
    model_path: Path
    config: object
    warnings: list = field(default_factory=list)

    @property
    def device(self):
        return self.pipe.device

    @property
    def output_sizes(self) -> tuple[int, ...]:
        """The view sizes this model makes: its native one, and twice it when it has a 2x decoder."""
        return self.pipe.output_sizes

    def __call__(self, prompt: str, views: int | None = None, elevation: float | None = None,
                 steps: int | None = None, guidance: float | None = None, seed: int | None = None,
                 cameras=None, output_size: int | None = None, rings=None,
                 part_guidance: float | None = None) -> GeneratedViews:
        """Views of ``prompt`` on an orbit of ``views`` cameras at ``elevation`` degrees, or on several ``rings``
        (elevations such as ``(10, 30)`` or "10,30": views taken in pairs from ring to ring; not with
        ``elevation``), or under ``cameras`` (``mvgen.cameras.Cameras``); ``output_size`` px square (one of
        ``output_sizes``); ``part_guidance``: part-colour guidance for prompts that name a part colour (0: off);
        unset settings come from the config. ValueError naming a bad field."""
        from mvgen.generate import sample_views, vocabulary_warning
        from mvgen.settings import CLI_RANGES, check_prompt, check_rings, check_run_settings, pick_rings

        cfg = self.config.with_overrides(**CLI_RANGES)
        prompt = check_prompt(prompt)
        rings = pick_rings(elevation, rings)
        if cameras is not None:  # the cameras fix every view's elevation: the config's rings do not apply
            if check_rings(rings):
                raise ValueError("rings: give cameras or rings, not both (the cameras fix every view's elevation)")
            rings = ""
        s = check_run_settings(cfg, *(v if v is not None else getattr(cfg, k) for k, v in (
            ("views", views), ("elevation", elevation), ("steps", steps), ("guidance", guidance), ("seed", seed),
            ("recon_steps", None))), output_size=output_size, output_sizes=self.output_sizes, rings=rings,
            part_guidance=part_guidance)
        warning = vocabulary_warning(prompt, self.model_path)
        if warning:
            self.warnings.append(warning)
        images, cams, manifest = sample_views(
            self.pipe, prompt, views=s["views"], elevation=s["elevation"], steps=s["steps"], guidance=s["guidance"],
            seed=s["seed"], cameras=cameras, model_path=self.model_path, autocast=cfg.autocast(),
            output_size=s["output_size"], rings=s["rings"], part_guidance=s["part_guidance"])
        return GeneratedViews(prompt, images, cams, manifest)


def load_generator(model: str | os.PathLike | None = None, device: str | None = None,
                   config: str | os.PathLike | None = None) -> ViewGenerator:
    """The pipeline in ``model`` (default: the shipped model, or ``MVGEN_MODEL``) on ``device`` (default: the
    config's, ``auto``), with the defaults of ``config`` (default: configs/app.yaml)."""
    from mvgen.generate import default_model_path
    from mvgen.job import load_model, model_problem

    cfg = _config(config, device)
    path = Path(model) if model is not None else default_model_path()
    problem = model_problem(path)
    if problem:
        raise FileNotFoundError(problem)
    pipe, path = load_model(path, cfg.device)
    return ViewGenerator(pipe, path, cfg)


def reconstruct(views, out: str | os.PathLike, steps: int | None = None, seed: int = 0,
                device: str | None = None, config: str | os.PathLike | None = None,
                overwrite: bool = False, progress=None):
    """Gaussians from posed views -> ``out``: scene.ply / .splat / .glb / .mp4 / .gif, metrics.json (the held-out
    views' PSNR / SSIM / LPIPS), heatmaps — the job's 3D stages (`mvgen reconstruct`, the app's "Evaluate your own
    views"). ``views``: a folder with transforms.json, or ``GeneratedViews`` (saved to a temporary folder first
    when they were not saved). ``steps``: fitting steps (default: the config's). ``progress(fraction, text)``.
    Returns ``mvgen.job.RunResult``."""
    from mvgen.checks import check_seed
    from mvgen.job import run_views
    from mvgen.settings import CLI_RANGES, check_recon_steps

    cfg = _config(config, device)
    if steps is not None:  # named here: the fit's preset would say only "invalid literal for int()"
        steps = check_recon_steps(cfg.with_overrides(**CLI_RANGES), steps)
    seed = check_seed(seed)
    if isinstance(views, GeneratedViews) and views.folder is None:
        with tempfile.TemporaryDirectory(prefix="mvgen-views-") as tmp:
            return run_views(views.save(Path(tmp) / "views"), out, cfg, steps, seed, progress, overwrite)
    folder = views.folder if isinstance(views, GeneratedViews) else views
    return run_views(folder, out, cfg, steps, seed, progress, overwrite)


def text_to_3d(prompt: str, out: str | os.PathLike, views: int | None = None, steps: int | None = None,
               recon_steps: int | None = None, seed: int | None = None, model: str | os.PathLike | None = None,
               device: str | None = None, config: str | os.PathLike | None = None, views_only: bool = False,
               overwrite: bool = False, progress=None, generator: ViewGenerator | None = None,
               output_size: int | None = None, rings=None, part_guidance: float | None = None):
    """The whole job (`mvgen run`): prompt -> views -> Gaussians (scored on held-out views, then fitted on all)
    -> ``out``: views/, views.zip, scene.ply / .splat / .glb / .mp4 / .gif, metrics.json, heatmaps. Unset settings
    come from the config; ``generator`` reuses a loaded ``ViewGenerator`` (else ``model`` is loaded on ``device``);
    ``output_size``: the views' size (``ViewGenerator.output_sizes``; the fit runs at it); ``rings``: several
    elevations instead of the config's one (``(10, 30)`` or "10,30": views taken in pairs from ring to ring, so the
    fitted and the held-out views each cover every ring; "": one ring); ``part_guidance``: part-colour guidance for
    prompts that name a part colour (0: off). Returns ``mvgen.job.RunResult``."""
    from mvgen.job import run_prompt
    from mvgen.settings import CLI_RANGES, check_prompt, check_run_settings

    gen = generator or load_generator(model, device, config)
    cfg = _config(config, device) if generator is None else gen.config
    cfg = cfg.with_overrides(**CLI_RANGES)
    settings = check_run_settings(cfg, *(v if v is not None else getattr(cfg, k) for k, v in (
        ("views", views), ("elevation", None), ("steps", steps), ("guidance", None), ("seed", seed),
        ("recon_steps", recon_steps))), output_size=output_size, output_sizes=gen.output_sizes, rings=rings,
        part_guidance=part_guidance)
    return run_prompt(gen.pipe, check_prompt(prompt), out, cfg, settings, gen.model_path, views_only, progress,
                      overwrite)


def evaluate_generator_views(paths, out: str | os.PathLike, rig: str | None = None, grid: str | None = None,
                             protocols=("heldout", "cross-render"), steps: int | None = None, seed: int = 0,
                             mask: str = "auto", tolerance: float = 0.1, frame_step: int = 1, names=None,
                             device: str | None = None, config: str | os.PathLike | None = None) -> dict:
    """Multiview consistency of any generator's views (`mvgen evaluate views`): ``paths`` (one or a list, one per
    model) each one object or a folder of objects (transforms.json folders, folders or zips of images, grid
    images, videos); ``rig`` a preset or ``"orbit:views=8,elev=20,..."`` (``mvgen.rigs``; None: each object's
    transforms.json). Writes ``out`` (resumed when it holds an earlier evaluation with these settings) and returns
    the results: ``{"models": {name: {"objects": [rows], "mean": row}}, "settings": ..., "skipped": n}``."""
    from mvgen.evaluate_views import EvalSettings, evaluate_models, parse_protocols

    cfg = _config(config, device).with_overrides(asset_steps=0)
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    names = list(names) if names is not None else [Path(p).resolve().name for p in paths]
    if len(names) != len(paths) or len(set(names)) != len(names):
        raise ValueError(f"names: give {len(paths)} different names, got {names!r}")
    protocols = parse_protocols(",".join(protocols) if not isinstance(protocols, str) else protocols)
    settings = EvalSettings(rig=rig, grid=grid, frame_step=frame_step, mask=mask, tolerance=tolerance,
                            protocols=protocols, steps=steps if steps is not None else cfg.recon_steps, seed=seed,
                            max_side=cfg.max_image_size)
    return evaluate_models([(n, Path(p)) for n, p in zip(names, paths)], out, settings, cfg, show_progress=False)


def _config(config, device):
    """``AppConfig`` of ``config`` (default: configs/app.yaml) with ``device`` on top, the device checked now."""
    from mvgen.device import resolve_device
    from mvgen.settings import DEFAULT_CONFIG, AppConfig

    cfg = AppConfig.from_yaml(config or DEFAULT_CONFIG, device=device)
    resolve_device(cfg.device, "device")
    return cfg
