"""Private sessions (issue 15, Build 4): on the real served app, over plain HTTP, session B cannot read session A's
files by path (every route and path spelling Gradio serves files under, with B's cookie, no cookie or a forged one),
by presenting A's session hash, by naming A's files as its own input, or after A ends; and A's outputs are never
copied into Gradio's cache. Every attempt is counted; none may succeed."""

import json
import os
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.ui.conftest import served_app, views_zip  # noqa: F401  (the app on the tiny model, a zip of views)
from ui.access import COOKIE

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _file_data(value):
    """Every FileData dict (with a ``path``) in an API result."""
    if isinstance(value, dict):
        if isinstance(value.get("path"), str) and "url" in value:
            yield value
        else:
            for v in value.values():
                yield from _file_data(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _file_data(v)


class Tally:
    """Cross-session read attempts and those that got the data."""

    def __init__(self):
        self.attempts, self.successes = 0, []

    def read(self, what: str, ok: bool) -> None:
        self.attempts += 1
        if ok:
            self.successes.append(what)


class Http:
    """An HTTP client that sends exactly one ``mvgen_session`` cookie value (or none), whatever the server sets."""

    def __init__(self, cookie: str | None):
        self.cookie = cookie
        self.client = httpx.Client(timeout=120)

    def request(self, method: str, url: str, headers: dict | None = None, **kw) -> httpx.Response:
        self.client.cookies.clear()
        headers = {**(headers or {}), **({"Cookie": f"{COOKIE}={self.cookie}"} if self.cookie is not None else {})}
        return self.client.request(method, url, headers=headers, **kw)

    def stream(self, method: str, url: str, **kw):
        self.client.cookies.clear()
        return self.client.stream(method, url, headers={"Cookie": f"{COOKIE}={self.cookie}"} if self.cookie else {},
                                  **kw)

    def status(self, method: str, url: str, **kw) -> int:
        """The status only (event streams never end)."""
        with self.stream(method, url, **kw) as r:
            return r.status_code


def _path_spellings(base: str, path: str, root: Path) -> list[str]:
    """The URLs under which Gradio's file routes would serve ``path``."""
    rel = os.path.relpath(path)
    around = str(root / "gradio" / ".." / Path(path).relative_to(root))
    return [f"{base}gradio_api/file={path}", f"{base}gradio_api/file/{path}", f"{base}gradio_api/file={around}",
            f"{base}gradio_api/file={quote(path, safe='')}", f"{base}gradio_api/file=/{path}",
            f"{base}gradio_api/file={rel}", f"{base}gradio_api/file={path}?download=1"]


def _call(http: Http, base: str, session_hash: str, fn_index: int, data: list) -> tuple[int, dict | None]:
    """A raw queued call: (status of the join, the completion message or None)."""
    r = http.request("POST", f"{base}gradio_api/queue/join", json={"data": data, "fn_index": fn_index,
                                                                   "session_hash": session_hash, "trigger_id": None})
    if r.status_code != 200:
        return r.status_code, None
    deadline = time.time() + 60  # a stream under a hash another client also listens on may never complete
    with http.stream("GET", f"{base}gradio_api/queue/data", params={"session_hash": session_hash}) as s:
        for line in s.iter_lines():
            if time.time() > deadline:
                break
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    return 200, msg
    return 200, None


def _wait_gone(folder: Path, timeout_s: float = 30.0) -> None:
    t0 = time.time()
    while folder.exists() and time.time() - t0 < timeout_s:
        time.sleep(0.2)
    assert not folder.exists(), f"{folder} still there {timeout_s:.0f} s after its session ended"


def test_sessions_are_private(served_app, views_zip, tmp_path):  # noqa: F811
    from gradio_client import Client, handle_file

    demo, base = served_app
    root: Path = demo.mvgen.root
    access = demo.mvgen.access
    evaluate = next(i for i, f in demo.fns.items() if f.api_name == "evaluate")
    tally = Tally()

    # A: a generation (views only) and an evaluation (every output kind), plus an upload of its own
    a = Client(base, verbose=False, download_files=False)
    a_http = Http(a.cookies.get(COOKIE))
    a_owner = access.owner(a_http.cookie)
    assert a_owner, "the app gave the client no session cookie"
    results = [a.predict("a red mug", 2, 20, 3, 1, 3.0, 20, True, api_name="/generate"),
               a.predict(handle_file(str(views_zip)), 20, api_name="/evaluate")]
    up = a_http.request("POST", f"{base}gradio_api/upload", files={"files": ("mine.zip", views_zip.read_bytes())})
    a_upload = up.json()[0]
    files = {d["path"]: base + d["url"].lstrip("/") if d["url"].startswith("/") else d["url"]
             for d in _file_data(results)}
    a_dir = access.folders.session_dir(a.session_hash, a_owner)
    assert len(files) >= 15 and all(Path(p).is_relative_to(a_dir) for p in files)  # in place, in A's folder
    copies = [p for p in (root / "gradio").rglob("*") if p.is_file() and p.name in {Path(f).name for f in files}]
    assert not [p for p in copies if p.suffix != ".zip"], copies  # Gradio made no copies of outputs (zips: uploads)
    for path, url in [*files.items(), (a_upload, f"{base}gradio_api/file={a_upload}")]:
        r = a_http.request("GET", url)  # the owner reads every one of them (so the refusals below mean something)
        assert r.status_code == 200 and r.content == Path(path).read_bytes(), (url, r.status_code)

    # B: its own client (its own cookie), no cookie at all, and forged cookies
    b = Client(base, verbose=False, download_files=False)
    b_http = Http(b.cookies.get(COOKIE))
    assert access.owner(b_http.cookie) not in (None, a_owner)
    token = a_http.cookie
    forged = [token.split(".")[0] + "." + "0" * 32, "x.y", a_owner, token + "x", token[1:]]  # A's, altered
    identities = [b_http, Http(None), *(Http(f) for f in forged)]

    def try_files(who: str, http: Http, paths, spellings=True) -> None:
        for path in paths:
            urls = _path_spellings(base, path, root) if spellings else [f"{base}gradio_api/file={path}"]
            for url in urls:
                r = http.request("GET", url)
                tally.read(f"{who} GET {url} -> {r.status_code}", r.status_code in (200, 206))
            for method, headers in (("HEAD", {}), ("GET", {"Range": "bytes=0-10"})):
                r = http.request(method, urls[0], headers=headers)
                tally.read(f"{who} {method} {urls[0]} -> {r.status_code}", r.status_code in (200, 206))

    for i, http in enumerate(identities):
        try_files(f"identity {i}", http, [*files, a_upload])

    # B presents A's session hash: listen to A's queue, join it, open its heartbeat, read its state, cancel, run in it
    h = a.session_hash
    for i, http in enumerate(identities[:3]):
        for method, url, kw in [("GET", f"{base}gradio_api/queue/data", {"params": {"session_hash": h}}),
                                ("GET", f"{base}gradio_api/heartbeat/{h}", {}),
                                ("GET", f"{base}gradio_api/deep_link", {"params": {"session_hash": h}}),
                                ("POST", f"{base}gradio_api/cancel",
                                 {"json": {"session_hash": h, "event_id": "x", "fn_index": evaluate}})]:
            status = http.status(method, url, **kw)
            tally.read(f"identity {i} claims A's hash: {method} {url} -> {status}", status == 200)
        status, done = _call(http, base, h, evaluate, [{"path": a_upload, "meta": {"_type": "gradio.FileData"}}, 20])
        tally.read(f"identity {i} runs in A's session -> {status}", status == 200)
    runs_before = sorted(p.name for p in a_dir.iterdir())
    b2 = Client(base, verbose=False, download_files=False)
    b2.session_hash = h  # gradio_client under A's hash, with its own cookie
    try:
        b2.submit("a blue vase", 2, 20, 0, 1, 3.0, 20, True, api_name="/generate").result(timeout=60)
        tally.read("gradio_client under A's hash ran", True)
    except Exception:  # refused  # noqa: BLE001
        tally.read("gradio_client under A's hash", False)
    b2.close()
    assert sorted(p.name for p in a_dir.iterdir()) == runs_before  # nothing of A's rotated away

    # B names A's files as its own input (an upload of A's, a zip in A's session folder)
    views_of_a = next(p for p in files if p.endswith("views.zip"))
    for path in (a_upload, views_of_a):
        status, done = _call(b_http, base, b.session_hash, evaluate,
                             [{"path": path, "meta": {"_type": "gradio.FileData"}}, 20])
        assert status == 200 and done is not None
        tally.read(f"B evaluates A's {Path(path).name}", bool(done.get("success")))
        assert done.get("success") or "not found; upload it again" in json.dumps(done), done

    # A ends (its client closes; the tab-close event deletes its folder): nobody reads its files, not even A
    a.close()
    _wait_gone(a_dir)
    for i, http in enumerate(identities):
        try_files(f"after A ended, identity {i}", http, [*files, a_upload], spellings=False)
    own = [url for path, url in [*files.items(), (a_upload, f"{base}gradio_api/file={a_upload}")]
           if a_http.request("GET", url).status_code != 403]  # A's own cookie: gone at once (upload revoked)
    b.close()

    print(f"\ncross-session reads: {tally.attempts} attempted, {len(tally.successes)} succeeded; "
          f"A's own reads after A ended: {len(files) + 1} attempted, {len(own)} succeeded")
    assert tally.attempts >= 500
    assert tally.successes == []
    assert own == []


def test_access_rules(tmp_path):
    """``SessionAccess`` alone: tokens cannot be forged, every spelling of a path (``..``, a link, relative) is
    judged by where it really leads, uploads are their uploader's until its last tab closes, hashes stay claimed."""
    from types import SimpleNamespace

    from ui.access import SessionAccess
    from ui.sessions import LOCAL, SessionFolders

    folders = SessionFolders(tmp_path / "app")
    access = SessionAccess(folders)
    ta, tb = access.issue(), access.issue()
    a, b = access.owner(ta), access.owner(tb)
    assert a and b and a != b and len(a) == 32
    for bad in (ta[:-1] + ("0" if ta[-1] != "0" else "1"), ta + ".x", a, "", None, SessionAccess(folders).issue()):
        assert access.owner(bad) is None, bad  # altered, another process's, an owner id
    assert access.request_owner(None) == LOCAL and access.request_owner(SimpleNamespace(session_hash="s")) == LOCAL
    assert access.request_owner(SimpleNamespace(request=SimpleNamespace(cookies={COOKIE: tb}))) == b
    assert access.request_owner(SimpleNamespace(request=SimpleNamespace(cookies={}))) is None

    run = folders.new_run("tab", "generate", a)
    run.mkdir()
    (run / "x.png").write_bytes(b"x")
    (tmp_path / "link").symlink_to(run)
    spellings = [run / "x.png", tmp_path / "link" / "x.png", os.path.relpath(run / "x.png"),
                 f"{folders.root}/gradio/../sessions/{a}/tab/{run.name}/x.png", f"/{run}/x.png"]
    for p in spellings:
        assert access.may_read(a, str(p)) and not access.may_read(b, str(p)), p
    assert not access.may_read(LOCAL, str(run / "x.png")) and not access.may_read(b, str(folders.sessions / a))
    assert access.may_read(b, "/etc/hostname")  # not ours: Gradio's own rules decide
    past = time.time() - folders.max_age_s - 1
    os.utime(run.parent, (past, past))
    assert not access.may_read(a, str(run / "x.png"))  # expired: unreachable before the sweep deletes it

    up = folders.root / "gradio" / "0123" / "u.zip"
    up.parent.mkdir(parents=True)
    up.write_bytes(b"z")
    assert not access.may_read(a, str(up))  # in Gradio's folder and nobody's upload
    access.add_uploads(a, [str(up)])
    assert access.may_read(a, str(up)) and access.owns_upload(a, up) and not access.may_read(b, str(up))
    assert access.claim("h1", a) and access.claim("h2", a) and not access.claim("h1", b)
    access.end("h1", a)
    assert access.may_read(a, str(up))  # another tab of a is open
    access.end("h2", a)
    assert not access.may_read(a, str(up)) and not access.owns_upload(a, up)  # its last tab closed
    assert not access.claim("h1", b)  # a closed tab's hash stays a's
    access.sweep(now=time.time() + access.keep_claims_s + 1)
    assert access.claim("h1", b)  # forgotten only long after Gradio dropped that session's state
