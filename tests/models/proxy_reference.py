"""The PT-DiT block's forward as it was before the overhead cuts of issue 17 item 4, kept as the slow reference
the optimised ``PTDiTBlock.forward`` is checked against (values and gradients): two back-to-back linears after
GIIM and after the shifted windows, window attention through a [B*nW, P, D] re-layout, and the shifted-window
mask expanded per sample. It uses the block's own parameters, so both paths read one state dict."""

from __future__ import annotations

import torch

from mvgen.models.attention import Attention, shift_index, window_means
from mvgen.models.blocks import PTDiTBlock, modulate


def _windows(attn: Attention, x: torch.Tensor, P: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """x [B, N, D] window-major -> [B, N, D]; attention inside each run of P tokens, ``mask`` [B*nW, 1, P, P]."""
    B, N, D = x.shape
    return attn(x.reshape(B * (N // P), P, D), mask=mask).view(B, N, D)


def reference_shifted(attn: Attention, x: torch.Tensor, grid, window, mask: torch.Tensor | None) -> torch.Tensor:
    """Shifted-window attention: gather to the rolled windows, mask expanded to every sample, scatter back."""
    B, N, D = x.shape
    P = window[0] * window[1] * window[2]
    gather, scatter = shift_index(grid, window, x.device)
    xs = x.index_select(1, gather)
    if mask is not None:
        mask = mask[None].expand(B, -1, -1, -1).reshape(B * (N // P), 1, P, P)
    return _windows(attn, xs, P, mask).index_select(1, scatter)


def reference_forward(block: PTDiTBlock, x, t6, ctx, ctx_mask, has_text, grid, shifted) -> torch.Tensor:
    """``PTDiTBlock.forward`` before the cuts (same arguments, same result within rounding); of ``shifted``
    (``ShiftedWindows``) only the mask is used: the roll is recomputed here."""
    P = block.window[0] * block.window[1] * block.window[2]
    shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = block.modulation(t6)
    shift_sw, scale_sw, gate_sw = (block.shift_scale_shift_table[None] + t6[:, :3]).chunk(3, dim=1)

    proxies = window_means(x, block.window)
    proxies = proxies + block.attn_proxy(block.norm_proxy(proxies))
    giim = block.attn_giim(block.norm_giim_tokens(x), block.norm_giim_proxies(proxies))
    x = x + block.proj_giim(giim)

    h = modulate(block.norm1(x), shift_msa, scale_msa)
    x = x + gate_msa * _windows(block.attn_window, h, P)

    h = modulate(block.norm_shift(x), shift_sw, scale_sw)
    h = reference_shifted(block.attn_shift, h, grid, block.window, shifted.mask)
    x = x + block.proj_shift(gate_sw * h)

    return block.text_and_ffn(x, ctx, ctx_mask, has_text, shift_mlp, scale_mlp, gate_mlp)
