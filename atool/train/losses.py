"""Losses shared by the training methods."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from atool.data.adapters.folder import IGNORE


def upsample(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of N x C x h x w logits to ``size`` (H, W)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def seg_ce(logits: torch.Tensor, label: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of low-res logits against a full-res int64 label (255 ignored).

    With ``weight`` (N x H x W float) the loss is the weighted mean over pixels
    with non-zero weight, so sparse labels of a few points per image count as
    much per point as dense ones do per pixel.
    """
    logits = upsample(logits, tuple(label.shape[-2:]))
    if weight is None:
        if not (label != IGNORE).any():
            return logits.sum() * 0.0
        return F.cross_entropy(logits, label, ignore_index=IGNORE)
    per_pixel = F.cross_entropy(logits, label, ignore_index=IGNORE, reduction="none")
    weight = weight * (label != IGNORE)
    total = weight.sum()
    if total <= 0:
        return logits.sum() * 0.0
    return (per_pixel * weight).sum() / (weight > 0).sum()


def self_information(logits: torch.Tensor) -> torch.Tensor:
    """ADVENT's weighted self-information -P log P / log C, N x C x H x W."""
    logp = F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp) / math.log(logits.shape[1])


def mean_entropy(logits: torch.Tensor) -> torch.Tensor:
    return self_information(logits).sum(dim=1).mean()


def aux_logits(out: dict) -> list[torch.Tensor]:
    """The model's auxiliary-level logits as a list (empty when it has none)."""
    aux = out.get("aux")
    if aux is None:
        return []
    return list(aux) if isinstance(aux, (list, tuple)) else [aux]


def class_thresholds(conf: torch.Tensor, pred: torch.Tensor, num_classes: int, portion: float, cap: float) -> torch.Tensor:
    """CBST-style per-class confidence thresholds (Zou et al., ECCV'18), float32 C.

    For class c, among the pixels predicted as c (``pred`` int64, any shape),
    the threshold keeps the most confident ``portion`` of them: the
    (1 - portion)-quantile of their confidence ``conf`` (float, same shape),
    capped at ``cap``. A class no pixel is predicted as gets ``cap``.
    """
    thr = torch.full((num_classes,), float(cap), dtype=torch.float32, device=conf.device)
    conf, pred = conf.reshape(-1).float().clamp(0, 1), pred.reshape(-1)
    if pred.numel() == 0:
        return thr
    # One sort groups the pixels by class and orders each class by confidence (conf in [0, 1]).
    conf_sorted = conf[torch.argsort(pred.double() * 2.0 + conf.double())]
    counts = torch.bincount(pred, minlength=num_classes)
    starts = torch.cumsum(counts, 0) - counts
    k = torch.minimum(((1.0 - portion) * counts.double()).floor().long(), (counts - 1).clamp(min=0))
    present = counts > 0
    thr[present] = conf_sorted[(starts + k)[present]].clamp(max=float(cap))
    return thr


def pseudo_labels(
    logits: torch.Tensor,
    size: tuple[int, int],
    threshold: float,
    class_balanced: bool = False,
    portion: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard pseudo labels from N x C x h x w logits at ``size`` (H, W).

    Returns (labels int64 N x H x W with 255 where confidence is below the
    threshold, thresholds float32 C). Without ``class_balanced`` every class
    uses ``threshold``; with it, ``class_thresholds`` over this batch.
    """
    prob = F.softmax(upsample(logits.float(), size), dim=1)
    conf, pred = prob.max(dim=1)
    c = logits.shape[1]
    if class_balanced:
        thr = class_thresholds(conf, pred, c, portion, threshold)
    else:
        thr = torch.full((c,), float(threshold), device=conf.device)
    labels = torch.where(conf >= thr[pred], pred, torch.full_like(pred, IGNORE))
    return labels, thr
