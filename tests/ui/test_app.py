"""The Gradio app: built without launching, its handlers called directly, and its API from gradio_client."""

import json
import zipfile
from pathlib import Path

import gradio as gr
import pytest

from tests.ui.conftest import zip_folder
from ui.app import build_app
from ui.handlers import COMPARE_KEYS, REPORT_KEYS, VIEWS_KEYS


class Recorder:
    """Stands in for gr.Progress: records (fraction, desc)."""

    def __init__(self):
        self.calls = []

    def __call__(self, fraction, desc=None):
        self.calls.append((fraction, desc))


class FakeRequest:
    def __init__(self, session_hash):
        self.session_hash = session_hash


def test_build_app_without_launching_and_without_a_model(tmp_path, fast_config):
    demo = build_app(tmp_path / "no-model", fast_config, workdir=tmp_path / "app")
    assert isinstance(demo, gr.Blocks) and demo.mvgen.root == (tmp_path / "app").resolve()
    config = demo.get_config_file()
    names = {d.get("api_name") for d in config["dependencies"]}
    assert {"generate", "evaluate", "random_seed"} <= names
    banner = next(c for c in config["components"] if c["props"].get("elem_id") == "model-status")
    assert banner["props"]["visible"] and "model not found at" in banner["props"]["value"]
    assert "see README" in banner["props"]["value"]
    steer = next(c for c in config["components"] if c["props"].get("elem_id") == "steer")
    assert steer["props"]["label"] == "3D-consistent sampling (slower)" and steer["props"]["value"] is False
    with pytest.raises(gr.Error, match="model not found at"):
        demo.mvgen.handlers.generate("a red mug", 2, 20, 0, 2, 3.0, 20)
    assert demo._queue.max_size == fast_config.max_queue
    limits = {fn.concurrency_limit for fn in demo.fns.values() if fn.concurrency_id == "compute"}
    assert limits == {fast_config.concurrency_limit}
    # generate button and Enter, evaluate (the /evaluate API), evaluate views, compare
    assert sum(fn.concurrency_id == "compute" for fn in demo.fns.values()) == 5
    assert {"evaluate_views", "compare_views"} <= names


def test_handlers_generate_report(served_app):
    demo, _ = served_app
    h = demo.mvgen.handlers
    progress = Recorder()
    out = h.generate("a red mug", 2, 20, 1, 2, 3.0, 20, request=FakeRequest("s1"), progress=progress)
    assert set(out) == set(REPORT_KEYS)
    assert [c for _, c in out["gallery"]] == ["view 0 · az 0° · el 20°", "view 1 · az 180° · el 20°"]
    assert out["splat"].endswith("viewer.ply") and out["mesh"].endswith("scene.glb") and out["video"].endswith(".mp4")
    lp = next(c for c in out["table"].columns if c.startswith("LPIPS ("))
    assert list(out["table"]["view"]) == ["1", "mean"] and lp[7:-1] in out["summary"]
    assert list(out["plot"].columns) == ["view", "PSNR dB"] and out["heatmaps"].endswith("heatmaps.png")
    names = sorted(n.rsplit("/", 1)[1] for n in out["files"])
    assert names == sorted(["views.zip", "transforms.json", "manifest.json", "scene.ply", "scene.splat",
                            "scene.glb", "scene.mp4", "scene.gif", "scene_camera_path.json", "metrics.json",
                            "heatmaps.png"])
    run_dir = h.folders.session_dir("s1")
    assert all(n.startswith(str(run_dir)) for n in out["files"])  # per-session folder under the app root
    assert progress.calls[-1][0] == 1.0 and "fitting Gaussians" in " ".join(d for _, d in progress.calls)


def test_handlers_stop_after_views_and_bad_input(served_app):
    demo, _ = served_app
    h = demo.mvgen.handlers
    out = h.generate("a blue vase", 2, 20, 0, 1, 3.0, 20, True, request=FakeRequest("s2"))
    assert out["splat"] is None and out["table"] is None and len(out["gallery"]) == 2
    assert "stopped after the views" in out["summary"]
    for args, match in [(("", 2, 20, 0, 2, 3.0, 20), "prompt is empty"), (("a mug", 99, 20, 0, 2, 3.0, 20), "views"),
                        (("a mug", 2, 20, 0, 2, 3.0, -5), "recon_steps"),
                        (("red " * 70, 2, 20, 0, 1, 3, 20), "tokens")]:
        with pytest.raises(gr.Error, match=match):
            h.generate(*args, request=FakeRequest("s2"))
    with pytest.raises(gr.Error, match="choose a .zip"):
        h.evaluate_zip(None, 20)


def test_handlers_evaluate_zip(served_app, views_zip, tmp_path):
    demo, _ = served_app
    h = demo.mvgen.handlers
    out = h.evaluate_zip(str(views_zip), 20, request=FakeRequest("s3"))
    assert len(out["gallery"]) == 4 and list(out["table"]["view"]) == ["1", "3", "mean"]
    assert out["video"].endswith("scene.mp4") and "fitted on views 0, 2" in out["summary"]
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../../escape.png", "x")
        z.writestr("transforms.json", "{}")
    with pytest.raises(gr.Error, match="leaves the folder"):
        h.evaluate_zip(str(evil), 20, request=FakeRequest("s3"))
    assert len(list(h.folders.session_dir("s3").glob("*/upload"))) == 1  # the refused upload left nothing


def test_handlers_evaluate_views_grid_with_a_preset_and_bad_input(served_app, zero123_grid, views_zip, tmp_path):
    demo, _ = served_app
    h = demo.mvgen.handlers
    req = FakeRequest("s5")
    out = h.evaluate_views(str(zero123_grid), "zero123pp-v1.2", "", 1, 0.1, 20, request=req)
    assert set(out) == set(VIEWS_KEYS) and len(out["gallery"]) == 6
    assert [c for _, c in out["gallery"]][:2] == ["view 0 · az 30° · el 20°", "view 1 · az 90° · el -10°"]
    assert list(out["table"]["view"]) == ["1", "3", "5", "mean"] and "fitted on views 0, 2, 4" in out["summary"]
    assert "from the background #808080" in out["summary"] and "tolerance 0.1" in out["summary"]
    assert out["masks"].endswith("masks.png") and out["video"].endswith("scene.mp4")
    # a zip of posed views with the rig "transforms.json" is today's report
    zipped = h.evaluate_views(str(views_zip), "transforms.json", "", 1, 0.1, 20, request=req)
    assert "fitted on views 0, 2" in zipped["summary"] and "alpha channel" in zipped["summary"]
    for args, match in [((str(zero123_grid), "zero999", "", 1, 0.1, 20), r"rig: unknown preset 'zero999'"),
                        ((str(zero123_grid), "mvdream", "3x2", 1, 0.1, 20), r"rig: mvdream has 4 views, the input "
                                                                           r"has 6"),
                        ((str(zero123_grid), "zero123pp-v1.2", "5x2", 1, 0.1, 20), r"grid: 5x2 tiles do not divide "
                                                                                  r"zero123pp.png \(64x96\)"),
                        ((str(zero123_grid), "transforms.json", "", 1, 0.1, 20), r"rig: zero123pp.png has no "
                                                                                 r"transforms.json"),
                        ((str(views_zip), "mvdream", "", 1, 0.1, 20), r"rig: mug.zip holds a transforms.json"),
                        ((str(zero123_grid), "orbit:views=6", "", 1, 0.9, 20), r"tolerance must be"),
                        ((str(zero123_grid), "orbit:views=6", "", 0, 0.1, 20), r"frame_step must be")]:
        with pytest.raises(gr.Error, match=match):
            h.evaluate_views(*args, request=req)
    for run in h.folders.session_dir("s5").iterdir():  # a refused upload leaves no views behind
        assert (run / "report").is_dir() or not (run / "upload").exists(), sorted(run.rglob("*"))


def test_handlers_compare_two_uploads_side_by_side(served_app, zero123_grid, views_zip):
    demo, _ = served_app
    h = demo.mvgen.handlers
    out = h.compare_views(str(zero123_grid), "zero123pp-v1.2", "", str(views_zip), "transforms.json", "", 20,
                          request=FakeRequest("s6"))
    assert set(out) == set(COMPARE_KEYS)
    cols = list(out["table"].columns)
    assert cols == ["metric", "A: zero123pp.png", "B: mug.zip"]
    assert list(out["table"]["metric"])[:3] == ["held-out PSNR dB", "held-out SSIM", "held-out LPIPS"]
    assert list(out["table"].iloc[3][1:]) == [6, 4]  # views
    assert list(out["plot"]["upload"]) == cols[1:] and out["heatmaps_a"] != out["heatmaps_b"]
    assert out["masks_a"].endswith("masks.png") and out["masks_b"] is None  # B kept its alpha: no masks written
    assert "**A: zero123pp.png**" in out["summary"] and "**B: mug.zip**" in out["summary"]
    with pytest.raises(gr.Error, match=r"upload B: rig: unknown preset"):
        h.compare_views(str(zero123_grid), "zero123pp-v1.2", "", str(views_zip), "nope", "", 20,
                        request=FakeRequest("s6"))
    with pytest.raises(gr.Error, match=r"upload B: choose"):
        h.compare_views(str(zero123_grid), "zero123pp-v1.2", "", None, "nope", "", 20, request=FakeRequest("s6"))


def test_only_the_app_folder_is_served(served_app, tiny_model):
    import urllib.error
    import urllib.request

    demo, url = served_app
    for path in ("/etc/passwd", str(tiny_model / "model_index.json"), str(demo.mvgen.root / ".." / "x")):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{url}gradio_api/file={path}", timeout=10)
        assert e.value.code == 403


def test_gradio_client_api(served_app, posed_views, views_zip, zero123_grid, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    _, url = served_app
    client = Client(url, verbose=False, download_files=str(tmp_path / "dl"))
    api = client.view_api(return_format="dict", print_info=False)
    assert {"/generate", "/evaluate", "/random_seed"} <= set(api["named_endpoints"])
    res = client.predict(prompt="a red mug", views=2, elevation=20, seed=3, steps=2, guidance=3.0, recon_steps=20,
                         stop_after_views=False, api_name="/generate")  # as in the README's example
    out = dict(zip(REPORT_KEYS, res))
    assert len(out["gallery"]) == 2 and out["splat"].endswith(".ply") and out["mesh"].endswith(".glb")
    assert out["video"].endswith(".mp4") and Path(out["video"]).stat().st_size > 0 and "PSNR" in out["summary"]
    assert out["table"]["headers"][:4] == ["view", "azimuth °", "elevation °", "PSNR dB"]
    assert {p.rsplit("/", 1)[1] for p in out["files"]} >= {"scene.ply", "metrics.json", "views.zip"}
    metrics = json.loads(open(next(p for p in out["files"] if p.endswith("metrics.json"))).read())
    assert metrics["views"] == [1] and "lpips_impl" in metrics
    # bad transforms.json and a bad zip: clear errors, and the app keeps serving
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "transforms.json").write_text(json.dumps({"frames": [{"file_path": "a.png", "transform_matrix": [[1]]}]}))
    (bad / "a.png").write_bytes((posed_views / "views" / "000.png").read_bytes())
    with pytest.raises(AppError, match=r"transform_matrix must be 4x4"):
        client.predict(handle_file(str(zip_folder(bad, tmp_path / "bad.zip"))), 20, api_name="/evaluate")
    (tmp_path / "junk.zip").write_bytes(b"not a zip at all")
    with pytest.raises(AppError, match="not a readable zip"):
        client.predict(handle_file(str(tmp_path / "junk.zip")), 20, api_name="/evaluate")
    with pytest.raises(AppError, match="prompt is empty"):
        client.predict("  ", 2, 20, 3, 2, 3.0, 20, False, api_name="/generate")
    seed = client.predict(api_name="/random_seed")
    assert isinstance(seed, (int, float)) and 0 <= seed < 2**31
    res = client.predict("a red mug", 2, 20, 3, 1, 3.0, 20, True, api_name="/generate")
    assert len(res[0]) == 2  # still serving after the errors
    good = client.predict(upload=handle_file(str(views_zip)), recon_steps=20, api_name="/evaluate")
    assert "fitted on views 0, 2" in good[REPORT_KEYS.index("summary")]
    grid = client.predict(upload=handle_file(str(zero123_grid)), rig="zero123pp-v1.2", grid="", frame_step=1,
                          tolerance=0.1, recon_steps=20, api_name="/evaluate_views")  # as in the README
    assert "fitted on views 0, 2, 4" in grid[VIEWS_KEYS.index("summary")]
    assert grid[VIEWS_KEYS.index("masks")].endswith("masks.png")
    with pytest.raises(AppError, match=r"rig: unknown preset 'zero999'"):
        client.predict(handle_file(str(zero123_grid)), "zero999", "", 1, 0.1, 20, api_name="/evaluate_views")


def test_preload_on_page_load_loads_the_model_once(tiny_model, fast_config, tmp_path, monkeypatch):
    import os
    import threading

    # build_app points GRADIO_TEMP_DIR at its own folder; restore it for the app the other tests serve
    monkeypatch.setenv("GRADIO_TEMP_DIR", os.environ.get("GRADIO_TEMP_DIR", ""))

    def load_events(demo):
        return [d for d in demo.get_config_file()["dependencies"]
                if any(t[1] == "load" for t in d["targets"])]

    assert load_events(build_app(tiny_model, fast_config, workdir=tmp_path / "a")) == []
    assert load_events(build_app(tmp_path / "no-model", fast_config, workdir=tmp_path / "b", preload=True)) == []
    demo = build_app(tiny_model, fast_config, workdir=tmp_path / "c", preload=True)
    assert len(load_events(demo)) == 1
    h = demo.mvgen.handlers
    h.preload()
    h.preload()  # a second page load while loading: no second thread
    loaders = [t for t in threading.enumerate() if t.name == "mvgen-preload"]
    assert len(loaders) <= 1
    for t in loaders:
        t.join(60)
    assert h._pipe is not None and h.pipeline() is h._pipe
    h.preload()  # already loaded: nothing to do
    assert not [t for t in threading.enumerate() if t.name == "mvgen-preload"]
