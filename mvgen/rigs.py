"""Camera rigs for views that come without a transforms.json: an orbit described by a few numbers, and named
presets for generators whose camera layout is documented in their code. A rig becomes ``mvgen.cameras.Cameras``
through ``mvgen.cameras.orbit`` (the one source of the orbit convention: azimuth 0 in front of the object on -Y,
growing counter-clockwise seen from above, elevation above the horizon).

Text form (the CLI's ``--rig`` and the app's rig box)::

    orbit:views=8,elev=20,fov=40          an orbit typed in
    orbit:views=6,elev=20/-10,start=30    elevations per view, cycled ("20/-10" = 20, -10, 20, -10, ...)
    zero123pp-v1.2                        a preset
    mvdream:fov=30                        a preset with a field changed

Fields: ``views`` (default: as many as the input has), ``elev`` (degrees, one value or several joined by "/"),
``start`` (azimuth of the first view), ``step`` (azimuth between views; negative: clockwise) or ``span`` (the
azimuths covered, ``step = span / views``; default 360), ``fov`` (vertical field of view, degrees), ``radius``
(camera distance; objects are expected inside the unit sphere). Every bad field is a ``RigError`` naming it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from mvgen.cameras import DEFAULT_FOV_DEG, DEFAULT_RADIUS, Cameras, orbit
from mvgen.limits import CAMERA_ELEVATION, UPLOAD_VIEWS

FIELDS = ("views", "elev", "start", "step", "span", "fov", "radius")
MAX_RIG_VIEWS = 4 * UPLOAD_VIEWS  # a video orbit may have more frames than an upload has views; fits cap it later


class RigError(ValueError):
    """A rig that cannot be built or does not fit the input; the message names the field."""


@dataclass(frozen=True)
class OrbitRig:
    """An orbit of cameras looking at the origin.

    Attributes:
        views: number of views (None: as many as the input has).
        elevation: degrees above the horizon; one value for all views, or a pattern cycled over the views.
        azimuth_start: azimuth of the first view, degrees.
        azimuth_step: azimuth between consecutive views (None: ``span / views``).
        span: azimuths covered when ``azimuth_step`` is None (360: a full turn).
        fov_deg: vertical field of view, degrees.
        radius: camera distance from the origin.
        grid: (rows, cols) of the one image the generator writes its views into (None: separate images); the
            tiles are in view order, row by row.
        name: the preset's name, or "orbit".
    """

    views: int | None = None
    elevation: tuple = (20.0,)
    azimuth_start: float = 0.0
    azimuth_step: float | None = None
    span: float = 360.0
    fov_deg: float = DEFAULT_FOV_DEG
    radius: float = DEFAULT_RADIUS
    grid: tuple | None = None
    name: str = "orbit"

    def with_views(self, count: int) -> "OrbitRig":
        """This rig for an input of ``count`` views: RigError when the rig states another number."""
        if self.views is not None and self.views != count:
            raise RigError(f"rig: {self.name} has {self.views} views, the input has {count}; give the rig's "
                           f"views or 'views={count}'")
        return replace(self, views=count)

    def elevations(self) -> list[float]:
        """One elevation per view (the pattern cycled)."""
        n = self._count()
        return [float(self.elevation[i % len(self.elevation)]) for i in range(n)]

    def azimuths(self) -> list[float]:
        """One azimuth per view, degrees in [0, 360)."""
        n = self._count()
        step = self.span / n if self.azimuth_step is None else self.azimuth_step
        return [(self.azimuth_start + i * step) % 360.0 for i in range(n)]

    def cameras(self, width: int, height: int | None = None, device=None) -> Cameras:
        """The rig's cameras for ``width`` x ``height`` images (``mvgen.cameras.orbit``)."""
        n = self._count()
        step = self.span / n if self.azimuth_step is None else self.azimuth_step
        return orbit(n, self.elevations(), self.azimuth_start, self.radius, self.fov_deg, width, height, device,
                     azimuth_step=step)

    def text(self) -> str:
        """The rig in its text form (``parse_rig(rig.text())`` gives the same cameras)."""
        parts = [] if self.views is None else [f"views={self.views}"]
        parts.append("elev=" + "/".join(f"{e:g}" for e in self.elevation))
        parts.append(f"start={self.azimuth_start:g}")
        parts.append(f"span={self.span:g}" if self.azimuth_step is None else f"step={self.azimuth_step:g}")
        parts += [f"fov={self.fov_deg:g}", f"radius={self.radius:g}"]
        return "orbit:" + ",".join(parts)

    def _count(self) -> int:
        if self.views is None:
            raise RigError(f"rig: {self.name} does not say how many views; give 'views=N'")
        return self.views


# ------------------------------------------------------------------------------------------------ presets

def zero123pp_v12() -> OrbitRig:
    """Zero123++ v1.2 (SUDO-AI-3D/zero123plus): one 3x2 grid image of 6 views, tiles row by row.

    Sources: the project README ("v1.2 ... unifies the output field of view to 30°"; "the fixed set of elevations
    are changed from 30° and -20° to 20° and -10°"); TencentARC/InstantMesh ``src/utils/camera_util.py``
    ``get_zero123plus_input_cameras``: azimuths [30, 90, 150, 210, 270, 330], elevations [20, -10, 20, -10, 20,
    -10], fov 30, radius 4.0, positions ``(r cos e cos a, r cos e sin a, r sin e)`` with +Z up (azimuth grows
    counter-clockwise seen from above, as ours; the azimuths are relative to the input view); its ``run.py``
    splits the 960x640 output with ``'c (n h) (m w) -> (n m) c h w', n=3, m=2`` (3 rows, 2 columns).
    """
    return OrbitRig(6, (20.0, -10.0), 30.0, 60.0, 360.0, 30.0, 4.0, (3, 2), "zero123pp-v1.2")


def zero123pp_v11() -> OrbitRig:
    """Zero123++ v1.1: the layout of v1.2 (``zero123pp_v12``) at elevations 30° and -20° (SUDO-AI-3D/zero123plus
    README: "the fixed set of elevations are changed from 30° and -20°" in v1.2). The README says v1.2 *unified* the
    output field of view to 30°, so v1.1's follows the input image: the 30° here is a guess; give ``fov=``
    when known."""
    return replace(zero123pp_v12(), elevation=(30.0, -20.0), name="zero123pp-v1.1")


def mvdream() -> OrbitRig:
    """MVDream (bytedance/MVDream ``scripts/t2i.py``): 4 views, ``--camera_elev 15``, ``--camera_azim 90``,
    ``--camera_azim_span 360`` into ``mvdream/camera_utils.py`` ``get_camera``: azimuths 90, 180, 270, 0 (a step of
    span / 4). ``create_camera_to_world_matrix`` puts azimuth 0 on +Z of its Y-up frame and
    ``convert_opengl_to_blender`` turns that into -Y with +Z up, azimuth 90 on +X: our convention exactly. The
    views are saved side by side (``np.concatenate(img, 1)``): a 1x4 grid. The camera embedding is normalised
    to the unit sphere and holds no intrinsics, so the model fixes neither distance nor field of view: ours
    (``mvgen.cameras`` defaults) are used; give ``fov=`` / ``radius=`` to change them."""
    return OrbitRig(4, (15.0,), 90.0, None, 360.0, DEFAULT_FOV_DEG, DEFAULT_RADIUS, (1, 4), "mvdream")


def sv3d_p() -> OrbitRig:
    """SV3D_p's default orbit (Stability-AI/generative-models ``scripts/sampling/simple_video_sample.py``):
    ``num_frames = 21``, ``elevations_deg = 10.0`` for every frame, ``azimuths_deg = np.linspace(0, 360, 22)[1:]
    % 360``: frame k at 360 (k + 1) / 21 degrees, the last frame (360 = 0) being the input view. A 21-frame video.
    The script gives neither the sense of rotation in a world frame nor the field of view: counter-clockwise and
    ours are assumed (``step=-17.142857`` turns the other way; ``fov=`` changes the field of view)."""
    return OrbitRig(21, (10.0,), 360.0 / 21, 360.0 / 21, 360.0, DEFAULT_FOV_DEG, DEFAULT_RADIUS, None, "sv3d-p")


PRESETS = {"zero123pp-v1.2": zero123pp_v12, "zero123pp-v1.1": zero123pp_v11, "mvdream": mvdream, "sv3d-p": sv3d_p}


# ---------------------------------------------------------------------------------------------- text form

def parse_rig(text) -> OrbitRig:
    """``"orbit:views=8,elev=20"``, ``"zero123pp-v1.2"`` or ``"mvdream:fov=30"`` -> an ``OrbitRig``; RigError
    naming the field otherwise."""
    if isinstance(text, OrbitRig):
        return text
    if not isinstance(text, str) or not text.strip():
        raise RigError(f"rig: give 'orbit:views=N,elev=E,...' or a preset ({', '.join(PRESETS)})")
    head, _, tail = text.strip().partition(":")
    head = head.strip().lower()
    if head == "orbit":
        rig = OrbitRig()
    elif head in PRESETS:
        rig = PRESETS[head]()
    else:
        raise RigError(f"rig: unknown preset {head!r}; presets: {', '.join(PRESETS)} (or 'orbit:views=N,...')")
    values = {}
    for item in (p.strip() for p in tail.split(",")) if tail.strip() else ():
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq or key not in FIELDS:
            raise RigError(f"rig: {item!r} is not a field; fields: {', '.join(f + '=' for f in FIELDS)}")
        if key in values:
            raise RigError(f"rig: {key} is given twice")
        values[key] = value.strip()
    if "step" in values and "span" in values:
        raise RigError("rig: give step or span, not both")
    return _apply(rig, values)


def _apply(rig: OrbitRig, values: dict) -> OrbitRig:
    changes = {}
    if "views" in values:
        changes["views"] = _whole("views", values["views"], 1, MAX_RIG_VIEWS)
    if "elev" in values:
        parts = values["elev"].split("/")
        elev = tuple(_number("elev", p, CAMERA_ELEVATION.low, CAMERA_ELEVATION.high) for p in parts)
        changes["elevation"] = elev
    if "start" in values:
        changes["azimuth_start"] = _number("start", values["start"], -3600.0, 3600.0)
    if "step" in values:
        changes["azimuth_step"] = _number("step", values["step"], -360.0, 360.0)
    if "span" in values:
        changes.update(span=_number("span", values["span"], -3600.0, 3600.0), azimuth_step=None)
    if "fov" in values:
        changes["fov_deg"] = _number("fov", values["fov"], 1.0, 179.0)
    if "radius" in values:
        changes["radius"] = _number("radius", values["radius"], 1e-3, 1e6)
    rig = replace(rig, **changes)
    if rig.azimuth_step == 0 or (rig.azimuth_step is None and rig.span == 0):
        raise RigError("rig: step (or span) must not be 0: every view would be at one azimuth")
    return rig


def _number(name: str, text: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise RigError(f"rig: {name} must be a number, got {text!r}") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise RigError(f"rig: {name} must be in [{low:g}, {high:g}], got {text}")
    return value


def _whole(name: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise RigError(f"rig: {name} must be a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise RigError(f"rig: {name} must be in {low}..{high}, got {value}")
    return value


def preset_table() -> list[dict]:
    """One row per preset: name, views, elevations, azimuths, fov, radius, grid, the first line of its source."""
    rows = []
    for name, make in PRESETS.items():
        rig = make()
        rows.append({"preset": name, "views": rig.views, "elevations": "/".join(f"{e:g}" for e in rig.elevation),
                     "azimuths": ", ".join(f"{a:g}" for a in rig.azimuths()[:6]) + (", ..." if rig.views > 6 else ""),
                     "fov": rig.fov_deg, "radius": rig.radius,
                     "grid": f"{rig.grid[0]}x{rig.grid[1]}" if rig.grid else "-"})
    return rows


def ring_elevations(views: int, rings) -> list[float]:
    """Per-view elevations of a generation orbit on several rings: views evenly spaced in azimuth, taken in pairs
    from ring to ring (``(10, 30)``, 8 views: 10, 10, 30, 30, 10, 10, 30, 30), so the even views (the consistency
    score's fitted half) and the odd ones (its held-out half) each cover every ring. One ring = one elevation."""
    try:
        values = [float(r) for r in rings]
    except (TypeError, ValueError):
        raise RigError(f"rings must be elevations in degrees such as 10,30, got {rings!r}") from None
    if not 1 <= len(values) <= 4:
        raise RigError(f"rings: give 1 to 4 elevations, got {len(values)}")
    for v in values:
        CAMERA_ELEVATION.check_number("rings", v, "an elevation in degrees")
    if views < 2 * len(values):
        raise RigError(f"rings: {len(values)} rings need at least {2 * len(values)} views, got {views}")
    return [values[(i // 2) % len(values)] for i in range(views)]
