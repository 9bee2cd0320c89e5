"""`atool labelstudio` parts that need no Label Studio server: tasks, export -> answers, config checks, errors.

The real server is exercised by tests/integration/ (`make test-integration`).
"""

from __future__ import annotations

import copy
import http.server
import json
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli

from atool.annotate.formats.labelstudio import label_config, read_export
from atool.annotate.labelstudio import brush
from atool.annotate.labelstudio.project import config_problem
from atool.annotate.labelstudio.pull import answers_from_export
from atool.annotate.labelstudio.push import build_tasks
from atool.core.errors import BadInput
from atool.core.schemas import validate
from atool.ops import rle

CLASSES = ["road", "sky", "car"]
W, H = 8, 6


def _region_mask() -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[1:4, 2:6] = True
    return m


@pytest.fixture()
def qlist() -> dict:
    points = [{"id": "p1", "kind": "point", "x": 1, "y": 2, "score": 0.9, "predicted": "road"},
              {"id": "p2", "kind": "point", "x": 7, "y": 5, "score": 0.5, "predicted": "sky"}]
    region = [{"id": "r1", "kind": "region", "x": 3, "y": 2, "score": 2.0, "predicted": "car", "mask": rle.encode(_region_mask())}]
    doc = {
        "format": "atool.query/v1", "atool_version": "0", "created": "2026-01-01T00:00:00Z", "model": {"sha256": "0" * 64},
        "classes": CLASSES, "strategy": {"name": "test", "params": {}}, "budget": {"points": 3, "scope": "total", "used": 3},
        "images": [{"image": "a.png", "width": W, "height": H, "score": 1.0, "queries": points},
                   {"image": "sub/b.png", "width": W, "height": H, "score": 0.5, "queries": region},
                   {"image": "c.png", "width": W, "height": H, "score": 0.1, "queries": []}],
        "skipped": [],
    }
    validate(doc, "query-list", "test list")
    return doc


def _annotation(task: dict, labels: dict, n: int, updated: str, cancelled: bool = False) -> dict:
    """The task's prediction saved as an annotation, each result relabeled by id (``labels``)."""
    result = copy.deepcopy(task["predictions"][0]["result"])
    for r in result:
        key = "keypointlabels" if r["type"] == "keypointlabels" else "brushlabels"
        r["value"][key] = [labels[r["id"]]] if labels.get(r["id"]) else []
    return {"id": n, "result": result, "was_cancelled": cancelled, "updated_at": updated, "created_at": updated}


def _export(qlist: dict) -> list[dict]:
    tasks = build_tasks(qlist, {item["image"]: "/data/local-files/?d=pool/" + item["image"] for item in qlist["images"]})
    for n, t in enumerate(tasks, start=1):
        t["id"] = n
    a, b, c = tasks
    a["annotations"] = [
        _annotation(a, {"p1": "car", "p2": "car"}, 1, "2026-01-01T10:00:00Z"),
        _annotation(a, {"p1": "road", "p2": None}, 2, "2026-01-01T11:00:00Z"),  # newer: it counts
    ]
    b["annotations"] = [_annotation(b, {"r1": "sky"}, 3, "2026-01-01T10:00:00Z")]
    c["annotations"] = [_annotation(c, {}, 4, "2026-01-01T10:00:00Z", cancelled=True)]
    return tasks


def test_tasks_carry_points_and_brush_regions_keyed_by_image(qlist):
    tasks = build_tasks(qlist, {item["image"]: "u/" + item["image"] for item in qlist["images"]})
    assert [t["data"] for t in tasks] == [{"image": "u/" + i["image"], "atool_image": i["image"]} for i in qlist["images"]]
    kp = tasks[0]["predictions"][0]["result"]
    assert [(r["type"], r["from_name"], r["id"], r["value"]["keypointlabels"]) for r in kp] == [
        ("keypointlabels", "kp", "p1", ["road"]), ("keypointlabels", "kp", "p2", ["sky"])]
    (reg,) = tasks[1]["predictions"][0]["result"]
    assert (reg["type"], reg["from_name"], reg["value"]["brushlabels"]) == ("brushlabels", "brush", ["car"])
    assert np.array_equal(brush.decode(reg["value"]["rle"], W, H), _region_mask())


def test_export_to_answers_newest_wins_and_counts_what_it_leaves_out(qlist):
    export = _export(qlist)
    export.append({"id": 9, "data": {"atool_image": "c.png"}, "annotations": []})  # a second, unannotated task
    doc, counts = answers_from_export(export, qlist)
    validate(doc, "answers", "pulled")
    assert {k: counts[k] for k in ("annotated", "unannotated", "cancelled", "several", "points", "regions", "null")} == {
        "annotated": 2, "unannotated": 1, "cancelled": 1, "several": 1, "points": 2, "regions": 1, "null": 1}
    a, b = doc["images"]
    assert [(x["id"], x["x"], x["y"], x["label"]) for x in a["answers"]] == [("p1", 1, 2, "road"), ("p2", 7, 5, None)]
    (region,) = b["answers"]
    assert (region["id"], region["x"], region["y"], region["label"]) == ("r1", 3, 2, "sky")
    assert np.array_equal(rle.decode(region["mask"]), _region_mask())


def test_annotator_drawn_results_are_matched_to_the_queries(qlist):
    export = _export(qlist)
    point, = [r for r in export[0]["annotations"][1]["result"] if r["id"] == "p2"]
    point["id"] = "ls-made-1"  # a point placed anew on p2's pixel
    painted = np.zeros((H, W), dtype=bool)
    painted[3:5, 4:7] = True  # overlaps r1 by two pixels, not at its point
    export[1]["annotations"][0]["result"] = [{
        "id": "ls-made-2", "type": "brushlabels", "from_name": "brush", "to_name": "image", "original_width": W, "original_height": H,
        "value": {"format": "rle", "rle": brush.encode(painted), "brushlabels": ["car"]}}]
    doc, _ = answers_from_export(export, qlist)
    assert [x["id"] for x in doc["images"][0]["answers"]] == ["p1", "p2"]
    (region,) = doc["images"][1]["answers"]
    assert region["id"] == "r1" and painted[region["y"], region["x"]] and (region["x"], region["y"]) == (4, 3)


def test_renamed_labels_and_foreign_images_are_one_line_errors(qlist):
    export = _export(qlist)
    export[0]["annotations"][1]["result"][0]["value"]["keypointlabels"] = ["street"]
    with pytest.raises(BadInput, match=r"labels \['street'\].*renamed"):
        answers_from_export(export, qlist)
    export = _export(qlist)
    export.append({"id": 10, "data": {"atool_image": "elsewhere.png"}, "annotations": []})
    with pytest.raises(BadInput, match="1 tasks for images not in the query list .first: elsewhere.png"):
        answers_from_export(export, qlist)
    doc, counts = answers_from_export(export, qlist, skip_unknown=True)
    assert counts["unknown_images"] == 1 and [i["image"] for i in doc["images"]] == ["a.png", "sub/b.png"]


def test_config_check_and_raw_export_reads_brush_results(qlist):
    assert config_problem(label_config(CLASSES), CLASSES) is None
    assert "project only: ['street']; query list only: ['road']" in config_problem(label_config(["street", "sky", "car"]), CLASSES)
    assert "BrushLabels" in config_problem(label_config(CLASSES).replace("BrushLabels", "PolygonLabels"), CLASSES)
    # `atool ingest` of a raw Label Studio export reads the brush answers too.
    got = read_export(_export(qlist))
    regions = [a for rec in got.images for a in rec.answers if a.mask is not None]
    assert len(regions) == 1 and regions[0].label == "sky" and np.array_equal(rle.decode(regions[0].mask), _region_mask())


# ---------------------------------------------------------------- CLI: errors before or at the server


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Refuses(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the stdlib's name
        body = b'{"detail": "Invalid token."}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def qfile(qlist, tmp_path) -> Path:
    path = tmp_path / "q.json"
    path.write_text(json.dumps(qlist))
    return path


def test_cli_no_server_wrong_token_and_missing_settings(qfile, tmp_path, monkeypatch):
    out = tmp_path / "answers.json"
    pull = ["labelstudio", "pull", "--project", "p", "--queries", qfile, "--out", out]
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "t0ken")
    assert_one_line_error(run_cli(*pull), 2, "LABEL_STUDIO_URL")
    monkeypatch.setenv("LABEL_STUDIO_URL", f"http://127.0.0.1:{_closed_port()}")
    assert_one_line_error(run_cli(*pull), 2, "no Label Studio server answers")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refuses)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("LABEL_STUDIO_URL", f"http://127.0.0.1:{server.server_address[1]}")
        assert_one_line_error(run_cli(*pull), 2, "refused the token")
    finally:
        server.shutdown()
        server.server_close()
    assert not out.exists()


def test_cli_push_checks_images_and_document_root_before_the_server(qfile, tmp_path, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "t0ken")
    monkeypatch.delenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", raising=False)
    doc = tmp_path / "docroot"
    images = doc / "pool"
    (images / "sub").mkdir(parents=True)
    push = ["labelstudio", "push", qfile, "--project", "p", "--images", images]
    assert_one_line_error(run_cli(*push), 2, "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")
    assert_one_line_error(run_cli(*push, "--document-root", tmp_path / "other"), 2, "not a folder")
    (tmp_path / "other").mkdir()
    assert_one_line_error(run_cli(*push, "--document-root", tmp_path / "other"), 2, "not inside the Label Studio document root")
    assert_one_line_error(run_cli(*push, "--document-root", doc), 2, "3 queried images are not under")
    for name in ("a.png", "sub/b.png", "c.png"):
        (images / name).write_bytes(b"")
    # Everything local is fine: only now is the (absent) server asked.
    assert_one_line_error(run_cli(*push, "--document-root", doc), 2, "no Label Studio server answers")
