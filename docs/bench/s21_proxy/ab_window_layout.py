"""A/B of the window attention's q/k/v layout (issue 17, session 21): old = three strided views of the qkv projection
(each copied by the batched matmuls, kᵀ too), new = one re-layout (mvgen/models/attention.py), full attention beside.
The tiny preset, one forward+backward of batch 8 × 8 views × 8² tokens, fp32, one thread, rounds alternating.

    OMP_NUM_THREADS=1 python docs/bench/s21_proxy/ab_window_layout.py 10 docs/bench/s21_proxy/ab_window_layout.json
"""
import statistics, sys, time, os, torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3] / "tests" / "models"))
from bench_proxy_step import build
from mvgen.models import attention as A

def old_window_heads(self, x, P, mask):
    B, L, _ = x.shape
    nW, H, E = L // P, self.heads, self.head_dim
    qkv = self.to_qkv(x).view(B, nW, P, 3, H, E)
    q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)
    out = A.attend(q, k, v, mask)
    return out.view(B, nW, H, P, E).transpose(2, 3).reshape(B, L, H * E)

new_window_heads = A.Attention._window_heads
torch.set_num_threads(1)
g = torch.Generator().manual_seed(1)
inputs = dict(hidden_states=torch.randn(8, 8, 8, 16, 16, generator=g), timestep=torch.rand(8, generator=g) * 1000,
              encoder_hidden_states=torch.randn(8, 12, 384, generator=g), plucker=torch.randn(8, 8, 6, 16, 16, generator=g))
proxy, full = build("proxy"), build("full")
def step(model):
    out = model(**inputs).sample
    out.float().square().mean().backward()
    model.zero_grad(set_to_none=True)
variants = {"old": (proxy, old_window_heads), "new": (proxy, new_window_heads), "full": (full, None)}
# equal outputs
A.Attention._window_heads = old_window_heads; o1 = proxy(**inputs).sample
A.Attention._window_heads = new_window_heads; o2 = proxy(**inputs).sample
print("max |new - old|", (o1 - o2).abs().max().item())
for v, (m, f) in variants.items():
    if f: A.Attention._window_heads = f
    step(m)
times = {v: [] for v in variants}
load0 = os.getloadavg(); print("load before", load0)
for r in range(int(sys.argv[1])):
    for v, (m, f) in variants.items():
        if f: A.Attention._window_heads = f
        c0 = time.thread_time()
        for _ in range(2): step(m)
        times[v].append((time.thread_time() - c0) / 2)
print("load after", os.getloadavg())
for v in variants: print(v, "median", round(statistics.median(times[v]) * 1000), [round(t * 1000) for t in times[v]])
for v in ("old", "new"):
    rr = [a / b for a, b in zip(times[v], times["full"])]
    print(f"{v}/full ratio of medians {statistics.median(times[v]) / statistics.median(times['full']):.3f} median per-round {statistics.median(rr):.3f}")
rr = [a / b for a, b in zip(times["new"], times["old"])]
print(f"new/old median per-round {statistics.median(rr):.3f}")
import json
json.dump({"ms_per_step_thread_cpu": {v: [round(t * 1000, 1) for t in ts] for v, ts in times.items()}, "load": [load0, os.getloadavg()], "new_old_median_per_round": statistics.median(rr)}, open(sys.argv[2], "w"), indent=1)
