"""The features a model's classifier reads, captured without a second backbone pass.

Every registered model's forward ends in ``{"out": self.classifier(features)}``
(``atool.models.selector`` relies on the same contract). A forward pre-hook on
that classifier sees its input during the one ordinary forward pass, so the
inference graph can read the features next to the logits. The hook lives
only for the duration of a ``capture_features`` block, which keeps a model
shared with other code (training, evaluation) untouched, and works under
``torch.export`` (non-strict tracing runs the Python hook like any other code).

LR-ASPP's classifier takes a dict of two maps (``low`` at stride 8, ``high``
at stride 16); the deepest one is used: ``high`` when present, else the map
with the fewest pixels (later keys win ties).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from atool.core.errors import BadInput, Mismatch


def feature_module(model: nn.Module) -> nn.Module:
    """The classifier whose output is the model's ``out`` (its input = the features).

    A LabOR selector with its own backbone (``model.main``) predicts with the
    adapted model's classifier, so that one is used; with a shared backbone
    (and for every plain model) it is ``model.classifier``.
    """
    main = getattr(model, "main", None)
    if isinstance(main, nn.Module) and isinstance(getattr(main, "classifier", None), nn.Module):
        return main.classifier
    classifier = getattr(model, "classifier", None)
    if not isinstance(classifier, nn.Module):
        raise BadInput(
            f"{type(model).__name__} has no `classifier` module; source prototypes read the classifier's input, "
            "so the model's forward must end in {'out': self.classifier(features)}"
        )
    return classifier


def pick_feature_map(feats: Any) -> torch.Tensor:
    """One N x D x h x w tensor from a classifier input (a tensor, or a dict of them)."""
    if isinstance(feats, torch.Tensor):
        return feats
    if isinstance(feats, dict) and feats:
        if "high" in feats:
            return feats["high"]
        maps = [v for v in feats.values() if isinstance(v, torch.Tensor) and v.dim() == 4]
        if maps:
            # min() keeps the first of equals; reversed so the later (deeper) key wins a tie.
            return min(reversed(maps), key=lambda t: t.shape[-2] * t.shape[-1])
    raise BadInput(f"the classifier's input is {type(feats).__name__}, not a feature map or a dict of them")


@contextlib.contextmanager
def capture_features(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Within the block, every call of the model's classifier appends its feature map (N x D x h x w).

    Yields the list; it is filled as the model runs inside the block.
    """
    captured: list[torch.Tensor] = []

    def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        captured.append(pick_feature_map(args[0]))

    handle = feature_module(model).register_forward_pre_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def gap_map(feats: torch.Tensor, prob: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Domain gap: 1 - cosine(pixel feature, source prototype of its predicted class).

    ``feats`` float N x D x h x w (classifier input), ``prob`` float32 N x C x H x W
    (softmax at input resolution), ``prototypes`` float32 C x D with unit rows
    (a zero row for a class the source never showed). Returns float32 N x H x W
    in [0, 2]; a zero prototype gives 1 (no resemblance either way).

    Cosines to all C prototypes are taken at feature resolution (a 1x1
    convolution over unit features: C channels instead of D), upsampled
    bilinearly like the logits, and read at each pixel's argmax class. So the
    D-dim features never reach input resolution, nor leave the graph.
    """
    if feats.shape[1] != prototypes.shape[1]:
        raise Mismatch(
            f"the model's features have {feats.shape[1]} channels but its source prototypes {prototypes.shape[1]}; "
            "recompute them with `atool prototypes` for this checkpoint"
        )
    unit = F.normalize(feats.float(), dim=1, eps=1e-12)
    cos = F.conv2d(unit, prototypes[:, :, None, None])
    cos = F.interpolate(cos, size=prob.shape[-2:], mode="bilinear", align_corners=False)
    pred = prob.argmax(dim=1, keepdim=True)
    return 1.0 - cos.gather(1, pred).squeeze(1)


__all__ = ["feature_module", "pick_feature_map", "capture_features", "gap_map"]
