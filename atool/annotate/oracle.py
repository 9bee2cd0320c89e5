"""The simulated annotator: answer a query list from ground-truth labels.

This is the papers' protocol (every clicked point gets its true class) and
what experiments use in place of people. The label of image ``a/b.jpg`` is
read from ``LABELS/a/b.png``; the answer at a point is the class at (y, x),
or null where the ground truth says 255 (ignore). An image whose label is
missing or of another size than the query list says is skipped and reported,
so one bad file does not lose a round of answers.

Region queries (``kind: "region"``, from ``inconsistency_spl``) carry a COCO
RLE ``mask``. LabOR's SPL has every pixel of the region labeled exactly, so
by default (``regions="exact"``) the oracle paints the region: one answer per
class present in it, each with the ``mask`` of the region's pixels of that
class and a point inside them (the query's own point for the class under
it), plus one null answer for its ignore (255) pixels. Several answers then
share the query's id; each still has one label, as the answers contract
says. ``regions="majority"`` instead answers a region with one label, the
majority class of its labeled pixels, and the query's whole mask: what an
annotator who names one class per region gives, and what the contract's
one-answer-per-query reading expects.

The answers are built as ``atool.answers/v1`` and written through a
query-list format's ``write_answers`` (``fmt``, default ``json``): with
``fmt="labelstudio"`` the oracle's answers come out as Label Studio's export
would, which ``atool ingest`` reads like a real one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from atool.data.adapters.folder import IGNORE
from atool.data.images import BadImage, read_label
from atool.ops import rle
from atool.annotate.answers import ANSWERS_FORMAT
from atool.annotate.formats import FORMATS, write_answers
from atool.annotate.paths import answer_image_path
from atool.core.errors import BadInput
from atool.core.io import read_json, sha256_file
from atool.core.schemas import validate

log = logging.getLogger(__name__)


def load_query_list(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate an ``atool.query/v1`` file; any problem is a one-line BadInput."""
    obj = read_json(path, "query list")
    if not isinstance(obj, dict) or obj.get("format") != "atool.query/v1":
        got = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise BadInput(f"{path} is not an atool.query/v1 file (format: {got!r}); make one with `atool query`")
    validate(obj, "query-list", f"query list {path}")
    return obj


REGION_MODES = ("exact", "majority")


def _region_answers(q: dict[str, Any], label: np.ndarray, classes: list[str], mode: str, counts: dict[str, int]) -> list[dict[str, Any]]:
    """Answers of one region query (see the module doc); [] when its mask is unusable."""
    raw = q.get("mask")
    # The size first: decoding a hostile mask of any declared size would allocate it.
    if not isinstance(raw, dict) or raw.get("size") != [label.shape[0], label.shape[1]]:
        counts["bad_regions"] += 1
        return []
    try:
        mask = rle.decode(raw)
    except BadInput:
        counts["bad_regions"] += 1
        return []
    if mask.shape != label.shape:
        counts["bad_regions"] += 1
        return []
    counts["regions"] += 1
    values = label[mask]
    if values.size == 0:
        return []
    n = len(classes)
    out_of_range = (values != IGNORE) & (values >= n)
    counts["out_of_range"] += int(out_of_range.sum())
    counts["region_pixels"] += int(((values != IGNORE) & ~out_of_range).sum())
    if mode == "majority":
        valid = values[(values != IGNORE) & ~out_of_range]
        name = classes[int(np.bincount(valid, minlength=n).argmax())] if valid.size else None
        counts["null"] += name is None
        return [{"id": q["id"], "x": q["x"], "y": q["y"], "label": name, "mask": q["mask"]}]
    answers = []
    qx, qy = q["x"], q["y"]
    h, w = label.shape
    under = int(label[qy, qx]) if qy < h and qx < w and mask[qy, qx] else None
    # Pixels with an out-of-range value are answered null, like the ignore pixels.
    painted = np.where(label >= n, IGNORE, label)
    for value in np.unique(np.where(values >= n, IGNORE, values)).tolist():
        part = mask & (painted == value)
        if under is not None and (under if under < n else IGNORE) == value:
            x, y = qx, qy
        else:
            flat = int(np.flatnonzero(part)[0])
            y, x = divmod(flat, w)
        name = classes[value] if value != IGNORE else None
        counts["null"] += name is None
        answers.append({"id": q["id"], "x": int(x), "y": int(y), "label": name, "mask": rle.encode(part)})
    counts["region_answers"] += len(answers)
    return answers


def answer_queries(
    queries_path: str | os.PathLike, labels_dir: str | os.PathLike, out: str | os.PathLike, *, regions: str = "exact", fmt: str = "json"
) -> dict[str, Any]:
    """Answer every query of ``queries_path`` from ``labels_dir`` and write ``out``.

    ``regions`` is how region queries are answered: ``exact`` (per-pixel
    truth, several answers per region) or ``majority`` (one label per region);
    see the module doc. ``fmt`` is the query-list format whose answer export
    is written (``json``: atool.answers/v1). Returns a summary: the paths
    written (``files``), images answered, points, null answers, out-of-range
    label values, out-of-bounds points, region queries answered
    (``regions``), the answers and labeled pixels they gave
    (``region_answers``, ``region_pixels``), region queries whose mask could
    not be used (``bad_regions``), and the skipped images with reasons.
    """
    if regions not in REGION_MODES:
        raise BadInput(f"regions must be one of {', '.join(REGION_MODES)}, got {regions!r}")
    FORMATS.get(fmt)  # an unknown format fails before any work
    qlist = load_query_list(queries_path)
    labels_dir = Path(labels_dir)
    if not labels_dir.is_dir():
        raise BadInput(f"label folder {labels_dir} does not exist")
    classes: list[str] = qlist["classes"]
    counts = {"points": 0, "null": 0, "out_of_range": 0, "out_of_bounds": 0, "regions": 0, "region_answers": 0, "region_pixels": 0, "bad_regions": 0}
    skipped: list[dict[str, str]] = []
    images_out = []
    for item in qlist["images"]:
        rel = item["image"]
        if answer_image_path(rel, None)[0] is None:  # absolute, '..', empty: never joined to the label folder
            skipped.append({"image": str(rel), "reason": answer_image_path(rel, None)[1]})
            continue
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
            if q["kind"] == "region":
                answers.extend(_region_answers(q, label, classes, regions, counts))
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
    files = write_answers(doc, qlist, out, fmt)  # validates the answers against the schema first
    if skipped:
        log.warning("oracle: skipped %d image(s): %s", len(skipped), "; ".join(f"{s['image']}: {s['reason']}" for s in skipped[:3]))
    for key, what in (("out_of_range", "label values outside the class list"), ("out_of_bounds", "points outside the label"), ("bad_regions", "region queries with an unusable mask (not answered)")):
        if counts[key]:
            log.warning("oracle: %d %s", counts[key], what)
    summary = {
        "out": str(out), "format": fmt, "files": [str(p) for p in files], "images": len(images_out), "skipped_images": len(skipped),
        "skipped": skipped, **counts,
    }
    log.info(
        "oracle: answered %d points and %d regions (%d labeled pixels) on %d images (%d null), skipped %d images -> %s",
        counts["points"], counts["regions"], counts["region_pixels"], len(images_out), counts["null"], len(skipped), out,
    )
    return summary
