"""The annotator of the integration suite: labels every task of a project through label-studio-sdk.

Run with .venv-labelstudio's python (the SDK is installed there with the
server, not in atool's environment):

    python annotator.py URL TOKEN PROJECT LABELS_DIR CLASSES_TXT OUT_DIR

For every task it reads the ground truth ``LABELS_DIR/<atool_image stem>.png``
and answers each prediction result as a careful person would: a keypoint gets
the true class at its pixel; a brush region (decoded with the SDK's own brush
decoder) is repainted with the SDK's encoder, one brush result per true class
inside it (ignore pixels left unpainted). The first task first gets a wrong
annotation (everything the first class) and then the right one, so pull must
keep the newest. The region masks the SDK decoded from atool's predictions
are saved to OUT_DIR/pred_masks.npz (key: query id) for the suite to compare
with the query list's masks.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
from label_studio_sdk import LabelStudio
from label_studio_sdk.converter import brush
from PIL import Image

IGNORE = 255


def answer(result: dict, truth: np.ndarray, classes: list[str], pred_masks: dict) -> list[dict]:
    h, w = truth.shape
    base = {k: result[k] for k in ("type", "from_name", "to_name", "original_width", "original_height", "image_rotation")}
    value = result["value"]
    if result["type"] == "keypointlabels":
        x = min(math.floor(value["x"] / 100 * w), w - 1)
        y = min(math.floor(value["y"] / 100 * h), h - 1)
        v = int(truth[y, x])
        names = [] if v == IGNORE else [classes[v]]
        return [{**base, "id": result["id"], "value": {"x": value["x"], "y": value["y"], "width": value["width"], "keypointlabels": names}}]
    region = brush.decode_rle(value["rle"]).reshape(h, w, 4)[:, :, 3] > 0
    pred_masks[result["id"]] = region
    out = []
    for n, v in enumerate(sorted(set(truth[region].tolist()) - {IGNORE})):
        part = (region & (truth == v)).astype(np.uint8) * 255
        rid = result["id"] if n == 0 else f"{result['id']}-{v}"
        out.append({**base, "id": rid, "value": {"format": "rle", "rle": brush.mask2rle(part), "brushlabels": [classes[v]]}})
    return out


def main(url: str, token: str, title: str, labels_dir: str, classes_txt: str, out_dir: str) -> None:
    classes = Path(classes_txt).read_text().split("\n")
    classes = [c for c in classes if c]
    ls = LabelStudio(base_url=url, api_key=token)
    (project,) = [p for p in ls.projects.list() if p.title == title]
    pred_masks: dict[str, np.ndarray] = {}
    done = 0
    for n, task in enumerate(sorted(ls.tasks.list(project=project.id, fields="all"), key=lambda t: t.id)):
        rel = task.data["atool_image"]
        truth = np.asarray(Image.open(Path(labels_dir) / Path(rel).with_suffix(".png")))
        results = []
        for pred in task.predictions:
            pred = pred if isinstance(pred, dict) else pred.dict()
            for r in pred["result"]:
                results.extend(answer(r, truth, classes, pred_masks))
        if n == 0:  # a first, wrong answer that a later one replaces
            wrong = json.loads(json.dumps(results))
            for r in wrong:
                key = "keypointlabels" if r["type"] == "keypointlabels" else "brushlabels"
                r["value"][key] = [classes[0]]
            ls.annotations.create(id=task.id, result=wrong, was_cancelled=False)
        ls.annotations.create(id=task.id, result=results, was_cancelled=False)
        done += 1
    np.savez(Path(out_dir) / "pred_masks.npz", **pred_masks)
    print(json.dumps({"annotated": done, "regions": len(pred_masks)}))


if __name__ == "__main__":
    main(*sys.argv[1:7])
