"""The torch Dataset over our layout and over a user's NeRF-synthetic-style folder."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from mvgen.cameras import orbit, write_transforms
from mvgen.data.dataset import MultiViewDataset, read_index


def _scene(folder, n=3, size=16, colour=(255, 0, 0), nerf_style=False):
    cams = orbit(n, elevation=20.0, width=size)
    (folder / "train").mkdir(parents=True)
    for i in range(n):
        img = np.zeros((size, size, 4), np.uint8)
        img[4:12, 4:12, :3] = colour
        img[4:12, 4:12, 3] = 255
        Image.fromarray(img).save(folder / "train" / f"r_{i}.png")
    if nerf_style:
        meta = {"camera_angle_x": 2 * math.atan(0.5 * size / float(cams.K[0, 0, 0])),
                "frames": [{"file_path": f"./train/r_{i}", "transform_matrix": cams.c2w[i].tolist()} for i in range(n)]}
        (folder / "transforms_train.json").write_text(json.dumps(meta))
    else:
        write_transforms(folder / "transforms.json", cams, [f"train/r_{i}.png" for i in range(n)])
        (folder / "caption.txt").write_text("a red cube\n")
    return cams


def test_our_layout_with_splits(tmp_path):
    for k, split in enumerate(["train", "heldout", "train"]):
        _scene(tmp_path / f"obj{k}", colour=(0, 0, 255))
    rows = [{"id": f"obj{k}", "caption": f"object {k}", "split": s} for k, s in enumerate(["train", "heldout", "train"])]
    (tmp_path / "index.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = MultiViewDataset(tmp_path, split="train")
    assert len(ds) == 2 and [r.id for r in ds.records] == ["obj0", "obj2"]
    item = ds[1]
    assert item["images"].shape == (3, 3, 16, 16) and item["caption"] == "object 2"
    assert item["images"][:, :, 0, 0].eq(1.0).all()  # transparent background composited on white
    assert torch.allclose(item["images"][0, :, 8, 8], torch.tensor([-1.0, -1.0, 1.0]))  # blue in [-1,1]
    assert item["alpha"][0, 0, 8, 8] == 1 and item["alpha"][0, 0, 0, 0] == 0
    assert len(MultiViewDataset(tmp_path, split=None)) == 3


def test_nerf_synthetic_style_folder_and_resize(tmp_path):
    cams = _scene(tmp_path, n=4, size=32, nerf_style=True)
    ds = MultiViewDataset(tmp_path, split="train", resolution=16)
    item = ds[0]
    assert item["images"].shape == (4, 3, 16, 16) and item["caption"] == ""
    assert torch.allclose(item["K"][:, 0, 0], cams.K[:, 0, 0] / 2, rtol=1e-5)
    assert torch.allclose(item["c2w"], cams.c2w, atol=1e-6)


def test_bad_datasets(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        read_index(tmp_path / "missing")
    with pytest.raises(ValueError, match="no transforms.json"):
        read_index(tmp_path)
    (tmp_path / "index.jsonl").write_text('{"id": "a"}\n')
    with pytest.raises(ValueError, match="line 1"):
        read_index(tmp_path)
    (tmp_path / "index.jsonl").write_text('{"id": "a", "caption": "x", "split": "train"}\n')
    with pytest.raises(ValueError, match="object 'a'"):
        MultiViewDataset(tmp_path)[0]
    with pytest.raises(ValueError, match="no objects in split"):
        MultiViewDataset(tmp_path, split="heldout")
