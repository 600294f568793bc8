"""The fit's stage timers: every stage of a CPU fit is named, the exclusive times add up to no more than the fit's
own, profiling costs nothing when off, and nesting counts each second once."""

import time

import pytest

from reconstruction.fit import FitConfig, fit
from reconstruction.profile import profile_rows, profiling, stage

TINY = dict(steps=30, init_points=300, refine_start=10, refine_every=10, sh_every=15, early_stop_tol=0.0)


def test_a_profiled_fit_names_every_stage_and_adds_up(blob_views):
    images, cams = blob_views
    plain = fit(images, cams, FitConfig(**TINY), backend="cpu")
    res = fit(images, cams, FitConfig(**TINY), backend="cpu", profile=True)
    assert plain.profile is None
    assert plain.losses == res.losses  # timing changes nothing
    names = set(res.profile)
    for expected in ("rasterize: composite (forward)", "rasterize: backward", "rasterize: tile binning + depth sort",
                     "projection + SH (forward)", "projection + SH (backward)", "loss and SSIM (forward, compiled)",
                     "loss and SSIM (backward, compiled)",
                     "Adam", "initialisation (visual hull or start Gaussians)"):
        assert expected in names
    assert res.profile["rasterize: composite (forward)"][2] == 30  # one call per step
    assert res.profile["initialisation (visual hull or start Gaussians)"][2] == 1
    staged_cpu = sum(v[0] for v in res.profile.values())
    staged_wall = sum(v[1] for v in res.profile.values())
    assert 0 < staged_cpu <= res.cpu_seconds + 1e-3 and 0 < staged_wall <= res.seconds + 1e-3
    rows = profile_rows(res.profile, res.steps, res.cpu_seconds, res.seconds)
    assert rows[-1]["stage"] == "fit step (total)" and rows[-2]["stage"] == "outside the stages"
    assert sum(r["cpu_share"] for r in rows[:-1]) == pytest.approx(1.0, abs=1e-6)


def test_nested_stages_are_exclusive_and_profiling_is_off_by_default():
    with stage("not profiling"):  # no profile open: a no-op
        pass
    with profiling() as totals:
        with stage("outer"):
            time.sleep(0.02)
            with stage("inner"):
                time.sleep(0.05)
        with pytest.raises(RuntimeError, match="already active"):
            with profiling():
                pass
    assert set(totals) == {"outer", "inner"}
    assert 0.015 < totals["outer"][1] < 0.045 and totals["inner"][1] >= 0.05  # wall, outer without inner
    with profiling() as again:
        pass
    assert again == {}
