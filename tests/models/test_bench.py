"""`mvgen bench model` accounting: measured attention FLOPs equal the paper's Eq. 3–4, on meta and CPU."""

import argparse

import pytest

from mvgen.models import bench


def spec(attention_type, views=2, grid=4, window=(1, 2, 2), **kw):
    return bench.Spec(attention_type, views, grid, hidden_size=32, depth=2, heads=2, window=window, text_tokens=5, **kw)


@pytest.mark.parametrize("attention_type", bench.VARIANTS)
def test_attention_flops_match_formula_on_meta_and_cpu(attention_type):
    s = spec(attention_type)
    meta = bench.count_flops(s)
    cpu = bench.count_flops(s, device="cpu")  # CPU's fused SDPA kernel, counted through the custom mapping
    assert meta["attn_flops"] == cpu["attn_flops"] == bench.attention_formula(s) > 0
    assert meta["flops"] == cpu["flops"] > meta["attn_flops"]  # text attention, linears and convs come on top
    assert meta["params"] == cpu["params"]


def test_formula_values_by_hand():
    # N = 2*4*4 = 32 tokens, D = 32, P = 4, M = 8, depth 2; FLOPs = 2 x multiply-adds
    assert bench.attention_formula(spec("full")) == 2 * 2 * (2 * 32 * 32 * 32)
    assert bench.attention_formula(spec("proxy")) == 2 * 2 * (2 * 8 * 8 * 32 + 2 * 32 * 8 * 32 + 4 * 4 * 32 * 32)
    assert bench.attention_formula(spec("spatial_temporal")) == 2 * 2 * (2 * 2 * 16 * 16 * 32 + 2 * 16 * 2 * 2 * 32)
    # mediator: V*n = 2*16 mediators; gather 32x32 and broadcast 32x32 matrices, each QKᵀ + AV over D
    assert bench.attention_formula(spec("mediator")) == 2 * 2 * (4 * 2 * 16 * 32 * 32)
    assert bench.attention_formula(spec("mediator", mediator_counts=(4,))) == 2 * 2 * (4 * 2 * 4 * 32 * 32)
    # pswa: group windows of 4 tokens (1, 2, 2) and 8 tokens (2 views x 2 x 2), D/2 = 16 channels each
    assert bench.attention_formula(spec("pswa")) == 2 * 2 * (2 * 32 * 4 * 16 + 2 * 32 * 8 * 16)


def test_mediator_flops_follow_the_count():
    s = spec("mediator", mediator_counts=(1, 4))
    assert bench.count_flops(s)["attn_flops"] == bench.attention_formula(s) == 2 * 2 * (4 * 2 * 4 * 32 * 32)


def test_subprocess_measurement_and_table():
    proxy = spec("proxy", repeats=1)
    row = {**bench.count_flops(proxy), **bench.measure_in_subprocess(proxy)}  # one fresh child process
    assert row["latency_ms"] > 0 and row["cpu_ms"] > 0 and row["peak_mem_mb"] >= 0 and row["threads"] >= 1
    full = {**bench.count_flops(spec("full")), "latency_ms": 2 * row["latency_ms"], "cpu_ms": 2 * row["cpu_ms"],
            "peak_mem_mb": 4 * row["peak_mem_mb"]}
    rows = [row, full]
    bench.add_ratios(rows)
    assert rows[0]["latency_vs_full"] == 0.5 and rows[1]["latency_vs_full"] == 1.0
    assert rows[0]["peak_vs_full"] in (0.25, None)  # None only if the child measured 0 MB
    table = bench.markdown_table(rows)
    assert table.count("\n| - | ") == 2 and "| proxy | auto | 2 × 4² | (1, 2, 2) |" in table
    rows = [bench.count_flops(spec("mediator")), bench.count_flops(spec("pswa"))]
    for r in rows:
        r.update(latency_ms=None, cpu_ms=None, peak_mem_mb=None)
    bench.add_ratios(rows)
    table = bench.markdown_table(rows)
    assert "| mediator | auto | 2 × 4² | n=16 |" in table and "| pswa | auto | 2 × 4² | (1, 2, 2) |" in table


@pytest.mark.parametrize("precision, dtype", [("fp32", "float32"), ("bf16", "bfloat16")])
def test_precision_sets_the_timed_forwards_dtype(precision, dtype):
    row = bench.measure_in_subprocess(spec("full", repeats=1, precision=precision))
    assert row["precision"] == precision and row["output_dtype"] == dtype and row["latency_ms"] > 0
    assert f"precision {precision}," in bench.machine_line([row])


def test_bad_arguments():
    parser = argparse.ArgumentParser()
    bench.register(parser.add_subparsers())
    with pytest.raises(ValueError, match="--hidden 30 must be divisible by --heads 4"):
        args = parser.parse_args(["model", "--hidden", "30", "--heads", "4"])
        args.func(args)
    with pytest.raises(ValueError, match="--views must be >= 1"):
        args = parser.parse_args(["model", "--views", "0"])
        args.func(args)
    with pytest.raises(SystemExit):  # argparse: not one of fp32, bf16
        parser.parse_args(["model", "--precision", "fp16"])


@pytest.mark.parametrize("text", ["", "8,x", "7", "0", "8,-16"])
def test_bad_grids_are_refused_naming_the_flag(text):
    with pytest.raises(ValueError, match="--grids"):
        bench._parse_grids(text)


def test_sweep_windows_follow_the_paper_rule_and_the_tiny_preset_below_16():
    assert bench._parse_grids("8,16,32") == [8, 16, 32]
    assert [bench.sweep_window(g) for g in (8, 16, 32)] == [(1, 2, 2), (1, 2, 2), (1, 4, 4)]
