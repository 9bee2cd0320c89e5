"""Confusion matrix, IoU and mIoU by hand."""

from __future__ import annotations

import numpy as np

from atool.eval.confusion import confusion
from atool.eval.metrics import SegMetrics


def test_confusion_ignores_255_and_counts_pairs():
    label = np.array([[0, 0, 1, 255], [1, 2, 2, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 2], [1, 2, 0, 0]], np.uint8)
    m = confusion(pred, label, 3)
    assert m.sum() == 6
    assert m.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_iou_and_miou_match_hand_computation():
    m = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    s = SegMetrics(["a", "b", "c"], m)
    # IoU = TP / (TP + FP + FN): a = 1/(1+1+1), b = 2/(2+1+0), c = 1/(1+0+1)
    assert np.allclose(s.iou, [1 / 3, 2 / 3, 1 / 2])
    assert np.isclose(s.miou, np.mean([1 / 3, 2 / 3, 1 / 2]))
    assert np.isclose(s.pixel_accuracy, 4 / 6)


def test_classes_absent_from_ground_truth_do_not_count():
    m = np.array([[3, 0], [0, 0]])
    s = SegMetrics(["a", "b"], m)
    assert s.miou == 1.0
    assert s.as_dict()["iou"]["b"] is None
