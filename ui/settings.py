"""One YAML (configs/app.yaml) -> one dataclass: defaults and limits of the app, `mvgen run` and the e2e bench.

No gradio here: `mvgen run` and the tests import this without the UI.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO / "configs" / "app.yaml"
MAX_PROMPT_CHARS = 300  # the text encoder also refuses > 64 tokens; this catches pasted essays before tokenising


@dataclass(frozen=True)
class AppConfig:
    """Defaults and limits; every field is documented in configs/app.yaml."""

    views: int = 8
    elevation: float = 20.0
    steps: int = 20
    guidance: float = 3.0
    seed: int = 0
    recon_config: str = "configs/reconstruction.yaml"
    recon_steps: int = 400
    holdout: str = "every-2"
    backend: str = "auto"
    video_frames: int = 60
    video_width: int = 256
    mesh_resolution: int = 96
    with_lpips: bool = True
    views_min: int = 4
    views_max: int = 16
    steps_max: int = 100
    recon_steps_max: int = 5000
    prompt_examples: int = 8
    concurrency_limit: int = 1
    max_queue: int = 8
    session_max_age_minutes: float = 60.0
    runs_per_session: int = 3
    max_upload_mb: float = 200.0
    max_unzipped_mb: float = 500.0
    max_zip_files: int = 1000
    max_upload_views: int = 64
    max_image_size: int = 256

    def __post_init__(self):
        if not 2 <= self.views_min <= self.views_max <= 32:
            raise ValueError(f"views_min/views_max must satisfy 2 <= min <= max <= 32, got "
                             f"{self.views_min}/{self.views_max}")
        for name in ("steps_max", "recon_steps_max", "concurrency_limit", "max_queue", "runs_per_session",
                     "max_zip_files", "max_upload_views", "video_frames", "video_width", "mesh_resolution"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.max_image_size < 32:
            raise ValueError(f"max_image_size must be >= 32 (LPIPS needs 32 px), got {self.max_image_size}")
        check_run_settings(self, self.views, self.elevation, self.steps, self.guidance, self.seed,
                           self.recon_steps)

    @classmethod
    def from_yaml(cls, path: str | Path = DEFAULT_CONFIG, **overrides) -> "AppConfig":
        """Read a YAML file of AppConfig fields; keyword overrides win (None values are ignored)."""
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ValueError(f"app config {path}: file not found") from None
        except yaml.YAMLError as e:
            raise ValueError(f"app config {path}: not valid YAML ({e})") from None
        if not isinstance(data, dict):
            raise ValueError(f"app config {path}: expected a mapping of fields")
        data.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"app config {path}: unknown field(s) {sorted(unknown)}")
        return cls(**data)

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


def _as_int(name: str, value) -> int:
    """Accept ints and integral floats (sliders and JSON send 8.0); anything else is a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def check_run_settings(cfg: AppConfig, views, elevation, steps, guidance, seed, recon_steps) -> dict:
    """Validate one run's settings against ``cfg``'s limits; returns them normalised (ints as int).

    Raises ValueError naming the field (views, elevation, steps, guidance, seed, recon_steps).
    """
    views = _as_int("views", views)
    if not cfg.views_min <= views <= cfg.views_max:
        raise ValueError(f"views must be in {cfg.views_min}..{cfg.views_max}, got {views}")
    if isinstance(elevation, bool) or not isinstance(elevation, (int, float)) or not math.isfinite(elevation) \
            or not -60.0 <= elevation <= 60.0:
        raise ValueError(f"elevation must be a number of degrees in [-60, 60], got {elevation!r}")
    steps = _as_int("steps", steps)
    if not 1 <= steps <= cfg.steps_max:
        raise ValueError(f"steps must be in 1..{cfg.steps_max}, got {steps}")
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not math.isfinite(guidance) \
            or not 0.0 <= guidance <= 20.0:
        raise ValueError(f"guidance must be a number in [0, 20], got {guidance!r}")
    seed = _as_int("seed", seed)
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in 0..{2**32 - 1}, got {seed}")
    recon_steps = check_recon_steps(cfg, recon_steps)
    return {"views": views, "elevation": float(elevation), "steps": steps, "guidance": float(guidance),
            "seed": seed, "recon_steps": recon_steps}


def check_recon_steps(cfg: AppConfig, recon_steps) -> int:
    recon_steps = _as_int("recon_steps", recon_steps)
    if not 1 <= recon_steps <= cfg.recon_steps_max:
        raise ValueError(f"recon_steps must be in 1..{cfg.recon_steps_max}, got {recon_steps}")
    return recon_steps


def check_prompt(prompt) -> str:
    """The prompt with whitespace collapsed; ValueError naming ``prompt`` when empty, not text or too long."""
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be text, got {type(prompt).__name__}")
    prompt = " ".join(prompt.split())
    if not prompt:
        raise ValueError("prompt is empty; describe an object, e.g. 'a red mug'")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"prompt is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
    return prompt
