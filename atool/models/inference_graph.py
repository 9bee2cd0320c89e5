"""The inference graph shared by the torch backend and the ONNX export.

Input is what a decoder hands over: uint8 N x H x W x 3 RGB. Normalisation,
layout change, upsampling to the input size and the softmax all live inside
the graph, so every backend (torch, ONNX Runtime, TensorRT) computes exactly
the same function and the host does no per-pixel work beyond decoding.

Outputs (float32):
  ``prob``     N x C x H x W softmax at input resolution
  ``entropy``  N x H x W pixel entropy divided by log(C), in [0, 1]
  ``heads_disagree``    N x H x W, 1.0 where argmax head1 != argmax head2, else 0.0,
  ``heads_discrepancy`` N x H x W, sum_c |P_head1 - P_head2|, in [0, 2],
               when the model has selector heads: the two maps LabOR's strategies
               read. Both are computed at the model's output stride and upsampled
               nearest-neighbour (one value per stride cell), so the selector adds
               two single-channel maps to the outputs, not two C-channel ones
               (``tools/bench_graph.py`` measures the selector over the plain model).
               Models exported before carry ``head1``/``head2`` (the heads' softmaxes,
               N x C x H x W); the strategies read either pair.
  ``gap``      N x H x W domain gap, 1 - cosine(feature, source prototype of the
               predicted class), in [0, 2], when source prototypes are given
               (``atool.models.features.gap_map``; features come from a hook on
               the classifier during the one forward pass)
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from atool.core.metadata import HEAD_OUTPUTS
from atool.models.features import capture_features, gap_map
from atool.ops.normalize import normalization, normalize
from atool.ops.uncertainty_torch import inv_log_classes

INPUT_NAME = "image"


def first_max_index(prob: torch.Tensor) -> torch.Tensor:
    """The index of the largest value along dim 1 (the first on ties, as numpy's argmax), as float.

    Written with ReduceMax/Equal/Where/ReduceMin rather than ArgMax, which
    TensorRT runs slowly, so the same graph serves every backend.
    """
    c = prob.shape[1]
    index = torch.arange(c, dtype=prob.dtype, device=prob.device).view(1, c, 1, 1)
    is_max = prob == prob.amax(dim=1, keepdim=True)
    return torch.where(is_max, index, torch.full_like(index, float(c))).amin(dim=1)


def head_maps(prob1: torch.Tensor, prob2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(disagreement 0/1, L1 discrepancy), each N x h x w, from two heads' softmaxes N x C x h x w."""
    disagree = (first_max_index(prob1) != first_max_index(prob2)).to(prob1.dtype)
    return disagree, (prob1 - prob2).abs().sum(dim=1)


def softmax_entropy(logits: torch.Tensor, dim: int, inv_log_c: float | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Softmax over ``dim`` and, unless ``inv_log_c`` is None, the entropy ``-sum P log P * inv_log_c``.

    ``logits``: float, classes along ``dim`` (N x C x H x W, or N x K x C x H x W
    for K stacked heads). Written as max/exp/sum instead of ``log_softmax``
    because the exported ``LogSoftmax``/``Softmax`` over the channel axis of an
    NCHW tensor is slow in onnxruntime's CPU provider (it transposes the whole
    map to put the axis last and back: 63% of the adapted model's time at
    1024x512), while ReduceMax/Exp/ReduceSum stream over the tensor as laid
    out. With ``z = x - max``, ``s = sum exp z``: ``P = exp z / s`` and
    ``H = log s - sum P z`` (since ``log P = z - log s`` and ``sum P = 1``),
    finite everywhere without an epsilon, as ``log_softmax`` was.
    """
    z = logits - logits.amax(dim=dim, keepdim=True)
    e = z.exp()
    s = e.sum(dim=dim, keepdim=True)
    prob = e / s
    if inv_log_c is None:
        return prob, None
    entropy = (s.log() - (prob * z).sum(dim=dim, keepdim=True)).squeeze(dim) * inv_log_c
    return prob, entropy


class DeployModel(nn.Module):
    def __init__(
        self, model: nn.Module, mean: list[float], std: list[float], num_classes: int, heads: bool = False,
        prototypes: torch.Tensor | None = None,
    ):
        super().__init__()
        self.model = model
        self.heads = heads
        # Source prototypes (float32 C x D, unit rows) add the ``gap`` output.
        self.with_gap = prototypes is not None
        if prototypes is not None:
            self.register_buffer("prototypes", prototypes.detach().to(torch.float32).clone())
        # Mean/std are given on the 0..1 scale; the training loop's constants (/255 folded in).
        shift, inv_scale = normalization(mean, std)
        self.register_buffer("mean", shift)
        self.register_buffer("inv_std", inv_scale)
        self.inv_log_c = inv_log_classes(num_classes)

    def output_names(self) -> list[str]:
        return ["prob", "entropy"] + (list(HEAD_OUTPUTS) if self.heads else []) + (["gap"] if self.with_gap else [])

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = normalize(image.permute(0, 3, 1, 2), self.mean, self.inv_std)
        size = x.shape[-2:]
        with capture_features(self.model) if self.with_gap else contextlib.nullcontext([]) as feats:
            out = self.model(x)
        # torch runs the network channels-last (the input is NHWC), which suits its CPU convolutions, but
        # the host's map code walks contiguous C x H x W planes. Changing layout here, at the output
        # stride, costs nothing measurable; on the full-size prob it would cost 7-8 ms per 1024x512 image.
        # A no-op in the ONNX graph.
        logits = F.interpolate(out["out"].contiguous(), size=size, mode="bilinear", align_corners=False)
        prob, entropy = softmax_entropy(logits, 1, self.inv_log_c)
        results = [prob, entropy]
        if self.heads:
            # The heads share the backbone pass. Everything about them runs at the model's
            # output stride, and only the two single-channel maps the strategies read are
            # upsampled (nearest: argmax and |difference| commute with it, so these are the
            # maps the host would have derived from full-resolution head softmaxes).
            # Returning both heads' C-channel softmaxes at full resolution made the selector
            # cost 1.22-1.33x the plain model at 1024x512; upsampling their logits
            # bilinearly and normalising at full resolution, 1.7-2.5x.
            prob1, prob2 = (softmax_entropy(h, 1, None)[0] for h in out["heads"])
            for m in head_maps(prob1, prob2):
                results.append(F.interpolate(m.unsqueeze(1), size=size, mode="nearest").squeeze(1))
        if self.with_gap:
            results.append(gap_map(feats[0], prob, self.prototypes))
        return tuple(results)
