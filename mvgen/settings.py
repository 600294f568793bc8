"""One YAML (configs/app.yaml) -> one dataclass: the defaults of the text-to-3D job (`mvgen run`, `mvgen generate
--steer`, `mvgen reconstruct`'s exports, `mvgen bench e2e`, `mvgen evaluate asset`) and of the app, and the checks
of one run's settings. The supported ranges themselves are in ``mvgen.limits``.

No gradio and no torch here: the CLI, the app and the tests import this cheaply.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from mvgen import limits
from mvgen.checks import check_int, check_output_size, short_repr
from mvgen.device import check_device
from mvgen.sampling3d import STEER_MODES, SteerSettings

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO / "configs" / "app.yaml"
# The CLI takes every supported range; the app's sliders take the narrower ones of configs/app.yaml.
CLI_RANGES = {"views_min": limits.RUN_VIEWS.low, "views_max": limits.RUN_VIEWS.high,
              "steps_max": limits.STEPS.high, "recon_steps_max": limits.FIT_STEPS.high}


@dataclass(frozen=True)
class AppConfig:
    """Defaults and limits of the job and the app; configs/app.yaml sets every field (and measures some)."""

    # generation: the app's advanced settings start here
    views: int = 12  # orbit views; the odd ones are held out to score the reconstruction (12: measured, app.yaml)
    elevation: float = 20.0  # degrees; the shipped model saw 0..40, 20 is the middle of its training orbits
    rings: tuple[float, ...] | None = None  # several elevations instead of one ring at `elevation` (e.g. [10, 30]):
    #     views evenly spaced in azimuth, taken in pairs from ring to ring, so the fitted (even) and the held-out
    #     (odd) views each cover every ring (mvgen.rigs.ring_elevations); 2 views per ring at least. 16 views on
    #     10/30 scored 22.95 dB at novel cameras vs 22.17 on one ring at 20 (docs/asset/eval_asset_v16*.json)
    steps: int = 20  # denoising steps: the held-out PSNR in README was measured at 20
    guidance: float = limits.DEFAULT_GUIDANCE  # classifier-free guidance scale (measured: limits.py)
    part_guidance: float = limits.DEFAULT_PART_GUIDANCE  # part-colour guidance for prompts naming a part colour
    #                                                      (mvgen.generate.part_contrast; 0: off; measured: limits.py)
    seed: int = 0  # one seed + the same settings = the same views, so a run can be repeated
    steer: SteerSettings = field(default_factory=SteerSettings)  # 3D-consistent sampling: "off" (fast) or
    #                                                              "gaussians" (fits during sampling, slower)
    output_size: int | None = None  # views' size in px: None = the model's native size (128 for the shipped model);
    #                                 twice it needs a model with a 2x decoder (decoder_2x); the fit then runs at it
    # where it runs
    device: str = "auto"  # auto (CUDA when torch sees a GPU, else CPU) | cpu | cuda | cuda:K; every stage runs there
    precision: str = "auto"  # the transformer while sampling: auto (bf16 autocast on a CPU with native bf16,
    #                          measured faster at the same quality; fp32 on other CPUs, where bf16 is emulated and
    #                          ~10x slower, and on CUDA, not measured there yet) | bf16 | fp32
    # reconstruction and exports
    recon_config: str = "configs/reconstruction.yaml"  # FitConfig preset; relative paths are from the repo
    recon_steps: int = 400  # fitting steps: 400 score like 700 on 8-view orbits, in about half the time
    asset_steps: int = 200  # the downloadable asset continues the scoring fit this long on ALL views (0: it is
    #                         the scoring fit, which saw half of them)
    holdout: str = "every-2"  # fit the even views, score the odd ones (design.md §6)
    backend: str = "auto"  # rasterizer: auto (gsplat on CUDA, else the compiled cpu kernel) | cpu | gsplat | torch
    video_frames: int = 60  # orbit video frames at 24 fps: one 2.5 s turn
    video_width: int = 256  # orbit video size in px: larger than the 128 px views so the splats stay smooth
    mesh_resolution: int = 96  # density grid of the .glb mesh: 96³ resolves mug handles in ~1 s
    with_lpips: bool = True  # LPIPS beside PSNR / SSIM (loads AlexNet once: ~1 s)
    # what the app's controls allow (inside mvgen.limits' ranges)
    views_min: int = 4  # fewer views leave too little to fit after holding out the odd ones
    views_max: int = 16  # more views take longer than a visitor waits on a 2-core CPU
    steps_max: int = 100  # denoising steps beyond 100 change nothing visible with the Euler sampler
    recon_steps_max: int = 5000  # ~5 min of fitting on the 2-core CPU
    prompt_examples: int = 8  # training captions of the shipped model shown as examples
    # serving
    concurrency_limit: int = 1  # runs at once; keep 1: runs share one pipeline (its scheduler holds state)
    max_queue: int = 8  # waiting runs beyond this are refused with "queue full"
    session_max_age_minutes: float = 60.0  # session folders untouched this long are deleted
    runs_per_session: int = 3  # older runs of a session are deleted when it starts a new one
    # "Evaluate your own views": what one uploaded zip may hold (defaults: mvgen.limits)
    max_upload_mb: float = limits.UPLOAD_ZIP_MB  # the zip itself
    max_unzipped_mb: float = limits.UPLOAD_UNZIPPED_MB  # its extracted files together
    max_zip_files: int = limits.UPLOAD_FILES  # its members
    max_upload_views: int = limits.UPLOAD_VIEWS  # views reconstructed: fitting time grows with them
    max_image_size: int = limits.UPLOAD_IMAGE_SIDE  # larger views are downscaled before fitting
    max_image_megapixels: float = limits.UPLOAD_IMAGE_MEGAPIXELS  # per view, read from its header
    max_upload_megapixels: float = limits.UPLOAD_MEGAPIXELS  # all views together

    def __post_init__(self):
        object.__setattr__(self, "steer", steer_settings(self.steer))
        object.__setattr__(self, "device", check_device(self.device))
        object.__setattr__(self, "output_size", check_output_size(self.output_size))
        object.__setattr__(self, "rings", check_rings(self.rings))
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {short_repr(self.precision)}")
        lo, hi = limits.RUN_VIEWS.low, limits.RUN_VIEWS.high
        if not lo <= self.views_min <= self.views_max <= hi:
            raise ValueError(f"views_min/views_max must satisfy {lo} <= min <= max <= {hi}, got "
                             f"{self.views_min}/{self.views_max}")
        check_int("steps_max", self.steps_max, 1, limits.STEPS.high)
        check_int("recon_steps_max", self.recon_steps_max, 1, limits.FIT_STEPS.high)
        if not (isinstance(self.asset_steps, int) and 0 <= self.asset_steps <= self.recon_steps_max):
            raise ValueError(f"asset_steps must be an integer in 0..{self.recon_steps_max}, got {self.asset_steps!r}")
        for name in ("concurrency_limit", "max_queue", "runs_per_session", "max_zip_files", "max_upload_views",
                     "video_frames", "video_width", "mesh_resolution"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, int) and v >= 1):  # YAML reads `yes` as True
                raise ValueError(f"{name} must be a positive integer, got {short_repr(v)}")
        if not isinstance(self.recon_config, str) or not self.recon_config.strip():
            raise ValueError(f"recon_config must be the path of a FitConfig YAML, got {short_repr(self.recon_config)}")
        if self.max_image_size < limits.MIN_LPIPS_SIDE:
            raise ValueError(f"max_image_size must be >= {limits.MIN_LPIPS_SIDE} (LPIPS needs "
                             f"{limits.MIN_LPIPS_SIDE} px), got {self.max_image_size}")
        for name in ("max_upload_mb", "max_unzipped_mb", "max_image_megapixels", "max_upload_megapixels"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        check_run_settings(self, self.views, self.elevation, self.steps, self.guidance, self.seed,
                           self.recon_steps, rings=self.rings or "")  # the config's views fit its own rings

    @classmethod
    def from_yaml(cls, path: str | Path = DEFAULT_CONFIG, **overrides) -> "AppConfig":
        """Read a YAML file of AppConfig fields; keyword overrides win (None values are ignored)."""
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ValueError(f"app config {path}: file not found") from None
        except OSError as e:  # a folder, no permission, a failing disk: name the file (e.strerror drops it)
            raise ValueError(f"app config {path}: cannot read ({e.strerror or e})") from None
        except (yaml.YAMLError, UnicodeDecodeError) as e:  # YAML's messages span lines: one line here
            raise ValueError(f"app config {path}: not valid YAML ({' '.join(str(e).split())})") from None
        except (ValueError, RecursionError) as e:  # an integer of > 4300 digits; nesting too deep
            raise ValueError(f"app config {path}: not valid YAML ({' '.join(str(e).split())[:120]})") from None
        if not isinstance(data, dict):
            raise ValueError(f"app config {path}: expected a mapping of fields")
        data.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"app config {path}: unknown field(s) {sorted(unknown)}")
        try:
            return cls(**data)
        except TypeError as e:  # e.g. views_min: "two" compared with a number
            raise ValueError(f"app config {path}: a field has the wrong type ({e})") from None

    def with_overrides(self, **overrides) -> "AppConfig":
        """A copy with the non-None overrides applied (validated again)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def recon_config_path(self) -> Path:
        p = Path(self.recon_config)
        return p if p.is_absolute() else REPO / p

    def fit_config(self, steps: int | None = None, seed: int | None = None):
        """The reconstruction FitConfig: the preset file with this config's steps (and seed) on top."""
        from reconstruction.fit import FitConfig

        path = self.recon_config_path()
        if not path.is_file():
            raise ValueError(f"recon_config: {path} not found")
        base = FitConfig.from_yaml(path).to_dict()
        base["steps"] = int(steps if steps is not None else self.recon_steps)
        if seed is not None:
            base["seed"] = int(seed)
        return FitConfig.from_dict(base)

    def to_dict(self) -> dict:
        return asdict(self)

    def autocast(self) -> bool | None:
        """``autocast`` of ``PTDiTMultiViewPipeline.__call__`` for ``precision``: None (auto), True (bf16), False."""
        return PRECISIONS[self.precision]

    def upload_limits(self) -> dict:
        """Keyword arguments of ``ui.uploads.unpack_views``: this config's limits on one uploaded zip."""
        return {"max_files": self.max_zip_files, "max_bytes": int(self.max_unzipped_mb * 2**20),
                "max_zip_bytes": int(self.max_upload_mb * 2**20), "max_views": self.max_upload_views,
                "max_image_pixels": int(self.max_image_megapixels * 1e6),
                "max_total_pixels": int(self.max_upload_megapixels * 1e6)}


PRECISIONS = {"auto": None, "bf16": True, "fp32": False}


def steer_settings(value, base: SteerSettings | None = None) -> SteerSettings:
    """3D-consistent sampling settings from what a config, a flag or a checkbox gives: a ``SteerSettings``, a
    mode ("off" / "gaussians"), true / false (the app's checkbox; YAML also reads a bare ``off`` as false) or a
    mapping of ``SteerSettings`` fields. Other settings come from ``base``. ValueError naming ``steer``."""
    base = base or SteerSettings()
    if isinstance(value, SteerSettings):
        return value
    if isinstance(value, bool):
        value = "gaussians" if value else "off"
    if isinstance(value, str) and value in STEER_MODES:
        return replace(base, mode=value)
    if isinstance(value, dict):
        try:
            return SteerSettings(**{**asdict(base), **value})
        except TypeError as e:
            raise ValueError(f"steer: unknown setting ({e})") from None
    raise ValueError(f"steer must be one of {', '.join(STEER_MODES)} (or true / false), got {short_repr(value)}")


def check_run_settings(cfg: AppConfig, views, elevation, steps, guidance, seed, recon_steps, steer=None,
                       output_size=None, output_sizes: tuple[int, ...] | None = None, rings=None,
                       part_guidance=None) -> dict:
    """Validate one run's settings against ``cfg``'s and ``mvgen.limits``' ranges; returns them normalised (ints
    as int, ``steer`` as ``SteerSettings``; None: ``cfg.steer``; ``output_size`` as an int or None = native;
    None: ``cfg.output_size``), ``output_size`` against the model's ``output_sizes`` when they are given
    (``mvgen.job.model_output_sizes``, ``PTDiTMultiViewPipeline.output_sizes``); ``rings`` as a tuple of
    elevations or None = one ring at ``elevation`` (None: ``cfg.rings``, or one ring when this run asks for fewer
    views than the config's rings need, 2 per ring; "" or (): one ring, whatever the config says; ``check_rings``);
    ``part_guidance`` (None: ``cfg.part_guidance``) in ``limits.PART_GUIDANCE``.

    Raises ValueError naming the field (views, elevation, steps, guidance, seed, recon_steps, steer, output_size,
    rings, part_guidance).
    """
    views = check_int("views", views, cfg.views_min, cfg.views_max)  # ints and integral floats (sliders send 8.0)
    elevation = limits.ELEVATION.check_number("elevation", elevation, "a number of degrees")
    steps = check_int("steps", steps, 1, cfg.steps_max)
    guidance = limits.GUIDANCE.check_number("guidance", guidance)
    seed = limits.SEED.check_int("seed", seed)
    recon_steps = check_recon_steps(cfg, recon_steps)
    steer = steer_settings(cfg.steer if steer is None else steer, cfg.steer)
    output_size = check_output_size(cfg.output_size if output_size is None else output_size, output_sizes)
    rings = check_rings(default_rings(cfg, views) if rings is None else rings, views)
    part_guidance = limits.PART_GUIDANCE.check_number(
        "part_guidance", cfg.part_guidance if part_guidance is None else part_guidance)
    return {"views": views, "elevation": elevation, "steps": steps, "guidance": guidance, "seed": seed,
            "recon_steps": recon_steps, "steer": steer, "output_size": output_size, "rings": rings,
            "part_guidance": part_guidance}


def check_rings(value, views: int | None = None) -> tuple[float, ...] | None:
    """The elevation rings a run asks for: None (also "", "none" and (): one ring at the run's elevation) or
    ``limits.RINGS`` elevations in degrees, each in ``limits.ELEVATION``: text "10,30" (a flag, the app's box,
    YAML ``rings: 10,30``) or a list of numbers (YAML ``[10, 30]``, JSON). With ``views``: at least 2 views per
    ring (``mvgen.rigs.ring_elevations`` takes views in pairs from ring to ring). ValueError naming ``rings``."""
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("", "none"):
            return None
        values = []
        for part in text.split(","):
            try:
                values.append(float(part))
            except ValueError:
                raise ValueError(f"rings must be elevations in degrees separated by commas (e.g. 10,30), got "
                                 f"{short_repr(value)}") from None
    elif isinstance(value, (list, tuple)):
        values = list(value)
    elif value is None:
        return None
    else:
        raise ValueError(f"rings must be elevations in degrees such as 10,30 (or a list [10, 30]), got "
                         f"{short_repr(value)}")
    if not values:
        return None
    if not limits.RINGS.low <= len(values) <= limits.RINGS.high:
        raise ValueError(f"rings must be {limits.RINGS.low:g} to {limits.RINGS.high:g} elevations, got "
                         f"{len(values)}")
    rings = tuple(limits.ELEVATION.check_number("rings", v, "elevations in degrees, each") for v in values)
    if views is not None and views < 2 * len(rings):
        raise ValueError(f"rings: {len(rings)} rings need at least {2 * len(rings)} views (2 per ring), got "
                         f"{views} views")
    return rings


def default_rings(cfg: AppConfig, views: int) -> tuple[float, ...] | None:
    """The config's rings for a run that did not ask for any: ``cfg.rings`` where ``views`` cover them (2 per
    ring), else None (one ring at the run's elevation), so that `--views 2` alone is no error."""
    return cfg.rings if cfg.rings and views >= 2 * len(cfg.rings) else None


def pick_rings(elevation, rings, names: tuple[str, str] = ("elevation", "rings")):
    """The ``rings`` of ``check_run_settings`` for a caller given an elevation and / or rings (flags or
    arguments, None where not given): rings as given (None: the config's); "" (one ring at the elevation, whatever
    the config says) when only the elevation is given. ValueError naming both (``names``) when both are given."""
    if elevation is not None and rings is not None:
        raise ValueError(f"give {names[0]} (one ring) or {names[1]} (several elevations), not both")
    return "" if elevation is not None else rings


def check_recon_steps(cfg: AppConfig, recon_steps) -> int:
    return check_int("recon_steps", recon_steps, 1, cfg.recon_steps_max)


def check_prompt(prompt) -> str:
    """The prompt with whitespace collapsed; ValueError naming ``prompt`` when empty, not text or too long."""
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be text, got {type(prompt).__name__}")
    prompt = " ".join(prompt.split())
    if not prompt:
        raise ValueError("prompt is empty; describe an object, e.g. 'a red mug'")
    control = next((c for c in prompt if unicodedata.category(c) == "Cc"), None)  # NUL, ESC, BEL, DEL, ...
    if control is not None:
        raise ValueError(f"prompt contains a control character (U+{ord(control):04X}); use plain text")
    if len(prompt) > limits.PROMPT_CHARS:
        raise ValueError(f"prompt is {len(prompt)} characters; the limit is {limits.PROMPT_CHARS}")
    return prompt
