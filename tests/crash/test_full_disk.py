"""A full disk: writes past RLIMIT_FSIZE fail with EFBIG (as ENOSPC would), through the real CLI.

Each case first makes a good output, then runs the same command with a
file-size limit that its output cannot fit: the run must exit 1 with one line
saying the disk is full and naming the file, leave the earlier output
byte-for-byte as it was, and leave no temp file behind. The limit is set in
the child only, and its SIGXFSZ is left at the default (which kills the
process): a clean error shows that atool ignores the signal itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crash_harness import run, shared_zygote, temp_or_final, write_answers

TINY = ["--batch-size", "2", "--crop", "64x32"]


@pytest.fixture(scope="module")
def zygote():
    return shared_zygote()


def _snapshot(folder: Path) -> dict[Path, bytes]:
    temps, finals = temp_or_final(folder)
    assert not temps, temps
    return {p.relative_to(folder): p.read_bytes() for p in finals}


def _full_disk(zygote, folder: Path, args: list, limit: int, names: str) -> str:
    """Run ``args`` in ``folder`` (which holds a good output) under a ``limit``-byte file-size limit."""
    before = _snapshot(folder)
    assert before, "the good output to protect is missing"
    r = run(zygote, args, folder, folder.parent / "full", fsize=limit)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.code == 1, f"exit {r.code}: {r.stderr}"
    assert "Traceback" not in r.stderr
    assert lines[-1].startswith("atool: error: disk full writing"), r.stderr
    assert names in lines[-1], lines[-1]
    assert sum(line.startswith("atool: error:") for line in lines) == 1
    temps, _ = temp_or_final(folder)
    assert not temps, f"temp files left behind: {temps}"
    assert _snapshot(folder) == before, "the earlier output changed"
    return lines[-1]


def test_full_disk_writing_a_training_checkpoint(zygote, synth_pair, tmp_path):
    args = ["train", "source", "--source", synth_pair / "source", "--out", "m.pt", *TINY]
    good = run(zygote, [*args, "--iters", "1"], tmp_path, tmp_path / "good")
    assert good.code == 0, good.stderr
    # 64 KB: the resolved config would fit, the checkpoint (about 2 MB) does not.
    _full_disk(zygote, tmp_path, [*args, "--iters", "2", "--seed", "1"], 64_000, "m.pt")


def test_full_disk_writing_a_query_list(zygote, tiny_checkpoint, synth_pair, tmp_path):
    args = ["query", "--model", tiny_checkpoint, "--images", synth_pair / "target_train" / "images",
            "--budget", "100", "--per-image", "--strategy", "random", "--out", "q.json"]
    good = run(zygote, args, tmp_path, tmp_path / "good")
    assert good.code == 0, good.stderr
    assert (tmp_path / "q.json").stat().st_size > 8_000
    _full_disk(zygote, tmp_path, [*args, "--seed", "3"], 8_000, "q.json")


def test_full_disk_writing_ingest_output(zygote, tmp_path):
    old = write_answers(tmp_path / "old.json", 5, seed=1)
    new = write_answers(tmp_path / "new.json", 20, seed=0)
    work = tmp_path / "work"
    work.mkdir()
    good = run(zygote, ["ingest", old, "--out", "sparse"], work, tmp_path / "good")
    assert good.code == 0, good.stderr
    # Label PNGs of 64x32 are a few hundred bytes: none fits in 60.
    _full_disk(zygote, work, ["ingest", new, "--out", "sparse"], 60, "sparse")


@pytest.mark.slow
def test_full_disk_writing_an_onnx_export(zygote, tiny_checkpoint, tmp_path):
    args = ["export", "--checkpoint", tiny_checkpoint, "--out", "m.onnx", "--sample-size", "64x32", "--no-verify"]
    good = run(zygote, args, tmp_path, tmp_path / "good")
    assert good.code == 0, good.stderr
    (tmp_path / "m.onnx").write_bytes(b"an earlier model")  # must survive the failed export byte for byte
    _full_disk(zygote, tmp_path, args, 1_000_000, "m.onnx")
