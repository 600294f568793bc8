"""`mvgen app`: serve the Gradio app. Named in mvgen/cli.py's command table; heavy imports (gradio, torch) happen
inside the command so `mvgen --help` stays fast."""

from __future__ import annotations

import argparse
import signal
import sys


def register_app(subparsers) -> None:
    p = subparsers.add_parser("app", help="launch the Gradio app (text to 3D, evaluate your own views)",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0 to serve the network)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--model", help="pipeline folder (default: the shipped assets/mvgen-tiny, or MVGEN_MODEL)")
    p.add_argument("--config", help="app defaults and limits (default: configs/app.yaml)")
    p.add_argument("--workdir", help="folder for session outputs (default: a temporary folder removed at exit)")
    p.add_argument("--no-preload", action="store_true",
                   help="load the model on the first request, not when a browser opens the page")
    p.set_defaults(func=run_app)


def run_app(args) -> int:
    from mvgen.settings import DEFAULT_CONFIG, AppConfig

    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    check_listen_address(args.host, args.port)  # before the app is built: Gradio would say "Cannot find empty port"
    cfg = AppConfig.from_yaml(args.config or DEFAULT_CONFIG)
    bound_malloc()  # before Gradio and torch are imported and start their threads
    from ui.app import build_app, launch_app

    demo = build_app(args.model, cfg, args.workdir, preload=not args.no_preload)
    problem = demo.mvgen.handlers.model_status()
    if problem:
        print(f"warning: {problem}; the app runs, generation is disabled until the model exists", file=sys.stderr)
    # SIGTERM (systemd, docker stop, timeout) exits like Ctrl-C, so the temporary app folder is removed at exit.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    launch_app(demo, args.host, args.port, prevent_thread_lock=True)
    demo.block_thread()
    return 0


MALLOC_ARENAS = 2  # glibc's default is 8 per core
TRIM_SECONDS = 10.0  # malloc_trim takes milliseconds; more often would re-fault pages a running job reuses
_trimming = []  # the trim thread, once started


def bound_malloc(arenas: int = MALLOC_ARENAS, trim_seconds: float = TRIM_SECONDS) -> bool:
    """Keep the server's memory from creeping up under load (glibc only; elsewhere a no-op returning False).

    Jobs run on whichever of Gradio's worker threads is free; glibc gives each thread its own malloc arena (up
    to 8 per core) and keeps what a job freed in that arena. `mvgen bench load` (24 clients, 5 min, shipped
    model) measured the server's RSS 455 MB above its level after the first job without this. So: at most
    ``arenas`` arenas (``mallopt(M_ARENA_MAX)``, before threads start), and every ``trim_seconds`` a daemon
    thread hands freed memory back to the system (``malloc_trim(0)``, milliseconds)."""
    import ctypes
    import ctypes.util
    import threading
    import time

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        return False
    M_ARENA_MAX = -8
    mallopt(M_ARENA_MAX, arenas)
    if _trimming:
        return True

    def trim():
        while True:
            time.sleep(trim_seconds)
            malloc_trim(0)

    _trimming.append(threading.Thread(target=trim, name="mvgen-malloc-trim", daemon=True))
    _trimming[0].start()
    return True


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def check_listen_address(host: str, port: int) -> None:
    """ValueError naming --host / --port when the app could not serve there: a name that does not resolve, an
    address of another machine, a port in use or reserved."""
    import errno
    import socket

    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError, ValueError) as e:
        raise ValueError(f"--host {host!r}: not an address of this machine ({getattr(e, 'strerror', None) or e})") \
            from None
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will; a port in use still fails
        try:
            s.bind(addr)
        except OSError as e:
            field = f"--port {port}" if e.errno in (errno.EADDRINUSE, errno.EACCES) else f"--host {host!r}"
            raise ValueError(f"{field}: cannot serve on {host}:{port} ({e.strerror or e})") from None
