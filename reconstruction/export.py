"""Exports of fitted Gaussians: 3DGS ``.ply`` (INRIA layout), ``.splat``, a coloured mesh ``.glb``, an orbit
video ``.mp4`` + ``.gif`` and the orbit's camera path (transforms.json layout).

Every file is written under a temporary name in the target folder and renamed when complete, so a reader (or
an earlier export) never sees a half-written file.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from numba import njit

from mvgen.cameras import Cameras, write_transforms
from mvgen.fileio import atomic_path
from reconstruction.gaussians import Gaussians, render
from reconstruction.rasterize import quat_to_rotmat


# ----------------------------------------------------------------------------------------------- .ply / .splat

def ply_property_names(n_rest: int) -> list[str]:
    """Vertex properties of a 3DGS .ply in the INRIA order (``n_rest`` = number of f_rest values = 3 (K - 1))."""
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(n_rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def save_ply(gaussians: Gaussians, path: str | os.PathLike) -> Path:
    """Binary little-endian 3DGS .ply as written by the INRIA code: positions, zero normals, SH (f_rest stored
    channel-major), opacity logit, log scales, rotation quaternion wxyz. Non-finite Gaussians are dropped.
    Written from a CPU copy (as every export)."""
    from plyfile import PlyData, PlyElement

    g = gaussians.detach().to("cpu")
    keep = g.finite_mask()
    n = int(keep.sum())
    rest = g.shN[keep].transpose(1, 2).reshape(n, -1)  # (n, 3*(K-1)) channel-major, as INRIA
    cols = [g.means[keep], g.means.new_zeros(n, 3), g.sh0[keep, 0], rest, g.opacities[keep, None], g.scales[keep],
            g.quats[keep]]
    data = torch.cat(cols, dim=1).numpy().astype(np.float32)
    names = ply_property_names(rest.shape[1])
    vertex = np.empty(n, dtype=[(name, "f4") for name in names])
    for i, name in enumerate(names):
        vertex[name] = data[:, i]
    path = Path(path)
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(vertex, "vertex")], text=False).write(str(tmp))
    return path


def load_ply(path: str | os.PathLike) -> Gaussians:
    """Read a 3DGS .ply in the INRIA layout (any SH degree 0-3) back into ``Gaussians``."""
    from plyfile import PlyData, PlyParseError

    try:
        v = PlyData.read(str(path))["vertex"]
    except (PlyParseError, KeyError, ValueError, OSError) as e:
        raise ValueError(f"{path}: not a readable 3DGS .ply ({e})") from None
    names = v.data.dtype.names
    missing = [n for n in ply_property_names(0) if n not in names and n not in ("nx", "ny", "nz")]
    if missing:
        raise ValueError(f"{path}: missing 3DGS properties {missing}")
    col = lambda name: torch.from_numpy(np.asarray(v[name], dtype=np.float32))  # noqa: E731
    n_rest = sum(1 for n in names if n.startswith("f_rest_"))
    if n_rest % 3 or round(math.sqrt(n_rest // 3 + 1)) ** 2 != n_rest // 3 + 1:
        raise ValueError(f"{path}: {n_rest} f_rest values do not match any SH degree")
    n = len(v.data)
    rest = torch.stack([col(f"f_rest_{i}") for i in range(n_rest)], dim=1) if n_rest else torch.zeros(n, 0)
    return Gaussians(
        means=torch.stack([col("x"), col("y"), col("z")], dim=1),
        quats=torch.stack([col(f"rot_{i}") for i in range(4)], dim=1),
        scales=torch.stack([col(f"scale_{i}") for i in range(3)], dim=1),
        opacities=col("opacity"),
        sh0=torch.stack([col(f"f_dc_{i}") for i in range(3)], dim=1)[:, None, :],
        shN=rest.reshape(n, 3, -1).transpose(1, 2).contiguous(),
        sh_degree=round(math.sqrt(n_rest // 3 + 1)) - 1,
    )


def save_splat(gaussians: Gaussians, path: str | os.PathLike) -> Path:
    """antimatter15 ``.splat`` (32 bytes per Gaussian: position, scale, RGBA, rotation) via gsplat's exporter."""
    from gsplat import export_splats

    g = gaussians.detach().to("cpu")
    keep = g.finite_mask()
    data = export_splats(g.means[keep], g.scales[keep], g.quats[keep], g.opacities[keep], g.sh0[keep],
                         g.shN[keep], format="splat")
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


# ------------------------------------------------------------------------------------------------- mesh .glb

@njit(cache=True)
def _splat_density(means, precis, opacities, rgb, radius, lo, voxel, res):
    """Accumulate opacity-weighted Gaussian densities (and colour x density) on a res³ grid.

    Args: means [N,3], precis [N,3,3] inverse covariances, opacities [N], rgb [N,3], radius [N] (box half-size,
        world units), lo: grid origin (centre of voxel 0), voxel: voxel size.
    Returns: density [res,res,res], colour sums [res,res,res,3].
    """
    density = np.zeros((res, res, res), np.float32)
    color = np.zeros((res, res, res, 3), np.float32)
    for g in range(means.shape[0]):
        i0 = np.empty(3, np.int64)
        i1 = np.empty(3, np.int64)
        for a in range(3):
            i0[a] = max(0, int(math.floor((means[g, a] - radius[g] - lo) / voxel)))
            i1[a] = min(res, int(math.ceil((means[g, a] + radius[g] - lo) / voxel)) + 1)
        for i in range(i0[0], i1[0]):
            dx = lo + i * voxel - means[g, 0]
            for j in range(i0[1], i1[1]):
                dy = lo + j * voxel - means[g, 1]
                for k in range(i0[2], i1[2]):
                    dz = lo + k * voxel - means[g, 2]
                    q = (precis[g, 0, 0] * dx * dx + precis[g, 1, 1] * dy * dy + precis[g, 2, 2] * dz * dz
                         + 2 * (precis[g, 0, 1] * dx * dy + precis[g, 0, 2] * dx * dz + precis[g, 1, 2] * dy * dz))
                    if q > 9.0:
                        continue
                    w = opacities[g] * math.exp(-0.5 * q)
                    density[i, j, k] += w
                    for c in range(3):
                        color[i, j, k, c] += w * rgb[g, c]
    return density, color


def density_grid(gaussians: Gaussians, resolution: int = 96, bound: float | None = None):
    """Opacity-weighted density of the Gaussians on a cube grid and its mean colour.

    Returns: density [R,R,R], rgb [R,R,R,3], origin (centre of voxel 0), voxel size. Scales are clamped to at
    least half a voxel so thin, flat Gaussians are not lost between grid points. Computed on a CPU copy.
    """
    g = gaussians.detach().to("cpu")
    keep = g.finite_mask() & (torch.sigmoid(g.opacities) > 0.02)
    means = g.means[keep]
    if bound is None:
        bound = float(means.abs().max()) * 1.05 + 1e-3 if len(means) else 1.0
    voxel = 2 * bound / (resolution - 1)
    scales = torch.exp(g.scales[keep]).clamp(min=0.5 * voxel)
    R = quat_to_rotmat(g.quats[keep])
    P = R / scales[:, None, :]
    precis = P @ P.transpose(1, 2)  # R S^-2 R^T
    radius = 3.0 * scales.max(dim=-1).values
    from reconstruction.jit import first_call

    with first_call("splat_density", "the mesh kernel", __file__, "_splat_density"):
        density, csum = _splat_density(means.double().numpy(), precis.double().numpy(),
                                       torch.sigmoid(g.opacities[keep]).double().numpy(),
                                       g.base_rgb[keep].double().numpy(), radius.double().numpy(),
                                       -bound, voxel, resolution)
    rgb = csum / np.maximum(density, 1e-8)[..., None]
    return density, rgb, -bound, voxel


# World +Z up (mvgen) -> glTF +Y up, front (-Y in mvgen) -> +Z: (x, y, z) -> (x, z, -y)
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def gaussians_to_mesh(gaussians: Gaussians, resolution: int = 96, level: float = 0.5):
    """Marching cubes on the density grid; vertex colours interpolated from the colour grid.
    Returns a ``trimesh.Trimesh`` in mvgen's world frame (+Z up)."""
    import trimesh
    from scipy.ndimage import map_coordinates
    from skimage.measure import marching_cubes

    density, rgb, origin, voxel = density_grid(gaussians, resolution)
    if not density.max() > level:
        raise ValueError(f"mesh: the Gaussians' density never reaches the iso level {level}; nothing to mesh")
    verts, faces, _, _ = marching_cubes(density, level=level)
    colors = np.stack([map_coordinates(rgb[..., c], verts.T, order=1, mode="nearest") for c in range(3)], -1)
    rgba = np.concatenate([np.clip(colors * 255, 0, 255), np.full((len(verts), 1), 255)], 1).astype(np.uint8)
    # marching_cubes orders faces so normals point towards decreasing density (outwards); trimesh wants CCW
    mesh = trimesh.Trimesh(origin + verts * voxel, faces[:, ::-1], vertex_colors=rgba, process=True)
    return mesh


def save_glb(gaussians: Gaussians, path: str | os.PathLike, resolution: int = 96, level: float = 0.5) -> Path:
    """Coloured triangle mesh (.glb), rotated to glTF's +Y up so it stands upright in viewers."""
    mesh = gaussians_to_mesh(gaussians, resolution, level)
    mesh.apply_transform(np.block([[Z_UP_TO_Y_UP, np.zeros((3, 1))], [np.zeros((1, 3)), np.ones((1, 1))]]))
    path = Path(path)
    with atomic_path(path) as tmp:
        mesh.export(str(tmp), file_type="glb")
    return path


# ------------------------------------------------------------------------------------------ orbit video / path

def render_orbit(gaussians: Gaussians, cameras: Cameras, backend: str = "auto") -> np.ndarray:
    """uint8 [T,H,W,3] frames on a white background, rendered where the Gaussians are."""
    rgb, _ = render(gaussians, cameras, backend=backend)
    return (rgb.permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def save_video(frames: np.ndarray, path: str | os.PathLike, fps: int = 24) -> Path:
    """H.264 .mp4 (yuv420p, plays in browsers) of uint8 frames [T,H,W,3]; odd sizes are padded by one pixel."""
    import imageio.v2 as imageio

    T, H, W, _ = frames.shape
    frames = np.pad(frames, ((0, 0), (0, H % 2), (0, W % 2), (0, 0)), mode="edge")
    path = Path(path)
    with atomic_path(path) as tmp:
        writer = imageio.get_writer(str(tmp), format="FFMPEG", fps=fps, codec="libx264", pixelformat="yuv420p",
                                    macro_block_size=1, ffmpeg_log_level="error")
        try:
            for f in frames:
                writer.append_data(f)
        finally:
            writer.close()
    return path


def save_gif(frames: np.ndarray, path: str | os.PathLike, fps: int = 12) -> Path:
    """Looping GIF of uint8 frames [T,H,W,3]."""
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    path = Path(path)
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return path


def save_camera_path(cameras: Cameras, path: str | os.PathLike, fps: int = 24) -> Path:
    """The orbit as a transforms.json-style camera path (frames ``frame_000`` ...; also records fps)."""
    write_transforms(path, cameras, [f"frame_{i:03d}" for i in range(len(cameras))], extra={"fps": fps})
    return Path(path)


def export_all(gaussians: Gaussians, out: str | os.PathLike, cameras: Cameras, name: str = "scene",
               mesh_resolution: int = 96, backend: str = "auto", gif_frames: int = 30,
               progress: Callable[[float, str], None] | None = None) -> tuple[dict, list]:
    """Write ``name``.ply / .splat / .glb / .mp4 / .gif and ``name``_camera_path.json into ``out``; the orbit video
    and its camera path follow ``cameras``. A mesh that cannot be extracted (Gaussians too faint to reach the iso
    level) is no error: the other files are still written and the reason is returned as a warning.

    ``progress(fraction, desc)`` hears of each step. Returns ({kind: path}, warnings).
    The orbit video renders where the Gaussians are; the files are written from one CPU copy.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tell = progress or (lambda fraction, desc: None)
    tell(0.0, "exporting .ply / .splat")
    host = gaussians.detach().to("cpu")
    paths = {"ply": save_ply(host, out / f"{name}.ply"), "splat": save_splat(host, out / f"{name}.splat")}
    warnings = []
    tell(0.3, "extracting the mesh (.glb)")
    try:
        paths["glb"] = save_glb(host, out / f"{name}.glb", mesh_resolution)
    except ValueError as e:
        warnings.append(f"no .glb mesh: {e}")
    tell(0.6, "rendering the orbit video")
    video = render_orbit(gaussians, cameras, backend)
    paths["mp4"] = save_video(video, out / f"{name}.mp4")
    step = max(1, len(video) // gif_frames)
    paths["gif"] = save_gif(video[::step], out / f"{name}.gif", fps=max(1, round(24 / step)))
    paths["camera_path"] = save_camera_path(cameras, out / f"{name}_camera_path.json")
    tell(1.0, "exports written")
    return paths, warnings
