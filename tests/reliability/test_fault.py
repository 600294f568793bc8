"""A run killed mid-fit (SIGKILL: no cleanup of ours runs) leaves nothing complete-looking: no OUT (or the earlier
OUT intact) and only our temporary folder ``.OUT.tmp<pid>``, without the finished-output marker; the next run
removes that folder and succeeds (issue 15, Build 7). Real `mvgen reconstruct` / `mvgen run` processes on the tiny
test model and views."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mvgen.fileio import MARKER, pid_alive, read_marker

FIT_STARTED = "fitting Gaussians: step"  # the fit's progress line (mvgen.job)
ENDLESS = 5000  # fitting steps of the run to kill: it is killed a few steps in


@pytest.fixture(scope="module")
def quick_config(fast_config, tmp_path_factory):
    """``fast_config`` without LPIPS and with a short asset continuation, as a file for `mvgen run --config`."""
    path = tmp_path_factory.mktemp("faultcfg") / "app.yaml"
    path.write_text(json.dumps({**fast_config.to_dict(), "with_lpips": False, "asset_steps": 5}))
    return path


def _argv(command: str, out: Path, steps: int, posed_views: Path, tiny_model: Path, config: Path) -> list[str]:
    if command == "reconstruct":
        args = ["reconstruct", str(posed_views), "--steps", str(steps), "--asset-steps", "5", "--video-frames", "2",
                "--no-lpips"]
    else:
        args = ["run", "a red mug", "--model", str(tiny_model), "--config", str(config), "--steps", "1", "--views",
                "2", "--recon-steps", str(steps), "--video-frames", "2"]
    return [sys.executable, "-m", "mvgen.cli", *args, "--backend", "cpu", "--out", str(out)]


def _env() -> dict:
    # one thread (the machine is shared); the progress bar shows every step it is given (no adaptive skipping)
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
            "TQDM_MINITERS": "1", "TQDM_MININTERVAL": "0"}


def _run(argv: list[str], log: Path) -> None:
    with open(log, "w") as err:
        rc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=err, env=_env(), timeout=300).returncode
    assert rc == 0, log.read_text()[-2000:]


def _kill_mid_fit(argv: list[str], log: Path, timeout_s: float = 240.0) -> int:
    """Start ``argv``, SIGKILL it once its stderr shows the fit running; its pid."""
    with open(log, "w") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=_env())
    t0 = time.time()
    try:
        while FIT_STARTED not in log.read_text(errors="replace"):
            assert proc.poll() is None, f"exited ({proc.returncode}) before fitting: {log.read_text()[-2000:]}"
            assert time.time() - t0 < timeout_s, f"no fitting after {timeout_s:.0f} s: {log.read_text()[-2000:]}"
            time.sleep(0.05)
        time.sleep(0.3)  # a few steps into the fit
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return proc.pid


def _content(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _complete(out: Path) -> bool:
    """A finished output: the marker, listing files that all exist."""
    marker = read_marker(out)
    return bool(marker) and all((out / f).exists() for f in marker["files"])


@pytest.mark.parametrize("command, earlier", [("reconstruct", False), ("run", True)],
                         ids=["reconstruct-fresh", "run-over-earlier-output"])
def test_killed_mid_fit_leaves_nothing_complete_looking(command, earlier, tmp_path, posed_views, tiny_model,
                                                        quick_config):
    parent = tmp_path / "work"
    parent.mkdir()
    (parent / "sentinel.txt").write_text("not ours")
    out = parent / "out"
    argv = lambda steps: _argv(command, out, steps, posed_views, tiny_model, quick_config)  # noqa: E731
    before = None
    if earlier:
        _run(argv(20), tmp_path / "first.log")
        assert _complete(out)
        before = _content(out)

    pid = _kill_mid_fit(argv(ENDLESS), tmp_path / "killed.log")

    temps = [p for p in parent.iterdir() if p.name not in ("out", "sentinel.txt")]
    assert [p.name for p in temps] and all(re.fullmatch(rf"\.out\.tmp{pid}(-\d+)?", p.name) for p in temps), temps
    assert not [p for t in temps for p in t.rglob(MARKER)], "a killed run left a finished-output marker"
    if earlier:
        assert _content(out) == before  # the earlier output, untouched
    else:
        assert not out.exists()
    assert (parent / "sentinel.txt").read_text() == "not ours"

    _run(argv(20), tmp_path / "rerun.log")
    assert _complete(out)
    if not pid_alive(pid):  # (a reused pid keeps its folder: it may be a live run's)
        assert not [p for p in parent.iterdir() if p.name.startswith(".out.")], list(parent.iterdir())
    assert sorted(p.name for p in parent.iterdir()) == ["out", "sentinel.txt"] or pid_alive(pid)
