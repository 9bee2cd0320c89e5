"""Fold eval-mode BatchNorm layers into the convolutions before them, for inference.

At inference a BatchNorm right after a convolution is a per-channel scale and
shift, so it can live in the convolution's weight and bias, saving one pass
over every feature map. onnxruntime does this when it loads a graph; the
torch backend runs the modules as written, and there BatchNorm took about a
tenth of the demo model's CPU time.

A pair is folded only where the convolution's output goes to the BatchNorm
and nowhere else, which the module structure alone guarantees in two cases:

* consecutive children of an ``nn.Sequential`` (torchvision's
  ``Conv2dNormActivation``, ResNet's ``downsample``, DeepLab heads);
* the ``convK``/``bnK`` attributes of torchvision's ResNet blocks and of
  atool's ResNet stem, whose forwards apply ``bnK`` straight after ``convK``.

LR-ASPP heads are left alone: ``atool.models.lraspp_heads`` runs a selector's
heads as one wide head by reading their BatchNorms. A BatchNorm without
running statistics (it normalises with the batch's own) is never folded.
"""

from __future__ import annotations

import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.models.segmentation.lraspp import LRASPPHead

from atool.models.resnet import ResNetBackbone

_BLOCK_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))
_BLOCKS_APPLYING_BN_AFTER_CONV = (BasicBlock, Bottleneck, ResNetBackbone)


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (
        type(conv) is nn.Conv2d
        and type(bn) is nn.BatchNorm2d
        and bn.running_mean is not None
        and bn.num_features == conv.out_channels
    )


def fold_batchnorm(module: nn.Module) -> int:
    """Fold every foldable (Conv2d, BatchNorm2d) pair under ``module`` in place; returns how many.

    ``module`` must be in eval mode (folding freezes the running statistics):
    ValueError otherwise. The folded BatchNorms become ``nn.Identity``.
    """
    if any(m.training for m in module.modules()):
        raise ValueError("fold_batchnorm needs a module in eval mode (it bakes the running statistics into the weights)")
    return _fold(module)


def _fold(module: nn.Module) -> int:
    if isinstance(module, LRASPPHead):
        return 0
    folded = 0
    if isinstance(module, nn.Sequential):
        for i in range(len(module) - 1):
            if _foldable(module[i], module[i + 1]):
                module[i] = fuse_conv_bn_eval(module[i], module[i + 1])
                module[i + 1] = nn.Identity()
                folded += 1
    if isinstance(module, _BLOCKS_APPLYING_BN_AFTER_CONV):
        for conv_name, bn_name in _BLOCK_PAIRS:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if conv is not None and bn is not None and _foldable(conv, bn):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(module, bn_name, nn.Identity())
                folded += 1
    for child in module.children():
        folded += _fold(child)
    return folded


__all__ = ["fold_batchnorm"]
