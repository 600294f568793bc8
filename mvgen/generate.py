"""`mvgen generate`: prompt -> views (PNG), grid, transforms.json, manifest — a folder `mvgen reconstruct` reads."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from mvgen.limits import DEFAULT_GUIDANCE, DEFAULT_PART_GUIDANCE, PART_GUIDANCE, VIEWS

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "assets" / "mvgen-tiny"


def default_model_path() -> Path:
    """The shipped model folder (``MVGEN_MODEL`` overrides it)."""
    return Path(os.environ.get("MVGEN_MODEL", DEFAULT_MODEL))


def vocabulary_warning(prompt: str, model: Path) -> str | None:
    """A warning when the shipped model is used with words outside its vocabulary, else None."""
    if model.resolve() != DEFAULT_MODEL.resolve():
        return None
    from mvgen.data.captions import CaptionError, parse_caption

    try:
        parse_caption(prompt)
    except CaptionError as e:
        return (f"the default model only knows its training vocabulary ({e}); it will still generate, but "
                f"expect an object from its vocabulary. See README 'What the default model knows'.")
    return None


def part_contrast(prompt, part_guidance: float) -> dict:
    """Pipeline keyword arguments of part-colour guidance for ``prompt``: the prompt without its part-colour
    clause as ``contrast_prompt`` (``mvgen.data.wording.without_part_colour``) at ``contrast_scale`` =
    ``part_guidance``; {} when it is 0 or the prompt names no part colour (one extra transformer pass per step
    only where it can matter). A list of prompts gets guidance only if every prompt names a part colour."""
    from mvgen.data.wording import without_part_colour

    PART_GUIDANCE.check_number("part_guidance", part_guidance)
    if part_guidance == 0:
        return {}
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    contrast = [without_part_colour(p) for p in prompts]
    if any(c is None or not c.strip() for c in contrast):
        return {}
    return {"contrast_prompt": contrast if not isinstance(prompt, str) else contrast[0],
            "contrast_scale": float(part_guidance)}


def alpha_from_white(rgb: np.ndarray, threshold: float = 0.04, softness: float = 0.04) -> np.ndarray:
    """Estimated matte for views rendered on white: 0 where a pixel is within ``threshold`` of white."""
    d = (1.0 - rgb.min(axis=-1)).astype(np.float32)
    return np.clip((d - threshold) / softness, 0.0, 1.0)


def write_views(out: Path, images: np.ndarray, cameras, extra: dict | None = None) -> list[str]:
    """Write [V,H,W,3] views in [0,1] as RGBA PNGs (alpha estimated from the white background) plus
    transforms.json; returns the relative file paths."""
    from PIL import Image

    from mvgen.cameras import write_transforms

    (out / "views").mkdir(parents=True, exist_ok=True)
    files = []
    for i, img in enumerate(images):
        rgba = np.concatenate([img, alpha_from_white(img)[..., None]], axis=-1)
        rel = f"views/{i:03d}.png"
        Image.fromarray((rgba * 255).round().astype(np.uint8), "RGBA").save(out / rel)
        files.append(rel)
    write_transforms(out / "transforms.json", cameras, files, extra={"alpha": "estimated from white background", **(extra or {})})
    return files


def generate_to_folder(pipe, prompt: str, out: Path, *, overwrite: bool = False, **generation) -> dict:
    """Run the pipeline and write everything into ``out``, built in a temp folder and renamed on success;
    ``generation``: the keyword arguments of ``write_generation``.

    An existing ``out`` is replaced only if it is an earlier `mvgen generate` output, or with ``overwrite``
    (``mvgen.fileio.OutputExistsError`` otherwise, before the pipeline runs).
    """
    from mvgen.fileio import build_output_dir

    with build_output_dir(out, "generate", overwrite) as tmp:
        return write_generation(pipe, prompt, tmp, **generation)


def write_generation(pipe, prompt: str, folder: Path, **generation) -> dict:
    """Run the pipeline and write views/, transforms.json, grid.png and manifest.json into ``folder`` (an existing
    folder being built, e.g. by ``mvgen.fileio.build_output_dir``); returns the manifest. ``generation``: the
    keyword arguments of ``sample_views``."""
    images, cameras, manifest = sample_views(pipe, prompt, **generation)
    save_views(Path(folder), images, cameras, manifest)
    return manifest


def sample_views(pipe, prompt: str, *, views: int = 8, elevation: float = 20.0, steps: int = 20,
                 guidance: float = DEFAULT_GUIDANCE, seed: int = 0, cameras=None, model_path: Path | None = None,
                 callback=None, steer=None, fit_config=None, backend: str = "auto",
                 autocast: bool | None = None, output_size: int | None = None, rings=None,
                 part_guidance: float = DEFAULT_PART_GUIDANCE) -> tuple:
    """(views [V,H,W,3] float in [0,1] as a numpy array, their ``Cameras``, the manifest) of one prompt.

    ``steer``: ``mvgen.sampling3d.SteerSettings`` of 3D-consistent sampling (None or mode "off": plain sampling),
    fitting Gaussians with ``fit_config`` (``reconstruction.fit.FitConfig``) on ``backend``. Runs on the
    pipeline's device; the noise is drawn on the CPU from ``seed`` (the same start on every device); ``autocast``
    and ``output_size`` (None: native; twice it with the model's 2x decoder): see ``PTDiTMultiViewPipeline.__call__``.
    ``rings``: several elevations instead of ``elevation`` (``mvgen.settings.check_rings``; views taken in pairs
    from ring to ring: ``mvgen.rigs.ring_elevations``); the manifest records them and every view's elevation.
    ``part_guidance``: the scale of part-colour guidance (``part_contrast``; 0: off); the manifest records it and
    the contrast prompt it used.
    """
    import torch

    from mvgen.cameras import orbit_angles
    from mvgen.checks import check_seed
    from mvgen.pipeline import model_hash
    from mvgen.rigs import ring_elevations
    from mvgen.settings import check_rings

    seed = check_seed(seed)
    rings = check_rings(rings, views if cameras is None else None)
    if rings and cameras is not None:
        raise ValueError("rings: give cameras or rings, not both (the cameras fix every view's elevation)")
    steering = steer_arguments(steer, fit_config, backend, steps)
    contrast = part_contrast(prompt, part_guidance)
    t0 = time.time()
    per_view = ring_elevations(views, rings) if rings else elevation
    res = pipe(prompt, cameras=cameras, num_views=views, elevation=per_view, num_inference_steps=steps,
               guidance_scale=guidance, generator=torch.Generator().manual_seed(seed), output_type="np",
               callback_on_step_end=callback, autocast=autocast, output_size=output_size, **steering, **contrast)
    t_gen = time.time() - t0
    images = res.images[0]
    azimuths, elevations = orbit_angles(res.cameras)
    manifest = {
        "prompt": prompt, "seed": seed, "views": len(images), "elevation": None if rings else elevation,
        "rings": list(rings) if rings else None, "steps": steps,
        "guidance": guidance, "part_guidance": contrast.get("contrast_scale", 0.0),
        "contrast_prompt": contrast.get("contrast_prompt"), "model": str(model_path) if model_path else None,
        "model_hash": model_hash(model_path) if model_path else None, "image_size": int(images.shape[1]),
        "decoder": "vae" if int(images.shape[1]) == pipe.image_size else "decoder_2x",
        "device": str(pipe.device), "seconds": {"generate": round(t_gen, 3)},
        "azimuths_deg": [round(a, 1) for a in azimuths], "elevations_deg": [round(e, 1) for e in elevations],
    }
    if steering:
        manifest["steer"] = {"settings": dataclasses.asdict(steer), "log": steering["steer"].log}
    return images, res.cameras, manifest


def save_views(folder: Path, images: np.ndarray, cameras, manifest: dict) -> None:
    """views/, transforms.json, grid.png (labelled with the azimuths, and the elevations when the views are on
    several rings) and manifest.json into ``folder``."""
    from mvgen.imageutil import grid, save_png

    write_views(folder, images, cameras)
    labels = [f"az {a:.0f}" for a in manifest["azimuths_deg"]]
    if manifest.get("rings"):  # several elevations: label each view's
        labels = [f"{t} el {e:.0f}" for t, e in zip(labels, manifest["elevations_deg"])]
    save_png(grid([list(images)], col_labels=labels), folder / "grid.png")
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))


def steer_arguments(steer, fit_config, backend: str, steps: int) -> dict:
    """The ``pipe(...)`` keyword arguments of 3D-consistent sampling (``mvgen.sampling3d``): a ``GaussianSteer``
    fitting with ``fit_config`` on ``backend`` at ``steer``'s steps; none when ``steer`` is None or off."""
    if steer is None or steer.mode == "off":
        return {}
    from mvgen.sampling3d import GaussianSteer

    if fit_config is None:
        raise ValueError("steer: 3D-consistent sampling needs the reconstruction's fit config")
    return {"steer": GaussianSteer(fit_config, steer, backend), "steer_steps": steer.step_indices(steps),
            "steer_strength": steer.strength}


def load_pipeline(model: str | Path | None = None, device=None):
    """(pipeline, its folder): ``model`` (default: ``default_model_path()``) on ``device`` (``mvgen.device``:
    None / "auto" = CUDA when available, else CPU; DeviceError naming ``--device`` when it is not there)."""
    from mvgen.device import resolve_device
    from mvgen.pipeline import PTDiTMultiViewPipeline

    device = resolve_device(device)  # before loading: a missing GPU is a one-line error, not a slow failure

    path = Path(model) if model else default_model_path()
    if not (path / "model_index.json").is_file() and path.resolve() == DEFAULT_MODEL.resolve():
        raise FileNotFoundError(f"the default model is not shipped yet at {path}; see README 'Default model' "
                                f"(train it with `mvgen train`, or pass --model / MVGEN_MODEL a saved pipeline)")
    pipe = PTDiTMultiViewPipeline.from_pretrained(path).to(device)
    return pipe, path


def register(sub) -> None:
    p = sub.add_parser("generate", help="prompt -> multiview images + cameras", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("prompt", help='e.g. "a red mug" (see README for the default model\'s vocabulary)')
    p.add_argument("--out", required=True, help="output folder (views/, grid.png, transforms.json, manifest.json); "
                   "an existing one is replaced only if it is an earlier `mvgen generate` output")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out even if it is not an earlier output (only once this run has succeeded)")
    p.add_argument("--views", type=int, default=8, help=f"number of orbit views ({VIEWS.low}-{VIEWS.high})")
    p.add_argument("--elevation", type=float, help="camera elevation in degrees (default 20; one ring)")
    p.add_argument("--rings", help="several elevations instead of --elevation, e.g. 10,30: views evenly spaced in "
                   "azimuth, taken in pairs from ring to ring (default: configs/app.yaml's rings, null = one ring)")
    p.add_argument("--cameras", help="a transforms.json whose cameras to use instead of the orbit")
    p.add_argument("--steps", type=int, default=20, help="sampling steps")
    p.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE, help="classifier-free guidance scale")
    p.add_argument("--part-guidance", type=float, default=DEFAULT_PART_GUIDANCE,
                   help="part-colour guidance scale (0: off; used when the prompt names a part colour, one more "
                   "transformer pass per step)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steer", default="off", help="3D-consistent sampling: off | gaussians (slower; fits Gaussians "
                   "during sampling with the reconstruction settings of configs/app.yaml)")
    p.add_argument("--output-size", help="views' size in px: the model's native size (default; 128 for the shipped "
                   "model) or twice it (256), which needs a model with a 2x decoder (decoder_2x)")
    p.add_argument("--model", help="pipeline folder (default: the shipped assets/mvgen-tiny)")
    p.add_argument("--device", help="where to run: auto | cpu | cuda | cuda:K (default: configs/app.yaml, auto = "
                   "CUDA when available)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from mvgen.cameras import read_transforms
    from mvgen.fileio import prepare_output_dir

    from mvgen import limits
    from mvgen.checks import check_output_size, check_seed
    from mvgen.job import model_output_sizes
    from mvgen.settings import AppConfig, check_prompt, check_rings, default_rings, pick_rings, steer_settings

    # every argument is checked before the model loads (the pipeline would check some only after loading)
    prompt = check_prompt(args.prompt)
    VIEWS.check_int("views", args.views)
    rings = pick_rings(args.elevation, args.rings, ("--elevation", "--rings"))
    elevation = 20.0 if args.elevation is None else args.elevation
    limits.CAMERA_ELEVATION.check_number("elevation", elevation, "a number of degrees")
    limits.STEPS.check_int("steps", args.steps)
    limits.GUIDANCE.check_number("guidance", args.guidance)
    limits.PART_GUIDANCE.check_number("--part-guidance", args.part_guidance)
    check_seed(args.seed)
    cfg = AppConfig.from_yaml(device=args.device)
    steer = steer_settings(args.steer, cfg.steer)  # refuse a bad mode before the model loads
    if args.cameras and args.rings is not None:
        raise ValueError("give --cameras or --rings, not both (the cameras fix every view's elevation)")
    rings = None if args.cameras else check_rings(default_rings(cfg, args.views) if rings is None else rings,
                                                  args.views)
    fit_config = cfg.fit_config(seed=args.seed) if steer.mode != "off" else None
    output_size = check_output_size(args.output_size if args.output_size is not None else cfg.output_size,
                                    model_output_sizes(Path(args.model) if args.model else default_model_path()))
    out = prepare_output_dir(args.out, "generate", args.overwrite)  # refuse before the model loads
    cameras = read_transforms(args.cameras)[0] if args.cameras else None
    pipe, path = load_pipeline(args.model, cfg.device)
    warn = vocabulary_warning(prompt, path)
    if warn:
        print(f"warning: {warn}", file=sys.stderr)
    m = generate_to_folder(pipe, prompt, out, views=args.views, elevation=elevation,
                           steps=args.steps, guidance=args.guidance, seed=args.seed, cameras=cameras,
                           model_path=path, overwrite=args.overwrite, steer=steer, fit_config=fit_config,
                           backend=cfg.backend, autocast=cfg.autocast(), output_size=output_size, rings=rings,
                           part_guidance=args.part_guidance)
    print(f"wrote {out}: {m['views']} views in {m['seconds']['generate']:.1f} s (grid: {out / 'grid.png'})")
    return 0
