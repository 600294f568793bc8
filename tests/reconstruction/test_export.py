"""Exports: .ply round trip and INRIA header, .splat size, .glb loads upright with trimesh, video/gif/path."""

import numpy as np
import pytest
import torch

from reconstruction.export import (export_all, gaussians_to_mesh, load_ply, ply_property_names, save_glb,
                                   save_ply, save_splat)
from reconstruction.gaussians import Gaussians
from reconstruction.init import gaussians_from_points
from tests.reconstruction.conftest import blob_object


def _gaussians(sh_degree=1, n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    K = (sh_degree + 1) ** 2
    return Gaussians(torch.randn(n, 3, generator=g), torch.randn(n, 4, generator=g),
                     torch.randn(n, 3, generator=g) - 3, torch.randn(n, generator=g),
                     torch.randn(n, 1, 3, generator=g), torch.randn(n, K - 1, 3, generator=g), sh_degree)


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_ply_round_trip_and_inria_header(tmp_path, degree):
    from plyfile import PlyData

    g = _gaussians(degree)
    path = save_ply(g, tmp_path / "s.ply")
    ply = PlyData.read(str(path))
    names = [p.name for p in ply["vertex"].properties]
    n_rest = 3 * ((degree + 1) ** 2 - 1)
    assert names == ply_property_names(n_rest)
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[-8:] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    header = path.read_bytes().split(b"end_header\n")[0].decode().splitlines()
    assert header[:3] == ["ply", "format binary_little_endian 1.0", f"element vertex {len(g)}"]
    assert header[3:] == [f"property float {n}" for n in names]  # exactly the INRIA header
    v = ply["vertex"]
    assert np.allclose(v["x"], g.means[:, 0].numpy()) and np.allclose(v["rot_3"], g.quats[:, 3].numpy())
    if degree:  # INRIA stores f_rest channel-major: all red coefficients first
        assert np.allclose(v["f_rest_1"], g.shN[:, 1, 0].numpy())
        assert np.allclose(v[f"f_rest_{n_rest // 3}"], g.shN[:, 0, 1].numpy())
    back = load_ply(path)
    assert back.sh_degree == degree
    for name in ("means", "quats", "scales", "opacities", "sh0", "shN"):
        assert torch.equal(getattr(back, name), getattr(g, name)), name


def test_ply_drops_non_finite_and_rejects_garbage(tmp_path):
    g = _gaussians()
    g.means[3, 0] = float("nan")
    assert len(load_ply(save_ply(g, tmp_path / "a.ply"))) == len(g) - 1
    (tmp_path / "bad.ply").write_bytes(b"not a ply")
    with pytest.raises(ValueError, match="bad.ply"):
        load_ply(tmp_path / "bad.ply")


def test_splat_is_32_bytes_per_gaussian(tmp_path):
    g = _gaussians(n=37)
    path = save_splat(g, tmp_path / "s.splat")
    data = path.read_bytes()
    assert len(data) == 32 * 37
    pos = np.frombuffer(data, dtype=np.float32).reshape(37, 8)[:, :3]
    assert np.allclose(np.sort(pos[:, 0]), np.sort(g.means[:, 0].numpy()))


def _blob_gaussians():
    means, _, _, _, colors = blob_object()
    g = gaussians_from_points(means, colors, sh_degree=0)
    g.opacities[:] = 4.0
    g.scales[:] = torch.log(torch.tensor(0.08))
    return g


def test_glb_mesh_loads_with_trimesh_upright(tmp_path):
    import trimesh

    g = _blob_gaussians()
    mesh = gaussians_to_mesh(g, resolution=48)
    assert len(mesh.faces) > 100 and mesh.volume > 0  # outward-facing triangles
    colors = mesh.visual.vertex_colors[:, :3].astype(float) / 255
    assert colors[:, 0].mean() > colors[:, 2].mean() * 0.5  # coloured from the Gaussians (red-orange part)
    path = save_glb(g, tmp_path / "m.glb", resolution=48)
    scene = trimesh.load(str(path))
    loaded = scene.to_geometry() if isinstance(scene, trimesh.Scene) else scene
    assert len(loaded.faces) == len(mesh.faces)
    # glTF is +Y up: the world's up extent (Z) became the Y extent
    assert np.allclose(loaded.bounds[:, 1], mesh.bounds[:, 2], atol=1e-4)
    assert np.allclose(loaded.bounds[:, 2], -mesh.bounds[::-1, 1], atol=1e-4)


def test_glb_of_empty_density_fails_clearly(tmp_path):
    g = _gaussians()
    g.opacities[:] = -20.0
    with pytest.raises(ValueError, match="mesh"):
        save_glb(g, tmp_path / "e.glb", resolution=16)
    assert not list(tmp_path.iterdir())  # nothing half-written left behind


def test_export_all_writes_everything(tmp_path):
    import imageio.v3 as iio

    from mvgen.cameras import orbit

    seen = []
    paths, warnings = export_all(_blob_gaussians(), tmp_path, orbit(8, 20.0, width=48), "obj", mesh_resolution=32,
                                 gif_frames=4, progress=lambda f, d: seen.append(f))
    assert set(paths) == {"ply", "splat", "glb", "mp4", "gif", "camera_path"} and warnings == []
    assert seen == sorted(seen) and seen[-1] == 1.0
    for p in paths.values():
        assert p.is_file() and p.stat().st_size > 0
    video = iio.imread(paths["mp4"])
    assert video.shape == (8, 48, 48, 3) and video.mean() < 250  # not just background
    assert len(iio.imread(paths["gif"], index=None)) == 4
    cams, _ = _read_path(paths["camera_path"])
    assert len(cams) == 8 and cams.width == 48
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def _read_path(path):
    # the camera path uses the transforms.json layout, but its frames are not image files (read_transforms
    # would look for them), so parse it here
    import json

    from mvgen.cameras import Cameras

    meta = json.loads(path.read_text())
    c2w = torch.tensor([f["transform_matrix"] for f in meta["frames"]])
    K = torch.tensor([[meta["fl_x"], 0, meta["cx"]], [0, meta["fl_y"], meta["cy"]], [0, 0, 1.0]]).expand(len(c2w), 3, 3)
    return Cameras(c2w, K, meta["w"], meta["h"]), meta



def test_export_all_without_a_mesh_warns_and_writes_the_rest(tmp_path):
    from mvgen.cameras import orbit

    g = _gaussians()
    g.opacities[:] = -20.0  # too faint to mesh
    paths, warnings = export_all(g, tmp_path, orbit(2, 20.0, width=32), mesh_resolution=16)
    assert "glb" not in paths and len(warnings) == 1 and warnings[0].startswith("no .glb mesh")
    assert {"ply", "splat", "mp4", "gif", "camera_path"} == set(paths) and all(p.is_file() for p in paths.values())
