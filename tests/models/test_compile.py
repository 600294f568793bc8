"""Compiled transformer blocks (``PTDiTTransformer3DModel.compile_blocks``, training's ``compile: true``) and the
fused form of window attention they take on CPU, against the eager model."""

import copy

import pytest
import torch

import mvgen.models.attention as attention
from mvgen.device import DeviceError, check_compiler
from mvgen.models import PTDiTTransformer3DModel
from mvgen.models.attention import attend, shifted_window_mask, window_attention_pairs
from mvgen.models.ptdit import PROMPT_PAD, pad_prompt


@pytest.mark.parametrize("window,grid", [((1, 2, 2), (2, 4, 4)), ((2, 1, 2), (2, 2, 4))])
@pytest.mark.parametrize("masked", [False, True])
def test_pair_form_of_window_attention_equals_batched_attention(window, grid, masked):
    torch.manual_seed(0)
    B, H, E = 2, 3, 8
    P = window[0] * window[1] * window[2]
    nW = grid[0] * grid[1] * grid[2] // P
    qkv = torch.randn(B, nW, P, 3, H, E, dtype=torch.float64, requires_grad=True)
    mask = shifted_window_mask(grid, window) if masked else None
    assert (mask is not None and not mask.all()) if masked else True  # some pairs really are masked out
    fused = window_attention_pairs(qkv, mask)  # (B, nW, P, H, E)
    q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # (B, nW, H, P, E) each
    ref = attend(q, k, v, None if mask is None else mask[:, None]).transpose(2, 3)  # (B, nW, P, H, E)
    torch.testing.assert_close(fused, ref)
    g = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(fused, qkv, g)[0], torch.autograd.grad(ref, qkv, g)[0])


def _no_compiler() -> bool:
    try:
        check_compiler("cpu")
    except DeviceError:
        return True
    return False


NEEDS_COMPILER = pytest.mark.skipif(_no_compiler(), reason="torch.compile on the CPU needs a C++ compiler")


@NEEDS_COMPILER
def test_compiled_blocks_equal_the_eager_model_and_take_the_pair_form(monkeypatch):
    traced = []
    pairs = attention.window_attention_pairs
    monkeypatch.setattr(attention, "window_attention_pairs", lambda *a: traced.append(1) or pairs(*a))
    torch.manual_seed(0)
    eager = PTDiTTransformer3DModel.from_preset("tiny", num_layers=1, num_attention_heads=2, attention_head_dim=16,
                                                in_channels=4, sample_size=8).train()
    with torch.no_grad():
        for p in eager.parameters():  # open the zero-initialised layers, as after training
            if not p.any():
                p.normal_(std=0.2)
    compiled = copy.deepcopy(eager)
    compiled.compile_blocks()
    g = torch.Generator().manual_seed(1)
    inputs = dict(hidden_states=torch.randn(2, 3, 4, 8, 8, generator=g), timestep=torch.rand(2, generator=g) * 1000,
                  encoder_hidden_states=torch.randn(2, 5, 384, generator=g),
                  plucker=torch.randn(2, 3, 6, 8, 8, generator=g))
    results = []
    for model in (eager, compiled):
        out = model(**inputs).sample
        out.square().mean().backward()
        results.append((out.detach(), {n: p.grad for n, p in model.named_parameters()}))
    assert traced  # the compiled blocks used the pair form (traced once), the eager model did not call it
    (ya, ga), (yb, gb) = results
    assert ya.abs().max() > 0.5
    torch.testing.assert_close(yb, ya, rtol=1e-4, atol=1e-4)
    for name in ga:
        assert ga[name].abs().max() > 0, name
        torch.testing.assert_close(gb[name], ga[name], rtol=1e-3, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
    assert list(compiled.state_dict()) == list(eager.state_dict())  # nothing renamed: checkpoints stay loadable


def test_padded_prompts_give_the_same_output_as_unpadded_ones():
    """The compiled model's prompt padding (``pad_prompt``) is exact, including for an empty (dropped) prompt."""
    torch.manual_seed(0)
    model = PTDiTTransformer3DModel.from_preset("tiny", num_layers=1, num_attention_heads=2, attention_head_dim=16,
                                                in_channels=4, sample_size=8).eval()
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(std=0.2)
    g = torch.Generator().manual_seed(1)
    emb = torch.randn(3, 7, 384, generator=g)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [0] * 7])  # full, shorter, empty prompt
    padded, padded_mask = pad_prompt(emb, mask)
    assert padded.shape == (3, PROMPT_PAD, 384) and padded_mask.shape == (3, PROMPT_PAD)
    assert torch.equal(padded_mask.sum(1), mask.sum(1)) and torch.equal(pad_prompt(padded, padded_mask)[0], padded)
    inputs = dict(hidden_states=torch.randn(3, 2, 4, 8, 8, generator=g), timestep=torch.rand(3, generator=g) * 1000,
                  plucker=torch.randn(3, 2, 6, 8, 8, generator=g))
    with torch.no_grad():
        ref = model(**inputs, encoder_hidden_states=emb, encoder_attention_mask=mask).sample
        out = model(**inputs, encoder_hidden_states=padded, encoder_attention_mask=padded_mask).sample
        no_mask = model(**inputs, encoder_hidden_states=emb).sample
        no_mask_padded = model(**inputs, encoder_hidden_states=pad_prompt(emb, None)[0],
                               encoder_attention_mask=pad_prompt(emb, None)[1]).sample
        empty = model(**inputs, encoder_hidden_states=emb, encoder_attention_mask=torch.zeros_like(mask)).sample
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(no_mask_padded, no_mask)
    assert not torch.allclose(ref[:2], empty[:2], atol=1e-3)  # the prompts matter: the equalities are not vacuous
    torch.testing.assert_close(ref[2], empty[2])


def test_compile_without_a_cpu_compiler_is_refused_naming_the_field(monkeypatch):
    import shutil

    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(DeviceError, match="compile: torch.compile on the CPU needs a C\\+\\+ compiler"):
        check_compiler("cpu")
