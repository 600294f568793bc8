"""`mvgen dataset` end to end (in-process): layout, readability, resume, workers, bad input."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mvgen.cameras import load_views
from mvgen.cli import main
from mvgen.data.captions import parse_caption, split_of


def _make(out, *extra):
    return main(["dataset", "--out", str(out), "--objects", "6", "--views", "4", "--resolution", "64", "--quiet",
                 *extra])


def _index(out):
    return [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]


def _snapshot(out):
    return {p.relative_to(out): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "d"
    assert _make(out, "--preview") == 0
    return out


def test_writes_a_valid_dataset(dataset):
    rows = _index(dataset)
    assert len(rows) == 6 and len({r["id"] for r in rows}) == 6
    for r in rows:
        spec = parse_caption(r["caption"])
        assert r["split"] == split_of(spec) and r["category"] == spec.category and r["color"] == spec.color
        folder = dataset / r["id"]
        assert (folder / "caption.txt").read_text().strip() == r["caption"]
        meta = json.loads((folder / "transforms.json").read_text())
        assert [f["file_path"] for f in meta["frames"]] == [f"views/{i:03d}.png" for i in range(4)]
        assert 10.0 <= meta["elevation_deg"] <= 40.0
        views = load_views(folder)
        assert views.images.shape == (4, 4, 64, 64) and len(views.cameras) == 4
        assert np.allclose(views.cameras.centers.norm(dim=-1).numpy(), 3.2, atol=1e-4)
        alpha = views.images[:, 3]
        assert (alpha.flatten(1).max(1).values > 0).all()  # every view shows the object
        assert alpha[:, 0].max() == 0 and alpha[:, -1].max() == 0 and alpha[:, :, 0].max() == 0
        with Image.open(folder / "views" / "000.png") as im:
            assert im.mode == "RGBA" and im.size == (64, 64)
    with Image.open(dataset / "preview.png") as im:
        assert im.width >= 4 * 64 and im.height >= 6 * 64
    assert not [p for p in dataset.iterdir() if p.name.startswith(".")]


def test_resume_skips_done_objects_and_repairs_interrupted_ones(dataset, tmp_path, capsys):
    out = tmp_path / "d"
    shutil.copytree(dataset, out)
    before = _snapshot(out)
    assert _make(out) == 0
    assert "0 objects written, 6 already done" in capsys.readouterr().out
    after = _snapshot(out)
    assert {k: v[1] for k, v in after.items()} == {k: v[1] for k, v in before.items()}
    assert all(after[k][0] == before[k][0] for k in before if k.name != "index.jsonl")  # no object rewritten

    # A killed run: a temp folder, an object missing a view, no index.
    rows = _index(out)
    (out / ".tmp-blue_mug-999" / "views").mkdir(parents=True)
    (out / rows[2]["id"] / "views" / "003.png").unlink()
    (out / "index.jsonl").unlink()
    assert _make(out) == 0
    assert "1 objects written, 5 already done" in capsys.readouterr().out
    assert _index(out) == rows
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    view = Path(rows[2]["id"]) / "views" / "003.png"
    assert (out / view).read_bytes() == (dataset / view).read_bytes()  # re-rendered identically

    # Growing the dataset keeps the first objects in order.
    assert main(["dataset", "--out", str(out), "--objects", "8", "--views", "4", "--resolution", "64", "--quiet"]) == 0
    assert [r["id"] for r in _index(out)][:6] == [r["id"] for r in rows] and len(_index(out)) == 8


def test_elevation_per_view_varies_the_height_of_each_view_and_keeps_the_objects(dataset, tmp_path, capsys):
    out = tmp_path / "pv"
    assert _make(out, "--elevation-per-view") == 0
    assert json.loads((out / "dataset.json").read_text())["elevation_per_view"] is True
    assert "elevation_per_view" not in json.loads((dataset / "dataset.json").read_text())  # old datasets resume
    assert [r["caption"] for r in _index(out)] == [r["caption"] for r in _index(dataset)]  # same objects
    spread = []
    for r in _index(out):
        meta = json.loads((out / r["id"] / "transforms.json").read_text())
        elev = np.array(meta["elevation_deg"])
        assert elev.shape == (4,) and ((elev >= 10.0) & (elev <= 40.0)).all()
        centers = load_views(out / r["id"]).cameras.centers.numpy()
        assert np.allclose(np.degrees(np.arcsin(centers[:, 2] / 3.2)), elev, atol=1e-3)  # cameras at those heights
        spread.append(np.ptp(elev))
    assert max(spread) > 5.0
    assert _make(out) == 2  # resuming a per-view dataset without the flag
    assert "elevation_per_view" in capsys.readouterr().err


def test_workers_write_the_same_files_as_one_process(tmp_path):
    args = ["--objects", "3", "--views", "2", "--resolution", "32", "--seed", "5", "--quiet"]
    assert main(["dataset", "--out", str(tmp_path / "a"), *args]) == 0
    assert main(["dataset", "--out", str(tmp_path / "b"), "--workers", "2", *args]) == 0
    a, b = _snapshot(tmp_path / "a"), _snapshot(tmp_path / "b")
    assert a.keys() == b.keys() and all(a[k][1] == b[k][1] for k in a)


@pytest.mark.parametrize("args, message", [
    (["--views", "0"], "--views"),
    (["--views", "65"], "--views"),
    (["--objects", "0"], "--objects"),
    (["--resolution", "8"], "--resolution"),
    (["--resolution", "2048"], "--resolution"),
    (["--elevation", "50", "10"], "--elevation"),
    (["--elevation", "-95", "0"], "--elevation"),
    (["--workers", "0"], "--workers"),
])
def test_bad_input_exits_2_naming_the_field(tmp_path, capsys, args, message):
    # argparse keeps the last occurrence of an option: the bad value overrides the valid base
    argv = ["dataset", "--out", str(tmp_path / "d"), "--objects", "2", "--views", "2", "--resolution", "32",
            "--quiet", *args]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # nothing written


def test_bad_output_folders_exit_2_and_keep_existing_files(dataset, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["dataset", "--out", str(blocker / "sub"), "--objects", "1", "--quiet"]) == 2
    assert "cannot write" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["dataset", "--out", str(other), "--objects", "1", "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err and (other / "notes.txt").read_text() == "mine"
    before = _snapshot(dataset)
    argv = ["dataset", "--out", str(dataset), "--objects", "6", "--views", "8", "--resolution", "64", "--quiet"]
    assert main(argv) == 2  # resuming with other settings
    assert "views" in capsys.readouterr().err
    assert _snapshot(dataset) == before


def test_resume_refuses_a_dataset_from_another_generator_version(dataset, tmp_path, capsys):
    out = tmp_path / "d"
    shutil.copytree(dataset, out)
    meta = json.loads((out / "dataset.json").read_text())
    (out / "dataset.json").write_text(json.dumps({**meta, "format": "mvgen-procedural-0"}))
    assert _make(out) == 2
    assert "generator version" in capsys.readouterr().err
