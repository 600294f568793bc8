"""Transformer blocks of the five attention variants, at equal width: ``PTDiTBlock`` (proxy tokens, the paper),
``FullAttentionBlock`` (3D full attention over every view's tokens: a PixArt-α/DiT block),
``SpatialTemporalBlock`` (2D attention per view + 1D attention across views), ``MediatorBlock`` (DAM mediators,
``mediator.py``) and ``PSWABlock`` (PiT pseudo-shifted windows, ``pswa.py``).

Every block takes x [B, N, D], the adaLN-single projection t6 [B, 6, D], the projected prompt ctx [B, T, D],
its mask [B, 1, 1, T] (bool, or None), ``has_text`` [B, 1, 1] (or None), the token grid and one variant-specific
argument (proxy: the grid's ``ShiftedWindows``; mediator: the number of mediators; others: unused), and returns
[B, N, D]. Each block's docstring says how information crosses views.
LayerNorms have no affine parameters (eps 1e-6); the adaLN-single modulation is t6 plus a learned per-block
table (PixArt-α). Text cross-attention has no norm and no gate (PixArt-α).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import (Attention, Grid, ShiftedWindows, across_views_attention, per_view_attention,
                        shifted_window_attention, window_attention, window_means)
from .mediator import MediatorAttention
from .pswa import PseudoShiftedWindowAttention


def composed_linear(outer: nn.Linear, inner: nn.Linear, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of ``outer(inner(x))`` as one linear map, from the two layers' parameters: W = Wo·Wi,
    b = Wo·bi + bo, in ``dtype`` (x's: bf16 under autocast, as the two linears would run). Costs D³ per call
    instead of a second N×D×D matmul; autograd gives both layers' exact gradients."""
    w_out = outer.weight.to(dtype)
    bias = (w_out * inner.bias.to(dtype)).sum(1) + outer.bias.to(dtype)  # not a gemv: bitwise reproducible
    return w_out @ inner.weight.to(dtype), bias


def gated_composed_linear(outer: nn.Linear, inner: nn.Linear, gate: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``outer(gate * inner(x))`` for x [B, N, Din], gate [B, 1, Dm] -> [B, N, Dout]. With at least as many
    tokens per sample as ``inner`` has outputs, one batched matmul with per-sample weights Wo·diag(g_b)·Wi
    (B·D³ to build them instead of a second B·N×D×D matmul), in x's dtype (bf16 under autocast, as the two
    linears would run); otherwise the two linears."""
    if x.shape[1] < inner.out_features:
        return outer(gate * inner(x))
    dt = x.dtype
    wg = outer.weight.to(dt) * gate.to(dt)  # (B, Dout, Dm) = Wo·diag(g_b)
    weight = wg @ inner.weight.to(dt)  # (B, Dout, Din)
    bias = ((wg * inner.bias.to(dt)).sum(2) + outer.bias.to(dt))[:, None]  # (B, 1, Dout)
    return torch.baddbmm(bias, x, weight.transpose(1, 2))  # (B, N, Dout)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x [B, N, D] * (1 + scale [B, 1, D]) + shift [B, 1, D]."""
    return x * (1 + scale) + shift


class FeedForward(nn.Sequential):
    """Linear(D, r*D) -> GELU-tanh -> Linear(r*D, D)."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0):
        hidden = int(dim * mlp_ratio)
        super().__init__(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))


class _BlockBase(nn.Module):
    """Shared parts: the 6×D modulation table, text cross-attention and the modulated FFN."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_ratio: float, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=eps)
        self.attn_text = Attention(dim, heads, head_dim, context_dim=dim, kind="text")
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=eps)
        self.ff = FeedForward(dim, mlp_ratio)
        self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim**0.5)

    def modulation(self, t6: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp), each [B, 1, D]."""
        return (self.scale_shift_table[None] + t6).chunk(6, dim=1)

    def text_and_ffn(self, x, ctx, ctx_mask, has_text, shift_mlp, scale_mlp, gate_mlp) -> torch.Tensor:
        text = self.attn_text(x, ctx, mask=ctx_mask)  # (B, N, D)
        if has_text is not None:
            text = text * has_text.to(text.dtype)
        x = x + text
        return x + gate_mlp * self.ff(modulate(self.norm2(x), shift_mlp, scale_mlp))  # (B, N, D)

    def residual_outputs(self) -> list[nn.Linear]:
        """The linears whose outputs are added to x: with all of them zero the block is the identity (how
        ``mvgen.models.grow`` inserts new blocks into a trained model without changing what it computes)."""
        return [self.attn_text.to_out, self.ff[2]] + self.branch_outputs()

    def branch_outputs(self) -> list[nn.Linear]:
        raise NotImplementedError


class PTDiTBlock(_BlockBase):
    """The PT-DiT block as published (arXiv 2409.04005 §3, official MindSpeed-MM release), in order:

    1. proxies = mean of the tokens of each window                       [B, M, D]
    2. GIIM self-attention among proxies (pre-norm, residual, no modulation)
    3. GIIM cross-attention: tokens query the proxies (both normed), zero-initialised output linear
    4. TCM window self-attention (modulated by shift/scale_msa, gated by gate_msa)
    5. TCM shifted-window self-attention (roll by -window//2, Swin region mask, roll back), own 3×D
       modulation table added to the first three rows of t6, gated, zero-initialised output linear
    6. text cross-attention, 7. FFN (modulated, gated).

    x is in the window-major layout (see ``attention.py``).

    Computed with less overhead than written (same operator, same parameters and state dict; equal to the plain
    form, ``tests/models/proxy_reference.py``): ``attn_giim.to_out`` then ``proj_giim`` run as one linear with
    the product weight (``composed_linear``), ``attn_shift.to_out``, the gate and ``proj_shift`` as one batched
    matmul with per-sample weights (``gated_composed_linear``), windows attend without re-laying the tokens out
    (one re-layout of their q, k and v together), the shifted windows' mask broadcast over samples.

    Across views: through GIIM only when windows never span views (pf = 1, the presets): proxies of every view
    self-attend and every token cross-attends to the proxies of every view. With pf > 1 the windows and the
    view-axis shift also join consecutive views.
    """

    def __init__(self, dim: int, heads: int, head_dim: int, window: Grid, mlp_ratio: float = 4.0, eps: float = 1e-6):
        super().__init__(dim, heads, head_dim, mlp_ratio, eps)
        self.window = tuple(window)
        self.norm_proxy = nn.LayerNorm(dim, elementwise_affine=False, eps=eps)
        self.attn_proxy = Attention(dim, heads, head_dim)
        self.norm_giim_tokens = nn.LayerNorm(dim, elementwise_affine=False, eps=eps)
        self.norm_giim_proxies = nn.LayerNorm(dim, elementwise_affine=False, eps=eps)
        self.attn_giim = Attention(dim, heads, head_dim, context_dim=dim)
        self.proj_giim = nn.Linear(dim, dim)  # zero-initialised by the model
        self.attn_window = Attention(dim, heads, head_dim)
        self.norm_shift = nn.LayerNorm(dim, elementwise_affine=False, eps=eps)
        self.attn_shift = Attention(dim, heads, head_dim)
        self.proj_shift = nn.Linear(dim, dim)  # zero-initialised by the model
        self.shift_scale_shift_table = nn.Parameter(torch.randn(3, dim) / dim**0.5)

    def forward(self, x, t6, ctx, ctx_mask, has_text, grid: Grid, shifted: ShiftedWindows) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.modulation(t6)
        shift_sw, scale_sw, gate_sw = (self.shift_scale_shift_table[None] + t6[:, :3]).chunk(3, dim=1)

        proxies = window_means(x, self.window)  # (B, M, D)
        proxies = proxies + self.attn_proxy(self.norm_proxy(proxies))  # (B, M, D)
        giim = self.attn_giim(self.norm_giim_tokens(x), self.norm_giim_proxies(proxies), project=False)  # (B, N, D)
        x = x + F.linear(giim, *composed_linear(self.proj_giim, self.attn_giim.to_out, giim.dtype))  # proj(to_out())

        h = modulate(self.norm1(x), shift_msa, scale_msa)
        x = x + gate_msa * window_attention(self.attn_window, h, self.window)  # (B, N, D)

        h = modulate(self.norm_shift(x), shift_sw, scale_sw)
        h = shifted_window_attention(self.attn_shift, h, self.window, shifted, project=False)  # (B, N, D)
        x = x + gated_composed_linear(self.proj_shift, self.attn_shift.to_out, gate_sw, h)  # proj(gate * to_out(h))

        return self.text_and_ffn(x, ctx, ctx_mask, has_text, shift_mlp, scale_mlp, gate_mlp)

    def branch_outputs(self) -> list[nn.Linear]:
        return [self.attn_window.to_out, self.proj_giim, self.proj_shift]

    def zero_init_modules(self) -> list[nn.Module]:
        return [self.proj_giim, self.proj_shift]


class FullAttentionBlock(_BlockBase):
    """Baseline ``full``: self-attention over all N = V*h*w tokens (modulated, gated), text cross-attention, FFN.

    Across views: every token attends to every token of every view."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_ratio: float = 4.0, eps: float = 1e-6):
        super().__init__(dim, heads, head_dim, mlp_ratio, eps)
        self.attn = Attention(dim, heads, head_dim)

    def forward(self, x, t6, ctx, ctx_mask, has_text, grid: Grid, unused=None) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.modulation(t6)
        x = x + gate_msa * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))  # (B, N, D)
        return self.text_and_ffn(x, ctx, ctx_mask, has_text, shift_mlp, scale_mlp, gate_mlp)

    def branch_outputs(self) -> list[nn.Linear]:
        return [self.attn.to_out]

    def zero_init_modules(self) -> list[nn.Module]:
        return []


class SpatialTemporalBlock(_BlockBase):
    """Baseline ``spatial_temporal`` (Latte/STDiT style): 2D self-attention inside each view (modulated by the
    main table, gated), then 1D self-attention across views at each token position (own norm and 3×D table
    added to t6's first three rows, gated), text cross-attention, FFN. x in spatial (v, y, x) order.

    Across views: only through the 1D attention, among the tokens at the same (y, x) position of every view."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_ratio: float = 4.0, eps: float = 1e-6):
        super().__init__(dim, heads, head_dim, mlp_ratio, eps)
        self.attn_spatial = Attention(dim, heads, head_dim)
        self.norm_views = nn.LayerNorm(dim, elementwise_affine=False, eps=eps)
        self.attn_views = Attention(dim, heads, head_dim)
        self.views_scale_shift_table = nn.Parameter(torch.randn(3, dim) / dim**0.5)

    def forward(self, x, t6, ctx, ctx_mask, has_text, grid: Grid, unused=None) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.modulation(t6)
        shift_v, scale_v, gate_v = (self.views_scale_shift_table[None] + t6[:, :3]).chunk(3, dim=1)
        h = modulate(self.norm1(x), shift_msa, scale_msa)
        x = x + gate_msa * per_view_attention(self.attn_spatial, h, grid)  # (B, N, D)
        h = modulate(self.norm_views(x), shift_v, scale_v)
        x = x + gate_v * across_views_attention(self.attn_views, h, grid)  # (B, N, D)
        return self.text_and_ffn(x, ctx, ctx_mask, has_text, shift_mlp, scale_mlp, gate_mlp)

    def branch_outputs(self) -> list[nn.Linear]:
        return [self.attn_spatial.to_out, self.attn_views.to_out]

    def zero_init_modules(self) -> list[nn.Module]:
        return []


class MediatorBlock(_BlockBase):
    """``mediator`` (DAM, arXiv 2408.05710): attention through V·n mediator tokens (``MediatorAttention``:
    queries pooled per view to a sqrt(n)×sqrt(n) grid, two softmax attentions with learned position biases, a 3×3
    depthwise conv on v), modulated and gated like the full block; text cross-attention, FFN. x in spatial
    (v, y, x) order. n is chosen per forward from the trained counts (``PTDiTTransformer3DModel``).

    Across views: the mediators of every view gather from the tokens of every view, and every token reads the
    mediators of every view (the depthwise conv stays inside a view)."""

    def __init__(self, dim: int, heads: int, head_dim: int, counts, bias_grid: int, mlp_ratio: float = 4.0,
                 eps: float = 1e-6):
        super().__init__(dim, heads, head_dim, mlp_ratio, eps)
        self.attn = MediatorAttention(dim, heads, head_dim, counts, bias_grid)

    def forward(self, x, t6, ctx, ctx_mask, has_text, grid: Grid, num_mediators: int) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.modulation(t6)
        h = modulate(self.norm1(x), shift_msa, scale_msa)
        x = x + gate_msa * self.attn(h, grid, num_mediators)  # (B, N, D)
        return self.text_and_ffn(x, ctx, ctx_mask, has_text, shift_mlp, scale_mlp, gate_mlp)

    def branch_outputs(self) -> list[nn.Linear]:
        return [self.attn.to_out]

    def zero_init_modules(self) -> list[nn.Module]:
        return []


class PSWABlock(_BlockBase):
    """``pswa`` (PiT / Swin DiT, arXiv 2505.13219): pseudo-shifted window attention with progressive coverage
    channel allocation (``PseudoShiftedWindowAttention``; our reading of the paper is in ``pswa.py``), modulated
    and gated like the full block; text cross-attention, FFN. x in spatial (v, y, x) order.

    Across views: the second channel group attends inside windows holding the same (ph, pw) window of every view;
    the first group (pf = 1) and the high-frequency bridging conv stay inside a view."""

    def __init__(self, dim: int, heads: int, head_dim: int, window: Grid, mlp_ratio: float = 4.0, eps: float = 1e-6):
        super().__init__(dim, heads, head_dim, mlp_ratio, eps)
        self.attn = PseudoShiftedWindowAttention(dim, heads, head_dim, window)

    def forward(self, x, t6, ctx, ctx_mask, has_text, grid: Grid, unused=None) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.modulation(t6)
        x = x + gate_msa * self.attn(modulate(self.norm1(x), shift_msa, scale_msa), grid)  # (B, N, D)
        return self.text_and_ffn(x, ctx, ctx_mask, has_text, shift_mlp, scale_mlp, gate_mlp)

    def branch_outputs(self) -> list[nn.Linear]:
        return [self.attn.to_out]

    def zero_init_modules(self) -> list[nn.Module]:
        return []
