"""Initial Gaussians for fitting: from the views' alpha masks (a visual hull) or random in the bounding sphere.

Visual hull: voxels of a grid over the bounding cube are kept when they project inside every view with alpha above
a threshold (captures are object-centric: the object is in every view, so a voxel outside a view's frustum is
not part of it); the hull's surface voxels (those with an empty neighbour) become the points,
jittered inside their voxel and coloured with the mean of the views' colours at their projection. Measured by
``mvgen bench fit`` (both inits, same budget); see the report for the numbers.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from mvgen.cameras import Cameras, project_points
from reconstruction.gaussians import SH_C0, Gaussians

INITS = ("hull", "random")
HULL_CHUNK = 4  # views carved per pass: each pass projects only the voxels earlier views kept (lego's 80 views,
#                 1 thread: 1.4-2.2 CPU s at once -> 0.10 in passes of 4; the same points, tests/reconstruction)


def _sample_views(images: Tensor, uv: Tensor) -> Tensor:
    """Bilinear samples of images [V,C,H,W] at pixel coords uv [V,P,2] -> [V,P,C] (border-clamped)."""
    V, C, H, W = images.shape
    grid = torch.stack([uv[..., 0] / W * 2 - 1, uv[..., 1] / H * 2 - 1], dim=-1)[:, None]  # (V, 1, P, 2)
    out = torch.nn.functional.grid_sample(images, grid, align_corners=False, padding_mode="border")
    return out[:, :, 0].permute(0, 2, 1)


def visual_hull_points(images: Tensor, cameras: Cameras, n_points: int, radius: float = 1.0,
                       resolution: int = 64, alpha_threshold: float = 0.5, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Points on the surface of the visual hull and their colours.

    Args: images [V,4,H,W] RGBA in [0,1]; radius: half-size of the cube carved (objects inside the unit sphere).
    Returns: points [P,3], rgb [P,3] on the images' device (P <= n_points; empty if the masks carve everything
    away). The random picks are drawn on the CPU (the same points on every device) and moved there.
    """
    g = torch.Generator().manual_seed(seed)
    device = images.device
    step = 2 * radius / resolution
    axis = -radius + step * (torch.arange(resolution, dtype=torch.float32, device=device) + 0.5)
    centres = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    H, W = images.shape[-2:]
    alive = torch.arange(centres.shape[0], device=device)  # voxels no view has carved away yet
    for first in range(0, images.shape[0], HULL_CHUNK):  # carve a few views at a time, only what is left
        views = list(range(first, min(first + HULL_CHUNK, images.shape[0])))
        uv, z = project_points(centres[alive], cameras[views])
        inside = (uv[..., 0] >= 0) & (uv[..., 0] < W) & (uv[..., 1] >= 0) & (uv[..., 1] < H) & (z > 0)
        alpha = _sample_views(images[views, 3:4], uv)[..., 0]  # (views, alive)
        alive = alive[((alpha >= alpha_threshold) & inside).all(dim=0)]  # object-centric: every view sees it
    occupied = torch.zeros(centres.shape[0], dtype=torch.bool, device=device)
    occupied[alive] = True
    occ = occupied.reshape(resolution, resolution, resolution)
    padded = torch.nn.functional.pad(occ[None, None].float(), (1, 1, 1, 1, 1, 1))
    all_full = -torch.nn.functional.max_pool3d(-padded, 3, stride=1)[0, 0] > 0.5  # all 27 neighbours occupied
    surface = (occ & ~all_full).reshape(-1)
    idx = torch.nonzero(surface).flatten().cpu()
    if idx.numel() == 0:
        return images.new_zeros(0, 3), images.new_zeros(0, 3)
    pick = idx[torch.randint(idx.numel(), (n_points,), generator=g, device=g.device)] if idx.numel() < n_points \
        else idx[torch.randperm(idx.numel(), generator=g, device=g.device)[:n_points]]
    jitter = torch.rand(pick.numel(), 3, generator=g, device=g.device).to(device)
    points = centres[pick.to(device)] + (jitter - 0.5) * step
    uvp, zp = project_points(points, cameras)
    seen = ((uvp[..., 0] >= 0) & (uvp[..., 0] < W) & (uvp[..., 1] >= 0) & (uvp[..., 1] < H) & (zp > 0)).float()
    rgb = _sample_views(images[:, :3], uvp)  # (V, P, 3)
    rgb = (rgb * seen[..., None]).sum(0) / seen.sum(0).clamp(min=1)[:, None]
    return points, rgb


def outside_hull(points: Tensor, masks: Tensor, cameras: Cameras, dilate_px: int = 3,
                 alpha_threshold: float = 0.5) -> Tensor:
    """[P] True for points that some view sees outside the object: off the image, behind the camera, or on
    background (alpha below the threshold after dilating the masks by ``dilate_px`` pixels). masks [V,1,H,W]."""
    uv, z = project_points(points, cameras)
    H, W = masks.shape[-2:]
    inside = (uv[..., 0] >= 0) & (uv[..., 0] < W) & (uv[..., 1] >= 0) & (uv[..., 1] < H) & (z > 0)
    alpha = _sample_views(dilate_masks(masks, dilate_px), uv)[..., 0]
    return (~inside | (alpha < alpha_threshold)).any(dim=0)


def dilate_masks(masks: Tensor, dilate_px: int) -> Tensor:
    """masks [V,1,H,W] grown by ``dilate_px`` pixels (a max filter); unchanged for 0."""
    if dilate_px <= 0:
        return masks
    return torch.nn.functional.max_pool2d(masks, 2 * dilate_px + 1, stride=1, padding=dilate_px)


def random_sphere_points(n_points: int, radius: float = 1.0, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Uniform points in a ball and random colours: points [n,3], rgb [n,3] (on the CPU, where they are drawn)."""
    g = torch.Generator().manual_seed(seed)
    d = torch.nn.functional.normalize(torch.randn(n_points, 3, generator=g, device=g.device), dim=-1)
    r = radius * torch.rand(n_points, 1, generator=g, device=g.device) ** (1 / 3)
    return d * r, torch.rand(n_points, 3, generator=g, device=g.device)


def nearest_neighbour_scale(points: Tensor, k: int = 3) -> Tensor:
    """[P] mean distance to the k nearest other points (the 3DGS initial scale), on the points' device (the
    k-d tree runs on a CPU copy)."""
    from scipy.spatial import cKDTree

    pts = points.detach().double().cpu().numpy()
    k = min(k, len(pts) - 1)
    if k < 1:
        return torch.full((len(pts),), 0.01, device=points.device)
    dist, _ = cKDTree(pts).query(pts, k=k + 1)
    return torch.from_numpy(np.asarray(dist[:, 1:]).mean(axis=1)).float().clamp(min=1e-4).to(points.device)


def gaussians_from_points(points: Tensor, rgb: Tensor, sh_degree: int, opacity: float = 0.1,
                          scale_factor: float = 1.0) -> Gaussians:
    """Isotropic Gaussians at ``points`` with the given colours (SH degree-0 term), identity rotation; on the
    points' device."""
    n, device = points.shape[0], points.device
    scale = nearest_neighbour_scale(points) * scale_factor
    sh0 = ((rgb.clamp(0, 1) - 0.5) / SH_C0)[:, None, :]
    return Gaussians(
        means=points.clone().float(),
        quats=torch.tensor([1.0, 0.0, 0.0, 0.0], device=device).repeat(n, 1),
        scales=torch.log(scale)[:, None].repeat(1, 3),
        opacities=torch.full((n,), math.log(opacity / (1 - opacity)), device=device),
        sh0=sh0.float(),
        shN=torch.zeros(n, (sh_degree + 1) ** 2 - 1, 3, device=device),
        sh_degree=sh_degree,
    )


def initial_gaussians(kind: str, images: Tensor, cameras: Cameras, n_points: int, sh_degree: int,
                      radius: float = 1.0, seed: int = 0) -> Gaussians:
    """``kind`` "hull" (falls back to "random" when the views have no transparent pixels or the masks leave no
    hull) or "random"; on the images' device."""
    if kind not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {kind!r}")
    if kind == "hull" and bool((images[:, 3] < 0.99).any()):  # views without transparency carve nothing
        points, rgb = visual_hull_points(images, cameras, n_points, radius=radius, seed=seed)
        if points.shape[0] >= 16:
            return gaussians_from_points(points, rgb, sh_degree)
    points, rgb = random_sphere_points(n_points, radius, seed)
    return gaussians_from_points(points.to(images.device), rgb.to(images.device), sh_degree)
