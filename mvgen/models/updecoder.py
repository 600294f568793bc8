"""UpDecoder2x: a second decoder for the VAE's latents that makes views at twice the VAE's size (latent x16 for
the shipped f=8 VAE: 16x16 latents -> 256x256 views). The encoder, its latents and the transformer trained on them
are unchanged; the pipeline decodes the same latents with either decoder (``output_size``).

Layout (diffusers' ``Decoder``: ``up_blocks`` run from the lowest resolution to the highest, with the VAE's
``block_out_channels`` reversed; every up block but the last ends with a 2x upsampler). With the VAE's widths
[32, 64, 128, 128] its decoder is conv_in -> mid_block -> up_blocks 0..3 (128, 128, 64, 32; upsampled after 0, 1, 2)
-> conv_norm_out -> conv_out. This decoder uses the widths [32, 32, 64, 128, 128]: up_blocks 0..3 have the same
channels, block 3 gains an upsampler, and a new block 4 (32 -> 32, no upsampler) works at the doubled resolution;
conv_norm_out and conv_out keep the first width, so they match too.

``from_vae`` copies every weight with a counterpart (post_quant_conv, conv_in, mid_block, up_blocks 0..3,
conv_norm_out, conv_out). New weights (``new_weight_names``): up_blocks[3].upsamplers (a 3x3 conv), all of
up_blocks[4] (layers_per_block + 1 resnets). They start as an identity: the upsampler's conv passes each channel
through its centre tap, and each new resnet's second conv is zero, so the new block adds nothing to its input.
Nearest upsampling keeps each GroupNorm group's statistics, so at that start the activations entering conv_out are
exactly the VAE decoder's, nearest-upsampled: the untrained 2x decoder draws the 128² decode with 2x2 pixels (up to
conv_out's 3x3 footprint), and training (`mvgen train-vae` with ``decoder_scale: 2``) starts from there.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import Decoder, DecoderOutput
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

UP_BLOCK = "UpDecoderBlock2D"


class UpDecoder2x(ModelMixin, ConfigMixin):
    """Latents of an ``AutoencoderKL`` [N,C,h,w] (divided by its scaling factor, as ``vae.decode`` takes them) ->
    images [N,3,2·f·h,2·f·w] in the VAE's range ([-1, 1]), where f = 2 ** (len(block_out_channels) - 1).

    Args:
        latent_channels: channels of the VAE's latents.
        out_channels: image channels.
        block_out_channels: the VAE's widths, first (highest resolution) level first; the decoder adds one level at
            the first width, so it upsamples 2 ** len(block_out_channels) times.
        layers_per_block: the VAE's (each decoder block has layers_per_block + 1 resnets).
        norm_num_groups: the VAE's GroupNorm groups.
        act_fn: the VAE's activation.
        mid_block_add_attention: the VAE's (attention in the mid block).
        use_post_quant_conv: the VAE's (a 1x1 conv on the latents before the decoder).
    """

    @register_to_config
    def __init__(self, latent_channels: int = 8, out_channels: int = 3,
                 block_out_channels: tuple[int, ...] = (32, 64, 128, 128), layers_per_block: int = 1,
                 norm_num_groups: int = 1, act_fn: str = "silu", mid_block_add_attention: bool = True,
                 use_post_quant_conv: bool = True):
        super().__init__()
        widths = (block_out_channels[0], *block_out_channels)
        self.post_quant_conv = nn.Conv2d(latent_channels, latent_channels, 1) if use_post_quant_conv else None
        self.decoder = Decoder(in_channels=latent_channels, out_channels=out_channels,
                               up_block_types=(UP_BLOCK,) * len(widths), block_out_channels=widths,
                               layers_per_block=layers_per_block, norm_num_groups=norm_num_groups, act_fn=act_fn,
                               mid_block_add_attention=mid_block_add_attention)

    @property
    def upscale(self) -> int:
        """Output pixels per latent pixel (16 for the shipped VAE: twice the VAE's 8)."""
        return 2 ** len(self.config.block_out_channels)

    # ------------------------------------------------------------------------------------------- from a VAE
    @classmethod
    def from_vae(cls, vae) -> "UpDecoder2x":
        """The 2x decoder of ``vae`` (an ``AutoencoderKL``): its architecture, every weight with a counterpart
        copied, the new ones initialised as an identity (module docstring). ValueError naming the VAE's field when
        its decoder is not one of plain ``UpDecoderBlock2D`` blocks."""
        c = vae.config
        if any(t != UP_BLOCK for t in c.up_block_types):
            raise ValueError(f"vae up_block_types: the 2x decoder extends {UP_BLOCK} decoders, got "
                             f"{list(c.up_block_types)}")
        model = cls(latent_channels=c.latent_channels, out_channels=c.out_channels,
                    block_out_channels=tuple(c.block_out_channels), layers_per_block=c.layers_per_block,
                    norm_num_groups=c.norm_num_groups, act_fn=c.act_fn,
                    mid_block_add_attention=c.mid_block_add_attention,
                    use_post_quant_conv=vae.post_quant_conv is not None)
        model.initialize_new_weights()
        own = model.state_dict()
        copied = {k: v for k, v in vae.state_dict().items() if k.startswith(("decoder.", "post_quant_conv."))}
        wrong = [k for k, v in copied.items() if k not in own or own[k].shape != v.shape]
        if wrong:  # cannot happen for UpDecoderBlock2D decoders; a changed diffusers layout would land here
            raise ValueError(f"vae: {len(wrong)} decoder weights have no counterpart in the 2x decoder ({wrong[0]})")
        model.load_state_dict(copied, strict=False)  # the tensors are copied, so the VAE's dtype comes with them
        return model if vae.dtype == model.dtype else model.to(vae.dtype)

    def new_weight_names(self) -> list[str]:
        """State-dict keys without a counterpart in the VAE: the upsampler of the old last block and the new block."""
        n = len(self.config.block_out_channels)
        new = (f"decoder.up_blocks.{n - 1}.upsamplers.", f"decoder.up_blocks.{n}.")
        return [k for k in self.state_dict() if k.startswith(new)]

    @torch.no_grad()
    def initialize_new_weights(self) -> None:
        """The new layers as an identity: the upsampler's 3x3 conv passes every channel through its centre tap;
        each new resnet's conv2 is zero (its output is its input; its other layers keep diffusers' init)."""
        n = len(self.config.block_out_channels)
        conv = self.decoder.up_blocks[n - 1].upsamplers[0].conv
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[:, :, 1, 1] = torch.eye(conv.out_channels)
        for resnet in self.decoder.up_blocks[n].resnets:
            resnet.conv2.weight.zero_()
            resnet.conv2.bias.zero_()

    # ------------------------------------------------------------------------------------------- decode
    def decode(self, z: torch.Tensor, return_dict: bool = True) -> DecoderOutput | tuple:
        """[N,C,h,w] latents (already divided by the VAE's scaling factor) -> images [N,3,H,W], H = upscale·h."""
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)  # (N, C, h, w)
        sample = self.decoder(z)  # (N, 3, 2·f·h, 2·f·w)
        if not return_dict:
            return (sample,)
        return DecoderOutput(sample=sample)

    def forward(self, z: torch.Tensor, return_dict: bool = True) -> DecoderOutput | tuple:
        return self.decode(z, return_dict=return_dict)
