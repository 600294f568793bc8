"""`mvgen bench load`: many clients at once against a served app (issue 15).

Starts `mvgen app` in a subprocess (the shipped model by default, ``--model`` to override; a free port; its own
temporary work folder), runs one warm-up job (the model loads), then drives ``--clients`` concurrent clients for
``--duration`` seconds. Each client loops: GET ``/`` (timed), then one job through the API (gradio_client, the
README's ``/generate`` endpoint, cheap settings: ``--views`` 4, ``--steps`` 4, ``--recon-steps`` 50 by default), then
``--pause`` seconds. A job ends served (a report came back), refused (the queue was full: gradio_client's
``QueueError``, HTTP 503; whether its message says "queue full" is counted) or an error (anything else, first
messages kept). After the duration the clients finish the job they are in; then the server idles ``--settle``
seconds (longer than `mvgen app`'s 10 s malloc trim, ui/cli.py) and its RSS is read again; "before" is read the same
way, ``--settle`` seconds after the warm-up job.

Printed: a Markdown table (submitted, served, refused, errors, ``/`` p50 / p95, job p50 / p95, server RSS at start /
before (after the warm-up job) / peak / after) and the machine's load average; ``--json PATH`` writes the rows.
Targets (issue 15): ``/`` p95 < 1 s, refusals say "queue full", RSS after <= RSS before + 100 MB.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mvgen.limits import DEFAULT_GUIDANCE

PROMPTS = ("a red mug", "a blue vase", "a red chair with white legs", "an orange car with black wheels")
QUEUE_FULL = re.compile(r"queue\W+(is\W+)?full", re.IGNORECASE)


def register(subparsers) -> None:
    p = subparsers.add_parser("load", help="N concurrent clients against a served app: served / refused / p95 / RSS",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--clients", type=int, default=24, help="concurrent clients")
    p.add_argument("--duration", type=float, default=300.0, help="seconds the clients keep submitting")
    p.add_argument("--model", help="pipeline folder (default: the shipped assets/mvgen-tiny, or MVGEN_MODEL)")
    p.add_argument("--config", help="the server's app.yaml (default: configs/app.yaml)")
    p.add_argument("--views", type=int, default=4, help="views per job (cheap)")
    p.add_argument("--steps", type=int, default=4, help="denoising steps per job (cheap)")
    p.add_argument("--recon-steps", type=int, default=50, help="fitting steps per job (cheap)")
    p.add_argument("--pause", type=float, default=1.0, help="seconds a client waits between its jobs")
    p.add_argument("--settle", type=float, default=30.0, help="idle seconds before the RSS readings 'before' "
                   "(after the warm-up job) and 'after' (after the clients)")
    p.add_argument("--startup-timeout", type=float, default=300.0, help="seconds to wait for the server")
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.set_defaults(func=run_load)


def check_args(args) -> None:
    """One-line ValueErrors for bad arguments, before anything starts."""
    from mvgen.checks import check_int

    check_int("--clients", args.clients, 1, 1000)
    for name, positive in (("duration", True), ("startup_timeout", True), ("pause", False), ("settle", False)):
        v = getattr(args, name)
        if not (math.isfinite(v) and (v > 0 if positive else v >= 0)):
            raise ValueError(f"--{name.replace('_', '-')} must be a {'positive' if positive else 'non-negative'} "
                             f"number of seconds, got {v!r}")
    if args.json:
        from mvgen.fileio import check_output_file

        check_output_file(args.json, "--json")


@dataclass
class Tally:
    """What all clients saw (appended under ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    page_s: list = field(default_factory=list)
    page_errors: int = 0
    job_s: list = field(default_factory=list)
    refused: int = 0
    refused_queue_full: int = 0
    errors: int = 0
    messages: list = field(default_factory=list)  # first distinct error / refusal messages
    client_setup_errors: int = 0

    def note(self, message: str) -> None:
        message = " ".join(str(message).split())[:200]
        if message not in self.messages and len(self.messages) < 8:
            self.messages.append(message)


def percentile(values: list, q: float) -> float | None:
    """The ``q`` quantile (0..1, linear interpolation) of ``values``; None when empty."""
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def server_rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` and its children, MB."""
    import psutil

    proc = psutil.Process(pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass  # a child that just exited
    return total / 2**20


def get_page(url: str, timeout: float = 30.0) -> float:
    """Seconds to GET ``url`` (the whole body); raises on a non-200 answer or no answer."""
    import urllib.request

    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as r:
        r.read()
        if r.status != 200:
            raise RuntimeError(f"GET / answered {r.status}")
    return time.perf_counter() - t0


def job_settings(args, i: int) -> dict:
    """The /generate arguments of client ``i``'s jobs (README "API (gradio_client)")."""
    return dict(prompt=PROMPTS[i % len(PROMPTS)], views=args.views, elevation=20, seed=i, steps=args.steps,
                guidance=DEFAULT_GUIDANCE, recon_steps=args.recon_steps, stop_after_views=False, steer=False)


def submit(client, settings: dict, tally: Tally) -> None:
    """One job; counted as served, refused or an error in ``tally``."""
    from gradio_client.utils import QueueError

    t0 = time.perf_counter()
    try:
        client.predict(**settings, api_name="/generate")
    except QueueError as e:
        with tally.lock:
            tally.refused += 1
            tally.refused_queue_full += bool(QUEUE_FULL.search(str(e)))
            tally.note(f"refused: {e}")
    except Exception as e:  # noqa: BLE001  (any failure of a job is counted and kept, the bench goes on)
        with tally.lock:
            tally.errors += 1
            tally.note(f"{type(e).__name__}: {e}")
    else:
        with tally.lock:
            tally.job_s.append(time.perf_counter() - t0)


def client_loop(url: str, settings: dict, deadline: float, pause: float, tally: Tally) -> None:
    """One client until ``deadline``: GET / (timed), one job, ``pause`` seconds; again."""
    from gradio_client import Client

    try:
        client = Client(url, verbose=False)
    except Exception as e:  # noqa: BLE001  (counted; this client submits nothing)
        with tally.lock:
            tally.client_setup_errors += 1
            tally.note(f"client setup: {type(e).__name__}: {e}")
        return
    while time.monotonic() < deadline:
        try:
            seconds = get_page(url)
            with tally.lock:
                tally.page_s.append(seconds)
        except Exception as e:  # noqa: BLE001
            with tally.lock:
                tally.page_errors += 1
                tally.note(f"GET /: {type(e).__name__}: {e}")
        if time.monotonic() >= deadline:
            break
        submit(client, settings, tally)
        time.sleep(pause)


def start_server(args, port: int, work: Path, log) -> subprocess.Popen:
    """`mvgen app` on 127.0.0.1:``port`` in a subprocess; returns once ``/`` answers 200."""
    from mvgen.generate import default_model_path

    model = Path(args.model) if args.model else default_model_path()
    cmd = [sys.executable, "-m", "mvgen.cli", "app", "--host", "127.0.0.1", "--port", str(port), "--model",
           str(model.resolve()), "--workdir", str(work / "app"), "--no-preload"]
    if args.config:
        cmd += ["--config", str(Path(args.config).resolve())]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"`mvgen app` exited with {proc.returncode} (log: {log.name})")
        try:
            get_page(f"http://127.0.0.1:{port}/", timeout=5)
            return proc
        except OSError:
            pass  # not listening yet
        if time.monotonic() - t0 > args.startup_timeout:
            proc.kill()
            raise RuntimeError(f"`mvgen app` did not answer within {args.startup_timeout:.0f} s")
        time.sleep(0.5)


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM (the app removes its folder and exits), SIGKILL if it has not stopped within 30 s."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measure(args, url: str, pid: int) -> dict:
    """The warm-up job, then ``args.clients`` clients for ``args.duration`` s; the row of results."""
    from gradio_client import Client

    row = {"rss_start_mb": server_rss_mb(pid)}
    warm = Tally()
    t0 = time.perf_counter()
    submit(Client(url, verbose=False), job_settings(args, 0), warm)
    row["warmup_job_s"] = time.perf_counter() - t0
    if not warm.job_s:
        raise RuntimeError(f"the warm-up job failed: {'; '.join(warm.messages)}")
    time.sleep(args.settle)
    row["rss_before_mb"] = server_rss_mb(pid)

    tally, peak = Tally(), [row["rss_before_mb"]]
    deadline = time.monotonic() + args.duration
    threads = [threading.Thread(target=client_loop, args=(url, job_settings(args, i), deadline, args.pause, tally),
                                name=f"load-client-{i}", daemon=True) for i in range(args.clients)]
    t_start = time.perf_counter()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak.append(server_rss_mb(pid))
        time.sleep(0.5)
    row["wall_s"] = time.perf_counter() - t_start
    time.sleep(args.settle)
    after_page = get_page(url)  # the server still answers once the clients are gone
    row["rss_after_mb"] = server_rss_mb(pid)
    row["rss_peak_mb"] = max(peak + [row["rss_after_mb"]])
    served = len(tally.job_s)
    row.update({
        "clients": args.clients, "duration_s": args.duration,
        "submitted": served + tally.refused + tally.errors, "served": served, "refused": tally.refused,
        "refused_say_queue_full": tally.refused_queue_full, "errors": tally.errors,
        "client_setup_errors": tally.client_setup_errors,
        "page_requests": len(tally.page_s) + tally.page_errors, "page_errors": tally.page_errors,
        "page_p50_s": percentile(tally.page_s, 0.5), "page_p95_s": percentile(tally.page_s, 0.95),
        "page_max_s": max(tally.page_s, default=None), "page_after_s": after_page,
        "job_p50_s": percentile(tally.job_s, 0.5), "job_p95_s": percentile(tally.job_s, 0.95),
        "job_mean_s": statistics.mean(tally.job_s) if tally.job_s else None,
        "messages": tally.messages,
    })
    return row


def targets(row: dict) -> dict:
    """Issue 15's targets, each True / False."""
    return {"page_p95_under_1s": row["page_p95_s"] is not None and row["page_p95_s"] < 1.0,
            "refusals_say_queue_full": row["refused_say_queue_full"] == row["refused"],
            "rss_after_within_100mb": row["rss_after_mb"] <= row["rss_before_mb"] + 100}


def _fmt(v, unit: str = "") -> str:
    return "—" if v is None else f"{v:.2f}{unit}" if isinstance(v, float) else f"{v}{unit}"


def print_table(row: dict, meta: dict) -> None:
    print(f"model {meta['model']} · {row['clients']} clients · {row['duration_s']:g} s · job: "
          f"{meta['settings']['views']} views, {meta['settings']['steps']} steps, "
          f"{meta['settings']['recon_steps']} fitting steps · queue {meta['max_queue']} · concurrency "
          f"{meta['concurrency_limit']}")
    rows = [("jobs submitted", _fmt(row["submitted"])),
            ("served", _fmt(row["served"])),
            ("refused (queue full)", f"{row['refused']} ({row['refused_say_queue_full']} say \"queue full\")"),
            ("errors", _fmt(row["errors"])),
            ("`/` requests (errors)", f"{row['page_requests']} ({row['page_errors']})"),
            ("`/` p50 / p95 / max (target p95 < 1 s)",
             f"{_fmt(row['page_p50_s'], ' s')} / {_fmt(row['page_p95_s'], ' s')} / {_fmt(row['page_max_s'], ' s')}"),
            ("job p50 / p95 (submit → report)", f"{_fmt(row['job_p50_s'], ' s')} / {_fmt(row['job_p95_s'], ' s')}"),
            ("server RSS start / before / peak / after (target after ≤ before + 100 MB)",
             " / ".join(f"{row[k]:.0f}" for k in ("rss_start_mb", "rss_before_mb", "rss_peak_mb", "rss_after_mb"))
             + " MB")]
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print(f"\ntargets: {', '.join(f'{k} {v}' for k, v in targets(row).items())}")
    print(f"load average (1/5/15 min) before {meta['load_before']} · after {meta['load_after']} on "
          f"{os.cpu_count()} cores")
    for m in row["messages"]:
        print(f"  seen: {m}")


def run_load(args) -> int:
    from mvgen.generate import default_model_path
    from mvgen.job import model_problem
    from mvgen.job_bench import free_port
    from mvgen.settings import DEFAULT_CONFIG, AppConfig, check_run_settings
    from reconstruction.bench import write_json

    check_args(args)
    cfg = AppConfig.from_yaml(args.config or DEFAULT_CONFIG)
    settings = job_settings(args, 0)
    check_run_settings(cfg, settings["views"], settings["elevation"], settings["steps"], settings["guidance"],
                       settings["seed"], settings["recon_steps"])  # the server would refuse every job
    model = Path(args.model) if args.model else default_model_path()
    problem = model_problem(model)
    if problem:
        raise ValueError(problem)
    meta = {"model": str(model), "settings": {k: settings[k] for k in ("views", "steps", "recon_steps")},
            "max_queue": cfg.max_queue, "concurrency_limit": cfg.concurrency_limit,
            "load_before": [round(x, 2) for x in os.getloadavg()], "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="mvgen-bench-load-") as tmp:
        port = free_port()
        log = open(Path(tmp) / "server.log", "wb")
        proc = start_server(args, port, Path(tmp), log)
        try:
            row = measure(args, f"http://127.0.0.1:{port}/", proc.pid)
            row["server_alive"] = proc.poll() is None
        finally:
            stop_server(proc)
            log.close()
        server_log = (Path(tmp) / "server.log").read_text(errors="replace")
    row["server_tracebacks"] = server_log.count("Traceback (most recent call last)")
    meta["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print_table(row, meta)
    write_json(args.json, {**meta, "row": row, "targets": targets(row)})
    return 0
