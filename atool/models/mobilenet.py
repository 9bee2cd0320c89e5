"""LR-ASPP and DeepLabV3 on MobileNetV3 backbones (torchvision's building blocks).

These are the CPU-friendly DeepLab-family models. Backbones are dilated so the
deepest features stay at stride 16 and the output logits come out at stride 8
(LR-ASPP) or 16 (DeepLabV3); see the package docstring for where upsampling
happens.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import torch
import torch.nn as nn
from torchvision.models import mobilenet_v3_large, mobilenet_v3_small
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.deeplabv3 import DeepLabHead
from torchvision.models.segmentation.lraspp import LRASPPHead

from atool.models import MODELS
from atool.models.weights import load_backbone_state

_BACKBONES = {"small": mobilenet_v3_small, "large": mobilenet_v3_large}


def load_backbone_weights(backbone: nn.Module, path: str | os.PathLike) -> None:
    """Load a torchvision-format ImageNet MobileNetV3 state dict (``features.*`` keys) into ``backbone``.

    Classifier keys are dropped; any missing, unexpected or mis-shaped feature
    key is a Mismatch (see ``atool.models.weights.load_backbone_state``).
    """
    expected = "a torchvision MobileNetV3 state dict (features.* keys)"
    load_backbone_state(backbone, path, prefix="features.", expected=expected)


def _features(size: str, backbone_weights: str | None) -> nn.Sequential:
    net = _BACKBONES[size](weights=None, dilated=True)
    # torchvision builds these BatchNorms with momentum 0.01, tuned for long
    # ImageNet schedules; over a few hundred steps the running statistics then
    # lag the weights and eval-mode accuracy collapses. 0.1 is PyTorch's default.
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    if backbone_weights:
        load_backbone_weights(net.features, backbone_weights)
        # torchvision's state dict is for the whole classifier net; features
        # have been loaded above, the rest is discarded.
    return net.features


def _stage_indices(features: nn.Sequential) -> tuple[int, int]:
    """Index of the last stride-8 block and of the last block (torchvision's convention)."""
    stage = [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)] + [len(features) - 1]
    return stage[-4], stage[-1]


class LRASPPNet(nn.Module):
    def __init__(self, num_classes: int, size: str = "small", inter_channels: int = 128, backbone_weights: str | None = None):
        super().__init__()
        features = _features(size, backbone_weights)
        low, high = _stage_indices(features)
        low_ch = features[low].out_channels
        high_ch = features[high].out_channels
        self.backbone = IntermediateLayerGetter(features, return_layers={str(low): "low", str(high): "high"})
        self.classifier = LRASPPHead(low_ch, high_ch, num_classes, inter_channels)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.backbone(x)
        return {"out": self.classifier(feats)}

    def features(self, x: torch.Tensor) -> OrderedDict:
        return self.backbone(x)


class DeepLabV3Net(nn.Module):
    def __init__(self, num_classes: int, size: str = "large", backbone_weights: str | None = None):
        super().__init__()
        features = _features(size, backbone_weights)
        _, high = _stage_indices(features)
        self.backbone = IntermediateLayerGetter(features, return_layers={str(high): "high"})
        self.classifier = DeepLabHead(features[high].out_channels, num_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.classifier(self.backbone(x)["high"])}


@MODELS.register("lraspp_mobilenet_v3_small")
def lraspp_mobilenet_v3_small(num_classes: int, backbone_weights: str | None = None) -> nn.Module:
    return LRASPPNet(num_classes, "small", backbone_weights=backbone_weights)


@MODELS.register("lraspp_mobilenet_v3_large")
def lraspp_mobilenet_v3_large(num_classes: int, backbone_weights: str | None = None) -> nn.Module:
    return LRASPPNet(num_classes, "large", backbone_weights=backbone_weights)


@MODELS.register("deeplabv3_mobilenet_v3_large")
def deeplabv3_mobilenet_v3_large(num_classes: int, backbone_weights: str | None = None) -> nn.Module:
    return DeepLabV3Net(num_classes, "large", backbone_weights=backbone_weights)
