"""torch Dataset over posed multiview folders (design.md §5).

Reads our layout (``index.jsonl`` + one folder per object) or a single user scene folder in NeRF-synthetic
style (``transforms.json`` or ``transforms_train.json`` + RGBA PNGs, optional ``caption.txt``). Images and
cameras come from ``mvgen.cameras.load_views``, the same loader reconstruction uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from mvgen.cameras import CameraError, find_transforms, load_views


@dataclass
class ObjectRecord:
    id: str
    caption: str
    split: str
    folder: Path


def read_index(root: str | Path) -> list[ObjectRecord]:
    """Objects listed in ``root/index.jsonl``, or the single scene when ``root`` holds a transforms file."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset: {root} is not a folder")
    index = root / "index.jsonl"
    if not index.is_file():
        find_transforms(root)  # raises a clear error when this is not a scene folder either
        cap = root / "caption.txt"
        return [ObjectRecord(root.name, cap.read_text().strip() if cap.is_file() else "", "train", root)]
    records = []
    for n, line in enumerate(index.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            records.append(ObjectRecord(str(row["id"]), str(row["caption"]), str(row.get("split", "train")),
                                        root / str(row["id"])))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{index}: line {n} is not a valid record ({e})") from None
    if not records:
        raise ValueError(f"{index}: no objects listed")
    return records


class MultiViewDataset(torch.utils.data.Dataset):
    """One item per object: all its views and cameras.

    Items are dicts: ``images`` [V,3,H,W] float in [-1,1] composited on white, ``alpha`` [V,1,H,W] in [0,1],
    ``c2w`` [V,4,4] (OpenGL), ``K`` [V,3,3], ``caption`` str, ``id`` str. Training picks view subsets per batch.

    Args:
        root: dataset folder (index.jsonl layout) or a single scene folder.
        split: "train", "heldout" or None for all objects.
        resolution: resize views to this square size (intrinsics follow); None keeps the stored size.
        cache: keep decoded views in memory (uint8) after the first read.
    """

    def __init__(self, root: str | Path, split: str | None = "train", resolution: int | None = None, cache: bool = True):
        self.records = [r for r in read_index(root) if split is None or r.split == split]
        if not self.records:
            raise ValueError(f"dataset {root}: no objects in split '{split}'")
        self.resolution = resolution
        self.cache = cache
        self._cache: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.records)

    def _load(self, i: int) -> dict:
        rec = self.records[i]
        try:
            views = load_views(rec.folder)
        except CameraError as e:
            raise ValueError(f"dataset object '{rec.id}': {e}") from None
        cams = views.cameras
        rgba = views.images
        if self.resolution and (cams.width, cams.height) != (self.resolution, self.resolution):
            rgba = torch.nn.functional.interpolate(rgba, size=(self.resolution,) * 2, mode="area")
            cams = cams.resized(self.resolution, self.resolution)
        return {"rgba": (rgba * 255).round().to(torch.uint8), "c2w": cams.c2w, "K": cams.K}

    def __getitem__(self, i: int) -> dict:
        item = self._cache.get(i) or self._load(i)
        if self.cache:
            self._cache[i] = item
        rgba = item["rgba"].float() / 255.0
        alpha = rgba[:, 3:]
        rgb = rgba[:, :3] * alpha + (1.0 - alpha)  # composite on white
        rec = self.records[i]
        return {"images": rgb * 2.0 - 1.0, "alpha": alpha, "c2w": item["c2w"], "K": item["K"],
                "caption": rec.caption, "id": rec.id}
