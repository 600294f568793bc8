"""The asset sees every view: the scoring fit keeps its protocol, its continuation on all views is the asset;
fits continue from given Gaussians; 3D-consistent sampling's steer fits and renders the predicted views."""

import pytest
import torch

from mvgen.asset import continuation_config, fit_asset
from mvgen.metrics import psnr
from reconstruction.fit import FitConfig, FitError, composite, fit
from reconstruction.gaussians import render

TINY = dict(steps=80, init_points=600, refine_start=30, refine_every=30, sh_every=40, early_stop_tol=0.0)


def test_fit_continues_from_given_gaussians(blob_views):
    images, cams = blob_views
    cfg = FitConfig(**TINY)
    first = fit(images, cams, cfg, backend="cpu")
    more = fit(images, cams, continuation_config(cfg, 40), backend="cpu", start=first.gaussians)
    scratch = fit(images, cams, FitConfig(**{**TINY, "steps": 40}), backend="cpu")
    assert more.steps == 40 and more.losses[0] < 0.5 * scratch.losses[0]  # starts where the first fit ended
    assert sum(more.losses[-10:]) < sum(scratch.losses[-10:])
    assert not torch.equal(more.gaussians.means, first.gaussians.means[: len(more.gaussians)])
    assert torch.equal(first.gaussians.means, fit(images, cams, cfg, backend="cpu").gaussians.means)  # untouched
    with pytest.raises(FitError, match="SH degree"):
        fit(images, cams, FitConfig(**{**TINY, "sh_degree": 0}), backend="cpu", start=first.gaussians)


def test_asset_sees_every_view_while_the_score_keeps_its_protocol(blob_views):
    images, cams = blob_views
    cfg = FitConfig(**TINY)
    calls = []
    a = fit_asset(images, cams, 2, cfg, 40, "cpu", lambda s, n, st: calls.append((s, n)), with_lpips=False)
    half = fit_asset(images, cams, 2, cfg, 0, "cpu", with_lpips=False)
    assert a.report.train_ids == [0, 2, 4, 6] and a.report.heldout_ids == [1, 3, 5, 7]
    assert a.asset_views == list(range(8)) and a.asset_steps == 40 and half.asset_views == [0, 2, 4, 6]
    assert half.gaussians is half.report.fit.gaussians and half.asset_steps == 0
    assert a.report.metrics["psnr"] == pytest.approx(half.report.metrics["psnr"])  # same scoring fit
    assert calls[-1] == (120, 120) and [s for s, _ in calls] == sorted(s for s, _ in calls)
    odd = composite(images[1::2], cfg.background)

    def odd_psnr(g):
        return float(psnr(render(g, cams[[1, 3, 5, 7]], cfg.background, "cpu")[0], odd).mean())

    assert odd_psnr(a.gaussians) > odd_psnr(half.gaussians) + 1.0  # the asset learned the odd views too
    with pytest.raises(ValueError, match="asset_steps"):
        fit_asset(images, cams, 2, cfg, -1, "cpu", with_lpips=False)


def test_gaussian_steer_fits_the_views_and_warm_starts(blob_views):
    from mvgen.sampling3d import GaussianSteer, SteerSettings

    images, cams = blob_views
    rgb = composite(images, (1.0, 1.0, 1.0))
    steer = GaussianSteer(FitConfig(**TINY), SteerSettings(mode="gaussians", first_steps=60, next_steps=20), "cpu")
    out = steer(rgb, cams)
    assert out.shape == rgb.shape and float(psnr(out, rgb).mean()) > 18
    kept = steer.gaussians
    steer(rgb, cams)
    assert [r["fit_steps"] for r in steer.log] == [60, 20] and steer.gaussians is not kept
    assert steer.log[1]["psnr_render_vs_views"] >= steer.log[0]["psnr_render_vs_views"] - 0.5


@pytest.mark.parametrize("bad, match", [(dict(mode="nerf"), "mode"), (dict(at=(1.5,)), "at"),
                                        (dict(strength=2.0), "strength"), (dict(first_steps=0), "first_steps")])
def test_steer_settings_refuse_bad_values(bad, match):
    from mvgen.sampling3d import SteerSettings

    with pytest.raises(ValueError, match=match):
        SteerSettings(**bad)


def test_steer_step_indices():
    from mvgen.sampling3d import SteerSettings

    assert SteerSettings(mode="gaussians", at=(0.5, 0.65, 0.8)).step_indices(20) == [10, 12, 15]
    assert SteerSettings(mode="gaussians", at=(1.0, 1.0)).step_indices(4) == [3]
    assert SteerSettings(mode="off").step_indices(20) == []
