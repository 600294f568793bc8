"""The compiled projection + SH pass (reconstruction/project_cpu.py) equals the torch functions it replaces
(``project_gaussians``, ``sh_to_colors``): values, culling and gradients; and its parallel kernels give the
same bits on 1 and 2 threads."""

import numba
import pytest
import torch

from mvgen.cameras import Cameras, intrinsics_from_fov, look_at, orbit
from reconstruction.project_cpu import project_and_shade
from reconstruction.rasterize import project_gaussians, sh_to_colors
from tests.reconstruction.conftest import random_scene

W, H = 40, 32


def _cameras():
    """An orbit camera and a close one: Gaussians behind it, off-screen and beyond the fov clamp."""
    eye = torch.tensor([[0.0, -3.0, 0.8], [0.3, 0.45, 0.2], [2.0, 1.0, -1.5]])
    K = intrinsics_from_fov(50.0, W, H).expand(3, 3, 3).clone()
    K[2, 0, 1] = 0.7  # a skewed camera: the projection keeps K[0, 1]
    return Cameras(look_at(eye), K, W, H)


def _outputs_and_grads(fn, params, seed=11):
    params = [p.detach().clone().requires_grad_() for p in params]
    radii, m2, depths, conics, colors = fn(*params)
    g = torch.Generator().manual_seed(seed)
    visible = (radii > 0).all(-1)  # the rasterizer only sends gradients to drawn Gaussians
    loss = sum(((t * torch.randn(t.shape, generator=g)) * visible[..., None]).sum() for t in (m2, conics, colors))
    loss = loss + (depths * torch.randn(depths.shape, generator=g) * visible).sum()
    loss.backward()
    return tuple(t.detach() for t in (radii, m2, depths, conics, colors)), [p.grad for p in params], visible


def _fused(sh_degree, cams):
    def fn(means, quats, scales, opac, sh):
        return project_and_shade(means, quats, scales, opac, cams.viewmats, cams.K, W, H, sh=sh,
                                 sh_degree=sh_degree)
    return fn


def _reference(sh_degree, cams):
    def fn(means, quats, scales, opac, sh):
        radii, m2, depths, conics = project_gaussians(means, quats, scales, opac, cams.viewmats, cams.K, W, H)
        return radii, m2, depths, conics, sh_to_colors(means, sh, sh_degree, cams.viewmats)
    return fn


@pytest.mark.parametrize("sh_degree", [0, 1, 2, 3])
def test_fused_projection_equals_torch_functions(sh_degree):
    params = random_scene(300, seed=sh_degree, spread=1.0, sh_degree=3)
    cams = _cameras()
    out_f, g_f, vis = _outputs_and_grads(_fused(sh_degree, cams), params)
    out_r, g_r, vis_r = _outputs_and_grads(_reference(sh_degree, cams), params)
    assert torch.equal(out_f[0], out_r[0]), "radii (culling) must agree exactly"
    assert vis.any(1).all() and not vis.all(), "the scene must have visible and culled Gaussians"
    for name, a, b in zip(["means2d", "depths", "conics", "colors"], out_f[1:], out_r[1:]):
        a, b = a[vis], b[vis]
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max())), f"{name}: {(a - b).abs().max()}"
    for name, a, b in zip(["means", "quats", "scales", "opacities", "sh"], g_f, g_r):
        if name == "opacities":  # not differentiated by the projection (only the radii use it)
            assert a is None or not a.any()
            continue
        scale = b.abs().max()
        assert scale > 0, f"{name}: the reference gradient must not vanish"
        assert torch.allclose(a, b, rtol=1e-3, atol=2e-4 * float(scale)), f"{name}: {(a - b).abs().max()} / {scale}"


def test_without_sh_and_culled_everything():
    means, quats, scales, opac, _ = random_scene(50, seed=5)
    cams = orbit(2, 10.0, width=W, height=H)
    radii, m2, depths, conics, colors = project_and_shade(means, quats, scales, opac, cams.viewmats, cams.K, W, H)
    ref = project_gaussians(means, quats, scales, opac, cams.viewmats, cams.K, W, H)
    assert colors is None and torch.equal(radii, ref[0]) and torch.allclose(m2, ref[1], atol=1e-4)
    far = project_and_shade(means + torch.tensor([0.0, 0.0, 100.0]), quats, scales, opac, cams.viewmats, cams.K,
                            W, H)
    assert (far[0] == 0).all()


def test_parallel_equals_serial():
    """Same bits with 1 and 2 numba threads, forward and backward (each thread owns whole Gaussians)."""
    params = random_scene(500, seed=9, spread=0.8, sh_degree=1)
    cams = _cameras()
    before = numba.get_num_threads()
    runs = []
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            runs.append(_outputs_and_grads(_fused(1, cams), params))
    finally:
        numba.set_num_threads(before)
    (out1, g1, _), (out2, g2, _) = runs
    assert all(torch.equal(a, b) for a, b in zip(out1, out2))
    assert all(torch.equal(a, b) for a, b in zip(g1[:3] + g1[4:], g2[:3] + g2[4:]))


def test_too_few_sh_coefficients_are_refused():
    """Degree 3 needs 16 coefficients per channel: fewer would be read (and written) past the end."""
    n = 4
    means, quats, scales = torch.zeros(n, 3), torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1), torch.full((n, 3), 0.1)
    viewmats = torch.eye(4)[None].clone()
    viewmats[0, 2, 3] = 3.0
    Ks = torch.tensor([[[50.0, 0, 32], [0, 50.0, 32], [0, 0, 1]]])
    with pytest.raises(ValueError, match="sh_degree 3 needs SH coefficients"):
        project_and_shade(means, quats, scales, torch.full((n,), 0.5), viewmats, Ks, 64, 64, torch.zeros(n, 4, 3), 3)


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_sh_as_a_pair_equals_the_concatenation(backend):
    """``rasterization`` with SH coefficients given as gsplat's split (sh0, shN) — how the fit passes them — renders
    and differentiates exactly as with the concatenated [N,K,3] (cpu: read in place; torch: concatenated)."""
    from reconstruction.rasterize import rasterization

    means, quats, scales, opac, sh = random_scene(200, seed=3, spread=0.8, sh_degree=1)
    cams = _cameras()

    def run(as_pair):
        leaves = [t.detach().clone().requires_grad_() for t in (means, sh[:, :1], sh[:, 1:])]
        colors = (leaves[1], leaves[2]) if as_pair else torch.cat(leaves[1:], dim=1)
        img, alpha, _ = rasterization(leaves[0], quats, scales, opac, colors, cams.viewmats, cams.K, W, H,
                                      sh_degree=1, backend=backend)
        (img * torch.linspace(0, 1, img.numel()).view_as(img)).sum().backward()
        return img.detach(), [t.grad for t in leaves]

    (img_a, g_a), (img_b, g_b) = run(True), run(False)
    assert torch.equal(img_a, img_b) and img_a.abs().sum() > 0
    assert all(torch.equal(a, b) for a, b in zip(g_a, g_b)) and g_a[2].abs().sum() > 0
    with pytest.raises(ValueError, match="sh0"):
        rasterization(means, quats, scales, opac, (sh[:, :2], sh[:, 2:]), cams.viewmats, cams.K, W, H, sh_degree=1,
                      backend=backend)
