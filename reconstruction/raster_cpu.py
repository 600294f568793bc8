"""The `cpu` rasterization backend: tile-based Gaussian compositing compiled with numba, forward and a
hand-written backward, wrapped in a ``torch.autograd.Function``.

Rules are gsplat's (``RasterizeToPixels3DGSFwd/Bwd.cu``) so images equal the CUDA backend:
pixel centres at +0.5; ``sigma = 0.5 (a dx² + c dy²) + b dx dy`` with ``(a, b, c)`` the conic and
``d = mean - pixel``;
``alpha = min(0.999, opacity · exp(-sigma))``; a Gaussian is skipped at a pixel when ``sigma < 0`` or
``alpha < 1/255``; compositing is front to back and stops before the Gaussian that would bring the
transmittance to ``T <= 1e-4`` (that one is not drawn).

Layout of the work: the image is cut into ``tile_size``² tiles; every visible Gaussian (radii > 0) is listed in
each tile its screen-space box ``mean ± radii`` touches, in depth order (one stable depth sort per image, then a
fill pass, so every tile list comes out sorted). Tiles run in parallel (``prange``); inside a tile each Gaussian
updates only the pixels of its own box, which keeps the work proportional to the covered area. The backward
pass walks each tile list back to front, recovering the transmittance by division as in 3DGS, and writes each
(tile, Gaussian) pair's gradient into its own slot; a serial pass then sums the slots per Gaussian, so no two
threads ever write the same memory and results are deterministic.

Only the 2D stage lives here; projection, covariance and SH are ``reconstruction/project_cpu.py`` (one compiled
pass with its own backward; the torch functions of ``rasterize.py`` when cameras need gradients), so autograd
carries the gradients of ``means2d``, ``conics``, ``colors`` and ``opacities`` back to means, quats, scales and SH.
Parallel loops use numba's default static split (each thread one contiguous range of tiles): its chunked dynamic
schedule (``numba.parallel_chunksize``) was measured 1.5-8x slower here (chunk 8 / 1 tiles, backward).
Kernels are compiled on first use and cached on disk (``cache=True``, in ``NUMBA_CACHE_DIR``: a user cache folder,
see ``reconstruction/__init__.py``); a fresh install compiles once (~50 s on the busy 2-core dev machine, announced
on stderr by ``reconstruction.jit``), later processes load the cache (~2 s).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange

ALPHA_MIN = 1.0 / 255.0  # a Gaussian dimmer than this at a pixel is skipped there
ALPHA_MAX = 0.999  # per-Gaussian alpha clamp (gsplat's value; the 3DGS paper used 0.99)
T_MIN = 1e-4  # compositing stops before the transmittance would fall to this


@njit(cache=True)
def _bin_gaussians(means2d, radii, depths, tile_size, tiles_x, tiles_y):
    """Tile lists for every image.

    Args: means2d [I,N,2] f32, radii [I,N,2] i32, depths [I,N] f32.
    Returns: offsets [I*T+1] i64 (tile ``j`` of image ``i`` owns ``ids[offsets[i*T+j]:offsets[i*T+j+1]]``),
        ids [n_isect] i32 (Gaussian index within the image), each tile's ids sorted front to back.
    """
    I, N = depths.shape
    n_tiles = tiles_x * tiles_y
    rects = np.zeros((I, N, 4), np.int64)  # tile x0, x1, y0, y1 (half-open)
    counts = np.zeros(I * n_tiles + 1, np.int64)
    for i in range(I):
        for g in range(N):
            rx = radii[i, g, 0]
            ry = radii[i, g, 1]
            if rx <= 0 or ry <= 0:
                continue
            mx = means2d[i, g, 0]
            my = means2d[i, g, 1]
            x0 = min(max(int(math.floor((mx - rx) / tile_size)), 0), tiles_x)
            x1 = min(max(int(math.ceil((mx + rx) / tile_size)), 0), tiles_x)
            y0 = min(max(int(math.floor((my - ry) / tile_size)), 0), tiles_y)
            y1 = min(max(int(math.ceil((my + ry) / tile_size)), 0), tiles_y)
            rects[i, g, 0] = x0
            rects[i, g, 1] = x1
            rects[i, g, 2] = y0
            rects[i, g, 3] = y1
            for ty in range(y0, y1):
                for tx in range(x0, x1):
                    counts[i * n_tiles + ty * tiles_x + tx + 1] += 1
    offsets = np.cumsum(counts)
    fill = offsets[:-1].copy()
    ids = np.empty(offsets[-1], np.int32)
    for i in range(I):
        order = np.argsort(depths[i], kind="mergesort")  # stable: equal depths keep index order, as gsplat
        for g in order:
            for ty in range(rects[i, g, 2], rects[i, g, 3]):
                for tx in range(rects[i, g, 0], rects[i, g, 1]):
                    t = i * n_tiles + ty * tiles_x + tx
                    ids[fill[t]] = g
                    fill[t] += 1
    return offsets, ids


@njit(inline="always")
def _tile_rect(job, n_tiles, tiles_x, tile_size, width, height):
    """Image index and pixel rectangle [px0, px1) x [py0, py1) of parallel job ``job`` (image-major tiles)."""
    i = job // n_tiles
    t = job % n_tiles
    px0 = (t % tiles_x) * tile_size
    py0 = (t // tiles_x) * tile_size
    return i, px0, py0, min(px0 + tile_size, width), min(py0 + tile_size, height)


@njit(inline="always")
def _gaussian(means2d, conics, opacities, s_max, i, g):
    """Projected Gaussian g of image i: centre, conic (a, b, c), opacity, and the largest sigma with
    alpha >= 1/255 (``s_max`` = log(opacity * 255), computed once per Gaussian by the caller)."""
    return (means2d[i, g, 0], means2d[i, g, 1], conics[i, g, 0], conics[i, g, 1], conics[i, g, 2], opacities[i, g],
            s_max[i, g])


@njit(inline="always")
def _pixel_span(m, r, lo, hi):
    """Pixels p in [lo, hi) whose centre p + 0.5 may lie within m ± r (one pixel of slack; the alpha test
    decides the rest). Returns a half-open range, possibly empty."""
    a = max(lo, int(math.floor(m - r - 0.5)))
    b = min(hi, int(math.ceil(m + r - 0.5)) + 1)
    return a, b


@njit(inline="always")
def _row_span(mx, dy, ca, cb, cc, s_max, lo, hi):
    """Pixels x in [lo, hi) of a row at offset ``dy = my - y_centre`` where ``sigma <= s_max`` can hold, i.e.
    between the roots of ``0.5 a dx² + b dy dx + 0.5 c dy² = s_max``, with one pixel of slack. Empty if none."""
    disc = cb * cb * dy * dy - ca * (cc * dy * dy - 2.0 * s_max)
    if disc < 0 or ca <= 0:
        return lo, lo
    root = math.sqrt(disc)
    dx_lo = (-cb * dy - root) / ca
    dx_hi = (-cb * dy + root) / ca
    a = max(lo, int(math.floor(mx - dx_hi - 0.5)))
    b = min(hi, int(math.ceil(mx - dx_lo - 0.5)) + 1)
    return a, b


@njit(cache=True, parallel=True, fastmath=True)
def _forward(means2d, conics, colors, opacities, radii, s_max, offsets, ids, width, height, tile_size, tiles_x,
             tiles_y):
    """Front-to-back compositing.

    Args: means2d [I,N,2], conics [I,N,3], colors [I,N,D], opacities [I,N] (f32), radii [I,N,2] i32,
        s_max [I,N] f64 (log(opacity * 255)), offsets / ids from ``_bin_gaussians``.
    Returns: image [I,H,W,D] f32 (no background), T [I,H,W] f32 final transmittance,
        n_used [I,H,W] i32 (1 + position in the tile list of the last Gaussian drawn at the pixel; 0 if none).
    """
    I, N, D = colors.shape
    n_tiles = tiles_x * tiles_y
    image = np.zeros((I, height, width, D), np.float32)
    T_out = np.ones((I, height, width), np.float32)
    n_used = np.zeros((I, height, width), np.int32)
    for job in prange(I * n_tiles):
        i, px0, py0, px1, py1 = _tile_rect(job, n_tiles, tiles_x, tile_size, width, height)
        tw = px1 - px0
        P = tw * (py1 - py0)
        T = np.ones(P, np.float32)
        acc = np.zeros((P, D), np.float32)
        last = np.zeros(P, np.int32)
        done = np.zeros(P, np.bool_)
        active = P
        start = offsets[job]
        for k in range(start, offsets[job + 1]):
            g = ids[k]
            mx, my, ca, cb, cc, op, sm = _gaussian(means2d, conics, opacities, s_max, i, g)
            xa, xb = _pixel_span(mx, radii[i, g, 0], px0, px1)
            ya, yb = _pixel_span(my, radii[i, g, 1], py0, py1)
            for y in range(ya, yb):
                dy = my - (np.float32(y) + np.float32(0.5))
                xr0, xr1 = _row_span(mx, dy, ca, cb, cc, sm, xa, xb)
                for x in range(xr0, xr1):
                    p = (y - py0) * tw + (x - px0)
                    if done[p]:
                        continue
                    dx = mx - (np.float32(x) + np.float32(0.5))
                    sigma = np.float32(0.5) * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                    if sigma < 0:
                        continue
                    alpha = min(np.float32(ALPHA_MAX), op * np.exp(-sigma))
                    if alpha < np.float32(ALPHA_MIN):
                        continue
                    next_T = T[p] * (np.float32(1.0) - alpha)
                    if next_T <= np.float32(T_MIN):
                        done[p] = True
                        active -= 1
                        continue
                    w = alpha * T[p]
                    for d in range(D):
                        acc[p, d] += colors[i, g, d] * w
                    T[p] = next_T
                    last[p] = k - start + 1
            if active == 0:
                break
        for y in range(py0, py1):
            for x in range(px0, px1):
                p = (y - py0) * tw + (x - px0)
                for d in range(D):
                    image[i, y, x, d] = acc[p, d]
                T_out[i, y, x] = T[p]
                n_used[i, y, x] = last[p]
    return image, T_out, n_used


@njit(cache=True, parallel=True, fastmath=True)
def _backward(means2d, conics, colors, opacities, radii, s_max, offsets, ids, T_final, n_used, v_image, v_alpha,
              width, height, tile_size, tiles_x, tiles_y):
    """Back-to-front gradient pass (3DGS style: T recovered by division, colour behind kept in a buffer).

    Args: forward inputs, ``T_final`` / ``n_used`` from ``_forward``, v_image [I,H,W,D], v_alpha [I,H,W]
        (gradients of the loss w.r.t. the image without background and w.r.t. alpha = 1 - T_final).
    Returns: per-intersection gradients g_xy [n_isect,2], g_conic [n_isect,3], g_color [n_isect,D],
        g_opacity [n_isect], summed per Gaussian by ``_reduce``.
    """
    I, N, D = colors.shape
    n_tiles = tiles_x * tiles_y
    n_isect = ids.shape[0]
    g_xy = np.zeros((n_isect, 2), np.float32)
    g_conic = np.zeros((n_isect, 3), np.float32)
    g_color = np.zeros((n_isect, D), np.float32)
    g_opacity = np.zeros(n_isect, np.float32)
    for job in prange(I * n_tiles):
        i, px0, py0, px1, py1 = _tile_rect(job, n_tiles, tiles_x, tile_size, width, height)
        tw = px1 - px0
        P = tw * (py1 - py0)
        T = np.empty(P, np.float32)
        last = np.empty(P, np.int32)
        buf = np.zeros((P, D), np.float32)
        v_img = np.empty((P, D), np.float32)  # the tile's gradients, contiguous
        v_T = np.empty(P, np.float32)  # T_final * v_alpha
        col = np.empty(D, np.float32)  # the current Gaussian's colour ...
        g_col = np.empty(D, np.float32)  # ... and its colour gradient, accumulated over the tile
        max_last = 0
        for y in range(py0, py1):
            for x in range(px0, px1):
                p = (y - py0) * tw + (x - px0)
                T[p] = T_final[i, y, x]
                last[p] = n_used[i, y, x]
                v_T[p] = T_final[i, y, x] * v_alpha[i, y, x]
                for d in range(D):
                    v_img[p, d] = v_image[i, y, x, d]
                max_last = max(max_last, last[p])
        start = offsets[job]
        for k in range(start + max_last - 1, start - 1, -1):
            local = k - start
            g = ids[k]
            mx, my, ca, cb, cc, op, sm = _gaussian(means2d, conics, opacities, s_max, i, g)
            for d in range(D):
                col[d] = colors[i, g, d]
                g_col[d] = np.float32(0.0)
            gx = np.float32(0.0)
            gy = np.float32(0.0)
            ga = np.float32(0.0)
            gb = np.float32(0.0)
            gc = np.float32(0.0)
            go = np.float32(0.0)
            xa, xb = _pixel_span(mx, radii[i, g, 0], px0, px1)
            ya, yb = _pixel_span(my, radii[i, g, 1], py0, py1)
            for y in range(ya, yb):
                dy = my - (np.float32(y) + np.float32(0.5))
                xr0, xr1 = _row_span(mx, dy, ca, cb, cc, sm, xa, xb)
                for x in range(xr0, xr1):
                    p = (y - py0) * tw + (x - px0)
                    if local >= last[p]:
                        continue
                    dx = mx - (np.float32(x) + np.float32(0.5))
                    sigma = np.float32(0.5) * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                    if sigma < 0:
                        continue
                    vis = np.exp(-sigma)
                    alpha = min(np.float32(ALPHA_MAX), op * vis)
                    if alpha < np.float32(ALPHA_MIN):
                        continue
                    ra = np.float32(1.0) / (np.float32(1.0) - alpha)
                    Tp = T[p] * ra  # transmittance in front of this Gaussian
                    T[p] = Tp
                    w = alpha * Tp
                    v_a = v_T[p] * ra
                    for d in range(D):
                        vc = v_img[p, d]
                        g_col[d] += w * vc
                        v_a += (col[d] * Tp - buf[p, d] * ra) * vc
                        buf[p, d] += col[d] * w
                    if op * vis <= np.float32(ALPHA_MAX):  # not clamped: alpha depends on sigma and opacity
                        v_sigma = -op * vis * v_a
                        ga += np.float32(0.5) * v_sigma * dx * dx
                        gb += v_sigma * dx * dy
                        gc += np.float32(0.5) * v_sigma * dy * dy
                        gx += v_sigma * (ca * dx + cb * dy)
                        gy += v_sigma * (cb * dx + cc * dy)
                        go += vis * v_a
            for d in range(D):
                g_color[k, d] = g_col[d]
            g_xy[k, 0] = gx
            g_xy[k, 1] = gy
            g_conic[k, 0] = ga
            g_conic[k, 1] = gb
            g_conic[k, 2] = gc
            g_opacity[k] = go
    return g_xy, g_conic, g_color, g_opacity


@njit(cache=True)
def _reduce(offsets, ids, n_tiles, N, g_xy, g_conic, g_color, g_opacity):
    """Sum per-intersection gradients per Gaussian: [I,N,2], [I,N,3], [I,N,D], [I,N]."""
    I = (offsets.shape[0] - 1) // n_tiles
    D = g_color.shape[1]
    v_xy = np.zeros((I, N, 2), np.float32)
    v_conic = np.zeros((I, N, 3), np.float32)
    v_color = np.zeros((I, N, D), np.float32)
    v_opacity = np.zeros((I, N), np.float32)
    for job in range(I * n_tiles):
        i = job // n_tiles
        for k in range(offsets[job], offsets[job + 1]):
            g = ids[k]
            v_xy[i, g, 0] += g_xy[k, 0]
            v_xy[i, g, 1] += g_xy[k, 1]
            for c in range(3):
                v_conic[i, g, c] += g_conic[k, c]
            for d in range(D):
                v_color[i, g, d] += g_color[k, d]
            v_opacity[i, g] += g_opacity[k]
    return v_xy, v_conic, v_color, v_opacity


def _np(x: torch.Tensor, dtype=np.float32) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy(), dtype=dtype)


class RasterizeCPU(torch.autograd.Function):
    """(means2d [I,N,2], conics [I,N,3], colors [I,N,D], opacities [I,N]) -> (image [I,H,W,D], alpha [I,H,W,1]).

    ``radii`` [I,N,2] (int, 0 = culled) and ``depths`` [I,N] are not differentiated. Gaussians with
    radii 0 get zero gradient.
    """

    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, radii, depths, width: int, height: int, tile_size: int):
        tiles_x = (width + tile_size - 1) // tile_size
        tiles_y = (height + tile_size - 1) // tile_size
        arrays = (_np(means2d), _np(conics), _np(colors), _np(opacities), _np(radii, np.int32))
        with np.errstate(divide="ignore"):  # opacity 0: culled (radii 0), never read
            s_max = np.log(arrays[3].astype(np.float64) / ALPHA_MIN)
        arrays = (*arrays, s_max)
        offsets, ids = _bin_gaussians(arrays[0], arrays[4], _np(depths), tile_size, tiles_x, tiles_y)
        image, T, n_used = _forward(*arrays, offsets, ids, width, height, tile_size, tiles_x, tiles_y)
        ctx.state = (arrays, offsets, ids, T, n_used, width, height, tile_size, tiles_x, tiles_y)
        ctx.device = means2d.device
        alpha = 1.0 - torch.from_numpy(T)
        return torch.from_numpy(image).to(means2d.device), alpha[..., None].to(means2d.device)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, v_image, v_alpha):
        arrays, offsets, ids, T, n_used, width, height, tile_size, tiles_x, tiles_y = ctx.state
        N = arrays[0].shape[1]
        from reconstruction.jit import first_call

        with first_call("raster_cpu_backward", "the CPU splatting kernels' backward pass", __file__, "_backward"):
            grads = _backward(*arrays, offsets, ids, T, n_used, _np(v_image), _np(v_alpha[..., 0]),
                              width, height, tile_size, tiles_x, tiles_y)
            v_xy, v_conic, v_color, v_opacity = _reduce(offsets, ids, tiles_x * tiles_y, N, *grads)
        out = [torch.from_numpy(v).to(ctx.device) for v in (v_xy, v_conic, v_color, v_opacity)]
        return (*out, None, None, None, None, None)


def rasterize_to_pixels(means2d, conics, colors, opacities, radii, depths, width, height, tile_size=16):
    """Composite projected Gaussians. Shapes as ``RasterizeCPU``; returns (image [I,H,W,D], alpha [I,H,W,1])."""
    from reconstruction.jit import first_call

    with first_call("raster_cpu", "the CPU splatting kernels", __file__, "_forward"):
        return RasterizeCPU.apply(means2d, conics, colors, opacities, radii, depths, width, height, tile_size)
