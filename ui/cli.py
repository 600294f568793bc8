"""`mvgen app` (the Gradio app) and `mvgen run` (every stage, headless; one prompt or a batch file). Registered as
entry points; heavy imports (gradio, torch) happen inside the commands so `mvgen --help` stays fast."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ui.run import RunResult


def register_app(subparsers) -> None:
    p = subparsers.add_parser("app", help="launch the Gradio app (text to 3D, evaluate your own views)",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0 to serve the network)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--model", help="pipeline folder (default: the shipped assets/mvgen-tiny, or MVGEN_MODEL)")
    p.add_argument("--config", help="app defaults and limits (default: configs/app.yaml)")
    p.add_argument("--workdir", help="folder for session outputs (default: a temporary folder removed at exit)")
    p.add_argument("--no-preload", action="store_true",
                   help="load the model on the first request, not when a browser opens the page")
    p.set_defaults(func=run_app)


def run_app(args) -> int:
    from ui.settings import DEFAULT_CONFIG, AppConfig, check_listen_address

    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    check_listen_address(args.host, args.port)  # before the app is built: Gradio would say "Cannot find empty port"
    cfg = AppConfig.from_yaml(args.config or DEFAULT_CONFIG)
    from ui.app import build_app, launch_app

    demo = build_app(args.model, cfg, args.workdir, preload=not args.no_preload)
    problem = demo.mvgen.handlers.model_status()
    if problem:
        print(f"warning: {problem}; the app runs, generation is disabled until the model exists", file=sys.stderr)
    # SIGTERM (systemd, docker stop, timeout) exits like Ctrl-C, so the temporary app folder is removed at exit.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    launch_app(demo, args.host, args.port, prevent_thread_lock=True)
    demo.block_thread()
    return 0


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def register_run(subparsers) -> None:
    p = subparsers.add_parser("run", help="prompt -> views -> .ply/.splat/.glb/.mp4 + metrics.json, headless",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("prompt", nargs="?", help='e.g. "a blue vase" (or use --prompts FILE)')
    p.add_argument("--prompts", help="batch: a text file with one prompt a line (# comments); one folder each")
    p.add_argument("--out", required=True, help="output folder (replaced only if it is an earlier `mvgen run` output)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out even if it is not an earlier output (only once this run has succeeded)")
    p.add_argument("--views", type=int, help="orbit views, 2-32 (default: configs/app.yaml)")
    p.add_argument("--elevation", type=float, help="camera elevation in degrees")
    p.add_argument("--steps", type=int, help="denoising steps")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--recon-steps", type=int, help="reconstruction (fitting) steps")
    p.add_argument("--views-only", action="store_true", help="stop after the views (no 3D stages)")
    p.add_argument("--backend", choices=["auto", "cpu", "gsplat", "torch"], help="rasterizer backend")
    p.add_argument("--video-frames", type=int, help="frames of the orbit video")
    p.add_argument("--model", help="pipeline folder (default: the shipped assets/mvgen-tiny, or MVGEN_MODEL)")
    p.add_argument("--config", help="defaults (default: configs/app.yaml)")
    p.set_defaults(func=run_run)


# ----------------------------------------------------------------------------------------- `mvgen run`

def read_prompts(path: str | os.PathLike) -> list[str]:
    """Prompts of a batch file: one a line; blank lines and lines starting with '#' are skipped."""
    from ui.settings import check_prompt

    try:
        lines = Path(path).read_text().splitlines()
    except (FileNotFoundError, UnicodeDecodeError) as e:
        raise ValueError(f"--prompts {path}: cannot read ({e})") from None
    prompts = [check_prompt(line) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise ValueError(f"--prompts {path}: no prompts in the file")
    return prompts


def slug(prompt: str, limit: int = 40) -> str:
    """Folder-name form of a prompt: "a red mug" -> "a_red_mug"."""
    return re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")[:limit] or "prompt"


def run_run(args) -> int:
    """`mvgen run "prompt" --out DIR` or `mvgen run --prompts FILE --out DIR` (one sub-folder per prompt)."""
    import torch
    from tqdm import tqdm

    from mvgen.fileio import build_output_dir, prepare_output_dir
    from mvgen.generate import default_model_path, vocabulary_warning
    from ui.run import load_model, model_problem, run_prompt, summary_line
    from ui.settings import DEFAULT_CONFIG, AppConfig, check_prompt, check_run_settings

    if (args.prompt is None) == (args.prompts is None):
        raise ValueError("give either a prompt or --prompts FILE (not both)")
    prompts = [check_prompt(args.prompt)] if args.prompt is not None else read_prompts(args.prompts)
    cfg = AppConfig.from_yaml(args.config or DEFAULT_CONFIG, views_min=2, views_max=32,
                              recon_steps_max=20000, steps_max=1000)
    settings = check_run_settings(cfg, *(v if v is not None else getattr(cfg, k) for k, v in (
        ("views", args.views), ("elevation", args.elevation), ("steps", args.steps), ("guidance", args.guidance),
        ("seed", args.seed), ("recon_steps", args.recon_steps))))
    cfg = cfg.with_overrides(backend=args.backend, video_frames=args.video_frames)
    if not args.views_only:
        cfg.fit_config(settings["recon_steps"])  # a broken preset fails before the model loads
    out = prepare_output_dir(args.out, "run", args.overwrite)  # refuse before the model loads
    model_path = Path(args.model) if args.model else default_model_path()
    problem = model_problem(model_path)
    if problem:
        raise ValueError(problem)
    pipe, model_path = load_model(model_path)
    torch.manual_seed(settings["seed"])

    single = args.prompt is not None
    rows, failed = [], 0
    with contextlib.ExitStack() as stack:  # a batch is built in one temp folder, renamed over --out at the end
        tmp_batch = None if single else stack.enter_context(build_output_dir(out, "run", args.overwrite))
        for n, prompt in enumerate(prompts):
            warn = vocabulary_warning(prompt, model_path)
            if warn:
                print(f"warning: {warn}", file=sys.stderr)
            target = out if single else tmp_batch / f"{n:03d}_{slug(prompt)}"
            with tqdm(total=1000, desc=prompt[:30], unit="‰", bar_format="{l_bar}{bar}| {postfix}") as bar:
                def sink(frac, desc, bar=bar):
                    bar.update(int(frac * 1000) - bar.n)
                    bar.set_postfix_str(desc)

                try:
                    result = run_prompt(pipe, prompt, target, cfg, settings, model_path, args.views_only, sink,
                                        overwrite=args.overwrite)
                except ValueError as e:
                    if single:
                        raise
                    failed += 1
                    rows.append({"prompt": prompt, "error": str(e)})
                    continue
            rows.append(_summary_row(prompt, result, out if single else out / target.name))
            if single:
                print(summary_line(result))
                print(f"wrote {out}: {', '.join(sorted(p.name for p in result.files.values()))}")
        if not single:
            (tmp_batch / "summary.json").write_text(json.dumps(rows, indent=2))
    if not single:
        print(summary_table(rows))
        print(f"wrote {out} ({len(prompts) - failed}/{len(prompts)} prompts, summary.json)")
    return 1 if failed else 0


def _summary_row(prompt: str, result: "RunResult", folder: Path) -> dict:
    m = result.metrics or {}
    return {"prompt": prompt, "folder": str(folder), "views": len(result.views), "psnr": m.get("psnr"),
            "ssim": m.get("ssim"), "lpips": m.get("lpips"), "lpips_impl": m.get("lpips_impl"),
            "gaussians": m.get("n_gaussians"), "seconds": result.seconds}


def summary_table(rows: list[dict]) -> str:
    """Markdown table of a batch: one row per prompt (errors included)."""
    fmt = lambda v, spec: "–" if v is None else format(v, spec)  # noqa: E731
    impls = sorted({r["lpips_impl"] for r in rows if r.get("lpips_impl")})
    lines = [f"| prompt | views | PSNR dB | SSIM | LPIPS{' (' + ', '.join(impls) + ')' if impls else ''} "
             f"| Gaussians | seconds | folder |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['prompt']} | error: {r['error']} | | | | | | |")
            continue
        lines.append(f"| {r['prompt']} | {r['views']} | {fmt(r['psnr'], '.2f')} | {fmt(r['ssim'], '.4f')} | "
                     f"{fmt(r['lpips'], '.4f')} | {fmt(r['gaussians'], 'd')} | {r['seconds']['total']:.1f} | "
                     f"{Path(r['folder']).name} |")
    return "\n".join(lines)
