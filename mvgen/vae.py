"""The image autoencoder: a ``diffusers.AutoencoderKL`` trained on the dataset renders (`mvgen train-vae`).

Fully convolutional, so it trains on random crops (fast on CPU) and runs on full views. Latents are scaled by
``vae.config.scaling_factor``, which training sets from the measured latent standard deviation.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class VAETrainConfig:
    data: str = "data/objects"  # dataset folder (mvgen dataset output); trains on split=train, scores split=heldout
    out: str = "runs/vae"  # run folder: checkpoints, loss log, final `vae/` save_pretrained folder
    resolution: int = 128  # views are resized to this before cropping
    crop: int = 64  # random square crops per step (multiple of the downsampling factor); full views at eval
    block_out_channels: tuple = (32, 64, 128, 128)  # 4 levels -> 8x downsampling
    layers_per_block: int = 1
    norm_num_groups: int = 1  # GroupNorm groups (capped at the first width); 1 keeps colour ratios (see configs)
    latent_channels: int = 8  # more channels = higher fidelity, harder diffusion; 8 at f=8 keeps >= 32 dB here
    steps: int = 4500
    batch_size: int = 12
    lr: float = 4e-4
    kl_weight: float = 1e-6  # tiny KL: a near-deterministic autoencoder, scaled latents still ~unit variance
    mse_weight: float = 1.0  # loss = L1 + mse_weight * MSE + kl_weight * KL
    seed: int = 0
    log_every: int = 20
    save_every: int = 250
    eval_views: int = 256  # held-out views scored at the end (PSNR on full-size views, white background)
    mixed_precision: str = "bf16"  # "no" for fp32
    init_from: str | None = None  # an AutoencoderKL folder to start from (its architecture replaces the fields above)
    train_encoder: bool = True  # false: only the decoder learns (needs init_from); latents, and so a transformer
    #                             trained on them, stay valid (configs/vae_decoder.yaml)
    decoder_scale: int = 1  # 2: train a 2x decoder of init_from (mvgen/decoder_2x.py) on renders at `resolution`,
    #                         its frozen encoder seeing them at half that (configs/vae_decoder_256.yaml)
    train_views: int = 0  # decoder_scale 2: a random subset of this many training views (0: all of them)

    def __post_init__(self):
        """ValueError naming the field for settings that would crash later or train nothing (steps 0)."""
        from mvgen.checks import check_int, check_seed

        for name in ("steps", "batch_size", "resolution", "crop", "layers_per_block", "norm_num_groups",
                     "latent_channels", "log_every", "save_every", "eval_views"):
            check_int(name, getattr(self, name), 1)
        check_seed(self.seed)
        check_int("train_views", self.train_views, 0)
        for name, low in (("lr", 0.0), ("kl_weight", None), ("mse_weight", None)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 \
                    or (low is not None and v <= low):
                raise ValueError(f"{name} must be a finite number {'> 0' if low is not None else '>= 0'}, got {v!r}")
        if self.mixed_precision not in ("no", "fp16", "bf16", "fp8"):
            raise ValueError(f"mixed_precision must be no, fp16, bf16 or fp8, got {self.mixed_precision!r}")
        check_int("decoder_scale", self.decoder_scale, 1, 2)
        if self.decoder_scale == 2 and (self.train_encoder or not self.init_from):
            raise ValueError("decoder_scale 2 trains a 2x decoder of a trained VAE: set init_from (its folder) and "
                             "train_encoder: false")


def build_vae(cfg: VAETrainConfig):
    from diffusers import AutoencoderKL

    n = len(cfg.block_out_channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block, latent_channels=cfg.latent_channels,
        norm_num_groups=min(cfg.norm_num_groups, cfg.block_out_channels[0]), sample_size=cfg.resolution,
    )


def load_views_tensor(data: str, split: str | None, resolution: int) -> torch.Tensor:
    """All views of a split as one uint8 tensor [N,3,H,W] (composited on white)."""
    import torch

    from mvgen.data.dataset import MultiViewDataset

    ds = MultiViewDataset(data, split=split, resolution=resolution, cache=False)
    views = [((ds[i]["images"] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8) for i in range(len(ds))]
    return torch.cat(views)


def reconstruct(vae, images: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """Encode (posterior mode) and decode images in [-1,1] [N,3,H,W]; returns [-1,1]."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            z = vae.encode(images[i:i + batch]).latent_dist.mode()
            out.append(vae.decode(z).sample.clamp(-1, 1))
    return torch.cat(out)


def psnr_01(a: torch.Tensor, b: torch.Tensor) -> float:
    import torch

    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-12)
    return float((10 * torch.log10(1.0 / mse)).mean())


def save_model_folder(model, final: Path) -> Path:
    """``model.save_pretrained`` (safetensors) into ``final``: written beside it first, then renamed over it, so an
    interrupted save never leaves a half-written folder under the final name."""
    import shutil

    tmp = final.with_name(".tmp-" + final.name)
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return final


def optimizer_step(acc, model, opt, sched, loss, step: int) -> None:
    """One update of a train-vae run (the VAE, or the 2x decoder): refuse a non-finite loss, backward, clip the
    gradient norm to 1, step the optimizer and the lr schedule."""
    import torch

    if not torch.isfinite(loss):
        raise FloatingPointError(f"train-vae: loss became {loss.item()} at step {step}; lower lr")
    acc.backward(loss)
    acc.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)


def train_vae(cfg: VAETrainConfig, resume: bool = False) -> Path:
    import torch

    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    from mvgen.device import training_precision
    from mvgen.trainutil import LossLog, dump_config, make_accelerator, resume_state, save_checkpoint

    if cfg.decoder_scale == 2:
        from mvgen.decoder_2x import train_decoder_2x

        return train_decoder_2x(cfg, resume)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.crop % 2 ** (len(cfg.block_out_channels) - 1) or cfg.crop > cfg.resolution:
        raise ValueError(f"crop {cfg.crop} must divide by the downsampling factor and be <= resolution")
    set_seed(cfg.seed)
    precision, note = training_precision(cfg.mixed_precision, "cuda" if torch.cuda.is_available() else "cpu")
    acc = make_accelerator(precision, cpu=not torch.cuda.is_available())
    if note:
        acc.print(note)
    train = load_views_tensor(cfg.data, "train", cfg.resolution)
    vae = _initial_vae(cfg)
    opt = torch.optim.AdamW([p for p in vae.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(cfg.steps))
    vae, opt, sched = acc.prepare(vae, opt, sched)
    step = resume_state(acc, out, resume)
    dump_config(cfg, out / "config.yaml")
    log = LossLog(out / "loss.csv", ["loss", "l1", "mse", "kl"], start_step=step)
    gen = torch.Generator().manual_seed(cfg.seed + step)
    bar = tqdm(total=cfg.steps, initial=step, desc="train-vae", disable=not acc.is_main_process)
    while step < cfg.steps:
        idx = torch.randint(len(train), (cfg.batch_size,), generator=gen)
        y0, x0 = (torch.randint(0, cfg.resolution - cfg.crop + 1, (2,), generator=gen) // 8 * 8).tolist()
        x = train[idx, :, y0:y0 + cfg.crop, x0:x0 + cfg.crop].float().div(127.5).sub(1).to(acc.device)
        if torch.rand(1, generator=gen) < 0.5:
            x = x.flip(-1)
        with acc.autocast():
            with torch.set_grad_enabled(cfg.train_encoder):
                post = vae.encode(x).latent_dist
            rec = vae.decode(post.sample()).sample.float()
        l1 = (rec - x).abs().mean()
        mse = ((rec - x) ** 2).mean()
        kl = post.kl().mean() / x[0].numel()
        loss = l1 + cfg.mse_weight * mse + cfg.kl_weight * kl
        optimizer_step(acc, vae, opt, sched, loss, step)
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            log.log(step, loss=loss.item(), l1=l1.item(), mse=mse.item(), kl=kl.item())
            bar.set_postfix(loss=f"{loss.item():.4f}", psnr=f"{10 * math.log10(4 / max(mse.item(), 1e-12)):.1f}")
        if step % cfg.save_every == 0 or step == cfg.steps:
            save_checkpoint(out, step, lambda d: acc.save_state(str(d)))
            log.plot(out / "loss.png")
    bar.close()
    vae = acc.unwrap_model(vae).float().eval()
    return finish(vae, cfg, train)


def warmup_cosine(steps: int):
    """The learning-rate factor at step s: a 100-step linear warmup, then a cosine from 1 to 0 at ``steps``."""
    return lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))


def _initial_vae(cfg: VAETrainConfig):
    """Random weights from the config, or ``init_from``'s; with ``train_encoder`` false the encoder is frozen."""
    if not cfg.train_encoder and not cfg.init_from:
        raise ValueError("train_encoder: false fine-tunes a decoder, so it needs init_from (an AutoencoderKL folder)")
    if not cfg.init_from:
        return build_vae(cfg)
    from diffusers import AutoencoderKL

    if not (Path(cfg.init_from) / "config.json").is_file():
        raise FileNotFoundError(f"init_from: {cfg.init_from} is not an AutoencoderKL folder (no config.json)")
    vae = AutoencoderKL.from_pretrained(cfg.init_from, use_safetensors=True).float()
    if not cfg.train_encoder:
        for m in (vae.encoder, vae.quant_conv):
            if m is not None:
                m.requires_grad_(False)
    return vae


def encoder_state(vae) -> dict:
    """The weights that define the latents (encoder and quant_conv)."""
    return {k: v for k, v in vae.state_dict().items() if k.startswith(("encoder.", "quant_conv."))}


def finish(vae, cfg: VAETrainConfig, train: torch.Tensor) -> Path:
    """Set the latent scaling factor from data (kept when only the decoder was trained: the latents are those of
    ``init_from``), score held-out views, save ``out/vae`` and a report."""
    import torch

    from mvgen.fileio import atomic_write_text

    out = Path(cfg.out)
    gen = torch.Generator().manual_seed(0)
    sample = train[torch.randperm(len(train), generator=gen)[:256]].float().div(127.5).sub(1)
    if cfg.train_encoder:
        with torch.no_grad():
            z = torch.cat([vae.encode(sample[i:i + 32]).latent_dist.mode() for i in range(0, len(sample), 32)])
        vae.register_to_config(scaling_factor=float(1.0 / z.flatten().std()))
    try:
        held = load_views_tensor(cfg.data, "heldout", cfg.resolution)
        split = "heldout"
    except ValueError:  # a dataset without held-out objects: score unseen train views instead
        held, split = train, "train"
    held = held[torch.randperm(len(held), generator=gen)[:cfg.eval_views]].float().div(127.5).sub(1)
    t = time.time()
    rec = reconstruct(vae, held)
    report = {"psnr": psnr_01((rec + 1) / 2, (held + 1) / 2), "split": split, "views": len(held),
              "resolution": cfg.resolution, "scaling_factor": vae.config.scaling_factor,
              "params": sum(p.numel() for p in vae.parameters()), "decode_ms_per_view": 1000 * (time.time() - t) / len(held)}
    final = save_model_folder(vae, out / "vae")
    atomic_write_text(out / "vae_report.json", json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return final


def register(sub) -> None:
    p = sub.add_parser("train-vae", help="train the AutoencoderKL on dataset renders (or its decoder, or a 2x decoder)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    from mvgen.trainutil import add_run_arguments

    add_run_arguments(p, VAETrainConfig, "configs/vae.yaml")
    p.add_argument("--batch-size", type=int, dest="batch_size")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from mvgen.trainutil import load_config

    cfg = load_config(VAETrainConfig, args.config, data=args.data, out=args.out, steps=args.steps,
                      batch_size=args.batch_size)
    train_vae(cfg, resume=args.resume)
    return 0
