"""The inference graph shared by the torch backend and the ONNX export.

Input is what a decoder hands over: uint8 N x H x W x 3 RGB. Normalisation,
layout change, upsampling to the input size and the softmax all live inside
the graph, so every backend (torch, ONNX Runtime, TensorRT) computes exactly
the same function and the host does no per-pixel work beyond decoding.

Outputs (float32):
  ``prob``     N x C x H x W softmax at input resolution
  ``entropy``  N x H x W pixel entropy divided by log(C), in [0, 1]
  ``head1``/``head2`` N x C x H x W selector-head softmaxes, when the model has heads
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

INPUT_NAME = "image"


class DeployModel(nn.Module):
    def __init__(self, model: nn.Module, mean: list[float], std: list[float], num_classes: int, heads: bool = False):
        super().__init__()
        self.model = model
        self.heads = heads
        # Mean/std are given on the 0..1 scale; fold the /255 into them.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("inv_std", 1.0 / (torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0))
        self.inv_log_c = 1.0 / math.log(num_classes) if num_classes > 1 else 1.0

    def output_names(self) -> list[str]:
        return ["prob", "entropy"] + (["head1", "head2"] if self.heads else [])

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = image.permute(0, 3, 1, 2).float()
        x = (x - self.mean) * self.inv_std
        size = x.shape[-2:]
        out = self.model(x)
        logits = F.interpolate(out["out"], size=size, mode="bilinear", align_corners=False)
        logp = F.log_softmax(logits, dim=1)
        prob = logp.exp()
        entropy = -(prob * logp).sum(dim=1) * self.inv_log_c
        results = [prob, entropy]
        if self.heads:
            for head in out["heads"]:
                results.append(F.softmax(F.interpolate(head, size=size, mode="bilinear", align_corners=False), dim=1))
        return tuple(results)
