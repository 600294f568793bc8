"""Fit 3D Gaussians to posed RGBA views: initialisation, L1 + SSIM (+ alpha) loss on a white background,
gsplat's ``DefaultStrategy`` densification and pruning, an SH degree schedule, per-parameter Adam learning
rates, early stop, a progress callback and a seed. Works with every rasterizer backend.

One YAML preset (``configs/reconstruction.yaml``) -> one ``FitConfig`` (``FitConfig.from_yaml``).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from mvgen.cameras import Cameras
from reconstruction import warn_if_spinning
from reconstruction.adam import make_adam
from reconstruction.gaussians import Gaussians
from reconstruction.init import INITS, dilate_masks, initial_gaussians, outside_hull
from reconstruction.profile import profiling, stage
from reconstruction.rasterize import rasterization

PARAM_NAMES = ("means", "quats", "scales", "opacities", "sh0", "shN")
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "reconstruction.yaml"  # the shipped preset


class FitError(ValueError):
    """Fitting cannot start (bad views or config) or diverged (non-finite loss); the message says which."""


@dataclass
class FitConfig:
    """How to fit. Every field can be set in configs/reconstruction.yaml."""

    steps: int = 0  # optimisation steps (each renders ``batch_views`` training views); 0: from the scene, i.e.
    #                 steps_per_mpx per million training pixels (views x H x W) within [steps_min, steps_max]
    #                 (``scheduled``): 300 for 4 views of 128², 3,200 for lego's 80 views of 100²
    steps_per_mpx: float = 4000.0
    steps_min: int = 300
    steps_max: int = 5000
    batch_views: int = 1  # views per step; more views per step = smoother gradients, slower steps
    coarse_factor: int = 1  # coarse-to-fine: the first coarse_until of the steps render and compare the views at
    coarse_until: float = 0.0  # 1/coarse_factor of their size (area-downsampled targets, rescaled intrinsics)
    init: str = "hull"  # "hull" (visual hull of the alpha masks) or "random" (uniform in the bounding sphere)
    init_points: int = 6000  # Gaussians at the start
    init_opacity: float = 0.1  # initial opacity of every Gaussian
    scene_radius: float | None = None  # bounding-sphere radius; None: half the median camera distance
    sh_degree: int = 1  # final SH degree; low degrees generalise better with few views
    sh_every: int = 250  # raise the active SH degree by one every this many steps
    background: tuple = (1.0, 1.0, 1.0)  # colour behind the object (views are composited on it)
    ssim_weight: float = 0.2  # loss = (1 - w) * L1 + w * (1 - SSIM) ...
    alpha_weight: float = 0.5  # ... + this * L1(rendered alpha, view alpha): keeps the silhouette clean
    opacity_reg: float = 0.05  # ... + this * mean opacity: Gaussians no view needs (hidden behind the surface
    #                            in every training view, e.g. visual-hull leftovers) fade out and get pruned
    aniso_reg: float = 0.0  # ... + this * mean(relu(max scale / min scale - aniso_max)): against needles that
    aniso_max: float = 4.0  #     look like dots in the training views and like streaks in new ones
    lr_means: float = 1.6e-4  # times the scene scale; decays exponentially to lr_means_final_ratio of it
    lr_means_final_ratio: float = 0.01
    dense_views: int = 32  # a scene with at least this many fitted views moves its means with
    lr_means_dense: float = 1.5  # lr_means times this (``means_lr``; 1: off) and fits SH up to
    sh_degree_dense: int = 3  # this degree (``scheduled``; a continuation keeps its start's degree)
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacities: float = 5e-2
    lr_sh0: float = 2.5e-3
    lr_shN: float = 2.5e-3 / 20
    refine_start: int = 100  # DefaultStrategy: first densification step
    refine_stop_ratio: float = 0.7  # ... last densification at this fraction of ``steps``
    refine_every: int = 100  # ... densify / prune every this many steps (at least one pass over the views)
    grow_grad2d: float = 0.0002  # ... screen-space gradient above which Gaussians are cloned or split
    prune_opacity: float = 0.005  # ... Gaussians fainter than this are removed
    carve: bool = True  # at every densification, remove Gaussians whose centre some view sees outside its
    carve_dilate_px: int = 3  # alpha mask (dilated by this many pixels); only for views with transparency
    max_gaussians: int = 60000  # hard cap: the faintest Gaussians are removed beyond it
    early_stop_tol: float = 1e-3  # after densification ends, stop when the mean loss over a window (100 steps,
    #                               at least one pass over the views) improves by less than this fraction; 0: off
    time_budget: float = 0.0  # seconds; stop when exceeded (0: no limit)
    seed: int = 0

    def __post_init__(self):
        self._coerce_numbers()
        if not isinstance(self.steps, int) or self.steps < 0:
            raise FitError(f"steps must be a positive integer (0: from the scene), got {self.steps!r}")
        if not (1 <= self.steps_min <= self.steps_max) or self.steps_per_mpx <= 0:
            raise FitError(f"need 1 <= steps_min <= steps_max and steps_per_mpx > 0, got {self.steps_min}, "
                           f"{self.steps_max}, {self.steps_per_mpx}")
        if self.init not in INITS:
            raise FitError(f"init must be one of {INITS}, got {self.init!r}")
        if not (0 <= self.sh_degree <= 3 and 0 <= self.sh_degree_dense <= 3):
            raise FitError(f"sh_degree and sh_degree_dense must be in 0..3, got {self.sh_degree}, "
                           f"{self.sh_degree_dense}")
        if self.dense_views < 1 or self.lr_means_dense <= 0:
            raise FitError(f"need dense_views >= 1 and lr_means_dense > 0, got {self.dense_views}, "
                           f"{self.lr_means_dense}")
        if self.batch_views < 1 or self.init_points < 1 or self.max_gaussians < 1:
            raise FitError("batch_views, init_points and max_gaussians must be positive")
        if not isinstance(self.coarse_factor, int) or self.coarse_factor < 1 or not 0 <= self.coarse_until <= 1:
            raise FitError(f"coarse_factor must be an integer >= 1 and coarse_until in [0, 1], got "
                           f"{self.coarse_factor!r}, {self.coarse_until!r}")
        self.background = tuple(float(c) for c in self.background)
        if len(self.background) != 3:
            raise FitError(f"background must be 3 numbers, got {self.background}")

    def _coerce_numbers(self) -> None:
        """Numbers given as text become numbers of the field's type: YAML 1.1 (PyYAML) reads ``5e-4`` (no dot)
        as a string, in the preset and in ``--set`` alike. Text that is no number raises FitError naming it."""
        for f in fields(self):
            kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
            value = getattr(self, f.name)
            if kind.split(" |")[0] not in ("int", "float") or not isinstance(value, str):
                continue
            try:
                setattr(self, f.name, int(value) if kind == "int" else float(value))
            except ValueError:
                raise FitError(f"{f.name} must be a number, got {value!r}") from None

    @classmethod
    def from_dict(cls, d: dict) -> "FitConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise FitError(f"unknown fit config field(s): {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | Path, section: str = "fit") -> "FitConfig":
        import yaml

        data = yaml.safe_load(Path(path).read_text()) or {}
        return cls.from_dict(data.get(section, data) if isinstance(data, dict) else {})

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FitResult:
    gaussians: Gaussians
    steps: int  # steps actually run
    seconds: float  # wall clock
    cpu_seconds: float  # CPU time of the process (all threads): comparable across machine load
    losses: list  # loss per step
    stopped_early: bool
    config: FitConfig
    profile: dict | None = None  # with fit(profile=True): {stage: [cpu_s, wall_s, calls]} (reconstruction.profile)


def composite(images: Tensor, background) -> Tensor:
    """RGBA [V,4,H,W] -> RGB [V,3,H,W] over a background colour."""
    bg = torch.tensor(background, dtype=images.dtype, device=images.device)[None, :, None, None]
    return images[:, :3] * images[:, 3:4] + bg * (1 - images[:, 3:4])


def ssim_map(x: Tensor, y: Tensor, window: int = 11) -> Tensor:
    """SSIM map [B,C,H,W], equal to ``kornia.metrics.ssim(x, y, window)`` (same Gaussian window from kornia,
    sigma 1.5, reflect padding, c1 = 0.01², c2 = 0.03², eps 1e-12) but with the five local moments blurred in
    one grouped convolution per axis: half the CPU time of kornia's five separate filters, forward + backward."""
    from kornia.filters import get_gaussian_kernel1d

    C = x.shape[1]
    k = get_gaussian_kernel1d(window, 1.5, device=x.device, dtype=x.dtype)[0]
    maps = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # (B, 5C, H, W)
    n, r = maps.shape[1], window // 2
    maps = torch.nn.functional.pad(maps, (r, r, r, r), mode="reflect")
    maps = torch.nn.functional.conv2d(maps, k.view(1, 1, 1, window).expand(n, 1, 1, window), groups=n)
    maps = torch.nn.functional.conv2d(maps, k.view(1, 1, window, 1).expand(n, 1, window, 1), groups=n)
    mu_x, mu_y, xx, yy, xy = maps.split(C, dim=1)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * (xy - mu_x * mu_y) + c2)
    den = (mu_x ** 2 + mu_y ** 2 + c1) * ((xx - mu_x ** 2) + (yy - mu_y ** 2) + c2)
    return num / (den + 1e-12)


def scheduled(config: FitConfig, num_views: int, height: int, width: int, continuing: bool = False) -> FitConfig:
    """``config`` with its step count and densification schedule fixed for a scene of ``num_views`` training
    views of ``height`` x ``width``: ``steps`` as given, or (0) ``steps_per_mpx`` per million training pixels
    clamped to [steps_min, steps_max]; ``refine_every`` at least one pass over the views (so each densification
    has seen every view's gradients); from ``dense_views`` views on, SH up to ``sh_degree_dense`` (unless
    ``continuing`` a fit, which keeps its Gaussians' degree). The other fractions (refine_stop_ratio, lr decay)
    follow the steps."""
    steps = config.steps
    if steps == 0:
        mpx = num_views * height * width / 1e6
        steps = int(round(min(max(config.steps_per_mpx * mpx, config.steps_min), config.steps_max)))
    passes = math.ceil(num_views / config.batch_views)
    dense = num_views >= config.dense_views and not continuing
    return replace(config, steps=steps, refine_every=max(config.refine_every, passes),
                   sh_degree=config.sh_degree_dense if dense else config.sh_degree)


def means_lr(config: FitConfig, num_views: int) -> float:
    """The means' initial learning rate (before the scene scale) for ``num_views`` fitted views: ``lr_means``,
    times ``lr_means_dense`` from ``dense_views`` views on. Measured (README, issue 20): 1.5x gained 0.11 dB on
    lego's 80 views and 0.01-0.05 dB on 32-view procedural orbits, but cost 0.04 dB on average (up to 0.37) on
    4-view orbits, where positions overfit the few views. (The SH degree of dense scenes: ``scheduled``.)"""
    return config.lr_means * (config.lr_means_dense if num_views >= config.dense_views else 1.0)


def check_views(images: Tensor, cameras: Cameras) -> None:
    if images.dim() != 4 or images.shape[1] != 4:
        raise FitError(f"images must be RGBA [V,4,H,W], got {list(images.shape)}")
    if images.shape[0] != len(cameras):
        raise FitError(f"{images.shape[0]} images but {len(cameras)} cameras")
    if (images.shape[3], images.shape[2]) != (cameras.width, cameras.height):
        raise FitError(f"images are {images.shape[3]}x{images.shape[2]} but cameras say "
                       f"{cameras.width}x{cameras.height}")
    if not torch.isfinite(images).all():
        raise FitError("images contain non-finite values")


def scene_geometry(cameras: Cameras, radius: float | None) -> tuple[float, float]:
    """(bounding radius of the object, gsplat scene scale = 1.1 x camera spread around their centre)."""
    centres = cameras.centers
    if radius is None:
        radius = 0.5 * float(centres.norm(dim=-1).median())
    spread = float((centres - centres.mean(0)).norm(dim=-1).max()) * 1.1
    return radius, max(spread, radius)


def fit(images: Tensor, cameras: Cameras, config: FitConfig | None = None, backend: str = "auto",
        progress: Callable[[int, int, dict], None] | None = None, start: Gaussians | None = None,
        profile: bool = False) -> FitResult:
    """Fit Gaussians to ``images`` [V,4,H,W] (RGBA in [0,1]) seen by ``cameras``.

    ``start``: continue from these Gaussians (e.g. a fit of some of the views, continued on all of them) instead
    of initialising; their SH degree must equal the config's, which is active from the first step.
    ``progress(step, total, stats)`` is called every step (stats: loss, n_gaussians, sh_degree).
    Runs where ``images`` are (the cameras and ``start`` are moved there; ``backend="auto"`` then picks gsplat's
    CUDA rasterizer on a GPU and the compiled CPU kernel on the CPU). The view order and the initialisation are
    drawn on the CPU from ``config.seed``, so a seed gives the same run on every device.
    ``config.steps`` 0 takes the step count from the scene (``scheduled``); ``FitResult.config`` has the steps.
    ``profile``: time the stages of every step (``reconstruction.profile``) into ``FitResult.profile``.
    Raises FitError on bad views or when the loss becomes non-finite.
    """
    check_views(images, cameras)
    if images.device.type == "cpu":
        warn_if_spinning()
    cfg = scheduled(config or FitConfig(), images.shape[0], images.shape[2], images.shape[3], start is not None)
    with profiling() if profile else nullcontext() as totals:
        result = _fit(images, cameras, cfg, backend, progress, start)
    result.profile = totals
    return result


def _fit(images: Tensor, cameras: Cameras, cfg: FitConfig, backend: str, progress, start: Gaussians | None):
    """``fit`` for a scheduled config."""
    cameras = cameras.to(images.device)
    start = start.to(images.device) if start is not None else None
    t0, c0 = time.perf_counter(), time.process_time()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    target_rgb = composite(images, cfg.background)  # (V, 3, H, W)
    target_alpha = images[:, 3:4]
    radius, scene_scale = scene_geometry(cameras, cfg.scene_radius)
    with stage("initialisation (visual hull or start Gaussians)"):
        params = _initial_params(images, cameras, cfg, radius, start)
    opt = _Optimisation(params, cfg, scene_scale, images.shape[0])
    batches = _view_batches(images.shape[0], cfg.batch_views, gen)
    sh_offset = 0 if start is None else cfg.sh_degree * cfg.sh_every
    carve = cfg.carve and bool((target_alpha < 0.99).any())
    window = max(100, math.ceil(images.shape[0] / cfg.batch_views))  # convergence window: >= one pass
    bg = torch.tensor(cfg.background, dtype=torch.float32, device=images.device)
    losses: list[float] = []
    stopped_early = False
    step = 0
    levels = _levels(target_rgb, target_alpha, cameras, cfg)
    moments = [_target_moments(level[1], cfg) for level in levels]  # the compiled loss's, once per fit
    for step in range(cfg.steps):
        ids = next(batches)
        sh_active = min(cfg.sh_degree, (step + sh_offset) // cfg.sh_every)
        k = 0 if step < levels[0][0] else len(levels) - 1
        until, rgb_t, alpha_t, cams_all, single = levels[k]
        cams = single[ids[0]] if single is not None else cams_all[ids]
        with stage("render: torch ops and copies around the kernels"):
            rgb, alpha, info = _render(params, cams, sh_active, bg, backend)
        with stage("loss (forward, torch part)"):
            loss = _loss(cfg, params, rgb, alpha, rgb_t[ids], alpha_t[ids],
                         moments[k][ids] if moments[k] is not None else None)
        if not torch.isfinite(loss):
            raise FitError(f"loss became non-finite at step {step}; try a lower learning rate or fewer steps")
        opt.step(loss, step, info)
        with stage("densification: carving by the silhouettes, the Gaussian cap"):
            if carve and step >= cfg.refine_start and step % cfg.refine_every == 0:
                opt.carve(target_alpha, cameras)
            opt.cap(cfg.max_gaussians)

        losses.append(loss.item())
        if progress is not None:
            progress(step + 1, cfg.steps, {"loss": losses[-1], "n_gaussians": len(params["means"]),
                                           "sh_degree": sh_active})
        if cfg.time_budget and time.perf_counter() - t0 > cfg.time_budget:
            stopped_early = step + 1 < cfg.steps
            break
        if _converged(losses, step, opt.refine_stop, cfg.early_stop_tol, window):
            stopped_early = True
            break

    result = Gaussians(*(params[n].detach().clone() for n in PARAM_NAMES), sh_degree=cfg.sh_degree)
    return FitResult(result, step + 1, time.perf_counter() - t0, time.process_time() - c0, losses, stopped_early,
                     cfg)


def _initial_params(images: Tensor, cameras: Cameras, cfg: FitConfig, radius: float,
                    start: Gaussians | None) -> torch.nn.ParameterDict:
    """The parameters to optimise: ``start``'s (a continuation) or fresh ones from ``cfg.init`` at
    ``cfg.init_opacity``."""
    if start is None:
        init = initial_gaussians(cfg.init, images, cameras, cfg.init_points, cfg.sh_degree, radius, cfg.seed)
    elif start.sh_degree != cfg.sh_degree:
        raise FitError(f"start Gaussians have SH degree {start.sh_degree}, the config {cfg.sh_degree}")
    else:
        init = start.detach()
    params = torch.nn.ParameterDict({n: torch.nn.Parameter(getattr(init, n).clone()) for n in PARAM_NAMES})
    if start is None:
        with torch.no_grad():
            params["opacities"].fill_(math.log(cfg.init_opacity / (1 - cfg.init_opacity)))
    return params


def _levels(target_rgb: Tensor, target_alpha: Tensor, cameras: Cameras, cfg: FitConfig) -> list[tuple]:
    """The resolutions a fit trains at, coarse first: (last step + 1, rgb, alpha, cameras, per-view cameras or
    None). Full size only, or (coarse-to-fine) first the views area-downsampled by ``coarse_factor`` with
    intrinsics rescaled to match, until ``coarse_until`` of the steps."""
    def level(until, rgb, alpha, cams):
        rig = _Rig(cams.viewmats, cams.K, cams.width, cams.height)
        single = [rig[[i]] for i in range(len(rig))] if cfg.batch_views == 1 else None  # indexed once
        return until, rgb, alpha, rig, single

    full = level(cfg.steps, target_rgb, target_alpha, cameras)
    f, H, W = cfg.coarse_factor, cameras.height, cameras.width
    until = int(cfg.steps * cfg.coarse_until)
    if f == 1 or until == 0 or H // f < 8 or W // f < 8:
        return [full]
    size = (H // f, W // f)
    area = lambda x: torch.nn.functional.interpolate(x, size=size, mode="area")  # noqa: E731
    return [level(until, area(target_rgb), area(target_alpha), cameras.resized(size[1], size[0])), full]


def _view_batches(num_views: int, batch: int, gen: torch.Generator):
    """Endless batches of ``batch`` view indices from shuffled passes over the views (reshuffled when fewer than
    ``batch`` views are left in a pass)."""
    order, cursor = torch.randperm(num_views, generator=gen, device=gen.device), 0
    while True:
        if cursor + batch > num_views:
            order, cursor = torch.randperm(num_views, generator=gen, device=gen.device), 0
        ids = order[cursor:cursor + min(batch, num_views)].tolist()
        cursor += len(ids)
        yield ids


@dataclass(frozen=True)
class _Rig:
    """The fit's cameras as the rasterizer takes them, world-to-camera matrices computed once per fit
    (``Cameras.viewmats`` inverts ``c2w`` at every access)."""

    viewmats: Tensor
    K: Tensor
    width: int
    height: int

    def __len__(self) -> int:
        return self.viewmats.shape[0]

    def __getitem__(self, ids) -> "_Rig":
        return _Rig(self.viewmats[ids], self.K[ids], self.width, self.height)


def _render(params, cams: "_Rig | Cameras", sh_degree: int, bg: Tensor, backend: str) -> tuple[Tensor, Tensor, dict]:
    """rgb [B,3,H,W] and alpha [B,1,H,W] of the current Gaussians in ``cams``, and the rasterizer's ``info``."""
    colors = (params["sh0"], params["shN"])  # the cpu backend reads both where they are (no concatenation)
    rgb, alpha, info = rasterization(
        params["means"], params["quats"], torch.exp(params["scales"]), torch.sigmoid(params["opacities"]),
        colors, cams.viewmats, cams.K, cams.width, cams.height, sh_degree=sh_degree,
        backgrounds=bg.expand(len(cams), 3), backend=backend)
    return rgb.permute(0, 3, 1, 2), alpha.permute(0, 3, 1, 2), info


class _Optimisation:
    """Per-parameter Adam (means' learning rate decaying exponentially) and gsplat's ``DefaultStrategy``
    densifying and pruning ``params`` in place; plus carving by the views' silhouettes and the Gaussian cap."""

    def __init__(self, params, cfg: FitConfig, scene_scale: float, num_views: int):
        from reconstruction.densify import Densification

        self.params = params
        lrs = {"means": means_lr(cfg, num_views) * scene_scale, "quats": cfg.lr_quats, "scales": cfg.lr_scales,
               "opacities": cfg.lr_opacities, "sh0": cfg.lr_sh0, "shN": cfg.lr_shN}
        self.optimizers = {n: make_adam(params[n], lrs[n], 1e-15) for n in PARAM_NAMES}  # reconstruction/adam.py
        self.means_decay = cfg.lr_means_final_ratio ** (1.0 / cfg.steps)
        self.refine_stop = int(cfg.steps * cfg.refine_stop_ratio)
        self.carve_dilate_px = cfg.carve_dilate_px
        self._carve_masks = None
        self.strategy = Densification(prune_opa=cfg.prune_opacity, grow_grad2d=cfg.grow_grad2d,
                                        refine_start_iter=cfg.refine_start, refine_stop_iter=self.refine_stop,
                                        refine_every=cfg.refine_every, reset_every=cfg.steps + 1)
        self.strategy.check_sanity(params, self.optimizers)
        self.state = self.strategy.initialize_state(scene_scale=scene_scale)

    def step(self, loss: Tensor, step: int, info: dict) -> None:
        """Backward, one Adam step of every parameter, the strategy's densification and pruning."""
        self.strategy.step_pre_backward(self.params, self.optimizers, self.state, step, info)
        with stage("backward: autograd and the torch ops' gradients"):
            loss.backward()
        with stage("Adam"):
            for opt in self.optimizers.values():
                opt.step()
                opt.zero_grad(set_to_none=True)
            for group in self.optimizers["means"].param_groups:
                group["lr"] *= self.means_decay
        with stage("densification: gsplat strategy (statistics, clone / split / prune)"):
            self.strategy.step_post_backward(self.params, self.optimizers, self.state, step, info, packed=False)

    @torch.no_grad()
    def carve(self, target_alpha: Tensor, cameras: Cameras) -> None:
        """Remove the Gaussians whose centre some view sees outside its (dilated) alpha mask."""
        if self._carve_masks is None:  # the views' masks dilated once per fit, not at every carving
            self._carve_masks = dilate_masks(target_alpha, self.carve_dilate_px)
        out = outside_hull(self.params["means"].detach(), self._carve_masks, cameras, dilate_px=0)
        if out.any() and not out.all():
            self._remove(out)

    @torch.no_grad()
    def cap(self, limit: int) -> None:
        """Remove the faintest Gaussians so at most ``limit`` remain."""
        opac = self.params["opacities"].detach()
        if len(opac) <= limit:
            return
        mask = torch.zeros(len(opac), dtype=torch.bool, device=opac.device)
        mask[torch.topk(opac, len(opac) - limit, largest=False).indices] = True
        self._remove(mask)

    def _remove(self, mask: Tensor) -> None:
        from gsplat.strategy.ops import remove

        remove(params=self.params, optimizers=self.optimizers, state=self.state, mask=mask)


def _target_moments(targets: Tensor, cfg: FitConfig) -> Tensor | None:
    """The views' blurred SSIM moments for the compiled CPU loss (``reconstruction.loss_cpu``), or None where
    ``_loss`` runs in torch: on a GPU, without an SSIM term, or for views no larger than the SSIM window."""
    if (targets.device.type != "cpu" or targets.dtype != torch.float32 or cfg.ssim_weight <= 0
            or min(targets.shape[-2:]) <= 11 // 2):
        return None
    from reconstruction.loss_cpu import target_moments

    return target_moments(targets)


def _loss(cfg: FitConfig, params, render: Tensor, alpha: Tensor, gt: Tensor, gt_alpha: Tensor,
          moments: Tensor | None = None) -> Tensor:
    """(1 - w) L1 + w (1 - SSIM) on colour, + alpha L1, + opacity and anisotropy regularisers (see FitConfig).
    With the targets' ``moments`` (``_target_moments``) the first three terms are one compiled node (CPU)."""
    if moments is not None:
        from reconstruction.loss_cpu import photometric_loss

        loss = photometric_loss(render, alpha, gt, gt_alpha, moments, cfg.ssim_weight, cfg.alpha_weight)
    else:
        loss = (1 - cfg.ssim_weight) * (render - gt).abs().mean()
    if moments is None and cfg.ssim_weight > 0:
        from reconstruction.ssim_cpu import ssim_mean  # compiled on the CPU, ssim_map elsewhere (equal values)

        loss = loss + cfg.ssim_weight * (1 - ssim_mean(render, gt))
    if moments is None and cfg.alpha_weight > 0:
        loss = loss + cfg.alpha_weight * (alpha - gt_alpha).abs().mean()
    if cfg.opacity_reg > 0:
        loss = loss + cfg.opacity_reg * torch.sigmoid(params["opacities"]).mean()
    if cfg.aniso_reg > 0:
        log_s = params["scales"]
        ratio = torch.exp(log_s.max(dim=-1).values - log_s.min(dim=-1).values)
        loss = loss + cfg.aniso_reg * torch.relu(ratio - cfg.aniso_max).mean()
    return loss


def _converged(losses: list, step: int, refine_stop: int, tol: float, window: int = 100) -> bool:
    """True when, after densification, the mean loss of the last window improved by less than ``tol``."""
    if tol <= 0 or step < refine_stop + 2 * window or (step + 1) % window:
        return False
    prev = sum(losses[-2 * window:-window]) / window
    last = sum(losses[-window:]) / window
    return (prev - last) < tol * prev
