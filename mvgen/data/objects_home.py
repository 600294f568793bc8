"""Builders for household categories: mug, vase, bottle, bowl, table, chair, stool, lamp, sofa, bookshelf.

Each builder takes the main and the part ``Paint`` (see captions.PARTS) and returns an ``Assembly`` in
building units (standing on z = 0, front towards -Y); ``objects.build_mesh`` normalises it.
"""

from __future__ import annotations

import numpy as np

from .objects_prims import (DARK, LIGHT, Assembly, arc_tube, box_on, cylinder, lathe,
                            lathe_bands, rod, shade, sphere, torus)


def mug(main, part) -> Assembly:
    """Hollow cylinder with a handle on the right (+X) side, so left and right views differ."""
    body = lathe([(0, 0), (0.5, 0), (0.52, 0.04), (0.52, 1.0), (0.46, 1.0), (0.46, 0.1), (0, 0.1)])
    return Assembly().add(body, main).add(arc_tube(0.27, 0.065, (0.5, 0, 0.52), side=1, z_scale=1.1), part)


def vase(main, part) -> Assembly:
    """Bulbous body, narrow neck, flared lip; the part is a band around the belly."""
    z = np.linspace(0.0, 1.45, 30)
    r = 0.22 + 0.30 * np.exp(-((z - 0.5) / 0.33) ** 2) - 0.06 * np.clip(z - 0.95, 0, None)
    r = r + 0.16 * np.clip((z - 1.2) / 0.25, 0, 1) ** 2  # flared lip
    outer = [(0.0, 0.0)] + list(zip(r, z))
    top = [(ri - 0.035, zi) for ri, zi in zip(r[::-1], z[::-1]) if zi > 1.0] + [(0.0, 1.0)]
    profile = outer + top
    band_start = 1 + int(np.searchsorted(z, 0.42))
    band_end = 1 + int(np.searchsorted(z, 0.62))
    low, band, high = lathe_bands(profile, [band_start, band_end])
    return Assembly().add(low, main).add(band, part).add(high, main)


def bottle(main, part) -> Assembly:
    """Straight body, rounded shoulder, long neck, cap."""
    a = np.linspace(0, np.pi / 2, 8)
    shoulder = [(0.12 + 0.23 * np.cos(t), 0.95 + 0.35 * np.sin(t)) for t in a]
    profile = [(0, 0), (0.33, 0), (0.35, 0.03), (0.35, 0.95)] + shoulder[1:] + [(0.12, 1.6), (0, 1.6)]
    return (Assembly().add(lathe(profile), main)
            .add(cylinder(0.145, 1.55, 1.82), part)
            .add(torus(0.13, 0.025, (0, 0, 1.5)), shade(main, 0.8)))


def bowl(main, part) -> Assembly:
    """Wide, shallow open bowl on a foot ring, with a rounded rim (the part)."""
    a = np.linspace(0, np.pi / 2, 12)
    outer = [(0.3 + 0.62 * np.sin(t), 0.08 + 0.5 * (1 - np.cos(t))) for t in a]
    inner = [(0.25 + 0.6 * np.sin(t), 0.14 + 0.44 * (1 - np.cos(t))) for t in a[::-1]]
    profile = [(0, 0.0), (0.33, 0.0), (0.33, 0.08)] + outer + inner + [(0, 0.14)]
    return Assembly().add(lathe(profile), main).add(torus(0.885, 0.045, (0, 0, 0.58), major_sections=48), part)


def table(main, part) -> Assembly:
    """Rectangular top on four legs, wider (X) than deep (Y)."""
    asm = Assembly().add(box_on((1.7, 1.0, 0.08), 0, 0, 0.72), main)
    asm.add(box_on((1.55, 0.85, 0.09), 0, 0, 0.63), shade(main, 0.85))  # apron
    for x in (-0.76, 0.76):
        for y in (-0.41, 0.41):
            asm.add(box_on((0.08, 0.08, 0.72), x, y, 0.0), part)
    return asm


def chair(main, part) -> Assembly:
    """Seat on four legs with a slatted backrest at the back (+Y)."""
    asm = Assembly().add(box_on((0.9, 0.85, 0.08), 0, 0, 0.5), main)
    for x in (-0.4, 0.4):
        for y in (-0.37, 0.37):
            asm.add(box_on((0.07, 0.07, 0.5), x, y, 0.0), part)
        asm.add(box_on((0.07, 0.07, 0.85), x, 0.39, 0.58), part)  # back posts
    asm.add(box_on((0.74, 0.06, 0.22), 0, 0.39, 1.2), main)  # top rail, between the posts
    for x in (-0.2, 0.0, 0.2):
        asm.add(box_on((0.08, 0.05, 0.62), x, 0.39, 0.58), main)  # slats
    return asm


def stool(main, part) -> Assembly:
    """Tall bar stool: thick round seat, three splayed legs, foot ring."""
    asm = Assembly().add(cylinder(0.42, 1.0, 1.1), main).add(torus(0.42, 0.05, (0, 0, 1.05)), main)
    for k in range(3):
        a = np.deg2rad(90 + 120 * k)
        top = (0.22 * np.cos(a), 0.22 * np.sin(a), 1.0)
        foot = (0.42 * np.cos(a), 0.42 * np.sin(a), 0.0)
        asm.add(rod(0.04, foot, top), part)
    asm.add(torus(0.33, 0.025, (0, 0, 0.38)), part)
    return asm


def lamp(main, part) -> Assembly:
    """Table lamp: round base, thin pole, wide conical shade (the part)."""
    asm = Assembly().add(lathe([(0, 0), (0.4, 0), (0.4, 0.05), (0.3, 0.12), (0, 0.14)]), main)
    asm.add(cylinder(0.04, 0.12, 1.15), main).add(sphere(0.1, (0, 0, 1.12), 2), LIGHT)
    shade_profile = [(0.55, 0.95), (0.3, 1.55), (0.28, 1.55), (0.52, 0.95), (0.55, 0.95)]
    asm.add(lathe(shade_profile, sections=48), part)
    return asm


def sofa(main, part) -> Assembly:
    """Three-seat sofa, long along X: back at +Y, arms at +-X, seat and back cushions (the part)."""
    asm = Assembly().add(box_on((2.0, 0.9, 0.33), 0, 0, 0.1), main)
    asm.add(box_on((2.0, 0.22, 0.62), 0, 0.34, 0.43), main)  # backrest
    for x in (-0.92, 0.92):
        asm.add(box_on((0.2, 0.9, 0.3), x, 0, 0.43), main)  # arms
        for y in (-0.38, 0.38):
            asm.add(cylinder(0.04, 0.0, 0.1, x * 0.95, y, 12), DARK)
    for x in (-0.55, 0.0, 0.55):
        asm.add(box_on((0.53, 0.66, 0.14), x, -0.1, 0.43), part)  # seat cushions
        asm.add(box_on((0.53, 0.14, 0.42), x, 0.16, 0.57), part)  # back cushions
    return asm


def bookshelf(main, part) -> Assembly:
    """Tall open shelf: back panel at +Y, four shelves, rows of books (the part) seen from the front."""
    w, d, h = 1.3, 0.45, 1.75
    asm = Assembly()
    for x in (-w / 2, w / 2):
        asm.add(box_on((0.05, d, h), x, 0, 0.0), main)  # sides
    asm.add(box_on((w, 0.03, h), 0, d / 2 - 0.015, 0.0), main)  # back panel
    shelf_z = [0.05, 0.47, 0.89, 1.31, 1.73]
    for z in shelf_z:
        asm.add(box_on((w, d, 0.05), 0, 0, z - 0.05), main)
    widths = [0.07, 0.09, 0.06, 0.08, 0.1, 0.07, 0.06, 0.09, 0.08, 0.07, 0.1, 0.06]
    heights = [0.34, 0.3, 0.36, 0.28, 0.33, 0.37, 0.3, 0.35, 0.31, 0.36, 0.29, 0.34]
    for row, z in enumerate(shelf_z[:-1]):
        x = -w / 2 + 0.05 + 0.02 * row
        k = 3 * row
        while True:
            bw, bh = widths[k % len(widths)], heights[(k * 5) % len(heights)]
            if x + bw > w / 2 - 0.06 - 0.12 * (row % 2):
                break
            asm.add(box_on((bw - 0.008, d - 0.1, bh), x + bw / 2, 0.02, z), shade(part, 1.0 - 0.18 * (k % 3)))
            x += bw
            k += 1
    return asm


BUILDERS = {
    "mug": mug, "vase": vase, "bottle": bottle, "bowl": bowl, "table": table, "chair": chair, "stool": stool,
    "lamp": lamp, "sofa": sofa, "bookshelf": bookshelf,
}
