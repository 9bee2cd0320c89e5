"""The simulated annotator and ingest: query list -> answers -> sparse labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from atool.commands.ingest import command as ingest_command
from atool.commands.oracle import command as oracle_command
from atool.data.images import read_label, write_image, write_label
from atool.annotate.formats.labelstudio import to_tasks
from atool.annotate.ingest import ingest_answers
from atool.annotate.oracle import answer_queries
from atool.core.io import sha256_file
from atool.core.schemas import validate

CLASSES = ["road", "car", "sky"]
W, H = 8, 6


def query(qid: str, x: int, y: int, score: float = 0.5, predicted: str = "road") -> dict:
    return {"id": qid, "kind": "point", "x": x, "y": y, "score": score, "predicted": predicted}


def image_entry(rel: str, queries: list[dict], w: int = W, h: int = H) -> dict:
    return {"image": rel, "width": w, "height": h, "score": max(q["score"] for q in queries), "queries": queries}


@pytest.fixture
def world(tmp_path: Path) -> dict:
    """Images, ground truth and a hand-made query list with every awkward case."""
    images, gt = tmp_path / "images", tmp_path / "gt"
    gt_a = np.arange(H * W, dtype=np.uint8).reshape(H, W) % 3
    gt_a[0, 0] = 255  # ignore -> null
    gt_a[0, 1] = 7  # outside the 3 classes -> null, counted
    gt_b = np.full((H, W), 2, np.uint8)
    for rel in ("a.png", "sub/b.jpg", "c.png", "d.png"):
        write_image(images / rel, np.zeros((H, W, 3), np.uint8))
    write_label(gt / "a.png", gt_a)
    write_label(gt / "sub" / "b.png", gt_b)
    write_label(gt / "d.png", np.zeros((H + 1, W), np.uint8))  # wrong size; c.png has no label at all
    qlist = {
        "format": "atool.query/v1", "atool_version": "0.1.0", "created": "2024-01-01T00:00:00+00:00",
        "model": {"path": "m.pt", "sha256": "0" * 64, "backend": "torch"}, "classes": CLASSES,
        "strategy": {"name": "entropy_patch", "params": {}, "seed": 0},
        "budget": {"points": 9, "scope": "total", "used": 9},
        "images": [
            image_entry("a.png", [query("q000001", 0, 0, 0.9), query("q000002", 1, 0, 0.9), query("q000003", 3, 2, 0.9), query("q000004", 7, 5, 0.9)]),
            image_entry("sub/b.jpg", [query("q000005", 4, 4, 0.8), query("q000006", 5, 1, 0.8)]),
            image_entry("c.png", [query("q000007", 1, 1, 0.7)]),
            image_entry("d.png", [query("q000008", 1, 1, 0.6), query("q000009", 2, 2, 0.6)]),
        ],
        "skipped": [],
    }
    qpath = tmp_path / "queries.json"
    qpath.write_text(json.dumps(qlist))
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return {"root": tmp_path, "images": images, "gt": gt, "queries": qpath, "qlist": qlist, "gt_a": gt_a, "classes": tmp_path / "classes.txt"}


def one_line_exit_2(result) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("atool: error: ") and "Traceback" not in result.output, result.output
    return lines[0]


def test_oracle_answers_from_ground_truth(world):
    out = world["root"] / "answers.json"
    s = answer_queries(world["queries"], world["gt"], out)
    doc = json.loads(out.read_text())
    validate(doc, "answers", "answers")
    assert doc["query_list_sha256"] == sha256_file(world["queries"])
    by_id = {a["id"]: a["label"] for e in doc["images"] for a in e["answers"]}
    gt = world["gt_a"]
    assert by_id == {
        "q000001": None, "q000002": None, "q000003": CLASSES[gt[2, 3]], "q000004": CLASSES[gt[5, 7]],
        "q000005": "sky", "q000006": "sky",
    }
    assert [e["image"] for e in doc["images"]] == ["a.png", "sub/b.jpg"]
    assert s["points"] == 6 and s["null"] == 2 and s["out_of_range"] == 1
    assert s["skipped_images"] == 2
    reasons = {x["image"]: x["reason"] for x in s["skipped"]}
    assert "no ground-truth label" in reasons["c.png"]
    assert "8x7" in reasons["d.png"]


def test_oracle_cli_and_bad_input(world):
    out = world["root"] / "answers.json"
    r = CliRunner().invoke(oracle_command, ["--queries", str(world["queries"]), "--labels", str(world["gt"]), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "6 point answers" in r.output and "2 images skipped" in r.output
    bad = world["root"] / "bad.json"
    bad.write_text("{ not json")
    assert "not valid JSON" in one_line_exit_2(CliRunner().invoke(oracle_command, ["--queries", str(bad), "--labels", str(world["gt"])]))
    broken = dict(world["qlist"], budget={"points": -1, "scope": "total", "used": 0})
    bad.write_text(json.dumps(broken))
    assert "schema" in one_line_exit_2(CliRunner().invoke(oracle_command, ["--queries", str(bad), "--labels", str(world["gt"])]))
    bad.write_text("[1, 2]")
    assert "not an atool.query/v1" in one_line_exit_2(CliRunner().invoke(oracle_command, ["--queries", str(bad), "--labels", str(world["gt"])]))
    one_line_exit_2(CliRunner().invoke(oracle_command, ["--queries", str(world["root"] / "nope.json"), "--labels", str(world["gt"])]))
    one_line_exit_2(CliRunner().invoke(oracle_command, ["--queries", str(world["queries"]), "--labels", str(world["root"] / "nope")]))
    one_line_exit_2(CliRunner().invoke(oracle_command, ["--labels", str(world["gt"])]))


def test_ingest_atool_answers(world):
    answers = world["root"] / "answers.json"
    answer_queries(world["queries"], world["gt"], answers)
    out = world["root"] / "sparse"
    s = ingest_answers(answers, out, images_root=world["images"])
    label = read_label(out / "labels" / "a.png")
    origin = read_label(out / "origin" / "a.png")
    gt = world["gt_a"]
    expect = np.full((H, W), 255, np.uint8)
    expect[2, 3], expect[5, 7] = gt[2, 3], gt[5, 7]
    assert np.array_equal(label, expect)
    assert np.array_equal(origin, (expect != 255).astype(np.uint8))
    b = read_label(out / "labels" / "sub" / "b.png")
    assert b[4, 4] == 2 and b[1, 5] == 2 and (b != 255).sum() == 2
    assert s["points"] == 4 and s["null_answers"] == 2 and s["images"] == 2
    assert (out / "classes.txt").read_text().split() == CLASSES
    assert json.loads((out / "ingest.json").read_text())["points"] == 4


def test_ingest_merges_pseudo_labels_oracle_wins(world):
    answers = world["root"] / "answers.json"
    answer_queries(world["queries"], world["gt"], answers)
    pseudo = world["root"] / "pseudo"
    write_label(pseudo / "a.png", np.full((H, W), 1, np.uint8))  # everything "car"
    write_label(pseudo / "sub" / "b.png", np.full((H + 2, W), 0, np.uint8))  # wrong size: skipped
    only = np.full((H, W), 255, np.uint8)
    only[1, 1] = 0
    only[2, 2] = 9  # out of range: dropped and counted
    write_label(pseudo / "e.png", only)  # an image with pseudo labels but no answers
    out = world["root"] / "sparse"
    s = ingest_answers(answers, out, pseudo_dir=pseudo)
    label, origin = read_label(out / "labels" / "a.png"), read_label(out / "origin" / "a.png")
    gt = world["gt_a"]
    assert label[2, 3] == gt[2, 3] and origin[2, 3] == 1  # oracle wins over the pseudo "car"
    assert label[0, 0] == 255 and origin[0, 0] == 0  # a null answer clears the pseudo label
    assert label[3, 3] == 1 and origin[3, 3] == 2  # pseudo elsewhere
    assert (origin == 2).sum() == H * W - 4
    b_origin = read_label(out / "origin" / "sub" / "b.png")
    assert set(np.unique(b_origin).tolist()) == {0, 1}  # its pseudo label was skipped
    e = read_label(out / "labels" / "e.png")
    assert e[1, 1] == 0 and e[2, 2] == 255 and (e != 255).sum() == 1
    assert s["pseudo_only_images"] == 1 and s["skipped_pseudo"]["pseudo_size"] == 1
    assert s["skipped_pseudo"]["pseudo_out_of_range"] == 1
    assert any("sub/b" in x["image"] and "pseudo label" in x["reason"] for x in s["skipped"])


def test_ingest_skips_unknown_images_classes_and_out_of_bounds(world):
    doc = {
        "format": "atool.answers/v1", "classes": CLASSES,
        "images": [
            {"image": "a.png", "width": W, "height": H, "answers": [
                {"id": "1", "x": 1, "y": 1, "label": "car"},
                {"id": "2", "x": 2, "y": 1, "label": "tree"},  # not a class
                {"id": "3", "x": W, "y": 0, "label": "car"},  # out of bounds
            ]},
            {"image": "ghost.png", "width": W, "height": H, "answers": [{"id": "4", "x": 0, "y": 0, "label": "car"}]},
            {"image": "../escape.png", "width": W, "height": H, "answers": [{"id": "5", "x": 0, "y": 0, "label": "car"}]},
        ],
    }
    answers = world["root"] / "answers.json"
    answers.write_text(json.dumps(doc))
    out = world["root"] / "sparse"
    r = CliRunner().invoke(ingest_command, [str(answers), "--images", str(world["images"]), "--out", str(out)])
    assert r.exit_code == 0, r.output
    s = json.loads((out / "ingest.json").read_text())
    assert s["points"] == 1
    assert s["skipped_points"]["unknown_class"] == 1
    assert s["skipped_points"]["out_of_bounds"] == 1
    assert s["skipped_points"]["unknown_image"] == 2
    assert {x["image"] for x in s["skipped"]} >= {"a.png", "ghost.png", "../escape.png"}
    assert not (world["root"] / "escape.png").exists() and not (out / "labels" / "ghost.png").exists()
    # with --classes narrower than the answers' list, "sky" answers become unknown classes
    narrow = world["root"] / "narrow.txt"
    narrow.write_text("car\nroad\n")
    s2 = ingest_answers(answers, world["root"] / "s2", classes=narrow)
    assert read_label(world["root"] / "s2" / "labels" / "a.png")[1, 1] == 0  # "car" is index 0 in the given list


def labelstudio_export(world) -> list[dict]:
    """Tasks as our labelstudio format writes them, annotated the way Label Studio exports them."""
    tasks = to_tasks(world["qlist"], "/data/local-files/?d=")
    for task in tasks:
        rel = task["data"]["atool_image"]
        w, h = W, H

        def kp(x: float, y: float, name: str, rid: str) -> dict:
            return {"id": rid, "type": "keypointlabels", "from_name": "kp", "to_name": "image", "original_width": w, "original_height": h,
                    "value": {"x": x, "y": y, "width": 0.5, "keypointlabels": [name]}}

        if rel == "a.png":
            task["annotations"] = [
                {"id": 1, "updated_at": "2024-01-01T10:00:00Z", "was_cancelled": False, "result": [kp(99.0, 99.0, "sky", "old")]},
                {"id": 2, "updated_at": "2024-01-02T10:00:00Z", "was_cancelled": False, "result": [
                    kp((3 + 0.5) / W * 100, (2 + 0.5) / H * 100, "car", "q000003"),  # pixel centre -> (3, 2)
                    kp(100.0, 100.0, "road", "edge"),  # exactly 100 % -> clamped to the last pixel
                    kp(50.0, 50.0, "tree", "bad-class"),
                    kp(120.0, 10.0, "car", "oob"),
                ]},
                {"id": 3, "updated_at": "2024-01-03T10:00:00Z", "was_cancelled": True, "result": [kp(10.0, 10.0, "road", "cancelled")]},
            ]
        elif rel == "sub/b.jpg":
            del task["data"]["atool_image"]  # an export of tasks made elsewhere: path from the URL only
            task["annotations"] = [{"id": 4, "result": [kp(5.0, 5.0, "sky", "b1")]}]
        elif rel == "c.png":
            task["annotations"] = []
        else:
            task["data"]["atool_image"] = "missing.png"
            task["annotations"] = [{"id": 5, "result": [kp(5.0, 5.0, "road", "m1")]}]
    return tasks


def test_ingest_labelstudio_export(world):
    export = world["root"] / "export.json"
    export.write_text(json.dumps(labelstudio_export(world)))
    out = world["root"] / "sparse"
    r = CliRunner().invoke(ingest_command, [str(export), "--classes", str(world["classes"]), "--images", str(world["images"]), "--out", str(out)])
    assert r.exit_code == 0, r.output
    s = json.loads((out / "ingest.json").read_text())
    assert s["source_format"] == "labelstudio"
    a = read_label(out / "labels" / "a.png")
    assert a[2, 3] == 1 and a[H - 1, W - 1] == 0 and (a != 255).sum() == 2  # latest live annotation only
    b = read_label(out / "labels" / "sub" / "b.png")
    assert b[0, 0] == 2 and (b != 255).sum() == 1
    assert s["skipped_points"]["unknown_class"] == 1 and s["skipped_points"]["out_of_bounds"] == 1
    assert s["skipped_points"]["unknown_image"] == 1
    assert s["points"] == 3


def test_ingest_bad_input_one_line(world):
    bad = world["root"] / "bad.json"
    bad.write_text('{"format": "atool.answers/v1", ')
    out = str(world["root"] / "o")
    assert "not valid JSON" in one_line_exit_2(CliRunner().invoke(ingest_command, [str(bad), "--out", out]))
    bad.write_text("42")
    assert "atool.answers/v1 (from `atool oracle`)" in one_line_exit_2(CliRunner().invoke(ingest_command, [str(bad), "--out", out]))
    bad.write_text('{"format": "something"}')
    one_line_exit_2(CliRunner().invoke(ingest_command, [str(bad), "--out", out]))
    bad.write_text('{"format": "atool.answers/v1", "classes": [], "images": []}')
    assert "schema" in one_line_exit_2(CliRunner().invoke(ingest_command, [str(bad), "--out", out]))
    bad.write_text("[]")
    assert "--classes" in one_line_exit_2(CliRunner().invoke(ingest_command, [str(bad), "--out", out]))
    one_line_exit_2(CliRunner().invoke(ingest_command, [str(world["root"] / "nope.json"), "--out", out]))
    one_line_exit_2(CliRunner().invoke(ingest_command, [str(bad)]))  # --out missing
    one_line_exit_2(CliRunner().invoke(ingest_command, [str(bad), "--classes", str(world["root"] / "none.txt"), "--out", out]))


def test_query_oracle_ingest_round_trip(world, tmp_path, one_torch_thread):
    """Through the real pipeline: random-init model, oracle from GT, ingest with pseudo labels."""

    from atool.workflows.query import QueryConfig, query_to_file
    from atool.models import build_model
    from atool.core.checkpoint import save_checkpoint

    model = tmp_path / "m.pt"
    save_checkpoint(model, model=build_model("lraspp_mobilenet_v3_small", num_classes=3), model_name="lraspp_mobilenet_v3_small",
                    model_args={}, classes=CLASSES, step=0)
    images = tmp_path / "imgs"
    gt = tmp_path / "gt"
    rng = np.random.default_rng(0)
    for i in range(3):
        write_image(images / f"{i}.png", rng.integers(0, 256, (32, 64, 3), dtype=np.uint8))
        write_label(gt / f"{i}.png", rng.integers(0, 3, (32, 64), dtype=np.uint8))
    qpath = tmp_path / "q.json"
    query_to_file(model, images, QueryConfig(budget=12, pseudo_out=str(tmp_path / "pseudo"), workers=0), qpath)
    answer_queries(qpath, gt, tmp_path / "a.json")
    s = ingest_answers(tmp_path / "a.json", tmp_path / "sparse", pseudo_dir=tmp_path / "pseudo", images_root=images)
    assert s["points"] == 12 and s["images"] == 3 and s["skipped_total"] == 0
    q = json.loads(qpath.read_text())
    for e in q["images"]:
        label = read_label(tmp_path / "sparse" / "labels" / e["image"])
        truth = read_label(gt / e["image"])
        for p in e["queries"]:
            assert label[p["y"], p["x"]] == truth[p["y"], p["x"]]


def test_oracle_cli_format_labelstudio_then_ingest(world):
    """`atool oracle --format labelstudio` writes what Label Studio would export; ingest reads it like the atool answers."""
    root = world["root"]
    r = CliRunner().invoke(oracle_command, ["--queries", str(world["queries"]), "--labels", str(world["gt"]), "--format", "labelstudio",
                                            "--out", str(root / "ls.json")])
    assert r.exit_code == 0, r.output
    tasks = json.loads((root / "ls.json").read_text())
    assert isinstance(tasks, list) and {t["data"]["atool_image"] for t in tasks if t["annotations"]} == {"a.png", "sub/b.jpg"}
    r = CliRunner().invoke(ingest_command, [str(root / "ls.json"), "--classes", str(world["classes"]), "--out", str(root / "from_ls")])
    assert r.exit_code == 0, r.output
    answer_queries(world["queries"], world["gt"], root / "answers.json")
    ingest_answers(root / "answers.json", root / "from_json")
    for stem in ("a.png", "sub/b.png"):
        assert np.array_equal(read_label(root / "from_ls" / "labels" / stem), read_label(root / "from_json" / "labels" / stem))
    assert json.loads((root / "from_ls" / "ingest.json").read_text())["source_format"] == "labelstudio"
    line = one_line_exit_2(CliRunner().invoke(oracle_command, ["--queries", str(world["queries"]), "--labels", str(world["gt"]), "--format", "nosuchtool"]))
    assert "valid:" in line and "labelstudio" in line
