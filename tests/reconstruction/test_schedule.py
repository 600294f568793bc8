"""Steps from the scene (``reconstruction.fit.scheduled``), convergence-based stopping, and `mvgen bench fit-real`
on a tiny procedural scene folder."""

import json
import math
from dataclasses import replace

import pytest
import torch

from mvgen.cli import main
from reconstruction.fit import FitConfig, FitError, _converged, _Optimisation, fit, means_lr, scheduled
from reconstruction.rasterize import rasterization


def test_steps_follow_the_scene_and_an_override_wins():
    cfg = FitConfig()  # the shipped preset's defaults: steps 0 = from the scene
    assert cfg.steps == 0
    assert scheduled(cfg, 4, 128, 128).steps == 300  # an 8-view generated orbit, 4 fitted: steps_min
    assert scheduled(cfg, 6, 128, 128).steps == 393  # the app's 12 views, 6 fitted
    assert scheduled(cfg, 80, 100, 100).steps == 3200  # NeRF-synthetic lego at 100², 80 fitted
    assert scheduled(cfg, 200, 800, 800).steps == cfg.steps_max
    assert scheduled(FitConfig(steps=123), 80, 100, 100).steps == 123  # --steps is an override
    assert scheduled(cfg, 80, 100, 100).refine_every == 100
    assert scheduled(cfg, 150, 100, 100).refine_every == 150  # each densification has seen every view
    assert scheduled(FitConfig(batch_views=2), 150, 100, 100).refine_every == 100


def test_dense_scenes_move_their_means_faster():
    cfg = FitConfig()
    assert means_lr(cfg, 4) == means_lr(cfg, 31) == cfg.lr_means  # generated orbits: the preset's rate
    assert means_lr(cfg, 32) == means_lr(cfg, 80) == cfg.lr_means * cfg.lr_means_dense == pytest.approx(2.4e-4)
    assert means_lr(replace(cfg, lr_means_dense=1.0), 80) == cfg.lr_means
    params = torch.nn.ParameterDict({"means": torch.zeros(5, 3), "quats": torch.ones(5, 4), "scales": torch.zeros(5, 3),
                                     "opacities": torch.zeros(5), "sh0": torch.zeros(5, 1, 3), "shN": torch.zeros(5, 3, 3)})
    cfg = scheduled(cfg, 40, 32, 32)
    lrs = [_Optimisation(params, cfg, 2.0, n).optimizers["means"].param_groups[0]["lr"] for n in (8, 40)]
    assert lrs == [pytest.approx(2.0 * 1.6e-4), pytest.approx(2.0 * 2.4e-4)]
    with pytest.raises(FitError, match="dense_views"):
        FitConfig(dense_views=0)


def test_dense_scenes_fit_higher_sh_and_continuations_keep_their_degree(blob_views):
    cfg = FitConfig()
    assert (cfg.sh_degree, cfg.sh_degree_dense) == (1, 3)
    assert scheduled(cfg, 4, 128, 128).sh_degree == scheduled(cfg, 31, 100, 100).sh_degree == 1
    assert scheduled(cfg, 32, 100, 100).sh_degree == scheduled(cfg, 80, 100, 100).sh_degree == 3
    assert scheduled(cfg, 80, 100, 100, continuing=True).sh_degree == 1  # a start's Gaussians fix the degree
    with pytest.raises(FitError, match="sh_degree_dense"):
        FitConfig(sh_degree_dense=4)
    images, cams = blob_views
    small = FitConfig(steps=6, init_points=200, sh_every=2, dense_views=len(cams), early_stop_tol=0.0)
    dense = fit(images, cams, small, backend="cpu")
    assert dense.gaussians.sh_degree == dense.config.sh_degree == 3
    sparse = fit(images[:4], cams[[0, 1, 2, 3]], small, backend="cpu")
    assert sparse.gaussians.sh_degree == 1
    more = fit(images, cams, small, backend="cpu", start=sparse.gaussians)  # dense views, degree-1 start
    assert more.gaussians.sh_degree == 1


def test_fit_with_auto_steps_runs_the_scheduled_count(blob_views):
    images, cams = blob_views
    cfg = FitConfig(steps_per_mpx=2000.0, steps_min=5, init_points=300, early_stop_tol=0.0)
    res = fit(images[:4], cams[[0, 1, 2, 3]], cfg, backend="cpu")
    expected = round(2000.0 * 4 * 32 * 32 / 1e6)  # 8 steps
    assert res.steps == expected == res.config.steps == len(res.losses)


def test_convergence_stop_waits_for_a_flat_window():
    falling = [1.0 - 0.001 * i for i in range(400)]
    flat = [0.5] * 400
    assert not _converged(falling, 399, refine_stop=100, tol=1e-3, window=100)  # still improving 2.5% per window
    assert _converged(flat, 399, refine_stop=100, tol=1e-3, window=100)
    assert not _converged(flat, 299, refine_stop=100, tol=1e-3, window=100)  # needs 2 windows after densifying
    assert not _converged(flat, 399, refine_stop=100, tol=1e-3, window=200)
    assert not _converged(flat, 399, refine_stop=100, tol=0.0, window=100)  # 0 disables


@pytest.fixture(scope="module")
def scene_dir(blob_views_dir):
    return blob_views_dir


def test_bench_fit_real_rows(scene_dir, tmp_path, capsys):
    out = tmp_path / "rows.json"
    code = main(["bench", "fit-real", str(scene_dir), "--steps", "4,auto", "--holdout", "every-4", "--no-lpips",
                 "--set", "steps_per_mpx=3000", "--set", "steps_min=5", "--set", "init_points=300",
                 "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert [r["steps"] for r in rows] == ["4", "auto"]
    assert rows[0]["steps_run"] == 4
    assert rows[1]["steps_run"] == scheduled(FitConfig(steps_per_mpx=3000.0, steps_min=5), 6, 32, 32).steps == 18
    for r in rows:
        assert r["cpu_s"] > 0 and r["wall_s"] > 0 and r["gaussians"] > 0
        assert 5.0 < r["heldout_psnr"] < 100.0 and 0.0 < r["heldout_ssim"] <= 1.0
    assert data["config"]["init_points"] == 300
    printed = capsys.readouterr().out
    assert "| steps | steps_run | cpu_s |" in printed and "6 fitted views at 32x32, 2 held out" in printed


def test_bench_fit_real_bad_input(scene_dir, capsys):
    assert main(["bench", "fit-real", str(scene_dir), "--steps", "ten", "--no-lpips"]) == 2
    assert "--steps must be a comma list" in capsys.readouterr().err
    assert main(["bench", "fit-real", str(scene_dir), "--set", "prune_opacity", "--no-lpips"]) == 2
    assert "FIELD=VALUE" in capsys.readouterr().err
    assert main(["bench", "fit-real", str(scene_dir), "--set", "stepz=3", "--no-lpips"]) == 2
    assert "unknown fit config field" in capsys.readouterr().err



def test_coarse_levels_are_the_views_downsampled_under_rescaled_cameras(blob_views):
    from reconstruction.fit import _levels, composite

    from tests.reconstruction.conftest import blob_object

    images, cams = blob_views
    cfg = scheduled(FitConfig(steps=100, coarse_factor=2, coarse_until=0.3), 8, 32, 32)
    (until, rgb, alpha, coarse, single), full = _levels(composite(images, cfg.background), images[:, 3:], cams, cfg)
    assert until == 30 and full[0] == 100 and rgb.shape == (8, 3, 16, 16) and alpha.shape == (8, 1, 16, 16)
    assert (coarse.width, coarse.height) == (16, 16) and len(single) == 8
    assert torch.equal(full[3].viewmats, cams.viewmats) and torch.equal(full[3].K, cams.K)  # computed once, equal
    assert torch.equal(single[3].viewmats, coarse.viewmats[[3]]) and single[3].width == 16
    means, quats, scales, opac, colors = blob_object()
    with torch.no_grad():  # the object drawn at the coarse cameras is the full-size views' area downsample
        _, drawn, _ = rasterization(means, quats, scales, opac, colors, coarse.viewmats, coarse.K, 16, 16,
                                    backend="cpu")
    drawn = drawn[..., 0]  # (8, 16, 16); the rasterizer's 0.3 px² blur makes it a little wider than the downsample

    def centroid(a):
        ys, xs = torch.meshgrid(torch.arange(16) + 0.5, torch.arange(16) + 0.5, indexing="ij")
        return torch.stack([(a * xs).sum((1, 2)), (a * ys).sum((1, 2))], 1) / a.sum((1, 2))[:, None]

    assert (centroid(drawn) - centroid(alpha[:, 0])).abs().max() < 0.05  # pixels: the same place in every view
    assert (drawn - alpha[:, 0]).abs().mean() < 0.08
    assert len(_levels(rgb, alpha, cams, replace(cfg, coarse_factor=1))) == 1  # off
    assert len(_levels(rgb, alpha, cams, replace(cfg, coarse_factor=8))) == 1  # 4 px: too small, off


def test_a_coarse_to_fine_fit_renders_small_first(blob_views, monkeypatch):
    import reconstruction.fit as fit_module

    sizes = []
    render = fit_module._render
    monkeypatch.setattr(fit_module, "_render", lambda p, c, *a: sizes.append(c.width) or render(p, c, *a))
    images, cams = blob_views
    cfg = FitConfig(steps=20, coarse_factor=2, coarse_until=0.5, init_points=300, early_stop_tol=0.0)
    res = fit(images, cams, cfg, backend="cpu")
    assert sizes == [16] * 10 + [32] * 10 and res.steps == 20 and all(map(math.isfinite, res.losses))


@pytest.mark.parametrize("bad", [{"coarse_factor": 0}, {"coarse_factor": 1.5}, {"coarse_until": 1.5}])
def test_bad_coarse_settings_are_refused(bad):
    from reconstruction.fit import FitError

    with pytest.raises(FitError, match="coarse"):
        FitConfig(**bad)
