"""The Python API (mvgen/api.py): README "Python API" runs as written, results are typed, ``import mvgen`` is light."""

import re
import subprocess
import sys

import pytest
import yaml

from mvgen.settings import REPO


def readme_api_blocks() -> list[str]:
    """The ```python blocks of README's "Python API" section, in order."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.fixture
def api_env(tiny_model, fast_config, tmp_path, monkeypatch):
    """The tiny model as the default model and the fast settings as configs/app.yaml, in an empty folder."""
    import mvgen.settings

    config = tmp_path / "app.yaml"
    config.write_text(yaml.safe_dump({**fast_config.to_dict(), "with_lpips": False}))
    monkeypatch.setenv("MVGEN_MODEL", str(tiny_model))
    monkeypatch.setattr(mvgen.settings, "DEFAULT_CONFIG", config)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_readme_snippets_run_as_written(api_env, capsys):
    blocks = readme_api_blocks()
    assert len(blocks) == 3 and all(len([ln for ln in b.splitlines() if ln.strip()]) <= 4 for b in blocks)
    scope: dict = {}
    for block in blocks:
        exec(compile(block, "README.md (Python API)", "exec"), scope)
    from mvgen import GeneratedViews, RunResult

    assert isinstance(scope["views"], GeneratedViews) and len(scope["views"]) == 8
    assert scope["views"].images.shape == (8, 32, 32, 3) and len(scope["views"].pil()) == 8
    assert (api_env / "mug_views" / "transforms.json").is_file()
    assert isinstance(scope["result"], RunResult) and scope["result"].files["glb"].parent == api_env / "vase"
    assert (api_env / "mug_asset" / "scene.ply").is_file() and "held-out PSNR" in capsys.readouterr().out


def test_api_results_devices_and_errors(api_env):
    from mvgen import DeviceError, load_generator, reconstruct, text_to_3d

    gen = load_generator(device="cpu")
    assert gen.device.type == "cpu" and gen.config.device == "cpu"
    views = gen("a red mug", views=2, steps=1)
    assert views.manifest["device"] == "cpu" and views.folder is None
    result = reconstruct(views, out="unsaved", steps=5)  # GeneratedViews never saved: via a temporary folder
    assert result.files["ply"].is_file() and result.metrics["fit_steps"] == 5
    only_views = text_to_3d("a red mug", out="v", views=2, views_only=True, generator=gen)
    assert only_views.metrics is None and len(only_views.views) == 2
    with pytest.raises(ValueError, match="views must be"):
        gen("a red mug", views=1)
    with pytest.raises(ValueError, match="prompt is empty"):
        text_to_3d("  ", out="x", generator=gen)
    with pytest.raises(DeviceError, match="device must be one of"):
        load_generator(device="gpu")
    guided = gen("a red chair with white legs", views=2, steps=1, part_guidance=1.5)
    assert guided.manifest["part_guidance"] == 1.5 and guided.manifest["contrast_prompt"] == "a red chair"
    run = text_to_3d("a red chair with white legs", out="g", views=2, steps=1, views_only=True, generator=gen,
                     part_guidance=1.5)
    assert run.manifest["part_guidance"] == 1.5
    for bad in (-1, float("nan"), "2"):
        with pytest.raises(ValueError, match="part_guidance"):
            gen("a red chair with white legs", views=2, steps=1, part_guidance=bad)
        with pytest.raises(ValueError, match="part_guidance"):
            text_to_3d("a red chair with white legs", out="x", views=2, generator=gen, part_guidance=bad)


def test_import_mvgen_is_light():
    code = ("import sys, mvgen; heavy = [m for m in ('torch', 'diffusers', 'gradio', 'numpy') if m in sys.modules];"
            "print(heavy, sorted(mvgen.__all__)); assert callable(mvgen.text_to_3d)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.startswith("[] ") and "'text_to_3d'" in out.stdout
