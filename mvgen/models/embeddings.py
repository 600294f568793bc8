"""Input embeddings of the PT-DiT denoiser: latent patches, sin-cos positions, timestep (adaLN-single), caption
projection and camera conditioning (per-token Plücker rays and a per-view camera embedding).

Shapes: B batch, V views, C latent channels, (H, W) latent size, p patch size, (h, w) = (H/p, W/p) tokens per
view, D hidden size, T text tokens.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch
from torch import nn

# ------------------------------------------------------------------------------------------- sin-cos tables


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """[L, dim] sin-cos table of float ``positions`` [L] (first half sin, second half cos; MAE/DiT layout)."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dimension, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64, device=positions.device) / (dim / 2.0))
    angles = positions.double()[:, None] * omega[None]  # (L, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def sincos_pos_embed(dim: int, grid: tuple[int, int], base_grid: tuple[int, int], views: int | None = None,
                     device=None) -> torch.Tensor:
    """Absolute sin-cos positional table.

    2D (``views`` None): [h, w, dim], half of the channels encode the row, half the column.
    3D (``views`` given, the paper's frame-index encoding): [views, h, w, dim], dim/4 channels for the view index and
    the rest split between row and column.
    Row/column coordinates are rescaled so that a grid of ``base_grid`` tokens (the training resolution) uses
    integer positions 0..base-1 and other resolutions interpolate the same range (PixArt's interpolation scale).
    Computed in float64 on ``device`` (None: torch's default device).
    """
    h, w = grid
    ys = torch.arange(h, dtype=torch.float64, device=device) * (base_grid[0] / h)
    xs = torch.arange(w, dtype=torch.float64, device=device) * (base_grid[1] / w)
    if views is None:
        if dim % 4:
            raise ValueError(f"2D sin-cos position embedding needs hidden size divisible by 4, got {dim}")
        emb_y = sincos_1d(dim // 2, ys)[:, None, :].expand(h, w, dim // 2)
        emb_x = sincos_1d(dim // 2, xs)[None, :, :].expand(h, w, dim // 2)
        return torch.cat([emb_y, emb_x], dim=-1)  # (h, w, dim)
    if dim % 8:
        raise ValueError(f"3D sin-cos position embedding needs hidden size divisible by 8, got {dim}")
    d_f = dim // 4
    d_y = 2 * ((dim - d_f) // 4)
    d_x = dim - d_f - d_y
    fs = torch.arange(views, dtype=torch.float64, device=device)
    emb_f = sincos_1d(d_f, fs)[:, None, None, :].expand(views, h, w, d_f)
    emb_y = sincos_1d(d_y, ys)[None, :, None, :].expand(views, h, w, d_y)
    emb_x = sincos_1d(d_x, xs)[None, None, :, :].expand(views, h, w, d_x)
    return torch.cat([emb_f, emb_y, emb_x], dim=-1)  # (views, h, w, dim)


# ------------------------------------------------------------------------------------------------ patches


class PatchEmbed(nn.Module):
    """Per-view non-overlapping p×p patches -> tokens: [B,V,C,H,W] -> [B,V,h,w,D] (a strided conv per view)."""

    def __init__(self, in_channels: int, hidden_size: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, V = x.shape[:2]
        x = self.proj(x.flatten(0, 1))  # (B*V, D, h, w)
        return x.unflatten(0, (B, V)).permute(0, 1, 3, 4, 2)  # (B, V, h, w, D)


def unpatchify(x: torch.Tensor, patch_size: int, channels: int) -> torch.Tensor:
    """[B,V,h,w,p*p*C] -> [B,V,C,h*p,w*p] (inverse of the patch layout used by ``PatchEmbed``/``proj_out``)."""
    B, V, h, w, _ = x.shape
    p = patch_size
    x = x.reshape(B, V, h, w, p, p, channels)
    x = x.permute(0, 1, 6, 2, 4, 3, 5)  # (B, V, C, h, p, w, p)
    return x.reshape(B, V, channels, h * p, w * p)


# ---------------------------------------------------------------------------------- timestep / adaLN-single


def timestep_sinusoid(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """[B] float timesteps -> [B, dim] (cos first, then sin; as DiT/PixArt's ``flip_sin_to_cos``)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([args.cos(), args.sin()], dim=-1)


class TimestepEmbedder(nn.Module):
    """adaLN-single conditioning (PixArt-α): t -> t_emb [B,D] (used by the final layer) and one shared
    projection t6 = Linear(SiLU(t_emb)) [B,6,D] that every block adds to its own learned 6×D table."""

    def __init__(self, hidden_size: int, frequency_dim: int = 256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, timestep: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        t_emb = self.mlp(timestep_sinusoid(timestep, self.frequency_dim).to(dtype))  # (B, D)
        t6 = self.t_block(t_emb).unflatten(1, (6, -1))  # (B, 6, D)
        return t_emb, t6


class CaptionProjection(nn.Module):
    """Text-encoder features [B,T,Dt] -> [B,T,D] (Linear, GELU-tanh, Linear; PixArt-α)."""

    def __init__(self, caption_channels: int, hidden_size: int):
        super().__init__()
        self.linear_1 = nn.Linear(caption_channels, hidden_size)
        self.act = nn.GELU(approximate="tanh")
        self.linear_2 = nn.Linear(hidden_size, hidden_size)

    def forward(self, caption: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(caption)))


# ---------------------------------------------------------------------------------------- cameras


def camera_summary(plucker: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-view pose summary from Plücker rays [B,V,6,H,W] -> [B,V,9]: mean ray direction, mean moment and the
    camera centre.

    The centre c is the point closest (least squares) to all rays of the view: with rays (d, m = c × d),
    d × m = (|d|² I - d dᵀ) c, so c = (Σ |d|² I - d dᵀ)⁻¹ Σ d × m. For a pinhole camera this recovers the centre
    exactly; ``eps`` (relative ridge) keeps it finite for near-parallel rays. Computed in float32.
    """
    device_type = plucker.device.type
    no_autocast = torch.autocast(device_type, enabled=False) if torch.amp.is_autocast_available(device_type) else nullcontext()
    with no_autocast:
        rays = plucker.float().flatten(3)  # (B, V, 6, HW)
        d, m = rays[:, :, :3], rays[:, :, 3:]  # (B, V, 3, HW)
        n = d.shape[-1]
        dd = torch.einsum("bvin,bvjn->bvij", d, d)  # (B, V, 3, 3)
        eye = torch.eye(3, device=d.device, dtype=d.dtype)
        A = (d * d).sum(dim=(2, 3))[..., None, None] * eye - dd  # (B, V, 3, 3)
        b = torch.linalg.cross(d, m, dim=2).sum(-1)  # (B, V, 3)
        A = A + eps * n * eye
        center = torch.linalg.solve(A, b.unsqueeze(-1)).squeeze(-1)  # (B, V, 3)
        return torch.cat([d.mean(-1), m.mean(-1), center], dim=-1)  # (B, V, 9)


class CameraEmbed(nn.Module):
    """Camera conditioning (beyond the paper, which is text-only).

    * per token: the Plücker rays [B,V,6,H,W] at the latent resolution are patchified like the latents
      (p×p strided conv) -> [B,V,h,w,D], so every token knows the ray it looks along;
    * per view: an MLP of ``camera_summary`` (mean direction, mean moment, camera centre) -> [B,V,1,1,D].

    Both are added to the tokens. Views are a set: nothing here depends on a view's index, so permuting views
    together with their cameras permutes the embeddings.
    """

    def __init__(self, hidden_size: int, patch_size: int):
        super().__init__()
        self.ray_proj = nn.Conv2d(6, hidden_size, kernel_size=patch_size, stride=patch_size)
        self.view_mlp = nn.Sequential(nn.Linear(9, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, plucker: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        B, V = plucker.shape[:2]
        rays = self.ray_proj(plucker.to(dtype).flatten(0, 1))  # (B*V, D, h, w)
        rays = rays.unflatten(0, (B, V)).permute(0, 1, 3, 4, 2)  # (B, V, h, w, D)
        view = self.view_mlp(camera_summary(plucker).to(dtype))  # (B, V, D)
        return rays + view[:, :, None, None, :]  # (B, V, h, w, D)
