"""Fixtures of the UI tests: the app served on the tiny model, a zip of posed views; the job's fixtures (tiny model,
fast settings, posed views) come from tests/job/conftest.py."""

import zipfile

import pytest

from tests.job.conftest import fast_config, one_torch_thread, posed_views, tiny_model  # noqa: F401  (shared fixtures)


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
