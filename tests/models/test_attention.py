"""Window / shifted-window attention and proxy tokens against slow, obviously-correct references."""

import itertools

import pytest
import torch

from mvgen.models.attention import (Attention, check_window, shifted_window_attention, shifted_window_mask,
                                    shifted_windows, text_mask, window_attention, window_means, window_merge,
                                    window_partition, window_shift)

CASES = [  # (grid (V, h, w), window (pf, ph, pw))
    ((2, 4, 4), (1, 2, 2)),
    ((2, 6, 4), (1, 3, 2)),
    ((4, 4, 8), (2, 2, 4)),
    ((2, 4, 4), (1, 1, 1)),
]


def reference_attention(attn: Attention, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """x [L, D] -> [L, D]: multi-head softmax attention written out, ``allowed`` [L, L] bool."""
    L = x.shape[0]
    q, k, v = attn.to_qkv(x).view(L, 3, attn.heads, attn.head_dim).unbind(1)  # (L, H, hd)
    scores = torch.einsum("ihd,jhd->hij", q, k) / attn.head_dim**0.5
    scores = scores.masked_fill(~allowed, float("-inf"))
    out = torch.einsum("hij,jhd->ihd", scores.softmax(-1), v).reshape(L, -1)
    return attn.to_out(out)


def reference_windows(attn: Attention, x: torch.Tensor, window, shifted: bool) -> torch.Tensor:
    """x [B, V, h, w, D] spatial -> [B, V, h, w, D]: loop over every window; for shifted windows the window
    origin is moved by half a window with wrap-around, and two tokens may attend to each other only when, on
    every axis, both or neither of them wrapped around the grid edge (they were neighbours before the roll)."""
    B, V, H, W, D = x.shape
    sizes = (V, H, W)
    shift = tuple(p // 2 for p in window) if shifted else (0, 0, 0)
    out = torch.zeros_like(x)
    for b in range(B):
        for origin in itertools.product(*[range(0, n, p) for n, p in zip(sizes, window)]):
            coords, wrapped = [], []
            for offset in itertools.product(*[range(p) for p in window]):
                raw = [o + d + s for o, d, s in zip(origin, offset, shift)]
                coords.append(tuple(r % n for r, n in zip(raw, sizes)))
                wrapped.append(tuple(r >= n for r, n in zip(raw, sizes)))
            P = len(coords)
            allowed = torch.tensor([[wrapped[i] == wrapped[j] for j in range(P)] for i in range(P)])
            tokens = torch.stack([x[b, f, i, j] for f, i, j in coords])  # (P, D)
            res = reference_attention(attn, tokens, allowed)
            for (f, i, j), r in zip(coords, res):
                out[b, f, i, j] = r
    return out


def _attn(dim=16):
    torch.manual_seed(0)
    return Attention(dim, heads=2, head_dim=8)


@pytest.mark.parametrize("grid,window", CASES)
@pytest.mark.parametrize("shifted", [False, True])
def test_window_attention_matches_reference(grid, window, shifted):
    attn = _attn()
    x = torch.randn(2, *grid, 16, dtype=torch.float64, requires_grad=True)
    attn = attn.double()
    xw = window_partition(x, window).flatten(1, 2)  # (B, N, D) window-major
    if shifted:
        fast = shifted_window_attention(attn, xw, window, shifted_windows(grid, window))
    else:
        fast = window_attention(attn, xw, window)
    fast = window_merge(fast.unflatten(1, (-1, window[0] * window[1] * window[2])), grid, window)
    ref = reference_windows(attn, x, window, shifted)
    torch.testing.assert_close(fast, ref)

    g = torch.randn_like(ref)
    grad_fast = torch.autograd.grad(fast, [x, attn.to_qkv.weight], g)
    grad_ref = torch.autograd.grad(ref, [x, attn.to_qkv.weight], g)
    for a, b in zip(grad_fast, grad_ref):
        torch.testing.assert_close(a, b)


def test_shifted_mask_blocks_wrapped_tokens_and_none_without_shift():
    assert shifted_window_mask((2, 4, 4), (1, 1, 1)) is None
    mask = shifted_window_mask((1, 4, 4), (1, 2, 2))  # 4 windows of 4 tokens, shift (0, 1, 1)
    assert mask.shape == (4, 4, 4)
    assert mask[0].all()  # interior window: nothing wrapped
    # last window (bottom-right): every token comes from a different corner region -> only itself
    assert torch.equal(mask[3], torch.eye(4, dtype=torch.bool))
    assert window_shift((2, 3, 4)) == (1, 1, 2)


@pytest.mark.parametrize("grid,window", CASES)
def test_partition_round_trip_and_proxies_are_window_means(grid, window):
    x = torch.randn(2, *grid, 8)
    xw = window_partition(x, window)
    torch.testing.assert_close(window_merge(xw, grid, window), x, rtol=0, atol=0)
    proxies = window_means(xw.flatten(1, 2), window)  # (B, M, D)
    expected = []
    for origin in itertools.product(*[range(0, n, p) for n, p in zip(grid, window)]):
        sl = tuple(slice(o, o + p) for o, p in zip(origin, window))
        expected.append(x[:, sl[0], sl[1], sl[2]].mean(dim=(1, 2, 3)))
    torch.testing.assert_close(proxies, torch.stack(expected, dim=1))


def test_check_window_names_the_sizes():
    check_window((4, 8, 8), (2, 4, 4))
    with pytest.raises(ValueError, match=r"window_size \(1, 3, 3\).*\(2, 8, 8\).*token rows: 8 % 3"):
        check_window((2, 8, 8), (1, 3, 3))
    with pytest.raises(ValueError, match="views: 3 % 2"):
        check_window((3, 8, 8), (2, 2, 2))


def test_text_mask_handles_empty_rows():
    mask, has = text_mask(torch.tensor([[1, 1, 0], [0, 0, 0]]))
    assert mask.shape == (2, 1, 1, 3) and mask.dtype == torch.bool
    assert mask[0, 0, 0].tolist() == [True, True, False] and mask[1].all()
    assert has.flatten().tolist() == [1.0, 0.0]
    assert text_mask(torch.ones(2, 3))[1] is None and text_mask(None) == (None, None)


@pytest.mark.parametrize("L,S,masked", [(4, 4, False), (6, 9, True), (300, 300, True), (600, 600, False)])
def test_attend_equals_sdpa_values_and_gradients(L, S, masked):
    """The two-matmul CPU path (short sequences) and the fused path (long ones) give SDPA's result."""
    import torch.nn.functional as F

    from mvgen.models.attention import EXPLICIT_MAX_ELEMENTS, attend

    assert (L * S <= EXPLICIT_MAX_ELEMENTS) == (L < 512)  # both paths are exercised
    g = torch.Generator().manual_seed(L)
    q, k, v = (torch.randn(2, 3, n, 8, generator=g, dtype=torch.float64, requires_grad=True) for n in (L, S, S))
    mask = torch.rand(2, 1, L, S, generator=g) > 0.3 if masked else None
    if masked:
        mask[..., 0] = True  # every query may attend somewhere
    out = attend(q, k, v, mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, ref)
    w = torch.randn(out.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad((out * w).sum(), (q, k, v))
    ref_grads = torch.autograd.grad((ref * w).sum(), (q, k, v))
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)
