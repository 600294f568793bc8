import sys, os, time, importlib.util, torch
sys.path.insert(0, "/work/main")
from mvgen.cameras import load_views
from reconstruction import project_cpu as new
spec = importlib.util.spec_from_file_location("project_old", "/tmp/abtest/project_old.py")
old = importlib.util.module_from_spec(spec); spec.loader.exec_module(old)
G = torch.load("/tmp/abtest/lego_fit_2000.pt", weights_only=False)
if os.environ.get("DEG") == "3":
    G.shN = torch.cat([G.shN, 0.05 * torch.randn(len(G), 12, 3, generator=torch.Generator().manual_seed(0))], 1)
    G.sh_degree = 3
posed = load_views("/work/shared/data/nerf_synthetic_lego_100px", 1)
cams = posed.cameras
def run(mod, v):
    cam = cams[[v]]
    ps = [t.detach().clone().requires_grad_() for t in (G.means, G.quats, G.scales, G.opacities, G.colors)]
    t0 = time.process_time()
    radii, m2, d, co, cl = mod.project_and_shade(ps[0], ps[1], torch.exp(ps[2]), torch.sigmoid(ps[3]), cam.viewmats, cam.K,
                                                cam.width, cam.height, ps[4], G.sh_degree, 0.3, 0.01, 1e10, 0.0)
    t1 = time.process_time()
    g = torch.Generator().manual_seed(v)
    loss = (m2 * torch.rand(m2.shape, generator=g)).sum() + (co * torch.rand(co.shape, generator=g)).sum() + (cl * torch.rand(cl.shape, generator=g)).sum() + d.sum()
    loss.backward()
    t2 = time.process_time()
    return t1 - t0, t2 - t1, [p.grad for p in ps]
run(old, 0); run(new, 0)
fo, bo, fn, bn, md = [], [], [], [], 0
for r in range(3):
    for v in range(0, 80, 8):
        a = run(old, v); b = run(new, v)
        fo.append(a[0]); bo.append(a[1]); fn.append(b[0]); bn.append(b[1])
        md = max(md, max(float((x - y).abs().max() / (x.abs().max() + 1e-12)) for x, y in zip(a[2], b[2]) if x is not None))
s = lambda v: 1000 * sum(v) / len(v)
print(f"{len(G)} Gaussians, per view CPU ms: project fwd old {s(fo):.2f} new {s(fn):.2f}; fwd+bwd (incl. autograd) old {s(bo):.2f} new {s(bn):.2f} ({s(bo)/s(bn):.2f}x); max rel grad diff {md:.1e}")
