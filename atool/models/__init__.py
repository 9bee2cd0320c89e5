"""Model registry and builders.

Every model maps a float NCHW batch (normalised RGB) to a dict:
  ``out``  logits N x C x h x w at the model's output stride s, h = ceil(H/s):
           8 for LR-ASPP and DeepLab-v2, 16 for DeepLabV3, 4 for DeepLabV3+.
           Upsampling is left to the consumer: the loss
           upsamples to the label size, the deploy wrapper to the image size
           inside the exported graph, so training never pays for full-size
           logits it does not need.
  ``aux``  optional list of extra-level logits (multi-level outputs).
  ``heads`` optional pair of selector-head logits.
"""

from __future__ import annotations

from typing import Any, Callable

import torch.nn as nn

from atool.core.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def build_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build a registered model with random initialisation (or backbone weights via ``backbone_weights``)."""
    return MODELS.get(name)(num_classes=num_classes, **kwargs)

MODELS.load_plugins(__name__, __path__)
