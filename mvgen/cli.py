"""The `mvgen` command: an explicit table of command modules, so a source checkout has every command without
`pip install -e .`. Each entry names ``"module:function"`` as a string; the module is imported (importlib) only when
the parser is built, and its ``function(subparsers)`` adds its parser and sets ``func`` (called with the parsed args;
returns an exit code or None). Command modules keep heavy imports (torch, gradio) inside their commands, so
`mvgen --help` stays fast. Naming modules of every package as strings is this dispatcher's privilege
(tests/test_layers.py); no package is imported here at module top."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

# `mvgen COMMAND`, in the order of `mvgen --help`.
COMMANDS = (
    "mvgen.data.cli:register",  # dataset
    "mvgen.vae:register",  # train-vae
    "mvgen.train:register",  # train
    "mvgen.train:register_export",  # export-model
    "mvgen.generate:register",  # generate
    "mvgen.evaluate:register",  # evaluate generation | asset | attributes | wording | views
    "mvgen.job_cli:register_reconstruct",  # reconstruct
    "mvgen.job_cli:register_run",  # run
    "ui.cli:register_app",  # app
)
# `mvgen bench BENCH`.
BENCHES = (
    "mvgen.data.bench:register",  # dataset
    "mvgen.models.bench:register",  # model
    "mvgen.train_bench:register",  # train
    "mvgen.scaling_bench:register",  # scaling (training samples/s with 1, 2, ... processes)
    "reconstruction.bench:register_raster",  # raster
    "mvgen.job_bench:register_fit",  # fit
    "mvgen.job_bench:register_fit_real",  # fit-real (a posed scene folder, a list of step counts)
    "mvgen.job_bench:register_e2e",  # e2e
    "mvgen.load_bench:register",  # load (concurrent clients against a served app)
    "mvgen.gpu_bench:register",  # gpu (scripts/gpu_check.sh)
)

# OpenMP wait policy, set per command before torch loads (a user's own setting wins). Commands that run numba
# kernels next to torch (fits, the app, benches) make idle threads sleep: spinning threads of the two starve each
# other on small CPUs (measured 10x slower fits). Torch-only commands keep them spinning: sleeping threads
# cost the tiny model's many small ops their wake-ups (`mvgen generate`, 8 views: 5.9-6.6 s active vs 8.5-13.9 s
# passive on 2 cores).
# Read now, before the command plugins load (``reconstruction`` sets PASSIVE when imported as a library).
SPIN_COMMANDS = frozenset({"generate", "train", "train-vae"})
_USER_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY")


def set_wait_policy(command: str, user: str | None = _USER_WAIT_POLICY) -> None:
    os.environ["OMP_WAIT_POLICY"] = user or ("ACTIVE" if command in SPIN_COMMANDS else "PASSIVE")


class OneLineParser(argparse.ArgumentParser):
    """argparse's own errors (a bad int, a missing argument, a wrong choice) as one line, exit 2, like every other
    bad input (design.md §7): the usage block is replaced by a pointer to --help. Sub-parsers inherit the class."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="mvgen", description="Text prompt -> multiview images -> 3D Gaussian asset.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for target in COMMANDS:
        _load(target)(sub)
    bench = sub.add_parser("bench", help="benchmarks that print tables (speed, memory, quality)")
    bench_sub = bench.add_subparsers(dest="bench", metavar="BENCH", required=True)
    for target in BENCHES:
        _load(target)(bench_sub)
    return parser


def _load(target: str):
    """The function named by ``"module:function"``, its module imported now."""
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_wait_policy(args.command)
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:  # bad input: one clear line, no traceback (MVGEN_DEBUG=1 shows it)
        if os.environ.get("MVGEN_DEBUG"):
            traceback.print_exc()
        print(f"mvgen {args.command}: error: {e}", file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
