"""Every bad input gets a clear answer (design.md §7, issue 15), table-driven across the entry points:

- CLI: ``mvgen.cli.main([...])`` in-process returns 2 and prints one stderr line naming the field or file, no
  traceback;
- app: the handlers called as Python functions (and through Gradio's ``process_api`` for raw API values) raise
  ``gr.Error`` with that message, no absolute server path or session id, logged as one line;
- Python API: a ValueError subclass named for the stage (``CameraError``, ``UploadError``, ...).

Plus bounded decoding (image headers checked before anything is decoded, per-image and per-upload pixel limits),
dataset resume refusing corrupt views, and property-based cases (hypothesis) for transforms.json fields,
captions and run settings.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import socket
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import gradio as gr
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mvgen.cameras import CameraError, load_views
from mvgen.checks import short_repr
from mvgen.cli import main
from tests.ui.conftest import zip_folder
from ui.uploads import UploadError, check_views, unpack_views

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


# ------------------------------------------------------------------------------------------------- helpers

def png_header(width: int, height: int) -> bytes:
    """A PNG whose header says ``width`` x ``height`` RGBA, with a few bytes of pixel data: it opens (the size is
    readable) but cannot decode. A size-limit message instead of "cannot read image" proves nothing was decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def png_bytes(size: int, fmt: str = "PNG") -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGBA" if fmt == "PNG" else "RGB", (size, size), (200, 20, 20)).save(buf, format=fmt)
    return buf.getvalue()


def _no_intrinsics(meta: dict) -> None:
    for k in ("fl_x", "fl_y", "cx", "cy"):
        meta.pop(k, None)


def _frame0(**fields) -> Callable[[dict], None]:
    return lambda meta: meta["frames"][0].update(fields)


def _matrix0(fn) -> Callable[[dict], None]:
    def edit(meta):
        meta["frames"][0]["transform_matrix"] = fn(meta["frames"][0]["transform_matrix"])
    return edit


@dataclass
class Bad:
    """One hostile scene: ``edit(meta)`` changes transforms.json, ``raw`` replaces its text, ``files`` replaces or
    adds files (relative path -> bytes). ``match``: what every entry point's message must contain."""
    name: str
    match: str
    edit: Callable[[dict], None] | None = None
    raw: str | None = None
    files: dict | None = None


SCENES = [
    Bad("camera_angle_y_zero", "camera_angle_y",
        edit=lambda m: (_no_intrinsics(m), m.update(camera_angle_y=0))),
    Bad("camera_angle_x_over_pi", "camera_angle_x", edit=lambda m: (_no_intrinsics(m), m.update(camera_angle_x=4))),
    Bad("file_path_number", "file_path", edit=_frame0(file_path=5)),
    Bad("file_path_null", "file_path", edit=_frame0(file_path=None)),
    Bad("file_path_list", "file_path", edit=_frame0(file_path=["views/000.png"])),
    Bad("file_path_missing_image", "nope.png", edit=_frame0(file_path="nope.png")),
    Bad("w_text", "w must be a whole number", edit=lambda m: m.update(w="abc")),
    Bad("w_fraction", "w must be a whole number", edit=lambda m: m.update(w=32.5)),
    Bad("h_negative", "h must be in 1..65536", edit=lambda m: m.update(h=-3)),
    Bad("h_huge", "h must be in 1..65536", edit=lambda m: m.update(h=10**30)),
    Bad("fl_x_huge_int", "intrinsics", edit=lambda m: m.update(fl_x=10**400)),
    Bad("fl_x_text", "intrinsics", edit=lambda m: m.update(fl_x="wide")),
    Bad("fl_x_zero", "focal length", edit=lambda m: m.update(fl_x=0)),
    Bad("transform_matrix_3x3", "transform_matrix", edit=_matrix0(lambda t: [r[:3] for r in t[:3]])),
    Bad("transform_matrix_text", "transform_matrix", edit=_frame0(transform_matrix=[["a"] * 4] * 4)),
    Bad("transform_matrix_nan", "transform_matrix", edit=_matrix0(lambda t: [[math.nan] + r[1:] for r in t])),
    Bad("transform_matrix_huge_int", "transform_matrix", edit=_frame0(transform_matrix=[[10**400] * 4] * 4)),
    Bad("transform_matrix_scaled", "transform_matrix",
        edit=_matrix0(lambda t: [[2 * v for v in r[:3]] + r[3:] for r in t[:3]] + t[3:])),
    Bad("frames_empty", "frames", edit=lambda m: m.update(frames=[])),
    Bad("frames_not_a_list", "frames", edit=lambda m: m.update(frames={"a": 1})),
    Bad("not_json", "not valid JSON", raw="{"),
    Bad("int_of_5000_digits", "not valid JSON", raw='{"w": 1' + "0" * 5000 + "}"),
    Bad("nested_100k_deep", "not valid JSON", raw="[" * 100_000 + "]" * 100_000),
    Bad("image_not_an_image", "000.png", files={"views/000.png": b"hello, not a png"}),
    Bad("image_truncated", "000.png", files={"views/000.png": None}),  # None: the real file cut in half
    Bad("image_wrong_size", "transforms.json says 32x32", files={"views/000.png": png_bytes(16)}),
    Bad("image_gif", "PNG or JPEG", files={"views/000.png": png_bytes(32, "GIF")}),
    Bad("image_81_mp", "MP per image", files={"views/000.png": png_header(9000, 9000)}),
    Bad("image_196_mp_bomb", "000.png: image has more than", files={"views/000.png": png_header(14000, 14000)}),
]


def make_scene(src: Path, dest: Path, bad: Bad) -> Path:
    """A copy of the posed views ``src`` with ``bad`` applied."""
    shutil.copytree(src, dest)
    if bad.edit is not None:
        meta = json.loads((dest / "transforms.json").read_text())
        bad.edit(meta)
        (dest / "transforms.json").write_text(json.dumps(meta))
    if bad.raw is not None:
        (dest / "transforms.json").write_text(bad.raw)
    for rel, data in (bad.files or {}).items():
        data = (src / rel).read_bytes()[:len((src / rel).read_bytes()) // 2] if data is None else data
        (dest / rel).write_bytes(data)
    return dest


def cli(argv: list[str], capsys) -> str:
    """Run ``mvgen argv`` in-process; assert exit code 2 and exactly one stderr line, no traceback; return it."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith(f"mvgen {argv[0]}: error: "), lines[0]
    return lines[0]


def assert_public(message: str, *private: str | os.PathLike) -> None:
    """No absolute server path (the test's temporary folders, the app folder) or session id in ``message``."""
    for p in private:
        assert str(p) not in message, (p, message)
    assert "/tmp/" not in message and "/pytest-" not in message, message


class FakeRequest:
    def __init__(self, session_hash):
        self.session_hash = session_hash


SESSION = "sess1on8hash"


@pytest.fixture(scope="module")
def handlers(tmp_path_factory):
    """The app's handlers without a model (evaluation and all input checks need none), fast settings."""
    from mvgen.settings import AppConfig
    from ui.handlers import Handlers
    from ui.sessions import SessionFolders

    cfg = AppConfig.from_yaml(views=2, views_min=2, rings="", steps=2, recon_steps=20, max_image_size=64)
    root = tmp_path_factory.mktemp("app")
    return Handlers(cfg, root / "no-model", SessionFolders(root / "app"))


# ------------------------------------------------------------------------------ scenes x three entry points

@pytest.mark.hostile("cli")
@pytest.mark.parametrize("bad", SCENES, ids=lambda b: b.name)
def test_bad_scene_cli(bad, posed_views, tmp_path, capsys):
    scene = make_scene(posed_views, tmp_path / "scene", bad)
    line = cli(["reconstruct", scene, "--out", tmp_path / "out", "--steps", 1, "--no-lpips"], capsys)
    assert bad.match in line


@pytest.mark.hostile("api")
@pytest.mark.parametrize("bad", SCENES, ids=lambda b: b.name)
def test_bad_scene_api(bad, posed_views, tmp_path):
    scene = make_scene(posed_views, tmp_path / "scene", bad)
    with pytest.raises(CameraError, match=bad.match.replace("(", r"\(")) as e:
        load_views(scene)
    assert "\n" not in str(e.value)


@pytest.mark.hostile("app")
@pytest.mark.parametrize("bad", SCENES, ids=lambda b: b.name)
def test_bad_scene_app(bad, posed_views, tmp_path, handlers, capsys):
    scene = make_scene(posed_views, tmp_path / "scene", bad)
    upload = zip_folder(scene, tmp_path / "views.zip", prefix="mug/")
    capsys.readouterr()
    with pytest.raises(gr.Error) as e:
        handlers.evaluate_zip(str(upload), 20, request=FakeRequest(SESSION))
    msg = e.value.message
    assert bad.match in msg and e.value.print_exception is False
    assert_public(msg, tmp_path, handlers.folders.root, SESSION)
    logged = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(logged) == 1 and logged[0].startswith("mvgen evaluate: refused: ")  # one line, no traceback


# --------------------------------------------------------------------------------------- the other CLI cases

def _listening_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


CLI_CASES = [
    ("reconstruct_downscale_inf", lambda v, t: ["reconstruct", v, "--out", t, "--downscale", "inf"], "downscale"),
    ("reconstruct_downscale_nan", lambda v, t: ["reconstruct", v, "--out", t, "--downscale", "nan"], "downscale"),
    ("reconstruct_downscale_half", lambda v, t: ["reconstruct", v, "--out", t, "--downscale", "0.5"], "downscale"),
    ("reconstruct_4px_views", lambda v, t: ["reconstruct", v, "--out", t, "--downscale", "8", "--no-lpips"],
     "SSIM needs at least 11 px"),
    ("reconstruct_11px_views_lpips", lambda v, t: ["reconstruct", v, "--out", t, "--downscale", "3"],
     "LPIPS needs at least 32 px"),
    ("reconstruct_seed_overflow", lambda v, t: ["reconstruct", v, "--out", t, "--seed", 10**20], "seed must be in"),
    ("train_vae_batch_size_0", lambda v, t: ["train-vae", "--data", v, "--out", t, "--batch-size", 0],
     "batch_size must be at least 1"),
    ("train_vae_steps_negative", lambda v, t: ["train-vae", "--data", v, "--out", t, "--steps", -1],
     "steps must be at least 1"),
    ("train_vae_steps_0", lambda v, t: ["train-vae", "--data", v, "--out", t, "--steps", 0], "steps must be"),
    ("run_seed_overflow", lambda v, t: ["run", "a red mug", "--out", t, "--seed", 10**20], "seed must be in"),
    ("run_views_0", lambda v, t: ["run", "a red mug", "--out", t, "--views", 0], "views must be in"),
    ("run_empty_prompt", lambda v, t: ["run", "   ", "--out", t], "prompt is empty"),
    ("run_guidance_nan", lambda v, t: ["run", "a red mug", "--out", t, "--guidance", "nan"], "guidance"),
    ("run_steer_unknown", lambda v, t: ["run", "a red mug", "--out", t, "--steer", "nerf"],
     "steer must be one of off, gaussians"),
    ("run_elevation_70", lambda v, t: ["run", "a red mug", "--out", t, "--elevation", 70], "elevation must be"),
    ("generate_steer_unknown", lambda v, t: ["generate", "a red mug", "--out", t, "--steer", "yes"],
     "steer must be one of off, gaussians"),
    ("app_host_not_an_address", lambda v, t: ["app", "--host", "999.999.1.1", "--model", t], "--host '999.999.1.1'"),
    ("app_host_of_another_machine", lambda v, t: ["app", "--host", "192.0.2.1", "--model", t], "--host '192.0.2.1'"),
    ("app_port_out_of_range", lambda v, t: ["app", "--port", 70000, "--model", t], "--port must be in"),
    ("dataset_resolution_8", lambda v, t: ["dataset", "--out", t, "--objects", 1, "--resolution", 8, "--quiet"],
     "resolution"),
]


@pytest.mark.hostile("cli")
@pytest.mark.parametrize("make_argv, match", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_bad_cli_arguments(make_argv, match, posed_views, tmp_path, capsys):
    assert match in cli(make_argv(posed_views, tmp_path / "out"), capsys)


@pytest.mark.hostile("cli")
def test_app_port_in_use_names_the_port(tmp_path, capsys):
    with _listening_port() as s:
        port = s.getsockname()[1]
        line = cli(["app", "--host", "127.0.0.1", "--port", port, "--model", tmp_path], capsys)
    assert f"--port {port}" in line and "cannot serve" in line


@pytest.mark.hostile("api")
def test_unreadable_transforms_names_the_file(posed_views, tmp_path, monkeypatch, capsys):
    """An I/O error without a file name ("[Errno 5] Input/output error") is reported with the file."""
    scene = shutil.copytree(posed_views, tmp_path / "scene")
    real = Path.read_text

    def failing(self, *a, **kw):
        if self.name == "transforms.json":
            raise OSError(5, "Input/output error")
        return real(self, *a, **kw)

    monkeypatch.setattr(Path, "read_text", failing)
    with pytest.raises(CameraError, match=r"transforms.json: cannot read \(Input/output error\)"):
        load_views(scene)
    assert "scene/transforms.json: cannot read" in cli(["reconstruct", scene, "--out", tmp_path / "o"], capsys)


# ------------------------------------------------------------------------------------ the app's other inputs

GOOD = dict(prompt="a red mug", views=2, elevation=20, seed=0, steps=2, guidance=3.0, recon_steps=20)
GENERATE_CASES = [
    ("views", "eight", "views must be a whole number"), ("views", None, "views must be a whole number"),
    ("views", 99, "views must be in 2..16"), ("views", 2.5, "views must be a whole number"),
    ("elevation", math.nan, "elevation"), ("elevation", 10**400, "elevation"), ("elevation", "up", "elevation"),
    ("seed", 10**20, "seed must be in"), ("seed", -1, "seed must be in"), ("seed", 10**5000, "seed must be in"),
    ("steps", 0, "steps must be in"), ("guidance", "high", "guidance"), ("guidance", math.inf, "guidance"),
    ("recon_steps", "eight", "recon_steps"), ("prompt", None, "prompt must be text"),
    ("prompt", " \n\t", "prompt is empty"), ("prompt", "x" * 301, "prompt is 301 characters"),
]


@pytest.mark.hostile("app")
@pytest.mark.parametrize("field, value, match", GENERATE_CASES,
                         ids=[f"{f}={short_repr(v, 14)}" for f, v, _ in GENERATE_CASES])
def test_app_generate_bad_settings(field, value, match, handlers):
    args = {**GOOD, field: value}
    with pytest.raises(gr.Error, match=match) as e:
        handlers.generate(*args.values(), request=FakeRequest(SESSION))
    assert e.value.print_exception is False and len(e.value.message) < 200


@pytest.mark.hostile("app")
def test_app_generate_stop_after_views_and_steer_must_be_booleans(handlers):
    with pytest.raises(gr.Error, match="stop_after_views must be true or false"):
        handlers.generate(*GOOD.values(), "yes", request=FakeRequest(SESSION))
    with pytest.raises(gr.Error, match="steer must be one of off, gaussians"):
        handlers.generate(*GOOD.values(), False, "yes", request=FakeRequest(SESSION))


@pytest.mark.hostile("app")
def test_app_evaluate_bad_steps_and_missing_upload(handlers, tmp_path):
    with pytest.raises(gr.Error, match="recon_steps must be a whole number"):
        handlers.evaluate_zip(str(tmp_path / "x.zip"), "eight")
    with pytest.raises(gr.Error, match="upload: file x.zip not found") as e:
        handlers.evaluate_zip({"path": str(tmp_path / "x.zip")}, 20)  # a raw API FileData payload
    assert_public(e.value.message, tmp_path)
    with pytest.raises(gr.Error, match="choose a .zip"):
        handlers.evaluate_zip({"path": None}, 20)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The app built (not launched) without a model; GRADIO_TEMP_DIR restored afterwards."""
    from mvgen.settings import AppConfig
    from ui.app import build_app

    saved = os.environ.get("GRADIO_TEMP_DIR")
    root = tmp_path_factory.mktemp("built")
    cfg = AppConfig.from_yaml(views=2, views_min=2, rings="", recon_steps=20)
    yield build_app(root / "no-model", cfg, workdir=root / "app")
    if saved is None:
        os.environ.pop("GRADIO_TEMP_DIR", None)
    else:
        os.environ["GRADIO_TEMP_DIR"] = saved


def _process(demo, api_name: str, inputs: list):
    """Call an event the way a raw API request does (Gradio's preprocessing included); the gr.Error message."""
    from gradio.state_holder import SessionState

    fn = next(f for f in demo.fns.values() if f.api_name == api_name)
    with pytest.raises(gr.Error) as e:
        asyncio.run(demo.process_api(block_fn=fn, inputs=inputs, state=SessionState(demo)))
    return e.value.message


RAW_API_CASES = [
    ("generate", ["a red mug", "eight", 20, 0, 2, 3.0, 20, False, False, None, "", 0.0],
     "views must be a whole number, got 'eight'"),
    ("generate", ["a red mug", None, 20, 0, 2, 3.0, 20, False, False, None, "", 0.0],
     "views must be a whole number, got None"),
    ("generate", ["a red mug", 99, 20, 0, 2, 3.0, 20, False, False, None, "", 0.0], "views must be in 2..16, got 99"),
    ("generate", ["a red mug", 2, 20, 0, 2, 3.0, 20, False, "yes", None, "", 0.0], "steer must be one of off, gaussians"),
    ("generate", ["a red mug"], "generate: expected 12 values (prompt, views, elevation, seed, steps, guidance"),
    ("generate", [], "generate: expected 12 values"),
    ("evaluate", [None, "eight"], "upload: choose a .zip"),
    ("evaluate", [], "evaluate: expected 2 values (upload, recon_steps), got 0"),
]


@pytest.mark.hostile("app")
@pytest.mark.parametrize("api, inputs, match", RAW_API_CASES, ids=[f"{a}-{i}" for i, (a, *_) in
                                                                   enumerate(RAW_API_CASES)])
def test_raw_api_requests_get_named_errors(demo, api, inputs, match):
    assert match in _process(demo, api, inputs)


# ------------------------------------------------------------------------------- bounded decoding (uploads)

def _zip_with_views(tmp_path: Path, posed_views: Path, images: dict, n_views: int | None = None, **meta) -> Path:
    scene = shutil.copytree(posed_views, tmp_path / "scene")
    m = json.loads((scene / "transforms.json").read_text())
    m.update(meta)
    if n_views is not None:
        m["frames"] = [dict(m["frames"][i % len(m["frames"])], file_path=f"views/{i:03d}.png") for i in range(n_views)]
        for i in range(n_views):
            if not (scene / "views" / f"{i:03d}.png").exists():
                shutil.copy(scene / "views" / "000.png", scene / "views" / f"{i:03d}.png")
    (scene / "transforms.json").write_text(json.dumps(m))
    for rel, data in images.items():
        (scene / rel).write_bytes(data)
    return zip_folder(scene, tmp_path / "v.zip", prefix="mug/")


@pytest.mark.hostile("app")
def test_small_zip_of_huge_pngs_is_refused_from_the_headers(posed_views, tmp_path, handlers):
    """The reported 2.9 kB zip of two 12000² PNGs: refused before decoding, naming the file and the limit."""
    z = _zip_with_views(tmp_path, posed_views, {"views/000.png": png_header(12000, 12000),
                                                "views/001.png": png_header(12000, 12000)}, w=12000, h=12000)
    assert z.stat().st_size < 10_000
    with pytest.raises(UploadError, match=r"mug/views/000.png: image is 12000x12000 \(144.0 MP\); the limit is "
                                          r"16.0 MP per image") as e:
        unpack_views(z, tmp_path / "dest", **handlers.cfg.upload_limits())
    assert_public(str(e.value), tmp_path)
    assert not (tmp_path / "dest").exists()  # nothing of the refused upload stays
    with pytest.raises(gr.Error, match="mug/views/000.png: image is 12000x12000"):
        handlers.evaluate_zip(str(z), 20, request=FakeRequest(SESSION))


@pytest.mark.hostile("app")
def test_per_upload_pixel_budget(posed_views, tmp_path, handlers):
    big = {f"views/{i:03d}.png": png_header(3000, 3000) for i in range(4)}  # 9 MP each, under 16 MP
    z = _zip_with_views(tmp_path, posed_views, big, w=3000, h=3000)
    limits = {**handlers.cfg.upload_limits(), "max_total_pixels": 20_000_000}
    with pytest.raises(UploadError, match=r"mug/views/002.png: the views add up to more than 20.0 MP"):
        unpack_views(z, tmp_path / "dest", **limits)


@pytest.mark.hostile("app")
def test_too_many_views_refused_before_any_header(posed_views, tmp_path, handlers):
    z = _zip_with_views(tmp_path, posed_views, {}, n_views=70)
    with pytest.raises(UploadError, match="transforms.json has 70 views; the limit is 64"):
        unpack_views(z, tmp_path / "dest", **handlers.cfg.upload_limits())


def test_large_views_decode_reduced_and_equal_the_area_filter(tmp_path, posed_views):
    """load_views shrinks while decoding (JPEG draft, then the area filter): same PNG result as converting the
    full-size image first; a JPEG 8x larger than needed decodes at the reduced size."""
    from mvgen.cameras import _read_rgba

    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (64, 64, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    ref = Image.fromarray(rgba).resize((16, 16), Image.Resampling.BOX)
    assert np.allclose(_read_rgba(tmp_path / "a.png", (16, 16)).permute(1, 2, 0).numpy() * 255, np.asarray(ref),
                       atol=1e-3)
    Image.fromarray(rgba[..., :3]).save(tmp_path / "a.jpg", quality=95)
    with Image.open(tmp_path / "a.jpg") as im:
        im.draft(None, (8, 8))
        assert im.size == (8, 8)  # DCT scaling: the decoder itself produces the small image
    assert _read_rgba(tmp_path / "a.jpg", (8, 8)).shape == (4, 8, 8)
    views = load_views(posed_views, downscale=2.0)
    assert views.images.shape == (4, 4, 16, 16) and views.cameras.width == 16


@pytest.mark.hostile("api")
def test_cli_image_limit_is_configurable(posed_views):
    with pytest.raises(CameraError, match=r"000.png: image is 32x32 \(0.0 MP\); the limit is 0.0 MP per image"):
        load_views(posed_views, max_pixels=100)
    with pytest.raises(CameraError, match="add up to more than"):
        load_views(posed_views, max_total_pixels=3000)


# --------------------------------------------------------------------------------------- the Python API

@pytest.mark.hostile("api")
def test_typed_errors_of_the_python_api(tmp_path):
    from mvgen.checks import check_seed
    from mvgen.metrics import ssim
    from mvgen.settings import AppConfig
    from mvgen.vae import VAETrainConfig
    from ui.cli import check_listen_address

    import torch

    for kw, match in [({"steps": 0}, "steps"), ({"batch_size": -2}, "batch_size"), ({"lr": math.nan}, "lr"),
                      ({"seed": 2**64}, "seed"), ({"mixed_precision": "fp64"}, "mixed_precision")]:
        with pytest.raises(ValueError, match=match):
            VAETrainConfig(**kw)
    with pytest.raises(ValueError, match="seed must be in 0..9223372036854775807, got an integer of 16610 bits"):
        check_seed(10**5000)
    from mvgen.evaluate import evaluate_generation
    from mvgen.generate import write_generation

    with pytest.raises(ValueError, match="seed must be in 0..9223372036854775807, got 100000000000000000000"):
        write_generation(None, "a red mug", tmp_path, seed=10**20)  # checked before the pipeline runs
    with pytest.raises(ValueError, match="seed must be in 0..9223372036854775807, got -1"):
        evaluate_generation(None, ["a red mug", "a blue vase"], seed=-1)
    with pytest.raises(ValueError, match="images are 5x5 px; SSIM needs at least 11 px"):
        ssim(torch.rand(1, 3, 5, 5), torch.rand(1, 3, 5, 5))
    for kw, match in [({"max_image_megapixels": 0}, "max_image_megapixels"),
                      ({"max_upload_megapixels": math.inf}, "max_upload_megapixels")]:
        with pytest.raises(ValueError, match=match):
            AppConfig(**kw)
    bad_yaml = tmp_path / "app.yaml"
    bad_yaml.write_text("views_min: two\n")
    with pytest.raises(ValueError, match="app config .*app.yaml: a field has the wrong type"):
        AppConfig.from_yaml(bad_yaml)
    with pytest.raises(ValueError, match="--host 'no such host.invalid'"):
        check_listen_address("no such host.invalid", 7860)


@pytest.mark.hostile("app")
def test_check_views_is_an_upload_error_with_relative_paths(posed_views, tmp_path):
    scene = shutil.copytree(posed_views, tmp_path / "scene")
    meta = json.loads((scene / "transforms.json").read_text())
    meta["frames"][1]["camera_angle_y"] = 0
    _no_intrinsics(meta)
    (scene / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(UploadError, match=r"^upload: transforms.json: frames\[1\] camera_angle_y") as e:
        check_views(scene)
    assert_public(str(e.value), tmp_path)


# --------------------------------------------------------------------------------------- dataset resume

@pytest.mark.hostile("cli")
def test_dataset_resume_redoes_an_object_with_a_corrupt_view(tmp_path, capsys):
    out = tmp_path / "d"
    argv = ["dataset", "--out", str(out), "--objects", "2", "--views", "2", "--resolution", "16", "--quiet"]
    assert main(argv) == 0
    ids = [json.loads(line)["id"] for line in (out / "index.jsonl").read_text().splitlines()]
    view = out / ids[0] / "views" / "001.png"
    data = view.read_bytes()
    view.write_bytes(data[:len(data) // 2])  # truncated: the file exists, but does not decode
    (out / ids[1] / "views" / "007.png").write_bytes(data)  # a view more than the frames: not a finished object
    capsys.readouterr()
    assert main(argv) == 0
    assert "2 objects written, 0 already done" in capsys.readouterr().out
    assert main(argv) == 0
    assert "0 objects written, 2 already done" in capsys.readouterr().out
    with Image.open(view) as im:
        im.load()  # repaired
    assert load_views(out / ids[0]).images.shape == (2, 4, 16, 16)


# --------------------------------------------------------------------------------- property-based cases

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                    max_leaves=10)
NUMBER = st.integers(-10, 10**6) | st.floats(allow_nan=True, allow_infinity=True) | st.just(10**400)
MATRIX = st.lists(st.lists(st.floats(-4, 4) | st.integers(-3, 3), min_size=4, max_size=4), min_size=3, max_size=5)
IDENTITY = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 3.0], [0.0, 0.0, 0.0, 1.0]]
FIELDS = ("w", "h", "camera_angle_x", "camera_angle_y", "fl_x", "fl_y", "cx", "cy")


@st.composite
def transforms(draw):
    meta = {k: draw(st.one_of(NUMBER, JSON)) for k in FIELDS if draw(st.booleans())}
    frames = []
    for _ in range(draw(st.integers(1, 2))):
        frame = {"file_path": draw(st.sampled_from(["views/000.png", "views/000", "../x.png", "", "views"]) | JSON),
                 "transform_matrix": draw(st.just(IDENTITY) | MATRIX | JSON)}
        frame.update({k: draw(NUMBER) for k in FIELDS[2:] if draw(st.integers(0, 5)) == 0})
        frames.append(frame)
    meta["frames"] = draw(st.just(frames) | JSON)
    return meta


@pytest.fixture(scope="module")
def property_scene(posed_views, tmp_path_factory):
    return shutil.copytree(posed_views, tmp_path_factory.mktemp("prop") / "scene")


@pytest.mark.hostile("api")
@settings(max_examples=50, deadline=None, database=None,  # database=None: nothing kept between runs
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(meta=transforms())
def test_any_transforms_json_loads_or_raises_a_camera_error(meta, property_scene):
    (property_scene / "transforms.json").write_text(json.dumps(meta))
    try:
        views = load_views(property_scene)
    except CameraError as e:
        assert "\n" not in str(e) and len(str(e)) < 1000
    else:
        assert views.images.shape[0] == len(views.cameras)
    try:
        check_views(property_scene, max_views=64, max_image_pixels=16_000_000, max_total_pixels=64_000_000)
    except UploadError as e:
        assert str(property_scene) not in str(e)


@pytest.mark.hostile("api")
@settings(max_examples=50, deadline=None, database=None)
@given(text=st.text(max_size=80) | st.sampled_from(["a red mug", "A TALL blue vase.", "red car with black wheels",
                                                    "a red mug with with", "the the", "grey grey mug"]))
def test_any_caption_parses_or_raises_a_caption_error(text):
    from mvgen.data.captions import CaptionError, parse_caption
    from mvgen.generate import DEFAULT_MODEL, vocabulary_warning
    from mvgen.settings import check_prompt

    try:
        spec = parse_caption(text)
    except CaptionError as e:
        assert str(e)
    else:
        assert parse_caption(spec.caption()) == spec
    try:
        assert check_prompt(text).strip()
    except ValueError as e:
        assert "prompt" in str(e)
    warning = vocabulary_warning(text, DEFAULT_MODEL)
    assert warning is None or "vocabulary" in warning


@pytest.mark.hostile("api")
@settings(max_examples=50, deadline=None, database=None)
@given(values=st.fixed_dictionaries({k: NUMBER | JSON for k in ("views", "elevation", "steps", "guidance", "seed",
                                                                "recon_steps")}))
def test_any_run_settings_validate_or_raise_naming_the_field(values):
    from mvgen.settings import AppConfig, check_run_settings

    try:
        out = check_run_settings(AppConfig(), **values)
    except ValueError as e:
        assert str(e).split(" ")[0] in values, str(e)
    else:
        assert isinstance(out["views"], int) and math.isfinite(out["elevation"])
