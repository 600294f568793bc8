"""Per-session output folders under one app root, and their cleanup. No gradio here.

Layout: ``ROOT/sessions/<owner>/<session>/<run>/`` (run outputs; ``<owner>`` is the browser or API client, from
its server-issued cookie, see ``ui.access``; ``<session>`` its tab, Gradio's session hash) and ``ROOT/gradio/``
(Gradio's upload folder). A session folder untouched for ``max_age_s`` is deleted by ``sweep`` (called whenever a
run starts); a session keeps at most ``runs_per_session`` runs; ``end`` deletes a session's folder when its browser
tab closes. Direct calls (tests, Python) write under the owner ``LOCAL``, which no HTTP client can read.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import shutil
import threading
import time
from pathlib import Path

_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
LOCAL = "local"  # the owner of direct calls (no HTTP request); owner ids from ui.access are 32 hex digits


def _folder_name(sid: str) -> str:
    return sid if _SAFE_ID.fullmatch(sid) else hashlib.sha256(sid.encode()).hexdigest()[:32]


class SessionFolders:
    def __init__(self, root: str | os.PathLike, max_age_s: float = 3600.0, runs_per_session: int = 3):
        self.root = Path(root).resolve()
        self.sessions = self.root / "sessions"
        self.sessions.mkdir(parents=True, exist_ok=True)
        self.max_age_s = max_age_s
        self.runs_per_session = runs_per_session
        self._lock = threading.Lock()
        self._counter = itertools.count()

    def session_dir(self, session: str | None, owner: str = LOCAL) -> Path:
        """The folder of ``owner``'s session ``session`` (Gradio's session hash; ids that are not plain tokens are
        hashed). Another owner presenting the same session hash gets its own folder."""
        return self.sessions / _folder_name(owner or LOCAL) / _folder_name(session or "local")

    def new_run(self, session: str | None, kind: str, owner: str = LOCAL) -> Path:
        """A fresh, not yet existing path for one run of ``session`` (its parent exists); sweeps old folders."""
        self.sweep()
        sdir = self.session_dir(session, owner)
        with self._lock:
            sdir.mkdir(parents=True, exist_ok=True)
            os.utime(sdir)
            runs = sorted((p for p in sdir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                          key=lambda p: p.stat().st_mtime)
            for old in runs[:max(0, len(runs) - self.runs_per_session + 1)]:
                shutil.rmtree(old, ignore_errors=True)
            name = f"{time.strftime('%Y%m%d-%H%M%S')}-{next(self._counter):04d}-{kind}"
        return sdir / name

    def expired(self, sdir: Path, now: float | None = None) -> bool:
        """Whether the session folder ``sdir`` is gone or untouched for ``max_age_s`` (``sweep`` deletes it)."""
        try:
            return (time.time() if now is None else now) - sdir.stat().st_mtime > self.max_age_s
        except OSError:
            return True

    def sweep(self, now: float | None = None) -> list[Path]:
        """Delete session folders not touched for ``max_age_s``; returns what was deleted."""
        now = time.time() if now is None else now
        removed = []
        with self._lock:
            for odir in [p for p in self.sessions.iterdir() if p.is_dir()]:
                for sdir in list(odir.iterdir()):
                    if self.expired(sdir, now) and sdir.exists():
                        shutil.rmtree(sdir, ignore_errors=True)
                        removed.append(sdir)
                _remove_if_empty(odir)
        return removed

    def end(self, session: str | None, owner: str = LOCAL) -> None:
        """Delete everything of a session (its tab was closed)."""
        sdir = self.session_dir(session, owner)
        with self._lock:
            shutil.rmtree(sdir, ignore_errors=True)
            _remove_if_empty(sdir.parent)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty, or already gone
        pass
