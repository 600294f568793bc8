"""The GPU check (scripts/gpu_check.sh, `mvgen bench gpu`): without CUDA it exits cleanly saying so; its measuring
functions run here on the CPU (cpu kernel vs the torch reference standing in for gsplat)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from mvgen.gpu_bench import compare_rasterizers, time_fit, time_generate
from mvgen.settings import REPO

NO_CUDA = not torch.cuda.is_available()


@pytest.mark.skipif(not NO_CUDA, reason="checks the no-CUDA answer")
def test_bench_gpu_without_cuda_says_so_and_exits_0(tmp_path):
    p = subprocess.run([sys.executable, "-m", "mvgen.cli", "bench", "gpu", "--json", str(tmp_path / "r.json")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout == ""
    assert p.stderr.strip().splitlines() == [p.stderr.strip()] and "no CUDA GPU here" in p.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["cuda"] is False and report["checked"] is False


@pytest.mark.skipif(not NO_CUDA, reason="checks the no-CUDA answer")
def test_gpu_check_script_without_cuda_exits_cleanly(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable)
    p = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), str(tmp_path / "out")], capture_output=True,
                       text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    assert "gpu_check: no CUDA GPU here" in p.stderr and "nothing was checked" in p.stderr
    assert json.loads((tmp_path / "out" / "gpu_check.json").read_text())["checked"] is False


def test_rasterizer_comparison_on_the_cpu():
    """The same comparison as gsplat CUDA vs the CPU kernel, with the torch reference in gsplat's place."""
    rows = compare_rasterizers(("cpu", "cpu"), ("torch", "cpu"), cases=[(120, 24, 16, 0)])
    (r,) = rows
    assert r["passed"] and r["image_max_abs"] < 1e-4 and set(r["grad_max_rel"]) == {
        "means", "quats", "scales", "opacities", "colors"}
    assert r["first_call_s"]["cpu"] > 0 and r["first_call_s"]["torch"] > 0


def test_generate_and_fit_timings_on_the_cpu(tiny_model):
    gen = time_generate(tiny_model, ["cpu"], views=2, steps=1, precisions={"cpu": (None, False)})
    assert [r["autocast"] for r in gen] == ["auto", "fp32"] and gen[0]["psnr_vs_first_row"] == 100.0
    assert gen[1]["psnr_vs_first_row"] > 20  # bf16 autocast vs fp32: close, not equal
    (fit,) = time_fit(["cpu"], views=4, resolution=32, steps=10)
    assert fit["device"] == "cpu" and fit["steps"] == 10 and fit["gaussians"] > 0 and fit["heldout_psnr"] > 0
