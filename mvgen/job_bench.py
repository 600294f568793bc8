"""Benches of the job's stages (print Markdown tables; ``--json PATH`` writes the rows):

- `mvgen bench e2e`: seconds per stage of prompt -> views + splat + mesh + metrics with the app's default settings
  (configs/app.yaml), and seconds from `mvgen app` start until its page is interactive in headless chromium.
  Targets (issue 6): the whole run <= 90 s and the page interactive <= 15 s on the 2-core CPU, shipped model.
- `mvgen bench fit`: fit time and held-out quality of the 3D stage on procedural objects (``mvgen.data``), one
  row per initialisation.
- `mvgen bench fit-real SCENE --steps 600,1000,auto`: the same on a posed scene folder (e.g. NeRF-synthetic lego,
  ``--holdout every-5``), one row per step count: CPU and wall seconds, Gaussians, held-out PSNR/SSIM/LPIPS, so a
  PSNR-vs-time curve can be compared with another system on the same split.
"""

from __future__ import annotations

import argparse
import os
import statistics
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


FIT_CAPTIONS = ("an orange car with black wheels", "a red chair with white legs",
                "a tall blue vase with a white stripe")


def register_e2e(subparsers) -> None:
    p = subparsers.add_parser("e2e", help="prompt -> views + splat + mesh + metrics: seconds per stage; app start-up",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--prompt", default="a blue vase")
    p.add_argument("--model", help="pipeline folder (default: the shipped assets/mvgen-tiny, or MVGEN_MODEL)")
    p.add_argument("--config", help="app defaults (default: configs/app.yaml)")
    p.add_argument("--views", type=int, help="override the config's views")
    p.add_argument("--steps", type=int, help="override the config's denoising steps")
    p.add_argument("--recon-steps", type=int, help="override the config's reconstruction steps")
    p.add_argument("--skip-launch", action="store_true", help="do not measure the app's start-up")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:K (default: configs/app.yaml)")
    p.add_argument("--json", help="also write the results here")
    p.set_defaults(func=run_e2e)


def register_fit(subparsers) -> None:
    p = subparsers.add_parser("fit", help="fit time and held-out PSNR on 16-view procedural orbits")
    p.add_argument("--captions", default=";".join(FIT_CAPTIONS), help="';'-separated procedural captions")
    p.add_argument("--inits", default="hull,random", help="comma list of initialisations to compare")
    p.add_argument("--views", type=int, default=16, help="orbit views (even ones are fitted, odd ones scored)")
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--steps", type=int, help="fit steps (default: configs/reconstruction.yaml)")
    p.add_argument("--backend", default="auto", choices=["auto", "cpu", "gsplat", "torch"])
    p.add_argument("--no-lpips", action="store_true")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:K: where the views are fitted")
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.set_defaults(func=run_fit)


def register_fit_real(subparsers) -> None:
    p = subparsers.add_parser("fit-real", help="fit time and held-out PSNR/SSIM/LPIPS on a posed scene folder, "
                                                "one row per step count")
    p.add_argument("scene", help="folder with transforms.json (or transforms_train.json) and RGBA views")
    p.add_argument("--steps", default="auto", help="comma list of step counts; 'auto': from the scene "
                                                   "(configs/reconstruction.yaml's steps_per_mpx)")
    p.add_argument("--holdout", default="every-5", help="'every-K': fit without views K-1, 2K-1, ..., score them")
    p.add_argument("--config", help="FitConfig YAML preset (default: configs/reconstruction.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a FitConfig field (YAML value), e.g. --set prune_opacity=0.05; repeatable")
    p.add_argument("--no-early-stop", action="store_true", help="run every step (early_stop_tol 0)")
    p.add_argument("--downscale", type=float, default=1.0, help="shrink the views by this factor (>= 1)")
    p.add_argument("--backend", default="auto", choices=["auto", "cpu", "gsplat", "torch"])
    p.add_argument("--no-lpips", action="store_true")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:K: where the views are fitted")
    p.add_argument("--profile", action="store_true",
                   help="also time the stages of every fitting step (CPU and wall ms per step) and print the split")
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.set_defaults(func=run_fit_real)


def fit_real_config(config: str | None, sets: list[str], no_early_stop: bool):
    """The FitConfig preset with ``FIELD=VALUE`` overrides (values parsed as YAML)."""
    import yaml

    from reconstruction.fit import DEFAULT_CONFIG, FitConfig

    base = FitConfig.from_yaml(config or DEFAULT_CONFIG).to_dict()
    for item in sets:
        field, eq, value = item.partition("=")
        if not eq or not field.strip():
            raise ValueError(f"--set needs FIELD=VALUE, got {item!r}")
        base[field.strip()] = yaml.safe_load(value)
    if no_early_stop:
        base["early_stop_tol"] = 0.0
    return FitConfig.from_dict(base)


def run_fit_real(args) -> int:
    from dataclasses import replace

    from mvgen.cameras import load_views
    from mvgen.device import resolve_device
    from reconstruction.bench import markdown_table, write_json
    from reconstruction.protocols import evaluate_holdout, holdout_split, parse_holdout

    every = parse_holdout(args.holdout)
    base = fit_real_config(args.config, args.set, args.no_early_stop)
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    if not steps or not all(s == "auto" or (s.isdigit() and int(s) > 0) for s in steps):
        raise ValueError(f"--steps must be a comma list of positive integers or 'auto', got {args.steps!r}")
    device = resolve_device(args.device)
    posed = load_views(args.scene, args.downscale)
    train, held = holdout_split(len(posed.cameras), every)
    images, cameras = posed.images.to(device), posed.cameras.to(device)
    rows = []
    for s in steps:
        cfg = replace(base, steps=0 if s == "auto" else int(s))
        load0 = os.getloadavg()[0]
        rep = evaluate_holdout(images, cameras, every, cfg, args.backend, with_lpips=not args.no_lpips,
                               profile=args.profile)
        m = rep.metrics
        rows.append({"steps": s, "steps_run": m["fit_steps"], "stopped_early": rep.fit.stopped_early,
                     "cpu_s": m["fit_cpu_seconds"], "wall_s": m["fit_seconds"], "gaussians": m["n_gaussians"],
                     "heldout_psnr": m["psnr"], "heldout_ssim": m["ssim"], "heldout_lpips": m.get("lpips", ""),
                     "train_psnr": m["train_psnr"], "load_start": load0, "load_end": os.getloadavg()[0],
                     "lpips_impl": m.get("lpips_impl", "")})
        print(f"  steps {s}: {m['fit_steps']} run, held-out {m['psnr']:.2f} dB, {m['fit_cpu_seconds']:.1f} CPU s, "
              f"{m['fit_seconds']:.1f} s wall", flush=True)
        if args.profile:
            rows[-1]["profile"] = print_profile(rep.fit)
    print(f"\n{args.scene}: {len(train)} fitted views at {posed.cameras.width}x{posed.cameras.height}, "
          f"{len(held)} held out ({args.holdout}), background {list(base.background)}")
    print(markdown_table(rows, ["steps", "steps_run", "cpu_s", "wall_s", "gaussians", "heldout_psnr",
                                "heldout_ssim", "heldout_lpips", "train_psnr", "load_start", "load_end"]))
    print(f"\nload average (1 min) at the start / end of each fit on {os.cpu_count()} cores; cpu_s is the process's "
          "CPU time over all threads, wall_s wall clock")
    impl = next((r["lpips_impl"] for r in rows if r.get("lpips_impl")), None)
    if impl:
        print(f"LPIPS: {impl}")
    write_json(args.json, {"scene": str(args.scene), "holdout": args.holdout, "config": base.to_dict(),
                           "rows": rows})
    return 0


def print_profile(result) -> list[dict]:
    """Print (and return) the stage split of a fit run with ``profile=True``."""
    from reconstruction.bench import markdown_table
    from reconstruction.profile import profile_rows

    rows = profile_rows(result.profile or {}, result.steps, result.cpu_seconds, result.seconds)
    threads = os.environ.get("NUMBA_NUM_THREADS", str(os.cpu_count()))
    print(f"\n  where the {result.steps} steps' time went (exclusive of inner stages; numba threads {threads}; "
          f"cpu_per_wall near the thread count = the stage uses them):")
    print(markdown_table(rows, ["stage", "cpu_ms_per_step", "wall_ms_per_step", "cpu_share", "cpu_per_wall"]))
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure_launch(model: str | None, timeout: float = 120.0) -> dict:
    """Start `mvgen app` (as a user does: the model preloads in the background) in a subprocess; seconds until the
    server answers and until the page is interactive (the Generate button visible and enabled in headless
    chromium, started beforehand so its own start-up is not counted; skipped without chromium)."""
    import contextlib
    import urllib.error
    import urllib.request

    from mvgen.browser import chromium_path, launch_chromium

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = dict(os.environ, **({"MVGEN_MODEL": str(Path(model).resolve())} if model else {}))
    with contextlib.ExitStack() as stack:
        page = None
        if chromium_path():
            from playwright.sync_api import sync_playwright

            browser = launch_chromium(stack.enter_context(sync_playwright()))
            stack.callback(browser.close)
            page = browser.new_page()
        work = stack.enter_context(tempfile.TemporaryDirectory(prefix="mvgen-bench-app-"))
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "mvgen.cli", "app", "--port", str(port), "--workdir", work],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        stack.callback(_stop, proc)
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode()[-2000:]
                raise RuntimeError(f"`mvgen app` exited with {proc.returncode}: {err}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass  # not listening yet: poll again
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"`mvgen app` did not answer within {timeout:.0f} s")
            time.sleep(0.1)
        out = {"server_s": round(time.perf_counter() - t0, 2), "interactive_s": None}
        if page is not None:
            page.goto(url)
            page.locator("#generate-button").wait_for(state="visible", timeout=timeout * 1000)
            page.wait_for_function("!document.querySelector('#generate-button').disabled")
            out["interactive_s"] = round(time.perf_counter() - t0, 2)
        return out


def _stop(proc: subprocess.Popen) -> None:
    """Terminate the app we started (SIGTERM: it removes its folder), kill it if it does not stop."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_e2e(args) -> int:
    import torch

    from mvgen.device import describe, resolve_device
    from mvgen.generate import default_model_path
    from mvgen.job import load_model, model_problem, run_prompt
    from mvgen.settings import CLI_RANGES, DEFAULT_CONFIG, AppConfig, check_prompt, check_run_settings
    from reconstruction.bench import write_json

    cfg = AppConfig.from_yaml(args.config or DEFAULT_CONFIG, **CLI_RANGES)
    cfg = cfg.with_overrides(views=args.views, steps=args.steps, recon_steps=args.recon_steps, device=args.device)
    device = resolve_device(cfg.device)
    settings = check_run_settings(cfg, cfg.views, cfg.elevation, cfg.steps, cfg.guidance, cfg.seed, cfg.recon_steps)
    prompt = check_prompt(args.prompt)
    model = Path(args.model) if args.model else default_model_path()
    problem = model_problem(model)
    if problem:
        raise ValueError(problem)

    launch = None if args.skip_launch else measure_launch(args.model)
    t0 = time.perf_counter()
    pipe, model = load_model(model, device)
    load_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="mvgen-bench-e2e-") as tmp:
        result = run_prompt(pipe, prompt, Path(tmp) / "run", cfg, settings, model)
        files = sorted(p.name for p in result.files.values())
    m = result.metrics
    s = result.seconds
    rows = [("model load", load_s),
            (f"generate ({settings['views']} views, {settings['steps']} steps)", s["generate"]),
            (f"fit ({m['fit_steps']} steps on the even views + {m.get('asset_steps', 0)} on all, "
             f"{m.get('asset_gaussians', m['n_gaussians'])} Gaussians)", s["fit"]),
            ("evaluate (held-out render + PSNR/SSIM/LPIPS)", s["evaluate"]),
            ("export (heatmaps, ply, splat, glb, mp4, gif)", s["export"]),
            ("**prompt → all files** (target ≤ 90 s)", s["total"])]
    if launch:
        rows.append(("`mvgen app` start → server answers", launch["server_s"]))
        if launch["interactive_s"] is not None:
            rows.append(("`mvgen app` start → page interactive in chromium (target ≤ 15 s)",
                         launch["interactive_s"]))
    print(f"model {model} · device {describe(device)} · torch threads {torch.get_num_threads()} · prompt {prompt!r}")
    print("| stage | seconds |\n|---|---|")
    for name, sec in rows:
        print(f"| {name} | {sec:.1f} |")
    lp = f", LPIPS {m['lpips']:.4f} ({m['lpips_impl']})" if "lpips" in m else ""
    print(f"\n{m['protocol']}: PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}{lp}; files: {', '.join(files)}")
    if args.json:
        settings["steer"] = settings["steer"].mode
        metrics = {k: m[k] for k in ("psnr", "ssim", "lpips", "lpips_impl", "n_gaussians") if k in m}
        write_json(args.json, {"model": str(model), "device": describe(device), "prompt": prompt,
                               "settings": settings, "model_load_s": load_s,
                               "stage_seconds": s, "launch": launch, "metrics": metrics, "files": files})
    return 0


def procedural_orbit(caption: str, views: int, resolution: int):
    """Ground-truth RGBA views [V,4,H,W] of a procedural object on an orbit (elevation 20) and the cameras."""
    import torch

    from mvgen.cameras import orbit
    from mvgen.data.objects import build_mesh
    from mvgen.data.render import render_rgba

    cameras = orbit(views, 20.0, width=resolution)
    rgba = render_rgba(build_mesh(caption), cameras)  # uint8 (V, H, W, 4)
    return torch.from_numpy(rgba).permute(0, 3, 1, 2).float() / 255.0, cameras


def run_fit(args) -> int:
    from mvgen.device import resolve_device
    from reconstruction.bench import markdown_table, write_json
    from reconstruction.fit import DEFAULT_CONFIG, FitConfig
    from reconstruction.protocols import evaluate_holdout

    device = resolve_device(args.device)

    captions = [c.strip() for c in args.captions.split(";") if c.strip()]
    inits = [i.strip() for i in args.inits.split(",") if i.strip()]
    if not captions or not inits:
        raise ValueError("--captions and --inits must name at least one item")
    base = FitConfig.from_yaml(DEFAULT_CONFIG).to_dict()
    if args.steps is not None:
        base["steps"] = args.steps
    rows = []
    for caption in captions:
        images, cameras = procedural_orbit(caption, args.views, args.resolution)
        images, cameras = images.to(device), cameras.to(device)
        for init in inits:
            cfg = FitConfig.from_dict({**base, "init": init})
            rep = evaluate_holdout(images, cameras, 2, cfg, args.backend, with_lpips=not args.no_lpips)
            m = rep.metrics
            rows.append({"caption": caption, "init": init, "steps": m["fit_steps"], "gaussians": m["n_gaussians"],
                         "fit_seconds": m["fit_seconds"], "fit_cpu_seconds": m["fit_cpu_seconds"],
                         "train_psnr": m["train_psnr"], "heldout_psnr": m["psnr"], "heldout_ssim": m["ssim"],
                         "heldout_lpips": m.get("lpips", ""),
                         "lpips_impl": m.get("lpips_impl", "")})
            print(f"  {caption!r} init={init}: held-out {m['psnr']:.2f} dB, fitted {m['train_psnr']:.2f} dB, "
                  f"{m['fit_seconds']:.1f} s", flush=True)
    for init in inits:
        sel = [r for r in rows if r["init"] == init]
        mean = {k: statistics.mean(r[k] for r in sel) for k in ("fit_seconds", "fit_cpu_seconds", "train_psnr",
                                                                 "heldout_psnr", "heldout_ssim")}
        rows.append({"caption": "mean", "init": init, **mean})
    print(f"\n{args.views}-view orbit at {args.resolution}², fit even views, score odd views")
    print(markdown_table(rows, ["caption", "init", "steps", "gaussians", "fit_seconds", "fit_cpu_seconds",
                                "train_psnr", "heldout_psnr", "heldout_ssim", "heldout_lpips"]))
    print(f"\nload average (1 min) at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; fit_seconds is "
          "wall clock, fit_cpu_seconds the process's CPU time over all threads")
    impl = next((r["lpips_impl"] for r in rows if r.get("lpips_impl")), None)
    if impl:
        print(f"\nLPIPS: {impl}")
    write_json(args.json, {"rows": rows})
    return 0
