"""The output size through the job (settings, `mvgen run`, the Python API): views at twice the native size are
fitted as they are; bad sizes are named before the model loads."""

import pytest

from mvgen.cli import main
from mvgen.settings import AppConfig, check_run_settings


def test_settings_take_a_size_and_name_a_bad_one():
    cfg = AppConfig()
    assert cfg.output_size is None and check_run_settings(cfg, 8, 20, 20, 3.0, 0, 400)["output_size"] is None
    assert check_run_settings(cfg, 8, 20, 20, 3.0, 0, 400, output_size="256")["output_size"] == 256
    assert check_run_settings(cfg, 8, 20, 20, 3.0, 0, 400, output_size=256.0, output_sizes=(128, 256))[
        "output_size"] == 256
    with pytest.raises(ValueError, match="output_size 256 needs a 2x decoder"):
        check_run_settings(cfg, 8, 20, 20, 3.0, 0, 400, output_size=256, output_sizes=(128,))
    with pytest.raises(ValueError, match="output_size must be 128 or 256 for this model, got 200"):
        check_run_settings(cfg, 8, 20, 20, 3.0, 0, 400, output_size=200, output_sizes=(128, 256))
    with pytest.raises(ValueError, match="output_size must be a whole number of pixels"):
        AppConfig(output_size="big")
    assert AppConfig(output_size=256).output_size == 256


def test_run_prompt_fits_the_views_at_twice_the_size(model_2x, fast_config, tmp_path):
    from mvgen.job import load_model, model_output_sizes, run_prompt

    assert model_output_sizes(model_2x) == (32, 64)
    pipe, path = load_model(model_2x, "cpu")
    settings = check_run_settings(fast_config, 2, 20, 2, 3.0, 0, 20, output_size=64, output_sizes=pipe.output_sizes)
    result = run_prompt(pipe, "a red mug", tmp_path / "r", fast_config, settings, path)
    assert result.manifest["image_size"] == 64 and result.metrics["views"] == [1]
    import json

    assert json.loads((tmp_path / "r" / "transforms.json").read_text())["w"] == 64


def test_run_command_names_a_bad_size_before_loading(model_2x, tiny_model, tmp_path, capsys):
    for model, size, match in ((tiny_model, "64", "output_size 64 needs a 2x decoder (decoder_2x)"),
                               (model_2x, "200", "output_size must be 32 or 64 for this model, got 200"),
                               (model_2x, "abc", "output_size must be a whole number of pixels")):
        capsys.readouterr()
        assert main(["run", "a red mug", "--out", str(tmp_path / "o"), "--model", str(model), "--views-only",
                     "--views", "2", "--steps", "1", "--output-size", size]) == 2
        err = capsys.readouterr().err.strip()
        assert match in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_python_api_output_size(model_2x, tiny_model, fast_config, tmp_path):
    import yaml

    from mvgen import load_generator, text_to_3d

    config = tmp_path / "app.yaml"
    config.write_text(yaml.safe_dump({**fast_config.to_dict(), "with_lpips": False}))
    gen = load_generator(model_2x, "cpu", config)
    assert gen.output_sizes == (32, 64)
    views = gen("a red mug", views=2, steps=1, output_size=64)
    assert views.images.shape == (2, 64, 64, 3) and views.cameras.width == 64
    assert gen("a red mug", views=2, steps=1).images.shape == (2, 32, 32, 3)
    with pytest.raises(ValueError, match="output_size must be a whole number"):
        gen("a red mug", views=2, steps=1, output_size="abc")
    with pytest.raises(ValueError, match="output_size 64 needs a 2x decoder"):
        text_to_3d("a red mug", tmp_path / "t", views=2, steps=1, model=tiny_model, device="cpu", config=config,
                   views_only=True, output_size=64)
