"""Hostile model folders for the catalogue: missing, a file, no model_index.json, model_index.json not JSON,
pickled weights only (a pickle that would create a marker file if anything unpickled it), corrupt / truncated /
lying safetensors. Built from the tests' tiny random pipeline."""

from __future__ import annotations

import pickle
import shutil
import struct
from pathlib import Path

WEIGHTS = "diffusion_pytorch_model"


class _OpensAFile:
    """Unpickling this calls ``open(marker, "w")``: the marker's existence would prove a pickle was loaded."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _replace_weights(folder: Path, sub: str, data: bytes) -> None:
    (folder / sub / f"{WEIGHTS}.safetensors").write_bytes(data)


# name -> (builder(tiny_model, dest, marker) -> folder to pass, the message every entry point shows)
def _missing(tiny, dest, marker):
    return dest / "no-such-model"


def _a_file(tiny, dest, marker):
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "model.safetensors").write_bytes(b"not a folder")
    return dest / "model.safetensors"


def _empty_folder(tiny, dest, marker):
    (dest / "empty").mkdir(parents=True)
    return dest / "empty"


def _index_not_json(tiny, dest, marker):
    shutil.copytree(tiny, dest / "m")
    (dest / "m" / "model_index.json").write_text("{ not json")
    return dest / "m"


def _pickles_only(tiny, dest, marker):
    shutil.copytree(tiny, dest / "m")
    payload = pickle.dumps({"weight": _OpensAFile(marker)})
    for sub in ("transformer", "vae"):
        (dest / "m" / sub / f"{WEIGHTS}.safetensors").unlink()
        (dest / "m" / sub / f"{WEIGHTS}.bin").write_bytes(payload)
    return dest / "m"


def _garbage_safetensors(tiny, dest, marker):
    shutil.copytree(tiny, dest / "m")
    _replace_weights(dest / "m", "transformer", b"\x00\x01garbage" * 50)
    return dest / "m"


def _truncated_safetensors(tiny, dest, marker):
    shutil.copytree(tiny, dest / "m")
    w = dest / "m" / "transformer" / f"{WEIGHTS}.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    return dest / "m"


def _lying_header_safetensors(tiny, dest, marker):
    """The 8-byte header length says 2**60 bytes of JSON follow."""
    shutil.copytree(tiny, dest / "m")
    _replace_weights(dest / "m", "vae", struct.pack("<Q", 2**60) + b"{}")
    return dest / "m"


def _weights_of_another_shape(tiny, dest, marker):
    """The VAE's weights under the transformer's name: every tensor name and shape is wrong."""
    shutil.copytree(tiny, dest / "m")
    shutil.copy(tiny / "vae" / f"{WEIGHTS}.safetensors", dest / "m" / "transformer" / f"{WEIGHTS}.safetensors")
    return dest / "m"


def _config_not_json(tiny, dest, marker):
    shutil.copytree(tiny, dest / "m")
    (dest / "m" / "transformer" / "config.json").write_text("][")
    return dest / "m"


MODEL_FOLDERS = {
    "missing": (_missing, "no-such-model"),
    "a_file": (_a_file, "model.safetensors"),
    "empty_folder": (_empty_folder, "empty"),
    "model_index_not_json": (_index_not_json, "cannot load"),
    "pickled_weights_only": (_pickles_only, "pickled weights are refused"),
    "garbage_safetensors": (_garbage_safetensors, "cannot load"),
    "truncated_safetensors": (_truncated_safetensors, "cannot load"),
    "lying_header_safetensors": (_lying_header_safetensors, "cannot load"),
    "weights_of_another_shape": (_weights_of_another_shape, "cannot load"),
    "config_not_json": (_config_not_json, "cannot load"),
}


def build_model_folder(name: str, tiny: Path, dest: Path) -> tuple[Path, str, Path]:
    """(the hostile folder, the expected message part, the marker an unpickling would create)."""
    builder, match = MODEL_FOLDERS[name]
    marker = dest / "UNPICKLED"
    return builder(tiny, dest, marker), match, marker
