"""Tiny scenes shared by the reconstruction tests (32² views, a few hundred Gaussians: seconds on a CPU)."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads; see reconstruction/__init__.py

import math

import pytest
import torch

from mvgen.cameras import orbit
from reconstruction.rasterize import rasterization


def random_scene(n: int, seed: int = 0, spread: float = 0.5, scale: float = 0.08, sh_degree: int | None = None):
    """n random Gaussians near the origin: means, quats, scales (activated), opacities (activated), colors."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g) * spread
    quats = torch.randn(n, 4, generator=g)
    scales = torch.exp(torch.randn(n, 3, generator=g) * 0.4 + math.log(scale))
    opacities = torch.rand(n, generator=g) * 0.9 + 0.05
    if sh_degree is None:
        colors = torch.rand(n, 3, generator=g)
    else:
        colors = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g) * 0.5
    return means, quats, scales, opacities, colors


def blob_object(seed: int = 3):
    """A fixed 'object': ~300 opaque Gaussians on two touching ellipsoid shells with two colours."""
    g = torch.Generator().manual_seed(seed)
    n = 300
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    means = d * torch.tensor([0.55, 0.4, 0.35])
    means[n // 2:] = means[n // 2:] * 0.6 + torch.tensor([0.0, 0.0, 0.45])
    colors = torch.where((torch.arange(n) < n // 2)[:, None], torch.tensor([0.9, 0.3, 0.1]),
                         torch.tensor([0.1, 0.3, 0.8]))
    colors = colors * (0.75 + 0.25 * d[:, 2:3])  # some shading so views differ
    return means, torch.tensor([1.0, 0, 0, 0]).repeat(n, 1), torch.full((n, 3), 0.09), torch.full((n,), 0.95), colors


@pytest.fixture(scope="session")
def blob_views():
    """8 RGBA views [8,4,32,32] of ``blob_object`` on an orbit, straight alpha, white where empty."""
    cams = orbit(8, 20.0, width=32)
    means, quats, scales, opac, colors = blob_object()
    with torch.no_grad():
        rgb, alpha, _ = rasterization(means, quats, scales, opac, colors, cams.viewmats, cams.K, 32, 32,
                                      backend="cpu")
    a = alpha.permute(0, 3, 1, 2)
    straight = torch.where(a > 1e-4, rgb.permute(0, 3, 1, 2) / a.clamp(min=1e-4), torch.ones_like(a))
    return torch.cat([straight.clamp(0, 1), a], dim=1), cams


@pytest.fixture(scope="session")
def blob_views_dir(tmp_path_factory, blob_views):
    """``blob_views`` written as a posed-view folder (RGBA PNGs + transforms.json), as `mvgen reconstruct` reads."""
    import numpy as np
    from PIL import Image

    from mvgen.cameras import write_transforms

    images, cams = blob_views
    root = tmp_path_factory.mktemp("blob_views")
    names = []
    for i, im in enumerate(images):
        Image.fromarray((im.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8), "RGBA").save(root / f"{i:02d}.png")
        names.append(f"{i:02d}.png")
    write_transforms(root / "transforms.json", cams, names)
    return root
