"""Depth growth: start a deeper transformer from a trained shallower one without changing what it computes.

Every trained block keeps its weights and order; the added blocks are spread evenly between them, each a copy of
the trained block before it with the linears that write into the residual stream zeroed
(``residual_outputs()`` of the block classes), so each added block starts as the identity while its inner layers
already compute the features of a trained block. Training then moves the zeroed outputs first (their gradient is
the residual's gradient times the copied features). The rest of the model (embeddings, adaLN-single, output) is
copied unchanged. Used by ``mvgen train`` when ``init_from`` holds fewer blocks than the configured model.
"""

from __future__ import annotations

import torch

from .ptdit import PTDiTTransformer3DModel

# config fields that may differ between a model and the deeper model grown from it
_GROWABLE = {"num_layers", "_name_or_path", "_class_name", "_diffusers_version", "_use_default_values"}


def grown_layout(old_layers: int, new_layers: int) -> list[tuple[int, bool]]:
    """For each block of the grown model: (index of the trained block it copies, whether it is an added copy).
    Added blocks follow the trained blocks evenly: 8 -> 12 puts one after trained blocks 1, 3, 5 and 7."""
    if not 1 <= old_layers <= new_layers:
        raise ValueError(f"cannot grow {old_layers} blocks into {new_layers}: a model only grows deeper")
    extra = new_layers - old_layers
    layout = []
    for i in range(old_layers):
        layout.append((i, False))
        copies = (i + 1) * extra // old_layers - i * extra // old_layers
        layout += [(i, True)] * copies
    return layout


def grow_from(model: PTDiTTransformer3DModel, source: PTDiTTransformer3DModel) -> list[int]:
    """Load ``source``'s weights into ``model`` (same config except ``num_layers`` >= the source's), filling the
    extra blocks as the module docstring says; returns the indices of the added blocks. In place, no grad."""
    mine = {k: v for k, v in model.config.items() if k not in _GROWABLE}
    theirs = {k: v for k, v in source.config.items() if k not in _GROWABLE}
    diff = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
    if diff:
        raise ValueError("cannot grow from a transformer whose config differs in more than num_layers: "
                         + ", ".join(f"{k} {theirs.get(k)!r} vs {mine.get(k)!r}" for k in diff))
    layout = grown_layout(source.config.num_layers, model.config.num_layers)
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("transformer_blocks.")}
    blocks = source.transformer_blocks
    with torch.no_grad():
        model.load_state_dict(state, strict=False)
        for target, (i, added) in zip(model.transformer_blocks, layout):
            target.load_state_dict(blocks[i].state_dict())
            if added:
                for linear in target.residual_outputs():
                    linear.weight.zero_()
                    linear.bias.zero_()
    missing = [k for k in model.state_dict() if k not in state and not k.startswith("transformer_blocks.")]
    if missing:
        raise ValueError(f"the source transformer lacks {missing}")
    return [j for j, (_, added) in enumerate(layout) if added]
