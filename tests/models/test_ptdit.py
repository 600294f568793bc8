"""PTDiTTransformer3DModel: shapes, persistence, gradients, view mixing, camera conditioning, errors."""

import pytest
import torch

from mvgen.cameras import orbit
from mvgen.models import ATTENTION_TYPES, PTDiTTransformer3DModel
from mvgen.models.embeddings import camera_summary

TINY = dict(sample_size=8, in_channels=4, patch_size=2, num_layers=2, num_attention_heads=2, attention_head_dim=16,
            window_size=(1, 2, 2), caption_channels=16, max_views=8)


def make(attention_type="proxy", seed=0, open_zero_init=True, **kw):
    """Tiny model; ``open_zero_init`` fills the zero-initialised layers with small random values so every path
    (GIIM, shifted windows, text, output) is active, as after some training."""
    torch.manual_seed(seed)
    model = PTDiTTransformer3DModel(**{**TINY, "attention_type": attention_type, **kw}).eval()
    if open_zero_init:
        with torch.no_grad():
            for p in model.parameters():
                if not p.any():
                    p.normal_(std=0.05)
    return model


def inputs(B=2, V=2, seed=1, size=8):
    g = torch.Generator().manual_seed(seed)
    plucker = torch.stack([orbit(V, elevation=10.0 + 15 * b, azimuth_start=30.0 * b, width=64).plucker(size, size)
                           for b in range(B)])
    return dict(hidden_states=torch.randn(B, V, 4, size, size, generator=g),
                timestep=torch.tensor([700.0, 50.0][:B]),
                encoder_hidden_states=torch.randn(B, 5, 16, generator=g),
                encoder_attention_mask=torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]][:B]),
                plucker=plucker)


def run(model, **kw):
    with torch.no_grad():
        return model(**kw).sample


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_shapes_for_every_variant_and_view_count(attention_type):
    model = make(attention_type)
    for V in (1, 2, 4):
        x = inputs(V=V)
        assert run(model, **x).shape == (2, V, 4, 8, 8)
    sigma = make(attention_type, out_channels=8)
    out = sigma(**inputs(), return_dict=False)
    assert isinstance(out, tuple) and out[0].shape == (2, 2, 8, 8, 8)


def test_fresh_model_outputs_zero_and_presets_build():
    x = inputs()
    assert not run(make(open_zero_init=False), **x).any()  # final layer is zero-initialised (DiT / PixArt-α)
    tiny = PTDiTTransformer3DModel.from_preset("tiny")
    assert tiny.config.window_size == [1, 2, 2] and tiny.inner_dim == 256 and tiny.config.num_layers == 8
    assert PTDiTTransformer3DModel.from_preset("tiny", sample_size=32).config.window_size == [1, 4, 4]
    with pytest.raises(ValueError, match="unknown model preset"):
        PTDiTTransformer3DModel.from_preset("huge")


def test_save_load_round_trip(tmp_path):
    model = make("proxy", window_size=(1, 2, 1), pos_embed="3d")
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = PTDiTTransformer3DModel.from_pretrained(tmp_path).eval()
    assert loaded.config.window_size == model.config.window_size == [1, 2, 1]
    assert loaded.config.pos_embed == "3d"
    x = inputs()
    torch.testing.assert_close(run(loaded, **x), run(model, **x), rtol=0, atol=0)


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_save_load_round_trip_every_variant(tmp_path, attention_type):
    model = make(attention_type, mediator_counts=(1, 4))
    model.save_pretrained(tmp_path)
    loaded = PTDiTTransformer3DModel.from_pretrained(tmp_path).eval()
    assert loaded.config.attention_type == attention_type and loaded.config.mediator_counts == [1, 4]
    x = inputs()
    torch.testing.assert_close(run(loaded, **x), run(model, **x), rtol=0, atol=0)
    if attention_type == "mediator":
        torch.testing.assert_close(run(loaded, **x, num_mediators=1), run(model, **x, num_mediators=1), rtol=0, atol=0)


def test_variants():
    assert ATTENTION_TYPES == ("proxy", "full", "spatial_temporal", "mediator", "pswa")


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_determinism(attention_type):
    a, b = make(attention_type, seed=3), make(attention_type, seed=3)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    x = inputs()
    assert torch.equal(run(a, **x), run(b, **x))
    assert torch.equal(run(a, **x), run(a, **x))
    assert not torch.equal(run(make(attention_type, seed=4), **x), run(a, **x))


@pytest.mark.parametrize("attention_type,num_mediators", [(t, None) for t in ATTENTION_TYPES] + [("mediator", 4)])
def test_every_parameter_gets_gradient_once_zero_init_layers_are_open(attention_type, num_mediators):
    """With the zero-initialised layers opened (as after some training), one backward reaches every parameter;
    for mediator at every count (all counts share the bias tables)."""
    model = make(attention_type).train()
    x = inputs()
    kw = {} if num_mediators is None else {"num_mediators": num_mediators}
    (model(**x, **kw).sample - torch.randn_like(x["hidden_states"])).square().mean().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()] == []


def test_every_parameter_gets_gradient_as_zero_init_layers_open():
    """Zero-initialised output layers open one optimizer step at a time. The final layer is zero at step 0, so
    only it gets gradient then; after one step everything gets gradient except the parameters sitting behind a
    second zero-initialised linear (GIIM, shifted-window and text outputs); after two steps, all of them."""
    torch.manual_seed(0)
    model = PTDiTTransformer3DModel(**TINY).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = inputs()
    target = torch.randn_like(x["hidden_states"])
    behind_second_zero = ("caption_projection.", "attn_giim.", "attn_proxy.", "attn_shift.", "shift_scale_shift_table",
                          "attn_text.to_q", "attn_text.to_kv")
    for step in range(3):
        opt.zero_grad()
        loss = (model(**x).sample - target).pow(2).mean()
        loss.backward()
        no_grad = {n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()}
        if step == 0:
            assert {n for n, _ in model.named_parameters()} - no_grad == {"proj_out.weight", "proj_out.bias"}
        elif step == 1:
            assert no_grad == {n for n, _ in model.named_parameters() if any(k in n for k in behind_second_zero)}
        else:
            assert no_grad == set()
        opt.step()


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_cross_view_mixing_but_no_cross_sample_mixing(attention_type):
    """Every variant lets view 1 reach view 0 (how: each block's docstring in ``blocks.py``)."""
    model = make(attention_type)
    x = inputs()
    base = run(model, **x)
    y = dict(x, hidden_states=x["hidden_states"].clone())
    y["hidden_states"][:, 1] += torch.randn_like(y["hidden_states"][:, 1])
    changed = run(model, **y)
    assert (changed[:, 0] - base[:, 0]).abs().max() > 1e-4  # view 0 sees view 1
    z = dict(x, hidden_states=x["hidden_states"].clone())
    z["hidden_states"][1] += 1.0
    other = run(model, **z)
    torch.testing.assert_close(other[0], base[0], rtol=0, atol=1e-6)  # sample 0 does not see sample 1


def test_spatial_temporal_views_only_meet_through_the_view_attention():
    model = make("spatial_temporal")
    with torch.no_grad():
        for block in model.transformer_blocks:
            block.attn_views.to_out.weight.zero_()
            block.attn_views.to_out.bias.zero_()
    x = inputs()
    y = dict(x, hidden_states=x["hidden_states"].clone())
    y["hidden_states"][:, 1] += 1.0
    torch.testing.assert_close(run(model, **y)[:, 0], run(model, **x)[:, 0], rtol=0, atol=1e-6)


def test_proxy_views_only_meet_through_giim():
    """With pf = 1 windows never span views, so closing the GIIM output removes every cross-view path."""
    model = make("proxy")
    with torch.no_grad():
        for block in model.transformer_blocks:
            block.proj_giim.weight.zero_()
            block.proj_giim.bias.zero_()
    x = inputs()
    y = dict(x, hidden_states=x["hidden_states"].clone())
    y["hidden_states"][:, 1] += 1.0
    torch.testing.assert_close(run(model, **y)[:, 0], run(model, **x)[:, 0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_cameras_condition_and_view_permutation_is_equivariant(attention_type):
    model = make(attention_type)
    x = inputs(V=3)
    base = run(model, **x)
    moved = dict(x, plucker=inputs(V=3, seed=1)["plucker"].roll(1, dims=0))  # other cameras
    assert (run(model, **moved) - base).abs().max() > 1e-3
    assert (run(model, **dict(x, plucker=None)) - base).abs().max() > 1e-3
    perm = torch.tensor([2, 0, 1])
    permuted = dict(x, hidden_states=x["hidden_states"][:, perm], plucker=x["plucker"][:, perm])
    torch.testing.assert_close(run(model, **permuted), base[:, perm], rtol=1e-4, atol=1e-5)


def test_paper_3d_positions_and_view_windows_depend_on_view_order():
    x = inputs(V=4)
    perm = torch.tensor([1, 0, 3, 2])
    permuted = dict(x, hidden_states=x["hidden_states"][:, perm], plucker=x["plucker"][:, perm])
    for model in (make(pos_embed="3d"), make(window_size=(2, 2, 2))):
        assert (run(model, **permuted) - run(model, **x)[:, perm]).abs().max() > 1e-4


def test_text_mask_and_empty_prompt():
    model = make()
    x = inputs()
    base = run(model, **x)
    noisy_pad = x["encoder_hidden_states"].clone()
    noisy_pad[0, 3:] = 100.0  # padded tokens of sample 0 are ignored
    torch.testing.assert_close(run(model, **dict(x, encoder_hidden_states=noisy_pad)), base, rtol=0, atol=1e-6)
    empty = dict(x, encoder_attention_mask=torch.zeros(2, 5))  # no text at all: prompt values do not matter
    a = run(model, **empty)
    b = run(model, **dict(empty, encoder_hidden_states=torch.randn(2, 5, 16)))
    assert torch.isfinite(a).all()
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_gradient_checkpointing_matches():
    model = make("proxy").train()
    x = inputs()
    ref = model(**x).sample
    ref.square().mean().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.enable_gradient_checkpointing()
    out = model(**x).sample
    out.square().mean().backward()
    torch.testing.assert_close(out, ref)
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(p.grad, g)


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_bf16_autocast_on_cpu(attention_type):
    model = make(attention_type).train()
    x = inputs()
    ref = run(model, **x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**x).sample
    out.float().square().mean().backward()
    assert torch.isfinite(out).all()
    assert (out.float() - ref).abs().max() < 0.05 * ref.abs().max() + 1e-3
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


def test_camera_summary_recovers_centres():
    cams = orbit(5, elevation=[0, 20, 40, -10, 60], azimuth_start=12.0, width=64)
    summary = camera_summary(cams.plucker(8, 8)[None])  # (1, V, 9)
    torch.testing.assert_close(summary[0, :, 6:], cams.centers, atol=1e-3, rtol=1e-3)
    axis = torch.nn.functional.normalize(summary[0, :, :3], dim=-1)  # mean ray ~ optical axis (-Z of c2w)
    torch.testing.assert_close(axis, -cams.c2w[:, :3, 2], atol=1e-3, rtol=1e-3)


def test_bad_inputs_raise_clear_errors():
    model = make()
    x = inputs()
    cases = [
        (dict(hidden_states=x["hidden_states"][:, :, :3]), "3 channels"),
        (dict(hidden_states=x["hidden_states"][0]), r"\[B, V, C, H, W\]"),
        (dict(hidden_states=torch.randn(2, 2, 4, 7, 8)), "not divisible by patch_size"),
        (dict(hidden_states=torch.randn(2, 2, 4, 6, 8), plucker=None), r"window_size \(1, 2, 2\).*\(2, 3, 4\)"),
        (dict(hidden_states=torch.randn(2, 9, 4, 8, 8), plucker=None), "max_views"),
        (dict(plucker=x["plucker"][:, :1]), "plucker must be"),
        (dict(encoder_hidden_states=torch.randn(2, 5, 8)), "caption_channels=16"),
        (dict(encoder_attention_mask=torch.ones(2, 4)), "encoder_attention_mask"),
        (dict(timestep=torch.ones(3)), "timestep"),
    ]
    for override, message in cases:
        with pytest.raises(ValueError, match=message):
            model(**{**x, **override})
    with pytest.raises(ValueError, match=r"window_size \(2, 2, 2\).*views: 3 % 2"):
        make(window_size=(2, 2, 2))(**inputs(V=3))
    with pytest.raises(ValueError, match="attention_type"):
        make("local")
    with pytest.raises(ValueError, match="window_size"):
        make(window_size=(1, 2))


def test_scalar_timestep_and_meta_device_runs_do_not_leak_into_cpu_runs():
    model = make(window_size=(1, 3, 3), sample_size=12)
    x = inputs(B=1, size=12)
    torch.testing.assert_close(run(model, **dict(x, timestep=700.0)), run(model, **x), rtol=0, atol=0)
    x3 = inputs(B=1, V=3, size=12)
    with torch.device("meta"):  # first use of this grid happens on meta: cached index/mask tensors stay on CPU
        meta_model = PTDiTTransformer3DModel(**{**TINY, "window_size": (1, 3, 3), "sample_size": 12, "num_layers": 1})
        meta_x = {k: torch.empty(v.shape) for k, v in x3.items() if k != "encoder_attention_mask"}
        assert meta_model(**meta_x).sample.is_meta
    assert torch.isfinite(run(model, **x3)).all()


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_model_cast_to_bf16_runs_in_bf16(attention_type):
    model = make(attention_type)
    x = dict(inputs(), encoder_attention_mask=torch.tensor([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0]]))  # one empty prompt
    ref = run(model, **x)
    out = run(model.to(torch.bfloat16), **x)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert (out.float() - ref).abs().max() < 0.05 * ref.abs().max() + 1e-3
