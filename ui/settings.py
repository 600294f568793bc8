"""One YAML (configs/app.yaml) -> one dataclass: defaults and limits of the app, `mvgen run` and the e2e bench.

No gradio here: `mvgen run` and the tests import this without the UI.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from mvgen.checks import check_int, short_repr

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
    asset_steps: int = 200
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
    max_image_megapixels: float = 16.0
    max_upload_megapixels: float = 64.0

    def __post_init__(self):
        if not 2 <= self.views_min <= self.views_max <= 32:
            raise ValueError(f"views_min/views_max must satisfy 2 <= min <= max <= 32, got "
                             f"{self.views_min}/{self.views_max}")
        if not (isinstance(self.asset_steps, int) and 0 <= self.asset_steps <= self.recon_steps_max):
            raise ValueError(f"asset_steps must be an integer in 0..{self.recon_steps_max}, got {self.asset_steps!r}")
        for name in ("steps_max", "recon_steps_max", "concurrency_limit", "max_queue", "runs_per_session",
                     "max_zip_files", "max_upload_views", "video_frames", "video_width", "mesh_resolution"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.max_image_size < 32:
            raise ValueError(f"max_image_size must be >= 32 (LPIPS needs 32 px), got {self.max_image_size}")
        for name in ("max_upload_mb", "max_unzipped_mb", "max_image_megapixels", "max_upload_megapixels"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a positive number, got {v!r}")
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
        except OSError as e:  # a folder, no permission, a failing disk: name the file (e.strerror drops it)
            raise ValueError(f"app config {path}: cannot read ({e.strerror or e})") from None
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ValueError(f"app config {path}: not valid YAML ({e})") from None
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

    def upload_limits(self) -> dict:
        """Keyword arguments of ``ui.uploads.unpack_views``: this config's limits on one uploaded zip."""
        return {"max_files": self.max_zip_files, "max_bytes": int(self.max_unzipped_mb * 2**20),
                "max_zip_bytes": int(self.max_upload_mb * 2**20), "max_views": self.max_upload_views,
                "max_image_pixels": int(self.max_image_megapixels * 1e6),
                "max_total_pixels": int(self.max_upload_megapixels * 1e6)}


def _as_number(name: str, value, low: float, high: float, unit: str = "a number") -> float:
    """A finite number in [low, high] (a huge int is compared exactly, never converted); ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or (isinstance(value, float) and not math.isfinite(value)) or not low <= value <= high:
        raise ValueError(f"{name} must be {unit} in [{low:g}, {high:g}], got {short_repr(value)}")
    return float(value)


def check_run_settings(cfg: AppConfig, views, elevation, steps, guidance, seed, recon_steps) -> dict:
    """Validate one run's settings against ``cfg``'s limits; returns them normalised (ints as int).

    Raises ValueError naming the field (views, elevation, steps, guidance, seed, recon_steps).
    """
    views = check_int("views", views, cfg.views_min, cfg.views_max)  # ints and integral floats (sliders send 8.0)
    elevation = _as_number("elevation", elevation, -60.0, 60.0, "a number of degrees")
    steps = check_int("steps", steps, 1, cfg.steps_max)
    guidance = _as_number("guidance", guidance, 0.0, 20.0)
    seed = check_int("seed", seed, 0, 2**32 - 1)
    recon_steps = check_recon_steps(cfg, recon_steps)
    return {"views": views, "elevation": elevation, "steps": steps, "guidance": guidance, "seed": seed,
            "recon_steps": recon_steps}


def check_recon_steps(cfg: AppConfig, recon_steps) -> int:
    return check_int("recon_steps", recon_steps, 1, cfg.recon_steps_max)


def check_listen_address(host: str, port: int) -> None:
    """ValueError naming --host / --port when the app could not serve there: a name that does not resolve, an
    address of another machine, a port in use or reserved."""
    import errno
    import socket

    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError, ValueError) as e:
        raise ValueError(f"--host {host!r}: not an address of this machine ({getattr(e, 'strerror', None) or e})") \
            from None
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will; a port in use still fails
        try:
            s.bind(addr)
        except OSError as e:
            field = f"--port {port}" if e.errno in (errno.EADDRINUSE, errno.EACCES) else f"--host {host!r}"
            raise ValueError(f"{field}: cannot serve on {host}:{port} ({e.strerror or e})") from None


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
