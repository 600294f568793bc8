"""The PT-DiT block after the overhead cuts (composed GIIM / shifted-window output linears, windows attended
without a re-layout, the shifted mask broadcast instead of expanded) equals the block as it was
(``proxy_reference.reference_forward``): values and gradients of every parameter, and the shipped model's
output."""

import copy
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from mvgen.models import PTDiTTransformer3DModel
from mvgen.models.attention import shifted_windows, text_mask
from mvgen.models.blocks import PTDiTBlock, composed_linear, gated_composed_linear
from mvgen.models.int8 import SCALE_SUFFIX

from proxy_reference import reference_forward  # tests/models/ is on sys.path (no __init__.py, prepend import mode)

ASSET = Path(__file__).resolve().parents[2] / "assets" / "mvgen-tiny" / "transformer"

CASES = [  # (grid (V, h, w), window (pf, ph, pw), heads, head_dim)
    ((2, 4, 4), (1, 2, 2), 2, 8),   # the presets' window; 32 tokens >= D: composed shifted output
    ((4, 4, 4), (2, 2, 2), 2, 8),   # pf > 1: windows and the shift span views
    ((2, 4, 6), (1, 1, 2), 2, 8),   # shift 0 on the view and row axes
    ((2, 4, 4), (1, 1, 1), 2, 8),   # no shift at all (mask None)
    ((1, 2, 4), (1, 2, 2), 2, 16),  # 8 tokens < D = 32: the shifted output stays two linears
]


def _block(window, heads, head_dim, seed=0):
    """A block whose zero-initialised layers are opened (small random values) so every path is active."""
    torch.manual_seed(seed)
    block = PTDiTBlock(heads * head_dim, heads, head_dim, window).double()
    with torch.no_grad():
        for p in block.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return block


def _inputs(grid, dim, masked, dtype=torch.float64, B=3, T=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    N = grid[0] * grid[1] * grid[2]
    x = torch.randn(B, N, dim, generator=g, dtype=dtype).requires_grad_()
    t6 = (torch.randn(B, 6, dim, generator=g, dtype=dtype) * 0.5).requires_grad_()
    ctx = torch.randn(B, T, dim, generator=g, dtype=dtype).requires_grad_()
    keep = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]]) if masked else None
    return (x, t6, ctx, *text_mask(keep))


def _grads(out, tensors, seed=2):
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    return torch.autograd.grad((out * w).sum(), tensors, allow_unused=True)


@pytest.mark.parametrize("grid,window,heads,head_dim", CASES)
@pytest.mark.parametrize("masked", [False, True])
def test_block_equals_reference_values_and_every_gradient(grid, window, heads, head_dim, masked):
    block = _block(window, heads, head_dim)
    x, t6, ctx, ctx_mask, has_text = _inputs(grid, heads * head_dim, masked)
    mask = shifted_windows(grid, window)
    assert (mask.mask is None) == (window == (1, 1, 1))
    fast = block(x, t6, ctx, ctx_mask, has_text, grid, mask)
    ref = reference_forward(block, x, t6, ctx, ctx_mask, has_text, grid, mask)
    assert ref.abs().max() > 0.1  # a live output, not a closed branch
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-10)

    params = dict(block.named_parameters())
    tensors = [x, t6, ctx, *params.values()]
    names = ["x", "t6", "ctx", *params]
    for name, a, b in zip(names, _grads(fast, tensors), _grads(ref, tensors)):
        assert a is not None and b is not None, name
        assert b.abs().max() > 0, name  # every parameter is on the path
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("grid,window,heads,head_dim", [CASES[0], CASES[1], CASES[4]])
def test_block_equals_reference_under_bf16_autocast(grid, window, heads, head_dim):
    block = _block(window, heads, head_dim).float()
    x, t6, ctx, ctx_mask, has_text = _inputs(grid, heads * head_dim, True, dtype=torch.float32)
    mask = shifted_windows(grid, window)
    with torch.autocast("cpu", torch.bfloat16):
        fast = block(x, t6, ctx, ctx_mask, has_text, grid, mask)
        ref = reference_forward(block, x, t6, ctx, ctx_mask, has_text, grid, mask)
    scale = float(ref.detach().float().abs().max())
    torch.testing.assert_close(fast.float(), ref.float(), rtol=0, atol=0.03 * scale)
    tensors = [x, block.proj_giim.weight, block.attn_giim.to_out.weight, block.proj_shift.weight,
               block.attn_shift.to_out.weight, block.shift_scale_shift_table]
    for a, b in zip(_grads(fast.float(), tensors), _grads(ref.float(), tensors)):
        torch.testing.assert_close(a, b, rtol=0, atol=0.05 * float(b.abs().max()))


def test_window_layout_for_fused_devices_equals_reference(monkeypatch):
    """The [B*nW, H, P, hd] layout (with the mask expanded) used where SDPA takes the windows (GPUs), run here."""
    import mvgen.models.attention as attention

    monkeypatch.setattr(attention, "_fused_sdpa_device", lambda x: True)
    grid, window = (4, 4, 4), (2, 2, 2)
    block = _block(window, 2, 8)
    x, t6, ctx, ctx_mask, has_text = _inputs(grid, 16, True)
    mask = shifted_windows(grid, window)
    fast = block(x, t6, ctx, ctx_mask, has_text, grid, mask)
    torch.testing.assert_close(fast, reference_forward(block, x, t6, ctx, ctx_mask, has_text, grid, mask))


def test_composed_linears_equal_the_two_layers():
    torch.manual_seed(0)
    inner, outer = nn.Linear(6, 5).double(), nn.Linear(5, 4).double()
    x = torch.randn(3, 7, 6, dtype=torch.float64)
    weight, bias = composed_linear(outer, inner, x.dtype)
    torch.testing.assert_close(nn.functional.linear(x, weight, bias), outer(inner(x)))
    gate = torch.randn(3, 1, 5, dtype=torch.float64)
    ref = outer(gate * inner(x))
    torch.testing.assert_close(gated_composed_linear(outer, inner, gate, x), ref)  # 7 tokens >= 5: composed
    torch.testing.assert_close(gated_composed_linear(outer, inner, gate, x[:, :3]), ref[:, :3])  # 3 < 5: plain
    wrong = gated_composed_linear(outer, inner, gate.flip(0), x)  # the gate is per sample
    assert not torch.allclose(wrong, ref)


def _with_reference_blocks(model: PTDiTTransformer3DModel) -> PTDiTTransformer3DModel:
    ref = copy.deepcopy(model)
    for block in ref.transformer_blocks:
        block.forward = types.MethodType(reference_forward, block)
    return ref


@pytest.mark.skipif(not ASSET.is_dir(), reason="the shipped model is not in this checkout")
def test_shipped_model_gives_the_same_output():
    model = PTDiTTransformer3DModel.from_pretrained(ASSET).float().eval()
    from safetensors import safe_open

    state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    with safe_open(str(ASSET / "diffusion_pytorch_model.safetensors"), "pt") as f:
        stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys() if not k.endswith(SCALE_SUFFIX)}
    assert stored == state  # the checkpoint's keys and shapes (8-bit linears carry a scale tensor beside them)
    assert "transformer_blocks.0.proj_giim.weight" in state and "transformer_blocks.0.proj_shift.weight" in state
    ref = _with_reference_blocks(model)
    assert {k: tuple(v.shape) for k, v in ref.state_dict().items()} == state  # one state dict for both
    g = torch.Generator().manual_seed(0)
    V, C, H = 4, model.config.in_channels, model.config.sample_size
    inputs = dict(hidden_states=torch.randn(2, V, C, H, H, generator=g), timestep=torch.tensor([800.0, 150.0]),
                  encoder_hidden_states=torch.randn(2, 7, model.config.caption_channels, generator=g),
                  encoder_attention_mask=torch.tensor([[1, 1, 1, 1, 0, 0, 0], [1] * 7]),
                  plucker=torch.randn(2, V, 6, H, H, generator=g))
    with torch.no_grad():
        fast = model(**inputs).sample
        slow = ref(**inputs).sample
        with torch.autocast("cpu", torch.bfloat16):
            fast_bf16 = model(**inputs).sample.float()
            slow_bf16 = ref(**inputs).sample.float()
    assert fast.shape == (2, V, C, H, H) and slow.abs().max() > 0.1
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast_bf16, slow_bf16, rtol=0, atol=0.05 * float(slow.abs().max()))
