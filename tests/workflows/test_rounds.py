"""Labels accumulated over stages, and LabOR's retraining method."""

from __future__ import annotations

import json

import numpy as np
import pytest

from atool.data.images import read_label, write_label
from atool.annotate.accumulate import merge_stage_labels
from atool.annotate.ingest import ORIGIN_ORACLE, ORIGIN_PSEUDO
from atool.core.errors import BadInput, Mismatch
from conftest import run_cli


def _stage(root, points, pseudo=(), classes="a\nb\nc\n", shape=(8, 12)):
    """An ingest-style folder with one image 'img' labeled at ``points`` {(y, x): class}."""
    label = np.full(shape, 255, np.uint8)
    origin = np.zeros(shape, np.uint8)
    for (y, x), c in points.items():
        label[y, x], origin[y, x] = c, ORIGIN_ORACLE
    for (y, x), c in dict(pseudo).items():
        label[y, x], origin[y, x] = c, ORIGIN_PSEUDO
    write_label(root / "labels" / "img.png", label)
    write_label(root / "origin" / "img.png", origin)
    (root / "classes.txt").write_text(classes)
    return root


def test_stages_accumulate_without_duplicates_or_pseudo_labels(tmp_path):
    acc = tmp_path / "acc"
    r1 = merge_stage_labels(acc, _stage(tmp_path / "s1", {(0, 0): 1, (2, 3): 2}, pseudo={(5, 5): 0}))
    assert (r1.new_pixels, r1.duplicate_pixels, r1.total_pixels) == (2, 0, 2)
    r2 = merge_stage_labels(acc, _stage(tmp_path / "s2", {(0, 0): 0, (7, 11): 1}))
    assert (r2.new_pixels, r2.duplicate_pixels, r2.total_pixels) == (1, 1, 3)
    label = read_label(acc / "labels" / "img.png")
    assert label[0, 0] == 1, "an earlier stage's answer is kept"
    assert label[7, 11] == 1 and label[2, 3] == 2
    assert label[5, 5] == 255, "pseudo labels are not carried over"
    assert int((read_label(acc / "origin" / "img.png") == ORIGIN_ORACLE).sum()) == 3


def test_an_empty_stage_adds_nothing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "classes.txt").write_text("a\nb\nc\n")
    (empty / "ingest.json").write_text("{}")
    assert merge_stage_labels(tmp_path / "acc", empty).total_pixels == 0
    merge_stage_labels(tmp_path / "acc", _stage(tmp_path / "s1", {(0, 0): 1}))
    r = merge_stage_labels(tmp_path / "acc", empty)
    assert (r.new_pixels, r.total_pixels) == (0, 1)


def test_merge_rejects_other_classes_sizes_and_non_ingest_folders(tmp_path):
    acc = tmp_path / "acc"
    merge_stage_labels(acc, _stage(tmp_path / "s1", {(0, 0): 1}))
    with pytest.raises(Mismatch, match="class list differs"):
        merge_stage_labels(acc, _stage(tmp_path / "s2", {(1, 1): 1}, classes="x\ny\n"))
    with pytest.raises(Mismatch, match="differs"):
        merge_stage_labels(acc, _stage(tmp_path / "s3", {(1, 1): 1}, shape=(9, 12)))
    (tmp_path / "plain").mkdir()
    with pytest.raises(BadInput, match="ingest"):
        merge_stage_labels(acc, tmp_path / "plain")


def test_finetune_trains_on_sparse_target_labels(synth_pair, tmp_path, tiny_checkpoint):
    labels = tmp_path / "sparse"
    pool = synth_pair / "target_train"
    for path in sorted((pool / "oracle_labels").glob("*.png"))[:3]:
        truth = read_label(path)
        sparse = np.full_like(truth, 255)
        sparse[::7, ::9] = truth[::7, ::9]
        write_label(labels / path.name, sparse)
    out = tmp_path / "ft.pt"
    r = run_cli("train", "finetune", "--source", synth_pair / "source", "--target", pool, "--target-labels", labels,
                "--init", tiny_checkpoint, "--iters", "3", "--batch-size", "2", "--crop", "64x32", "--out", out)
    assert r.exit_code == 0, r.output
    assert out.is_file()
    # Class-balanced CE on the clicks says the weights it chose.
    r = run_cli("train", "finetune", "--source", synth_pair / "source", "--target", pool, "--target-labels", labels,
                "--init", tiny_checkpoint, "--iters", "2", "--batch-size", "2", "--crop", "64x32", "--out", tmp_path / "b.pt",
                "--click-balance", "0.5")
    assert r.exit_code == 0, r.output
    assert "click_balance 0.5: target label weight per class:" in r.output
    r = run_cli("train", "finetune", "--source", synth_pair / "source", "--target", pool, "--init", tiny_checkpoint,
                "--iters", "1", "--out", tmp_path / "x.pt")
    assert r.exit_code == 2 and "--target-labels" in r.output


def _loop_config(tmp_path, body: str):
    cfg = tmp_path / "loop.yaml"
    cfg.write_text("train: {batch_size: 2, crop: [64, 32], log_every: 1000}\nselector: {iters: 4, selector_warmup: 2}\nretrain: {iters: 2}\n" + body)
    return cfg


def _loop_args(synth_pair, tiny_checkpoint, out, cfg, *extra):
    pool = synth_pair / "target_train"
    return ("loop", "--source", synth_pair / "source", "--target", pool, "--oracle-labels", pool / "oracle_labels",
            "--init", tiny_checkpoint, "--out", out, "--val", synth_pair / "target_val", "--config", cfg, *extra)


def test_loop_random_stages_never_ask_a_pixel_twice(synth_pair, tiny_checkpoint, tmp_path):
    # 200 random points per 64x32 image per stage: without exclusion about 19 per image would repeat.
    cfg = _loop_config(tmp_path, "stages: 2\nquery: {strategy: random, budget: 200, per_image: true}\n")
    out = tmp_path / "run"
    r = run_cli(*_loop_args(synth_pair, tiny_checkpoint, out, cfg))
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "loop.json").read_text())
    s1, s2 = summary["stages"]
    assert s1["queries"] == s2["queries"] == 200 * 6
    assert s2["merge"]["duplicate_pixels"] == 0
    assert s2["merge"]["total_pixels"] == 2 * 200 * 6
    assert all(s["miou"] is not None for s in summary["stages"])
    # Running it again resumes: both stages are done, nothing is retrained.
    before = (out / "stage_2" / "model.pt").stat().st_mtime_ns
    assert run_cli(*_loop_args(synth_pair, tiny_checkpoint, out, cfg)).exit_code == 0
    assert (out / "stage_2" / "model.pt").stat().st_mtime_ns == before


def test_loop_with_selector_heads_and_ppl(synth_pair, tiny_checkpoint, tmp_path):
    cfg = _loop_config(tmp_path, "stages: 2\nquery: {strategy: inconsistency_ppl, budget: 3, per_image: true}\n")
    out = tmp_path / "run"
    r = run_cli(*_loop_args(synth_pair, tiny_checkpoint, out, cfg))
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "loop.json").read_text())
    assert (out / "stage_1" / "selector.pt").is_file() and (out / "stage_2" / "selector.pt").is_file()
    for s in summary["stages"]:
        assert s["queries"] <= 3 * 6
        assert s["merge"]["duplicate_pixels"] == 0
    assert summary["stages"][-1]["merge"]["total_pixels"] == sum(s["merge"]["new_pixels"] for s in summary["stages"])


def test_loop_bad_input_is_one_line(synth_pair, tiny_checkpoint, tmp_path):
    from conftest import assert_one_line_error

    bad = _loop_config(tmp_path, "stages: 0\n")
    assert_one_line_error(run_cli(*_loop_args(synth_pair, tiny_checkpoint, tmp_path / "a", bad)), 2, "stages")
    bad = _loop_config(tmp_path, "query: {strategy: random, budgte: 3}\n")
    assert_one_line_error(run_cli(*_loop_args(synth_pair, tiny_checkpoint, tmp_path / "b", bad)), 2, "query.budgte (did you mean budget?)")
    for body, message in (("stagez: 2\n", "unknown loop config key(s) stagez"), ("retrain: {iterz: 2}\n", "retrain.iterz"),
                          ("query: {seed: 4}\n", "the loop's"), ("ingest: {expnd: superpixel}\n", "ingest.expnd"),
                          ("selector: {lr: fast}\n", "lr must be float"), ("query: {budget: -1}\n", "budget must be 0 or more")):
        bad = _loop_config(tmp_path, body)
        assert_one_line_error(run_cli(*_loop_args(synth_pair, tiny_checkpoint, tmp_path / "b", bad)), 2, message)
    assert_one_line_error(run_cli(*_loop_args(synth_pair, tiny_checkpoint, tmp_path / "b", _loop_config(tmp_path, "")),
                                  "--strategy", "nope"), 2, "Invalid value for '--strategy'")
    assert not (tmp_path / "b").exists(), "bad configs fail before any stage runs"
    ok = _loop_config(tmp_path, "stages: 1\n")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    pool = synth_pair / "target_train"
    r = run_cli("loop", "--source", synth_pair / "source", "--target", pool, "--oracle-labels", pool / "oracle_labels",
                "--init", corrupt, "--out", tmp_path / "c", "--config", ok)
    assert_one_line_error(r, 2)
    r = run_cli("loop", "--source", tmp_path / "nope", "--target", pool, "--oracle-labels", pool / "oracle_labels",
                "--init", tiny_checkpoint, "--out", tmp_path / "d", "--config", ok)
    assert_one_line_error(r, 2, "not a folder")


def test_loop_options_lay_over_the_yaml(synth_pair, tiny_checkpoint, tmp_path, monkeypatch):
    import atool.workflows.rounds as rounds

    seen = []
    monkeypatch.setattr(rounds, "run_loop", lambda **kw: seen.append(kw["config"]) or {"start": {"miou": None}, "stages": [], "final_model": "m"})
    cfg = _loop_config(tmp_path, "stages: 2\nquery: {strategy: entropy, budget: 9, params: {radius: 2}}\n")
    r = run_cli(*_loop_args(synth_pair, tiny_checkpoint, tmp_path / "o", cfg), "--budget", "4", "--total", "--param", "radius=5")
    assert r.exit_code == 0, r.output
    got = seen[-1]
    assert (got.stages, got.query.strategy, got.query.budget, got.query.per_image, got.query.params) == (2, "entropy", 4, False, {"radius": 5})
    assert (got.selector, got.retrain, got.train["batch_size"]) == ({"iters": 4, "selector_warmup": 2}, {"iters": 2}, 2)


def test_query_exclude_skips_labeled_pixels(synth_pair, tiny_checkpoint, tmp_path):
    pool = synth_pair / "target_train" / "images"
    labels = tmp_path / "labeled"
    for image in sorted(pool.glob("*.png")):
        done = np.full((32, 64), 255, np.uint8)
        done[:, :48] = 0  # three quarters of every image already labeled
        write_label(labels / image.name, done)
    out = tmp_path / "q.json"
    r = run_cli("query", "--model", tiny_checkpoint, "--images", pool, "--budget", "100", "--per-image",
                "--strategy", "entropy", "--param", "radius=0", "--exclude", labels, "--out", out)
    assert r.exit_code == 0, r.output
    q = json.loads(out.read_text())
    xs = [p["x"] for e in q["images"] for p in e["queries"]]
    assert len(xs) == 600 and min(xs) >= 48
    assert q["stats"]["excluded_pixels"] == 6 * 32 * 48
    from conftest import assert_one_line_error

    assert_one_line_error(run_cli("query", "--model", tiny_checkpoint, "--images", pool, "--budget", "5",
                                  "--exclude", tmp_path / "missing", "--out", out), 2, "exclude")


def test_labor_loop_preset_is_a_valid_loop_config():
    from pathlib import Path

    from atool.core.config import TrainConfig, build_config, load_yaml
    from atool.workflows.rounds import loop_config

    path = Path(__file__).resolve().parents[2] / "configs" / "labor_loop.yaml"
    assert "Source of truth" in path.read_text().split("\n\n")[0]
    cfg = loop_config(load_yaml(path))
    assert cfg.stages == 3 and cfg.query.strategy == "inconsistency_spl" and cfg.query.params == {"pixel_ratio": 0.0073}
    for section, method in (("selector", "selector"), ("retrain", "finetune")):
        build_config(TrainConfig, {**cfg.train, **getattr(cfg, section)}, {"method": method, "out": "x.pt"})


def test_loop_with_spl_regions_labels_whole_masks(synth_pair, tiny_checkpoint, tmp_path):
    cfg = _loop_config(tmp_path, "stages: 2\nquery: {strategy: inconsistency_spl, budget: 1000, per_image: true, params: {pixel_ratio: 0.05}}\n")
    out = tmp_path / "run"
    r = run_cli(*_loop_args(synth_pair, tiny_checkpoint, out, cfg))
    assert r.exit_code == 0, r.output
    stages = json.loads((out / "loop.json").read_text())["stages"]
    for s in stages:
        assert s["merge"]["duplicate_pixels"] == 0
        # Each stage labels at most 5% of the pool's pixels (6 images of 64x32), in whole regions.
        assert s["merge"]["new_pixels"] <= 0.05 * 6 * 64 * 32
    assert stages[-1]["merge"]["total_pixels"] == sum(s["merge"]["new_pixels"] for s in stages) > 0
