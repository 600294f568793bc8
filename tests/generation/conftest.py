import pytest
import torch


@pytest.fixture(scope="session")
def text_encoder():
    from mvgen.text import load_text_encoder

    return load_text_encoder()


def make_tiny_pipeline(text_encoder, seed=0, latent=8, views_vae_levels=2):
    """A pipeline from tiny, randomly initialised components built locally (no download)."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler

    from mvgen.models import PTDiTTransformer3DModel
    from mvgen.pipeline import PTDiTMultiViewPipeline

    torch.manual_seed(seed)
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                        layers_per_block=1, sample_size=latent * 2)
    transformer = PTDiTTransformer3DModel(sample_size=latent, in_channels=4, num_layers=1, num_attention_heads=2,
                                          attention_head_dim=16, window_size=(1, 2, 2), caption_channels=384)
    # Non-zero output layer so the untrained model's prediction depends on its inputs.
    for p in transformer.parameters():
        if p.abs().sum() == 0:
            torch.nn.init.normal_(p, std=0.02)
    tok, enc = text_encoder
    return PTDiTMultiViewPipeline(transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(),
                                  tokenizer=tok, text_encoder=enc)


@pytest.fixture
def tiny_pipeline(text_encoder):
    return make_tiny_pipeline(text_encoder)


@pytest.fixture
def tiny_pipeline_factory(text_encoder):
    """``factory(**kw)`` builds a tiny pipeline with other sizes (e.g. ``latent=16`` for 32x32 views)."""
    return lambda **kw: make_tiny_pipeline(text_encoder, **kw)
