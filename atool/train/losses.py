"""Losses shared by the training methods."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from atool.data.folder import IGNORE


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
