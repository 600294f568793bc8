"""The `cpu` backend's projection and SH stage: one compiled pass for the EWA projection of
``reconstruction.rasterize.project_gaussians`` and the view-dependent colours of ``sh_to_colors``, with a
hand-written backward, wrapped in a ``torch.autograd.Function``. The kernels are ``project_simd``'s (SIMD code
across Gaussians); ``tests/reconstruction/project_reference.py`` keeps the scalar kernels they replaced (one
Gaussian at a time, each camera in turn) as the reference they equal bit for bit.

Why: written element-wise in torch, projection + SH cost a few hundred small tensor ops per step (forward and
autograd backward), about a quarter of a fitting step's CPU time (README, "CPU fitting"); here they are two kernel
calls.

Rules are exactly those of the torch functions (float32, the same operation order, so radii and culling agree):
quaternions normalised, ``Sigma = (R S)(R S)^T``, the perspective Jacobian at the fov-clamped mean, ``eps2d``
added to the 2D covariance, the conic from a determinant clamped at 1e-10, opacity-aware radii (3.33 sigma at
most), culling by depth, determinant, opacity, size and screen; SH degree 0-3 on the normalised direction from
the camera centre, ``max(SH + 0.5, 0)``. The backward is the chain rule of those formulas (the tests check it
equals autograd through the torch functions). Each thread owns whole Gaussians and sums their gradients over the
cameras itself: no two threads write the same memory and results do not depend on the number of threads.
Camera matrices get no gradient (the fit does not optimise cameras); ``rasterize.py`` uses the torch path when
they require one.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

from reconstruction.profile import stage

ALPHA_MIN = np.float32(1.0 / 255.0)
SH_C0 = 0.2820947917738781
SH_C1 = -0.48860251190292
CHUNK = 256  # Gaussians per parallel work item


@njit(cache=True)
def _camera(Ks, c, width, height):
    """Camera c: fx, fy, cx, cy, skew and the fov limits of the Jacobian (as in ``project_gaussians``)."""
    fx, fy, cx, cy, skew = Ks[c, 0, 0], Ks[c, 1, 1], Ks[c, 0, 2], Ks[c, 1, 2], Ks[c, 0, 1]
    w, h = np.float32(width), np.float32(height)
    k = np.float32(0.3)
    half = np.float32(0.5)
    lim_x_pos = (w - cx) / fx + k * (half * w / fx)
    lim_x_neg = cx / fx + k * (half * w / fx)
    lim_y_pos = (h - cy) / fy + k * (half * h / fy)
    lim_y_neg = cy / fy + k * (half * h / fy)
    return fx, fy, cx, cy, skew, lim_x_pos, lim_x_neg, lim_y_pos, lim_y_neg


def _kernels(sh_degree: int):
    """(forward, backward) kernels of ``project_simd`` for an SH degree: one pair for degree <= 1, one for 2-3."""
    from reconstruction import project_simd as simd

    if sh_degree <= 1:
        return simd.project_fwd_simd, simd.project_bwd_simd
    return simd.project_fwd_simd3, simd.project_bwd_simd3


def _np(x: torch.Tensor, dtype=np.float32) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy(), dtype=dtype)


class ProjectCPU(torch.autograd.Function):
    """(means [N,3], quats [N,4], scales [N,3], sh0 [N,1,3], shN [N,K-1,3]) -> (radii, means2d, depths, conics,
    colors); see ``project_and_shade``. ``opacities`` and the cameras are not differentiated."""

    @staticmethod
    def forward(ctx, means, quats, scales, sh0, shN, opacities, viewmats, Ks, width, height, sh_degree, eps2d, near,
                far, radius_clip):
        campos = torch.linalg.inv(viewmats.detach())[:, :3, 3]
        arrays = (_np(means), _np(quats), _np(scales))
        cams = (_np(viewmats), _np(Ks), _np(campos))
        sh_np = (_np(sh0), _np(shN))
        opac = _np(opacities)
        fwd, _ = _kernels(sh_degree)
        with stage("projection + SH (forward)"):
            out = fwd(*arrays, opac, *sh_np, *cams, width, height, np.float32(eps2d), np.float32(near),
                      np.float32(far), np.float32(radius_clip), sh_degree)
        ctx.state = (arrays, sh_np, cams, width, height, eps2d, near, far, sh_degree)
        ctx.device = means.device
        radii, means2d, depths, conics, colors = (torch.from_numpy(o).to(means.device) for o in out)
        ctx.mark_non_differentiable(radii)
        return radii, means2d, depths, conics, colors

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, v_radii, v_means2d, v_depths, v_conics, v_colors):
        arrays, sh_np, cams, width, height, eps2d, near, far, sh_degree = ctx.state
        C, N = v_depths.shape
        v_col = _np(v_colors) if sh_degree >= 0 else np.zeros((C, 0, 3), np.float32)
        v_in = (_np(v_means2d), _np(v_depths), _np(v_conics), v_col)
        _, bwd = _kernels(sh_degree)
        with stage("projection + SH (backward)"):
            grads = bwd(*arrays, *sh_np, *cams, width, height, np.float32(eps2d), np.float32(near),
                        np.float32(far), sh_degree, *v_in)
        v_means, v_quats, v_scales, v_sh0, v_shN = (torch.from_numpy(g).to(ctx.device) for g in grads)
        with_sh = sh_degree >= 0
        return (v_means, v_quats, v_scales, v_sh0 if with_sh else None, v_shN if with_sh else None,
                None, None, None, None, None, None, None, None, None, None)


def project_and_shade(means, quats, scales, opacities, viewmats, Ks, width: int, height: int, sh=None,
                      sh_degree: int | None = None, eps2d: float = 0.3, near_plane: float = 0.01,
                      far_plane: float = 1e10, radius_clip: float = 0.0):
    """``project_gaussians`` (+ ``sh_to_colors`` when ``sh`` and ``sh_degree`` are given) in one compiled pass.
    ``sh``: SH coefficients [N,K,3], or gsplat's split of them as a pair (sh0 [N,1,3], shN [N,K-1,3]), read where
    they are (a fit's parameters: no concatenation forward, no slicing of the gradient backward).
    Returns radii [C,N,2] int32, means2d [C,N,2], depths [C,N], conics [C,N,3] and colors [C,N,3] (None without
    SH)."""
    from reconstruction.jit import first_call

    with_sh = sh is not None and sh_degree is not None
    if with_sh:
        sh0, shN = sh if isinstance(sh, (tuple, list)) else (sh[:, :1], sh[:, 1:])
        K = 1 + shN.shape[1] if shN.dim() == 3 else -1
        if not (0 <= sh_degree <= 3 and sh0.dim() == 3 and sh0.shape[1:] == (1, 3) and shN.dim() == 3
                and shN.shape[0] == sh0.shape[0] and shN.shape[2] == 3 and K >= (sh_degree + 1) ** 2):
            shapes = (tuple(sh0.shape), tuple(shN.shape)) if isinstance(sh, (tuple, list)) else tuple(sh.shape)
            raise ValueError(f"sh_degree {sh_degree} needs SH coefficients [N, >= {(sh_degree + 1) ** 2}, 3] "
                             f"(degree 0-3; or sh0 [N,1,3] and shN [N,K-1,3]), got {shapes}")
    else:
        sh0, shN = means.new_zeros(means.shape[0], 1, 3), means.new_zeros(means.shape[0], 0, 3)
    fwd = _kernels(sh_degree if with_sh else -1)[0].py_func
    with first_call("project_cpu", "the CPU projection kernels", fwd.__code__.co_filename, fwd.__name__):
        radii, means2d, depths, conics, colors = ProjectCPU.apply(
            means, quats, scales, sh0, shN, opacities, viewmats, Ks, width, height, sh_degree if with_sh else -1,
            eps2d, near_plane, far_plane, radius_clip)
    return radii, means2d, depths, conics, (colors if with_sh else None)
