"""``coverage``, ``ripu`` and ``hybrid``: strategies that see confident errors and spread the clicks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from atool.active.candidates import select_image
from atool.active.strategies import image_rng, make_strategy
from atool.core.errors import BadInput
from atool.core.schemas import validate
from atool.ops import uncertainty as unc
from conftest import assert_one_line_error, run_cli

H, W = 64, 128
GREY, BLUE = (128, 128, 128), (60, 90, 200)


def as_maps(pred: np.ndarray, c: int, conf: float = 0.9, image: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Confident softmax maps (C x H x W) predicting ``pred`` everywhere at ``conf``."""
    prob = np.full((c,) + pred.shape, (1.0 - conf) / (c - 1), np.float32)
    np.put_along_axis(prob, pred[None].astype(np.int64), np.float32(conf), axis=0)
    maps = {"prob": prob, "entropy": unc.entropy(prob)}
    if image is not None:
        maps["image"] = image
    return maps


def sky_as_building() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Class 0 is predicted over 3/4 of the image, confidently, but its top-left block is blue
    (sky called building); class 1 fills the right quarter, class 2 a 16 x 16 patch, class 3 a
    2 x 2 speck below the area floor. Returns (maps, bool H x W of the blue block)."""
    pred = np.zeros((H, W), np.int64)
    pred[:, 96:] = 1
    pred[40:56, 100:116] = 2
    pred[60:62, 10:12] = 3
    image = np.empty((H, W, 3), np.uint8)
    image[:] = GREY
    blue = np.zeros((H, W), bool)
    blue[:24, :48] = True
    image[blue] = BLUE
    return as_maps(pred, 4, image=image), blue


def points(c) -> list[tuple[int, int]]:
    return list(zip(c.y.astype(int).tolist(), c.x.astype(int).tolist()))


def chebyshev_min(c) -> float:
    y, x = c.y.astype(int), c.x.astype(int)
    if y.size < 2:
        return math.inf
    d = np.maximum(np.abs(y[:, None] - y[None, :]), np.abs(x[:, None] - x[None, :]))
    np.fill_diagonal(d, 10**9)
    return float(d.min())


# ---------------------------------------------------------------- coverage


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_coverage_asks_every_region_above_the_floor_and_no_speck(seed):
    maps, _ = sky_as_building()
    strat = make_strategy("coverage")
    c = strat.candidates(maps, image_rng(seed, "a.png"), 8)
    assert len(c) == 8
    assert set(c.cls.tolist()) == {0, 1, 2}  # the 2 x 2 speck (class 3) is below min_area
    # the largest region gets the most clicks, but not all: shares follow sqrt(area)
    counts = np.bincount(c.cls, minlength=4)
    assert counts[0] > counts[1] >= counts[2] >= 1


@pytest.mark.parametrize("seed", range(6))
def test_coverage_reaches_both_colours_of_one_predicted_region(seed):
    maps, blue = sky_as_building()
    c = make_strategy("coverage").candidates(maps, image_rng(seed, "a.png"), 4)
    region0 = [(y, x) for (y, x), k in zip(points(c), c.cls.tolist()) if k == 0]
    assert len(region0) == 2
    assert sorted(bool(blue[y, x]) for y, x in region0) == [False, True]


def test_coverage_without_the_image_still_spreads():
    maps, _ = sky_as_building()
    del maps["image"]
    c = make_strategy("coverage").candidates(maps, image_rng(0, "a.png"), 12)
    assert len(c) == 12 and len(set(points(c))) == 12
    assert chebyshev_min(c) >= 4


def test_coverage_respects_labeled_and_counts_earlier_clicks():
    maps, blue = sky_as_building()
    strat = make_strategy("coverage")
    before = strat.candidates(maps, image_rng(0, "a.png"), 6)
    labeled = blue.copy()  # the sky block was labeled in an earlier round
    labeled[::7, ::5] = True
    maps["labeled"] = labeled
    after = strat.candidates(maps, image_rng(0, "a.png"), 6)
    assert len(after) == 6
    assert not labeled[after.y.astype(int), after.x.astype(int)].any()
    # region 0 already had hundreds of labeled pixels: its share of new clicks falls
    assert (after.cls == 0).sum() < (before.cls == 0).sum()


def test_coverage_counts_a_grown_click_once():
    maps, _ = sky_as_building()
    strat = make_strategy("coverage", {"score": "region"})
    fresh = strat.candidates(maps, image_rng(0, "a.png"), 8)
    runs = []
    for size in (1, 10):  # one clicked pixel, or the same click grown into a 10 x 10 superpixel
        labeled = np.zeros((H, W), bool)
        labeled[10:10 + size, 100:100 + size] = True  # inside region 1
        runs.append(strat.candidates(dict(maps, labeled=labeled), image_rng(0, "a.png"), 8))
    assert runs[0].cls.tolist() == runs[1].cls.tolist()
    assert np.allclose(runs[0].score, runs[1].score)
    # the click counts: region 1's next point ranks lower than without it
    assert runs[0].score[runs[0].cls == 1].max() < fresh.score[fresh.cls == 1].max()


@pytest.mark.parametrize("name", ["coverage", "ripu", "hybrid"])
def test_points_distinct_in_bounds_and_deterministic_per_seed(name):
    rng = np.random.default_rng(5)
    pred = (np.add.outer(np.arange(H) // 16, np.arange(W) // 24) % 3).astype(np.int64)
    maps = as_maps(pred, 3, conf=0.6, image=rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    strat = make_strategy(name)
    a = strat.candidates(maps, image_rng(9, "x.png"), 30)
    b = strat.candidates(maps, image_rng(9, "x.png"), 30)
    other = strat.candidates(maps, image_rng(10, "x.png"), 30)
    assert 0 < len(a) <= 30 and len(set(points(a))) == len(a)
    assert (a.y < H).all() and (a.x < W).all()
    for f in ("x", "y", "score", "group", "cls", "conf"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    assert points(a) != points(other)
    if name != "ripu":
        # ranked strategies: per image, the first B in selection order are the first B of the ranking
        assert np.all(np.diff(a.score.astype(np.float64)) < 0)
        assert points(select_image(a, 5)[0]) == points(a)[:5]


def test_coverage_scores_fall_along_the_ranking_in_both_modes():
    maps, _ = sky_as_building()
    for mode in ("rank", "region"):
        c = make_strategy("coverage", {"score": mode}).candidates(maps, image_rng(1, "a.png"), 10)
        assert np.all(np.diff(c.score.astype(np.float64)) <= 0), mode
    c = make_strategy("coverage", {"max_points": 3}).candidates(maps, image_rng(1, "a.png"), 50)
    assert len(c) == 3


# ---------------------------------------------------------------- ripu


def test_ripu_prefers_mixed_areas_to_a_confusing_uniform_blob():
    pred = np.zeros((H, W), np.int64)
    pred[:, W // 2:] = 1
    maps = as_maps(pred, 3, conf=0.8)
    # a blob of high entropy inside class 0 where the prediction is uniform: entropy asks there, ripu must not
    maps["entropy"] = maps["entropy"].copy()
    maps["entropy"][20:44, 8:40] = 0.95
    strat = make_strategy("ripu", {"region_radius": 6, "radius": 6, "stride": 2})
    c = strat.candidates(maps, image_rng(0, "a.png"), 4)
    assert len(c) == 4 and np.all(c.score > 0)
    assert np.all(np.abs(c.x.astype(int) - W // 2) <= 6 + 2)
    e = make_strategy("entropy", {"radius": 6}).candidates(maps, image_rng(0, "a.png"), 4)
    assert np.all((e.x < 40) & (e.x >= 8))  # the contrast the test relies on


@pytest.mark.parametrize("radius,stride", [(0, 1), (3, 1), (5, 2), (16, 4), (9, 4)])
def test_ripu_keeps_the_suppression_radius(radius, stride):
    rng = np.random.default_rng(radius * 10 + stride)
    logits = rng.normal(scale=2.0, size=(4, H // 8, W // 8)).astype(np.float32)
    logits = logits.repeat(8, axis=1).repeat(8, axis=2)
    prob = np.exp(logits) / np.exp(logits).sum(axis=0, keepdims=True)
    maps = {"prob": prob.astype(np.float32), "entropy": unc.entropy(prob.astype(np.float32))}
    c = make_strategy("ripu", {"radius": radius, "stride": stride}).candidates(maps, image_rng(0, "r.png"), 200)
    assert len(c) >= 5
    assert chebyshev_min(c) > radius
    assert np.all(c.score >= 0) and np.all(c.score <= 1)


def test_ripu_respects_labeled():
    pred = np.zeros((H, W), np.int64)
    pred[:, W // 2:] = 1
    maps = as_maps(pred, 2, conf=0.7)
    labeled = np.zeros((H, W), bool)
    labeled[:, W // 2 - 12: W // 2 + 12] = True  # the whole boundary band
    maps["labeled"] = labeled
    c = make_strategy("ripu", {"stride": 1, "radius": 2}).candidates(maps, image_rng(0, "a.png"), 20)
    assert not labeled[c.y.astype(int), c.x.astype(int)].any()


# ---------------------------------------------------------------- hybrid


@pytest.mark.parametrize("share", [0.0, 0.25, 0.5, 0.8, 1.0])
def test_hybrid_split_follows_share_at_every_prefix(share):
    maps, _ = sky_as_building()
    maps["entropy"] = maps["entropy"].copy()
    maps["entropy"][30:50, 60:80] = 0.9  # something for the uncertainty part to find
    strat = make_strategy("hybrid", {"share": share, "uncertainty": "entropy", "radius": 5})
    want = 16
    cov, unc_part = strat.parts(maps, image_rng(4, "a.png"), want)
    assert len(cov) == math.ceil(share * want)
    assert len(cov) + len(unc_part) == want
    cov_pts = set(points(cov))
    assert not cov_pts & set(points(unc_part))
    merged = strat.candidates(maps, image_rng(4, "a.png"), want)
    assert set(points(merged)) == cov_pts | set(points(unc_part))
    for b in range(1, want + 1):
        first = points(select_image(merged, b)[0])
        n_cov = sum(p in cov_pts for p in first)
        assert abs(n_cov - share * b) <= 1, (b, n_cov)


@pytest.mark.parametrize("kind", ["ripu", "entropy", "margin"])
def test_hybrid_uncertainty_points_keep_off_coverage_points(kind):
    maps, _ = sky_as_building()
    strat = make_strategy("hybrid", {"radius": 7, "uncertainty": kind, "stride": 1})
    cov, unc_part = strat.parts(maps, image_rng(2, "a.png"), 20)
    assert len(unc_part) > 0
    cy, cx = cov.y.astype(int), cov.x.astype(int)
    uy, ux = unc_part.y.astype(int), unc_part.x.astype(int)
    d = np.maximum(np.abs(uy[:, None] - cy[None, :]), np.abs(ux[:, None] - cx[None, :]))
    assert d.min() > 7
    assert chebyshev_min(unc_part) > 7


def test_hybrid_share_one_is_coverage():
    maps, _ = sky_as_building()
    h = make_strategy("hybrid", {"share": 1.0}).parts(maps, image_rng(3, "a.png"), 9)
    c = make_strategy("coverage").candidates(maps, image_rng(3, "a.png"), 9)
    assert points(h[0]) == points(c) and len(h[1]) == 0


# ---------------------------------------------------------------- parameters


@pytest.mark.parametrize("name,params,message", [
    ("coverage", {"alpha": 2.0}, "alpha must be in"),
    ("coverage", {"min_area": 1.0}, "min_area"),
    ("coverage", {"samples": 3}, "samples must be at least"),
    ("coverage", {"xy_weight": 0, "color_weight": 0, "prob_weight": 0}, "all 0"),
    ("coverage", {"color_weight": -1.0}, "color_weight"),
    ("coverage", {"score": "gain"}, "not one of"),
    ("coverage", {"max_points": 0}, "max_points"),
    ("ripu", {"stride": 0}, "stride"),
    ("ripu", {"region_radius": 0}, "region_radius"),
    ("ripu", {"radius": -1}, "radius"),
    ("ripu", {"uncertainty": "bald"}, "not one of"),
    ("hybrid", {"share": 1.5}, "share must be in"),
    ("hybrid", {"uncertainty": "bald"}, "not one of"),
    ("hybrid", {"alpha": -0.1}, "alpha"),
    ("hybrid", {"shares": 0.5}, "no parameter"),
])
def test_bad_params_are_bad_input(name, params, message):
    with pytest.raises(BadInput, match=message):
        make_strategy(name, params)


def test_wrong_image_shape_is_bad_input():
    maps, _ = sky_as_building()
    maps["image"] = maps["image"][:, :, 0]
    with pytest.raises(BadInput, match="expected 64x128x3"):
        make_strategy("coverage").candidates(maps, image_rng(0, "a.png"), 4)


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory, tiny_checkpoint) -> Path:
    pytest.importorskip("onnxruntime")
    from atool.export.onnx import export_onnx

    out = tmp_path_factory.mktemp("cov_onnx") / "tiny.onnx"
    export_onnx(tiny_checkpoint, out, sample_size=(64, 32))
    return out


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("backend", ["torch", "onnx"])
@pytest.mark.parametrize("name", ["coverage", "ripu", "hybrid"])
def test_query_cli_on_both_backends(request, tmp_path, synth_pair, tiny_checkpoint, backend, name):
    model = tiny_checkpoint if backend == "torch" else request.getfixturevalue("onnx_model")
    images = synth_pair / "target_train" / "images"
    n_images = len(list(images.glob("*.png")))
    for per_image, budget in ((False, 9), (True, 4)):
        out = tmp_path / f"q_{per_image}.json"
        args = ["query", "--model", model, "--images", images, "--strategy", name, "--budget", budget,
                "--out", out, "--workers", 0]
        r = run_cli(*(args + (["--per-image"] if per_image else [])))
        assert r.exit_code == 0, r.output
        q = json.loads(out.read_text())
        validate(q, "query-list", "query list")
        assert q["strategy"]["name"] == name
        used = q["budget"]["used"]
        assert used == (budget * n_images if per_image else budget)
        for e in q["images"]:
            pts = [(p["x"], p["y"]) for p in e["queries"]]
            assert len(pts) == len(set(pts))
            if per_image:
                assert len(pts) <= budget
        if not per_image and name != "ripu":
            # rank scores: the total budget goes round the images, not into a few of them
            counts = [len(e["queries"]) for e in q["images"]]
            assert len(counts) == min(budget, n_images) and max(counts) - min(counts) <= 1


def test_query_cli_bad_param_is_one_line(synth_pair, tiny_checkpoint, tmp_path):
    images = synth_pair / "target_train" / "images"
    r = run_cli("query", "--model", tiny_checkpoint, "--images", images, "--strategy", "hybrid", "--param", "share=2",
                "--budget", 3, "--out", tmp_path / "q.json")
    assert_one_line_error(r, 2, "share must be in")
