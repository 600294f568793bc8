"""Attention through mediators (DAM, arXiv 2408.05710; the operator of Agent Attention) for multiview tokens, and
the mediator-count schedule of one model trained over several counts.

Official code: LeapLabTHU/Attention-Mediators, ``attention_mediator/models.py`` (``AttentionWithMediators``), read
for the operator; this file is written anew for our token layout, several counts and several views.

Operator, per head (E = head_dim, scale 1/sqrt(E)), tokens in spatial (v, y, x) order, N = V*h*w:
    q, k, v = x W_qkv                                         [N, E] each
    m  = the queries average-pooled per view to an s×s grid   [V*n, E]   (n = s², s = sqrt(num_mediators))
    g  = softmax(m kᵀ/sqrt(E) + B₁) v                          [V*n, E]   mediators gather from every token
    o  = softmax(q mᵀ/sqrt(E) + B₂) g + DWConv3×3(v)           [N, E]     tokens read the mediators back
    out = o W_out
Cost of the two attentions: 4·(V·n)·N·E multiply-adds per head, i.e. linear in the tokens of a view (and in N for a
fixed number of views), against 2·N²·E for full attention.

Decisions (ours, beyond the single-image paper):
* Views: the queries are pooled **per view** (each view gets its own s×s mediators; V·n mediators in all) and the
  two attentions are **global over views**: every mediator gathers from the tokens of every view and every token
  reads the mediators of every view. That is how information crosses views in this variant (one layer suffices).
  Pooling across views instead would average image regions of unrelated cameras into one mediator. Nothing depends
  on a view's index, so permuting views permutes the output (views stay a set).
* Position biases: B₁[m, p] (mediator m -> token p) and B₂[p, m] depend on the mediator's cell in its own s×s grid
  and on the token's (y, x) in its own view, not on the views' identities. Each direction has **one learned table**
  [heads, S², R, R] for the largest count (S = sqrt(max count)) on the model's base token grid (R = sample_size /
  patch_size). A smaller count takes the area average of the table over its coarser cells (the cells its pooled
  mediators cover, like the pooling of the queries); another token grid takes a bilinear resize (as the official
  code resizes its 7×7 table). So every count in the set, and every resolution, trains and uses the same
  parameters (all of them receive gradient whatever n is drawn).
* The 3×3 depthwise conv on v runs inside each view (zero padding at the view's border).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Grid, attend


def check_mediator_counts(counts, grid_side: int) -> tuple[int, ...]:
    """Validate the ``mediator_counts`` config field for views of grid_side × grid_side tokens; returns the sorted
    counts. Raises ValueError naming the field for a non-square count or one whose grid exceeds a view."""
    try:
        values = [int(c) for c in counts]
    except (TypeError, ValueError):
        raise ValueError(f"mediator_counts must be a list of perfect squares (e.g. [4, 16]), got {counts!r}") from None
    if not values or any(c != float(o) for c, o in zip(values, counts)):
        raise ValueError(f"mediator_counts must be a non-empty list of integers, got {counts!r}")
    for c in values:
        if c < 1 or math.isqrt(c) ** 2 != c:
            raise ValueError(f"mediator_counts: {c} is not a perfect square (mediators form a sqrt(n) x sqrt(n) "
                             f"grid per view); use e.g. 4, 9, 16, 64")
        if math.isqrt(c) > grid_side:
            raise ValueError(f"mediator_counts: {c} exceeds the {grid_side * grid_side} tokens per view "
                             f"({grid_side}x{grid_side} tokens at sample_size / patch_size); the largest allowed "
                             f"count is {grid_side * grid_side}")
    if len(set(values)) != len(values):
        raise ValueError(f"mediator_counts has repeated values: {counts!r}")
    return tuple(sorted(values))


class MediatorAttention(nn.Module):
    """Multi-head attention through V·n mediators (see the module docstring). ``kind`` = "visual" for FLOP
    accounting (``mvgen.models.bench``). x [B, N, D] in spatial (v, y, x) order -> [B, N, D]."""

    kind = "visual"

    def __init__(self, dim: int, heads: int, head_dim: int, counts: Sequence[int], bias_grid: int):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.counts = tuple(sorted(int(c) for c in counts))
        inner = heads * head_dim
        self.to_qkv = nn.Linear(dim, 3 * inner)
        self.dwc = nn.Conv2d(inner, inner, kernel_size=3, padding=1, groups=inner)
        self.to_out = nn.Linear(inner, dim)
        S = math.isqrt(max(self.counts))
        # (heads, S², R, R): bias of mediator cell (row-major in the S×S grid) -> token (y, x); init by the model
        self.bias_gather = nn.Parameter(torch.zeros(heads, S * S, bias_grid, bias_grid))
        self.bias_broadcast = nn.Parameter(torch.zeros(heads, S * S, bias_grid, bias_grid))

    def position_bias(self, table: torch.Tensor, side: int, h: int, w: int) -> torch.Tensor:
        """[heads, n, h*w] bias between the n = side² mediator cells of a view and its h×w token positions, from a
        table [heads, S², R, R]: bilinear resize of the token axes to (h, w), area average of the cell axes to
        side × side."""
        H, S2, R, _ = table.shape
        S = math.isqrt(S2)
        t = table
        if (h, w) != (R, R):
            t = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)  # (H, S², h, w)
        if side != S:
            t = t.reshape(H, S, S, h * w).permute(0, 3, 1, 2)  # (H, hw, S, S)
            t = F.adaptive_avg_pool2d(t, side)  # (H, hw, side, side)
            return t.flatten(2).transpose(1, 2)  # (H, n, hw)
        return t.reshape(H, S2, h * w)  # (H, n, hw)

    def forward(self, x: torch.Tensor, grid: Grid, num_mediators: int) -> torch.Tensor:
        B, N, _ = x.shape
        V, h, w = grid
        H, E = self.heads, self.head_dim
        side = math.isqrt(num_mediators)
        n = side * side
        q, k, v = self.to_qkv(x).chunk(3, dim=-1)  # (B, N, H*E) each

        per_view = q.reshape(B * V, h, w, H * E).permute(0, 3, 1, 2)  # (B*V, H*E, h, w)
        m = F.adaptive_avg_pool2d(per_view, side)  # (B*V, H*E, side, side)
        m = m.reshape(B, V, H, E, n).permute(0, 2, 1, 4, 3).reshape(B, H, V * n, E)  # (B, H, V*n, E) view-major

        def heads_first(t):
            return t.view(B, N, H, E).transpose(1, 2)  # (B, H, N, E)

        qh, kh, vh = heads_first(q), heads_first(k), heads_first(v)
        b1 = self.position_bias(self.bias_gather, side, h, w)  # (H, n, hw)
        b1 = b1[:, None, :, None, :].expand(H, V, n, V, h * w).reshape(H, V * n, N)  # same for every view pair
        gathered = attend(m, kh, vh, b1)  # (B, H, V*n, E)
        b2 = self.position_bias(self.bias_broadcast, side, h, w)  # (H, n, hw)
        b2 = b2.transpose(1, 2)[:, None, :, None, :].expand(H, V, h * w, V, n).reshape(H, N, V * n)
        out = attend(qh, m, gathered, b2)  # (B, H, N, E)
        out = out.transpose(1, 2).reshape(B, N, H * E)  # (B, N, H*E)

        local = self.dwc(v.reshape(B * V, h, w, H * E).permute(0, 3, 1, 2))  # (B*V, H*E, h, w) inside each view
        out = out + local.permute(0, 2, 3, 1).reshape(B, N, H * E)
        return self.to_out(out)  # (B, N, D)


# --------------------------------------------------------------------------------------------- schedule


def parse_mediator_schedule(schedule, counts: Sequence[int]) -> tuple[tuple[float, int], ...] | None:
    """Normalise a sampling-time mediator schedule to ((t_min, n), ...) sorted by t_min, highest first: at
    timestep t (sigma*1000, 1000 = pure noise) the count is the n of the first pair with t >= t_min.

    Accepted forms: None (always the largest count); an int n (that count at every step); "even" (the counts
    spread evenly over [0, 1000], fewest mediators at the highest noise: (4, 16) -> t >= 500: 4, else 16); a
    string "700:4,0:16" or a sequence of (t_min, n) pairs. Every n must be in ``counts`` (the counts the model was
    trained with) and the lowest t_min must be 0 so that every timestep has a count."""
    counts = tuple(sorted(int(c) for c in counts))
    if schedule is None:
        return None
    if isinstance(schedule, str):
        text = schedule.strip()
        if text == "even":
            k = len(counts)
            return tuple((1000.0 * (k - 1 - i) / k, c) for i, c in enumerate(counts))
        try:
            if ":" not in text:
                schedule = int(text)
            else:
                schedule = [(float(t), int(n)) for t, n in (part.split(":") for part in text.split(","))]
        except ValueError:
            raise ValueError(f"mediator schedule {text!r}: expected a count (\"16\"), \"even\" or "
                             f"\"t_min:n,...\" (e.g. \"700:4,0:16\")") from None
    if isinstance(schedule, int):
        schedule = [(0.0, schedule)]
    pairs = sorted(((float(t), int(n)) for t, n in schedule), reverse=True)
    if not pairs:
        raise ValueError("mediator schedule is empty")
    for t, n in pairs:
        if n not in counts:
            raise ValueError(f"mediator schedule: num_mediators {n} is not one of the trained mediator_counts "
                             f"{list(counts)}")
        if not 0.0 <= t <= 1000.0:
            raise ValueError(f"mediator schedule: t_min {t} is outside [0, 1000]")
    if pairs[-1][0] != 0.0:
        raise ValueError(f"mediator schedule: the lowest t_min must be 0 so every timestep has a count, got {pairs}")
    return tuple(pairs)


def mediators_at(schedule: tuple[tuple[float, int], ...], t: float) -> int:
    """The count a normalised schedule (``parse_mediator_schedule``) gives at timestep t."""
    return next(n for t_min, n in schedule if t >= t_min)
