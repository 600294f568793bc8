"""Image helpers: contact-sheet grids with labels, tensor <-> PNG."""

from __future__ import annotations

import os

import numpy as np

from mvgen.fileio import atomic_path


def to_uint8(img) -> np.ndarray:
    """[H,W,C] float in [0,1] (numpy or torch) or uint8 -> uint8 numpy."""
    if hasattr(img, "detach"):
        img = img.detach().cpu().numpy()
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
    return img


def grid(rows: list[list], labels: list[str] | None = None, col_labels: list[str] | None = None, pad: int = 2):
    """A PIL contact sheet: ``rows`` of equally sized images (PIL, or [H,W,3] arrays), optional row labels on
    the left and column labels on top."""
    from PIL import Image, ImageDraw

    rows = [[np.asarray(im.convert("RGB")) if hasattr(im, "convert") else to_uint8(im)[..., :3] for im in r] for r in rows]
    H, W = rows[0][0].shape[:2]
    ncol = max(len(r) for r in rows)
    left = 0 if not labels else min(260, 7 * max(len(s) for s in labels) + 8)
    top = 14 if col_labels else 0
    sheet = Image.new("RGB", (left + ncol * (W + pad) + pad, top + len(rows) * (H + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for i, r in enumerate(rows):
        y = top + pad + i * (H + pad)
        if labels:
            draw.text((4, y + H // 2 - 6), labels[i][:48], fill=(0, 0, 0))
        for j, im in enumerate(r):
            sheet.paste(Image.fromarray(im), (left + pad + j * (W + pad), y))
    for j, s in enumerate(col_labels or []):
        draw.text((left + pad + j * (W + pad) + 2, 1), s, fill=(0, 0, 0))
    return sheet


def save_png(img, path: str | os.PathLike) -> None:
    """Save a PIL image or array atomically."""
    from PIL import Image

    if not hasattr(img, "save"):
        img = Image.fromarray(to_uint8(img))
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
