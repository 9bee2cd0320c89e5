"""The simulated annotator: answer a query list from ground-truth labels.

This is the papers' protocol (every clicked point gets its true class) and
what experiments use in place of people. The label of image ``a/b.jpg`` is
read from ``LABELS/a/b.png``; the answer at a point is the class at (y, x),
or null where the ground truth says 255 (ignore). An image whose label is
missing or of another size than the query list says is skipped and reported,
so one bad file does not lose a round of answers.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from atool.data.folder import IGNORE
from atool.data.images import BadImage, read_label
from atool.deploy.formats.atool_json import dumps
from atool.deploy.jsonfile import read_json
from atool.errors import BadInput
from atool.io_utils import atomic_write_text, sha256_file
from atool.schemas import validate

log = logging.getLogger(__name__)

ANSWERS_FORMAT = "atool.answers/v1"


def load_query_list(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate an ``atool.query/v1`` file; any problem is a one-line BadInput."""
    obj = read_json(path, "query list")
    if not isinstance(obj, dict) or obj.get("format") != "atool.query/v1":
        got = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise BadInput(f"{path} is not an atool.query/v1 file (format: {got!r}); make one with `atool query`")
    validate(obj, "query-list", f"query list {path}")
    return obj


def answer_queries(queries_path: str | os.PathLike, labels_dir: str | os.PathLike, out: str | os.PathLike) -> dict[str, Any]:
    """Answer every point query of ``queries_path`` from ``labels_dir`` and write ``out``.

    Returns a summary: images answered, points, null answers, out-of-range
    label values, out-of-bounds points, region queries left unanswered, and
    the skipped images with reasons.
    """
    qlist = load_query_list(queries_path)
    labels_dir = Path(labels_dir)
    if not labels_dir.is_dir():
        raise BadInput(f"label folder {labels_dir} does not exist")
    classes: list[str] = qlist["classes"]
    counts = {"points": 0, "null": 0, "out_of_range": 0, "out_of_bounds": 0, "regions": 0}
    skipped: list[dict[str, str]] = []
    images_out = []
    for item in qlist["images"]:
        rel = item["image"]
        label_file = labels_dir / Path(rel).with_suffix(".png")
        try:
            label = read_label(label_file)
        except BadImage as exc:
            reason = "no ground-truth label" if not label_file.exists() else str(exc)
            skipped.append({"image": rel, "reason": f"{reason} ({label_file})"})
            continue
        h, w = label.shape
        if (w, h) != (item["width"], item["height"]):
            skipped.append({"image": rel, "reason": f"label {label_file} is {w}x{h} but the query list says {item['width']}x{item['height']}"})
            continue
        answers = []
        for q in item["queries"]:
            if q["kind"] != "point":
                counts["regions"] += 1
                continue
            x, y = q["x"], q["y"]
            name = None
            if x >= w or y >= h:
                counts["out_of_bounds"] += 1
            else:
                value = int(label[y, x])
                if value != IGNORE and value < len(classes):
                    name = classes[value]
                elif value != IGNORE:
                    counts["out_of_range"] += 1
            counts["points"] += 1
            counts["null"] += name is None
            answers.append({"id": q["id"], "x": x, "y": y, "label": name})
        images_out.append({"image": rel, "width": w, "height": h, "answers": answers})

    doc = {"format": ANSWERS_FORMAT, "query_list_sha256": sha256_file(queries_path), "classes": classes, "images": images_out}
    validate(doc, "answers", "the answers atool built")
    atomic_write_text(out, dumps(doc))
    if skipped:
        log.warning("oracle: skipped %d image(s): %s", len(skipped), "; ".join(f"{s['image']}: {s['reason']}" for s in skipped[:3]))
    for key, what in (("out_of_range", "label values outside the class list"), ("out_of_bounds", "points outside the label"), ("regions", "region queries (not answered)")):
        if counts[key]:
            log.warning("oracle: %d %s", counts[key], what)
    summary = {"out": str(out), "images": len(images_out), "skipped_images": len(skipped), "skipped": skipped, **counts}
    log.info("oracle: answered %d points on %d images (%d null), skipped %d images -> %s", counts["points"], len(images_out), counts["null"], len(skipped), out)
    return summary
