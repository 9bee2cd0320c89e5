"""``atool query --resume`` after a kill -9 at random moments gives the uninterrupted run's bytes.

The killed runs are real processes killed with SIGKILL. They are forked from a
forkserver that has already imported atool, so each starts in milliseconds
instead of paying for the torch import (and the runs' decoding, inference and
checkpointing are what the kills land in). The resumes run in this process
through the CLI.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from atool.active.resume import state_path
from conftest import assert_one_line_error, run_cli

N_IMAGES = 32
EVERY = 3

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _query_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["query", "--model", str(root / "m.pt"), "--images", str(root / "images"), "--out", str(out),
            "--checkpoint-every", str(EVERY), "--workers", "1", "--batch-size", "2", *extra]


def _child(args: list[str]) -> None:
    torch.set_num_threads(1)
    from atool.cli import main

    main(args, standalone_mode=False)


def _without_created(path: Path) -> dict:
    data = json.loads(path.read_text())
    data.pop("created")
    if "pseudo" in data:
        data["pseudo"].pop("dir")  # each run here writes its pseudo labels to a folder of its own
    return data


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    from atool.core.checkpoint import save_checkpoint
    from atool.data.synth import SYNTH_CLASSES
    from atool.models import build_model

    root = tmp_path_factory.mktemp("resume")
    torch.manual_seed(0)
    save_checkpoint(root / "m.pt", model=build_model("lraspp_mobilenet_v3_small", num_classes=len(SYNTH_CLASSES)),
                    model_name="lraspp_mobilenet_v3_small", model_args={}, classes=SYNTH_CLASSES, step=0)
    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    for i in range(N_IMAGES):
        cv2.imwrite(str(root / "images" / f"i{i:03d}.png"), rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    (root / "images" / "broken.png").write_bytes(b"not a png")  # a skip must survive a resume too
    return root


@pytest.mark.parametrize("scope", [[], pytest.param(["--per-image", "--strategy", "entropy_patch", "--pseudo-out", "PSEUDO"], marks=pytest.mark.slow),
                                   pytest.param(["--pseudo-out", "PSEUDO"], marks=pytest.mark.slow)],
                         ids=["total", "per-image-pseudo", "total-pseudo"])
def test_kill_9_then_resume_gives_the_same_bytes(pool, tmp_path, scope):
    kills = 5 if not scope else 3
    scope = [str(tmp_path / "pseudo_ref") if a == "PSEUDO" else a for a in scope]
    ref = tmp_path / "ref.json"
    assert run_cli(*_query_args(pool, ref, "--budget", "20", *scope)).exit_code == 0
    assert not state_path(ref).exists()  # removed once the list is written
    expected = _without_created(ref)

    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["atool.cli", "atool.workflows.query", "atool.runtime.backends", "torch"])
    warm = ctx.Process(target=int)  # starts the forkserver (and its imports) outside the timed runs
    warm.start()
    warm.join()
    rng = np.random.default_rng(1234)
    mid_run = after_write = 0
    duration = None
    k = 0
    # At least ``kills`` kills; a few more if none landed between two checkpoints (a load spike).
    while k < kills or (mid_run == 0 and k < kills + 4):
        k += 1
        out = tmp_path / f"q{k}.json"
        extra = [str(tmp_path / f"pseudo{k}") if a.startswith(str(tmp_path / "pseudo_ref")) else a for a in scope]
        proc = ctx.Process(target=_child, args=(_query_args(pool, out, "--budget", "20", *extra),))
        t0 = time.perf_counter()
        if duration is None:  # one whole run, to know over how long to spread the kills
            proc.start()
            first_state = None
            while proc.is_alive():
                if first_state is None and state_path(out).exists():
                    first_state = time.perf_counter() - t0
                time.sleep(0.005)
            proc.join()
            duration = time.perf_counter() - t0
            first_state = first_state if first_state is not None else 0.5 * duration
            out.unlink()
            proc = ctx.Process(target=_child, args=(_query_args(pool, out, "--budget", "20", *extra),))
            t0 = time.perf_counter()
        proc.start()
        # Mostly between the first checkpoint and the end (where resuming has work to skip), some before.
        time.sleep(first_state + float(rng.uniform(-0.1, 0.75)) * (duration - first_state))
        try:
            os.kill(proc.pid, 9)
        except ProcessLookupError:  # it finished first (a loaded machine): still a valid moment
            pass
        proc.join()
        if out.exists():  # killed after the rename: the file is whole, never partial
            assert _without_created(out) == expected
            after_write += 1
        else:
            mid_run += state_path(out).exists()
        r = run_cli(*_query_args(pool, out, "--budget", "20", "--resume", *extra))
        assert r.exit_code == 0, r.output
        assert _without_created(out) == expected
        assert not state_path(out).exists()
        if "--pseudo-out" in extra:
            ref_dir, got_dir = tmp_path / "pseudo_ref", tmp_path / f"pseudo{k}"
            for png in ref_dir.glob("*.png"):
                assert np.array_equal(cv2.imread(str(png), cv2.IMREAD_UNCHANGED), cv2.imread(str(got_dir / png.name), cv2.IMREAD_UNCHANGED))
    print(f"kill -9 then --resume: {k} kills, {mid_run} between checkpoints, {after_write} after the write, "
          f"{k - mid_run - after_write} before the first checkpoint; all {k} resumed to the same bytes")
    assert mid_run >= 1, "no kill landed between two checkpoints; the machine may be too loaded to test this"


def test_resume_with_other_arguments_is_refused(pool, tmp_path):
    from atool.active.query import QueryConfig, run_query

    out = tmp_path / "q.json"
    # The state a cut-off run leaves: run_query checkpoints; only query_to_file removes the state after writing.
    run_query(pool / "m.pt", pool / "images", QueryConfig(budget=5, workers=0), checkpoint_to=out, checkpoint_every=EVERY)
    assert state_path(out).is_file() and not out.exists()
    r = run_cli(*_query_args(pool, out, "--budget", "6", "--resume"))
    assert_one_line_error(r, 2, "different config")
    assert state_path(out).is_file()  # refused: the state is left for the right command
    r = run_cli(*_query_args(pool, out, "--budget", "5", "--resume"))
    assert r.exit_code == 0, r.output
    assert not state_path(out).exists()
