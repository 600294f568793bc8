"""Pseudo Shifted Window Attention (PSWA) with Progressive Coverage Channel Allocation (PCCA), after PiT / "Swin
DiT" (arXiv 2505.13219, Wu et al.). No official code exists (github.com/wujiafu007/Swin-DiT holds only "code coming
soon"), and the stored copies of the paper we could read here gave the abstract, not the method section, so what
follows is our reading of the paper's claims, with every guess marked.

What the paper states (abstract, v2 "Swin DiT" and v5 "PiT"):
* DiT layers rely less on global information than assumed; window attention gives "moderate global-local"
  modelling at a fraction of the cost.
* Attention behaves as a low-pass filter ("low-frequency inertia"); a **high-frequency bridging branch** runs beside
  the window attention, "simulates shifted window operations" (it links neighbouring windows, so no second,
  shifted pass is needed) and supplies high-frequency information.
* **PCCA** "captures high-order attention (similarity) without additional computational cost" by how channels are
  allocated.

Our implementation (guesses marked G):
1. Channel allocation (G): the D channels and the heads are split into two equal groups (num_attention_heads must
   be even). Each group has its own qkv projection from its own D/2 input channels, as in cascaded group
   attention; the qkv cost is half of a full D -> 3D projection and the attention cost is that of the same heads
   run together.
2. Progressive coverage (G): group 1 attends inside the configured windows (pf, ph, pw); group 2 takes its input
   slice **plus group 1's output** and attends inside windows that cover the same spatial window in **all views**
   (V, ph, pw). Group 2's attention therefore acts on attention outputs (second-order attention, "high-order"
   at no extra attention cost) and each group covers more than the one before (one view's window -> that window
   in every view -> through group 1's bridge, the neighbouring windows' borders). Spanning views in group 2 is our
   multiview reading of "coverage", not the paper's (which is single-image).
3. High-frequency bridging branch (G on the form): a 3×3 depthwise conv on each group's values, inside each view,
   added to that group's attention output. Its 3×3 footprint crosses window borders, which is what links
   neighbouring windows (the "pseudo shift"); its kernel is projected to zero sum (w - mean(w)), so it passes no
   constant (DC) component: an explicitly high-pass filter beside the low-pass attention. No bias.
4. The two groups' outputs are concatenated and go through one output linear.

How information crosses views: only through group 2's windows, which hold the same (ph, pw) window of every view
(and through group 1 when pf > 1). Group 1 with pf = 1 and the bridging conv stay inside a view. Nothing depends
on a view's index, so permuting views permutes the output.

Cost (QKᵀ + AV multiply-adds per layer): 2·N·(D/2)·P₁ + 2·N·(D/2)·P₂ = N·D·(P₁ + P₂),
P₁ = pf·ph·pw, P₂ = V·ph·pw.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Grid, attend, window_merge, window_partition


def attend_in_windows(qkv: torch.Tensor, grid: Grid, window: Grid, heads: int, head_dim: int) -> torch.Tensor:
    """Multi-head self-attention inside each window. qkv [B, N, 3*heads*head_dim] in spatial (v, y, x) order
    (q, k, v blocks, heads-major inside each) -> [B, N, heads*head_dim] spatial."""
    B, N, _ = qkv.shape
    P = window[0] * window[1] * window[2]
    win = window_partition(qkv.view(B, *grid, -1), window)  # (B, nW, P, 3*H*E)
    nW = win.shape[1]
    q, k, v = win.reshape(B * nW, P, 3, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)  # (B*nW, H, P, E)
    out = attend(q, k, v)  # (B*nW, H, P, E)
    out = out.transpose(1, 2).reshape(B, nW, P, heads * head_dim)
    return window_merge(out, grid, window).reshape(B, N, heads * head_dim)  # (B, N, H*E)


class PseudoShiftedWindowAttention(nn.Module):
    """PSWA + PCCA (see the module docstring). x [B, N, D] in spatial (v, y, x) order -> [B, N, D]; ``kind`` =
    "visual" for FLOP accounting (``mvgen.models.bench``)."""

    kind = "visual"

    def __init__(self, dim: int, heads: int, head_dim: int, window: Grid):
        super().__init__()
        if heads % 2 or dim != heads * head_dim:
            raise ValueError(f"pswa needs an even number of heads and dim = heads * head_dim, got heads={heads}, "
                             f"head_dim={head_dim}, dim={dim}")
        self.heads, self.head_dim, self.window = heads // 2, head_dim, tuple(window)  # heads per group
        group = dim // 2
        self.to_qkv = nn.ModuleList([nn.Linear(group, 3 * group) for _ in range(2)])
        self.bridge = nn.ModuleList([nn.Conv2d(group, group, 3, padding=1, groups=group, bias=False)
                                     for _ in range(2)])
        self.to_out = nn.Linear(dim, dim)

    def bridge_branch(self, v: torch.Tensor, grid: Grid, index: int) -> torch.Tensor:
        """Zero-sum (high-pass) 3×3 depthwise conv inside each view. v [B, N, C] spatial -> [B, N, C]."""
        B, N, C = v.shape
        V, h, w = grid
        weight = self.bridge[index].weight
        weight = weight - weight.mean(dim=(2, 3), keepdim=True)  # (C, 1, 3, 3), taps sum to 0
        x = v.reshape(B * V, h, w, C).permute(0, 3, 1, 2)  # (B*V, C, h, w)
        x = F.conv2d(x, weight.to(x.dtype), padding=1, groups=C)
        return x.permute(0, 2, 3, 1).reshape(B, N, C)

    def windows(self, grid: Grid) -> tuple[Grid, Grid]:
        """(group 1 window, group 2 window): the configured window, and its (ph, pw) across all views."""
        return self.window, (grid[0], self.window[1], self.window[2])

    def forward(self, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        group = x.shape[-1] // 2
        outs, carry = [], None
        for index, (xg, window) in enumerate(zip(x.split(group, dim=-1), self.windows(grid))):
            if carry is not None:
                xg = xg + carry  # progressive coverage: group 2 attends over group 1's output
            qkv = self.to_qkv[index](xg)  # (B, N, 3*group)
            out = attend_in_windows(qkv, grid, window, self.heads, self.head_dim)  # (B, N, group)
            out = out + self.bridge_branch(qkv[..., 2 * group:], grid, index)  # high-frequency bridge on v
            outs.append(out)
            carry = out
        return self.to_out(torch.cat(outs, dim=-1))  # (B, N, D)
