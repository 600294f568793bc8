"""Hostile calls of the Python API (``mvgen/api.py``: ``load_generator``, the generator, ``reconstruct``,
``text_to_3d``, ``GeneratedViews.save``) and of the app's config (design.md §7, issue 15): each raises a
``ValueError`` subclass (a missing model folder: ``FileNotFoundError``) with one line naming the field or the file,
before any expensive work; a pickle in a model folder is never loaded; a sentinel next to the output and every
file that was there survive."""

from __future__ import annotations

import math
import re

import pytest

from tests.reliability.hostile import assert_nothing_lost, with_sentinel
from tests.reliability.model_folders import MODEL_FOLDERS, build_model_folder

pytestmark = [pytest.mark.hostile("api"), pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def _one_line_error(excinfo, match: str, types=(ValueError,)):
    e = excinfo.value
    assert isinstance(e, types), repr(e)
    assert match in str(e) and "\n" not in str(e) and len(str(e)) < 600, str(e)


@pytest.fixture(scope="module")
def generator(tiny_model):
    from mvgen import load_generator

    return load_generator(tiny_model, device="cpu")


@pytest.mark.parametrize("name", list(MODEL_FOLDERS))
def test_load_generator_bad_model_folder(name, tiny_model, tmp_path):
    from mvgen import load_generator

    folder, match, marker = build_model_folder(name, tiny_model, tmp_path / "models")
    before = with_sentinel(tmp_path)
    with pytest.raises(Exception) as e:
        load_generator(folder, device="cpu")
    _one_line_error(e, match, (ValueError, FileNotFoundError))
    assert not marker.exists(), "a pickle was unpickled"
    assert_nothing_lost(tmp_path, before)


@pytest.mark.parametrize("kwargs, match", [
    ({"device": "tpu"}, "device"), ({"device": "cuda:7"}, "cuda:7"), ({"device": 3}, "device"),
    ({"config": "/nonexistent/app.yaml"}, "app config /nonexistent/app.yaml: file not found"),
], ids=["device_tpu", "device_cuda_7", "device_int", "config_missing"])
def test_load_generator_bad_arguments(kwargs, match, tiny_model):
    from mvgen import load_generator

    with pytest.raises(ValueError) as e:
        load_generator(tiny_model, **kwargs)
    _one_line_error(e, match)


@pytest.mark.parametrize("text, match", [
    ("views: [1, 2\n", "not valid YAML"), ("- a\n- b\n", "expected a mapping of fields"),
    ("viewz: 3\n", "unknown field(s) ['viewz']"), ("max_queue: -1\n", "max_queue must be a positive integer"),
    ("views: !!python/object/apply:builtins.open ['EXECUTED', 'w']\n", "not valid YAML"),
    ("guidance: .inf\n", "guidance must be a number in [0, 20], got inf"),
], ids=["yaml_syntax", "a_list", "unknown_field", "max_queue_negative", "python_tag", "guidance_inf"])
def test_load_generator_bad_config_file(text, match, tiny_model, tmp_path, monkeypatch):
    from mvgen import load_generator

    monkeypatch.chdir(tmp_path)
    (tmp_path / "app.yaml").write_text(text)
    with pytest.raises(ValueError) as e:
        load_generator(tiny_model, config=tmp_path / "app.yaml")
    _one_line_error(e, match)
    assert not (tmp_path / "EXECUTED").exists()


GENERATOR_CASES = [
    ({"prompt": None}, "prompt must be text, got NoneType"), ({"prompt": 42}, "prompt must be text, got int"),
    ({"prompt": b"a red mug"}, "prompt must be text, got bytes"), ({"prompt": ""}, "prompt is empty"),
    ({"prompt": "x" * 301}, "prompt is 301 characters"), ({"prompt": "mug\0"}, "control character (U+0000)"),
    ({"prompt": "\x1b[6n"}, "control character (U+001B)"),
    ({"views": 0}, "views must be in 2..32, got 0"), ({"views": 33}, "views must be in 2..32"),
    ({"views": "8"}, "views must be a whole number, got '8'"), ({"views": True}, "views must be a whole number"),
    ({"views": 2.5}, "views must be a whole number, got 2.5"), ({"views": math.inf}, "views must be a whole number"),
    ({"elevation": math.nan}, "elevation"), ({"elevation": "up"}, "elevation"), ({"elevation": 61}, "elevation"),
    ({"steps": 0}, "steps must be in 1..1000"), ({"steps": True}, "steps must be a whole number"),
    ({"steps": 1001}, "steps must be in 1..1000"),
    ({"guidance": -1}, "guidance"), ({"guidance": math.nan}, "guidance"), ({"guidance": "3"}, "guidance"),
    ({"seed": -1}, "seed must be in 0..4294967295"), ({"seed": 2**64}, "seed must be in 0..4294967295"),
    ({"seed": 1.5}, "seed must be a whole number"), ({"seed": "0"}, "seed must be a whole number"),
]


@pytest.mark.parametrize("kwargs, match", GENERATOR_CASES,
                         ids=[f"{k}-{i}" for i, (kw, _) in enumerate(GENERATOR_CASES) for k in kw])
def test_generator_bad_call(kwargs, match, generator):
    kwargs = {"prompt": "a red mug", "steps": 1, **kwargs}
    with pytest.raises(ValueError) as e:
        generator(kwargs.pop("prompt"), **kwargs)
    _one_line_error(e, match)


@pytest.fixture
def user(tmp_path, posed_views):
    import shutil

    u = tmp_path / "user"
    shutil.copytree(posed_views, u / "views")
    return u


RECONSTRUCT_CASES = [
    (lambda u: {"views": u / "nothing"}, "no transforms.json or transforms_train.json found"),
    (lambda u: {"views": u / "sentinel.txt"}, "sentinel.txt: not valid JSON"),
    (lambda u: {"out": u / "sentinel.txt"}, "sentinel.txt"),
    (lambda u: {"out": u / "sentinel.txt" / "out"}, "sentinel.txt"),
    (lambda u: {"out": u}, "user"),
    (lambda u: {"out": u / "views"}, "views"),
    (lambda u: {"out": u / "views" / ".."}, "user"),
    (lambda u: {"steps": 0}, "steps"), (lambda u: {"steps": -5}, "steps"), (lambda u: {"steps": "many"}, "steps"),
    (lambda u: {"steps": math.nan}, "steps"), (lambda u: {"steps": True}, "steps"),
    (lambda u: {"seed": -1}, "seed"), (lambda u: {"seed": "zero"}, "seed"),
    (lambda u: {"device": "tpu"}, "device"),
    (lambda u: {"config": u / "sentinel.txt"}, "sentinel.txt: expected a mapping of fields"),
]
RECONSTRUCT_IDS = ["views_missing", "views_a_text_file", "out_a_file", "out_under_a_file", "out_foreign",
                   "out_the_views", "out_dotdot_foreign", "steps_0", "steps_negative", "steps_text", "steps_nan",
                   "steps_true", "seed_negative", "seed_text", "device_tpu", "config_a_text_file"]


@pytest.mark.parametrize("make, match", RECONSTRUCT_CASES, ids=RECONSTRUCT_IDS)
def test_reconstruct_bad_call(make, match, user):
    from mvgen import reconstruct

    before = with_sentinel(user)
    kwargs = {"views": user / "views", "out": user / "out", "steps": 2, **make(user)}
    with pytest.raises(ValueError) as e:
        reconstruct(kwargs.pop("views"), kwargs.pop("out"), **kwargs)
    _one_line_error(e, match)
    assert_nothing_lost(user, before, absent=(user / "out",))


TEXT_TO_3D_CASES = [
    ({"prompt": ""}, "prompt is empty"), ({"prompt": None}, "prompt must be text"),
    ({"prompt": "a\x00"}, "control character"), ({"views": 1}, "views must be in 2..32, got 1"),
    ({"recon_steps": 0}, "recon_steps must be in 1..20000"), ({"recon_steps": "x"}, "recon_steps"),
    ({"seed": -1}, "seed"), ({"steps": 0}, "steps must be in 1..1000"),
]


@pytest.mark.parametrize("kwargs, match", TEXT_TO_3D_CASES, ids=[f"{k}-{i}" for i, (kw, _) in
                                                               enumerate(TEXT_TO_3D_CASES) for k in kw])
def test_text_to_3d_bad_call(kwargs, match, generator, user):
    from mvgen import text_to_3d

    before = with_sentinel(user)
    kwargs = {"prompt": "a red mug", "views": 2, "steps": 1, "recon_steps": 5, **kwargs}
    with pytest.raises(ValueError) as e:
        text_to_3d(kwargs.pop("prompt"), user / "out", generator=generator, views_only=True, **kwargs)
    _one_line_error(e, match)
    assert_nothing_lost(user, before, absent=(user / "out",))


@pytest.mark.parametrize("out", ["sentinel.txt", ".", "views", "views/.."], ids=lambda o: f"out={o}")
def test_text_to_3d_and_save_refuse_a_foreign_out(out, generator, user):
    """Someone else's folder (or a file) as ``out``: refused before generating, whatever the spelling."""
    from mvgen import text_to_3d
    from mvgen.api import GeneratedViews

    before = with_sentinel(user)
    with pytest.raises(ValueError) as e:
        text_to_3d("a red mug", user / out, generator=generator, views=2, steps=1, views_only=True)
    assert re.search(r"user|views|sentinel", str(e.value)) and "\n" not in str(e.value), str(e.value)
    views = GeneratedViews("a red mug", images=None, cameras=None, manifest={})
    with pytest.raises(ValueError):
        views.save(user / out)
    assert_nothing_lost(user, before)
