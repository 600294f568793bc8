"""``mvgen bench raster`` (rasterizer speed per backend) and ``mvgen bench fit`` (fit time and held-out quality
on procedural orbits). Both print a Markdown table and can write the rows as JSON (``--json PATH``).

``bench fit`` renders its ground truth with ``mvgen.data`` (procedural objects); benches are glue, the
reconstruction package itself never imports it.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time


FIT_CAPTIONS = ("an orange car with black wheels", "a red chair with white legs",
                "a tall blue vase with a white stripe")


def register_raster(subparsers) -> None:
    p = subparsers.add_parser("raster", help="rasterizer forward+backward time per backend")
    p.add_argument("--backends", default="cpu,torch", help="comma list of cpu, torch, gsplat (gsplat needs CUDA)")
    p.add_argument("--gaussians", default="5000,20000", help="comma list of Gaussian counts")
    p.add_argument("--sizes", default="128,256", help="comma list of square image sizes")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats for fast backends (torch: 1)")
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.set_defaults(func=run_raster)


def register_fit(subparsers) -> None:
    p = subparsers.add_parser("fit", help="fit time and held-out PSNR on 16-view procedural orbits")
    p.add_argument("--captions", default=";".join(FIT_CAPTIONS), help="';'-separated procedural captions")
    p.add_argument("--inits", default="hull,random", help="comma list of initialisations to compare")
    p.add_argument("--views", type=int, default=16, help="orbit views (even ones are fitted, odd ones scored)")
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--steps", type=int, help="fit steps (default: configs/reconstruction.yaml)")
    p.add_argument("--backend", default="auto", choices=["auto", "cpu", "gsplat", "torch"])
    p.add_argument("--no-lpips", action="store_true")
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.set_defaults(func=run_fit)


def bench_scene(n: int, seed: int = 0):
    """The fixed random scene: n Gaussians uniform in the unit ball, ~0.02 scale, random colours/opacities.
    Returns means, quats, scales, opacities, colors (leaf tensors requiring grad)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    directions = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    means = directions * torch.rand(n, 1, generator=g) ** (1 / 3)
    quats = torch.randn(n, 4, generator=g)
    scales = torch.exp(torch.randn(n, 3, generator=g) * 0.5 + math.log(0.02))
    opacities = torch.rand(n, generator=g) * 0.9 + 0.05
    colors = torch.rand(n, 3, generator=g)
    return [t.requires_grad_() for t in (means, quats, scales, opacities, colors)]


def time_fwd_bwd(backend: str, params, cameras, repeats: int) -> list[float]:
    """Milliseconds of rasterization + backward of a fixed loss, ``repeats`` times."""
    import torch

    from reconstruction.rasterize import rasterization

    weights = None
    times = []
    for _ in range(repeats):
        for p in params:
            p.grad = None
        t = time.perf_counter()
        img, alpha, _ = rasterization(*params, cameras.viewmats, cameras.K, cameras.width, cameras.height,
                                      backgrounds=torch.ones(1, 3), backend=backend)
        if weights is None:
            weights = torch.rand(img.shape, generator=torch.Generator().manual_seed(1))
        ((img * weights).sum() + alpha.sum()).backward()
        times.append((time.perf_counter() - t) * 1000)
    return times


def _table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 1 else f"{v:.2f}"
        return str(v)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def _write_json(path: str | None, payload) -> None:
    if path:
        from mvgen.fileio import atomic_write_text

        atomic_write_text(path, json.dumps(payload, indent=2))


def run_raster(args) -> int:
    import torch

    from mvgen.cameras import orbit
    from reconstruction.rasterize import choose_backend

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in backends:
        choose_backend(b, "cuda" if b == "gsplat" else "cpu")  # raises a clear error for unknown / no-GPU
    counts = [int(x) for x in args.gaussians.split(",")]
    sizes = [int(x) for x in args.sizes.split(",")]
    if args.repeats < 1 or min(counts) < 1 or min(sizes) < 16:
        raise ValueError("--repeats, --gaussians must be positive and --sizes at least 16")
    device = "cuda" if "gsplat" in backends else "cpu"
    rows, first_call = [], None
    for size in sizes:
        cams = orbit(1, 20.0, width=size).to(device)
        for n in counts:
            params = [p.detach().to(device).requires_grad_() for p in bench_scene(n)]
            for b in backends:
                if b != "torch":  # warm-up (numba compile or cache load on the first call)
                    t = time.perf_counter()
                    time_fwd_bwd(b, params, cams, 1)
                    if b == "cpu" and first_call is None:
                        first_call = time.perf_counter() - t
                ms = time_fwd_bwd(b, params, cams, 1 if b == "torch" else args.repeats)
                rows.append({"backend": b, "gaussians": n, "width": size, "height": size,
                             "fwd_bwd_ms": statistics.median(ms), "repeats": len(ms)})
    for r in rows:
        ref = next((q for q in rows if q["backend"] == "torch" and q["gaussians"] == r["gaussians"]
                    and q["width"] == r["width"]), None)
        if ref is not None:
            r["speedup_vs_torch"] = ref["fwd_bwd_ms"] / r["fwd_bwd_ms"]
    print(f"rasterizer forward+backward, 1 camera, median ms (torch threads: {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")
    print(_table(rows, ["backend", "gaussians", "width", "height", "fwd_bwd_ms", "speedup_vs_torch"]))
    if first_call is not None:
        print(f"\ncpu backend first call (numba compile, or load from its disk cache): {first_call:.1f} s")
    _write_json(args.json, {"rows": rows, "cpu_first_call_seconds": first_call})
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
    from reconstruction.cli import DEFAULT_CONFIG
    from reconstruction.fit import FitConfig
    from reconstruction.metrics import evaluate_holdout

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
    print(_table(rows, ["caption", "init", "steps", "gaussians", "fit_seconds", "fit_cpu_seconds", "train_psnr",
                        "heldout_psnr", "heldout_ssim", "heldout_lpips"]))
    print(f"\nload average (1 min) at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; fit_seconds is "
          "wall clock, fit_cpu_seconds the process's CPU time over all threads")
    impl = next((r["lpips_impl"] for r in rows if r.get("lpips_impl")), None)
    if impl:
        print(f"\nLPIPS: {impl}")
    _write_json(args.json, {"rows": rows})
    return 0
