"""Model input normalisation, written once for training, ranking and the inference graph.

Checkpoints record ``mean`` and ``std`` on the 0..1 scale (ImageNet's by
default); images arrive as uint8 0..255. The /255 is folded into the two
constants, and the division by std is a multiplication by its reciprocal, so
the training loop, the entropy ranking and every exported model feed the
network bit-identical inputs.
"""

from __future__ import annotations

from typing import Sequence

import torch


def normalization(mean: Sequence[float], std: Sequence[float],
                  device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(shift, inv_scale)``: float32 1 x 3 x 1 x 1 tensors, ``mean * 255`` and ``1 / (std * 255)``."""
    shift = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    inv_scale = 1.0 / (torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
    if device is not None:
        shift, inv_scale = shift.to(device), inv_scale.to(device)
    return shift, inv_scale


def normalize(image: torch.Tensor, shift: torch.Tensor, inv_scale: torch.Tensor) -> torch.Tensor:
    """``(image - shift) * inv_scale`` as float32: uint8 (or float 0..255) N x 3 x H x W in, N x 3 x H x W out."""
    return (image.float() - shift) * inv_scale


__all__ = ["normalization", "normalize"]
