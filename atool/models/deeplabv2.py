"""DeepLab-v2 with multi-level outputs, as used by AdaptSegNet and ADVENT.

A ResNet dilated to output stride 8 (layer3 dilation 2, layer4 dilation 4) with
an ASPP-v2 classifier on each of layer3 and layer4: the *sum* of four 3x3
convolutions straight to class logits at rates 6, 12, 18 and 24 (no BatchNorm,
no image pooling, unlike ASPP-v3). The layer4 classifier gives ``out``, the
layer3 one the auxiliary level used by multi-level adversarial training.

Both logits come out at stride 8 (ceil(H/8) x ceil(W/8)); the loss and the
deploy wrapper upsample them (see ``atool.models``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from atool.models import MODELS
from atool.models.resnet import resnet_backbone

ASPP_V2_RATES = (6, 12, 18, 24)


class ASPPv2(nn.Module):
    """Sum of parallel dilated 3x3 convs: N x in_ch x h x w -> N x num_classes x h x w logits."""

    def __init__(self, in_channels: int, num_classes: int, rates: tuple[int, ...] = ASPP_V2_RATES):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=r, dilation=r, bias=True) for r in rates
        )
        for conv in self.branches:
            nn.init.normal_(conv.weight, 0.0, 0.01)  # DeepLab-v2's classifier init
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


class DeepLabV2(nn.Module):
    """DeepLab-v2 ResNet, multi-level.

    Input float N x 3 x H x W (normalised RGB). Output
    ``{"out": N x C x h x w, "aux": [N x C x h x w]}`` with h = ceil(H/8),
    w = ceil(W/8): ``out`` from layer4 (2048 ch), ``aux`` from layer3 (1024 ch).
    """

    output_stride = 8

    def __init__(self, num_classes: int, depth: int = 101, backbone_weights: str | None = None):
        super().__init__()
        self.backbone = resnet_backbone(depth, output_stride=8, weights=backbone_weights)
        self.aux_classifier = ASPPv2(self.backbone.channels["layer3"], num_classes)
        self.classifier = ASPPv2(self.backbone.channels["layer4"], num_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        feats = self.backbone(x)
        return {"out": self.classifier(feats["layer4"]), "aux": [self.aux_classifier(feats["layer3"])]}


@MODELS.register("deeplabv2_resnet101")
def deeplabv2_resnet101(num_classes: int, backbone_weights: str | None = None) -> nn.Module:
    """DeepLab-v2 ResNet-101 as in AdaptSegNet / ADVENT (multi-level, stride 8)."""
    return DeepLabV2(num_classes, depth=101, backbone_weights=backbone_weights)


@MODELS.register("deeplabv2_resnet50")
def deeplabv2_resnet50(num_classes: int, backbone_weights: str | None = None) -> nn.Module:
    """DeepLab-v2 on ResNet-50: the same head, a lighter trunk (quicker tests and CPU runs)."""
    return DeepLabV2(num_classes, depth=50, backbone_weights=backbone_weights)
