"""The compiled CPU loss (reconstruction/loss_cpu.py) equals the torch loss of the fit, value and gradients."""

import pytest
import torch

from reconstruction.fit import FitConfig, _loss, _target_moments, ssim_map
from reconstruction.loss_cpu import photometric_loss, target_moments


def _inputs(B=2, H=37, W=29, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, H, W, 3, generator=g, requires_grad=True)  # the rasterizer's channel-last layout
    a = torch.rand(B, H, W, 1, generator=g, requires_grad=True)
    y = torch.rand(B, 3, H, W, generator=g)
    ya = (torch.rand(B, 1, H, W, generator=g) > 0.5).float()
    with torch.no_grad():
        x[0, 0, 0, 0] = y[0, 0, 0, 0]  # a tie: |x - y|'s gradient is 0 there, in torch and here
        a[0, 0, 0, 0] = ya[0, 0, 0, 0]
    return x, a, y, ya


def _torch_loss(x, a, y, ya, w, wa):
    xp = x.permute(0, 3, 1, 2)
    return ((1 - w) * (xp - y).abs().mean() + w * (1 - ssim_map(xp, y).mean())
            + wa * (a.permute(0, 3, 1, 2) - ya).abs().mean())


@pytest.mark.parametrize("w, wa", [(0.2, 0.5), (0.2, 0.0), (1.0, 1.0)])
def test_value_and_gradients_equal_the_torch_loss(w, wa):
    x, a, y, ya = _inputs()
    ref = _torch_loss(x, a, y, ya, w, wa)
    gx, ga = torch.autograd.grad(ref, [x, a], allow_unused=True)
    got = photometric_loss(x.permute(0, 3, 1, 2), a.permute(0, 3, 1, 2), y, ya, target_moments(y), w, wa)
    hx, ha = torch.autograd.grad(got, [x, a], allow_unused=True)
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    torch.testing.assert_close(hx, gx, rtol=1e-4, atol=1e-9)
    assert hx[0, 0, 0, 0] == gx[0, 0, 0, 0] or w == 1.0
    if wa:
        torch.testing.assert_close(ha, ga, rtol=0, atol=0)
    else:
        assert ha is None


def test_a_channel_first_render_is_accepted_and_moments_index_like_the_views():
    x, a, y, ya = _inputs(B=3)
    m = target_moments(y)
    assert m.shape == (3, 2, 3, 37, 29)
    xc = x.detach().permute(0, 3, 1, 2).contiguous().requires_grad_()  # not channel-last underneath
    one = photometric_loss(xc[[1]], a.permute(0, 3, 1, 2)[[1]], y[[1]], ya[[1]], m[[1]], 0.2, 0.5)
    ref = _torch_loss(x[[1]], a[[1]], y[[1]], ya[[1]], 0.2, 0.5)
    assert one.item() == pytest.approx(ref.item(), rel=1e-6)
    one.backward()
    assert xc.grad[[0, 2]].abs().sum() == 0 and xc.grad[1].abs().sum() > 0


def test_the_fit_uses_it_only_where_it_applies_and_gets_the_same_loss():
    cfg = FitConfig()
    x, a, y, ya = _inputs()
    params = {"opacities": torch.zeros(5, requires_grad=True), "scales": torch.zeros(5, 3, requires_grad=True)}
    xp, ap = x.permute(0, 3, 1, 2), a.permute(0, 3, 1, 2)
    m = _target_moments(y, cfg)
    fast, slow = _loss(cfg, params, xp, ap, y, ya, m), _loss(cfg, params, xp, ap, y, ya)
    assert fast.item() == pytest.approx(slow.item(), rel=1e-6)
    assert _target_moments(y[..., :5, :5], cfg) is None  # no larger than the SSIM window: torch's loss
    assert _target_moments(y, FitConfig(ssim_weight=0.0)) is None
    assert _target_moments(y.double(), cfg) is None
