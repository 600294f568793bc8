"""Generate the procedural multiview dataset: sample captions, pick cameras, render, write (resumable).

Objects: ``objects`` distinct captions, the first ones of a fixed seeded permutation of ``captions.all_specs()``
(both splits; ``split`` is recorded in the index, training uses split == "train"), so a larger ``objects``
extends a smaller run with the same seed. Cameras: per object, a start azimuth uniform in [0, 360) and one
elevation uniform in [min, max] (seeded by the dataset seed and the object id), an orbit of ``views``
evenly spaced views (mvgen.cameras.orbit, default radius and field of view). With ``elevation_per_view``
every view draws its own elevation from [min, max] instead, so one object is seen from several heights
(a view subset then varies in elevation as well as azimuth: a stronger camera signal for training).
Object ids are the caption slugs ("tall_blue_vase_with_white_stripe"), so they name their content.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mvgen.cameras import DEFAULT_FOV_DEG, DEFAULT_RADIUS, Cameras, orbit
from mvgen.fileio import atomic_write_text
from mvgen.limits import CAMERA_ELEVATION, DATASET_VIEWS

from .captions import ObjectSpec, all_specs, sample_specs
from .writer import clean_temp, index_entry, read_object_spec, write_index, write_object

# Bump when the images of a caption change (geometry, colours, lighting, sampling): resuming a dataset made by
# another generator version then fails with a clear message instead of mixing renders.
GENERATOR_VERSION = "mvgen-procedural-2"
RESOLUTION_RANGE = (16, 1024)
MAX_WORKERS = 64


@dataclass(frozen=True)
class DatasetConfig:
    """How every object of a dataset is rendered; stored as DIR/dataset.json and checked when resuming."""

    views: int = 16  # orbit views per object (training picks subsets later)
    resolution: int = 128  # square images, pixels
    elevation: tuple[float, float] = (10.0, 40.0)  # degrees; each object draws one elevation from this range
    elevation_per_view: bool = False  # True: each view draws its own elevation from ``elevation``
    seed: int = 0  # chooses the objects and every object's cameras
    supersample: int = 2  # s x s rays per pixel: anti-aliased edges, fractional alpha
    radius: float = DEFAULT_RADIUS  # camera distance (objects fit in the unit sphere)
    fov_deg: float = DEFAULT_FOV_DEG  # vertical field of view
    format: str = GENERATOR_VERSION  # generator version the images come from

    def validate(self) -> None:
        """Raise ValueError naming the first out-of-range setting (as its CLI flag)."""
        if not (isinstance(self.views, int) and DATASET_VIEWS.low <= self.views <= DATASET_VIEWS.high):
            raise ValueError(f"--views must be an integer in [{DATASET_VIEWS.low}, {DATASET_VIEWS.high}], "
                             f"got {self.views!r}")
        lo, hi = RESOLUTION_RANGE
        if not (isinstance(self.resolution, int) and lo <= self.resolution <= hi):
            raise ValueError(f"--resolution must be an integer in [{lo}, {hi}], got {self.resolution!r}")
        e = self.elevation
        if (len(e) != 2 or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in e)
                or not CAMERA_ELEVATION.low <= e[0] <= e[1] <= CAMERA_ELEVATION.high):
            raise ValueError(f"--elevation MIN MAX must be finite with {CAMERA_ELEVATION.low:g} <= MIN <= MAX <= "
                             f"{CAMERA_ELEVATION.high:g} degrees, got {list(e)}")
        if not isinstance(self.elevation_per_view, bool):
            raise ValueError(f"elevation_per_view must be true or false, got {self.elevation_per_view!r}")
        if not isinstance(self.seed, int):
            raise ValueError(f"--seed must be an integer, got {self.seed!r}")
        if not (isinstance(self.supersample, int) and 1 <= self.supersample <= 8):
            raise ValueError(f"supersample must be an integer in [1, 8], got {self.supersample!r}")

    def to_json(self) -> dict:
        d = asdict(self)
        d["elevation"] = list(self.elevation)
        if not self.elevation_per_view:  # datasets made before the option existed resume unchanged
            del d["elevation_per_view"]
        return d


def object_cameras(object_id: str, cfg: DatasetConfig) -> tuple[Cameras, dict]:
    """The object's orbit (seeded by dataset seed and id) and its angles for transforms.json."""
    rng = random.Random(f"{cfg.seed}:{object_id}")
    elevation = rng.uniform(*cfg.elevation)
    azimuth = rng.uniform(0.0, 360.0)
    if cfg.elevation_per_view:
        elevation = [elevation] + [rng.uniform(*cfg.elevation) for _ in range(cfg.views - 1)]
    cams = orbit(cfg.views, elevation=elevation, azimuth_start=azimuth, radius=cfg.radius, fov_deg=cfg.fov_deg,
                 width=cfg.resolution)
    return cams, {"elevation_deg": elevation, "azimuth_start_deg": azimuth, "radius": cfg.radius}


def make_object(out_dir: Path, object_id: str, spec: ObjectSpec, cfg: DatasetConfig) -> dict:
    """Build, render and write one object folder; returns its index entry."""
    from .objects import build_mesh
    from .render import render_rgba

    cams, extra = object_cameras(object_id, cfg)
    rgba = render_rgba(build_mesh(spec), cams, supersample=cfg.supersample)
    return write_object(out_dir, object_id, spec, cams, rgba, extra)


def _work(task) -> dict:
    return make_object(*task)


def _init_worker() -> None:
    """Import the heavy modules when a worker starts (so the first task does not pay for it)."""
    from . import objects, render  # noqa: F401


@dataclass
class GenerateResult:
    written: int  # objects rendered by this call
    skipped: int  # objects already complete
    seconds: float
    entries: list[dict]  # the index, as written


def prepare_out_dir(out: Path, cfg: DatasetConfig) -> None:
    """Check ``out`` can hold this dataset (new, empty, or made with the same settings) and write
    dataset.json. Raises ValueError naming the problem; nothing already there is changed on error."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    settings = out / "dataset.json"
    if out.is_dir() and settings.is_file():
        try:
            old = json.loads(settings.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"--out {out}: dataset.json is corrupt ({e}); use another --out") from None
        if not isinstance(old, dict):
            raise ValueError(f"--out {out}: dataset.json is not a JSON object; use another --out")
        new = cfg.to_json()
        if old.get("format") != new["format"]:
            raise ValueError(f"--out {out} was rendered by generator version {old.get('format')!r}, this is "
                             f"{new['format']!r}: its images would not match new ones; use another --out")
        for key in [*new, *(k for k in old if k not in new)]:
            if old.get(key) != new.get(key):
                raise ValueError(f"--out {out} holds a dataset made with {key}={old.get(key)!r}, this run asks for "
                                 f"{key}={new.get(key)!r}: use the same settings to resume, or another --out")
        return
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(f"--out {out}: folder is not empty and holds no mvgen dataset (dataset.json); "
                         "choose a new or empty folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(settings, json.dumps(cfg.to_json(), indent=2))
    except OSError as e:
        raise ValueError(f"--out {out}: cannot write there ({e.strerror or e})") from None


def generate_dataset(out: str | Path, objects: int, cfg: DatasetConfig = DatasetConfig(), workers: int = 1,
                     progress: bool = True) -> GenerateResult:
    """Write (or complete) a dataset of ``objects`` objects in ``out``; see the module docstring."""
    from tqdm import tqdm

    out = Path(out)
    cfg.validate()
    n_max = len(all_specs())
    if not (isinstance(objects, int) and 1 <= objects <= n_max):
        raise ValueError(f"--objects must be an integer in [1, {n_max}], got {objects!r}")
    if not (isinstance(workers, int) and 1 <= workers <= MAX_WORKERS):
        raise ValueError(f"--workers must be an integer in [1, {MAX_WORKERS}], got {workers!r}")
    prepare_out_dir(out, cfg)
    clean_temp(out)
    start = time.perf_counter()
    specs = sample_specs(objects, cfg.seed)
    ids = [s.slug() for s in specs]
    done = {i for i, s in zip(ids, specs) if read_object_spec(out / i, cfg.views) == s}
    todo = [(out, i, s, cfg) for i, s in zip(ids, specs) if i not in done]
    bar = tqdm(total=len(specs), initial=len(done), unit="obj", desc="objects", disable=not progress)
    try:
        if workers == 1 or len(todo) <= 1:
            for task in todo:
                _work(task)
                bar.update()
        else:
            ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold torch threads
            with ctx.Pool(min(workers, len(todo)), initializer=_init_worker) as pool:
                for _ in pool.imap_unordered(_work, todo):
                    bar.update()
    finally:
        bar.close()
        entries = _collect_index(out, ids, specs, cfg)
        write_index(out, entries)
    return GenerateResult(len(todo), len(done), time.perf_counter() - start, entries)


def _collect_index(out: Path, ids: list[str], specs: list[ObjectSpec], cfg: DatasetConfig) -> list[dict]:
    """Index entries of every complete object folder: this run's objects in sample order, then any other
    complete folders (from earlier, larger runs) by name."""
    entries = [index_entry(i, s) for i, s in zip(ids, specs) if read_object_spec(out / i, cfg.views) == s]
    mine = set(ids)
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if folder.name not in mine:
            spec = read_object_spec(folder, cfg.views)
            if spec is not None and spec.slug() == folder.name:
                entries.append(index_entry(folder.name, spec))
    return entries
