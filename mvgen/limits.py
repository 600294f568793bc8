"""The supported ranges, defined once: every CLI flag, app slider, job setting and validation reads them here.

The app narrows some of them for its sliders (``views_min`` / ``views_max``, ``steps_max``, ``recon_steps_max``
in configs/app.yaml, checked to stay inside these); `mvgen run`, `mvgen generate` and the Python API take the
full ranges. Upload caps are the defaults of configs/app.yaml's ``max_upload_*`` fields and of ``ui.uploads``.

Leaf module (design.md §2): it imports only ``mvgen.checks``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mvgen.checks import check_int, check_number


@dataclass(frozen=True)
class Range:
    """An inclusive range [low, high]; ``check_int`` / ``check_number`` raise ValueError naming the field."""

    low: float
    high: float

    def check_int(self, name: str, value) -> int:
        """``value`` as an int in the range (ints and integral floats: JSON and sliders send 8.0)."""
        return check_int(name, value, self.low, self.high)

    def check_number(self, name: str, value, unit: str = "a number") -> float:
        """``value`` as a finite float in the range."""
        return check_number(name, value, self.low, self.high, unit)


# ------------------------------------------------------------------------------------------ generation
VIEWS = Range(1, 32)  # views of one sample: attention cost grows with V² and the model saw 4-8 views per sample
RUN_VIEWS = Range(2, 32)  # views of a text-to-3D run: the consistency score needs one fitted and one held-out view
ELEVATION = Range(-60.0, 60.0)  # degrees a run accepts: the shipped model saw 0..40; beyond ±60 it shows no object
RINGS = Range(1, 4)  # elevation rings of a run (each inside ELEVATION; mvgen.rigs.ring_elevations takes 1..4)
CAMERA_ELEVATION = Range(-89.0, 89.0)  # any orbit rig (cameras, the dataset): look_at has no "up" at ±90
STEPS = Range(1, 1000)  # denoising steps: the scheduler has 1000 training timesteps
GUIDANCE = Range(0.0, 20.0)  # classifier-free guidance: past ~10 the tiny model's colours saturate
DEFAULT_GUIDANCE = 2.0  # what every sampler uses unless told: on 24 held-out captions (session 10, shipped model)
#                        guidance 1.5 / 2 / 3 / 5 gave 21.05 / 20.92 / 20.48 / 19.74 dB, LPIPS 0.074 / 0.072 / 0.073 /
#                        0.080, the same retrieval (96%) and attribute accuracy at 2 and 3 (README "Default model")
PART_GUIDANCE = Range(0.0, 20.0)  # part-colour guidance (mvgen.generate.part_contrast): 0 = off
DEFAULT_PART_GUIDANCE = 0.0  # off: on the shipped model (session 14, fp32) scales 1, 2 and 4 each turned one more
#                             of 24 held-out part colours right (75 -> 79%) and one main colour wrong (100 -> 96%);
#                             typed prompts lost main colours too (README "Part-colour guidance"): no net gain
SEED = Range(0, 2**32 - 1)  # a run's seed (manifests, the app's 🎲): 32 bits, as numpy's and most tools' seeds
PROMPT_CHARS = 300  # the text encoder also refuses > 64 tokens; this catches pasted essays before tokenising

# ------------------------------------------------------------------------------------------ reconstruction
FIT_STEPS = Range(1, 20000)  # fitting steps of one run: 20000 is ~30 min on the 2-core CPU at 128² (the app: 5000)
MIN_LPIPS_SIDE = 32  # px: AlexNet's strided layers (LPIPS) fail below 24 px; 32 is safe for both implementations
MAX_IMAGE_SIDE = 1 << 16  # w / h in transforms.json (PNG allows 2**31; no view of ours comes near this)
MAX_IMAGE_PIXELS = 1 << 26  # 67 MP (8192²) per view: larger views are refused from their header, before decoding

# ------------------------------------------------------------------------------------------ dataset
DATASET_VIEWS = Range(1, 64)  # orbit views per procedural object (`mvgen dataset --views`)

# ------------------------------------------------------------------------------------------ uploads (the app)
UPLOAD_ZIP_MB = 200.0  # largest zip accepted
UPLOAD_UNZIPPED_MB = 500.0  # largest total size of its extracted files (counted while extracting: zip bombs)
UPLOAD_FILES = 1000  # most members in the zip
UPLOAD_VIEWS = 64  # most views reconstructed from one upload (fitting time grows with the views)
UPLOAD_IMAGE_MEGAPIXELS = 16.0  # per view, from its header before decoding
UPLOAD_MEGAPIXELS = 64.0  # all views of one zip together (a 3 kB zip can hold huge flat PNGs)
UPLOAD_IMAGE_SIDE = 256  # views larger than this are downscaled (area filter) before fitting
