"""Fixtures of the output-safety tests: the job tests' tiny model (32 px views), fast settings and posed views."""

import json
import subprocess
import sys

import pytest

from tests.job.conftest import fast_config, one_torch_thread, posed_views, tiny_model  # noqa: F401  (shared fixtures)


def pytest_configure(config):
    config.addinivalue_line("markers", "hostile(entry): one input of the hostile-input catalogue, at entry point "
                                       "cli | app | api (counted by test_catalogue.py against the README)")


@pytest.fixture(scope="session")
def app_config_file(fast_config, tmp_path_factory):  # noqa: F811
    """``fast_config`` as a file for `mvgen run --config` (JSON is YAML)."""
    path = tmp_path_factory.mktemp("appcfg") / "app.yaml"
    path.write_text(json.dumps(fast_config.to_dict()))
    return path


@pytest.fixture(scope="session")
def dead_pid():
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid
