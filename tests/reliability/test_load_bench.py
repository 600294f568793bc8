"""`mvgen bench load` (mvgen/load_bench.py): bad arguments are one line before anything starts; a tiny run (3
clients, a few seconds, the tiny random model, a one-place queue so some jobs are refused) prints a table whose
figures add up."""

from __future__ import annotations

import json
import math

import pytest

from mvgen.cli import main
from mvgen.load_bench import percentile


@pytest.mark.parametrize("argv, match", [
    (["--clients", "0"], "--clients must be in 1..1000, got 0"),
    (["--clients", "-2"], "--clients must be in 1..1000, got -2"),
    (["--duration", "0"], "--duration must be a positive number of seconds, got 0.0"),
    (["--duration", "-5"], "--duration must be a positive number of seconds"),
    (["--duration", "nan"], "--duration must be a positive number of seconds, got nan"),
    (["--duration", "inf"], "--duration must be a positive number of seconds, got inf"),
    (["--pause", "-1"], "--pause must be a non-negative number"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_arguments_are_one_line_before_the_server_starts(argv, match, monkeypatch, capsys):
    import mvgen.load_bench

    def no_server(*a, **kw):
        raise AssertionError("the server was started before the arguments were checked")

    monkeypatch.setattr(mvgen.load_bench, "start_server", no_server)
    assert main(["bench", "load", *argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], lines


def test_settings_outside_the_servers_range_are_refused_first(monkeypatch, capsys, tmp_path):
    import mvgen.load_bench

    monkeypatch.setattr(mvgen.load_bench, "start_server", lambda *a, **kw: pytest.fail("server started"))
    assert main(["bench", "load", "--views", "1", "--model", str(tmp_path)]) == 2
    assert "views must be in 4..16, got 1" in capsys.readouterr().err
    assert main(["bench", "load", "--model", str(tmp_path / "none")]) == 2
    assert "model not found at" in capsys.readouterr().err


def test_percentile():
    assert percentile([], 0.5) is None
    assert percentile([3.0], 0.95) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0
    assert percentile(list(range(101)), 0.95) == pytest.approx(95.0)


def test_tiny_load_run_adds_up(tiny_model, fast_config, tmp_path, capsys):
    cfg = tmp_path / "app.yaml"
    cfg.write_text(json.dumps({**fast_config.to_dict(), "max_queue": 1, "with_lpips": False}))
    out = tmp_path / "load.json"
    code = main(["bench", "load", "--clients", "3", "--duration", "6", "--model", str(tiny_model), "--config",
                 str(cfg), "--views", "2", "--steps", "1", "--recon-steps", "5", "--pause", "0.2", "--settle", "0.5",
                 "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    report = json.loads(out.read_text())
    row = report["row"]
    assert row["submitted"] == row["served"] + row["refused"] + row["errors"] >= 3
    assert row["served"] >= 1 and row["errors"] == 0 and row["client_setup_errors"] == 0, row["messages"]
    assert row["refused_say_queue_full"] == row["refused"]  # every refusal says "queue full"
    assert row["page_requests"] >= row["submitted"] and row["page_errors"] == 0
    for k in ("page_p50_s", "page_p95_s", "job_p50_s", "job_p95_s", "page_after_s"):
        assert math.isfinite(row[k]) and row[k] > 0, k
    assert row["page_p50_s"] <= row["page_p95_s"] <= row["page_max_s"]
    assert row["job_p50_s"] <= row["job_p95_s"]
    assert 0 < row["rss_start_mb"] <= row["rss_peak_mb"] and row["rss_before_mb"] <= row["rss_peak_mb"]
    assert row["rss_after_mb"] <= row["rss_peak_mb"]
    assert row["server_alive"] and row["server_tracebacks"] == 0
    assert report["max_queue"] == 1 and report["settings"] == {"views": 2, "steps": 1, "recon_steps": 5}
    assert set(report["targets"]) == {"page_p95_under_1s", "refusals_say_queue_full", "rss_after_within_100mb"}
    assert f"| served | {row['served']} |" in printed and "| jobs submitted |" in printed


def test_the_app_bounds_malloc_once():
    """`mvgen app`'s memory bound (ui/cli.py, measured by this bench): glibc found, one trim thread however often
    it is called."""
    import threading

    from ui.cli import bound_malloc

    assert bound_malloc() and bound_malloc()
    trims = [t for t in threading.enumerate() if t.name == "mvgen-malloc-trim"]
    assert len(trims) == 1 and trims[0].daemon and trims[0].is_alive()
