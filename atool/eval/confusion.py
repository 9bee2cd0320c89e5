"""The confusion matrix every segmentation metric is computed from."""

from __future__ import annotations

import numpy as np

from atool.core.labels import IGNORE


def confusion(pred: np.ndarray, label: np.ndarray, num_classes: int) -> np.ndarray:
    """C x C int64 matrix, rows = ground truth, cols = prediction; 255 labels skipped."""
    valid = label != IGNORE
    idx = label[valid].astype(np.int64) * num_classes + pred[valid].astype(np.int64)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
