"""Head-disagreement strategies (LabOR PPL/SPL), COCO RLE, region queries, oracle and ingest of regions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from atool.data.images import read_label, write_label
from atool.ops import rle
from atool.active.candidates import Regions, RegionSelector, select_regions
from atool.annotate.ingest import ingest_answers
from atool.annotate.oracle import answer_queries
from atool.active.query import QueryConfig, run_query
from atool.workflows.query import query_to_file
from atool.active.strategies import image_rng, make_strategy
from atool.active.strategies.inconsistency import _component_labels, component_rles, inconsistency_mask
from atool.core.errors import BadInput
from atool.core.schemas import validate


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------- RLE

def _masks(seed: int = 0, n: int = 200):
    rng = np.random.default_rng(seed)
    yield np.zeros((3, 4), bool)
    yield np.ones((3, 4), bool)
    yield np.ones((1, 1), bool)
    yield np.zeros((1, 1), bool)
    for _ in range(n):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        m = rng.random((h, w)) < rng.random()
        if rng.random() < 0.3:
            m = np.zeros((h, w), bool)
            m[rng.integers(0, h):, rng.integers(0, w):] = True
        yield m


def test_rle_round_trip_and_area():
    for m in _masks():
        enc = rle.encode(m)
        assert enc["size"] == list(m.shape) and isinstance(enc["counts"], str)
        assert np.array_equal(rle.decode(enc), m)
        assert rle.area(enc) == int(m.sum())
        assert np.array_equal(rle.decode({"size": enc["size"], "counts": rle.mask_counts(m).tolist()}), m)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools vs numpy 2
def test_rle_matches_pycocotools():
    coco = pytest.importorskip("pycocotools.mask")
    for m in _masks(seed=1):
        ref = coco.encode(np.asfortranarray(m.astype(np.uint8)))
        assert rle.encode(m)["counts"] == ref["counts"].decode("ascii")
        assert np.array_equal(coco.decode({"size": list(m.shape), "counts": rle.encode(m)["counts"].encode()}).astype(bool), m)


def test_rle_bad_input():
    with pytest.raises(BadInput, match="cover"):
        rle.decode({"size": [2, 2], "counts": [1, 2]})
    with pytest.raises(BadInput, match="ends in the middle"):
        rle.decode({"size": [2, 2], "counts": "1" + chr(48 + 0x20)})
    with pytest.raises(BadInput):
        rle.decode({"size": [2], "counts": ""})
    with pytest.raises(BadInput):
        rle.decode("not a mask")


def test_component_rles_equal_encoding_each_component():
    rng = np.random.default_rng(2)
    for split in ("components", "class_components", "none"):
        for _ in range(20):
            h, w = (int(v) for v in rng.integers(2, 40, 2))
            m = rng.random((h, w)) < 0.3
            labels, n = _component_labels(m, rng.integers(0, 3, (h, w)), split)
            assert np.array_equal(labels > 0, m)
            ids = np.arange(1, n)
            for i, counts in zip(ids, component_rles(labels, ids)):
                assert counts == rle.encode(labels == i)["counts"]


# ---------------------------------------------------------------- strategies on maps

def heads_maps(seed: int, h: int = 24, w: int = 40, c: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)

    def softmax(z):
        e = np.exp(z - z.max(axis=0, keepdims=True))
        return (e / e.sum(axis=0, keepdims=True)).astype(np.float32)

    base = rng.normal(scale=2.0, size=(c, h, w))
    prob = softmax(base)
    h1 = softmax(base + rng.normal(scale=1.0, size=base.shape))
    h2 = softmax(base + rng.normal(scale=1.0, size=base.shape))
    ent = -(prob * np.log(prob)).sum(0) / np.log(c)
    return {"prob": prob, "entropy": ent.astype(np.float32), "head1": h1, "head2": h2}


def test_ppl_one_point_per_class_at_the_prototype():
    strat = make_strategy("inconsistency_ppl")
    for seed in range(5):
        maps = heads_maps(seed)
        mask = inconsistency_mask(maps)
        cands = strat.candidates(maps, image_rng(0, "a.png"), 100)
        pred = maps["prob"].argmax(0)
        assert sorted(cands.cls.tolist()) == sorted(np.unique(pred[mask]).tolist())  # one per class in M
        for x, y, k in zip(cands.x.tolist(), cands.y.tolist(), cands.cls.tolist()):
            assert mask[y, x] and pred[y, x] == k
            members = np.argwhere(mask & (pred == k))
            p = maps["prob"][:, members[:, 0], members[:, 1]].T.astype(np.float64)
            mu = p.mean(0)
            dist = 1 - p @ mu / (np.linalg.norm(p, axis=1) * np.linalg.norm(mu))
            chosen = maps["prob"][:, y, x].astype(np.float64)
            assert 1 - chosen @ mu / (np.linalg.norm(chosen) * np.linalg.norm(mu)) <= dist.min() + 1e-9
            assert np.isclose(cands.score[cands.cls == k][0], len(members) / mask.size)
        again = strat.candidates(maps, image_rng(9, "b.png"), 100)
        assert np.array_equal(again.x, cands.x) and np.array_equal(again.y, cands.y)
        assert len(strat.candidates(maps, image_rng(0, "a.png"), 2)) == min(2, len(cands))


def test_spl_regions_are_the_mask_components():
    strat = make_strategy("inconsistency_spl")
    maps = heads_maps(3)
    mask = inconsistency_mask(maps)
    regions = strat.regions(maps, image_rng(0, "a.png"), 10_000)
    union = np.zeros_like(mask)
    for i in range(len(regions)):
        m = rle.decode({"size": list(mask.shape), "counts": regions.counts[i]})
        assert not (union & m).any(), "regions are disjoint"
        union |= m
        assert m.sum() == regions.area[i] and m[regions.y[i], regions.x[i]]
    assert np.array_equal(union, mask)
    d = np.abs(maps["head1"] - maps["head2"]).sum(0)
    k = int(np.argmax(regions.score))
    m = rle.decode({"size": list(mask.shape), "counts": regions.counts[k]})
    assert np.isclose(regions.score[k], d[m].sum(), rtol=1e-4)


def test_region_selection_respects_count_and_pixels():
    strat = make_strategy("inconsistency_spl")
    maps = heads_maps(4)
    regions = strat.regions(maps, image_rng(0, "a.png"), 10_000)
    for count, pixels in ((3, 10_000), (1000, 40), (1000, 0), (0, 10_000)):
        idx = select_regions(regions, count, pixels)
        assert len(idx) <= count and regions.area[idx].sum() <= pixels
    sel = RegionSelector(5, 0.05)
    sel.add(1, regions, 24 * 40)
    sel.add(0, strat.regions(heads_maps(5), image_rng(0, "b.png"), 5), 24 * 40)
    image, chosen = sel.result()
    assert len(chosen) <= 5 and chosen.area.sum() <= int(0.05 * 2 * 24 * 40)
    assert len(Regions.empty()) == 0


def reduced(maps: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The maps as a graph exported now gives them: the heads reduced to disagreement and discrepancy."""
    out = {k: v for k, v in maps.items() if k not in ("head1", "head2")}
    out["heads_disagree"] = (maps["head1"].argmax(0) != maps["head2"].argmax(0)).astype(np.float32)
    out["heads_discrepancy"] = np.abs(maps["head1"] - maps["head2"]).sum(0, dtype=np.float32)
    return out


def test_reduced_head_maps_choose_as_the_heads_softmaxes_do():
    """Models exported before give head1/head2; both forms give the same points and regions."""
    ppl, spl = make_strategy("inconsistency_ppl", {"score": "discrepancy"}), make_strategy("inconsistency_spl")
    for seed in range(3):
        maps = heads_maps(seed)
        a, b = ppl.candidates(maps, image_rng(0, "a"), 100), ppl.candidates(reduced(maps), image_rng(0, "a"), 100)
        assert len(a) > 0 and np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y) and np.allclose(a.score, b.score)
        ra, rb = spl.regions(maps, image_rng(0, "a"), 100), spl.regions(reduced(maps), image_rng(0, "a"), 100)
        assert len(ra) > 0 and list(ra.counts) == list(rb.counts) and np.allclose(ra.score, rb.score)


def test_strategies_without_heads_are_bad_input():
    maps = heads_maps(0)
    del maps["head1"], maps["head2"]
    with pytest.raises(BadInput, match="atool train selector"):
        make_strategy("inconsistency_ppl").candidates(maps, image_rng(0, "a"), 5)
    with pytest.raises(BadInput, match="atool train selector"):
        make_strategy("inconsistency_spl").regions(maps, image_rng(0, "a"), 5)
    with pytest.raises(BadInput, match="pixel_ratio"):
        make_strategy("inconsistency_spl", {"pixel_ratio": 0})


# ---------------------------------------------------------------- query -> oracle -> ingest



def check_list(q: dict, root: Path) -> None:
    validate(q, "query-list", "query list")
    ids = [p["id"] for e in q["images"] for p in e["queries"]]
    assert len(ids) == len(set(ids)) == q["budget"]["used"] <= q["budget"]["points"]
    keys = [(-e["score"], e["image"]) for e in q["images"]]
    assert keys == sorted(keys)
    for e in q["images"]:
        assert (root / e["image"]).is_file()
        pts = [(p["y"], p["x"]) for p in e["queries"]]
        assert len(pts) == len(set(pts))
        assert [(-p["score"], p["y"], p["x"]) for p in e["queries"]] == sorted((-p["score"], p["y"], p["x"]) for p in e["queries"])
        assert all(p["predicted"] in q["classes"] for p in e["queries"])


@pytest.mark.parametrize("per_image", [False, True])
def test_query_with_heads(selector_ckpt, synth_pair, per_image):
    images = synth_pair / "target_train" / "images"
    q = run_query(selector_ckpt, images, QueryConfig(budget=4 if per_image else 12, per_image=per_image, strategy="inconsistency_ppl", workers=0))
    check_list(q, images)
    assert q["budget"]["used"] > 0 and all(p["kind"] == "point" for e in q["images"] for p in e["queries"])

    q = run_query(selector_ckpt, images, QueryConfig(budget=3 if per_image else 10, per_image=per_image, strategy="inconsistency_spl",
                                                     params={"pixel_ratio": 0.05}, workers=0))
    check_list(q, images)
    b = q["budget"]
    assert b["pixel_ratio"] == 0.05 and 0 < b["pixels_used"] <= b["pixels"]
    total = 0
    for e in q["images"]:
        union = np.zeros((e["height"], e["width"]), bool)
        for p in e["queries"]:
            assert p["kind"] == "region" and p["mask"]["size"] == [e["height"], e["width"]]
            m = rle.decode(p["mask"])
            assert m[p["y"], p["x"]] and m.sum() == p["area"] and not (union & m).any()
            union |= m
        if per_image:
            assert union.sum() <= int(0.05 * e["height"] * e["width"]) and len(e["queries"]) <= 3
        total += int(union.sum())
    assert total == b["pixels_used"]


def test_query_without_heads_is_bad_input(tiny_checkpoint, synth_pair):
    with pytest.raises(BadInput, match="selector heads"):
        run_query(tiny_checkpoint, synth_pair / "target_train" / "images", QueryConfig(budget=5, strategy="inconsistency_spl", workers=0))


def test_region_flow_oracle_exact_and_ingest(selector_ckpt, synth_pair, tmp_path):
    root = synth_pair / "target_train"
    qfile = tmp_path / "q.json"
    q = query_to_file(selector_ckpt, root / "images", QueryConfig(budget=20, strategy="inconsistency_spl", params={"pixel_ratio": 0.1}, workers=0), qfile)
    assert q["budget"]["used"] > 0
    truth_dir = tmp_path / "truth"
    # Ground truth with an ignore band, so regions mix classes and ignore pixels.
    for e in q["images"]:
        gt = read_label(root / "oracle_labels" / Path(e["image"]).with_suffix(".png"))
        gt = gt.copy()
        gt[:, :4] = 255
        write_label(truth_dir / Path(e["image"]).with_suffix(".png"), gt)
    s = answer_queries(qfile, truth_dir, tmp_path / "answers.json")
    assert s["regions"] == q["budget"]["used"] and s["bad_regions"] == 0
    answers = json.loads((tmp_path / "answers.json").read_text())
    validate(answers, "answers", "answers")

    # Pseudo labels that disagree everywhere: the oracle's region pixels must win.
    pseudo = tmp_path / "pseudo"
    for e in q["images"]:
        write_label(pseudo / Path(e["image"]).with_suffix(".png"), np.full((e["height"], e["width"]), 4, np.uint8))
    out = tmp_path / "ingest"
    r = ingest_answers(tmp_path / "answers.json", out, pseudo_dir=pseudo, images_root=root / "images")
    assert r["skipped_total"] == 0 and r["region_pixels"] == s["region_pixels"]
    for e in q["images"]:
        stem = Path(e["image"]).with_suffix(".png")
        gt = read_label(truth_dir / stem)
        label, origin = read_label(out / "labels" / stem), read_label(out / "origin" / stem)
        region = np.zeros(gt.shape, bool)
        for p in e["queries"]:
            region |= rle.decode(p["mask"])
        labeled = region & (gt != 255)
        assert np.array_equal(label[labeled], gt[labeled]), "every region pixel gets its exact class"
        assert (origin[labeled] == 1).all()
        assert (label[region & (gt == 255)] == 255).all(), "ignore pixels answered null clear the pseudo label"
        assert (label[~region] == 4).all() and (origin[~region] == 2).all()


def test_region_oracle_majority_gives_one_label_per_region(selector_ckpt, synth_pair, tmp_path):
    root = synth_pair / "target_train"
    qfile = tmp_path / "q.json"
    q = query_to_file(selector_ckpt, root / "images", QueryConfig(budget=20, strategy="inconsistency_spl", params={"pixel_ratio": 0.1}, workers=0), qfile)
    answer_queries(qfile, root / "oracle_labels", tmp_path / "a.json", regions="majority")
    answers = json.loads((tmp_path / "a.json").read_text())
    got = {a["id"]: a for e in answers["images"] for a in e["answers"]}
    assert len(got) == sum(len(e["answers"]) for e in answers["images"]) == q["budget"]["used"]
    for e in q["images"]:
        gt = read_label(root / "oracle_labels" / Path(e["image"]).with_suffix(".png"))
        for p in e["queries"]:
            vals = gt[rle.decode(p["mask"])]
            vals = vals[vals != 255]
            assert got[p["id"]]["label"] == answers["classes"][int(np.bincount(vals).argmax())]


def test_ingest_skips_a_bad_region_mask(tmp_path):
    (tmp_path / "img").mkdir()
    doc = {"format": "atool.answers/v1", "classes": ["a", "b"], "images": [{"image": "x.png", "width": 4, "height": 3, "answers": [
        {"id": "q1", "x": 0, "y": 0, "label": "a", "mask": {"size": [3, 5], "counts": rle.encode(np.ones((3, 5), bool))["counts"]}},
        {"id": "q2", "x": 1, "y": 1, "label": "b", "mask": rle.encode(np.eye(3, 4, dtype=bool))},
    ]}]}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    r = ingest_answers(tmp_path / "a.json", tmp_path / "out")
    assert r["skipped_points"]["malformed"] == 1 and r["region_pixels"] == 3
    label = read_label(tmp_path / "out" / "labels" / "x.png")
    assert np.array_equal(label == 1, np.eye(3, 4, dtype=bool))
