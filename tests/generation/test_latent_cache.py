"""The training latent cache: grown for an extended dataset, resumed after a kill, refused for other data."""

from __future__ import annotations

import json

import pytest
import torch

from mvgen.cli import main
from mvgen.data.dataset import MultiViewDataset
from mvgen.latent_cache import CACHE_NAME, build_latents


def _vae(seed: int):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         block_out_channels=(8, 16), latent_channels=4, norm_num_groups=4).eval()


def _dataset(root, objects: int) -> MultiViewDataset:
    """The first ``objects`` objects of the seeded sample (a larger count extends the same folder)."""
    assert main(["dataset", "--out", str(root), "--objects", str(objects), "--views", "3", "--resolution", "32"]) == 0
    return MultiViewDataset(root, split="train", resolution=32, cache=False)


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    """(small dataset, the same folder extended, a reference cache of the extended one built from scratch)."""
    root = tmp_path_factory.mktemp("cache_data")
    small = _dataset(root / "d", 4)
    big = _dataset(root / "d", 9)
    ref = tmp_path_factory.mktemp("ref") / CACHE_NAME
    return small, big, build_latents(big, _vae(0), 32, "no", ref), ref


def test_an_extended_dataset_encodes_only_its_new_objects(grown, tmp_path, monkeypatch):
    small, big, (ref_z, ref_p), _ = grown
    assert [r.caption for r in big.records[:len(small)]] == [r.caption for r in small.records]  # a prefix
    assert len(big) > len(small)
    path = tmp_path / CACHE_NAME
    z_small, _ = build_latents(small, _vae(0), 32, "no", path)
    encoded = []
    real_getitem = MultiViewDataset.__getitem__
    monkeypatch.setattr(MultiViewDataset, "__getitem__", lambda ds, i: encoded.append(i) or real_getitem(ds, i))
    z, p = build_latents(big, _vae(0), 32, "no", path)
    # The last cached object is re-encoded once as a check, then only the new ones.
    assert encoded == [len(small) - 1] + list(range(len(small), len(big)))
    assert torch.equal(z[:len(small)], z_small) and torch.allclose(z, ref_z, atol=1e-5) and torch.equal(p, ref_p)
    assert z.shape[:2] == (len(big), 3) and p.shape[2] == 6
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        assert json.loads(f.metadata()["captions"]) == [r.caption for r in big.records]


def test_encoding_killed_midway_resumes_from_its_part_files(grown, tmp_path, monkeypatch):
    _, big, (ref_z, ref_p), _ = grown
    path = tmp_path / CACHE_NAME
    real_getitem = MultiViewDataset.__getitem__

    def dies_at_4(ds, i):
        if i == 4:
            raise KeyboardInterrupt
        return real_getitem(ds, i)

    monkeypatch.setattr(MultiViewDataset, "__getitem__", dies_at_4)
    with pytest.raises(KeyboardInterrupt):
        build_latents(big, _vae(0), 32, "no", path, chunk=2)
    parts = sorted(p.name for p in tmp_path.glob(".*-part-*"))
    assert parts == [f".latent_cache-part-{s:07d}.safetensors" for s in (0, 2)] and not path.exists()
    monkeypatch.setattr(MultiViewDataset, "__getitem__", real_getitem)
    z, p = build_latents(big, _vae(0), 32, "no", path, chunk=2)
    assert torch.allclose(z, ref_z, atol=1e-5) and torch.equal(p, ref_p)
    assert path.is_file() and not list(tmp_path.glob(".*-part-*"))  # merged, parts removed


def test_a_cache_of_other_data_or_another_vae_is_refused(grown, tmp_path):
    small, big, _, ref = grown
    with pytest.raises(ValueError, match="holds .* objects but the dataset has"):
        build_latents(small, _vae(0), 32, "no", ref)  # more objects than the dataset
    other = tmp_path / "other"
    assert main(["dataset", "--out", str(other), "--objects", "9", "--views", "3", "--resolution", "32",
                 "--seed", "1"]) == 0
    with pytest.raises(ValueError, match="another dataset"):
        build_latents(MultiViewDataset(other, split="train", resolution=32, cache=False), _vae(0), 32, "no", ref)
    with pytest.raises(ValueError, match="re-encodes .* off its cached latents"):
        build_latents(big, _vae(1), 32, "no", ref)


def test_a_cache_written_without_captions_is_checked_by_re_encoding(grown, tmp_path):
    from safetensors.torch import save_file

    _, big, (ref_z, ref_p), _ = grown
    path = tmp_path / CACHE_NAME
    save_file({"latents": ref_z[:3].contiguous(), "plucker": ref_p[:3].contiguous()}, str(path))  # the old format
    z, _ = build_latents(big, _vae(0), 32, "no", path)
    assert torch.equal(z[:3], ref_z[:3]) and torch.allclose(z, ref_z, atol=1e-5)
    save_file({"latents": ref_z[[1, 0]].contiguous(), "plucker": ref_p[:2].contiguous()}, str(path))
    with pytest.raises(ValueError, match="object 1 .* re-encodes"):  # objects of another order
        build_latents(big, _vae(0), 32, "no", path)


def test_train_cache_only_builds_the_cache_and_trains_nothing(grown, tmp_path):
    from mvgen.train import TrainConfig, train

    _, big, (ref_z, _), _ = grown
    _vae(0).save_pretrained(tmp_path / "vae")
    cfg = TrainConfig(data=str(big.records[0].folder.parent), out=str(tmp_path / "run"), vae=str(tmp_path / "vae"),
                      model={"num_layers": 1, "num_attention_heads": 2, "attention_head_dim": 16}, resolution=32,
                      views_min=2, views_max=3, batch_size=2, steps=2, mixed_precision="no")
    path = train(cfg, cache_only=True)
    assert path == tmp_path / "run" / CACHE_NAME and path.is_file()
    assert not list((tmp_path / "run").glob("checkpoint-*"))
    from mvgen.latent_cache import _read

    assert torch.allclose(_read(path)[0], ref_z, atol=1e-5)
