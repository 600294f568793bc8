"""Training-step time of the shipped size, proxy vs full, in one process (not a test; issue 17 item 4).

    OMP_NUM_THREADS=1 python tests/models/bench_proxy_step.py --rounds 6 --steps 2 [--compile] [--profile /tmp/prof]

Variants: ``proxy_before`` (the PT-DiT block before the overhead cuts, ``proxy_reference.reference_forward``),
``proxy`` (the current block) and ``full``. One step = forward + backward of the "tiny" preset (8 layers, width
256) on batch 8 × 8 views × 16² latents (8 in-channels, 8×8 tokens per view), 12 prompt tokens, bf16 autocast
(``--precision auto``: where the CPU has native bf16, else fp32; ``bf16`` / ``fp32`` force one), ``--threads``
torch threads (default 1; run with OMP_NUM_THREADS set to the same number). The variants alternate ``--rounds``
times (``--steps`` steps each); the medians of wall time and of this process's CPU time (robust to other
processes on a shared machine) and the proxy/full ratios are printed.
``--compile`` compiles every variant's blocks (``compile_blocks``, as training's ``compile: true``; the warm-up
step compiles). ``--profile PREFIX`` first writes a torch.profiler table of one step per variant to
PREFIX_<variant>.txt.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy_reference import reference_forward  # noqa: E402

from mvgen.models import PTDiTTransformer3DModel  # noqa: E402


def build(variant: str) -> PTDiTTransformer3DModel:
    """The tiny preset with its zero-initialised layers opened (as after training), seed 0."""
    torch.manual_seed(0)
    model = PTDiTTransformer3DModel.from_preset("tiny", attention_type=variant.replace("_before", ""),
                                                in_channels=8, sample_size=16).train()
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(std=0.02)
    if variant == "proxy_before":
        for block in model.transformer_blocks:
            block.forward = types.MethodType(reference_forward, block)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--profile", default="")
    ap.add_argument("--variants", default="proxy_before,proxy,full")
    ap.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--compile", action="store_true", help="compile the blocks of every variant")
    args = ap.parse_args()
    from mvgen.device import cpu_has_fast_bf16

    bf16 = args.precision == "bf16" or (args.precision == "auto" and cpu_has_fast_bf16())
    print("precision", "bf16 autocast" if bf16 else "fp32")
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(1)
    inputs = dict(hidden_states=torch.randn(8, 8, 8, 16, 16, generator=g),
                  timestep=torch.rand(8, generator=g) * 1000,
                  encoder_hidden_states=torch.randn(8, 12, 384, generator=g),
                  plucker=torch.randn(8, 8, 6, 16, 16, generator=g))
    models = {v: build(v) for v in args.variants.split(",")}
    if args.compile:
        for model in models.values():
            model.compile_blocks()
    print("blocks", "compiled" if args.compile else "eager")

    def step(model):
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            out = model(**inputs).sample
        out.float().square().mean().backward()
        model.zero_grad(set_to_none=True)

    for model in models.values():
        step(model)  # warm-up (compiles with --compile)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile
        for v, model in models.items():
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                step(model)
            Path(f"{args.profile}_{v}.txt").write_text(
                prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    print("load before", os.getloadavg())
    wall = {v: [] for v in models}
    cpu = {v: [] for v in models}
    for _ in range(args.rounds):
        for v, model in models.items():
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                step(model)
            cpu[v].append((time.process_time() - c0) / args.steps)
            wall[v].append((time.perf_counter() - t0) / args.steps)
    print("load after", os.getloadavg())
    for label, times in (("wall", wall), ("cpu", cpu)):
        med = {v: statistics.median(ts) for v, ts in times.items()}
        for v in models:
            print(f"{label} {v}: median {med[v] * 1000:.0f} ms/step  all {[round(t * 1000) for t in times[v]]}")
        for v in models:
            if v != "full" and "full" in med:
                ratios = [p / f for p, f in zip(times[v], times["full"])]
                print(f"{label} {v}/full: ratio of medians {med[v] / med['full']:.3f}; per-round "
                      f"{[round(r, 3) for r in ratios]}; median per-round {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
