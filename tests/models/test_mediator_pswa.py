"""The two efficient-attention peers of PT-DiT: DAM mediators and PiT pseudo-shifted windows, against slow
references written out with loops and einsums; the mediator count switch and schedule; config errors."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from mvgen.models import PTDiTTransformer3DModel
from mvgen.models.mediator import MediatorAttention, check_mediator_counts, parse_mediator_schedule
from mvgen.models.pswa import PseudoShiftedWindowAttention

from test_ptdit import TINY, inputs, make, run  # tests/models is on sys.path (pytest rootdir import)


def depthwise3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x [B, V, h, w, C] -> [B, V, h, w, C]: sum of the 9 shifted copies (zero padding inside each view)."""
    h, w = x.shape[2:4]
    padded = F.pad(x, (0, 0, 1, 1, 1, 1))
    out = sum(padded[:, :, dy:dy + h, dx:dx + w] * weight[:, 0, dy, dx] for dy in range(3) for dx in range(3))
    return out if bias is None else out + bias


def attention_rows(q, k, v, bias=None):
    """softmax(q kᵀ/sqrt(E) + bias) v per head, written out: q [L, H, E], k, v [S, H, E], bias [H, L, S]."""
    scores = torch.einsum("lhe,she->hls", q, k) / math.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias
    return torch.einsum("hls,she->lhe", scores.softmax(-1), v)


# ------------------------------------------------------------------------------------------------ mediator


def reference_mediator(attn: MediatorAttention, x: torch.Tensor, grid, n: int) -> torch.Tensor:
    """DAM written out for one sample at a time: block means of the queries per view, biases as explicit area
    averages of the table's cells, the two attentions as einsums, the depthwise conv as 9 shifted sums. Needs the
    token grid equal to the bias table's and sqrt(n) dividing it."""
    B, N, _ = x.shape
    V, h, w = grid
    H, E = attn.heads, attn.head_dim
    s, S = math.isqrt(n), math.isqrt(attn.bias_gather.shape[1])
    q, k, v = attn.to_qkv(x).view(B, N, 3, H, E).unbind(2)  # (B, N, H, E)
    qg = q.view(B, V, h, w, H, E)
    bh, bw, r = h // s, w // s, S // s
    mediators = torch.stack([qg[:, f, i * bh:(i + 1) * bh, j * bw:(j + 1) * bw].mean(dim=(1, 2))
                             for f in range(V) for i in range(s) for j in range(s)], dim=1)  # (B, V*n, H, E)

    def bias(table):  # (H, n, h*w): mediator cell (i, j) of the coarse grid = mean of the r×r fine cells it covers
        fine = table.view(H, S, S, h * w)
        return torch.stack([fine[:, i * r:(i + 1) * r, j * r:(j + 1) * r].mean(dim=(1, 2))
                            for i in range(s) for j in range(s)], dim=1)

    b1 = bias(attn.bias_gather).repeat(1, V, V)  # (H, V*n, N): same block for every (mediator view, token view)
    b2 = bias(attn.bias_broadcast).transpose(1, 2).repeat(1, V, V)  # (H, N, V*n)
    out = []
    for b in range(B):
        gathered = attention_rows(mediators[b], k[b], v[b], b1)  # (V*n, H, E)
        out.append(attention_rows(q[b], mediators[b], gathered, b2))  # (N, H, E)
    out = torch.stack(out).reshape(B, N, H * E)
    local = depthwise3x3(v.reshape(B, V, h, w, H * E), attn.dwc.weight, attn.dwc.bias)
    return attn.to_out(out + local.reshape(B, N, H * E))


def _mediator_module(counts=(1, 4, 16), bias_grid=4):
    torch.manual_seed(0)
    attn = MediatorAttention(24, heads=3, head_dim=8, counts=counts, bias_grid=bias_grid).double()
    with torch.no_grad():
        attn.bias_gather.normal_()
        attn.bias_broadcast.normal_()
    return attn


@pytest.mark.parametrize("n", [1, 4, 16])
def test_mediator_attention_matches_reference(n):
    attn = _mediator_module()
    grid = (2, 4, 4)
    x = torch.randn(2, 32, 24, dtype=torch.float64, requires_grad=True)
    fast, ref = attn(x, grid, n), reference_mediator(attn, x, grid, n)
    torch.testing.assert_close(fast, ref)
    g = torch.randn_like(ref)
    wrt = [x, attn.to_qkv.weight, attn.bias_gather, attn.bias_broadcast, attn.dwc.weight]
    for a, b in zip(torch.autograd.grad(fast, wrt, g), torch.autograd.grad(ref, wrt, g)):
        torch.testing.assert_close(a, b)
        assert a.abs().max() > 0  # every count trains the whole bias tables


def test_mediator_other_token_grids_resize_the_biases():
    attn = _mediator_module()
    x = torch.randn(1, 2 * 36, 24, dtype=torch.float64)
    assert attn(x, (2, 6, 6), 4).shape == (1, 72, 24)  # bilinear resize of the 4x4 tables to 6x6 tokens
    assert attn.position_bias(attn.bias_gather, 2, 6, 6).shape == (3, 4, 36)
    # the reference holds at the table's own grid: at 6x6 the bias is the resized table's area average
    table = F.interpolate(attn.bias_gather, size=(6, 6), mode="bilinear", align_corners=False)  # (H, 16, 6, 6)
    expected = table.view(3, 2, 2, 2, 2, 36).mean(dim=(2, 4)).reshape(3, 4, 36)
    torch.testing.assert_close(attn.position_bias(attn.bias_gather, 2, 6, 6), expected)


def test_check_mediator_counts_names_the_field():
    assert check_mediator_counts([16, 4], 4) == (4, 16)
    with pytest.raises(ValueError, match="mediator_counts: 8 is not a perfect square"):
        check_mediator_counts([4, 8], 8)
    with pytest.raises(ValueError, match="mediator_counts: 64 exceeds the 16 tokens per view"):
        check_mediator_counts([4, 64], 4)
    with pytest.raises(ValueError, match="mediator_counts"):
        check_mediator_counts([], 4)
    with pytest.raises(ValueError, match="repeated"):
        check_mediator_counts([4, 4], 4)


def test_mediator_count_switch_in_the_model():
    model = make("mediator", mediator_counts=(1, 4, 16))
    x = inputs()
    outs = {n: run(model, **x, num_mediators=n) for n in (1, 4, 16)}
    assert all(torch.isfinite(o).all() and o.shape == (2, 2, 4, 8, 8) for o in outs.values())
    for a, b in itertools.combinations(outs, 2):
        assert (outs[a] - outs[b]).abs().max() > 1e-4  # a different n is a different operator
    torch.testing.assert_close(run(model, **x), outs[16], rtol=0, atol=0)  # default: the largest count
    with pytest.raises(ValueError, match=r"num_mediators 9 is not one of .*mediator_counts \[1, 4, 16\]"):
        model(**x, num_mediators=9)
    small = inputs(size=4)  # 2x2 tokens per view cannot hold a 4x4 mediator grid
    with pytest.raises(ValueError, match="num_mediators 16 needs a 4x4 grid"):
        model(**small, num_mediators=16)
    assert run(model, **small, num_mediators=4).shape == (2, 2, 4, 4, 4)
    with pytest.raises(ValueError, match="num_mediators is only for attention_type 'mediator'"):
        make("full")(**x, num_mediators=4)


def test_mediator_schedule_picks_the_count_from_the_timestep():
    model = make("mediator", mediator_counts=(1, 4, 16))
    x = inputs(B=1)
    noisy, clean = dict(x, timestep=torch.tensor([800.0])), dict(x, timestep=torch.tensor([100.0]))
    model.set_mediator_schedule("700:4,0:16")
    assert (model.num_mediators_at(800.0), model.num_mediators_at(torch.tensor([100.0]))) == (4, 16)
    torch.testing.assert_close(run(model, **noisy), run(model, **noisy, num_mediators=4), rtol=0, atol=0)
    torch.testing.assert_close(run(model, **clean), run(model, **clean, num_mediators=16), rtol=0, atol=0)
    model.set_mediator_schedule("even")
    assert [model.num_mediators_at(t) for t in (1000, 700, 600, 400, 300, 0)] == [1, 1, 4, 4, 16, 16]  # thirds
    model.set_mediator_schedule(4)
    assert model.num_mediators_at(999) == model.num_mediators_at(0) == 4
    model.set_mediator_schedule(None)
    assert model.num_mediators_at(999) == 16
    for bad, message in [("500:9,0:16", "not one of the trained"), ("500:4", "lowest t_min must be 0"),
                         ("fast", "expected a count"), ([(1200, 4), (0, 16)], "outside")]:
        with pytest.raises(ValueError, match=message):
            model.set_mediator_schedule(bad)
    with pytest.raises(ValueError, match="needs attention_type 'mediator'"):
        make("full").set_mediator_schedule("even")
    assert parse_mediator_schedule([(0, 16), (500, 4)], (4, 16)) == ((500.0, 4), (0.0, 16))


def test_training_draws_counts_from_the_set():
    model = make("mediator", mediator_counts=(1, 4, 16))
    g = torch.Generator().manual_seed(0)
    draws = [model.sample_num_mediators(g) for _ in range(60)]
    assert set(draws) == {1, 4, 16}
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert [model.sample_num_mediators(g1) for _ in range(5)] == [model.sample_num_mediators(g2) for _ in range(5)]
    assert make("proxy").sample_num_mediators(g) is None and make("proxy").num_mediators_at(500) is None


def test_mediator_gradient_checkpointing_matches():
    model = make("mediator").train()
    x = inputs()
    ref = model(**x, num_mediators=4).sample
    ref.square().mean().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.enable_gradient_checkpointing()
    out = model(**x, num_mediators=4).sample
    out.square().mean().backward()
    torch.testing.assert_close(out, ref)
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(p.grad, g)


# ---------------------------------------------------------------------------------------------------- pswa


def reference_pswa(attn: PseudoShiftedWindowAttention, x: torch.Tensor, grid) -> torch.Tensor:
    """PSWA + PCCA written out: a loop over every window of each channel group (group 1: the configured window,
    group 2: its (ph, pw) across all views), the zero-sum bridging conv as 9 shifted sums, group 2 fed with
    group 1's output."""
    B, N, D = x.shape
    V, h, w = grid
    G, H, E = D // 2, attn.heads, attn.head_dim
    xs = x.view(B, V, h, w, D)
    outs, carry = [], 0
    for index, window in enumerate([attn.window, (V, attn.window[1], attn.window[2])]):
        xg = xs[..., index * G:(index + 1) * G] + carry
        q, k, v = attn.to_qkv[index](xg).view(B, V, h, w, 3, H, E).unbind(4)  # (B, V, h, w, H, E)
        out = torch.zeros_like(q)
        for b in range(B):
            for origin in itertools.product(*[range(0, n, p) for n, p in zip(grid, window)]):
                coords = [tuple(o + d for o, d in zip(origin, off)) for off in itertools.product(*map(range, window))]
                rows = attention_rows(*(torch.stack([t[b][c] for c in coords]) for t in (q, k, v)))  # (P, H, E)
                for c, r in zip(coords, rows):
                    out[(b, *c)] = r
        weight = attn.bridge[index].weight
        bridge = depthwise3x3(v.reshape(B, V, h, w, G), weight - weight.mean(dim=(2, 3), keepdim=True), None)
        carry = out.reshape(B, V, h, w, G) + bridge
        outs.append(carry)
    return attn.to_out(torch.cat(outs, dim=-1)).reshape(B, N, D)


@pytest.mark.parametrize("grid,window", [((2, 4, 4), (1, 2, 2)), ((2, 4, 6), (1, 2, 3)), ((4, 4, 4), (2, 2, 4))])
def test_pswa_matches_reference(grid, window):
    torch.manual_seed(0)
    attn = PseudoShiftedWindowAttention(16, heads=4, head_dim=4, window=window).double()
    x = torch.randn(2, math.prod(grid), 16, dtype=torch.float64, requires_grad=True)
    fast, ref = attn(x, grid), reference_pswa(attn, x, grid)
    torch.testing.assert_close(fast, ref)
    g = torch.randn_like(ref)
    wrt = [x] + list(attn.parameters())
    for a, b in zip(torch.autograd.grad(fast, wrt, g), torch.autograd.grad(ref, wrt, g)):
        torch.testing.assert_close(a, b)


def test_pswa_bridge_is_high_pass_and_links_neighbouring_windows():
    torch.manual_seed(0)
    attn = PseudoShiftedWindowAttention(8, heads=2, head_dim=4, window=(1, 2, 2))
    flat = torch.ones(1, 16, 4)
    assert attn.bridge_branch(flat, (1, 4, 4), 0)[0, 5].abs().max() < 1e-6  # interior of a constant map: 0
    impulse = torch.zeros(1, 16, 4)
    impulse[0, 1 * 4 + 1] = 1.0  # token (1, 1), in the top-left window; (1, 2) is in the next window
    assert attn.bridge_branch(impulse, (1, 4, 4), 0)[0, 1 * 4 + 2].abs().max() > 0


def test_pswa_views_meet_only_through_the_second_group():
    model = make("pswa")
    with torch.no_grad():
        for block in model.transformer_blocks:
            block.attn.to_qkv[1].weight.zero_()
            block.attn.to_qkv[1].bias.zero_()
    x = inputs()
    y = dict(x, hidden_states=x["hidden_states"].clone())
    y["hidden_states"][:, 1] += 1.0
    torch.testing.assert_close(run(model, **y)[:, 0], run(model, **x)[:, 0], rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------------------- config errors


def test_config_errors_name_the_field():
    cases = [
        (dict(attention_type="local"), "attention_type must be one of"),
        (dict(attention_type="mediator", mediator_counts=(4, 8)), "mediator_counts: 8 is not a perfect square"),
        (dict(attention_type="mediator", mediator_counts=(4, 64)), "mediator_counts: 64 exceeds the 16 tokens"),
        (dict(attention_type="pswa", window_size=(1, 3, 3)), r"window_size \(1, 3, 3\) does not divide the 4x4"),
        (dict(attention_type="proxy", window_size=(1, 2, 3)), r"window_size \(1, 2, 3\).*columns 4 % 3"),
        (dict(attention_type="pswa", num_attention_heads=3), "num_attention_heads must be even"),
    ]
    for override, message in cases:
        with pytest.raises(ValueError, match=message):
            PTDiTTransformer3DModel(**{**TINY, **override})
    PTDiTTransformer3DModel(**{**TINY, "attention_type": "full", "window_size": (1, 3, 3)})  # unused: not checked
    with pytest.raises(ValueError, match=r"window_size \(2, 2, 2\).*views: 3 % 2"):
        make("pswa", window_size=(2, 2, 2))(**inputs(V=3))
