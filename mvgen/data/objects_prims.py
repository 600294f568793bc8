"""Placed trimesh primitives and ``Assembly``, the coloured-part collector the object builders use.

Coordinates: +Z up, objects stand on z = 0 while being built (``objects.build_mesh`` centres and scales them
afterwards), the front faces -Y. Colours are sRGB float triples in [0, 1], assigned through ``Paint``s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import trimesh

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Paint:
    """The colour of a part, resolved per caption: the caption's main or part colour, or a fixed accent colour,
    times a darkening ``factor``. Builders paint with paints so one category's geometry is built once and
    recoloured for every caption."""

    slot: str  # "main", "part" or "fixed"
    rgb: RGB = (0.0, 0.0, 0.0)  # used when slot == "fixed"
    factor: float = 1.0

    def resolve(self, main: RGB, part: RGB) -> RGB:
        base = {"main": main, "part": part, "fixed": self.rgb}[self.slot]
        return tuple(c * self.factor for c in base)


MAIN, PART = Paint("main"), Paint("part")

# Fixed accent colours (not part of the caption vocabulary; they are the same for every caption).
GLASS = Paint("fixed", (0.16, 0.22, 0.30))
DARK = Paint("fixed", (0.08, 0.08, 0.08))
WOOD = Paint("fixed", (0.45, 0.28, 0.13))
DOUGH = Paint("fixed", (0.86, 0.64, 0.38))
CARROT = Paint("fixed", (0.98, 0.45, 0.05))
LIGHT = Paint("fixed", (1.00, 0.95, 0.65))
TAIL_LIGHT = Paint("fixed", (0.85, 0.05, 0.05))
METAL = Paint("fixed", (0.40, 0.40, 0.42))


def shade(paint: Paint, factor: float) -> Paint:
    """``paint`` darkened by ``factor`` in (0, 1]."""
    if not 0 < factor <= 1:
        raise ValueError(f"shade factor must be in (0, 1], got {factor}")
    return replace(paint, factor=paint.factor * factor)


class Assembly:
    """Collects meshes painted with one Paint each; ``arrays()`` concatenates them without merging vertices
    (parts keep their own normals)."""

    def __init__(self):
        self._parts: list[tuple[trimesh.Trimesh, Paint]] = []

    def add(self, mesh: trimesh.Trimesh, paint: Paint) -> "Assembly":
        self._parts.append((mesh, paint))
        return self

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Paint]]:
        """vertices [N,3] float64, faces [F,3] int64, face_paint [F] index into paints, paints (distinct)."""
        if not self._parts:
            raise ValueError("empty assembly")
        paints: list[Paint] = []
        vertices, faces, face_paint, offset = [], [], [], 0
        for m, paint in self._parts:
            if paint not in paints:
                paints.append(paint)
            vertices.append(np.asarray(m.vertices, dtype=np.float64))
            faces.append(np.asarray(m.faces, dtype=np.int64) + offset)
            face_paint.append(np.full(len(m.faces), paints.index(paint), dtype=np.int64))
            offset += len(m.vertices)
        return np.concatenate(vertices), np.concatenate(faces), np.concatenate(face_paint), paints


def _placed(mesh: trimesh.Trimesh, center: Sequence[float] = (0, 0, 0), rotate: Sequence | None = None):
    """Rotate (``(axis_vector, degrees)``) about the origin, then translate to ``center``."""
    if rotate is not None:
        axis, deg = rotate
        mesh.apply_transform(trimesh.transformations.rotation_matrix(math.radians(deg), axis))
    mesh.apply_translation(center)
    return mesh


def box(size: Sequence[float], center: Sequence[float]) -> trimesh.Trimesh:
    """Axis-aligned box of ``size`` (x, y, z) centred at ``center``."""
    return _placed(trimesh.creation.box(extents=size), center)


def box_on(size: Sequence[float], x: float, y: float, z0: float) -> trimesh.Trimesh:
    """Box standing with its bottom face at height ``z0``."""
    return box(size, (x, y, z0 + size[2] / 2))


def cylinder(radius: float, z0: float, z1: float, x: float = 0.0, y: float = 0.0, sections: int = 32):
    """Vertical cylinder from z0 to z1 centred on (x, y)."""
    return _placed(trimesh.creation.cylinder(radius, z1 - z0, sections=sections), (x, y, (z0 + z1) / 2))


def rod(radius: float, start: Sequence[float], end: Sequence[float], sections: int = 16):
    """Cylinder between two points (any direction)."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    return trimesh.creation.cylinder(radius, segment=np.stack([start, end]), sections=sections)


def sphere(radius: float, center: Sequence[float], subdivisions: int = 3, scale: Sequence[float] = (1, 1, 1)):
    """Icosphere, optionally scaled per axis (ellipsoid), centred at ``center``."""
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    m.apply_scale(scale)
    return _placed(m, center)


def cone(radius: float, height: float, z0: float, x: float = 0.0, y: float = 0.0, sections: int = 32):
    """Upright cone with its base at height ``z0``."""
    return _placed(trimesh.creation.cone(radius, height, sections=sections), (x, y, z0))


def cone_along(radius: float, height: float, base: Sequence[float], direction: Sequence[float], sections: int = 16):
    """Cone whose base is centred at ``base`` pointing along ``direction``."""
    m = trimesh.creation.cone(radius, height, sections=sections)
    d = np.asarray(direction, float) / np.linalg.norm(direction)
    m.apply_transform(trimesh.geometry.align_vectors([0, 0, 1], d))
    return _placed(m, base)


def lathe(profile: Sequence[Sequence[float]], sections: int = 48, angle: float | None = None):
    """Surface of revolution about +Z of a polyline of (radius, z) points (closed where it meets the axis)."""
    return trimesh.creation.revolve(np.asarray(profile, dtype=np.float64), angle=angle, sections=sections)


def lathe_bands(profile: Sequence[Sequence[float]], cuts: Sequence[int], sections: int = 48):
    """The lathe of ``profile`` split at point indices ``cuts`` into separate meshes (to colour bands); the
    pieces share their boundary rings exactly, so there are no cracks between them."""
    bounds = [0, *cuts, len(profile) - 1]
    return [lathe(profile[a: b + 1], sections) for a, b in zip(bounds[:-1], bounds[1:])]


def torus(major: float, minor: float, center: Sequence[float] = (0, 0, 0), rotate=None,
          major_sections: int = 40, minor_sections: int = 16):
    """Torus around +Z (before ``rotate``), centred at ``center``."""
    return _placed(trimesh.creation.torus(major, minor, major_sections, minor_sections), center, rotate)


def arc_tube(major: float, minor: float, center: Sequence[float], side: float, z_scale: float = 1.0):
    """Half torus in the XZ plane bulging towards ``side`` * X (a handle): ends at z = center ± major."""
    t = np.linspace(0, 2 * np.pi, 17)
    circle = np.c_[major + minor * np.cos(t), minor * np.sin(t)]
    m = lathe(circle, sections=16, angle=math.pi)  # XY half ring bulging towards +Y
    m.apply_transform(trimesh.transformations.rotation_matrix(-math.pi / 2, [0, 0, 1]))  # bulge towards +X
    m.apply_transform(trimesh.transformations.rotation_matrix(math.pi / 2, [1, 0, 0]))  # into the XZ plane
    m.apply_scale([side, 1.0, z_scale])
    if side < 0:  # mirroring flips the winding; keep faces outward for consistent normals
        m.invert()
    return _placed(m, center)


def hull(points: Sequence[Sequence[float]]) -> trimesh.Trimesh:
    """Convex hull of points (wedges, prisms, sloped car cabins)."""
    return trimesh.convex.convex_hull(np.asarray(points, dtype=np.float64))


def prism(polygon_xz: Sequence[Sequence[float]], y0: float, y1: float) -> trimesh.Trimesh:
    """Convex polygon in the XZ plane extruded from y0 to y1."""
    pts = [(x, y, z) for x, z in polygon_xz for y in (y0, y1)]
    return hull(pts)
