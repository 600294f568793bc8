"""Hostile input to the app (design.md §7, issue 15): uploaded zips (tests/reliability/zips.py) through the
"Evaluate your own views" handler, raw API values through Gradio's own request processing (``process_api``, as a
raw HTTP request is handled), and real HTTP requests through ``gradio_client`` against the served app. Each is
refused with the message naming the field or file (no server path, no session id, no bare "Error"), logged as one
line; the server keeps serving and nothing of the user's is lost (a sentinel next to the upload survives)."""

from __future__ import annotations

import math

import gradio as gr
import pytest

from tests.reliability.hostile import assert_nothing_lost, png_header, snapshot, with_sentinel
from tests.reliability.test_bad_inputs import SESSION, FakeRequest, _process, assert_public, demo, handlers  # noqa
from tests.reliability.zips import TIGHT_ZIPS, ZIPS

pytestmark = [pytest.mark.hostile("app"), pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture(scope="module")
def tight(tmp_path_factory):
    """Handlers with tight upload limits (1 MB zip and extracted, 50 members, 3 views)."""
    from mvgen.settings import AppConfig
    from ui.handlers import Handlers
    from ui.sessions import SessionFolders

    cfg = AppConfig.from_yaml(views=2, views_min=2, rings="", steps=2, recon_steps=20, max_image_size=64,
                              max_upload_mb=1, max_unzipped_mb=1, max_zip_files=50, max_upload_views=3)
    root = tmp_path_factory.mktemp("tight")
    return Handlers(cfg, root / "no-model", SessionFolders(root / "app"))


def _refused_upload(h, upload, capsys) -> str:
    app_before = snapshot(h.folders.root)
    capsys.readouterr()
    with pytest.raises(gr.Error) as e:
        h.evaluate_zip(str(upload), 20, request=FakeRequest(SESSION))
    msg = e.value.message
    assert e.value.print_exception is False and "\n" not in msg and msg.strip() not in ("", "Error"), msg
    assert_public(msg, upload.parent, h.folders.root, SESSION)
    logged = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(logged) == 1 and logged[0].startswith("mvgen evaluate: refused: "), logged
    assert not set(snapshot(h.folders.root)) - set(app_before), "files of the refused upload stayed"
    return msg


@pytest.mark.parametrize("name", list(ZIPS))
def test_hostile_zip(name, posed_views, handlers, tmp_path, capsys):  # noqa: F811
    build, match = ZIPS[name]
    before = with_sentinel(tmp_path)
    upload = build(posed_views, tmp_path / "upload.zip")
    before = {**before, **snapshot(tmp_path)}
    assert match in _refused_upload(handlers, upload, capsys)
    assert_nothing_lost(tmp_path, before)
    assert not (tmp_path / "evil.json").exists() and not (tmp_path.parent / "evil.json").exists()


@pytest.mark.parametrize("name", list(TIGHT_ZIPS))
def test_hostile_zip_over_the_configured_limits(name, posed_views, tight, tmp_path, capsys):
    build, match = TIGHT_ZIPS[name]
    before = with_sentinel(tmp_path)
    upload = build(posed_views, tmp_path / "upload.zip")
    assert match in _refused_upload(tight, upload, capsys)
    assert_nothing_lost(tmp_path, before)


# ------------------------------------------------------------------- raw API values (Gradio's process_api)

GOOD = ["a red mug", 2, 20, 0, 2, 3.0, 20, False, False, None, "", 0.0]  # prompt, views, elevation, seed, steps, guidance,
FIELDS = ["prompt", "views", "elevation", "seed", "steps", "guidance", "recon_steps", "stop_after_views", "steer",
          "output_size", "rings", "part_guidance"]


def _gen(field, value):
    inputs = list(GOOD)
    inputs[FIELDS.index(field)] = value
    return inputs


RAW_GENERATE = [
    ("prompt", None, "prompt must be text, got NoneType"), ("prompt", 123, "prompt must be text, got int"),
    ("prompt", ["a red mug"], "prompt must be text, got list"), ("prompt", {"text": "mug"}, "prompt must be text"),
    ("prompt", "", "prompt is empty"), ("prompt", "x" * 5000, "prompt is 5000 characters; the limit is 300"),
    ("prompt", "a red mug\0", "control character (U+0000)"), ("prompt", "\x1b]0;pwned\x07", "control character"),
    ("views", "8", "views must be a whole number, got '8'"), ("views", [], "views must be a whole number, got []"),
    ("views", {}, "views must be a whole number"), ("views", True, "views must be a whole number, got True"),
    ("views", -1, "views must be in 2..16, got -1"), ("views", 1e308, "views must be in 2..16"),
    ("views", math.nan, "views must be a whole number, got nan"),
    ("elevation", None, "elevation must be a number of degrees"), ("elevation", "20", "elevation"),
    ("elevation", [20], "elevation"), ("elevation", -math.inf, "elevation"), ("elevation", 61, "elevation"),
    ("seed", None, "seed must be a whole number"), ("seed", "0", "seed must be a whole number, got '0'"),
    ("seed", 1.5, "seed must be a whole number, got 1.5"), ("seed", 2**32, "seed must be in 0..4294967295"),
    ("steps", True, "steps must be a whole number, got True"), ("steps", 101, "steps must be in 1..100, got 101"),
    ("steps", None, "steps must be a whole number"), ("steps", -3, "steps must be in 1..100"),
    ("guidance", None, "guidance"), ("guidance", "3", "guidance"), ("guidance", -0.5, "guidance"),
    ("guidance", 1e400, "guidance"),
    ("recon_steps", None, "recon_steps must be a whole number"), ("recon_steps", 10**6, "recon_steps must be in"),
    ("recon_steps", 2.5, "recon_steps must be a whole number, got 2.5"), ("recon_steps", 0, "recon_steps must be"),
    ("stop_after_views", "no", "stop_after_views must be true or false, got 'no'"),
    ("stop_after_views", 2, "stop_after_views must be true or false, got 2"),
    ("stop_after_views", [], "stop_after_views must be true or false"),
    ("steer", "maybe", "steer must be one of off, gaussians"), ("steer", 3, "steer must be one of off, gaussians"),
    ("steer", {"mode": "gaussians", "power": 9}, "steer: unknown setting"),
    ("part_guidance", "2", "part_guidance"), ("part_guidance", -1, "part_guidance"),
    ("part_guidance", math.inf, "part_guidance"), ("part_guidance", 21, "part_guidance"),
]


@pytest.mark.parametrize("field, value, match", RAW_GENERATE,
                         ids=[f"{f}-{i}" for i, (f, *_) in enumerate(RAW_GENERATE)])
def test_raw_generate_value(field, value, match, demo, capsys):  # noqa: F811
    capsys.readouterr()
    msg = _process(demo, "generate", _gen(field, value))
    assert match in msg and "\n" not in msg and len(msg) < 300, msg
    logged = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(logged) == 1 and "refused" in logged[0] and "Traceback" not in logged[0], logged


FILE = "upload: expected an uploaded file (gradio_client: handle_file(path)), got "


def _fd(path):
    """A file reference as gradio_client sends it."""
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


RAW_EVALUATE = [
    ([5, 20], FILE + "5"), ([[], 20], FILE + "[]"), ([{"url": "http://example.com/x.zip"}, 20], FILE),
    ([{"path": 5}, 20], FILE), ([{"path": "/etc/hostname"}, 20], FILE), (["/no/such/upload.zip", 20], FILE),
    ([b"PK\x03\x04", 20], FILE), ([True, 20], FILE),
    ([None, None], "upload: choose a .zip"),
    ([_fd("/x.zip"), "eight"], "recon_steps must be a whole number"),
    ([_fd("/x.zip"), 0], "recon_steps must be in 1..5000, got 0"),
    ([_fd("/x.zip"), math.inf], "recon_steps must be a whole number, got inf"),
    ([_fd("/x.zip"), None], "recon_steps must be a whole number, got None"),
    ([{"path": "/x.zip"}], "evaluate: expected 2 values (upload, recon_steps), got 1"),
]


@pytest.mark.parametrize("inputs, match", RAW_EVALUATE, ids=[f"evaluate-{i}" for i in range(len(RAW_EVALUATE))])
def test_raw_evaluate_value(inputs, match, demo):  # noqa: F811
    msg = _process(demo, "evaluate", inputs)
    assert match in msg and "\n" not in msg, msg
    assert str(demo.mvgen.root) not in msg, msg  # the client's own values may be echoed, never the app's folder


# ------------------------------------------------------------------- real HTTP requests (gradio_client)

@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """The app without a model (every input check works without one), served on a free port; its client."""
    import os

    from gradio_client import Client

    from mvgen.job_bench import free_port
    from mvgen.settings import AppConfig
    from ui.app import build_app, launch_app

    saved = os.environ.get("GRADIO_TEMP_DIR")
    root = tmp_path_factory.mktemp("served")
    cfg = AppConfig.from_yaml(views=2, views_min=2, rings="", recon_steps=20)
    app = build_app(root / "no-model", cfg, workdir=root / "a")
    port = free_port()
    launch_app(app, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False), app
    finally:
        app.close()
        if saved is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = saved


HTTP_GENERATE = [
    ("views", "eight", "views must be a whole number, got 'eight'"), ("prompt", "", "prompt is empty"),
    ("prompt", "a red mug\x1b[31m", "control character (U+001B)"), ("seed", -1, "seed must be in 0..4294967295"),
    ("steer", "yes", "steer must be one of off, gaussians"), ("stop_after_views", "no", "stop_after_views must be"),
    ("recon_steps", 0, "recon_steps must be in 1..5000, got 0"), ("elevation", "up", "elevation"),
    ("prompt", None, "prompt must be text, got NoneType"), ("views", 2, "model not found at no-model"),
]


@pytest.mark.parametrize("field, value, match", HTTP_GENERATE,
                         ids=[f"{f}-{i}" for i, (f, *_) in enumerate(HTTP_GENERATE)])
def test_http_generate_value(field, value, match, client):
    from gradio_client.exceptions import AppError

    c, app = client
    with pytest.raises(AppError) as e:
        c.predict(*_gen(field, value), api_name="/generate")
    msg = str(e.value)
    assert match in msg and "\n" not in msg and msg.strip() != "Error", msg
    assert_public(msg, app.mvgen.root)


def _http_upload(client, path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    c, app = client
    with pytest.raises(AppError) as e:
        c.predict(handle_file(str(path)), 20, api_name="/evaluate")
    assert_public(str(e.value), app.mvgen.root, path.parent)
    return str(e.value)


@pytest.mark.parametrize("name", ["not_a_zip_png", "traversal_dotdot", "symlink_member", "nested_zip_only"])
def test_http_upload_zip(name, client, posed_views, tmp_path):
    build, match = ZIPS[name]
    before = with_sentinel(tmp_path)
    upload = build(posed_views, tmp_path / "upload.zip")
    assert match in _http_upload(client, upload)
    assert_nothing_lost(tmp_path, before)


def test_http_upload_huge_png_header(client, posed_views, tmp_path):
    """A 2 kB zip whose view header says 9000x9000: refused from the header, named, nothing decoded."""
    import json
    import shutil

    from tests.ui.conftest import zip_folder

    scene = shutil.copytree(posed_views, tmp_path / "scene")
    meta = json.loads((scene / "transforms.json").read_text())
    meta.update(w=9000, h=9000)
    (scene / "transforms.json").write_text(json.dumps(meta))
    (scene / "views" / "000.png").write_bytes(png_header(9000, 9000))
    upload = zip_folder(scene, tmp_path / "v.zip", prefix="mug/")
    msg = _http_upload(client, upload)
    assert "mug/views/000.png: image is 9000x9000 (81.0 MP); the limit is 16.0 MP per image" in msg, msg
