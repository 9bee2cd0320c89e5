"""The training loop and its methods, through the CLI, on the tiny synthetic pair."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from atool.data.images import write_label
from atool.models.checkpoint import load_checkpoint
from conftest import assert_one_line_error, run_cli

FAST = ["--iters", "2", "--batch-size", "2", "--crop", "64x32"]


def test_source_then_advent_then_adapt(synth_pair, tmp_path):
    src = tmp_path / "src.pt"
    r = run_cli("train", "source", "--source", synth_pair / "source", "--out", src, *FAST)
    assert r.exit_code == 0, r.output
    ck = load_checkpoint(src)
    assert ck["step"] == 2 and ck["classes"][0] == "road" and ck["config"]["method"] == "source"
    assert (tmp_path / "src.yaml").is_file() and (tmp_path / "src.json").is_file()

    adv = tmp_path / "adv.pt"
    r = run_cli("train", "advent", "--source", synth_pair / "source", "--target", synth_pair / "target_train", "--init", src, "--out", adv, *FAST)
    assert r.exit_code == 0, r.output
    ck = load_checkpoint(adv)
    assert any(k.startswith("module.disc") for k in ck["method_state"])
    before = load_checkpoint(src)["state_dict"]
    changed = [k for k, v in ck["state_dict"].items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert changed, "advent did not update the model"

    # Sparse target labels: a few oracle points on every pool image.
    labels = tmp_path / "sparse"
    for img in sorted((synth_pair / "target_train" / "images").iterdir()):
        lab = np.full((32, 64), 255, np.uint8)
        lab[5, 7] = 0
        lab[20, 30] = 2
        write_label(labels / "labels" / img.name, lab)
    out = tmp_path / "adapt.pt"
    r = run_cli("train", "adapt", "--source", synth_pair / "source", "--target", synth_pair / "target_train",
                "--target-labels", labels, "--init", adv, "--out", out, "--val", synth_pair / "target_val", *FAST)
    assert r.exit_code == 0, r.output
    assert "val mIoU" in r.output


def test_resume_continues_from_saved_step(synth_pair, tmp_path):
    out = tmp_path / "m.pt"
    assert run_cli("train", "source", "--source", synth_pair / "source", "--out", out, *FAST).exit_code == 0
    r = run_cli("train", "source", "--source", synth_pair / "source", "--out", out, "--resume",
                "--iters", "4", "--batch-size", "2", "--crop", "64x32")
    assert r.exit_code == 0, r.output
    assert "for 2 steps" in r.output
    assert load_checkpoint(out)["step"] == 4


def test_resume_with_other_model_is_refused(synth_pair, tmp_path):
    out = tmp_path / "m.pt"
    assert run_cli("train", "source", "--source", synth_pair / "source", "--out", out, *FAST).exit_code == 0
    r = run_cli("train", "source", "--source", synth_pair / "source", "--out", out, "--resume", "--model", "lraspp_mobilenet_v3_large", *FAST)
    assert_one_line_error(r, 2, "cannot resume")


def test_training_loss_goes_down(synth_pair, tmp_path):
    """Guards the loop and the loss wiring: 30 steps on 6 images must fit them better."""
    from atool.core.config import TrainConfig, build_config
    from atool.train.trainer import train
    from atool.data.adapters.folder import FolderDataset
    from atool.runtime.backends import load_backend
    from atool.eval.evaluate import backend_predictor, evaluate

    out = tmp_path / "fit.pt"
    cfg = build_config(TrainConfig, {}, dict(method="source", source=str(synth_pair / "source"), out=str(out), iters=0,
                                             batch_size=6, crop=(64, 32), optimizer="adamw", lr=3e-3, progress=False))
    train(cfg)
    ds = FolderDataset(synth_pair / "source", require_labels=True)
    before = evaluate(backend_predictor(load_backend(out)), ds).pixel_accuracy
    cfg.iters = 30
    train(cfg)
    after = evaluate(backend_predictor(load_backend(out)), ds).pixel_accuracy
    assert after > before + 0.2, (before, after)


def test_bad_training_inputs(synth_pair, tmp_path):
    assert_one_line_error(run_cli("train", "advent", "--source", synth_pair / "source", "--out", tmp_path / "x.pt", *FAST), 2, "--target")
    assert_one_line_error(run_cli("train", "adapt", "--source", synth_pair / "source", "--target", synth_pair / "target_train", "--out", tmp_path / "x.pt", *FAST), 2, "--target-labels")
    assert_one_line_error(run_cli("train", "source", "--source", tmp_path / "missing", "--out", tmp_path / "x.pt"), 2, "does not exist")
    bad_ckpt = tmp_path / "corrupt.pt"
    bad_ckpt.write_bytes(b"\x00garbage" * 100)
    assert_one_line_error(run_cli("train", "source", "--source", synth_pair / "source", "--init", bad_ckpt, "--out", tmp_path / "x.pt", *FAST), 2, "could not be read")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("iters: 2\nlearning_rate: 0.1\n")
    assert_one_line_error(run_cli("train", "source", "--source", synth_pair / "source", "--out", tmp_path / "x.pt", "--config", cfg), 2, "learning_rate")
    cfg.write_text("iters: [unclosed\n")
    assert_one_line_error(run_cli("train", "source", "--source", synth_pair / "source", "--out", tmp_path / "x.pt", "--config", cfg), 2, "not valid YAML")
    r = run_cli("train", "nosuch", "--source", synth_pair / "source", "--out", tmp_path / "x.pt")
    assert r.exit_code == 2


def test_class_mismatch_between_init_and_data(synth_pair, tmp_path, tiny_checkpoint):
    other = tmp_path / "other"
    shutil.copytree(synth_pair / "source", other)
    (other / "classes.txt").write_text("\n".join(["a", "b", "c"]) + "\n")
    r = run_cli("train", "source", "--source", other, "--init", tiny_checkpoint, "--out", tmp_path / "x.pt", *FAST)
    assert_one_line_error(r, 2, "class lists differ")


def test_corrupt_source_images_are_skipped_and_reported(synth_pair, tmp_path):
    root = tmp_path / "src"
    shutil.copytree(synth_pair / "source", root)
    victim = sorted((root / "images").iterdir())[0]
    victim.write_bytes(b"broken")
    r = run_cli("train", "source", "--source", root, "--out", tmp_path / "x.pt", *FAST)
    assert r.exit_code == 0, r.output
    import json

    summary = json.loads((tmp_path / "x.json").read_text())
    assert summary["skipped"]["source"][0]["id"] == victim.stem
