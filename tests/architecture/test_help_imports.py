"""``atool --help`` must stay fast: no torch, no onnxruntime (DESIGN.md §2, backends import lazily).

Each case runs in a fresh interpreter, parses the command line with click
(``standalone_mode=False``, so help returns instead of exiting), then reports
which heavy modules ended up in ``sys.modules`` and which atool module pulled
each one in first, so a failure names the import to make lazy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "onnxruntime")

# Runs in the child. A meta-path finder sees the first import of each heavy module and
# remembers the chain of atool frames that asked for it; it finds nothing itself.
PROBE = r"""
import json, sys, traceback

HEAVY = set(json.loads(sys.argv[1]))
first = {}

class Spy:
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in HEAVY and top not in first:
            frames = [f for f in traceback.extract_stack() if "/atool/" in f.filename.replace("\\", "/")]
            chain = [f"{f.filename.replace(chr(92), '/').split('/atool/')[-1]}:{f.lineno}" for f in frames]
            first[top] = " -> ".join(chain) or "(outside atool)"
        return None

sys.meta_path.insert(0, Spy())

import contextlib, io
from atool.cli import main

buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    code = main.main(args=sys.argv[2:], prog_name="atool", standalone_mode=False)
loaded = sorted(m for m in HEAVY if m in sys.modules)
print(json.dumps({"code": code, "help": buf.getvalue(), "loaded": loaded, "first": {m: first.get(m, "?") for m in loaded}}))
"""


def _help(*args: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(HEAVY), *args], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, f"atool {' '.join(args)} failed:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [["--help"], ["query", "--help"]], ids=["atool", "atool-query"])
def test_help_imports_neither_torch_nor_onnxruntime(args):
    report = _help(*args)
    assert report["code"] in (0, None) and "Usage:" in report["help"], report
    if args == ["--help"]:
        assert "query" in report["help"]  # the commands are still listed
    else:
        assert "--strategy" in report["help"]
    assert not report["loaded"], (
        f"`atool {' '.join(args)}` imported {', '.join(report['loaded'])}; import chains (atool frames): "
        + "; ".join(f"{m}: {where}" for m, where in sorted(report["first"].items()))
    )


def test_the_probe_sees_a_heavy_import():
    """The probe must be able to fail: a command that does import torch is reported."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.replace("from atool.cli import main", "from atool.cli import main\nimport torch"),
         json.dumps(HEAVY), "--help"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "torch" in json.loads(proc.stdout.strip().splitlines()[-1])["loaded"]
