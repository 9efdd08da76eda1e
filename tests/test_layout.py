"""The package's rooms: one folder per concern, dependencies pointing one way, no import cycles.

Read from the source (every import, lazy ones inside functions included), so a shortcut that reaches
into a higher room fails here instead of surprising a reader later.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "character_baker"

# room -> the rooms it may import from (itself always allowed)
ALLOWED: dict[str, set[str]] = {
    "harness": set(),
    "serving": {"harness"},
    "judges": {"harness"},
    "tasks": {"harness", "judges", "serving"},
    "leaderboard": {"harness"},
    "bakers": {"harness", "judges", "tasks", "leaderboard", "serving"},
    "testing": {"harness", "rounds"},  # test fixtures (on the demo's tiny models): no other room imports them
    "rounds": {"harness", "judges", "tasks", "leaderboard", "bakers", "serving"},
}
TOP = {"cli", "_registry", "__init__"}  # the package's top: may import every room


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of the character_baker modules a file imports."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("character_baker"):
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)  # `from .x import module`
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("character_baker"))
    return found


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_rooms_depend_one_way() -> None:
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        room = _room(name)
        for target in _imports(path):
            if target not in modules:  # `from pkg import name`: the name's module is pkg
                target = target.rsplit(".", 1)[0]
            if target not in modules:
                wrong.append(f"{name} imports {target}, which does not exist")
                continue
            other = _room(target)
            if room in TOP or other == room or other == "__init__":
                continue
            if other not in ALLOWED.get(room, set()):
                wrong.append(f"{name} imports {target} ({room} -> {other})")
    assert not wrong, "imports against the layering:\n" + "\n".join(sorted(wrong))


def test_only_rounds_and_the_cli_name_bakers() -> None:
    namers = {_room(n) for n, p in _modules().items()
              if any(t.startswith("character_baker.bakers") for t in _imports(p)) and _room(n) != "bakers"}
    assert namers <= {"rounds", "cli"}, namers


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {n: {t for t in _imports(p) if t in modules and t != n} for n, p in modules.items()}
    # a package's __init__ importing its own children is not a cycle worth reporting
    graph = {n: {t for t in ts if not n.startswith(t + ".")} for n, ts in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for t in sorted(graph[n]):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state and (cycle := visit(t)):
                return cycle
        state[n] = 2
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in state and (cycle := visit(n)):
            raise AssertionError("import cycle: " + " -> ".join(cycle))


def test_no_room_holds_more_than_twelve_modules() -> None:
    for folder in (p for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()):
        count = len([m for m in folder.glob("*.py") if m.name != "__init__.py"])
        assert count <= 12, f"{folder.name}/ holds {count} modules"


def test_importing_the_tasks_loads_no_baker() -> None:
    code = ("import character_baker.tasks.persona, character_baker.tasks.score, sys; "
            "assert not any(m.startswith('character_baker.bakers') for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_round_plan_needs_only_the_standard_library() -> None:
    """`tox -e r6` runs the plan before installing anything: it must not import torch, transformers or inspect."""
    code = ("import sys, character_baker.rounds.plan; "
            "from character_baker.rounds.preflight import check; check(sys.argv[1]); "  # the checks run there too
            "heavy = [m for m in ('torch', 'transformers', 'inspect_ai', 'numpy', 'pandas') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code, str(PACKAGE.parent / "rounds" / "r6.toml")], check=True,
                   env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_no_module_imports_another_modules_private_names() -> None:
    """A name with a leading underscore is its module's own; what another module needs is made public instead
    (`from .x import _helper`, or `x._helper` on an imported module, is a back door)."""
    modules = _modules()
    found = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported: set[str] = set()  # local names bound to character_baker modules
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or not (node.level or (node.module or "").startswith("character")):
                continue
            for alias in node.names:
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                if private:
                    found.append(f"{name}: from {'.' * node.level}{node.module or ''} import {alias.name}")
                imported.add(alias.asname or alias.name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in imported \
                    and node.attr.startswith("_") and not node.attr.startswith("__"):
                found.append(f"{name}: {node.value.id}.{node.attr} (line {node.lineno})")
    assert not found, "private names used across modules:\n" + "\n".join(sorted(found))
