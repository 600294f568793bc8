"""The job's commands (mvgen/job_cli.py): `mvgen run` on a tiny locally built model and `mvgen reconstruct` on a
tiny folder, their bad-input errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mvgen.cameras import write_transforms
from mvgen.cli import main
from mvgen.batch import summary_table


def test_mvgen_run_cli_single_batch_and_bad_input(tiny_model, fast_config, tmp_path, capsys):
    cfg = tmp_path / "app.yaml"
    cfg.write_text(json.dumps({k: v for k, v in fast_config.to_dict().items()}))  # JSON is YAML
    out = tmp_path / "r"
    common = ["--model", str(tiny_model), "--config", str(cfg), "--views", "2", "--steps", "1"]
    assert main(["run", "a red mug", "--out", str(out), *common]) == 0
    assert {"scene.ply", "scene.splat", "scene.glb", "scene.mp4", "metrics.json", "views.zip"} <= \
        {p.name for p in out.iterdir()}
    assert "PSNR" in capsys.readouterr().out
    # an earlier run is replaced (by the real console command: a fresh process loads the saved model too)
    subprocess.run([str(Path(sys.executable).with_name("mvgen")), "run", "a red mug", "--out", str(out),
                    "--views-only", *common], check=True, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert not (out / "scene.ply").exists() and (out / "views.zip").is_file()
    # a folder that is not a run is refused
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["run", "a red mug", "--out", str(tmp_path / "mine"), *common]) == 2
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert "not an earlier `mvgen run` output" in capsys.readouterr().err
    for bad in (["", "--out", str(tmp_path / "x")], ["a mug", "--out", str(tmp_path / "x"), "--views", "99"],
                ["a mug", "--out", str(tmp_path / "x"), "--model", str(tmp_path / "nope")]):
        assert main(["run", *bad, *(common[2:4] if "--model" in bad else common[:4])]) == 2
    err = capsys.readouterr().err
    assert "prompt is empty" in err and "views must be in 2..32" in err and "model not found at" in err
    # batch: prompts are checked before any work; one folder per prompt, a summary table; a prompt the text
    # encoder refuses (> 64 tokens) becomes an error row and the exit code is 1
    prompts = tmp_path / "p.txt"
    prompts.write_text("# two mugs\na red mug\n\n" + "word " * 80 + "\n")
    assert main(["run", "--prompts", str(prompts), "--out", str(tmp_path / "b"), "--views-only", *common]) == 2
    assert "prompt is 399 characters" in capsys.readouterr().err
    prompts.write_text("a red mug\n" + "red " * 70 + "\na blue vase\n")
    assert main(["run", "--prompts", str(prompts), "--out", str(tmp_path / "b"), "--views-only", *common]) == 1
    rows = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert [r["prompt"] for r in rows] == ["a red mug", "red " * 69 + "red", "a blue vase"]
    assert "tokens" in rows[1]["error"] and "error" not in rows[2]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [".mvgen-output.json", "000_a_red_mug",
                                                                 "002_a_blue_vase", "summary.json"]
    table = capsys.readouterr().out
    assert "| a blue vase | 2 |" in table and "| error: prompt:" in table


def test_summary_table_shows_errors_and_lpips_impl():
    rows = [{"prompt": "a", "folder": "/x/000_a", "views": 2, "psnr": 20.0, "ssim": 0.5, "lpips": 0.1,
             "lpips_impl": "stlpips-alex-shift-tolerant", "gaussians": 10, "seconds": {"total": 1.0}},
            {"prompt": "b", "error": "prompt: 70 tokens"}]
    table = summary_table(rows)
    assert "LPIPS (stlpips-alex-shift-tolerant)" in table and "| b | error: prompt: 70 tokens |" in table


# ------------------------------------------------------------------------------------- `mvgen reconstruct`

@pytest.fixture(scope="module")
def views_dir(blob_views_dir):
    return blob_views_dir


def test_reconstruct_writes_exports_and_metrics(views_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["reconstruct", str(views_dir), "--out", str(out), "--steps", "40", "--holdout", "every-4",
                 "--asset-steps", "10", "--video-frames", "6", "--backend", "cpu"])
    assert code == 0
    for name in ("scene.ply", "scene.splat", "scene.glb", "scene.mp4", "scene.gif", "scene_camera_path.json"):
        assert (out / name).stat().st_size > 0, name
    m = json.loads((out / "metrics.json").read_text())
    for key in ("psnr", "ssim", "lpips", "lpips_impl", "psnr_per_view", "ssim_per_view", "lpips_per_view",
                "n_gaussians", "seconds", "asset_steps", "view_angles", "stage_seconds", "warnings"):
        assert key in m, key
    assert m["views"] == [3, 7] and len(m["psnr_per_view"]) == 2 and m["lpips_impl"].startswith(("lpips", "stlpips"))
    assert m["asset_steps"] == 10 and len(m["asset_views"]) == 8  # the same asset as the job: every view seen
    assert sorted(p.name for p in (out / "heatmaps").iterdir()) == ["view_003.png", "view_007.png"]
    assert (out / "heatmaps.png").is_file() and (out / "viewer.ply").is_file()  # the job's exports and report
    assert "PSNR" in capsys.readouterr().out


def test_reconstruct_video_is_framed_by_the_input_cameras(views_dir, tmp_path):
    """The orbit video's cameras sit at the input cameras' distance and see with their field of view (a fixed
    radius and fov cropped NeRF-synthetic scenes)."""
    from mvgen.cameras import Cameras, intrinsics_from_fov, read_transforms, vertical_fov_deg

    far = tmp_path / "far"
    far.mkdir()
    cams, files = read_transforms(views_dir / "transforms.json")
    c2w = cams.c2w.clone()
    c2w[:, :3, 3] *= 1.5  # farther away and a narrower lens: the object is framed the same
    fov = vertical_fov_deg(cams.K[0], cams.height) / 1.4
    moved = Cameras(c2w, intrinsics_from_fov(fov, cams.width, cams.height).expand(len(cams), 3, 3), 32, 32)
    for f in files:
        (far / f.name).write_bytes(f.read_bytes())
    write_transforms(far / "transforms.json", moved, [f.name for f in files])
    out = tmp_path / "out"
    assert main(["reconstruct", str(far), "--out", str(out), "--steps", "5", "--asset-steps", "0",
                 "--video-frames", "4", "--no-lpips", "--backend", "cpu"]) == 0
    path = json.loads((out / "scene_camera_path.json").read_text())
    centres = np.array([f["transform_matrix"] for f in path["frames"]])[:, :3, 3]
    assert np.allclose(np.linalg.norm(centres, axis=1), float(moved.centers.norm(dim=-1).median()), rtol=1e-4)
    video_fov = np.degrees(2 * np.arctan(0.5 * path["h"] / path["fl_y"]))
    assert abs(video_fov - fov) < 1e-3


def test_reconstruct_without_a_mesh_warns_and_writes_the_report(views_dir, tmp_path, capsys, monkeypatch):
    """As in the app: no .glb is a warning; the other exports and metrics.json are written, exit code 0."""
    import reconstruction.export

    def no_mesh(*args, **kwargs):
        raise ValueError("mesh: the Gaussians' density never reaches the iso level 0.5; nothing to mesh")

    monkeypatch.setattr(reconstruction.export, "save_glb", no_mesh)
    out = tmp_path / "out"
    assert main(["reconstruct", str(views_dir), "--out", str(out), "--steps", "5", "--asset-steps", "0",
                 "--video-frames", "2", "--no-lpips", "--backend", "cpu"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["warnings"] == ["no .glb mesh: mesh: the Gaussians' density never reaches the iso level 0.5; "
                             "nothing to mesh"] and "glb" not in m["files"] and not (out / "scene.glb").exists()
    assert (out / "scene.mp4").is_file() and "warning: no .glb mesh" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--holdout", "every-9"], "holds out nothing"),
    (["--holdout", "every-1"], "K >= 2"),
    (["--holdout", "sometimes"], "every-K"),
    (["--steps", "0"], "steps"),
    (["--downscale", "0.5"], "downscale"),
])
def test_reconstruct_bad_arguments(views_dir, tmp_path, capsys, args, message):
    assert main(["reconstruct", str(views_dir), "--out", str(tmp_path / "o"), *args]) == 2
    assert message in capsys.readouterr().err


def test_reconstruct_bad_folders(views_dir, tmp_path, capsys):
    assert main(["reconstruct", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "transforms" in capsys.readouterr().err

    one = tmp_path / "one"
    one.mkdir()
    meta = json.loads((views_dir / "transforms.json").read_text())
    meta["frames"] = meta["frames"][:1]
    (one / "transforms.json").write_text(json.dumps(meta))
    (one / "00.png").write_bytes((views_dir / "00.png").read_bytes())
    assert main(["reconstruct", str(one), "--out", str(tmp_path / "o")]) == 2
    assert "at least 2 views" in capsys.readouterr().err

    broken = tmp_path / "broken"
    broken.mkdir()
    meta = json.loads((views_dir / "transforms.json").read_text())
    meta["frames"][2]["transform_matrix"][0][3] = float("nan")
    (broken / "transforms.json").write_text(json.dumps(meta))  # json writes the NaN literal
    for f in views_dir.glob("*.png"):
        (broken / f.name).write_bytes(f.read_bytes())
    assert main(["reconstruct", str(broken), "--out", str(tmp_path / "o")]) == 2
    assert "non-finite" in capsys.readouterr().err

    (broken / "05.png").unlink()
    assert main(["reconstruct", str(broken), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err


def test_reconstruct_unwritable_out(views_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["reconstruct", str(views_dir), "--out", str(blocker / "sub")]) == 2
    assert "--out" in capsys.readouterr().err


def test_reconstruct_cross_render_at_novel_cameras_framed_like_the_views(views_dir, tmp_path):
    out = tmp_path / "out"
    assert main(["reconstruct", str(views_dir), "--out", str(out), "--steps", "5", "--asset-steps", "0",
                 "--video-frames", "2", "--no-lpips", "--backend", "cpu", "--cross-render"]) == 0
    cross = json.loads((out / "metrics.json").read_text())["cross_render"]
    assert cross["protocol"] == "cross-render even vs odd" and len(cross["psnr_per_view"]) == 8
