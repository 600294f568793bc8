"""`mvgen reconstruct` end to end on a tiny folder, its bad-input errors, and the bench commands' plumbing."""

import json

import numpy as np
import pytest
from PIL import Image

from mvgen.cameras import write_transforms
from mvgen.cli import main


@pytest.fixture(scope="module")
def views_dir(tmp_path_factory, blob_views):
    images, cams = blob_views
    root = tmp_path_factory.mktemp("views")
    names = []
    for i, im in enumerate(images):
        Image.fromarray((im.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8), "RGBA").save(root / f"{i:02d}.png")
        names.append(f"{i:02d}.png")
    write_transforms(root / "transforms.json", cams, names)
    return root


def test_reconstruct_writes_exports_and_metrics(views_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["reconstruct", str(views_dir), "--out", str(out), "--steps", "40", "--holdout", "every-4",
                 "--video-frames", "6", "--backend", "cpu"])
    assert code == 0
    for name in ("scene.ply", "scene.splat", "scene.glb", "scene.mp4", "scene.gif", "scene_camera_path.json"):
        assert (out / name).stat().st_size > 0, name
    m = json.loads((out / "metrics.json").read_text())
    for key in ("psnr", "ssim", "lpips", "lpips_impl", "psnr_per_view", "ssim_per_view", "lpips_per_view",
                "n_gaussians", "seconds"):
        assert key in m, key
    assert m["views"] == [3, 7] and len(m["psnr_per_view"]) == 2 and m["lpips_impl"].startswith(("lpips", "stlpips"))
    assert sorted(p.name for p in (out / "heatmaps").iterdir()) == ["view_003.png", "view_007.png"]
    assert "PSNR" in capsys.readouterr().out


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


def test_bench_raster_runs_small(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["bench", "raster", "--gaussians", "300", "--sizes", "32", "--repeats", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {r["backend"] for r in rows} == {"cpu", "torch"}
    assert all(set(r) >= {"backend", "gaussians", "width", "height", "fwd_bwd_ms"} for r in rows)
    assert "| backend |" in capsys.readouterr().out
