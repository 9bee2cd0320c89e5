"""Frame capture: the quota is never exceeded, priorities decide, and SIGKILL leaves only whole files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from atool.core.errors import BadInput
from atool.monitor.capture import LIST_NAME, FrameCapture, parse_quota

MODEL = {"path": "m.pt", "sha256": "0" * 64, "backend": "torch"}
CLASSES = ["a", "b"]


def _dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.iterdir() if p.is_file())


def test_quota_is_never_exceeded_and_low_priority_goes_first(tmp_path):
    rng = np.random.default_rng(0)
    quota = 60_000
    cap = FrameCapture(tmp_path, quota, 50, MODEL, CLASSES, points=3)
    kept_scores = []
    for i in range(60):
        # Noise frames of varying size: PNG sizes from ~1 KB to ~12 KB.
        h = int(rng.integers(8, 64))
        rgb = rng.integers(0, 255, (h, 64, 3), dtype=np.uint8)
        score = float(rng.normal())
        if cap.offer(i, rgb, score, rng.random((h, 64))):
            kept_scores.append(score)
        assert _dir_bytes(tmp_path) <= quota
        assert len(list(tmp_path.glob("*.png"))) == len(cap.entries) <= 50
    doc = json.loads((tmp_path / LIST_NAME).read_text())
    listed = {e["image"] for e in doc["images"]}
    assert listed == {p.name for p in tmp_path.glob("*.png")}
    # What was evicted scored below everything still kept.
    kept = sorted(e["score"] for e in doc["images"])
    assert cap.evicted_total > 0 and kept[0] >= np.median(kept_scores) - 1.0
    assert doc["budget"]["used"] == sum(len(e["queries"]) for e in doc["images"])
    cap.close()


def test_max_count_and_tier(tmp_path):
    rng = np.random.default_rng(1)
    cap = FrameCapture(tmp_path, 10**7, 3, MODEL, CLASSES)
    for i in range(6):
        cap.offer(i, rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), float(i), rng.random((16, 16)))
    assert sorted(cap.entries) == ["f_00000003.png", "f_00000004.png", "f_00000005.png"]
    cap.offer(7, rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), -5.0, rng.random((16, 16)), tier=1)
    assert "f_00000007.png" in cap.entries and "f_00000003.png" not in cap.entries


def test_quota_too_small_and_sizes(tmp_path):
    cap = FrameCapture(tmp_path, 3000, 5, MODEL, CLASSES)
    with pytest.raises(BadInput, match="too small for one frame"):
        cap.offer(0, np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8), 1.0, np.ones((64, 64)))
    assert parse_quota("2GB") == 2 * 10**9 and parse_quota("1.5MiB") == 1572864 and parse_quota("700") == 700
    with pytest.raises(BadInput):
        parse_quota("lots")


_WRITER = textwrap.dedent("""
    import sys, numpy as np
    from atool.monitor.capture import FrameCapture
    cap = FrameCapture(sys.argv[1], 400_000, 20, {"path": "m", "sha256": "0" * 64, "backend": "torch"}, ["a", "b"])
    rng = np.random.default_rng(0)
    print("ready", flush=True)
    i = 0
    while True:
        cap.offer(i, rng.integers(0, 255, (96, 128, 3), dtype=np.uint8), float(rng.normal()), rng.random((96, 128)))
        i += 1
""")


def test_sigkill_during_capture_leaves_no_partial_file(tmp_path):
    root = tmp_path / "cap"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for delay in (0.6,):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(root)], stdout=subprocess.PIPE, env=env)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        visible = [p for p in root.iterdir() if not p.name.startswith(".")]
        doc = json.loads((root / LIST_NAME).read_text())  # whole and valid JSON
        for p in visible:
            if p.suffix == ".png":
                assert cv2.imread(str(p)) is not None, f"partial frame {p.name}"
        assert all((root / e["image"]).is_file() for e in doc["images"])
        # A restart removes temp files of the killed run and frames the list does not name.
        FrameCapture(root, 400_000, 20, {"path": "m", "sha256": "0" * 64, "backend": "torch"}, ["a", "b"]).close()
        assert not [p for p in root.iterdir() if p.name.startswith(".")]
        listed = {e["image"] for e in json.loads((root / LIST_NAME).read_text())["images"]}
        assert listed == {p.name for p in root.glob("*.png")}
