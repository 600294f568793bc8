"""The cpu rasterizer's kernels on hand-built 2D Gaussians: its exp, the early rejection of pixels where alpha stays
under 1/255 inside a Gaussian's box, and the rows it skips (finished pixels in the forward, pixels that end before a
Gaussian in the backward), each against the torch reference in values and gradients."""

import math

import numpy as np
import pytest
import torch
from numba import njit

from reconstruction import raster_cpu
from reconstruction.raster_torch import rasterize_to_pixels as reference

W, H = 40, 36  # partial tiles in both directions


@njit(cache=False)
def _exp_neg_all(s):
    out = np.empty_like(s)
    for k in range(s.size):
        out[k] = raster_cpu._exp_neg(s[k])
    return out


def test_exp_neg_matches_exp():
    s = np.linspace(0.0, raster_cpu.S_CLAMP, 200_001).astype(np.float32)
    exact = np.exp(-s.astype(np.float64))
    rel = np.abs(_exp_neg_all(s).astype(np.float64) - exact) / exact
    assert rel.max() < 2e-7  # float32 rounding is 6e-8
    assert _exp_neg_all(np.array([0.0], np.float32))[0] == 1.0


def _gaussians_2d(rng, n, centre_lo, centre_hi, sigma_lo, sigma_hi, opacity, box_scale):
    """n Gaussians with random centres, axis scales and correlation; radii ``box_scale`` x the 1-sigma extents
    (3.5 covers every pixel with alpha >= 1/255, which the torch reference's row bands assume)."""
    means = rng.uniform(centre_lo, centre_hi, (n, 2))
    sx, sy = rng.uniform(sigma_lo, sigma_hi, n), rng.uniform(sigma_lo, sigma_hi, n)
    rho = rng.uniform(-0.7, 0.7, n)
    det = (sx * sy) ** 2 * (1 - rho ** 2)
    conics = np.stack([sy ** 2 / det, -rho * sx * sy / det, sx ** 2 / det], axis=1)
    radii = np.ceil(box_scale * np.stack([sx, sy], axis=1))
    return means, conics, radii, np.broadcast_to(np.asarray(opacity, float), (n,))


def _scene():
    """Front to back: opaque Gaussians (some alpha-clamped at the centre) that finish pixels in the upper half;
    faint wide ones whose boxes (10 sigma) reach many tiles where their alpha is under 1/255; ones dimmer than
    1/255 everywhere (listed in tiles, never drawn); then ordinary ones over the whole image."""
    rng = np.random.default_rng(3)
    parts = [_gaussians_2d(rng, 120, (0, 0), (W, H / 2), 2.0, 5.0, rng.uniform(0.9, 1.0, 120), 3.5),
             _gaussians_2d(rng, 12, (0, 0), (W, H), 1.5, 4.0, 0.02, 10.0),
             _gaussians_2d(rng, 6, (0, 0), (W, H), 2.0, 6.0, 0.003, 4.0),
             _gaussians_2d(rng, 80, (0, 0), (W, H), 0.8, 3.0, rng.uniform(0.1, 0.9, 80), 3.5)]
    means, conics, radii, opac = (np.concatenate([p[k] for p in parts]) for k in range(4))
    n = len(means)
    t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)[None]  # noqa: E731
    colors = torch.rand(1, n, 3, generator=torch.Generator().manual_seed(4))
    return t(means), t(conics), colors, t(opac), t(radii).to(torch.int32), t(np.arange(n) + 1.0)


def _render(fn, scene):
    means2d, conics, colors, opac, radii, depths = scene
    x = [a.clone().requires_grad_() for a in (means2d, conics, colors, opac)]
    img, alpha = fn(*x, radii, depths, W, H)
    g = torch.Generator().manual_seed(5)
    ((img * torch.rand(img.shape, generator=g)).sum() + (alpha * torch.rand(alpha.shape, generator=g)).sum()).backward()
    return img.detach(), alpha.detach(), [a.grad for a in x]


def test_early_rejection_and_skipped_rows_equal_reference():
    scene = _scene()
    img_c, a_c, g_c = _render(raster_cpu.rasterize_to_pixels, scene)
    img_t, a_t, g_t = _render(reference, scene)
    assert (a_t[0, :H // 4] > 0.999).float().mean() > 0.5, "the opaque layer must finish upper pixels"
    assert (a_t[0, H // 2:] < 0.99).float().mean() > 0.3, "the lower half must stay partly transparent"
    assert torch.allclose(img_c, img_t, atol=1e-5) and torch.allclose(a_c, a_t, atol=1e-5)
    for name, a, b in zip(["means2d", "conics", "colors", "opacities"], g_c, g_t):
        scale = b.abs().max()
        assert torch.allclose(a, b, atol=2e-4 * scale, rtol=1e-3), f"{name}: max diff {(a - b).abs().max()} / {scale}"
    dim = slice(132, 138)  # the Gaussians dimmer than 1/255: listed in tiles, no contribution, no gradient
    assert (g_c[2][0, dim] == 0).all() and (g_c[3][0, dim] == 0).all()
    faint = slice(120, 132)
    assert (g_c[3][0, faint] != 0).sum() >= 4, "faint Gaussians are drawn near their centres (where not hidden)"


@pytest.mark.parametrize("channels", [1, 2, 4, 5])
def test_channel_counts_equal_reference(channels):
    """The kernels blend the first three channels inside the pixel pass (missing ones are zero planes) and any
    further ones (a depth channel) in their own passes: every count matches the reference in values and
    gradients, on a scene with partial edge tiles."""
    means2d, conics, _, opac, radii, depths = _scene()
    colors = torch.rand(1, means2d.shape[1], channels, generator=torch.Generator().manual_seed(6)) * 3
    scene = (means2d, conics, colors, opac, radii, depths)
    img_c, a_c, g_c = _render(raster_cpu.rasterize_to_pixels, scene)
    img_t, a_t, g_t = _render(reference, scene)
    assert img_c.shape == (1, H, W, channels)
    assert torch.allclose(img_c, img_t, atol=3e-5) and torch.allclose(a_c, a_t, atol=1e-5)
    for name, a, b in zip(["means2d", "conics", "colors", "opacities"], g_c, g_t):
        scale = b.abs().max()
        assert torch.allclose(a, b, atol=2e-4 * scale, rtol=1e-3), f"{name}: max diff {(a - b).abs().max()} / {scale}"


def test_other_tile_sizes_are_refused():
    means2d, conics, colors, opac, radii, depths = _scene()
    with pytest.raises(ValueError, match="16-pixel tiles"):
        raster_cpu.rasterize_to_pixels(means2d, conics, colors, opac, radii, depths, W, H, tile_size=8)


def _tile_lists_reference(means2d, radii, depths, tiles_x, tiles_y):
    """Per image and tile, the Gaussians whose box touches the tile, front to back (equal depths in index order)."""
    lists = []
    for i in range(depths.shape[0]):
        order = sorted((g for g in range(depths.shape[1]) if (radii[i, g] > 0).all()), key=lambda g: depths[i, g])
        for ty in range(tiles_y):
            for tx in range(tiles_x):
                x0, y0 = means2d[i, :, 0] - radii[i, :, 0], means2d[i, :, 1] - radii[i, :, 1]
                x1, y1 = means2d[i, :, 0] + radii[i, :, 0], means2d[i, :, 1] + radii[i, :, 1]
                lists.append([g for g in order if x1[g] > 16 * tx and x0[g] < 16 * (tx + 1)
                              and y1[g] > 16 * ty and y0[g] < 16 * (ty + 1)])
    return lists


@pytest.mark.parametrize("n_threads", [1, 3])
def test_tile_lists_equal_reference(n_threads):
    """The binning (counted per chunk of Gaussians, filled per band of tile rows: ``n_threads`` of them) gives
    each tile the Gaussians its box touches in depth order, on two images with culled Gaussians, equal depths and
    boxes past the image edges."""
    rng = np.random.default_rng(7)
    I, N, tiles_x, tiles_y = 2, 3000, 5, 4
    means2d = rng.uniform(-20, 100, (I, N, 2)).astype(np.float32)
    radii = rng.integers(0, 30, (I, N, 2)).astype(np.int32)  # 0: culled
    depths = rng.integers(1, 40, (I, N)).astype(np.float32)  # many ties
    depths[0, :5] = -1.0  # negative depths sort first
    offsets, ids = raster_cpu._bin_gaussians(means2d, radii, depths, 16, tiles_x, tiles_y, n_threads)
    got = [ids[offsets[t]:offsets[t + 1]].tolist() for t in range(I * tiles_x * tiles_y)]
    assert got == _tile_lists_reference(means2d, radii, depths, tiles_x, tiles_y)
    assert sum(map(len, got)) > N  # boxes span several tiles


def test_gradient_sums_equal_numpy():
    """Per-Gaussian sums of the per-(tile, Gaussian) gradient slots equal numpy's ``add.at``."""
    rng = np.random.default_rng(8)
    N, n_tiles, K = 500, 12, 4000
    ids = rng.integers(0, N, K).astype(np.int32)
    offsets = np.concatenate([[0], np.sort(rng.integers(0, K, n_tiles - 1)), [K]]).astype(np.int64)
    grads = (rng.random((K, 2), np.float32), rng.random((K, 3), np.float32), rng.random((K, 4), np.float32),
             rng.random(K, np.float32))
    sums = raster_cpu._reduce(offsets, ids, n_tiles, N, *grads)
    for got, g in zip(sums, grads):
        want = np.zeros((N,) + g.shape[1:], np.float64)
        np.add.at(want, ids, g)
        assert got.shape == (1,) + want.shape and np.allclose(got[0], want, rtol=1e-5)


@njit(cache=False)
def _rows_check(means, conics, opac, boxes):
    """For each Gaussian and its [xa, xb) x [ya, yb) piece of a tile: the rows ``_strip_rows`` keeps, and the
    number of pixels in the rows it drops that ``_alpha`` would draw (must be 0)."""
    n = means.shape[0]
    kept = np.zeros(n, np.int64)
    drawn_in_dropped = np.zeros(n, np.int64)
    for g in range(n):
        mx, my = means[g, 0], means[g, 1]
        ca, cb, cc = conics[g, 0], conics[g, 1], conics[g, 2]
        op = opac[g]
        sm = np.float32(math.log(np.float64(op) / raster_cpu.ALPHA_MIN))
        xa, xb, ya, yb = boxes[g, 0], boxes[g, 1], boxes[g, 2], boxes[g, 3]
        a, b = raster_cpu._strip_rows(mx, my, ca, cb, cc, sm, xa, xb, ya, yb)
        kept[g] = max(b - a, 0)
        for y in range(ya, yb):
            if a <= y < b:
                continue
            dy = my - (np.float32(y) + np.float32(0.5))
            for x in range(xa, xb):
                alpha, _, ok = raster_cpu._alpha(mx, ca, cb, cc, op, sm, np.float32(x) + np.float32(0.5), dy,
                                                 np.float32(xa) + np.float32(0.5), np.float32(xb) + np.float32(0.5))
                if ok or alpha != 0:
                    drawn_in_dropped[g] += 1
    return kept, drawn_in_dropped


def test_rows_outside_the_ellipse_are_skipped_exactly():
    """``_strip_rows`` drops only rows of a Gaussian's tile piece where no pixel would be drawn (so skipping them
    changes no bit), on 60,000 Gaussians from round to 400:1 thin at every angle, with the 2D blur's 0.3 px², at
    opacities from just over 1/255 to 1, over random 16-pixel pieces of their boxes; and it drops many rows there
    (thin tilted Gaussians), so the test is not vacuous. A conic that is not positive keeps the whole box."""
    rng = np.random.default_rng(11)
    n = 60_000
    s1, s2 = np.exp(rng.uniform(np.log(0.03), np.log(12.0), (2, n)))
    angle = rng.uniform(0, np.pi, n)
    cos, sin = np.cos(angle), np.sin(angle)
    cxx = cos ** 2 * s1 ** 2 + sin ** 2 * s2 ** 2 + 0.3
    cyy = sin ** 2 * s1 ** 2 + cos ** 2 * s2 ** 2 + 0.3
    cxy = cos * sin * (s1 ** 2 - s2 ** 2)
    det = cxx * cyy - cxy ** 2
    conics = np.stack([cyy / det, -cxy / det, cxx / det], 1).astype(np.float32)
    opac = np.exp(rng.uniform(np.log(1.001 / 255), 0.0, n)).astype(np.float32)
    means = rng.uniform(0, 64, (n, 2)).astype(np.float32)
    # a 16-pixel tile piece of each Gaussian's 4-sigma box: the tile at a random offset near the centre
    r = np.ceil(4 * np.sqrt(np.stack([cxx, cyy], 1))).astype(np.int64)
    tile = (np.floor((means + rng.uniform(-1, 1, (n, 2)) * r) / 16) * 16).astype(np.int64)
    lo = np.maximum(tile, np.floor(means - r).astype(np.int64))
    hi = np.minimum(tile + 16, np.ceil(means + r).astype(np.int64) + 1)
    boxes = np.stack([lo[:, 0], np.maximum(hi[:, 0], lo[:, 0]), lo[:, 1], np.maximum(hi[:, 1], lo[:, 1])], 1)
    kept, drawn = _rows_check(means, conics, opac, boxes)
    assert drawn.sum() == 0, f"{(drawn > 0).sum()} Gaussians lost drawn pixels"
    rows = np.maximum(boxes[:, 3] - boxes[:, 2], 0)
    assert kept.sum() < 0.7 * rows.sum() and (kept == 0).sum() > n // 20, "few rows skipped: the test is vacuous"
    flat = np.array([[0.0, 0.0, 0.5]], np.float32)  # a = 0: no chords, the box stays
    kept, _ = _rows_check(means[:1], flat, opac[:1], np.array([[0, 16, 3, 9]]))
    assert kept[0] == 6
