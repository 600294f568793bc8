"""Checks of plain values shared by the CLIs, the app and the Python API; each raises ValueError naming the field."""

from __future__ import annotations

import math

MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a 64-bit integer; larger ones fail deep inside torch


def check_int(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int: ints and integral floats (JSON and sliders send 8.0), within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (isinstance(value, float) and (not math.isfinite(value) or value != int(value))):
        raise ValueError(f"{name} must be a whole number, got {short_repr(value)}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        want = f"at least {low}" if high is None else f"at most {high}" if low is None else f"in {low}..{high}"
        raise ValueError(f"{name} must be {want}, got {short_repr(value)}")
    return value


def check_number(name: str, value, low: float, high: float, unit: str = "a number") -> float:
    """A finite number in [low, high] (a huge int is compared exactly, never converted); ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or (isinstance(value, float) and not math.isfinite(value)) or not low <= value <= high:
        raise ValueError(f"{name} must be {unit} in [{low:g}, {high:g}], got {short_repr(value)}")
    return float(value)


def check_seed(seed, name: str = "seed") -> int:
    """A random seed torch accepts: a whole number in 0..2**63-1."""
    return check_int(name, seed, 0, MAX_SEED)


def check_output_size(value, sizes: tuple[int, ...] | None = None) -> int | None:
    """The views' size in px a generation asks for: None (also "" and "native": the model's native size) or a whole
    number ("256" from a flag or the app's dropdown, 256.0 from JSON); with ``sizes`` (a model's output sizes, native
    first: ``PTDiTMultiViewPipeline.output_sizes``, ``mvgen.job.model_output_sizes``) one of them. ValueError naming
    ``output_size``, and naming the missing 2x decoder when twice the native size is asked of a model without it."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "native")):
        return None
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError(f"output_size must be a whole number of pixels (e.g. 256), got {short_repr(value)}") \
                from None
    size = check_int("output_size", value, 1)
    if sizes and size not in sizes:
        if len(sizes) == 1 and size == 2 * sizes[0]:
            raise ValueError(f"output_size {size} needs a 2x decoder (decoder_2x), which this model does not have: it "
                             f"makes {sizes[0]} px views only (train one with configs/vae_decoder_256.yaml, add it "
                             f"with `mvgen export-model --decoder-2x`)")
        raise ValueError(f"output_size must be {' or '.join(map(str, sizes))} for this model, got {size}")
    return size


def short_repr(value, limit: int = 60) -> str:
    """repr of a user value cut to ``limit`` characters (a 5000-digit number stays one readable line). Containers
    are written only to a few levels and items (``reprlib``): a YAML alias bomb (lists of lists of the same list,
    9**9 items) is never expanded."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        import reprlib

        r = reprlib.Repr()
        r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset, r.maxstring, r.maxother = 3, 4, 4, 4, 4, 20, 20
        text = r.repr(value)
    else:
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
