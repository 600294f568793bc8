"""The projection + SH pass of ``project_cpu`` for SH degree -1 (no colours), 0 and 1 (the fit's default) as
kernels that LLVM compiles to SIMD code across Gaussians: the same formulas in the same operation order, so the
outputs and gradients are bit for bit those of ``project_cpu._project_fwd`` / ``_project_bwd`` (tested), at
~1/3 of their cost.

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

# Forward planes: inputs, then outputs.
_MU, _Q, _S, _OP, _EXT, _SH0, _SHN = 0, 3, 7, 10, 11, 12, 15  # SHN: plane _SHN + 3 * k + d (k < 3)
_RX, _RY, _MX, _MY, _DEPTH, _CA, _CB, _CC, _COL = 24, 25, 26, 27, 28, 29, 30, 31, 32
_FWD_PLANES = 35
# Backward planes: inputs (_MU, _Q, _S as in the forward, then sh0 and shN at 10 and 13), one camera's output
# gradients, the accumulators over cameras and the final gradients.
_BSH0, _BSHN = 10, 13
_VX, _VY, _VD, _VA, _VB, _VC, _VCOL = 22, 23, 24, 25, 26, 27, 28
_G00, _G01, _G02, _G11, _G12, _G22, _DMU, _VSH0, _VSHN = 31, 32, 33, 34, 35, 36, 37, 40, 43
_VQUATS, _VSCALES = 52, 56  # the gradient of the means is the _DMU planes
_BWD_PLANES = 59


@njit(cache=True)
def _view(viewmats, c):
    """The first three rows of camera c's world-to-camera matrix as 12 scalars (row-major)."""
    V = viewmats[c]
    return (V[0, 0], V[0, 1], V[0, 2], V[0, 3], V[1, 0], V[1, 1], V[1, 2], V[1, 3],
            V[2, 0], V[2, 1], V[2, 2], V[2, 3])


@njit(inline="always")
def _load(b, i, n, means, quats, scales, sh0, shN, sh_degree, sh0_plane, shN_plane):
    """Copy Gaussian n's means, scales, quaternion and SH coefficients of degree <= 1 into column i of the planes
    (shN planes zero below degree 1: the degree-1 sum then equals the degree-0 one)."""
    for j in range(3):
        b[(_MU + j) * CHUNK + i] = means[n, j]
        b[(_S + j) * CHUNK + i] = scales[n, j]
    for j in range(4):
        b[(_Q + j) * CHUNK + i] = quats[n, j]
    if sh_degree >= 0:
        for d in range(3):
            b[(sh0_plane + d) * CHUNK + i] = sh0[n, 0, d]
    for k in range(3):
        for d in range(3):
            b[(shN_plane + 3 * k + d) * CHUNK + i] = shN[n, k, d] if sh_degree >= 1 else np.float32(0.0)


@njit(inline="always")
def _frame(b, i):
    """Gaussian i's normalised quaternion (w, x, y, z), its clamped norm, the rotation R (9, row-major), the scales
    and M = R diag(s) (9), from the planes: ``project_cpu._rotation`` and ``_covariance``'s expressions."""
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
    """Sigma = M M^T (M: 9 scalars), then ``project_cpu._covariance_2d`` with V (``_view``'s 12 scalars): the
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
def _bases1(ex, ey, ez):
    """SH bases 1-3 at the unit direction, rounded to float32 from float64 products as ``_sh_bases`` stores
    them (basis 0 is the constant ``SH_C0``)."""
    return np.float32(SH_C1 * ey), np.float32(-SH_C1 * ez), np.float32(SH_C1 * ex)


@njit(inline="always")
def _shade1(k1, k2, k3, b, d, i):
    """Channel d's SH sum of degree 1 from the forward planes (zero shN planes for degree 0), in
    ``_project_fwd``'s order."""
    acc = np.float32(0.0)
    acc += np.float32(SH_C0) * b[(_SH0 + d) * CHUNK + i]
    acc += k1 * b[(_SHN + d) * CHUNK + i]
    acc += k2 * b[(_SHN + 3 + d) * CHUNK + i]
    acc += k3 * b[(_SHN + 6 + d) * CHUNK + i]
    return acc


@njit(cache=True, parallel=True, error_model="numpy")
def project_fwd_simd(means, quats, scales, opacities, sh0, shN, viewmats, Ks, campos, width, height, eps2d, near,
                     far, radius_clip, sh_degree):
    """``project_cpu._project_fwd`` for ``sh_degree`` in (-1, 0, 1): the same arguments and outputs."""
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
    for chunk in prange((N + CHUNK - 1) // CHUNK):
        lo = chunk * CHUNK
        m = min(N, lo + CHUNK) - lo
        b = np.empty(_FWD_PLANES * CHUNK, np.float32)
        for i in range(m):
            n = lo + i
            _load(b, i, n, means, quats, scales, sh0, shN, sh_degree, _SH0, _SHN)
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
                    k1, k2, k3 = _bases1(dx / dn, dy / dn, dz / dn)
                    # the three channels written out: a loop over them here stops the vectoriser
                    b[_COL * CHUNK + i] = max(_shade1(k1, k2, k3, b, 0, i) + half, zero)
                    b[(_COL + 1) * CHUNK + i] = max(_shade1(k1, k2, k3, b, 1, i) + half, zero)
                    b[(_COL + 2) * CHUNK + i] = max(_shade1(k1, k2, k3, b, 2, i) + half, zero)
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
def _shade1_bwd(k1, k2, k3, b, d, i, vcol, sums):
    """Channel d of ``_project_bwd``'s SH gradient for degree <= 1: where the clamp passes it (and ``vcol`` is
    not 0), add the bases times ``vcol`` to the coefficients' gradient planes; returns ``sums`` (w0..w3, the
    per-basis sums of coefficient times ``vcol`` over channels) updated."""
    acc = np.float32(0.0)
    acc += np.float32(SH_C0) * b[(_BSH0 + d) * CHUNK + i]
    acc += k1 * b[(_BSHN + d) * CHUNK + i]
    acc += k2 * b[(_BSHN + 3 + d) * CHUNK + i]
    acc += k3 * b[(_BSHN + 6 + d) * CHUNK + i]
    on = not ((acc + np.float32(0.5) < 0) | (vcol == 0))
    w0, w1, w2, w3 = sums
    j = (_VSH0 + d) * CHUNK + i
    b[j] = b[j] + np.float32(SH_C0) * vcol if on else b[j]
    j = (_VSHN + d) * CHUNK + i
    b[j] = b[j] + k1 * vcol if on else b[j]
    j = (_VSHN + 3 + d) * CHUNK + i
    b[j] = b[j] + k2 * vcol if on else b[j]
    j = (_VSHN + 6 + d) * CHUNK + i
    b[j] = b[j] + k3 * vcol if on else b[j]
    w0 = w0 + b[(_BSH0 + d) * CHUNK + i] * vcol if on else w0
    w1 = w1 + b[(_BSHN + d) * CHUNK + i] * vcol if on else w1
    w2 = w2 + b[(_BSHN + 3 + d) * CHUNK + i] * vcol if on else w2
    w3 = w3 + b[(_BSHN + 6 + d) * CHUNK + i] * vcol if on else w3
    return w0, w1, w2, w3


@njit(cache=True, parallel=True, error_model="numpy")
def project_bwd_simd(means, quats, scales, sh0, shN, viewmats, Ks, campos, width, height, eps2d, near, far,
                     sh_degree, v_means2d, v_depths, v_conics, v_colors):
    """``project_cpu._project_bwd`` for ``sh_degree`` in (-1, 0, 1): the same arguments and outputs. A
    Gaussian whose output gradients are all 0 in a camera adds nothing for it (the scalar kernel skips it)."""
    N = means.shape[0]
    C = viewmats.shape[0]
    v_means = np.zeros((N, 3), np.float32)
    v_quats = np.zeros((N, 4), np.float32)
    v_scales = np.zeros((N, 3), np.float32)
    v_sh0 = np.zeros(sh0.shape, np.float32)
    v_shN = np.zeros(shN.shape, np.float32)
    zero, one, two = np.float32(0.0), np.float32(1.0), np.float32(2.0)
    tiny, det_min = np.float32(1e-12), np.float32(1e-10)
    for chunk in prange((N + CHUNK - 1) // CHUNK):
        lo = chunk * CHUNK
        m = min(N, lo + CHUNK) - lo
        b = np.zeros(_BWD_PLANES * CHUNK, np.float32)  # the accumulators start at 0
        for i in range(m):
            _load(b, i, lo + i, means, quats, scales, sh0, shN, sh_degree, _BSH0, _BSHN)
        for c in range(C):
            fx, fy, _, _, skew, lxp, lxn, lyp, lyn = _camera(Ks, c, width, height)
            V = _view(viewmats, c)
            V00, V01, V02, V03, V10, V11, V12, V13, V20, V21, V22, V23 = V
            px, py, pz = campos[c, 0], campos[c, 1], campos[c, 2]
            for i in range(m):
                n = lo + i
                b[_VX * CHUNK + i] = v_means2d[c, n, 0]
                b[_VY * CHUNK + i] = v_means2d[c, n, 1]
                b[_VD * CHUNK + i] = v_depths[c, n]
                b[_VA * CHUNK + i] = v_conics[c, n, 0]
                b[_VB * CHUNK + i] = v_conics[c, n, 1]
                b[_VC * CHUNK + i] = v_conics[c, n, 2]
                if sh_degree >= 0:
                    for d in range(3):
                        b[(_VCOL + d) * CHUNK + i] = v_colors[c, n, d]
            for i in range(m):  # the SIMD loop
                vx, vy, vd = b[_VX * CHUNK + i], b[_VY * CHUNK + i], b[_VD * CHUNK + i]
                va, vb, vc = b[_VA * CHUNK + i], b[_VB * CHUNK + i], b[_VC * CHUNK + i]
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
                j = _G11 * CHUNK + i
                b[j] = b[j] + (p00 * a1 * a1 + two * v01 * a1 * b1 + p11 * b1 * b1) if act else b[j]
                j = _G22 * CHUNK + i
                b[j] = b[j] + (p00 * a2 * a2 + two * v01 * a2 * b2 + p11 * b2 * b2) if act else b[j]
                j = _G01 * CHUNK + i
                b[j] = b[j] + (p00 * a0 * a1 + v01 * (a0 * b1 + b0 * a1) + p11 * b0 * b1) if act else b[j]
                j = _G02 * CHUNK + i
                b[j] = b[j] + (p00 * a0 * a2 + v01 * (a0 * b2 + b0 * a2) + p11 * b0 * b2) if act else b[j]
                j = _G12 * CHUNK + i
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
                    k1, k2, k3 = _bases1(ex, ey, ez)
                    sums = (zero, zero, zero, zero)
                    sums = _shade1_bwd(k1, k2, k3, b, 0, i, b[_VCOL * CHUNK + i], sums)  # the channels written
                    sums = _shade1_bwd(k1, k2, k3, b, 1, i, b[(_VCOL + 1) * CHUNK + i], sums)  # out, as in
                    sums = _shade1_bwd(k1, k2, k3, b, 2, i, b[(_VCOL + 2) * CHUNK + i], sums)  # the forward
                    if sh_degree > 0:  # _sh_dir_grad of degree 1, in float64 as there
                        gx = np.float32(0.0 + SH_C1 * sums[3])
                        gy = np.float32(0.0 + SH_C1 * sums[1])
                        gz = np.float32(0.0 - SH_C1 * sums[2])
                        dot = gx * ex + gy * ey + gz * ez
                        j = _DMU * CHUNK + i
                        b[j] += (gx - ex * dot) / dn
                        j = (_DMU + 1) * CHUNK + i
                        b[j] += (gy - ey * dot) / dn
                        j = (_DMU + 2) * CHUNK + i
                        b[j] += (gz - ez * dot) / dn
        for i in range(m):  # Sigma = M M^T -> scales and quaternions (project_cpu._project_bwd's last part)
            w, x, y, z, qnorm, R0, R1, R2, R3, R4, R5, R6, R7, R8, s0, s1, s2, m00, m01, m02, m10, m11, m12, m20, m21, m22 = \
                _frame(b, i)
            G00, G01, G02 = b[_G00 * CHUNK + i], b[_G01 * CHUNK + i], b[_G02 * CHUNK + i]
            G11, G12, G22 = b[_G11 * CHUNK + i], b[_G12 * CHUNK + i], b[_G22 * CHUNK + i]
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
            if sh_degree >= 1:
                for k in range(3):
                    for d in range(3):
                        v_shN[n, k, d] = b[(_VSHN + 3 * k + d) * CHUNK + i]
    return v_means, v_quats, v_scales, v_sh0, v_shN
