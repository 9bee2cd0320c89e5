"""What the fuzzers found (and the review that wrote them), kept as plain regression tests: each
case crashed with a traceback, or could allocate without bound, before its fix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from atool.annotate.ingest import ingest_answers
from atool.annotate.oracle import answer_queries
from atool.core.errors import BadInput
from atool.data.images import write_image, write_label
from atool.ops import rle
from conftest import run_cli

W, H = 8, 6


@pytest.fixture()
def world(tmp_path) -> dict[str, Path]:
    write_image(tmp_path / "images" / "a.png", np.zeros((H, W, 3), np.uint8))
    write_label(tmp_path / "gt" / "a.png", np.ones((H, W), np.uint8))
    (tmp_path / "classes.txt").write_text("road\ncar\n")
    return {"root": tmp_path, "images": tmp_path / "images", "gt": tmp_path / "gt", "classes": tmp_path / "classes.txt"}


def _kp(**over) -> dict:
    r = {"id": "k", "type": "keypointlabels", "original_width": W, "original_height": H,
         "value": {"x": 10.0, "y": 10.0, "keypointlabels": ["car"]}}
    r.update(over)
    return r


@pytest.mark.parametrize("result", [_kp(type=[]), _kp(original_width=[]), _kp(original_height={"a": 1})])
def test_labelstudio_unhashable_fields_are_skipped(world, result):
    """Found: TypeError (unhashable type: 'list') in the Label Studio reader."""
    export = world["root"] / "ls.json"
    export.write_text(json.dumps([{"data": {"atool_image": "a.png"}, "annotations": [{"id": 1, "result": [result, _kp()]}]}]))
    r = run_cli("ingest", export, "--images", world["images"], "--classes", world["classes"], "--out", world["root"] / "out")
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output


@pytest.mark.parametrize("counts", [None, "", False, [2**70], {"a": 1}])
def test_rle_area_of_malformed_counts_is_bad_input(world, counts):
    """Found: ValueError / IndexError / TypeError / OverflowError from rle.area on a region answer's counts."""
    if counts != "":  # an empty string is a valid (empty) run list; decode refuses it for this size
        with pytest.raises(BadInput):
            rle.area({"size": [H, W], "counts": counts})
    doc = {"format": "atool.answers/v1", "classes": ["road", "car"], "images": [{"image": "a.png", "width": W, "height": H, "answers": [
        {"id": "r", "x": 0, "y": 0, "label": "car", "mask": {"size": [H, W], "counts": counts}}]}]}
    path = world["root"] / "answers.json"
    path.write_text(json.dumps(doc))
    s = ingest_answers(path, world["root"] / "out", images_root=world["images"])
    assert s["skipped_points"]["malformed"] == 1


def test_answers_claiming_a_huge_image_are_skipped(world):
    """Found in review of the fuzz harness: ingest allocates label maps of the size an answer file claims."""
    doc = {"format": "atool.answers/v1", "classes": ["road", "car"],
           "images": [{"image": "a.png", "width": 100000, "height": 100000, "answers": [{"id": "q", "x": 1, "y": 1, "label": "car"}]}]}
    path = world["root"] / "answers.json"
    path.write_text(json.dumps(doc))
    s = ingest_answers(path, world["root"] / "out", images_root=world["images"])
    assert s["answered_images"] == 0 and "pixel limit" in s["skipped"][0]["reason"]


def _qlist(image: str, mask: dict | None = None) -> dict:
    q = {"id": "q1", "kind": "point", "x": 1, "y": 1, "score": 0.5, "predicted": "road"}
    if mask is not None:
        q = {**q, "kind": "region", "mask": mask}
    return {"format": "atool.query/v1", "atool_version": "0.1.0", "created": "2024-01-01T00:00:00+00:00",
            "model": {"path": "m.pt", "sha256": "0" * 64, "backend": "torch"}, "classes": ["road", "car"],
            "strategy": {"name": "entropy", "params": {}, "seed": 0}, "budget": {"points": 1, "scope": "total", "used": 1},
            "images": [{"image": image, "width": W, "height": H, "score": 0.5, "queries": [q]}], "skipped": []}


@pytest.mark.parametrize("image", ["", "../gt/a.png", "/etc/a.png"])
def test_oracle_refuses_unsafe_query_list_paths(world, image):
    """Found writing the query-list fuzzer: an empty image path passes the schema and crashed the oracle
    (ValueError from Path.with_suffix); '..' and absolute paths were joined to the label folder."""
    path = world["root"] / "q.json"
    path.write_text(json.dumps(_qlist(image)))
    s = answer_queries(path, world["gt"], world["root"] / "answers.json")
    assert s["skipped"] and s["skipped"][0]["image"] == image and s["points"] == 0


def test_oracle_checks_a_region_mask_size_before_decoding(world):
    """A region mask declaring 100000x100000 pixels is refused before it is decoded (it would allocate 10 GB)."""
    mask = {"size": [100000, 100000], "counts": rle.counts_to_string(np.array([0, 100000 * 100000]))}
    path = world["root"] / "q.json"
    path.write_text(json.dumps(_qlist("a.png", mask)))
    s = answer_queries(path, world["gt"], world["root"] / "answers.json")
    assert s["bad_regions"] == 1
