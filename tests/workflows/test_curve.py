"""``atool curve``: the budget-sweep evaluator (summaries, resume, bad input)."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest

from atool.workflows.curve_report import _auc, _clicks_to, markdown, summarise
from conftest import assert_one_line_error, run_cli


def test_auc_is_the_mean_miou_over_the_click_range():
    # flat at 10 from 0 clicks: the area over [0, 4] divided by 4 is 10
    assert _auc([2, 4], [10.0, 10.0], 10.0) == 10.0
    # linear 0 -> 20 over [0, 4]: mean 10
    assert _auc([2, 4], [10.0, 20.0], 0.0) == 10.0


def test_clicks_to_target_interpolates_and_says_when_never_reached():
    assert _clicks_to(15.0, [2, 4], [10.0, 20.0], 0.0) == 3.0
    assert _clicks_to(5.0, [2, 4], [10.0, 20.0], 0.0) == 1.0
    assert _clicks_to(25.0, [2, 4], [10.0, 20.0], 0.0) is None
    assert _clicks_to(0.0, [2, 4], [10.0, 20.0], 1.0) == 0.0


def _arm(strategy, budget, seed, miou):
    return {"strategy": strategy, "budget": budget, "seed": seed, "miou": miou, "iou": {"a": miou, "b": None},
            "clicks": budget * 4, "labeled_pixels": budget * 4, "clicks_by_class": {"a": budget * 3, "b": budget, "(null)": 0}}


def test_summary_pairs_seeds_against_random_and_reports_the_gap():
    cfg = SimpleNamespace(strategies=["random", "smart"], budgets=[2, 4], seeds=[0, 1], report_budget=0,
                          recipe=lambda: {"rounds": 1, "retrain": {}, "ingest": {}, "params": {}})
    arms = [_arm("random", b, s, 10 + b + s) for b in (2, 4) for s in (0, 1)]
    arms += [_arm("smart", b, s, 13 + b + s) for b in (2, 4) for s in (0, 1)]
    start = {"model": "m", "miou": 10.0}
    ceiling = [{"miou": 30.0}, {"miou": 32.0}]
    summary = summarise(cfg, ["a", "b"], start, start, ceiling, arms, {"a": 75.0, "b": 25.0})
    smart = summary["strategies"]["smart"]["budgets"]["2"]
    assert smart["mean"] == 15.5 and smart["std"] == pytest.approx(0.71, abs=0.01)
    assert smart["vs_random"]["values"] == [3.0, 3.0]
    assert summary["full_labels"]["mean"] == 31.0
    assert summary["gap_target"] == pytest.approx(10 + 0.9 * 21, abs=0.01)
    assert summary["strategies"]["smart"]["budgets"]["2"]["clicks_by_class_pct"]["a"] == 75.0
    assert summary["strategies"]["random"]["clicks_to_90"] is None
    text = markdown(summary)
    assert "| smart |" in text and "+3.00 ± 0.00" in text


@pytest.fixture(scope="module")
def sweep_inputs(tmp_path_factory, synth_pair, tiny_checkpoint):
    return {
        "init": tiny_checkpoint,
        "source": synth_pair / "source",
        "pool": synth_pair / "target_train",
        "val": synth_pair / "target_val",
    }


def _curve(inputs, out, *extra):
    return run_cli("curve", "--init", inputs["init"], "--source", inputs["source"], "--pool", inputs["pool"],
                   "--val", inputs["val"], "--out", out, *extra)


def test_sweep_writes_reports_and_resumes_without_rerunning_arms(tmp_path, sweep_inputs, one_torch_thread, monkeypatch):
    out = tmp_path / "curve"
    args = ("--strategies", "random", "--budgets", "1,2", "--seeds", "0", "--iters", "2", "--no-full-labels")
    result = _curve(sweep_inputs, out, *args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "curve.json").read_text())
    assert set(summary["strategies"]["random"]["budgets"]) == {"1", "2"}
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| random |" in (out / "curve.md").read_text()
    assert "no full-label ceiling" in (out / "curve.md").read_text(), "without a ceiling the gap is not reported as unreached"
    assert summary["strategies"]["random"]["budgets"]["2"]["clicks"] == 2 * 6  # 6 pool images

    import atool.workflows.rounds as rounds

    calls = []
    real = rounds.run_loop
    monkeypatch.setattr(rounds, "run_loop", lambda **kw: calls.append(kw) or real(**kw))
    result = _curve(sweep_inputs, out, "--strategies", "random", "--budgets", "1,2,3", "--seeds", "0", "--iters", "2", "--no-full-labels")
    assert result.exit_code == 0, result.output
    assert [c["config"]["query"]["budget"] for c in calls] == [3], "only the new arm runs"
    # another recipe in the same folder would mix incomparable arms: refused
    result = _curve(sweep_inputs, out, *args[:-3], "--iters", "3", "--no-full-labels")
    assert_one_line_error(result, 2, "other settings")


def test_bad_input_is_one_line(tmp_path, sweep_inputs, synth_pair):
    assert_one_line_error(_curve(sweep_inputs, tmp_path / "a", "--strategies", "random,nope"), 2, "unknown")
    assert_one_line_error(_curve(sweep_inputs, tmp_path / "b", "--budgets", "2,-5"), 2, "budgets")
    assert_one_line_error(_curve(sweep_inputs, tmp_path / "c", "--budgets", "2,x"), 2, "budgets")
    bare = tmp_path / "bare_pool"
    shutil.copytree(synth_pair / "target_train" / "images", bare / "images")
    assert_one_line_error(_curve({**sweep_inputs, "pool": bare}, tmp_path / "d"), 2, "oracle labels")
    other = tmp_path / "other_val"
    shutil.copytree(synth_pair / "target_val", other)
    (other / "classes.txt").write_text("x\ny\n")
    assert_one_line_error(_curve({**sweep_inputs, "val": other}, tmp_path / "e"), 2, "class")


def test_sweep_with_relative_paths(tmp_path, sweep_inputs, one_torch_thread, monkeypatch):
    """As the README runs it, from the demo's folder: the pool's class shares once read
    ``pool/oracle_labels/pool/oracle_labels/x.png`` and the finished sweep ended in exit 2."""
    import os

    monkeypatch.chdir(tmp_path)
    relative = {k: os.path.relpath(v, tmp_path) for k, v in sweep_inputs.items()}
    assert not any(os.path.isabs(v) for v in relative.values())
    result = _curve(relative, "curve", "--strategies", "random", "--budgets", "1", "--seeds", "0", "--iters", "2", "--no-full-labels")
    assert result.exit_code == 0, result.output
    shares = json.loads((tmp_path / "curve" / "curve.json").read_text())["pool_class_pct"]
    assert abs(sum(shares.values()) - 100) < 0.1
