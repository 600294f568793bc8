"""`mvgen evaluate asset`: an oracle generator's asset scores like the oracle; novel cameras are new; the CLI."""

from dataclasses import replace
from types import SimpleNamespace

import pytest

from mvgen.cameras import orbit, orbit_angles
from mvgen.evaluate import render_truth
from mvgen.evaluate_asset import AssetEvalSettings, evaluate_assets, novel_cameras, table
from reconstruction.fit import FitConfig

FAST = FitConfig(steps=60, init_points=600, refine_start=20, refine_every=20, sh_every=30, early_stop_tol=0.0)


class OracleViews:
    """Returns ground-truth renders at the orbit the job asks for (numpy, as the job's pipeline call)."""

    image_size = 32

    def __call__(self, prompt, num_views, elevation, output_type, **kw):
        cams = orbit(num_views, elevation=elevation, width=32)
        return SimpleNamespace(images=render_truth(prompt, cams).permute(0, 2, 3, 1).numpy()[None], cameras=cams)


def test_novel_cameras_lie_between_the_generated_ones():
    cams = orbit(8, elevation=20.0, width=32)
    az, el = orbit_angles(novel_cameras(cams))
    assert [round(a, 3) for a in az] == [22.5 + 45 * i for i in range(8)]
    assert all(abs(e - 35.0) < 1e-3 for e in el)
    assert novel_cameras(cams).centers.norm(dim=-1).allclose(cams.centers.norm(dim=-1))


def test_an_oracle_generator_scores_like_the_oracle(tmp_path):
    s = AssetEvalSettings(views=8, asset_steps=20, backend="cpu")
    rep = evaluate_assets(OracleViews(), ["a red mug"], FAST, s, grids=tmp_path)
    row = rep["per_caption"][0]
    assert set(row) >= {"asset", "fitted_only", "oracle", "consistency_psnr", "seconds", "gaussians"}
    assert row["asset"]["psnr"] > 15 and abs(row["asset"]["psnr"] - row["oracle"]["psnr"]) < 2.0
    assert 0 <= row["asset"]["lpips"] < 0.5 and rep["lpips_impl"]
    assert (tmp_path / "000.png").is_file()
    assert "| default | 1 |" in table(rep)


def test_more_novel_elevations_score_the_same_fits_again(tmp_path):
    s = AssetEvalSettings(views=8, asset_steps=10, backend="cpu", novel_elevations=(35.0, 5.0))
    rep = evaluate_assets(OracleViews(), ["a red mug"], replace(FAST, steps=30), s)
    row = rep["per_caption"][0]
    assert set(row["by_elevation"]) == {"35", "5"}
    assert row["asset"] == row["by_elevation"]["35"]["asset"]  # the headline is the first elevation
    assert row["by_elevation"]["5"]["asset"]["psnr"] != row["asset"]["psnr"]  # other cameras, other images
    assert set(rep["mean_by_elevation"]) == {"35", "5"} and rep["mean"] == rep["mean_by_elevation"]["35"]
    lines = table(rep).splitlines()
    assert len(lines) == 4 and "novel elevation 5°" in lines[3]


def test_two_rings_reach_the_pipeline_and_each_half_covers_both(tmp_path):
    seen = {}

    class Recording(OracleViews):
        def __call__(self, prompt, num_views, elevation, output_type, **kw):
            seen["elevation"] = elevation
            return super().__call__(prompt, num_views, elevation, output_type, **kw)

    s = AssetEvalSettings(views=8, rings=(10.0, 30.0), asset_steps=5, backend="cpu")
    evaluate_assets(Recording(), ["a red mug"], replace(FAST, steps=10), s)
    assert seen["elevation"] == [10.0, 10.0, 30.0, 30.0, 10.0, 10.0, 30.0, 30.0]
    assert set(seen["elevation"][0::2]) == set(seen["elevation"][1::2]) == {10.0, 30.0}


@pytest.mark.parametrize("argv, match", [(["--limit", "0"], "--limit"), (["--views", "1"], "--views"),
                                         (["--asset-steps", "-1"], "--asset-steps"),
                                         (["--steer", "gaussians", "--steer-at", "2"], "steer at"),
                                         (["--rings", "10,x"], "rings"), (["--rings", "10,95"], "rings"),
                                         (["--views", "4", "--rings", "0,20,40"], "rings"),
                                         (["--novel-elevations", "35,x"], "--novel-elevations"),
                                         (["--novel-elevations", "35,35"], "--novel-elevations"),
                                         (["--novel-elevations", "95"], "--novel-elevations")])
def test_cli_refuses_bad_arguments_before_loading(argv, match, capsys):
    from mvgen.cli import main

    assert main(["evaluate", "asset", "--model", "/nonexistent", *argv]) == 2
    assert match in capsys.readouterr().err
