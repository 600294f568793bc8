"""``mvgen bench raster``: rasterizer speed per backend. Prints a Markdown table and can write the rows as JSON
(``--json PATH``); ``markdown_table`` and ``write_json`` serve the other benches too.

(``mvgen bench fit`` renders procedural objects, so it lives in mvgen: ``mvgen/job_bench.py``.)
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time


def register_raster(subparsers) -> None:
    p = subparsers.add_parser("raster", help="rasterizer forward+backward time per backend")
    p.add_argument("--backends", default="cpu,torch", help="comma list of cpu, torch, gsplat (gsplat needs CUDA)")
    p.add_argument("--gaussians", default="5000,20000", help="comma list of Gaussian counts")
    p.add_argument("--sizes", default="128,256", help="comma list of square image sizes")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats for fast backends (torch: 1)")
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.set_defaults(func=run_raster)


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
    """Milliseconds of rasterization + backward of a fixed loss, ``repeats`` times, on the params' device (CUDA
    work is synchronised before each clock reading)."""
    import torch

    from reconstruction.rasterize import rasterization

    device = params[0].device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    weights = None
    times = []
    for _ in range(repeats):
        for p in params:
            p.grad = None
        sync()
        t = time.perf_counter()
        img, alpha, _ = rasterization(*params, cameras.viewmats, cameras.K, cameras.width, cameras.height,
                                      backgrounds=torch.ones(1, 3, device=device), backend=backend)
        if weights is None:
            weights = torch.rand(img.shape, generator=torch.Generator().manual_seed(1)).to(device)
        ((img * weights).sum() + alpha.sum()).backward()
        sync()
        times.append((time.perf_counter() - t) * 1000)
    return times


def markdown_table(rows: list[dict], cols: list[str]) -> str:
    """A Markdown table of ``rows`` (dicts) with the columns ``cols`` (missing values left empty)."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 1 else f"{v:.2f}"
        return str(v)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def write_json(path: str | None, payload) -> None:
    """Write ``payload`` as JSON to ``path`` (temp name, then rename); nothing when ``path`` is None."""
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
    print(markdown_table(rows, ["backend", "gaussians", "width", "height", "fwd_bwd_ms", "speedup_vs_torch"]))
    if first_call is not None:
        print(f"\ncpu backend first call (numba compile, or load from its disk cache): {first_call:.1f} s")
    write_json(args.json, {"rows": rows, "cpu_first_call_seconds": first_call})
    return 0
