"""Named model sizes and the window rule.

Paper sizes (arXiv 2409.04005, Table 4): S 10 layers / 288 wide / 6 heads (32M), B 12/640/10 (144M),
L 28/864/12 (605M), XL 28/1152/16 (1142M). The paper keeps 64 windows per image at every resolution
(256 px -> (1,2,2), 512 -> (1,4,4), 1024 -> (1,8,8), 2048 -> (1,16,16) on a 2×2-patched f=8 latent),
i.e. an 8×8 arrangement of windows per view; ``window_for_grid`` applies that rule to any token grid.

``tiny`` is ours: a CPU-trainable model (8 layers, 256 wide) whose windows keep a 4×4 arrangement per view, so
8×8-token views (16×16 latents, patch 2) get (1,2,2) windows like the paper's 256 px setting.
Views never share a window in these presets (pf = 1), which keeps the model equivariant to view order.
"""

from __future__ import annotations

# Paper parameter counts (millions) for the comparison table in the benchmark.
PAPER_PARAMS_M = {"S": 32, "B": 144, "L": 605, "XL": 1142}

# Each preset: config fields for PTDiTTransformer3DModel plus "windows_per_side" (the window rule; not a
# config field). sample_size is the latent size the model is built for (pos-embed base grid, window rule).
PRESETS: dict[str, dict] = {
    "tiny": dict(num_layers=8, num_attention_heads=4, attention_head_dim=64, sample_size=16, windows_per_side=4),
    "S": dict(num_layers=10, num_attention_heads=6, attention_head_dim=48, sample_size=32, windows_per_side=8),
    "B": dict(num_layers=12, num_attention_heads=10, attention_head_dim=64, sample_size=32, windows_per_side=8),
    "L": dict(num_layers=28, num_attention_heads=12, attention_head_dim=72, sample_size=32, windows_per_side=8),
    "XL": dict(num_layers=28, num_attention_heads=16, attention_head_dim=72, sample_size=32, windows_per_side=8),
}


def window_for_grid(grid_h: int, grid_w: int, windows_per_side: int = 8, pf: int = 1) -> tuple[int, int, int]:
    """Window (pf, ph, pw) giving ``windows_per_side``² windows per view on a grid_h × grid_w token grid (the
    paper's rule uses 8, i.e. 64 windows). Windows are at least 1 token; the grid must divide evenly."""
    ph, pw = max(1, grid_h // windows_per_side), max(1, grid_w // windows_per_side)
    if grid_h % ph or grid_w % pw:
        raise ValueError(f"token grid {grid_h}x{grid_w} cannot be split into {windows_per_side}x{windows_per_side} "
                         f"equal windows; pass window_size explicitly")
    return (pf, ph, pw)


def preset_config(name: str, **overrides) -> dict:
    """Config kwargs of preset ``name`` with ``overrides`` applied; the window follows the preset's rule for the
    (possibly overridden) sample_size and patch_size unless window_size is given."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    config = dict(PRESETS[name])
    per_side = config.pop("windows_per_side")
    config.update(overrides)
    if config.get("window_size") is None:
        patch = config.get("patch_size", 2)
        grid = config["sample_size"] // patch
        config["window_size"] = window_for_grid(grid, grid, per_side)
    return config
