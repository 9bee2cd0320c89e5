"""Architecture: every loader of untrusted files is the safe one, read from the source with ``ast``.

* YAML only through ``yaml.safe_load`` / ``safe_load_all`` (no ``load``, ``full_load``,
  ``unsafe_load``, no ``Loader=`` classes);
* ``torch.load`` always with ``weights_only=True`` (a literal True);
* no ``pickle`` / ``marshal`` / ``shelve`` / ``dill``, no ``np.load(..., allow_pickle=True)``;
* XML parsed only through ``defusedxml``: from ``xml.*`` only writers' helpers and error types.

The checker itself is tested on snippets, so a rule that stopped matching would fail here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOTS = [REPO / "atool", REPO / "tools"]

UNSAFE_YAML = {"load", "load_all", "full_load", "full_load_all", "unsafe_load", "unsafe_load_all", "Loader", "FullLoader", "UnsafeLoader"}
PICKLERS = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib"}
# What may be imported from the standard library's XML packages: escaping for writers, and error types.
XML_SAFE_NAMES = {"quoteattr", "escape", "unescape", "ParseError", "Element", "SubElement", "tostring", "ElementTree", "indent"}


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def violations(source: str, where: str = "<snippet>") -> list[str]:
    """Every unsafe loader use in ``source``, as 'where:line: what'."""
    tree = ast.parse(source)
    found: list[str] = []

    def bad(node: ast.AST, what: str) -> None:
        found.append(f"{where}:{getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top in PICKLERS:
                    bad(node, f"imports {alias.name}")
                if top in ("xml", "lxml"):
                    bad(node, f"imports {alias.name} whole (parse XML with defusedxml)")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            top = module.split(".")[0]
            names = {a.name for a in node.names}
            if top in PICKLERS:
                bad(node, f"imports from {module}")
            if top == "yaml" and names & UNSAFE_YAML:
                bad(node, f"imports yaml.{sorted(names & UNSAFE_YAML)[0]}")
            if top == "torch" and module == "torch" and "load" in names:
                bad(node, "imports torch.load by name (call torch.load(..., weights_only=True))")
            if top in ("xml", "lxml") and names - XML_SAFE_NAMES:
                bad(node, f"imports {sorted(names - XML_SAFE_NAMES)[0]} from {module} (parse XML with defusedxml)")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "yaml" and node.attr in UNSAFE_YAML:
                bad(node, f"uses yaml.{node.attr}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
            owner, attr = node.func.value.id, node.func.attr
            kw = {k.arg: k.value for k in node.keywords}
            if owner == "torch" and attr == "load" and not _is_true(kw.get("weights_only")):
                bad(node, "torch.load without weights_only=True")
            if owner in ("np", "numpy") and attr == "load" and _is_true(kw.get("allow_pickle")):
                bad(node, "np.load(allow_pickle=True)")
    return found


def _sources() -> list[Path]:
    return sorted(p for root in ROOTS if root.is_dir() for p in root.rglob("*.py"))


def test_package_uses_only_safe_loaders():
    problems = [v for path in _sources() for v in violations(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))]
    assert not problems, "\n".join(problems)


def test_the_loaders_are_really_used_safely():
    """The rules are not vacuous: the package does load YAML and checkpoints, and safely."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in _sources())
    assert "yaml.safe_load(" in text and "weights_only=True" in text


@pytest.mark.parametrize(
    "snippet, what",
    [
        ("import yaml\nyaml.load(s)", "yaml.load"),
        ("import yaml\nyaml.load(s, Loader=yaml.FullLoader)", "yaml.load"),
        ("import yaml\nyaml.unsafe_load(s)", "yaml.unsafe_load"),
        ("from yaml import full_load", "yaml.full_load"),
        ("import torch\ntorch.load(p)", "weights_only"),
        ("import torch\ntorch.load(p, weights_only=False)", "weights_only"),
        ("import torch\ntorch.load(p, weights_only=flag)", "weights_only"),
        ("from torch import load", "torch.load by name"),
        ("import pickle", "pickle"),
        ("from joblib import load", "joblib"),
        ("import numpy as np\nnp.load(p, allow_pickle=True)", "allow_pickle"),
        ("import xml.etree.ElementTree as ET", "defusedxml"),
        ("from xml.etree.ElementTree import fromstring", "fromstring"),
        ("from xml.dom import minidom", "minidom"),
    ],
)
def test_checker_catches(snippet, what):
    found = violations(snippet)
    assert found and what in found[0], found


def test_checker_allows_the_safe_forms():
    ok = (
        "import yaml\nimport torch\nimport numpy as np\nyaml.safe_load(s)\nyaml.safe_dump(d)\n"
        "torch.load(p, map_location='cpu', weights_only=True)\nnp.load(p, allow_pickle=False)\n"
        "from xml.sax.saxutils import quoteattr, escape\nfrom xml.etree.ElementTree import ParseError\n"
        "from defusedxml.ElementTree import fromstring\n"
    )
    assert violations(ok) == []
