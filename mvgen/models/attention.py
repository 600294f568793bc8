"""Attention for the PT-DiT denoiser: one multi-head ``Attention`` module (self or cross, through ``attend``:
``F.scaled_dot_product_attention``, or two matmuls for short sequences on CPU) and the token-layout helpers the
variants need.

Token grid of one sample: (V, h, w) = (views, token rows, token columns), N = V*h*w tokens. Windows are
``window = (pf, ph, pw)`` blocks of P = pf*ph*pw tokens; there are nW = N/P of them (= M proxy tokens).

Layouts used in the model:
* spatial:  [B, V, h, w, D] (or flattened [B, N, D] in (v, y, x) order) -- full, spatial_temporal, mediator
  and pswa (which partitions into windows inside its attention, ``pswa.py``);
* windowed: [B, nW, P, D] (or [B, N, D] window-major) -- proxy. Window attention and proxy means are then
  plain reshapes; the shifted windows (a roll of the grid, then a partition) are one precomputed gather.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

Grid = tuple[int, int, int]  # (views, h, w) tokens


# Largest L×S attention matrix (per batch and head) computed as two plain matmuls on CPU. PyTorch's fused CPU
# SDPA kernel is 2-4x slower forward+backward for the short sequences of windows and proxy tokens (measured for
# L, S from 4 to 384 in bf16); above this size the fused kernel's linear memory matters more.
EXPLICIT_MAX_ELEMENTS = 512 * 512


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q kᵀ / sqrt(E) + bias) v for q [..., L, E], k [..., S, E], v [..., S, Ev]; ``mask`` broadcastable
    to [..., L, S] is boolean (True = may attend) or floating (a bias added to the scores, e.g. the mediators'
    position biases; cast to q's dtype). Same result as ``F.scaled_dot_product_attention``."""
    L, S = q.shape[-2], k.shape[-2]
    if mask is not None and mask.is_floating_point():
        mask = mask.to(q.dtype)
    if q.device.type != "cpu" or L * S > EXPLICIT_MAX_ELEMENTS:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    scores = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if mask is not None and mask.is_floating_point():
        scores = scores + mask
    elif mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.matmul(scores.softmax(-1).to(v.dtype), v)


def _fused_sdpa_device(x: torch.Tensor) -> bool:
    """Whether ``attend`` sends short windows to ``F.scaled_dot_product_attention`` (every device but the CPU)."""
    return x.device.type != "cpu"


class Attention(nn.Module):
    """Multi-head attention via SDPA.

    Self-attention when ``context_dim`` is None (fused qkv projection), otherwise cross-attention from
    ``x`` [B,L,D] to ``context`` [B,S,context_dim]. ``mask`` is boolean (True = may attend), broadcastable to
    [B, heads, L, S]. ``kind`` labels the module for FLOP accounting ("visual" = among latent/proxy tokens,
    "text" = to the prompt) and is not a config field.
    """

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None = None, kind: str = "visual"):
        super().__init__()
        self.heads, self.head_dim, self.kind = heads, head_dim, kind
        inner = heads * head_dim
        self.is_cross = context_dim is not None
        if self.is_cross:
            self.to_q = nn.Linear(dim, inner)
            self.to_kv = nn.Linear(context_dim, 2 * inner)
        else:
            self.to_qkv = nn.Linear(dim, 3 * inner)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                window_tokens: int | None = None, project: bool = True) -> torch.Tensor:
        """x [B, L, D] -> [B, L, D]. ``window_tokens`` P (self-attention only): x is window-major and each run of
        P tokens attends only inside itself, ``mask`` then broadcastable to [B, L/P, heads, P, P] (one window
        mask shared by every sample). ``project=False`` returns the heads before ``to_out`` ([B, L, heads*hd]),
        for callers that fold ``to_out`` into a following linear."""
        B, L, _ = x.shape
        if window_tokens is not None:
            out = self._window_heads(x, window_tokens, mask)  # (B, L, H*hd)
            return self.to_out(out) if project else out
        if self.is_cross:
            q = self.to_q(x).view(B, L, self.heads, self.head_dim).transpose(1, 2)  # (B, H, L, hd)
            kv = self.to_kv(context).view(B, context.shape[1], 2, self.heads, self.head_dim)
            k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, S, hd) each
        else:
            qkv = self.to_qkv(x).view(B, L, 3, self.heads, self.head_dim)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, L, hd) each
        if q.dtype != v.dtype:  # bf16 autocast with a float32 context: SDPA needs one dtype
            k, v = k.to(q.dtype), v.to(q.dtype)
        out = attend(q, k, v, mask)  # (B, H, L, hd)
        out = out.transpose(1, 2).reshape(B, L, self.heads * self.head_dim)  # (B, L, H*hd)
        return self.to_out(out) if project else out  # (B, L, D)

    def _window_heads(self, x: torch.Tensor, P: int, mask: torch.Tensor | None) -> torch.Tensor:
        """Self-attention inside windows of P consecutive tokens without re-laying x out: the qkv projection is
        viewed as [B, nW, P, 3, H, hd] and attended with the windows as a batch axis. -> [B, L, H*hd]."""
        B, L, _ = x.shape
        nW, H, E = L // P, self.heads, self.head_dim
        if torch.compiler.is_compiling() and not _fused_sdpa_device(x):
            window_mask = None if mask is None else mask.reshape(nW, P, P)
            out = window_attention_pairs(self.to_qkv(x).view(B, nW, P, 3, H, E), window_mask)  # (B, nW, P, H, hd)
            return out.reshape(B, L, H * E)
        qkv = self.to_qkv(x).view(B, nW, P, 3, H, E).permute(3, 0, 1, 4, 2, 5)  # (3, B, nW, H, P, hd)
        # One re-layout of q, k and v together: the batched matmuls then read them (and kᵀ) in place, where
        # separate strided q, k, v cost four copies (q, k, v and kᵀ) per window attention.
        q, k, v = qkv.contiguous().unbind(0)  # (B, nW, H, P, hd) each
        if _fused_sdpa_device(x):  # fused SDPA kernels take 4D inputs
            q, k, v = (t.reshape(B * nW, H, P, E) for t in (q, k, v))
            if mask is not None:
                mask = mask.expand(B, nW, -1, P, P).reshape(B * nW, -1, P, P)
        out = attend(q, k, v, mask)  # (B, nW, H, P, hd)
        return out.view(B, nW, H, P, E).transpose(2, 3).reshape(B, L, H * E)


def window_attention_pairs(qkv: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Window attention written as broadcast products over the P×P token pairs of each window, for
    ``torch.compile`` on CPU (``PTDiTTransformer3DModel.compile_blocks``): inductor fuses the scores, softmax and
    weighted sum (and their backward) into loops over the token-major projection, where the eager form needs a
    re-layout of q, k and v and thousands of P×hd batched matmuls. Eager, this form is slower (its [.., P, P, H,
    hd] products are materialised), so ``Attention`` takes it only while compiling.

    qkv [B, nW, P, 3, H, hd] (the qkv projection of window-major tokens, viewed), mask [nW, P, P] bool (True =
    may attend) or None -> [B, nW, P, H, hd]; equal to ``attend`` per window and head."""
    q, k, v = qkv.unbind(3)  # (B, nW, P, H, hd) each, views
    scores = (q.unsqueeze(3) * k.unsqueeze(2)).sum(-1) * q.shape[-1] ** -0.5  # (B, nW, P, P, H)
    if mask is not None:
        scores = scores.masked_fill(~mask[None, :, :, :, None], float("-inf"))
    weights = scores.softmax(3).to(v.dtype)
    return (weights.unsqueeze(-1) * v.unsqueeze(2)).sum(3)  # (B, nW, P, H, hd)


# -------------------------------------------------------------------------------------------- windows


def check_window(grid: Grid, window: Grid) -> None:
    """Raise ValueError naming the sizes when ``window`` does not tile the token ``grid``."""
    names = ("views", "token rows", "token columns")
    bad = [f"{n}: {g} % {p} != 0" for n, g, p in zip(names, grid, window) if p < 1 or g % p]
    if bad:
        raise ValueError(f"window_size {tuple(window)} does not divide the token grid (views, h, w) = "
                         f"{tuple(grid)} ({'; '.join(bad)}); choose a window that divides each axis")


def window_partition(x: torch.Tensor, window: Grid) -> torch.Tensor:
    """[B, V, h, w, D] -> [B, nW, P, D]; windows in (v, y, x) order, tokens inside a window in (v, y, x) order."""
    B, V, H, W, D = x.shape
    pf, ph, pw = window
    x = x.view(B, V // pf, pf, H // ph, ph, W // pw, pw, D)
    x = x.permute(0, 1, 3, 5, 2, 4, 6, 7)  # (B, V/pf, h/ph, w/pw, pf, ph, pw, D)
    return x.reshape(B, -1, pf * ph * pw, D)


def window_merge(x: torch.Tensor, grid: Grid, window: Grid) -> torch.Tensor:
    """Inverse of ``window_partition``: [B, nW, P, D] -> [B, V, h, w, D]."""
    B, D = x.shape[0], x.shape[-1]
    V, H, W = grid
    pf, ph, pw = window
    x = x.view(B, V // pf, H // ph, W // pw, pf, ph, pw, D)
    x = x.permute(0, 1, 4, 2, 5, 3, 6, 7)  # (B, V/pf, pf, h/ph, ph, w/pw, pw, D)
    return x.reshape(B, V, H, W, D)


def window_shift(window: Grid) -> Grid:
    """Shift of the shifted windows: half a window on each axis (0 where the window is 1 wide)."""
    return tuple(p // 2 for p in window)


@lru_cache(maxsize=32)
def _shifted_window_mask_cpu(grid: Grid, window: Grid) -> torch.Tensor | None:
    shift = window_shift(window)
    if not any(shift):
        return None
    labels = torch.zeros(grid, dtype=torch.long, device="cpu")  # region id of every token in the rolled frame
    region_slices = []
    for p, s in zip(window, shift):
        region_slices.append([slice(0, None)] if s == 0 else [slice(0, -p), slice(-p, -s), slice(-s, None)])
    count = 0
    for sf in region_slices[0]:
        for sy in region_slices[1]:
            for sx in region_slices[2]:
                labels[sf, sy, sx] = count
                count += 1
    win = window_partition(labels[None, ..., None], window)[0, :, :, 0]  # (nW, P)
    return win[:, :, None] == win[:, None, :]  # (nW, P, P) True = same region = may attend


def shifted_window_mask(grid: Grid, window: Grid, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """Swin-style mask for attention in windows of the grid rolled by ``-window_shift``: [nW, P, P] bool, True
    where two tokens of a window come from the same region (i.e. were neighbours before the cyclic roll).
    None when no axis is shifted (every window is 1 wide)."""
    return _shifted_window_mask_on(tuple(grid), tuple(window), str(torch.device(device)))


@lru_cache(maxsize=32)
def _shifted_window_mask_on(grid: Grid, window: Grid, device: str) -> torch.Tensor | None:
    mask = _shifted_window_mask_cpu(grid, window)  # one copy per (grid, window, device), not one per forward
    return None if mask is None else mask.to(device)


def window_attention(attn: Attention, x: torch.Tensor, window: Grid, project: bool = True) -> torch.Tensor:
    """Self-attention inside each window. x: [B, N, D] window-major -> [B, N, D] (``project=False``: the heads
    before ``attn.to_out``, see ``Attention.forward``)."""
    return attn(x, window_tokens=window[0] * window[1] * window[2], project=project)


@lru_cache(maxsize=32)
def _shift_index_cpu(grid: Grid, window: Grid) -> tuple[torch.Tensor, torch.Tensor]:
    V, H, W = grid
    spatial = torch.arange(V * H * W, device="cpu").view(1, V, H, W, 1)  # spatial id of every token
    slot = torch.empty(V * H * W, dtype=torch.long, device="cpu")  # window-major slot of each spatial id
    slot[window_partition(spatial, window).flatten()] = torch.arange(V * H * W, device="cpu")
    rolled = torch.roll(spatial, shifts=tuple(-s for s in window_shift(window)), dims=(1, 2, 3))
    gather = slot[window_partition(rolled, window).flatten()]  # shifted slot k <- window-major slot gather[k]
    return gather, torch.argsort(gather)


def shift_index(grid: Grid, window: Grid, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(gather, scatter) [N] long: ``x[:, gather]`` turns window-major tokens into the window-major layout of the
    grid rolled by ``-window_shift`` (the shifted windows); ``y[:, scatter]`` undoes it."""
    return _shift_index_on(tuple(grid), tuple(window), str(torch.device(device)))


@lru_cache(maxsize=32)
def _shift_index_on(grid: Grid, window: Grid, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    gather, scatter = _shift_index_cpu(grid, window)
    return gather.to(device), scatter.to(device)


class ShiftedWindows(NamedTuple):
    """What the shifted-window attention of a token grid needs, computed once per grid outside the blocks (so
    compiled blocks receive them as inputs): the region ``mask`` [nW, P, P] bool or None
    (``shifted_window_mask``) and the ``gather`` / ``scatter`` indices [N] of the roll (``shift_index``)."""

    mask: torch.Tensor | None
    gather: torch.Tensor
    scatter: torch.Tensor


def shifted_windows(grid: Grid, window: Grid, device: torch.device | str = "cpu") -> ShiftedWindows:
    """The ``ShiftedWindows`` of ``grid`` split into ``window``s, on ``device`` (cached per grid)."""
    return ShiftedWindows(shifted_window_mask(grid, window, device), *shift_index(grid, window, device))


def shifted_window_attention(attn: Attention, x: torch.Tensor, window: Grid, shifted: ShiftedWindows,
                             project: bool = True) -> torch.Tensor:
    """Self-attention in windows shifted by half a window (Swin): roll the grid by -shift, attend inside windows
    with the region mask (broadcast over samples and heads, not expanded), roll back. The roll and the window
    partition are one precomputed gather (``shifted`` = ``shifted_windows(grid, window)``).
    x: [B, N, D] window-major -> [B, N, D] window-major (``project=False``: the heads before ``attn.to_out``;
    the gather commutes with the per-token ``to_out``)."""
    mask, gather, scatter = shifted
    xs = x.index_select(1, gather)  # (B, N, D) window-major layout of the rolled grid
    out = attn(xs, mask=None if mask is None else mask[:, None], window_tokens=window[0] * window[1] * window[2],
               project=project)
    return out.index_select(1, scatter)  # (B, N, D) back to the unrolled window-major layout


def window_means(x: torch.Tensor, window: Grid) -> torch.Tensor:
    """Proxy tokens: the mean of the tokens of each window. x: [B, N, D] window-major -> [B, nW, D]."""
    B, N, D = x.shape
    P = window[0] * window[1] * window[2]
    return x.view(B, N // P, P, D).mean(dim=2)


# --------------------------------------------------------------------------------- baselines' layouts


def per_view_attention(attn: Attention, x: torch.Tensor, grid: Grid) -> torch.Tensor:
    """2D attention inside each view. x: [B, N, D] spatial (v, y, x) order -> [B, N, D]."""
    B, N, D = x.shape
    V = grid[0]
    return attn(x.reshape(B * V, N // V, D)).view(B, N, D)


def across_views_attention(attn: Attention, x: torch.Tensor, grid: Grid) -> torch.Tensor:
    """1D attention across views at each token position. x: [B, N, D] spatial order -> [B, N, D]."""
    B, N, D = x.shape
    V = grid[0]
    xt = x.view(B, V, N // V, D).transpose(1, 2).reshape(B * (N // V), V, D)  # (B*h*w, V, D)
    out = attn(xt).view(B, N // V, V, D).transpose(1, 2)  # (B, V, h*w, D)
    return out.reshape(B, N, D)


def text_mask(encoder_attention_mask: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """[B, T] keep(1)/pad(0) -> (SDPA mask [B,1,1,T] bool, has_text [B,1,1] float or None).

    A sample whose mask is all zero has no text: its rows get an all-True mask (so SDPA stays finite) and
    ``has_text`` zeroes that sample's text cross-attention output."""
    if encoder_attention_mask is None:
        return None, None
    keep = encoder_attention_mask.bool()  # (B, T)
    any_keep = keep.any(dim=1)  # (B,)
    if bool(any_keep.all()):
        return keep[:, None, None, :], None
    keep = keep | ~any_keep[:, None]
    return keep[:, None, None, :], any_keep.float()[:, None, None]
