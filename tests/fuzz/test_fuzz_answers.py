"""Fuzzing what annotators and tools hand back: atool answers, Label Studio exports, query lists.

Starting from a valid document, a few nodes are replaced by arbitrary JSON,
deleted or duplicated (or the bytes of the file are mutated). Properties:
ingest / oracle either finish (skipping and counting what they cannot use) or
raise ``BadInput``; nothing is written outside the output folder; through the
CLI the exit code is 0 or 2, with exactly one ``atool: error:`` line and no
traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from atool.annotate.formats.labelstudio import to_tasks
from atool.annotate.ingest import ingest_answers
from atool.annotate.oracle import answer_queries
from atool.core.errors import BadInput
from atool.data.images import write_image, write_label
from conftest import run_cli
from fuzzkit import fuzz_case_count, fuzz_tests, scratch_dir, mutated_bytes, mutated_json  # noqa: F401 - the fixture prints the case count

CLASSES = ["road", "car", "sky"]
W, H = 8, 6
WORLD = scratch_dir("atool-fuzz-ans-")
IMAGES, GT = WORLD / "images", WORLD / "gt"
for _rel in ("a.png", "sub/b.png"):
    write_image(IMAGES / _rel, np.zeros((H, W, 3), np.uint8))
    write_label(GT / _rel, (np.arange(H * W, dtype=np.uint8).reshape(H, W) % 3))
(WORLD / "outside.png").write_bytes((IMAGES / "a.png").read_bytes())
(IMAGES / "escape").symlink_to(WORLD)  # a symlink out of the root, for paths to try
CLASSES_TXT = WORLD / "classes.txt"
CLASSES_TXT.write_text("".join(f"{c}\n" for c in CLASSES))


def _q(qid: str, x: int, y: int) -> dict:
    return {"id": qid, "kind": "point", "x": x, "y": y, "score": 0.5, "predicted": "road"}


QUERY_LIST = {
    "format": "atool.query/v1", "atool_version": "0.1.0", "created": "2024-01-01T00:00:00+00:00",
    "model": {"path": "m.pt", "sha256": "0" * 64, "backend": "torch"}, "classes": CLASSES,
    "strategy": {"name": "entropy", "params": {}, "seed": 0},
    "budget": {"points": 3, "scope": "total", "used": 3},
    "images": [
        {"image": "a.png", "width": W, "height": H, "score": 0.5, "queries": [_q("q1", 1, 1), _q("q2", 7, 5)]},
        {"image": "sub/b.png", "width": W, "height": H, "score": 0.5, "queries": [_q("q3", 0, 0)]},
    ],
    "skipped": [],
}
ANSWERS = {
    "format": "atool.answers/v1", "classes": CLASSES,
    "images": [
        {"image": "a.png", "width": W, "height": H, "answers": [
            {"id": "q1", "x": 1, "y": 1, "label": "car"}, {"id": "q2", "x": 7, "y": 5, "label": None},
            {"id": "r1", "x": 0, "y": 0, "label": "sky", "mask": {"size": [H, W], "counts": [0, 3, H * W - 3]}},
        ]},
        {"image": "sub/b.png", "width": W, "height": H, "answers": [{"id": "q3", "x": 0, "y": 0, "label": "road"}]},
    ],
}


def _ls_export() -> list[dict]:
    tasks = to_tasks(QUERY_LIST, "/data/local-files/?d=")
    for task in tasks:
        task["annotations"] = [{
            "id": 1, "updated_at": "2024-01-02T10:00:00Z", "was_cancelled": False,
            "result": [{"id": "k1", "type": "keypointlabels", "from_name": "kp", "to_name": "image", "original_width": W,
                        "original_height": H, "value": {"x": 20.0, "y": 30.0, "width": 0.5, "keypointlabels": ["car"]}}],
        }]
    return tasks


LS_EXPORT = _ls_export()


def _outside_files() -> set[str]:
    return {p.relative_to(WORLD).as_posix() for p in WORLD.rglob("*") if p.relative_to(WORLD).parts[0] not in ("out", "docs")}


BEFORE = _outside_files()


def _write_doc(doc: object, name: str) -> Path:
    path = WORLD / "docs" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def _ingest(path: Path, **kw: object) -> None:
    try:
        s = ingest_answers(path, WORLD / "out", images_root=IMAGES, **kw)
    except BadInput as exc:
        assert "\n" not in str(exc)
    else:
        assert s["answered_images"] <= 2 and s["points"] >= 0
    assert _outside_files() == BEFORE


def atool_answers(doc: object) -> None:
    _ingest(_write_doc(doc, "answers.json"))


def labelstudio_export(doc: object) -> None:
    _ingest(_write_doc(doc, "ls.json"), classes=CLASSES_TXT)


def answer_file_bytes(data: bytes) -> None:
    path = WORLD / "docs" / "raw.json"
    path.write_bytes(data)
    _ingest(path, classes=CLASSES_TXT)


def query_list(doc: object) -> None:
    path = _write_doc(doc, "queries.json")
    try:
        s = answer_queries(path, GT, WORLD / "out" / "answers.json")
    except BadInput as exc:
        assert "\n" not in str(exc)
    else:
        assert s["points"] >= 0
    assert _outside_files() == BEFORE


def ingest_cli(doc: object) -> None:
    r = run_cli("ingest", _write_doc(doc, "cli.json"), "--images", IMAGES, "--classes", CLASSES_TXT, "--out", WORLD / "out")
    assert "Traceback" not in r.output
    assert r.exit_code in (0, 2), r.output
    errors = [line for line in r.stderr.splitlines() if line.startswith("atool: error:")]
    assert len(errors) == (1 if r.exit_code else 0), r.stderr


_ANSWER_BYTES = json.dumps(ANSWERS).encode()
test_atool_answers, test_atool_answers_slow = fuzz_tests(atool_answers, mutated_json(ANSWERS), n=100)
test_labelstudio_export, test_labelstudio_export_slow = fuzz_tests(labelstudio_export, mutated_json(LS_EXPORT), n=90)
test_answer_file_bytes, test_answer_file_bytes_slow = fuzz_tests(
    answer_file_bytes, mutated_bytes(_ANSWER_BYTES, json.dumps(LS_EXPORT).encode()), n=50
)
test_query_list, test_query_list_slow = fuzz_tests(query_list, mutated_json(QUERY_LIST), n=70)
test_ingest_cli, test_ingest_cli_slow = fuzz_tests(
    ingest_cli, st.one_of(mutated_json(ANSWERS, 2), mutated_json(LS_EXPORT, 2)), n=25
)
