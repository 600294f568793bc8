"""The `cpu` rasterization backend: tile-based Gaussian compositing compiled with numba, forward and a
hand-written backward, wrapped in a ``torch.autograd.Function``.

Rules are gsplat's (``RasterizeToPixels3DGSFwd/Bwd.cu``) so images equal the CUDA backend:
pixel centres at +0.5; ``sigma = 0.5 (a dx² + c dy²) + b dx dy`` with ``(a, b, c)`` the conic and
``d = mean - pixel``;
``alpha = min(0.999, opacity · exp(-sigma))``; a Gaussian is skipped at a pixel when ``sigma < 0`` or
``alpha < 1/255``; compositing is front to back and stops before the Gaussian that would bring the
transmittance to ``T <= 1e-4`` (that one is not drawn).

Layout of the work: the image is cut into 16 x 16 tiles (``TILE``; other sizes are refused); every visible
Gaussian (radii > 0) is listed in each tile its screen-space box ``mean ± radii`` touches, in depth order (one
stable depth sort per image, then a fill pass in that order, so every tile list comes out sorted; counting and
filling run in parallel, see ``_bin_gaussians``). Tiles run in parallel
(``prange``); inside a tile a Gaussian updates the tile rows of its box that its ellipse reaches over the box's
columns (``_strip_rows``: about half of the box's rows on lego fits), each row in one branch-free pass over the
row's pixels (pixels outside the box columns, or where it is not drawn, take exact no-op values).

What makes those passes SIMD code (AVX2: 8 lanes; issue 20, session 19): a pass runs over a constant number of
columns, the whole row (TILE) or, when the Gaussian's box lies inside one half of it, that half (8: one AVX2
vector; an image-edge tile's extra pixels start finished and lie outside every box); a tile's state is one flat
float32 array indexed ``constant + row offset + column`` (row offsets masked to show LLVM they are >= 0), so LLVM
proves that no two planes overlap and needs no runtime alias checks (with them it does not vectorise 8-trip
loops at all); every lane value is a float32 (pixel centres, box bounds and the "last Gaussian drawn" index as
floats: one int64 lane had LLVM fall back to 4-lane code with per-lane scalar conversions); ``exp`` is written
out (``_exp_neg``, no libm call) with its power of two put into the exponent bits (``_pow2``) instead of a table
lookup (a per-lane scalar load); the first three channels are blended inside the pixel pass (a separate
16-pixel pass per channel was unrolled and then vectorised across channels, 2 lanes wide), further channels
(the depth of "RGB+D") in their own passes; and no pass carries a reduction: the forward counts finished pixels
every ``LIVE_EVERY`` Gaussians (the counts only skip finished rows and tiles), the backward no longer skips rows
where a Gaussian draws nothing (their terms are exact zeros). On lego views (a 1,900-step fit's 22,661
Gaussians, 1 thread, on an AVX2 machine) forward + backward per view went from 91 to 25 ms (README, issue 20).
``sigma > log(255 opacity)`` rejects a pixel before the exact alpha test. The backward pass walks each tile list back to front, from the last Gaussian the forward drew in the tile
(``n_used``), recovering the transmittance by division as in 3DGS, and writes each (tile, Gaussian) pair's
gradient into its own slot; a serial pass (``_reduce``) then sums the slots per Gaussian, so no two threads ever
write the same memory and results are deterministic.

Floating point: float32 throughout; fastmath is limited to ``nnan, ninf, nsz, contract`` (no reassociation), so
the forward and the backward round each pixel's alpha identically. With full fastmath LLVM reassociated the two
kernels' copies differently and the backward's recovered transmittance drifted (gradients 1e-5 off the torch
reference instead of 3e-7); per-column partial sums (``lanes``) keep the backward's reductions vectorised
without reassociation. ``contract`` (fused multiply-adds) stays: without it both kernels were ~1.1x slower. It
rounds sigma differently from the torch reference by an ulp, so where alpha is exactly 1/255 or T exactly 1e-4
to float32 precision the two can disagree about drawing one Gaussian at a pixel (one pixel of the 5,000-Gaussian
128² bench scene, by 1e-3; the previous kernel, also fused, had the same exposure).

Only the 2D stage lives here; projection, covariance and SH are ``reconstruction/project_cpu.py`` (one compiled
pass with its own backward; the torch functions of ``rasterize.py`` when cameras need gradients), so autograd
carries the gradients of ``means2d``, ``conics``, ``colors`` and ``opacities`` back to means, quats, scales and SH.
Work is dealt to threads by ``_schedule``: one ``prange`` iteration per thread, each with its own list of tiles,
balanced by the tiles' list lengths (numba's static split of the tile range gave one of two threads ~1.5x the
mean work on lego; its chunked dynamic schedule, ``numba.parallel_chunksize``, was measured 1.5-8x slower here).
Kernels are compiled on first use and cached on disk (``cache=True``, in ``NUMBA_CACHE_DIR``: a user cache folder,
see ``reconstruction/__init__.py``); a fresh install compiles once (~50 s on the busy 2-core dev machine, announced
on stderr by ``reconstruction.jit``), later processes load the cache (~2 s).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import numba
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from reconstruction.profile import stage

ALPHA_MIN = 1.0 / 255.0  # a Gaussian dimmer than this at a pixel is skipped there
ALPHA_MAX = 0.999  # per-Gaussian alpha clamp (gsplat's value; the 3DGS paper used 0.99)
T_MIN = 1e-4  # compositing stops before the transmittance would fall to this
LIVE_EVERY = 16  # the forward recounts each tile's live pixels (to skip finished rows and tiles) this often
S_MARGIN = 1e-3  # sigma above log(255 opacity) + this: alpha surely under ALPHA_MIN, rejected before the exact test


@njit(cache=True)
def _depth_order(depths, radii):
    """Indices of the visible Gaussians (both radii > 0) sorted by depth, front to back; equal depths keep index
    order (a stable sort, as gsplat's). An LSD radix sort of the float32 bits (mapped so that unsigned order is
    numeric order) in three passes of 11 bits: linear in N, 10-20x faster than ``np.argsort(kind="mergesort")``
    for the 30,000 Gaussians of a lego fit."""
    N = depths.shape[0]
    n = 0
    for g in range(N):
        if radii[g, 0] > 0 and radii[g, 1] > 0:
            n += 1
    keys = np.empty(n, np.uint32)
    order = np.empty(n, np.int64)
    bits = depths.view(np.uint32)
    j = 0
    for g in range(N):
        if radii[g, 0] > 0 and radii[g, 1] > 0:
            b = bits[g]
            keys[j] = ~b if b >> np.uint32(31) else b | np.uint32(0x80000000)  # negatives reversed, below positives
            order[j] = g
            j += 1
    keys2 = np.empty_like(keys)
    order2 = np.empty_like(order)
    for shift in (0, 11, 22):
        counts = np.zeros(2049, np.int64)
        for k in range(n):
            counts[((keys[k] >> np.uint32(shift)) & np.uint32(2047)) + 1] += 1
        for b in range(2048):
            counts[b + 1] += counts[b]
        for k in range(n):  # in order: equal digits keep their order (stable)
            b = (keys[k] >> np.uint32(shift)) & np.uint32(2047)
            keys2[counts[b]] = keys[k]
            order2[counts[b]] = order[k]
            counts[b] += 1
        keys, keys2 = keys2, keys
        order, order2 = order2, order
    return order


@njit(inline="always")
def _tile_box(means2d, radii, i, g, tile_size, tiles_x, tiles_y):
    """Tiles [x0, x1) x [y0, y1) that Gaussian g's screen box touches in image i (empty when it is culled)."""
    rx = radii[i, g, 0]
    ry = radii[i, g, 1]
    if rx <= 0 or ry <= 0:
        return 0, 0, 0, 0
    mx = means2d[i, g, 0]
    my = means2d[i, g, 1]
    x0 = min(max(int(math.floor((mx - rx) / tile_size)), 0), tiles_x)
    x1 = min(max(int(math.ceil((mx + rx) / tile_size)), 0), tiles_x)
    y0 = min(max(int(math.floor((my - ry) / tile_size)), 0), tiles_y)
    y1 = min(max(int(math.ceil((my + ry) / tile_size)), 0), tiles_y)
    return x0, x1, y0, y1


@njit(cache=True, parallel=True)
def _bin_gaussians(means2d, radii, depths, tile_size, tiles_x, tiles_y, n_threads):
    """Tile lists for every image.

    Args: means2d [I,N,2] f32, radii [I,N,2] i32, depths [I,N] f32.
    Returns: offsets [I*T+1] i64 (tile ``j`` of image ``i`` owns ``ids[offsets[i*T+j]:offsets[i*T+j+1]]``),
        ids [n_isect] i32 (Gaussian index within the image), each tile's ids sorted front to back.
    Parallel: the counts per chunk of Gaussians, the fill per band of tile rows (each thread walks the whole
    depth order and writes only its band's lists, so every list is filled in depth order as a serial pass would).
    """
    I, N = depths.shape
    n_tiles = tiles_x * tiles_y
    n_chunks = max(1, min(n_threads * 4, (N + 1023) // 1024))
    chunk_counts = np.zeros((n_chunks, I * n_tiles), np.int64)
    for ch in prange(n_chunks):
        for i in range(I):
            for g in range(ch * N // n_chunks, (ch + 1) * N // n_chunks):
                x0, x1, y0, y1 = _tile_box(means2d, radii, i, g, tile_size, tiles_x, tiles_y)
                for ty in range(y0, y1):
                    for tx in range(x0, x1):
                        chunk_counts[ch, i * n_tiles + ty * tiles_x + tx] += 1
    offsets = np.zeros(I * n_tiles + 1, np.int64)
    for t in range(I * n_tiles):
        c = 0
        for ch in range(n_chunks):
            c += chunk_counts[ch, t]
        offsets[t + 1] = offsets[t] + c
    ids = np.empty(offsets[-1], np.int32)
    n_bands = max(1, min(n_threads, tiles_y))
    for i in range(I):
        order = _depth_order(depths[i], radii[i])
        for band in prange(n_bands):
            b0 = band * tiles_y // n_bands
            b1 = (band + 1) * tiles_y // n_bands
            fill = offsets[i * n_tiles + b0 * tiles_x:i * n_tiles + b1 * tiles_x].copy()
            for g in order:
                x0, x1, y0, y1 = _tile_box(means2d, radii, i, g, tile_size, tiles_x, tiles_y)
                for ty in range(max(y0, b0), min(y1, b1)):
                    for tx in range(x0, x1):
                        t = (ty - b0) * tiles_x + tx
                        ids[fill[t]] = g
                        fill[t] += 1
    return offsets, ids


@njit(cache=True, parallel=True)
def _log_thresholds(opacities):
    """s_max = log(opacity / ALPHA_MIN) [I,N] f32 (computed in float64): alpha = opacity exp(-sigma) >= 1/255 needs
    sigma <= s_max. Opacity 0 gives -inf (such Gaussians are culled, radii 0, never read)."""
    out = np.empty(opacities.shape, np.float32)
    flat_in, flat_out = opacities.reshape(-1), out.reshape(-1)
    for k in prange(flat_in.shape[0]):
        o = np.float64(flat_in[k])
        flat_out[k] = np.float32(math.log(o / ALPHA_MIN)) if o > 0 else np.float32(-np.inf)
    return out


TILE_COST = 4  # a tile's fixed work (its buffers, reading and writing its pixels) in units of one listed Gaussian


@njit(cache=True)
def _schedule(cost, n_workers):
    """Deal the jobs (tiles) to ``n_workers`` threads with balanced work: jobs sorted by ``cost`` (Gaussians in
    the list, + ``TILE_COST``), most expensive first, dealt in a snake order (workers 0..n-1, then n-1..0, ...),
    so every worker gets the same number of jobs and nearly the same work.

    Returns: jobs [n_jobs] i64 (job indices, worker ``w``'s in ``jobs[bounds[w]:bounds[w + 1]]``),
        bounds [n_workers + 1] i64.
    A contiguous split of the image (numba's static ``prange`` schedule) gives one thread 1.3-1.6x the mean work
    when the object sits in part of the frame (lego, 100 px, 2 threads: 1.48x on average over its views).
    """
    n = cost.shape[0]
    order = np.argsort(-(cost + TILE_COST), kind="mergesort")  # stable: equal costs keep tile order
    owner = np.empty(n, np.int64)
    counts = np.zeros(n_workers + 1, np.int64)
    for j in range(n):
        r = j % (2 * n_workers)
        w = r if r < n_workers else 2 * n_workers - 1 - r
        owner[j] = w
        counts[w + 1] += 1
    bounds = np.cumsum(counts)
    fill = bounds[:-1].copy()
    jobs = np.empty(n, np.int64)
    for j in range(n):
        jobs[fill[owner[j]]] = order[j]
        fill[owner[j]] += 1
    return jobs, bounds


def _workers(n_jobs: int) -> int:
    return max(1, min(numba.get_num_threads(), n_jobs))


@njit(inline="always")
def _tile_rect(job, n_tiles, tiles_x, tile_size, width, height):
    """Image index and pixel rectangle [px0, px1) x [py0, py1) of parallel job ``job`` (image-major tiles)."""
    i = job // n_tiles
    t = job % n_tiles
    px0 = (t % tiles_x) * tile_size
    py0 = (t // tiles_x) * tile_size
    return i, px0, py0, min(px0 + tile_size, width), min(py0 + tile_size, height)


TILE = 16  # tile side in pixels: the kernels' row passes run over exactly TILE lanes (a compile-time trip count)
HALF = TILE // 2  # or over one half of the row, when a Gaussian's box lies inside it
PLANE = TILE * TILE  # one [row, column] plane of a tile's flat state
_XC = 6 * PLANE  # the forward's state: T, last, live, 3 colour planes, then pixel centres, weights, more channels
_BR = 9 * PLANE  # the backward's: T, last, v_T, 3 colour buffers, 3 image gradients, then rows (``_backward``)


@intrinsic
def _pow2(typingctx, n):
    """2**n for a float32 ``n`` holding an integer in [-126, 127], exactly: the integer is written into the
    float's exponent field (LLVM ``fptosi``, ``shl``, ``bitcast``). A table lookup here was a per-lane scalar load
    that kept the pixel loops from vectorising."""
    if n != types.float32:
        return None

    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        e = builder.add(builder.fptosi(args[0], i32), ir.Constant(i32, 127))
        return builder.bitcast(builder.shl(e, ir.Constant(i32, 23)), ir.FloatType())

    return types.float32(types.float32), codegen
S_CLAMP = 20.0  # ``_exp_neg`` clamps its argument here (exp(-20) ~ 2e-9: far below any alpha that is drawn)


@njit(inline="always", error_model="numpy")
def _gaussian(means2d, conics, opacities, s_max, i, g):
    """Projected Gaussian g of image i: centre, conic (a, b, c), opacity, and the largest sigma with
    alpha >= 1/255 (``s_max`` = log(opacity * 255), computed once per Gaussian by the caller)."""
    return (means2d[i, g, 0], means2d[i, g, 1], conics[i, g, 0], conics[i, g, 1], conics[i, g, 2], opacities[i, g],
            s_max[i, g])


@njit(inline="always", error_model="numpy")
def _pixel_span(m, r, lo, hi):
    """Pixels p in [lo, hi) whose centre p + 0.5 may lie within m ± r (one pixel of slack; the alpha test
    decides the rest). Returns a half-open range, possibly empty."""
    a = max(lo, int(math.floor(m - r - np.float32(0.5))))
    b = min(hi, int(math.ceil(m + r - np.float32(0.5))) + 1)
    return a, b


@njit(inline="always", error_model="numpy")
def _exp_neg(s):
    """exp(-s) in float32 for s >= 0 (clamped to [0, S_CLAMP]), relative error < 1e-7 (tests). Written out, with
    no libm call, so the pixel loops that use it compile to SIMD code: s = n ln2 + r with n integer and
    |r| <= ln2 / 2 (ln2 split in two parts so n ln2 is exact), exp(r) by its Taylor series to r^7."""
    x = -min(max(s, np.float32(0.0)), np.float32(S_CLAMP))
    n = np.floor(x * np.float32(1.4426950408889634) + np.float32(0.5))  # round(x / ln2), in [-29, 0]
    r = x - n * np.float32(0.693359375) + n * np.float32(2.12194440e-4)
    p = np.float32(1.0 / 5040.0)
    p = p * r + np.float32(1.0 / 720.0)
    p = p * r + np.float32(1.0 / 120.0)
    p = p * r + np.float32(1.0 / 24.0)
    p = p * r + np.float32(1.0 / 6.0)
    p = p * r + np.float32(0.5)
    p = p * r + np.float32(1.0)
    p = p * r + np.float32(1.0)
    return p * _pow2(n)


@njit(inline="always", error_model="numpy")
def _alpha(mx, ca, cb, cc, op, sm, xc, dy, xa, xb):
    """Alpha of a Gaussian at the pixel whose centre is at column ``xc`` (= x + 0.5) in a row at ``dy = my -
    y_centre``, 0 where it is not drawn (centre outside the box columns [xa, xb), given as centres too, sigma < 0,
    or alpha < 1/255); also returns ``vis`` = exp(-sigma) and the test result. ``sigma > s_max + S_MARGIN`` (alpha
    surely under 1/255) needs no exp to reject a pixel; the exact alpha test decides the rest. Forward and backward
    call this one function, so they agree on every pixel. Every operand is a float32 (no integer lanes), so a
    pass over a tile row compiles to full-width SIMD code."""
    dx = mx - xc
    sigma = np.float32(0.5) * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
    vis = _exp_neg(sigma)
    alpha = min(np.float32(ALPHA_MAX), op * vis)
    ok = ((xc >= xa) & (xc < xb) & (sigma >= np.float32(0.0)) & (sigma <= sm + np.float32(S_MARGIN))
          & (alpha >= np.float32(ALPHA_MIN)))
    return (alpha if ok else np.float32(0.0)), vis, ok


ROW_SLACK = 1e-3  # pixels: ``_strip_rows`` widens the rows it keeps by this much (it only decides what to skip)


@njit(inline="always", error_model="numpy")
def _strip_rows(mx, my, ca, cb, cc, sm, xa, xb, ya, yb):
    """Rows [a, b) of [ya, yb) in which the Gaussian may draw a pixel of columns [xa, xb): the rows that the part
    of its ellipse sigma <= s_max + 2 S_MARGIN over those columns' centres spans (an interval: the ellipse and the
    column strip are convex), widened by ROW_SLACK; empty (a >= b) when the strip misses the ellipse. Once per
    (tile, Gaussian).

    With dx = mx - x, dy = my - y the ellipse is 0.5 a dx² + b dx dy + 0.5 c dy² <= S; at a given dx it spans
    dy in (-b dx ± sqrt(k2 dx² + 2 c S)) / c, k2 = b² - a c (float64: the two products nearly cancel for thin
    Gaussians). The upper end is concave in dx, largest at the ellipse's top point dx = -b h / a (h =
    sqrt(2 a S / -k2), its half height), so over the strip's dx interval its largest value is at that point
    clamped into the interval; the lower end likewise at dx = b h / a.

    Exactness: a drawn pixel has sigma <= s_max up to float32 rounding (alpha >= 1/255 exactly); the 2 S_MARGIN of
    sigma is at least 3e-4 px across the boundary (the conic's c <= 1 / 0.3 after the default 2D blur) against float32
    errors of ~1e-5 px here, so every skipped row would be an exact no-op of the row passes: no bit of the image or
    the gradients changes (tests). On lego fits about half of the box's tile rows miss the ellipse (thin,
    rotated Gaussians whose box is much larger than they are)."""
    a = np.float64(ca)
    c = np.float64(cc)
    k2 = np.float64(cb) * np.float64(cb) - a * c
    if not (a > 0.0 and c > 0.0 and k2 < 0.0):
        return ya, yb
    S = np.float32(sm + np.float32(2.0 * S_MARGIN))
    a32 = np.float32(a)
    c32 = np.float32(c)
    k = np.float32(k2)
    h = math.sqrt(np.float32(2.0) * a32 * S / -k)  # half height of the ellipse in dy
    u0 = mx - (np.float32(xb) - np.float32(0.5))  # the strip's dx interval [u0, u1]
    u1 = mx - (np.float32(xa) + np.float32(0.5))
    top = min(max(-cb * h / a32, u0), u1)
    bottom = min(max(cb * h / a32, u0), u1)
    d_top = k * top * top + np.float32(2.0) * c32 * S
    d_bottom = k * bottom * bottom + np.float32(2.0) * c32 * S
    if not (d_top >= np.float32(0.0) and d_bottom >= np.float32(0.0)):
        return ya, ya  # the clamped extreme lies outside the ellipse: the strip misses it
    dy_hi = (-cb * top + math.sqrt(d_top)) / c32
    dy_lo = (-cb * bottom - math.sqrt(d_bottom)) / c32
    # row centres y + 0.5 = my - dy
    return (max(ya, int(math.ceil(my - dy_hi - np.float32(0.5 + ROW_SLACK)))),
            min(yb, int(math.floor(my - dy_lo - np.float32(0.5 - ROW_SLACK))) + 1))

@njit(inline="always")
def _centres(v0):
    """Pixel centres v0 + c + 0.5 of a tile's TILE columns (or rows), float32."""
    out = np.empty(TILE, np.float32)
    for c in range(TILE):
        out[c] = np.float32(v0 + c) + np.float32(0.5)
    return out


@njit(inline="always")
def _lanes(lo, hi):
    """The tile columns a row pass runs over, for box columns [lo, hi) of the tile: one half (8 lanes, one AVX2
    vector) when the box lies inside it, else all TILE. Returns (first column, count)."""
    if hi <= HALF:
        return 0, HALF
    if lo >= HALF:
        return HALF, HALF
    return 0, TILE


@njit(inline="always", error_model="numpy")
def _composite_lanes(st, r, c0, n, n_acc, mx, ca, cb, cc, op, sm, dy, xa_c, xb_c, used, col0, col1, col2):
    """The forward's pass over columns [c0, c0 + n) of tile row offset ``r`` (= row * TILE) for one Gaussian:
    alpha, the transmittance update, the first three channels, the blending weights kept for further channels.
    ``st`` is the tile's flat state (``_forward``); ``n`` is a literal at each call, so the loop has a constant
    trip count, and every access is ``st[constant + r + c]``, so LLVM sees that no two planes overlap and
    vectorises the loop without runtime alias checks (needed for the 8-lane passes to vectorise at all)."""
    for c in range(c0, c0 + n):
        j = r + c
        alpha, _, ok = _alpha(mx, ca, cb, cc, op, sm, st[_XC + c], dy, xa_c, xb_c)
        Tp = st[j]
        next_T = Tp * (np.float32(1.0) - alpha)
        ok = ok & (st[2 * PLANE + j] > np.float32(0.0))
        stop = ok & (next_T <= np.float32(T_MIN))  # not drawn: the pixel is done
        draw = ok & (next_T > np.float32(T_MIN))
        wgt = alpha * Tp if draw else np.float32(0.0)
        st[_XC + TILE + c] = wgt
        st[j] = next_T if draw else Tp
        st[PLANE + j] = used if draw else st[PLANE + j]
        st[2 * PLANE + j] = np.float32(0.0) if stop else st[2 * PLANE + j]
        st[3 * PLANE + j] += col0 * wgt
        st[4 * PLANE + j] += col1 * wgt
        st[5 * PLANE + j] += col2 * wgt


@njit(cache=True, parallel=True, fastmath={"nnan", "ninf", "nsz", "contract"}, error_model="numpy")
def _forward(means2d, conics, colors, opacities, radii, s_max, offsets, ids, jobs, bounds, width, height, tiles_x,
             tiles_y):
    """Front-to-back compositing.

    Args: means2d [I,N,2], conics [I,N,3], colors [I,N,D], opacities [I,N] (f32), radii [I,N,2] i32,
        s_max [I,N] f32 (log(opacity * 255)), offsets / ids from ``_bin_gaussians``, jobs / bounds from
        ``_schedule``.
    Returns: image [I,H,W,D] f32 (no background), T [I,H,W] f32 final transmittance,
        n_used [I,H,W] i32 (1 + position in the tile list of the last Gaussian drawn at the pixel; 0 if none),
        tile_used [I*T] i64 (per tile the largest n_used: the length of the list the backward walks).

    The tile's state is one flat float32 array of TILE x TILE planes, [row, column] each: T, the last Gaussian
    drawn (n_used as a float, exact below 2^24), live (1 while the pixel's transmittance lasts, then 0), one
    accumulated colour plane per channel (at least three; a missing channel is a zero plane), then the pixel
    centres of the tile's columns and one row of blending weights. An image-edge tile's extra pixels start
    finished and lie outside every box. Finished pixels are counted every ``LIVE_EVERY`` Gaussians rather than
    in the row pass (a reduction there costs the pass its full SIMD width); the counts only skip finished rows
    and tiles, so the image does not depend on when they are taken.
    """
    I, N, D = colors.shape
    n_acc = max(D, 3)
    xc_at = (3 + n_acc) * PLANE
    n_tiles = tiles_x * tiles_y
    image = np.zeros((I, height, width, D), np.float32)
    T_out = np.ones((I, height, width), np.float32)
    n_used = np.zeros((I, height, width), np.int32)
    tile_used = np.zeros(I * n_tiles, np.int64)
    for w in prange(bounds.shape[0] - 1):  # one worker per thread, its tiles from ``_schedule``
        st = np.empty(_XC + 2 * TILE + (n_acc - 3) * PLANE, np.float32)
        row_live = np.empty(TILE, np.int64)  # pixels of each row still live, as of the last count
        for q in range(bounds[w], bounds[w + 1]):
            job = jobs[q]
            i, px0, py0, px1, py1 = _tile_rect(job, n_tiles, tiles_x, TILE, width, height)
            tw = px1 - px0
            th = py1 - py0
            st[:PLANE] = np.float32(1.0)  # T
            st[PLANE:3 * PLANE] = np.float32(0.0)  # last, live
            for ry in range(th):
                st[2 * PLANE + ry * TILE:2 * PLANE + ry * TILE + tw] = np.float32(1.0)
                row_live[ry] = tw
            st[3 * PLANE:6 * PLANE] = np.float32(0.0)
            st[_XC + 2 * TILE:] = np.float32(0.0)  # channels beyond three
            for c in range(TILE):
                st[_XC + c] = np.float32(px0 + c) + np.float32(0.5)
            start = offsets[job]
            for k in range(start, offsets[job + 1]):
                g = ids[k]
                mx, my, ca, cb, cc, op, sm = _gaussian(means2d, conics, opacities, s_max, i, g)
                xa, xb = _pixel_span(mx, radii[i, g, 0], px0, px1)
                ya, yb = _pixel_span(my, radii[i, g, 1], py0, py1)
                if xa < xb:
                    xa_c = np.float32(xa) + np.float32(0.5)
                    xb_c = np.float32(xb) + np.float32(0.5)
                    used = np.float32(k - start + 1)
                    ya, yb = _strip_rows(mx, my, ca, cb, cc, sm, xa, xb, ya, yb)
                    c0, c_n = _lanes(xa - px0, xb - px0)
                    col0 = colors[i, g, 0] if D > 0 else np.float32(0.0)
                    col1 = colors[i, g, 1] if D > 1 else np.float32(0.0)
                    col2 = colors[i, g, 2] if D > 2 else np.float32(0.0)
                    for y in range(ya, yb):
                        ry = y - py0
                        if row_live[ry] == 0:
                            continue
                        dy = my - (np.float32(y) + np.float32(0.5))
                        r = (ry & (TILE - 1)) * TILE  # = ry * TILE; the mask tells LLVM it is >= 0 (no wraparound)
                        if c_n == HALF:
                            _composite_lanes(st, r, c0, HALF, n_acc, mx, ca, cb, cc, op, sm, dy, xa_c, xb_c, used,
                                             col0, col1, col2)
                        else:
                            _composite_lanes(st, r, 0, TILE, n_acc, mx, ca, cb, cc, op, sm, dy, xa_c, xb_c, used,
                                             col0, col1, col2)
                        for d in range(3, D):  # further channels (depth), from the kept weights
                            col = colors[i, g, d]
                            a0 = _XC + 2 * TILE + (d - 3) * PLANE + r
                            for c in range(c0, c0 + c_n):
                                st[a0 + c] += col * st[_XC + TILE + c]
                if (k - start) % LIVE_EVERY == LIVE_EVERY - 1:
                    active = 0
                    for ry in range(th):
                        n = 0
                        for c in range(TILE):
                            n += 1 if st[2 * PLANE + ry * TILE + c] > np.float32(0.0) else 0
                        row_live[ry] = n
                        active += n
                    if active == 0:
                        break
            for y in range(py0, py1):
                for x in range(px0, px1):
                    j = (y - py0) * TILE + x - px0
                    for d in range(D):
                        image[i, y, x, d] = st[(3 + d) * PLANE + j] if d < 3 else st[_XC + 2 * TILE + (d - 3) * PLANE + j]
                    T_out[i, y, x] = st[j]
                    n_used[i, y, x] = np.int32(st[PLANE + j])
                    tile_used[job] = max(tile_used[job], n_used[i, y, x])
    return image, T_out, n_used, tile_used


@njit(inline="always", error_model="numpy")
def _geometry_at(st, c, mx, ca, cb, cc, op, dy, q, va):
    """Add column ``c``'s terms of the centre, conic and opacity gradients to their per-column sums, from
    exp(-sigma) where alpha is not clamped (``q``) and the gradient w.r.t. alpha (``va``)."""
    dx = mx - st[_BR + c]
    v_sigma = -op * q * va
    st[_BR + 6 * TILE + c] += v_sigma * (ca * dx + cb * dy)
    st[_BR + 7 * TILE + c] += v_sigma * (cb * dx + cc * dy)
    st[_BR + 8 * TILE + c] += np.float32(0.5) * v_sigma * dx * dx
    st[_BR + 9 * TILE + c] += v_sigma * dx * dy
    st[_BR + 10 * TILE + c] += np.float32(0.5) * v_sigma * dy * dy
    st[_BR + 11 * TILE + c] += q * va


@njit(inline="always", error_model="numpy")
def _gradient_lanes(st, r, c0, n, local_f, mx, ca, cb, cc, op, sm, dy, xa_c, xb_c, col0, col1, col2, geometry):
    """The backward's first pass over columns [c0, c0 + n) of tile row offset ``r`` for one Gaussian: alpha,
    the transmittance in front of it, the first three channels' gradients and colour-behind buffers, the
    per-pixel terms, and with ``geometry`` (a literal: no channels beyond three) the centre, conic and opacity
    gradients in the same pass (fused: 1.19x faster backward on lego views than a second pass). Flat state and
    constant trip count as in ``_composite_lanes``."""
    for c in range(c0, c0 + n):
        j = r + c
        alpha, vis, ok = _alpha(mx, ca, cb, cc, op, sm, st[_BR + c], dy, xa_c, xb_c)
        ok = ok & (local_f < st[PLANE + j])
        alpha = alpha if ok else np.float32(0.0)
        ra = np.float32(1.0) / (np.float32(1.0) - alpha)
        Tp = st[j] * ra  # transmittance in front of this Gaussian (unchanged where not drawn)
        st[j] = Tp
        m = np.float32(1.0) if ok else np.float32(0.0)
        wgt = alpha * Tp
        tm = m * Tp
        ram = m * ra
        va = m * st[2 * PLANE + j] * ra
        vc = st[6 * PLANE + j]
        st[_BR + 12 * TILE + c] += wgt * vc
        va += (col0 * tm - st[3 * PLANE + j] * ram) * vc
        st[3 * PLANE + j] += col0 * wgt
        vc = st[7 * PLANE + j]
        st[_BR + 13 * TILE + c] += wgt * vc
        va += (col1 * tm - st[4 * PLANE + j] * ram) * vc
        st[4 * PLANE + j] += col1 * wgt
        vc = st[8 * PLANE + j]
        st[_BR + 14 * TILE + c] += wgt * vc
        va += (col2 * tm - st[5 * PLANE + j] * ram) * vc
        st[5 * PLANE + j] += col2 * wgt
        st[_BR + TILE + c] = wgt
        st[_BR + 2 * TILE + c] = tm
        st[_BR + 3 * TILE + c] = ram
        st[_BR + 4 * TILE + c] = va
        # alpha depends on sigma and opacity only where it is not clamped
        q = m * vis if op * vis <= np.float32(ALPHA_MAX) else np.float32(0.0)
        st[_BR + 5 * TILE + c] = q
        if geometry:  # no channels beyond three: the geometry gradients in the same pass
            _geometry_at(st, c, mx, ca, cb, cc, op, dy, q, va)


@njit(inline="always", error_model="numpy")
def _geometry_lanes(st, c0, n, mx, ca, cb, cc, op, dy):
    """The backward's last pass over columns [c0, c0 + n) of a row when there are channels beyond three (their
    terms complete the gradient w.r.t. alpha first): the gradients of the centre, the conic and the opacity,
    summed per tile column."""
    for c in range(c0, c0 + n):
        _geometry_at(st, c, mx, ca, cb, cc, op, dy, st[_BR + 5 * TILE + c], st[_BR + 4 * TILE + c])


@njit(inline="always")
def _lane_sum(st, at, n):
    """Sum of the per-column partial sums ``st[at:at + n]`` in column order (``n`` a literal: fully unrolled)."""
    total = np.float32(0.0)
    for c in range(n):
        total += st[at + c]
    return total


@njit(inline="always")
def _store_sums(st, c0, n, k, D, ex_lanes, g_xy, g_conic, g_color, g_opacity):
    """Write (tile, Gaussian) pair ``k``'s gradients: the per-column partial sums over the pass's columns
    [c0, c0 + n) (the row's other columns hold zeros, which would add nothing)."""
    g_xy[k, 0] = _lane_sum(st, _BR + 6 * TILE + c0, n)
    g_xy[k, 1] = _lane_sum(st, _BR + 7 * TILE + c0, n)
    g_conic[k, 0] = _lane_sum(st, _BR + 8 * TILE + c0, n)
    g_conic[k, 1] = _lane_sum(st, _BR + 9 * TILE + c0, n)
    g_conic[k, 2] = _lane_sum(st, _BR + 10 * TILE + c0, n)
    g_opacity[k] = _lane_sum(st, _BR + 11 * TILE + c0, n)
    for d in range(D):
        g_color[k, d] = _lane_sum(st, (_BR + (12 + d) * TILE if d < 3 else ex_lanes + (d - 3) * TILE) + c0, n)


@njit(cache=True, parallel=True, fastmath={"nnan", "ninf", "nsz", "contract"}, error_model="numpy")
def _backward(means2d, conics, colors, opacities, radii, s_max, offsets, ids, jobs, bounds, T_final, n_used, v_image,
              v_alpha, width, height, tiles_x, tiles_y):
    """Back-to-front gradient pass (3DGS style: T recovered by division, colour behind kept in a buffer).

    Args: forward inputs (``jobs`` / ``bounds`` scheduled on the forward's ``tile_used``), ``T_final`` /
        ``n_used`` from ``_forward``, v_image [I,H,W,D], v_alpha [I,H,W]
        (gradients of the loss w.r.t. the image without background and w.r.t. alpha = 1 - T_final).
    Returns: per-intersection gradients g_xy [n_isect,2], g_conic [n_isect,3], g_color [n_isect,D],
        g_opacity [n_isect], summed per Gaussian by ``_reduce``.

    Like the forward, a Gaussian is handled one tile row at a time in passes over the row's columns (one half
    when its box lies inside it) with a constant trip count and no reductions, on one flat float32 state per
    tile: planes T, last (n_used), T_final * v_alpha, three colour-behind buffers, three image-gradient planes;
    then rows: pixel centres, the per-pixel terms (alpha T, T where drawn, 1 / (1 - alpha) where drawn, the
    gradient w.r.t. alpha, exp(-sigma) where alpha is not clamped), the per-column partial sums of the
    Gaussian's gradients (x, y, conic a, b, c, opacity, three colours); channels beyond three after those, with
    their own passes. The partial sums are added over the columns once per (tile, Gaussian). Pixels a Gaussian
    does not reach (an edge tile's extra pixels included) contribute exact zeros.
    """
    I, N, D = colors.shape
    extra = max(D - 3, 0)
    ex_lanes = _BR + 15 * TILE  # per-column sums of channels beyond three, then their buffer and gradient planes
    ex_planes = ex_lanes + extra * TILE
    n_tiles = tiles_x * tiles_y
    n_isect = ids.shape[0]
    g_xy = np.zeros((n_isect, 2), np.float32)
    g_conic = np.zeros((n_isect, 3), np.float32)
    g_color = np.zeros((n_isect, D), np.float32)
    g_opacity = np.zeros(n_isect, np.float32)
    for w in prange(bounds.shape[0] - 1):  # one worker per thread, its tiles from ``_schedule``
        st = np.empty(ex_planes + 2 * extra * PLANE, np.float32)
        row_last = np.empty(TILE, np.int64)  # per row: the largest n_used (Gaussians from there on are not drawn)
        for q in range(bounds[w], bounds[w + 1]):
            job = jobs[q]
            i, px0, py0, px1, py1 = _tile_rect(job, n_tiles, tiles_x, TILE, width, height)
            th = py1 - py0
            st[:] = np.float32(0.0)
            st[:PLANE] = np.float32(1.0)  # T
            for c in range(TILE):
                st[_BR + c] = np.float32(px0 + c) + np.float32(0.5)
            row_last[:] = 0
            max_last = 0
            for y in range(py0, py1):
                for x in range(px0, px1):
                    j = (y - py0) * TILE + x - px0
                    st[j] = T_final[i, y, x]
                    st[PLANE + j] = np.float32(n_used[i, y, x])
                    st[2 * PLANE + j] = T_final[i, y, x] * v_alpha[i, y, x]
                    for d in range(D):
                        at = (6 + d) * PLANE if d < 3 else ex_planes + (extra + d - 3) * PLANE
                        st[at + j] = v_image[i, y, x, d]
                    max_last = max(max_last, n_used[i, y, x])
                    row_last[y - py0] = max(row_last[y - py0], n_used[i, y, x])
            start = offsets[job]
            for k in range(start + max_last - 1, start - 1, -1):
                local = k - start
                local_f = np.float32(local)
                g = ids[k]
                mx, my, ca, cb, cc, op, sm = _gaussian(means2d, conics, opacities, s_max, i, g)
                xa, xb = _pixel_span(mx, radii[i, g, 0], px0, px1)
                ya, yb = _pixel_span(my, radii[i, g, 1], py0, py1)
                if xa >= xb:
                    continue
                xa_c = np.float32(xa) + np.float32(0.5)
                xb_c = np.float32(xb) + np.float32(0.5)
                ya, yb = _strip_rows(mx, my, ca, cb, cc, sm, xa, xb, ya, yb)
                if ya >= yb:  # the tile's part of the box misses the ellipse: the pair's slot stays zero
                    continue
                c0, c_n = _lanes(xa - px0, xb - px0)
                col0 = colors[i, g, 0] if D > 0 else np.float32(0.0)
                col1 = colors[i, g, 1] if D > 1 else np.float32(0.0)
                col2 = colors[i, g, 2] if D > 2 else np.float32(0.0)
                st[_BR + 6 * TILE:ex_planes] = np.float32(0.0)  # the per-column sums
                for y in range(ya, yb):
                    ry = y - py0
                    if local >= row_last[ry]:
                        continue
                    dy = my - (np.float32(y) + np.float32(0.5))
                    r = (ry & (TILE - 1)) * TILE  # = ry * TILE; the mask tells LLVM it is >= 0 (no wraparound)
                    if D <= 3 and c_n == HALF:
                        _gradient_lanes(st, r, c0, HALF, local_f, mx, ca, cb, cc, op, sm, dy, xa_c, xb_c, col0, col1,
                                        col2, True)
                        continue
                    if D <= 3:
                        _gradient_lanes(st, r, 0, TILE, local_f, mx, ca, cb, cc, op, sm, dy, xa_c, xb_c, col0, col1,
                                        col2, True)
                        continue
                    _gradient_lanes(st, r, c0, c_n, local_f, mx, ca, cb, cc, op, sm, dy, xa_c, xb_c, col0, col1,
                                    col2, False)
                    for d in range(3, D):  # further channels (depth)
                        col = colors[i, g, d]
                        lane = ex_lanes + (d - 3) * TILE
                        b_at = ex_planes + (d - 3) * PLANE + r
                        v_at = ex_planes + (extra + d - 3) * PLANE + r
                        for c in range(c0, c0 + c_n):
                            vc = st[v_at + c]
                            st[lane + c] += st[_BR + TILE + c] * vc
                            st[_BR + 4 * TILE + c] += (col * st[_BR + 2 * TILE + c] - st[b_at + c]
                                                       * st[_BR + 3 * TILE + c]) * vc
                            st[b_at + c] += col * st[_BR + TILE + c]
                    _geometry_lanes(st, c0, c_n, mx, ca, cb, cc, op, dy)
                if c_n == HALF:
                    _store_sums(st, c0, HALF, k, D, ex_lanes, g_xy, g_conic, g_color, g_opacity)
                else:
                    _store_sums(st, 0, TILE, k, D, ex_lanes, g_xy, g_conic, g_color, g_opacity)
    return g_xy, g_conic, g_color, g_opacity


@njit(cache=True)
def _reduce(offsets, ids, n_tiles, N, g_xy, g_conic, g_color, g_opacity):
    """Sum per-intersection gradients per Gaussian: [I,N,2], [I,N,3], [I,N,D], [I,N] (serial, in tile order: the
    same bits on any number of threads; a version with each thread owning a range of Gaussians and walking all the
    slots was slower on lego, 0.81 vs 0.72 ms per step on two threads)."""
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
        arrays = (*arrays, _log_thresholds(arrays[3]))
        with stage("rasterize: tile binning + depth sort"):
            # one fill band: with n bands each thread walks the whole depth order (n x the CPU time, no wall
            # time gained at these image sizes; session 25); the counting stays parallel
            offsets, ids = _bin_gaussians(arrays[0], arrays[4], _np(depths), tile_size, tiles_x, tiles_y, 1)
            jobs, bounds = _schedule(np.diff(offsets), _workers(len(offsets) - 1))
        with stage("rasterize: composite (forward)"):
            image, T, n_used, tile_used = _forward(*arrays, offsets, ids, jobs, bounds, width, height, tiles_x,
                                                   tiles_y)
        ctx.state = (arrays, offsets, ids, T, n_used, tile_used, width, height, tile_size, tiles_x, tiles_y)
        ctx.device = means2d.device
        alpha = 1.0 - torch.from_numpy(T)
        return torch.from_numpy(image).to(means2d.device), alpha[..., None].to(means2d.device)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, v_image, v_alpha):
        arrays, offsets, ids, T, n_used, tile_used, width, height, tile_size, tiles_x, tiles_y = ctx.state
        N = arrays[0].shape[1]
        from reconstruction.jit import first_call

        with first_call("raster_cpu_backward", "the CPU splatting kernels' backward pass", __file__, "_backward"):
            v_img, v_a = _np(v_image), _np(v_alpha[..., 0])
            with stage("rasterize: backward"):
                jobs, bounds = _schedule(tile_used, _workers(len(tile_used)))
                grads = _backward(*arrays, offsets, ids, jobs, bounds, T, n_used, v_img, v_a, width, height,
                                  tiles_x, tiles_y)
            with stage("rasterize: per-Gaussian gradient sums"):
                v_xy, v_conic, v_color, v_opacity = _reduce(offsets, ids, tiles_x * tiles_y, N, *grads)
        out = [torch.from_numpy(v).to(ctx.device) for v in (v_xy, v_conic, v_color, v_opacity)]
        return (*out, None, None, None, None, None)


def rasterize_to_pixels(means2d, conics, colors, opacities, radii, depths, width, height, tile_size=16):
    """Composite projected Gaussians. Shapes as ``RasterizeCPU``; returns (image [I,H,W,D], alpha [I,H,W,1])."""
    from reconstruction.jit import first_call

    if tile_size != TILE:
        raise ValueError(f"the cpu rasterizer's kernels are compiled for {TILE}-pixel tiles, got tile_size={tile_size}")

    with first_call("raster_cpu", "the CPU splatting kernels", __file__, "_forward"):
        return RasterizeCPU.apply(means2d, conics, colors, opacities, radii, depths, width, height, tile_size)
