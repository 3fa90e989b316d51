"""The house keeps its shape: rooms that stack one way, no circles, no private names borrowed.

The layers and the absence of circles are import-linter contracts (pyproject.toml,
``[tool.importlinter]``), which count imports made inside functions too; the rest
is read here from the source with ``ast``.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from servers import child_env

pytestmark = pytest.mark.one_path(reason="the source's layout")

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "scgikit"
#: The longest a module may grow before it is split by concern.
MAX_MODULE_LINES = 600


def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def room(module: str) -> str:
    """A module's room: its folder under scgikit, or the module itself at the top."""
    return ".".join(module.split(".")[:2])


def imported(module: str, path: Path) -> list[tuple[str, str, int]]:
    """(module imported from, name, line) for every ``from X import name``, in functions too."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = module.split(".")
            base = base[: len(base) - node.level + (1 if is_package else 0)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        found += [(source, alias.name, node.lineno) for alias in node.names]
    return found


def test_the_import_contracts_are_kept():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is one of the test dependencies"
    # pyproject.toml found in the working folder, src/ on the path: import-linter 2.16 on
    # takes the file as an argument, before that (Python 3.10's newest, 2.15) only --config.
    result = subprocess.run([lint], cwd=SRC.parent, env=child_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_no_room_imports_a_private_name_of_another_room():
    known = modules()
    borrowed = []
    for module, path in modules().items():
        for source, name, line in imported(module, path):
            if not source.startswith("scgikit") or f"{source}.{name}" in known or (
                    f"{source}.{name}" == "scgikit._speedups"):
                continue  # not ours, or a module (the accelerator's is checked below)
            if name.startswith("_") and not name.startswith("__") and room(source) != room(
                    module):
                borrowed.append(f"{path.relative_to(SRC)}:{line}: {name} from {source}")
    assert not borrowed


def test_only_the_accelerator_module_imports_the_c_accelerator():
    importers = sorted(
        module for module, path in modules().items()
        for source, name, _ in imported(module, path)
        if f"{source}.{name}" == "scgikit._speedups" or source == "scgikit._speedups")
    assert importers == ["scgikit.accelerator"]


@pytest.mark.parametrize("module", sorted(modules()))
def test_no_module_is_longer_than_the_limit(module):
    lines = len(modules()[module].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{module}: {lines} lines"
