"""Segmentation metrics from a confusion matrix: per-class IoU, mIoU (and the Cityscapes subsets), pixel accuracy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from atool.core.errors import BadInput


@dataclass
class SegMetrics:
    classes: list[str]
    matrix: np.ndarray  # C x C
    # (sample id, reason) for images that could not be read; they are left out, not scored as wrong.
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def iou(self) -> np.ndarray:
        """Per-class IoU; NaN for classes absent from both labels and predictions."""
        tp = np.diag(self.matrix).astype(np.float64)
        denom = self.matrix.sum(0) + self.matrix.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, tp / denom, np.nan)

    @property
    def miou(self) -> float:
        """Mean IoU over the classes whose IoU is defined (TP + FP + FN > 0).

        This is the official Cityscapes evaluation's average (cityscapesscripts
        ``getScoreAverage``): a class absent from both labels and predictions is
        left out; one predicted but absent from the labels counts as 0.
        """
        return self.miou_over(self.classes)

    def miou_over(self, names: Sequence[str]) -> float:
        """Mean IoU over the named classes (same rule as ``miou``), e.g. the 13 of mIoU*.

        The IoUs are those of the full C-class confusion matrix.
        """
        missing = [n for n in names if n not in self.classes]
        if missing:
            raise BadInput(f"classes {missing[:4]} are not among the evaluated classes ({', '.join(self.classes[:6])}...)")
        iou = self.iou[[self.classes.index(n) for n in names]]
        return float(np.mean(iou[~np.isnan(iou)])) if (~np.isnan(iou)).any() else float("nan")

    @property
    def gt_pixels(self) -> np.ndarray:
        """int64 C: ground-truth pixels of each class."""
        return self.matrix.sum(1)

    @property
    def classes_without_gt(self) -> list[str]:
        """The classes no labeled pixel belongs to (their IoU is 0 or undefined, never earned)."""
        return [c for c, n in zip(self.classes, self.gt_pixels) if n == 0]

    @property
    def classes_counted(self) -> int:
        """How many classes the official ``miou`` averages (those with a defined IoU)."""
        return int((~np.isnan(self.iou)).sum())

    @property
    def miou_all(self) -> float:
        """Mean IoU over every class, an undefined IoU counted as 0.

        Beside ``miou`` it shows what the official average leaves out: a model
        evaluated on labels where most classes never occur scores a high
        ``miou`` over the few that do.
        """
        return float(np.mean(np.nan_to_num(self.iou, nan=0.0))) if self.classes else float("nan")

    def warnings(self, data: str = "the data") -> list[str]:
        """One line per reason the official mIoU may mislead; empty when every class has labeled pixels."""
        out = []
        c = len(self.classes)
        missing = self.classes_without_gt
        if missing:
            names = ", ".join(missing[:8]) + (", ..." if len(missing) > 8 else "")
            out.append(
                f"{len(missing)} of the model's {c} classes have no ground-truth pixels in {data} ({names}); "
                "their IoU is 0 or undefined, so the mIoU says nothing about them"
            )
        counted = self.classes_counted
        if counted < c:
            out.append(
                f"the mIoU {_fmt(self.miou)} averages only {counted} of the model's {c} classes "
                f"(the others have no defined IoU); over all {c} classes it is {_fmt(self.miou_all)}"
            )
        return out

    def subset_mious(self) -> dict[str, float]:
        """``miou_16`` / ``miou_13`` (mIoU*) for each Cityscapes subset whose classes are all evaluated."""
        from atool.data.adapters.cityscapes_classes import CLASSES_13, CLASSES_16

        return {
            f"miou_{len(names)}": self.miou_over(names)
            for names in (CLASSES_16, CLASSES_13)
            if all(n in self.classes for n in names)
        }

    @property
    def pixel_accuracy(self) -> float:
        total = self.matrix.sum()
        return float(np.diag(self.matrix).sum() / total) if total else float("nan")

    def as_dict(self) -> dict:
        return {
            "miou": round(self.miou * 100, 2),
            **{k: _pct(v) for k, v in self.subset_mious().items()},
            "pixel_accuracy": round(self.pixel_accuracy * 100, 2),
            "iou": {c: (None if np.isnan(v) else round(float(v) * 100, 2)) for c, v in zip(self.classes, self.iou)},
            "miou_all_classes": _pct(self.miou_all),
            "classes_counted": self.classes_counted,
            "classes_without_gt": self.classes_without_gt,
            "pixels": int(self.matrix.sum()),
            "skipped": [{"id": i, "reason": r} for i, r in self.skipped],
        }

    def table(self) -> str:
        lines = [f"{'class':<16} {'IoU':>6}"]
        for c, v in zip(self.classes, self.iou):
            lines.append(f"{c:<16} {'  n/a' if np.isnan(v) else f'{v * 100:6.2f}'}")
        lines.append(f"{'mIoU':<16} {self.miou * 100:6.2f}")
        if self.classes_counted < len(self.classes):
            lines.append(f"{'mIoU (all ' + str(len(self.classes)) + ')':<16} {_fmt(self.miou_all):>6}")
        for key, value in self.subset_mious().items():
            lines.append(f"{'mIoU-' + key[5:]:<16} {'  n/a' if np.isnan(value) else f'{value * 100:6.2f}'}")
        return "\n".join(lines)


def _pct(value: float) -> float | None:
    return None if np.isnan(value) else round(value * 100, 2)


def _fmt(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value * 100:.2f}"
