"""The 2x output path: the pipeline's ``decoder_2x`` and ``output_size``, its save/load, `mvgen export-model
--decoder-2x`, `mvgen generate --output-size` and `mvgen evaluate generation` at twice the native size."""

import json

import pytest
import torch

from mvgen.cli import main
from mvgen.models.updecoder import UpDecoder2x


def with_decoder(pipe):
    pipe.register_modules(decoder_2x=UpDecoder2x.from_vae(pipe.vae))
    return pipe


def test_output_size_twice_native_decodes_the_same_latents(tiny_pipeline):
    pipe = with_decoder(tiny_pipeline)
    assert pipe.image_size == 16 and pipe.output_sizes == (16, 32)
    run = dict(prompt="a red mug", num_views=2, num_inference_steps=2, guidance_scale=1.0)
    latents = pipe(**run, output_type="latent", generator=torch.Generator().manual_seed(0)).images
    big = pipe(**run, output_type="pt", output_size=32, generator=torch.Generator().manual_seed(0))
    small = pipe(**run, output_type="pt", generator=torch.Generator().manual_seed(0))
    assert big.images.shape == (1, 2, 3, 32, 32) and small.images.shape == (1, 2, 3, 16, 16)
    assert big.cameras.width == big.cameras.height == 32 and small.cameras.width == 16
    torch.testing.assert_close(big.cameras.K[:, :2], 2 * small.cameras.K[:, :2])
    torch.testing.assert_close(big.images, pipe.decode_latents(latents, 32))
    torch.testing.assert_close(small.images, pipe.decode_latents(latents, 16))
    assert 0 <= big.images.min() and big.images.max() <= 1
    np_out = pipe(**run, output_type="np", output_size="32", generator=torch.Generator().manual_seed(0)).images
    assert np_out.shape == (1, 2, 32, 32, 3)


@pytest.mark.parametrize("size, match", [
    (32, r"output_size 32 needs a 2x decoder \(decoder_2x\), which this model does not have: it makes 16 px"),
    (20, "output_size must be 16 for this model, got 20"), ("abc", "output_size must be a whole number"),
    (True, "output_size must be a whole number"), (0, "output_size must be at least 1"),
])
def test_bad_output_sizes_name_the_field(tiny_pipeline, size, match):
    with pytest.raises(ValueError, match=match):
        tiny_pipeline("a red mug", num_views=2, num_inference_steps=1, output_size=size)


def test_a_decoder_of_other_latents_is_refused(tiny_pipeline):
    from mvgen.pipeline import PTDiTMultiViewPipeline
    from tests.models.test_updecoder import tiny_vae

    other = UpDecoder2x.from_vae(tiny_vae(latent_channels=2))
    p = tiny_pipeline
    with pytest.raises(ValueError, match="decoder_2x: decodes 2-channel latents, the VAE makes 4"):
        PTDiTMultiViewPipeline(p.transformer, p.vae, p.scheduler, p.tokenizer, p.text_encoder, decoder_2x=other)


def test_save_load_with_and_without_the_decoder(tiny_pipeline, tmp_path):
    from mvgen.job import model_output_sizes
    from mvgen.pipeline import PTDiTMultiViewPipeline

    tiny_pipeline.save_pretrained(tmp_path / "plain")
    assert model_output_sizes(tmp_path / "plain") == (16,)
    plain = PTDiTMultiViewPipeline.from_pretrained(tmp_path / "plain")
    assert plain.decoder_2x is None and plain.output_sizes == (16,)
    # a folder saved before decoder_2x existed (no entry in model_index.json) loads the same
    index = json.loads((tmp_path / "plain" / "model_index.json").read_text())
    index.pop("decoder_2x")
    (tmp_path / "plain" / "model_index.json").write_text(json.dumps(index))
    assert PTDiTMultiViewPipeline.from_pretrained(tmp_path / "plain").decoder_2x is None

    pipe = with_decoder(tiny_pipeline)
    pipe.save_pretrained(tmp_path / "big")
    index = json.loads((tmp_path / "big" / "model_index.json").read_text())
    assert index["decoder_2x"] == ["mvgen.models.updecoder", "UpDecoder2x"]
    assert (tmp_path / "big" / "decoder_2x" / "diffusion_pytorch_model.safetensors").is_file()
    assert model_output_sizes(tmp_path / "big") == (16, 32)
    back = PTDiTMultiViewPipeline.from_pretrained(tmp_path / "big")
    a, b = pipe.decoder_2x.state_dict(), back.decoder_2x.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # pickled decoder weights are refused like the other components'
    st = tmp_path / "big" / "decoder_2x" / "diffusion_pytorch_model.safetensors"
    st.rename(st.with_suffix(".bin"))
    with pytest.raises(FileNotFoundError, match="decoder_2x/ has no safetensors weights"):
        PTDiTMultiViewPipeline.from_pretrained(tmp_path / "big")


def test_export_model_adds_a_decoder_and_refuses_one_of_other_latents(tiny_pipeline, tmp_path, capsys):
    from mvgen.pipeline import PTDiTMultiViewPipeline
    from tests.models.test_updecoder import tiny_vae

    tiny_pipeline.save_pretrained(tmp_path / "src")
    UpDecoder2x.from_vae(tiny_pipeline.vae).save_pretrained(tmp_path / "dec")
    assert main(["export-model", str(tmp_path / "src"), str(tmp_path / "dst"), "--decoder-2x",
                 str(tmp_path / "dec")]) == 0
    out = PTDiTMultiViewPipeline.from_pretrained(tmp_path / "dst")
    assert out.output_sizes == (16, 32)
    a, b = out.decoder_2x.state_dict(), UpDecoder2x.from_pretrained(tmp_path / "dec").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k].bfloat16(), b[k].bfloat16()) for k in a)  # shipped in bf16
    UpDecoder2x.from_vae(tiny_vae(latent_channels=2)).save_pretrained(tmp_path / "other")
    capsys.readouterr()
    assert main(["export-model", str(tmp_path / "src"), str(tmp_path / "bad"), "--decoder-2x",
                 str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--decoder-2x" in err and "decodes 2-channel latents" in err and "\n" not in err
    assert not (tmp_path / "bad").exists()
    assert main(["export-model", str(tmp_path / "src"), str(tmp_path / "bad"), "--decoder-2x",
                 str(tmp_path / "nowhere")]) == 2
    assert "is not a 2x decoder folder" in capsys.readouterr().err


def test_generate_command_output_size(tiny_pipeline_factory, tmp_path, capsys):
    from PIL import Image

    pipe = tiny_pipeline_factory(latent=16)
    pipe.save_pretrained(tmp_path / "plain")
    with_decoder(pipe).save_pretrained(tmp_path / "big")
    common = ["--views", "2", "--steps", "1", "--device", "cpu"]
    assert main(["generate", "a red mug", "--out", str(tmp_path / "g"), "--model", str(tmp_path / "big"),
                 "--output-size", "64", *common]) == 0
    assert Image.open(tmp_path / "g" / "views" / "000.png").size == (64, 64)
    manifest = json.loads((tmp_path / "g" / "manifest.json").read_text())
    assert manifest["image_size"] == 64 and manifest["decoder"] == "decoder_2x"
    assert json.loads((tmp_path / "g" / "transforms.json").read_text())["w"] == 64
    for model, size, match in (("plain", "64", "needs a 2x decoder (decoder_2x)"),
                               ("big", "200", "output_size must be 32 or 64 for this model, got 200"),
                               ("big", "abc", "output_size must be a whole number of pixels")):
        capsys.readouterr()
        assert main(["generate", "a red mug", "--out", str(tmp_path / "x"), "--model", str(tmp_path / model),
                     "--output-size", size, *common]) == 2
        err = capsys.readouterr().err.strip()
        assert match in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


def test_evaluate_generation_at_twice_the_size_scores_the_upsampled_native_decode(tiny_pipeline_factory):
    from mvgen.evaluate import evaluate_generation

    pipe = with_decoder(tiny_pipeline_factory(latent=16))
    rep = evaluate_generation(pipe, ["a red mug", "a blue chair"], views=2, steps=1, output_size=64)
    assert rep["image_size"] == 64 and rep["native_size"] == 32 and rep["decoder"] == "decoder_2x"
    assert set(rep["upsampled_native"]) >= {"psnr", "ssim", "lpips"}
    assert all("upsampled_native" in r for r in rep["per_caption"])
    native = evaluate_generation(pipe, ["a red mug", "a blue chair"], views=2, steps=1)
    assert native["image_size"] == 32 and "upsampled_native" not in native
    with pytest.raises(ValueError, match="output_size must be 32 or 64"):
        evaluate_generation(pipe, ["a red mug", "a blue chair"], views=2, steps=1, output_size=48)
