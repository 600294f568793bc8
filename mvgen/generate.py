"""`mvgen generate`: prompt -> views (PNG), grid, transforms.json, manifest — a folder `mvgen reconstruct` reads."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

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


def generate_to_folder(pipe, prompt: str, out: Path, *, views: int = 8, elevation: float = 20.0, steps: int = 20,
                       guidance: float = 3.0, seed: int = 0, cameras=None, model_path: Path | None = None,
                       callback=None, overwrite: bool = False) -> dict:
    """Run the pipeline and write everything into ``out``, built in a temp folder and renamed on success.

    An existing ``out`` is replaced only if it is an earlier `mvgen generate` output, or with ``overwrite``
    (``mvgen.fileio.OutputExistsError`` otherwise, before the pipeline runs).
    """
    from mvgen.fileio import build_output_dir

    with build_output_dir(out, "generate", overwrite) as tmp:
        return write_generation(pipe, prompt, tmp, views=views, elevation=elevation, steps=steps,
                                guidance=guidance, seed=seed, cameras=cameras, model_path=model_path,
                                callback=callback)


def write_generation(pipe, prompt: str, folder: Path, *, views: int = 8, elevation: float = 20.0, steps: int = 20,
                     guidance: float = 3.0, seed: int = 0, cameras=None, model_path: Path | None = None,
                     callback=None) -> dict:
    """Run the pipeline and write views/, transforms.json, grid.png and manifest.json into ``folder`` (an existing
    folder being built, e.g. by ``mvgen.fileio.build_output_dir``); returns the manifest."""
    import torch

    from mvgen.checks import check_seed
    from mvgen.imageutil import grid, save_png
    from mvgen.pipeline import model_hash

    folder = Path(folder)
    seed = check_seed(seed)
    t0 = time.time()
    res = pipe(prompt, cameras=cameras, num_views=views, elevation=elevation, num_inference_steps=steps,
               guidance_scale=guidance, generator=torch.Generator().manual_seed(seed), output_type="np",
               callback_on_step_end=callback)
    t_gen = time.time() - t0
    images = res.images[0]
    write_views(folder, images, res.cameras)
    azim = _azimuths(res.cameras)
    save_png(grid([list(images)], col_labels=[f"az {a:.0f}" for a in azim]), folder / "grid.png")
    manifest = {
        "prompt": prompt, "seed": seed, "views": len(images), "elevation": elevation, "steps": steps,
        "guidance": guidance, "model": str(model_path) if model_path else None,
        "model_hash": model_hash(model_path) if model_path else None, "image_size": int(images.shape[1]),
        "seconds": {"generate": round(t_gen, 3)}, "azimuths_deg": azim,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def _azimuths(cameras) -> list[float]:
    import math

    c = cameras.centers
    return [round(math.degrees(math.atan2(float(x), float(-y))) % 360, 1) for x, y in zip(c[:, 0], c[:, 1])]


def load_pipeline(model: str | Path | None = None):
    from mvgen.pipeline import PTDiTMultiViewPipeline

    path = Path(model) if model else default_model_path()
    if not (path / "model_index.json").is_file() and path.resolve() == DEFAULT_MODEL.resolve():
        raise FileNotFoundError(f"the default model is not shipped yet at {path}; see README 'Default model' "
                                f"(train it with `mvgen train`, or pass --model / MVGEN_MODEL a saved pipeline)")
    pipe = PTDiTMultiViewPipeline.from_pretrained(path)
    return pipe, path


def register(sub) -> None:
    p = sub.add_parser("generate", help="prompt -> multiview images + cameras", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("prompt", help='e.g. "a red mug" (see README for the default model\'s vocabulary)')
    p.add_argument("--out", required=True, help="output folder (views/, grid.png, transforms.json, manifest.json); "
                   "an existing one is replaced only if it is an earlier `mvgen generate` output")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out even if it is not an earlier output (only once this run has succeeded)")
    p.add_argument("--views", type=int, default=8, help="number of orbit views (1-32)")
    p.add_argument("--elevation", type=float, default=20.0, help="camera elevation in degrees")
    p.add_argument("--cameras", help="a transforms.json whose cameras to use instead of the orbit")
    p.add_argument("--steps", type=int, default=20, help="sampling steps")
    p.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", help="pipeline folder (default: the shipped assets/mvgen-tiny)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from mvgen.cameras import read_transforms
    from mvgen.fileio import prepare_output_dir

    out = prepare_output_dir(args.out, "generate", args.overwrite)  # refuse before the model loads
    cameras = read_transforms(args.cameras)[0] if args.cameras else None
    pipe, path = load_pipeline(args.model)
    warn = vocabulary_warning(args.prompt, path)
    if warn:
        print(f"warning: {warn}", file=sys.stderr)
    m = generate_to_folder(pipe, args.prompt, out, views=args.views, elevation=args.elevation,
                           steps=args.steps, guidance=args.guidance, seed=args.seed, cameras=cameras,
                           model_path=path, overwrite=args.overwrite)
    print(f"wrote {out}: {m['views']} views in {m['seconds']['generate']:.1f} s (grid: {out / 'grid.png'})")
    return 0
