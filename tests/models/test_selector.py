"""LabOR's selector: the two-head model, its training method, checkpoints and export."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from atool.core.config import TrainConfig, build_config
from atool.core.errors import BadInput
from atool.models import build_model
from atool.models.inference_graph import DeployModel
from atool.ops.normalize import normalization, normalize
from atool.models.selector import SelectorModel
from atool.core.checkpoint import IMAGENET_MEAN, IMAGENET_STD, save_checkpoint
from atool.models.checkpoint import load_checkpoint, model_from_checkpoint
from atool.train.methods.selector import LaborSelector, inconsistency_fraction


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def adapted(synth_pair, tmp_path_factory) -> Path:
    """A briefly source-trained model: its predictions are the selector's pseudo labels."""
    from atool.train.trainer import train

    out = tmp_path_factory.mktemp("selector") / "adapted.pt"
    cfg = build_config(TrainConfig, {}, dict(method="source", source=str(synth_pair / "source"), out=str(out), iters=40,
                                             batch_size=4, crop=(64, 32), optimizer="adamw", lr=2e-3, log_every=0, progress=False))
    train(cfg)
    return out


@pytest.fixture(scope="module")
def target_batch(synth_pair) -> torch.Tensor:
    """All target images, normalised, N x 3 x H x W."""
    paths = sorted((synth_pair / "target_train" / "images").iterdir())
    arr = np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
    return (x - mean) / std


def _method(adapted: Path, synth_pair: Path, **overrides) -> tuple[LaborSelector, SelectorModel]:
    ck = load_checkpoint(adapted)
    cfg = build_config(TrainConfig, {}, dict(method="selector", target=str(synth_pair / "target_train"), init=str(adapted),
                                             out="unused.pt", optimizer="adamw", lr=1e-3, **overrides))
    torch.manual_seed(0)
    method = LaborSelector(cfg, len(ck["classes"]), torch.device("cpu"))
    model, name, args = method.wrap_model(model_from_checkpoint(ck).train(), ck["model"]["name"], dict(ck["model"]["args"]))
    assert name == "selector" and args == {"base": ck["model"]["name"], "base_args": {}, "shared_backbone": cfg.shared_backbone}
    model.train()
    method.setup(model)
    return method, model


def _steps(method: LaborSelector, x: torch.Tensor, n: int) -> None:
    for i in range(n):
        j = (3 * i) % len(x)
        method.step(None, {"image": x[j:j + 3]})


@pytest.mark.parametrize("shared", [False, True], ids=["separate", "shared"])
def test_mask_is_non_empty_and_grows_in_the_discrepancy_phase(adapted, synth_pair, target_batch, shared):
    method, model = _method(adapted, synth_pair, shared_backbone=shared, selector_warmup=20)
    _steps(method, target_batch, 20)
    after_warmup = inconsistency_fraction(model, target_batch)
    _steps(method, target_batch, 20)
    after_discrepancy = inconsistency_fraction(model, target_batch)
    print(f"shared={shared}: mask fraction {after_warmup:.4f} after warm-up, {after_discrepancy:.4f} after 20 discrepancy steps")
    assert after_discrepancy > 0
    assert after_discrepancy > after_warmup


def test_heads_copied_without_noise_never_separate(adapted, synth_pair, target_batch):
    """DESIGN.md §4 note: identical heads get identical gradients; the symmetry must be broken."""
    method, model = _method(adapted, synth_pair, head_noise=0.0, selector_warmup=2)
    _steps(method, target_batch, 8)
    assert inconsistency_fraction(model, target_batch) == 0.0


@pytest.mark.parametrize("shared", [False, True], ids=["separate", "shared"])
def test_out_stays_the_adapted_prediction(adapted, synth_pair, target_batch, shared):
    method, model = _method(adapted, synth_pair, shared_backbone=shared, selector_warmup=1)
    base = model_from_checkpoint(load_checkpoint(adapted))
    frozen = {k: v.clone() for k, v in (model.trunk if shared else model.main).state_dict().items()}
    _steps(method, target_batch, 3)
    model.eval()
    with torch.no_grad():
        out = model(target_batch)
        ref = base(target_batch)["out"]
    assert torch.allclose(out["out"], ref, atol=1e-5)
    assert len(out["heads"]) == 2 and all(h.shape == ref.shape for h in out["heads"])
    after = (model.trunk if shared else model.main).state_dict()
    assert all(torch.equal(frozen[k], after[k]) for k in frozen), "the adapted model's part must not change"
    if shared:
        assert set(method.optimizers) == {"heads"}
    else:
        assert set(method.optimizers) == {"heads", "backbone"}


def test_heads_take_the_classifier_lr_multiplier(adapted, synth_pair):
    method, _ = _method(adapted, synth_pair, head_lr_mult=10.0)
    assert method.optimizers["heads"].param_groups[0]["lr"] == pytest.approx(1e-2)
    assert method.optimizers["backbone"].param_groups[0]["lr"] == pytest.approx(1e-3)


def test_selector_needs_an_adapted_init(adapted, synth_pair):
    ck = load_checkpoint(adapted)
    cfg = build_config(TrainConfig, {}, dict(method="selector", target=str(synth_pair / "target_train"), out="x.pt"))
    method = LaborSelector(cfg, len(ck["classes"]), torch.device("cpu"))
    with pytest.raises(BadInput, match="needs --init"):
        method.wrap_model(model_from_checkpoint(ck), ck["model"]["name"], {})
    cfg.init = str(adapted)
    sel = SelectorModel(model_from_checkpoint(ck))
    with pytest.raises(BadInput, match="already a selector"):
        method.wrap_model(sel, "selector", {})
    with pytest.raises(BadInput, match="discrepancy_weight"):
        LaborSelector(build_config(TrainConfig, {}, dict(method="selector", discrepancy_weight=-1.0)), 3, torch.device("cpu"))


@pytest.mark.parametrize("base", ["lraspp_mobilenet_v3_small", "deeplabv3_mobilenet_v3_large", "deeplabv3plus_mobilenet_v3_large", "deeplabv2_resnet50"])
def test_heads_attach_to_every_bundled_model(base):
    """The heads are copies of model.classifier, so any registered model gets them."""
    torch.manual_seed(0)
    for shared in (False, True):
        model = build_model("selector", num_classes=3, base=base, shared_backbone=shared).eval()
        with torch.no_grad():
            out = model(torch.randn(1, 3, 33, 45))
        assert out["out"].shape[:2] == (1, 3)
        assert [h.shape for h in out["heads"]] == [out["out"].shape] * 2
        frozen = model.trunk if shared else model.main
        assert not any(p.requires_grad for p in frozen.parameters())
        assert all(p.requires_grad for p in model.heads.parameters())


def test_checkpoint_rebuilds_and_deploys_heads(adapted, tmp_path, target_batch):
    ck = load_checkpoint(adapted)
    torch.manual_seed(0)
    sel = SelectorModel(model_from_checkpoint(ck), shared_backbone=True, head_noise=0.5)
    path = tmp_path / "sel.pt"
    args = {"base": ck["model"]["name"], "base_args": {}, "shared_backbone": True}
    save_checkpoint(path, model=sel, model_name="selector", model_args=args, classes=ck["classes"], step=0)
    again = model_from_checkpoint(load_checkpoint(path))
    assert isinstance(again, SelectorModel) and again.shared_backbone and again.has_heads
    img = torch.randint(0, 256, (2, 32, 64, 3), dtype=torch.uint8)
    net = DeployModel(again, ck["mean"], ck["std"], len(ck["classes"]), heads=True).eval()
    with torch.no_grad():
        prob, entropy, disagree, discrepancy = net(img)
        out = again(normalize(img.permute(0, 3, 1, 2).float(), *normalization(ck["mean"], ck["std"])))
    assert prob.shape == (2, len(ck["classes"]), 32, 64) and disagree.shape == discrepancy.shape == (2, 32, 64)
    # The in-graph maps are what the host derived from the heads' softmaxes upsampled nearest.
    p1, p2 = (torch.nn.functional.interpolate(h.softmax(1), size=(32, 64), mode="nearest") for h in out["heads"])
    assert torch.equal(disagree, (p1.argmax(1) != p2.argmax(1)).float())
    assert torch.allclose(discrepancy, (p1 - p2).abs().sum(1), atol=1e-5)

    from atool.runtime.backends import load_backend

    backend = load_backend(path)
    assert backend.heads
    maps = backend.infer(img.numpy())
    assert {"prob", "entropy", "heads_disagree", "heads_discrepancy"} <= set(maps)


def test_export_carries_the_heads(adapted, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from atool.workflows.export import export_checked

    ck = load_checkpoint(adapted)
    torch.manual_seed(0)
    sel = SelectorModel(model_from_checkpoint(ck), shared_backbone=True, head_noise=0.5)
    path = tmp_path / "sel.pt"
    save_checkpoint(path, model=sel, model_name="selector", model_args={"base": ck["model"]["name"], "base_args": {}, "shared_backbone": True},
                    classes=ck["classes"], step=0)
    report = export_checked(path, tmp_path / "sel.onnx", sample_size=(64, 32))
    assert report["metadata"]["atool.heads"] == "true"
    assert report["outputs"] == ["prob", "entropy", "heads_disagree", "heads_discrepancy"]
    from atool.runtime.backends import load_backend

    ort = load_backend(tmp_path / "sel.onnx")
    assert ort.heads
    img = np.random.default_rng(0).integers(0, 256, (1, 32, 64, 3), dtype=np.uint8)
    a, b = ort.infer(img), load_backend(path).infer(img)
    assert np.abs(a["heads_discrepancy"] - b["heads_discrepancy"]).max() < 1e-3
    assert (a["heads_disagree"] == b["heads_disagree"]).mean() > 0.999


def test_train_selector_through_the_loop(adapted, synth_pair, tmp_path):
    """`atool train selector --target DIR --init ADAPTED.pt --out SEL.pt` (the loop calls Method.wrap_model)."""
    from atool.train.trainer import train

    out = tmp_path / "sel.pt"
    cfg = build_config(TrainConfig, {}, dict(method="selector", target=str(synth_pair / "target_train"), init=str(adapted),
                                             out=str(out), iters=4, batch_size=2, crop=(64, 32), selector_warmup=2,
                                             log_every=0, progress=False, shared_backbone=True))
    train(cfg)
    ck = load_checkpoint(out)
    assert ck["model"]["name"] == "selector"
    assert ck["model"]["args"]["shared_backbone"] is True and ck["model"]["args"]["base"] == load_checkpoint(adapted)["model"]["name"]
    assert isinstance(model_from_checkpoint(ck), SelectorModel)
    assert ck["method_state"]["selector_steps"] == 4
