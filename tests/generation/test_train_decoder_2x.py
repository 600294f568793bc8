"""`mvgen train-vae` with ``decoder_scale: 2`` (mvgen/decoder_2x.py): a 2-step smoke run on a tiny dataset rendered
at twice the VAE's size writes a loadable 2x decoder and a report with both PSNRs; bad settings are refused."""

import json

import pytest
import torch

from mvgen.cli import main
from mvgen.vae import VAETrainConfig, train_vae


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """accelerate keeps one state per process: an earlier test's Accelerator (bf16) would refuse this one's fp32."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


@pytest.fixture(scope="module")
def data_64(tmp_path_factory):
    root = tmp_path_factory.mktemp("data2x")
    assert main(["dataset", "--out", str(root / "d"), "--objects", "4", "--views", "2", "--resolution", "64",
                 "--quiet"]) == 0
    return root / "d"


@pytest.fixture(scope="module")
def vae_folder(tmp_path_factory):
    from tests.models.test_updecoder import tiny_vae

    path = tmp_path_factory.mktemp("vae") / "vae"
    tiny_vae().save_pretrained(path, safe_serialization=True)
    return path


def config(data, vae, out, **kw):
    return VAETrainConfig(**{**dict(data=str(data), out=str(out), init_from=str(vae), train_encoder=False,
                                    decoder_scale=2, resolution=64, crop=64, steps=2, batch_size=2, eval_views=4,
                                    log_every=1, save_every=1, mixed_precision="no"), **kw})


def test_two_steps_write_a_loadable_decoder_and_a_report_with_both_psnrs(data_64, vae_folder, tmp_path):
    from diffusers import AutoencoderKL

    from mvgen.models.updecoder import UpDecoder2x

    folder = train_vae(config(data_64, vae_folder, tmp_path / "run", crop=32))
    assert folder == tmp_path / "run" / "decoder_2x"
    dec = UpDecoder2x.from_pretrained(folder, use_safetensors=True)
    vae = AutoencoderKL.from_pretrained(vae_folder, use_safetensors=True)
    assert dec.decode(torch.randn(1, 4, 8, 8)).sample.shape == (1, 3, 32, 32)
    # only new weights and trained decoder weights differ from the VAE's; the encoder is not part of the decoder
    assert dec.config.latent_channels == vae.config.latent_channels
    report = json.loads((tmp_path / "run" / "decoder_2x_report.json").read_text())
    for key in ("psnr_2x", "psnr_native_bicubic", "gain_db", "psnr_2x_untrained", "psnr_half_truth_bicubic"):
        assert isinstance(report[key], float) and abs(report[key]) < 200, (key, report)
    assert report["resolution"] == 64 and report["encoder_resolution"] == 32 and 0 < report["views"] <= 4
    assert report["new_params"] < report["params"]
    assert (tmp_path / "run" / "loss.csv").read_text().count("\n") == 3  # header + 2 steps
    with pytest.raises(ValueError, match="already has checkpoints"):
        train_vae(config(data_64, vae_folder, tmp_path / "run"))


def test_bad_settings_are_refused_naming_the_field(data_64, vae_folder, tmp_path):
    with pytest.raises(ValueError, match="decoder_scale 2 trains a 2x decoder of a trained VAE"):
        config(data_64, vae_folder, tmp_path / "a", train_encoder=True)
    with pytest.raises(ValueError, match="decoder_scale must be in 1..2"):
        config(data_64, vae_folder, tmp_path / "a", decoder_scale=4)
    with pytest.raises(ValueError, match="crop 42 must divide by the 2x decoder's factor 4"):
        train_vae(config(data_64, vae_folder, tmp_path / "a", crop=42))
    with pytest.raises(ValueError, match=r"data: views of .* are 64x64; decoder_scale 2 learns 128x128"):
        train_vae(config(data_64, vae_folder, tmp_path / "a", resolution=128, crop=128))
    assert not (tmp_path / "a").exists()


def test_the_shipped_256_config_loads():
    from mvgen.settings import REPO
    from mvgen.trainutil import load_config

    cfg = load_config(VAETrainConfig, REPO / "configs" / "vae_decoder_256.yaml")
    assert cfg.decoder_scale == 2 and cfg.resolution == 256 and not cfg.train_encoder
