"""Small helpers shared by the trainers: YAML → dataclass configs, atomic checkpoint folders, loss logs."""

from __future__ import annotations

import csv
import dataclasses
import os
import shutil
import time
from pathlib import Path

from mvgen.fileio import atomic_path, atomic_write_text


def make_accelerator(mixed_precision: str, cpu: bool, **kwargs):
    """``accelerate.Accelerator(mixed_precision, cpu=cpu, **kwargs)`` for one training run. accelerate keeps one
    state per process and refuses a second run with another precision or device ("AcceleratorState has already
    been initialized"): a state an earlier run of this process left with other settings is cleared first (e.g.
    the VAE trained in fp32, then the transformer under bf16 in the same Python session)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    state = AcceleratorState._shared_state
    if state.get("_mixed_precision") not in (None, mixed_precision) or (
            cpu and "device" in state and state["device"].type != "cpu"):
        AcceleratorState._reset_state()
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu, **kwargs)


def load_config(cls, path: str | os.PathLike | None, **overrides):
    """Build dataclass ``cls`` from a YAML file, then apply non-None ``overrides``; unknown keys are errors."""
    import yaml

    values: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} not found")
        values = yaml.safe_load(path.read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of settings")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{path}: unknown setting(s) {unknown}; known: {sorted(names)}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    for f in dataclasses.fields(cls):  # YAML gives lists where the dataclass wants tuples
        if isinstance(values.get(f.name), list) and "tuple" in str(f.type):
            values[f.name] = tuple(values[f.name])
    return cls(**values)


def add_run_arguments(p, config_cls, default_config: str) -> None:
    """The arguments every trainer shares: a YAML config of ``config_cls`` fields, overrides, --resume."""
    p.add_argument("--config", default=default_config, help=f"YAML with {config_cls.__name__} fields")
    p.add_argument("--data", help="dataset folder (overrides the config)")
    p.add_argument("--out", help="run folder (overrides the config)")
    p.add_argument("--steps", type=int, help="total optimisation steps (overrides the config)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")


def dump_config(cfg, path: str | os.PathLike) -> None:
    import yaml

    atomic_write_text(path, yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))



def checkpoint_dirs(out: Path) -> list[Path]:
    """Finished checkpoint folders ``checkpoint-<step>`` in ``out``, oldest first."""
    found = [p for p in out.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def resume_state(acc, out: Path, resume: bool) -> int:
    """Load the newest checkpoint's accelerate state into ``acc`` when ``resume``; returns the step to continue
    from (0 for a fresh run). Refuses to start fresh over existing checkpoints (they would be overwritten)."""
    ckpts = checkpoint_dirs(out)
    if not ckpts:
        return 0
    if not resume:
        raise ValueError(f"{out} already has checkpoints; pass --resume to continue or choose another --out")
    acc.load_state(str(ckpts[-1]))
    step = int(ckpts[-1].name.split("-")[-1])
    acc.print(f"resumed from {ckpts[-1]} at step {step}")
    return step


def save_checkpoint(out: Path, step: int, write, keep: int = 2, acc=None) -> Path:
    """Call ``write(tmp_folder)`` then rename it to ``out/checkpoint-<step>``: a kill never leaves a half-written
    checkpoint under the final name. Older checkpoints beyond ``keep`` are removed.

    With an ``accelerate.Accelerator`` of several processes every process calls this: they all ``write`` into one
    temp folder (``Accelerator.save_state`` stores each process's RNG state there, the weights once), and the main
    process alone creates, renames and prunes folders, between barriers."""
    several = acc is not None and acc.num_processes > 1
    main = acc is None or acc.is_main_process
    wait = acc.wait_for_everyone if several else (lambda: None)
    out.mkdir(parents=True, exist_ok=True)
    final = out / f"checkpoint-{step}"
    tmp = out / (f".tmp-checkpoint-{step}" if several else f".tmp-checkpoint-{step}-{os.getpid()}")
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    wait()
    try:
        write(tmp)
    except BaseException:
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    wait()
    if main:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in checkpoint_dirs(out)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    wait()
    return final


def read_log(path: Path) -> list[dict]:
    """Rows of a LossLog CSV as dicts of strings (step, time, metrics)."""
    with Path(path).open() as f:
        return list(csv.DictReader(f))


def _write_rows(path: Path, fields: list[str], rows: list[dict]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


class LossLog:
    """Append-only CSV of (step, seconds of training so far, metrics...) plus a PNG plot of the loss curve.

    ``start_step``: the step a resumed run continues from; rows logged after it by the killed run are dropped
    (they are redone), and the time column continues from the last kept row.
    """

    def __init__(self, path: Path, fields: list[str], start_step: int = 0):
        self.path, self.fields = Path(path), ["step", "time"] + fields
        self.t0 = time.time()
        if self.path.exists():
            kept = [r for r in self.rows() if int(r["step"]) <= start_step]
            if kept:
                self.t0 -= float(kept[-1]["time"] or 0)
            _write_rows(self.path, self.fields, kept)
        else:
            _write_rows(self.path, self.fields, [])

    def log(self, step: int, **values) -> None:
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([step, f"{time.time() - self.t0:.3f}"] + [f"{values.get(k, ''):.6g}"
                                   if isinstance(values.get(k), float) else values.get(k, "") for k in self.fields[2:]])

    def rows(self) -> list[dict]:
        return read_log(self.path)

    def plot(self, png: Path, key: str = "loss") -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = [r for r in self.rows() if r.get(key)]
        if not rows:
            return
        steps = [int(r["step"]) for r in rows]
        vals = [float(r[key]) for r in rows]
        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
        ax.plot(steps, vals, lw=0.8, alpha=0.5, label=key)
        k = max(1, len(vals) // 30)
        if k > 1:
            smooth = [sum(vals[max(0, i - k):i + 1]) / len(vals[max(0, i - k):i + 1]) for i in range(len(vals))]
            ax.plot(steps, smooth, lw=1.5, label=f"{key} (moving mean)")
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        with atomic_path(png) as tmp:
            fig.savefig(tmp)
        plt.close(fig)
