"""`mvgen bench scaling`: training throughput with 1, 2, ... processes (`accelerate launch`, one thread each) at
the same per-process batch — the data-parallel path that multi-GPU and multi-node users run, measured here on CPU
processes (gloo). Each run is the real trainer (`mvgen train`) on the same cached latents; samples/s come from its
loss log (the seconds between the first logged step after warm-up and the last). Prints a Markdown table."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_config(base: dict, out: Path, processes: int, per_process: int, steps: int, views: int) -> Path:
    """The training config of one run: ``base`` with the batch, steps and views of the benchmark."""
    import yaml

    cfg = dict(base, out=str(out), batch_size=per_process * processes, steps=steps, views_min=views,
               views_max=views, sample_every=0, save_every=steps, log_every=1, init_from=None)
    path = out.with_name(out.name + ".yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def launch_command(processes: int, config: Path, threads: int, device: str, mixed_precision: str = "no"
                   ) -> tuple[list[str], dict]:
    """(argv, environment) of one run: `accelerate launch` for several processes, plain python for one."""
    launch = [sys.executable]
    if processes > 1:
        launch += ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
                   "--num_machines", "1", "--dynamo_backend", "no", "--mixed_precision", mixed_precision, "--num_cpu_threads_per_process", str(threads),
                   "--main_process_port", str(_free_port())]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1")
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return [*launch, "-m", "mvgen.cli", "train", "--config", str(config), "--device", device], env


def throughput(log_rows: list[dict], global_batch: int, warmup: int) -> dict:
    """Seconds per step and samples/s over the logged steps after ``warmup`` (the first steps pay for start-up)."""
    rows = [r for r in log_rows if int(r["step"]) > warmup]
    if len(rows) < 2:
        raise ValueError(f"--steps must exceed --warmup by at least 2 to time steps (got {len(log_rows)} logged)")
    dt = float(rows[-1]["time"]) - float(rows[0]["time"])
    n = int(rows[-1]["step"]) - int(rows[0]["step"])
    return {"s_per_step": dt / n, "samples_per_s": global_batch * n / dt}


def run_scaling(config: str, out: Path, processes: list[int], per_process: int, steps: int, warmup: int,
                views: int, threads: int = 1, device: str = "cpu", data: str | None = None) -> list[dict]:
    import yaml

    from mvgen.train_bench import _share_latent_cache
    from mvgen.trainutil import read_log

    base = yaml.safe_load(Path(config).read_text())
    if data:
        base["data"] = data
    if not Path(base.get("data", "")).is_dir():
        raise ValueError(f"--config {config}: its dataset {base.get('data')} is missing; make it with `mvgen dataset` "
                         f"(the config's header names the command) or pass a config whose data exists")
    rows, cache = [], None
    for n in processes:
        run = out / f"p{n}"
        if run.exists():
            import shutil

            shutil.rmtree(run)
        if cache is not None:
            _share_latent_cache(cache, run)  # the same latents; only the first run encodes the dataset
        argv, env = launch_command(n, run_config(base, run, n, per_process, steps, views), threads, device,
                                   str(base.get("mixed_precision", "bf16")))
        p = subprocess.run(argv, env=env, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"{n}-process run failed:\n{p.stderr[-2000:]}")
        cache = run / "latent_cache.safetensors"
        rows.append({"processes": n, "threads_per_process": threads, "per_process_batch": per_process,
                     "global_batch": per_process * n, "views": views, "steps": steps,
                     **throughput(read_log(run / "loss.csv"), per_process * n, warmup)})
    for r in rows:
        r["speedup"] = r["samples_per_s"] / rows[0]["samples_per_s"]
    return rows


def register(sub) -> None:
    p = sub.add_parser("scaling", help="training samples/s with 1, 2, ... processes (accelerate, same per-process batch)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", default="configs/train_tiny.yaml", help="training config (data, vae, model)")
    p.add_argument("--data", help="dataset folder (overrides the config's; any `mvgen dataset` output)")
    p.add_argument("--out", default="runs/bench_scaling", help="one run folder per process count")
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--per-process-batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5, help="steps left out of the timing")
    p.add_argument("--views", type=int, default=8, help="views per sample (fixed, so every step costs the same)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--device", default="cpu", help="cpu (gloo processes) or cuda (one GPU per process)")
    p.add_argument("--json", help="write the rows here")
    p.set_defaults(func=_run)


def _run(args) -> int:
    for name in ("per_process_batch", "steps", "views", "threads"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not args.processes or min(args.processes) < 1:
        raise ValueError(f"--processes must be positive counts, got {args.processes}")
    if args.warmup < 0 or args.steps < args.warmup + 2:
        raise ValueError(f"--steps must exceed --warmup by at least 2, got {args.steps} and {args.warmup}")
    rows = run_scaling(args.config, Path(args.out), args.processes, args.per_process_batch, args.steps, args.warmup,
                       args.views, args.threads, args.device, args.data)
    print("| processes | threads each | batch per process | global batch | s/step | samples/s | vs 1st row |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['processes']} | {r['threads_per_process']} | {r['per_process_batch']} | {r['global_batch']} | "
              f"{r['s_per_step']:.3f} | {r['samples_per_s']:.2f} | {r['speedup']:.2f}× |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0
