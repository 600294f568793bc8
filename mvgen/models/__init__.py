"""PT-DiT multiview denoiser (proxy-token attention), its full / spatial-temporal attention baselines and its
efficient-attention peers (DAM mediators, PiT pseudo-shifted windows).

``PTDiTTransformer3DModel`` and ``ATTENTION_TYPES`` are imported lazily so that the CLI (which imports
``mvgen.models.bench``) does not load torch and diffusers just to print ``--help``.
"""

from .presets import PRESETS, window_for_grid

__all__ = ["ATTENTION_TYPES", "PRESETS", "PTDiTTransformer3DModel", "window_for_grid"]


def __getattr__(name):
    if name in ("PTDiTTransformer3DModel", "ATTENTION_TYPES"):
        from . import ptdit

        return getattr(ptdit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
