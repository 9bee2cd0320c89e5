"""The training engine: poly LR, bit-exact resume, DDP under torchrun, AMP, frozen BN,
backbone weights, bad input through the CLI, and the YAML presets."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from atool.core.config import TrainConfig, build_config, load_yaml
from atool.models.checkpoint import load_checkpoint
from conftest import assert_one_line_error, run_cli

REPO = Path(__file__).resolve().parents[2]
FAST = ["--iters", "2", "--batch-size", "2", "--crop", "64x32"]


def _cfg(**kw) -> TrainConfig:
    base = dict(batch_size=2, crop=(64, 32), progress=False, log_every=0)
    base.update(kw)
    return build_config(TrainConfig, {}, base)


# --- poly LR ---------------------------------------------------------------------------------

def test_poly_lr_matches_formula_and_is_applied_to_every_optimizer():
    from atool.train.trainer import Trainer, poly_lr_factor

    for step, iters, power in [(0, 100, 0.9), (50, 100, 0.9), (99, 100, 0.9), (120_000, 250_000, 0.9), (7, 10, 1.0)]:
        assert poly_lr_factor(step, iters, power) == pytest.approx((1 - step / iters) ** power, rel=1e-12)
    assert poly_lr_factor(100, 100, 0.9) == 0.0
    assert [poly_lr_factor(s, 100, 0.9, warmup_iters=4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]

    # The loop sets lr * factor on every group of every optimiser; the horizon is poly_iters when given.
    t = Trainer.__new__(Trainer)
    t.cfg = _cfg(iters=120, poly_iters=250, lr=2.5e-4)
    p = torch.nn.Parameter(torch.zeros(1))
    opts = {"model": torch.optim.SGD([p], lr=2.5e-4), "disc": torch.optim.Adam([p], lr=1e-4)}
    t._set_lr(opts, {"model": [2.5e-4], "disc": [1e-4]}, 60)
    assert opts["model"].param_groups[0]["lr"] == pytest.approx(2.5e-4 * (1 - 60 / 250) ** 0.9)
    assert opts["disc"].param_groups[0]["lr"] == pytest.approx(1e-4 * (1 - 60 / 250) ** 0.9)


def test_head_lr_mult_splits_backbone_and_classifier_groups():
    from atool.core.errors import BadInput
    from atool.models import build_model
    from atool.train.methods import model_param_groups

    model = build_model("deeplabv2_resnet50", num_classes=5)
    one = model_param_groups(model, 1e-3)  # the default keeps one group (old optimiser states still load)
    assert len(one) == 1 and len(one[0]["params"]) == len(list(model.parameters()))
    backbone, head = model_param_groups(model, 1e-3, 10.0)
    assert backbone["lr"] == 1e-3 and head["lr"] == pytest.approx(1e-2)
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(backbone["params"]) == ids(model.backbone.parameters())
    assert ids(head["params"]) == ids(model.classifier.parameters()) | ids(model.aux_classifier.parameters())
    with pytest.raises(BadInput, match="backbone"):
        model_param_groups(torch.nn.Conv2d(3, 5, 1), 1e-3, 10.0)


def test_head_lr_mult_through_the_cli_keeps_the_ratio_under_poly(synth_pair, tmp_path):
    out = tmp_path / "m.pt"
    r = run_cli("train", "source", "--source", synth_pair / "source", "--out", out, "--head-lr-mult", "10", "--lr", "1e-3",
                "--iters", "4", "--stop-after", "2", "--batch-size", "2", "--crop", "64x32")
    assert r.exit_code == 0, r.output
    groups = load_checkpoint(out)["method_state"]["opt.model"]["param_groups"]
    assert len(groups) == 2
    # The LR of the last update taken (step index 1 of 4) is what the optimiser state holds.
    assert groups[0]["lr"] == pytest.approx(1e-3 * (1 - 1 / 4) ** 0.9) and groups[1]["lr"] == pytest.approx(10 * groups[0]["lr"])
    r = run_cli("train", "source", "--source", synth_pair / "source", "--out", tmp_path / "x.pt", "--head-lr-mult", "0", *FAST)
    assert_one_line_error(r, contains="head_lr_mult must be > 0")


# --- bit-exact resume ------------------------------------------------------------------------

def test_rng_state_round_trip_survives_a_checkpoint(tmp_path):
    from atool.train.trainer import rng_state, set_rng_state

    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    path = tmp_path / "rng.pt"
    torch.save(rng_state(torch.device("cpu")), path)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    set_rng_state(torch.load(path, weights_only=True), torch.device("cpu"))
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


def _all_tensors(ck: dict) -> dict[str, torch.Tensor]:
    out = {f"model.{k}": v for k, v in ck["state_dict"].items()}
    for name, state in ck["method_state"].items():
        if name.startswith("module."):
            out.update({f"{name}.{k}": v for k, v in state.items()})
        elif name.startswith("opt."):
            for pid, s in state["state"].items():
                out.update({f"{name}.{pid}.{k}": v for k, v in s.items() if torch.is_tensor(v)})
    return out


def test_resume_is_bit_exact(synth_pair, tmp_path):
    """N steps == N/2 steps, resume, N/2 steps: every weight and optimiser tensor torch.equal."""
    from atool.train.trainer import train

    common = dict(method="advent", source=str(synth_pair / "source"), target=str(synth_pair / "target_train"), iters=6, seed=5)
    full = train(_cfg(out=str(tmp_path / "full.pt"), **common))
    assert full["steps"] == 6
    half = train(_cfg(out=str(tmp_path / "half.pt"), stop_after=3, **common))
    assert half["steps"] == 3 and half["stopped_at"] == 3
    ck_half = load_checkpoint(tmp_path / "half.pt")
    assert ck_half["data"] == {"source": 6, "target": 6}
    again = train(_cfg(out=str(tmp_path / "half.pt"), resume=True, **common))
    assert again["steps"] == 6 and again["steps_run"] == 3

    a, b = _all_tensors(load_checkpoint(tmp_path / "full.pt")), _all_tensors(load_checkpoint(tmp_path / "half.pt"))
    assert a.keys() == b.keys() and any(k.startswith("module.disc") for k in a)
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, differ[:5]
    # ...and the comparison has teeth: a different seed gives different weights.
    other = train(_cfg(out=str(tmp_path / "other.pt"), **{**common, "seed": 6}))
    assert other["steps"] == 6
    c = _all_tensors(load_checkpoint(tmp_path / "other.pt"))
    assert any(not torch.equal(a[k], c[k]) for k in a if k.startswith("model."))


def test_stop_after_through_the_cli(synth_pair, tmp_path):
    out = tmp_path / "m.pt"
    r = run_cli("train", "source", "--source", synth_pair / "source", "--out", out, "--iters", "4", "--stop-after", "1",
                "--batch-size", "2", "--crop", "64x32")
    assert r.exit_code == 0, r.output
    assert "stopped at step 1 of 4" in r.output
    r = run_cli("train", "source", "--source", synth_pair / "source", "--out", out, "--iters", "4", "--resume",
                "--batch-size", "2", "--crop", "64x32")
    assert r.exit_code == 0 and "for 3 steps" in r.output, r.output


# --- DDP ---------------------------------------------------------------------------------------

def test_ddp_two_cpu_processes_on_gloo(synth_pair, tmp_path):
    """torchrun --nproc_per_node 2 on CPU (gloo): both ranks train, rank 0 writes one checkpoint."""
    out = tmp_path / "ddp.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env["CUDA_VISIBLE_DEVICES"] = ""  # CPU ranks even on a GPU machine: this test is about gloo
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "atool.cli", "train", "advent", "--source", str(synth_pair / "source"),
           "--target", str(synth_pair / "target_train"), "--out", str(out), *FAST]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["ddp.pt"]
    ck = load_checkpoint(out)
    assert ck["step"] == 2
    assert ck["rng"]["world_size"] == 2 and len(ck["rng"]["per_rank"]) == 2
    # Ranks drew different randomness; each rank consumed its own shard: 2 steps x 2 images x 2 ranks.
    assert not torch.equal(ck["rng"]["per_rank"][0]["torch"], ck["rng"]["per_rank"][1]["torch"])
    assert ck["data"] == {"source": 8, "target": 8}
    assert not any(k.startswith("module.") for k in ck["state_dict"])  # unwrapped from DDP
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["world_size"] == 2
    assert r.stdout.count("trained advent") == 1  # only rank 0 reports


def test_sampler_shards_the_global_stream():
    from atool.data.crops import _SeededSampler

    def take(s, n):
        it = iter(s)
        return [next(it) for _ in range(n)]

    whole = take(_SeededSampler(5, 1), 12)
    r0, r1 = take(_SeededSampler(5, 1, 0, 0, 2), 6), take(_SeededSampler(5, 1, 0, 1, 2), 6)
    assert whole[0::2] == r0 and whole[1::2] == r1
    assert take(_SeededSampler(5, 1, 4, 1, 2), 2) == whole[5:8:2]  # resumed after 4 global samples


# --- AMP, frozen BN, backbone weights ------------------------------------------------------------

def test_amp_is_ignored_on_cpu_with_a_log_line(synth_pair, tmp_path, caplog):
    from atool.train.trainer import train

    if torch.cuda.is_available():
        pytest.skip("this checks the CPU fallback")
    caplog.set_level("INFO", logger="atool.train")
    s = train(_cfg(method="source", source=str(synth_pair / "source"), out=str(tmp_path / "a.pt"), iters=1, amp=True))
    assert s["precision"] == "fp32"
    assert any("amp: ignored" in m for m in caplog.messages)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_amp_on_cuda(synth_pair, tmp_path, dtype):
    from atool.train.trainer import train

    s = train(_cfg(method="advent", source=str(synth_pair / "source"), target=str(synth_pair / "target_train"),
                   out=str(tmp_path / "a.pt"), iters=2, amp=True, amp_dtype=dtype))
    assert s["precision"] in ("bf16", "fp16+GradScaler")
    ck = load_checkpoint(tmp_path / "a.pt")
    assert all(v.dtype != torch.float16 for v in ck["state_dict"].values())  # master weights stay fp32
    if s["precision"] == "fp16+GradScaler":
        assert "precision" in ck["method_state"]


def test_freeze_bn_keeps_statistics_and_affine_parameters(synth_pair, tiny_checkpoint, tmp_path):
    out = tmp_path / "f.pt"
    r = run_cli("train", "source", "--source", synth_pair / "source", "--init", tiny_checkpoint, "--out", out, "--freeze-bn", *FAST)
    assert r.exit_code == 0, r.output
    before, after = load_checkpoint(tiny_checkpoint)["state_dict"], load_checkpoint(out)["state_dict"]
    bn = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert bn and all(torch.equal(before[k], after[k]) for k in bn)
    bn_affine = [k[: -len("running_mean")] + "weight" for k in bn if k.endswith("running_mean")]
    assert all(torch.equal(before[k], after[k]) for k in bn_affine)
    assert any(not torch.equal(before[k], after[k]) for k in before if k not in bn and before[k].dtype.is_floating_point)


def test_backbone_weights_option_and_its_alias(synth_pair, tmp_path):
    import torchvision

    state = torchvision.models.mobilenet_v3_small(weights=None).state_dict()
    state = {k: v + 0.5 if v.dtype.is_floating_point else v for k, v in state.items()}  # unlike any random init
    wfile = tmp_path / "mnv3.pth"
    torch.save(state, wfile)
    for flag in ("--backbone-weights", "--weights"):
        out = tmp_path / f"bw{flag}.pt"
        r = run_cli("train", "source", "--source", synth_pair / "source", "--out", out, flag, wfile,
                    "--iters", "0", "--batch-size", "2", "--crop", "64x32")
        assert r.exit_code == 0, r.output
        ck = load_checkpoint(out)
        assert "backbone_weights" not in ck["model"]["args"]
        key = next(k for k in ck["state_dict"] if k.endswith("0.0.weight"))
        assert torch.equal(ck["state_dict"][key], state["features.0.0.weight"]), key
    r = run_cli("train", "source", "--source", synth_pair / "source", "--out", tmp_path / "x.pt",
                "--backbone-weights", tmp_path / "missing.pth", *FAST)
    assert_one_line_error(r, 2, "not found")


# --- bad input ----------------------------------------------------------------------------------

def test_bad_resume_inputs_exit_2_with_one_line(synth_pair, tmp_path):
    out = tmp_path / "m.pt"
    out.write_bytes(b"PK\x03\x04 truncated zip" * 10)
    r = run_cli("train", "source", "--source", synth_pair / "source", "--out", out, "--resume", *FAST)
    assert_one_line_error(r, 2, "could not be read")

    out.unlink()
    assert run_cli("train", "source", "--source", synth_pair / "source", "--out", out, *FAST).exit_code == 0
    r = run_cli("train", "source", "--source", synth_pair / "source", "--out", out, "--resume", "--model", "deeplabv3_mobilenet_v3_large", *FAST)
    assert_one_line_error(r, 2, "cannot resume")

    other = tmp_path / "other"
    shutil.copytree(synth_pair / "source", other)
    names = (other / "classes.txt").read_text().split()
    (other / "classes.txt").write_text("\n".join(reversed(names)) + "\n")
    r = run_cli("train", "source", "--source", other, "--out", out, "--resume", *FAST)
    assert_one_line_error(r, 2, "class lists differ")

    r = run_cli("train", "advent", "--source", synth_pair / "source", "--target", synth_pair / "target_train", "--out", out, "--resume", *FAST)
    assert_one_line_error(r, 2, "method")


def test_bad_engine_config_values(synth_pair, tmp_path):
    base = ["train", "source", "--source", synth_pair / "source", "--out", tmp_path / "x.pt"]
    cfg = tmp_path / "c.yaml"
    for text, needle in [("amp_dtype: fp8\n", "amp_dtype"), ("target_size: 10x10\n", "target_size"),
                         ("target_crop: big\n", "target_crop"), ("pseudo_threshold: 1.5\n", "pseudo_threshold")]:
        cfg.write_text(text)
        assert_one_line_error(run_cli(*base, "--config", cfg), 2, needle)


# --- presets ------------------------------------------------------------------------------------

PRESETS = ["advent_gta5_cityscapes", "advent_synthia_cityscapes", "active_points_g1", "active_points_g2", "labor"]


@pytest.mark.parametrize("name", PRESETS)
def test_presets_are_valid_configs_naming_their_source(name):
    path = REPO / "configs" / f"{name}.yaml"
    header = path.read_text().split("\n\n")[0]
    assert "Source of truth" in header, header
    preset = load_yaml(path)
    cfg = build_config(TrainConfig, preset, {"out": "x.pt"})  # unknown keys would raise
    assert cfg.lr == 2.5e-4 and cfg.momentum == 0.9 and cfg.poly_power == 0.9 and cfg.optimizer == "sgd"
    assert cfg.model == "deeplabv2_resnet101" and cfg.weight_decay in (5e-4, 1e-4)
    assert cfg.head_lr_mult == 10  # DeepLab-v2's ASPP classifiers at 10x, as AdaptSegNet/ADVENT train them
    assert cfg.iters in (120_000, 250_000) and cfg.source is None and cfg.target is None  # paths come from the CLI
    from atool.train.methods import METHODS

    assert cfg.method in METHODS
