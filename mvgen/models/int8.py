"""8-bit storage of a transformer's linear weights (`mvgen export-model --dtype int8`): what lets a deeper model
ship within the 50 MB of model files.

Each linear weight [out, in] is split into groups of ``GROUP`` consecutive inputs; a group stores int8 values
q = round(w / s) with s = max|w| / 127 over the group (a float32 per group), so every weight is within s/2 of its
value. Biases, tables and every other tensor stay bfloat16. The file is an ordinary safetensors file whose
metadata says ``mvgen_weights: int8-gN``; loading (``PTDiTTransformer3DModel.from_pretrained``) dequantizes to
float32 before the model sees it, so the model computes in its usual precision on weights rounded once.
"""

from __future__ import annotations

from pathlib import Path

import torch

GROUP = 64
FORMAT = f"int8-g{GROUP}"
SCALE_SUFFIX = ".group_scale"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


def quantize(weight: torch.Tensor, group: int = GROUP) -> tuple[torch.Tensor, torch.Tensor]:
    """[out, in] float weight -> (int8 [out, in], float32 scales [out, in // group])."""
    out, inp = weight.shape
    w = weight.detach().float().reshape(out, inp // group, group)
    scale = w.abs().amax(-1) / 127
    q = torch.round(w / scale.clamp_min(torch.finfo(torch.float32).tiny)[..., None]).clamp(-127, 127).to(torch.int8)
    return q.reshape(out, inp), scale


def dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Inverse of ``quantize`` (to within half a step): float32 [out, in]."""
    out, inp = q.shape
    group = inp // scale.shape[1]
    return (q.float().reshape(out, -1, group) * scale.float()[..., None]).reshape(out, inp)


def quantized_names(model: torch.nn.Module, group: int = GROUP) -> set[str]:
    """State-dict names of the weights stored in 8 bits: every nn.Linear weight whose input width divides into
    groups."""
    return {f"{name}.weight" for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and m.in_features % group == 0}


def save_int8(model: torch.nn.Module, folder: str | Path) -> Path:
    """Write ``model``'s config and its weights (8-bit linears, the rest bfloat16) to ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_config(folder)
    names = quantized_names(model)
    tensors = {}
    for name, t in model.state_dict().items():
        if name in names:
            tensors[name], tensors[name + SCALE_SUFFIX] = quantize(t)
        else:
            tensors[name] = t.detach().to(torch.bfloat16).contiguous()
    path = folder / WEIGHTS_NAME
    save_file(tensors, str(path), metadata={"format": "pt", "mvgen_weights": FORMAT})
    return path


def int8_file(folder: str | Path) -> Path | None:
    """The folder's weights file if it holds 8-bit weights, else None."""
    from safetensors import safe_open

    path = Path(folder) / WEIGHTS_NAME
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            fmt = (f.metadata() or {}).get("mvgen_weights")
    except Exception as e:  # safetensors' own error type for a damaged header: one ValueError for the callers
        raise ValueError(f"{path}: not a readable safetensors file ({' '.join(str(e).split())})") from None
    if fmt is None:
        return None
    if fmt != FORMAT:
        raise ValueError(f"{path}: weights stored as {fmt!r}, this version reads {FORMAT!r}")
    return path


def load_int8_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The float32 state dict of an 8-bit weights file."""
    from safetensors.torch import load_file

    raw = load_file(str(path))
    state = {}
    for name, t in raw.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        scale = raw.get(name + SCALE_SUFFIX)
        if t.dtype == torch.int8:
            if scale is None:
                raise ValueError(f"{path}: {name} is int8 without its {SCALE_SUFFIX}")
            state[name] = dequantize(t, scale)
        else:
            state[name] = t.float()
    return state
