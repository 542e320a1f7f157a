"""The package's layout, read from its imports: each wing (LightRAG, the checkpointer, the
memory store) leans only on the core, and the core holds only what the wings share."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "aperag_pg"
# A wing by its packages: LightRAG's facades and tasks sit on its SQL stores.
WINGS = {
    "lightrag": "lightrag",
    "stores": "lightrag",
    "checkpoint": "checkpoint",
    "memory": "memory",
}
# Top-level modules that no wing needs: the public names, the command line (it reaches
# into every wing), and the diagnostic Celery tasks.
ENTRY_POINTS = {"aperag_pg", "aperag_pg.__main__", "aperag_pg.doctor", "aperag_pg.probes"}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The package's modules ``name`` imports (anywhere in it, lazily too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            module = ".".join(base + [node.module or ""]).strip(".") if node.level else node.module
            for alias in node.names:
                child = f"{module}.{alias.name}"
                found.add(child if child in MODULES else module)
    return {module for module in found if module in MODULES}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def wing(module: str) -> str | None:
    parts = module.split(".")
    return WINGS.get(parts[1]) if len(parts) > 1 and parts[1] in WINGS else None


def test_no_wing_imports_another():
    crossings = [
        f"{module} -> {imported}"
        for module, imports in GRAPH.items()
        for imported in imports
        if wing(module) and wing(imported) and wing(imported) != wing(module)
    ]
    assert not crossings, crossings


def test_the_core_imports_no_wing_but_from_its_entry_points():
    upward = [
        f"{module} -> {imported}"
        for module, imports in GRAPH.items()
        for imported in imports
        if wing(module) is None and module not in ENTRY_POINTS and wing(imported)
    ]
    assert not upward, upward


def test_every_core_module_serves_more_than_one_wing():
    """A top-level module that only one wing uses (directly, or through other core
    modules) belongs in that wing."""
    users: dict[str, set[str]] = defaultdict(set)
    for module, imports in GRAPH.items():
        if wing(module) is None:
            continue
        pending, seen = list(imports), set()
        while pending:
            imported = pending.pop()
            if imported in seen or wing(imported):
                continue
            seen.add(imported)
            users[imported].add(wing(module))
            pending.extend(GRAPH[imported])
    core = {m for m in MODULES if wing(m) is None} - ENTRY_POINTS
    # the public names (aperag_pg/__init__.py) may come from a module of their own
    public = GRAPH["aperag_pg"]
    single = {m: sorted(users[m]) for m in core - public if len(users[m]) < 2}
    assert not single, f"core modules that serve fewer than two wings: {single}"
    assert "aperag_pg.pgvector" in core and users["aperag_pg.pgvector"] == {"lightrag", "memory"}
