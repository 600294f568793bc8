"""Adam for the CPU fit: one compiled pass per parameter (numba, parallel over elements) with the update of
``torch.optim.Adam`` (no weight decay, no amsgrad), behind the part of the ``torch.optim.Optimizer`` interface
that the fit and gsplat's densification use (``param_groups``, ``state`` with ``exp_avg`` / ``exp_avg_sq`` /
``step``, ``step()``, ``zero_grad()``).

Why: any ``torch.optim`` optimizer imports ``torch._dynamo`` when it is created, 1.6 CPU s in a fresh process —
a fifth of an 8-view generated orbit's whole fit in `mvgen reconstruct`; and torch's Adam runs on one thread.
The values equal ``torch.optim.Adam`` to float32 rounding (tests/reconstruction/test_adam.py). CUDA parameters
use ``torch.optim.Adam`` itself (``make_adam``).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import torch
from numba import njit, prange

from reconstruction.jit import one_thread

CHUNK = 4096  # elements per parallel work item


@njit(cache=True, fastmath={"nnan", "ninf", "nsz", "contract"}, error_model="numpy")
def _adam_span(p, g, m, v, step_size, b2, w1, w2, inv_bc2_sqrt, eps):
    """The update of ``_adam_step`` on whole (sliced) arrays: a plain loop over them is what LLVM vectorises
    (the same loop over an index range inside ``prange`` stayed scalar)."""
    for k in range(p.shape[0]):
        gk = g[k]
        mk = m[k] + w1 * (gk - m[k])  # torch's lerp
        vk = b2 * v[k] + w2 * gk * gk
        m[k] = mk
        v[k] = vk
        p[k] -= step_size * mk / (math.sqrt(vk) * inv_bc2_sqrt + eps)


@njit(cache=True, parallel=True)
def _adam_step(p, g, m, v, step_size, b2, w1, w2, inv_bc2_sqrt, eps):
    """In place, element-wise: m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g²;
    p -= step_size m / (sqrt(v) / sqrt(1 - b2^t) + eps). ``w1``, ``w2`` = 1 - b1, 1 - b2 (rounded from float64,
    as torch's Python scalars are)."""
    n = p.shape[0]
    for chunk in prange((n + CHUNK - 1) // CHUNK):
        lo, hi = chunk * CHUNK, min(n, (chunk + 1) * CHUNK)
        _adam_span(p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], step_size, b2, w1, w2, inv_bc2_sqrt, eps)


class CPUAdam:
    """``torch.optim.Adam([param], lr, betas, eps)`` for float32 CPU parameters, compiled (module docstring)."""

    def __init__(self, params, lr: float, betas: tuple = (0.9, 0.999), eps: float = 1e-8):
        params = list(params)
        if len(params) != 1:
            raise ValueError(f"CPUAdam takes one parameter per optimizer (as the fit uses it), got {len(params)}")
        self.param_groups = [{"params": params, "lr": float(lr), "betas": tuple(betas), "eps": float(eps)}]
        self.state: defaultdict = defaultdict(dict)

    def step(self) -> None:
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.device.type != "cpu" or p.dtype != torch.float32:
                    raise ValueError(f"CPUAdam needs float32 CPU parameters, got {p.dtype} on {p.device}")
                st = self.state[p]
                if "step" not in st:
                    st["step"] = torch.zeros((), device=p.device)
                    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
                    st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
                st["step"] += 1
                t = float(st["step"])
                step_size = group["lr"] / (1 - b1 ** t)
                inv_bc2_sqrt = 1.0 / math.sqrt(1 - b2 ** t)
                with torch.no_grad(), one_thread():  # memory-bound: a second thread only adds CPU time
                    data = p.detach()
                    arrays = [x.contiguous() for x in (data, p.grad.detach(), st["exp_avg"], st["exp_avg_sq"])]
                    np_arrays = [a.view(-1).numpy() for a in arrays]
                    _adam_step(*np_arrays, np.float32(step_size), np.float32(b2), np.float32(1 - b1),
                               np.float32(1 - b2), np.float32(inv_bc2_sqrt), np.float32(group["eps"]))
                    for src, dst in zip(arrays, (data, None, st["exp_avg"], st["exp_avg_sq"])):
                        if dst is not None and src.data_ptr() != dst.data_ptr():
                            dst.copy_(src)  # a non-contiguous tensor was updated through a copy

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()


def make_adam(param: torch.Tensor, lr: float, eps: float):
    """The fit's optimizer for one parameter: ``CPUAdam`` on the CPU, ``torch.optim.Adam`` (fused) elsewhere."""
    if param.device.type == "cpu" and param.dtype == torch.float32:
        return CPUAdam([param], lr=lr, eps=eps)
    return torch.optim.Adam([param], lr=lr, eps=eps, fused=True)
