"""Old vs new CPU rasterizer kernels on a real lego fit's Gaussians: the fit (new code), then forward and backward
of 10 training views, old/new interleaved in one process, process CPU time, 1 thread."""
import sys, time, importlib.util, statistics, numpy as np, torch
sys.path.insert(0, "/work/main")
from dataclasses import replace
from mvgen.cameras import load_views
from reconstruction.fit import fit, DEFAULT_CONFIG
from reconstruction.protocols import holdout_split
from reconstruction.project_cpu import project_and_shade
from reconstruction import raster_cpu as new
import os
spec = importlib.util.spec_from_file_location("raster_old", os.environ.get("OLD", "/tmp/abtest/raster_old.py"))
old = importlib.util.module_from_spec(spec); spec.loader.exec_module(old)
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
posed = load_views("/work/shared/data/nerf_synthetic_lego_100px", 1)

from reconstruction.fit import FitConfig
images, cameras = posed.images, posed.cameras
train, held = holdout_split(len(cameras), 5)
import os.path
cache = f"/tmp/abtest/lego_fit_{steps}.pt"
if os.path.exists(cache):
    G = torch.load(cache, weights_only=False)
else:
    res = fit(images[train], cameras[train], replace(FitConfig(), steps=steps))
    G = res.gaussians
    torch.save(G, cache)
    print(f"fit: {res.steps} steps, {len(G)} Gaussians, {res.cpu_seconds:.1f} CPU s", flush=True)
views = train[::8][:10]
inputs = []
with torch.no_grad():
    for v in views:
        cam = cameras[[v]]
        radii, means2d, depths, conics, cols = project_and_shade(
            G.means, G.quats, torch.exp(G.scales), torch.sigmoid(G.opacities), cam.viewmats, cam.K, cam.width,
            cam.height, G.colors, G.sh_degree, 0.3, 0.01, 1e10, 0.0)
        op = torch.sigmoid(G.opacities)[None].expand(1, len(G)).contiguous()
        inputs.append((means2d, conics, cols, op, radii, depths, cam.width, cam.height))
def run(mod, inp):
    m2, co, cl, op, r, d, W, H = inp
    ts = [t.detach().clone().requires_grad_() for t in (m2, co, cl, op)]
    t0 = time.process_time(); img, a = mod.rasterize_to_pixels(*ts, r, d, W, H); t1 = time.process_time()
    g = torch.Generator().manual_seed(0)
    torch.autograd.backward([img, a], [torch.rand(img.shape, generator=g), torch.rand(a.shape, generator=g)])
    t2 = time.process_time()
    return t1 - t0, t2 - t1, img.detach(), [t.grad for t in ts]
for inp in inputs[:1]:
    run(old, inp); run(new, inp)
fo, bo, fn, bn, maxd = [], [], [], [], 0.0
for rnd in range(3):
    for inp in inputs:
        a = run(old, inp); b = run(new, inp)
        fo.append(a[0]); bo.append(a[1]); fn.append(b[0]); bn.append(b[1])
        assert torch.equal(a[2], b[2])
        maxd = max(maxd, max(float(((x - y).abs().max() / (x.abs().max() + 1e-12))) for x, y in zip(a[3], b[3])))
s = lambda v: 1000 * sum(v) / len(v)
print(f"per view (mean of {len(fo)}), CPU ms: forward old {s(fo):.2f} new {s(fn):.2f} ({s(fo)/s(fn):.2f}x); "
      f"backward old {s(bo):.2f} new {s(bn):.2f} ({s(bo)/s(bn):.2f}x); fwd+bwd {(s(fo)+s(bo))/(s(fn)+s(bn)):.2f}x; "
      f"images identical; max gradient diff / max |grad| {maxd:.1e}", flush=True)
