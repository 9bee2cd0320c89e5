"""Losses shared by the training methods."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from atool.data.adapters.folder import IGNORE
from atool.ops.thresholds import apply_thresholds, class_thresholds


def upsample(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of N x C x h x w logits to ``size`` (H, W)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def seg_ce(logits: torch.Tensor, label: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of low-res logits against a full-res int64 label (255 ignored).

    With ``weight`` (N x H x W float) the loss is the weighted mean
    ``sum(w * ce) / sum(w)``, so sparse labels of a few points per image count
    as much per point as dense ones do per pixel, and a pixel's weight is its
    share of the labelled mass (a click grown to a superpixel can weigh like
    one click in all, not like one click per pixel).
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
    return (per_pixel * weight).sum() / total


def aux_logits(out: dict) -> list[torch.Tensor]:
    """The model's auxiliary-level logits as a list (empty when it has none)."""
    aux = out.get("aux")
    if aux is None:
        return []
    return list(aux) if isinstance(aux, (list, tuple)) else [aux]


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
    uses ``threshold``; with it, ``atool.ops.thresholds.class_thresholds`` over this batch.
    """
    prob = F.softmax(upsample(logits.float(), size), dim=1)
    conf, pred = prob.max(dim=1)
    c = logits.shape[1]
    if class_balanced:
        thr = class_thresholds(conf, pred, c, portion, threshold)
    else:
        thr = torch.full((c,), float(threshold), device=conf.device)
    return apply_thresholds(conf, pred, thr), thr
