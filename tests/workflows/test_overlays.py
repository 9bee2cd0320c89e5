"""Overlay pictures: ``atool query --overlays DIR`` and the drawing itself."""

from __future__ import annotations

import json

import numpy as np
import pytest

from atool.data.images import list_images, read_image
from atool.ops import rle
from atool.workflows.overlays import REGION_ALPHA, class_colours, draw_overlay, score_colours
from conftest import run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CLASSES = ["road", "car", "<b>odd</b>"]


def test_draw_overlay_panels_regions_points_and_labels():
    h, w = 20, 30
    image = np.full((h, w, 3), 100, np.uint8)
    labels = np.zeros((h, w), np.int64)
    labels[:, 15:] = 1
    mask = np.zeros((h, w), bool)
    mask[2:8, 2:10] = True
    item = {"image": "a.png", "width": w, "height": h, "score": 1.0, "queries": [
        {"id": "r", "kind": "region", "x": 3, "y": 3, "score": 0.2, "predicted": "car", "mask": rle.encode(mask)},
        {"id": "p", "kind": "point", "x": 25, "y": 15, "score": 0.9, "predicted": "road"},
    ]}
    pic = draw_overlay(image, labels, item, CLASSES, (0.2, 0.9), min_width=60)
    s = 2  # 60 / 30
    assert pic.dtype == np.uint8 and pic.shape[1] == 2 * w * s + 4 and pic.shape[0] > h * s
    palette = class_colours(CLASSES)
    right = pic[: h * s, w * s + 4 :]
    assert (right[:, : 15 * s] == palette[0]).all() and (right[:, 15 * s :] == palette[1]).all()
    blended = np.round((1 - REGION_ALPHA) * 100 + REGION_ALPHA * palette[1].astype(float))
    assert np.abs(pic[7 * s, 8 * s].astype(float) - blended).max() <= 1  # inside the region, away from its outline and point
    assert (pic[15 * s, 2 * s] == 100).all()  # outside: the image itself
    top_score = score_colours(np.array([0.9]), 0.2, 0.9)[0]
    assert (pic[int(15.5 * s), int(25.5 * s)] == top_score).all()  # the point, coloured by its score


def test_query_cli_writes_one_overlay_per_image(synth_pair, tiny_checkpoint, tmp_path):
    images = synth_pair / "target_train" / "images"
    out = tmp_path / "overlays"
    r = run_cli("query", "--model", tiny_checkpoint, "--images", images, "--strategy", "random", "--budget", "3", "--per-image",
                "--out", tmp_path / "q.json", "--overlays", out)
    assert r.exit_code == 0, r.output
    qlist = json.loads((tmp_path / "q.json").read_text())
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == sorted(item["image"].rsplit(".", 1)[0] + ".png" for item in qlist["images"]) and len(written) == len(list_images(images))
    first = qlist["images"][0]
    pic = read_image(out / (first["image"].rsplit(".", 1)[0] + ".png"))
    assert pic.shape[1] >= 2 * first["width"] and pic.std() > 10
