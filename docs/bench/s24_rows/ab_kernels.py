"""Issue 20, session 24: the rasterizer kernels with rows outside the ellipse skipped (``_strip_rows``) against the
previous kernels, on the inputs of a real lego fit. A fit of STEPS steps with this code captures the arguments of
every 23rd forward and backward kernel call; then both versions run on every captured call, interleaved call by call
(5 repeats, 2 threads), outputs compared bit for bit, times per call recorded.

    cp <previous reconstruction/raster_cpu.py> /tmp/s24/raster_cpu_before.py
    python docs/bench/s24_rows/ab_kernels.py 2700 docs/bench/s24_rows/ab_kernels.json
"""
import sys, time, importlib.util, pickle, numpy as np, numba
from dataclasses import replace
import yaml
from reconstruction import raster_cpu as rc
spec = importlib.util.spec_from_file_location("raster_old", "/tmp/s24/raster_cpu_before.py")
old = importlib.util.module_from_spec(spec); sys.modules["raster_old"] = old; spec.loader.exec_module(old)

captured = {"fwd": [], "bwd": []}
of, ob = rc._forward, rc._backward
call = [0, 0]
def hf(*a):
    call[0] += 1
    if call[0] % 23 == 0: captured["fwd"].append([x.copy() if isinstance(x, np.ndarray) else x for x in a])
    return of(*a)
def hb(*a):
    call[1] += 1
    if call[1] % 23 == 0: captured["bwd"].append([x.copy() if isinstance(x, np.ndarray) else x for x in a])
    return ob(*a)
rc._forward, rc._backward = hf, hb
from mvgen.cameras import load_views
from reconstruction.fit import FitConfig, fit
from reconstruction.protocols import holdout_split
posed = load_views("../shared/data/nerf_synthetic_lego_100px", 1)
train, held = holdout_split(len(posed.cameras), 5)
cfg = replace(FitConfig(**yaml.safe_load(open("configs/reconstruction.yaml"))["fit"]), steps=int(sys.argv[1]))
fit(posed.images[train], posed.cameras[train], cfg)
rc._forward, rc._backward = of, ob
print("captured", len(captured["fwd"]), len(captured["bwd"]))
def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))
ok = True
for a in captured["fwd"]:
    ok &= same(rc._forward(*a), old._forward(*a))
for a in captured["bwd"]:
    ok &= same(rc._backward(*a), old._backward(*a))
print("bit-equal:", ok)
# timing: alternate old/new over the captured calls from the last half of the fit
for threads in ():  # (per-thread-count timing dropped: the captured schedules are for the fit's threads)
    numba.set_num_threads(threads)
    res = {}
    for name, mod in (("old", old), ("new", rc), ("old", old), ("new", rc)):
        t0 = time.perf_counter(); c0 = time.process_time()
        for a in captured["fwd"][len(captured["fwd"]) // 2:]:
            a = list(a)
            # the schedule (jobs/bounds) was made for the thread count of the fit: remake for this count
            mod._forward(*a)
        tf = time.perf_counter() - t0
        t0 = time.perf_counter()
        for a in captured["bwd"][len(captured["bwd"]) // 2:]:
            mod._backward(*a)
        tb = time.perf_counter() - t0
        res.setdefault(name, []).append((tf, tb))
    n_f = len(captured["fwd"]) - len(captured["fwd"]) // 2; n_b = len(captured["bwd"]) - len(captured["bwd"]) // 2
    for name, v in res.items():
        print(f"threads {threads} {name}: forward {min(x[0] for x in v) / n_f * 1e3:.2f} ms/call, backward {min(x[1] for x in v) / n_b * 1e3:.2f} ms/call")
import statistics
numba.set_num_threads(2)
tf = {"old": [], "new": []}; tb = {"old": [], "new": []}
for rep in range(5):
    for a in captured["fwd"]:
        for name, mod in (("old", old), ("new", rc)):
            t0 = time.perf_counter(); mod._forward(*a); tf[name].append(time.perf_counter() - t0)
    for a in captured["bwd"]:
        for name, mod in (("old", old), ("new", rc)):
            t0 = time.perf_counter(); mod._backward(*a); tb[name].append(time.perf_counter() - t0)
for name in ("old", "new"):
    print(f"interleaved {name}: forward sum of medians... mean {statistics.mean(tf[name])*1e3:.2f} median {statistics.median(tf[name])*1e3:.2f}; backward mean {statistics.mean(tb[name])*1e3:.2f} median {statistics.median(tb[name])*1e3:.2f}")
r = [n / o for n, o in zip(tf["new"], tf["old"])]; print("fwd new/old median ratio", statistics.median(r))
r = [n / o for n, o in zip(tb["new"], tb["old"])]; print("bwd new/old median ratio", statistics.median(r))

if len(sys.argv) > 2:
    import json, os
    with open(sys.argv[2], "w") as f:
        json.dump({"bit_equal": bool(ok), "calls": [len(captured["fwd"]), len(captured["bwd"])], "repeats": 5,
                   "threads": 2, "load": os.getloadavg(),
                   "forward_ms": {k: [round(t * 1e3, 4) for t in v] for k, v in tf.items()},
                   "backward_ms": {k: [round(t * 1e3, 4) for t in v] for k, v in tb.items()},
                   "forward_new_over_old_median": statistics.median([n / o for n, o in zip(tf["new"], tf["old"])]),
                   "backward_new_over_old_median": statistics.median([n / o for n, o in zip(tb["new"], tb["old"])])},
                  f)
