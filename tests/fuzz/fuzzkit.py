"""Shared pieces of the fuzz tests: the two suite sizes, byte and JSON mutators, a case counter.

Every fuzz property is written once as ``check(...)`` and turned into two
tests by ``fuzz_tests``: the default one (``n`` examples, part of the ~1,000
cases of the default suite) and a ``slow``-marked one with ``SLOW_FACTOR``
times as many (~10,000 in all). Examples are derandomized, so CI sees the
same cases on every run, and no example database is written.
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SLOW_FACTOR = 10
# Cases run, per suite ("default" / "slow") and per check; printed at the end of the session.
CASES: Counter[str] = Counter()


@pytest.fixture(scope="session", autouse=True)
def fuzz_case_count(request):
    """Print the cases run, per suite and per check, when the session ends (import it into each fuzz module)."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not CASES or CASES["printed"]:
        return
    CASES["printed"] = 1  # the fixture is imported into several modules: print once
    suites = ", ".join(f"{suite} {CASES[suite]}" for suite in ("default", "slow") if CASES[suite])
    with capture.global_and_fixture_disabled():
        reporter.write_line(f"\nfuzz cases run: {suites}")
        for key, count in sorted(CASES.items()):
            if ":" in key and key != "printed":
                reporter.write_line(f"  {key}: {count}")


def scratch_dir(prefix: str) -> Path:
    """A temp folder for one module's cases, in memory where the system has one: atool's writes
    fsync (crash safety), which on a disk costs more than the case itself."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def fuzz_tests(check: Callable[..., None], *strategies: st.SearchStrategy, n: int) -> tuple[Callable, Callable]:
    """(default test, slow test) running ``check`` on ``n`` / ``n * SLOW_FACTOR`` generated examples."""

    def build(count: int, suite: str) -> Callable:
        @settings(
            max_examples=count, deadline=None, derandomize=True, database=None, print_blob=False,
            suppress_health_check=list(HealthCheck),
        )
        @given(st.tuples(*strategies))
        def test(args: tuple) -> None:
            CASES[suite] += 1
            CASES[f"{suite}:{check.__name__}"] += 1
            check(*args)

        test.__name__ = f"test_{check.__name__}{'_slow' if suite == 'slow' else ''}"
        return pytest.mark.slow(test) if suite == "slow" else test

    return build(n, "default"), build(n * SLOW_FACTOR, "slow")


# ------------------------------------------------------------------ bytes


_BYTE_OP = st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "repeat"]), st.integers(0, 1 << 30), st.integers(0, 255))


def apply_byte_ops(seed: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    data = bytearray(seed)
    for op, pos, value in ops:
        at = pos % (len(data) + 1)
        if op == "flip" and data:
            data[at % len(data)] ^= 1 << (value % 8)
        elif op == "set" and data:
            data[at % len(data)] = value
        elif op == "insert":
            data[at:at] = bytes([value]) * (1 + value % 4)
        elif op == "delete":
            del data[at : at + 1 + value % 16]
        elif op == "truncate":
            del data[at:]
        elif op == "repeat":
            data[at:at] = data[at : at + 1 + value % 32]
    return bytes(data)


def mutated_bytes(*seeds: bytes, max_ops: int = 6) -> st.SearchStrategy[bytes]:
    """A seed file with a few flips, inserts, deletions or a truncation; sometimes plain random bytes."""
    mutants = st.tuples(st.sampled_from(seeds), st.lists(_BYTE_OP, min_size=1, max_size=max_ops)).map(lambda t: apply_byte_ops(*t))
    return st.one_of(mutants, mutants, mutants, st.binary(max_size=256))


# ------------------------------------------------------------------ JSON


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12), st.sampled_from(["", "..", "../x.png", "/etc/passwd", "a.png", "car", "road", "nan", "1e309"]),
)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=6)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(_paths(v, prefix + (k,)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_paths(v, prefix + (i,)))
    return out


def apply_json_edits(doc: Any, edits: list[tuple[str, int, Any]]) -> Any:
    """Replace, delete or duplicate the nodes at the chosen paths (path index modulo the node count)."""
    doc = copy.deepcopy(doc)
    for op, index, value in edits:
        paths = _paths(doc)
        path = paths[index % len(paths)]
        if not path:
            doc = value if op == "replace" else doc
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        if op == "replace":
            parent[key] = value
        elif op == "delete":
            del parent[key]
        elif op == "duplicate" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
    return doc


def mutated_json(doc: Any, max_edits: int = 4) -> st.SearchStrategy[Any]:
    edit = st.tuples(st.sampled_from(["replace", "replace", "delete", "duplicate"]), st.integers(0, 1 << 16), json_values)
    return st.lists(edit, min_size=0, max_size=max_edits).map(lambda edits: apply_json_edits(doc, edits))
