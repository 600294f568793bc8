"""The tables, files and plots of `mvgen evaluate views` (``mvgen.evaluate_views``): per-object and mean rows,
results.json / .csv / .md, the side-by-side table of several models and a bar plot per metric."""

from __future__ import annotations

import json
from pathlib import Path

METRICS = ("psnr", "ssim", "lpips")


def mean_row(rows: list[dict]) -> dict:
    """Means (and standard deviations) of every metric column over ``rows``."""
    import statistics

    out = {"object": "mean", "views": None, "n": len(rows)}
    for col in [f"{p}_{k}" for p in ("heldout", "cross") for k in METRICS]:
        vals = [r[col] for r in rows if r.get(col) is not None]
        if vals:
            out[col] = statistics.fmean(vals)
            out[col + "_std"] = statistics.pstdev(vals) if len(vals) > 1 else 0.0
    out["seconds"] = round(sum(r.get("seconds") or 0 for r in rows), 2)
    return out


def _fmt(v, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def markdown_table(results: dict) -> str:
    """One model: a row per object and the mean row. Several: the side-by-side table of their means."""
    models = results["models"]
    impls = sorted({r.get("lpips_impl") for m in models.values() for r in m["objects"] if r.get("lpips_impl")})
    lp = f"LPIPS ({', '.join(impls)})" if impls else "LPIPS"
    head = f"| {{}} | views | held-out PSNR dB | SSIM | {lp} | cross-render PSNR dB | SSIM | LPIPS | seconds |"
    sep = "|---|---|---|---|---|---|---|---|---|"

    def cells(r):
        return " | ".join([_fmt(r.get("heldout_psnr"), ".2f"), _fmt(r.get("heldout_ssim"), ".4f"),
                           _fmt(r.get("heldout_lpips"), ".4f"), _fmt(r.get("cross_psnr"), ".2f"),
                           _fmt(r.get("cross_ssim"), ".4f"), _fmt(r.get("cross_lpips"), ".4f")])

    if len(models) == 1:
        (name, m), = models.items()
        lines = [head.format("object"), sep]
        lines += [f"| {r['object']} | {r['views']} | {cells(r)} | {_fmt(r.get('seconds'), '.1f')} |"
                  for r in m["objects"]]
        lines.append(f"| **mean** ({m['mean']['n']}) | | {cells(m['mean'])} | {m['mean']['seconds']:.1f} |")
        return "\n".join(lines)
    lines = [head.format("model (objects)").replace("| views |", "| views/object |"), sep]
    for name, m in models.items():
        views = sorted({r["views"] for r in m["objects"]})
        lines.append(f"| {name} ({m['mean']['n']}) | {'/'.join(map(str, views))} | {cells(m['mean'])} "
                     f"| {m['mean']['seconds']:.1f} |")
    return "\n".join(lines)


CSV_COLUMNS = ("model", "object", "views", "kind", "mask", "background", "tolerance", "heldout_psnr",
               "heldout_ssim", "heldout_lpips", "cross_psnr", "cross_ssim", "cross_lpips", "lpips_impl", "seconds")


def write_results(out: Path, results: dict) -> None:
    """results.json, results.csv, results.md; with two or more models compare.md and compare_<metric>.png."""
    import csv
    import io

    from mvgen.fileio import atomic_write_text

    buf = io.StringIO()
    w = csv.DictWriter(buf, CSV_COLUMNS, extrasaction="ignore")
    w.writeheader()
    for name, m in results["models"].items():
        for r in [*m["objects"], m["mean"]]:
            w.writerow({**r, "model": name, "background": "/".join(map(str, r["background"]))
                        if r.get("background") else ""})
    table = markdown_table(results)
    atomic_write_text(out / "results.csv", buf.getvalue())
    atomic_write_text(out / "results.md", table + "\n")
    atomic_write_text(out / "results.json", json.dumps({**results, "table": table}, indent=2))
    if len(results["models"]) >= 2:
        atomic_write_text(out / "compare.md", table + "\n")
        bar_plots(out, results)


def bar_plots(out: Path, results: dict) -> list[Path]:
    """compare_<protocol>_<metric>.png: one bar per model (mean, std as error bar) for every metric present."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mvgen.fileio import atomic_path

    names = list(results["models"])
    written = []
    for proto, label in (("heldout", "held-out"), ("cross", "cross-render")):
        for k in METRICS:
            col = f"{proto}_{k}"
            means = [results["models"][n]["mean"].get(col) for n in names]
            if any(v is None for v in means):
                continue
            stds = [results["models"][n]["mean"].get(col + "_std", 0.0) for n in names]
            fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(names), 3.2), dpi=100)
            ax.bar(names, means, yerr=stds, capsize=4, color="#4C72B0")
            ax.set_title(f"{label} {k.upper()}" + (" (higher is better)" if k != "lpips" else " (lower is better)"),
                         fontsize=9)
            ax.tick_params(axis="x", labelsize=8, rotation=15)
            fig.tight_layout()
            path = out / f"compare_{col}.png"
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format="png")
            plt.close(fig)
            written.append(path)
    return written
