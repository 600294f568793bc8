"""Procedural objects: one canonical mesh per caption, built from trimesh primitives.

``build_mesh(spec)`` returns a ``trimesh.Trimesh`` with per-face colours (``mesh.visual.face_colors``) in the
canonical pose of mvgen/cameras.py: upright along +Z, front towards -Y (the azimuth-0 camera), bounding box
centred on the origin and scaled so that every vertex lies within ``RADIUS`` (< 1) of it, i.e. inside the unit
sphere. The mesh depends only on the spec (no randomness): the same caption always gives an identical mesh.
Captions of one category differ by main colour, part colour and size word (size scales width/height before
normalising, see captions.SIZES). Builders live in objects_home.py and objects_world.py; each category's
geometry is built once per process and recoloured per caption.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import trimesh

from .captions import COLORS, SIZES, ObjectSpec, parse_caption
from .objects_home import BUILDERS as _HOME
from .objects_prims import MAIN, PART
from .objects_world import BUILDERS as _WORLD

RADIUS = 0.98  # largest vertex distance from the origin after normalising

# category -> builder(main_paint, part_paint) -> Assembly; the tests check it covers captions.CATEGORIES.
BUILDERS = {**_HOME, **_WORLD}


def build_mesh(spec: ObjectSpec | str) -> trimesh.Trimesh:
    """The canonical coloured mesh of a spec (or caption string). Shapes: vertices [N,3] float64,
    faces [F,3] int64, visual.face_colors [F,4] uint8."""
    if isinstance(spec, str):
        spec = parse_caption(spec)
    vertices, faces, face_paint, paints = _category_geometry(spec.category)
    main, part = COLORS[spec.color], COLORS[spec.effective_part_color]
    palette = np.array([[*(round(255 * c) for c in p.resolve(main, part)), 255] for p in paints], dtype=np.uint8)
    vertices = vertices.copy()
    if spec.size is not None:
        width, height = SIZES[spec.size]
        vertices *= [width, width, height]
    return trimesh.Trimesh(normalize_vertices(vertices), faces.copy(), face_colors=palette[face_paint], process=False)


def part_faces(category: str) -> np.ndarray:
    """[F] bool: the faces of ``category``'s mesh (``build_mesh`` face order) painted with the caption's part
    colour (the part word of captions.PARTS)."""
    _, _, face_paint, paints = _category_geometry(category)
    return np.array([p.slot == PART.slot for p in paints])[face_paint]


def normalize_vertices(vertices: np.ndarray, radius: float = RADIUS) -> np.ndarray:
    """[N,3] -> [N,3]: bounding box centred on the origin, scaled uniformly so the farthest vertex is at
    ``radius``."""
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    centred = vertices - (lo + hi) / 2
    return centred * (radius / np.linalg.norm(centred, axis=1).max())


@lru_cache(maxsize=None)
def _category_geometry(category: str):
    """(vertices [N,3], faces [F,3], face_paint [F], paints) of one category in building units (read-only)."""
    vertices, faces, face_paint, paints = BUILDERS[category](MAIN, PART).arrays()
    for a in (vertices, faces, face_paint):
        a.setflags(write=False)
    return vertices, faces, face_paint, tuple(paints)
