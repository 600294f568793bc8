"""Training, scoring and loading of the 2x decoder (``mvgen.models.updecoder.UpDecoder2x``): `mvgen train-vae` with
``decoder_scale: 2`` (configs/vae_decoder_256.yaml), `mvgen export-model --decoder-2x`.

The VAE (``init_from``) stays frozen. Its encoder sees every training render area-downsampled to half the size (the
views its latents, and the transformer trained on them, describe); the 2x decoder starts from the VAE's decoder
(``UpDecoder2x.from_vae``) and learns to reproduce the full-size render from those latents: L1 + mse_weight * MSE, the
VAE's own loss without its KL term (the encoder is frozen). The encoder runs once per view: the posteriors of all
training views are cached and every step decodes a sample of a batch of them (latent-aligned crops when ``crop`` <
``resolution``). No flips: a flipped view's latent is not the flipped latent.

Scored at the end on held-out views at full size: the 2x decoder, the same latents' native decode bicubic-upsampled
(the baseline it must beat), the untrained 2x decoder (what training added) and the half-size views themselves
bicubic-upsampled (what any upsampler of the native views can reach at best).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path


def train_decoder_2x(cfg, resume: bool = False) -> Path:
    """Train the 2x decoder of ``cfg.init_from`` on ``cfg.data`` (``mvgen.vae.VAETrainConfig`` with decoder_scale 2);
    returns the saved ``out/decoder_2x`` folder (its report: ``out/decoder_2x_report.json``)."""
    import torch
    from accelerate.utils import set_seed
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
    from tqdm.auto import tqdm

    from mvgen.device import training_precision
    from mvgen.models.updecoder import UpDecoder2x
    from mvgen.trainutil import LossLog, dump_config, make_accelerator, resume_state, save_checkpoint
    from mvgen.vae import _initial_vae, load_views_tensor, optimizer_step, warmup_cosine

    out = Path(cfg.out)
    vae = _initial_vae(cfg).eval().requires_grad_(False)
    up = 2 ** len(vae.config.block_out_channels)  # output pixels per latent pixel (16)
    for name in ("resolution", "crop"):
        if getattr(cfg, name) % up:
            raise ValueError(f"{name} {getattr(cfg, name)} must divide by the 2x decoder's factor {up}")
    if cfg.crop > cfg.resolution:
        raise ValueError(f"crop {cfg.crop} must be <= resolution {cfg.resolution}")
    check_render_size(cfg.data, cfg.resolution)
    out.mkdir(parents=True, exist_ok=True)
    set_seed(cfg.seed)
    precision, note = training_precision(cfg.mixed_precision, "cuda" if torch.cuda.is_available() else "cpu")
    acc = make_accelerator(precision, cpu=not torch.cuda.is_available())
    if note:
        acc.print(note)
    train = load_views_tensor(cfg.data, "train", cfg.resolution)  # (N, 3, R, R) uint8
    if 0 < cfg.train_views < len(train):  # a fixed random subset (the encoder's pass and RAM scale with it)
        train = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed))[:cfg.train_views]]
    vae.to(acc.device)
    posteriors = encode_posteriors(vae, train)  # (N, 2C, R/up, R/up) on the CPU
    decoder = UpDecoder2x.from_vae(vae).float()
    opt = torch.optim.AdamW(decoder.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(cfg.steps))
    decoder, opt, sched = acc.prepare(decoder, opt, sched)
    step = resume_state(acc, out, resume)
    dump_config(cfg, out / "config.yaml")
    log = LossLog(out / "loss.csv", ["loss", "l1", "mse"], start_step=step)
    gen = torch.Generator().manual_seed(cfg.seed + step)
    lc = cfg.crop // up  # latent crop
    bar = tqdm(total=cfg.steps, initial=step, desc="train-vae 2x", disable=not acc.is_main_process)
    while step < cfg.steps:
        idx = torch.randint(len(train), (cfg.batch_size,), generator=gen)
        ly, lx = torch.randint(0, (cfg.resolution - cfg.crop) // up + 1, (2,), generator=gen).tolist()
        z = DiagonalGaussianDistribution(posteriors[idx, :, ly:ly + lc, lx:lx + lc]).sample(generator=gen)
        x = train[idx, :, ly * up:(ly + lc) * up, lx * up:(lx + lc) * up].float().div(127.5).sub(1).to(acc.device)
        with acc.autocast():
            rec = decoder(z.to(acc.device)).sample.float()  # (B, 3, crop, crop)
        l1 = (rec - x).abs().mean()
        mse = ((rec - x) ** 2).mean()
        loss = l1 + cfg.mse_weight * mse
        optimizer_step(acc, decoder, opt, sched, loss, step)
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            log.log(step, loss=loss.item(), l1=l1.item(), mse=mse.item())
            bar.set_postfix(loss=f"{loss.item():.4f}", psnr=f"{10 * math.log10(4 / max(mse.item(), 1e-12)):.1f}")
        if step % cfg.save_every == 0 or step == cfg.steps:
            save_checkpoint(out, step, lambda d: acc.save_state(str(d)))
            log.plot(out / "loss.png")
    bar.close()
    return finish_decoder_2x(acc.unwrap_model(decoder).float().eval(), vae.float().cpu(), cfg, train)


def check_render_size(data: str, resolution: int) -> None:
    """ValueError naming ``data`` when its views are smaller than ``resolution`` (they would be upsampled, and the
    2x decoder would learn to draw upsampled pixels): the first object's transforms.json says their size."""
    from mvgen.cameras import find_transforms, read_transforms
    from mvgen.data.dataset import read_index

    records = read_index(data)
    if not records:
        raise ValueError(f"data: dataset {data} has no objects")
    cams = read_transforms(find_transforms(records[0].folder))[0]
    if min(cams.width, cams.height) < resolution:
        raise ValueError(f"data: views of {data} are {cams.width}x{cams.height}; decoder_scale 2 learns "
                         f"{resolution}x{resolution} views from renders of that size (mvgen dataset --resolution "
                         f"{resolution})")


def half_size(images: torch.Tensor) -> torch.Tensor:
    """[N,3,H,W] -> [N,3,H/2,W/2], area filter: what the VAE's encoder sees of a full-size render."""
    import torch.nn.functional as F

    return F.interpolate(images, scale_factor=0.5, mode="area")


def encode_posteriors(vae, views: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """Posterior parameters (mean and log-variance) [N,2C,h,w] of uint8 views [N,3,H,W], each encoded at half size,
    returned on the CPU."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(views), batch):
            x = half_size(views[i:i + batch].float().div(127.5).sub(1)).to(vae.device)
            out.append(vae.encode(x).latent_dist.parameters.float().cpu())
    return torch.cat(out)


def score_decoder_2x(decoder, vae, views: torch.Tensor, baselines: bool = True, batch: int = 16) -> dict:
    """PSNR (images in [0,1], white background, mean over views) against ``views`` [N,3,H,W] in [-1,1] of decodes of
    the latents of their half-size versions (the encoder's mode): ``psnr_2x`` (``decoder``), and with ``baselines``
    ``psnr_native_bicubic`` (``vae``'s own decode bicubic-upsampled to H x W) and ``psnr_half_truth_bicubic`` (the
    half-size views bicubic-upsampled). Milliseconds per view of each decode."""
    import torch
    import torch.nn.functional as F

    from mvgen.vae import psnr_01

    size = tuple(views.shape[-2:])
    bicubic = lambda t: F.interpolate(t, size=size, mode="bicubic", align_corners=False).clamp(-1, 1)  # noqa: E731
    rec, native, truth, seconds = [], [], [], {"2x": 0.0, "native": 0.0}
    with torch.no_grad():
        for i in range(0, len(views), batch):
            half = half_size(views[i:i + batch])
            z = vae.encode(half).latent_dist.mode()
            t0 = time.perf_counter()
            rec.append(decoder.decode(z).sample.clamp(-1, 1))
            seconds["2x"] += time.perf_counter() - t0
            if baselines:
                t0 = time.perf_counter()
                native.append(bicubic(vae.decode(z).sample.clamp(-1, 1)))
                seconds["native"] += time.perf_counter() - t0
                truth.append(bicubic(half))
    target = (views + 1) / 2
    report = {"psnr_2x": psnr_01((torch.cat(rec) + 1) / 2, target),
              "decode_ms_per_view_2x": 1000 * seconds["2x"] / len(views)}
    if baselines:
        report.update(psnr_native_bicubic=psnr_01((torch.cat(native) + 1) / 2, target),
                      psnr_half_truth_bicubic=psnr_01((torch.cat(truth) + 1) / 2, target),
                      decode_ms_per_view_native=1000 * seconds["native"] / len(views))
    return report


def finish_decoder_2x(decoder, vae, cfg, train: torch.Tensor) -> Path:
    """Score held-out views (``score_decoder_2x``; unseen train views when the dataset holds none), save
    ``out/decoder_2x`` (safetensors) and ``out/decoder_2x_report.json``."""
    import torch

    from mvgen.fileio import atomic_write_text
    from mvgen.models.updecoder import UpDecoder2x
    from mvgen.vae import load_views_tensor, save_model_folder

    out = Path(cfg.out)
    gen = torch.Generator().manual_seed(0)
    try:
        held, split = load_views_tensor(cfg.data, "heldout", cfg.resolution), "heldout"
    except ValueError:  # a dataset without held-out objects
        held, split = train, "train"
    held = held[torch.randperm(len(held), generator=gen)[:cfg.eval_views]].float().div(127.5).sub(1)
    decoder = decoder.cpu()
    scores = score_decoder_2x(decoder, vae, held)
    init = score_decoder_2x(UpDecoder2x.from_vae(vae).float().eval(), vae, held, baselines=False)["psnr_2x"]
    report = {"psnr_2x": scores["psnr_2x"], "psnr_native_bicubic": scores["psnr_native_bicubic"],
              "gain_db": scores["psnr_2x"] - scores["psnr_native_bicubic"], "psnr_2x_untrained": init,
              "psnr_half_truth_bicubic": scores["psnr_half_truth_bicubic"],
              "what": (f"PSNR vs {cfg.resolution}² renders of latents of their area-downsampled "
                       f"{cfg.resolution // 2}² versions: the 2x decoder (trained, untrained = copied VAE decoder "
                       f"with identity new layers), the VAE decode bicubic-upsampled, and the {cfg.resolution // 2}² "
                       f"renders bicubic-upsampled"),
              "split": split, "views": len(held), "resolution": cfg.resolution,
              "encoder_resolution": cfg.resolution // 2,
              "steps": cfg.steps, "init_from": cfg.init_from, "params": sum(p.numel() for p in decoder.parameters()),
              "new_params": sum(v.numel() for k, v in decoder.state_dict().items() if k in decoder.new_weight_names()),
              "decode_ms_per_view_2x": scores["decode_ms_per_view_2x"],
              "decode_ms_per_view_native": scores["decode_ms_per_view_native"]}
    final = save_model_folder(decoder, out / "decoder_2x")
    atomic_write_text(out / "decoder_2x_report.json", json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return final


def load_decoder_2x(path, vae, flag: str = "--decoder-2x"):
    """The ``UpDecoder2x`` saved at ``path`` (safetensors only), refused (ValueError naming ``flag``) unless it
    decodes ``vae``'s latents (the same latent channel count). Whether its copied weights came from this VAE is not
    checked: training replaced them."""
    from mvgen.models.updecoder import UpDecoder2x

    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{flag} {path} is not a 2x decoder folder (no config.json)")
    if not any(folder.glob("*.safetensors")):
        raise FileNotFoundError(f"{flag} {path}: no safetensors weights (pickled weights are refused)")
    try:
        decoder = UpDecoder2x.from_pretrained(str(folder), use_safetensors=True)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as e:
        raise ValueError(f"{flag} {path}: cannot load ({type(e).__name__}: {' '.join(str(e).split())})") from None
    if decoder.config.latent_channels != vae.config.latent_channels:
        raise ValueError(f"{flag} {path}: decodes {decoder.config.latent_channels}-channel latents; this model's VAE "
                         f"makes {vae.config.latent_channels}-channel latents")
    return decoder
