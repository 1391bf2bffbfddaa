"""The layering, as the code obeys it: ``methods`` (rules, arch, configs, their errors) imports nothing of the
harness; ``bench`` (data, run, grid, records, CLI) builds on ``methods``; ``sweeps`` and ``reports`` build on
``bench``'s public modules (``sweeps`` may call the report, never the other way round). No import circle between
modules, no private name imported
across packages. Every import counts, at module level or inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("methods", "bench", "sweeps", "reports")
ALLOWED = {
    "methods": set(),
    "bench": {"methods"},
    "sweeps": {"bench", "methods", "reports"},
    "reports": {"bench", "methods"},
}
"""``sweeps`` may end a tuning run with the report (``--tune``); ``reports`` never needs the sweeps."""


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            parts = f.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = f
    return out


def _runtime_nodes(tree: ast.AST):
    """Every node, except what sits under ``if TYPE_CHECKING:`` (annotations only: never imported at run time)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            test = getattr(child, "test", None) if isinstance(child, ast.If) else None
            if test is not None and "TYPE_CHECKING" in ast.unparse(test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def imports(path: Path, name: str, known: dict[str, Path]) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import of the file, resolved to project modules."""
    out = []
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            names = [a.name for a in node.names]
            subs = [f"{base}.{n}" for n in names if f"{base}.{n}" in known]
            out += [(s, [], node.lineno) for s in subs]
            rest = [n for n in names if f"{base}.{n}" not in known]
            if rest or not subs:
                out.append((base, rest, node.lineno))
    return [(m, n, line) for m, n, line in out if m.split(".")[0] in PACKAGES]


def test_packages_import_only_downwards():
    known = modules()
    bad = []
    for name, path in known.items():
        top = name.split(".")[0]
        for mod, _, line in imports(path, name, known):
            dep = mod.split(".")[0]
            if dep != top and dep not in ALLOWED[top]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_no_private_name_is_imported_across_packages():
    known = modules()
    bad = []
    for name, path in known.items():
        for mod, names, line in imports(path, name, known):
            if mod.split(".")[0] != name.split(".")[0]:
                private = [n for n in names if n.startswith("_")]
                if private or any(part.startswith("_") and part != "__init__" for part in mod.split(".")):
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {private or mod} from {mod}")
    assert not bad, "private names used across packages:\n" + "\n".join(bad)


def test_no_import_circle():
    known = modules()
    graph = {name: set() for name in known}
    for name, path in known.items():
        for mod, _, _ in imports(path, name, known):
            while mod and mod not in known:
                mod = mod.rpartition(".")[0]
            if mod and mod != name and not name.startswith(mod + ".") and not mod.startswith(name + "."):
                graph[name].add(mod)
    cycles, state = [], {}

    def visit(n: str, stack: list[str]) -> None:
        state[n] = 1
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                cycles.append(" -> ".join(stack[stack.index(m) :] + [m]))
            elif m not in state:
                visit(m, stack + [m])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    assert not cycles, "import circles:\n" + "\n".join(cycles)


FORBIDDEN = {
    "reports": ("bench.profiles", "bench.tuned", "bench.efficiency", "bench.grid", "bench.perf"),
    "bench.data": ("methods.base",),
}
"""Arrows that run the wrong way although the packages allow them: a report reads what the records (and the files
beside them) say, never today's grid profiles, the tuned-settings lookup or a probe that trains; the data pipeline
knows the loop's protocol (methods.steps), not a rule type."""


def test_forbidden_arrows():
    known = modules()
    bad = []
    for name, path in known.items():
        for src, targets in FORBIDDEN.items():
            if name != src and not name.startswith(src + "."):
                continue
            for mod, _, line in imports(path, name, known):
                if any(mod == t or mod.startswith(t + ".") for t in targets):
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    assert not bad, "imports that run the wrong way:\n" + "\n".join(bad)
