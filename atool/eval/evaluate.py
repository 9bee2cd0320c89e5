"""Running a predictor over a labeled dataset into ``SegMetrics`` (255 ignored).

``confusion`` and ``SegMetrics`` live in ``atool.eval.confusion`` and
``atool.eval.metrics``; they are importable from here as well.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn as nn

from atool.core.errors import BadInput
from atool.data.adapters.folder import FolderDataset
from atool.eval.confusion import confusion
from atool.eval.metrics import SegMetrics
from atool.models.inference_graph import DeployModel

__all__ = ["Predictor", "SegMetrics", "backend_predictor", "confusion", "evaluate", "torch_predictor"]


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
