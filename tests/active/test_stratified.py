"""``stratified``: random points shared out over predicted-class regions."""

from __future__ import annotations

import numpy as np
import pytest

from atool.active.strategies import make_strategy
from atool.active.strategies.stratified import region_quota
from atool.core.errors import BadInput

# The divisor rule and uniform draws inside a region, without the defaults' jitter and rarity.
PLAIN = {"jitter": False, "rarity": 0.0}

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
    cands = make_strategy("stratified", PLAIN).candidates(maps, np.random.default_rng(0), 12)
    got = pred[cands.y.astype(int), cands.x.astype(int)]
    counts = np.bincount(got, minlength=4)
    assert counts.sum() == 12 and counts[2] >= 1, counts
    assert counts[3] == 0, "a region below min_area is speckle, not asked"
    assert counts[0] < 0.75 * 12, "the dominant class gets less than its area share"
    assert len(set(zip(cands.x.tolist(), cands.y.tolist()))) == 12, "points are distinct"
    # every prefix is stratified too: by score, points follow the divisor keys
    first = got[np.argsort(-cands.score)]
    assert first[:2].tolist() == [0, 1]
    equal = make_strategy("stratified", {**PLAIN, "alpha": 0.0}).candidates(maps, np.random.default_rng(0), 12)
    by_score = pred[equal.y.astype(int), equal.x.astype(int)][np.argsort(-equal.score)]
    assert set(by_score[:3].tolist()) == {0, 1, 2}, "equal shares: the first three points reach all three regions"


def test_labeled_pixels_are_never_proposed_and_seeds_reproduce():
    pred = _layout()
    maps = _maps(pred)
    maps["labeled"] = np.zeros(pred.shape, bool)
    maps["labeled"][:, :64] = True
    strat = make_strategy("stratified", {**PLAIN, "alpha": 0.0})
    a = strat.candidates(maps, np.random.default_rng(5), 20)
    b = strat.candidates(maps, np.random.default_rng(5), 20)
    assert not maps["labeled"][a.y.astype(int), a.x.astype(int)].any()
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y) and np.array_equal(a.score, b.score)


def test_random_within_a_region_reaches_a_differently_coloured_part_in_proportion():
    # one predicted class over the whole image: stratified is then exactly uniform random
    pred = np.zeros((64, 64), np.int64)
    cands = make_strategy("stratified", PLAIN).candidates(_maps(pred, 2), np.random.default_rng(1), 400)
    top = (cands.y.astype(int) < 16).mean()
    assert 0.17 < top < 0.33, top  # a quarter of the area holds about a quarter of the points


@pytest.mark.parametrize("params", [{"alpha": 1.5}, {"alpha": -0.1}, {"min_area": 1.0}, {"alpha": "x"}, {"radius": 3}])
def test_bad_parameters_are_one_line_errors(params):
    with pytest.raises(BadInput):
        make_strategy("stratified", params)



def test_jitter_asks_every_class_at_its_share_even_at_tiny_budgets():
    """The fixed divisor rule gives an image's first points to its largest regions, always: at
    3 clicks per image the small regions are never asked. Jittered offsets keep the shares."""
    pred = np.zeros((64, 128), np.int64)
    pred[:, :28] = 1
    pred[:8, 28:59] = 2
    pred[40:, 100:120] = 3
    pred[:20, 60:] = 4
    maps = _maps(pred, classes=5)
    area = np.bincount(pred.ravel(), minlength=5) / pred.size
    target = np.sqrt(area) / np.sqrt(area).sum()
    shares = {}
    for jitter in (False, True):
        strat = make_strategy("stratified", {"jitter": jitter, "rarity": 0.0})
        counts = np.zeros(5)
        for seed in range(300):
            c = strat.candidates(maps, np.random.default_rng(seed), 3)
            assert len(c) == 3
            counts += np.bincount(pred[c.y, c.x], minlength=5)
        shares[jitter] = counts / counts.sum()
    assert shares[False][2] == shares[False][3] == 0.0
    np.testing.assert_allclose(shares[True], target, atol=0.03)


def test_jitter_keeps_each_region_within_one_point_of_its_share():
    area = np.array([0.5, 0.3, 0.15, 0.05])
    rng = np.random.default_rng(0)
    exact = 40 * np.sqrt(area) / np.sqrt(area).sum()
    for _ in range(50):
        quota = region_quota(area, 40, 0.5, rng.random((4, 40)))
        assert quota.sum() == 40 and (np.abs(quota - exact) < 1.0 + 1e-9).all()


def test_jitter_must_be_a_bool():
    with pytest.raises(BadInput, match="jitter"):
        make_strategy("stratified", {"jitter": "maybe"})


def _one_region_with_a_rare_colour() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One predicted class over a 64 x 64 image; 2 % of it (an 8 x 10 block, say a pedestrian on "road") is red."""
    pred = np.zeros((64, 64), np.int64)
    maps = _maps(pred, 2)
    image = np.full((64, 64, 3), 100, np.uint8)
    rare = np.zeros((64, 64), bool)
    rare[30:38, 20:30] = True
    image[rare] = (220, 30, 30)
    maps["image"] = image
    return maps, rare


def test_rarity_draws_points_towards_colours_rare_in_their_region():
    maps, rare = _one_region_with_a_rare_colour()
    hits = {}
    for params in ({"rarity": 0.0}, {}, {"rarity": 1.0, "rarity_share": 0.5}):
        strat = make_strategy("stratified", params)
        got = [rare[c.y, c.x].mean() for c in (strat.candidates(maps, np.random.default_rng(s), 10) for s in range(200))]
        hits[str(params)] = float(np.mean(got))
    # uniform: the area share (about 2 %); beta 1: the two colours weigh the same (about 50 %);
    # half-and-half mixture: about (2 % + 50 %) / 2
    assert hits["{'rarity': 0.0}"] == pytest.approx(80 / 4096, abs=0.01)
    assert hits["{}"] == pytest.approx(0.5, abs=0.05)  # the default is beta 1
    assert hits["{'rarity': 1.0, 'rarity_share': 0.5}"] == pytest.approx(0.26, abs=0.05)


def test_rarity_keeps_points_distinct_unlabeled_and_reproducible():
    maps, rare = _one_region_with_a_rare_colour()
    maps["labeled"] = np.zeros(rare.shape, bool)
    maps["labeled"][30:34, 20:30] = True
    strat = make_strategy("stratified", {"rarity": 1.0, "jitter": True})
    a = strat.candidates(maps, np.random.default_rng(3), 60)
    b = strat.candidates(maps, np.random.default_rng(3), 60)
    assert len(set(zip(a.x.tolist(), a.y.tolist()))) == len(a) == 60
    assert not maps["labeled"][a.y, a.x].any()
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    # asked for more than the region holds: every free pixel once
    small = {"prob": maps["prob"][:, :4, :4], "image": maps["image"][:4, :4]}
    assert len(strat.candidates(small, np.random.default_rng(0), 50)) == 16


def test_rarity_needs_the_image_of_the_same_size():
    maps, _ = _one_region_with_a_rare_colour()
    maps["image"] = maps["image"][:32]
    with pytest.raises(ValueError, match="RGB image"):
        make_strategy("stratified", {"rarity": 1.0}).candidates(maps, np.random.default_rng(0), 5)


@pytest.mark.parametrize("params", [{"rarity": -1.0}, {"rarity": 5.0}, {"rarity_share": 1.5}, {"colour_levels": 6}, {"colour_levels": 64}])
def test_bad_rarity_parameters_are_one_line_errors(params):
    with pytest.raises(BadInput):
        make_strategy("stratified", params)


def test_large_images_are_sampled_with_every_pixel_equally_likely():
    """Above MAX_POOL pixels only a stride sample is looked at; shares and exclusions must survive it."""
    from atool.active.strategies.stratified import MAX_POOL, _pixel_pool

    h, w = 512, 1024  # 4 x MAX_POOL pixels: one in four is looked at
    assert h * w == 4 * MAX_POOL
    labeled = np.zeros((h, w), bool)
    labeled[:, :512] = True
    rng = np.random.default_rng(0)
    seen = np.zeros(h * w, np.int64)
    for _ in range(40):
        pool = _pixel_pool(h * w, 4, labeled, rng)
        assert not labeled.reshape(-1)[pool].any() and np.all(np.diff(pool) > 0)
        seen[pool] += 1
    free_hits = seen.reshape(h, w)[:, 512:]
    assert free_hits.mean() == pytest.approx(40 / 4, rel=0.01)  # each free pixel in about 1 sample of 4
    assert np.count_nonzero(free_hits) > 0.99 * free_hits.size  # no pixel is out of reach

    pred = np.zeros((h, w), np.int64)
    pred[:, 900:] = 1  # 12.1 % of the image
    maps = _maps(pred, classes=2)
    maps["image"] = np.zeros((h, w, 3), np.uint8)
    maps["image"][::2, ::2] = 255  # two colours, evenly spread
    maps["labeled"] = labeled
    strat = make_strategy("stratified", {"alpha": 1.0})
    got = [strat.candidates(maps, np.random.default_rng(s), 20) for s in range(50)]
    assert all(not labeled[c.y, c.x].any() and len(c) == 20 for c in got)
    share = np.mean([np.mean(pred[c.y, c.x] == 1) for c in got])
    assert share == pytest.approx(124 / 512, abs=0.05)  # alpha 1: clicks follow the free area


def test_rare_colour_draws_agree_between_the_sampling_paths():
    """The cumulative-weight draw (few points) and the exponential keys (region nearly used up) follow the same weights."""
    from atool.active.strategies.stratified import _successive_draw

    sizes = np.array([90, 10])
    weight = np.array([1.0, 1.0])  # rarity 1: each colour's total weight is the same
    rng = np.random.default_rng(0)
    hits = np.mean([np.mean(_successive_draw(sizes, weight, 5, rng) >= 90) for _ in range(2000)])
    assert hits == pytest.approx(0.5, abs=0.03)
    maps, rare = _one_region_with_a_rare_colour()
    small = {"prob": maps["prob"][:, :8, :8], "image": maps["image"][:8, :8]}
    assert len(make_strategy("stratified").candidates(small, np.random.default_rng(1), 40)) == 40
