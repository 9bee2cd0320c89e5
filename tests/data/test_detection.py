"""Dataset auto-detection needs positive evidence, and every opened dataset says what it is.

The case from the field: a folder with images/ and labels/ (11 classes, values
0..10) but no classes.txt was read as GTA5, trained on two classes and scored a
high mIoU. It must now be refused in one line that names the fixes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from atool.core.errors import BadInput
from atool.data.adapters.gta5 import GTA5Dataset
from atool.data.adapters.registry import detect_kind, gta5_evidence, open_dataset
from atool.data.adapters.summary import label_stats, spread
from conftest import assert_one_line_error, run_cli

W, H = 64, 32


def _write(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", arr)
    assert ok
    path.write_bytes(buf.tobytes())


def make_pair_folder(root: Path, high: int, n: int = 3, seed: int = 0, fill: int | None = None) -> Path:
    """images/ + labels/ (no classes.txt), labels uniform in 0..high (or all ``fill``)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        _write(root / "images" / f"{i:03d}.png", rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        label = np.full((H, W), fill, np.uint8) if fill is not None else rng.integers(0, high + 1, (H, W), dtype=np.uint8)
        _write(root / "labels" / f"{i:03d}.png", label)
    return root


def test_eleven_class_folder_without_classes_txt_is_refused(tmp_path):
    root = make_pair_folder(tmp_path / "mine", high=10)
    ok, seen = gta5_evidence(root)
    assert not ok and "0..10" in seen and "ignored" in seen
    with pytest.raises(BadInput) as exc:
        detect_kind(root)
    msg = str(exc.value)
    assert "\n" not in msg and "add classes.txt" in msg and f"folder:{root}" in msg and f"gta5:{root}" in msg


def test_train_cli_refuses_and_does_not_train(tmp_path):
    """The must-show case, through `atool train`: one line naming classes.txt and the kind prefixes; no checkpoint."""
    root = make_pair_folder(tmp_path / "mine", high=10)
    (tmp_path / "classes.txt").write_text("".join(f"c{i}\n" for i in range(11)))  # one level up, as in the report
    out = tmp_path / "run" / "model.pt"
    r = run_cli("train", "source", "--source", root, "--out", out, "--iters", "2", "--batch-size", "2", "--crop", "32x32")
    assert_one_line_error(r, 2, "add classes.txt")
    for needle in ("folder:", "gta5:", "one level up"):
        assert needle in r.stderr, r.stderr
    assert not out.exists() and not list(tmp_path.glob("run/**/*.pt"))
    # With classes.txt in place the same folder is a folder dataset, read as 11 classes.
    (root / "classes.txt").write_text("".join(f"c{i}\n" for i in range(11)))
    assert detect_kind(root) == "folder"


def test_trainid_labels_are_not_gta5(tmp_path):
    """Labels already in trainIds (0..18 and 255) fall outside the Cityscapes id range."""
    root = make_pair_folder(tmp_path / "tid", high=18)
    label = cv2.imread(str(root / "labels" / "000.png"), cv2.IMREAD_UNCHANGED)
    label[:4] = 255
    _write(root / "labels" / "000.png", label)
    ok, seen = gta5_evidence(root)
    assert not ok and "beyond the Cityscapes ids" in seen


def test_real_looking_gta5_is_detected_and_logged(tmp_path, caplog):
    root = make_pair_folder(tmp_path / "GTA5", high=0, fill=7)  # all road
    label = np.full((H, W), 23, np.uint8)  # sky
    label[:, :8] = 0  # some unlabeled
    _write(root / "labels" / "001.png", label)
    with caplog.at_level(logging.INFO, logger="atool.data"):
        ds = open_dataset(root)
    assert type(ds) is GTA5Dataset
    text = caplog.text
    assert "detected kind gta5" in text and "kind gta5, 19 classes (road" in text and "ignored pixels" in text
    stats = label_stats(ds)
    assert stats.sampled == 3 and stats.ignored == H * 8


def test_explicit_gta5_prefix_reads_but_warns(tmp_path, caplog):
    root = make_pair_folder(tmp_path / "mine", high=10)
    with caplog.at_level(logging.INFO, logger="atool.data"):
        ds = open_dataset(f"gta5:{root}")
    assert type(ds) is GTA5Dataset  # the user said so
    warn = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warn and "map to ignore" in warn[0].getMessage()


def test_folder_summary_reports_ignored_share(tmp_path, caplog):
    root = make_pair_folder(tmp_path / "f", high=0, fill=255, n=2)
    (root / "classes.txt").write_text("a\nb\n")
    with caplog.at_level(logging.INFO, logger="atool.data"):
        open_dataset(root)
    assert "kind folder, 2 classes (a, b), 2 of 2 image(s) labeled, ignored pixels 100.0%" in caplog.text


def test_spread_sample():
    assert spread(list(range(3))) == [0, 1, 2]
    picked = spread(list(range(100)), 8)
    assert len(picked) == 8 and picked[0] == 0 and picked[-1] == 99 and picked == sorted(picked)


def test_eval_cli_logs_dataset_summary(synth_pair, tiny_checkpoint):
    r = run_cli("eval", "--checkpoint", tiny_checkpoint, "--data", synth_pair / "target_val", "--json")
    assert r.exit_code == 0, r.output
    assert "kind folder" in r.stderr and "ignored pixels" in r.stderr
