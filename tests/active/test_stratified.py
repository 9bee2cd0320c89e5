"""``stratified``: random points shared out over predicted-class regions."""

from __future__ import annotations

import numpy as np
import pytest

from atool.active.strategies import make_strategy
from atool.active.strategies.stratified import region_quota
from atool.core.errors import BadInput


def _maps(pred: np.ndarray, classes: int = 4) -> dict[str, np.ndarray]:
    prob = np.full((classes, *pred.shape), 0.02, np.float32)
    for c in range(classes):
        prob[c][pred == c] = 1.0 - 0.02 * (classes - 1)
    return {"prob": prob, "entropy": np.zeros(pred.shape, np.float32)}


def _layout() -> np.ndarray:
    """A 64 x 128 image: class 0 on 75 %, class 1 on 22 %, class 2 on 3 %, class 3 on 0.1 % (below the floor)."""
    pred = np.zeros((64, 128), np.int64)
    pred[:, :28] = 1
    pred[:8, 28:59] = 2
    pred[60:, 100:102] = 3
    return pred


def test_quota_follows_the_divisor_rule():
    area = np.array([0.64, 0.16, 0.04])
    assert region_quota(area, 7, 0.5).tolist() == [4, 2, 1]  # shares 0.8 : 0.4 : 0.2
    assert region_quota(area, 6, 0.0).tolist() == [2, 2, 2]
    assert region_quota(area, 21, 1.0).tolist() == [16, 4, 1]
    assert region_quota(area, 0, 0.5).tolist() == [0, 0, 0]


def test_every_region_above_the_floor_is_asked_and_small_ones_get_more_than_their_area():
    pred = _layout()
    maps = _maps(pred)
    cands = make_strategy("stratified").candidates(maps, np.random.default_rng(0), 12)
    got = pred[cands.y.astype(int), cands.x.astype(int)]
    counts = np.bincount(got, minlength=4)
    assert counts.sum() == 12 and counts[2] >= 1, counts
    assert counts[3] == 0, "a region below min_area is speckle, not asked"
    assert counts[0] < 0.75 * 12, "the dominant class gets less than its area share"
    assert len(set(zip(cands.x.tolist(), cands.y.tolist()))) == 12, "points are distinct"
    # every prefix is stratified too: by score, points follow the divisor keys
    first = got[np.argsort(-cands.score)]
    assert first[:2].tolist() == [0, 1]
    equal = make_strategy("stratified", {"alpha": 0.0}).candidates(maps, np.random.default_rng(0), 12)
    by_score = pred[equal.y.astype(int), equal.x.astype(int)][np.argsort(-equal.score)]
    assert set(by_score[:3].tolist()) == {0, 1, 2}, "equal shares: the first three points reach all three regions"


def test_labeled_pixels_are_never_proposed_and_seeds_reproduce():
    pred = _layout()
    maps = _maps(pred)
    maps["labeled"] = np.zeros(pred.shape, bool)
    maps["labeled"][:, :64] = True
    strat = make_strategy("stratified", {"alpha": 0.0})
    a = strat.candidates(maps, np.random.default_rng(5), 20)
    b = strat.candidates(maps, np.random.default_rng(5), 20)
    assert not maps["labeled"][a.y.astype(int), a.x.astype(int)].any()
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y) and np.array_equal(a.score, b.score)


def test_random_within_a_region_reaches_a_differently_coloured_part_in_proportion():
    # one predicted class over the whole image: stratified is then exactly uniform random
    pred = np.zeros((64, 64), np.int64)
    cands = make_strategy("stratified").candidates(_maps(pred, 2), np.random.default_rng(1), 400)
    top = (cands.y.astype(int) < 16).mean()
    assert 0.17 < top < 0.33, top  # a quarter of the area holds about a quarter of the points


@pytest.mark.parametrize("params", [{"alpha": 1.5}, {"alpha": -0.1}, {"min_area": 1.0}, {"alpha": "x"}, {"radius": 3}])
def test_bad_parameters_are_one_line_errors(params):
    with pytest.raises(BadInput):
        make_strategy("stratified", params)


def test_focus_moves_a_share_of_each_region_to_its_uncertain_pixels():
    pred = _layout()
    maps = _maps(pred)
    border = np.zeros(pred.shape, bool)
    border[:, 24:32] = True  # the strip around the class 0 / class 1 boundary
    maps["entropy"] = np.where(border, 1.0, 1e-4).astype(np.float32)
    on_border = {}
    for focus in (0.0, 0.5, 1.0):
        strat = make_strategy("stratified", {"focus": focus})
        hits = []
        for seed in range(20):
            c = strat.candidates(maps, np.random.default_rng(seed), 12)
            assert len(np.unique(c.y * 128 + c.x)) == len(c) == 12
            hits.append(border[c.y, c.x].mean())
        on_border[focus] = float(np.mean(hits))
    # The strip is 6 % of the image: uniform draws hit it about that often, focused ones far more,
    # and half-focused ones in between (the other half keeps sampling the whole region).
    assert on_border[0.0] < 0.15 < on_border[0.5] < on_border[1.0]
    assert on_border[1.0] > 0.7


def test_focus_must_be_a_share():
    with pytest.raises(BadInput, match="focus"):
        make_strategy("stratified", {"focus": 1.5})
