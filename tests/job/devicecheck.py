"""Checks that work runs on the device it was asked for, on a machine with only a CPU (issue 18).

A second real device cannot be faked here, so two checks stand in for it:

- ``ImplicitDeviceTrap`` (a ``TorchFunctionMode``): every tensor factory (``torch.zeros``, ``torch.tensor``,
  ``torch.arange``, ...) that mvgen's or reconstruction's own code calls without ``device=`` is recorded, with its
  file and line, and created on ``meta`` instead of the default device. Asked for ``cpu``, such a tensor can only
  be wrong (on a GPU it would have been a CPU constant next to CUDA tensors), and on ``meta`` it cannot pass
  unnoticed: it fails at the first arithmetic with a real tensor. Third-party code keeps the default device.
- ``DeviceRecorder`` (a ``TorchDispatchMode``): the device of every tensor every aten op returns.

Run under both with ``device="cpu"``: no trapped call, and every op output on the CPU.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

REPO = Path(__file__).resolve().parents[2]
PROJECT = tuple(str(REPO / pkg) + "/" for pkg in ("mvgen", "reconstruction"))
FACTORIES = {torch.tensor, torch.as_tensor, torch.asarray, torch.zeros, torch.ones, torch.empty, torch.full,
             torch.arange, torch.linspace, torch.logspace, torch.eye, torch.rand, torch.randn, torch.randint,
             torch.randperm, torch.scalar_tensor}


def _caller() -> str | None:
    """"file:line (function)" of the first frame outside torch and this file, when it is project code."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if "/torch/" not in name and name != __file__:
            if name.startswith(PROJECT):
                return f"{Path(name).relative_to(REPO)}:{frame.f_lineno} ({frame.f_code.co_name})"
            return None
        frame = frame.f_back
    return None


class ImplicitDeviceTrap(TorchFunctionMode):
    """Project-code tensor factories without ``device=`` go to ``meta`` and are listed in ``found``."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        converts = func in (torch.as_tensor, torch.asarray) and args and isinstance(args[0], torch.Tensor)
        if func in FACTORIES and kwargs.get("device") is None and not converts:
            where = _caller()
            if where is not None:
                self.found.append(f"{where}: torch.{func.__name__} without device=")
                kwargs["device"] = "meta"
        return func(*args, **kwargs)


class DeviceRecorder(TorchDispatchMode):
    """Counts the device types of the tensors every aten op returns (``devices``), with one example op each."""

    def __init__(self):
        super().__init__()
        self.devices: collections.Counter = collections.Counter()
        self.example: dict = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.devices[t.device.type] += 1
                self.example.setdefault(t.device.type, str(func))
        return out


def run_checked(work, device: str = "cpu"):
    """``work()`` under both checks; returns its result. AssertionError listing every implicit-device factory of
    project code and every op output not on ``device`` (also when ``work`` failed because of one)."""
    trap, recorder = ImplicitDeviceTrap(), DeviceRecorder()
    error = None
    with trap, recorder:
        try:
            result = work()
        except Exception as e:  # a trapped meta tensor usually fails here; report where it came from
            error = e
    wrong = {d: n for d, n in recorder.devices.items() if d != device}
    if trap.found or wrong or error is not None:
        found = "\n  ".join(dict.fromkeys(trap.found))
        raise AssertionError(f"asked for {device}: implicit-device tensors in project code:\n  {found or '-'}\n"
                             f"op outputs elsewhere: {wrong} (e.g. {[recorder.example[d] for d in wrong]}); "
                             f"error: {error!r}") from error
    assert recorder.devices[device] > 0, "nothing ran under the recorder"
    return result
