"""Sampling time of the 6,000-step mediator model (runs/ablation_long/mediator) per mediator schedule, the
schedules interleaved round by round on the same prompts, rigs and seeds as `mvgen bench train`'s scoring (the
held-out captions, 8 views, 20 steps, guidance 2), so that load drifts hit every schedule alike. Quality is not
measured here (`bench train` scored each schedule: docs/bench/s23_ablation/bench_train_ablation_long.json).

    python docs/bench/s24_mediator/time_schedules.py runs/ablation_long/mediator/checkpoint-6000/pipeline \
        --prompts 6 --rounds 3 --json docs/bench/s24_mediator/time_schedules.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from mvgen.data.captions import example_captions
from mvgen.evaluate import eval_rig
from mvgen.pipeline import PTDiTMultiViewPipeline

SCHEDULES = ["64", "16", "4", "750:4,0:64", "500:16,0:64", "500:4,0:16"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("pipeline")
    ap.add_argument("--prompts", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    pipe = PTDiTMultiViewPipeline.from_pretrained(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
    captions = example_captions("heldout", args.prompts, seed=0)
    rigs = [eval_rig(i, 8, pipe.image_size, 0) for i in range(len(captions))]

    def sample(i: int) -> float:
        t0 = time.perf_counter()
        pipe(captions[i], cameras=rigs[i], num_inference_steps=20, guidance_scale=2.0,
             generator=torch.Generator().manual_seed(i), output_type="pt")
        return time.perf_counter() - t0

    pipe.transformer.set_mediator_schedule(None)
    sample(0)  # warm-up
    times = {s: [] for s in SCHEDULES}
    load = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for i in range(len(captions)):
            for s in SCHEDULES:
                pipe.transformer.set_mediator_schedule(int(s) if s.isdigit() else s)
                times[s].append(sample(i))
    load.append(os.getloadavg()[0])
    base = statistics.median(times["64"])
    rows = [{"schedule": s, "median_s_per_prompt": statistics.median(t), "mean_s_per_prompt": statistics.mean(t),
             "speed_vs_64": base / statistics.median(t), "samples": len(t)} for s, t in times.items()]
    print("| schedule | s/prompt median (mean) | speed vs n = 64 |\n|---|---|---|")
    for r in rows:
        print(f"| {r['schedule']} | {r['median_s_per_prompt']:.2f} ({r['mean_s_per_prompt']:.2f}) | "
              f"{r['speed_vs_64']:.2f}x |")
    print(f"load average (1 min) at start / end: {load[0]:.2f} / {load[1]:.2f}; torch threads "
          f"{torch.get_num_threads()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "load": load, "threads": torch.get_num_threads()}, f, indent=1)


if __name__ == "__main__":
    main()
