"""Hostile zips for the catalogue ("Evaluate your own views"): not zips, traversal, absolute and drive paths,
links, encryption, too many members, nested zips, two scenes, lying and corrupt headers, budgets. Each builder
``(posed_views, dest) -> the zip's path``."""

from __future__ import annotations

import io
import random
import stat
import struct
import zipfile
from pathlib import Path

from tests.reliability.hostile import image_bytes


def _scene_members(views: Path, prefix: str = "mug/") -> list[tuple[str, bytes]]:
    return [(prefix + p.relative_to(views).as_posix(), p.read_bytes()) for p in sorted(views.rglob("*")) if p.is_file()]


def _others(views: Path, name: str) -> list[tuple[str, bytes]]:
    """The scene's members except ``mug/NAME``."""
    return [m for m in _scene_members(views) if m[0] != "mug/" + name]


def _write(dest: Path, members, compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(dest, "w", compression) as z:
        for m in members:
            if isinstance(m, zipfile.ZipInfo):
                z.writestr(m, b"x")
            else:
                z.writestr(*m)
    return dest


def _scene_plus(extra):
    return lambda v, d: _write(d, _scene_members(v) + extra)


def _patch_first_member(dest: Path, local_off: int, central_off: int, value: bytes) -> Path:
    """Overwrite a field of the first member in its local header and its central-directory entry."""
    data = bytearray(dest.read_bytes())
    data[local_off:local_off + len(value)] = value
    assert data[-22:-18] == b"PK\x05\x06"  # the end-of-central-directory record (no comment)
    c = struct.unpack("<I", data[-6:-2])[0]  # where the central directory starts
    data[c + central_off:c + central_off + len(value)] = value
    dest.write_bytes(bytes(data))
    return dest


def _link_member(v, d):
    info = zipfile.ZipInfo("mug/views/000.png")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return _write(d, [info] + _others(v, "views/000.png"))


def _encrypted_member(v, d):
    d = _write(d, _scene_members(v), zipfile.ZIP_STORED)
    return _patch_first_member(d, 6, 8, struct.pack("<H", 0x1))


def _lying_size(v, d):
    """transforms.json's header says 10 bytes; 3 MB of JSON follow (compressed to a few kB)."""
    d = _write(d, [("mug/transforms.json", b" " * (3 << 20) + b"{}")] + _others(v, "transforms.json"))
    return _patch_first_member(d, 22, 24, struct.pack("<I", 10))


def _unknown_compression(v, d):
    d = _write(d, [("mug/transforms.json", (v / "transforms.json").read_bytes())] + _others(v, "transforms.json"))
    return _patch_first_member(d, 8, 10, struct.pack("<H", 99))


def _corrupt_member(v, d):
    d = _write(d, [("mug/transforms.json", (v / "transforms.json").read_bytes())] + _others(v, "transforms.json"))
    data = bytearray(d.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[26:30])
    start = 30 + name_len + extra_len
    for i in range(start + 2, start + 12):
        data[i] ^= 0xFF
    d.write_bytes(bytes(data))
    return d


def _nested_zip(v, d):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        for name, data in _scene_members(v):
            z.writestr(name, data)
    return _write(d, [("mug.zip", inner.getvalue()), ("readme.txt", b"the scene is in mug.zip")])


def _truncated(v, d):
    d = _write(d, _scene_members(v))
    d.write_bytes(d.read_bytes()[: d.stat().st_size // 2])
    return d


def _raw(data: bytes):
    def build(v, d):
        d.write_bytes(data)
        return d
    return build


def _huge_transforms(v, d):
    return _write(d, [("mug/transforms.json", b" " * (17 << 20) + (v / "transforms.json").read_bytes())]
                  + _others(v, "transforms.json"))


# name -> (builder, the message's part); default limits of configs/app.yaml (1000 members, 500 MB, 64 views)
ZIPS = {
    "not_a_zip_png": (_raw(image_bytes((8, 8))), "upload: not a readable zip file"),
    "empty_file": (_raw(b""), "upload: not a readable zip file"),
    "gzip_named_zip": (_raw(b"\x1f\x8b\x08\x00" + b"\0" * 40), "upload: not a readable zip file"),
    "truncated_zip": (_truncated, "upload: not a readable zip file"),
    "traversal_dotdot": (_scene_plus([("../evil.json", b"{}")]), "path '../evil.json' in the zip leaves the folder"),
    "traversal_nested": (_scene_plus([("mug/../../evil.png", b"x")]), "leaves the folder ('..')"),
    "traversal_backslash": (_scene_plus([("..\\..\\evil.png", b"x")]), "leaves the folder ('..')"),
    "absolute_path": (_scene_plus([("/etc/evil.json", b"{}")]), "absolute path '/etc/evil.json'"),
    "windows_drive_path": (_scene_plus([("C:\\evil.json", b"{}")]), "absolute path 'C:\\evil.json'"),
    "symlink_member": (_link_member, "'mug/views/000.png' is a symbolic link"),
    "encrypted_member": (_encrypted_member, "is encrypted; upload an unencrypted zip"),
    "too_many_members": (_scene_plus([(f"pad/{i}.txt", b"") for i in range(1000)]), "entries; the limit is 1000"),
    "nested_zip_only": (_nested_zip, "no transforms.json (or transforms_train.json) in the zip"),
    "no_transforms": (lambda v, d: _write(d, [m for m in _scene_members(v) if "transforms" not in m[0]]),
                      "no transforms.json"),
    "only_macos_metadata": (lambda v, d: _write(d, [("__MACOSX/" + n, b) for n, b in _scene_members(v)]
                                                + [("mug/.transforms.json", b"{}")]), "no transforms.json"),
    "only_disallowed_suffixes": (lambda v, d: _write(d, [(n + ".exe", b) for n, b in _scene_members(v)]),
                                 "no transforms.json"),
    "two_scenes": (lambda v, d: _write(d, _scene_members(v, "a/") + _scene_members(v, "b/")),
                   "transforms.json in several folders (a, b)"),
    "transforms_over_16_mb": (_huge_transforms, "transforms.json is larger than 16 MB"),
    "lying_uncompressed_size": (_lying_size, "is corrupt in the zip"),
    "unknown_compression": (_unknown_compression, "is corrupt in the zip"),
    "corrupt_member_data": (_corrupt_member, "is corrupt in the zip"),
    "member_name_300_chars": (_scene_plus([("mug/" + "a" * 300 + ".png", b"x")]),
                              "cannot be extracted (File name too long)"),
    "transforms_train_not_json": (lambda v, d: _write(d, [m for m in _scene_members(v) if "transforms" not in m[0]]
                                                      + [("mug/transforms_train.json", b"{")]),
                                  "transforms_train.json is not valid JSON"),
}

# name -> (builder, message) against the tight limits of test_hostile_app.py's ``tight`` handlers
TIGHT_ZIPS = {
    "over_unzipped_budget": (_scene_plus([("mug/notes.txt", b"\0" * (2 << 20))]),
                             "MB once extracted; the limit is 1 MB"),
    "over_zip_size": (_scene_plus([("mug/noise.txt", random.Random(0).randbytes(1_600_000))]),
                      "upload: the zip is 2 MB; the limit is 1 MB"),
    "over_view_count": (lambda v, d: _write(d, _scene_members(v)), "transforms.json has 4 views; the limit is 3"),
    "over_member_count": (_scene_plus([(f"mug/n{i}.txt", b"") for i in range(60)]), "entries; the limit is 50"),
}
