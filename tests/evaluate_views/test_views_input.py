"""Reading any generator's views (mvgen/views_input.py): grids, videos, loose images and zips in view order; masks
from the background; named errors."""

import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from mvgen.views_input import ViewsError, background_mask, parse_grid, read_views
from tests.evaluate_views.conftest import on_white


def _tiles(n=6, size=16, bg=(128, 128, 128)):
    """n views on a grey background, view i holding a square whose colour encodes i."""
    out = []
    for i in range(n):
        im = np.full((size, size, 3), bg, np.uint8)
        im[4:12, 4:12] = (20 * i, 200, 255 - 20 * i)
        out.append(im)
    return out


def test_grid_tiles_come_row_by_row_and_get_masks_from_a_grey_background(tmp_path):
    tiles = _tiles()
    grid = np.concatenate([np.concatenate(tiles[r * 2:r * 2 + 2], axis=1) for r in range(3)], axis=0)  # 3x2
    Image.fromarray(grid).save(tmp_path / "z.png")
    views = read_views(tmp_path / "z.png", "3x2")
    assert views.images.shape == (6, 4, 16, 16) and views.kind == "grid"
    assert [round(float(views.images[i, 0, 8, 8]) * 255) for i in range(6)] == [0, 20, 40, 60, 80, 100]
    assert views.mask["mode"] == "background" and views.mask["background"] == [128, 128, 128]
    alpha = views.images[:, 3]
    assert (alpha[:, 4:12, 4:12] == 1).all() and alpha.sum() == 6 * 64  # exactly the squares
    assert views.mask["tolerance"] == 0.1 and views.mask["coverage"] == 0.25


def test_unmixing_keeps_soft_edges_when_composited_on_white():
    """A pixel mostly background gets a soft alpha whose composite on white is the pixel again."""
    rgb = torch.ones(2, 3, 16, 16)
    rgb[:, :, 4:12, 4:12] = torch.tensor([0.2, 0.4, 0.9])[:, None, None]
    rgb[:, :, 4:12, 12] = (0.15 * torch.tensor([0.2, 0.4, 0.9]) + 0.85)[:, None]  # a barely covered column
    rgba, bg = background_mask(rgb, 0.1, ["a", "b"])
    assert torch.allclose(bg, torch.ones(3))
    a = rgba[:, 3:4]
    assert 0.1 < float(a[0, 0, 6, 12]) < 0.3 and (a[:, 0, 4:12, 4:12] == 1).all()
    assert torch.allclose(rgba[:, :3] * a + (1 - a), rgb, atol=1e-5)


def test_loose_images_zip_and_video_frames_in_view_order(orbit_object, generator_outputs, tmp_path):
    folder, _ = orbit_object
    loose = read_views(generator_outputs["loose"])
    assert loose.names == [f"{i}.png" for i in range(8)] and loose.kind == "images"
    ref = torch.from_numpy(np.stack(on_white(folder))).permute(0, 3, 1, 2).float() / 255
    a = loose.images[:, 3:4]
    assert torch.allclose(loose.images[:, :3] * a + (1 - a), ref, atol=2 / 255)
    with zipfile.ZipFile(tmp_path / "v.zip", "w") as z:  # shuffled members, natural order: 2 before 10
        for i in (10, 2, 0, 1):
            z.write(generator_outputs["loose"] / f"{i % 8}.png", f"out/{i}.png")
    zipped = read_views(tmp_path / "v.zip")
    assert zipped.names == ["out/0.png", "out/1.png", "out/2.png", "out/10.png"]
    video = read_views(generator_outputs["video"])
    assert video.images.shape == (8, 4, 32, 32) and video.mask["mode"] == "background"
    assert float((video.images[:, :3] * video.images[:, 3:] + 1 - video.images[:, 3:] - ref).abs().mean()) < 0.02
    every2 = read_views(generator_outputs["video"], frame_step=2)
    assert every2.names == [f"orbit.mp4#frame {i}" for i in (0, 2, 4, 6)]
    opaque = read_views(generator_outputs["loose"], mask="none")
    assert (opaque.images[:, 3] == 1).all() and opaque.mask["mode"] == "none"
    alpha = read_views(folder)  # RGBA views keep their alpha under "auto"
    assert alpha.mask["mode"] == "alpha" and alpha.cameras is not None and len(alpha.cameras) == 8


def test_bad_inputs_name_the_field(generator_outputs, tmp_path):
    with pytest.raises(ViewsError, match=r"grid: 3x3 tiles do not divide grid.png \(128x64\): width 128 is not a "
                                         r"multiple of 3 columns; height 64 is not a multiple of 3 rows"):
        read_views(generator_outputs["grid"], "3x3")
    with pytest.raises(ViewsError, match=r"grid: grid.png is one image; say how its views are tiled"):
        read_views(generator_outputs["grid"])
    with pytest.raises(ViewsError, match=r"grid must look like ROWSxCOLS"):
        parse_grid("three by two")
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    with pytest.raises(ViewsError, match=r"video: cannot read broken.mp4"):
        read_views(tmp_path / "broken.mp4")
    rng = np.random.default_rng(0)
    (tmp_path / "noise").mkdir()
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "noise" / f"{i}.png")
    with pytest.raises(ViewsError, match=r"background: cannot be estimated: only \d+% of the image borders"):
        read_views(tmp_path / "noise")
    (tmp_path / "blank").mkdir()
    for i in range(2):
        Image.new("RGB", (32, 32), "white").save(tmp_path / "blank" / f"{i}.png")
    with pytest.raises(ViewsError, match=r"background: 0.png, 1.png show nothing but the background #ffffff"):
        read_views(tmp_path / "blank")
    (tmp_path / "mixed").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "mixed" / "0.png")
    Image.new("RGB", (16, 32)).save(tmp_path / "mixed" / "1.png")
    with pytest.raises(ViewsError, match=r"views: 1.png is 16x32, 0.png is 32x32; every view must have one size"):
        read_views(tmp_path / "mixed")
    (tmp_path / "fake.png").write_text("not an image")
    with pytest.raises(ViewsError, match=r"not an image"):
        read_views(tmp_path / "fake.png", "1x2")
    with pytest.raises(ViewsError, match=r"mask must be one of auto, background, none"):
        read_views(generator_outputs["loose"], mask="magic")
