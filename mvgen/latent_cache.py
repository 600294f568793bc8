"""The training set as the denoiser sees it: per-object VAE latents [N, Vo, C, h, w], Plücker maps
[N, Vo, 6, h, w] and caption embeddings, encoded once per run (the VAE and the text encoder are frozen).

The latents live in ``<run>/latent_cache.safetensors`` with the captions they were encoded from in its metadata.
A cache is grown, never silently reused for other data: a dataset extended with more objects (``mvgen dataset
--objects`` with a larger count and the same seed appends objects in sample order) encodes only the new ones, and
encoding is resumable — every ``chunk`` objects land in a part file beside the cache, merged into it at the end,
so a run killed while encoding continues where it stopped. A cache built from other objects, another VAE or
another resolution is refused with a message naming the file (delete it to re-encode). ``mvgen train --cache-only``
builds a run's cache without training.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

CACHE_NAME = "latent_cache.safetensors"
CHUNK = 256  # objects per part file while encoding (~10 MB of latents and Plücker maps per 64 objects at 128²)
# A re-encoded object must match its cached latents this closely (mean |Δ| over mean |z|): a bf16 encoder copy's
# latents are within ~1 % of fp32's; another VAE, resolution or object is off by tens of percent.
REENCODE_TOL = 0.05


class LatentCache:
    """A run's training objects as latents, Plücker maps and caption embeddings (see the module docstring).

    Args:
        cfg: the run's ``TrainConfig`` (``data``, ``resolution``, ``mixed_precision`` are read).
        vae, tokenizer, text_encoder: the frozen models, on the training device.
        out: the run folder that holds the cache.
        chunk: objects encoded between two part files.
    """

    def __init__(self, cfg, vae, tokenizer, text_encoder, out: Path, chunk: int = CHUNK):
        from mvgen.data.dataset import MultiViewDataset
        from mvgen.text import encode_text

        ds = MultiViewDataset(cfg.data, split="train", resolution=cfg.resolution, cache=False)
        self.captions = [r.caption for r in ds.records]
        self.latents, self.plucker = build_latents(ds, vae, cfg.resolution, cfg.mixed_precision,
                                                   Path(out) / CACHE_NAME, chunk)
        uniq = sorted(set(self.captions) | {""})
        emb, mask = [], []
        for i in range(0, len(uniq), 64):
            e, m = encode_text(tokenizer, text_encoder, uniq[i:i + 64])
            emb += list(e.cpu())
            mask += list(m.cpu())
        # Embeddings trimmed to their own tokens; a batch pads to its longest caption.
        self.text = {c: e[m.bool()] for c, e, m in zip(uniq, emb, mask)}
        self.tokenizer, self.text_encoder = tokenizer, text_encoder
        self.specs = [_spec_or_none(c) for c in self.captions]
        self.part_weight = float(getattr(cfg, "part_weight", 0.0))
        self.parts = None  # per-part supervision: where each view shows the caption's part (data/part_masks.py)
        if self.part_weight > 0:
            from mvgen.data.part_masks import PART_CACHE_NAME, PartCache

            self.parts = PartCache(ds.records, self.latents.shape[-1], Path(out) / PART_CACHE_NAME)

    def batch(self, B: int, V: int, dropout: float, gen: torch.Generator, augment: float = 0.0):
        """(latents [B,V,C,h,w], Plücker [B,V,6,h,w], caption embeddings [B,T,D], mask [B,T], loss weights
        [B,V,1,h,w] or None): the weights are 1 + part_weight x the part's coverage of each latent cell when the
        run supervises parts (``TrainConfig.part_weight`` > 0), else None (a plain mean).

        A share ``augment`` of the (non-dropped) captions is rewritten by ``mvgen.data.wording.paraphrase``
        and encoded here (the text encoder is small next to a training step)."""
        import random

        from mvgen.data.wording import paraphrase
        from mvgen.text import encode_text

        idx = torch.randint(len(self.latents), (B,), generator=gen)
        views = torch.stack([torch.randperm(self.latents.shape[1], generator=gen)[:V] for _ in range(B)])
        lat = torch.stack([self.latents[i, v] for i, v in zip(idx, views)])
        pl = torch.stack([self.plucker[i, v] for i, v in zip(idx, views)])
        caps = ["" if torch.rand(1, generator=gen).item() < dropout else self.captions[i] for i in idx]
        rng = random.Random(int(torch.randint(2 ** 31, (1,), generator=gen)))
        rewrite = [k for k, (c, i) in enumerate(zip(caps, idx)) if c and self.specs[i] is not None
                   and rng.random() < augment]
        embs = [self.text[c] for c in caps]
        if rewrite:
            e, m = encode_text(self.tokenizer, self.text_encoder,
                               [paraphrase(self.specs[idx[k]], rng) for k in rewrite])
            for k, ek, mk in zip(rewrite, e.cpu(), m.cpu()):
                embs[k] = ek[mk.bool()]
        T = max(len(e) for e in embs)
        emb = torch.stack([torch.nn.functional.pad(e, (0, 0, 0, T - len(e))) for e in embs])
        mask = torch.stack([torch.arange(T) < len(e) for e in embs]).long()
        weights = self.parts.weights(idx, views, self.part_weight) if self.parts is not None else None
        return lat, pl, emb, mask, weights


def build_latents(ds, vae, resolution: int, mixed_precision: str, path: Path, chunk: int = CHUNK):
    """(latents [N,Vo,C,h,w], Plücker [N,Vo,6,h,w]) of every object of ``ds``: the cache at ``path`` and its part
    files checked against the dataset and extended with the objects they lack (see the module docstring)."""
    from tqdm.auto import tqdm

    captions = [r.caption for r in ds.records]
    encoder = _Encoder(vae, resolution, mixed_precision)
    lat, pl = [], []
    if path.is_file():
        z, p, cached = _read(path)
        _check_prefix(path, cached, captions, len(z))
        lat.append(z)
        pl.append(p)
    parts = sorted(path.parent.glob(f".{path.stem}-part-*.safetensors"))
    for part in parts:
        z, p, cached = _read(part)
        start = sum(len(t) for t in lat)
        if int(part.stem.rsplit("-", 1)[1]) != start:
            raise ValueError(f"{part}: a part file out of sequence (the cache holds {start} objects); delete the "
                             f"part files beside {path.name} to re-encode them")
        _check_prefix(part, [None] * start + cached if cached is not None else None, captions, start + len(z))
        lat.append(z)
        pl.append(p)
    done = sum(len(t) for t in lat)
    if done:  # the same VAE and resolution: the last cached object re-encodes to its cached latents
        z_new = encoder(ds[done - 1])[0]
        err = float((z_new - lat[-1][-1]).abs().mean() / lat[-1][-1].abs().mean().clamp_min(1e-12))
        if err > REENCODE_TOL:
            raise ValueError(f"{path}: object {done - 1} ('{captions[done - 1]}') re-encodes {err:.0%} off its "
                             f"cached latents: the cache was built with another VAE, resolution or dataset; delete "
                             f"it to re-encode")
    todo = range(done, len(ds))
    if len(todo):
        bar = tqdm(total=len(ds), initial=done, desc="encoding views", unit="obj")
        for start in range(done, len(ds), chunk):
            items = []
            for i in range(start, min(start + chunk, len(ds))):
                items.append(encoder(ds[i]))
                bar.update(1)
            z, p = torch.stack([z for z, _ in items]), torch.stack([p for _, p in items])
            if z.shape[1:] != (lat[0].shape[1:] if lat else z.shape[1:]):
                raise ValueError("dataset objects have different numbers of views; regenerate with one --views")
            _write(path.parent / f".{path.stem}-part-{start:07d}.safetensors", z, p, captions[start:start + len(z)])
            lat.append(z)
            pl.append(p)
        bar.close()
    latents, plucker = torch.cat(lat), torch.cat(pl)
    if len(lat) > 1 or not path.is_file():
        _write(path, latents, plucker, captions)
        for part in path.parent.glob(f".{path.stem}-part-*.safetensors"):
            part.unlink()
    return latents, plucker


class _Encoder:
    """One dataset item -> (latents [Vo,C,h,w], Plücker [Vo,6,h,w]) on the CPU. On a CPU with native bf16, a bf16
    copy of the encoder in channels-last layout: 8.6x faster than fp32 weights under autocast (0.13 vs 1.15 s per
    16 views at 128², 2 threads), latents within bf16 rounding of those; elsewhere (bf16 emulated: ~40x slower)
    the fp32 encoder."""

    def __init__(self, vae, resolution: int, mixed_precision: str):
        from mvgen.device import cpu_has_fast_bf16

        bf16 = mixed_precision == "bf16" and vae.device.type == "cpu" and cpu_has_fast_bf16()
        self.fmt = torch.channels_last if bf16 else torch.contiguous_format
        self.enc = copy.deepcopy(vae).to(torch.bfloat16, memory_format=self.fmt) if bf16 else vae
        self.vae, self.resolution = vae, resolution
        self.h = resolution // 2 ** (len(vae.config.block_out_channels) - 1)

    def __call__(self, item: dict) -> tuple[torch.Tensor, torch.Tensor]:
        from mvgen.cameras import Cameras

        with torch.no_grad():
            x = item["images"].to(self.vae.device, self.enc.dtype).contiguous(memory_format=self.fmt)
            z = self.enc.encode(x).latent_dist.mode().float() * self.vae.config.scaling_factor
        cams = Cameras(item["c2w"], item["K"], self.resolution, self.resolution)
        return z.cpu(), cams.plucker(self.h, self.h)  # the cache lives on the CPU


def _read(path: Path) -> tuple[torch.Tensor, torch.Tensor, list[str] | None]:
    """(latents, Plücker, captions or None for a cache written before captions were recorded)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        z, p = f.get_tensor("latents"), f.get_tensor("plucker")
    return z, p, json.loads(meta["captions"]) if "captions" in meta else None


def _write(path: Path, latents: torch.Tensor, plucker: torch.Tensor, captions: list[str]) -> None:
    """Atomically (a temporary file renamed over ``path``)."""
    from safetensors.torch import save_file

    tmp = path.with_name(f".tmp-{path.name}")
    save_file({"latents": latents.contiguous(), "plucker": plucker.contiguous()}, str(tmp),
              metadata={"captions": json.dumps(captions)})
    tmp.replace(path)


def _check_prefix(path: Path, cached: list | None, captions: list[str], n: int) -> None:
    """The ``n`` cached objects must be the dataset's first ``n`` (by caption where they were recorded)."""
    if n > len(captions):
        raise ValueError(f"{path} holds {n} objects but the dataset has {len(captions)} training objects: it was "
                         f"built from another dataset; delete it to re-encode")
    if cached is not None:
        bad = next((i for i, c in enumerate(cached) if c is not None and c != captions[i]), None)
        if bad is not None:
            raise ValueError(f"{path}: object {bad} is '{cached[bad]}' in the cache but '{captions[bad]}' in the "
                             f"dataset: it was built from another dataset; delete it to re-encode")


def _spec_or_none(caption: str):
    """The ObjectSpec of a caption of our grammar, else None (a user's own captions are never rewritten)."""
    from mvgen.data.captions import CaptionError, parse_caption

    try:
        return parse_caption(caption) if caption else None
    except CaptionError:
        return None
