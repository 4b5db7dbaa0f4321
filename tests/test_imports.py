"""The import rule between rooms, checked by walking every `import` in `controlplane/` (issue 8).

Why a test: the pipeline (sources -> api -> graph -> translate -> xds) only stays a pipeline if nothing
points back up, and nobody sees a back-pointing import in review. The rule is data (ALLOWED below): a
module may import the rooms listed for the most specific prefix of its name, and always its own room;
the composition roots may import anything in `controlplane`. On top: no import circles among
controlplane modules (function-level imports count), and the installed package never imports test
support or test-only packages. Every violation is listed in one message, so one run shows all of them.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[1] / "controlplane"

# module prefix -> the rooms (module prefixes) it may import; the most specific key wins.
ALLOWED: dict[str, tuple[str, ...]] = {
    "controlplane.logs": (),
    "controlplane.addresses": (),
    "controlplane.serve_log": (),  # the lines serve logs; takes ChangeSets and Snapshots, imports none
    "controlplane.api": ("logs",),
    "controlplane.identity": ("logs",),
    "controlplane.kube.client": ("logs", "api", "kube.client", "kube.kinds"),
    "controlplane.kube.kinds": ("logs", "api", "kube.client", "kube.kinds"),
    "controlplane.kube.typed": ("logs", "api", "kube.client", "kube.kinds"),
    "controlplane.kube.watch": ("logs", "api", "kube.client", "kube.kinds", "kube.typed"),
    "controlplane.sources": ("logs", "api", "kube.client", "kube.kinds", "kube.watch"),
    "controlplane.graph": ("logs", "api", "identity.spiffe"),
    "controlplane.xds": ("logs", "identity"),
    # xds.keepalive: the one keepalive policy the xDS server enforces and bootstraps ask for
    "controlplane.translate": ("logs", "api", "graph.view", "identity", "xds.resources", "xds.keepalive"),
    "controlplane.kube": ("logs", "addresses", "api", "identity", "graph", "translate", "xds.resources", "kube"),
    "controlplane.admin": ("logs", "xds"),
}
COMPOSITION_ROOTS = ("controlplane.controller", "controlplane.cli", "controlplane.kube.serve", "controlplane.isolation", "controlplane.__main__",
                     "controlplane.commands", "controlplane.commands.common", "controlplane.commands.analyze",
                     "controlplane.commands.proxies", "controlplane.commands.explain",
                     "controlplane.commands.translate",
                     "controlplane")  # the package's own __init__
TEST_ONLY = ("tests", "mcp", "mcp_types", "rich", "httpx", "httpx2", "envoy", "pytest", "hypothesis",
             "uvicorn", "starlette")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, name: str, known: set[str]) -> Iterator[tuple[str, int]]:
    """(module, line) for every import in the file, at any depth; relative imports made absolute, and
    `from package import module` counted as importing that module (not the package)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for target in dict.fromkeys(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                                        for a in node.names):
                yield target, node.lineno


def all_imports() -> dict[str, list[tuple[str, int]]]:
    paths = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
    known = set(paths)
    return {name: sorted(set(imported_modules(path, name, known)), key=lambda t: (t[1], t[0]))
            for name, path in paths.items()}


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def most_specific(module: str) -> str | None:
    keys = [key for key in ALLOWED if within(module, key)]
    return max(keys, key=len) if keys else None


def room_violations(imports: dict[str, list[tuple[str, int]]]) -> list[str]:
    """Imports of a controlplane room that the importing module's rule does not list."""
    found = []
    for module, targets in imports.items():
        if module in COMPOSITION_ROOTS:
            continue
        key = most_specific(module)
        allowed = ALLOWED[key] if key else ()
        own = key or ".".join(module.split(".")[:2])  # a room may always import itself
        rooms = [own, *(f"controlplane.{room}" for room in allowed)]
        for target, line in targets:
            if not within(target, "controlplane") or target == "controlplane":
                continue
            if not any(within(target, room) for room in rooms):
                found.append(f"{module}:{line} imports {target} (allowed: {', '.join(allowed) or 'nothing'})")
    return found


def cycles(imports: dict[str, list[tuple[str, int]]]) -> list[str]:
    """Every set of controlplane modules that import each other, directly or round a circle."""
    graph = nx.DiGraph()
    for module, targets in imports.items():
        graph.add_edges_from((module, target) for target, _ in targets
                             if target in imports and target not in (module, "controlplane"))
    return sorted("circle among " + ", ".join(sorted(component))
                  for component in nx.strongly_connected_components(graph) if len(component) > 1)


def imports_of_test_support(imports: dict[str, list[tuple[str, int]]]) -> list[str]:
    return [f"{module}:{line} imports test-only {target}"
            for module, targets in imports.items() for target, line in targets
            if any(within(target, banned) for banned in TEST_ONLY)]


def test_every_module_obeys_the_import_rule():
    imports = all_imports()
    assert "controlplane.cli" in imports and len(imports) > 50  # the walk saw the package
    problems = ([f"room: {v}" for v in room_violations(imports)] + [f"cycle: {c}" for c in cycles(imports)]
                + [f"test support: {v}" for v in imports_of_test_support(imports)])
    assert not problems, f"{len(problems)} import rule violations:\n" + "\n".join(sorted(set(problems)))


def test_helpers_are_imported_one_way():
    """Tests import their helpers absolutely from the repo root (`from tests.xds.adsclient import ...`):
    no relative imports, no bare sibling names that only work after pytest puts a folder on sys.path."""
    tests = PACKAGE.parent / "tests"
    siblings = {path.stem for path in tests.rglob("*.py") if importlib.util.find_spec(path.stem) is None}
    found = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            where = f"{path.relative_to(tests.parent)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.ImportFrom) and node.level:
                found.append(f"{where} relative import")
            found += [f"{where} bare import of {name}" for name in names if name.split(".")[0] in siblings]
            if isinstance(node, ast.Attribute) and node.attr in ("insert", "append") and \
                    isinstance(node.value, ast.Attribute) and node.value.attr == "path" and \
                    getattr(node.value.value, "id", "") == "sys":
                found.append(f"{where} changes sys.path")
    missing = sorted(str(d.relative_to(tests.parent)) for d in [tests, *tests.rglob("*")]
                     if d.is_dir() and any(d.glob("*.py")) and not (d / "__init__.py").exists())
    assert not found and not missing, "\n".join(found + [f"{d} has no __init__.py" for d in missing])


def test_the_checker_sees_violations_it_must_report(tmp_path):
    """The walk itself: a back-pointing room, a circle through a function-level import, a test import."""
    imports = {
        "controlplane.api.a": [("controlplane.graph.model", 3), ("controlplane.api.b", 4)],
        "controlplane.api.b": [("controlplane.api.a", 9)],
        "controlplane.graph.model": [("controlplane.graph.view", 1), ("tests.support.envoy", 2)],
        "controlplane.graph.view": [],
        "controlplane.translate.x": [("controlplane.graph.view", 1), ("controlplane.graph.model", 2)],
        "controlplane.cli": [("controlplane.translate.x", 1)],
    }
    assert room_violations(imports) == [
        "controlplane.api.a:3 imports controlplane.graph.model (allowed: logs)",
        ("controlplane.translate.x:2 imports controlplane.graph.model "
        "(allowed: logs, api, graph.view, identity, xds.resources, xds.keepalive)")]
    assert cycles(imports) == ["circle among controlplane.api.a, controlplane.api.b"]
    assert imports_of_test_support(imports) == ["controlplane.graph.model:2 imports test-only tests.support.envoy"]
    source = tmp_path / "m.py"
    source.write_text("def late():\n    from .sibling import thing\n    import rich\n")
    assert list(imported_modules(source, "controlplane.api.m", {"controlplane.api.sibling"})) == [
        ("controlplane.api.sibling", 2), ("rich", 3)]
