"""Dilated ResNet-50/101 backbones (torchvision's ResNet, weights loaded from a file).

The backbone keeps torchvision's module names (``conv1``, ``bn1``,
``layer1``..``layer4``) so a torchvision ImageNet state dict loads into it key
for key; ``fc`` and ``avgpool`` are dropped. Dilation replaces the stride of
the last one or two stages: ``output_stride=8`` dilates layer3 (2) and layer4
(4) as DeepLab-v2 does, ``output_stride=16`` dilates layer4 (2) as DeepLabV3+
does.

Note: torchvision's ResNet is the "v1.5" variant (stride on the 3x3 conv, not
the 1x1 as in the Caffe ResNet of the original DeepLab-v2 release), and the
first block of a dilated stage keeps the previous stage's dilation. The
ImageNet weights that fit are therefore torchvision's, not DeepLab's Caffe
weights.
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn
from torchvision.models import resnet50, resnet101

from atool.core.errors import BadInput
from atool.models.weights import load_backbone_state

_DEPTHS = {50: resnet50, 101: resnet101}
_DILATE = {8: [False, True, True], 16: [False, False, True], 32: [False, False, False]}


class ResNetBackbone(nn.Module):
    """ResNet trunk returning every stage's features.

    Input: float N x 3 x H x W. Output: dict ``layer1`` (256 ch, stride 4),
    ``layer2`` (512 ch, stride 8), ``layer3`` (1024 ch), ``layer4`` (2048 ch),
    the last two at stride ``min(16, output_stride)`` and ``output_stride``.
    Spatial size at stride s is ceil(H / s).
    """

    channels = {"layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048}

    def __init__(self, depth: int = 101, output_stride: int = 8):
        super().__init__()
        if depth not in _DEPTHS:
            raise BadInput(f"ResNet depth {depth} is not supported; valid: {sorted(_DEPTHS)}")
        if output_stride not in _DILATE:
            raise BadInput(f"output stride {output_stride} is not supported; valid: {sorted(_DILATE)}")
        net = _DEPTHS[depth](weights=None, replace_stride_with_dilation=_DILATE[output_stride])
        self.depth = depth
        self.output_stride = output_stride
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return {"layer1": c1, "layer2": c2, "layer3": c3, "layer4": c4}


def load_resnet_weights(backbone: ResNetBackbone, path: str | os.PathLike) -> int:
    """Load a torchvision ImageNet ResNet state dict file into ``backbone``; ``fc.*`` is ignored.

    Raises BadInput for a missing or corrupt file and Mismatch (a BadInput)
    when keys or shapes do not fit (the message says how many matched).
    Returns the number of tensors loaded.
    """
    expected = f"a torchvision ResNet-{backbone.depth} state dict (conv1.*, layer1-4.*)"
    return load_backbone_state(backbone, path, drop=("fc.",), expected=expected)


def resnet_backbone(depth: int, output_stride: int, weights: str | os.PathLike | None = None) -> ResNetBackbone:
    """A dilated ResNet-``depth`` trunk, random init or ImageNet weights from the file ``weights``."""
    backbone = ResNetBackbone(depth, output_stride)
    if weights:
        load_resnet_weights(backbone, weights)
    return backbone
