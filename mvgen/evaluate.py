"""`mvgen evaluate generation`: generated views vs ground-truth renders of the same caption at the same cameras.

Procedural captions have one canonical object each (mvgen.data), so every caption has exact ground truth at
any camera. Each caption gets its own random orbit rig (elevation 0–40°, random start azimuth), seeded, so the
camera conditioning is tested too. Scores: PSNR, SSIM, LPIPS (averaged over views, then captions) and
``retrieval_top1``: the fraction of prompts whose generated views are nearer (LPIPS) to their own caption's
ground truth than to any other caption's ground truth rendered at the same cameras.

``output_size`` twice the native size (a model with a 2x decoder): the ground truth is rendered at that size, the
views are decoded by the 2x decoder, and the same latents' native decode, bicubic-upsampled to that size, is
scored against the same truth (``upsampled_native``: what the 2x decoder has to beat).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from mvgen.limits import DEFAULT_GUIDANCE, DEFAULT_PART_GUIDANCE, PART_GUIDANCE
from mvgen.settings import PRECISIONS


def eval_rig(index: int, views: int, size: int, seed: int):
    """The deterministic camera rig of the ``index``-th evaluated caption."""
    from mvgen.cameras import orbit

    rng = np.random.default_rng([seed, index])
    return orbit(views, elevation=float(rng.uniform(0.0, 40.0)), azimuth_start=float(rng.uniform(0.0, 360.0)), width=size)


def render_truth(caption: str, cameras, mesh=None):
    """[V,3,H,W] float in [0,1] ground-truth views composited on white (``mesh``: the caption's mesh if built)."""
    import torch

    from mvgen.data.captions import parse_caption
    from mvgen.data.objects import build_mesh
    from mvgen.data.render import render_rgba

    mesh = mesh if mesh is not None else build_mesh(parse_caption(caption))
    rgba = torch.from_numpy(render_rgba(mesh, cameras)).float() / 255.0
    rgb = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
    return rgb.permute(0, 3, 1, 2).contiguous()


def retrieval_distances(lpips_fn, gen, meshes: list, captions: list[str], cameras, chunk: int = 8):
    """[J] mean LPIPS of the generated views ``gen`` [V,3,H,W] to each caption's ground truth at ``cameras``,
    ``chunk`` captions per batched LPIPS call."""
    import torch

    out = []
    fgen = lpips_fn.features(gen)  # the generated views' features serve every caption
    for start in range(0, len(captions), chunk):
        part = range(start, min(start + chunk, len(captions)))
        fgt = lpips_fn.features(torch.cat([render_truth(captions[j], cameras, meshes[j]) for j in part]))
        d = lpips_fn.distance([f.repeat(len(part), 1, 1, 1) for f in fgen], fgt)
        out.append(d.view(len(part), gen.shape[0]).mean(dim=1))
    return torch.cat(out)


def evaluate_generation(pipe, captions: list[str], views: int = 8, steps: int = 20, guidance: float = DEFAULT_GUIDANCE,
                        seed: int = 0, out: Path | None = None, progress=None, output_size: int | None = None,
                        part_guidance: float = DEFAULT_PART_GUIDANCE, autocast: bool | None = None) -> dict:
    """Scores of ``captions`` sampled at their seeded rigs (module docstring); ``autocast`` as in
    ``PTDiTMultiViewPipeline.__call__`` (None: the machine's default precision)."""
    import torch

    from mvgen.generate import part_contrast

    from mvgen.checks import check_seed
    from mvgen.metrics import get_lpips

    check_seed(seed)  # seeds every caption's rig (numpy) and generator (torch): 0..2**63-1
    size = pipe.image_size if output_size is None else pipe.check_output_size(output_size)
    lpips_fn = get_lpips()
    lpips_impl = lpips_fn.impl
    rigs = [eval_rig(i, views, size, seed) for i in range(len(captions))]
    rows, gens, t_gen = [], [], 0.0
    for i, (cap, rig) in enumerate(zip(captions, rigs)):
        t0 = time.time()
        sample = dict(cameras=rig, num_inference_steps=steps, guidance_scale=guidance,
                      generator=torch.Generator().manual_seed(seed + i), autocast=autocast,
                      **part_contrast(cap, part_guidance))
        if size == pipe.image_size:
            gen, native = pipe(cap, output_type="pt", **sample).images[0].float(), None
        else:  # one sample, both decoders: the 2x decoder's views and the native decode bicubic-upsampled
            latents = pipe(cap, output_type="latent", **sample).images
            with torch.no_grad():
                gen = pipe.decode_latents(latents, size)[0].float()  # (V, 3, size, size)
                native = upsample(pipe.decode_latents(latents)[0].float(), size)
        dt = time.time() - t0  # generation only (the truth's render and the scoring are not timed)
        t_gen += dt
        gt = render_truth(cap, rig)
        rows.append({"caption": cap, **_scores(lpips_fn, gen, gt), "seconds": dt})
        if native is not None:
            rows[-1]["upsampled_native"] = _scores(lpips_fn, native, gt)
        gens.append(gen)
        if out is not None:
            from mvgen.imageutil import grid, save_png

            save_png(grid([list(gen.permute(0, 2, 3, 1)), list(gt.permute(0, 2, 3, 1))], labels=[cap, "ground truth"]),
                     Path(out) / f"{i:03d}.png")
        if progress:
            progress(i + 1, len(captions))
    # Retrieval: generated views of i vs ground truth of every caption j at rig i (meshes built once).
    from mvgen.data.captions import parse_caption
    from mvgen.data.objects import build_mesh

    meshes = [build_mesh(parse_caption(c)) for c in captions]
    hits = 0
    for i, gen in enumerate(gens):
        j = int(retrieval_distances(lpips_fn, gen, meshes, captions, rigs[i]).argmin())
        rows[i]["retrieved"] = captions[j]
        hits += j == i
    mean = lambda k, rs=rows: float(np.mean([r[k] for r in rs]))  # noqa: E731
    report = {"n": len(captions), "views": views, "image_size": size, "native_size": pipe.image_size,
              "decoder": "vae" if size == pipe.image_size else "decoder_2x", "steps": steps, "guidance": guidance,
              "part_guidance": part_guidance, "precision": precision_name(autocast, _device_type(pipe)), "psnr": mean("psnr"),
              "ssim": mean("ssim"), "lpips": mean("lpips"), "lpips_impl": lpips_impl,
              "retrieval_top1": hits / len(captions), "seconds_per_prompt": t_gen / len(captions),
              "seconds_per_prompt_median": float(np.median([r["seconds"] for r in rows]))}
    if size != pipe.image_size:
        native = [r["upsampled_native"] for r in rows]
        report["upsampled_native"] = {"what": f"the native {pipe.image_size}² decode of the same latents, bicubic "
                                              f"to {size}², vs the same truth",
                                      **{k: mean(k, native) for k in ("psnr", "ssim", "lpips")}}
    report["per_caption"] = rows
    return report


def _device_type(pipe) -> str:
    """"cpu" or "cuda": where ``pipe`` samples (a stand-in without a device samples on the CPU)."""
    return getattr(getattr(pipe, "device", None), "type", "cpu")


def precision_name(autocast: bool | None, device_type: str = "cpu") -> str:
    """What ``autocast`` (None / True / False) samples in on ``device_type`` here: "bf16" or "fp32"."""
    from mvgen.pipeline import sampling_autocast

    use = sampling_autocast(device_type) if autocast is None else bool(autocast)
    return "bf16" if use and device_type in ("cpu", "cuda") else "fp32"


def _scores(lpips_fn, gen, gt) -> dict:
    """Mean PSNR, SSIM and LPIPS of views ``gen`` vs ``gt`` [V,3,H,W] in [0,1]."""
    import torch

    from mvgen.metrics import psnr, ssim

    with torch.no_grad():
        lp = lpips_fn(gen, gt)
    return {"psnr": float(psnr(gen, gt).mean()), "ssim": float(ssim(gen, gt).mean()), "lpips": float(lp.mean())}


def upsample(images, size: int):
    """[V,3,h,w] in [0,1] -> [V,3,size,size], bicubic (clamped to [0,1]): the baseline a 2x decoder must beat."""
    import torch.nn.functional as F

    return F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def add_sampling_arguments(p) -> None:
    """--views --steps --guidance --part-guidance --seed --model --precision: how every `mvgen evaluate ...` samples the
    model."""
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--steps", type=int, default=20, help="denoising steps")
    p.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE)
    p.add_argument("--part-guidance", type=float, default=DEFAULT_PART_GUIDANCE,
                   help="part-colour guidance scale for prompts that name a part colour (0: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", help="pipeline folder (default: the shipped model)")
    p.add_argument("--precision", choices=list(PRECISIONS), default="auto",
                   help="the transformer's sampling precision: auto = bf16 autocast on a CPU with native bf16, fp32 "
                        "elsewhere; fix it to compare runs across machines (recorded in --json)")


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="score generated views against ground truth",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    g = what.add_parser("generation", help="generated views vs ground-truth renders (procedural captions)",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g.add_argument("--split", choices=["heldout", "train"], default="heldout",
                   help="heldout = colour x category pairs never seen in training")
    g.add_argument("--limit", type=int, default=24, help="number of captions")
    add_sampling_arguments(g)
    g.add_argument("--output-size", help="views' size in px: native (default) or twice it with the model's 2x decoder "
                   "(truth rendered at that size; the native decode bicubic-upsampled is scored beside it)")
    g.add_argument("--json", help="write the report here")
    g.add_argument("--grids", help="folder for generated-vs-truth grid PNGs")
    g.set_defaults(func=_run)
    from mvgen.evaluate_asset import add_parser
    from mvgen.evaluate_attributes import add_parsers
    from mvgen.evaluate_views import add_parser as add_views_parser

    add_parser(what)
    add_parsers(what)
    add_views_parser(what)


def _run(args) -> int:
    from tqdm.auto import tqdm

    from mvgen.checks import check_output_size
    from mvgen.data.captions import example_captions
    from mvgen.fileio import check_output_file
    from mvgen.generate import default_model_path, load_pipeline
    from mvgen.job import model_output_sizes

    check_output_size(args.output_size, model_output_sizes(args.model or default_model_path()))  # before loading
    if args.limit < 2:
        raise ValueError("--limit must be at least 2 (retrieval needs more than one caption)")
    PART_GUIDANCE.check_number("--part-guidance", args.part_guidance)
    if args.json:  # output paths are checked before the model loads and the prompts run
        check_output_file(args.json, "--json")
    if args.grids and Path(args.grids).exists() and not Path(args.grids).is_dir():
        raise ValueError(f"--grids {args.grids}: is a file, not a folder")
    pipe, path = load_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    captions = example_captions(args.split, args.limit, seed=args.seed)
    if args.grids:
        Path(args.grids).mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(captions), desc=f"evaluate {args.split}")
    rep = evaluate_generation(pipe, captions, args.views, args.steps, args.guidance, args.seed,
                              Path(args.grids) if args.grids else None, progress=lambda i, n: bar.update(1),
                              output_size=check_output_size(args.output_size, pipe.output_sizes),
                              part_guidance=args.part_guidance, autocast=PRECISIONS[args.precision])
    bar.close()
    rep.update({"split": args.split, "model": str(path)})
    print(f"| split | views (px) | prompts | views | PSNR dB | SSIM | LPIPS ({rep['lpips_impl']}) | retrieval top-1 "
          f"| s/prompt |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.split} | {rep['image_size']}² ({rep['decoder']}) | {rep['n']} | {rep['views']} "
          f"| {rep['psnr']:.2f} | {rep['ssim']:.3f} | {rep['lpips']:.3f} | {100 * rep['retrieval_top1']:.0f}% "
          f"| {rep['seconds_per_prompt']:.1f} |")
    if "upsampled_native" in rep:
        u = rep["upsampled_native"]
        print(f"| {args.split} | {rep['native_size']}² bicubic to {rep['image_size']}² | {rep['n']} | {rep['views']} "
              f"| {u['psnr']:.2f} | {u['ssim']:.3f} | {u['lpips']:.3f} | | |")
    if args.json:
        from mvgen.fileio import atomic_write_text

        atomic_write_text(args.json, json.dumps(rep, indent=2))
    return 0
