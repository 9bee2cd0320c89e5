"""The ``cvat`` format: the task file's structure, CVAT's mask RLE, and a CVAT export (edited as CVAT would) read back."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from defusedxml.ElementTree import fromstring

from atool.annotate.formats import write_query_list
from atool.annotate.formats.cvat import cvat_to_mask, mask_to_cvat
from atool.annotate.ingest import ingest_answers
from atool.core.errors import BadInput
from atool.data.images import read_label, write_image
from conftest import assert_one_line_error, run_cli, small_query_list

CLASSES = ["road", "car", "sky"]
W, H = 8, 6


def _region() -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[1:3, 2:6] = True
    mask[4, 5] = True
    return mask


def _query_list() -> dict:
    return small_query_list(CLASSES, W, H, _region())


def test_mask_rle_matches_cvat_layout_and_round_trips():
    # Box 4 wide x 4 tall at (2, 1), read row by row: rows 1-2 full, row 3 empty, row 4 only its last pixel.
    box = mask_to_cvat(_region())
    assert box == {"rle": "0, 8, 7, 1", "left": 2, "top": 1, "width": 4, "height": 4}
    assert np.array_equal(cvat_to_mask({k: str(v) for k, v in box.items()}, W, H), _region())
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = rng.random((9, 13)) < rng.random()
        got = mask_to_cvat(m)
        if got is None:
            assert not m.any()
            continue
        assert np.array_equal(cvat_to_mask({k: str(v) for k, v in got.items()}, 13, 9), m)
    assert mask_to_cvat(np.zeros((3, 3), bool)) is None
    for bad in ({"rle": "1, 2", "left": "0", "top": "0", "width": "2", "height": "2"},  # 3 pixels for 4
                {"rle": "4", "left": "7", "top": "0", "width": "2", "height": "2"}):  # leaves the image
        with pytest.raises(BadInput):
            cvat_to_mask(bad, W, H)


def test_task_file_has_cvat_structure(tmp_path):
    out = write_query_list(_query_list(), tmp_path / "task.xml", "cvat")[0]
    root = fromstring(out.read_text())
    assert root.tag == "annotations" and root.findtext("version") == "1.1"
    assert [e.text for e in root.iterfind("meta/task/labels/label/name")] == [*CLASSES, "(cannot tell)"]
    images = root.findall("image")
    assert [(i.get("id"), i.get("name"), i.get("width"), i.get("height")) for i in images] == [("0", "a.png", "8", "6"), ("1", "sub/b.png", "8", "6")]
    p1, p2 = images[0].findall("points")
    assert (p1.get("label"), p1.get("points")) == ("car", "1.50,2.50")  # the model's guess, at the pixel centre
    assert p2.get("label") == "(cannot tell)"
    assert {a.get("name"): a.text for a in p1.iterfind("attribute")}["atool_id"] == "q1"
    (mask,) = images[1].findall("mask")
    assert mask.get("label") == "sky" and np.array_equal(cvat_to_mask(dict(mask.attrib), W, H), _region())


EXPORT = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <id>17</id>
      <name>atool test</name>
      <size>3</size>
      <mode>annotation</mode>
      <overlap>0</overlap>
      <bugtracker></bugtracker>
      <created>2024-05-02 10:11:12.000000+00:00</created>
      <updated>2024-05-03 09:00:00.000000+00:00</updated>
      <subset>default</subset>
      <start_frame>0</start_frame>
      <stop_frame>2</stop_frame>
      <frame_filter></frame_filter>
      <segments>
        <segment><id>21</id><start>0</start><stop>2</stop><url>http://localhost:8080/api/jobs/21</url></segment>
      </segments>
      <owner><username>admin</username><email></email></owner>
      <assignee></assignee>
      <labels>
        LABELS
      </labels>
    </task>
    <dumped>2024-05-03 09:01:00.000000+00:00</dumped>
  </meta>
  <image id="0" name="a.png" width="8" height="6">
    <points label="road" source="manual" occluded="0" points="1.92,2.07" z_order="0">
      <attribute name="atool_id">q1</attribute>
      <attribute name="score">0.9</attribute>
    </points>
    <points label="(cannot tell)" source="manual" occluded="0" points="7.50,5.50" z_order="0">
      <attribute name="atool_id">q2</attribute>
      <attribute name="score">0.8</attribute>
    </points>
    <points label="car" source="manual" occluded="0" points="4.10,0.30" z_order="0">
      <attribute name="atool_id"></attribute>
      <attribute name="score"></attribute>
    </points>
  </image>
  <image id="1" name="sub/b.png" width="8" height="6">
    <mask label="sky" source="manual" occluded="0" rle="0, 8, 7, 1" left="2" top="1" width="4" height="4" z_order="0">
      <attribute name="atool_id">q3</attribute>
      <attribute name="atool_point">2,1</attribute>
    </mask>
    <mask label="road" source="manual" occluded="0" rle="0, 2" left="0" top="5" width="2" height="1" z_order="0">
      <attribute name="atool_id">q3</attribute>
      <attribute name="atool_point">2,1</attribute>
    </mask>
  </image>
  <image id="2" name="c.png" width="8" height="6">
  </image>
</annotations>
"""


def _export(tmp_path: Path, text: str = EXPORT, labels: list[str] | None = None) -> Path:
    names = [*(labels or CLASSES), "(cannot tell)"]
    decl = "".join(f"<label><name>{n}</name><color>#33ddff</color><type>any</type><attributes></attributes></label>" for n in names)
    path = tmp_path / "annotations.xml"
    path.write_text(text.replace("LABELS", decl))
    return path


@pytest.fixture
def images(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    for rel in ("a.png", "sub/b.png", "c.png"):
        write_image(root / rel, np.zeros((H, W, 3), np.uint8))
    return root


def test_cvat_export_edited_by_annotator_reads_back(tmp_path, images):
    """The annotator relabeled q1, marked q2 'cannot tell', added a point, and split region q3 into two masks."""
    s = ingest_answers(_export(tmp_path), tmp_path / "out", images_root=images)
    assert s["source_format"] == "cvat" and s["skipped_total"] == 0 and s["classes"] == CLASSES
    assert s["answered_images"] == 2 and s["null_answers"] == 1
    a = read_label(tmp_path / "out" / "labels" / "a.png")
    want = np.full((H, W), 255, np.uint8)
    want[2, 1], want[0, 4] = 0, 1  # road at q1, car at the added point; q2's null leaves 255
    assert np.array_equal(a, want)
    b = read_label(tmp_path / "out" / "labels" / "sub" / "b.png")
    want = np.full((H, W), 255, np.uint8)
    want[_region()] = 2
    want[5, 0:2] = 0
    assert np.array_equal(b, want)


def test_cvat_answers_via_cli_match_oracle_semantics(tmp_path, images):
    from atool.annotate.formats import FORMATS

    answer_set = FORMATS.get("cvat")().read_answers(_export(tmp_path).read_text(), "x")
    doc = answer_set.to_doc()
    (sky, road) = doc["images"][1]["answers"]
    assert (sky["id"], sky["x"], sky["y"], sky["label"]) == ("q3", 2, 1, "sky")  # the query's point lies in this part
    assert (road["x"], road["y"]) == (0, 5)  # the first pixel of the other part
    assert doc["images"][0]["answers"][2]["id"] == "cvat:0:2"  # drawn by the annotator
    r = run_cli("ingest", _export(tmp_path), "--out", tmp_path / "cli", "--images", images)
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "cli" / "ingest.json").read_text())["points"] == 2 + int(_region().sum()) + 2


def test_unknown_label_is_one_line_error(tmp_path, images):
    path = _export(tmp_path, EXPORT.replace('label="car"', 'label="truck"'))
    r = run_cli("ingest", path, "--out", tmp_path / "out", "--images", images)
    assert_one_line_error(r, 2, "truck")
    assert not (tmp_path / "out").exists()


def test_sizes_that_disagree_with_the_images_are_one_line_error(tmp_path, images):
    write_image(images / "a.png", np.zeros((H + 1, W, 3), np.uint8))
    r = run_cli("ingest", _export(tmp_path), "--out", tmp_path / "out", "--images", images)
    assert_one_line_error(r, 2, "a.png is 8x7")
    assert not (tmp_path / "out").exists()


def test_unsafe_image_paths_are_treated_as_every_format_does(tmp_path, images):
    """Absolute and '..' paths are skipped and reported; a path through a symlink gets exactly what atool's own answers get."""
    from atool.annotate.formats import FORMATS

    outside = tmp_path / "secret"
    write_image(outside / "x.png", np.zeros((H, W, 3), np.uint8))
    os.symlink(outside, images / "link")
    text = EXPORT.replace('name="a.png"', 'name="/etc/a.png"').replace('name="sub/b.png"', 'name="../secret/x.png"')
    text = text.replace('name="c.png" width="8" height="6">', 'name="link/x.png" width="8" height="6"><points label="car" points="1,1"/>')
    export = _export(tmp_path, text)
    s = ingest_answers(export, tmp_path / "out", images_root=images)
    assert s["skipped_points"]["unknown_image"] >= 3 + 2
    assert {"/etc/a.png", "../secret/x.png", "link/x.png"} <= {x["image"] for x in s["skipped"]}
    native = tmp_path / "native.json"
    native.write_text(json.dumps(FORMATS.get("cvat")().read_answers(export.read_text(), "x").to_doc()))
    ref = ingest_answers(native, tmp_path / "ref", images_root=images)
    for key in ("answered_images", "points", "skipped_points", "skipped_total"):
        assert s[key] == ref[key], key


@pytest.mark.parametrize("text", [
    '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "xxxxxxxx">]><annotations><meta/>&e;</annotations>',
    "<annotations><meta><task><labels></labels></task></meta>",
])
def test_hostile_or_broken_xml_is_one_line_error(tmp_path, text):
    path = tmp_path / "bad.xml"
    path.write_text(text)
    r = run_cli("ingest", path, "--out", tmp_path / "out", "--classes", _classes(tmp_path))
    assert_one_line_error(r, 2, "CVAT")
    assert not (tmp_path / "out").exists()


def _classes(tmp_path: Path) -> Path:
    path = tmp_path / "classes.txt"
    path.write_text("\n".join(CLASSES) + "\n")
    return path


def test_oracle_and_ingest_cli_round_trip_through_cvat(tmp_path, images):
    from atool.data.images import write_label

    qpath = tmp_path / "q.json"
    qpath.write_text(json.dumps(_query_list()))
    truth = np.arange(H * W, dtype=np.uint8).reshape(H, W) % 3
    for rel in ("a.png", "sub/b.png"):
        write_label(tmp_path / "gt" / rel, truth)
    out = tmp_path / "answers.cvat.xml"
    r = run_cli("oracle", "--queries", qpath, "--labels", tmp_path / "gt", "--format", "cvat", "--out", out)
    assert r.exit_code == 0, r.output
    assert fromstring(out.read_text()).tag == "annotations"
    r = run_cli("ingest", out, "--out", tmp_path / "sparse", "--images", images)
    assert r.exit_code == 0, r.output
    b = read_label(tmp_path / "sparse" / "labels" / "sub" / "b.png")
    assert np.array_equal(b[_region()], truth[_region()]) and (b[~_region()] == 255).all()
    a = read_label(tmp_path / "sparse" / "labels" / "a.png")
    assert a[2, 1] == truth[2, 1] and a[5, 7] == truth[5, 7]


def test_absurd_image_sizes_are_skipped_not_allocated(tmp_path):
    from atool.annotate.formats import FORMATS

    text = EXPORT.replace('name="sub/b.png" width="8" height="6"', 'name="sub/b.png" width="100000" height="100000"')
    text = text.replace('rle="0, 8, 7, 1" left="2" top="1" width="4" height="4"', 'rle="0, 1000000000" left="0" top="0" width="100000" height="10000"')
    answer_set = FORMATS.get("cvat")().read_answers(_export(tmp_path, text).read_text(), "x")
    assert [r.image for r in answer_set.images] == ["a.png"] and answer_set.report.counts["malformed"] == 2
