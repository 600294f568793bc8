"""Start-up (issue 18): numba's cache goes to a writable user cache folder, and a slow first call of a kernel says
what it is doing on one stderr line."""

import io
import os
import subprocess
import sys
import time

from reconstruction import jit

SHOW = "import os, reconstruction, numba.core.config as c; print(os.environ['NUMBA_CACHE_DIR']); print(c.CACHE_DIR)"


def _cache_dir(env: dict) -> list[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "HOME")}
    out = subprocess.run([sys.executable, "-c", SHOW], env={**base, **env}, capture_output=True, text=True,
                         timeout=120, check=True)
    return out.stdout.split()


def test_numba_cache_defaults_to_the_user_cache_and_respects_the_users_choice(tmp_path):
    home = tmp_path / "home"
    assert _cache_dir({"HOME": str(home)}) == [str(home / ".cache" / "mvgen" / "numba")] * 2
    assert (home / ".cache" / "mvgen" / "numba").is_dir()
    xdg = tmp_path / "xdg"
    assert _cache_dir({"HOME": str(home), "XDG_CACHE_HOME": str(xdg)}) == [str(xdg / "mvgen" / "numba")] * 2
    mine = tmp_path / "mine"
    assert _cache_dir({"HOME": str(home), "NUMBA_CACHE_DIR": str(mine)}) == [str(mine)] * 2


def test_a_slow_first_call_prints_one_line_and_later_calls_are_silent(monkeypatch, tmp_path):
    monkeypatch.setattr(jit, "NOTICE_AFTER", 0.05)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    stream = io.StringIO()
    with jit.first_call("test-kernel", "the test kernel", "/x/raster_cpu.py", "_forward", stream):
        time.sleep(0.3)
    line = stream.getvalue()
    assert line.startswith(f"mvgen: compiling the test kernel (first use") and str(tmp_path) in line
    assert line.endswith(" s\n") and line.count("\n") == 1 and " done in " in line
    with jit.first_call("test-kernel", "the test kernel", "/x/raster_cpu.py", "_forward", stream):
        time.sleep(0.1)
    assert stream.getvalue() == line  # once per process


def test_a_cached_kernel_is_announced_as_loading_and_a_quick_call_says_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(jit, "NOTICE_AFTER", 0.05)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    (tmp_path / "reconstruction_x").mkdir()
    (tmp_path / "reconstruction_x" / "raster_cpu._forward-127.py311.nbi").write_bytes(b"")
    stream = io.StringIO()
    with jit.first_call("cached-kernel", "the cached kernel", "/x/raster_cpu.py", "_forward", stream):
        time.sleep(0.3)
    assert stream.getvalue().startswith(f"mvgen: loading the cached kernel from {tmp_path} ...")
    quiet = io.StringIO()
    with jit.first_call("quick-kernel", "the quick kernel", "/x/raster_cpu.py", "_forward", quiet):
        pass
    assert quiet.getvalue() == ""
