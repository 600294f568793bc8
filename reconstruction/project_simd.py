"""The projection + SH kernels of ``project_cpu`` (SH degree -1, i.e. no colours, to 3) as code that LLVM compiles to
SIMD instructions across Gaussians: the formulas and operation order of the scalar kernels they replaced
(``tests/reconstruction/project_reference.py``), whose outputs and gradients they equal bit for bit (tested), at
~1/3 (degree <= 1) to ~1/2 (degree 3) of their cost.

Why the scalar kernels did not vectorise: each Gaussian's work ran camera by camera with branches (culling, the
fov clamp, skipped gradients, the SH loops over a scratch array), and a loop over Gaussians reading a dozen
strided input arrays and writing a dozen output arrays needs more run-time alias checks than LLVM's vectoriser
allows. Here every chunk of ``CHUNK`` Gaussians is first copied into one flat scratch buffer of planes (one plane
per scalar field, at constant offsets, so LLVM proves the planes disjoint), the per-Gaussian work runs over the
planes with branches written as selects (``x if cond else y``), and the results are copied out. ``math.log``
(no vector form without Intel SVML) stays in its own scalar loop. Higher SH degrees keep the scalar kernels.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from reconstruction.project_cpu import ALPHA_MIN, CHUNK, SH_C0, SH_C1, _camera

# Planes of one chunk's buffer, every offset a constant (LLVM then proves the planes disjoint): the SH
# coefficients k >= 1 come last, K - 1 of them per channel (K: coefficients per channel the kernel handles, 4 for
# degree <= 1, 16 for degrees 2-3), so only the buffer's length depends on K.
# Forward: inputs, outputs, then coefficient k >= 1 of channel d at _SHN + 3 * (k - 1) + d.
_MU, _Q, _S, _OP, _EXT, _SH0 = 0, 3, 7, 10, 11, 12
_RX, _RY, _MX, _MY, _DEPTH, _CA, _CB, _CC, _COL = 15, 16, 17, 18, 19, 20, 21, 22, 23
_SHN = 26
# Backward: inputs, one camera's output gradients, the accumulators over cameras, the final gradients, then per
# coefficient k >= 1 its three channels at _BSHN + 6 * (k - 1) + d and their gradients 3 planes further.
_BSH0 = 10
_VX, _VY, _VD, _VA, _VB, _VC, _VCOL = 13, 14, 15, 16, 17, 18, 19
_G00, _G01, _G02, _G11, _G12, _G22, _DMU, _VSH0, _VQUATS, _VSCALES = 22, 23, 24, 25, 26, 27, 28, 31, 34, 38
_BSHN = 41


@njit(cache=True)
def _view(viewmats, c):
    """The first three rows of camera c's world-to-camera matrix as 12 scalars (row-major)."""
    V = viewmats[c]
    return (V[0, 0], V[0, 1], V[0, 2], V[0, 3], V[1, 0], V[1, 1], V[1, 2], V[1, 3],
            V[2, 0], V[2, 1], V[2, 2], V[2, 3])


@njit(inline="always")
def _load(b, lo, m, means, quats, scales, sh0, shN, sh_degree, ncoef, sh0_plane, shN_plane, stride, K):
    """Copy Gaussians lo .. lo + m - 1 (means, scales, quaternions, SH coefficients) into the planes, plane by
    plane: the first ``ncoef`` of shN's coefficients (those the active degree uses), zeros for the rest up to
    K - 1 (adding their zero terms leaves every sum as the scalar kernel's shorter one); coefficient k >= 1 at
    ``shN_plane + stride * (k - 1)``."""
    for j in range(3):
        for i in range(m):
            b[(_MU + j) * CHUNK + i] = means[lo + i, j]
        for i in range(m):
            b[(_S + j) * CHUNK + i] = scales[lo + i, j]
    for j in range(4):
        for i in range(m):
            b[(_Q + j) * CHUNK + i] = quats[lo + i, j]
    if sh_degree >= 0:
        for d in range(3):
            for i in range(m):
                b[(sh0_plane + d) * CHUNK + i] = sh0[lo + i, 0, d]
    for k in range(K - 1):
        for d in range(3):
            p = (shN_plane + stride * k + d) * CHUNK
            if k < ncoef:
                for i in range(m):
                    b[p + i] = shN[lo + i, k, d]
            else:
                for i in range(m):
                    b[p + i] = np.float32(0.0)


@njit(inline="always")
def _frame(b, i):
    """Gaussian i's normalised quaternion (w, x, y, z), its clamped norm, the rotation R (9, row-major), the scales
    and M = R diag(s) (9), from the planes: the reference's ``_rotation`` and ``_covariance``."""
    q0, q1, q2, q3 = b[_Q * CHUNK + i], b[(_Q + 1) * CHUNK + i], b[(_Q + 2) * CHUNK + i], b[(_Q + 3) * CHUNK + i]
    one, two = np.float32(1.0), np.float32(2.0)
    norm = np.float32(max(math.sqrt(q0 * q0 + q1 * q1 + q2 * q2 + q3 * q3), np.float32(1e-12)))
    w, x, y, z = q0 / norm, q1 / norm, q2 / norm, q3 / norm
    R0, R1, R2 = one - two * (y * y + z * z), two * (x * y - w * z), two * (x * z + w * y)
    R3, R4, R5 = two * (x * y + w * z), one - two * (x * x + z * z), two * (y * z - w * x)
    R6, R7, R8 = two * (x * z - w * y), two * (y * z + w * x), one - two * (x * x + y * y)
    s0, s1, s2 = b[_S * CHUNK + i], b[(_S + 1) * CHUNK + i], b[(_S + 2) * CHUNK + i]
    return (w, x, y, z, norm, R0, R1, R2, R3, R4, R5, R6, R7, R8, s0, s1, s2,
            R0 * s0, R1 * s1, R2 * s2, R3 * s0, R4 * s1, R5 * s2, R6 * s0, R7 * s1, R8 * s2)


@njit(inline="always")
def _cov2d(M, V, fx, fy, tz, txc, tyc, eps2d):
    """Sigma = M M^T (M: 9 scalars), then the reference's ``_covariance_2d`` with V (``_view``'s 12 scalars): the
    Jacobian rows a, b (times V), ua = Sigma a, ub = Sigma b and the 2D covariance (c00, c01, c11), 15 scalars."""
    M0, M1, M2, M3, M4, M5, M6, M7, M8 = M
    V00, V01, V02, _, V10, V11, V12, _, V20, V21, V22, _ = V
    S00, S01 = M0 * M0 + M1 * M1 + M2 * M2, M0 * M3 + M1 * M4 + M2 * M5
    S02, S11 = M0 * M6 + M1 * M7 + M2 * M8, M3 * M3 + M4 * M4 + M5 * M5
    S12, S22 = M3 * M6 + M4 * M7 + M5 * M8, M6 * M6 + M7 * M7 + M8 * M8
    j00, j02 = fx / tz, -fx * txc / (tz * tz)
    j11, j12 = fy / tz, -fy * tyc / (tz * tz)
    a0, a1, a2 = j00 * V00 + j02 * V20, j00 * V01 + j02 * V21, j00 * V02 + j02 * V22
    b0, b1, b2 = j11 * V10 + j12 * V20, j11 * V11 + j12 * V21, j11 * V12 + j12 * V22
    ua0, ua1, ua2 = S00 * a0 + S01 * a1 + S02 * a2, S01 * a0 + S11 * a1 + S12 * a2, S02 * a0 + S12 * a1 + S22 * a2
    ub0, ub1, ub2 = S00 * b0 + S01 * b1 + S02 * b2, S01 * b0 + S11 * b1 + S12 * b2, S02 * b0 + S12 * b1 + S22 * b2
    c00 = a0 * ua0 + a1 * ua1 + a2 * ua2 + eps2d
    c01 = a0 * ub0 + a1 * ub1 + a2 * ub2
    c11 = b0 * ub0 + b1 * ub1 + b2 * ub2 + eps2d
    return a0, a1, a2, b0, b1, b2, ua0, ua1, ua2, ub0, ub1, ub2, c00, c01, c11


@njit(inline="always")
def _bases(x, y, z, K):
    """The SH bases at the unit direction as the reference's ``_sh_bases`` stores them (float64 expressions rounded to
    float32): 16 values, those past K - 1 zero."""
    f = np.float32
    k4 = k5 = k6 = k7 = k8 = k9 = k10 = k11 = k12 = k13 = k14 = k15 = f(0.0)
    if K > 4:
        fB = -1.092548430592079 * z
        fA = 0.5462742152960395
        c1 = x * x - y * y
        s1 = 2.0 * x * y
        k4, k5, k6 = f(fA * s1), f(fB * y), f(0.9461746957575601 * z * z - 0.3153915652525201)
        k7, k8 = f(fB * x), f(fA * c1)
        fC = -2.285228997322329 * z * z + 0.4570457994644658
        fB3 = 1.445305721320277 * z
        fA3 = -0.5900435899266435
        c2 = x * c1 - y * s1
        s2 = x * s1 + y * c1
        k9, k10, k11 = f(fA3 * s2), f(fB3 * s1), f(fC * y)
        k12 = f(z * (1.865881662950577 * z * z - 1.119528997770346))
        k13, k14, k15 = f(fC * x), f(fB3 * c1), f(fA3 * c2)
    return (f(SH_C0), f(SH_C1 * y), f(-SH_C1 * z), f(SH_C1 * x), k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14,
            k15)


@njit(inline="always")
def _shade(kb, b, d, i, sh0_plane, shN_plane, stride, K):
    """Channel d's SH sum over the K bases ``kb`` and the coefficient planes, in the reference forward's order."""
    acc = np.float32(0.0)
    acc += kb[0] * b[(sh0_plane + d) * CHUNK + i]
    acc += kb[1] * b[(shN_plane + d) * CHUNK + i]
    acc += kb[2] * b[(shN_plane + stride + d) * CHUNK + i]
    acc += kb[3] * b[(shN_plane + 2 * stride + d) * CHUNK + i]
    if K > 4:
        acc += kb[4] * b[(shN_plane + 3 * stride + d) * CHUNK + i]
        acc += kb[5] * b[(shN_plane + 4 * stride + d) * CHUNK + i]
        acc += kb[6] * b[(shN_plane + 5 * stride + d) * CHUNK + i]
        acc += kb[7] * b[(shN_plane + 6 * stride + d) * CHUNK + i]
        acc += kb[8] * b[(shN_plane + 7 * stride + d) * CHUNK + i]
        acc += kb[9] * b[(shN_plane + 8 * stride + d) * CHUNK + i]
        acc += kb[10] * b[(shN_plane + 9 * stride + d) * CHUNK + i]
        acc += kb[11] * b[(shN_plane + 10 * stride + d) * CHUNK + i]
        acc += kb[12] * b[(shN_plane + 11 * stride + d) * CHUNK + i]
        acc += kb[13] * b[(shN_plane + 12 * stride + d) * CHUNK + i]
        acc += kb[14] * b[(shN_plane + 13 * stride + d) * CHUNK + i]
        acc += kb[15] * b[(shN_plane + 14 * stride + d) * CHUNK + i]
    return acc


@njit(cache=True, parallel=True, error_model="numpy")
def project_fwd_simd(means, quats, scales, opacities, sh0, shN, viewmats, Ks, campos, width, height, eps2d, near,
                     far, radius_clip, sh_degree):
    """Projection + SH of every Gaussian in every camera for ``sh_degree`` in (-1, 0, 1). Args: means [N,3],
    quats [N,4], scales [N,3], opacities [N], sh0 [N,1,3], shN [N,K-1,3] (f32); viewmats [C,4,4], Ks [C,3,3],
    campos [C,3]. Returns radii [C,N,2] i32, means2d [C,N,2], depths [C,N], conics [C,N,3], colors [C,N,3] (or
    [C,0,3] without SH)."""
    return _fwd(means, quats, scales, opacities, sh0, shN, viewmats, Ks, campos, width, height, eps2d, near, far,
                radius_clip, sh_degree, 4)


@njit(cache=True, parallel=True, error_model="numpy")
def project_fwd_simd3(means, quats, scales, opacities, sh0, shN, viewmats, Ks, campos, width, height, eps2d, near,
                      far, radius_clip, sh_degree):
    """``project_fwd_simd`` for ``sh_degree`` 2 or 3."""
    return _fwd(means, quats, scales, opacities, sh0, shN, viewmats, Ks, campos, width, height, eps2d, near, far,
                radius_clip, sh_degree, 16)


@njit(inline="always")
def _fwd(means, quats, scales, opacities, sh0, shN, viewmats, Ks, campos, width, height, eps2d, near, far,
         radius_clip, sh_degree, K):
    """The forward kernels' body for K SH coefficients per channel (a constant in each kernel)."""
    N = means.shape[0]
    C = viewmats.shape[0]
    radii = np.zeros((C, N, 2), np.int32)
    means2d = np.zeros((C, N, 2), np.float32)
    depths = np.zeros((C, N), np.float32)
    conics = np.zeros((C, N, 3), np.float32)
    colors = np.zeros((C, N if sh_degree >= 0 else 0, 3), np.float32)
    one, two, zero, half = np.float32(1.0), np.float32(2.0), np.float32(0.0), np.float32(0.5)
    tiny, det_min, inf = np.float32(1e-12), np.float32(1e-10), np.float32(np.inf)
    w_img, h_img = np.float32(width), np.float32(height)
    ncoef = min(shN.shape[1], (sh_degree + 1) * (sh_degree + 1) - 1)
    for chunk in prange((N + CHUNK - 1) // CHUNK):
        lo = chunk * CHUNK
        m = min(N, lo + CHUNK) - lo
        b = np.empty((_SHN + 3 * (K - 1)) * CHUNK, np.float32)
        _load(b, lo, m, means, quats, scales, sh0, shN, sh_degree, ncoef, _SH0, _SHN, 3, K)
        for i in range(m):
            n = lo + i
            op = opacities[n]
            b[_OP * CHUNK + i] = op
            b[_EXT * CHUNK + i] = min(math.sqrt(np.float32(2.0) * math.log(max(op, ALPHA_MIN) / ALPHA_MIN)),
                                      np.float32(3.33))
        for c in range(C):
            fx, fy, cx, cy, skew, lxp, lxn, lyp, lyn = _camera(Ks, c, width, height)
            V = _view(viewmats, c)
            V00, V01, V02, V03, V10, V11, V12, V13, V20, V21, V22, V23 = V
            px, py, pz = campos[c, 0], campos[c, 1], campos[c, 2]
            for i in range(m):  # the SIMD loop: planes in, planes out, no branches
                M = _frame(b, i)[17:]
                mu0, mu1, mu2 = b[_MU * CHUNK + i], b[(_MU + 1) * CHUNK + i], b[(_MU + 2) * CHUNK + i]
                tx = V00 * mu0 + V01 * mu1 + V02 * mu2 + V03
                ty = V10 * mu0 + V11 * mu1 + V12 * mu2 + V13
                depth = V20 * mu0 + V21 * mu1 + V22 * mu2 + V23
                in_depth = (depth > near) & (depth < far)
                tz = depth if in_depth else one
                txc = tz * min(max(tx / tz, -lxn), lxp)
                tyc = tz * min(max(ty / tz, -lyn), lyp)
                c00, c01, c11 = _cov2d(M, V, fx, fy, tz, txc, tyc, eps2d)[12:]
                mx = (fx * tx + skew * ty) / tz + cx
                my = (fy * ty) / tz + cy
                det = c00 * c11 - c01 * c01
                ds = max(det, det_min)
                ca, cb, cc = c11 / ds, -c01 / ds, c00 / ds
                extend = b[_EXT * CHUNK + i]
                rx = np.ceil(np.float32(extend * math.sqrt(max(c00, zero))))
                ry = np.ceil(np.float32(extend * math.sqrt(max(c11, zero))))
                valid = in_depth & (det > 0) & (b[_OP * CHUNK + i] >= ALPHA_MIN)
                valid = valid & ((rx > radius_clip) | (ry > radius_clip))
                valid = valid & (mx + rx > 0) & (mx - rx < w_img) & (my + ry > 0) & (my - ry < h_img)
                valid = valid & (abs(mx) < inf) & (abs(my) < inf) & (abs(ca) < inf) & (abs(cb) < inf) & (abs(cc) < inf)
                b[_RX * CHUNK + i] = rx if valid else zero
                b[_RY * CHUNK + i] = ry if valid else zero
                b[_MX * CHUNK + i] = mx
                b[_MY * CHUNK + i] = my
                b[_DEPTH * CHUNK + i] = depth
                b[_CA * CHUNK + i] = ca
                b[_CB * CHUNK + i] = cb
                b[_CC * CHUNK + i] = cc
                if sh_degree >= 0:  # loop-invariant: LLVM unswitches it
                    dx, dy, dz = mu0 - px, mu1 - py, mu2 - pz
                    dn = max(math.sqrt(dx * dx + dy * dy + dz * dz), tiny)
                    kb = _bases(dx / dn, dy / dn, dz / dn, K)
                    # the three channels written out: a loop over them here stops the vectoriser
                    b[_COL * CHUNK + i] = max(_shade(kb, b, 0, i, _SH0, _SHN, 3, K) + half, zero)
                    b[(_COL + 1) * CHUNK + i] = max(_shade(kb, b, 1, i, _SH0, _SHN, 3, K) + half, zero)
                    b[(_COL + 2) * CHUNK + i] = max(_shade(kb, b, 2, i, _SH0, _SHN, 3, K) + half, zero)
            for i in range(m):
                n = lo + i
                radii[c, n, 0] = np.int32(b[_RX * CHUNK + i])
                radii[c, n, 1] = np.int32(b[_RY * CHUNK + i])
                means2d[c, n, 0] = b[_MX * CHUNK + i]
                means2d[c, n, 1] = b[_MY * CHUNK + i]
                depths[c, n] = b[_DEPTH * CHUNK + i]
                conics[c, n, 0] = b[_CA * CHUNK + i]
                conics[c, n, 1] = b[_CB * CHUNK + i]
                conics[c, n, 2] = b[_CC * CHUNK + i]
                if sh_degree >= 0:
                    for d in range(3):
                        colors[c, n, d] = b[(_COL + d) * CHUNK + i]
    return radii, means2d, depths, conics, colors


@njit(inline="always")
def _shade_bwd(kb, b, d, i, vcol, sums, K):
    """Channel d of the SH gradient over the K bases ``kb``: where the clamp passes it (and ``vcol``
    is not 0), add the bases times ``vcol`` to the coefficients' gradient planes;
    returns ``sums`` (16: per basis, coefficient times ``vcol`` summed over channels) updated."""
    on = not ((_shade(kb, b, d, i, _BSH0, _BSHN, 6, K) + np.float32(0.5) < 0) | (vcol == 0))
    w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15 = sums
    j = (_VSH0 + d) * CHUNK + i
    b[j] = b[j] + kb[0] * vcol if on else b[j]
    w0 = w0 + b[(_BSH0 + d) * CHUNK + i] * vcol if on else w0
    j = (_BSHN + 3 + d) * CHUNK + i
    b[j] = b[j] + kb[1] * vcol if on else b[j]
    w1 = w1 + b[(_BSHN + 0 + d) * CHUNK + i] * vcol if on else w1
    j = (_BSHN + 9 + d) * CHUNK + i
    b[j] = b[j] + kb[2] * vcol if on else b[j]
    w2 = w2 + b[(_BSHN + 6 + d) * CHUNK + i] * vcol if on else w2
    j = (_BSHN + 15 + d) * CHUNK + i
    b[j] = b[j] + kb[3] * vcol if on else b[j]
    w3 = w3 + b[(_BSHN + 12 + d) * CHUNK + i] * vcol if on else w3
    if K > 4:
        j = (_BSHN + 21 + d) * CHUNK + i
        b[j] = b[j] + kb[4] * vcol if on else b[j]
        w4 = w4 + b[(_BSHN + 18 + d) * CHUNK + i] * vcol if on else w4
        j = (_BSHN + 27 + d) * CHUNK + i
        b[j] = b[j] + kb[5] * vcol if on else b[j]
        w5 = w5 + b[(_BSHN + 24 + d) * CHUNK + i] * vcol if on else w5
        j = (_BSHN + 33 + d) * CHUNK + i
        b[j] = b[j] + kb[6] * vcol if on else b[j]
        w6 = w6 + b[(_BSHN + 30 + d) * CHUNK + i] * vcol if on else w6
        j = (_BSHN + 39 + d) * CHUNK + i
        b[j] = b[j] + kb[7] * vcol if on else b[j]
        w7 = w7 + b[(_BSHN + 36 + d) * CHUNK + i] * vcol if on else w7
        j = (_BSHN + 45 + d) * CHUNK + i
        b[j] = b[j] + kb[8] * vcol if on else b[j]
        w8 = w8 + b[(_BSHN + 42 + d) * CHUNK + i] * vcol if on else w8
        j = (_BSHN + 51 + d) * CHUNK + i
        b[j] = b[j] + kb[9] * vcol if on else b[j]
        w9 = w9 + b[(_BSHN + 48 + d) * CHUNK + i] * vcol if on else w9
        j = (_BSHN + 57 + d) * CHUNK + i
        b[j] = b[j] + kb[10] * vcol if on else b[j]
        w10 = w10 + b[(_BSHN + 54 + d) * CHUNK + i] * vcol if on else w10
        j = (_BSHN + 63 + d) * CHUNK + i
        b[j] = b[j] + kb[11] * vcol if on else b[j]
        w11 = w11 + b[(_BSHN + 60 + d) * CHUNK + i] * vcol if on else w11
        j = (_BSHN + 69 + d) * CHUNK + i
        b[j] = b[j] + kb[12] * vcol if on else b[j]
        w12 = w12 + b[(_BSHN + 66 + d) * CHUNK + i] * vcol if on else w12
        j = (_BSHN + 75 + d) * CHUNK + i
        b[j] = b[j] + kb[13] * vcol if on else b[j]
        w13 = w13 + b[(_BSHN + 72 + d) * CHUNK + i] * vcol if on else w13
        j = (_BSHN + 81 + d) * CHUNK + i
        b[j] = b[j] + kb[14] * vcol if on else b[j]
        w14 = w14 + b[(_BSHN + 78 + d) * CHUNK + i] * vcol if on else w14
        j = (_BSHN + 87 + d) * CHUNK + i
        b[j] = b[j] + kb[15] * vcol if on else b[j]
        w15 = w15 + b[(_BSHN + 84 + d) * CHUNK + i] * vcol if on else w15
    return (w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15)


@njit(inline="always")
def _dir_grad(x, y, z, w, K):
    """The reference's ``_sh_dir_grad`` for degree 1 (K = 4) or 3 (K = 16; with zero sums past a lower degree's
    bases), its float64 sums rounded to float32: the colours' gradient w.r.t. the direction."""
    w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15 = w
    gx = gy = gz = 0.0
    gx += SH_C1 * w3
    gy += SH_C1 * w1
    gz -= SH_C1 * w2
    if K > 4:
        fB = -1.092548430592079
        fA = 0.5462742152960395
        gx += 2.0 * fA * (y * w4 + x * w8) + fB * z * w7
        gy += 2.0 * fA * (x * w4 - y * w8) + fB * z * w5
        gz += fB * (y * w5 + x * w7) + 2.0 * 0.9461746957575601 * z * w6
        fC = -2.285228997322329 * z * z + 0.4570457994644658
        dfC = -2.0 * 2.285228997322329 * z
        fB3 = 1.445305721320277
        fA3 = -0.5900435899266435
        sq = 3.0 * (x * x - y * y)
        xy6 = 6.0 * x * y
        gx += fA3 * (xy6 * w9 + sq * w15) + 2.0 * fB3 * z * (y * w10 + x * w14) + fC * w13
        gy += fA3 * (sq * w9 - xy6 * w15) + 2.0 * fB3 * z * (x * w10 - y * w14) + fC * w11
        gz += (fB3 * (2.0 * x * y * w10 + (x * x - y * y) * w14) + dfC * (y * w11 + x * w13)
               + (3.0 * 1.865881662950577 * z * z - 1.119528997770346) * w12)
    return np.float32(gx), np.float32(gy), np.float32(gz)


@njit(cache=True, parallel=True, error_model="numpy")
def project_bwd_simd(means, quats, scales, sh0, shN, viewmats, Ks, campos, width, height, eps2d, near, far,
                     sh_degree, v_means2d, v_depths, v_conics, v_colors):
    """Gradients of ``project_fwd_simd``'s outputs (v_means2d, v_depths, v_conics, v_colors) -> v_means [N,3],
    v_quats [N,4], v_scales [N,3], v_sh0 [N,1,3], v_shN [N,K-1,3], for ``sh_degree`` in (-1, 0, 1)."""
    return _bwd(means, quats, scales, sh0, shN, viewmats, Ks, campos, width, height, eps2d, near, far, sh_degree,
                v_means2d, v_depths, v_conics, v_colors, 4)


@njit(cache=True, parallel=True, error_model="numpy")
def project_bwd_simd3(means, quats, scales, sh0, shN, viewmats, Ks, campos, width, height, eps2d, near, far,
                      sh_degree, v_means2d, v_depths, v_conics, v_colors):
    """``project_bwd_simd`` for ``sh_degree`` 2 or 3."""
    return _bwd(means, quats, scales, sh0, shN, viewmats, Ks, campos, width, height, eps2d, near, far, sh_degree,
                v_means2d, v_depths, v_conics, v_colors, 16)


@njit(inline="always")
def _bwd(means, quats, scales, sh0, shN, viewmats, Ks, campos, width, height, eps2d, near, far, sh_degree,
         v_means2d, v_depths, v_conics, v_colors, K):
    """The backward kernels' body for K SH coefficients per channel. A Gaussian whose output gradients are all 0
    in a camera adds nothing for it (the reference skips it)."""
    N = means.shape[0]
    C = viewmats.shape[0]
    v_means = np.zeros((N, 3), np.float32)
    v_quats = np.zeros((N, 4), np.float32)
    v_scales = np.zeros((N, 3), np.float32)
    v_sh0 = np.zeros(sh0.shape, np.float32)
    v_shN = np.zeros(shN.shape, np.float32)
    zero, one, two = np.float32(0.0), np.float32(1.0), np.float32(2.0)
    tiny, det_min = np.float32(1e-12), np.float32(1e-10)
    ncoef = min(shN.shape[1], (sh_degree + 1) * (sh_degree + 1) - 1)
    for chunk in prange((N + CHUNK - 1) // CHUNK):
        lo = chunk * CHUNK
        m = min(N, lo + CHUNK) - lo
        b = np.zeros((_BSHN + 6 * (K - 1)) * CHUNK, np.float32)  # the accumulators start at 0
        _load(b, lo, m, means, quats, scales, sh0, shN, sh_degree, ncoef, _BSH0, _BSHN, 6, K)
        for c in range(C):
            fx, fy, _, _, skew, lxp, lxn, lyp, lyn = _camera(Ks, c, width, height)
            V = _view(viewmats, c)
            V00, V01, V02, V03, V10, V11, V12, V13, V20, V21, V22, V23 = V
            px, py, pz = campos[c, 0], campos[c, 1], campos[c, 2]
            for i in range(m):
                n = lo + i
                b[_VX * CHUNK + i] = v_means2d[c, n, 0]
                b[(_VX + 1) * CHUNK + i] = v_means2d[c, n, 1]
                b[(_VX + 2) * CHUNK + i] = v_depths[c, n]
                b[(_VX + 3) * CHUNK + i] = v_conics[c, n, 0]
                b[(_VX + 4) * CHUNK + i] = v_conics[c, n, 1]
                b[(_VX + 5) * CHUNK + i] = v_conics[c, n, 2]
                if sh_degree >= 0:
                    for d in range(3):
                        b[(_VX + 6 + d) * CHUNK + i] = v_colors[c, n, d]
            for i in range(m):  # the SIMD loop
                vx, vy, vd = b[_VX * CHUNK + i], b[(_VX + 1) * CHUNK + i], b[(_VX + 2) * CHUNK + i]
                va, vb, vc = b[(_VX + 3) * CHUNK + i], b[(_VX + 4) * CHUNK + i], b[(_VX + 5) * CHUNK + i]
                act = (vx != 0) | (vy != 0) | (va != 0) | (vb != 0) | (vc != 0) | (vd != 0)
                M = _frame(b, i)[17:]
                mu0, mu1, mu2 = b[_MU * CHUNK + i], b[(_MU + 1) * CHUNK + i], b[(_MU + 2) * CHUNK + i]
                tx = V00 * mu0 + V01 * mu1 + V02 * mu2 + V03
                ty = V10 * mu0 + V11 * mu1 + V12 * mu2 + V13
                tz = V20 * mu0 + V21 * mu1 + V22 * mu2 + V23
                in_depth = (tz > near) & (tz < far)
                tz = tz if in_depth else one
                rz = one / tz
                rz2 = rz * rz
                ux, uy = tx * rz, ty * rz
                x_free = (-lxn <= ux) & (ux <= lxp)
                y_free = (-lyn <= uy) & (uy <= lyp)
                txc = tz * min(max(ux, -lxn), lxp)
                tyc = tz * min(max(uy, -lyn), lyp)
                a0, a1, a2, b0, b1, b2, ua0, ua1, ua2, ub0, ub1, ub2, c00, c01, c11 = _cov2d(M, V, fx, fy, tz, txc,
                                                                                         tyc, eps2d)
                det = c00 * c11 - c01 * c01
                inv = one / max(det, det_min)
                d_ds = -(va * c11 - vb * c01 + vc * c00) * inv * inv if det >= det_min else zero
                v00 = vc * inv + d_ds * c11
                v11 = va * inv + d_ds * c00
                v01 = -vb * inv - two * d_ds * c01
                p00, p11 = two * v00, two * v11
                j = _G00 * CHUNK + i
                b[j] = b[j] + (p00 * a0 * a0 + two * v01 * a0 * b0 + p11 * b0 * b0) if act else b[j]
                j = (_G00 + 3) * CHUNK + i
                b[j] = b[j] + (p00 * a1 * a1 + two * v01 * a1 * b1 + p11 * b1 * b1) if act else b[j]
                j = (_G00 + 5) * CHUNK + i
                b[j] = b[j] + (p00 * a2 * a2 + two * v01 * a2 * b2 + p11 * b2 * b2) if act else b[j]
                j = (_G00 + 1) * CHUNK + i
                b[j] = b[j] + (p00 * a0 * a1 + v01 * (a0 * b1 + b0 * a1) + p11 * b0 * b1) if act else b[j]
                j = (_G00 + 2) * CHUNK + i
                b[j] = b[j] + (p00 * a0 * a2 + v01 * (a0 * b2 + b0 * a2) + p11 * b0 * b2) if act else b[j]
                j = (_G00 + 4) * CHUNK + i
                b[j] = b[j] + (p00 * a1 * a2 + v01 * (a1 * b2 + b1 * a2) + p11 * b1 * b2) if act else b[j]
                da0, da1, da2 = p00 * ua0 + v01 * ub0, p00 * ua1 + v01 * ub1, p00 * ua2 + v01 * ub2
                db0, db1, db2 = p11 * ub0 + v01 * ua0, p11 * ub1 + v01 * ua1, p11 * ub2 + v01 * ua2
                dj00 = da0 * V00 + da1 * V01 + da2 * V02
                dj02 = da0 * V20 + da1 * V21 + da2 * V22
                dj11 = db0 * V10 + db1 * V11 + db2 * V12
                dj12 = db0 * V20 + db1 * V21 + db2 * V22
                dtx = vx * fx * rz
                dty = (vx * skew + vy * fy) * rz
                dtz = -(vx * (fx * tx + skew * ty) + vy * fy * ty) * rz2
                dtz += (-fx * dj00 + two * fx * txc * rz * dj02 - fy * dj11 + two * fy * tyc * rz * dj12) * rz2
                dtxc = -fx * rz2 * dj02
                dtyc = -fy * rz2 * dj12
                dtx = dtx + dtxc if x_free else dtx
                dtz = dtz if x_free else dtz + dtxc * txc * rz
                dty = dty + dtyc if y_free else dty
                dtz = dtz if y_free else dtz + dtyc * tyc * rz
                dtz = dtz if in_depth else zero
                dtz += vd
                j = _DMU * CHUNK + i
                b[j] = b[j] + (V00 * dtx + V10 * dty + V20 * dtz) if act else b[j]
                j = (_DMU + 1) * CHUNK + i
                b[j] = b[j] + (V01 * dtx + V11 * dty + V21 * dtz) if act else b[j]
                j = (_DMU + 2) * CHUNK + i
                b[j] = b[j] + (V02 * dtx + V12 * dty + V22 * dtz) if act else b[j]
                if sh_degree >= 0:  # loop-invariant
                    dx, dy, dz = mu0 - px, mu1 - py, mu2 - pz
                    dn = max(math.sqrt(dx * dx + dy * dy + dz * dz), tiny)
                    ex, ey, ez = dx / dn, dy / dn, dz / dn
                    kb = _bases(ex, ey, ez, K)
                    sums = (zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero,
                            zero)
                    sums = _shade_bwd(kb, b, 0, i, b[(_VX + 6) * CHUNK + i], sums, K)  # the channels
                    sums = _shade_bwd(kb, b, 1, i, b[(_VX + 7) * CHUNK + i], sums, K)  # written out,
                    sums = _shade_bwd(kb, b, 2, i, b[(_VX + 8) * CHUNK + i], sums, K)  # as forward
                    if sh_degree > 0:
                        gx, gy, gz = _dir_grad(ex, ey, ez, sums, K)
                        dot = gx * ex + gy * ey + gz * ez
                        j = _DMU * CHUNK + i
                        b[j] += (gx - ex * dot) / dn
                        j = (_DMU + 1) * CHUNK + i
                        b[j] += (gy - ey * dot) / dn
                        j = (_DMU + 2) * CHUNK + i
                        b[j] += (gz - ez * dot) / dn
        for i in range(m):  # Sigma = M M^T -> scales and quaternions (the reference backward's last part)
            w, x, y, z, qnorm, R0, R1, R2, R3, R4, R5, R6, R7, R8, s0, s1, s2, m00, m01, m02, m10, m11, m12, m20, m21, m22 = \
                _frame(b, i)
            G00, G01, G02 = b[_G00 * CHUNK + i], b[(_G00 + 1) * CHUNK + i], b[(_G00 + 2) * CHUNK + i]
            G11, G12, G22 = b[(_G00 + 3) * CHUNK + i], b[(_G00 + 4) * CHUNK + i], b[(_G00 + 5) * CHUNK + i]
            e00 = G00 * m00 + G01 * m10 + G02 * m20
            e01 = G00 * m01 + G01 * m11 + G02 * m21
            e02 = G00 * m02 + G01 * m12 + G02 * m22
            e10 = G01 * m00 + G11 * m10 + G12 * m20
            e11 = G01 * m01 + G11 * m11 + G12 * m21
            e12 = G01 * m02 + G11 * m12 + G12 * m22
            e20 = G02 * m00 + G12 * m10 + G22 * m20
            e21 = G02 * m01 + G12 * m11 + G22 * m21
            e22 = G02 * m02 + G12 * m12 + G22 * m22
            b[_VSCALES * CHUNK + i] = e00 * R0 + e10 * R3 + e20 * R6
            b[(_VSCALES + 1) * CHUNK + i] = e01 * R1 + e11 * R4 + e21 * R7
            b[(_VSCALES + 2) * CHUNK + i] = e02 * R2 + e12 * R5 + e22 * R8
            r00, r01, r02 = e00 * s0, e01 * s1, e02 * s2
            r10, r11, r12 = e10 * s0, e11 * s1, e12 * s2
            r20, r21, r22 = e20 * s0, e21 * s1, e22 * s2
            gw = two * (-z * r01 + y * r02 + z * r10 - x * r12 - y * r20 + x * r21)
            gx = two * (y * r01 + z * r02 + y * r10 - two * x * r11 - w * r12 + z * r20 + w * r21 - two * x * r22)
            gy = two * (-two * y * r00 + x * r01 + w * r02 + x * r10 + z * r12 - w * r20 + z * r21 - two * y * r22)
            gz = two * (-two * z * r00 - w * r01 + x * r02 + w * r10 - two * z * r11 + y * r12 + x * r20 + y * r21)
            dot = gw * w + gx * x + gy * y + gz * z
            b[_VQUATS * CHUNK + i] = (gw - w * dot) / qnorm
            b[(_VQUATS + 1) * CHUNK + i] = (gx - x * dot) / qnorm
            b[(_VQUATS + 2) * CHUNK + i] = (gy - y * dot) / qnorm
            b[(_VQUATS + 3) * CHUNK + i] = (gz - z * dot) / qnorm
        for i in range(m):
            n = lo + i
            for j in range(3):
                v_means[n, j] = b[(_DMU + j) * CHUNK + i]
                v_scales[n, j] = b[(_VSCALES + j) * CHUNK + i]
            for j in range(4):
                v_quats[n, j] = b[(_VQUATS + j) * CHUNK + i]
            if sh_degree >= 0:
                for d in range(3):
                    v_sh0[n, 0, d] = b[(_VSH0 + d) * CHUNK + i]
        for k in range(ncoef):
            for d in range(3):
                p = (_BSHN + 6 * k + 3 + d) * CHUNK
                for i in range(m):
                    v_shN[lo + i, k, d] = b[p + i]
    return v_means, v_quats, v_scales, v_sh0, v_shN
