"""Entropy of a softmax over classes, on torch tensors (the numpy twin is ``atool.ops.uncertainty``).

The inference graph (and so every exported model), the entropy ranking and
the ADVENT / MinEnt losses all take the entropy from here. Everything starts
from logits through ``log_softmax``: ``P log P`` is then finite for every
pixel without an epsilon, and the gradient is the exact one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def inv_log_classes(num_classes: int) -> float:
    """``1 / log C``, the factor that puts entropy in [0, 1]; 1.0 for one class (its entropy is 0)."""
    return 1.0 / math.log(num_classes) if num_classes > 1 else 1.0


def prob_and_entropy(logits: torch.Tensor, inv_log_c: float, dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax and normalised entropy ``-sum_c P log P / log C`` from logits.

    ``logits``: float N x C x H x W (any shape; classes along ``dim``).
    ``inv_log_c``: ``inv_log_classes(C)``, given by the caller so that an
    exported graph holds it as a constant instead of a shape computation.
    Returns (prob, same shape as logits; entropy, the shape without ``dim``).
    """
    logp = F.log_softmax(logits, dim=dim)
    prob = logp.exp()
    return prob, -(prob * logp).sum(dim=dim) * inv_log_c


def self_information(logits: torch.Tensor) -> torch.Tensor:
    """ADVENT's weighted self-information ``-P log P / log C`` per class: float N x C x H x W.

    Summed over classes it is the normalised entropy map (``mean_entropy``).
    """
    logp = F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp) / math.log(logits.shape[1])


def mean_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Normalised entropy averaged over every pixel of N x C x H x W logits: a 0-dim tensor (MinEnt's loss)."""
    return self_information(logits).sum(dim=1).mean()


__all__ = ["inv_log_classes", "prob_and_entropy", "self_information", "mean_entropy"]
