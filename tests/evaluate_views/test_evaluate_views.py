"""`mvgen evaluate views` (mvgen/evaluate_views.py): the same object as a grid image, a video and loose images
without alpha scores as its transforms.json folder; our generated views through an orbit rig score as the job's
own report; batches resume; bad input is one line naming the field and writes nothing."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from mvgen.cli import main

FIT = ["--steps", "30", "--seed", "0"]


def _means(out):
    return {name: m["mean"] for name, m in json.loads((out / "results.json").read_text())["models"].items()}


def test_grid_video_and_loose_views_score_as_the_transforms_folder(orbit_object, generator_outputs, tmp_path,
                                                                   capsys):
    folder, rig = orbit_object
    ref_out, masked_out, out = tmp_path / "ref", tmp_path / "masked", tmp_path / "cmp"
    assert main(["evaluate", "views", str(folder), "--out", str(ref_out), *FIT]) == 0  # its own cameras and alpha
    assert main(["evaluate", "views", str(folder), "--mask", "background", "--out", str(masked_out), *FIT]) == 0
    g = generator_outputs
    assert main(["evaluate", "views", str(g["grid"]), str(g["video"]), str(g["loose"]), "--names",
                 "grid,video,loose", "--grid", "2x4", "--grid", "-", "--grid", "-", "--rig", rig, "--out", str(out),
                 *FIT]) == 0
    table = capsys.readouterr().out
    assert "| grid (1) | 8 |" in table and "| loose (1) | 8 |" in table and "cross-render PSNR dB" in table
    ref, masked, means = _means(ref_out)["mug"], _means(masked_out)["mug"], _means(out)
    cols = [f"{p}_{k}" for p in ("heldout", "cross") for k in ("psnr", "ssim", "lpips")]
    for name, (db, unit) in {"grid": (0.05, 0.005), "loose": (0.05, 0.005), "video": (0.5, 0.02)}.items():
        # the same pixels and the same estimated mask as the transforms.json folder with --mask background (the
        # video is lossy: H.264)
        for col in cols:
            assert abs(means[name][col] - masked[col]) <= (db if col.endswith("psnr") else unit), (name, col)
        # against the rendered alpha: the estimated mask loses the soft edges (measured: 0.5 dB, 0.06 SSIM)
        assert abs(means[name]["heldout_psnr"] - ref["heldout_psnr"]) < 1.0, (name, means[name], ref)
        assert abs(means[name]["heldout_ssim"] - ref["heldout_ssim"]) < 0.08, (name, means[name], ref)
        assert abs(means[name]["heldout_lpips"] - ref["heldout_lpips"]) < 0.03, (name, means[name], ref)
    # the mask is estimated, reported and saved; the per-object folder is a posed-views folder with the rig
    metrics = json.loads((out / "grid" / "grid" / "metrics.json").read_text())
    assert metrics["input"]["mask"]["mode"] == "background" and metrics["input"]["mask"]["background"] == [255] * 3
    assert metrics["input"]["mask"]["tolerance"] == 0.1 and metrics["protocol"] == "holdout every-2"
    with Image.open(out / "grid" / "grid" / "masks.png") as im:
        assert im.size[0] > 8 * 32
    ref_meta = json.loads((folder / "transforms.json").read_text())
    meta = json.loads((out / "loose" / "loose" / "transforms.json").read_text())
    assert np.allclose([f["transform_matrix"] for f in meta["frames"]],
                       [f["transform_matrix"] for f in ref_meta["frames"]], atol=1e-4)
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["model"], r["object"]) for r in rows] == [("grid", "grid"), ("grid", "mean"), ("video", "orbit"),
                                                         ("video", "mean"), ("loose", "loose"), ("loose", "mean")]
    assert rows[0]["background"] == "255/255/255" and float(rows[0]["heldout_psnr"]) > 10
    assert (out / "compare.md").read_text().count("\n") == 5  # header, rule, three models
    for metric in ("heldout_psnr", "heldout_ssim", "heldout_lpips", "cross_psnr"):
        with Image.open(out / f"compare_{metric}.png") as im:
            assert im.format == "PNG"


def test_a_rerun_resumes_and_other_settings_are_refused(generator_outputs, orbit_object, tmp_path, capsys):
    _, rig = orbit_object
    batch = tmp_path / "model"
    batch.mkdir()
    for name in ("a", "b"):
        (batch / f"{name}.png").write_bytes(generator_outputs["grid"].read_bytes())
    out = tmp_path / "out"
    args = ["evaluate", "views", str(batch), "--grid", "2x4", "--rig", rig, "--out", str(out),
            "--protocols", "heldout", "--no-lpips", *FIT]
    assert main(args) == 0
    first = (out / "model" / "a" / "metrics.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0
    assert "(2 done before, skipped)" in capsys.readouterr().out
    assert (out / "model" / "a" / "metrics.json").stat().st_mtime_ns == first
    (out / "model" / "b" / "metrics.json").unlink()  # no longer a finished output: evaluated again
    (out / "model" / "b" / ".mvgen-output.json").unlink()
    assert main(args) == 2 and "not an earlier" in capsys.readouterr().err  # never replaced: not ours any more
    assert main([*args[:-4], "--steps", "40", "--seed", "0"]) == 2
    err = capsys.readouterr().err
    assert "model was evaluated with other settings (fit, steps)" in err and len(err.strip().splitlines()) == 1


def test_generated_views_through_an_orbit_rig_score_as_the_jobs_report(tiny_model, fast_config, tmp_path):
    from mvgen.evaluate_views import EvalSettings, evaluate_models
    from mvgen.job import load_model, run_prompt
    from mvgen.settings import check_run_settings

    cfg = fast_config.with_overrides(views=4, views_min=2)
    settings = check_run_settings(cfg, 4, 20.0, 2, 3.0, 5, 20)
    pipe, _ = load_model(tiny_model, "cpu")
    run = run_prompt(pipe, "a red mug", tmp_path / "run", cfg, settings, tiny_model)
    job = run.metrics
    # the loose views/*.png + an orbit. The tiny random model draws noise: mvgen.generate's alpha (estimated from
    # white) is 1 everywhere, the job fits them opaque, and so does mask "none" ("auto" finds no background)
    views = tmp_path / "run" / "views"
    ev = EvalSettings(rig="orbit:views=4,elev=20", mask="none", protocols=("heldout",), steps=20, seed=5)
    res = evaluate_models([("ours", views)], tmp_path / "ev", ev, cfg.with_overrides(asset_steps=0),
                          show_progress=False)
    row = res["models"]["ours"]["objects"][0]
    assert row["views"] == 4 and row["mask"] == "none" and row["kind"] == "images"
    assert all(np.asarray(Image.open(f))[..., 3].min() == 255 for f in sorted(views.glob("*.png")))
    for k in ("psnr", "ssim", "lpips"):
        assert row[f"heldout_{k}"] == pytest.approx(job[k], abs=1e-5), k


@pytest.mark.parametrize("case, field", [
    ("preset", "rig: unknown preset 'zero999'"),
    ("count", "rig: zero123pp-v1.2 has 6 views, the input has 8"),
    ("grid", "grid: 3x3 tiles do not divide grid.png (128x64)"),
    ("video", "video: cannot read broken.mp4"),
    ("background", "background: cannot be estimated"),
    ("no-rig", "rig: loose has no transforms.json; give --rig"),
])
def test_bad_input_is_one_line_naming_the_field_and_writes_nothing(case, field, generator_outputs, tmp_path,
                                                                    capsys):
    g = generator_outputs
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video at all")
    (tmp_path / "noise").mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "noise" / f"{i}.png")
    args = {"preset": [str(g["loose"]), "--rig", "zero999"],
            "count": [str(g["loose"]), "--rig", "zero123pp-v1.2"],
            "grid": [str(g["grid"]), "--grid", "3x3", "--rig", "orbit:views=9"],
            "video": [str(tmp_path / "broken.mp4"), "--rig", "orbit:elev=20"],
            "background": [str(tmp_path / "noise"), "--rig", "orbit:elev=20"],
            "no-rig": [str(g["loose"])]}[case]
    out = tmp_path / "out"
    assert main(["evaluate", "views", *args, "--out", str(out), *FIT]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and field in err[0], err
    assert not out.exists()


def test_rig_and_grid_once_or_once_per_path(generator_outputs, tmp_path, capsys):
    from mvgen.evaluate_views import _per_path

    assert _per_path("--rig", None, 2) == [None, None]
    assert _per_path("--rig", ["mvdream"], 3) == ["mvdream"] * 3
    assert _per_path("--grid", ["2x4", "-"], 2) == ["2x4", None]
    with pytest.raises(ValueError, match=r"--rig: give it once or once per PATH \(2\), got 3"):
        _per_path("--rig", ["a", "b", "c"], 2)
    g = generator_outputs
    assert main(["evaluate", "views", str(g["grid"]), str(g["loose"]), "--rig", "mvdream", "--rig", "mvdream",
                 "--rig", "mvdream", "--out", str(tmp_path / "o")]) == 2
    assert "--rig: give it once or once per PATH (2), got 3" in capsys.readouterr().err
    assert main(["evaluate", "views", str(g["grid"]), "--names", "a,b", "--out", str(tmp_path / "o")]) == 2
    assert "--names: give 1 comma-separated names" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_python_api_evaluates_a_grid_image_with_a_rig(generator_outputs, orbit_object, tmp_path):
    import mvgen

    _, rig = orbit_object
    res = mvgen.evaluate_generator_views(generator_outputs["grid"], tmp_path / "api", rig=rig, grid="2x4",
                               protocols="heldout", steps=20)
    (name, model), = res["models"].items()
    assert name == "grid.png" and model["objects"][0]["views"] == 8 and model["mean"]["heldout_psnr"] > 10
    assert (tmp_path / "api" / "results.csv").is_file()
    with pytest.raises(ValueError, match=r"rig: unknown preset"):
        mvgen.evaluate_generator_views(generator_outputs["grid"], tmp_path / "api2", rig="nope")
