"""Safe extraction of an uploaded zip of posed views (transforms.json + images). No gradio here.

Refused: anything that is not a zip, encrypted members, absolute paths and '..' components (path traversal),
symlinks, more than ``max_files`` members, more than ``max_bytes`` once extracted (counted while extracting, so a
zip bomb with lying headers stops too), several transforms.json, and a transforms.json whose ``file_path``
entries point outside the extracted folder. Only .json/.png/.jpg/.jpeg/.txt members are written.

Then the views themselves, before anything is decoded (``unpack_views``): the cameras must be valid, at most
``max_views`` of them, and each image's header must show a PNG/JPEG of the stated size with at most
``max_image_pixels`` pixels, all together at most ``max_total_pixels`` (a 3 kB zip can hold 12000² flat PNGs).
Every message names paths relative to the upload, never the server's folders.

Any generator's views (``stage_views``): a zip of images, a grid image or a video with a rig, read by
``mvgen.views_input`` under the same limits (file size, views, pixels per image) and written as a posed-views
folder; a zip with transforms.json keeps the path above.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from mvgen.limits import UPLOAD_FILES, UPLOAD_UNZIPPED_MB, UPLOAD_ZIP_MB

ALLOWED_SUFFIXES = {".json", ".png", ".jpg", ".jpeg", ".txt"}
TRANSFORMS_NAMES = ("transforms.json", "transforms_train.json")
MAX_TRANSFORMS_BYTES = 16 << 20  # a 1000-frame transforms.json is ~1 MB
_CHUNK = 1 << 16


class UploadError(ValueError):
    """The uploaded zip is unsafe or not a posed-views folder; the message says what and where."""


def _member_path(info: zipfile.ZipInfo) -> PurePosixPath | None:
    """The member's relative path, None for entries to skip (folders, macOS metadata), UploadError if unsafe."""
    name = info.filename.replace("\\", "/")
    if info.flag_bits & 0x1:
        raise UploadError(f"upload: '{info.filename}' is encrypted; upload an unencrypted zip")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UploadError(f"upload: absolute path '{info.filename}' in the zip is not allowed")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UploadError(f"upload: path '{info.filename}' in the zip leaves the folder ('..')")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UploadError(f"upload: '{info.filename}' is a symbolic link; links are not allowed")
    if info.is_dir() or not parts or parts[0] == "__MACOSX" or parts[-1].startswith("."):
        return None
    return PurePosixPath(*parts)


def extract_zip(zip_path: str | os.PathLike, dest: str | os.PathLike, max_files: int = UPLOAD_FILES,
                max_bytes: int = int(UPLOAD_UNZIPPED_MB * 2**20)) -> list[Path]:
    """Extract the allowed members of ``zip_path`` into ``dest`` (created, must be empty); returns their paths."""
    dest = Path(dest)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as e:
        raise UploadError(f"upload: not a readable zip file ({e})") from None
    except FileNotFoundError:
        raise UploadError(f"upload: file {zip_path} not found") from None
    written, total = [], 0
    with zf:
        infos = zf.infolist()
        if len(infos) > max_files:
            raise UploadError(f"upload: the zip has {len(infos)} entries; the limit is {max_files}")
        plan = [(i, p) for i in infos if (p := _member_path(i)) is not None and p.suffix.lower() in ALLOWED_SUFFIXES]
        declared = sum(i.file_size for i, _ in plan)
        if declared > max_bytes:
            raise UploadError(f"upload: {declared / 2**20:.0f} MB once extracted; "
                              f"the limit is {max_bytes / 2**20:.0f} MB")
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        for info, rel in plan:
            target = root.joinpath(*rel.parts)
            if root not in target.parents:  # belt and braces: never write outside dest
                raise UploadError(f"upload: path '{info.filename}' leaves the folder")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    while chunk := src.read(_CHUNK):
                        total += len(chunk)
                        if total > max_bytes:
                            raise UploadError(f"upload: more than {max_bytes / 2**20:.0f} MB once extracted")
                        dst.write(chunk)
            except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as e:
                raise UploadError(f"upload: '{info.filename}' is corrupt in the zip ({e})") from None
            except OSError as e:  # a name too long for the file system, a full disk: refused, nothing kept
                raise UploadError(f"upload: '{info.filename}' cannot be extracted ({e.strerror or e})") from None
            written.append(target)
    return written


def find_views_folder(root: str | os.PathLike) -> Path:
    """The one folder under ``root`` holding transforms.json (or transforms_train.json), after checking that
    every frame's ``file_path`` stays inside ``root``."""
    root = Path(root).resolve()
    found = sorted(p for name in TRANSFORMS_NAMES for p in root.rglob(name))
    by_folder = {p.parent for p in found}
    if not found:
        raise UploadError("upload: no transforms.json (or transforms_train.json) in the zip")
    if len(by_folder) > 1:
        folders = ", ".join(str(f.relative_to(root)) or "." for f in sorted(by_folder))
        raise UploadError(f"upload: transforms.json in several folders ({folders}); upload one scene per zip")
    path = next(p for p in found if p.name == "transforms.json") if any(p.name == "transforms.json" for p in found) \
        else found[0]
    if path.stat().st_size > MAX_TRANSFORMS_BYTES:
        raise UploadError(f"upload: {path.name} is larger than {MAX_TRANSFORMS_BYTES >> 20} MB")
    try:
        meta = json.loads(path.read_text())
    except RecursionError:
        raise UploadError(f"upload: {path.name} is not valid JSON (nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError, or an integer of > 4300 digits
        raise UploadError(f"upload: {path.name} is not valid JSON ({e})") from None
    except OSError as e:
        raise UploadError(f"upload: cannot read {path.name} ({e.strerror or e})") from None
    frames = meta.get("frames") if isinstance(meta, dict) else None
    if not isinstance(frames, list) or not frames:
        raise UploadError(f"upload: {path.name} needs a non-empty 'frames' list")
    for i, frame in enumerate(frames):
        fp = frame.get("file_path") if isinstance(frame, dict) else None
        if not isinstance(fp, str) or not fp:
            raise UploadError(f"upload: {path.name} frames[{i}].file_path must be a relative path")
        try:
            target = (path.parent / fp).resolve()
        except (OSError, ValueError) as e:  # a NUL byte in the name ("embedded null byte" would name nothing)
            raise UploadError(f"upload: {path.name} frames[{i}].file_path cannot be used ({e})") from None
        if root not in target.parents:
            raise UploadError(f"upload: {path.name} frames[{i}].file_path '{fp}' points outside the zip")
    return path.parent


def check_views(folder: str | os.PathLike, max_views: int | None = None, max_image_pixels: int | None = None,
                max_total_pixels: int | None = None, root: str | os.PathLike | None = None) -> int:
    """Cameras and image headers of the transforms.json folder ``folder``, nothing decoded (see the module
    docstring); returns the number of views. UploadError names files relative to ``root`` (default: ``folder``)."""
    from mvgen.cameras import CameraError, check_images, find_transforms, read_transforms

    folder = Path(folder)
    try:
        cams, files = read_transforms(find_transforms(folder))
        if max_views is not None and len(cams) > max_views:
            raise UploadError(f"upload: transforms.json has {len(cams)} views; the limit is {max_views}")
        check_images(files, cams.width, cams.height, max_image_pixels, max_total_pixels)
    except CameraError as e:
        raise UploadError(relative_message(f"upload: {e}", root or folder)) from None
    return len(cams)


def relative_message(message: str, *roots: str | os.PathLike) -> str:
    """``message`` with every ``root/`` prefix removed (as given and resolved): users see their own paths only."""
    for root in roots:
        for r in {str(Path(root)), str(Path(root).resolve())}:
            if len(r) > 1:  # never strip "/" itself
                message = message.replace(r.rstrip(os.sep) + os.sep, "").replace(r, ".")
    return message


def unpack_views(zip_path: str | os.PathLike, dest: str | os.PathLike, max_files: int = UPLOAD_FILES,
                 max_bytes: int = int(UPLOAD_UNZIPPED_MB * 2**20), max_zip_bytes: int = int(UPLOAD_ZIP_MB * 2**20),
                 max_views: int | None = None, max_image_pixels: int | None = None,
                 max_total_pixels: int | None = None) -> Path:
    """Extract a posed-views zip into ``dest``, check its views (``check_views``) and return the folder with its
    transforms.json.

    ``dest`` is removed again when the zip is refused, so nothing of a bad upload stays on disk.
    """
    try:
        size = Path(zip_path).stat().st_size
    except OSError as e:
        raise UploadError(f"upload: cannot read the zip {Path(zip_path).name} ({e.strerror or e})") from None
    if size > max_zip_bytes:
        raise UploadError(f"upload: the zip is {size / 2**20:.0f} MB; the limit is {max_zip_bytes / 2**20:.0f} MB")
    try:
        extract_zip(zip_path, dest, max_files, max_bytes)
        folder = find_views_folder(dest)
        check_views(folder, max_views, max_image_pixels, max_total_pixels, root=dest)
        return folder
    except UploadError:
        shutil.rmtree(dest, ignore_errors=True)
        raise


# --------------------------------------------------------------------- any generator's views (grid, video, images)

VIEW_FILE_SUFFIXES = (".zip", ".png", ".jpg", ".jpeg", ".mp4", ".webm", ".mov", ".gif")


def zip_has_transforms(zip_path: str | os.PathLike) -> bool | None:
    """Whether the zip names a transforms.json (or transforms_train.json) anywhere; None for an unreadable zip
    (``unpack_views`` then says why)."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            return any(PurePosixPath(n.replace("\\", "/")).name in TRANSFORMS_NAMES for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return None


def stage_views(upload: str | os.PathLike, dest: str | os.PathLike, rig: str | None, grid=None, frame_step: int = 1,
                tolerance: float = 0.1, max_files: int = UPLOAD_FILES, max_bytes: int = int(UPLOAD_UNZIPPED_MB * 2**20),
                max_zip_bytes: int = int(UPLOAD_ZIP_MB * 2**20), max_views: int | None = None,
                max_image_pixels: int | None = None, max_total_pixels: int | None = None,
                max_side: int | None = None) -> tuple[Path, dict | None]:
    """An upload of any generator's views as a posed-views folder in ``dest``: (the folder, the mask report).

    ``rig`` None: a zip of posed views as today (``unpack_views``). Else the upload is a zip of images, a grid
    image (``grid`` "RxC", or the preset's) or a video (every ``frame_step``-th frame), read by
    ``mvgen.views_input`` with this upload's limits (its size, the views, the pixels of each image, shrunk to
    ``max_side``) and written with the rig's cameras (``mvgen.evaluate_views.posed_folder``). ``dest`` is removed
    again when the upload is refused. Messages name the field and the upload's own file names only.
    """
    from mvgen.evaluate_views import posed_folder

    upload, dest = Path(upload), Path(dest)
    suffix = upload.suffix.lower()
    if suffix not in VIEW_FILE_SUFFIXES:
        raise UploadError(f"upload: {upload.name} is not a zip, image or video ({', '.join(VIEW_FILE_SUFFIXES)})")
    if rig is None:
        if suffix != ".zip" or zip_has_transforms(upload) is False:
            raise UploadError(f"rig: {upload.name} has no transforms.json; choose a preset or type an orbit "
                              f"(e.g. orbit:views=8,elev=20)")
        limits = dict(max_files=max_files, max_bytes=max_bytes, max_zip_bytes=max_zip_bytes, max_views=max_views,
                      max_image_pixels=max_image_pixels, max_total_pixels=max_total_pixels)
        return unpack_views(upload, dest, **limits), None
    if suffix == ".zip" and zip_has_transforms(upload):
        raise UploadError(f"rig: {upload.name} holds a transforms.json; choose 'transforms.json' as the rig")
    try:
        size = upload.stat().st_size
    except OSError as e:
        raise UploadError(f"upload: cannot read {upload.name} ({e.strerror or e})") from None
    if size > max_zip_bytes:
        raise UploadError(f"upload: {upload.name} is {size / 2**20:.0f} MB; the limit is "
                          f"{max_zip_bytes / 2**20:.0f} MB")
    limits = {k: v for k, v in dict(max_views=max_views, max_side=max_side, max_pixels=max_image_pixels,
                                     max_zip_files=max_files, max_zip_bytes=max_bytes).items() if v is not None}
    try:
        views = posed_folder(upload, dest / "views", rig, grid, frame_step, "auto", tolerance, **limits)
    except ValueError as e:  # ViewsError, RigError, CameraError: the field is named
        shutil.rmtree(dest, ignore_errors=True)
        raise UploadError(relative_message(str(e), upload.parent, dest)) from None
    if max_total_pixels is not None and views.images[0, 0].numel() * len(views.images) > max_total_pixels:
        shutil.rmtree(dest, ignore_errors=True)
        raise UploadError(f"upload: the views add up to more than {max_total_pixels / 1e6:.1f} MP")
    return dest / "views", views.mask
