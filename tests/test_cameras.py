import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from mvgen import cameras as C


def test_orbit_rotations_are_rigid_and_look_at_origin():
    cams = C.orbit(8, elevation=[0, 10, 20, 30, 40, -10, 60, 89], azimuth_start=17.0, radius=3.2, width=64)
    R = cams.c2w[:, :3, :3]
    assert torch.allclose(R.transpose(1, 2) @ R, torch.eye(3).expand(8, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(R), torch.ones(8), atol=1e-5)
    assert torch.allclose(cams.centers.norm(dim=-1), torch.full((8,), 3.2), atol=1e-5)
    # OpenGL: the camera looks along its -Z axis, which must point at the origin.
    forward = -R[:, :, 2]
    to_origin = torch.nn.functional.normalize(-cams.centers, dim=-1)
    assert torch.allclose(forward, to_origin, atol=1e-5)
    # Camera "up" has a non-negative world-Z component (no rolled cameras).
    assert (R[:, 2, 1] >= -1e-6).all()


def test_orbit_angle_convention():
    cams = C.orbit(4, elevation=0.0, radius=2.0)
    # azimuth 0 is in front (-Y), 90 on +X, elevation positive is above.
    assert torch.allclose(cams.centers[0], torch.tensor([0.0, -2.0, 0.0]), atol=1e-5)
    assert torch.allclose(cams.centers[1], torch.tensor([2.0, 0.0, 0.0]), atol=1e-5)
    up = C.orbit(1, elevation=30.0, radius=2.0).centers[0]
    assert up[2] == pytest.approx(2.0 * math.sin(math.radians(30)), abs=1e-5)


def test_origin_projects_to_image_centre():
    cams = C.orbit(6, elevation=25.0, width=96, height=64)
    vm = cams.viewmats
    p = vm[:, :3, :3] @ torch.zeros(3) + vm[:, :3, 3]  # origin in OpenCV camera coords
    assert (p[:, 2] > 0).all()  # in front of the camera
    uv = (cams.K @ p[:, :, None]).squeeze(-1)
    uv = uv[:, :2] / uv[:, 2:]
    assert torch.allclose(uv, torch.tensor([48.0, 32.0]).expand(6, 2), atol=1e-3)


def test_viewmat_round_trip_and_opencv_axes():
    cams = C.orbit(5, elevation=15.0, azimuth_start=33.0)
    vm = C.c2w_to_viewmat(cams.c2w)
    assert torch.allclose(C.viewmat_to_c2w(vm), cams.c2w, atol=1e-5)
    # A world point above the origin is "up" in the image: negative y in OpenCV camera coords.
    top = vm[:, :3, :3] @ torch.tensor([0.0, 0.0, 0.5]) + vm[:, :3, 3]
    assert (top[:, 1] < 0).all()


def test_plucker_rays():
    cams = C.orbit(3, elevation=20.0, width=16)
    pl = cams.plucker()
    assert pl.shape == (3, 6, 16, 16)
    d, m = pl[:, :3], pl[:, 3:]
    assert torch.allclose(d.norm(dim=1), torch.ones(3, 16, 16), atol=1e-5)
    assert (d * m).sum(dim=1).abs().max() < 1e-5  # moment is perpendicular to the direction
    # The moment o x d is the same for every point on the ray: o + t d gives the same value.
    o = cams.centers[:, :, None, None]
    assert torch.allclose(torch.cross(o + 2.0 * d, d, dim=1), m, atol=1e-4)
    # Centre rays (between the 4 middle pixels) point roughly at the origin.
    mid = d[:, :, 7:9, 7:9].mean(dim=(2, 3))
    assert torch.allclose(torch.nn.functional.normalize(mid, dim=1),
                          torch.nn.functional.normalize(-cams.centers, dim=1), atol=2e-2)
    # Downsampled map keeps the same geometry at lower resolution.
    assert cams.plucker(4, 4).shape == (3, 6, 4, 4)


def _write_views(folder, cams, names):
    for n in names:
        (folder / n).parent.mkdir(parents=True, exist_ok=True)
        img = np.zeros((cams.height, cams.width, 4), np.uint8)
        img[..., 0] = 200
        img[..., 3] = 255
        Image.fromarray(img).save(folder / f"{n}.png")


def test_transforms_round_trip(tmp_path):
    cams = C.orbit(4, elevation=10.0, width=32, height=24)
    names = [f"views/{i:03d}" for i in range(4)]
    _write_views(tmp_path, cams, names)
    C.write_transforms(tmp_path / "transforms.json", cams, [n + ".png" for n in names])
    back, files = C.read_transforms(tmp_path / "transforms.json")
    assert torch.allclose(back.c2w, cams.c2w, atol=1e-6)
    assert torch.allclose(back.K, cams.K, atol=1e-4)
    assert (back.width, back.height) == (32, 24)
    assert [f.name for f in files] == [f"{i:03d}.png" for i in range(4)]
    views = C.load_views(tmp_path)
    assert views.images.shape == (4, 4, 24, 32)
    assert views.images[:, 0].mean() == pytest.approx(200 / 255, abs=1e-6)
    half = C.load_views(tmp_path, downscale=2)
    assert half.images.shape == (4, 4, 12, 16)
    assert torch.allclose(half.cameras.K[:, 0, 0], cams.K[:, 0, 0] / 2)


def test_nerf_synthetic_style_camera_angle_x_without_extension(tmp_path):
    cams = C.orbit(2, elevation=30.0, width=40)
    _write_views(tmp_path, cams, ["train/r_0", "train/r_1"])
    meta = {"camera_angle_x": 0.6911112070083618,
            "frames": [{"file_path": f"./train/r_{i}", "transform_matrix": cams.c2w[i].tolist()} for i in range(2)]}
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))
    views = C.load_views(tmp_path)
    f = 0.5 * 40 / math.tan(0.6911112070083618 / 2)
    assert views.cameras.K[0, 0, 0] == pytest.approx(f, rel=1e-5)
    assert views.cameras.K[0, 1, 1] == pytest.approx(f, rel=1e-5)
    assert views.images.shape == (2, 4, 40, 40)


@pytest.mark.parametrize("mutate, message", [
    (lambda c2w, K: c2w.__setitem__((0, 0, 3), float("nan")), "non-finite"),
    (lambda c2w, K: c2w.__setitem__((1, slice(0, 3), 0), torch.tensor([2.0, 0.0, 0.0])), "rigid"),
    (lambda c2w, K: K.__setitem__((0, 0, 0), 0.0), "focal"),
])
def test_validation_errors(mutate, message):
    cams = C.orbit(2)
    c2w, K = cams.c2w.clone(), cams.K.clone()
    mutate(c2w, K)
    with pytest.raises(C.CameraError, match=message):
        C.Cameras(c2w, K, cams.width, cams.height)


def test_shape_and_argument_errors():
    with pytest.raises(C.CameraError, match=r"\[V,4,4\]"):
        C.Cameras(torch.eye(4), torch.eye(3)[None], 8, 8)
    with pytest.raises(C.CameraError, match="elevation"):
        C.orbit(2, elevation=95.0)
    with pytest.raises(C.CameraError, match="num_views"):
        C.orbit(0)


def test_corrupt_transforms_and_missing_images(tmp_path):
    (tmp_path / "transforms.json").write_text("{not json")
    with pytest.raises(C.CameraError, match="not valid JSON"):
        C.load_views(tmp_path)
    cams = C.orbit(1, width=8)
    C.write_transforms(tmp_path / "transforms.json", cams, ["views/missing.png"])
    with pytest.raises(C.CameraError, match="not found"):
        C.load_views(tmp_path)
    _write_views(tmp_path, C.orbit(1, width=16), ["views/missing"])  # wrong size on disk
    with pytest.raises(C.CameraError, match="16x16"):
        C.load_views(tmp_path)
    with pytest.raises(C.CameraError, match="no transforms.json"):
        C.load_views(tmp_path / "views")
