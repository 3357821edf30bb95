"""The import graph of the product code, read from the source (no import runs): no cycles in
``tunnel`` or ``gateway``, ``tunnel`` never imports ``gateway``, and each layer of the tunnel
knows only the ones below it (carrier -> security -> HTTP/2; the roles on top)."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: What each tunnel folder may import from the tunnel, besides its own folder and the leaves
#: every layer shares (config, errors, the describer, the sans-IO header rules).
SHARED = {"tunnel.config", "tunnel.config_table", "tunnel.errors", "tunnel.describe"}
LAYERS: Mapping[str, set[str]] = {
    "tunnel.carrier": set(),
    "tunnel.security": {"tunnel.carrier"},
    "tunnel.h2": {"tunnel.carrier", "tunnel.security", "tunnel.headers"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: str) -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}


def _known(name: str, known: set[str]) -> str | None:
    """``name`` or the closest package above it that is one of ``known``."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imported(path: Path, known: set[str]) -> Iterator[str]:
    """The modules of ``known`` that ``path`` imports (``from a import b`` counts as ``a.b``
    when that is a module, else ``a``), at any depth of the file (lazy imports too)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path.parent)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if (found := _known(name, known)) is not None:
                yield found


def graph(package: str, extra: tuple[str, ...] = ()) -> dict[str, set[str]]:
    found = modules(package)
    for other in extra:
        found |= modules(other)
    known = set(found)
    return {
        name: {dep for dep in imported(path, known) if dep != name}
        for name, path in found.items()
        if name.split(".")[0] == package
    }


def find_cycle(edges: Mapping[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


@pytest.mark.parametrize("package", ["tunnel", "gateway"])
def test_no_import_cycles(package: str) -> None:
    edges = {k: {d for d in v if d.split(".")[0] == package} for k, v in graph(package).items()}
    assert find_cycle(edges) is None


def test_the_tunnel_never_imports_the_gateway() -> None:
    edges = graph("tunnel", extra=("gateway",))
    offenders = sorted(f"{m} -> {d}" for m, deps in edges.items() for d in deps if "gateway" in d)
    assert offenders == []


@pytest.mark.parametrize("package", ["tunnel", "gateway"])
def test_no_hidden_imports(package: str) -> None:
    """Every import is a statement the checks above can see: none through ``importlib``."""
    hidden = sorted(
        name for name, path in modules(package).items() if "importlib" in path.read_text("utf-8")
    )
    assert hidden == []


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_tunnel_layer_knows_only_the_ones_below(layer: str) -> None:
    allowed = {layer, *LAYERS[layer], *SHARED}
    edges = graph("tunnel")
    offenders = sorted(
        f"{m} -> {d}"
        for m, deps in edges.items()
        if m == layer or m.startswith(layer + ".")
        for d in deps
        if d != "tunnel" and not any(d == a or d.startswith(a + ".") for a in allowed)
    )
    assert offenders == []


def test_the_checker_sees_a_cycle_and_a_gateway_import() -> None:
    """The checks above can fail: a cycle and a forbidden import are found in a made-up graph."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    source = ROOT / "tunnel" / "h2" / "session.py"
    assert "tunnel.h2.stream" in set(imported(source, set(modules("tunnel"))))
