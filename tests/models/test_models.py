"""Model contract tests: every registered model, on tiny odd-sized inputs.

Per model: build, forward and backward in train mode, output keys/shapes at
the model's stride (``atool.models`` docstring), and ImageNet backbone weights
loaded from a torchvision-format file. Plus the weight loader's errors,
frozen BatchNorm and (slow) ONNX export with dynamic height and width.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torchvision

from atool.core.errors import BadInput, Mismatch
from atool.models import MODELS, build_model
from atool.models.batchnorm import freeze_batchnorm, is_batchnorm_frozen, set_train_mode, unfreeze_batchnorm
from atool.models.resnet import load_resnet_weights, resnet_backbone

NUM_CLASSES = 3
# Odd sides that differ, so a model that mixes up H and W or rounds down is caught.
TRAIN_SIZE = (33, 45)
EVAL_SIZE = (65, 97)

# Output stride of ``out`` per model; a model not listed must still have one stride for both sides.
EXPECTED_STRIDE = {
    "lraspp_mobilenet_v3_small": 8,
    "lraspp_mobilenet_v3_large": 8,
    "deeplabv3_mobilenet_v3_large": 16,
    "deeplabv2_resnet50": 8,
    "deeplabv2_resnet101": 8,
    "deeplabv3plus_resnet50": 4,
    "deeplabv3plus_resnet101": 4,
    "deeplabv3plus_mobilenet_v3_large": 4,
}
PAPER_MODELS = [n for n in EXPECTED_STRIDE if n.startswith(("deeplabv2_", "deeplabv3plus_"))]

# Which torchvision classifier's ImageNet state dict fits each model's backbone:
# (constructor, key prefix of the backbone part, key prefixes that are not backbone).
TORCHVISION_BACKBONE = {
    "selector": ("mobilenet_v3_small", "features.", ("classifier.",)),
    "lraspp_mobilenet_v3_small": ("mobilenet_v3_small", "features.", ("classifier.",)),
    "lraspp_mobilenet_v3_large": ("mobilenet_v3_large", "features.", ("classifier.",)),
    "deeplabv3_mobilenet_v3_large": ("mobilenet_v3_large", "features.", ("classifier.",)),
    "deeplabv3plus_mobilenet_v3_large": ("mobilenet_v3_large", "features.", ("classifier.",)),
    "deeplabv2_resnet50": ("resnet50", "", ("fc.",)),
    "deeplabv2_resnet101": ("resnet101", "", ("fc.",)),
    "deeplabv3plus_resnet50": ("resnet50", "", ("fc.",)),
    "deeplabv3plus_resnet101": ("resnet101", "", ("fc.",)),
}


def _stride(t: torch.Tensor, size: tuple[int, int]) -> int:
    """The one power-of-two stride s with t's h, w == ceil(H/s), ceil(W/s); fails if there is none."""
    h, w = t.shape[-2:]
    found = [s for s in (1, 2, 4, 8, 16, 32) if (h, w) == (math.ceil(size[0] / s), math.ceil(size[1] / s))]
    assert found, f"logits {tuple(t.shape)} are not at any stride of a {size} input"
    return found[0]


def _check_output(name: str, out: dict, n: int, size: tuple[int, int]) -> None:
    assert isinstance(out, dict) and "out" in out, f"{name} must return a dict with 'out'"
    assert set(out) <= {"out", "aux", "heads"}, f"{name} returned unknown keys {sorted(out)}"
    logits = out["out"]
    assert logits.dtype == torch.float32 and logits.shape[:2] == (n, NUM_CLASSES)
    stride = _stride(logits, size)
    if name in EXPECTED_STRIDE:
        assert stride == EXPECTED_STRIDE[name], f"{name}: out at stride {stride}"
    for key in ("aux", "heads"):
        if key in out:
            assert isinstance(out[key], (list, tuple)) and len(out[key]) >= 1
            for t in out[key]:
                assert t.shape[:2] == (n, NUM_CLASSES)
                _stride(t, size)
    if "heads" in out:
        assert len(out["heads"]) == 2


def _all_logits(out: dict) -> list[torch.Tensor]:
    return [out["out"], *out.get("aux", []), *out.get("heads", [])]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_paper_models_registered():
    for name in PAPER_MODELS:
        assert name in MODELS


@pytest.mark.parametrize("name", MODELS.names())
def test_forward_backward_contract(name):
    model = build_model(name, num_classes=NUM_CLASSES).train()
    x = torch.randn(2, 3, *TRAIN_SIZE)
    out = model(x)
    _check_output(name, out, 2, TRAIN_SIZE)
    sum(t.float().mean() for t in _all_logits(out)).backward()
    params = [p for p in model.parameters() if p.requires_grad]
    with_grad = [p for p in params if p.grad is not None and torch.isfinite(p.grad).all()]
    # Every parameter takes part (dropout/heads aside, nothing should be dead weight).
    assert len(with_grad) == len(params), f"{name}: {len(params) - len(with_grad)} parameters got no gradient"
    assert getattr(model, "output_stride", EXPECTED_STRIDE.get(name)) == EXPECTED_STRIDE.get(name)

    model.eval()
    with torch.no_grad():
        _check_output(name, model(torch.randn(1, 3, *EVAL_SIZE)), 1, EVAL_SIZE)


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_trains_at_batch_one(name):
    """The papers train DeepLab at batch 1-2: no layer may need more than one value per channel."""
    model = build_model(name, num_classes=NUM_CLASSES).train()
    out = model(torch.randn(1, 3, *TRAIN_SIZE))
    sum(t.mean() for t in _all_logits(out)).backward()


def test_deeplabv2_levels():
    model = build_model("deeplabv2_resnet50", num_classes=NUM_CLASSES)
    out = model(torch.randn(1, 3, *TRAIN_SIZE))
    assert len(out["aux"]) == 1 and out["aux"][0].shape == out["out"].shape
    assert model.classifier.branches[0].in_channels == 2048 and model.aux_classifier.branches[0].in_channels == 1024
    assert [c.dilation[0] for c in model.classifier.branches] == [6, 12, 18, 24]
    # layer3 dilation 2, layer4 dilation 4, no stride after layer2
    # (torchvision's first block of a dilated stage keeps the previous rate).
    assert model.backbone.layer3[-1].conv2.dilation == (2, 2) and model.backbone.layer4[-1].conv2.dilation == (4, 4)
    assert model.backbone.layer3[0].conv2.stride == (1, 1) and model.backbone.layer4[0].conv2.stride == (1, 1)


# --- backbone weights --------------------------------------------------------


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """Fake torchvision ImageNet state dicts, one file per architecture, made on first use.

    Every float tensor is perturbed so no value can coincide with a fresh
    random initialisation (BatchNorm starts at exactly 1 and 0).
    """
    root = tmp_path_factory.mktemp("weights")
    cache: dict[str, tuple[Path, dict[str, torch.Tensor]]] = {}

    def get(arch: str) -> tuple[Path, dict[str, torch.Tensor]]:
        if arch not in cache:
            g = torch.Generator().manual_seed(123)
            state = getattr(torchvision.models, arch)(weights=None).state_dict()
            state = {k: v + torch.rand(v.shape, generator=g) if v.is_floating_point() else v for k, v in state.items()}
            path = root / f"{arch}.pth"
            torch.save(state, path)
            cache[arch] = (path, state)
        return cache[arch]

    return get


@pytest.mark.parametrize("name", MODELS.names())
def test_loads_backbone_weights(name, weight_files):
    assert name in TORCHVISION_BACKBONE, (
        f"model {name} has no backbone-weights case: add its torchvision constructor to TORCHVISION_BACKBONE"
    )
    arch, prefix, skip = TORCHVISION_BACKBONE[name]
    path, state = weight_files(arch)
    model = build_model(name, num_classes=NUM_CLASSES, backbone_weights=str(path))
    own = model.state_dict()
    expected = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and not k.startswith(skip)}
    assert expected
    for key, value in expected.items():
        hits = [mk for mk in own if mk.endswith("." + key) and torch.equal(own[mk], value)]
        # The file's values are perturbed (see weight_files), so a hit cannot be a fresh initialisation.
        assert hits, f"{name}: {prefix}{key} from the file is not in the model"


def _one_line_bad_input(exc_info, *fragments: str) -> None:
    msg = str(exc_info.value)
    assert isinstance(exc_info.value, BadInput)
    assert "\n" not in msg and msg
    for f in fragments:
        assert f in msg, msg


def test_weights_missing_file(tmp_path):
    with pytest.raises(BadInput) as e:
        build_model("deeplabv2_resnet50", num_classes=NUM_CLASSES, backbone_weights=str(tmp_path / "nope.pth"))
    _one_line_bad_input(e, "nope.pth", "not found")


def test_weights_corrupt_file(tmp_path):
    bad = tmp_path / "corrupt.pth"
    bad.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(BadInput) as e:
        resnet_backbone(50, 8, weights=bad)
    _one_line_bad_input(e, "corrupt.pth", "could not be read")
    # Same loader behind the MobileNet models.
    with pytest.raises(BadInput) as e:
        build_model("deeplabv3plus_mobilenet_v3_large", num_classes=NUM_CLASSES, backbone_weights=str(bad))
    _one_line_bad_input(e, "could not be read")


def test_weights_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(BadInput) as e:
        resnet_backbone(50, 8, weights=path)
    _one_line_bad_input(e, "not a state dict")


def test_weights_wrong_architecture(weight_files):
    small, _ = weight_files("mobilenet_v3_small")
    with pytest.raises(Mismatch) as e:
        resnet_backbone(50, 8, weights=small)
    _one_line_bad_input(e, "0 of", "matched", "ResNet-50")

    r50, _ = weight_files("resnet50")
    with pytest.raises(Mismatch) as e:  # ResNet-50 into ResNet-101: layer3.6 onwards are missing
        resnet_backbone(101, 16, weights=r50)
    _one_line_bad_input(e, "missing", "layer3.6.")
    matched = int(str(e.value).split(" keys matched")[0].split()[-3])
    assert 0 < matched < len(resnet_backbone(101, 16).state_dict())

    with pytest.raises(Mismatch) as e:  # MobileNetV3-Large into -Small: same keys, other shapes
        large = str(weight_files("mobilenet_v3_large")[0])
        build_model("lraspp_mobilenet_v3_small", num_classes=NUM_CLASSES, backbone_weights=large)
    _one_line_bad_input(e, "matched")


def test_weights_shape_mismatch(tmp_path, weight_files):
    _, state = weight_files("resnet50")
    state = dict(state)
    state["layer2.0.conv1.weight"] = torch.zeros(3, 3, 1, 1)
    path = tmp_path / "shape.pth"
    torch.save(state, path)
    with pytest.raises(Mismatch) as e:
        resnet_backbone(50, 8, weights=path)
    _one_line_bad_input(e, "wrong shape", "layer2.0.conv1.weight", "(3, 3, 1, 1)")


def test_weights_legacy_and_wrapped_files(tmp_path, weight_files):
    """Old torchvision files lack BatchNorm's num_batches_tracked; some tools wrap or prefix the dict."""
    _, state = weight_files("resnet50")
    legacy = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    wrapped = {"state_dict": {"module." + k: v for k, v in legacy.items()}}
    for i, payload in enumerate((legacy, wrapped)):
        path = tmp_path / f"w{i}.pth"
        torch.save(payload, path)
        backbone = resnet_backbone(50, 16)
        assert load_resnet_weights(backbone, path) == len(legacy) - 2  # fc.weight, fc.bias dropped
        assert torch.equal(backbone.layer4[2].conv3.weight, state["layer4.2.conv3.weight"])


# --- frozen BatchNorm ----------------------------------------------------------


def _bn_state(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running_" in k or "num_batches" in k}


def test_freeze_batchnorm_survives_train_mode():
    model = build_model("deeplabv3plus_mobilenet_v3_large", num_classes=NUM_CLASSES)
    n = freeze_batchnorm(model)
    assert n > 0 and is_batchnorm_frozen(model)
    before = _bn_state(model)
    model.train()  # would normally switch BatchNorm back to batch statistics
    assert model.training
    out = model(torch.randn(2, 3, *TRAIN_SIZE))
    out["out"].mean().backward()
    after = _bn_state(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert all(not m.training for m in bns)
    assert all(p.grad is None and not p.requires_grad for m in bns for p in m.parameters())
    assert model.classifier.weight.grad is not None  # the rest still learns

    copied = copy.deepcopy(model)  # e.g. the LabOR selector copies the adapted model
    assert is_batchnorm_frozen(copied)
    assert freeze_batchnorm(model) == n and len(bns[0]._forward_pre_hooks) == 1  # idempotent

    assert unfreeze_batchnorm(model) == n and not is_batchnorm_frozen(model)
    model.train()
    model(torch.randn(2, 3, *TRAIN_SIZE))
    assert not torch.equal(before[next(iter(before))], _bn_state(model)[next(iter(before))])


def test_set_train_mode():
    model = build_model("lraspp_mobilenet_v3_small", num_classes=NUM_CLASSES).eval()
    set_train_mode(model, freeze_bn=False)
    assert model.training and not is_batchnorm_frozen(model)
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn.training
    set_train_mode(model, freeze_bn=True)
    assert model.training and is_batchnorm_frozen(model) and not bn.training


# --- ONNX export ----------------------------------------------------------------


@torch.no_grad()
def _trained_scale_logits(model: torch.nn.Module, std: float = 4.0) -> None:
    """Scale the class-logit convolutions so logits have about ``std`` spread, as a trained model's do.

    A randomly initialised ResNet-101 under eval-mode BatchNorm gives logits
    around 5e4; float32 rounding (1e-7 relative) in two runtimes then moves the
    softmax by more than the parity tolerance, which says nothing about the graph.
    """
    from atool.models.selector import logit_convs

    out = model(torch.randn(1, 3, 65, 97))["out"]
    factor = std / max(float(out.std()), 1e-6)
    for conv in logit_convs(model.classifier):
        conv.weight.mul_(factor)
        if conv.bias is not None:
            conv.bias.mul_(factor)


# One export (~15 s) runs by default: DeepLabV3+ has the size-dependent parts
# (image pooling, decoder upsampling); the rest are slow-marked.
@pytest.mark.parametrize(
    "name",
    [n if n == "deeplabv3plus_mobilenet_v3_large" else pytest.param(n, marks=pytest.mark.slow) for n in PAPER_MODELS],
)
def test_exports_with_dynamic_size(name, tmp_path):
    """The exported graph keeps N, H, W dynamic and matches torch (verify runs a second, odd size)."""
    pytest.importorskip("onnxruntime")
    from atool.workflows.export import export_checked
    from atool.core.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build_model(name, num_classes=NUM_CLASSES).eval()
    _trained_scale_logits(model)
    ckpt = save_checkpoint(
        tmp_path / "m.pt", model=model, model_name=name, model_args={}, classes=["a", "b", "c"], step=0
    )
    report = export_checked(ckpt, tmp_path / "m.onnx", sample_size=(97, 65), verify=True)
    assert report["inputs"]["image"] == ["batch", "height", "width", 3]
