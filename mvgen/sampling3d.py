"""3D-consistent sampling (design.md §1): at a few denoising steps, fit Gaussians to the predicted clean views,
render them back at the same cameras, and steer the sample toward those renders.

VideoMV's 3D-aware denoising does this with a feed-forward reconstructor; here it is the fast CPU fit of
``reconstruction.fit``, warm-started from one steering step to the next (the first fit starts from the visual
hull of the predicted views' silhouettes; later ones continue the previous Gaussians). The pipeline side is
``PTDiTMultiViewPipeline.steer_latents``; this module only provides the ``steer`` callable and its settings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

STEER_MODES = ("off", "gaussians")


@dataclass
class SteerSettings:
    """How 3D-consistent sampling runs. Defaults: see configs/app.yaml (measured there)."""

    mode: str = "off"  # "off" or "gaussians"
    at: tuple = (0.5, 0.65, 0.8)  # when to steer, as fractions of the denoising steps (0 = first, 1 = last)
    strength: float = 1.0  # how far the predicted clean views move toward the renders, in [0, 1]
    first_steps: int = 200  # fitting steps of the first steering fit (from the visual hull)
    next_steps: int = 100  # fitting steps of each later one (warm-started)

    def __post_init__(self):
        if self.mode not in STEER_MODES:
            raise ValueError(f"steer mode must be one of {STEER_MODES}, got {self.mode!r}")
        self.at = tuple(float(a) for a in self.at)
        if not all(0.0 <= a <= 1.0 for a in self.at):
            raise ValueError(f"steer at: fractions of the denoising steps in [0, 1], got {list(self.at)}")
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"steer strength must be in [0, 1], got {self.strength}")
        for name in ("first_steps", "next_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"steer {name} must be a positive integer, got {value!r}")

    def step_indices(self, num_inference_steps: int) -> list[int]:
        """The denoising step indices to steer at (distinct, in order)."""
        last = num_inference_steps - 1
        return sorted({min(last, round(a * last)) for a in self.at}) if self.mode != "off" else []


@dataclass
class GaussianSteer:
    """``steer(images [V,3,H,W] in [0,1], cameras) -> renders [V,3,H,W]`` for ``pipe(..., steer=...)``.

    One instance per sample (it keeps the Gaussians between calls). ``log`` records each call's fit steps,
    Gaussians, seconds and how far the renders are from the views (PSNR), for reports."""

    fit_config: object  # reconstruction.fit.FitConfig of the final reconstruction (steps are set here)
    settings: SteerSettings = field(default_factory=SteerSettings)
    backend: str = "auto"
    gaussians: object = None
    log: list = field(default_factory=list)

    def __call__(self, images, cameras):
        import torch

        from mvgen.generate import alpha_from_white
        from mvgen.metrics import psnr
        from reconstruction.fit import fit
        from reconstruction.gaussians import render

        t0 = time.perf_counter()
        images = images.float().clamp(0, 1)  # fitted where the pipeline samples (its device)
        alpha = alpha_from_white(images.permute(0, 2, 3, 1).cpu().numpy())  # the matte rule lives in numpy
        rgba = torch.cat([images, torch.from_numpy(alpha)[:, None].to(images.device)], dim=1).contiguous()
        first = self.gaussians is None
        steps = self.settings.first_steps if first else self.settings.next_steps
        cfg = replace(self.fit_config, steps=steps, early_stop_tol=0.0,
                      refine_start=min(self.fit_config.refine_start, steps // 4))
        if not first:  # a continuation: densify from the start, positions already settled
            cfg = replace(cfg, refine_start=0, lr_means=cfg.lr_means * cfg.lr_means_final_ratio ** 0.5)
        with torch.enable_grad():  # the pipeline samples under no_grad; fitting needs gradients
            result = fit(rgba, cameras, cfg, self.backend, start=self.gaussians)
        self.gaussians = result.gaussians
        renders = render(result.gaussians, cameras, self.fit_config.background, self.backend)[0]
        self.log.append({"fit_steps": result.steps, "gaussians": len(result.gaussians),
                         "psnr_render_vs_views": float(psnr(renders, images).mean()),
                         "seconds": round(time.perf_counter() - t0, 2)})
        return renders.to(images.dtype)
