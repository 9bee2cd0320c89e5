"""Expansion of answered points to superpixels (atool.annotate.expand) and its use in ingest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from atool.annotate.accumulate import merge_stage_labels
from atool.annotate.answers import ORIGIN_EXPANDED, ORIGIN_NONE, ORIGIN_ORACLE, ORIGIN_PSEUDO
from atool.annotate.expand import SuperpixelParams, expand_points, expansion_accuracy, parse_expansion, segment_stats
from atool.annotate.ingest import ingest_answers
from atool.commands.ingest import command as ingest_command
from atool.core.errors import BadInput
from atool.data.images import read_label, write_image, write_label

CLASSES = ["red", "green", "blue", "yellow", "cyan", "grey"]
COLOURS = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [220, 220, 40], [40, 220, 220], [128, 128, 128]], np.uint8)
RH, RW = 24, 32  # one flat rectangle per class, 2 rows x 3 columns
H, W = 2 * RH, 3 * RW


def rectangles(noise: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 H x W x 3, ground truth uint8 H x W): six flat-colour rectangles with a little noise."""
    gt = (np.arange(H)[:, None] // RH * 3 + np.arange(W)[None, :] // RW).astype(np.uint8)
    rng = np.random.default_rng(seed)
    image = np.clip(COLOURS[gt].astype(int) + rng.integers(-noise, noise + 1, (H, W, 3)), 0, 255).astype(np.uint8)
    return image, gt


def centres() -> np.ndarray:
    """One (row, column) click in the middle of each rectangle, int N x 2."""
    return np.array([[RH // 2 + RH * (c // 3), RW // 2 + RW * (c % 3)] for c in range(len(CLASSES))])


def test_click_labels_most_of_its_rectangle_and_nothing_across_the_edge():
    image, gt = rectangles()
    yx = centres()
    e = expand_points(image, yx, gt[yx[:, 0], yx[:, 1]], SuperpixelParams(segment_size=RH * RW))
    labeled = e.labels != 255
    assert np.array_equal(e.labels[labeled], gt[labeled])  # nothing crosses an edge
    for c in range(len(CLASSES)):
        assert (e.labels == c).sum() >= RH * RW // 2, f"class {c} labeled only {(e.labels == c).sum()} pixels"
    assert e.superpixels >= len(CLASSES) and sum(e.rejected.values()) == 0


def test_safeguard_keeps_straddling_superpixels_out():
    """Grid-like superpixels (huge compactness) straddle the rectangles' edges: the colour spread drops them."""
    image, gt = rectangles()
    rng = np.random.default_rng(1)
    yx = np.stack([rng.integers(0, H, 40), rng.integers(0, W, 40)], 1)
    labels = gt[yx[:, 0], yx[:, 1]]
    grid = dict(segment_size=150, compactness=1000.0)
    guarded = expand_points(image, yx, labels, SuperpixelParams(**grid))
    unguarded = expand_points(image, yx, labels, SuperpixelParams(**grid, max_spread=float("inf")))
    wrong = lambda e: int(((e.labels != 255) & (e.labels != gt)).sum())  # noqa: E731
    assert wrong(unguarded) > 0  # without the safeguard, labels leak across edges
    assert wrong(guarded) == 0 and guarded.rejected["spread"] > 0
    assert 0 < (guarded.labels != 255).sum() < (unguarded.labels != 255).sum()


def test_hand_made_segments_spread_area_conflict_null():
    image, gt = rectangles(noise=0)
    seg = np.zeros((H, W), np.int64)
    seg[:RH, :RW] = 1  # inside rectangle 0: flat
    seg[:RH, RW - 4: RW + 4] = 2  # straddles rectangles 0 and 1
    seg[RH:, :] = 3  # the whole bottom row of rectangles: large and mixed
    seg[RH:, :8] = 4  # inside rectangle 3
    seg[RH:, RW:RW + 8] = 5  # inside rectangle 4
    area, spread = segment_stats(image, seg)
    assert area[1] == RH * (RW - 4) and spread[1] == 0 and spread[2] > 50
    yx = np.array([[2, 2], [2, RW - 1], [RH + 2, 2 * RW + 2], [RH + 2, 2], [RH + 3, 3], [RH + 2, RW + 2]])
    labels = np.array([0, 0, 5, 3, 0, 255], np.uint8)  # segment 4: two classes; segment 5: only a null answer
    e = expand_points(image, yx, labels, SuperpixelParams(max_area=RH * RW, max_spread=5.0), segments=seg)
    assert np.array_equal(e.labels == 0, seg == 1) and (e.labels != 255).sum() == (seg == 1).sum()
    assert e.rejected == {"conflict": 1, "null": 1, "area": 1, "spread": 1} and e.superpixels == 1
    # with the area cap lifted, the big bottom segment is refused for its colour instead
    e2 = expand_points(image, yx, labels, SuperpixelParams(max_area=H * W, max_spread=5.0), segments=seg)
    assert e2.rejected["area"] == 0 and e2.rejected["spread"] == 2


def test_expand_points_bad_arguments():
    image, _ = rectangles()
    with pytest.raises(BadInput, match="outside"):
        expand_points(image, np.array([[H, 0]]), np.array([0], np.uint8))
    with pytest.raises(BadInput, match="uint8"):
        expand_points(image[..., 0], np.array([[0, 0]]), np.array([0], np.uint8))
    with pytest.raises(BadInput, match="segments"):
        expand_points(image, np.array([[0, 0]]), np.array([0], np.uint8), segments=np.zeros((H, W + 1), int))
    empty = expand_points(image, np.zeros((0, 2), int), np.zeros(0, np.uint8))
    assert (empty.labels == 255).all()


@pytest.mark.parametrize(
    "method, params, message",
    [
        ("slic", [], "unknown expansion 'slic'; valid: superpixel"),
        ("superpixel", ["segment_size"], "KEY=VALUE"),
        ("superpixel", ["colour=3"], "no parameter 'colour'"),
        ("superpixel", ["segment_size=abc"], "segment_size must be a whole number"),
        ("superpixel", ["segment_size=10.5"], "segment_size must be a whole number"),
        ("superpixel", ["segment_size=2"], "at least 4"),
        ("superpixel", ["compactness=0"], "compactness must be above 0"),
        ("superpixel", ["max_spread=-1"], "max_spread must be at least 0"),
        ("superpixel", ["max_spread=nan"], "must be a number"),
        (None, ["segment_size=100"], "need an expansion method"),
    ],
)
def test_parse_expansion_rejects(method, params, message):
    with pytest.raises(BadInput, match=message.replace("(", r"\(")):
        parse_expansion(method, params)


def test_parse_expansion_accepts():
    p = parse_expansion("superpixel", ["segment_size=100", "max_spread=inf", "compactness=2.5"])
    assert p == SuperpixelParams(segment_size=100, compactness=2.5, max_spread=float("inf"))
    assert p.area_cap == 400 and p.as_dict()["max_spread"] is None
    assert parse_expansion("superpixel", {"max_area": 50}).area_cap == 50
    assert parse_expansion(None) is None


@pytest.fixture
def pool(tmp_path: Path) -> dict:
    """Two rectangle images, their ground truth, and atool answers at the rectangles' centres."""
    images, gt_dir = tmp_path / "images", tmp_path / "gt"
    entries = []
    for i, name in enumerate(("a.png", "sub/b.png")):
        image, gt = rectangles(seed=i)
        write_image(images / name, image)
        write_label(gt_dir / name, gt)
        answers = [{"id": f"{i}-{c}", "x": int(x), "y": int(y), "label": CLASSES[c]} for c, (y, x) in enumerate(centres())]
        entries.append({"image": name, "width": W, "height": H, "answers": answers})
    entries[1]["answers"][5]["label"] = None  # "cannot tell" in rectangle 5 of b: that superpixel stays unlabeled
    doc = {"format": "atool.answers/v1", "classes": CLASSES, "images": entries}
    path = tmp_path / "answers.json"
    path.write_text(json.dumps(doc))
    return {"root": tmp_path, "images": images, "gt": gt_dir, "answers": path}


def test_ingest_expands_and_reports(pool):
    root = pool["root"]
    pseudo = root / "pseudo"
    write_label(pseudo / "a.png", np.full((H, W), 5, np.uint8))  # the model says "grey" everywhere
    out = root / "sparse"
    s = ingest_answers(pool["answers"], out, images_root=pool["images"], pseudo_dir=pseudo,
                       expand="superpixel", expand_params={"segment_size": RH * RW})
    label, origin = read_label(out / "labels" / "a.png"), read_label(out / "origin" / "a.png")
    _, gt = rectangles(seed=0)
    grown = origin == ORIGIN_EXPANDED
    assert grown.sum() > 6 * RH * RW // 2 and np.array_equal(label[grown], gt[grown])
    assert (origin == ORIGIN_ORACLE).sum() == 6 and (origin == ORIGIN_PSEUDO).sum() == H * W - 6 - grown.sum()
    yx = centres()
    assert (label[yx[:, 0], yx[:, 1]] == np.arange(6)).all()
    b_label, b_origin = read_label(out / "labels" / "sub" / "b.png"), read_label(out / "origin" / "sub" / "b.png")
    y5, x5 = centres()[5]
    assert b_label[y5, x5] == 255 and b_origin[y5, x5] == ORIGIN_NONE and not (b_label == 5).any()
    summary = json.loads((out / "ingest.json").read_text())
    e = summary["expansion"]
    assert summary["expanded_pixels"] == e["pixels"] == int(grown.sum() + (b_origin == ORIGIN_EXPANDED).sum())
    assert e["over_pseudo"] == int(grown.sum()) and e["images"] == 2 and e["params"]["segment_size"] == RH * RW
    assert e["rejected"]["null"] >= 1 and summary["points"] == 11

    acc = expansion_accuracy(out / "labels", out / "origin", pool["gt"])
    assert acc["accuracy"] == 1.0 and acc["expanded_pixels"] == summary["expanded_pixels"] and acc["images"] == 2
    assert acc["click_pixels"] == 11 and set(acc["per_class"]) == set(CLASSES)

    plain = ingest_answers(pool["answers"], root / "plain", images_root=pool["images"])
    assert plain["expanded_pixels"] == 0 and plain["expansion"] is None
    assert not (read_label(root / "plain" / "origin" / "a.png") == ORIGIN_EXPANDED).any()


def test_expansion_accuracy_counts_wrong_and_ignored_pixels(tmp_path):
    label = np.full((4, 5), 255, np.uint8)
    origin = np.zeros((4, 5), np.uint8)
    label[0, :], origin[0, :] = 1, ORIGIN_EXPANDED  # 5 expanded pixels of class 1
    label[1, 0], origin[1, 0] = 1, ORIGIN_ORACLE
    gt = np.zeros((4, 5), np.uint8)
    gt[0, :3] = 1  # 3 right, 1 wrong, 1 ignored
    gt[0, 4] = 255
    write_label(tmp_path / "labels" / "x.png", label)
    write_label(tmp_path / "origin" / "x.png", origin)
    write_label(tmp_path / "gt" / "x.png", gt)
    write_label(tmp_path / "labels" / "y.png", label)
    write_label(tmp_path / "origin" / "y.png", origin)  # no ground truth for y
    r = expansion_accuracy(tmp_path / "labels", tmp_path / "origin", tmp_path / "gt", classes=["a", "b"])
    assert (r["expanded_pixels"], r["scored_pixels"], r["correct_pixels"], r["gt_ignore_pixels"]) == (5, 4, 3, 1)
    assert r["accuracy"] == 0.75 and r["per_class"] == {"b": {"pixels": 4, "correct": 3, "accuracy": 0.75}}
    assert r["missing_gt"] == ["y"]
    with pytest.raises(BadInput, match="does not exist"):
        expansion_accuracy(tmp_path / "labels", tmp_path / "origin", tmp_path / "nope")


def test_accumulate_keeps_clicks_over_expansions(tmp_path):
    def stage(name: str, click: tuple[int, int, int] | None, grown: tuple[slice, int] | None) -> Path:
        folder = tmp_path / name
        label, origin = np.full((4, 4), 255, np.uint8), np.zeros((4, 4), np.uint8)
        if grown is not None:
            label[grown[0]], origin[grown[0]] = grown[1], ORIGIN_EXPANDED
        if click is not None:
            label[click[0], click[1]], origin[click[0], click[1]] = click[2], ORIGIN_ORACLE
        write_label(folder / "labels" / "i.png", label)
        write_label(folder / "origin" / "i.png", origin)
        (folder / "classes.txt").write_text("a\nb\nc\n")
        return folder

    acc = tmp_path / "acc"
    r1 = merge_stage_labels(acc, stage("s1", (0, 0, 1), (np.s_[0, :], 1)))
    assert (r1.new_pixels, r1.new_expanded, r1.total_pixels, r1.total_expanded) == (1, 3, 1, 3)
    r2 = merge_stage_labels(acc, stage("s2", (0, 2, 2), (np.s_[:, 0], 0)))  # a click over an expansion; expansion over a click
    label, origin = read_label(acc / "labels" / "i.png"), read_label(acc / "origin" / "i.png")
    assert label[0, 2] == 2 and origin[0, 2] == ORIGIN_ORACLE  # the later click wins over the earlier expansion
    assert label[0, 0] == 1 and origin[0, 0] == ORIGIN_ORACLE  # an expansion never overrides a click
    assert (label[1:, 0] == 0).all() and (origin[1:, 0] == ORIGIN_EXPANDED).all()
    assert (r2.new_pixels, r2.new_expanded, r2.total_pixels, r2.total_expanded) == (1, 3, 2, 5)


def one_line(result, code: int = 2) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code == code and len(lines) == 1 and lines[0].startswith("atool: error: "), result.output
    return lines[0]


def test_ingest_cli_expand(pool):
    out = pool["root"] / "cli"
    args = [str(pool["answers"]), "--out", str(out)]
    r = CliRunner().invoke(ingest_command, [*args, "--images", str(pool["images"]), "--expand", "superpixel", "--expand-param", "segment_size=300"])
    assert r.exit_code == 0, r.output
    assert "pixels expanded from answered points" in r.output
    assert json.loads((out / "ingest.json").read_text())["expansion"]["params"]["segment_size"] == 300
    assert "--images" in one_line(CliRunner().invoke(ingest_command, [*args, "--expand", "superpixel"]))
    assert "valid: superpixel" in one_line(CliRunner().invoke(ingest_command, [*args, "--images", str(pool["images"]), "--expand", "blob"]))
    bad = ["--images", str(pool["images"]), "--expand", "superpixel", "--expand-param", "max_area=-3"]
    assert "max_area" in one_line(CliRunner().invoke(ingest_command, [*args, *bad]))
    assert "expansion method" in one_line(CliRunner().invoke(ingest_command, [*args, "--expand-param", "max_area=3"]))
