"""Selection strategies and selectors: properties that must hold for any maps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atool.ops import uncertainty as unc
from atool.active.candidates import Candidates, TotalSelector, select_image
from atool.active.strategies import STRATEGIES, image_rng, make_strategy
from atool.active.strategies.entropy_patch import patch_scores, sample_in_patches
from atool.core.errors import BadInput

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_maps(seed: int, h: int, w: int, c: int = 3, sharp: float = 2.0) -> dict[str, np.ndarray]:
    """Random softmax maps C x H x W with smooth-ish structure, plus normalised entropy."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=sharp, size=(c, h, w)).astype(np.float32)
    prob = np.exp(logits - logits.max(axis=0, keepdims=True))
    prob /= prob.sum(axis=0, keepdims=True)
    return {"prob": prob.astype(np.float32), "entropy": unc.entropy(prob)}


def run_selection(strategy, images: dict[str, dict], budget: int, seed: int, *, per_image: bool, order=None, slack=4096):
    """What run_query does with the maps: candidates per image, then per-image or total selection.

    Returns {name: set of (y, x)} and {name: Candidates offered}.
    """
    names = sorted(images)
    feed = order if order is not None else names
    offered = {}
    chosen: dict[str, Candidates] = {}
    selector = TotalSelector(budget, slack=slack)
    for name in feed:
        cands = strategy.candidates(images[name], image_rng(seed, name), budget)
        offered[name] = cands
        if per_image:
            chosen[name] = select_image(cands, budget)[0]
        else:
            selector.add(names.index(name), cands)
    if not per_image:
        img, cands = selector.result()
        for i, name in enumerate(names):
            chosen[name] = cands.take(np.flatnonzero(img == i))
    return chosen, offered


def as_set(c: Candidates) -> list[tuple[int, int]]:
    return sorted(zip(c.y.tolist(), c.x.tolist()))


image_sets = st.lists(
    st.tuples(st.integers(4, 40), st.integers(4, 48), st.integers(0, 10_000)), min_size=1, max_size=4
).map(lambda specs: {f"img{i:02d}.png": make_maps(s, h, w) for i, (h, w, s) in enumerate(specs)})


@pytest.mark.parametrize("name", ["entropy_patch", "random", "entropy", "confidence", "margin"])
@SETTINGS
@given(images=image_sets, budget=st.integers(0, 120), seed=st.integers(0, 2**31), per_image=st.booleans())
def test_budget_met_points_distinct_in_bounds(name, images, budget, seed, per_image):
    strat = make_strategy(name)
    chosen, offered = run_selection(strat, images, budget, seed, per_image=per_image)
    total = 0
    for img, c in chosen.items():
        h, w = images[img]["entropy"].shape
        pts = as_set(c)
        assert len(pts) == len(set(pts)), "points of one image must be distinct"
        assert all(0 <= y < h and 0 <= x < w for y, x in pts)
        if per_image:
            assert len(c) == min(budget, len(offered[img]))
        total += len(c)
    if not per_image:
        assert total == min(budget, sum(len(o) for o in offered.values()))


@pytest.mark.parametrize("name", ["entropy_patch", "random", "entropy", "confidence"])
@SETTINGS
@given(images=image_sets, budget=st.integers(1, 80), seed=st.integers(0, 2**31), data=st.data())
def test_same_seed_same_result_whatever_the_order(name, images, budget, seed, data):
    strat = make_strategy(name)
    names = sorted(images)
    shuffled = data.draw(st.permutations(names))
    a, _ = run_selection(strat, images, budget, seed, per_image=False)
    # another order, and pruning after every image (as a long run would), must not change anything
    b, _ = run_selection(make_strategy(name), images, budget, seed, per_image=False, order=shuffled, slack=0)
    for img in names:
        assert as_set(a[img]) == as_set(b[img])
        assert np.array_equal(np.sort(a[img].score), np.sort(b[img].score))


def test_different_seed_changes_random_points():
    images = {"a.png": make_maps(0, 32, 64)}
    a, _ = run_selection(make_strategy("random"), images, 20, 1, per_image=True)
    b, _ = run_selection(make_strategy("random"), images, 20, 2, per_image=True)
    assert as_set(a["a.png"]) != as_set(b["a.png"])


def test_rng_depends_on_path_not_order():
    assert image_rng(3, "x/y.png").random() == image_rng(3, "x/y.png").random()
    assert image_rng(3, "x/y.png").random() != image_rng(3, "x/z.png").random()
    assert image_rng(3, "x/y.png").random() != image_rng(4, "x/y.png").random()


@SETTINGS
@given(images=image_sets, budget=st.integers(1, 100), seed=st.integers(0, 2**31))
def test_entropy_patch_takes_best_patches_first(images, budget, seed):
    strat = make_strategy("entropy_patch", {"grid_cols": 4, "grid_rows": 2, "points_per_patch": 3})
    chosen, offered = run_selection(strat, images, budget, seed, per_image=False)
    taken = [c.score for c in chosen.values() if len(c)]
    if not taken:
        return
    worst_taken = min(float(s.min()) for s in taken)
    for img, off in offered.items():
        chosen_keys = set(zip(chosen[img].y.tolist(), chosen[img].x.tolist()))
        left = [s for s, y, x in zip(off.score.tolist(), off.y.tolist(), off.x.tolist()) if (y, x) not in chosen_keys]
        assert all(s <= worst_taken for s in left), "an unselected patch outscored a selected one"


def test_patch_points_are_a_uniform_sample_without_replacement():
    """Every 2-subset of a 6-pixel patch is equally likely; small and empty patches give what they have."""
    rng = np.random.default_rng(0)
    counts: dict[tuple[int, ...], int] = {}
    for _ in range(6000):
        patch, dy, dx = sample_in_patches(rng, np.array([6, 1, 0]), np.array([3, 1, 1]), 2)
        assert patch.tolist() == [0, 0, 1] and dy[2] == 0 and dx[2] == 0
        key = tuple(sorted((3 * dy[:2] + dx[:2]).tolist()))
        assert len(set(key)) == 2 and max(key) < 6
        counts[key] = counts.get(key, 0) + 1
    assert len(counts) == 15
    expected = 6000 / 15
    assert sum((c - expected) ** 2 / expected for c in counts.values()) < 36.1  # chi-square, 14 dof, p = 0.001


def test_patch_scores_agree_on_equal_and_unequal_grids():
    ent = np.random.default_rng(1).random((48, 64), dtype=np.float32)
    for cols, rows in ((16, 8), (5, 7)):  # divides the map, and does not
        score, area, xe, ye = patch_scores(ent, cols, rows, "mean")
        for r in range(rows):
            for c in range(cols):
                block = ent[ye[r]:ye[r + 1], xe[c]:xe[c + 1]].astype(np.float64)
                assert area[r, c] == block.size and np.isclose(score[r, c], block.mean(), rtol=1e-9)


def test_entropy_patch_picks_the_hot_patch():
    maps = make_maps(0, 32, 64, sharp=6.0)  # confident everywhere ...
    hot = maps["prob"].copy()
    hot[:, 8:12, 20:24] = 1.0 / 3  # ... but one 4x4 patch is uniform: entropy 1
    maps = {"prob": hot, "entropy": unc.entropy(hot)}
    strat = make_strategy("entropy_patch")  # 16x8 grid: 4x4 patches at 64x32
    chosen, _ = run_selection(strat, {"a.png": maps}, 5, 0, per_image=False)
    pts = as_set(chosen["a.png"])
    assert len(pts) == 5 and all(8 <= y < 12 and 20 <= x < 24 for y, x in pts)


@SETTINGS
@given(images=image_sets, k=st.integers(0, 6), n=st.integers(1, 4), extra=st.integers(0, 3), seed=st.integers(0, 2**31))
def test_per_image_protocol_k_patches_of_n_points(images, k, n, extra, seed):
    cols, rows = 4, 2
    extra = min(extra, n - 1)
    budget = k * n + extra
    strat = make_strategy("entropy_patch", {"grid_cols": cols, "grid_rows": rows, "points_per_patch": n})
    chosen, _ = run_selection(strat, images, budget, seed, per_image=True)
    for img, c in chosen.items():
        h, w = images[img]["entropy"].shape
        if (h // rows) * (w // cols) < n:
            continue  # patches smaller than n pixels cannot give n points
        scores, area, _, _ = patch_scores(images[img]["entropy"], cols, rows, "mean")
        _, counts = np.unique(c.group, return_counts=True)
        k_eff = min(k + (extra > 0), cols * rows)
        assert len(counts) == k_eff
        assert sorted(counts.tolist(), reverse=True) == ([n] * min(k, cols * rows) + ([extra] if extra and k < cols * rows else []))[:k_eff]
        # the chosen patches are the top ones by score
        best = np.sort(scores.reshape(-1).astype(np.float32))[::-1][:k_eff]
        got = np.sort(np.unique(c.score))[::-1]
        assert np.all(got >= best[-1] if len(best) else True)


@SETTINGS
@given(images=image_sets, seed=st.integers(0, 2**31), radius=st.integers(1, 5), name=st.sampled_from(["entropy", "confidence", "margin"]))
def test_suppression_radius_keeps_points_apart(images, seed, radius, name):
    strat = make_strategy(name, {"radius": radius})
    chosen, _ = run_selection(strat, images, 50, seed, per_image=True)
    for c in chosen.values():
        y, x = c.y.astype(int), c.x.astype(int)
        if len(y) < 2:
            continue
        d = np.maximum(np.abs(y[:, None] - y[None, :]), np.abs(x[:, None] - x[None, :]))
        np.fill_diagonal(d, radius + 1)
        assert d.min() > radius


def test_pixel_strategies_take_highest_scores():
    maps = make_maps(5, 24, 40)
    chosen, offered = run_selection(make_strategy("entropy", {"radius": 0}), {"a.png": maps}, 30, 0, per_image=True)
    top = np.sort(maps["entropy"].reshape(-1))[::-1][:30]
    assert np.allclose(np.sort(chosen["a.png"].score)[::-1], top)


def test_saturated_map_still_gives_spread_points():
    prob = np.full((3, 20, 30), 1.0 / 3, np.float32)  # every pixel ties
    maps = {"prob": prob, "entropy": unc.entropy(prob)}
    chosen, _ = run_selection(make_strategy("entropy", {"radius": 2}), {"a.png": maps}, 500, 0, per_image=True)
    assert len(chosen["a.png"]) >= 10


@SETTINGS
@given(n_images=st.integers(1, 7), budget=st.integers(0, 60), seed=st.integers(0, 2**31))
def test_random_spreads_total_budget_evenly(n_images, budget, seed):
    images = {f"{i}.png": make_maps(i, 10, 12) for i in range(n_images)}
    chosen, _ = run_selection(make_strategy("random"), images, budget, seed, per_image=False)
    counts = [len(c) for c in chosen.values()]
    assert sum(counts) == budget
    assert max(counts) - min(counts) <= 1


def test_unknown_and_badly_typed_params_are_bad_input():
    with pytest.raises(BadInput, match="no parameter"):
        make_strategy("entropy_patch", {"grid": 3})
    with pytest.raises(BadInput, match="must be a int"):
        make_strategy("entropy_patch", {"grid_cols": "wide"})
    with pytest.raises(BadInput, match="at least 1"):
        make_strategy("entropy_patch", {"points_per_patch": 0})
    with pytest.raises(BadInput, match="not one of"):
        make_strategy("entropy_patch", {"score": "max"})
    with pytest.raises(BadInput, match="no parameter"):
        make_strategy("random", {"radius": 2})
    with pytest.raises(BadInput, match="valid:"):
        make_strategy("nope")
    assert make_strategy("entropy", {"radius": "3"}).params == {"radius": 3}


def test_registry_lists_the_baselines():
    assert {"entropy_patch", "random", "entropy", "confidence", "margin"} <= set(STRATEGIES.names())


def test_uncertainty_functions_match_definitions():
    maps = make_maps(1, 6, 7, c=4)
    p = maps["prob"]
    ref_h = -(p * np.log(p)).sum(0) / np.log(4)
    assert np.allclose(unc.entropy(p), ref_h, atol=1e-5)
    s = np.sort(p, axis=0)
    assert np.allclose(unc.least_confidence(p), 1 - s[-1])
    assert np.allclose(unc.margin(p), s[-1] - s[-2])
    assert np.allclose(unc.margin_uncertainty(p), 1 - (s[-1] - s[-2]))
    assert np.array_equal(unc.argmax(p), p.argmax(0))
    cls, conf = unc.at_points(p, np.array([0, 6]), np.array([5, 0]))
    assert cls.tolist() == [p[:, 5, 0].argmax(), p[:, 0, 6].argmax()]
    assert np.allclose(conf, [p[:, 5, 0].max(), p[:, 0, 6].max()])
    one = np.ones((1, 2, 2), np.float32)
    assert np.all(unc.margin(one) == 1) and np.all(unc.entropy(one) == 0)


def test_selector_is_bounded_by_budget():
    sel = TotalSelector(10, slack=0)
    strat = make_strategy("entropy_patch", {"grid_cols": 2, "grid_rows": 2, "points_per_patch": 4})
    for i in range(50):
        sel.add(i, strat.candidates(make_maps(i, 8, 8), image_rng(0, str(i)), 10))
        assert sel._count <= 2 * 10 + 16  # never more than budget + one image's candidates after a prune
    img, c = sel.result()
    assert len(c) == 10 and len(img) == 10
