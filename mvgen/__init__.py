"""mvgen: text -> multiview images (PT-DiT) -> Gaussian splat reconstruction."""

__version__ = "0.1.0"
