"""A 2-process ``torchrun`` query (gloo, CPU) writes the single-process run's bytes, apart from ``created``.

Slow: torchrun starts two fresh Python processes that each import torch.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    from atool.core.checkpoint import save_checkpoint
    from atool.data.synth import SYNTH_CLASSES
    from atool.models import build_model

    root = tmp_path_factory.mktemp("dist")
    torch.manual_seed(0)
    save_checkpoint(root / "m.pt", model=build_model("lraspp_mobilenet_v3_small", num_classes=len(SYNTH_CLASSES)),
                    model_name="lraspp_mobilenet_v3_small", model_args={}, classes=SYNTH_CLASSES, step=0)
    rng = np.random.default_rng(0)
    (root / "images" / "sub").mkdir(parents=True)
    for i in range(13):  # odd: the ranks' shards differ in size
        h, w = (32, 48) if i % 3 else (48, 32)  # two sizes: batches break where the size changes
        cv2.imwrite(str(root / "images" / ("sub" if i % 4 == 0 else "") / f"i{i:02d}.png"),
                    rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    (root / "images" / "broken.png").write_bytes(b"not a png")
    return root


def _without_created(path: Path) -> dict:
    data = json.loads(path.read_text())
    data.pop("created")
    return data


@pytest.mark.parametrize("budget", [["--budget", "25"], ["--per-image", "--budget", "6"]], ids=["total", "per-image"])
def test_torchrun_two_processes_equal_one(pool, tmp_path, budget):
    args = ["query", "--model", str(pool / "m.pt"), "--images", str(pool / "images"), "--strategy", "entropy", *budget,
            "--seed", "3", "--workers", "1", "--batch-size", "2"]
    single = tmp_path / "single.json"
    assert run_cli(*args, "--out", single).exit_code == 0
    dist = tmp_path / "dist.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
         "-m", "atool.cli", "-v", *args, "--out", str(dist)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "rank 1 of 2" in r.stderr and "rank 0 of 2" in r.stderr  # the distributed environment was detected and logged
    assert r.stdout.count("-> ") == 1  # rank 0 alone reports (and writes)
    got, want = _without_created(dist), _without_created(single)
    assert got["budget"]["used"] > 0 and got["skipped"] and got["stats"]["images_processed"] == 13
    assert got == want
    assert json.dumps(got, sort_keys=False) == json.dumps(want, sort_keys=False)  # same order too: same bytes
    assert not list(tmp_path.glob("*.partial-state*"))
