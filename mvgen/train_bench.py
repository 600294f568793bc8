"""`mvgen bench train`: PT-DiT (`proxy`) vs full 3D attention (`full`) trained for the same steps on the same
data and scored the same way — our small-scale check of the paper's claim that PT-DiT matches full attention
at a fraction of the cost. Prints a Markdown table; writes loss curves (CSV per run + one PNG) and JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def run_ablation(base_config: str, out: Path, steps: int, variants: list[str], eval_limit: int, eval_steps: int,
                 seed: int = 0, mediator_schedules: tuple[str, ...] = (), json_path: Path | None = None,
                 **overrides) -> list[dict]:
    """Train each variant (resuming a run folder that exists), score it on held-out captions; for ``mediator`` also
    one row per sampling schedule in ``mediator_schedules`` (same model, captions and seeds; see
    ``PTDiTTransformer3DModel.set_mediator_schedule``). Runs keep the config's ``save_every`` (at most ``steps``),
    so a long ablation stopped mid-run resumes from its last checkpoint; ``json_path`` gets the rows so far after
    every variant, so a stopped ablation keeps the variants it finished. ``run_s`` and ``s_per_step`` come from the
    run's loss log, whose clock sums the training time of every session that resumed it."""
    from mvgen.data.captions import example_captions
    from mvgen.evaluate import evaluate_generation
    from mvgen.pipeline import PTDiTMultiViewPipeline
    from mvgen.train import TrainConfig, train
    from mvgen.trainutil import load_config, read_log

    rows = []
    base = load_config(TrainConfig, base_config, **overrides)
    shared = Path(base.out) / "latent_cache.safetensors"  # the base run's cache holds the same data, VAE, resolution
    for variant in variants:
        cfg = load_config(TrainConfig, base_config, **overrides)
        cfg.model = {**cfg.model, "attention_type": variant}
        cfg.out = str(out / variant)
        _share_latent_cache(shared, out / variant)
        cfg.steps, cfg.sample_every, cfg.seed = steps, 0, seed
        cfg.save_every = min(cfg.save_every, steps)
        final = train(cfg, resume=(out / variant).exists())
        log = read_log(out / variant / "loss.csv")
        tail = [float(r["loss"]) for r in log[-max(1, len(log) // 10):]]
        pipe = PTDiTMultiViewPipeline.from_pretrained(final)
        pipe.set_progress_bar_config(disable=True)
        shared = out / variant / "latent_cache.safetensors"
        row = {"attention_type": variant, "steps": steps, "params": sum(p.numel() for p in pipe.transformer.parameters()),
               "s_per_step": float(log[-1]["time"]) / int(log[-1]["step"]),
               "run_s": float(log[-1]["time"]), "final_loss": sum(tail) / len(tail), "mediator_schedule": None}
        schedules = [None] + (list(mediator_schedules) if variant == "mediator" else [])
        _warm_up(pipe)  # one-time costs of a first call (thread pools, allocations) must not land on one row
        for schedule in schedules:
            if variant == "mediator":
                pipe.transformer.set_mediator_schedule(schedule)
            rep = evaluate_generation(pipe, example_captions("heldout", eval_limit, seed=seed), steps=eval_steps,
                                      seed=seed)
            label = str(schedule) if schedule is not None else (f"{max(pipe.transformer.config.mediator_counts)}"
                                                           if variant == "mediator" else None)
            rows.append({**row, "mediator_schedule": label, "psnr": rep["psnr"], "ssim": rep["ssim"],
                         "lpips": rep["lpips"], "lpips_impl": rep["lpips_impl"],
                         "retrieval_top1": rep["retrieval_top1"], "sample_s_per_prompt": rep["seconds_per_prompt"],
                         "sample_s_per_prompt_median": rep["seconds_per_prompt_median"]})
        if json_path is not None:
            Path(json_path).write_text(json.dumps(rows, indent=2))
    _plot(out, variants)
    return rows


def _warm_up(pipe) -> None:
    """One short untimed sample (2 steps, 4 views) before the timed evaluation rows."""
    import torch

    from mvgen.cameras import orbit

    size = pipe.image_size
    pipe("a red mug", cameras=orbit(4, width=size), num_inference_steps=2, output_type="latent",
         generator=torch.Generator().manual_seed(0))


def _share_latent_cache(src: Path, run: Path) -> None:
    """Hard-link (or copy) an existing latent cache into a new run folder, so every variant trains on identical
    latents and the VAE encodes the dataset once."""
    import os
    import shutil

    dst = run / "latent_cache.safetensors"
    if dst.exists() or not src.is_file():
        return
    run.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _plot(out: Path, variants: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mvgen.trainutil import read_log

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for v in variants:
        rows = read_log(out / v / "loss.csv")
        steps = [int(r["step"]) for r in rows]
        vals = [float(r["loss"]) for r in rows]
        k = max(1, len(vals) // 20)
        ax.plot(steps, [sum(vals[max(0, i - k):i + 1]) / len(vals[max(0, i - k):i + 1]) for i in range(len(vals))], label=v)
    ax.set_xlabel("step")
    ax.set_ylabel("flow-matching loss (moving mean)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "loss_curves.png")
    plt.close(fig)


def register(sub) -> None:
    p = sub.add_parser("train", help="ablation: proxy vs full attention trained the same way",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", default="configs/train_tiny.yaml", help="base training config (data, vae, model)")
    p.add_argument("--out", default="runs/ablation", help="one run folder per variant, plus loss_curves.png")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--variants", nargs="+", default=["proxy", "full"], choices=["proxy", "full", "spatial_temporal", "mediator", "pswa"])
    p.add_argument("--eval-limit", type=int, default=12, help="held-out captions scored per variant")
    p.add_argument("--eval-steps", type=int, default=20, help="sampling steps for the evaluation")
    p.add_argument("--mediator-schedules", nargs="*", default=[], metavar="SCHEDULE",
                   help="extra evaluation rows of the mediator model, one per sampling schedule: a count n, 'even' "
                        "or 't:n,...,0:n' (e.g. 700:4,0:16); the first mediator row uses the largest trained count")
    p.add_argument("--json", help="write the rows here")
    p.set_defaults(func=_run)


def _run(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.mediator_schedules and "mediator" not in args.variants:
        raise ValueError("--mediator-schedules needs 'mediator' among --variants")
    if args.mediator_schedules:  # refuse a bad schedule before hours of training
        from mvgen.models.mediator import parse_mediator_schedule
        from mvgen.models.ptdit import PTDiTTransformer3DModel
        from mvgen.train import TrainConfig
        from mvgen.trainutil import load_config

        cfg = load_config(TrainConfig, args.config)
        counts = cfg.model.get("mediator_counts") or PTDiTTransformer3DModel.from_preset(cfg.preset).config.mediator_counts
        for s in args.mediator_schedules:
            parse_mediator_schedule(int(s) if s.isdigit() else s, counts)
    rows = run_ablation(args.config, out, args.steps, args.variants, args.eval_limit, args.eval_steps,
                        mediator_schedules=tuple(int(s) if s.isdigit() else s for s in args.mediator_schedules),
                        json_path=Path(args.json) if args.json else None)
    print(f"| attention | mediators | params | steps | s/step | final loss | PSNR dB | SSIM | LPIPS ({rows[0]['lpips_impl']}) "
          f"| retrieval top-1 | sample s/prompt (median) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['attention_type']} | {r['mediator_schedule'] or '-'} | {r['params'] / 1e6:.1f}M | {r['steps']} | {r['s_per_step']:.2f} | "
              f"{r['final_loss']:.4f} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['lpips']:.3f} | "
              f"{100 * r['retrieval_top1']:.0f}% | {r['sample_s_per_prompt']:.2f} ({r['sample_s_per_prompt_median']:.2f}) |")
    print(f"loss curves: {out / 'loss_curves.png'}")
    return 0
