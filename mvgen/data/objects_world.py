"""Builders for the other categories: car, house, tree, mushroom, snowman, rocket, donut, cake, trophy, dumbbell.

Same contract as objects_home: ``builder(main, part) -> Assembly`` in building units, standing on z = 0, front
towards -Y.
"""

from __future__ import annotations

import numpy as np
import trimesh

from .objects_prims import (CARROT, DARK, DOUGH, GLASS, LIGHT, METAL, TAIL_LIGHT, WOOD, Assembly, arc_tube,
                            box_on, cone, cone_along, cylinder, hull, lathe, prism, rod, shade, sphere, torus)


def _rot(axis, deg):
    """4x4 rotation about the origin."""
    return trimesh.transformations.rotation_matrix(np.deg2rad(deg), axis)


def car(main, part) -> Assembly:
    """Car driving towards -Y: long hood in front, cabin towards the back, headlights front, red lights back."""
    asm = Assembly().add(box_on((1.0, 2.1, 0.42), 0, 0, 0.2), main)
    cabin = hull([(sx * 0.44, y, z) for sx in (-1, 1) for y, z in
                  ((-0.35, 0.62), (0.75, 0.62), (-0.05, 0.98), (0.62, 0.98))])
    asm.add(cabin, GLASS)
    asm.add(box_on((0.84, 0.62, 0.03), 0, 0.29, 0.98), main)  # roof
    for sx in (-1, 1):
        asm.add(box_on((0.04, 0.06, 0.36), sx * 0.43, 0.27, 0.62), main)  # door pillar
        asm.add(box_on((0.2, 0.03, 0.09), sx * 0.32, -1.05, 0.45), LIGHT)  # headlights
        asm.add(box_on((0.18, 0.03, 0.08), sx * 0.33, 1.05, 0.47), TAIL_LIGHT)
        for y in (-0.65, 0.68):
            wheel = cylinder(0.23, -0.09, 0.09, sections=24)
            wheel.apply_transform(_rot((0, 1, 0), 90))
            wheel.apply_translation((sx * 0.47, y, 0.23))
            asm.add(wheel, part)
    asm.add(box_on((0.6, 0.03, 0.1), 0, -1.06, 0.28), DARK)  # grille
    return asm


def house(main, part) -> Assembly:
    """Box house with a gable roof (the part), door and windows at the front (-Y), chimney at the back."""
    w, d, h = 1.3, 1.0, 0.8
    asm = Assembly().add(box_on((w, d, h), 0, 0, 0), main)
    o = 0.1  # eaves overhang
    asm.add(hull(_gable(w / 2 + o, d / 2 + o, h - 0.05, h + 0.62)), part)  # ridge along X
    asm.add(box_on((0.14, 0.14, 0.4), 0.35, 0.22, h + 0.25), shade(main, 0.7))  # chimney (back right)
    asm.add(box_on((0.26, 0.03, 0.48), 0, -d / 2 - 0.01, 0.0), WOOD)  # door
    asm.add(sphere(0.02, (0.08, -d / 2 - 0.03, 0.24), 1), LIGHT)  # door knob
    for x in (-0.4, 0.4):
        asm.add(box_on((0.24, 0.03, 0.22), x, -d / 2 - 0.01, 0.38), GLASS)
    for y in (-0.2, 0.2):
        for sx in (-1, 1):
            asm.add(box_on((0.03, 0.22, 0.22), sx * (w / 2 + 0.01), y, 0.38), GLASS)
    return asm


def _gable(hx, hy, z0, z1):
    """Points of a gable roof with its ridge along X: eaves at z0 (front and back), ridge at z1."""
    pts = []
    for x in (-hx, hx):
        pts += [(x, -hy, z0), (x, hy, z0), (x, -hy, z0 + 0.07), (x, hy, z0 + 0.07), (x, 0, z1)]
    return pts


def tree(main, part) -> Assembly:
    """Pine tree: trunk (the part) under three stacked cones."""
    asm = Assembly().add(cylinder(0.13, 0.0, 0.75, sections=16), part)
    for radius, height, z0 in ((0.64, 0.75, 0.6), (0.51, 0.65, 1.0), (0.38, 0.55, 1.37)):
        asm.add(cone(radius, height, z0, sections=40), main)
    return asm


def mushroom(main, part) -> Assembly:
    """Wide domed cap on a stout stem (the part) with spots in the stem colour."""
    stem = lathe([(0, 0), (0.24, 0), (0.2, 0.15), (0.17, 0.55), (0.16, 0.62), (0, 0.62)])
    a = np.linspace(0, np.pi / 2, 14)
    dome = [(0.75 * np.sin(t), 0.55 + 0.6 * np.cos(t)) for t in a[1:]]
    cap = [(0.0, 1.15)] + dome + [(0.7, 0.5), (0.17, 0.6), (0, 0.6)]  # dome, then the flat underside
    asm = Assembly().add(stem, part).add(lathe(cap), main)
    for k, (az, el) in enumerate(((20, 35), (140, 30), (260, 35), (80, 62), (200, 60), (320, 62), (0, 88))):
        az_r, el_r = np.deg2rad(az), np.deg2rad(el)
        p = (0.75 * np.cos(el_r) * np.cos(az_r), 0.75 * np.cos(el_r) * np.sin(az_r), 0.55 + 0.6 * np.sin(el_r))
        asm.add(sphere(0.085 - 0.01 * (k % 2), p, 2, scale=(1, 1, 0.6)), part)
    return asm


def snowman(main, part) -> Assembly:
    """Three snowballs, hat (the part), carrot nose and coal eyes facing -Y, stick arms."""
    asm = Assembly()
    for r, z in ((0.45, 0.45), (0.33, 1.12), (0.24, 1.62)):
        asm.add(sphere(r, (0, 0, z)), main)
    asm.add(cylinder(0.27, 1.8, 1.83), part).add(cylinder(0.16, 1.82, 2.1), part)
    asm.add(cone_along(0.05, 0.28, (0, -0.22, 1.62), (0, -1, 0)), CARROT)
    for x in (-0.09, 0.09):
        asm.add(sphere(0.035, (x, -0.21, 1.7), 1), DARK)
    for z in (1.0, 1.15, 1.3):
        asm.add(sphere(0.035, (0, -0.32 - 0.02 * (z == 1.15), z), 1), DARK)
    for sx in (-1, 1):
        asm.add(rod(0.025, (sx * 0.28, 0, 1.2), (sx * 0.72, 0, 1.45), sections=8), WOOD)
    return asm


def rocket(main, part) -> Assembly:
    """Rocket: body with a pointed nose, three fins (the part), porthole on the front (-Y), nozzle."""
    a = np.linspace(0, np.pi / 2, 10)
    nose = [(0.28 * np.cos(t), 1.3 + 0.6 * np.sin(t)) for t in a]
    body = lathe([(0, 0.25), (0.22, 0.25), (0.28, 0.4)] + nose)
    asm = Assembly().add(body, main).add(lathe([(0.12, 0.0), (0.2, 0.0), (0.14, 0.25), (0.1, 0.25)]), METAL)
    for k in range(3):
        fin = prism([(0.2, 0.25), (0.55, 0.0), (0.55, 0.2), (0.26, 0.75)], -0.025, 0.025)
        fin.apply_transform(_rot((0, 0, 1), 90 + 120 * k))  # one fin straight back (+Y), two front-left/right
        asm.add(fin, part)
    asm.add(torus(0.09, 0.025, (0, -0.27, 1.0), rotate=((1, 0, 0), 90)), METAL)
    porthole = cylinder(0.09, -0.02, 0.02, sections=24).apply_transform(_rot((1, 0, 0), 90))
    asm.add(porthole.apply_translation((0, -0.265, 1.0)), GLASS)
    return asm


def donut(main, part) -> Assembly:
    """Ring donut lying flat: dough torus, icing in the main colour on top, sprinkles (the part)."""
    R, r = 0.6, 0.25
    asm = Assembly().add(torus(R, r, major_sections=48, minor_sections=20), DOUGH)
    t = np.linspace(np.deg2rad(-25), np.deg2rad(205), 20)
    icing = [(R + (r + 0.02) * np.cos(s), (r + 0.02) * np.sin(s)) for s in t]
    asm.add(lathe(icing, sections=48), main)
    rng = np.random.default_rng(7)  # fixed: the sprinkle pattern is part of the category, not the caption
    for _ in range(36):
        az, el = rng.uniform(0, 2 * np.pi), rng.uniform(np.deg2rad(20), np.deg2rad(160))
        p = np.array([(R + (r + 0.03) * np.cos(el)) * np.cos(az), (R + (r + 0.03) * np.cos(el)) * np.sin(az),
                      (r + 0.03) * np.sin(el)])
        d = np.array([np.cos(rng.uniform(0, np.pi)), np.sin(rng.uniform(0, np.pi)), 0.0]) * 0.05
        asm.add(rod(0.014, p - d, p + d, sections=6), part)
    return asm


def cake(main, part) -> Assembly:
    """Two-tier round cake with frosting beads and top (the part) and three candles."""
    asm = Assembly().add(cylinder(0.72, 0.0, 0.45, sections=48), main).add(cylinder(0.5, 0.45, 0.82, sections=48), main)
    for R, z in ((0.72, 0.45), (0.5, 0.82), (0.72, 0.03), (0.5, 0.48)):
        asm.add(torus(R, 0.045, (0, 0, z), major_sections=48, minor_sections=10), part)
    asm.add(cylinder(0.5, 0.82, 0.84, sections=48), part)
    for k in range(3):
        a = np.deg2rad(90 + 120 * k)
        x, y = 0.25 * np.cos(a), 0.25 * np.sin(a)
        asm.add(cylinder(0.035, 0.84, 1.08, x, y, 12), part).add(cone(0.03, 0.09, 1.1, x, y, 10), LIGHT)
    return asm


def trophy(main, part) -> Assembly:
    """Cup with two side handles on a stem and a stepped base (the part)."""
    asm = Assembly().add(box_on((0.7, 0.7, 0.2), 0, 0, 0), part).add(box_on((0.5, 0.5, 0.12), 0, 0, 0.2), part)
    a = np.linspace(0, np.pi / 2, 12)
    cup_out = [(0.45 * np.sin(t), 1.2 - 0.5 * np.cos(t)) for t in a] + [(0.47, 1.35)]
    cup_in = [(0.43, 1.35)] + [(0.41 * np.sin(t), 1.24 - 0.45 * np.cos(t)) for t in a[::-1]]
    stem = [(0, 0.32), (0.22, 0.32), (0.2, 0.38), (0.07, 0.45), (0.06, 0.62), (0.12, 0.7)]
    asm.add(lathe(stem + cup_out + cup_in), main)
    for side in (-1, 1):
        asm.add(arc_tube(0.2, 0.04, (side * 0.4, 0, 1.05), side=side, z_scale=1.0), main)
    return asm


def dumbbell(main, part) -> Assembly:
    """Dumbbell lying along X: handle bar (the part) with two weight plates and a collar on each end."""
    bar = rod(0.06, (-0.95, 0, 0.38), (0.95, 0, 0.38), sections=20)
    asm = Assembly().add(bar, part)
    for sx in (-1, 1):
        for x0, x1, r in ((0.38, 0.5, 0.38), (0.5, 0.62, 0.31), (0.62, 0.7, 0.22)):
            asm.add(rod(r, (sx * x0, 0, 0.38), (sx * x1, 0, 0.38), sections=40), main)
        asm.add(rod(0.09, (sx * 0.3, 0, 0.38), (sx * 0.38, 0, 0.38), sections=20), shade(part, 0.8))
    return asm


BUILDERS = {
    "car": car, "house": house, "tree": tree, "mushroom": mushroom, "snowman": snowman, "rocket": rocket,
    "donut": donut, "cake": cake, "trophy": trophy, "dumbbell": dumbbell,
}
