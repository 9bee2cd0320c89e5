"""The torch backend's inference graph: BatchNorm folded (same outputs, LR-ASPP heads kept) and C-contiguous outputs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
from torchvision.models.segmentation.lraspp import LRASPPHead

from atool.models import MODELS, build_model
from atool.models.batchnorm_folding import fold_batchnorm
from atool.models.lraspp_heads import can_stack
from atool.models.selector import SelectorModel

SIZE = (65, 97)


def _randomise_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Statistics and affine parameters far from the identity, so a wrong fold cannot hide."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) * 2 + 0.25)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.2)


def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for key in sorted(out) for t in _tensors(out[key])]
    return [t for item in out for t in _tensors(item)]


def _unfolded_batchnorms(model: nn.Module) -> int:
    inside_heads = {id(m) for head in model.modules() if isinstance(head, LRASPPHead) for m in head.modules()}
    return sum(1 for m in model.modules() if isinstance(m, nn.BatchNorm2d) and id(m) not in inside_heads)


@pytest.mark.parametrize("name", MODELS.names())
def test_folding_keeps_every_output(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=3)
    _randomise_batchnorm(model)
    model.eval()
    x = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        before = _tensors(model(x))
    folded = copy.deepcopy(model)
    count = fold_batchnorm(folded)
    with torch.no_grad():
        after = _tensors(folded(x))
    assert count > 0
    # Every BatchNorm outside LR-ASPP heads sits after a convolution that feeds it alone:
    # one left over means a model's layout is not recognised and torch runs it unfolded.
    assert _unfolded_batchnorms(folded) == 0, f"{name}: {_unfolded_batchnorms(folded)} BatchNorm layers left unfolded"
    assert len(before) == len(after)
    for a, b in zip(before, after):
        scale = float(a.abs().max()) + 1e-6
        assert float((a - b).abs().max()) <= 1e-4 * scale, name


def test_shared_selector_heads_still_stack_after_folding():
    torch.manual_seed(0)
    selector = SelectorModel(build_model("lraspp_mobilenet_v3_small", num_classes=3), shared_backbone=True).eval()
    fold_batchnorm(selector)
    assert can_stack([selector.classifier, *selector.heads])
    assert all(isinstance(m, nn.BatchNorm2d) for m in (selector.classifier.cbr[1], selector.heads[0].cbr[1]))


def test_refuses_a_module_in_training_mode():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(model)
    assert isinstance(model[1], nn.BatchNorm2d)


def test_leaves_batchnorm_without_running_statistics_and_unrelated_pairs():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False),  # normalises with the batch's own statistics
        nn.ReLU(), nn.BatchNorm2d(4),  # not after a convolution
        nn.Conv2d(4, 5, 1), nn.BatchNorm2d(5),
    ).eval()
    assert fold_batchnorm(model) == 1
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU", "BatchNorm2d", "Conv2d", "Identity"]


def test_torch_backend_runs_folded_and_matches_the_model(tiny_checkpoint):
    from atool.models.checkpoint import load_checkpoint, model_from_checkpoint
    from atool.models.inference_graph import DeployModel
    from atool.runtime.backends.torch_backend import TorchBackend

    backend = TorchBackend(tiny_checkpoint)
    assert backend.folded_batchnorms > 0
    ckpt = load_checkpoint(tiny_checkpoint)
    reference = DeployModel(model_from_checkpoint(ckpt), ckpt["mean"], ckpt["std"], len(ckpt["classes"])).eval()
    batch = np.random.default_rng(0).integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    got = backend.infer(batch)
    with torch.inference_mode():
        want = dict(zip(reference.output_names(), (t.float().numpy() for t in reference(torch.from_numpy(batch)))))
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], atol=1e-4, err_msg=key)


@pytest.mark.parametrize("variant", ["plain", "shared selector", "separate selector"])
def test_deploy_outputs_are_c_contiguous(variant):
    """The host's map code walks contiguous C x H x W planes; torch computes channels-last from the NHWC
    input, and a channels-last ``prob`` made ``stratified`` 1.5x and ``confidence`` 4x slower per image."""
    from atool.models.inference_graph import DeployModel

    torch.manual_seed(0)
    model = build_model("lraspp_mobilenet_v3_small", num_classes=5)
    heads = variant != "plain"
    if heads:
        model = SelectorModel(model, shared_backbone=variant == "shared selector")
    net = DeployModel(model, [0.5] * 3, [0.25] * 3, 5, heads=heads).eval()
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 64, 96, 3), dtype=np.uint8))
    with torch.inference_mode():
        outs = net(x)
    for name, out in zip(net.output_names(), outs):
        assert out.is_contiguous(), f"{variant}: {name} has strides {out.stride()}"
