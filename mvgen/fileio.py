"""Writing outputs without losing anything: the one implementation of temp-then-rename files and output folders.

Files are written under a temporary name next to their target and renamed when complete, so a reader never sees
a half-written file. An output folder is built as a temporary sibling and renamed over its target only when the
command succeeded; a marker file (``.mvgen-output.json``) written into it at that moment names the command and
lists the files it wrote. An existing folder is replaced only when it holds that marker for the same command and
no file beyond the listed ones (or ``overwrite`` is asked for), so a folder holding anything we did not write is
never deleted.

Leaf module: standard library only, nothing of the project.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable, Iterator

MARKER = ".mvgen-output.json"
MARKER_VERSION = 1

_counter = itertools.count(1)  # temp folder names unique within a process (the app runs requests in threads)


class OutputError(ValueError):
    """An output path that cannot be written (a file where a folder is wanted, a parent that is not writable)."""


class OutputExistsError(OutputError):
    """An existing folder that is not an earlier output of the same command: it is never replaced silently."""


# ------------------------------------------------------------------------------------------------------ files

def temp_sibling(path: str | os.PathLike) -> Path:
    """A temporary name next to ``path`` keeping its suffix (writers that pick the format from it still work)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same suffix); rename it to ``path`` if the block succeeds, remove
    it if the block fails."""
    path = Path(path)
    tmp = temp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists() or tmp.is_symlink():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to a temporary name in the same folder, then rename: readers never see a half-written file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def check_output_file(path: str | os.PathLike, flag: str) -> Path:
    """Check, before any expensive work, that a file can be written at ``path`` (``flag`` names the argument in
    the message): not an existing folder, its folder creatable and writable. Returns the resolved path."""
    given = path
    path = Path(path).resolve()
    if path.is_dir():
        raise OutputError(f"{flag} {given}: is a folder; give a file name")
    _check_writable_folder(path.parent, f"{flag} {given}")
    return path


# ---------------------------------------------------------------------------------------------------- folders

def read_marker(folder: str | os.PathLike) -> dict | None:
    """The marker of a finished output in ``folder`` ({"command", "version", "files"}), or None (absent or
    unreadable)."""
    try:
        marker = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(marker, dict) and isinstance(marker.get("command"), str) and isinstance(marker.get("files"), list)
    return marker if ok else None


def foreign_files(folder: str | os.PathLike) -> list[str]:
    """Files in ``folder`` (relative, posix) that its marker does not list: added by someone else since."""
    marker = read_marker(folder)
    ours = set(marker["files"]) if marker else set()
    return [f for f in _list_files(Path(folder)) if f not in ours]


def is_output_of(folder: str | os.PathLike, command: str) -> bool:
    """True when ``folder`` is a finished output of ``mvgen <command>`` holding only files that command wrote."""
    marker = read_marker(folder)
    return marker is not None and marker["command"] == command and not foreign_files(folder)


def prepare_output_dir(out: str | os.PathLike, command: str, overwrite: bool = False, *, flag: str = "--out",
                       accept: Callable[[Path], bool] | None = None) -> Path:
    """Check an output folder before any expensive work; returns it resolved (``..`` and symlinks followed first).

    Refuses: an existing file at ``out`` (always); an existing non-empty folder that is not a finished output of
    ``command`` unless ``overwrite`` (``accept(folder)`` may recognise earlier outputs written without a marker);
    a parent folder that cannot be created or written. Removes temporary folders of ours for ``out`` left by
    killed processes. ``flag`` names the argument in messages. Nothing is deleted or replaced here.
    """
    given = out
    out = Path(out).resolve()
    where = f"{flag} {given}" + (f" (= {out})" if str(out) != os.path.normpath(os.path.abspath(given)) else "")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{where}: is a file, not a folder; choose a folder name")
    if out.parent == out:
        raise OutputError(f"{where}: is the root folder; choose a new folder")
    _check_writable_folder(out.parent, where)
    clean_orphans(out)
    if not overwrite:
        _check_replaceable(out, command, where, accept)
    return out


def write_marker(folder: str | os.PathLike, command: str, files: list[str] | None = None, **extra) -> None:
    """Write the marker of ``command`` into ``folder``: it lists ``files`` (default: every file there now) and
    carries ``extra`` entries (e.g. a batch's settings). Written to a temporary name, then renamed."""
    folder = Path(folder)
    marker = {**extra, "command": command, "version": MARKER_VERSION,
              "files": _list_files(folder) if files is None else list(files)}
    atomic_write_text(folder / MARKER, json.dumps(marker, indent=1))


@contextlib.contextmanager
def build_output_dir(out: str | os.PathLike, command: str, overwrite: bool = False, *, flag: str = "--out",
                     accept: Callable[[Path], bool] | None = None, marker: dict | None = None) -> Iterator[Path]:
    """Yield a new temporary folder next to ``out``; when the block succeeds, write the marker of ``command`` into
    it (with ``marker``'s extra entries) and rename it over ``out``; when it fails, remove it (``out`` is
    untouched).

    ``out`` is checked as in :func:`prepare_output_dir` on entry and again just before the rename, so a folder
    that became foreign meanwhile is not replaced either (unless ``overwrite``).
    """
    out = prepare_output_dir(out, command, overwrite, flag=flag, accept=accept)
    tmp = _new_temp_dir(out)
    try:
        yield tmp
        write_marker(tmp, command, **(marker or {}))
        if not overwrite:
            _check_replaceable(out, command, f"{flag} {out}", accept)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def clean_orphans(out: str | os.PathLike) -> list[Path]:
    """Remove temporary folders of ours for ``out`` (``.NAME.tmp<pid>[-n]``, ``.NAME.old<pid>[-n]``) whose process
    is gone; an old folder moved aside by a replace that was killed half-way is moved back if ``out`` is missing.
    Returns what was removed."""
    out = Path(out)
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.(tmp|old)(\d+)(-\d+)?$")
    removed = []
    try:
        entries = list(out.parent.iterdir())
    except OSError:
        return removed
    for p in sorted(entries):
        m = pattern.match(p.name)
        if not m or p.is_symlink() or not p.is_dir() or pid_alive(int(m.group(2))):
            continue
        if m.group(1) == "old" and not out.exists():
            with contextlib.suppress(OSError):
                os.replace(p, out)
            continue  # moved back, or left alone when it cannot be: it was a finished output
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (ours counts as alive; where this cannot be told, assume alive)."""
    if pid == os.getpid():
        return True
    if os.name != "posix" or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


# ---------------------------------------------------------------------------------------------------- helpers

def _list_files(folder: Path) -> list[str]:
    """Every file (and link) under ``folder`` except the marker, relative posix paths, sorted."""
    found = []
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        found += [(rel / f).as_posix() for f in files]
        found += [(rel / d).as_posix() for d in dirs if os.path.islink(os.path.join(root, d))]
    return sorted(f for f in found if f != MARKER)


def _check_writable_folder(folder: Path, where: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write_test{os.getpid()}-{next(_counter)}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise OutputError(f"{where}: cannot write in {folder} ({e.strerror or e})") from None


def _check_replaceable(out: Path, command: str, where: str, accept: Callable[[Path], bool] | None) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError(f"{where}: is a file, not a folder; choose a folder name")
    if not out.is_dir() or not any(out.iterdir()) or is_output_of(out, command) or (accept and accept(out)):
        return
    marker = read_marker(out)
    if marker is None:
        why = "no marker"
    elif marker["command"] != command:
        why = f"it is a `mvgen {marker['command']}` output"
    else:
        extra = foreign_files(out)
        why = f"files added since: {', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''}"
    raise OutputExistsError(f"{where}: exists and is not an earlier `mvgen {command}` output ({why}); "
                            f"choose a new folder or pass --overwrite")


def _new_temp_dir(out: Path) -> Path:
    pid = os.getpid()
    name = f".{out.name}.tmp{pid}"
    while True:
        tmp = out.with_name(name)
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:  # another build of the same target in this process
            name = f".{out.name}.tmp{pid}-{next(_counter)}"


def _replace_dir(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is moved aside first and removed only after the rename."""
    if not out.exists() and not out.is_symlink():
        os.replace(tmp, out)
        return
    old = out.with_name(f".{out.name}.old{os.getpid()}-{next(_counter)}")
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
