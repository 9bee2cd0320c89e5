"""UDA method steps: multi-level ADVENT, MinEnt, self-training (CBST thresholds), IntraDA ranking."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from atool.core.config import TrainConfig, build_config
from atool.core.errors import BadInput
from atool.models.checkpoint import load_checkpoint
from conftest import assert_one_line_error, run_cli

FAST = ["--iters", "2", "--batch-size", "2", "--crop", "64x32"]
C = 4


class TinyNet(nn.Module):
    """N x 3 x H x W -> {"out": N x C x H/2 x W/2[, "aux": [same]]}: a stand-in for DeepLab-v2's two levels."""

    def __init__(self, aux: bool = True) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.head = nn.Conv2d(8, C, 1)
        self.aux_head = nn.Conv2d(8, C, 1) if aux else None

    def forward(self, x):
        f = torch.relu(self.body(x))
        out = {"out": self.head(f)}
        if self.aux_head is not None:
            out["aux"] = [self.aux_head(f)]
        return out


def _batches(seed: int = 0, n: int = 2, h: int = 32, w: int = 32):
    g = torch.Generator().manual_seed(seed)
    src = {"image": torch.randn(n, 3, h, w, generator=g), "label": torch.randint(0, C, (n, h, w), generator=g)}
    tgt = {"image": torch.randn(n, 3, h, w, generator=g) + 0.5}
    return src, tgt


def _method(name: str, model: nn.Module, **cfg):
    from atool.train.methods import METHODS

    torch.manual_seed(0)
    m = METHODS.get(name)(build_config(TrainConfig, {}, {"method": name, **cfg}), C, torch.device("cpu"))
    m.setup(model)
    return m


def test_advent_multi_level_has_a_discriminator_per_level():
    cfg = TrainConfig()
    assert (cfg.lambda_adv, cfg.lambda_adv_aux, cfg.lambda_seg_aux) == (1e-3, 2e-4, 0.1)
    m = _method("advent", TinyNet(aux=True))
    assert set(m.optimizers) == {"model", "disc", "disc_aux"}
    before = {k: p.detach().clone() for k, p in m.discs["disc_aux"].named_parameters()}
    losses = m.step(*_batches())
    assert {"seg", "seg_aux", "adv", "adv_aux", "disc"} <= set(losses)
    assert any(not torch.equal(before[k], p) for k, p in m.discs["disc_aux"].named_parameters())
    assert set(m.state_dict()) >= {"module.disc", "module.disc_aux", "opt.disc_aux"}

    single = _method("advent", TinyNet(aux=False))
    assert set(single.optimizers) == {"model", "disc"}
    assert "adv_aux" not in single.step(*_batches())


def test_advent_aux_weights_scale_the_aux_gradients():
    """With lambda_seg_aux = lambda_adv_aux = 0 the aux head gets no gradient; with them it does."""
    src, tgt = _batches()
    off = _method("advent", TinyNet(), lambda_seg_aux=0.0, lambda_adv_aux=0.0)
    off.optimizers["model"].step = lambda *a, **k: None  # keep the grads for inspection
    off.step(src, tgt)
    assert off.model.aux_head.weight.grad is None or off.model.aux_head.weight.grad.abs().sum() == 0
    on = _method("advent", TinyNet())
    on.optimizers["model"].step = lambda *a, **k: None
    on.step(src, tgt)
    assert on.model.aux_head.weight.grad.abs().sum() > 0


def test_minent_lowers_target_entropy():
    from atool.ops.uncertainty_torch import mean_entropy

    model = TinyNet()
    m = _method("minent", model, lambda_ent=5.0, lambda_ent_aux=1.0, lr=0.05)
    src, tgt = _batches()
    with torch.no_grad():
        start = float(mean_entropy(model(tgt["image"])["out"]))
    for _ in range(30):
        losses = m.step(src, tgt)
    assert {"seg", "seg_aux", "ent", "ent_aux"} <= set(losses)
    with torch.no_grad():
        end = float(mean_entropy(model(tgt["image"])["out"]))
    assert end < start - 0.05, (start, end)
    assert TrainConfig().lambda_ent == 1e-3


def test_class_balanced_thresholds_follow_cbst():
    from atool.ops.thresholds import class_thresholds
    from atool.train.losses import pseudo_labels

    conf = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.95, 0.99, 0.5, 0.6])
    pred = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    thr = class_thresholds(conf, pred, 4, portion=0.5, cap=0.9)
    # Each class keeps its most confident half: class 0 (0.3, 0.4), class 2 (0.6); class 1's
    # quantile 0.99 is capped at 0.9; class 3 is never predicted -> the cap.
    assert thr.tolist() == pytest.approx([0.3, 0.9, 0.6, 0.9])
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 0, 0, 0] = 10.0  # one confident pixel
    labels, _ = pseudo_labels(logits, (2, 2), threshold=0.9)
    assert labels.tolist() == [[[0, 255], [255, 255]]]
    labels, thr = pseudo_labels(logits, (2, 2), threshold=0.9, class_balanced=True, portion=1.0)
    assert (labels != 255).all()  # portion 1: every pixel of every predicted class is kept


def test_self_training_steps_and_teachers(tiny_checkpoint):
    m = _method("self_training", TinyNet(aux=False), pseudo_threshold=0.3, class_balanced=True)
    losses = m.step(*_batches())
    assert {"seg", "pseudo_ce", "pseudo_kept", "thr_mean"} <= set(losses)
    assert 0.0 < losses["pseudo_kept"] <= 1.0

    with pytest.raises(BadInput, match="--init"):
        _method("self_training", TinyNet(), teacher="init")
    m = _method("self_training", TinyNet(aux=False), teacher="init", init=str(tiny_checkpoint), pseudo_threshold=0.3)
    frozen = {k: v.clone() for k, v in m.teacher.state_dict().items()}
    for _ in range(2):
        m.step(*_batches())
    assert all(torch.equal(frozen[k], v) for k, v in m.teacher.state_dict().items())
    assert any(not torch.equal(frozen[k], v) for k, v in m.model.state_dict().items())


@pytest.mark.parametrize("args", [["minent"], ["self_training", "--class-balanced", "--pseudo-threshold", "0.5"]])
def test_methods_through_the_cli(synth_pair, tiny_checkpoint, tmp_path, args):
    out = tmp_path / "m.pt"
    r = run_cli("train", *args, "--source", synth_pair / "source", "--target", synth_pair / "target_train",
                "--init", tiny_checkpoint, "--out", out, *FAST)
    assert r.exit_code == 0, r.output
    assert load_checkpoint(out)["config"]["method"] == args[0]


def test_rank_by_entropy_splits_and_pseudo_labels(synth_pair, tiny_checkpoint, tmp_path):
    from atool.data.adapters.folder import FolderDataset
    from atool.train.entropy_ranking import existing_ranking, rank_by_entropy

    out = tmp_path / "split"
    s = rank_by_entropy(tiny_checkpoint, synth_pair / "target_train", out, easy_ratio=0.67)
    assert (s["easy"], s["hard"]) == (4, 2)  # round(0.67 * 6)
    scores = [im["score"] for im in s["images"]]
    assert scores == sorted(scores)
    easy = FolderDataset(out / "easy", require_labels=True)  # a folder dataset: usable as --source
    assert len(easy) == 4 and easy.classes == load_checkpoint(tiny_checkpoint)["classes"]
    assert easy.load(0).label.shape == easy.load(0).image.shape[:2]
    hard = FolderDataset(out / "hard")
    hard_ids = (out / "hard.txt").read_text().split()
    assert sorted(hard_ids) == sorted(sid for sid, _, _ in hard.items)
    assert [im["id"] for im in s["images"] if im["split"] == "hard"] == hard_ids
    assert json.loads((out / "ranking.json").read_text())["easy"] == 4
    assert existing_ranking(out, tiny_checkpoint, synth_pair / "target_train", 0.67)
    assert not existing_ranking(out, tiny_checkpoint, synth_pair / "target_train", 0.5)
    with pytest.raises(BadInput, match="not an atool entropy ranking"):
        rank_by_entropy(tiny_checkpoint, synth_pair / "target_train", synth_pair / "source")


def test_intrada_through_the_cli(synth_pair, tiny_checkpoint, tmp_path):
    out = tmp_path / "intra.pt"
    r = run_cli("train", "intrada", "--init", tiny_checkpoint, "--target", synth_pair / "target_train", "--out", out, *FAST)
    assert r.exit_code == 0, r.output
    split = tmp_path / "intra.intrada"
    assert (split / "easy" / "labels").is_dir() and (split / "hard" / "images").is_dir()
    cfg = load_checkpoint(out)["config"]
    assert cfg["source"] == str(split / "easy") and cfg["target"] == str(split / "hard")
    assert_one_line_error(run_cli("train", "intrada", "--target", synth_pair / "target_train", "--out", out, *FAST), 2, "--init")
