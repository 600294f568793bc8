"""In-process A/B: the fit's small numba stages (binning fill, Adam, compiled loss) on one thread vs the default."""
import os, sys, time, json
from dataclasses import replace
import numba
import reconstruction.raster_cpu as rc
import reconstruction.adam as adam
import reconstruction.loss_cpu as lc
from mvgen.cameras import load_views
from mvgen.job_bench import fit_real_config
from reconstruction.protocols import evaluate_holdout, parse_holdout

orig_bin, orig_step = rc._bin_gaussians, adam.CPUAdam.step
orig_fwd, orig_bwd = lc.PhotometricLoss.forward, lc.PhotometricLoss.backward

def one_thread(f):
    def g(*a, **k):
        n = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            return f(*a, **k)
        finally:
            numba.set_num_threads(n)
    return g

def patch(on):
    if on:
        rc._bin_gaussians = lambda m, r, d, ts, tx, ty, n: orig_bin(m, r, d, ts, tx, ty, 1)
        adam.CPUAdam.step = one_thread(orig_step)
        lc.PhotometricLoss.forward = staticmethod(one_thread(orig_fwd))
        lc.PhotometricLoss.backward = staticmethod(one_thread(orig_bwd))
    else:
        rc._bin_gaussians, adam.CPUAdam.step = orig_bin, orig_step
        lc.PhotometricLoss.forward, lc.PhotometricLoss.backward = staticmethod(orig_fwd), staticmethod(orig_bwd)

steps, rounds = int(sys.argv[1]), int(sys.argv[2])
posed = load_views("/work/shared/data/nerf_synthetic_lego_100px", 1)
cfg = replace(fit_real_config(None, [], False), steps=steps)
every = parse_holdout("every-5")
rows = []
for r in range(rounds):
    for on in (False, True) if r % 2 == 0 else (True, False):
        patch(on)
        load = os.getloadavg()[0]
        rep = evaluate_holdout(posed.images, posed.cameras, every, cfg, "cpu", with_lpips=False)
        m = rep.metrics
        row = dict(round=r, one_thread_small=on, cpu_s=round(m["fit_cpu_seconds"], 2), wall_s=round(m["fit_seconds"], 2),
                   psnr=round(m["psnr"], 3), gaussians=m["n_gaussians"], load=round(load, 2))
        rows.append(row); print(row, flush=True)
patch(False)
json.dump(rows, open(sys.argv[3], "w"), indent=1)
