"""The app's "Output size" dropdown: shown with its sizes for a model with a 2x decoder, replaced by a line saying why
for one without; the handler makes views of the chosen size and names a bad one."""

import pytest
from PIL import Image

import gradio as gr
from tests.job.conftest import model_2x  # noqa: F401  (shared fixture)
from tests.ui.components import component
from ui.app import build_app


pytestmark = pytest.mark.usefixtures("keep_gradio_temp_dir")


def test_dropdown_only_for_a_model_with_the_2x_decoder(model_2x, tiny_model, fast_config, tmp_path):
    demo = build_app(model_2x, fast_config, workdir=tmp_path / "a")
    drop = component(demo, "output-size")
    assert drop["props"]["visible"] and drop["props"]["label"] == "Output size (px)"
    assert [c[1] for c in drop["props"]["choices"]] == [32, 64] and drop["props"]["value"] == 32
    assert component(demo, "output-size-note") is None
    plain = build_app(tiny_model, fast_config, workdir=tmp_path / "b")
    assert plain.mvgen.handlers.output_sizes() == (32,)
    assert component(plain, "output-size")["props"]["visible"] is False
    note = component(plain, "output-size-note")["props"]["value"]
    assert "32 px" in note and "no 2x decoder" in note


def test_generate_at_the_chosen_size_and_bad_sizes(model_2x, tiny_model, fast_config, tmp_path):
    h = build_app(model_2x, fast_config, workdir=tmp_path / "a").mvgen.handlers
    out = h.generate("a red mug", 2, 20, 0, 1, 3.0, 20, True, False, "64")
    assert [Image.open(p).size for p, _ in out["gallery"]] == [(64, 64), (64, 64)]
    for size, match in ((200, "output_size must be 32 or 64 for this model, got 200"),
                        ("abc", "output_size must be a whole number of pixels")):
        with pytest.raises(gr.Error, match=match) as e:
            h.generate("a red mug", 2, 20, 0, 1, 3.0, 20, True, False, size)
        assert "\n" not in e.value.message
    plain = build_app(tiny_model, fast_config, workdir=tmp_path / "b").mvgen.handlers
    with pytest.raises(gr.Error, match=r"output_size 64 needs a 2x decoder \(decoder_2x\)"):
        plain.generate("a red mug", 2, 20, 0, 1, 3.0, 20, True, False, 64)
