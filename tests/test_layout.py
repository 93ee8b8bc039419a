"""The shape the code keeps: workflows/ depends on nothing else in the project, the packages import one
another without a cycle, and no module grows past what a reader takes in at once."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("backoffice", "workflows", "activities", "api", "store", "providers", "migrations")
TOP_MODULES = ("worker",)
LONGEST = 500  # lines; migrations are exempt (they are written once and never read as code)


def _modules() -> list[Path]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    return sorted(files + [ROOT / f"{m}.py" for m in TOP_MODULES])


def _node(dotted: str) -> str:
    """A node of the dependency graph: a package, except that the process package is counted by its
    modules (its CLI and dev stack sit on top of everything; its settings and logging below everything)."""
    parts = dotted.split(".")
    return ".".join(parts[:2]) if parts[0] == "backoffice" and len(parts) > 1 else parts[0]


def _package(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return _node(".".join(p for p in parts if p != "__init__"))


def _project_imports(path: Path) -> set[str]:
    """The graph nodes a module imports (at any depth: a function's lazy import counts too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [
                f"{node.module}.{a.name}" for a in node.names if node.module == "backoffice"
            ]
        found |= {_node(name) for name in names if name.split(".")[0] in {*PACKAGES, *TOP_MODULES}}
    return found - {"backoffice"}


def test_workflows_depend_on_nothing_else_in_the_project() -> None:
    outside = {
        str(path.relative_to(ROOT)): sorted(_project_imports(path) - {"workflows"})
        for path in (ROOT / "workflows").rglob("*.py")
    }
    assert {module: deps for module, deps in outside.items() if deps} == {}


def test_the_packages_import_one_another_without_a_cycle() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in _modules():
        graph[_package(path)] |= _project_imports(path) - {_package(path)}

    def cycle_from(start: str, seen: tuple[str, ...]) -> tuple[str, ...] | None:
        for nxt in sorted(graph[start]):
            if nxt in seen:
                return (*seen[seen.index(nxt) :], nxt)
            found = cycle_from(nxt, (*seen, nxt))
            if found:
                return found
        return None

    cycles = [c for pkg in sorted(graph) if (c := cycle_from(pkg, (pkg,)))]
    assert cycles == [], f"package cycles: {cycles}"


def test_no_module_grows_past_what_a_reader_takes_in() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in _modules()
        if _package(path) != "migrations" and (n := len(path.read_text().splitlines())) > LONGEST
    }
    assert long == {}
    assert len((ROOT / "workflows" / "order.py").read_text().splitlines()) < 450  # the lifecycle's skeleton


# What workflow code may import: the worker passes workflows/ through the sandbox (worker.py), so this test
# holds what the sandbox would: no I/O, no clock, no randomness reaches the workflow's code.
WORKFLOW_IMPORTS = {
    "__future__", "asyncio", "collections", "copy", "dataclasses", "datetime", "decimal", "enum", "re",
    "temporalio", "typing", "unicodedata", "workflows",
}  # fmt: skip
FORBIDDEN_CALLS = ("datetime.now", "datetime.utcnow", "time.time", "time.monotonic", "random.", "uuid.uuid")


def test_workflow_code_imports_nothing_with_io_and_reads_no_clock() -> None:
    found: dict[str, list[str]] = {}
    for path in (ROOT / "workflows").rglob("*.py"):
        source = path.read_text()
        imported: set[str] = set()
        for node in ast.walk(ast.parse(source, str(path))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
        problems = sorted(imported - WORKFLOW_IMPORTS) + [c for c in FORBIDDEN_CALLS if c in source]
        if problems:
            found[str(path.relative_to(ROOT))] = problems
    assert found == {}
