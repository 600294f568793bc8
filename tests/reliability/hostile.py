"""Helpers of the hostile-input catalogue (test_hostile_*.py): nothing lost (every file that was there before an
input is refused is still there, byte for byte), a sentinel next to the output, the one-line CLI answer."""

from __future__ import annotations

import hashlib
import io
import os
import re
import struct
import zlib
from pathlib import Path

from PIL import Image

from mvgen.cli import main


def snapshot(root: Path) -> dict:
    """{relative path: sha256} of every file under ``root`` (links not followed)."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = Path(dirpath, n)
            if p.is_file() and not p.is_symlink():
                out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def with_sentinel(root: Path) -> dict:
    """A sentinel file in ``root`` (next to the outputs the cases name), then the snapshot of ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "sentinel.txt").write_text("the user's own file; it must survive every refused input\n")
    return snapshot(root)


def assert_nothing_lost(root: Path, before: dict, absent: tuple = ()) -> None:
    """Every file of ``before`` is still under ``root`` with the same bytes; no path of ``absent`` was created."""
    after = snapshot(root)
    lost = [p for p, digest in before.items() if after.get(p) != digest]
    assert not lost, f"files lost or changed: {lost}"
    assert "sentinel.txt" in before
    for p in absent:
        assert not Path(p).exists(), f"{p} was written for a refused input"


def run_cli(argv: list, capsys) -> str:
    """``mvgen argv`` in-process: exit code 2, exactly one stderr line starting ``mvgen COMMAND: error:``, no
    traceback (argparse's own errors included). Returns the line."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        code = e.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err and len(lines) == 1, err
    # "mvgen run: error: ...", argparse's "mvgen bench load: error: ..."; never a bare "error"
    assert re.match(rf"mvgen {re.escape(str(argv[0]))}( [\w-]+)?: error: \S", lines[0]), lines[0]
    return lines[0]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header says ``width`` x ``height`` RGBA and whose pixel data is a few zero bytes: it opens
    (the size is readable) but cannot decode."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) \
        + png_chunk(b"IEND", b"")


def image_bytes(size: tuple[int, int], fmt: str = "PNG", mode: str = "RGBA") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 128).save(buf, format=fmt)
    return buf.getvalue()


def corrupt_middle(data: bytes) -> bytes:
    """``data`` with its middle third overwritten (the header stays readable; decoding fails)."""
    n = len(data)
    return data[:n // 3] + bytes(255 - b for b in data[n // 3:2 * n // 3]) + data[2 * n // 3:]
