"""A procedural object rendered on a known orbit, and the same views as generators hand them out: one grid image,
a video and loose images, all without alpha (composited on white); plus the job's shared fixtures."""

import json

import numpy as np
import pytest
from PIL import Image

from tests.job.conftest import fast_config, one_torch_thread, tiny_model  # noqa: F401  (shared fixtures)

VIEWS, SIZE, ELEVATION = 8, 32, 20.0


@pytest.fixture(scope="session")
def orbit_object(tmp_path_factory):
    """A red mug, 8 RGBA views at 32 px (supersampled: soft edges) on an orbit at 20° elevation, in the dataset's
    layout (transforms.json); returns (folder, the rig text of its orbit)."""
    from mvgen.data.captions import parse_caption
    from mvgen.data.generate import DatasetConfig, make_object

    out = tmp_path_factory.mktemp("object")
    cfg = DatasetConfig(views=VIEWS, resolution=SIZE, supersample=2, elevation=(ELEVATION, ELEVATION))
    make_object(out, "mug", parse_caption("a red mug"), cfg)
    meta = json.loads((out / "mug" / "transforms.json").read_text())
    return out / "mug", f"orbit:views={VIEWS},elev={ELEVATION:g},start={meta['azimuth_start_deg']!r}"


def on_white(folder) -> list:
    """The object's views composited on white, uint8 [H,W,3] each, in view order."""
    meta = json.loads((folder / "transforms.json").read_text())
    out = []
    for f in meta["frames"]:
        rgba = np.asarray(Image.open(folder / f["file_path"]).convert("RGBA")).astype(np.float64) / 255.0
        out.append(np.round((rgba[..., :3] * rgba[..., 3:] + 1 - rgba[..., 3:]) * 255).astype(np.uint8))
    return out


@pytest.fixture(scope="session")
def generator_outputs(orbit_object, tmp_path_factory):
    """The object's views as a generator writes them, no alpha: {"grid": 2x4 grid PNG, "video": MP4 of the orbit,
    "loose": folder of PNGs 0.png .. 7.png}."""
    import imageio.v2 as imageio

    folder, _ = orbit_object
    rgb = on_white(folder)
    out = tmp_path_factory.mktemp("generator")
    rows = [np.concatenate(rgb[r * 4:(r + 1) * 4], axis=1) for r in range(2)]
    Image.fromarray(np.concatenate(rows, axis=0)).save(out / "grid.png")
    (out / "loose").mkdir()
    for i, im in enumerate(rgb):
        Image.fromarray(im).save(out / "loose" / f"{i}.png")
    writer = imageio.get_writer(out / "orbit.mp4", format="FFMPEG", fps=8, quality=10, macro_block_size=1)
    for im in rgb:
        writer.append_data(im)
    writer.close()
    return {"grid": out / "grid.png", "video": out / "orbit.mp4", "loose": out / "loose"}
