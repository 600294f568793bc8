"""`mvgen run --prompts FILE`: a batch of prompts, one folder each, sharded across processes and resumable.

Under ``accelerate launch --num_processes N`` (or any launcher that sets WORLD_SIZE / RANK for torch.distributed)
process r takes prompts r, r + N, r + 2N, ... (each prompt exactly once), loads the model on its own device
(``cuda:LOCAL_RANK`` when the batch runs on CUDA) and writes each prompt's folder atomically
(``mvgen.job.run_prompt``: a temporary sibling renamed when complete). Process 0 owns the batch folder: it checks it
before any work and, once every process is done, gathers the rows, removes our prompt folders that are no longer
part of the batch, writes summary.json and the final marker. One process runs the same code with N = 1.

Resuming: a rerun into an earlier batch folder (finished, or interrupted half-way) with the same settings and model
skips every prompt whose folder is a finished `mvgen run` output of that prompt and redoes the rest (failed prompts
included); with other settings every prompt is redone. A folder that is not an earlier batch (an earlier one-prompt
run, or with ``--overwrite`` a folder we did not write) gets the batch built under a temporary name and renamed over
it only when every prompt has run, so a failed batch leaves it as it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import sys
from pathlib import Path

from mvgen.fileio import (MARKER, atomic_write_text, build_output_dir, is_output_of, prepare_output_dir, read_marker,
                          write_marker)

COMMAND = "run"
PROMPT_DIR = re.compile(r"^\d{3,}_[a-z0-9_]+$")  # NNN_slug: a prompt's folder
TEMP_DIR = re.compile(r"^\..+\.(tmp|old)\d+(-\d+)?$")  # a prompt folder being built (mvgen.fileio)


class Processes:
    """This process's place in the batch: ``rank`` of ``world`` (``local``: its index on this machine), with the
    collective calls the batch needs (torch.distributed through accelerate when ``world`` > 1, no-ops for one)."""

    def __init__(self, cpu: bool = True):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.state = None
        self.rank, self.local = 0, 0
        if self.world > 1:
            from accelerate import PartialState

            # joins the process group the launcher set up: gloo on CPU (cpu=True, else accelerate would see no
            # GPU and run undistributed), nccl on GPUs
            self.state = PartialState(cpu=cpu)
            self.rank, self.local = self.state.process_index, self.state.local_process_index

    @property
    def main(self) -> bool:
        return self.rank == 0

    def broadcast(self, obj):
        """Process 0's ``obj`` on every process."""
        if self.state is None:
            return obj
        from accelerate.utils import broadcast_object_list

        box = [obj]
        broadcast_object_list(box, from_process=0)
        return box[0]

    def gather(self, items: list) -> list:
        """Every process's ``items``, concatenated in rank order, on every process."""
        if self.state is None:
            return items
        from accelerate.utils import gather_object

        return gather_object(items)


def shard(n: int, rank: int, world: int) -> list[int]:
    """The prompt indices process ``rank`` of ``world`` runs: every ``world``-th from ``rank``."""
    return list(range(rank, n, world))


def prompt_folder_name(index: int, prompt: str, limit: int = 40) -> str:
    """"003_a_red_mug": the prompt's place in the batch and its folder-name form."""
    return f"{index:03d}_{slug(prompt, limit)}"


def slug(prompt: str, limit: int = 40) -> str:
    """Folder-name form of a prompt: "a red mug" -> "a_red_mug"."""
    return re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")[:limit] or "prompt"


def batch_key(settings: dict, cfg, model_hash: str | None, views_only: bool) -> dict:
    """What a prompt's output depends on besides its text: a rerun skips a finished prompt only when this is equal.
    The device is left out (a batch resumed on another device continues it)."""
    cfg_fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "device"}
    settings = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in settings.items()}
    return json.loads(json.dumps({"settings": settings, "config": cfg_fields, "model_hash": model_hash,
                                  "views_only": views_only}, default=str))


def is_batch_folder(folder: Path) -> bool:
    """An earlier batch of ours, finished or interrupted: its marker says so, and every entry is our summary, a
    finished `mvgen run` prompt folder, one being built, or a file the marker lists."""
    marker = read_marker(folder)
    if marker is None or marker["command"] != COMMAND or "batch" not in marker:
        return False
    listed = set(marker["files"])
    for entry in folder.iterdir():
        if entry.name in (MARKER, "summary.json") or (entry.is_dir() and not entry.is_symlink() and (
                TEMP_DIR.match(entry.name) or (PROMPT_DIR.match(entry.name) and is_output_of(entry, COMMAND)))):
            continue
        if entry.is_file() and entry.name in listed:
            continue
        return False
    return True


def finished_row(prompt: str, folder: Path, final: Path) -> dict | None:
    """The summary row of a prompt folder that a run already finished (rebuilt from its manifest and metrics),
    or None when ``folder`` is not a finished `mvgen run` output of ``prompt``."""
    if not folder.is_dir() or not is_output_of(folder, COMMAND):
        return None
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else {}
    except (OSError, ValueError):
        return None
    if manifest.get("prompt") != prompt:
        return None
    seconds = {"generate": manifest.get("seconds", {}).get("generate", 0.0), **metrics.get("stage_seconds", {})}
    seconds["total"] = round(sum(seconds.values()), 2)
    return {"prompt": prompt, "folder": str(final / folder.name), "views": manifest.get("views"),
            "psnr": metrics.get("psnr"), "ssim": metrics.get("ssim"), "lpips": metrics.get("lpips"),
            "lpips_impl": metrics.get("lpips_impl"), "gaussians": metrics.get("n_gaussians"), "seconds": seconds,
            "resumed": True}


def result_row(prompt: str, result, folder: Path) -> dict:
    m = result.metrics or {}
    return {"prompt": prompt, "folder": str(folder), "views": len(result.views), "psnr": m.get("psnr"),
            "ssim": m.get("ssim"), "lpips": m.get("lpips"), "lpips_impl": m.get("lpips_impl"),
            "gaussians": m.get("n_gaussians"), "seconds": result.seconds}


def summary_table(rows: list[dict]) -> str:
    """Markdown table of a batch: one row per prompt (errors included)."""
    fmt = lambda v, spec: "–" if v is None else format(v, spec)  # noqa: E731
    impls = sorted({r["lpips_impl"] for r in rows if r.get("lpips_impl")})
    lines = [f"| prompt | views | PSNR dB | SSIM | LPIPS{' (' + ', '.join(impls) + ')' if impls else ''} "
             f"| Gaussians | seconds | folder |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['prompt']} | error: {r['error']} | | | | | | |")
            continue
        done = " (earlier run)" if r.get("resumed") else ""
        lines.append(f"| {r['prompt']} | {r['views']} | {fmt(r['psnr'], '.2f')} | {fmt(r['ssim'], '.4f')} | "
                     f"{fmt(r['lpips'], '.4f')} | {fmt(r['gaussians'], 'd')} | {r['seconds']['total']:.1f} | "
                     f"{Path(r['folder']).name}{done} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- the batch

def run_batch(prompts: list[str], out_arg: str, overwrite: bool, load, run_one, key: dict, progress,
              check=lambda: None, cpu: bool = True) -> int:
    """Run ``prompts`` into the batch folder ``out_arg`` on this process's shard; returns the exit code (1 when a
    prompt failed). ``load(procs)``: (pipeline, model path) on this process's device. ``run_one(pipe, model_path,
    prompt, folder, sink)``: one prompt into ``folder`` (a ``RunResult``; ValueError = that prompt failed).
    ``key``: ``batch_key`` of this run. ``progress(description)``: a context manager yielding a progress sink.
    ``check()``: raises ValueError for a problem found after --out was checked and before anything is written
    (a missing model). ``cpu``: the processes run on the CPU (gloo), else on one GPU each.
    """
    procs = Processes(cpu)
    with contextlib.ExitStack() as stack:
        # 1. process 0 checks --out before anything loads and picks where the batch is built
        plan = {"error": None}
        if procs.main:
            try:
                plan.update(_plan(out_arg, overwrite, key, stack, check))
            except ValueError as e:
                plan["error"] = e
        plan = procs.broadcast(plan)
        if plan["error"] is not None:
            if procs.main:
                raise plan["error"]
            raise SystemExit(2)  # process 0 prints the one-line error
        work, final, skip_ok = Path(plan["work"]), Path(plan["final"]), plan["resume"]

        # 2. every process runs its share of the prompts
        rows, fatal = [], None
        mine = shard(len(prompts), procs.rank, procs.world)
        todo = [i for i in mine if not (skip_ok and finished_row(prompts[i], work / prompt_folder_name(i, prompts[i]),
                                                                 final))]
        pipe = model_path = None
        try:
            if todo:
                pipe, model_path = load(procs)
            for i in mine:
                name = prompt_folder_name(i, prompts[i])
                row = finished_row(prompts[i], work / name, final) if skip_ok else None
                if row is None:
                    row = _run_prompt(run_one, pipe, model_path, prompts[i], work / name, final / name, progress,
                                      procs)
                rows.append((i, row))
        except Exception as e:  # reach the gather below, so no process waits forever for this one
            fatal = e
        gathered = procs.gather([(rows, None if fatal is None else f"process {procs.rank}: {fatal}")])
        if fatal is not None:
            raise fatal
        failures = [msg for _, msg in gathered if msg]
        if failures:
            raise SystemExit(2) if not procs.main else ValueError(f"the batch stopped: {failures[0]}")

        # 3. process 0 merges: summary.json, stale folders removed, the final marker (or the rename)
        ordered = [row for _, row in sorted((r for part, _ in gathered for r in part), key=lambda r: r[0])]
        if procs.main:
            keep = {Path(r["folder"]).name for r in ordered if "error" not in r}
            _remove_stale(work, keep)
            atomic_write_text(work / "summary.json", json.dumps(ordered, indent=2))
            if plan["in_place"]:
                write_marker(work, COMMAND, batch=key)
    if not procs.main:
        return 0
    print(summary_table(ordered))
    failed = sum("error" in r for r in ordered)
    resumed = sum(bool(r.get("resumed")) for r in ordered)
    note = f"; {resumed} finished earlier, skipped" if resumed else ""
    print(f"wrote {final} ({len(prompts) - failed}/{len(prompts)} prompts{note}, summary.json"
          f"{f', {procs.world} processes' if procs.world > 1 else ''})")
    return 1 if failed else 0


def _plan(out_arg: str, overwrite: bool, key: dict, stack: contextlib.ExitStack, check) -> dict:
    """Where the batch is built: in place (a new folder or an earlier batch: resumable) or under a temporary name
    renamed over ``--out`` at the end (an earlier one-prompt run, or a foreign folder with ``--overwrite``)."""
    out = prepare_output_dir(out_arg, COMMAND, overwrite, accept=is_batch_folder)
    check()
    if not out.exists() or (out.is_dir() and not any(out.iterdir())) or is_batch_folder(out):
        earlier = read_marker(out) if out.exists() else None
        resume = bool(earlier) and earlier.get("batch") == key
        out.mkdir(parents=True, exist_ok=True)
        write_marker(out, COMMAND, files=[], batch=key)  # an interrupted batch stays recognisable
        return {"work": str(out), "final": str(out), "resume": resume, "in_place": True}
    tmp = stack.enter_context(build_output_dir(out, COMMAND, overwrite, marker={"batch": key}))
    return {"work": str(tmp), "final": str(out), "resume": False, "in_place": False}


def _run_prompt(run_one, pipe, model_path, prompt: str, folder: Path, final: Path, progress, procs) -> dict:
    from mvgen.generate import vocabulary_warning

    warn = vocabulary_warning(prompt, model_path)
    if warn:
        print(f"warning: {warn}", file=sys.stderr)
    label = f"[{procs.rank}] {prompt}" if procs.world > 1 else prompt
    with progress(label) as sink:
        try:
            result = run_one(pipe, model_path, prompt, folder, sink)
        except ValueError as e:
            return {"prompt": prompt, "error": str(e)}
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return result_row(prompt, result, final)


def _remove_stale(work: Path, keep: set[str]) -> None:
    """Prompt folders of ours that are not part of this batch's result (an earlier prompt list, or a prompt that
    failed this time): removed, so the folder holds exactly what summary.json lists."""
    for entry in sorted(work.iterdir()):
        if entry.name not in keep and PROMPT_DIR.match(entry.name) and entry.is_dir() and not entry.is_symlink() \
                and is_output_of(entry, COMMAND):
            shutil.rmtree(entry)
