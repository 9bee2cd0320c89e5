"""Loading torchvision-format ImageNet weights into a backbone.

One helper for every backbone family: it reads the file (as a plain tensor
state dict, ``weights_only=True``), keeps the keys under a prefix (``features.``
for MobileNet, none for ResNet), drops the classifier keys, and loads them only
if they cover the backbone exactly. A half-loaded backbone trains to a worse
model without telling anyone, so any missing, unexpected or mis-shaped key is
an error that says how much matched.
"""

from __future__ import annotations

import os
from typing import Iterable

import torch
import torch.nn as nn

from atool.core.errors import BadInput, Mismatch

# BatchNorm counters: absent from the pre-0.4 torchvision ImageNet files
# (e.g. resnet50-19c8e357.pth). BatchNorm's own loader fills them in.
_OPTIONAL_SUFFIXES = ("num_batches_tracked",)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a tensor state dict from ``path``; BadInput on a missing, corrupt or non-state-dict file.

    Accepts a bare state dict, ``{"state_dict": ...}`` and ``{"model": ...}``
    wrappers, and strips a DataParallel ``module.`` prefix.
    """
    if not os.path.exists(path):
        raise BadInput(f"backbone weights {path} not found; pass a torchvision-format state dict file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or non-tensor file
        raise BadInput(
            f"backbone weights {path} could not be read ({type(exc).__name__}); "
            "expected a tensor state dict saved with torch.save"
        ) from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadInput(f"backbone weights {path} is not a state dict of tensors (got {type(state).__name__})")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_backbone_state(
    backbone: nn.Module,
    path: str | os.PathLike,
    *,
    prefix: str = "",
    drop: Iterable[str] = (),
    expected: str = "a torchvision state dict",
) -> int:
    """Load the ``prefix``-keyed part of the state dict at ``path`` into ``backbone``.

    ``drop``: key prefixes (after ``prefix`` is removed) to ignore, e.g. the
    classifier ``fc.``. ``expected`` names the right file in error messages.
    Raises BadInput for an unreadable file and Mismatch (a BadInput) unless
    every backbone key is present with the right shape and nothing else is.
    Returns the number of tensors loaded.
    """
    state = read_state_dict(path)
    drop = tuple(drop)
    theirs = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    theirs = {k: v for k, v in theirs.items() if not k.startswith(drop)}
    own = backbone.state_dict()
    required = [k for k in own if not k.endswith(_OPTIONAL_SUFFIXES)]
    missing = [k for k in required if k not in theirs]
    unexpected = [k for k in theirs if k not in own]
    wrong = [k for k in own if k in theirs and tuple(theirs[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        matched = sum(1 for k in required if k in theirs and k not in wrong)
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {prefix}{missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {prefix}{unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} with the wrong shape (first: {prefix}{k} is {tuple(theirs[k].shape)}, "
                f"needs {tuple(own[k].shape)})"
            )
        raise Mismatch(
            f"backbone weights {path} do not fit this backbone: {matched} of {len(required)} keys matched, "
            + ", ".join(parts)
            + f"; expected {expected}"
        )
    backbone.load_state_dict(theirs, strict=False)  # strict=False only for the optional BN counters
    return len(theirs)
