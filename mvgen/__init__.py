"""mvgen: text -> multiview images (PT-DiT) -> Gaussian splat reconstruction.

The Python API (README "Python API"; ``mvgen.api``)::

    from mvgen import load_generator, reconstruct, text_to_3d

Its names are looked up on first use (PEP 562), so ``import mvgen`` imports nothing heavy (no torch).
"""

__version__ = "0.1.0"

# name -> the module that defines it, imported on first access (named as a string, like mvgen/cli.py's table)
_API = {name: "mvgen.api" for name in ("load_generator", "reconstruct", "text_to_3d", "evaluate_generator_views",
                                        "ViewGenerator", "GeneratedViews")}
_API.update(RunResult="mvgen.job", resolve_device="mvgen.device", DeviceError="mvgen.device")
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mvgen' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(list(globals()) + __all__)
