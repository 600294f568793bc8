"""The Embree ray-cast renderer: framing, coverage against an analytic sphere, anti-aliasing, view-independent
shading, adaptive == full supersampling, compositing."""

import math

import numpy as np
import pytest
import torch
import trimesh

from mvgen.cameras import DEFAULT_RADIUS, Cameras, intrinsics_from_fov, look_at, orbit
from mvgen.data.captions import CATEGORIES, SIZES, ObjectSpec
from mvgen.data.objects import build_mesh
from mvgen.data.render import camera_rays, composite_white, render_rgba


def _sphere(radius=0.5, rgb=(200, 200, 200)):
    m = trimesh.creation.icosphere(subdivisions=4, radius=radius)
    m.visual.face_colors = np.array([*rgb, 255], dtype=np.uint8)
    return m


def test_every_category_renders_centred_inside_the_frame_at_random_orbits():
    rng = np.random.default_rng(0)
    sizes = [None, *SIZES]
    for k, category in enumerate(CATEGORIES):
        spec = ObjectSpec(category, "green", size=sizes[k % len(sizes)])
        cams = orbit(4, elevation=float(rng.uniform(0, 40)), azimuth_start=float(rng.uniform(0, 360)), width=40)
        rgba = render_rgba(build_mesh(spec), cams)
        assert rgba.shape == (4, 40, 40, 4) and rgba.dtype == np.uint8
        alpha = rgba[..., 3].astype(np.float64) / 255.0
        for v in range(4):
            a = alpha[v]
            assert a[0].max() == 0 and a[-1].max() == 0 and a[:, 0].max() == 0 and a[:, -1].max() == 0, (spec, v)
            assert a.sum() > 0.04 * a.size, (spec, v)  # non-empty
            ys, xs = np.mgrid[0:40, 0:40] + 0.5
            cy, cx = (a * ys).sum() / a.sum(), (a * xs).sum() / a.sum()
            assert abs(cx - 20) < 6 and abs(cy - 20) < 8, (spec, v, cx, cy)
        assert (rgba[..., :3][rgba[..., 3] == 0] == 255).all()  # background is white


def test_camera_rays_match_plucker_rays():
    cams = orbit(3, elevation=25.0, azimuth_start=40.0, width=12, height=10)
    pl = cams.plucker()  # [V,6,H,W]
    for v, (origins, dirs) in enumerate(camera_rays(cams)):
        d_ref = pl[v, :3].permute(1, 2, 0).reshape(-1, 3).numpy()
        assert np.allclose(dirs, d_ref, atol=1e-5)
        assert np.allclose(origins, cams.centers[v].numpy(), atol=1e-5)


def test_coverage_matches_an_analytic_sphere_and_edges_are_antialiased():
    r, size = 0.5, 48
    cams = orbit(2, elevation=10.0, width=size)
    alpha = render_rgba(_sphere(r), cams, supersample=4)[..., 3].astype(np.float64) / 255.0
    f = float(cams.K[0, 0, 0])
    # The sphere's silhouette seen from distance d is a disk of angular radius asin(r / d) around the centre.
    ang = math.asin(r / DEFAULT_RADIUS)
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    pix_ang = np.arctan(np.hypot(xs - size / 2, ys - size / 2) / f)
    inside, outside = pix_ang < ang - 1.5 / f, pix_ang > ang + 1.5 / f
    for a in alpha:
        assert (a[inside] == 1).all() and (a[outside] == 0).all()
        edge = ~inside & ~outside
        assert ((a[edge] > 0) & (a[edge] < 1)).any()  # anti-aliased: fractional coverage on the rim
        disk_area = math.pi * (f * math.tan(ang)) ** 2
        assert a.sum() == pytest.approx(disk_area, rel=0.03)
    hard = render_rgba(_sphere(r), cams, supersample=1)[..., 3]
    assert set(np.unique(hard)) <= {0, 255}


def test_shading_is_view_independent_and_lit_from_the_key_side():
    # The same surface point, seen by two cameras, gets the same colour (lights fixed in world space).
    eyes = torch.tensor([[0.0, -3.2, 0.0], [3.2 * math.sin(math.radians(40)), -3.2 * math.cos(math.radians(40)), 0.0]])
    cams = Cameras(look_at(eyes), intrinsics_from_fov(40.0, 96, 96).expand(2, 3, 3), 96, 96)
    rgba = render_rgba(_sphere(0.8), cams, supersample=2)
    p = np.array([math.sin(math.radians(20)), -math.cos(math.radians(20)), 0.25])
    p = 0.8 * p / np.linalg.norm(p)  # on the sphere, facing both cameras
    colours = []
    for v in range(2):
        w2c = np.linalg.inv(cams.c2w[v].double().numpy())
        x, y, z = w2c[:3, :3] @ p + w2c[:3, 3]  # OpenGL camera coordinates: the camera looks along -Z
        K = cams.K[v].double().numpy()
        col, row = K[0, 0] * x / -z + K[0, 2], K[1, 1] * -y / -z + K[1, 2]
        assert rgba[v, int(row), int(col), 3] == 255
        colours.append(rgba[v, int(row), int(col), :3].astype(int))
    assert np.abs(colours[0] - colours[1]).max() <= 4, colours
    # Front view: the key light comes from the front-left above, so the left and top halves are brighter.
    front = rgba[0, ..., :3].astype(float).mean(-1)
    lit = rgba[0, ..., 3] == 255
    half = 48
    assert front[:, :half][lit[:, :half]].mean() > front[:, half:][lit[:, half:]].mean()
    assert front[:half][lit[:half]].mean() > front[half:][lit[half:]].mean()


def test_adaptive_supersampling_matches_full_supersampling():
    cams = orbit(3, elevation=25.0, azimuth_start=10.0, width=64)
    for caption in ("a red chair with white legs", "a blue car", "a pink cake with white frosting"):
        mesh = build_mesh(caption)
        full = render_rgba(mesh, cams, adaptive=False).astype(int)
        fast = render_rgba(mesh, cams, adaptive=True).astype(int)
        diff = np.abs(full - fast)
        assert diff.mean() < 1.0, caption
        assert (diff.max(-1) > 24).mean() < 0.02, caption
        assert abs(full[..., 3].sum() - fast[..., 3].sum()) < 0.01 * full[..., 3].sum(), caption


def test_composite_white_and_bad_input():
    rgba = np.array([[[10, 20, 30, 255], [10, 20, 30, 0], [0, 0, 0, 128]]], dtype=np.uint8)
    rgb = composite_white(rgba)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 3, 3)
    assert rgb[0, 0].tolist() == [10, 20, 30] and rgb[0, 1].tolist() == [255, 255, 255]
    assert rgb[0, 2].tolist() == [127, 127, 127]
    assert np.allclose(composite_white(rgba.astype(np.float32) / 255), rgb / 255, atol=1 / 255)
    with pytest.raises(ValueError, match="4 channels"):
        composite_white(rgba[..., :3])
    with pytest.raises(ValueError, match="supersample"):
        render_rgba(_sphere(), orbit(1, width=16), supersample=0)
