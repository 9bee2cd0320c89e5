"""Fuzzing CVAT XML and COCO exports on their way into ``atool ingest``.

From the oracle's own CVAT and COCO exports of a small query list: COCO nodes
replaced, deleted or duplicated; CVAT attributes and texts set to odd values
or dropped; either file's bytes mutated. Properties: ingest finishes
(skipping and counting what it cannot use) or raises a one-line ``BadInput``;
nothing is written outside the output folder.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET  # tostring only, to write the mutated inputs

import numpy as np
from defusedxml.ElementTree import fromstring
from hypothesis import strategies as st

from atool.annotate.ingest import ingest_answers
from atool.annotate.oracle import answer_queries
from atool.core.errors import BadInput
from atool.data.images import write_image, write_label
from atool.ops import rle
from fuzzkit import fuzz_case_count, fuzz_tests, mutated_bytes, mutated_json, scratch_dir  # noqa: F401 - the fixture prints the case count

W, H = 8, 6
WORLD = scratch_dir("atool-fuzz-cvat-coco-")
IMAGES = WORLD / "images"
for _rel in ("a.png", "sub/b.png"):
    write_image(IMAGES / _rel, np.zeros((H, W, 3), np.uint8))
    write_label(WORLD / "gt" / _rel, (np.arange(H * W, dtype=np.uint8).reshape(H, W) % 3))
(IMAGES / "escape").symlink_to(WORLD)
_MASK = np.zeros((H, W), bool)
_MASK[1:3, 2:6] = True
(WORLD / "q.json").write_text(json.dumps({
    "format": "atool.query/v1", "atool_version": "0.1.0", "created": "2024-01-01T00:00:00+00:00",
    "model": {"path": "m.pt", "sha256": "0" * 64, "backend": "torch"}, "classes": ["road", "car", "sky"],
    "strategy": {"name": "t", "params": {}, "seed": 0}, "budget": {"points": 3, "scope": "total", "used": 3}, "skipped": [],
    "images": [
        {"image": "a.png", "width": W, "height": H, "score": 0.9, "queries": [
            {"id": "q1", "kind": "point", "x": 1, "y": 2, "score": 0.9, "predicted": "car"},
            {"id": "q2", "kind": "point", "x": 7, "y": 5, "score": 0.8, "predicted": None}]},
        {"image": "sub/b.png", "width": W, "height": H, "score": 0.7, "queries": [
            {"id": "q3", "kind": "region", "x": 2, "y": 1, "score": 0.7, "predicted": "sky", "mask": rle.encode(_MASK)}]},
    ],
}))
answer_queries(WORLD / "q.json", WORLD / "gt", WORLD / "a.coco.json", fmt="coco")
answer_queries(WORLD / "q.json", WORLD / "gt", WORLD / "a.cvat.xml", fmt="cvat")
COCO = json.loads((WORLD / "a.coco.json").read_text())
CVAT = (WORLD / "a.cvat.xml").read_bytes()
BEFORE = sorted(p.relative_to(WORLD).as_posix() for p in WORLD.rglob("*"))


def _ingest(data: bytes, name: str) -> None:
    path = WORLD / "docs" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    try:
        s = ingest_answers(path, WORLD / "out", images_root=IMAGES)
    except BadInput as exc:
        assert "\n" not in str(exc)
    else:
        assert s["answered_images"] <= 2 and s["points"] >= 0
    after = sorted(p.relative_to(WORLD).as_posix() for p in WORLD.rglob("*") if p.relative_to(WORLD).parts[0] not in ("out", "docs"))
    assert after == BEFORE  # nothing written outside out/


def coco_export(doc: object) -> None:
    _ingest(json.dumps(doc).encode(), "coco.json")


def export_bytes(data: bytes) -> None:
    _ingest(data, "raw.xml")


_VALUES = st.one_of(st.text(max_size=8), st.sampled_from(
    ["-1", "0", "1e9", "nan", "inf", "3,4", "1.5,2.5;7,7", "0, 2", "8", "6", "car", "", "99999999999999999999", "../x.png", "/abs.png", "escape/q.json"]))
_EDITS = st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(
    ["label", "points", "rle", "left", "top", "width", "height", "name", "id", "TEXT", "DROP"]), _VALUES), min_size=1, max_size=5)


def cvat_export(edits: list[tuple[int, str, str]]) -> None:
    doc = fromstring(CVAT)
    elements = list(doc.iter())
    for i, what, value in edits:
        el = elements[i % len(elements)]
        if what == "TEXT":
            el.text = value
        elif what == "DROP":
            el.attrib.clear()
        else:
            el.set(what, value)
    _ingest(ET.tostring(doc), "cvat.xml")


test_coco_export, test_coco_export_slow = fuzz_tests(coco_export, mutated_json(COCO), n=15)
test_cvat_export, test_cvat_export_slow = fuzz_tests(cvat_export, _EDITS, n=15)
test_export_bytes, test_export_bytes_slow = fuzz_tests(export_bytes, mutated_bytes(CVAT, json.dumps(COCO).encode()), n=10)
