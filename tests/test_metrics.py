"""Image metrics equal hand-computed values on known images; LPIPS picks a real network, never random weights."""

import math

import pytest
import torch

from mvgen import metrics
from mvgen.metrics import LPIPS, get_lpips, psnr, ssim


def test_psnr_hand_computed():
    a = torch.zeros(2, 3, 8, 8)
    b = torch.full((2, 3, 8, 8), 0.1)
    b[1] = 0.5
    assert torch.allclose(psnr(a, b), torch.tensor([20.0, -10 * math.log10(0.25)]), atol=1e-4)
    assert torch.isinf(psnr(a, a)).all()


def test_ssim_hand_computed():
    # constant images: SSIM = (2 mu_a mu_b + c1) / (mu_a^2 + mu_b^2 + c1) (variances are 0)
    a = torch.full((1, 3, 16, 16), 0.2)
    b = torch.full((1, 3, 16, 16), 0.6)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    expected = (2 * 0.2 * 0.6 + c1) * c2 / ((0.2 ** 2 + 0.6 ** 2 + c1) * c2)
    assert torch.allclose(ssim(a, b), torch.tensor([expected]), atol=1e-4)
    x = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-4)
    assert (ssim(x, 1 - x) < 0).all()  # anti-correlated content


def test_shape_errors():
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))
    with pytest.raises(ValueError, match=r"\[B,3,H,W\]"):
        ssim(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))


def _test_image():
    ys, xs = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    img = torch.stack([xs, ys, 0.5 + 0.5 * torch.sin(12 * xs) * torch.cos(9 * ys)])
    return img[None].clamp(0, 1)


def test_lpips_is_a_loaded_network_and_orders_distortions():
    lp = get_lpips()
    assert lp.impl in metrics.LPIPS_IMPLS and lp.impl == metrics.lpips_available_impl()
    img = _test_image()
    g = torch.Generator().manual_seed(0)
    slight = (img + 0.03 * torch.randn(img.shape, generator=g)).clamp(0, 1)
    strong = (img + 0.3 * torch.randn(img.shape, generator=g)).clamp(0, 1)
    d0, d1, d2 = lp(img, img), lp(img, slight), lp(img, strong)
    assert d0.shape == (1,) and float(d0) < 1e-6
    assert 0 < float(d1) < float(d2)
    assert float(lp(img, 1 - img)) > float(d1)


def test_lpips_choice_follows_local_alexnet_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(metrics, "alexnet_weights_path", lambda: tmp_path / "missing.pth")
    assert metrics.lpips_available_impl() == "stlpips-alex-shift-tolerant"
    with pytest.raises(ValueError, match="AlexNet weights"):
        LPIPS("lpips-alex-v0.1")
    with pytest.raises(ValueError, match="impl"):
        LPIPS("vgg")
    present = tmp_path / "alexnet.pth"
    present.write_bytes(b"")
    monkeypatch.setattr(metrics, "alexnet_weights_path", lambda: present)
    assert metrics.lpips_available_impl() == "lpips-alex-v0.1"


def _lpips_package_with_random_weights():
    """The ``lpips`` package's network (random AlexNet: its weights are not on this machine) — only for checking
    that our feature path computes the package's own formula, never for a reported number."""
    import lpips

    lp = object.__new__(LPIPS)
    lp.impl, lp.net = "lpips-alex-v0.1", lpips.LPIPS(net="alex", pretrained=False, pnet_rand=True, verbose=False).eval()
    return lp


@pytest.mark.parametrize("which", ["shipped", "lpips-package"])
def test_lpips_from_cached_features_equals_the_direct_distance(which):
    lp = get_lpips() if which == "shipped" else _lpips_package_with_random_weights()
    g = torch.Generator().manual_seed(1)
    a = torch.rand(3, 3, 48, 40, generator=g)
    b = (a + 0.2 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    fa, fb = lp.features(a), lp.features(b)
    assert len(fa) == len(lp.net.lins) and fa[0].shape[0] == 3
    direct = lp(a, b)
    assert torch.allclose(lp.distance(fa, fb), direct, rtol=1e-5, atol=1e-6)
    assert float(direct.abs().min()) > 0  # (random linear heads can weigh a layer negatively)
    with pytest.raises(ValueError, match="B,3,H,W"):
        lp.features(a[:, :2])
