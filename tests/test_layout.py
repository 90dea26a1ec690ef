"""The package's shape stays walkable: imports run one way, few modules at the top, short modules."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "logship"
MAX_LINES = 260   # the house rule says about 250
MAX_TOP = 8


def module_name(path: Path) -> str:
    """logship/render/record.py -> logship.render.record (a package is its __init__)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, modules: set[str]) -> set[str]:
    """The logship modules `path` imports, anywhere in it (type-only and deferred imports included)."""
    name, found = module_name(path), set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names)
    return {m for m in found if m in modules and m != name}


def graph() -> dict[str, set[str]]:
    """Each module's imports of other logship modules; a package's own __init__ edges are left out."""
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): {m for m in imported(p, modules) if not module_name(p).startswith(m + ".")}
            for p in paths}


def circle_from(start: str, edges: dict[str, set[str]]) -> list[str] | None:
    """A path of imports that leads from `start` back to it, if there is one."""
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for nxt in edges[node]:
            if nxt == start:
                return path + [start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return None


def test_no_module_imports_itself_back_through_others() -> None:
    edges = graph()
    circles = [c for c in (circle_from(m, edges) for m in sorted(edges)) if c]
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_at_most_eight_modules_sit_at_the_top_of_the_package() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(top) <= MAX_TOP, f"{len(top)} modules at the top of logship/: {top}"


def test_no_module_is_much_past_250_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules past {MAX_LINES} lines: {long}"


def test_each_output_kind_lives_in_its_own_folder() -> None:
    stray = [p.name for p in PACKAGE.rglob("*.py") if p.stem.startswith(("syslog", "file", "rotate", "logfile"))
             and p.parent.name not in ("file", "syslog")]
    assert not stray, f"output modules outside sinks/file and sinks/syslog: {stray}"
