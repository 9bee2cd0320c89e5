"""DeepLabV3+ (Chen et al., ECCV 2018) on ResNet-50/101 and MobileNetV3-Large.

Encoder: the backbone at output stride 16 and ASPP on its deepest features
(1x1 conv, three 3x3 convs at rates 6/12/18, image pooling; 256 channels
each, concatenated and projected to 256). Decoder: the stride-4 low-level
features projected to 48 channels, concatenated with the ASPP output upsampled
to their size, two 3x3 convs (256) and a 1x1 classifier. Logits come out at
stride 4 (ceil(H/4) x ceil(W/4)); the loss and the deploy wrapper upsample
them (see ``atool.models``).

All resizing takes its size from tensor shapes, so the graph exports to ONNX
with dynamic height and width.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models._utils import IntermediateLayerGetter

from atool.models import MODELS
from atool.models.mobilenet import _features as _mobilenet_features
from atool.models.resnet import resnet_backbone

ASPP_RATES = (6, 12, 18)


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class ImagePooling(nn.Module):
    """Global context: N x in_ch x h x w -> N x out_ch x h x w (constant over h, w).

    No BatchNorm here: after global pooling each channel has one value per
    image, and BatchNorm over a batch of one (common at full resolution) is
    undefined in training mode.
    """

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv(F.adaptive_avg_pool2d(x, 1)))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """ASPP-v3: N x in_ch x h x w -> N x out_ch x h x w."""

    def __init__(self, in_ch: int, out_ch: int = 256, rates: tuple[int, ...] = ASPP_RATES, dropout: float = 0.1):
        super().__init__()
        self.branches = nn.ModuleList(
            [_conv_bn_relu(in_ch, out_ch, 1)] + [_conv_bn_relu(in_ch, out_ch, 3, r) for r in rates]
        )
        self.pool = ImagePooling(in_ch, out_ch)
        self.project = nn.Sequential(_conv_bn_relu(out_ch * (len(rates) + 2), out_ch, 1), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([b(x) for b in self.branches] + [self.pool(x)], dim=1))


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ head on a backbone that returns ``{low_key: stride-4, high_key: stride-16}`` features.

    Input float N x 3 x H x W (normalised RGB); output ``{"out": N x C x h x w}``
    with h = ceil(H/4), w = ceil(W/4).
    """

    output_stride = 4

    def __init__(
        self,
        backbone: nn.Module,
        low_channels: int,
        high_channels: int,
        num_classes: int,
        low_key: str = "low",
        high_key: str = "high",
    ):
        super().__init__()
        self.backbone = backbone
        self.low_key, self.high_key = low_key, high_key
        self.aspp = ASPP(high_channels, 256)
        self.low_project = _conv_bn_relu(low_channels, 48, 1)
        self.decoder = nn.Sequential(_conv_bn_relu(256 + 48, 256, 3), _conv_bn_relu(256, 256, 3))
        self.classifier = nn.Conv2d(256, num_classes, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.backbone(x)
        low = self.low_project(feats[self.low_key])
        high = self.aspp(feats[self.high_key])
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return {"out": self.classifier(self.decoder(torch.cat([high, low], dim=1)))}


def _resnet_v3plus(depth: int, num_classes: int, backbone_weights: str | None) -> DeepLabV3Plus:
    backbone = resnet_backbone(depth, output_stride=16, weights=backbone_weights)
    return DeepLabV3Plus(
        backbone, backbone.channels["layer1"], backbone.channels["layer4"], num_classes, "layer1", "layer4"
    )


def _mobilenet_v3plus(num_classes: int, backbone_weights: str | None) -> DeepLabV3Plus:
    features = _mobilenet_features("large", backbone_weights)  # dilated: deepest features at stride 16
    # torchvision marks the first block of each down-sampling stage with _is_cn;
    # the block before the second one is the last at stride 4.
    down = [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)]
    low, high = down[1] - 1, len(features) - 1
    backbone = IntermediateLayerGetter(features, return_layers={str(low): "low", str(high): "high"})
    return DeepLabV3Plus(backbone, features[low].out_channels, features[high].out_channels, num_classes)


@MODELS.register("deeplabv3plus_resnet50")
def deeplabv3plus_resnet50(num_classes: int, backbone_weights: str | None = None) -> nn.Module:
    """DeepLabV3+ ResNet-50 (encoder stride 16, logits at stride 4)."""
    return _resnet_v3plus(50, num_classes, backbone_weights)


@MODELS.register("deeplabv3plus_resnet101")
def deeplabv3plus_resnet101(num_classes: int, backbone_weights: str | None = None) -> nn.Module:
    """DeepLabV3+ ResNet-101 (encoder stride 16, logits at stride 4)."""
    return _resnet_v3plus(101, num_classes, backbone_weights)


@MODELS.register("deeplabv3plus_mobilenet_v3_large")
def deeplabv3plus_mobilenet_v3_large(num_classes: int, backbone_weights: str | None = None) -> nn.Module:
    """DeepLabV3+ MobileNetV3-Large (torchvision MobileNetV3 weights, ``features.*`` keys)."""
    return _mobilenet_v3plus(num_classes, backbone_weights)
