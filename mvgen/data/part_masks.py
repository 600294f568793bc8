"""Where the caption's part is in each view: part coverage maps for per-part supervision in training.

``part_coverage(spec, cameras, size)`` renders the object's mesh with the part's faces white and every other face
black under flat light (``render.render_rgba``, the dataset's renderer and cameras), so a pixel's red times its
alpha is the fraction of it the part covers; the map is area-averaged to ``size`` (the latent grid, 16² for 128²
views). ``PartCache`` keeps the maps of a run's training objects beside its latent cache
(``<run>/part_cache.safetensors``, float16 [N, V, 1, size, size], captions in the metadata); the trainer weights
each latent cell's loss by 1 + ``part_weight`` x coverage (``mvgen.train.TrainConfig.part_weight``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .captions import ObjectSpec, parse_caption
from .objects import build_mesh, part_faces
from .render import Lighting, render_rgba

PART_CACHE_NAME = "part_cache.safetensors"
FLAT = Lighting(ambient=1.0, sky=0.0, lights=())  # every surface at its albedo


def part_coverage(spec: ObjectSpec | str, cameras, size: int) -> np.ndarray:
    """float32 [V, size, size] in [0, 1]: the share of each cell the part covers in each camera's view (views of
    ``cameras.height`` x ``cameras.width``, both multiples of ``size``)."""
    spec = parse_caption(spec) if isinstance(spec, str) else spec
    H, W = cameras.height, cameras.width
    if size < 1 or H % size or W % size:
        raise ValueError(f"part_coverage: views of {W}x{H} do not divide into a {size}x{size} grid")
    mesh = build_mesh(spec)
    colours = np.where(part_faces(spec.category)[:, None], 255, 0).astype(np.uint8)
    mesh.visual.face_colors = np.concatenate([colours.repeat(3, 1), np.full_like(colours, 255)], axis=1)
    rgba = render_rgba(mesh, cameras, supersample=2, lighting=FLAT).astype(np.float32) / 255.0
    cover = rgba[..., 0] * rgba[..., 3]  # straight red (part share of the hits) x alpha (share hit)
    V = len(cover)
    return cover.reshape(V, size, H // size, size, W // size).mean(axis=(2, 4))


class PartCache:
    """Part coverage of every training object of a run (see the module docstring): read when its captions are
    the dataset's, else rendered (deterministic from the captions and the stored cameras) and written.

    Args:
        records: the dataset's training ``ObjectRecord``s, in the latent cache's order.
        size: the latent grid.
        path: the cache file.
    """

    def __init__(self, records, size: int, path: Path):
        from safetensors.torch import load_file, save_file
        from tqdm.auto import tqdm

        from mvgen.cameras import find_transforms, read_transforms

        captions = [r.caption for r in records]
        path = Path(path)
        if path.is_file():
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                cached = json.loads((f.metadata() or {}).get("captions", "null"))
            if cached == captions:
                self.coverage = load_file(str(path))["coverage"]
                return
            print(f"{path}: made for other objects, rendering the part maps again")
        from .captions import CaptionError

        for r in records:
            try:
                parse_caption(r.caption)
            except CaptionError as e:
                raise ValueError(f"part_weight needs objects of the procedural set (mvgen dataset); object "
                                 f"'{r.id}': {e}") from None
        maps = []
        for r in tqdm(records, desc="part maps", unit="obj"):
            cams, _ = read_transforms(find_transforms(r.folder))
            maps.append(torch.from_numpy(part_coverage(r.caption, cams, size)))
        self.coverage = torch.stack(maps).unsqueeze(2).half()  # [N, V, 1, size, size]
        tmp = path.with_name(f".{path.name}.tmp")
        save_file({"coverage": self.coverage}, str(tmp), metadata={"captions": json.dumps(captions)})
        tmp.replace(path)

    def weights(self, idx: torch.Tensor, views: torch.Tensor, part_weight: float) -> torch.Tensor:
        """[B, V, 1, size, size]: 1 + part_weight x coverage of objects ``idx`` [B] at views ``views`` [B, V]."""
        cover = torch.stack([self.coverage[i, v] for i, v in zip(idx, views)]).float()
        return 1.0 + part_weight * cover
