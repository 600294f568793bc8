"""Fitting lowers the loss and beats a trivial baseline on held-out views; inits; config and bad input."""

import math

import pytest
import torch

from mvgen.metrics import psnr
from reconstruction.fit import FitConfig, FitError, composite, fit
from reconstruction.gaussians import render
from reconstruction.init import initial_gaussians, outside_hull, visual_hull_points
from reconstruction.protocols import evaluate_holdout

TINY = dict(steps=120, init_points=800, refine_start=40, refine_every=40, sh_every=60, early_stop_tol=0.0)


def test_short_fit_lowers_loss_and_beats_baseline_on_heldout(blob_views):
    images, cams = blob_views
    calls = []
    report = evaluate_holdout(images, cams, 2, FitConfig(**TINY), backend="cpu", with_lpips=False,
                              progress=lambda s, n, st: calls.append((s, n, st["n_gaussians"])))
    losses = report.fit.losses
    assert len(losses) == 120 and calls[-1][:2] == (120, 120)
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10
    target = composite(images[report.heldout_ids], (1.0, 1.0, 1.0))
    blank = torch.ones_like(target)  # the trivial baseline: background everywhere
    baseline = float(psnr(blank, target).mean())
    assert report.metrics["psnr"] > baseline + 3.0
    assert report.metrics["train_psnr"] > report.metrics["psnr"] - 1.0
    assert len(report.metrics["psnr_per_view"]) == 4 and report.metrics["views"] == [1, 3, 5, 7]


def test_fit_is_deterministic_under_a_seed(blob_views):
    images, cams = blob_views
    cfg = FitConfig(**{**TINY, "steps": 15})
    a = fit(images[::2], cams[[0, 2, 4, 6]], cfg, backend="cpu")
    b = fit(images[::2], cams[[0, 2, 4, 6]], cfg, backend="cpu")
    assert a.losses == b.losses and torch.equal(a.gaussians.means, b.gaussians.means)


def test_visual_hull_init_lies_inside_the_masks(blob_views):
    images, cams = blob_views
    points, rgb = visual_hull_points(images, cams, 500, radius=1.6, resolution=32)
    assert 100 < len(points) <= 500 and rgb.shape == (len(points), 3)
    assert (~outside_hull(points, images[:, 3:4], cams, dilate_px=2)).float().mean() > 0.95
    assert points.norm(dim=-1).max() < 1.2  # the blob is within ~1 of the origin
    g = initial_gaussians("random", images, cams, 300, sh_degree=1, radius=1.0)
    assert len(g) == 300 and g.shN.shape == (300, 3, 3) and g.means.norm(dim=-1).max() <= 1.0 + 1e-5
    opaque = images.clone()
    opaque[:, 3] = 1.0  # no transparency: the hull carves nothing, falls back to random
    assert initial_gaussians("hull", opaque, cams, 200, 0, radius=1.0).means.norm(dim=-1).max() <= 1.0 + 1e-5


def test_visual_hull_carved_in_passes_equals_all_views_at_once(blob_views, monkeypatch):
    import reconstruction.init as init

    images, cams = blob_views
    runs = []
    for chunk in (1, 3, len(cams)):  # one view per pass, a ragged last pass, every view in one pass
        monkeypatch.setattr(init, "HULL_CHUNK", chunk)
        runs.append(visual_hull_points(images, cams, 400, radius=1.6, resolution=24, seed=3))
    assert len(runs[0][0]) > 100
    for points, rgb in runs[1:]:
        assert torch.equal(points, runs[0][0]) and torch.equal(rgb, runs[0][1])


def test_render_of_fitted_gaussians_shapes(blob_views):
    images, cams = blob_views
    res = fit(images, cams, FitConfig(**{**TINY, "steps": 5}), backend="cpu")
    rgb, alpha = render(res.gaussians, cams[[0, 1]])
    assert rgb.shape == (2, 3, 32, 32) and alpha.shape == (2, 1, 32, 32)
    assert rgb.min() >= 0 and rgb.max() <= 1


def test_nan_during_fit_is_detected(blob_views):
    images, cams = blob_views
    cfg = FitConfig(**{**TINY, "steps": 20, "lr_sh0": math.inf})  # an optimisation that diverges
    with pytest.raises(FitError, match="non-finite"):
        fit(images, cams, cfg, backend="cpu")


def test_config_and_view_errors(blob_views, tmp_path):
    images, cams = blob_views
    with pytest.raises(FitError, match="steps"):
        FitConfig(steps=-1)  # 0 is valid: steps from the scene (tests/reconstruction/test_schedule.py)
    with pytest.raises(FitError, match="steps_min"):
        FitConfig(steps_min=500, steps_max=400)
    with pytest.raises(FitError, match="init"):
        FitConfig(init="sfm")
    with pytest.raises(FitError, match="unknown"):
        FitConfig.from_dict({"stepz": 3})
    with pytest.raises(FitError, match="RGBA"):
        fit(images[:, :3], cams)
    with pytest.raises(FitError, match="cameras"):
        fit(images[:3], cams)
    with pytest.raises(FitError, match="non-finite"):
        bad = images.clone()
        bad[0, 0, 0, 0] = math.nan
        fit(bad, cams)
    yaml_file = tmp_path / "r.yaml"
    yaml_file.write_text("fit:\n  steps: 7\n  sh_degree: 0\n  early_stop_tol: 5e-4\n")
    cfg = FitConfig.from_yaml(yaml_file)
    assert cfg.steps == 7 and cfg.sh_degree == 0 and cfg.init == "hull"
    assert cfg.early_stop_tol == 5e-4, "PyYAML reads 5e-4 as text: the config makes it a number"
    with pytest.raises(FitError, match="lr_means must be a number, got 'fast'"):
        FitConfig.from_dict({"lr_means": "fast"})


def test_bench_set_takes_exponents_without_a_dot():
    """``mvgen bench fit-real --set early_stop_tol=5e-4`` used to pass the text on and fail deep in the fit."""
    from mvgen.job_bench import fit_real_config

    cfg = fit_real_config(None, ["early_stop_tol=5e-4", "steps=12", "scene_radius=2"], False)
    assert (cfg.early_stop_tol, cfg.steps, cfg.scene_radius) == (5e-4, 12, 2.0)
    assert isinstance(cfg.early_stop_tol, float) and isinstance(cfg.steps, int)


def test_shipped_preset_loads():
    from reconstruction.fit import DEFAULT_CONFIG

    cfg = FitConfig.from_yaml(DEFAULT_CONFIG)
    assert cfg == FitConfig()  # the dataclass defaults are the preset


def test_training_ssim_equals_kornia():
    from kornia.metrics import ssim

    from reconstruction.fit import ssim_map

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 20, 24, generator=g), torch.rand(2, 3, 20, 24, generator=g)
    assert torch.allclose(ssim_map(x, y), ssim(x, y, 11), atol=1e-6)


def test_cross_render_protocol(blob_views):
    from mvgen.cameras import orbit
    from reconstruction.protocols import cross_render

    images, cams = blob_views
    out = cross_render(images, cams, orbit(2, 10.0, azimuth_start=20.0, width=32), FitConfig(**{**TINY, "steps": 60}),
                       backend="cpu", with_lpips=False)
    assert out["protocol"].startswith("cross-render") and len(out["psnr_per_view"]) == 2
    assert out["psnr"] > 15.0 and len(out["n_gaussians"]) == 2
    with pytest.raises(FitError, match="at least 4"):
        cross_render(images[:3], cams[[0, 1, 2]], cams[[0]], FitConfig(**TINY))
