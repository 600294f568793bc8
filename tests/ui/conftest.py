"""Fixtures of the UI tests: the app served on the tiny model, a zip of posed views; the job's fixtures (tiny model,
fast settings, posed views) come from tests/job/conftest.py."""

import os
import zipfile

import pytest

from tests.job.conftest import fast_config, one_torch_thread, posed_views, tiny_model  # noqa: F401  (shared fixtures)


@pytest.fixture
def keep_gradio_temp_dir(monkeypatch):
    """build_app points GRADIO_TEMP_DIR at its own folder: restore it after the test, so the app ``served_app``
    serves keeps accepting its uploads (Gradio checks an upload's path against it). For tests that build apps
    without serving them (not for tests that use ``served_app``: its first user would restore the variable away)."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", os.environ.get("GRADIO_TEMP_DIR", ""))


@pytest.fixture(scope="session")
def served_app(tiny_model, fast_config, tmp_path_factory):
    """The app on the tiny model with fast settings, launched on 127.0.0.1 and a free port: (demo, url)."""
    from mvgen.job_bench import free_port
    from ui.app import build_app, launch_app

    demo = build_app(tiny_model, fast_config, workdir=tmp_path_factory.mktemp("app"))
    port = free_port()
    launch_app(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    yield demo, f"http://127.0.0.1:{port}/"
    demo.close()


def zip_folder(folder, dest, prefix=""):
    """Zip every file of ``folder`` under ``prefix`` in the archive."""
    with zipfile.ZipFile(dest, "w") as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, prefix + p.relative_to(folder).as_posix())
    return dest


@pytest.fixture(scope="session")
def views_zip(posed_views, tmp_path_factory):
    return zip_folder(posed_views, tmp_path_factory.mktemp("zip") / "mug.zip", prefix="mug/")


@pytest.fixture(scope="session")
def zero123_grid(tmp_path_factory):
    """A procedural red mug rendered at Zero123++ v1.2's six cameras (mvgen.rigs preset), 32 px tiles on its grey
    background, tiled 3 rows x 2 columns like the generator's output: a 64x96 PNG without alpha."""
    import numpy as np
    from PIL import Image

    from mvgen.data.captions import parse_caption
    from mvgen.data.objects import build_mesh
    from mvgen.data.render import render_rgba
    from mvgen.rigs import parse_rig

    rgba = render_rgba(build_mesh(parse_caption("a red mug")), parse_rig("zero123pp-v1.2").cameras(32)) / 255.0
    grey = rgba[..., :3] * rgba[..., 3:] + 0.5 * (1 - rgba[..., 3:])
    tiles = np.round(grey * 255).astype(np.uint8)  # (6, 32, 32, 3)
    grid = np.concatenate([np.concatenate(tiles[r * 2:r * 2 + 2], axis=1) for r in range(3)], axis=0)
    path = tmp_path_factory.mktemp("zero123") / "zero123pp.png"
    Image.fromarray(grid).save(path)
    return path
