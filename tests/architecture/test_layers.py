"""Architecture: the package's layers, read from the source with ``ast`` (nothing is imported).

Every ``import atool.x`` / ``from atool.x import`` / relative import, at module
level or inside a function (lazy imports count: they run sooner or later), is
mapped to the top-level subpackage it names. A module may import only from a
strictly lower layer or from its own subpackage; the subpackages of one layer
never import each other. ``atool/cli.py`` belongs to ``commands``; the root
``atool/__init__.py`` holds the version and imports nothing of atool, so any
module may read ``atool.__version__``. ``tools/`` scripts import atool, never
the other way round.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "atool"

LAYERS = [["core"], ["ops"], ["data"], ["models"], ["eval"], ["train", "export", "runtime"], ["active"], ["annotate"],
          ["monitor"], ["workflows"], ["commands"]]
# Top-level modules of the package that belong to a subpackage's layer.
MODULE_HOME = {"cli": "commands"}
# What the root __init__ may import: nothing of atool but a version module, and the stdlib's metadata reader.
ROOT_ALLOWED = ("__future__", "importlib.metadata")


@dataclass(frozen=True)
class Edge:
    """One import statement: ``file`` (relative to the package's parent) line ``line`` imports ``target``."""

    file: str
    line: int
    source: str  # the importing module's subpackage ("" for the package root)
    target: str  # full dotted name, e.g. "atool.annotate.formats"


def module_name(path: Path, package_dir: Path) -> str:
    rel = path.relative_to(package_dir.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str | None:
    """``from ..x import y`` inside ``module`` -> the absolute name of ``..x`` (None if it climbs out)."""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    if level - 1 > len(parts) - 1:
        return None
    base = parts[: len(parts) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imported_names(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module name imported anywhere in ``tree`` (including ``importlib.import_module("x")``), with its line.

    ``from P import a, b`` yields ``P.a`` and ``P.b``: ``a`` may be a submodule, and the
    subpackage mapping only looks at the first two components anyway.
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                resolved = _resolve_relative(module, is_package, node.level, node.module)
                base = resolved if resolved is not None else "." * node.level + base
            if base == module.split(".")[0] or not node.module and node.level:
                # ``from atool import x`` / ``from . import x``: x may be a subpackage.
                found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*")
            else:
                found.append((node.lineno, base))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def collect_edges(package_dir: Path) -> list[Edge]:
    """Imports of the package's own modules, from every ``.py`` file under ``package_dir``."""
    pkg = package_dir.name
    edges = []
    for path in sorted(package_dir.rglob("*.py")):
        module = module_name(path, package_dir)
        parts = module.split(".")
        source = MODULE_HOME.get(parts[1], parts[1]) if len(parts) > 1 else ""
        if len(parts) == 2 and path.name != "__init__.py" and parts[1] not in MODULE_HOME:
            source = "?" + parts[1]  # a loose top-level module: not in any layer
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        rel = path.relative_to(package_dir.parent).as_posix()
        for line, name in imported_names(tree, module, path.name == "__init__.py"):
            if name == pkg or name.startswith(pkg + ".") or name.startswith("."):
                edges.append(Edge(rel, line, source, name))
    return edges


def _subpackage(target: str) -> str:
    parts = target.split(".")
    if len(parts) < 2 or parts[1].startswith("__"):
        return ""  # the root: its __version__
    return MODULE_HOME.get(parts[1], parts[1])


def layer_violations(package_dir: Path, layers: list[list[str]] = LAYERS) -> list[str]:
    """``file:line imports X (layer N -> layer M)`` for every import that does not run downwards."""
    layer_of = {name: i for i, group in enumerate(layers) for name in group}
    problems = []
    for e in collect_edges(package_dir):
        if e.target.startswith("."):
            problems.append(f"{e.file}:{e.line} imports {e.target} (relative import climbs out of the package)")
            continue
        if e.source == "":
            # The root __init__: only a version module of its own.
            if not e.target.rsplit(".", 1)[-1].lstrip("_").startswith("version"):
                problems.append(f"{e.file}:{e.line} imports {e.target} (the package root may import nothing but the version)")
            continue
        if e.source.startswith("?"):
            problems.append(f"{e.file}:{e.line} is a top-level module outside every layer (move it into a subpackage)")
            continue
        dst = _subpackage(e.target)
        if dst == "" or dst == e.source:
            continue
        if e.source not in layer_of:
            problems.append(f"{e.file}:{e.line} is in subpackage {e.source!r}, which no layer lists")
            continue
        if dst not in layer_of:
            problems.append(f"{e.file}:{e.line} imports {e.target} (subpackage {dst!r} is in no layer)")
            continue
        src_layer, dst_layer = layer_of[e.source], layer_of[dst]
        if dst_layer >= src_layer:
            problems.append(f"{e.file}:{e.line} imports {e.target} (layer {src_layer} -> layer {dst_layer})")
    return sorted(set(problems), key=lambda s: (s.split(":")[0], int(s.split(":")[1].split()[0])))


def root_import_violations(package_dir: Path) -> list[str]:
    """The root ``__init__.py`` holds the version: no imports (of atool or anything heavy) at all."""
    init = package_dir / "__init__.py"
    tree = ast.parse(init.read_text(encoding="utf-8"))
    bad = []
    for line, name in imported_names(tree, package_dir.name, True):
        version_module = name.startswith(package_dir.name + ".") and name.rsplit(".", 1)[-1].lstrip("_").startswith("version")
        if name not in ROOT_ALLOWED and not version_module:
            bad.append(f"{init.relative_to(package_dir.parent).as_posix()}:{line} imports {name}")
    return bad


def subpackage_cycles(package_dir: Path) -> list[list[str]]:
    """Cycles in the subpackage import graph (each as a closed path, smallest rotation first)."""
    graph: dict[str, set[str]] = {}
    for e in collect_edges(package_dir):
        dst = _subpackage(e.target)
        if e.source and not e.source.startswith("?") and dst and dst != e.source:
            graph.setdefault(e.source, set()).add(dst)
    cycles: set[tuple[str, ...]] = set()

    def walk(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                cycle = path[path.index(nxt):]
                k = cycle.index(min(cycle))
                cycles.add(tuple(cycle[k:] + cycle[:k]))
            elif len(path) < len(graph) + 1:
                walk(nxt, path + [nxt])

    for start in sorted(graph):
        walk(start, [start])
    return [list(c) + [c[0]] for c in sorted(cycles)]


def forbidden_imports(package_dir: Path, scripts_dir: Path) -> list[str]:
    """Imports of the ``tools/`` scripts (as ``tools.x`` or by their own module name) or of the tests."""
    names = {"tools", "tests", "conftest"} | {p.stem for p in scripts_dir.glob("*.py")}
    bad = []
    for path in sorted(package_dir.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, name in imported_names(tree, module_name(path, package_dir), path.name == "__init__.py"):
            if name.split(".")[0] in names:
                bad.append(f"{path.relative_to(package_dir.parent).as_posix()}:{line} imports {name}")
    return bad


def _legend(layers: list[list[str]]) -> str:
    return "; ".join(f"{i}: {', '.join(g)}" for i, g in enumerate(layers))


# ------------------------------------------------------------------ the real package


def test_every_subpackage_is_in_a_layer():
    layered = {name for group in LAYERS for name in group}
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    loose = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"} - set(MODULE_HOME)
    assert subpackages <= layered, f"subpackages in no layer: {sorted(subpackages - layered)}; add them to LAYERS"
    assert not loose, f"top-level modules outside every layer: {sorted(loose)}"


def test_imports_run_down_the_layers():
    problems = layer_violations(PACKAGE)
    assert not problems, (
        f"{len(problems)} import(s) against the layers ({_legend(LAYERS)}); a module may import only from a lower "
        "layer or its own subpackage:\n" + "\n".join(problems)
    )


def test_no_import_cycle_between_subpackages():
    cycles = subpackage_cycles(PACKAGE)
    assert not cycles, "subpackage import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_root_init_imports_nothing_but_the_version():
    bad = root_import_violations(PACKAGE)
    assert not bad, "atool/__init__.py must hold only the version:\n" + "\n".join(bad)


def test_tools_scripts_are_never_imported_by_atool():
    bad = forbidden_imports(PACKAGE, REPO / "tools")
    assert not bad, "atool imports scripts or tests (they import atool, not the other way round):\n" + "\n".join(bad)


def test_the_walk_sees_lazy_imports():
    """Guards the checker against silently reading too little: every function-level atool import is an edge."""
    edges = {(e.file, e.line) for e in collect_edges(PACKAGE)}
    assert len({f for f, _ in edges}) > 20
    lazy = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("atool")):
                        lazy.add((path.relative_to(REPO).as_posix(), node.lineno))
    assert lazy, "no function-level import found in atool: the walk itself is suspect"
    assert lazy <= edges, f"lazy imports missed: {sorted(lazy - edges)[:5]}"


# ------------------------------------------------------------------ the checker itself


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "atool"


@pytest.fixture
def synthetic(tmp_path) -> Path:
    """A tiny package with one clean downward import and four kinds of breakage."""
    return _write(tmp_path, {
        "atool/__init__.py": '__version__ = "0"\n',
        "atool/core/__init__.py": "",
        "atool/core/fine.py": "import os\nfrom atool.core import other\n",
        "atool/core/other.py": "",
        "atool/models/__init__.py": "",
        # lazy upward import, four lines down
        "atool/core/lazy.py": "import os\n\n\ndef f():\n    from atool.models import net\n    return net\n",
        # relative upward import: ..models from inside atool.data
        "atool/data/__init__.py": "from atool.core.fine import os  # downward: fine\n",
        "atool/data/rel.py": "\nfrom ..models import net\n",
        "atool/models/net.py": "",
        # siblings of one layer
        "atool/train/__init__.py": "",
        "atool/train/uses_export.py": "import atool.export.onnx\n",
        "atool/export/__init__.py": "",
        "atool/export/onnx.py": "from atool import __version__\nimport importlib\nm = importlib.import_module('atool.commands.x')\n",
        "atool/commands/__init__.py": "",
        "atool/commands/x.py": "import tools.bench\nfrom atool.workflows import demo\n",
        "tools/bench.py": "import atool\n",
    })


def test_checker_reports_every_kind_of_violation(synthetic):
    problems = layer_violations(synthetic)
    assert "atool/core/lazy.py:5 imports atool.models (layer 0 -> layer 3)" in problems
    assert "atool/data/rel.py:2 imports atool.models (layer 2 -> layer 3)" in problems
    assert "atool/train/uses_export.py:1 imports atool.export.onnx (layer 5 -> layer 5)" in problems
    assert "atool/export/onnx.py:3 imports atool.commands.x (layer 5 -> layer 10)" in problems
    assert len(problems) == 4, problems  # the downward and own-subpackage imports are fine, and so is __version__


def test_checker_finds_cycles_and_tools(synthetic):
    assert subpackage_cycles(synthetic) == []
    (synthetic / "models" / "back.py").write_text("def g():\n    import atool.core.fine\n")
    assert subpackage_cycles(synthetic) == [["core", "models", "core"]]
    assert forbidden_imports(synthetic, synthetic.parent / "tools") == ["atool/commands/x.py:1 imports tools.bench"]


def test_checker_guards_the_root_and_unknown_places(synthetic):
    assert root_import_violations(synthetic) == []
    (synthetic / "__init__.py").write_text('import torch\nfrom atool._version import __version__\nfrom .core import fine\n')
    assert root_import_violations(synthetic) == ["atool/__init__.py:1 imports torch", "atool/__init__.py:3 imports atool.core"]
    (synthetic / "plugins").mkdir()
    (synthetic / "plugins" / "__init__.py").write_text("from atool.core import fine\n")
    (synthetic / "helpers.py").write_text("from . import core\n")
    problems = layer_violations(synthetic)
    assert "atool/plugins/__init__.py:1 is in subpackage 'plugins', which no layer lists" in problems
    assert "atool/__init__.py:3 imports atool.core (the package root may import nothing but the version)" in problems
    assert "atool/helpers.py:1 is a top-level module outside every layer (move it into a subpackage)" in problems
