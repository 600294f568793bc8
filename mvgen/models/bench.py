"""``mvgen bench model``: parameters, FLOPs, attention FLOPs vs each variant's formula, CPU latency and peak memory of
the five attention variants (proxy = PT-DiT, full, spatial_temporal, mediator = DAM, pswa = PiT) at equal width and
depth.

How each number is measured:
* flops: ``torch.utils.flop_counter.FlopCounterMode`` over one forward (batch 1), run on the meta device so
  big presets cost nothing. FLOPs convention of FlopCounterMode: one multiply-add = 2 FLOPs.
* attn_flops: the FLOPs of the QKᵀ and AV products inside the visual self/cross-attention modules only
  (latent, proxy and mediator tokens; the text cross-attention is left out, as in Eq. 3–4; the mediator pooling,
  position biases and depthwise convs are not products of attention matrices and are left out too). On meta
  tensors SDPA runs as its math decomposition, whose two batched matmuls are exactly QKᵀ and AV; CPU's fused SDPA
  kernel is given the same count through a custom mapping.
* attn_flops_formula: Eq. 3–4 of arXiv 2409.04005 (multiply-adds) × 2 to be in the same FLOPs: full 2N²D,
  PT-DiT 2M²D + 2NMD + 4PND, per layer, × depth. spatial_temporal (not in the paper) by the same counting:
  2V(hw)²D + 2hwV²D; mediator (V·n mediators, n the largest trained count, the model's default): 4(Vn)ND;
  pswa (two channel groups of D/2, windows P₁ = pf·ph·pw and P₂ = V·ph·pw): ND(P₁ + P₂).
* latency_ms: median wall time of no-grad CPU forwards (batch 1) after one warm-up, in a fresh subprocess, in fp32
  or (``--precision bf16``) under bf16 autocast, as the app samples on a CPU with native bf16.
* cpu_ms: median process CPU time (all threads) of the same forwards: unlike wall time it does not grow when
  other processes take the cores, so it is the steadier number on a shared machine.
* peak_mem_mb: in that subprocess, the growth of the process's peak resident set (VmHWM, reset through
  /proc/self/clear_refs just before) over its RSS before the first forward: the memory one forward adds,
  whatever allocates it (tensors, SDPA workspaces, allocator overhead). Weights are not included.
* sdpa: "auto" is the model's own choice (``attention.attend``): two plain matmuls on CPU when an attention
  matrix has at most 512² entries per head (windows, proxy tokens), else PyTorch's SDPA kernel choice (on CPU a
  fused flash kernel whose memory is linear in the sequence length); "math" forces the unfused kernel that
  materialises the N×S attention matrix everywhere.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import asdict, dataclass

PATCH = 2
IN_CHANNELS = 4
CAPTION_CHANNELS = 384
VARIANTS = ("proxy", "full", "spatial_temporal", "mediator", "pswa")
PRECISIONS = ("fp32", "bf16")
WINDOWED = ("proxy", "pswa")


@dataclass
class Spec:
    """One benchmark row: a model layout and what to measure."""

    attention_type: str
    views: int
    grid: int  # tokens per side of a view
    hidden_size: int
    depth: int
    heads: int
    window: tuple[int, int, int]
    text_tokens: int = 77
    preset: str = "-"
    measure: bool = True  # latency and memory (else FLOPs only)
    sdpa: str = "auto"
    repeats: int = 3
    threads: int = 0  # torch.set_num_threads in the child; 0 = PyTorch's default
    mediator_counts: tuple[int, ...] = (4, 16)  # mediator rows run with the largest (the model's default)
    precision: str = "fp32"  # timed forwards in fp32 or under bf16 autocast ("bf16")

    def config(self) -> dict:
        return dict(sample_size=self.grid * PATCH, in_channels=IN_CHANNELS, patch_size=PATCH, num_layers=self.depth,
                    num_attention_heads=self.heads, attention_head_dim=self.hidden_size // self.heads,
                    window_size=tuple(self.window), attention_type=self.attention_type,
                    caption_channels=CAPTION_CHANNELS, max_views=max(32, self.views),
                    mediator_counts=tuple(self.mediator_counts))


def register(subparsers) -> None:
    p = subparsers.add_parser("model", help="the five attention variants: FLOPs, latency, memory",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="only the measured sweep (no preset FLOP rows)")
    p.add_argument("--views", type=int, default=8, help="views of the comparison (default 8)")
    p.add_argument("--grids", default="8,16,32",
                   help="tokens per side of each view, comma-separated: one measured row per variant, kernel and grid "
                        "(default 8,16,32; windows: 8×8 per view from 16² on, 2×2-token windows at 8² as in the tiny preset)")
    p.add_argument("--hidden", type=int, default=384, help="hidden size D (default 384)")
    p.add_argument("--heads", type=int, default=6, help="attention heads (default 6)")
    p.add_argument("--depth", type=int, default=8, help="layers (default 8)")
    p.add_argument("--text-tokens", type=int, default=77, help="prompt tokens T (default 77)")
    p.add_argument("--repeats", type=int, default=3, help="timed forwards per row, median reported (default 3)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for the timed forwards (default: PyTorch's)")
    p.add_argument("--sdpa", choices=["auto", "math", "both"], default="both",
                   help="SDPA kernel for latency/memory rows (default both)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="timed forwards in fp32 or under bf16 autocast (how the app samples on a CPU with native "
                        "bf16; emulated and slow elsewhere) (default fp32)")
    p.add_argument("--json", metavar="PATH", help="also write the rows as a JSON list")
    p.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

    from .presets import PAPER_PARAMS_M, preset_config, window_for_grid

    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0, got {args.threads}")
    grids = _parse_grids(args.grids)
    for name in ("views", "hidden", "heads", "depth", "text_tokens", "repeats"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.hidden % args.heads:
        raise ValueError(f"--hidden {args.hidden} must be divisible by --heads {args.heads}")
    backends = ["auto", "math"] if args.sdpa == "both" else [args.sdpa]
    common = dict(hidden_size=args.hidden, depth=args.depth, heads=args.heads, text_tokens=args.text_tokens,
                  repeats=args.repeats, threads=args.threads, precision=args.precision)
    specs = [Spec(t, args.views, g, window=sweep_window(g), sdpa=b, **common)
             for g in grids for b in backends for t in VARIANTS]
    if not args.quick:
        for name in ("tiny", "S", "B", "L", "XL"):
            cfg = preset_config(name)
            for t in VARIANTS:
                specs.append(Spec(t, 8, cfg["sample_size"] // PATCH, cfg["num_attention_heads"] * cfg["attention_head_dim"],
                                  cfg["num_layers"], cfg["num_attention_heads"], tuple(cfg["window_size"]),
                                  text_tokens=args.text_tokens, preset=name, measure=name == "tiny", repeats=args.repeats,
                                  threads=args.threads, precision=args.precision))

    rows = []
    for spec in tqdm(specs, desc="bench model", unit="row", file=sys.stderr):
        row = count_flops(spec)
        row.update(measure_in_subprocess(spec) if spec.measure else
                   dict(latency_ms=None, cpu_ms=None, peak_mem_mb=None, threads=None, precision=None, load_avg=None))
        if spec.preset in PAPER_PARAMS_M and spec.attention_type == "proxy":
            row["paper_params"] = PAPER_PARAMS_M[spec.preset] * 1_000_000
        rows.append(row)
    add_ratios(rows)
    print(markdown_table(rows))
    print(machine_line(rows))
    if args.json:
        from mvgen.fileio import atomic_write_text

        atomic_write_text(args.json, json.dumps(rows, indent=2))
    return 0


def sweep_window(grid: int) -> tuple[int, int, int]:
    """Windows of the measured sweep: the paper's 8×8 windows per view from 16² tokens on; below that the tiny
    preset's rule (4×4 windows of 2×2 tokens at 8², the shipped model's layout)."""
    from .presets import window_for_grid

    return window_for_grid(grid, grid, 8 if grid >= 16 else max(1, grid // 2))


def _parse_grids(text: str) -> list[int]:
    try:
        grids = [int(g) for g in str(text).split(",") if g.strip()]
    except ValueError:
        raise ValueError(f"--grids must be comma-separated integers such as 8,16,32, got {text!r}") from None
    if not grids or any(g < 2 or g % 2 for g in grids):
        raise ValueError(f"--grids must list even token grids >= 2 (windows tile them), got {text!r}")
    return grids


# ----------------------------------------------------------------------------------------------- FLOPs


def _sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of QKᵀ and AV for CPU's fused SDPA op, from the shapes of q [.., L, E], k [.., S, E], v [.., S, Ev]."""
    batch = math.prod(query[:-2])
    L, E, S, Ev = query[-2], query[-1], key[-2], value[-1]
    return 2 * batch * L * S * E + 2 * batch * L * S * Ev


def attention_formula(spec: Spec) -> int:
    """Paper Eq. 3–4 (and the same counting for the other variants) in FLOPs (= 2 × multiply-adds), batch 1."""
    V, hw, D = spec.views, spec.grid * spec.grid, spec.hidden_size
    N = V * hw
    if spec.attention_type == "proxy":
        P = math.prod(spec.window)
        M = N // P
        macs = 2 * M * M * D + 2 * N * M * D + 4 * P * N * D
    elif spec.attention_type == "full":
        macs = 2 * N * N * D
    elif spec.attention_type == "spatial_temporal":
        macs = 2 * V * hw * hw * D + 2 * hw * V * V * D
    elif spec.attention_type == "mediator":  # gather (Vn×N) and broadcast (N×Vn), each QKᵀ + AV
        macs = 4 * V * max(spec.mediator_counts) * N * D
    elif spec.attention_type == "pswa":  # two groups of D/2 channels: windows P1 (as configured), P2 (across views)
        pf, ph, pw = spec.window
        macs = N * D * (pf * ph * pw + V * ph * pw)
    else:
        raise ValueError(f"no attention formula for {spec.attention_type!r}")
    return 2 * macs * spec.depth


def count_flops(spec: Spec, device: str = "meta") -> dict:
    """Params, forward FLOPs and visual-attention FLOPs of one layout (batch 1), by default on the meta device
    (no compute; SDPA then decomposes into its two matmuls). On "cpu" the fused SDPA kernel is counted through
    ``_sdpa_flops``; both give the same numbers."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .ptdit import PTDiTTransformer3DModel

    with torch.device(device):
        model = PTDiTTransformer3DModel(**spec.config()).eval()
        H = spec.grid * PATCH
        inputs = dict(hidden_states=torch.randn(1, spec.views, IN_CHANNELS, H, H), timestep=torch.ones(1),
                      encoder_hidden_states=torch.randn(1, spec.text_tokens, CAPTION_CHANNELS),
                      plucker=torch.randn(1, spec.views, 6, H, H))
    sdpa_ops = {torch.ops.aten.bmm, torch.ops.aten._scaled_dot_product_flash_attention_for_cpu}
    counter = FlopCounterMode(display=False, custom_mapping={
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops})
    with counter, torch.no_grad():
        model(**inputs)
    counts = counter.get_flop_counts()
    prefix = type(model).__name__
    visual = [f"{prefix}.{n}" for n, m in model.named_modules() if getattr(m, "kind", None) == "visual"]
    attn = sum(c for name in visual for op, c in counts.get(name, {}).items() if op in sdpa_ops)
    return dict(preset=spec.preset, attention_type=spec.attention_type, sdpa=spec.sdpa if spec.measure else "-",
                views=spec.views, grid=[spec.grid, spec.grid], window=list(spec.window),
                num_mediators=max(spec.mediator_counts) if spec.attention_type == "mediator" else None,
                hidden_size=spec.hidden_size,
                depth=spec.depth, params=sum(p.numel() for p in model.parameters()),
                flops=counter.get_total_flops(), attn_flops=attn, attn_flops_formula=attention_formula(spec))


# ------------------------------------------------------------------------------------ latency and memory


def measure_in_subprocess(spec: Spec) -> dict:
    """Run ``_child`` in a fresh interpreter (so peak memory belongs to this row alone)."""
    proc = subprocess.run([sys.executable, "-m", "mvgen.models.bench", json.dumps(asdict(spec))],
                          capture_output=True, text=True, env=os.environ.copy())
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child for {spec.attention_type} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise OSError(f"/proc/self/status has no {field}")


def _child(spec_json: str) -> None:
    import statistics
    import time
    from contextlib import nullcontext

    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from mvgen.cameras import orbit

    from .ptdit import PTDiTTransformer3DModel

    spec = Spec(**json.loads(spec_json))
    if spec.threads:
        torch.set_num_threads(spec.threads)
    load_before = os.getloadavg()[0]
    torch.manual_seed(0)
    model = PTDiTTransformer3DModel(**spec.config()).eval()
    H = spec.grid * PATCH
    inputs = dict(hidden_states=torch.randn(1, spec.views, IN_CHANNELS, H, H), timestep=torch.full((1,), 500.0),
                  encoder_hidden_states=torch.randn(1, spec.text_tokens, CAPTION_CHANNELS),
                  plucker=orbit(spec.views, width=8 * H).plucker(H, H)[None])
    kernel = (lambda: sdpa_kernel([SDPBackend.MATH])) if spec.sdpa == "math" else nullcontext

    def forward():
        with torch.no_grad(), kernel(), torch.autocast("cpu", torch.bfloat16, enabled=spec.precision == "bf16"):
            return model(**inputs).sample.dtype

    before = _status_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM (peak RSS) to the current RSS
        f.write("5")
    out_dtype = forward()  # also the warm-up
    peak = _status_mb("VmHWM") - before
    times, cpu_times = [], []
    for _ in range(spec.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        forward()
        times.append((time.perf_counter() - t0) * 1000)
        cpu_times.append((time.process_time() - c0) * 1000)
    load = [round(load_before, 2), round(os.getloadavg()[0], 2)]  # 1-minute load average before / after
    print(json.dumps(dict(latency_ms=statistics.median(times), cpu_ms=statistics.median(cpu_times), peak_mem_mb=peak,
                          threads=torch.get_num_threads(), precision=spec.precision,
                          output_dtype=str(out_dtype).removeprefix("torch."),
                          load_avg=load)))


# ------------------------------------------------------------------------------------------------ table


def add_ratios(rows: list[dict]) -> None:
    """latency and memory relative to the ``full`` row of the same layout and SDPA kernel."""
    key = lambda r: (r["preset"], r["sdpa"], r["views"], tuple(r["grid"]), r["hidden_size"], r["depth"])  # noqa: E731
    full = {key(r): r for r in rows if r["attention_type"] == "full"}
    for r in rows:
        f = full.get(key(r))
        for name in ("latency_ms", "cpu_ms", "peak_mem_mb"):
            ok = f is not None and r[name] is not None and f[name]
            r[name.split("_")[0] + "_vs_full"] = round(r[name] / f[name], 3) if ok else None


def markdown_table(rows: list[dict]) -> str:
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    def layout(r):  # what sets the attention pattern: the window, or the mediator count
        if r["attention_type"] in WINDOWED:
            return str(tuple(r["window"]))
        return f"n={r['num_mediators']}" if r["attention_type"] == "mediator" else "-"

    head = ("| preset | attention | sdpa | views × grid | window | D | depth | params (M) | GFLOPs | attn GFLOPs "
            "| formula GFLOPs | attn/formula | latency ms | vs full | CPU ms | vs full | peak MB | vs full |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        params = num(r["params"] / 1e6, ".2f") + (f" (paper {r['paper_params'] / 1e6:.0f})" if "paper_params" in r else "")
        ratio = r["attn_flops"] / r["attn_flops_formula"] if r["attn_flops_formula"] else None
        lines.append(
            f"| {r['preset']} | {r['attention_type']} | {r['sdpa']} | {r['views']} × {r['grid'][0]}² "
            f"| {layout(r)} | {r['hidden_size']} | {r['depth']} "
            f"| {params} | {r['flops'] / 1e9:.1f} | {r['attn_flops'] / 1e9:.2f} | {r['attn_flops_formula'] / 1e9:.2f} "
            f"| {num(ratio, '.4f')} | {num(r['latency_ms'], '.0f')} | {num(r['latency_vs_full'], '.2f')} "
            f"| {num(r['cpu_ms'], '.0f')} | {num(r['cpu_vs_full'], '.2f')} "
            f"| {num(r['peak_mem_mb'], '.0f')} | {num(r['peak_vs_full'], '.2f')} |")
    note = ("FLOPs: FlopCounterMode convention (1 multiply-add = 2 FLOPs), batch 1, forward; attn = QKᵀ and AV of the "
            "visual attention only; formula = 2 × the multiply-add count (proxy: the paper's Eq. 3–4; see "
            "mvgen/models/bench.py for the others). Latency: median no-grad CPU forward "
            "(wall); CPU ms: its process CPU time; "
            "peak MB: peak-RSS growth during one forward in a fresh process (weights excluded).")
    return "\n".join(lines) + "\n\n" + note


def machine_line(rows: list[dict]) -> str:
    """CPU model, cores, threads used and the 1-minute load average seen during the timed rows."""
    import platform

    import torch

    cpu = platform.processor() or "unknown CPU"
    if os.path.isfile("/proc/cpuinfo"):  # Linux: the marketing name
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    loads = [x for r in rows if r.get("load_avg") for x in r["load_avg"]]
    threads = sorted({r["threads"] for r in rows if r.get("threads")})
    precisions = sorted({r["precision"] for r in rows if r.get("precision")})
    load = f"{min(loads):.1f}–{max(loads):.1f}" if loads else "-"
    return (f"Machine: {cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, threads {threads or '-'}, "
            f"precision {'/'.join(precisions) or '-'}, 1-min load average during timing {load}.")


if __name__ == "__main__":
    _child(sys.argv[1])
