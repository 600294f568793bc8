"""`mvgen run --prompts FILE` (mvgen/batch.py): sharded across processes under `accelerate launch` (each prompt
exactly once, rows merged in prompt order), and resumable (a rerun skips finished prompts, redoes missing ones)."""

import json
import os
import socket
import subprocess
import sys

import pytest

from mvgen.batch import is_batch_folder, shard
from mvgen.cli import main
from mvgen.fileio import read_marker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(processes: int, argv: list[str]) -> subprocess.CompletedProcess:
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--num_cpu_threads_per_process", "1", "--main_process_port", str(_free_port())]
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1")
    return subprocess.run([*launch, "-m", "mvgen.cli", *argv], capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture
def batch_args(tiny_model, fast_config, tmp_path):
    cfg = tmp_path / "app.yaml"
    cfg.write_text(json.dumps(fast_config.to_dict()))  # JSON is YAML
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red mug\na blue vase\na green chair\n")
    return ["run", "--prompts", str(prompts), "--model", str(tiny_model), "--config", str(cfg), "--views", "2",
            "--steps", "1", "--views-only"]


def test_shards_cover_every_prompt_once():
    for n in range(0, 9):
        for world in (1, 2, 3):
            parts = [shard(n, r, world) for r in range(world)]
            assert sorted(i for p in parts for i in p) == list(range(n))


def test_two_processes_split_the_batch_and_a_rerun_skips_finished_prompts(batch_args, tmp_path):
    out = tmp_path / "b"
    p = _launch(2, [*batch_args, "--out", str(out)])
    assert p.returncode == 0, p.stderr[-3000:]
    rows = json.loads((out / "summary.json").read_text())
    assert [r["prompt"] for r in rows] == ["a red mug", "a blue vase", "a green chair"]
    names = ["000_a_red_mug", "001_a_blue_vase", "002_a_green_chair"]
    assert sorted(e.name for e in out.iterdir()) == [".mvgen-output.json", *names, "summary.json"]
    # process 0 ran prompts 0 and 2, process 1 prompt 1 (their progress bars say so); one summary printed
    assert "[0] a red mug" in p.stderr and "[1] a blue vase" in p.stderr and "[0] a green chair" in p.stderr
    assert "[1] a red mug" not in p.stderr and p.stdout.count("| a blue vase |") == 1
    for name, prompt in zip(names, ("a red mug", "a blue vase", "a green chair")):
        assert json.loads((out / name / "manifest.json").read_text())["prompt"] == prompt
    assert read_marker(out)["batch"]["settings"]["views"] == 2 and is_batch_folder(out)

    # a rerun (one process) skips all three; with one prompt folder gone, only that one is redone
    stamp = {n: (out / n / "manifest.json").stat().st_mtime_ns for n in names}
    assert main([*batch_args, "--out", str(out)]) == 0
    assert all((out / n / "manifest.json").stat().st_mtime_ns == stamp[n] for n in names)
    import shutil

    shutil.rmtree(out / names[1])
    (out / "summary.json").unlink()  # as if the batch had been killed before the end
    p = _launch(2, [*batch_args, "--out", str(out)])
    assert p.returncode == 0, p.stderr[-3000:]
    assert "2 finished earlier, skipped" in p.stdout and "[1] a blue vase" in p.stderr
    assert "a red mug" not in p.stderr  # skipped: its folder is a finished output of the same settings
    assert (out / names[0] / "manifest.json").stat().st_mtime_ns == stamp[names[0]]
    assert [r["prompt"] for r in json.loads((out / "summary.json").read_text())] == \
        ["a red mug", "a blue vase", "a green chair"]

    # other settings: every prompt is redone
    assert main([*batch_args, "--seed", "7", "--out", str(out)]) == 0
    assert all((out / n / "manifest.json").stat().st_mtime_ns != stamp[n] for n in (names[0], names[2]))
    assert json.loads((out / names[0] / "manifest.json").read_text())["seed"] == 7


def test_a_foreign_folder_is_refused_by_process_zero_and_every_process_exits(batch_args, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    p = _launch(2, [*batch_args, "--out", str(out)])
    assert p.returncode != 0
    assert p.stderr.count("is not an earlier `mvgen run` output") == 1  # one line, from process 0
    assert sorted(e.name for e in out.iterdir()) == ["notes.txt"]


def test_one_prompt_under_several_processes_is_refused(tiny_model, tmp_path):
    p = _launch(2, ["run", "a red mug", "--model", str(tiny_model), "--out", str(tmp_path / "o"), "--views-only"])
    assert p.returncode != 0 and "shard a batch across processes with --prompts" in p.stderr
    assert not (tmp_path / "o").exists()
