"""Class-balanced pseudo-label thresholds (CBST, Zou et al., ECCV'18), written once.

For class c, among the pixels predicted as c, the threshold keeps the most
confident ``portion`` of them: it is the confidence at ascending rank
``quantile_rank(n_c, portion)`` of that class, capped at ``cap``. A class no
pixel is predicted as gets ``cap``.

Two callers hold the pixels differently, so the rule is applied to two
representations of the same per-class sorted order:

* ``class_thresholds``: the pixels of one batch (exact confidences);
* ``class_thresholds_from_histogram``: per-class confidence histograms
  (``confidence_histogram``) summed over a whole dataset, so memory does not
  grow with the number of pixels; the threshold is then the lower edge of the
  bin that holds that rank.
"""

from __future__ import annotations

import numpy as np
import torch

from atool.core.labels import IGNORE

BINS = 256


def quantile_rank(counts: torch.Tensor, portion: float) -> torch.Tensor:
    """Ascending rank of each class's threshold pixel: int64, same shape as ``counts`` (pixels per class).

    ``floor((1 - portion) * n)``, at most ``n - 1``, so that at least one pixel
    of a present class is kept; 0 for an absent class.
    """
    return torch.minimum(((1.0 - portion) * counts.double()).floor().long(), (counts - 1).clamp(min=0))


def class_thresholds(conf: torch.Tensor, pred: torch.Tensor, num_classes: int, portion: float, cap: float) -> torch.Tensor:
    """Thresholds from the pixels themselves: float32 C, on ``conf``'s device.

    ``pred``: int64 class per pixel, any shape; ``conf``: float confidence of
    that class, same shape.
    """
    thr = torch.full((num_classes,), float(cap), dtype=torch.float32, device=conf.device)
    conf, pred = conf.reshape(-1).float().clamp(0, 1), pred.reshape(-1)
    if pred.numel() == 0:
        return thr
    # One sort groups the pixels by class and orders each class by confidence (conf in [0, 1]).
    conf_sorted = conf[torch.argsort(pred.double() * 2.0 + conf.double())]
    counts = torch.bincount(pred, minlength=num_classes)
    starts = torch.cumsum(counts, 0) - counts
    k = quantile_rank(counts, portion)
    present = counts > 0
    thr[present] = conf_sorted[(starts + k)[present]].clamp(max=float(cap))
    return thr


def confidence_histogram(conf: torch.Tensor, pred: torch.Tensor, num_classes: int, bins: int = BINS) -> np.ndarray:
    """Per-class histogram of confidence: int64 C x ``bins`` (bin b holds [b / bins, (b + 1) / bins)).

    ``conf`` float in [0, 1] and ``pred`` int64 class, same shape (e.g. the
    max and argmax of one image's softmax). Histograms of several images add up.
    """
    idx = (conf * bins).long().clamp_(0, bins - 1)
    hist = torch.bincount(pred.reshape(-1) * bins + idx.reshape(-1), minlength=num_classes * bins)
    return hist.view(num_classes, bins).cpu().numpy()


def class_thresholds_from_histogram(hist: np.ndarray, portion: float, cap: float) -> np.ndarray:
    """Thresholds from C x B confidence histograms (``confidence_histogram``): float64 C."""
    counts_np = hist.sum(axis=1)
    thr = np.full(hist.shape[0], cap, np.float64)
    present = counts_np > 0
    if not present.any():
        return thr
    h = torch.as_tensor(np.asarray(hist, dtype=np.int64))
    k = quantile_rank(h.sum(dim=1), portion)
    # the bin that holds ascending rank k: the first whose cumulative count exceeds k
    b = (torch.cumsum(h, dim=1) <= k[:, None]).sum(dim=1).numpy()
    thr[present] = np.minimum(b[present] / hist.shape[1], cap)
    return thr


def apply_thresholds(conf: torch.Tensor, pred: torch.Tensor, thr: torch.Tensor) -> torch.Tensor:
    """Pseudo labels: ``pred`` where ``conf >= thr[pred]``, else IGNORE (255); same shape and dtype as ``pred``."""
    return torch.where(conf >= thr[pred], pred, torch.full_like(pred, IGNORE))


__all__ = ["BINS", "quantile_rank", "class_thresholds", "confidence_histogram",
           "class_thresholds_from_histogram", "apply_thresholds"]
