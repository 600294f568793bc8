"""The app's "Elevation rings" box: next to the elevation slider, filled from the config; the handler generates on the
rings (empty: one ring at the slider's elevation) and names bad text in one line."""

import pytest

import gradio as gr
from tests.ui.components import component
from ui.app import GENERATE_INPUTS, build_app


pytestmark = pytest.mark.usefixtures("keep_gradio_temp_dir")


def test_rings_box_shows_the_configs_rings(tiny_model, fast_config, tmp_path):
    box = component(build_app(tiny_model, fast_config, workdir=tmp_path / "a"), "rings")
    assert box["type"] == "textbox" and box["props"]["value"] == ""
    assert box["props"]["label"] == "Elevation rings (e.g. 10,30; empty = one ring)"
    ringed = build_app(tiny_model, fast_config.with_overrides(rings=[10, 32.5], views=4), workdir=tmp_path / "b")
    assert component(ringed, "rings")["props"]["value"] == "10,32.5"
    assert GENERATE_INPUTS[10] == "rings" and GENERATE_INPUTS.index("elevation") == 2


def test_generate_on_rings_and_bad_rings(tiny_model, fast_config, tmp_path):
    h = build_app(tiny_model, fast_config, workdir=tmp_path / "a").mvgen.handlers
    out = h.generate("a red mug", 4, 20, 0, 1, 3.0, 20, True, False, None, "10, 30")
    assert [c.split(" · ")[2] for _, c in out["gallery"]] == ["el 10°", "el 10°", "el 30°", "el 30°"]
    for rings, match in (("a", "rings must be elevations in degrees separated by commas (e.g. 10,30), got 'a'"),
                         ("10,95", "rings must be elevations in degrees, each in [-60, 60], got 95.0"),
                         ("10,30,40", "rings: 3 rings need at least 6 views (2 per ring), got 4 views"),
                         (30, "rings must be elevations in degrees such as 10,30")):
        with pytest.raises(gr.Error) as e:
            h.generate("a red mug", 4, 20, 0, 1, 3.0, 20, True, False, None, rings)
        assert e.value.message.startswith(match) and "\n" not in e.value.message, e.value.message
    ringed = build_app(tiny_model, fast_config.with_overrides(rings=[10, 30], views=4), workdir=tmp_path / "b")
    ringed = ringed.mvgen.handlers
    one = ringed.generate("a red mug", 4, 15, 0, 1, 3.0, 20, True, False, None, "")  # empty: one ring
    assert {c.split(" · ")[2] for _, c in one["gallery"]} == {"el 15°"}
