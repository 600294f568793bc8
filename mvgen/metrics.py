"""Image metrics shared by reconstruction and evaluation: PSNR, SSIM (kornia) and LPIPS.

All functions take images [B,3,H,W] in [0,1] and return one value per image, [B].

LPIPS (design.md §6): the ``lpips`` package (AlexNet, v0.1) when torchvision's AlexNet weights are already in
the torch hub cache; otherwise ST-LPIPS (``stlpips-pytorch``, AlexNet, shift-tolerant), whose weights ship
inside its wheel. Nothing is ever downloaded and no network runs with random weights; ``LPIPS.impl`` names the
implementation so reports can say which one produced the numbers.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

from mvgen.limits import MIN_LPIPS_SIDE

SSIM_WINDOW = 11
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's AlexNet_Weights.IMAGENET1K_V1 file name
LPIPS_IMPLS = ("lpips-alex-v0.1", "stlpips-alex-shift-tolerant")


def _check_pair(a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {list(a.shape)} and {list(b.shape)}")
    if a.dim() != 4 or a.shape[1] != 3:
        raise ValueError(f"images must be [B,3,H,W], got {list(a.shape)}")


def min_image_size(with_lpips: bool = True) -> int:
    """The smallest image side SSIM (its window) and, ``with_lpips``, LPIPS (its network) can score."""
    return MIN_LPIPS_SIDE if with_lpips else SSIM_WINDOW


def check_image_size(height: int, width: int, with_lpips: bool = True, what: str = "images") -> None:
    """ValueError naming ``what`` when ``height`` x ``width`` is too small to score (see ``min_image_size``)."""
    need = min_image_size(with_lpips)
    if min(height, width) < need:
        raise ValueError(f"{what} are {width}x{height} px; {'LPIPS' if with_lpips else 'SSIM'} needs at least "
                         f"{need} px on each side")


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """[B] peak signal-to-noise ratio in dB for images in [0,1] (identical images give +inf)."""
    _check_pair(a, b)
    mse = ((a.float() - b.float()) ** 2).flatten(1).mean(dim=1)
    return -10.0 * torch.log10(mse)


def ssim(a: Tensor, b: Tensor) -> Tensor:
    """[B] mean SSIM (kornia, 11x11 Gaussian window, sigma 1.5, reflect padding)."""
    from kornia.metrics import ssim as kornia_ssim

    _check_pair(a, b)
    check_image_size(a.shape[2], a.shape[3], with_lpips=False)
    return kornia_ssim(a.float(), b.float(), SSIM_WINDOW).flatten(1).mean(dim=1)


def alexnet_weights_path() -> Path:
    """Where torchvision keeps AlexNet's ImageNet weights (present only if something put them there)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


class LPIPS:
    """Callable LPIPS distance: ``LPIPS()(a, b)`` -> [B]. ``impl`` says which network is used."""

    def __init__(self, impl: str | None = None):
        if impl is None:
            impl = LPIPS_IMPLS[0] if alexnet_weights_path().is_file() else LPIPS_IMPLS[1]
        if impl not in LPIPS_IMPLS:
            raise ValueError(f"LPIPS impl must be one of {LPIPS_IMPLS}, got {impl!r}")
        if impl == LPIPS_IMPLS[0] and not alexnet_weights_path().is_file():
            raise ValueError(f"{impl} needs torchvision's AlexNet weights at {alexnet_weights_path()}")
        self.impl = impl
        self.net = _load_lpips() if impl == LPIPS_IMPLS[0] else _load_stlpips()
        for p in self.net.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        _check_pair(a, b)
        check_image_size(a.shape[2], a.shape[3], with_lpips=True)
        self.net.to(a.device)  # one shared network follows the images (a no-op when it is there already)
        a = a.float().clamp(0, 1) * 2 - 1
        b = b.float().clamp(0, 1) * 2 - 1
        return self.net(a, b).flatten(1).mean(dim=1)

    @torch.no_grad()
    def features(self, x: Tensor) -> list[Tensor]:
        """Unit-normalised backbone features of images [B,3,H,W] in [0,1], one [B,C,h,w] map per layer: compute
        them once for an image compared with many others (``distance``)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"images must be [B,3,H,W], got {list(x.shape)}")
        self.net.to(x.device)
        x = x.float().clamp(0, 1) * 2 - 1
        if self.net.version == "0.1":
            x = self.net.scaling_layer(x)
        return [f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10) for f in self.net.net(x)]

    @torch.no_grad()
    def distance(self, fa: list[Tensor], fb: list[Tensor]) -> Tensor:
        """[B] LPIPS from two images' ``features`` (equal to ``self(a, b)``): per layer, the learned channel weights
        applied to squared feature differences, averaged over space, summed over layers."""
        return sum(lin((a - b) ** 2).mean(dim=(1, 2, 3)) for lin, a, b in zip(self.net.lins, fa, fb))


def _load_lpips():
    import lpips

    return lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=False, verbose=False).eval()


def _load_stlpips():
    """ST-LPIPS AlexNet with every weight (backbone and linear heads) from the wheel, checked to be complete."""
    import stlpips_pytorch
    from stlpips_pytorch.stlpips import LPIPS as STLPIPS

    weights = Path(stlpips_pytorch.__file__).parent / "weights" / "vST0.0" / "alex_shift_tolerant.pth"
    net = STLPIPS(net="alex", variant="shift_tolerant", pretrained=False, verbose=False)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    result = net.load_state_dict(state, strict=False)
    # "lins.i.*" are the same modules as "lin{i}.*" (registered twice by the package); anything else missing
    # would stay random, so refuse.
    missing = [k for k in result.missing_keys if not (k.startswith("lins.") and f"lin{k.split('.')[1]}."
                                                       + k.split(".", 2)[2] in state)]
    if missing or result.unexpected_keys:
        raise RuntimeError(f"ST-LPIPS weights do not match the network: missing {missing}, "
                           f"unexpected {result.unexpected_keys}")
    return net.eval()


@lru_cache(maxsize=2)
def get_lpips(impl: str | None = None) -> LPIPS:
    """A shared ``LPIPS`` instance (loading the network takes a second)."""
    return LPIPS(impl)


def lpips_available_impl() -> str:
    """The implementation ``LPIPS()`` would pick on this machine."""
    return LPIPS_IMPLS[0] if alexnet_weights_path().is_file() else LPIPS_IMPLS[1]

