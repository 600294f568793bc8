"""The job's stages (mvgen/job.py, mvgen/exports.py) on a tiny locally built model."""

import json
import subprocess
import sys
import zipfile

import pytest
import trimesh
from PIL import Image

from mvgen.job import StageProgress, run_prompt, run_views
from mvgen.settings import check_run_settings

EXPORTS = {"ply", "viewer_ply", "splat", "glb", "mp4", "gif", "camera_path", "metrics", "heatmaps"}


@pytest.fixture(scope="module")
def pipe(tiny_model):
    from mvgen.job import load_model

    return load_model(tiny_model)[0]


@pytest.fixture(scope="module")
def full_run(pipe, tiny_model, fast_config, tmp_path_factory):
    log = []
    settings = check_run_settings(fast_config, 2, 20, 2, 3.0, 0, 20)
    out = tmp_path_factory.mktemp("run") / "r"
    result = run_prompt(pipe, "a red mug", out, fast_config, settings, tiny_model,
                        sink=lambda f, d: log.append((f, d)))
    return result, log


def test_run_prompt_writes_every_file(full_run):
    result, _ = full_run
    out = result.folder
    assert set(result.files) == EXPORTS | {"views_zip", "transforms", "manifest", "grid"}
    assert all(p.is_file() and p.parent == out for p in result.files.values())
    assert not any(p.name.startswith(".") for p in out.parent.iterdir())  # temp folders renamed / removed
    with Image.open(out / "views" / "000.png") as im:
        assert im.mode == "RGBA" and im.size == (32, 32)
    with zipfile.ZipFile(result.files["views_zip"]) as z:
        assert sorted(z.namelist()) == ["manifest.json", "transforms.json", "views/000.png", "views/001.png"]
    assert isinstance(trimesh.load(result.files["glb"]), trimesh.Scene)
    assert result.files["mp4"].stat().st_size > 0 and result.files["ply"].read_bytes().startswith(b"ply")
    m = json.loads(result.files["metrics"].read_text())
    assert set(m) == set(result.metrics) - {"seconds_total"} and m["psnr"] == result.metrics["psnr"]
    assert m["protocol"] == "holdout every-2" and m["views"] == [1] and m["fit_views"] == [0]
    assert len(m["psnr_per_view"]) == len(m["ssim_per_view"]) == len(m["lpips_per_view"]) == 1
    assert m["lpips_impl"] in ("lpips-alex-v0.1", "stlpips-alex-shift-tolerant")
    assert m["view_angles"] == [[180.0, 20.0]] and m["files"]["glb"] == "scene.glb"
    assert [p.name for p, _ in result.heatmaps] == ["view_001.png"] and result.heatmaps[0][0].is_file()
    with Image.open(result.files["heatmaps"]) as sheet:  # one labelled row per held-out view, enlarged to 128 px
        assert sheet.height >= 128 and sheet.width > 3 * 128
    assert [c for _, c in result.views] == ["view 0 · az 0° · el 20°", "view 1 · az 180° · el 20°"]
    assert set(result.seconds) == {"generate", "fit", "evaluate", "export", "total"}


def test_progress_is_monotonic_and_covers_every_stage(full_run):
    _, log = full_run
    fractions = [f for f, _ in log]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    descs = " ".join(d for _, d in log)
    for word in ("generating views: step 2/2", "fitting Gaussians", "mesh", "orbit video", "done"):
        assert word in descs


def _covariances(g):
    import torch

    w, x, y, z = torch.nn.functional.normalize(g.quats, dim=-1).unbind(-1)
    R = torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                     2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                     2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1).reshape(-1, 3, 3)
    S = torch.diag_embed(torch.exp(g.scales))
    return R @ S @ S @ R.transpose(1, 2)


def test_splat_viewer_gaussians_are_the_same_object_turned_upright_centred_and_framed():
    import torch

    from reconstruction.gaussians import Gaussians
    from mvgen.exports import SPLAT_VIEWER_RADIUS, splat_viewer_gaussians

    torch.manual_seed(0)
    n = 50
    g = Gaussians(torch.randn(n, 3) * 3 + 5, torch.randn(n, 4), torch.randn(n, 3) * 0.3, torch.randn(n) + 3,
                  torch.randn(n, 1, 3), torch.randn(n, 3, 3), sh_degree=1)
    v = splat_viewer_gaussians(g)
    R = torch.tensor([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    k = torch.exp(v.scales - g.scales)  # one uniform scale factor
    assert torch.allclose(k, k[0, 0].expand_as(k), rtol=1e-5) and k[0, 0] < 1
    offset = v.means / k[:, :1] - g.means @ R.T  # the same points turned upright, up to one shift
    assert torch.allclose(offset, offset[:1].expand_as(offset), atol=1e-4)
    assert (v.means.norm(dim=-1) <= SPLAT_VIEWER_RADIUS * 1.5).float().mean() > 0.95  # framed by the viewer
    assert v.means.abs().mean() < 1.0
    up = splat_viewer_gaussians(Gaussians(torch.tensor([[0.0, 0, 1], [0, 0, 3]]), *(t[:2] for t in (
        g.quats, g.scales, g.opacities, g.sh0, g.shN))))
    assert up.means[1, 1] < up.means[0, 1]  # world up (+Z) -> the viewer's up (-Y)
    assert torch.allclose(_covariances(v), R @ _covariances(g) @ R.T * k[:, :1, None] ** 2, rtol=1e-3, atol=1e-5)
    assert v.shN.shape == (n, 0, 3) and torch.equal(v.sh0, g.sh0) and torch.equal(v.opacities, g.opacities)


def test_stage_progress_weights():
    seen = []
    p = StageProgress(lambda f, d: seen.append(f), ["fit", "export"])
    p("fit", 0.5, "")
    p("export", 2.0, "")  # clamped
    p("export", 0.0, "")
    assert seen[1] == pytest.approx(1.0) and 0 < seen[0] < seen[2] < 1


def test_stop_after_views_writes_only_views(pipe, tiny_model, fast_config, tmp_path):
    settings = check_run_settings(fast_config, 3, 10, 1, 1.0, 5, 20)
    result = run_prompt(pipe, "a blue vase", tmp_path / "v", fast_config, settings, tiny_model, stop_after_views=True)
    assert result.metrics is None and set(result.files) == {"views_zip", "transforms", "manifest", "grid"}
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == [".mvgen-output.json", "grid.png", "manifest.json",
                                                                 "transforms.json", "views", "views.zip"]
    assert json.loads(result.files["manifest"].read_text())["seed"] == 5


def test_run_views_on_a_users_folder(posed_views, fast_config, tmp_path):
    result = run_views(posed_views, tmp_path / "e", fast_config, 20)
    m = result.metrics
    assert m["views"] == [1, 3] and m["fit_views"] == [0, 2] and m["view_files"] == ["001.png", "003.png"]
    assert EXPORTS - {"glb"} <= set(result.files)
    assert len(result.views) == 4 and result.views[0][0].parent == posed_views / "views"


def test_run_views_refuses_too_many_or_too_small_views(posed_views, fast_config, tmp_path):
    from mvgen.data.captions import parse_caption
    from mvgen.data.generate import DatasetConfig, make_object

    with pytest.raises(ValueError, match="4 views; the limit is 3"):
        run_views(posed_views, tmp_path / "a", fast_config.with_overrides(max_upload_views=3))
    make_object(tmp_path, "tiny", parse_caption("a red mug"), DatasetConfig(views=2, resolution=16, supersample=1))
    with pytest.raises(ValueError, match="views are 16x16; at least 32 px"):  # LPIPS needs 32 px
        run_views(tmp_path / "tiny", tmp_path / "b", fast_config)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_job_modules_do_not_import_gradio():
    code = ("import sys, mvgen.job, mvgen.job_cli, mvgen.job_bench, mvgen.exports, mvgen.settings, ui.cli, "
            "ui.uploads, ui.sessions; print('gradio' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_3d_consistent_sampling_is_a_job_setting(pipe, tiny_model, fast_config, tmp_path):
    """settings["steer"] (the app's checkbox, `mvgen run --steer`) steers the sample at its steps; the manifest
    records each steering fit."""
    cfg = fast_config.with_overrides(steer={"mode": "gaussians", "first_steps": 10, "next_steps": 5})
    settings = check_run_settings(cfg, 2, 20, 2, 3.0, 0, 20)
    assert settings["steer"].mode == "gaussians" and settings["steer"].step_indices(2) == [0, 1]
    result = run_prompt(pipe, "a red mug", tmp_path / "s", cfg, settings, tiny_model, stop_after_views=True)
    steer = json.loads(result.files["manifest"].read_text())["steer"]
    assert steer["settings"]["mode"] == "gaussians" and [r["fit_steps"] for r in steer["log"]] == [10, 5]
    plain = run_prompt(pipe, "a red mug", tmp_path / "p", cfg, check_run_settings(cfg, 2, 20, 2, 3.0, 0, 20, "off"),
                       tiny_model, stop_after_views=True)
    assert "steer" not in json.loads(plain.files["manifest"].read_text())


def test_part_guidance_is_a_job_setting(pipe, tiny_model, fast_config, tmp_path):
    """The run's setting (None: the config's) reaches the sampler; the manifest records it and its contrast."""
    assert check_run_settings(fast_config, 2, 20, 1, 1.0, 0, 20)["part_guidance"] == fast_config.part_guidance
    with pytest.raises(ValueError, match="part_guidance"):
        check_run_settings(fast_config, 2, 20, 1, 1.0, 0, 20, part_guidance=-1)
    settings = check_run_settings(fast_config, 2, 20, 1, 1.0, 0, 20, part_guidance=1.5)
    result = run_prompt(pipe, "a red chair with white legs", tmp_path / "g", fast_config, settings, tiny_model,
                        stop_after_views=True)
    manifest = json.loads((result.folder / "manifest.json").read_text())
    assert manifest["part_guidance"] == 1.5 and manifest["contrast_prompt"] == "a red chair"
