"""The fit's photometric loss on the CPU as one autograd node: ``(1 - w) L1 + w (1 - SSIM)`` on colour plus
``a L1`` on alpha (``reconstruction.fit._loss``), forward and hand-written gradient in a few compiled passes (numba,
parallel over image rows).

Why: the same loss in torch is ~20 small ops forward and as many in autograd's backward, each on one thread, plus
the SSIM node's five separate blurs per step; on lego at 100² these were ~3 of a step's ~24 ms (README, "CPU
fitting"). Here the render's three moments (x, x², x·y) are blurred as one stack, the target's two (y, y²) are
blurred once per fit (``target_moments``) instead of once per step, and the gradients of the three terms are
summed straight into the render's channel-last layout.

The values are those of the torch loss (``ssim_cpu``'s SSIM, torch's ``abs`` gradient ``sign(x - y)``); the
tests compare value and gradients with the torch expression.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from reconstruction.jit import one_thread
from reconstruction.profile import stage
from reconstruction.ssim_cpu import _ssim_grad_maps, _window, blur

WINDOW = 11


@njit(cache=True, parallel=True, fastmath=True)
def _render_moments(x, y):
    """Render ``x`` [B,H,W,C] (channel-last) and target ``y`` [B,C,H,W] -> stack [3,B·C,H,W] of x, x², x·y (planar)
    and the per-row sums of |x - y| [B·C·H]."""
    B, H, W, C = x.shape
    P = B * C
    out = np.empty((3, P, H, W), np.float32)
    l1 = np.zeros(P * H, np.float32)
    for job in prange(P * H):
        p, h = job // H, job % H
        b, c = p // C, p % C
        acc = np.float32(0.0)
        for w in range(W):
            xv, yv = x[b, h, w, c], y[b, c, h, w]
            out[0, p, h, w] = xv
            out[1, p, h, w] = xv * xv
            out[2, p, h, w] = xv * yv
            acc += abs(xv - yv)
        l1[job] = acc
    return out, l1


@njit(cache=True, parallel=True, fastmath=True)
def _alpha_l1(a, ga):
    """Per-row sums of |a - ga| for ``a`` [B,H,W,1] and ``ga`` [B,1,H,W]."""
    B, H, W, _ = a.shape
    rows = np.zeros(B * H, np.float32)
    for job in prange(B * H):
        b, h = job // H, job % H
        acc = np.float32(0.0)
        for w in range(W):
            acc += abs(a[b, h, w, 0] - ga[b, 0, h, w])
        rows[job] = acc
    return rows


@njit(cache=True, parallel=True, fastmath=True)
def _render_grad(x, y, adj, w_l1, w_ssim):
    """d loss / d render [B,H,W,C]: ``w_l1`` sign(x - y) - ``w_ssim`` (G^T d_mu + 2 x G^T d_xx + y G^T d_xy), with
    ``adj`` [3,P,H,W] the blur adjoints of the three SSIM derivative maps."""
    B, H, W, C = x.shape
    out = np.empty_like(x)
    for job in prange(B * H):
        b, h = job // H, job % H
        for w in range(W):
            for c in range(C):
                p = b * C + c
                xv, yv = x[b, h, w, c], y[b, c, h, w]
                diff = xv - yv
                sign = np.float32(1.0) if diff > 0 else (np.float32(-1.0) if diff < 0 else np.float32(0.0))
                out[b, h, w, c] = w_l1 * sign - w_ssim * (adj[0, p, h, w] + 2 * xv * adj[1, p, h, w]
                                                           + yv * adj[2, p, h, w])
    return out


@njit(cache=True, parallel=True, fastmath=True)
def _alpha_grad(a, ga, weight):
    """d loss / d alpha [B,H,W,1]: ``weight`` sign(a - ga)."""
    B, H, W, _ = a.shape
    out = np.empty_like(a)
    for job in prange(B * H):
        b, h = job // H, job % H
        for w in range(W):
            diff = a[b, h, w, 0] - ga[b, 0, h, w]
            out[b, h, w, 0] = weight if diff > 0 else (-weight if diff < 0 else np.float32(0.0))
    return out


def target_moments(targets: torch.Tensor) -> torch.Tensor:
    """The blurred moments (mu_y, yy) of target views [V,C,H,W]: [V,2,C,H,W], computed once per fit."""
    y = np.ascontiguousarray(targets.detach().cpu().numpy(), np.float32)
    return torch.from_numpy(blur(np.stack([y, y * y], axis=1), _window(WINDOW)))


class PhotometricLoss(torch.autograd.Function):
    """(render [B,H,W,C], alpha [B,H,W,1], target [B,C,H,W], target alpha [B,1,H,W], target moments
    [B,2,C,H,W], ssim weight, alpha weight) -> the loss (a scalar); gradients to the render and alpha."""

    @staticmethod
    def forward(ctx, x, a, y, ya, moments, w_ssim: float, w_alpha: float):
        g = _window(WINDOW)
        xn, an = x.detach().numpy(), a.detach().numpy()
        yn, yan = y.detach().numpy(), ya.detach().numpy()
        B, H, W, C = xn.shape
        n, n_a = xn.size, an.size
        with stage("loss and SSIM (forward, compiled)"), one_thread():  # small images: one thread is as fast
            stack, l1_rows = _render_moments(xn, yn)
            by = moments.detach().numpy().transpose(1, 0, 2, 3, 4).reshape(2, B * C, H, W)
            s_rows, d = _ssim_grad_maps(blur(stack, g), np.ascontiguousarray(by))
            la_rows = _alpha_l1(an, yan) if w_alpha else None
        ssim = float(s_rows.sum()) / n
        loss = (1 - w_ssim) * float(l1_rows.sum(dtype=np.float64)) / n + w_ssim * (1 - ssim)
        if w_alpha:
            loss += w_alpha * float(la_rows.sum(dtype=np.float64)) / n_a
        ctx.state = (xn, an, yn, yan, d, g, w_ssim, w_alpha)
        return torch.tensor(loss, dtype=x.dtype, device=x.device)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, v):
        xn, an, yn, yan, d, g, w_ssim, w_alpha = ctx.state
        v = float(v)
        with stage("loss and SSIM (backward, compiled)"), one_thread():
            adj = blur(d, g, adjoint=True)
            dx = _render_grad(xn, yn, adj, np.float32(v * (1 - w_ssim) / xn.size), np.float32(v * w_ssim / xn.size))
            da = _alpha_grad(an, yan, np.float32(v * w_alpha / an.size)) if w_alpha else None
        return (torch.from_numpy(dx), torch.from_numpy(da) if da is not None else None, None, None, None, None,
                None)


def photometric_loss(render: torch.Tensor, alpha: torch.Tensor, target: torch.Tensor, target_alpha: torch.Tensor,
                     moments: torch.Tensor, w_ssim: float, w_alpha: float) -> torch.Tensor:
    """``(1 - w_ssim) mean|render - target| + w_ssim (1 - SSIM) + w_alpha mean|alpha - target_alpha|`` for a render
    [B,C,H,W] and alpha [B,1,H,W] that are channel-last underneath (the rasterizer's layout, permuted), float32 CPU
    targets and their ``target_moments``."""
    from reconstruction.jit import first_call

    x, a = render.permute(0, 2, 3, 1), alpha.permute(0, 2, 3, 1)
    x = x if x.is_contiguous() else x.contiguous()
    a = a if a.is_contiguous() else a.contiguous()
    y, ya = target.contiguous(), target_alpha.contiguous()
    with first_call("loss_cpu", "the CPU loss kernels", __file__, "_render_moments"):
        return PhotometricLoss.apply(x, a, y, ya, moments.contiguous(), float(w_ssim), float(w_alpha))
