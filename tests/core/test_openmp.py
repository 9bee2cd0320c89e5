"""OMP_WAIT_POLICY: defaulted to PASSIVE by the commands that run decode threads beside torch, never overriding the user."""

from __future__ import annotations

import os
import subprocess
import sys

from atool.core.openmp import ENV, passive_openmp_waits


def test_defaults_to_passive_and_keeps_a_users_value(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    passive_openmp_waits()
    assert os.environ[ENV] == "PASSIVE"
    monkeypatch.setenv(ENV, "ACTIVE")
    passive_openmp_waits()
    assert os.environ[ENV] == "ACTIVE"


def test_says_whether_torch_will_read_it(monkeypatch):
    # torch is imported in this test process already; a fresh one imports it only after.
    monkeypatch.delenv(ENV, raising=False)  # and restored afterwards: later tests' subprocesses see the suite's own value
    assert passive_openmp_waits() is False
    code = (
        "from atool.core.openmp import passive_openmp_waits; first = passive_openmp_waits(); import torch, os; "
        "print(first, os.environ['OMP_WAIT_POLICY'])"
    )
    env = {k: v for k, v in os.environ.items() if k != ENV}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True)
    assert out.stdout.split() == ["True", "PASSIVE"]


def test_query_and_bench_commands_set_it():
    """Both run decode threads beside torch; bench's spawned children inherit the setting from its process."""
    env = {k: v for k, v in os.environ.items() if k != ENV}
    for argv in (["query", "--model", "missing.pt", "--images", "."], ["bench", "--model", "missing.pt", "--images", "."]):
        code = (
            f"import sys, os; from atool.cli import main; sys.argv = ['atool'] + {argv!r}\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\nprint('policy', os.environ.get('OMP_WAIT_POLICY'))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        assert out.stdout.split()[-2:] == ["policy", "PASSIVE"], argv[0] + ": " + out.stdout + out.stderr
