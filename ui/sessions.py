"""Per-session output folders under one app root, and their cleanup. No gradio here.

Layout: ``ROOT/sessions/<session>/<run>/`` (run outputs, served to that session) and ``ROOT/gradio/`` (Gradio's
upload and cache folder). Only ``ROOT`` is ever served. A session folder untouched for ``max_age_s`` is deleted by
``sweep`` (called whenever a run starts); a session keeps at most ``runs_per_session`` runs; ``end`` deletes a
session's folder when its browser tab closes.
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


class SessionFolders:
    def __init__(self, root: str | os.PathLike, max_age_s: float = 3600.0, runs_per_session: int = 3):
        self.root = Path(root).resolve()
        self.sessions = self.root / "sessions"
        self.sessions.mkdir(parents=True, exist_ok=True)
        self.max_age_s = max_age_s
        self.runs_per_session = runs_per_session
        self._lock = threading.Lock()
        self._counter = itertools.count()

    def session_dir(self, session: str | None) -> Path:
        """The folder of a session id (Gradio's session hash; ids that are not plain tokens are hashed)."""
        sid = session or "local"
        if not _SAFE_ID.fullmatch(sid):
            sid = hashlib.sha256(sid.encode()).hexdigest()[:32]
        return self.sessions / sid

    def new_run(self, session: str | None, kind: str) -> Path:
        """A fresh, not yet existing path for one run of ``session`` (its parent exists); sweeps old folders."""
        self.sweep()
        sdir = self.session_dir(session)
        with self._lock:
            sdir.mkdir(parents=True, exist_ok=True)
            os.utime(sdir)
            runs = sorted((p for p in sdir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                          key=lambda p: p.stat().st_mtime)
            for old in runs[:max(0, len(runs) - self.runs_per_session + 1)]:
                shutil.rmtree(old, ignore_errors=True)
            name = f"{time.strftime('%Y%m%d-%H%M%S')}-{next(self._counter):04d}-{kind}"
        return sdir / name

    def sweep(self, now: float | None = None) -> list[Path]:
        """Delete session folders not touched for ``max_age_s``; returns what was deleted."""
        now = time.time() if now is None else now
        removed = []
        with self._lock:
            for sdir in self.sessions.iterdir():
                try:
                    age = now - sdir.stat().st_mtime
                except FileNotFoundError:
                    continue
                if age > self.max_age_s:
                    shutil.rmtree(sdir, ignore_errors=True)
                    removed.append(sdir)
        return removed

    def end(self, session: str | None) -> None:
        """Delete everything of a session (its tab was closed)."""
        with self._lock:
            shutil.rmtree(self.session_dir(session), ignore_errors=True)
