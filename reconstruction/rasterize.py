"""Gaussian rasterization with a choice of backend: ``gsplat`` (CUDA), ``cpu`` (our numba kernel) or ``torch``
(a slow dense reference). One public function, ``rasterization``, with the subset of
``gsplat.rasterization``'s signature mvgen uses and the same outputs, so ``gsplat.strategy.DefaultStrategy``
works with every backend.

On the non-CUDA backends the 3D part runs in torch (an element-wise EWA projection, tested equal to gsplat's
pure-torch one, and gsplat's pure-torch SH evaluation) so autograd differentiates it; it follows gsplat's CUDA
rules: eps2d blur, near/far culling, opacity-aware
bounding radii (``min(3.33, sqrt(2 ln(o / (1/255))))`` standard deviations), off-image culling. Only the 2D
compositing differs between ``cpu`` and ``torch``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Backend = Literal["auto", "gsplat", "cpu", "torch"]
BACKENDS = ("auto", "gsplat", "cpu", "torch")
RENDER_MODES = ("RGB", "RGB+D", "RGB+ED")


def choose_backend(backend: str = "auto", device: torch.device | str = "cpu") -> str:
    """The backend for tensors on ``device``: ``auto`` is gsplat's CUDA kernels on a CUDA device, else the
    compiled ``cpu`` kernel. ``gsplat`` needs CUDA tensors; ``cpu`` and ``torch`` take tensors on any device
    (``cpu`` composites a CPU copy and returns to the device)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "gsplat" if torch.device(device).type == "cuda" else "cpu"
    if backend == "gsplat" and not torch.cuda.is_available():
        raise ValueError("backend 'gsplat' needs a CUDA GPU; use 'cpu' (or 'auto') on this machine")
    if backend == "gsplat" and torch.device(device).type != "cuda":
        raise ValueError(f"backend 'gsplat' needs CUDA tensors, these are on {torch.device(device)}; run on the "
                         f"GPU (--device cuda / device: cuda) or use backend 'auto'")
    return backend


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """[N,4] quaternions wxyz (any norm, gsplat's convention) -> [N,3,3] rotation matrices."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1).reshape(-1, 3, 3)


def project_gaussians(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, viewmats: Tensor,
                      Ks: Tensor, width: int, height: int, eps2d: float = 0.3, near_plane: float = 0.01,
                      far_plane: float = 1e10, radius_clip: float = 0.0):
    """EWA projection of 3D Gaussians into C cameras with gsplat's CUDA rules, written element-wise in torch
    (per-Gaussian 3x3 products as [C,N] tensor arithmetic: several times faster on CPU than batched matmuls;
    the tests check it equals ``gsplat.cuda._torch_impl._fully_fused_projection``).

    Args:
        means [N,3], quats [N,4] (wxyz, any norm), scales [N,3] (positive), opacities [N] in [0,1],
        viewmats [C,4,4] world-to-camera (OpenCV), Ks [C,3,3].
    Returns:
        radii [C,N,2] int32 (0 = culled), means2d [C,N,2], depths [C,N], conics [C,N,3] (a, b, c of the inverse
        2D covariance [[a, b], [b, c]]).
    """
    # world covariance  Sigma = (R S)(R S)^T, six unique entries, each [N]
    R = quat_to_rotmat(quats)  # (N, 3, 3); used entry by entry below
    s = scales.unbind(-1)
    M = [[R[:, i, j] * s[j] for j in range(3)] for i in range(3)]
    cov = [[None] * 3 for _ in range(3)]
    for i in range(3):
        for j in range(i, 3):
            cov[i][j] = cov[j][i] = M[i][0] * M[j][0] + M[i][1] * M[j][1] + M[i][2] * M[j][2]

    # camera-space means, each [C,N]
    Rw = viewmats[:, :3, :3, None]  # (C, 3, 3, 1): broadcasts against [N]
    tw = viewmats[:, :3, 3, None]
    mu = means.unbind(-1)
    tx, ty, tz = (Rw[:, r, 0] * mu[0] + Rw[:, r, 1] * mu[1] + Rw[:, r, 2] * mu[2] + tw[:, r] for r in range(3))
    depths = tz
    in_depth = (tz > near_plane) & (tz < far_plane)
    tz = torch.where(in_depth, tz, torch.ones_like(tz))  # culled anyway; keeps inf/NaN out of autograd

    # perspective Jacobian at the (fov-clamped) mean, composed with the camera rotation: A = J Rw, [2][3] of [C,N]
    fx, fy, cx, cy = (Ks[:, 0, 0, None], Ks[:, 1, 1, None], Ks[:, 0, 2, None], Ks[:, 1, 2, None])
    lim_x_pos = (width - cx) / fx + 0.3 * (0.5 * width / fx)
    lim_x_neg = cx / fx + 0.3 * (0.5 * width / fx)
    lim_y_pos = (height - cy) / fy + 0.3 * (0.5 * height / fy)
    lim_y_neg = cy / fy + 0.3 * (0.5 * height / fy)
    txc = tz * torch.clamp(tx / tz, min=-lim_x_neg, max=lim_x_pos)
    tyc = tz * torch.clamp(ty / tz, min=-lim_y_neg, max=lim_y_pos)
    j00, j02 = fx / tz, -fx * txc / (tz * tz)
    j11, j12 = fy / tz, -fy * tyc / (tz * tz)
    A = ([j00 * Rw[:, 0, k] + j02 * Rw[:, 2, k] for k in range(3)],
         [j11 * Rw[:, 1, k] + j12 * Rw[:, 2, k] for k in range(3)])
    U = [[cov[i][0] * A[a][0] + cov[i][1] * A[a][1] + cov[i][2] * A[a][2] for i in range(3)] for a in range(2)]
    c00 = A[0][0] * U[0][0] + A[0][1] * U[0][1] + A[0][2] * U[0][2] + eps2d
    c01 = A[0][0] * U[1][0] + A[0][1] * U[1][1] + A[0][2] * U[1][2]
    c11 = A[1][0] * U[1][0] + A[1][1] * U[1][1] + A[1][2] * U[1][2] + eps2d
    means2d = torch.stack([(Ks[:, 0, 0, None] * tx + Ks[:, 0, 1, None] * ty) / tz + cx,
                           (Ks[:, 1, 1, None] * ty) / tz + cy], dim=-1)  # (C, N, 2)

    det = c00 * c11 - c01 * c01
    det_safe = det.clamp(min=1e-10)
    conics = torch.stack([c11 / det_safe, -c01 / det_safe, c00 / det_safe], dim=-1)  # (C, N, 3)
    with torch.no_grad():
        alpha_min = 1.0 / 255.0
        op = opacities.detach().expand_as(depths)
        extend = torch.sqrt(2.0 * torch.log(op.clamp(min=alpha_min) / alpha_min)).clamp(max=3.33)
        rx = torch.ceil(extend * torch.sqrt(c00.clamp(min=0)))
        ry = torch.ceil(extend * torch.sqrt(c11.clamp(min=0)))
        mx, my = means2d[..., 0], means2d[..., 1]
        valid = in_depth & (det > 0) & (op >= alpha_min) & ((rx > radius_clip) | (ry > radius_clip))
        valid &= (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
        valid &= torch.isfinite(means2d).all(-1) & torch.isfinite(conics).all(-1)
        radii = torch.where(valid[..., None], torch.stack([rx, ry], dim=-1), 0.0).to(torch.int32)
    return radii, means2d, depths, conics


def sh_to_colors(means: Tensor, sh: Tensor, sh_degree: int, viewmats: Tensor) -> Tensor:
    """View-dependent colours [C,N,3] from SH coefficients [N,K,3] (gsplat: ``clamp_min(SH(dir) + 0.5, 0)``)."""
    from gsplat.cuda._torch_impl import _spherical_harmonics

    campos = torch.linalg.inv(viewmats)[:, :3, 3]  # (C, 3)
    dirs = means[None, :, :] - campos[:, None, :]  # (C, N, 3)
    coeffs = sh[None].expand(dirs.shape[0], *sh.shape)  # (C, N, K, 3)
    return torch.clamp_min(_spherical_harmonics(sh_degree, dirs, coeffs) + 0.5, 0.0)


def rasterization(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    sh_degree: int | None = None,
    backgrounds: Tensor | None = None,
    render_mode: str = "RGB",
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    radius_clip: float = 0.0,
    tile_size: int = 16,
    backend: Backend = "auto",
) -> tuple[Tensor, Tensor, dict]:
    """Render N Gaussians into C cameras.

    Args:
        means [N,3]; quats [N,4] wxyz; scales [N,3] (activated, > 0); opacities [N] (activated, in [0,1]).
        colors: [N,D] or [C,N,D] colours, or SH coefficients [N,K,3] when ``sh_degree`` is given (also as the pair
            (sh0 [N,1,3], shN [N,K-1,3]), gsplat's parameter split: the cpu backend reads the two where they are,
            the others concatenate them).
        viewmats [C,4,4] world-to-camera (OpenCV; ``Cameras.viewmats``); Ks [C,3,3].
        backgrounds: [C,D] colour composited behind (``image + (1 - alpha) · background``).
        render_mode: "RGB"; "RGB+D" appends accumulated camera depth; "RGB+ED" appends expected depth.
        backend: "auto" (gsplat on CUDA, else cpu), "gsplat", "cpu" or "torch".
    Returns:
        colors [C,H,W,D(+1)], alphas [C,H,W,1] and ``info`` with ``means2d`` [C,N,2] (non-leaf, requires grad
        when the inputs do), ``radii`` [C,N,2] int32, ``depths`` [C,N], ``conics`` [C,N,3], ``opacities`` [C,N],
        ``width``, ``height``, ``n_cameras``, ``tile_size``, ``gaussian_ids`` (None: not packed), ``backend``.
    """
    N = means.shape[0]
    C = viewmats.shape[0]
    sh_pair = None
    if isinstance(colors, (tuple, list)):  # (sh0, shN)
        stand_in = _pair_shape(tuple(colors))
        if sh_degree is not None and choose_backend(backend, means.device) == "cpu" and not (
                viewmats.requires_grad or Ks.requires_grad):
            sh_pair, colors = tuple(colors), stand_in  # checked as their concatenation's shape, never concatenated
        else:
            colors = torch.cat(tuple(colors), dim=1)
    _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree, render_mode,
                  backgrounds)
    backend = choose_backend(backend, means.device)
    if backend == "gsplat":
        import gsplat

        return gsplat.rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                                    sh_degree=sh_degree, backgrounds=backgrounds, render_mode=render_mode,
                                    near_plane=near_plane, far_plane=far_plane, eps2d=eps2d,
                                    radius_clip=radius_clip, tile_size=tile_size, packed=False)

    if backend == "cpu" and not (viewmats.requires_grad or Ks.requires_grad):
        from reconstruction.project_cpu import project_and_shade  # one compiled pass (values equal the torch path)

        radii, means2d, depths, conics, sh_colors = project_and_shade(
            means, quats, scales, opacities, viewmats, Ks, width, height,
            sh_pair if sh_pair is not None else (colors if sh_degree is not None else None),
            sh_degree, eps2d, near_plane, far_plane, radius_clip)
    else:
        radii, means2d, depths, conics = project_gaussians(means, quats, scales, opacities, viewmats, Ks, width,
                                                            height, eps2d, near_plane, far_plane, radius_clip)
        sh_colors = sh_to_colors(means, colors, sh_degree, viewmats) if sh_degree is not None else None
    if sh_degree is not None:
        colors = sh_colors  # (C, N, 3)
    elif colors.dim() == 2:
        colors = colors[None].expand(C, N, colors.shape[-1])
    if render_mode in ("RGB+D", "RGB+ED"):
        colors = torch.cat([colors, depths[..., None]], dim=-1)
    opacities_c = opacities[None].expand(C, N)

    if backend == "cpu":
        from reconstruction.raster_cpu import rasterize_to_pixels

        image, alpha = rasterize_to_pixels(means2d, conics, colors, opacities_c, radii, depths, width, height,
                                           tile_size)
    else:
        from reconstruction.raster_torch import rasterize_to_pixels

        image, alpha = rasterize_to_pixels(means2d, conics, colors, opacities_c, radii, depths, width, height)

    if backgrounds is not None:
        bg = backgrounds
        if render_mode != "RGB":
            bg = torch.cat([bg, bg.new_zeros(C, 1)], dim=-1)  # depth channel gets no background
        image = image + (1.0 - alpha) * bg[:, None, None, :]
    if render_mode == "RGB+ED":
        image = torch.cat([image[..., :-1], image[..., -1:] / alpha.clamp(min=1e-10)], dim=-1)
    info = {"means2d": means2d, "radii": radii, "depths": depths, "conics": conics, "opacities": opacities_c,
            "width": width, "height": height, "n_cameras": C, "tile_size": tile_size, "gaussian_ids": None,
            "camera_ids": None, "batch_ids": None, "backend": backend}
    return image, alpha, info


def _pair_shape(pair) -> Tensor:
    """An empty stand-in with the shape of (sh0, shN) concatenated along dim 1, on their device, for the checks."""
    sh0, shN = pair
    if (sh0.dim() != 3 or shN.dim() != 3 or sh0.shape[0] != shN.shape[0] or sh0.shape[1] != 1
            or sh0.shape[2] != shN.shape[2] or sh0.device != shN.device):
        raise ValueError(f"SH coefficients as (sh0, shN) must be [N,1,3] and [N,K-1,3] on one device, got "
                         f"{list(sh0.shape)} on {sh0.device} and {list(shN.shape)} on {shN.device}")
    return sh0.new_empty(1, 1, 1).expand(sh0.shape[0], sh0.shape[1] + shN.shape[1], sh0.shape[2])  # no memory


def _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree, render_mode,
                  backgrounds=None):
    N = means.shape[0] if means.dim() == 2 else -1
    if means.dim() != 2 or means.shape[1] != 3:
        raise ValueError(f"means must be [N,3], got {list(means.shape)}")
    for name, t, shape in (("quats", quats, (N, 4)), ("scales", scales, (N, 3)), ("opacities", opacities, (N,))):
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must be {list(shape)}, got {list(t.shape)}")
    C = viewmats.shape[0] if viewmats.dim() == 3 else -1
    if viewmats.dim() != 3 or viewmats.shape[1:] != (4, 4):
        raise ValueError(f"viewmats must be [C,4,4], got {list(viewmats.shape)}")
    if tuple(Ks.shape) != (C, 3, 3):
        raise ValueError(f"Ks must be [{C},3,3], got {list(Ks.shape)}")
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise ValueError(f"width/height must be positive integers, got {width!r}x{height!r}")
    for name, t in (("quats", quats), ("scales", scales), ("opacities", opacities), ("colors", colors),
                    ("viewmats", viewmats), ("Ks", Ks), ("backgrounds", backgrounds)):
        if t is not None and t.device != means.device:
            raise ValueError(f"{name} is on {t.device} but means on {means.device}: all inputs on one device")
    if render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode must be one of {RENDER_MODES}, got {render_mode!r}")
    if sh_degree is not None:
        if colors.dim() != 3 or colors.shape[0] != N or colors.shape[2] != 3:
            raise ValueError(f"with sh_degree, colors must be SH coefficients [N,K,3], got {list(colors.shape)}")
        if not 0 <= sh_degree <= 3 or (sh_degree + 1) ** 2 > colors.shape[1]:
            raise ValueError(f"sh_degree {sh_degree} needs 0..3 and at least {(sh_degree + 1) ** 2} coefficients")
    elif not ((colors.dim() == 2 and colors.shape[0] == N) or (colors.dim() == 3 and colors.shape[:2] == (C, N))):
        raise ValueError(f"colors must be [N,D] or [C,N,D] (or SH [N,K,3] with sh_degree), got {list(colors.shape)}")

