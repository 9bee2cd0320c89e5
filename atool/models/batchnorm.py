"""Frozen BatchNorm: the usual setting for segmentation with small batches.

DeepLab-v2 (AdaptSegNet, ADVENT) trains with a batch of one or two large
crops, where batch statistics are noise. ``freeze_batchnorm`` makes every
BatchNorm layer normalise with its stored running statistics and stops its
affine parameters from learning, and it keeps doing so after ``model.train()``:
a forward pre-hook puts the layer back in eval mode before each forward, so no
caller (training loop, method step, selector copy) has to remember to.

The hook survives ``copy.deepcopy`` but not a rebuild from a checkpoint, so
call ``freeze_batchnorm`` again after building a model. Parameters frozen
here have ``requires_grad=False``; optimisers skip them because their grad
stays None.
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

def _keep_eval(module: nn.Module, args: Any) -> None:
    module.training = False


def _is_frozen(module: nn.Module) -> bool:
    # The hook itself is the marker: it survives deepcopy and pickling with the module.
    return any(hook is _keep_eval for hook in module._forward_pre_hooks.values())


def freeze_batchnorm(model: nn.Module) -> int:
    """Freeze every BatchNorm layer of ``model`` (in place): eval-mode statistics, no affine grads.

    Idempotent. Returns the number of BatchNorm layers frozen.
    """
    count = 0
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.eval()
            for p in m.parameters(recurse=False):
                p.requires_grad_(False)
            if not _is_frozen(m):
                m.register_forward_pre_hook(_keep_eval)
            count += 1
    return count


def unfreeze_batchnorm(model: nn.Module) -> int:
    """Undo ``freeze_batchnorm``: BatchNorm follows ``model.train()``/``eval()`` and learns again.

    The layers are left in ``model``'s current mode. Returns the number unfrozen.
    """
    count = 0
    for m in model.modules():
        if isinstance(m, _BatchNorm) and _is_frozen(m):
            for key in [k for k, hook in m._forward_pre_hooks.items() if hook is _keep_eval]:
                del m._forward_pre_hooks[key]
            for p in m.parameters(recurse=False):
                p.requires_grad_(True)
            m.training = model.training
            count += 1
    return count


def is_batchnorm_frozen(model: nn.Module) -> bool:
    """True when ``model`` has BatchNorm layers and all of them are frozen."""
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    return bool(bns) and all(_is_frozen(m) for m in bns)


def set_train_mode(model: nn.Module, freeze_bn: bool) -> nn.Module:
    """``model.train()``, with BatchNorm frozen when ``freeze_bn`` (see ``freeze_batchnorm``). Returns ``model``."""
    model.train()
    if freeze_bn:
        freeze_batchnorm(model)
    return model
