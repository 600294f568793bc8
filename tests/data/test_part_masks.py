"""Part coverage maps (per-part supervision): they mark exactly the pixels the caption's part colour paints."""

import numpy as np
import pytest

from mvgen.cameras import orbit
from mvgen.data.captions import CATEGORIES, ObjectSpec
from mvgen.data.objects import build_mesh, part_faces
from mvgen.data.part_masks import part_coverage
from mvgen.data.render import render_rgba


@pytest.mark.parametrize("category", ["table", "mushroom", "car"])
def test_coverage_marks_the_pixels_painted_in_the_part_colour(category):
    spec = ObjectSpec(category, "red", "blue")
    cams = orbit(3, elevation=25.0, width=64)
    cover = part_coverage(spec, cams, 64)
    rgba = render_rgba(build_mesh(spec), cams).astype(np.float32) / 255.0
    assert cover.shape == (3, 64, 64) and cover.dtype == np.float32
    assert (cover >= 0).all() and (cover <= rgba[..., 3] + 1e-2).all()  # the part is inside the silhouette
    r, b = rgba[..., 0], rgba[..., 2]
    part, rest = cover > 0.99, (cover < 0.01) & (rgba[..., 3] > 0.99)
    assert part.sum() > 20 and rest.sum() > 20
    assert (b[part] > r[part]).mean() > 0.97  # blue where the map says part
    # elsewhere red, or a fixed accent colour (a car's windows, a mushroom's spots), never the part's blue
    assert ((b[rest] > r[rest] + 0.2) & (b[rest] > 0.4)).mean() < 0.02


def test_coverage_is_the_area_mean_of_the_full_size_map_and_bad_grids_are_refused():
    spec = ObjectSpec("chair", "green", "white")
    cams = orbit(2, elevation=10.0, width=32)
    full, cells = part_coverage(spec, cams, 32), part_coverage(spec, cams, 8)
    assert np.allclose(full.reshape(2, 8, 4, 8, 4).mean(axis=(2, 4)), cells, atol=1e-6)
    with pytest.raises(ValueError, match="grid"):
        part_coverage(spec, cams, 5)


def test_every_category_has_part_faces_and_main_faces():
    for category in CATEGORIES:
        faces = part_faces(category)
        assert faces.dtype == bool and 0 < faces.sum() < len(faces), category
        assert len(faces) == len(build_mesh(ObjectSpec(category, "red")).faces)
