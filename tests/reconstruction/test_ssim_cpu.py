"""The compiled SSIM term (reconstruction/ssim_cpu.py) equals ``ssim_map(...).mean()`` (itself equal to kornia's
SSIM, tests/reconstruction/test_fit.py) in value and gradient, and gives the same bits on 1 and 2 threads."""

import numba
import pytest
import torch

from reconstruction.fit import ssim_map
from reconstruction.ssim_cpu import ssim_mean


def _value_and_grad(fn, x, y):
    x = x.clone().requires_grad_()
    v = fn(x, y)
    v.backward()
    return v.detach(), x.grad


@pytest.mark.parametrize("shape", [(1, 3, 20, 24), (2, 3, 33, 17), (1, 1, 12, 12)])
def test_ssim_mean_equals_reference(shape):
    g = torch.Generator().manual_seed(sum(shape))
    y = torch.rand(shape, generator=g)
    x = (y + 0.2 * torch.randn(shape, generator=g)).clamp(0, 1)  # near the target, like a render late in a fit
    v, gx = _value_and_grad(ssim_mean, x, y)
    v_ref, gx_ref = _value_and_grad(lambda a, b: ssim_map(a, b).mean(), x, y)
    assert abs(float(v) - float(v_ref)) < 1e-5
    scale = float(gx_ref.abs().max())
    assert scale > 0 and torch.allclose(gx, gx_ref, rtol=1e-3, atol=1e-3 * scale), float((gx - gx_ref).abs().max())


def test_ssim_mean_falls_back_when_the_target_needs_a_gradient():
    x, y = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16).requires_grad_()
    ssim_mean(x, y).backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


def test_ssim_parallel_equals_serial():
    g = torch.Generator().manual_seed(5)
    x, y = torch.rand(1, 3, 40, 36, generator=g), torch.rand(1, 3, 40, 36, generator=g)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        serial = _value_and_grad(ssim_mean, x, y)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        parallel = _value_and_grad(ssim_mean, x, y)
    finally:
        numba.set_num_threads(before)
    assert torch.equal(serial[0], parallel[0]) and torch.equal(serial[1], parallel[1])
