"""The layers of design.md §2, stated in code: ``ui -> mvgen (job) -> reconstruction -> mvgen leaves``.

Every module's imports are parsed with ``ast`` (imports inside functions too) and checked:

- ``ui`` may import ``mvgen`` and ``reconstruction`` (it calls the job API), and holds no pipeline logic: no
  torch, no diffusers;
- ``mvgen`` (not a leaf) may import ``reconstruction``, never ``ui``;
- ``reconstruction`` imports only the leaves of mvgen;
- a leaf imports nothing of the project but other leaves (so ``reconstruction`` gets nothing else through them),
  and the packages' ``__init__`` files import nothing of the project.

The top-level CLI (mvgen/cli.py) names command modules of every package as strings, which are not imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("mvgen", "reconstruction", "ui")
LEAVES = {"mvgen.cameras", "mvgen.metrics", "mvgen.fileio", "mvgen.checks", "mvgen.limits", "mvgen.device"}
NO_PIPELINE_IN_UI = ("torch", "diffusers", "transformers", "gsplat")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def imports(name: str, text: str) -> list[tuple[int, str]]:
    """(line, imported module) for every import in module ``name``'s source ``text``, at any depth; relative
    imports resolved; ``from package import submodule`` counts as importing the submodule."""
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.append((node.lineno, sub if sub in MODULES else base))
    return found


def allowed(importer: str, target: str) -> bool:
    """Whether project module ``importer`` may import project module ``target`` (design.md §2)."""
    pkg, target_pkg = importer.split(".")[0], target.split(".")[0]
    if importer in PACKAGES:
        return target == importer  # __init__ files import nothing of the project
    if importer in LEAVES:
        return target in LEAVES or target == "mvgen"
    if pkg == "reconstruction":
        return target_pkg == "reconstruction" or target in LEAVES or target == "mvgen"
    if pkg == "mvgen":
        return target_pkg in ("mvgen", "reconstruction")
    return True  # ui: the top layer


def violations(extra: dict[str, str] | None = None) -> list[str]:
    """"file:line: importer imports target" for every import that breaks the rule. ``extra``: source text
    appended to files (relative path -> text), to test the checker itself."""
    out = []
    for name, path in MODULES.items():
        rel = path.relative_to(REPO).as_posix()
        text = path.read_text() + (f"\n{extra[rel]}\n" if extra and rel in extra else "")
        for line, target in imports(name, text):
            if target.split(".")[0] in PACKAGES and not allowed(name, target):
                out.append(f"{rel}:{line}: {name} imports {target}")
            if name.split(".")[0] == "ui" and target.split(".")[0] in NO_PIPELINE_IN_UI:
                out.append(f"{rel}:{line}: {name} imports {target} (pipeline logic belongs in mvgen.job)")
    return out


def test_every_module_keeps_to_its_layer():
    assert MODULES and "mvgen.job" in MODULES and LEAVES <= set(MODULES)
    assert violations() == []


@pytest.mark.parametrize("importer, source, bad", [
    ("mvgen/job.py", "from ui.app import build_app", "mvgen.job imports ui.app"),
    ("mvgen/job.py", "def f():\n    import ui.handlers", "mvgen.job imports ui.handlers"),
    ("reconstruction/fit.py", "from mvgen.data import objects", "reconstruction.fit imports mvgen.data.objects"),
    ("reconstruction/fit.py", "from mvgen.settings import AppConfig", "imports mvgen.settings"),
    ("mvgen/limits.py", "import mvgen.job", "mvgen.limits imports mvgen.job"),
    ("mvgen/__init__.py", "from mvgen import cameras", "mvgen imports mvgen.cameras"),
    ("mvgen/cameras.py", "from mvgen import generate", "mvgen.cameras imports mvgen.generate"),
    ("mvgen/cameras.py", "from reconstruction.gaussians import Gaussians", "mvgen.cameras imports reconstruction"),
    ("ui/handlers.py", "import torch", "ui.handlers imports torch"),
    ("mvgen/data/render.py", "from ..cameras import orbit", None),  # relative, a leaf: fine
    ("reconstruction/fit.py", "from mvgen.cameras import orbit", None),
    ("ui/app.py", "from reconstruction.export import save_ply", None),
])
def test_the_rule_catches_a_new_violation(importer, source, bad):
    """The checker itself: an added import that breaks the rule is reported with its file and line."""
    found = [v for v in violations({importer: source}) if v.startswith(importer)]
    if bad is None:
        assert found == []
    else:
        assert len(found) == 1 and bad in found[0], found
        assert int(found[0].split(":")[1]) > len((REPO / importer).read_text().splitlines())
