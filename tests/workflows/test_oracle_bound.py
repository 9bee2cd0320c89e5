"""tools/oracle_bound.py: the ground-truth selections pick what they claim, and bad input exits 2."""

from __future__ import annotations


import numpy as np
from conftest import load_tool


def _fixture():
    truth = np.zeros((20, 20), np.uint8)
    truth[:, 10:] = 1
    truth[15:, :3] = 2
    truth[0, 0] = 255
    pred = truth.copy()
    pred[:5, :5] = 1  # 24 wrong pixels of class 0 (the ignored one excluded)
    pred[15:, :3] = 0  # every class-2 pixel is wrong
    return truth, pred


def test_errors_variant_picks_only_wrong_pixels_and_never_ignored_ones():
    tool = load_tool("oracle_bound")
    truth, pred = _fixture()
    wrong = (pred != truth) & (truth != 255)
    for seed in range(5):
        idx = tool.select("errors", truth, pred, 10, np.random.default_rng(seed))
        assert len(np.unique(idx)) == 10 and wrong.ravel()[idx].all()
    # more clicks than errors: every error, then other labeled pixels
    idx = tool.select("errors", truth, pred, int(wrong.sum()) + 5, np.random.default_rng(0))
    assert wrong.ravel()[idx].sum() == wrong.sum() and (truth.ravel()[idx] != 255).all()


def test_class_splits_follow_their_rule():
    tool = load_tool("oracle_bound")
    truth, pred = _fixture()
    idx = tool.select("true_equal", truth, pred, 9, np.random.default_rng(0))
    assert np.bincount(truth.ravel()[idx], minlength=3).tolist() == [3, 3, 3]
    idx = tool.select("errors_equal", truth, pred, 8, np.random.default_rng(0))
    assert np.bincount(truth.ravel()[idx], minlength=3).tolist() == [4, 0, 4]
    quotas = tool._quotas(np.array([400, 100, 0]), 6, np.random.default_rng(0), 0.5)
    assert quotas.tolist() == [4, 2, 0]


def test_bad_input_exits_2(tmp_path, capsys):
    tool = load_tool("oracle_bound")
    assert tool.main(["--sweep", str(tmp_path), "--out", str(tmp_path / "o"), "--variants", "psychic"]) == 2
    assert "valid:" in capsys.readouterr().err
    assert tool.main(["--sweep", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "not a finished atool curve folder" in capsys.readouterr().err
    assert tool.main(["--sweep", str(tmp_path), "--out", str(tmp_path / "o"), "--budgets", "ten"]) == 2
    assert "comma-separated integers" in capsys.readouterr().err
