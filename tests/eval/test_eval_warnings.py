"""`atool eval` says when its mIoU covers fewer classes than the model has.

The field case: labels that hold only a few of the model's classes gave an
"mIoU" over those few. The official number stays (it is the Cityscapes
convention), but a warning goes to stderr and into --json, and the mean over
all the model's classes is reported beside it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from atool.eval.metrics import SegMetrics
from conftest import run_cli


def test_metrics_coverage_fields():
    # class c has no GT and is never predicted (undefined IoU); b has no GT but is predicted (IoU 0)
    m = SegMetrics(["a", "b", "c"], np.array([[6, 2, 0], [0, 0, 0], [0, 0, 0]]))
    assert m.classes_without_gt == ["b", "c"] and m.classes_counted == 2
    assert np.isclose(m.miou, (0.75 + 0.0) / 2) and np.isclose(m.miou_all, 0.75 / 3)
    w = m.warnings("val")
    assert len(w) == 2 and "2 of the model's 3 classes have no ground-truth pixels in val (b, c)" in w[0]
    assert "averages only 2 of the model's 3 classes" in w[1] and "25.00" in w[1]
    d = m.as_dict()
    assert d["miou_all_classes"] == 25.0 and d["classes_counted"] == 2 and d["classes_without_gt"] == ["b", "c"]
    assert "mIoU (all 3)" in m.table()
    full = SegMetrics(["a", "b"], np.array([[3, 1], [1, 3]]))
    assert full.warnings() == [] and full.miou_all == full.miou and "all" not in full.table()


@pytest.fixture()
def two_class_val(tmp_path, synth_pair) -> Path:
    """The synthetic val set with its labels cut down to classes 0 and 1 (and ignore)."""
    root = tmp_path / "val2"
    shutil.copytree(synth_pair / "target_val", root)
    for path in (root / "labels").iterdir():
        label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        label = np.where(label == 255, 255, label % 2).astype(np.uint8)
        cv2.imwrite(str(path), label)
    return root


def test_eval_cli_warns_on_stderr_and_in_json(two_class_val, tiny_checkpoint):
    from atool.data.synth import SYNTH_CLASSES

    n = len(SYNTH_CLASSES)
    r = run_cli("eval", "--checkpoint", tiny_checkpoint, "--data", two_class_val, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    missing = SYNTH_CLASSES[2:]
    assert doc["classes_without_gt"] == missing
    assert len(doc["warnings"]) >= 1 and f"{n - 2} of the model's {n} classes have no ground-truth pixels" in doc["warnings"][0]
    assert doc["miou_all_classes"] <= doc["miou"]
    warn_lines = [line for line in r.stderr.splitlines() if line.startswith("atool: warning:")]
    assert any("no ground-truth pixels" in line for line in warn_lines)
    if doc["classes_counted"] < n:
        assert any(f"averages only {doc['classes_counted']} of the model's {n} classes" in line for line in warn_lines)
    # the table names the all-class mean when the official one leaves classes out
    r = run_cli("eval", "--checkpoint", tiny_checkpoint, "--data", two_class_val)
    assert r.exit_code == 0 and "atool: warning:" in r.stderr and "mIoU" in r.stdout


def test_eval_cli_no_warning_when_every_class_has_pixels(tmp_path, synth_pair, tiny_checkpoint):
    from atool.data.synth import SYNTH_CLASSES

    root = tmp_path / "all"
    shutil.copytree(synth_pair / "target_val", root)
    n = len(SYNTH_CLASSES)
    for i, path in enumerate(sorted((root / "labels").iterdir())):  # every class present in every label
        label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        label[0, :n] = np.arange(n, dtype=np.uint8)
        cv2.imwrite(str(path), label)
    r = run_cli("eval", "--checkpoint", tiny_checkpoint, "--data", root, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["classes_without_gt"] == [] and doc["warnings"] == [] and "atool: warning" not in r.stderr
    assert doc["classes_counted"] == n and doc["miou_all_classes"] == doc["miou"]


def test_eval_cli_skips_an_image_over_the_pixel_limit(two_class_val, tiny_checkpoint):
    first = sorted((two_class_val / "images").iterdir())[0]
    r = run_cli("eval", "--checkpoint", tiny_checkpoint, "--data", two_class_val, "--json", "--max-image-pixels", 100)
    assert r.exit_code == 2 and "no usable labeled image" in r.stderr and "over the limit of 0.0001 megapixels" in r.stderr
    h, w = cv2.imread(str(first)).shape[:2]
    r = run_cli("eval", "--checkpoint", tiny_checkpoint, "--data", two_class_val, "--json", "--max-image-pixels", h * w)
    assert r.exit_code == 0 and json.loads(r.stdout)["skipped"] == []
