"""Who may read what: a server-issued cookie names each browser (or API client) and every request that reaches a
session's files or a session's Gradio state is checked against it (design.md §7: the app serves only its own
session files, and each session only its own). No gradio import here.

- **Identity**: the ``mvgen_session`` cookie, ``<random>.<mac>`` (``secrets.token_urlsafe``, HMAC-SHA256 under a
  per-process secret). A request without a valid one is given a fresh one (``Set-Cookie``) and is that new owner;
  a client cannot pick its own. The owner id (an HMAC of the token) names its folder ``sessions/<owner>/``.
- **Files**: Gradio serves files at ``/gradio_api/file=PATH`` (and ``/file/PATH``). A PATH in ``sessions/`` is
  passed on only when it lies in the requester's ``sessions/<owner>/``; a PATH in Gradio's folder (uploads, and any
  copy Gradio makes) only when it is one of the requester's own uploads; any other PATH is left to Gradio's rules,
  which refuse what is neither Gradio's nor allowed. Outputs are served in place (no copy in Gradio's cache), so
  deleting a session's folder makes its files unreachable at once.
- **Session hashes** (Gradio's per-tab id, chosen by the client): the first owner to use one keeps it; a request that
  names it from another owner (query ``session_hash``, ``/heartbeat/<hash>``, ``/stream/<hash>/...``, a JSON body's
  ``session_hash``) is refused, so nobody else can join, listen to, cancel or close a tab's session.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from pathlib import Path
from urllib.parse import parse_qsl

from ui.sessions import LOCAL, SessionFolders

COOKIE = "mvgen_session"
MAX_JSON_BODY = 4 * 2**20  # a JSON request body larger than this is refused (ours are a few KB)

_FILE_ROUTE = re.compile(r"/file[=/](?P<path>.*)\Z", re.S)  # the first match: what Gradio's file routes take
_HASH_IN_PATH = re.compile(r"/gradio_api/(?:heartbeat/(?P<h1>[^/]+)|stream/(?P<h2>[^/]+)/[^/]+/[^/]+/[^/]+)\Z")


def _real(path) -> Path:
    return Path(os.path.realpath(os.path.abspath(str(path))))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


class SessionAccess:
    """Tokens, session-hash claims and uploads per owner; ``may_read`` decides a file request."""

    def __init__(self, folders: SessionFolders, upload_dir: str | os.PathLike | None = None):
        self.folders = folders
        self.upload_dir = _real(upload_dir or folders.root / "gradio")  # GRADIO_TEMP_DIR (see ui.app)
        self._secret = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._hashes: dict[str, list] = {}  # session hash -> [owner, last seen, ended]
        self._uploads: dict[str, set[Path]] = {}  # owner -> its uploaded files (real paths)
        # a tab's claim outlives its folder: Gradio keeps a closed session's state for an hour
        self.keep_claims_s = max(2 * folders.max_age_s, 7200.0)

    # ------------------------------------------------------------------------------------------- identity
    def _mac(self, kind: str, value: str) -> str:
        return hmac.new(self._secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()

    def issue(self) -> str:
        """A new token (the cookie's value)."""
        r = secrets.token_urlsafe(24)
        return f"{r}.{self._mac('token', r)[:32]}"

    def owner(self, token) -> str | None:
        """The owner id of a token this process issued (32 hex digits), else None."""
        if not isinstance(token, str) or token.count(".") != 1:
            return None
        r, mac = token.split(".")
        if not r or not hmac.compare_digest(mac.encode(), self._mac("token", r)[:32].encode()):
            return None
        return self._mac("owner", r)[:32]

    def request_owner(self, request) -> str | None:
        """The owner of a handler's ``gr.Request``: from its cookie for an HTTP request (None without a valid one);
        ``LOCAL`` for a direct call (``request=None``, tests, Python), whose folders no HTTP client can read."""
        raw = getattr(request, "request", None) if request is not None else None
        if raw is not None:
            cookies = raw.cookies
        else:
            cookies = (getattr(request, "kwargs", None) or {}).get("cookies")  # a gr.Request pickled by Gradio
            if cookies is None:
                return LOCAL
        return self.owner(dict(cookies).get(COOKIE))

    # ------------------------------------------------------------------------------------------ sessions
    def claim(self, session_hash: str, owner: str) -> bool:
        """True when ``session_hash`` is ``owner``'s (claimed now if nobody had it)."""
        now = time.time()
        with self._lock:
            entry = self._hashes.setdefault(session_hash, [owner, now, False])
            if entry[0] != owner:
                return False
            entry[1], entry[2] = now, False
            return True

    def end(self, session_hash: str | None, owner: str) -> None:
        """A tab of ``owner`` closed; when it was its last, its uploads become unreachable."""
        with self._lock:
            entry = self._hashes.get(session_hash or "")
            if entry is not None and entry[0] == owner:
                entry[2] = True
            if not any(o == owner and not ended for o, _, ended in self._hashes.values()):
                self._uploads.pop(owner, None)

    def sweep(self, now: float | None = None) -> None:
        """Forget claims unused for ``keep_claims_s``, and the uploads of owners left without a tab."""
        now = time.time() if now is None else now
        with self._lock:
            for h in [h for h, (_, seen, _) in self._hashes.items() if now - seen > self.keep_claims_s]:
                del self._hashes[h]
            live = {o for o, _, ended in self._hashes.values() if not ended}
            for o in [o for o in self._uploads if o not in live]:
                del self._uploads[o]

    # ------------------------------------------------------------------------------------------- files
    def add_uploads(self, owner: str, paths) -> None:
        with self._lock:
            self._uploads.setdefault(owner, set()).update(_real(p) for p in paths)

    def owns_upload(self, owner: str, path) -> bool:
        with self._lock:
            return _real(path) in self._uploads.get(owner, ())

    def may_read(self, owner: str, path: str, gradio_dirs=()) -> bool:
        """Whether ``owner`` may be served ``path`` (as Gradio's file route gets it): False for another owner's
        session folder or an expired one, and for anything in Gradio's folders (``upload_dir`` and ``gradio_dirs``)
        but its own uploads; True for the rest (Gradio's own rules then apply)."""
        if path.startswith(("http://", "https://")):
            return True  # Gradio fetches remote URLs through its SSRF-safe proxy: not a file of ours
        try:
            candidates = {Path(os.path.abspath(path)), _real(path)}
        except (OSError, ValueError):
            return False
        sessions = self.folders.sessions
        uploads = {self.upload_dir, *(_real(d) for d in gradio_dirs if d)}
        for p in candidates:
            if _inside(p, sessions):
                parts = p.relative_to(sessions).parts
                if len(parts) < 2 or parts[0] != owner or self.folders.expired(sessions / parts[0] / parts[1]):
                    return False  # another owner's, or an expired session's (the next sweep deletes it)
            elif any(_inside(p, d) for d in uploads) and not self.owns_upload(owner, p):
                return False
        return True


class SessionGuard:
    """ASGI middleware (innermost, before Gradio's routes): gives every HTTP request an owner (its cookie or a new
    one), refuses file reads and session-hash uses that are not the owner's, and records the owner's uploads.
    Install with ``app_kwargs={"middleware": [Middleware(SessionGuard, access=...)]}`` (see ``ui.app``)."""

    def __init__(self, app, access: SessionAccess):
        self.app = app
        self.access = access

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from starlette.datastructures import Headers
        from starlette.requests import cookie_parser

        cookies = cookie_parser(Headers(scope=scope).get("cookie", ""))
        owner = self.access.owner(cookies.get(COOKIE))
        if owner is None:  # no valid cookie: a new owner, seen as such by Gradio's handlers too
            token = self.access.issue()
            owner = self.access.owner(token)
            cookies[COOKIE] = token
            scope = dict(scope)
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"cookie"] + [
                (b"cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()).encode("latin-1"))]
            send = _with_cookie(send, token, secure=scope.get("scheme") == "https")
        path = _route_path(scope)
        hashes = [v for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
                  if k == "session_hash"]
        m = _HASH_IN_PATH.search(path)
        if m:
            hashes.append(m["h1"] or m["h2"])
        if scope["method"] == "POST" and "json" in Headers(scope=scope).get("content-type", ""):
            body = await _read_body(receive, MAX_JSON_BODY)
            if body is None:
                return await _refuse(send, 413, "request body too large")
            receive = _replay(body, receive)
            hashes += _json_session_hash(body)
        if any(not self.access.claim(str(h), owner) for h in hashes):
            return await _refuse(send, 403, "this session belongs to another client")
        m = _FILE_ROUTE.search(path)
        if m and not self.access.may_read(owner, m["path"], [getattr(scope.get("app"), "uploaded_file_dir", None)]):
            return await _refuse(send, 403, "File not allowed.")
        if scope["method"] == "POST" and path.endswith("/gradio_api/upload"):
            send = _record_uploads(send, self.access, owner)
        await self.app(scope, receive, send)


def _route_path(scope) -> str:
    """The path Starlette routes on (``root_path`` removed)."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root):len(root) + 1] in ("", "/"):
        return path[len(root):]
    return path


def _with_cookie(send, token: str, secure: bool):
    cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax" + ("; Secure" if secure else "")

    async def wrapped(message):
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())]}
        await send(message)

    return wrapped


async def _read_body(receive, limit: int) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)  # disconnected: Gradio sees an empty body
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    """``receive`` that gives ``body`` again, then waits as the original does (for the client to disconnect)."""
    sent = False

    async def wrapped():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return wrapped


def _json_session_hash(body: bytes) -> list[str]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return []  # Gradio answers malformed bodies itself
    h = data.get("session_hash") if isinstance(data, dict) else None
    return [] if h is None else [str(h)]


async def _refuse(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _record_uploads(send, access: SessionAccess, owner: str):
    """Wrap ``send`` of an upload: the paths in its JSON answer become ``owner``'s uploads."""
    status, chunks = 0, []

    async def wrapped(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body" and status == 200:
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                try:
                    paths = json.loads(b"".join(chunks))
                except ValueError:
                    paths = None
                if isinstance(paths, list):
                    access.add_uploads(owner, [p for p in paths if isinstance(p, str)])
        await send(message)

    return wrapped
