"""Faster forms of torchvision's LR-ASPP head for the selector's heads.

Both compute what ``LRASPPHead.forward`` computes, up to float rounding:

* ``classify_first_logits``: the 1x1 ``high_classifier`` before the bilinear
  upsampling instead of after. Both are linear and bilinear weights sum to
  one, so the order does not change the logits, but the upsampling then
  moves C channels instead of the 128 intermediate ones.
* ``stacked_logits``: K heads that read the same features (the adapted
  model's classifier and the two selector heads of a shared-backbone
  selector) as one head K times as wide. Each layer of the head acts on its
  own channels (1x1 convolutions, BatchNorm, pointwise activations,
  per-channel pooling and upsampling), so concatenating the heads' channels
  and running each layer once is the same arithmetic in fewer, larger
  operations: one GEMM over the backbone's 576-960 channels instead of K,
  which on a small backbone is what a selector's query costs beyond the
  plain model's (issue 10). Inference only: BatchNorm uses its running
  statistics.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.segmentation.lraspp import LRASPPHead


def classify_first_logits(head: LRASPPHead, feats: dict[str, torch.Tensor]) -> torch.Tensor:
    """``head(feats)``, N x C x h x w, with ``high_classifier`` applied before the upsampling."""
    low, high = feats["low"], feats["high"]
    x = head.cbr(high) * head.scale(high)
    up = F.interpolate(head.high_classifier(x), size=low.shape[-2:], mode="bilinear", align_corners=False)
    return head.low_classifier(low) + up


def _is_standard(head: nn.Module) -> bool:
    """torchvision's layout: cbr = (Conv2d, BatchNorm2d, ReLU), scale = (pool, Conv2d, Sigmoid), two 1x1 classifiers; no inner bias."""
    if not isinstance(head, LRASPPHead) or len(head.cbr) != 3 or len(head.scale) != 3:
        return False
    conv, bn, relu = head.cbr
    pool, sconv, sig = head.scale
    plain_1x1 = all(
        isinstance(c, nn.Conv2d) and c.kernel_size == (1, 1) and c.stride == (1, 1) and c.padding == (0, 0) and c.groups == 1
        for c in (conv, sconv, head.low_classifier, head.high_classifier)
    )
    # stacked_logits writes the two inner convolutions without a bias, as torchvision builds them.
    no_inner_bias = conv.bias is None and sconv.bias is None
    return (plain_1x1 and no_inner_bias and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats and isinstance(relu, nn.ReLU)
            and isinstance(pool, nn.AdaptiveAvgPool2d) and pool.output_size in (1, (1, 1)) and isinstance(sig, nn.Sigmoid))


def can_stack(heads: Sequence[nn.Module]) -> bool:
    """Whether ``stacked_logits`` applies: two or more standard LR-ASPP heads of one shape and BatchNorm epsilon."""
    if len(heads) < 2 or not all(_is_standard(h) for h in heads):
        return False
    first = heads[0]
    return all(
        h.cbr[0].weight.shape == first.cbr[0].weight.shape and h.high_classifier.weight.shape == first.high_classifier.weight.shape
        and h.low_classifier.weight.shape == first.low_classifier.weight.shape and h.cbr[1].eps == first.cbr[1].eps
        and h.cbr[1].affine == first.cbr[1].affine
        and (h.low_classifier.bias is None) == (first.low_classifier.bias is None)
        and (h.high_classifier.bias is None) == (first.high_classifier.bias is None)
        for h in heads
    )


def _cat(tensors: Sequence[torch.Tensor | None]) -> torch.Tensor | None:
    return None if any(t is None for t in tensors) else torch.cat(list(tensors))


def stacked_logits(heads: Sequence[LRASPPHead], feats: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """``[classify_first_logits(h, feats) for h in heads]``, computed as one head; see ``can_stack``."""
    low, high = feats["low"], feats["high"]
    k = len(heads)
    bns = [h.cbr[1] for h in heads]
    x = F.conv2d(high, torch.cat([h.cbr[0].weight for h in heads]))
    x = F.batch_norm(x, _cat([b.running_mean for b in bns]), _cat([b.running_var for b in bns]),
                     _cat([b.weight for b in bns]), _cat([b.bias for b in bns]), training=False, eps=bns[0].eps)
    pooled = F.adaptive_avg_pool2d(high, 1)
    x = F.relu(x) * torch.sigmoid(F.conv2d(pooled, torch.cat([h.scale[1].weight for h in heads])))
    # Grouped: head i's classifier reads only head i's intermediate channels.
    high_logits = F.conv2d(x, torch.cat([h.high_classifier.weight for h in heads]),
                           _cat([h.high_classifier.bias for h in heads]), groups=k)
    up = F.interpolate(high_logits, size=low.shape[-2:], mode="bilinear", align_corners=False)
    logits = F.conv2d(low, torch.cat([h.low_classifier.weight for h in heads]), _cat([h.low_classifier.bias for h in heads])) + up
    return list(logits.chunk(k, dim=1))
