"""Multiview-consistency protocols (design.md §6) on top of the image metrics in ``mvgen.metrics``.

- held-out: fit on the views not held out, render the held-out cameras, score them against their views
  (``every-K`` holds out views ``K-1, 2K-1, ...``; ``every-2`` = fit even, score odd).
- cross-render (MVGBench style): fit the even and the odd views separately, render both fits at novel cameras
  and score one against the other (no ground truth needed; inconsistent views give disagreeing fits).
Per-view error heatmaps show where a view disagrees with the reconstruction.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mvgen.cameras import Cameras
from mvgen.metrics import get_lpips, psnr, ssim
from reconstruction.fit import FitConfig, FitError, FitResult, composite, fit
from reconstruction.gaussians import render


def parse_holdout(text: str | int | None) -> int:
    """"every-K" -> K (>= 2); "none" / None / 0 -> 0 (no hold-out)."""
    if text is None or text == 0 or (isinstance(text, str) and text.strip().lower() in ("none", "0", "")):
        return 0
    if isinstance(text, int):
        k = text
    else:
        m = re.fullmatch(r"\s*every-(\d+)\s*", text)
        if not m:
            raise ValueError(f"holdout must look like 'every-K' (K >= 2) or 'none', got {text!r}")
        k = int(m.group(1))
    if k < 2:
        raise ValueError(f"holdout every-K needs K >= 2, got {k}")
    return k


def holdout_split(num_views: int, every: int) -> tuple[list[int], list[int]]:
    """(fit indices, held-out indices). Raises ValueError when either side would be empty."""
    if num_views < 2:
        raise ValueError(f"need at least 2 views to reconstruct, got {num_views}")
    if every == 0:
        return list(range(num_views)), []
    held = [i for i in range(num_views) if i % every == every - 1]
    train = [i for i in range(num_views) if i % every != every - 1]
    if not held:
        raise ValueError(f"holdout every-{every} holds out nothing from {num_views} views; use a smaller K")
    if not train:
        raise ValueError(f"holdout every-{every} leaves no view to fit")
    return train, held


def score(pred: Tensor, target: Tensor, with_lpips: bool = True) -> dict:
    """Per-view and mean PSNR / SSIM / LPIPS of pred vs target, both [V,3,H,W] in [0,1]."""
    p = psnr(pred, target).clamp(max=100.0)  # identical images would give inf; 100 dB keeps JSON finite
    s = ssim(pred, target)
    out = {"psnr": float(p.mean()), "ssim": float(s.mean()), "psnr_per_view": p.tolist(),
           "ssim_per_view": s.tolist()}
    if with_lpips:
        lp = get_lpips()
        values = torch.cat([lp(pred[i:i + 8], target[i:i + 8]) for i in range(0, len(pred), 8)])
        out.update(lpips=float(values.mean()), lpips_per_view=values.tolist(), lpips_impl=lp.impl)
    return out


def error_heatmap(pred: Tensor, target: Tensor, vmax: float = 0.5) -> np.ndarray:
    """uint8 [H, 3W, 3] strip: target | prediction | per-pixel mean absolute error (inferno, 0..vmax); from CPU
    copies of [3,H,W] images on any device."""
    from matplotlib import colormaps

    pred, target = pred.detach().cpu(), target.detach().cpu()
    err = (pred - target).abs().mean(dim=0).clamp(0, vmax) / vmax  # (H, W)
    heat = colormaps["inferno"](err.numpy())[..., :3]
    strip = np.concatenate([target.permute(1, 2, 0).numpy(), pred.permute(1, 2, 0).numpy(), heat], axis=1)
    return (np.clip(strip, 0, 1) * 255 + 0.5).astype(np.uint8)


@dataclass
class HoldoutReport:
    fit: FitResult
    train_ids: list
    heldout_ids: list
    metrics: dict  # score() of the held-out views (or the fitted views when nothing is held out), plus extras
    renders: Tensor  # [len(scored),3,H,W] renders of the scored views
    targets: Tensor  # [len(scored),3,H,W]


def evaluate_holdout(images: Tensor, cameras: Cameras, every: int, config: FitConfig | None = None,
                     backend: str = "auto", progress=None, with_lpips: bool = True,
                     profile: bool = False) -> HoldoutReport:
    """Fit on the non-held-out views, score the held-out ones (or the fitted ones if ``every`` is 0);
    ``profile``: the fit's stage times in ``report.fit.profile``."""
    config = config or FitConfig()
    t0 = time.perf_counter()
    train, held = holdout_split(images.shape[0], every)
    result = fit(images[train], cameras[train], config, backend=backend, progress=progress, profile=profile)
    scored = held or train
    pred, _ = render(result.gaussians, cameras[scored], config.background, backend)
    target = composite(images[scored], config.background)
    metrics = score(pred, target, with_lpips)
    train_pred, _ = render(result.gaussians, cameras[train], config.background, backend)
    train_psnr = psnr(train_pred, composite(images[train], config.background)).clamp(max=100.0)
    metrics.update(protocol=f"holdout every-{every}" if every else "fitted views (no hold-out)",
                   views=scored, fit_views=train, train_psnr=float(train_psnr.mean()),
                   n_gaussians=len(result.gaussians), fit_steps=result.steps, fit_seconds=result.seconds,
                   fit_cpu_seconds=result.cpu_seconds,
                   seconds=time.perf_counter() - t0)
    return HoldoutReport(result, train, held, metrics, pred, target)


def cross_render(images: Tensor, cameras: Cameras, novel: Cameras, config: FitConfig | None = None,
                 backend: str = "auto", with_lpips: bool = True) -> dict:
    """MVGBench-style consistency: fit even and odd views separately, render both at ``novel`` cameras and
    score the even fit's renders against the odd fit's."""
    config = config or FitConfig()
    if images.shape[0] < 4:
        raise FitError(f"cross-render needs at least 4 views (2 per half), got {images.shape[0]}")
    t0 = time.perf_counter()
    fits = [fit(images[half], cameras[half], config, backend=backend)
            for half in (list(range(0, images.shape[0], 2)), list(range(1, images.shape[0], 2)))]
    renders = [render(f.gaussians, novel, config.background, backend)[0] for f in fits]
    out = score(renders[0], renders[1], with_lpips)
    out.update(protocol="cross-render even vs odd", n_gaussians=[len(f.gaussians) for f in fits],
               seconds=time.perf_counter() - t0)
    return out
