"""The `torch` rasterization backend: a slow, obviously-correct reference for tests and benchmarks.

Every pixel evaluates every visible Gaussian (radii > 0) in depth order, with gsplat's rules (see
``raster_cpu``): ``alpha = min(0.999, o·exp(-sigma))``, skipped where ``sigma < 0`` or ``alpha < 1/255``, and
compositing stops before the Gaussian that would bring the transmittance to ``<= 1e-4``. No tiles and no
hand-written backward: autograd differentiates it. Pixels are processed in row bands (each against the
Gaussians whose box reaches it, or all of them with ``band_rows=None``) and chunks under activation
checkpointing so memory stays bounded (a chunk's graph is rebuilt during backward).
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from reconstruction.raster_cpu import ALPHA_MAX, ALPHA_MIN, T_MIN

_CHUNK_ELEMENTS = 1 << 23  # Gaussians x pixels evaluated at once


def _composite(pix: torch.Tensor, means2d, conics, colors, opacities):
    """pix [P,2] pixel centres; Gaussians [M,...] sorted front to back -> (color [P,D], alpha [P])."""
    d = means2d[None, :, :] - pix[:, None, :]  # (P, M, 2)
    a, b, c = conics[:, 0], conics[:, 1], conics[:, 2]
    sigma = 0.5 * (a * d[..., 0] ** 2 + c * d[..., 1] ** 2) + b * d[..., 0] * d[..., 1]  # (P, M)
    alpha = torch.clamp_max(opacities * torch.exp(-sigma), ALPHA_MAX)
    alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_MIN), alpha, torch.zeros_like(alpha))
    # transmittance after each Gaussian if all were drawn; the first one reaching T_MIN and all behind it are not
    T_after = torch.cumprod(1.0 - alpha, dim=1)  # (P, M)
    alpha = torch.where(T_after > T_MIN, alpha, torch.zeros_like(alpha))
    T_after = torch.cumprod(1.0 - alpha, dim=1)
    T_before = torch.cat([torch.ones_like(T_after[:, :1]), T_after[:, :-1]], dim=1)
    weights = alpha * T_before  # (P, M)
    return weights @ colors, 1.0 - T_after[:, -1]


def rasterize_to_pixels(means2d, conics, colors, opacities, radii, depths, width: int, height: int,
                        band_rows: int | None = 8):
    """Dense reference compositing.

    Args: means2d [I,N,2], conics [I,N,3], colors [I,N,D], opacities [I,N], radii [I,N,2], depths [I,N].
        band_rows: pixels are processed in bands of this many rows, each against the Gaussians whose
            ``mean ± radii`` box reaches the band (exact: outside that box alpha < 1/255). None = every pixel
            against every visible Gaussian (slowest; the tests check both agree).
    Returns: image [I,H,W,D] (no background), alpha [I,H,W,1].
    """
    I, N, D = colors.shape
    band_rows = height if band_rows is None else band_rows
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32, device=means2d.device) + 0.5,
                            torch.arange(width, dtype=torch.float32, device=means2d.device) + 0.5, indexing="ij")
    pix = torch.stack([xs, ys], dim=-1).reshape(-1, 2)  # (H*W, 2), row-major
    images, alphas = [], []
    for i in range(I):
        visible = torch.nonzero((radii[i] > 0).all(dim=-1)).flatten()
        order = visible[torch.sort(depths[i, visible], stable=True).indices]  # front to back
        my, ry = means2d[i, order, 1].detach(), radii[i, order, 1]
        col_chunks, alpha_chunks = [], []
        for y0 in range(0, height, band_rows):
            y1 = min(y0 + band_rows, height)
            sel = order[(my + ry > y0) & (my - ry < y1)]
            band = pix[y0 * width:y1 * width]
            if sel.numel() == 0:
                col_chunks.append(means2d.new_zeros(band.shape[0], D))
                alpha_chunks.append(means2d.new_zeros(band.shape[0]))
                continue
            args = (means2d[i, sel], conics[i, sel], colors[i, sel], opacities[i, sel])
            chunk = max(1, _CHUNK_ELEMENTS // sel.numel())
            for s in range(0, band.shape[0], chunk):
                col, alpha = checkpoint(_composite, band[s:s + chunk], *args, use_reentrant=False)
                col_chunks.append(col)
                alpha_chunks.append(alpha)
        images.append(torch.cat(col_chunks))
        alphas.append(torch.cat(alpha_chunks))
    image = torch.stack(images).reshape(I, height, width, D)
    alpha = torch.stack(alphas).reshape(I, height, width, 1)
    return image, alpha
