"""A set of 3D Gaussians in gsplat's raw parametrisation, and rendering it with any rasterizer backend."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from mvgen.cameras import Cameras
from reconstruction.rasterize import rasterization

SH_C0 = 0.28209479177387814  # degree-0 SH basis constant: colour = sh0 * SH_C0 + 0.5


@dataclass
class Gaussians:
    """N Gaussians, raw (pre-activation) parameters as gsplat's trainers and the 3DGS .ply store them.

    Attributes:
        means [N,3] world positions; quats [N,4] wxyz (any norm); scales [N,3] log standard deviations;
        opacities [N] logits; sh0 [N,1,3] degree-0 SH; shN [N,K-1,3] higher SH bands (K = (degree+1)²).
        sh_degree: the SH degree the colours were fitted with (shN may be larger; unused bands are zero).
    """

    means: Tensor
    quats: Tensor
    scales: Tensor
    opacities: Tensor
    sh0: Tensor
    shN: Tensor
    sh_degree: int = 0

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def colors(self) -> Tensor:
        """[N,K,3] all SH coefficients."""
        return torch.cat([self.sh0, self.shN], dim=1)

    @property
    def base_rgb(self) -> Tensor:
        """[N,3] view-independent colour (degree-0 term), clamped to [0,1]."""
        return (self.sh0[:, 0] * SH_C0 + 0.5).clamp(0.0, 1.0)

    def detach(self) -> "Gaussians":
        return Gaussians(*(getattr(self, f.name).detach().clone() for f in fields(self)[:6]), self.sh_degree)

    def to(self, device) -> "Gaussians":
        """The Gaussians on ``device`` (tensors already there are not copied); exports write from ``.to("cpu")``."""
        return Gaussians(*(getattr(self, f.name).to(device) for f in fields(self)[:6]), self.sh_degree)

    def state_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def finite_mask(self) -> Tensor:
        """[N] True where every parameter of the Gaussian is finite."""
        parts = [self.means, self.quats, self.scales, self.opacities[:, None], self.sh0.flatten(1), self.shN.flatten(1)]
        return torch.stack([torch.isfinite(p).all(dim=1) for p in parts]).all(dim=0)


@torch.no_grad()
def render(gaussians: Gaussians, cameras: Cameras, background=(1.0, 1.0, 1.0), backend: str = "auto",
           batch: int = 4) -> tuple[Tensor, Tensor]:
    """Render every camera where the Gaussians are (the cameras are moved there). Returns rgb [V,3,H,W] and
    alpha [V,1,H,W] in [0,1] on that device."""
    g = gaussians
    cameras = cameras.to(g.means.device)
    rgbs, alphas = [], []
    for s in range(0, len(cameras), batch):
        cams = cameras[list(range(s, min(s + batch, len(cameras))))]
        bg = torch.tensor(background, dtype=torch.float32, device=g.means.device).expand(len(cams), 3)
        rgb, alpha, _ = rasterization(g.means, g.quats, torch.exp(g.scales), torch.sigmoid(g.opacities), g.colors,
                                      cams.viewmats, cams.K, cams.width, cams.height, sh_degree=g.sh_degree,
                                      backgrounds=bg, backend=backend)
        rgbs.append(rgb.clamp(0, 1).permute(0, 3, 1, 2))
        alphas.append(alpha.permute(0, 3, 1, 2))
    return torch.cat(rgbs), torch.cat(alphas)
