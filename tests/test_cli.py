"""The `mvgen` dispatcher (mvgen/cli.py): an explicit command table, so a source checkout has every command without
`pip install -e .` (no entry points are read), and `mvgen --help` imports neither torch nor gradio."""

import subprocess
import sys

from mvgen.cli import BENCHES, COMMANDS, build_parser

EXPECTED = {"dataset", "train-vae", "train", "export-model", "generate", "evaluate", "reconstruct", "run", "app",
            "bench"}


def _choices(parser, dest):
    action = next(a for a in parser._actions if getattr(a, "dest", None) == dest)
    return action.choices


def test_every_command_and_bench_is_in_the_table_without_entry_points(monkeypatch):
    import importlib.metadata

    def no_entry_points(*args, **kwargs):
        raise AssertionError("entry points read: a source checkout would lack the command")

    monkeypatch.setattr(importlib.metadata, "entry_points", no_entry_points)
    commands = _choices(build_parser(), "command")
    assert set(commands) == EXPECTED and len(COMMANDS) == len(EXPECTED) - 1
    assert set(_choices(commands["bench"], "bench")) == {"dataset", "model", "train", "scaling", "raster", "fit",
                                                         "fit-real", "e2e", "load", "gpu"}
    assert len(BENCHES) == 10


def test_building_the_parser_imports_no_heavy_package():
    """Command modules keep torch, gradio and diffusers inside their commands: `mvgen --help` stays fast."""
    code = ("import sys, mvgen.cli; mvgen.cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'gradio', 'diffusers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
