"""UpDecoder2x: the weights copied from the VAE, the identity start of the new layers, shapes, save/load, gradients."""

import pytest
import torch
import torch.nn.functional as F

from mvgen.models.updecoder import UpDecoder2x


def tiny_vae(seed=0, block_out_channels=(8, 16), latent_channels=4, norm_num_groups=4):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    n = len(block_out_channels)
    return AutoencoderKL(block_out_channels=block_out_channels, down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n, latent_channels=latent_channels,
                         norm_num_groups=norm_num_groups, layers_per_block=1).eval()


def decoder_inputs(model, z):
    """The input of conv_out (after conv_norm_out and its activation) of a diffusers Decoder, by a hook."""
    seen = {}
    hook = model.conv_out.register_forward_hook(lambda m, args, out: seen.update(x=args[0]))
    try:
        model(z)
    finally:
        hook.remove()
    return seen["x"]


def plain_config(model) -> dict:
    """A model's config without private keys, tuples as lists (as JSON reads them back)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in model.config.items() if not k.startswith("_")}


def test_every_vae_decoder_weight_is_copied_and_only_the_documented_ones_are_new():
    vae = tiny_vae()
    dec = UpDecoder2x.from_vae(vae)
    own, theirs = dec.state_dict(), vae.state_dict()
    copied = [k for k in theirs if k.startswith(("decoder.", "post_quant_conv."))]
    assert copied and all(torch.equal(own[k], theirs[k]) for k in copied)
    assert set(own) - set(copied) == set(dec.new_weight_names())
    # new: the old last block's upsampler and the whole new block, nothing else
    assert {k.split(".")[2] for k in dec.new_weight_names()} == {"1", "2"}
    assert all(k.startswith("decoder.up_blocks.1.upsamplers.") for k in dec.new_weight_names()
               if k.startswith("decoder.up_blocks.1."))
    assert vae.decoder.up_blocks[-1].upsamplers is None and dec.decoder.up_blocks[-2].upsamplers is not None
    assert len(dec.decoder.up_blocks) == len(vae.decoder.up_blocks) + 1


def test_output_is_twice_the_vae_decode_and_starts_as_its_nearest_upsampling():
    vae = tiny_vae()
    dec = UpDecoder2x.from_vae(vae).eval()
    z = torch.randn(2, 4, 5, 6)
    with torch.no_grad():
        native = vae.decode(z).sample  # (2, 3, 10, 12)
        out = dec.decode(z).sample
        assert out.shape == (2, 3, 20, 24) and dec.upscale == 4
        assert dec(z, return_dict=False)[0].shape == out.shape
        # identity start: conv_out sees the VAE decoder's conv_out input, nearest-upsampled, exactly
        a = decoder_inputs(vae.decoder, vae.post_quant_conv(z))
        b = decoder_inputs(dec.decoder, dec.post_quant_conv(z))
    torch.testing.assert_close(b, F.interpolate(a, scale_factor=2.0, mode="nearest"), rtol=1e-4, atol=1e-5)
    # so the untrained 2x decode, area-downsampled, is close to the native decode (conv_out's 3x3 footprint differs)
    assert (F.interpolate(out, scale_factor=0.5, mode="area") - native).abs().mean() < 0.5 * native.abs().mean()


def test_save_load_round_trip_is_equal(tmp_path):
    dec = UpDecoder2x.from_vae(tiny_vae())
    with torch.no_grad():
        for p in dec.parameters():
            p.add_(0.01 * torch.randn_like(p))
    dec.save_pretrained(tmp_path / "d", safe_serialization=True)
    assert (tmp_path / "d" / "diffusion_pytorch_model.safetensors").is_file()
    back = UpDecoder2x.from_pretrained(tmp_path / "d", use_safetensors=True)
    assert plain_config(back) == plain_config(dec)
    a, b = dec.state_dict(), back.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    z = torch.randn(1, 4, 4, 4)
    with torch.no_grad():
        assert torch.equal(dec.eval().decode(z).sample, back.eval().decode(z).sample)


def test_gradients_reach_every_parameter():
    dec = UpDecoder2x.from_vae(tiny_vae())
    with torch.no_grad():  # open the zero-initialised convs, as after some training
        for p in dec.parameters():
            if not p.any():
                p.normal_(std=0.05)
    dec.decode(torch.randn(2, 4, 4, 4)).sample.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in dec.parameters())


def test_other_widths_and_no_post_quant_conv():
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(block_out_channels=(8, 16, 16), down_block_types=("DownEncoderBlock2D",) * 3,
                        up_block_types=("UpDecoderBlock2D",) * 3, latent_channels=2, norm_num_groups=2,
                        layers_per_block=2, use_post_quant_conv=False, use_quant_conv=False)
    dec = UpDecoder2x.from_vae(vae)
    assert dec.post_quant_conv is None and dec.upscale == 8
    assert dec.decode(torch.randn(1, 2, 3, 3)).sample.shape == (1, 3, 24, 24)


def test_a_decoder_of_other_blocks_is_refused():
    vae = tiny_vae()
    vae.register_to_config(up_block_types=("AttnUpDecoderBlock2D", "UpDecoderBlock2D"))
    with pytest.raises(ValueError, match="vae up_block_types"):
        UpDecoder2x.from_vae(vae)
