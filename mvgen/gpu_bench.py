"""`mvgen bench gpu` (run by scripts/gpu_check.sh): on a CUDA machine, the checks of issue 18 in one JSON report.

- ``raster``: gsplat's CUDA rasterizer vs our compiled CPU kernel on the same random scenes (each on its own
  device, every operand of a render on one device): images and alphas within 1e-4, gradients within 1e-3 of
  their scale; the first gsplat call's seconds (it compiles its CUDA code with nvcc on first use).
- ``generate``: the pipeline on the GPU in fp32 and in bf16 autocast vs on the CPU (the default: bf16 autocast),
  seconds and how far the views are apart (PSNR), which is what ``precision: auto | bf16 | fp32`` rests on.
- ``fit``: the reconstruction of a procedural object's orbit on the GPU (gsplat) vs the CPU (numba kernel):
  seconds, Gaussians, held-out PSNR.
- ``e2e``: prompt -> all files with configs/app.yaml's settings on the GPU vs the CPU (target: <= 5 s on an H100).

Without CUDA it prints one line saying so, writes ``{"cuda": false, "checked": false}`` and exits 0. The measuring
functions take their devices and backends as arguments, so the test suite runs them on the CPU
(tests/job/test_gpu_bench.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

TOL_IMAGE, TOL_GRAD = 1e-4, 1e-3  # issue 18's targets: images absolute, gradients relative to their scale
NO_CUDA = ("mvgen bench gpu: no CUDA GPU here (torch.cuda.is_available() is False): nothing was checked; run "
           "scripts/gpu_check.sh on a machine with an NVIDIA GPU")


def register(subparsers) -> None:
    p = subparsers.add_parser("gpu", help="GPU check: gsplat CUDA vs the CPU kernel, generate / fit / e2e GPU vs CPU",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--json", default="logs/gpu_check.json", help="the report")
    p.add_argument("--model", help="pipeline folder (default: the shipped assets/mvgen-tiny, or MVGEN_MODEL)")
    p.add_argument("--device", default="cuda", help="the GPU to check: cuda | cuda:K")
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke test of the check itself)")
    p.add_argument("--pytest-rc", type=int, help="exit code of the GPU tests (scripts/gpu_check.sh passes it)")
    p.set_defaults(func=run_gpu_check)


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device):
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


def compare_rasterizers(ref=("cpu", "cpu"), other=("gsplat", "cuda"), cases=None) -> list[dict]:
    """Render the same scenes with ``ref`` = (backend, device) and ``other``, the same loss on both; per case the
    largest image / alpha difference and each parameter's largest gradient difference over its scale."""
    import torch

    from mvgen.cameras import orbit
    from reconstruction.bench import bench_scene
    from reconstruction.rasterize import rasterization

    cases = cases or [(300, 40, 32, 0), (300, 40, 32, 1), (5000, 128, 128, 2)]
    rows = []
    for n, width, height, seed in cases:
        cams = orbit(2, 20.0, width=width, height=height)
        results = []
        for backend, device in (ref, other):
            params = [p.detach().to(device).requires_grad_() for p in bench_scene(n, seed)]
            c = cams.to(device)

            def render():
                img, alpha, _ = rasterization(*params, c.viewmats, c.K, width, height,
                                              backgrounds=torch.ones(2, 3, device=device), backend=backend)
                weights = torch.rand(img.shape, generator=torch.Generator().manual_seed(seed)).to(device)
                ((img * weights).sum() + alpha.sum()).backward()
                return img.detach().cpu(), alpha.detach().cpu()

            (img, alpha), seconds = _timed(render, device)
            results.append((img, alpha, [p.grad.cpu() for p in params], seconds))
        (img_a, al_a, g_a, s_a), (img_b, al_b, g_b, s_b) = results
        grads = {name: float((a - b).abs().max() / a.abs().max().clamp(min=1e-6))
                 for name, a, b in zip(("means", "quats", "scales", "opacities", "colors"), g_a, g_b)}
        image, alpha = float((img_a - img_b).abs().max()), float((al_a - al_b).abs().max())
        rows.append({"gaussians": n, "size": f"{width}x{height}", "seed": seed, "image_max_abs": image,
                     "alpha_max_abs": alpha, "grad_max_rel": grads, "first_call_s": {ref[0]: s_a, other[0]: s_b},
                     "passed": image <= TOL_IMAGE and alpha <= TOL_IMAGE and max(grads.values()) <= TOL_GRAD})
    return rows


def time_generate(model, devices, views: int = 8, steps: int = 20, precisions: dict | None = None) -> list[dict]:
    """Seconds of ``views`` views in ``steps`` steps per device and autocast setting (``precisions``: device type ->
    autocast values; default: fp32 and bf16 on CUDA, the default on the CPU), after one warm-up; PSNR of each
    run's views against the first run's."""
    import torch

    from mvgen.generate import sample_views
    from mvgen.job import load_model
    from mvgen.metrics import psnr

    precisions = precisions or {"cuda": (False, True), "cpu": (None,)}
    rows, first = [], None
    for device in devices:
        pipe, path = load_model(model, device)
        for autocast in precisions[torch.device(device).type]:
            sample_views(pipe, "a red mug", views=views, steps=1, autocast=autocast)  # warm-up
            (images, _, _), seconds = _timed(lambda: sample_views(pipe, "a blue vase", views=views, steps=steps,
                                                                  autocast=autocast), device)
            images = torch.from_numpy(images).permute(0, 3, 1, 2)
            first = images if first is None else first
            rows.append({"device": str(device), "autocast": {None: "auto", True: "bf16", False: "fp32"}[autocast],
                         "views": views, "steps": steps, "seconds": seconds,
                         "psnr_vs_first_row": float(psnr(images, first).clamp(max=100).mean())})
    return rows


def time_fit(devices, views: int = 8, resolution: int = 128, steps: int = 400,
             caption: str = "a red chair with white legs") -> list[dict]:
    """Fit the even views of a procedural orbit, score the odd ones, on each device (``backend="auto"``)."""
    from mvgen.job_bench import procedural_orbit
    from reconstruction.fit import DEFAULT_CONFIG, FitConfig
    from reconstruction.protocols import evaluate_holdout

    images, cameras = procedural_orbit(caption, views, resolution)
    cfg = FitConfig.from_dict({**FitConfig.from_yaml(DEFAULT_CONFIG).to_dict(), "steps": steps})
    rows = []
    for device in devices:
        rep, seconds = _timed(lambda: evaluate_holdout(images.to(device), cameras.to(device), 2, cfg, "auto",
                                                       with_lpips=False), device)
        m = rep.metrics
        rows.append({"device": str(device), "caption": caption, "views": views, "size": resolution,
                     "steps": m["fit_steps"], "gaussians": m["n_gaussians"], "seconds": seconds,
                     "fit_seconds": m["fit_seconds"], "heldout_psnr": m["psnr"], "train_psnr": m["train_psnr"]})
    return rows


def time_e2e(model, devices, overrides: dict | None = None) -> list[dict]:
    """prompt -> all files (configs/app.yaml's settings, ``overrides`` on top) per device, after a warm-up run."""
    import tempfile

    from mvgen.job import load_model, run_prompt
    from mvgen.settings import CLI_RANGES, AppConfig, check_run_settings

    rows = []
    for device in devices:
        cfg = AppConfig.from_yaml(**CLI_RANGES).with_overrides(device=str(device), **(overrides or {}))
        settings = check_run_settings(cfg, cfg.views, cfg.elevation, cfg.steps, cfg.guidance, cfg.seed,
                                      cfg.recon_steps)
        pipe, path = load_model(model, device)
        with tempfile.TemporaryDirectory(prefix="mvgen-gpu-check-") as tmp:
            run_prompt(pipe, "a red mug", Path(tmp) / "warm", cfg, settings, path)  # compile / load kernels once
            result, seconds = _timed(lambda: run_prompt(pipe, "a blue vase", Path(tmp) / "run", cfg, settings,
                                                        path), device)
        rows.append({"device": str(device), "seconds": seconds, "stage_seconds": result.seconds,
                     "psnr": result.metrics["psnr"], "gaussians": result.metrics["n_gaussians"]})
    return rows


def run_gpu_check(args) -> int:
    import platform

    import torch

    from mvgen.device import describe, resolve_device
    from mvgen.generate import default_model_path
    from reconstruction.bench import write_json

    report = {"cuda": torch.cuda.is_available(), "torch": torch.__version__, "python": platform.python_version()}
    if not report["cuda"]:
        print(NO_CUDA, file=sys.stderr)
        write_json(args.json, {**report, "checked": False})
        return 0
    import gsplat

    device = resolve_device(args.device)
    model = args.model or default_model_path()
    report.update(checked=True, device=describe(device), gsplat=gsplat.__version__, cpu_threads=torch.get_num_threads(),
                  pytest_rc=args.pytest_rc, quick=args.quick)
    quick = args.quick
    report["raster"] = compare_rasterizers(("cpu", "cpu"), ("gsplat", device),
                                           [(300, 40, 32, 0)] if quick else None)
    report["generate"] = time_generate(model, [device, "cpu"], steps=2 if quick else 20)
    report["fit"] = time_fit([device, "cpu"], steps=50 if quick else 400, resolution=64 if quick else 128)
    report["e2e"] = time_e2e(model, [device, "cpu"], {"steps": 2, "recon_steps": 50} if quick else None)
    report["passed"] = all(r["passed"] for r in report["raster"]) and args.pytest_rc in (None, 0)
    write_json(args.json, report)
    _print_summary(report)
    return 0 if report["passed"] else 1


def _print_summary(report: dict) -> None:
    print(f"{report['device']} · torch {report['torch']} · gsplat {report['gsplat']}")
    for r in report["raster"]:
        print(f"raster {r['gaussians']} Gaussians {r['size']}: image {r['image_max_abs']:.2e} alpha "
              f"{r['alpha_max_abs']:.2e} grad {max(r['grad_max_rel'].values()):.2e} -> "
              f"{'ok' if r['passed'] else 'FAIL'}")
    for name in ("generate", "fit", "e2e"):
        for r in report[name]:
            extra = f" ({r['autocast']})" if "autocast" in r else ""
            print(f"{name} on {r['device']}{extra}: {r['seconds']:.2f} s")
    print("passed" if report["passed"] else "FAILED")
