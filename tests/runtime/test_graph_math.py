"""The inference graph's rewritten softmax/entropy and the selector's reordered LR-ASPP heads compute what they replace."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from atool.models import build_model
from atool.models.inference_graph import DeployModel, first_max_index, softmax_entropy
from atool.models.lraspp_heads import can_stack, classify_first_logits, stacked_logits
from atool.models.selector import SelectorModel


def test_softmax_entropy_matches_log_softmax():
    logits = torch.randn(2, 7, 9, 11) * 20  # large logits: exp overflows without the max shift
    prob, ent = softmax_entropy(logits, 1, 1 / math.log(7))
    logp = F.log_softmax(logits, 1)
    torch.testing.assert_close(prob, logp.exp(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ent, -(logp.exp() * logp).sum(1) / math.log(7), atol=1e-5, rtol=1e-4)
    assert torch.isfinite(ent).all() and ent.min() >= -1e-6 and ent.max() <= 1 + 1e-6
    assert softmax_entropy(logits, 1, None)[1] is None


@pytest.fixture(scope="module")
def selector() -> SelectorModel:
    torch.manual_seed(0)
    return SelectorModel(build_model("lraspp_mobilenet_v3_small", num_classes=5), shared_backbone=True, head_noise=1.0).eval()


def test_reordered_lraspp_head_equals_the_head(selector):
    with torch.no_grad():
        feats = selector.features(torch.randn(1, 3, 64, 96))
        for head in selector.heads:
            torch.testing.assert_close(classify_first_logits(head, feats), head(feats), atol=1e-4, rtol=1e-4)


def test_stacked_heads_equal_each_head(selector):
    """The adapted classifier and both heads as one wide head: each slice is that head's own logits."""
    sel = copy.deepcopy(selector)
    heads = [sel.classifier, *sel.heads]
    assert can_stack(heads)
    with torch.no_grad():
        for m in heads:  # non-trivial BatchNorm statistics, different per head
            m.cbr[1].running_mean.uniform_(-0.5, 0.5)
            m.cbr[1].running_var.uniform_(0.5, 2.0)
        feats = sel.features(torch.randn(2, 3, 64, 96))
        stacked = stacked_logits(heads, feats)
        assert len(stacked) == 3
        for head, got in zip(heads, stacked):
            torch.testing.assert_close(got, head(feats), atol=1e-4, rtol=1e-4)
    assert not torch.equal(stacked[1], stacked[2])  # the heads differ (head_noise), so slices cannot be swapped unnoticed


def test_stacking_is_refused_for_heads_it_cannot_merge(selector):
    a, b = selector.heads
    assert not can_stack([a])
    odd = build_model("lraspp_mobilenet_v3_small", num_classes=6).classifier  # another class count
    assert not can_stack([a, odd])
    plain = build_model("deeplabv3_mobilenet_v3_large", num_classes=5).classifier  # not LR-ASPP
    assert not can_stack([plain, plain])
    biased = copy.deepcopy(b)
    conv = biased.cbr[0]
    biased.cbr[0] = torch.nn.Conv2d(conv.in_channels, conv.out_channels, 1, bias=True)  # a bias stacking would drop
    assert not can_stack([a, biased])


def test_selector_outputs_are_maps_at_input_size(selector):
    net = DeployModel(selector, [0.5] * 3, [0.25] * 3, 5, heads=True).eval()
    image = torch.randint(0, 256, (1, 33, 50, 3), dtype=torch.uint8)
    with torch.no_grad():
        prob, ent, disagree, discrepancy = net(image)
        plain = DeployModel(selector, [0.5] * 3, [0.25] * 3, 5, heads=False).eval()(image)
    assert prob.shape == (1, 5, 33, 50) and disagree.shape == discrepancy.shape == (1, 33, 50)
    torch.testing.assert_close(prob.sum(1), torch.ones(1, 33, 50), atol=1e-5, rtol=0)
    # The main prediction is the plain model's, to the bit: the heads only add outputs.
    torch.testing.assert_close(prob, plain[0], atol=0, rtol=0)
    torch.testing.assert_close(ent, plain[1], atol=0, rtol=0)
    assert set(disagree.unique().tolist()) <= {0.0, 1.0}
    assert discrepancy.min() >= 0 and 0 < discrepancy.max() <= 2 + 1e-6  # head_noise: the heads differ
    assert bool(((discrepancy > 0) | (disagree == 0)).all())  # argmaxes differ only where the softmaxes do


def test_first_max_index_is_argmax_with_first_tie():
    prob = torch.tensor([[0.2, 0.5, 0.5, 0.1], [0.4, 0.4, 0.1, 0.1]]).T.reshape(1, 4, 1, 2)
    torch.testing.assert_close(first_max_index(prob), torch.tensor([[[1.0, 0.0]]]))
    rand = torch.rand(2, 6, 5, 7)
    torch.testing.assert_close(first_max_index(rand), rand.argmax(1).float())
