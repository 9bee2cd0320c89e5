"""Checkpoints as models: the registry check and the rebuild with weights."""

from __future__ import annotations

import os
from typing import Any

import torch.nn as nn

from atool.core.checkpoint import read_checkpoint
from atool.core.errors import BadInput, Mismatch
from atool.models import MODELS, build_model


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """``read_checkpoint`` plus a one-line BadInput when the model it names is not registered."""
    ckpt = read_checkpoint(path)
    if ckpt["model"].get("name") not in MODELS:
        raise BadInput(f"checkpoint {path} names model {ckpt['model'].get('name')!r}, unknown to this atool; valid: {', '.join(MODELS.names())}")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """Rebuild the model of a loaded checkpoint with its weights, in eval mode."""
    args = dict(ckpt["model"]["args"])
    args.pop("backbone_weights", None)  # the weights are in the state dict already
    model = build_model(ckpt["model"]["name"], num_classes=len(ckpt["classes"]), **args)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise Mismatch(f"checkpoint weights do not fit model {ckpt['model']['name']}: {str(exc).splitlines()[0]}") from None
    return model.eval()
