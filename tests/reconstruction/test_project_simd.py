"""The SIMD projection kernels (reconstruction/project_simd.py, SH degrees -1 to 3) give the outputs and gradients
of the scalar kernels they replaced (tests/reconstruction/project_reference.py) bit for bit — on scenes with Gaussians behind the camera, beyond the fov clamp,
off-screen, with degenerate quaternions and scales, faint opacities, overflowing means, zero output gradients
and clamped colours —
and project_and_shade takes them."""

import numpy as np
import pytest
import torch

from mvgen.cameras import Cameras, intrinsics_from_fov, look_at
from reconstruction import project_cpu
from reconstruction.project_simd import project_bwd_simd, project_bwd_simd3, project_fwd_simd, project_fwd_simd3
from tests.reconstruction.project_reference import project_bwd_scalar, project_fwd_scalar

W, H = 40, 32
F32 = np.float32


def _scene(n: int, coeffs: int, seed: int):
    """Gaussians and three cameras (one skewed and close: many Gaussians behind it or beyond the fov clamp),
    with the awkward cases planted: zero quaternions, zero scales, opacities under 1/255, a mean at a camera."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 1.2, (n, 3)).astype(F32)
    quats = rng.normal(0, 1, (n, 4)).astype(F32)
    scales = np.exp(rng.normal(-2.5, 1.0, (n, 3))).astype(F32)
    opac = rng.uniform(0, 1, n).astype(F32)
    quats[::17] = 0.0
    scales[::19] = 0.0
    opac[::13] = 1e-3
    sh0 = rng.normal(0, 0.6, (n, 1, 3)).astype(F32)
    shN = rng.normal(0, 0.6, (n, coeffs, 3)).astype(F32)
    eye = torch.tensor([[0.0, -3.0, 0.8], [0.3, 0.45, 0.2], [2.0, 1.0, -1.5]])
    K = intrinsics_from_fov(50.0, W, H).expand(3, 3, 3).clone()
    K[2, 0, 1] = 0.7
    cams = Cameras(look_at(eye), K, W, H)
    viewmats = cams.viewmats.numpy().astype(F32)
    campos = torch.linalg.inv(cams.viewmats)[:, :3, 3].numpy().astype(F32)
    means[5] = campos[1]  # a mean at a camera centre: the SH direction's norm clamps
    means[9, 0] = means[10, 1] = 3e38  # overflow to inf and NaN on the way (9 and 12 get no gradient: _grads_in)
    scales[12] = scales[13] = 1e30
    return means, quats, scales, opac, sh0, shN, viewmats, K.numpy().astype(F32), np.ascontiguousarray(campos)


def _grads_in(C: int, n: int, colours: bool, seed: int):
    rng = np.random.default_rng(seed)
    v = [rng.normal(0, 1, shape).astype(F32) for shape in ((C, n, 2), (C, n), (C, n, 3), (C, n if colours else 0, 3))]
    for t in v[:3]:
        t[:, ::3] = 0.0  # Gaussians with no gradient in a camera: the scalar kernel skips them
    if colours:
        v[3][:, ::4, 1] = 0.0
    return v


@pytest.mark.parametrize("sh_degree", [-1, 0, 1, 2, 3])
@pytest.mark.parametrize("coeffs", ["exact", 15])
@pytest.mark.parametrize("cams", [1, 3])
def test_simd_kernels_equal_the_scalar_ones_bit_for_bit(sh_degree, coeffs, cams):
    n = 700  # not a multiple of the 256-Gaussian chunk
    coeffs = max(3, (sh_degree + 1) ** 2 - 1) if coeffs == "exact" else coeffs  # or more than the degree uses
    means, quats, scales, opac, sh0, shN, V, K, campos = _scene(n, coeffs, seed=sh_degree + 3 * coeffs)
    V, K, campos = V[:cams], K[:cams], campos[:cams]
    common = (V, K, campos, W, H, F32(0.3), F32(0.01), F32(1e10))
    fwd, bwd = (project_fwd_simd, project_bwd_simd) if sh_degree <= 1 else (project_fwd_simd3, project_bwd_simd3)
    fwd_args = (means, quats, scales, opac, sh0, shN, *common, F32(0.0), sh_degree)
    scalar, simd = project_fwd_scalar(*fwd_args), fwd(*fwd_args)
    radii = scalar[0]
    assert (radii > 0).any() and (radii == 0).any(), "the scene must have drawn and culled Gaussians"
    for name, a, b in zip(["radii", "means2d", "depths", "conics", "colors"], scalar, simd):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_array_equal(a, b, err_msg=name)
    bwd_args = (means, quats, scales, sh0, shN, *common, sh_degree, *_grads_in(cams, n, sh_degree >= 0, seed=7))
    scalar, simd = project_bwd_scalar(*bwd_args), bwd(*bwd_args)
    for name, a, b in zip(["means", "quats", "scales", "sh0", "shN"], scalar, simd):
        assert a.shape == b.shape, name
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert np.nanmax(np.abs(scalar[0])) > 0 and (sh_degree < 1 or np.nanmax(np.abs(scalar[4])) > 0)


def test_project_and_shade_takes_the_simd_kernels():
    assert project_cpu._kernels(1) == (project_fwd_simd, project_bwd_simd)
    assert project_cpu._kernels(0)[0] is project_fwd_simd and project_cpu._kernels(-1)[1] is project_bwd_simd
    assert project_cpu._kernels(2) == project_cpu._kernels(3) == (project_fwd_simd3, project_bwd_simd3)
