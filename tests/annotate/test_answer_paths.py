"""Answer files name images by path; a path that is absolute, climbs with '..', or leaves the
image root through a symlink is skipped and reported by ingest, whatever the format."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from atool.annotate.paths import answer_image_path
from atool.data.images import write_image
from conftest import run_cli

W, H = 8, 6
CLASSES = ["road", "car"]


@pytest.fixture()
def tree(tmp_path) -> dict[str, Path]:
    images, outside = tmp_path / "images", tmp_path / "outside"
    for path in (images / "a.png", images / "sub" / "b.png", outside / "x.png"):
        write_image(path, np.zeros((H, W, 3), np.uint8))
    os.symlink(outside, images / "escape")  # a folder link out of the root
    os.symlink(images / "a.png", images / "alias.png")  # a file link that stays inside
    return {"images": images, "root": tmp_path}


@pytest.mark.parametrize(
    "rel, why",
    [
        ("/etc/passwd", "absolute"),
        ("C:/data/a.png", "absolute"),
        ("../outside/x.png", "'..'"),
        ("sub/../../outside/x.png", "'..'"),
        ("sub//b.png", "empty"),
        ("./a.png", "'.'"),
        ("sub\\b.png", "backslash"),
        ("a.png\0", "NUL"),
        ("", "non-empty string"),
        (None, "non-empty string"),
        (7, "non-empty string"),
        ("escape/x.png", "symlink"),
        ("ghost.png", "no such image"),
    ],
)
def test_unsafe_paths_are_refused_with_a_reason(tree, rel, why):
    got, reason = answer_image_path(rel, tree["images"])
    assert got is None and why in reason


def test_safe_paths_pass(tree):
    assert answer_image_path("a.png", tree["images"]) == ("a.png", "")
    assert answer_image_path("sub/b.png", tree["images"]) == ("sub/b.png", "")
    assert answer_image_path("alias.png", tree["images"]) == ("alias.png", "")  # link inside the root
    assert answer_image_path("ghost.png", None) == ("ghost.png", "")  # form only without a root


def _answers(images: list[str]) -> dict:
    return {
        "format": "atool.answers/v1", "classes": CLASSES,
        "images": [{"image": rel, "width": W, "height": H, "answers": [{"id": f"q{i}", "x": 1, "y": 1, "label": "car"}]}
                   for i, rel in enumerate(images)],
    }


BAD = ["/etc/passwd", "../outside/x.png", "escape/x.png"]


def test_ingest_cli_atool_json_skips_and_reports(tree):
    answers = tree["root"] / "answers.json"
    answers.write_text(json.dumps(_answers(["a.png", *BAD])))
    out = tree["root"] / "out"
    r = run_cli("ingest", answers, "--images", tree["images"], "--out", out)
    assert r.exit_code == 0, r.output
    s = json.loads((out / "ingest.json").read_text())
    assert s["answered_images"] == 1 and s["skipped_points"]["unknown_image"] == 3
    assert {x["image"] for x in s["skipped"]} == set(BAD)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["labels/a.png", "origin/a.png"]
    assert "skipped 3" in r.stderr


def test_ingest_cli_labelstudio_export_skips_and_reports(tree):
    def task(rel: str) -> dict:
        kp = {"id": "k", "type": "keypointlabels", "from_name": "kp", "to_name": "image", "original_width": W,
              "original_height": H, "value": {"x": 20.0, "y": 20.0, "width": 0.5, "keypointlabels": ["car"]}}
        return {"data": {"image": "/data/local-files/?d=" + rel.replace("..", "%2e%2e")},
                "annotations": [{"id": 1, "result": [kp]}]}

    export = tree["root"] / "export.json"
    export.write_text(json.dumps([task("a.png")] + [task(rel) for rel in BAD]))
    classes = tree["root"] / "classes.txt"
    classes.write_text("road\ncar\n")
    out = tree["root"] / "out"
    r = run_cli("ingest", export, "--classes", classes, "--images", tree["images"], "--out", out)
    assert r.exit_code == 0, r.output
    s = json.loads((out / "ingest.json").read_text())
    assert s["source_format"] == "labelstudio" and s["answered_images"] == 1
    assert s["skipped_points"]["unknown_image"] == 3 and len(s["skipped"]) == 3
    assert not (tree["root"] / "outside" / "x.png").with_suffix(".json").exists()
