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


def cpu_has_fast_bf16() -> bool:
    """True when this CPU multiplies bf16 natively (x86: AVX512-BF16 or AMX; other CPUs: oneDNN's bf16 check).

    Where it does, bf16 autocast is the faster way to run the transformer on the CPU (README: ~380 vs ~96 GFLOP/s
    on an AVX512-BF16 EPYC). Where it does not, bf16 is emulated and is far slower than fp32 (measured on an AVX2
    EPYC: 1024² matmul 0.57 vs 51 GFLOP/s; 8 views × 20 steps 7.0 s in fp32 against ~70 s under autocast), so
    every "auto" precision choice on the CPU goes through here.
    """
    import platform

    import torch

    try:
        if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
            return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without these probes: assume emulation (safe, fp32)
        return False


def training_precision(requested: str, device_type: str) -> tuple[str, str | None]:
    """(the mixed precision to train with, a one-line note or None) for a config's ``mixed_precision``.

    ``bf16`` on a CPU without native bf16 (``cpu_has_fast_bf16``) trains in fp32 ("no") instead, with a note that
    says so: the same optimisation, several times faster there. Other requests pass unchanged."""
    if requested == "bf16" and device_type == "cpu" and not cpu_has_fast_bf16():
        return "no", ("mixed_precision: bf16 asked, but this CPU has no native bf16 (AVX512-BF16/AMX), where bf16 "
                      "runs many times slower than fp32: training in fp32")
    return requested, None


def check_compiler(device_type: str, field: str = "compile") -> None:
    """Raise DeviceError naming ``field`` when ``torch.compile`` cannot build kernels for ``device_type`` here: on
    the CPU inductor writes C++ and needs a compiler (``$CXX``, g++, c++ or clang++ on PATH); on CUDA it needs
    triton."""
    import os
    import shutil

    if device_type == "cpu":
        candidates = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
        if not any(c and shutil.which(c) for c in candidates):
            raise DeviceError(f"{field}: torch.compile on the CPU needs a C++ compiler (g++, c++ or clang++ on PATH, "
                              f"or $CXX), and none was found; install one or set {field}: false")
    elif device_type == "cuda":
        import importlib.util

        if importlib.util.find_spec("triton") is None:
            raise DeviceError(f"{field}: torch.compile on CUDA needs triton, which is not installed; install it or "
                              f"set {field}: false")
