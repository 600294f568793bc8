"""Rigs (mvgen/rigs.py): the text form, the presets' numbers, the cameras they build, and named errors."""

import re

import pytest
import torch

from mvgen.cameras import orbit, orbit_angles, vertical_fov_deg
from mvgen.rigs import PRESETS, RigError, parse_rig


def angles(cams):
    az, el = orbit_angles(cams)
    return [round(a, 3) % 360 for a in az], [round(e, 3) for e in el]


def test_typed_orbit_builds_the_cameras_it_describes():
    rig = parse_rig("orbit:views=6,elev=20/-10,start=30,step=60,fov=30,radius=4")
    cams = rig.cameras(64)
    az, el = angles(cams)
    assert az == [30, 90, 150, 210, 270, 330] and el == [20, -10, 20, -10, 20, -10]
    assert abs(vertical_fov_deg(cams.K[0], 64) - 30) < 1e-4
    assert torch.allclose(cams.centers.norm(dim=-1), torch.full((6,), 4.0), atol=1e-5)
    # the default orbit is mvgen.cameras.orbit itself
    assert torch.allclose(parse_rig("orbit:views=8,elev=20").cameras(32).c2w, orbit(8, 20.0, width=32).c2w)
    # the text form round-trips, and span spreads the views over part of a turn
    assert torch.allclose(parse_rig(rig.text()).cameras(64).c2w, cams.c2w)
    assert angles(parse_rig("orbit:views=4,span=180").cameras(32))[0] == [0, 45, 90, 135]
    assert angles(parse_rig("orbit:views=3,step=-90").cameras(32))[0] == [0, 270, 180]


def test_presets_carry_their_documented_numbers():
    z = parse_rig("zero123pp-v1.2")
    assert (z.views, z.grid, z.fov_deg, z.radius) == (6, (3, 2), 30.0, 4.0)
    assert angles(z.cameras(320)) == ([30, 90, 150, 210, 270, 330], [20, -10, 20, -10, 20, -10])
    assert angles(parse_rig("zero123pp-v1.1").cameras(320))[1] == [30, -20, 30, -20, 30, -20]
    m = parse_rig("mvdream")
    assert angles(m.cameras(256)) == ([90, 180, 270, 0], [15] * 4) and m.grid == (1, 4)
    s = parse_rig("sv3d-p")
    az, el = angles(s.cameras(576))
    assert len(az) == 21 and el == [10] * 21 and az[-1] == 0 and abs(az[0] - 360 / 21) < 1e-3
    assert parse_rig("MVDream:fov=30").fov_deg == 30 and parse_rig("mvdream:fov=30").views == 4
    for name, make in PRESETS.items():  # every preset names the repository its numbers come from
        assert re.search(r"(SUDO-AI-3D/zero123plus|bytedance/MVDream|Stability-AI/generative-models)",
                         make.__doc__ or ""), name


@pytest.mark.parametrize("text, match", [
    ("zero999", r"rig: unknown preset 'zero999'"),
    ("orbit:views=eight", r"rig: views must be a whole number"),
    ("orbit:views=0", r"rig: views must be in"),
    ("orbit:elev=95", r"rig: elev must be in \[-89, 89\]"),
    ("orbit:fov=0", r"rig: fov must be in"),
    ("orbit:views=4,colour=red", r"rig: 'colour=red' is not a field"),
    ("orbit:step=30,span=90", r"rig: give step or span, not both"),
    ("orbit:step=0", r"rig: step \(or span\) must not be 0"),
    ("orbit:views=4,views=5", r"rig: views is given twice"),
    ("", r"rig: give 'orbit:views=N"),
])
def test_bad_rigs_name_the_field(text, match):
    with pytest.raises(RigError, match=match):
        parse_rig(text)


def test_rig_and_input_must_agree_on_the_view_count():
    with pytest.raises(RigError, match=r"rig: zero123pp-v1.2 has 6 views, the input has 8"):
        parse_rig("zero123pp-v1.2").with_views(8)
    assert parse_rig("orbit:elev=10").with_views(5).views == 5  # no views= : as many as the input has
    with pytest.raises(RigError, match="does not say how many views"):
        parse_rig("orbit:elev=10").cameras(32)
