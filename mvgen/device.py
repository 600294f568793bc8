"""Where work runs: one device story for every entry point (design.md §2).

``--device auto|cpu|cuda|cuda:K`` (the CLI), ``device=`` (the Python API and the job), ``device:`` in
configs/app.yaml and ``device:`` in a training config all go through ``check_device`` (the text, no torch
needed) and ``resolve_device`` (a ``torch.device``). ``auto`` picks the first CUDA GPU when torch sees one, else
the CPU. Every stage then runs where its tensors are: the pipeline is moved there once, the views and cameras are
moved there before fitting, and nothing below creates a tensor on another device (exports write from CPU copies).

A leaf of mvgen (tests/test_layers.py): it imports nothing of the project, so ``reconstruction`` may use it.
"""

from __future__ import annotations

import re

DEVICES = "auto | cpu | cuda | cuda:K"
_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?|meta")  # meta: shapes only, for tests of the device plumbing


class DeviceError(ValueError):
    """The requested device is malformed or not available here; the message names ``device``."""


def check_device(device, field: str = "device") -> str:
    """``device`` as text ("auto", "cpu", "cuda", "cuda:K"; a ``torch.device`` is accepted too), or
    ``DeviceError`` naming ``field``. Availability is checked by ``resolve_device``."""
    text = str(device).strip().lower() if device is not None else "auto"
    if not _PATTERN.fullmatch(text):
        raise DeviceError(f"{field} must be one of {DEVICES}, got {device!r}")
    return text


def resolve_device(device=None, field: str = "--device"):
    """The ``torch.device`` to run on: ``auto`` (or None) = ``cuda`` when torch sees a GPU, else ``cpu``.

    A CUDA device that is not there is a ``DeviceError`` that names ``field`` (the CLI flag, or the config
    field) and says what is available, never a traceback from deep inside a stage.
    """
    import torch

    text = check_device(device, field)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"{field} {text}: no CUDA GPU is available here (torch {torch.__version__}, "
                              f"torch.cuda.is_available() is False); use {field} cpu or {field} auto")
        index = int(text.split(":")[1]) if ":" in text else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise DeviceError(f"{field} {text}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                              f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
        return torch.device("cuda", index)
    return torch.device(text)


def describe(device) -> str:
    """One line for logs and reports: "cpu" or "cuda:0 (NVIDIA H100 80GB HBM3)"."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return device.type
