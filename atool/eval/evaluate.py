"""Segmentation metrics from a confusion matrix (255 ignored)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn

from atool.data.adapters.folder import IGNORE, FolderDataset
from atool.core.errors import BadInput
from atool.models.inference_graph import DeployModel


def confusion(pred: np.ndarray, label: np.ndarray, num_classes: int) -> np.ndarray:
    """C x C int64 matrix, rows = ground truth, cols = prediction; 255 labels skipped."""
    valid = label != IGNORE
    idx = label[valid].astype(np.int64) * num_classes + pred[valid].astype(np.int64)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


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
            "pixels": int(self.matrix.sum()),
            "skipped": [{"id": i, "reason": r} for i, r in self.skipped],
        }

    def table(self) -> str:
        lines = [f"{'class':<16} {'IoU':>6}"]
        for c, v in zip(self.classes, self.iou):
            lines.append(f"{c:<16} {'  n/a' if np.isnan(v) else f'{v * 100:6.2f}'}")
        lines.append(f"{'mIoU':<16} {self.miou * 100:6.2f}")
        for key, value in self.subset_mious().items():
            lines.append(f"{'mIoU-' + key[5:]:<16} {'  n/a' if np.isnan(value) else f'{value * 100:6.2f}'}")
        return "\n".join(lines)


def _pct(value: float) -> float | None:
    return None if np.isnan(value) else round(value * 100, 2)


Predictor = Callable[[np.ndarray], np.ndarray]  # uint8 N x H x W x 3 -> int N x H x W


def evaluate(predict: Predictor, dataset: FolderDataset, batch_size: int = 4) -> SegMetrics:
    """Run ``predict`` over every labeled sample of ``dataset`` (batched by image size).

    Unreadable or inconsistent samples are skipped and listed in ``skipped``;
    if none is left the dataset is bad input.
    """
    c = dataset.num_classes
    matrix = np.zeros((c, c), np.int64)
    skipped: list[tuple[str, str]] = []
    scored = 0
    for images, labels in _batches(dataset, batch_size, skipped):
        pred = predict(np.stack(images))
        for p, lab in zip(pred, labels):
            matrix += confusion(p, lab, c)
        scored += len(images)
    if scored == 0:
        first = f"; first: {skipped[0][1]}" if skipped else ""
        raise BadInput(f"{dataset.root}: no usable labeled image to evaluate ({len(skipped)} skipped{first})")
    return SegMetrics(dataset.classes, matrix, skipped)


def _batches(dataset: FolderDataset, batch_size: int, skipped: list[tuple[str, str]]) -> Iterable[tuple[list, list]]:
    pending: dict[tuple, tuple[list, list]] = {}
    for i in range(len(dataset)):
        try:
            s = dataset.load(i)
        except BadInput as exc:
            skipped.append((dataset.items[i][0], str(exc)))
            continue
        if s.label is None:
            continue
        imgs, labs = pending.setdefault(s.image.shape, ([], []))
        imgs.append(s.image)
        labs.append(s.label)
        if len(imgs) == batch_size:
            yield pending.pop(s.image.shape)
    yield from pending.values()


def torch_predictor(model: nn.Module, mean: list[float], std: list[float], num_classes: int, device: torch.device | str = "cpu") -> Predictor:
    """Argmax at image resolution through the same graph the backends run."""
    net = DeployModel(model, mean, std, num_classes).to(device)

    @torch.inference_mode()
    def predict(batch: np.ndarray) -> np.ndarray:
        was_training = model.training
        model.eval()
        try:
            prob = net(torch.from_numpy(batch).to(device))[0]
        finally:
            model.train(was_training)
        return prob.argmax(1).cpu().numpy().astype(np.uint8)

    return predict


def backend_predictor(backend) -> Predictor:
    def predict(batch: np.ndarray) -> np.ndarray:
        return backend.infer(batch)["prob"].argmax(1).astype(np.uint8)

    return predict
