"""mvgen/fileio.py: atomic files, output folders that are replaced only when they are ours, orphan temp folders."""

import ast
import os
import sys
from pathlib import Path

import pytest

from mvgen import fileio
from mvgen.fileio import (MARKER, OutputError, OutputExistsError, atomic_path, atomic_write_text, build_output_dir,
                          check_output_file, clean_orphans, foreign_files, is_output_of, pid_alive, prepare_output_dir,
                          read_marker)


def make_output(out: Path, command: str = "generate", files=("a.txt", "sub/b.txt")) -> Path:
    with build_output_dir(out, command) as tmp:
        for f in files:
            (tmp / f).parent.mkdir(parents=True, exist_ok=True)
            (tmp / f).write_text(f)
    return out


def foreign(folder: Path) -> Path:
    (folder / "notes").mkdir(parents=True)
    (folder / "notes" / "keep.txt").write_text("mine")
    return folder


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_fileio_is_a_stdlib_leaf():
    tree = ast.parse(Path(fileio.__file__).read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
    assert names - {"__future__"} <= set(sys.stdlib_module_names)


# ------------------------------------------------------------------------------------------------------ files

def test_atomic_write_text_and_atomic_path(tmp_path):
    target = tmp_path / "r.json"
    atomic_write_text(target, "{}")
    assert target.read_text() == "{}" and os.listdir(tmp_path) == ["r.json"]
    with atomic_path(tmp_path / "x.png") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp.name.startswith(".x.tmp")
        tmp.write_text("new")
    assert (tmp_path / "x.png").read_text() == "new"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "{}" and sorted(os.listdir(tmp_path)) == ["r.json", "x.png"]


def test_check_output_file(tmp_path):
    assert check_output_file(tmp_path / "new" / ".." / "r.json", "--json") == (tmp_path / "r.json")
    (tmp_path / "d").mkdir()
    with pytest.raises(OutputError, match="^--json .*d: is a folder"):
        check_output_file(tmp_path / "d", "--json")
    (tmp_path / "f").write_text("")
    with pytest.raises(OutputError, match="^--json .*cannot write"):
        check_output_file(tmp_path / "f" / "r.json", "--json")


# ---------------------------------------------------------------------------------------------------- folders

def test_build_output_dir_writes_a_marker_listing_its_files(tmp_path):
    out = make_output(tmp_path / "o")
    assert read_marker(out) == {"command": "generate", "version": 1, "files": ["a.txt", "sub/b.txt"]}
    assert is_output_of(out, "generate") and not is_output_of(out, "run") and foreign_files(out) == []
    assert os.listdir(tmp_path) == ["o"]  # the temp folder was renamed


def test_prepare_accepts_new_empty_and_own_folders(tmp_path):
    assert prepare_output_dir(tmp_path / "x" / "y", "run") == tmp_path / "x" / "y"  # parents created, not y
    assert (tmp_path / "x").is_dir() and not (tmp_path / "x" / "y").exists()
    (tmp_path / "empty").mkdir()
    prepare_output_dir(tmp_path / "empty", "run")
    prepare_output_dir(make_output(tmp_path / "own"), "generate")


@pytest.mark.parametrize("setup, why", [
    (lambda d: foreign(d), "no marker"),
    (lambda d: make_output(d, "reconstruct"), "it is a `mvgen reconstruct` output"),
    (lambda d: (make_output(d), (d / "added.txt").write_text("x")), "files added since: added.txt"),
])
def test_prepare_refuses_folders_that_are_not_ours(tmp_path, setup, why):
    out = tmp_path / "o"
    setup(out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(OutputExistsError) as e:
        prepare_output_dir(out, "generate", flag="--out")
    msg = str(e.value)
    assert msg.startswith(f"--out {out}: exists and is not an earlier `mvgen generate` output")
    assert why in msg and "--overwrite" in msg and "\n" not in msg
    assert isinstance(e.value, ValueError)  # the CLI turns it into one line and exit code 2
    prepare_output_dir(out, "generate", overwrite=True)  # allowed, but nothing is touched yet
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_prepare_resolves_dotdot_and_symlinks_before_checking(tmp_path):
    a = foreign(tmp_path / "a")
    (a / "b").mkdir()
    with pytest.raises(OutputExistsError, match="no marker"):
        prepare_output_dir(f"{a}/b/..", "generate")
    (tmp_path / "link").symlink_to(a)
    with pytest.raises(OutputExistsError, match=r"\(= .*a\)"):
        prepare_output_dir(tmp_path / "link", "generate")
    assert (a / "notes" / "keep.txt").read_text() == "mine" and (a / "b").is_dir()
    assert prepare_output_dir(tmp_path / "new" / ".." / "n", "run") == tmp_path / "n"


def test_prepare_refuses_a_file_and_an_unwritable_parent(tmp_path):
    (tmp_path / "f").write_text("data")
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="is a file"):
            prepare_output_dir(tmp_path / "f", "run", overwrite)
    with pytest.raises(OutputError, match="cannot write"):
        prepare_output_dir(tmp_path / "f" / "sub", "run")
    assert (tmp_path / "f").read_text() == "data"


def test_prepare_accept_recognises_earlier_outputs_without_marker(tmp_path):
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "model_index.json").write_text("{}")
    prepare_output_dir(legacy, "export-model", accept=lambda d: (d / "model_index.json").is_file())
    with pytest.raises(OutputExistsError):
        prepare_output_dir(legacy, "export-model")


def test_build_replaces_own_output_without_mixing(tmp_path):
    out = make_output(tmp_path / "o", files=("a.txt", "old.txt"))
    make_output(out, files=("a.txt",))
    assert sorted(os.listdir(out)) == [MARKER, "a.txt"] and os.listdir(tmp_path) == ["o"]


def test_build_failure_keeps_the_old_folder_and_removes_the_temp(tmp_path):
    out = foreign(tmp_path / "o")
    with pytest.raises(RuntimeError), build_output_dir(out, "run", overwrite=True) as tmp:
        (tmp / "partial").write_text("x")
        raise RuntimeError("stage failed")
    assert os.listdir(out) == ["notes"] and os.listdir(tmp_path) == ["o"]
    with pytest.raises(OutputExistsError), build_output_dir(out, "run"):
        raise AssertionError("not reached: refused on entry")
    with build_output_dir(out, "run", overwrite=True) as tmp:  # success: replaced
        (tmp / "r.txt").write_text("x")
    assert sorted(os.listdir(out)) == [MARKER, "r.txt"] and os.listdir(tmp_path) == ["o"]


def test_build_rechecks_before_replacing(tmp_path):
    out = make_output(tmp_path / "o")
    with pytest.raises(OutputExistsError, match="files added since: late.txt"), \
            build_output_dir(out, "generate") as tmp:
        (tmp / "a.txt").write_text("new")
        (out / "late.txt").write_text("written by someone while we worked")
    assert (out / "late.txt").is_file() and (out / "a.txt").read_text() == "a.txt"
    assert os.listdir(tmp_path) == ["o"]


# ----------------------------------------------------------------------------------------------------- orphans

def test_clean_orphans_removes_only_dead_temps_of_this_target(tmp_path, dead_pid):
    out = tmp_path / "o"
    dead = tmp_path / f".o.tmp{dead_pid}"
    (dead / "views").mkdir(parents=True)
    dead_n = tmp_path / f".o.tmp{dead_pid}-3"
    dead_n.mkdir()
    alive = tmp_path / f".o.tmp{os.getppid()}"
    alive.mkdir()
    other = tmp_path / f".other.tmp{dead_pid}"
    other.mkdir()
    a_file = tmp_path / f".o.tmp{dead_pid}9"
    a_file.write_text("not a folder")
    assert sorted(clean_orphans(out)) == sorted([dead, dead_n])
    assert hidden(tmp_path) == sorted(p.name for p in (alive, other, a_file))
    assert pid_alive(os.getpid()) and pid_alive(os.getppid()) and not pid_alive(dead_pid)


def test_clean_orphans_restores_an_output_moved_aside_by_a_killed_replace(tmp_path, dead_pid):
    out = make_output(tmp_path / "o")
    os.replace(out, tmp_path / f".o.old{dead_pid}-1")  # killed between the two renames of a replace
    prepare_output_dir(out, "generate")
    assert is_output_of(out, "generate") and os.listdir(tmp_path) == ["o"]
