"""One device story (issue 18): ``--device`` / ``device=`` reach every stage, nothing creates tensors elsewhere.

On this CPU-only machine: the plumbing on ``meta`` (where shapes are enough), the whole job under
``tests/job/devicecheck.py`` asked for ``cpu``, and clear errors for a CUDA device that is not there. The same job on
a GPU is ``test_job_runs_on_cuda`` (skipped without CUDA; run by scripts/gpu_check.sh).
"""

import json
import subprocess
import sys

import pytest
import torch

from mvgen.cameras import orbit
from mvgen.device import DeviceError, check_device, resolve_device
from tests.job.devicecheck import run_checked

NO_CUDA = not torch.cuda.is_available()


# ------------------------------------------------------------------------------------------------- resolving

def test_resolve_device_text_and_errors():
    assert str(resolve_device("auto")) == ("cpu" if NO_CUDA else "cuda:0")
    assert resolve_device(None) == resolve_device("auto") and resolve_device(" CPU ") == torch.device("cpu")
    assert check_device(torch.device("cpu")) == "cpu" and check_device("cuda:1") == "cuda:1"
    for bad in ("gpu", "cuda:", "cuda:x", "tpu", 3):
        with pytest.raises(DeviceError, match="--device must be one of"):
            resolve_device(bad)
    with pytest.raises(DeviceError, match="device must be one of"):
        from mvgen.settings import AppConfig

        AppConfig(device="gpu")


@pytest.mark.skipif(not NO_CUDA, reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_one_clear_error_naming_the_flag():
    for text in ("cuda", "cuda:0", "cuda:3"):
        with pytest.raises(DeviceError, match=r"--device cuda.*no CUDA GPU.*--device cpu"):
            resolve_device(text)


@pytest.mark.skipif(not NO_CUDA, reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("argv", [["generate", "a red mug", "--out", "{tmp}/g"], ["run", "a red mug", "--out", "{tmp}/r"],
                                  ["reconstruct", "{views}", "--out", "{tmp}/o"]])
def test_cli_device_cuda_without_a_gpu_exits_2_naming_device(argv, posed_views, tiny_model, tmp_path):
    argv = [a.format(tmp=tmp_path, views=posed_views) for a in argv]
    env = {"MVGEN_MODEL": str(tiny_model), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)}
    p = subprocess.run([sys.executable, "-m", "mvgen.cli", *argv, "--device", "cuda"], capture_output=True,
                       text=True, env=env, timeout=300)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "--device cuda: no CUDA GPU" in lines[0], p.stderr
    assert not (tmp_path / "g").exists() and not (tmp_path / "r").exists() and not (tmp_path / "o").exists()


@pytest.mark.skipif(not NO_CUDA, reason="checks the message on a machine without CUDA")
def test_train_config_device_reaches_the_accelerator():
    from mvgen.train import TrainConfig, _accelerator, check_config

    with pytest.raises(DeviceError, match="device cuda: no CUDA GPU"):
        _accelerator(TrainConfig(device="cuda"))
    with pytest.raises(DeviceError, match="device must be one of"):
        check_config(TrainConfig(device="gpu0"))
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)  # accelerate keeps one state per process (earlier tests may have set one)
    try:
        assert _accelerator(TrainConfig(device="cpu", mixed_precision="no")).device == torch.device("cpu")
    finally:
        AcceleratorState._reset_state(True)


# ---------------------------------------------------------------------------------------- the plumbing on meta

def test_cameras_rays_and_projection_follow_their_device():
    """On ``meta`` any CPU constant in the arithmetic would raise: the rays, viewmats and the projection are built
    from the cameras' own device."""
    from reconstruction.rasterize import project_gaussians, sh_to_colors
    from tests.reconstruction.conftest import random_scene

    cams = orbit(3, 20.0, width=16).to("meta")
    assert cams.plucker(4, 4).device.type == "meta" and cams.viewmats.device.type == "meta"
    assert cams.c2w_cv.device.type == "meta"  # (resized() validates the values: not on meta)
    means, quats, scales, opac, sh = (t.to("meta") for t in random_scene(10, sh_degree=1))
    out = project_gaussians(means, quats, scales, opac, cams.viewmats, cams.K, 16, 16)
    assert all(t.device.type == "meta" for t in out)
    assert sh_to_colors(means, sh, 1, cams.viewmats).shape == (3, 10, 3)


def test_pipeline_loads_whole_onto_the_device(tiny_model):
    """``load_pipeline(device=...)`` moves every component (transformer, VAE, text encoder) and the pipeline runs
    where they are. (The forward itself is checked under the trap below: on meta its data-dependent branches,
    e.g. the text mask's, cannot run.)"""
    from mvgen.generate import load_pipeline

    pipe, _ = load_pipeline(tiny_model, "meta")
    for name in ("transformer", "vae", "text_encoder"):
        assert {p.device.type for p in getattr(pipe, name).parameters()} == {"meta"}, name
    assert pipe._execution_device.type == "meta"


def test_rasterizer_refuses_mixed_devices_and_gsplat_on_cpu_tensors():
    from reconstruction.rasterize import choose_backend, rasterization
    from tests.reconstruction.conftest import random_scene

    means, quats, scales, opac, colors = random_scene(10)
    cams = orbit(1, width=16)
    with pytest.raises(ValueError, match="quats is on cpu but means on meta"):
        rasterization(means.to("meta"), quats, scales, opac, colors, cams.viewmats, cams.K, 16, 16)
    assert choose_backend("auto", "cpu") == "cpu" and choose_backend("auto", "cuda") == "gsplat"
    if not NO_CUDA:
        with pytest.raises(ValueError, match="needs CUDA tensors"):
            choose_backend("gsplat", "cpu")


# ------------------------------------------------------------------------------------ the job, asked for cpu

def test_generation_fit_render_and_exports_create_nothing_off_the_requested_device(tiny_model, fast_config,
                                                                                  tmp_path):
    """The tiny pipeline, the fit (visual hull, densification, carving), held-out scoring, the asset's
    continuation, the renders and every export, with ``device="cpu"`` asked for explicitly."""
    from mvgen.job import load_model, run_prompt
    from mvgen.settings import check_run_settings

    cfg = fast_config.with_overrides(device="cpu", with_lpips=False)
    pipe, path = load_model(tiny_model, "cpu")
    settings = check_run_settings(cfg, 2, 20, 2, 3.0, 0, 20)
    cams = orbit(2, 20.0, width=32)  # the rig is defined on the host; the pipeline moves what it needs

    def work():
        from mvgen.generate import sample_views

        sample_views(pipe, "a red mug", views=2, steps=2, cameras=cams)
        return run_prompt(pipe, "a red mug", tmp_path / "r", cfg, settings, path)

    result = run_checked(work, "cpu")
    assert result.files["ply"].is_file() and result.metrics["n_gaussians"] > 0
    assert json.loads(result.files["manifest"].read_text())["device"] == "cpu"


def test_users_views_reconstruct_on_the_requested_device(posed_views, fast_config, tmp_path):
    from mvgen.job import run_views

    cfg = fast_config.with_overrides(device="cpu", with_lpips=False)
    result = run_checked(lambda: run_views(posed_views, tmp_path / "o", cfg, recon_steps=15), "cpu")
    assert result.files["glb"].is_file() or result.warnings


def test_the_trap_catches_an_implicit_device(monkeypatch):
    """The check itself: a factory without ``device=`` in project code is reported with its file and line."""
    from reconstruction import init

    scope = {"torch": torch}
    src = "def scale(points, k=3):\n    return torch.full((len(points),), 0.01) + points[:, 0] * 0\n"
    exec(compile(src, init.__file__, "exec"), scope)  # compiled as reconstruction/init.py: project code
    monkeypatch.setattr(init, "nearest_neighbour_scale", scope["scale"])
    points = torch.rand(20, 3)
    with pytest.raises(AssertionError, match=r"reconstruction/init.py:2 \(scale\): torch.full without device="):
        run_checked(lambda: init.gaussians_from_points(points, points, 0), "cpu")


# ----------------------------------------------------------------------------------------------- on a GPU

@pytest.mark.skipif(NO_CUDA, reason="needs a CUDA GPU (scripts/gpu_check.sh runs it there)")
def test_job_runs_on_cuda(tiny_model, fast_config, posed_views, tmp_path):
    """The whole job on the GPU: gsplat's rasterizer is picked, the asset stays on the GPU, files are written."""
    from mvgen.job import load_model, run_prompt, run_views
    from mvgen.settings import check_run_settings

    cfg = fast_config.with_overrides(device="cuda")
    pipe, path = load_model(tiny_model, "cuda")
    assert {p.device.type for p in pipe.text_encoder.parameters()} == {"cuda"}
    result = run_prompt(pipe, "a red mug", tmp_path / "r", cfg, check_run_settings(cfg, 2, 20, 2, 3.0, 0, 20), path)
    assert result.files["ply"].is_file() and result.metrics["psnr"] > 0
    assert json.loads(result.files["manifest"].read_text())["device"].startswith("cuda")
    assert run_views(posed_views, tmp_path / "o", cfg, recon_steps=15).files["mp4"].is_file()
