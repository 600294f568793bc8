"""The scalar projection + SH kernels that ``reconstruction/project_simd.py`` replaced (until session 23 the cpu
backend's own): one Gaussian at a time, each camera in turn, SH through a scratch array. Kept as the reference
the SIMD kernels equal bit for bit (``test_project_simd.py``); the same arguments and outputs as theirs.
"""

import math

import numpy as np
from numba import njit, prange

from reconstruction.project_cpu import ALPHA_MIN, CHUNK, SH_C0, SH_C1, _camera


@njit(cache=True)
def _rotation(q0, q1, q2, q3):
    """Normalised quaternion (w, x, y, z), its norm, and the 3x3 rotation as a tuple of 9 (row-major)."""
    norm = np.float32(max(math.sqrt(q0 * q0 + q1 * q1 + q2 * q2 + q3 * q3), np.float32(1e-12)))
    w, x, y, z = q0 / norm, q1 / norm, q2 / norm, q3 / norm
    one, two = np.float32(1.0), np.float32(2.0)
    R = (one - two * (y * y + z * z), two * (x * y - w * z), two * (x * z + w * y),
         two * (x * y + w * z), one - two * (x * x + z * z), two * (y * z - w * x),
         two * (x * z - w * y), two * (y * z + w * x), one - two * (x * x + y * y))
    return (w, x, y, z), norm, R


@njit(cache=True)
def _sh_bases(degree, x, y, z, out):
    """Real SH bases of gsplat (Sloan's fast evaluation) at unit direction (x, y, z) into ``out[:(degree+1)**2]``."""
    out[0] = SH_C0
    if degree < 1:
        return
    out[1] = SH_C1 * y
    out[2] = -SH_C1 * z
    out[3] = SH_C1 * x
    if degree < 2:
        return
    fB = -1.092548430592079 * z
    fA = 0.5462742152960395
    c1 = x * x - y * y
    s1 = 2.0 * x * y
    out[4] = fA * s1
    out[5] = fB * y
    out[6] = 0.9461746957575601 * z * z - 0.3153915652525201
    out[7] = fB * x
    out[8] = fA * c1
    if degree < 3:
        return
    fC = -2.285228997322329 * z * z + 0.4570457994644658
    fB3 = 1.445305721320277 * z
    fA3 = -0.5900435899266435
    c2 = x * c1 - y * s1
    s2 = x * s1 + y * c1
    out[9] = fA3 * s2
    out[10] = fB3 * s1
    out[11] = fC * y
    out[12] = z * (1.865881662950577 * z * z - 1.119528997770346)
    out[13] = fC * x
    out[14] = fB3 * c1
    out[15] = fA3 * c2


@njit(cache=True)
def _sh_dir_grad(degree, x, y, z, w):
    """sum_k w[k] * d basis_k / d(x, y, z) over the bases of ``_sh_bases`` (k >= 1), as a 3-tuple: the gradient
    of the colours w.r.t. the direction, with w[k] = sum over channels of sh[k, d] * (colour gradient d). One
    pass for all channels (a per-basis, per-channel call was most of the projection's backward)."""
    gx = gy = gz = 0.0
    if degree < 1:
        return gx, gy, gz
    gx += SH_C1 * w[3]
    gy += SH_C1 * w[1]
    gz -= SH_C1 * w[2]
    if degree < 2:
        return gx, gy, gz
    fB = -1.092548430592079
    fA = 0.5462742152960395
    gx += 2.0 * fA * (y * w[4] + x * w[8]) + fB * z * w[7]
    gy += 2.0 * fA * (x * w[4] - y * w[8]) + fB * z * w[5]
    gz += fB * (y * w[5] + x * w[7]) + 2.0 * 0.9461746957575601 * z * w[6]
    if degree < 3:
        return gx, gy, gz
    fC = -2.285228997322329 * z * z + 0.4570457994644658
    dfC = -2.0 * 2.285228997322329 * z
    fB3 = 1.445305721320277
    fA3 = -0.5900435899266435
    sq = 3.0 * (x * x - y * y)  # d(x³ - 3xy²)/dx = d(3x²y - y³)/dy
    xy6 = 6.0 * x * y
    gx += fA3 * (xy6 * w[9] + sq * w[15]) + 2.0 * fB3 * z * (y * w[10] + x * w[14]) + fC * w[13]
    gy += fA3 * (sq * w[9] - xy6 * w[15]) + 2.0 * fB3 * z * (x * w[10] - y * w[14]) + fC * w[11]
    gz += (fB3 * (2.0 * x * y * w[10] + (x * x - y * y) * w[14]) + dfC * (y * w[11] + x * w[13])
           + (3.0 * 1.865881662950577 * z * z - 1.119528997770346) * w[12])
    return gx, gy, gz


@njit(cache=True)
def _covariance(R, s0, s1, s2):
    """M = R diag(s) (9 entries, row-major) and the 6 unique entries of Sigma = M M^T."""
    M = (R[0] * s0, R[1] * s1, R[2] * s2, R[3] * s0, R[4] * s1, R[5] * s2, R[6] * s0, R[7] * s1, R[8] * s2)
    S = (M[0] * M[0] + M[1] * M[1] + M[2] * M[2], M[0] * M[3] + M[1] * M[4] + M[2] * M[5],
         M[0] * M[6] + M[1] * M[7] + M[2] * M[8], M[3] * M[3] + M[4] * M[4] + M[5] * M[5],
         M[3] * M[6] + M[4] * M[7] + M[5] * M[8], M[6] * M[6] + M[7] * M[7] + M[8] * M[8])
    return M, S


@njit(cache=True)
def _to_camera(V, mu0, mu1, mu2):
    """Camera-space position (tx, ty, tz) of a mean under the world-to-camera matrix V."""
    return (V[0, 0] * mu0 + V[0, 1] * mu1 + V[0, 2] * mu2 + V[0, 3],
            V[1, 0] * mu0 + V[1, 1] * mu1 + V[1, 2] * mu2 + V[1, 3],
            V[2, 0] * mu0 + V[2, 1] * mu1 + V[2, 2] * mu2 + V[2, 3])


@njit(cache=True)
def _covariance_2d(V, S, fx, fy, tz, txc, tyc, eps2d):
    """The rows a, b of A = J V[:3, :3] (J: the perspective Jacobian at the fov-clamped mean), ua = Sigma a,
    ub = Sigma b, and the 2D covariance (c00, c01, c11) = A Sigma A^T + eps2d I."""
    S00, S01, S02, S11, S12, S22 = S
    j00, j02 = fx / tz, -fx * txc / (tz * tz)
    j11, j12 = fy / tz, -fy * tyc / (tz * tz)
    a0, a1, a2 = j00 * V[0, 0] + j02 * V[2, 0], j00 * V[0, 1] + j02 * V[2, 1], j00 * V[0, 2] + j02 * V[2, 2]
    b0, b1, b2 = j11 * V[1, 0] + j12 * V[2, 0], j11 * V[1, 1] + j12 * V[2, 1], j11 * V[1, 2] + j12 * V[2, 2]
    ua = (S00 * a0 + S01 * a1 + S02 * a2, S01 * a0 + S11 * a1 + S12 * a2, S02 * a0 + S12 * a1 + S22 * a2)
    ub = (S00 * b0 + S01 * b1 + S02 * b2, S01 * b0 + S11 * b1 + S12 * b2, S02 * b0 + S12 * b1 + S22 * b2)
    c00 = a0 * ua[0] + a1 * ua[1] + a2 * ua[2] + eps2d
    c01 = a0 * ub[0] + a1 * ub[1] + a2 * ub[2]
    c11 = b0 * ub[0] + b1 * ub[1] + b2 * ub[2] + eps2d
    return (a0, a1, a2), (b0, b1, b2), ua, ub, c00, c01, c11


@njit(inline="always")
def _coef(sh0, shN, n, k, d):
    """SH coefficient k of channel d of Gaussian n, from gsplat's split: sh0 [N,1,3] (k = 0), shN [N,K-1,3]."""
    return sh0[n, 0, d] if k == 0 else shN[n, k - 1, d]


@njit(cache=True, parallel=True)
def project_fwd_scalar(means, quats, scales, opacities, sh0, shN, viewmats, Ks, campos, width, height, eps2d, near, far,
                 radius_clip, sh_degree):
    """Args: means [N,3], quats [N,4], scales [N,3], opacities [N], sh0 [N,1,3], shN [N,K-1,3] (f32); viewmats [C,4,4], Ks [C,3,3],
    campos [C,3]; sh_degree -1: no colours. Returns radii [C,N,2] i32, means2d [C,N,2], depths [C,N],
    conics [C,N,3], colors [C,N,3] (or [C,0,3] without SH)."""
    N = means.shape[0]
    C = viewmats.shape[0]
    radii = np.zeros((C, N, 2), np.int32)
    means2d = np.zeros((C, N, 2), np.float32)
    depths = np.zeros((C, N), np.float32)
    conics = np.zeros((C, N, 3), np.float32)
    colors = np.zeros((C, N if sh_degree >= 0 else 0, 3), np.float32)
    nb = (sh_degree + 1) ** 2
    n_chunks = (N + CHUNK - 1) // CHUNK
    for chunk in prange(n_chunks):  # scratch buffers once per chunk of Gaussians, not per Gaussian
        bases = np.zeros(16, np.float32)
        for n in range(chunk * CHUNK, min(N, (chunk + 1) * CHUNK)):
            _, _, R = _rotation(quats[n, 0], quats[n, 1], quats[n, 2], quats[n, 3])
            s0, s1, s2 = scales[n, 0], scales[n, 1], scales[n, 2]
            _, S = _covariance(R, s0, s1, s2)
            mu0, mu1, mu2 = means[n, 0], means[n, 1], means[n, 2]
            op = opacities[n]
            for c in range(C):
                V = viewmats[c]
                fx, fy, cx, cy, skew, lxp, lxn, lyp, lyn = _camera(Ks, c, width, height)
                tx, ty, tz = _to_camera(V, mu0, mu1, mu2)
                depths[c, n] = tz
                in_depth = tz > near and tz < far
                if not in_depth:
                    tz = np.float32(1.0)
                txc = tz * min(max(tx / tz, -lxn), lxp)
                tyc = tz * min(max(ty / tz, -lyn), lyp)
                _, _, _, _, c00, c01, c11 = _covariance_2d(V, S, fx, fy, tz, txc, tyc, eps2d)
                mx = (fx * tx + skew * ty) / tz + cx
                my = (fy * ty) / tz + cy
                means2d[c, n, 0] = mx
                means2d[c, n, 1] = my
                det = c00 * c11 - c01 * c01
                ds = max(det, np.float32(1e-10))
                ca, cb, cc = c11 / ds, -c01 / ds, c00 / ds
                conics[c, n, 0] = ca
                conics[c, n, 1] = cb
                conics[c, n, 2] = cc
                extend = min(math.sqrt(np.float32(2.0) * math.log(max(op, ALPHA_MIN) / ALPHA_MIN)), np.float32(3.33))
                rx = np.ceil(np.float32(extend * math.sqrt(max(c00, np.float32(0.0)))))
                ry = np.ceil(np.float32(extend * math.sqrt(max(c11, np.float32(0.0)))))
                valid = in_depth and det > 0 and op >= ALPHA_MIN and (rx > radius_clip or ry > radius_clip)
                valid = valid and mx + rx > 0 and mx - rx < width and my + ry > 0 and my - ry < height
                valid = valid and np.isfinite(mx) and np.isfinite(my)
                valid = valid and np.isfinite(ca) and np.isfinite(cb) and np.isfinite(cc)
                if valid:
                    radii[c, n, 0] = np.int32(rx)
                    radii[c, n, 1] = np.int32(ry)
                if sh_degree >= 0:
                    dx, dy, dz = mu0 - campos[c, 0], mu1 - campos[c, 1], mu2 - campos[c, 2]
                    dn = max(math.sqrt(dx * dx + dy * dy + dz * dz), np.float32(1e-12))
                    _sh_bases(sh_degree, dx / dn, dy / dn, dz / dn, bases)
                    for d in range(3):
                        acc = np.float32(0.0)
                        for k in range(nb):
                            acc += bases[k] * _coef(sh0, shN, n, k, d)
                        colors[c, n, d] = max(acc + np.float32(0.5), np.float32(0.0))
    return radii, means2d, depths, conics, colors


@njit(cache=True, parallel=True, error_model="numpy")
def project_bwd_scalar(means, quats, scales, sh0, shN, viewmats, Ks, campos, width, height, eps2d, near, far, sh_degree,
                 v_means2d, v_depths, v_conics, v_colors):
    """Gradients of ``project_fwd_scalar``'s outputs -> v_means [N,3], v_quats [N,4], v_scales [N,3], v_sh0 [N,1,3],
    v_shN [N,K-1,3].

    float32 scalars throughout (the symmetric matrices as their 6 entries, reciprocals of the depth instead of
    repeated divisions, the cameras' constants computed once per call; scratch arrays only for the SH bases)."""
    N = means.shape[0]
    C = viewmats.shape[0]
    v_means = np.zeros((N, 3), np.float32)
    v_quats = np.zeros((N, 4), np.float32)
    v_scales = np.zeros((N, 3), np.float32)
    v_sh0 = np.zeros(sh0.shape, np.float32)
    v_shN = np.zeros(shN.shape, np.float32)
    nb = (sh_degree + 1) ** 2
    zero, one, two = np.float32(0.0), np.float32(1.0), np.float32(2.0)
    cam = np.empty((C, 7), np.float32)  # per camera: fx, fy, skew and the fov limits, computed once
    for c in range(C):
        fx, fy, _, _, skew, lxp, lxn, lyp, lyn = _camera(Ks, c, width, height)
        cam[c, 0], cam[c, 1], cam[c, 2], cam[c, 3], cam[c, 4], cam[c, 5], cam[c, 6] = fx, fy, skew, lxp, lxn, lyp, lyn
    n_chunks = (N + CHUNK - 1) // CHUNK
    for chunk in prange(n_chunks):  # scratch buffers once per chunk of Gaussians, not per Gaussian
        bases = np.zeros(16, np.float32)
        wk = np.zeros(16, np.float32)
        for n in range(chunk * CHUNK, min(N, (chunk + 1) * CHUNK)):
            (w, x, y, z), qnorm, R = _rotation(quats[n, 0], quats[n, 1], quats[n, 2], quats[n, 3])
            s0, s1, s2 = scales[n, 0], scales[n, 1], scales[n, 2]
            (m00, m01, m02, m10, m11, m12, m20, m21, m22), S = _covariance(R, s0, s1, s2)
            mu0, mu1, mu2 = means[n, 0], means[n, 1], means[n, 2]
            G00 = G01 = G02 = G11 = G12 = G22 = zero  # dL/dSigma + its transpose, summed over cameras
            dmu0 = dmu1 = dmu2 = zero
            for c in range(C):
                V = viewmats[c]
                vx, vy = v_means2d[c, n, 0], v_means2d[c, n, 1]
                va, vb, vc = v_conics[c, n, 0], v_conics[c, n, 1], v_conics[c, n, 2]
                vd = v_depths[c, n]
                if vx != 0 or vy != 0 or va != 0 or vb != 0 or vc != 0 or vd != 0:
                    fx, fy, skew, lxp, lxn, lyp, lyn = cam[c, 0], cam[c, 1], cam[c, 2], cam[c, 3], cam[c, 4], cam[c, 5], cam[c, 6]
                    tx, ty, tz = _to_camera(V, mu0, mu1, mu2)
                    in_depth = tz > near and tz < far
                    if not in_depth:
                        tz = one
                    rz = one / tz
                    rz2 = rz * rz
                    ux, uy = tx * rz, ty * rz
                    x_free = -lxn <= ux <= lxp
                    y_free = -lyn <= uy <= lyp
                    txc = tz * min(max(ux, -lxn), lxp)
                    tyc = tz * min(max(uy, -lyn), lyp)
                    (a0, a1, a2), (b0, b1, b2), (ua0, ua1, ua2), (ub0, ub1, ub2), c00, c01, c11 = _covariance_2d(
                        V, S, fx, fy, tz, txc, tyc, eps2d)
                    det = c00 * c11 - c01 * c01
                    inv = one / max(det, np.float32(1e-10))
                    d_ds = -(va * c11 - vb * c01 + vc * c00) * inv * inv if det >= np.float32(1e-10) else zero
                    v00 = vc * inv + d_ds * c11  # dL/d(2D covariance)
                    v11 = va * inv + d_ds * c00
                    v01 = -vb * inv - two * d_ds * c01
                    # 2D covariance -> Sigma: G += 2 v00 a a^T + v01 (a b^T + b a^T) + 2 v11 b b^T
                    p00, p11 = two * v00, two * v11
                    G00 += p00 * a0 * a0 + two * v01 * a0 * b0 + p11 * b0 * b0
                    G11 += p00 * a1 * a1 + two * v01 * a1 * b1 + p11 * b1 * b1
                    G22 += p00 * a2 * a2 + two * v01 * a2 * b2 + p11 * b2 * b2
                    G01 += p00 * a0 * a1 + v01 * (a0 * b1 + b0 * a1) + p11 * b0 * b1
                    G02 += p00 * a0 * a2 + v01 * (a0 * b2 + b0 * a2) + p11 * b0 * b2
                    G12 += p00 * a1 * a2 + v01 * (a1 * b2 + b1 * a2) + p11 * b1 * b2
                    # -> the Jacobian rows (dA = 2 v A Sigma) -> its four entries
                    da0, da1, da2 = p00 * ua0 + v01 * ub0, p00 * ua1 + v01 * ub1, p00 * ua2 + v01 * ub2
                    db0, db1, db2 = p11 * ub0 + v01 * ua0, p11 * ub1 + v01 * ua1, p11 * ub2 + v01 * ua2
                    dj00 = da0 * V[0, 0] + da1 * V[0, 1] + da2 * V[0, 2]
                    dj02 = da0 * V[2, 0] + da1 * V[2, 1] + da2 * V[2, 2]
                    dj11 = db0 * V[1, 0] + db1 * V[1, 1] + db2 * V[1, 2]
                    dj12 = db0 * V[2, 0] + db1 * V[2, 1] + db2 * V[2, 2]
                    dtx = vx * fx * rz
                    dty = (vx * skew + vy * fy) * rz
                    dtz = -(vx * (fx * tx + skew * ty) + vy * fy * ty) * rz2
                    dtz += (-fx * dj00 + two * fx * txc * rz * dj02 - fy * dj11 + two * fy * tyc * rz * dj12) * rz2
                    dtxc = -fx * rz2 * dj02
                    dtyc = -fy * rz2 * dj12
                    if x_free:
                        dtx += dtxc
                    else:
                        dtz += dtxc * txc * rz
                    if y_free:
                        dty += dtyc
                    else:
                        dtz += dtyc * tyc * rz
                    if not in_depth:
                        dtz = zero
                    dtz += vd
                    dmu0 += V[0, 0] * dtx + V[1, 0] * dty + V[2, 0] * dtz
                    dmu1 += V[0, 1] * dtx + V[1, 1] * dty + V[2, 1] * dtz
                    dmu2 += V[0, 2] * dtx + V[1, 2] * dty + V[2, 2] * dtz
                if sh_degree >= 0:
                    dx, dy, dz = mu0 - campos[c, 0], mu1 - campos[c, 1], mu2 - campos[c, 2]
                    dn = max(math.sqrt(dx * dx + dy * dy + dz * dz), np.float32(1e-12))
                    ex, ey, ez = dx / dn, dy / dn, dz / dn
                    _sh_bases(sh_degree, ex, ey, ez, bases)
                    wk[:] = zero  # per basis: sum over channels of sh * colour gradient
                    for d in range(3):
                        acc = zero
                        for k in range(nb):
                            acc += bases[k] * _coef(sh0, shN, n, k, d)
                        vcol = v_colors[c, n, d]
                        if acc + np.float32(0.5) < 0 or vcol == 0:  # clamp_min(., 0) passes the gradient where >= 0
                            continue
                        v_sh0[n, 0, d] += bases[0] * vcol
                        wk[0] += sh0[n, 0, d] * vcol
                        for k in range(1, nb):
                            v_shN[n, k - 1, d] += bases[k] * vcol
                            wk[k] += shN[n, k - 1, d] * vcol
                    if sh_degree > 0:
                        hx, hy, hz = _sh_dir_grad(sh_degree, ex, ey, ez, wk)
                        gx, gy, gz = np.float32(hx), np.float32(hy), np.float32(hz)
                        dot = gx * ex + gy * ey + gz * ez  # through the normalisation of the direction
                        dmu0 += (gx - ex * dot) / dn
                        dmu1 += (gy - ey * dot) / dn
                        dmu2 += (gz - ez * dot) / dn
            v_means[n, 0] = dmu0
            v_means[n, 1] = dmu1
            v_means[n, 2] = dmu2
            # Sigma = M M^T with G = dL/dSigma + its transpose: dM = G M, M = R diag(s) -> dR = dM diag(s), ds
            e00 = G00 * m00 + G01 * m10 + G02 * m20
            e01 = G00 * m01 + G01 * m11 + G02 * m21
            e02 = G00 * m02 + G01 * m12 + G02 * m22
            e10 = G01 * m00 + G11 * m10 + G12 * m20
            e11 = G01 * m01 + G11 * m11 + G12 * m21
            e12 = G01 * m02 + G11 * m12 + G12 * m22
            e20 = G02 * m00 + G12 * m10 + G22 * m20
            e21 = G02 * m01 + G12 * m11 + G22 * m21
            e22 = G02 * m02 + G12 * m12 + G22 * m22
            v_scales[n, 0] = e00 * R[0] + e10 * R[3] + e20 * R[6]
            v_scales[n, 1] = e01 * R[1] + e11 * R[4] + e21 * R[7]
            v_scales[n, 2] = e02 * R[2] + e12 * R[5] + e22 * R[8]
            r00, r01, r02 = e00 * s0, e01 * s1, e02 * s2
            r10, r11, r12 = e10 * s0, e11 * s1, e12 * s2
            r20, r21, r22 = e20 * s0, e21 * s1, e22 * s2
            gw = two * (-z * r01 + y * r02 + z * r10 - x * r12 - y * r20 + x * r21)
            gx = two * (y * r01 + z * r02 + y * r10 - two * x * r11 - w * r12 + z * r20 + w * r21 - two * x * r22)
            gy = two * (-two * y * r00 + x * r01 + w * r02 + x * r10 + z * r12 - w * r20 + z * r21 - two * y * r22)
            gz = two * (-two * z * r00 - w * r01 + x * r02 + w * r10 - two * z * r11 + y * r12 + x * r20 + y * r21)
            dot = gw * w + gx * x + gy * y + gz * z
            v_quats[n, 0] = (gw - w * dot) / qnorm
            v_quats[n, 1] = (gx - x * dot) / qnorm
            v_quats[n, 2] = (gy - y * dot) / qnorm
            v_quats[n, 3] = (gz - z * dot) / qnorm
    return v_means, v_quats, v_scales, v_sh0, v_shN
