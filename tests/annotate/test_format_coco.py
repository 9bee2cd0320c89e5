"""The ``coco`` format: pycocotools reads what it writes, and a COCO file (edited as a COCO tool would) reads back."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest

from atool.annotate.formats import FORMATS, write_query_list
from atool.annotate.ingest import ingest_answers
from atool.data.images import read_label, write_image
from atool.ops import rle
from conftest import assert_one_line_error, run_cli, small_query_list

CLASSES = ["road", "car", "sky"]
W, H = 8, 6


def _region() -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[1:3, 2:6] = True
    return mask


def _query_list() -> dict:
    return small_query_list(CLASSES, W, H, _region())


def test_pycocotools_reads_the_query_file(tmp_path):
    from pycocotools.coco import COCO

    out = write_query_list(_query_list(), tmp_path / "q.coco.json", "coco")[0]
    coco = COCO(str(out))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == [*CLASSES, "(cannot tell)"]
    assert [(i["file_name"], i["width"], i["height"]) for i in coco.loadImgs(coco.getImgIds())] == [("a.png", W, H), ("sub/b.png", W, H)]
    p1, p2 = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert p1["keypoints"] == [1, 2, 2] and p1["num_keypoints"] == 1 and coco.cats[p1["category_id"]]["name"] == "car"
    assert coco.cats[p2["category_id"]]["name"] == "(cannot tell)"
    (region,) = coco.loadAnns(coco.getAnnIds(imgIds=[2]))
    assert np.array_equal(coco.annToMask(region).astype(bool), _region())
    assert region["area"] == int(_region().sum()) and region["bbox"] == [2, 1, 4, 2]


def _edited(tmp_path: Path) -> dict:
    """The query file as an annotator saved it: q1 relabeled road, q2 left unsure, a keypoint added,
    region q3 split into its sky part (RLE) and a road polygon."""
    write_query_list(_query_list(), tmp_path / "q.coco.json", "coco")
    doc = json.loads((tmp_path / "q.coco.json").read_text())
    cat = {c["name"]: c["id"] for c in doc["categories"]}
    anns = doc["annotations"]
    anns[0]["category_id"] = cat["road"]
    anns.append({"id": 9, "image_id": 1, "category_id": cat["car"], "keypoints": [4.4, 0.7, 2, 6, 1, 0], "num_keypoints": 1, "iscrowd": 0})
    sky = _region() & (np.arange(W)[None, :] < 4)
    anns[2]["segmentation"] = rle.encode(sky)
    anns.append({"id": 10, "image_id": 2, "category_id": cat["road"], "segmentation": [[4, 1, 6, 1, 6, 2, 4, 2]], "iscrowd": 0,
                 "atool_id": "q3", "atool_point": [2, 1]})
    return doc


@pytest.fixture
def images(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    for rel in ("a.png", "sub/b.png"):
        write_image(root / rel, np.zeros((H, W, 3), np.uint8))
    return root


def _write(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "edited.coco.json"
    path.write_text(json.dumps(doc))
    return path


def test_edited_coco_file_reads_back(tmp_path, images):
    path = _write(tmp_path, _edited(tmp_path))
    doc = FORMATS.get("coco")().read_answers(json.loads(path.read_text()), str(path)).to_doc()
    a, b = doc["images"]
    assert [(x["id"], x["x"], x["y"], x["label"]) for x in a["answers"]] == [("q1", 1, 2, "road"), ("q2", 7, 5, None), ("coco:9", 4, 0, "car")]
    assert [(x["id"], x["x"], x["y"], x["label"]) for x in b["answers"]] == [("q3", 2, 1, "sky"), ("q3", 4, 1, "road")]

    r = run_cli("ingest", path, "--out", tmp_path / "out", "--images", images)
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "out" / "ingest.json").read_text())
    assert s["source_format"] == "coco" and s["classes"] == CLASSES and s["skipped_total"] == 0 and s["null_answers"] == 1
    want = np.full((H, W), 255, np.uint8)
    want[2, 1], want[0, 4] = 0, 1
    assert np.array_equal(read_label(tmp_path / "out" / "labels" / "a.png"), want)
    want = np.full((H, W), 255, np.uint8)
    want[_region()] = 2
    want[1:3, 4:7] = 0  # the polygon, boundary pixels included (cv2.fillPoly)
    assert np.array_equal(read_label(tmp_path / "out" / "labels" / "sub" / "b.png"), want)


def test_image_sizes_that_disagree_with_the_images_are_one_line_error(tmp_path, images):
    doc = _edited(tmp_path)
    write_image(images / "sub" / "b.png", np.zeros((H, W + 2, 3), np.uint8))
    r = run_cli("ingest", _write(tmp_path, doc), "--out", tmp_path / "out", "--images", images)
    assert_one_line_error(r, 2, "sub/b.png is 10x6")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("edit, says", [
    (lambda d: d["annotations"][0].update(category_id=99), "category_id 99"),
    (lambda d: d["images"][1].update(width=W + 1), "segmentation of size"),
])
def test_unknown_category_or_inconsistent_size_is_one_line_error(tmp_path, images, edit, says):
    doc = copy.deepcopy(_edited(tmp_path))
    edit(doc)
    r = run_cli("ingest", _write(tmp_path, doc), "--out", tmp_path / "out", "--images", images)
    assert_one_line_error(r, 2, says)
    assert not (tmp_path / "out").exists()


def test_unsafe_image_paths_are_skipped_and_reported(tmp_path, images):
    doc = _edited(tmp_path)
    doc["images"][0]["file_name"] = "/abs/a.png"
    doc["images"][1]["file_name"] = "../images/sub/b.png"
    s = ingest_answers(_write(tmp_path, doc), tmp_path / "out", images_root=images)
    assert s["answered_images"] == 0 and s["skipped_points"]["unknown_image"] == 3 + 2
    assert {x["image"] for x in s["skipped"]} == {"/abs/a.png", "../images/sub/b.png"}
    assert not any(p.is_file() for p in (tmp_path / "out").rglob("*.png"))
    assert os.path.isfile(tmp_path / "out" / "ingest.json")


def test_oracle_and_ingest_cli_round_trip_through_coco(tmp_path, images):
    from atool.data.images import write_label

    qpath = tmp_path / "q.json"
    qpath.write_text(json.dumps(_query_list()))
    truth = (np.arange(H * W, dtype=np.uint8).reshape(H, W) * 7) % 3
    for rel in ("a.png", "sub/b.png"):
        write_label(tmp_path / "gt" / rel, truth)
    out = tmp_path / "answers.coco.json"
    r = run_cli("oracle", "--queries", qpath, "--labels", tmp_path / "gt", "--format", "coco", "--out", out)
    assert r.exit_code == 0, r.output
    r = run_cli("ingest", out, "--out", tmp_path / "sparse", "--images", images)
    assert r.exit_code == 0, r.output
    b = read_label(tmp_path / "sparse" / "labels" / "sub" / "b.png")
    assert np.array_equal(b[_region()], truth[_region()]) and (b[~_region()] == 255).all()
    a = read_label(tmp_path / "sparse" / "labels" / "a.png")
    assert a[2, 1] == truth[2, 1] and a[5, 7] == truth[5, 7]
