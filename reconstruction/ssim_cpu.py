"""Mean SSIM of a render against a fixed target as one compiled pass (numba, parallel over image rows), with a
hand-written gradient. The fit's CPU loss (``reconstruction.loss_cpu``) uses its kernels with the targets' moments
blurred once per fit; ``ssim_mean`` is SSIM alone.

Why: ``reconstruction.fit.ssim_map`` is ~25 small torch ops forward and as many in autograd's backward; on a
128² view that was a fifth of a fitting step's CPU time (README, "CPU fitting: where a step's time goes").

The same SSIM as ``ssim_map`` (kornia's: 11-tap Gaussian window, sigma 1.5, reflect padding, c1 = 0.01²,
c2 = 0.03², 1e-12 in the denominator): the five local moments are blurred along the width, then the height. The
gradient w.r.t. the render ``x`` is ``G^T dS/dmu_x + 2 x G^T dS/dxx + y G^T dS/dxy`` with ``G^T`` the adjoint of the
padded blur, computed by gathering (every output row is written by one thread only: no races, the same bits on
any number of threads). The target gets no gradient (``ssim_mean`` falls back to ``ssim_map`` when it needs one).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from numba import njit, prange

from reconstruction.profile import stage

C1 = 0.01 ** 2
C2 = 0.03 ** 2


@njit(inline="always")
def _reflect(i, n):
    """torch's ``reflect`` padding: index -1 reads 1, n reads n - 2."""
    if i < 0:
        return -i
    if i >= n:
        return 2 * (n - 1) - i
    return i


@njit(cache=True, parallel=True, fastmath=True)
def _blur_w(src, g, adjoint):
    """Blur every row of ``src`` [P,H,W] with the window ``g``, reflect-padded (``adjoint``: the transpose of that
    linear map: the valid convolution's transpose into a padded row, the padding folded back)."""
    P, H, W = src.shape
    K = g.shape[0]
    r = K // 2
    out = np.empty_like(src)
    for job in prange(P * H):
        p, h = job // H, job % H
        row = np.zeros(W + 2 * r, np.float32)
        if not adjoint:
            for q in range(-r, W + r):
                row[q + r] = src[p, h, _reflect(q, W)]
            acc = np.zeros(W, np.float32)
            for t in range(K):
                for w in range(W):
                    acc[w] += g[t] * row[w + t]
            out[p, h] = acc
        else:
            for t in range(K):
                for w in range(W):
                    row[w + t] += g[t] * src[p, h, w]
            for w in range(W):
                out[p, h, w] = row[w + r]
            for q in range(1, r + 1):  # padded positions -q and W - 1 + q read columns q and W - 1 - q
                out[p, h, q] += row[r - q]
                out[p, h, W - 1 - q] += row[W - 1 + q + r]
    return out


@njit(cache=True, parallel=True, fastmath=True)
def _blur_h(src, g, adjoint):
    """``_blur_w`` along the height. The adjoint gathers: output row o sums g[t] src[s] over every (s, t) whose
    padded position s + t - r reflects to o."""
    P, H, W = src.shape
    K = g.shape[0]
    r = K // 2
    out = np.empty_like(src)
    for job in prange(P * H):
        p, o = job // H, job % H
        acc = np.zeros(W, np.float32)
        for t in range(K):
            if not adjoint:
                j = _reflect(o + t - r, H)
                for w in range(W):
                    acc[w] += g[t] * src[p, j, w]
                continue
            for k in range(3):  # the padded positions q that read row o: o itself, -o, 2 (H - 1) - o
                if k == 0:
                    q = o
                elif k == 1:
                    if not 1 <= o <= r:
                        continue
                    q = -o
                else:
                    if not H - 1 - r <= o <= H - 2:
                        continue
                    q = 2 * (H - 1) - o
                s = q - t + r
                if 0 <= s < H:
                    for w in range(W):
                        acc[w] += g[t] * src[p, s, w]
        out[p, o] = acc
    return out


@njit(cache=True, parallel=True, fastmath=True)
def _ssim_grad_maps(bx, by):
    """Blurred moments of ``x`` [3,P,H,W] (mu_x, xx, xy) and of ``y`` [2,P,H,W] (mu_y, yy) -> per-row sums of the SSIM
    map [P·H] and its derivatives [3,P,H,W] w.r.t. mu_x, xx and xy."""
    _, P, H, W = bx.shape
    d = np.empty((3, P, H, W), np.float32)
    s_rows = np.zeros(P * H, np.float64)
    for job in prange(P * H):
        p, h = job // H, job % H
        acc = 0.0
        for w in range(W):
            mx, my = bx[0, p, h, w], by[0, p, h, w]
            a1 = 2 * mx * my + C1
            a2 = 2 * (bx[2, p, h, w] - mx * my) + C2
            b1 = mx * mx + my * my + C1
            b2 = (bx[1, p, h, w] - mx * mx) + (by[1, p, h, w] - my * my) + C2
            num = a1 * a2
            den = b1 * b2 + 1e-12
            acc += num / den
            d[0, p, h, w] = 2 * my * (a2 - a1) / den - num * 2 * mx * (b2 - b1) / (den * den)
            d[1, p, h, w] = -num * b1 / (den * den)
            d[2, p, h, w] = 2 * a1 / den
        s_rows[job] = acc
    return s_rows, d


@functools.lru_cache(maxsize=8)
def _window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    from kornia.filters import get_gaussian_kernel1d

    return get_gaussian_kernel1d(size, sigma)[0].numpy().astype(np.float32)


def blur(stack: np.ndarray, g: np.ndarray, adjoint: bool = False) -> np.ndarray:
    """The separable blur (or its adjoint) of every plane of ``stack`` [..., H, W], one call per axis."""
    flat = stack.reshape(-1, *stack.shape[-2:])
    out = _blur_w(_blur_h(flat, g, True), g, True) if adjoint else _blur_h(_blur_w(flat, g, False), g, False)
    return out.reshape(stack.shape)


class SSIMMean(torch.autograd.Function):
    """(x [B,C,H,W], y [B,C,H,W]) -> mean SSIM (a scalar); the gradient goes to ``x`` only."""

    @staticmethod
    def forward(ctx, x, y, window: int):
        g = _window(window)
        B, C, H, W = x.shape
        xn = np.ascontiguousarray(x.detach().cpu().numpy(), np.float32).reshape(B * C, H, W)
        yn = np.ascontiguousarray(y.detach().cpu().numpy(), np.float32).reshape(B * C, H, W)
        with stage("SSIM (forward)"):
            s_rows, d = _ssim_grad_maps(blur(np.stack([xn, xn * xn, xn * yn]), g), blur(np.stack([yn, yn * yn]), g))
        ctx.state = (xn, yn, d, g, x.shape, x.device)
        return torch.tensor(float(s_rows.sum()) / xn.size, dtype=x.dtype, device=x.device)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, v):
        xn, yn, d, g, shape, device = ctx.state
        scale = np.float32(float(v) / xn.size)
        with stage("SSIM (backward)"):
            adj = blur(d, g, adjoint=True)
            dx = (adj[0] + 2 * xn * adj[1] + yn * adj[2]) * scale
        return torch.from_numpy(dx.reshape(shape)).to(device), None, None


def ssim_mean(x: torch.Tensor, y: torch.Tensor, window: int = 11) -> torch.Tensor:
    """``ssim_map(x, y, window).mean()`` (reconstruction.fit) with the compiled pass when only ``x`` needs a
    gradient and the images are float32 on the CPU and larger than the window; else ``ssim_map`` itself."""
    from reconstruction.fit import ssim_map

    r = window // 2
    if (y.requires_grad or x.device.type != "cpu" or x.dtype != torch.float32 or min(x.shape[-2:]) <= r):
        return ssim_map(x, y, window).mean()
    from reconstruction.jit import first_call

    with first_call("ssim_cpu", "the CPU SSIM kernels", __file__, "_blur_w"):
        return SSIMMean.apply(x, y, window)
