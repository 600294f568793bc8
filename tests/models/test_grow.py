"""Depth growth (``mvgen.models.grow``, training's ``init_from`` with fewer blocks): the grown model computes what
its source did, its added blocks learn, mismatched sources are refused."""

import pytest
import torch

from mvgen.models import ATTENTION_TYPES
from mvgen.models.grow import grow_from, grown_layout
from tests.models.test_ptdit import inputs, make, run


def test_layout_spreads_the_added_blocks_after_trained_ones():
    assert grown_layout(8, 12) == [(0, False), (1, False), (1, True), (2, False), (3, False), (3, True),
                                   (4, False), (5, False), (5, True), (6, False), (7, False), (7, True)]
    assert grown_layout(2, 2) == [(0, False), (1, False)]
    assert [i for i, _ in grown_layout(2, 5)] == [0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="only grows deeper"):
        grown_layout(3, 2)


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_grown_model_computes_what_its_source_did_and_its_added_blocks_learn(attention_type):
    source = make(attention_type, num_layers=2)
    grown = make(attention_type, seed=5, num_layers=4)
    assert grow_from(grown, source) == [1, 3]
    x = inputs()
    ref = run(source, **x)
    assert ref.abs().max() > 0.05  # the source's paths are open (make fills its zero-initialised layers)
    torch.testing.assert_close(run(grown, **x), ref, rtol=0, atol=1e-6)
    added = grown.transformer_blocks[1]
    torch.testing.assert_close(added.ff[0].weight, source.transformer_blocks[0].ff[0].weight)  # a trained copy
    grown.train()
    grown(**x).sample.square().mean().backward()
    for linear in added.residual_outputs():  # zero, and the first to move
        assert not linear.weight.any() and linear.weight.grad.abs().max() > 0


def test_growing_refuses_other_shapes():
    source = make("proxy", num_layers=2)
    with pytest.raises(ValueError, match="attention_head_dim 16 vs 32"):
        grow_from(make("proxy", num_layers=3, attention_head_dim=32), source)
    with pytest.raises(ValueError, match="attention_type"):
        grow_from(make("full", num_layers=3), source)
