"""The 3D asset from posed views, and its consistency score (design.md §1, §6).

Two things come out of one fit:

- the consistency score keeps the held-out protocol: fit the views that are not held out (the even ones),
  render and score the held-out (odd) ones the fit never saw;
- the asset users download has seen every view: the scoring fit is continued for ``asset_steps`` more steps
  on all views (a warm start, so the asset costs a fraction of a second fit from scratch).

``asset_steps = 0`` keeps the old behaviour (the asset is the scoring fit, fitted on half of the views).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

ASSET_VIEWS = ("all", "fitted")


@dataclass
class AssetFit:
    """``report``: ``reconstruction.protocols.HoldoutReport`` of the scoring fit; ``gaussians``: the asset;
    ``asset_views``: indices of the views the asset has seen; ``asset_steps`` / ``asset_seconds``: the cost of
    continuing on all views (0 when the asset is the scoring fit)."""

    report: object
    gaussians: object
    asset_views: list
    asset_steps: int
    asset_seconds: float


def continuation_config(config, steps: int):
    """The scoring fit's config, changed for a short warm-started continuation: ``steps`` steps, densification
    from the start (new views can show what the fit lacks), position learning rate starting where a full fit's
    schedule is a third of the way down."""
    ratio = config.lr_means_final_ratio
    return replace(config, steps=steps, refine_start=0, lr_means=config.lr_means * ratio ** (1 / 3),
                   lr_means_final_ratio=ratio ** (2 / 3), early_stop_tol=0.0)


def fit_asset(images, cameras, every: int, config, asset_steps: int, backend: str = "auto", progress=None,
              with_lpips: bool = True) -> AssetFit:
    """Score (fit on the non-held-out views, score the held-out ones), then continue on every view.

    Args: images [V,4,H,W] RGBA in [0,1]; cameras: ``mvgen.cameras.Cameras``; every: hold out every K-th view
    (0: none, the asset is the fit of all views); config: ``reconstruction.fit.FitConfig``; asset_steps: steps
    of the continuation on all views (0: none); progress(step, total, stats) over both phases.
    """
    from reconstruction.fit import fit, scheduled
    from reconstruction.protocols import evaluate_holdout, holdout_split

    if not isinstance(asset_steps, int) or asset_steps < 0:
        raise ValueError(f"asset_steps must be a non-negative integer, got {asset_steps!r}")
    extra = asset_steps if every else 0
    train, _ = holdout_split(images.shape[0], every)
    config = scheduled(config, len(train), images.shape[2], images.shape[3])  # steps 0: from the fitted views
    total = config.steps + extra

    def first(step, _total, stats):
        if progress is not None:
            progress(step, total, stats)

    report = evaluate_holdout(images, cameras, every, config, backend, first, with_lpips=with_lpips)
    if extra == 0:
        return AssetFit(report, report.fit.gaussians, list(report.train_ids), 0, 0.0)
    done = report.fit.steps

    def second(step, _total, stats):
        if progress is not None:
            progress(min(total, done + step), total, stats)

    t0 = time.perf_counter()
    cont = fit(images, cameras, continuation_config(config, extra), backend, second, start=report.fit.gaussians)
    return AssetFit(report, cont.gaussians, list(range(images.shape[0])), cont.steps, time.perf_counter() - t0)
