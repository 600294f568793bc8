"""Dataset files on disk (design.md section 5): one object folder, the index and a preview contact sheet.

    DIR/dataset.json                 settings the dataset was made with (generate.DatasetConfig)
    DIR/index.jsonl                  one JSON object per line: id, caption, split, category, color, part_color, size
    DIR/<id>/transforms.json         cameras (mvgen.cameras.write_transforms), frames[i].file_path "views/000.png"
    DIR/<id>/views/000.png ...       RGBA, alpha = object coverage
    DIR/<id>/caption.txt             the caption, one line
    DIR/preview.png                  contact sheet (objects x views) with captions, written by --preview

Every object folder is written under a temporary name (``.tmp-<id>-<pid>``) and renamed when complete, so a
killed run never leaves a folder that looks finished; ``clean_temp`` removes the leftovers. The index and the
preview are written to a temporary name and renamed as well.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np

from mvgen.cameras import Cameras, write_transforms
from mvgen.fileio import atomic_path, atomic_write_text

from .captions import CaptionError, ObjectSpec, parse_caption, split_of

TMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"


def view_name(i: int) -> str:
    return f"views/{i:03d}.png"


def index_entry(object_id: str, spec: ObjectSpec) -> dict:
    """The index.jsonl record of one object."""
    return {"id": object_id, "caption": spec.caption(), "split": split_of(spec), "category": spec.category,
            "color": spec.color, "part_color": spec.part_color, "size": spec.size}


def write_object(out_dir: Path, object_id: str, spec: ObjectSpec, cameras: Cameras, rgba: np.ndarray,
                 extra: dict | None = None) -> dict:
    """Write one object folder atomically: RGBA views [V,H,W,4] uint8, transforms.json, caption.txt.
    Replaces an existing (incomplete) folder of the same id. Returns its index entry."""
    from PIL import Image

    if rgba.shape != (len(cameras), cameras.height, cameras.width, 4) or rgba.dtype != np.uint8:
        raise ValueError(f"{object_id}: views must be uint8 [{len(cameras)},{cameras.height},{cameras.width},4], "
                         f"got {rgba.dtype} {list(rgba.shape)}")
    final = out_dir / object_id
    tmp = out_dir / f"{TMP_PREFIX}{object_id}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "views").mkdir(parents=True)
    names = [view_name(i) for i in range(len(cameras))]
    for name, image in zip(names, rgba):
        Image.fromarray(image).save(tmp / name, compress_level=4)
    write_transforms(tmp / "transforms.json", cameras, names, extra={"caption": spec.caption(), **(extra or {})})
    (tmp / "caption.txt").write_text(spec.caption() + "\n")
    if final.exists():  # incomplete leftover (e.g. a view was deleted): move aside, then replace
        old = out_dir / f"{OLD_PREFIX}{object_id}-{os.getpid()}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old)
    else:
        os.rename(tmp, final)
    return index_entry(object_id, spec)


def read_object_spec(folder: Path, views: int) -> ObjectSpec | None:
    """The spec of a complete object folder, or None when anything is missing or unreadable: caption.txt,
    transforms.json with ``views`` frames, and as many views/*.png, each decoding fully at the stated size (a
    truncated or corrupt PNG makes the object redo, not count as done)."""
    try:
        spec = parse_caption((folder / "caption.txt").read_text())
        meta = json.loads((folder / "transforms.json").read_text())
    except (OSError, ValueError, UnicodeDecodeError, CaptionError):  # ValueError: JSONDecodeError
        return None
    frames = meta.get("frames") if isinstance(meta, dict) else None
    if not isinstance(frames, list) or len(frames) != views or len(list((folder / "views").glob("*.png"))) != views:
        return None
    size = (meta.get("w"), meta.get("h"))
    for frame in frames:
        if not isinstance(frame, dict) or not _view_decodes(folder / str(frame.get("file_path", "")), size):
            return None
    return spec


def _view_decodes(path: Path, size: tuple) -> bool:
    """True when ``path`` is a PNG of ``size`` whose pixel data decodes to the end (CRCs and zlib stream)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.format != "PNG" or im.size != size:
                return False
            im.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return False
    return True


def clean_temp(out_dir: Path) -> int:
    """Remove temporary folders left by killed runs; returns how many were removed."""
    removed = 0
    for p in out_dir.iterdir():
        if p.is_dir() and p.name.startswith((TMP_PREFIX, OLD_PREFIX)):
            shutil.rmtree(p)
            removed += 1
    return removed


def write_index(out_dir: Path, entries: Iterable[dict]) -> Path:
    """Write DIR/index.jsonl atomically (one JSON object per line)."""
    path = out_dir / "index.jsonl"
    atomic_write_text(path, "".join(json.dumps(e) + "\n" for e in entries))
    return path


def contact_sheet(out_dir: Path, entries: list[dict], max_objects: int = 12, max_views: int = 8,
                  tile: int = 128) -> Path:
    """DIR/preview.png: one row per object (first ``max_objects`` entries), its first ``max_views`` views
    composited on white at ``tile`` pixels, the caption above each row."""
    from PIL import Image, ImageDraw, ImageFont

    from .render import composite_white

    rows = entries[:max_objects]
    if not rows:
        raise ValueError("no objects to preview")
    label_h = 16
    views = []
    for e in rows:
        folder = out_dir / e["id"]
        meta = json.loads((folder / "transforms.json").read_text())
        imgs = []
        for frame in meta["frames"][:max_views]:
            with Image.open(folder / frame["file_path"]) as im:
                rgb = composite_white(np.asarray(im.convert("RGBA")))
            imgs.append(Image.fromarray(rgb).resize((tile, tile), Image.Resampling.LANCZOS))
        views.append(imgs)
    ncols = max(len(v) for v in views)
    sheet = Image.new("RGB", (ncols * tile, len(rows) * (tile + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=12)
    for r, (e, imgs) in enumerate(zip(rows, views)):
        y = r * (tile + label_h)
        draw.text((4, y + 1), f"{e['caption']}  [{e['split']}]", fill=(0, 0, 0), font=font)
        for c, im in enumerate(imgs):
            sheet.paste(im, (c * tile, y + label_h))
        draw.line([(0, y), (sheet.width, y)], fill=(210, 210, 210))
    path = out_dir / "preview.png"
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path
