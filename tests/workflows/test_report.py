"""``atool report``: a query list, a loop folder and a curve folder, each to one offline HTML page."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from atool.core.schemas import validate
from atool.data.images import list_images, read_image
from atool.data.synth import SYNTH_CLASSES
from atool.ops import rle
from conftest import assert_one_line_error, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")
XSS = "<script>alert(1)</script>"
CLASSES = [XSS if c == "person" else c for c in SYNTH_CLASSES]


def make_query_list(images: Path, model: Path, n_images: int = 3, strategy: str = "random") -> dict:
    """A valid query list over the first ``n_images`` images: 3 points each, and one region on the first."""
    rng = np.random.default_rng(0)
    entries, k = [], 0
    for i, path in enumerate(list_images(images)[:n_images]):
        h, w = read_image(path).shape[:2]
        queries = []
        for j, cell in enumerate(rng.choice(h * w, 3, replace=False).tolist()):
            y, x = divmod(cell, w)
            k += 1
            queries.append({"id": f"q{k}", "kind": "point", "x": x, "y": y, "score": 1.0 - k / 50, "predicted": CLASSES[(k * 3) % len(CLASSES)]})
        if i == 0:
            mask = np.zeros((h, w), bool)
            mask[h // 4 : h // 2, w // 4 : w // 2] = True
            k += 1
            queries.append({"id": f"q{k}", "kind": "region", "x": w // 4, "y": h // 4, "score": 0.5, "predicted": XSS, "mask": rle.encode(mask)})
        entries.append({"image": path.relative_to(images).as_posix(), "width": w, "height": h, "score": queries[0]["score"], "queries": queries})
    qlist = {
        "format": "atool.query/v1", "atool_version": "0.1.0", "created": "2024-01-01T00:00:00+00:00",
        "model": {"path": str(model), "sha256": "0" * 64, "backend": "torch"}, "classes": CLASSES,
        "strategy": {"name": strategy, "params": {}, "seed": 0}, "budget": {"points": k, "scope": "total", "used": k},
        "images": entries, "skipped": [],
    }
    validate(qlist, "query-list", "test list")
    return qlist


def build_runs(root: Path, synth_pair: Path, model: Path) -> dict[str, Path]:
    """A query list file, a loop folder and a curve folder, in the layouts atool writes them."""
    images = synth_pair / "target_train" / "images"
    qlist = make_query_list(images, model)
    (root / "q.json").write_text(json.dumps(qlist))
    loop = root / "loop"
    stages = []
    for s in (1, 2):
        (loop / f"stage_{s}").mkdir(parents=True)
        (loop / f"stage_{s}" / "queries.json").write_text(json.dumps(qlist))
        stages.append({"stage": s, "strategy": XSS, "queries": qlist["budget"]["used"], "miou": 20.0 + 5 * s, "model": str(model)})
    (loop / "loop.json").write_text(json.dumps({"config": {}, "seed": 0, "start": {"stage": 0, "model": str(model), "miou": 18.0},
                                                "stages": stages, "final_model": str(model)}))
    curve = root / "curve"
    iou = {c: float(10 * i % 90) for i, c in enumerate(CLASSES)}
    shares = {c: 100.0 / len(CLASSES) for c in CLASSES}
    budgets = {str(b): {"mean": 20.0 + b, "std": 0.5, "n": 2, "values": [19.5 + b, 20.5 + b], "iou": iou, "clicks_by_class_pct": shares}
               for b in (2, 4)}
    for strat in ("random", XSS):
        arm = curve / "arms" / strat / "b2_s0" / "stage_1"
        arm.mkdir(parents=True)
        (arm / "queries.json").write_text(json.dumps(make_query_list(images, model, strategy=strat)))
    (curve / "curve.json").write_text(json.dumps({
        "format": "atool.curve/v1", "classes": CLASSES, "config": {"strategies": ["random", XSS], "budgets": [2, 4], "seeds": [0, 1]},
        "start": {"model": str(model), "miou": 15.0}, "lower": {"model": str(model), "miou": 12.0},
        "full_labels": {"mean": 40.0, "std": 1.0, "n": 2, "values": [39.0, 41.0]}, "report_budget": 2, "pool_class_pct": shares,
        "strategies": {s: {"budgets": budgets, "auc": 22.0, "clicks_to_90": None} for s in ("random", XSS)},
    }))
    (curve / "curve_config.json").write_text(json.dumps({"recipe": {}, "inputs": {"pool": str(synth_pair / "target_train")}}))
    return {"query": root / "q.json", "loop": loop, "curve": curve, "images": images}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, synth_pair, tiny_checkpoint) -> dict[str, Path]:
    return build_runs(tmp_path_factory.mktemp("runs"), synth_pair, tiny_checkpoint)


def check_page(page: str) -> list[np.ndarray]:
    """The page is offline and escaped; returns its decoded images."""
    assert XSS not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page.lower() and not re.search(r"(src|href)=\"(?!data:)", page)
    assert "http://" not in page and "https://" not in page
    pictures = [cv2.imdecode(np.frombuffer(base64.b64decode(b), np.uint8), cv2.IMREAD_COLOR)
                for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]
    assert pictures and all(p is not None and p.std() > 5 for p in pictures)
    return pictures


def test_report_of_a_query_list(runs, tmp_path):
    out = tmp_path / "r.html"
    r = run_cli("report", runs["query"], "--out", out, "--images", runs["images"], "--thumbnails", "2", "--sample", "2")
    assert r.exit_code == 0, r.output
    page = out.read_text()
    assert len(check_page(page)) == 2 + 1  # two thumbnails, the class-share figure
    assert "a query list carries no scores" in page


def test_report_of_a_loop_run(runs, tmp_path):
    out = tmp_path / "r.html"
    r = run_cli("report", runs["loop"], "--out", out, "--images", runs["images"], "--thumbnails", "1")
    assert r.exit_code == 0, r.output
    page = out.read_text()
    assert len(check_page(page)) == 1 + 1 + 1  # thumbnail, class shares, mIoU vs clicks
    assert "mIoU against clicks and stages" in page and "no per-class IoU" in page and "note: loop.json carries no per-class IoU" in r.output


def test_report_without_images_says_why(runs, tmp_path):
    out = tmp_path / "r.html"
    r = run_cli("report", runs["query"], "--out", out)
    assert r.exit_code == 0, r.output
    assert "pass --images DIR" in out.read_text() and len(check_page(out.read_text())) == 1


@pytest.mark.parametrize("what", ["missing", "empty_dir", "not_a_list"])
def test_report_bad_input_is_one_line(tmp_path, what):
    run = {"missing": tmp_path / "nope", "empty_dir": tmp_path, "not_a_list": tmp_path / "x.json"}[what]
    (tmp_path / "x.json").write_text('{"format": "something"}')
    out = tmp_path / "out" / "r.html"
    assert_one_line_error(run_cli("report", run, "--out", out), 2)
    assert not out.exists()
