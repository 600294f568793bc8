"""Every command that writes a folder never deletes one it did not write (design.md §7), table-driven:
`mvgen generate`, `mvgen run` (one prompt and --prompts), `mvgen reconstruct` and `mvgen export-model`."""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch

from mvgen.cli import main
from mvgen.fileio import MARKER, OutputExistsError, read_marker


def _pipeline_class():
    from mvgen.pipeline import PTDiTMultiViewPipeline

    return PTDiTMultiViewPipeline


@dataclass
class Case:
    """One command. ``argv(ctx, out, variant)``: its arguments (variant 0 / 1: two settings whose outputs differ).
    ``expensive``: (object, attribute) that starts the expensive work, patched to fail: refusals come first.
    ``fails``: (object, attribute) of a stage patched to raise OSError mid-run (a disk-full stand-in).
    ``stale``: a file variant 0 writes and variant 1 does not (a rerun must not mix both)."""
    command: str
    flag: str
    argv: Callable[[dict, Path, int], list[str]]
    expensive: Callable[[], tuple[object, str]]
    fails: Callable[[], tuple[object, str]]
    stale: str | None
    written: str  # a file every successful run writes


def _generate(ctx, out, variant):
    return ["generate", "a red mug", "--model", ctx["model"], "--steps", "1", "--views", "3" if variant == 0 else "2",
            "--out", str(out)]


def _run(ctx, out, variant):
    return ["run", "a red mug", "--model", ctx["model"], "--config", ctx["config"], "--steps", "1", "--views-only",
            "--views", "3" if variant == 0 else "2", "--out", str(out)]


def _batch(ctx, out, variant):
    prompts = Path(ctx["tmp"]) / f"prompts{variant}.txt"
    prompts.write_text("a red mug\na blue vase\n" if variant == 0 else "a red mug\n")
    return ["run", "--prompts", str(prompts), "--model", ctx["model"], "--config", ctx["config"], "--steps", "1",
            "--views-only", "--views", "2", "--out", str(out)]


def _reconstruct(ctx, out, variant):
    return ["reconstruct", ctx["views"], "--steps", "5", "--holdout", "every-2" if variant == 0 else "every-4",
            "--asset-steps", "5", "--video-frames", "2", "--no-lpips", "--backend", "cpu", "--out", str(out)]


def _export(ctx, out, variant):
    return ["export-model", ctx["model"], str(out), "--dtype", "bfloat16" if variant == 0 else "float32"]


def _module(name):
    import importlib

    return importlib.import_module(name)


CASES = [
    Case("generate", "--out", _generate, lambda: (_module("mvgen.generate"), "load_pipeline"),
         lambda: (_module("mvgen.generate"), "write_views"), "views/002.png", "manifest.json"),
    Case("run", "--out", _run, lambda: (_module("mvgen.job"), "load_model"),
         lambda: (_module("mvgen.job"), "zip_views"), "views/002.png", "views.zip"),
    Case("run", "--out", _batch, lambda: (_module("mvgen.job"), "load_model"),
         lambda: (_module("mvgen.job"), "zip_views"), "001_a_blue_vase/manifest.json", "summary.json"),
    Case("reconstruct", "--out", _reconstruct, lambda: (_module("mvgen.cameras"), "load_views"),
         lambda: (_module("reconstruction.export"), "export_all"), "heatmaps/view_001.png", "metrics.json"),
    Case("export-model", "DST", _export, lambda: (_pipeline_class(), "from_pretrained"),
         lambda: (_pipeline_class(), "save_pretrained"), None, "model_index.json"),
]
IDS = ["generate", "run", "run-batch", "reconstruct", "export-model"]


@pytest.fixture
def ctx(tiny_model, app_config_file, posed_views, tmp_path):
    return {"model": str(tiny_model), "config": str(app_config_file), "views": str(posed_views), "tmp": str(tmp_path)}


def foreign(folder: Path) -> dict:
    """A user's folder: a sentinel file and a sub-folder. Returns its content {relative path: text}."""
    (folder / "sub").mkdir(parents=True)
    (folder / "sentinel.txt").write_text("do not delete")
    (folder / "sub" / "data.csv").write_text("1,2")
    return content(folder)


def content(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def no_temps(parent: Path, name: str) -> bool:
    return not [p for p in parent.iterdir() if p.name.startswith(f".{name}.")]


def stop(*args, **kwargs):
    raise AssertionError("the expensive work started before the output folder was checked")


def one_line_error(capsys, case: Case) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error printed"
    assert err[-1].startswith(f"mvgen {case.command}: error: {case.flag} "), err[-1]
    return err[-1]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_foreign_folder_is_refused_before_any_work_and_kept(case, ctx, tmp_path, capsys, monkeypatch):
    out = tmp_path / "mine"
    before = foreign(out)
    monkeypatch.setattr(*case.expensive(), stop)
    assert main(case.argv(ctx, out, 0)) == 2
    line = one_line_error(capsys, case)
    assert f"is not an earlier `mvgen {case.command}` output" in line and "--overwrite" in line
    assert content(out) == before and no_temps(tmp_path, "mine")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_dotdot_out_does_not_touch_the_parent(case, ctx, tmp_path, capsys, monkeypatch):
    a = tmp_path / "a"
    before = foreign(a)
    (a / "b").mkdir()
    monkeypatch.setattr(*case.expensive(), stop)
    assert main(case.argv(ctx, Path(f"{a}/b/.."), 0)) == 2
    assert "is not an earlier" in one_line_error(capsys, case)
    assert content(a) == before and (a / "b").is_dir()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_file_is_refused_even_with_overwrite(case, ctx, tmp_path, capsys, monkeypatch):
    target = tmp_path / "f"
    target.write_text("data")
    monkeypatch.setattr(*case.expensive(), stop)
    assert main([*case.argv(ctx, target, 0), "--overwrite"]) == 2
    assert "is a file" in one_line_error(capsys, case) and target.read_text() == "data"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_orphan_temp_folders_of_dead_runs_are_removed(case, ctx, tmp_path, dead_pid, monkeypatch):
    dead, alive = tmp_path / f".o.tmp{dead_pid}", tmp_path / f".o.tmp{os.getppid()}"
    (dead / "views").mkdir(parents=True)
    alive.mkdir()

    def expensive(*args, **kwargs):
        raise ValueError("stopped here")

    monkeypatch.setattr(*case.expensive(), expensive)
    assert main(case.argv(ctx, tmp_path / "o", 0)) == 2
    assert not dead.exists() and alive.is_dir()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_rerun_replaces_own_output_cleanly_and_overwrite_only_after_success(case, ctx, tmp_path, capsys,
                                                                             monkeypatch):
    # a rerun into the command's own finished output replaces it: nothing of the first run is left
    out = tmp_path / "o"
    assert main(case.argv(ctx, out, 0)) == 0
    assert (out / case.written).is_file() and read_marker(out)["command"] == case.command
    if case.stale:
        assert (out / case.stale).is_file()
    assert main(case.argv(ctx, out, 1)) == 0
    assert (out / case.written).is_file() and no_temps(tmp_path, "o")
    if case.stale:
        assert not (out / case.stale).exists()
    if case.command == "export-model":  # the rerun's weights, not a mix
        from safetensors import safe_open

        with safe_open(next((out / "transformer").glob("*.safetensors")), "pt") as f:
            assert f.get_tensor(next(iter(f.keys()))).dtype == torch.float32

    # --overwrite on a foreign folder: a failure half-way leaves it as it was, success replaces it
    mine = tmp_path / "mine"
    before = foreign(mine)
    obj, attr = case.fails()
    original = getattr(obj, attr)

    def fail_halfway(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(obj, attr, fail_halfway)
    capsys.readouterr()
    assert main([*case.argv(ctx, mine, 0), "--overwrite"]) == 2
    assert "disk full" in capsys.readouterr().err
    assert content(mine) == before and no_temps(tmp_path, "mine")
    monkeypatch.setattr(obj, attr, original)
    assert main([*case.argv(ctx, mine, 0), "--overwrite"]) == 0
    assert (mine / case.written).is_file() and not (mine / "sentinel.txt").exists() and no_temps(tmp_path, "mine")
    assert read_marker(mine)["command"] == case.command


def test_export_model_keeps_training_and_replaces_the_shipped_layout(ctx, tmp_path):
    """An export without marker (like assets/mvgen-tiny) is replaced, its training/ kept; a README added next to
    the pipeline's components makes it a folder we did not (only) write: refused."""
    import shutil

    dst = tmp_path / "shipped"
    shutil.copytree(ctx["model"], dst)
    (dst / "training").mkdir()
    (dst / "training" / "curves.csv").write_text("step,loss")
    assert not (dst / MARKER).exists()
    assert main(["export-model", ctx["model"], str(dst)]) == 0
    assert (dst / "training" / "curves.csv").read_text() == "step,loss" and (dst / MARKER).is_file()
    (dst / "training" / "later.md").write_text("notes added after the export")  # training/ is carried over
    assert main(["export-model", ctx["model"], str(dst)]) == 0
    assert (dst / "training" / "later.md").is_file()
    (dst / "README.md").write_text("mine")
    assert main(["export-model", ctx["model"], str(dst)]) == 2
    assert (dst / "README.md").read_text() == "mine"


def test_library_calls_refuse_before_running(fast_config, posed_views, tmp_path):
    """The Python API (what the app calls) refuses a foreign folder before touching the pipeline (None here)."""
    from mvgen.generate import generate_to_folder
    from mvgen.job import run_prompt, run_views
    from mvgen.settings import check_run_settings

    out = tmp_path / "mine"
    before = foreign(out)
    settings = check_run_settings(fast_config, 2, 20, 1, 3.0, 0, 20)
    with pytest.raises(OutputExistsError, match="`mvgen generate`"):
        generate_to_folder(None, "a red mug", out)
    with pytest.raises(OutputExistsError, match="`mvgen run`"):
        run_prompt(None, "a red mug", out, fast_config, settings)
    with pytest.raises(OutputExistsError, match="`mvgen run-views`"):
        run_views(posed_views, out, fast_config, 20)
    assert content(out) == before


@pytest.mark.parametrize("argv, message", [
    (["reconstruct", "VIEWS", "--video-frames", "0", "--out", "OUT"], "--video-frames must be at least 1"),
    (["run", "a red mug", "--video-frames", "0", "--out", "OUT"], "video_frames must be a positive integer"),
    (["evaluate", "generation", "--json", "TMP"], "--json"),
    (["evaluate", "generation", "--json", "FILE/r.json"], "--json"),
])
def test_bad_arguments_fail_before_expensive_work(argv, message, ctx, tmp_path, capsys, monkeypatch):
    for obj, attr in ((_module("mvgen.cameras"), "load_views"), (_module("mvgen.job"), "load_model"),
                      (_module("mvgen.generate"), "load_pipeline")):
        monkeypatch.setattr(obj, attr, stop)
    (tmp_path / "file").write_text("")
    subst = {"VIEWS": ctx["views"], "OUT": str(tmp_path / "o"), "TMP": str(tmp_path),
             "FILE/r.json": str(tmp_path / "file" / "r.json")}
    assert main([subst.get(a, a) for a in argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
