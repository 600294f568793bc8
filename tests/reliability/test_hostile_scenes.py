"""Hostile posed-view folders (transforms.json fields, image files) through the three entry points — the CLI
(`mvgen reconstruct`), the Python API (``mvgen.cameras.load_views``, what ``mvgen.reconstruct`` reads with) and the
app (the folder zipped and uploaded to "Evaluate your own views") — each answered by one clear line naming the
field or the file, with nothing lost: a sentinel file next to the output and the scene itself are unchanged and
no output is written. The first 29 scenes are in test_bad_inputs.py; these are more (design.md §7, issue 15)."""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import gradio as gr
import pytest

from mvgen.cameras import CameraError, load_views
from tests.reliability.hostile import (assert_nothing_lost, corrupt_middle, image_bytes, png_header, run_cli,
                                       snapshot, with_sentinel)
from tests.reliability.test_bad_inputs import SESSION, FakeRequest, assert_public, handlers  # noqa: F401
from tests.ui.conftest import zip_folder

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

DIR = object()  # in Scene.files: replace the path by a folder
GONE = object()  # ... delete it
LINK_HOSTNAME = object()  # ... a symbolic link to a file of the system that is no image


@dataclass
class Scene:
    """``edit(meta)`` changes transforms.json, ``raw`` replaces its bytes, ``files`` replaces paths (bytes, DIR,
    GONE, LINK_HOSTNAME). ``match``: what every entry point's message contains; ``app``: the app's, when its
    upload checks (which run first) word it differently."""
    name: str
    match: str
    edit: Callable[[dict], None] | None = None
    raw: bytes | None = None
    files: dict | None = None
    app: str | None = None


def _set(**fields):
    return lambda m: m.update(fields)


def _frame(i=0, **fields):
    return lambda m: m["frames"][i].update(fields)


def _pop_frame(key, i=0):
    return lambda m: m["frames"][i].pop(key)


def _matrix(fn):
    def edit(m):
        m["frames"][0]["transform_matrix"] = fn([list(r) for r in m["frames"][0]["transform_matrix"]])
    return edit


def _angles(**fields):
    """Intrinsics given as angles only (fl_x, ... removed), then ``fields``."""
    def edit(m):
        for k in ("fl_x", "fl_y", "cx", "cy"):
            m.pop(k, None)
        m.setdefault("camera_angle_x", 0.69)
        m.update(fields)
    return edit


def _no_intrinsics(m):
    for k in ("fl_x", "fl_y", "cx", "cy", "camera_angle_x", "camera_angle_y"):
        m.pop(k, None)
        for f in m["frames"]:
            f.pop(k, None)


def _set_row(r, values):
    return _matrix(lambda t: t[:r] + [values] + t[r + 1:])


def _shear(t):
    t[0][1] = 0.5
    return t


def _mirror(t):
    t[0] = [-v for v in t[0][:3]] + t[0][3:]
    return t


PNG32 = "views/000.png"
SCENES = [
    # transforms.json as a whole
    Scene("json_top_level_list", "non-empty 'frames' list", raw=b"[1, 2, 3]"),
    Scene("json_top_level_null", "non-empty 'frames' list", raw=b"null"),
    Scene("json_top_level_string", "non-empty 'frames' list", raw=b'"frames"'),
    Scene("json_top_level_number", "non-empty 'frames' list", raw=b"1e400"),
    Scene("json_empty_file", "not valid JSON", raw=b""),
    Scene("json_utf16", "not valid JSON", raw=json.dumps({"frames": []}).encode("utf-16")),
    Scene("json_binary_garbage", "not valid JSON", raw=bytes(range(256)) * 4),
    Scene("json_trailing_garbage", "not valid JSON", raw=b'{"frames": []} }'),
    Scene("json_single_quotes", "not valid JSON", raw=b"{'frames': []}"),
    Scene("transforms_missing", "no transforms.json", files={"transforms.json": GONE}),
    Scene("transforms_is_a_folder", "no transforms.json", files={"transforms.json": DIR}),
    # frames
    Scene("frames_null", "'frames' list", edit=_set(frames=None)),
    Scene("frames_string", "'frames' list", edit=_set(frames="views/000.png")),
    Scene("frames_number", "'frames' list", edit=_set(frames=4)),
    Scene("frame_a_number", "frames[0]", edit=lambda m: m["frames"].__setitem__(0, 7)),
    Scene("frame_a_list", "frames[1]", edit=lambda m: m["frames"].__setitem__(1, ["views/001.png"])),
    Scene("frame_without_transform_matrix", "transform_matrix", edit=_pop_frame("transform_matrix")),
    Scene("frame_without_file_path", "file_path", edit=_pop_frame("file_path", 2)),
    # file_path
    Scene("file_path_empty", "frames[0].file_path must be a relative", edit=_frame(file_path="")),
    Scene("file_path_blank", "frames[0].file_path must be a relative", edit=_frame(file_path="   ")),
    Scene("file_path_dict", "frames[0].file_path must be a relative", edit=_frame(file_path={"a": 1})),
    Scene("file_path_true", "frames[0].file_path must be a relative", edit=_frame(file_path=True)),
    Scene("file_path_dotdot", "not found", edit=_frame(file_path="../../../etc/shadow.png"),
          app="frames[0].file_path '../../../etc/shadow.png' points outside the zip"),
    Scene("file_path_absolute", "/etc/hostname: not an image", edit=_frame(file_path="/etc/hostname"),
          app="frames[0].file_path '/etc/hostname' points outside the zip"),
    Scene("file_path_a_folder", "frames[0] image 'views' not found", edit=_frame(file_path="views")),
    Scene("file_path_nul", "frames[0].file_path contains a NUL character", edit=_frame(file_path="views/000\0.png"),
          app="frames[0].file_path cannot be used (embedded null byte)"),
    Scene("file_path_too_long", "frames[0].file_path", edit=_frame(file_path="v" * 5000 + ".png")),
    Scene("file_path_other_frame_missing", "frames[3] image 'views/404.png' not found",
          edit=_frame(3, file_path="views/404.png")),
    # transform_matrix
    Scene("matrix_null", "frames[0].transform_matrix is not a 4x4 matrix", edit=_frame(transform_matrix=None)),
    Scene("matrix_ragged", "frames[0].transform_matrix is not a 4x4 matrix",
          edit=_matrix(lambda t: [t[0][:3]] + t[1:])),
    Scene("matrix_4x3", "frames[0].transform_matrix must be 4x4, got [4, 3]",
          edit=_matrix(lambda t: [r[:3] for r in t])),
    Scene("matrix_5x5", "frames[0].transform_matrix must be 4x4, got [5, 5]",
          edit=_frame(transform_matrix=[[float(i == j) for j in range(5)] for i in range(5)])),
    Scene("matrix_flat_16", "frames[0].transform_matrix must be 4x4, got [16]",
          edit=_frame(transform_matrix=[float(i % 5 == 0) for i in range(16)])),
    Scene("matrix_a_string", "frames[0].transform_matrix", edit=_frame(transform_matrix="identity")),
    Scene("matrix_inf", "transform_matrix: non-finite values", edit=_matrix(lambda t: [[math.inf] + t[0][1:]] + t[1:])),
    Scene("matrix_last_row", "last row must be [0, 0, 0, 1]", edit=_set_row(3, [0, 0, 1, 1])),
    Scene("matrix_shear", "is not a rigid rotation", edit=_matrix(_shear)),
    Scene("matrix_mirror", "is not a rigid rotation", edit=_matrix(_mirror)),
    Scene("matrix_zero", "is not a rigid rotation", edit=_frame(transform_matrix=[[0.0] * 4] * 3 + [[0, 0, 0, 1]])),
    # intrinsics
    Scene("no_intrinsics", "frames[0] has no intrinsics", edit=_no_intrinsics),
    Scene("camera_angle_x_negative", "camera_angle_x must be in (0, pi)", edit=_angles(camera_angle_x=-0.5)),
    Scene("camera_angle_x_pi", "camera_angle_x must be in (0, pi)", edit=_angles(camera_angle_x=math.pi)),
    Scene("camera_angle_x_nan", "camera_angle_x must be in (0, pi)", edit=_angles(camera_angle_x=math.nan)),
    Scene("camera_angle_x_text", "intrinsics of frames[0] are not numbers", edit=_angles(camera_angle_x="wide")),
    Scene("camera_angle_x_list", "intrinsics of frames[0] are not numbers", edit=_angles(camera_angle_x=[0.7])),
    Scene("camera_angle_y_negative", "camera_angle_y must be in (0, pi)", edit=_angles(camera_angle_y=-1)),
    Scene("camera_angle_x_per_frame_text", "intrinsics of frames[2] are not numbers",
          edit=lambda m: (_angles()(m), m["frames"][2].update(camera_angle_x="x"))),
    Scene("fl_x_null", "intrinsics of frames[0] are not numbers", edit=_set(fl_x=None)),
    Scene("fl_x_negative", "frames[0] focal length must be positive", edit=_set(fl_x=-40)),
    Scene("fl_x_inf_text", "frames[0] focal length must be positive and finite", edit=_set(fl_x="inf")),
    Scene("fl_y_zero", "frames[0] focal length must be positive", edit=_set(fl_y=0)),
    Scene("fl_y_dict", "intrinsics of frames[0] are not numbers", edit=_set(fl_y={"v": 1})),
    Scene("cx_nan", "frames[0] focal length must be positive and finite", edit=_set(cx=math.nan)),
    Scene("cy_inf", "frames[0] focal length must be positive and finite", edit=_set(cy=-math.inf)),
    Scene("fl_x_per_frame_zero", "frames[1] focal length must be positive", edit=_frame(1, fl_x=0.0)),
    # image size fields
    Scene("w_zero", "w must be in 1..65536", edit=_set(w=0)),
    Scene("w_true", "w must be a whole number, got True", edit=_set(w=True)),
    Scene("w_list", "w must be a whole number", edit=_set(w=[32])),
    Scene("h_text_number", "h must be a whole number, got '32'", edit=_set(h="32")),
    Scene("h_nan", "h must be a whole number, got nan", edit=_set(h=math.nan)),
    Scene("w_over_65536", "w must be in 1..65536, got 70000", edit=_set(w=70000)),
    Scene("w_says_64", "transforms.json says 64x32", edit=_set(w=64)),
    # image files
    Scene("image_empty_file", "000.png: not an image", files={PNG32: b""}),
    Scene("image_png_signature_only", "000.png", files={PNG32: b"\x89PNG\r\n\x1a\n"}),
    Scene("image_bmp", "000.png: image is BMP; views must be PNG or JPEG", files={PNG32: image_bytes((32, 32), "BMP",
                                                                                                    "RGB")}),
    Scene("image_tiff", "000.png: image is TIFF; views must be PNG or JPEG", files={PNG32: image_bytes((32, 32),
                                                                                                     "TIFF")}),
    Scene("image_webp", "000.png: image is WEBP; views must be PNG or JPEG", files={PNG32: image_bytes((32, 32),
                                                                                                     "WEBP")}),
    Scene("image_corrupt_pixels", "000.png: cannot read image", files={PNG32: None}),  # None: the real file corrupted
    Scene("image_corrupt_jpeg", "001.png", files={"views/001.png": corrupt_middle(
        image_bytes((32, 32), "JPEG", "RGB"))[:200]}),
    Scene("image_non_square", "image is 32x16, transforms.json says 32x32", files={PNG32: image_bytes((32, 16))}),
    Scene("image_1x1", "image is 1x1, transforms.json says 32x32", files={PNG32: image_bytes((1, 1))}),
    Scene("image_header_70000_wide", "transforms.json says 70000x1", files={PNG32: png_header(70000, 1)},
          edit=lambda m: (m.pop("w", None), m.pop("h", None))),
    Scene("image_header_0x0", "000.png", files={PNG32: png_header(0, 0)}),
    Scene("image_header_2_31", "000.png", files={PNG32: png_header(2**31 - 1, 2**31 - 1)}),
    Scene("image_a_folder", "frames[0] image 'views/000.png' not found", files={PNG32: DIR}),
    Scene("image_link_to_system_file", "000.png: not an image", files={PNG32: LINK_HOSTNAME}),
]


def make_scene(src: Path, dest: Path, scene: Scene) -> Path:
    shutil.copytree(src, dest)
    t = dest / "transforms.json"
    if scene.edit is not None:
        meta = json.loads(t.read_text())
        scene.edit(meta)
        t.write_text(json.dumps(meta))
    if scene.raw is not None:
        t.write_bytes(scene.raw)
    for rel, data in (scene.files or {}).items():
        p = dest / rel
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
        if data is DIR:
            p.mkdir()
        elif data is LINK_HOSTNAME:
            p.symlink_to("/etc/hostname")
        elif data is None:
            p.write_bytes(corrupt_middle((src / rel).read_bytes()))
        elif data is not GONE:
            p.write_bytes(data)
    return dest


@pytest.fixture
def scene_dir(request, posed_views, tmp_path):
    """(the hostile scene, the user's folder around it with a sentinel, the snapshot before)."""
    scene: Scene = request.param
    folder = make_scene(posed_views, tmp_path / "user" / "scene", scene)
    return scene, folder, with_sentinel(tmp_path / "user")


def _ids(scenes):
    return [s.name for s in scenes]


@pytest.mark.hostile("cli")
@pytest.mark.parametrize("scene_dir", SCENES, ids=_ids(SCENES), indirect=True)
def test_scene_cli(scene_dir, capsys):
    scene, folder, before = scene_dir
    out = folder.parent / "out"
    line = run_cli(["reconstruct", folder, "--out", out, "--steps", 1, "--no-lpips"], capsys)
    assert scene.match in line
    assert_nothing_lost(folder.parent, before, absent=(out,))


@pytest.mark.hostile("api")
@pytest.mark.parametrize("scene_dir", SCENES, ids=_ids(SCENES), indirect=True)
def test_scene_api(scene_dir):
    scene, folder, before = scene_dir
    with pytest.raises(CameraError, match=re.escape(scene.match)) as e:
        load_views(folder)
    assert "\n" not in str(e.value)
    assert_nothing_lost(folder.parent, before)


@pytest.mark.hostile("app")
@pytest.mark.parametrize("scene_dir", SCENES, ids=_ids(SCENES), indirect=True)
def test_scene_app(scene_dir, handlers, capsys):  # noqa: F811
    scene, folder, before = scene_dir
    upload = zip_folder(folder, folder.parent / "views.zip", prefix="mug/")
    capsys.readouterr()
    with pytest.raises(gr.Error) as e:
        handlers.evaluate_zip(str(upload), 20, request=FakeRequest(SESSION))
    msg = e.value.message
    assert (scene.app or scene.match) in msg and e.value.print_exception is False, msg
    assert "\n" not in msg
    assert_public(msg, folder, handlers.folders.root, SESSION)
    logged = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(logged) == 1 and logged[0].startswith("mvgen evaluate: refused: "), logged
    assert_nothing_lost(folder.parent, before)
