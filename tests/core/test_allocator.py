"""Kept freed memory: large tensors freed and allocated again cost no new page faults (glibc only)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from atool.core.allocator import wanted

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc tunables (Linux with glibc only)"
)

# 64 MB, above glibc's largest mmap threshold (32 MB): by default every allocation is a fresh mapping.
_PROBE = """
import json, resource, sys
from atool.core.allocator import keep_freed_memory
import torch
applied = keep_freed_memory()
def faults_for_one_step():
    # Two 64 MB tensors per step, as a batch's logits and probabilities are; torch asks malloc
    # directly (no huge-page advice, unlike numpy).
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(16 << 20)
    y = x * 2
    del x, y
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
# The heap settles over the first few steps (glibc sorts the freed blocks into its bins, and a
# step now and then still grows it): the fewest faults over the last four steps shows whether
# freed blocks are reused at all.
faults = [faults_for_one_step() for _ in range(8)]
print(json.dumps({"applied": applied, "faults": min(faults[4:])}))
"""


def _probe(keep: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "ATOOL_KEEP_FREED_MEMORY"}
    if keep is not None:
        env["ATOOL_KEEP_FREED_MEMORY"] = keep
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc_only
def test_a_freed_block_is_reused_without_page_faults():
    kept = _probe(None)
    default = _probe("0")
    assert kept["applied"] is True and default["applied"] is False
    pages = 2 * (64 << 20) // 4096
    assert default["faults"] > pages // 2  # glibc's default maps and zeroes both tensors afresh
    assert kept["faults"] < pages // 20


@glibc_only
def test_the_command_line_keeps_freed_memory():
    out = subprocess.run([sys.executable, "-c", "from atool.cli import main; import atool.core.allocator as a; "
                          "main(['query', '--help'], standalone_mode=False); print(a._applied)"],
                         capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.parametrize("value, on", [(None, True), ("1", True), ("yes", True), ("0", False), ("false", False), (" Off ", False), ("no", False)])
def test_the_switch_reads_common_spellings_of_off(value, on):
    assert wanted(value) is on
