"""The `mvgen` command. Subcommands are registered as entry points (pyproject.toml) so that this package never
imports `reconstruction` or `ui`: each plugin module exposes ``register(subparsers)`` which adds its parser and
sets ``func`` (called with the parsed args; returns an exit code or None). ``mvgen bench X`` works the same way
with the ``mvgen.bench`` group."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from importlib.metadata import entry_points

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mvgen", description="Text prompt -> multiview images -> 3D Gaussian asset.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for ep in sorted(entry_points(group="mvgen.commands"), key=lambda e: e.name):
        ep.load()(sub)
    bench = sub.add_parser("bench", help="benchmarks that print tables (speed, memory, quality)")
    bench_sub = bench.add_subparsers(dest="bench", metavar="BENCH", required=True)
    for ep in sorted(entry_points(group="mvgen.bench"), key=lambda e: e.name):
        ep.load()(bench_sub)
    return parser


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
