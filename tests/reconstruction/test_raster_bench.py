"""The bench commands' plumbing (`mvgen bench raster`)."""

import json

from mvgen.cli import main


def test_bench_raster_runs_small(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["bench", "raster", "--gaussians", "300", "--sizes", "32", "--repeats", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {r["backend"] for r in rows} == {"cpu", "torch"}
    assert all(set(r) >= {"backend", "gaussians", "width", "height", "fwd_bwd_ms"} for r in rows)
    assert "| backend |" in capsys.readouterr().out
