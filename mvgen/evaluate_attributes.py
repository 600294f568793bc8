"""Do the words land? Attribute accuracy and the wording benchmark (`mvgen evaluate attributes|wording`).

For a prompt that means object ``spec``, the generated views are compared with ground-truth renders, at the same
cameras, of ``spec`` and of every object that differs from it in one attribute:

- ``color``: the main colour replaced by each of the 12 colours;
- ``part_color``: the part colour replaced by each colour (only captions that name a part colour);
- ``category``: the category replaced by each of the 20 (same colours).

The attribute is right when the intended object's ground truth is the nearest. Colours are judged by mean
squared error in pixels (a colour is low-frequency: LPIPS barely sees it), categories by LPIPS (shape).

``attributes`` scores canonical captions (held-out colour×category pairs by default); ``wording`` scores typed
prompts of ``mvgen.data.wording``: per family, the words of one kind are replaced by synonyms (``color``,
``part_color``, ``category``) or the canonical words are wrapped in filler words and other word orders
(``filler_order``, judged on all three attributes).
"""

from __future__ import annotations

import random
import time
from dataclasses import replace

import numpy as np

from mvgen.data.captions import CATEGORIES, COLORS, ObjectSpec
from mvgen.limits import DEFAULT_GUIDANCE, DEFAULT_PART_GUIDANCE, PART_GUIDANCE

ATTRIBUTES = ("color", "part_color", "category")


def rivals(spec: ObjectSpec, attribute: str) -> list[ObjectSpec]:
    """``spec`` first, then every object that differs from it only in ``attribute``."""
    if attribute == "category":
        values = CATEGORIES
    elif attribute in ("color", "part_color"):
        values = list(COLORS)
    else:
        raise ValueError(f"attribute must be one of {ATTRIBUTES}, got {attribute!r}")
    if attribute == "part_color" and spec.part_color is None:
        raise ValueError(f"{spec.caption()!r} names no part colour")
    current = getattr(spec, attribute)
    out = [spec]
    for v in values:
        if v == current:
            continue
        other = replace(spec, **{attribute: v})
        if attribute == "category" and other.part_color is not None and other.part_color == \
                ObjectSpec(v, other.color).effective_part_color:
            other = replace(other, part_color=None)  # the same object, in canonical form
        out.append(other)
    return out


def nearest(gen, spec: ObjectSpec, attribute: str, cameras, lpips_fn) -> ObjectSpec:
    """The rival (see ``rivals``) whose ground truth at ``cameras`` is nearest to the views ``gen`` [V,3,H,W]."""
    import torch

    from mvgen.data.objects import build_mesh
    from mvgen.evaluate import render_truth

    candidates = rivals(spec, attribute)
    truths = torch.stack([render_truth(c.caption(), cameras, build_mesh(c)) for c in candidates])  # (K,V,3,H,W)
    if attribute == "category":
        fgen = lpips_fn.features(gen)
        d = torch.stack([lpips_fn.distance(fgen, lpips_fn.features(t)).mean() for t in truths])
    else:
        d = ((truths - gen[None]) ** 2).mean(dim=(1, 2, 3, 4))
    return candidates[int(d.argmin())]


def score_prompts(pipe, rows: list[dict], views: int = 8, steps: int = 20, guidance: float = DEFAULT_GUIDANCE,
                  seed: int = 0, progress=None, part_guidance: float = DEFAULT_PART_GUIDANCE,
                  autocast: bool | None = None) -> list[dict]:
    """For each row {prompt, spec, attributes}: generate at a seeded rig (``mvgen.evaluate.eval_rig``), with
    part-colour guidance ``part_guidance`` where the prompt names a part colour (``mvgen.generate.part_contrast``),
    and record per attribute whether the intended object is the nearest (``hits``) and which one was. ``autocast``:
    as in ``PTDiTMultiViewPipeline.__call__`` (None: the machine's default precision)."""
    import torch

    from mvgen.evaluate import eval_rig
    from mvgen.generate import part_contrast
    from mvgen.metrics import get_lpips

    lpips_fn = get_lpips()
    out = []
    for i, row in enumerate(rows):
        rig = eval_rig(i, views, pipe.image_size, seed)
        t0 = time.perf_counter()
        gen = pipe(row["prompt"], cameras=rig, num_inference_steps=steps, guidance_scale=guidance,
                   output_type="pt", generator=torch.Generator().manual_seed(seed + i), autocast=autocast,
                   **part_contrast(row["prompt"], part_guidance)).images[0].float()
        seconds = time.perf_counter() - t0
        got = {a: nearest(gen, row["spec"], a, rig, lpips_fn) for a in row["attributes"]}
        out.append({**row, "spec": row["spec"].caption(), "seconds": round(seconds, 2),
                    "hits": {a: got[a] == row["spec"] for a in got},
                    "nearest": {a: getattr(got[a], a) for a in got}})
        if progress:
            progress(i + 1, len(rows))
    return out


def accuracy(rows: list[dict], key: str = "family") -> dict:
    """{group: {attribute: share of hits}} over scored rows grouped by ``key``."""
    groups: dict = {}
    for r in rows:
        for a, hit in r["hits"].items():
            groups.setdefault(r.get(key, "all"), {}).setdefault(a, []).append(hit)
    return {g: {a: float(np.mean(h)) for a, h in by.items()} for g, by in groups.items()}


def attribute_rows(specs: list[ObjectSpec]) -> list[dict]:
    """Canonical captions, judged on every attribute they name."""
    return [{"family": "canonical", "prompt": s.caption(), "spec": s,
             "attributes": [a for a in ATTRIBUTES if a != "part_color" or s.part_color]} for s in specs]


def wording_rows(specs: list[ObjectSpec], seed: int = 0) -> list[dict]:
    """Typed prompts per family (see the module docstring); specs without a part colour skip ``part_color``."""
    from mvgen.data.wording import (CATEGORY_SYNONYMS, COLOR_SYNONYMS, PART_SYNONYMS, paraphrase)

    rng = random.Random(seed)
    rows = []
    for s in specs:
        part = f" with {s.part_color} {s.part}" if s.part_color else ""
        size = f"{s.size} " if s.size else ""
        col = rng.choice(COLOR_SYNONYMS[s.color][1:])
        cat = rng.choice(CATEGORY_SYNONYMS[s.category][1:])
        rows.append({"family": "color", "prompt": f"a {size}{col} {s.category}{part}", "spec": s,
                     "attributes": ["color"]})
        rows.append({"family": "category", "prompt": f"a {size}{s.color} {cat}{part}", "spec": s,
                     "attributes": ["category"]})
        if s.part_color:
            pc = rng.choice(COLOR_SYNONYMS[s.part_color][1:])
            pw = rng.choice(PART_SYNONYMS[s.part])
            rows.append({"family": "part_color", "prompt": f"a {size}{s.color} {s.category} with {pc} {pw}",
                         "spec": s, "attributes": ["part_color"]})
        rows.append({"family": "filler_order", "spec": s,
                     "prompt": paraphrase(s, rng, synonyms=False, fillers=True, reorder=True),
                     "attributes": [a for a in ATTRIBUTES if a != "part_color" or s.part_color]})
    return rows


def specs_for(split: str, limit: int, seed: int, with_part: bool = False) -> list[ObjectSpec]:
    """``limit`` captions of ``split`` (seeded); ``with_part``: only captions that name a part colour."""
    from mvgen.data.captions import all_specs, split_of

    pool = [s for s in all_specs() if split_of(s) == split and (s.part_color or not with_part)]
    if not 1 <= limit <= len(pool):
        raise ValueError(f"--limit must be in 1..{len(pool)}, got {limit}")
    return random.Random(seed).sample(pool, limit)


def table(acc: dict, title: str) -> str:
    """Markdown: one row per family / group, one column per attribute (share of hits)."""
    cols = [a for a in ATTRIBUTES if any(a in by for by in acc.values())]
    lines = [f"| {title} | " + " | ".join(f"{c} accuracy" for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for g, by in acc.items():
        lines.append(f"| {g} | " + " | ".join(f"{100 * by[c]:.0f}%" if c in by else "–" for c in cols) + " |")
    return "\n".join(lines)


def add_parsers(what) -> None:
    """`mvgen evaluate attributes` and `mvgen evaluate wording` (registered by mvgen/evaluate.py)."""
    import argparse

    from mvgen.evaluate import add_sampling_arguments

    for name, help_, split, limit in (
            ("attributes", "main colour / part colour / category accuracy of canonical captions", "heldout", 24),
            ("wording", "typed prompts (synonyms, filler words, word order) mapped to the intended object",
             "train", 16)):
        p = what.add_parser(name, help=help_, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.add_argument("--split", choices=["heldout", "train"], default=split)
        p.add_argument("--limit", type=int, default=limit, help="number of objects (captions with a part colour)")
        add_sampling_arguments(p)
        p.add_argument("--json", help="write the rows and accuracies here")
        p.set_defaults(func=_run, which=name)


def _run(args) -> int:
    import json

    from tqdm.auto import tqdm

    from mvgen.fileio import atomic_write_text, check_output_file
    from mvgen.generate import load_pipeline
    from mvgen.evaluate import precision_name
    from mvgen.limits import VIEWS
    from mvgen.settings import PRECISIONS

    VIEWS.check_int("--views", args.views)
    PART_GUIDANCE.check_number("--part-guidance", args.part_guidance)
    specs = specs_for(args.split, args.limit, args.seed, with_part=True)
    if args.json:
        check_output_file(args.json, "--json")
    rows = attribute_rows(specs) if args.which == "attributes" else wording_rows(specs, args.seed)
    pipe, path = load_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    bar = tqdm(total=len(rows), desc=f"evaluate {args.which}")
    scored = score_prompts(pipe, rows, args.views, args.steps, args.guidance, args.seed,
                           progress=lambda i, n: bar.update(1), part_guidance=args.part_guidance,
                           autocast=PRECISIONS[args.precision])
    bar.close()
    acc = accuracy(scored)
    print(table(acc, f"{args.which} ({args.split}, {len(specs)} objects)"))
    if args.json:
        atomic_write_text(args.json, json.dumps({"which": args.which, "split": args.split, "model": str(path),
                                                 "guidance": args.guidance, "part_guidance": args.part_guidance,
                                                 "precision": precision_name(PRECISIONS[args.precision], pipe.device.type),
                                                 "accuracy": acc, "rows": scored}, indent=2))
    return 0
