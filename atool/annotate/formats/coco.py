"""``coco``: queries as a COCO annotations file, and a COCO file read back as answers.

One COCO ``images`` entry per query-list image (``file_name`` is its relative
path, ids from 1) and one ``categories`` entry per class (ids from 1, in
class order, each declaring one keypoint named "point"), plus the category
``UNSURE_LABEL`` for "cannot tell" (a null answer).

- A point query is one annotation with ONE keypoint: ``keypoints`` [x, y, 2]
  (pixel column and row, visible), ``num_keypoints`` 1, a 1x1 ``bbox`` at the
  pixel, and ``category_id`` the model's predicted class (UNSURE_LABEL's when
  it has none). Reading takes each keypoint with visibility > 0 as one point
  answer at floor(x), floor(y); a COCO tool that grouped several keypoints in
  one annotation gives several answers.
- A region query is one annotation whose ``segmentation`` is COCO's
  compressed RLE of the whole image (``size`` [h, w]; ``iscrowd`` 0 as in
  COCO-Stuff), with its ``bbox`` and ``area``, and ``atool_point`` [x, y] the
  query's point. Reading also takes uncompressed RLE and polygons; a region
  answer's point is its ``atool_point`` when that lies in the mask, else the
  mask's first pixel in row-major order.
- ``atool_id`` (the query id) and ``score`` ride along on each annotation;
  an annotation without ``atool_id`` gets the id ``coco:<annotation id>``.

A ``category_id`` that ``categories`` does not list, a segmentation whose
size is not its image's, and (at ingest, with ``--images``) image sizes that
disagree with the image files are one-line errors; other malformed entries
are skipped and counted. Images without annotations are left out.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from atool.annotate.answers import Answer, AnswerSet, ImageRecord, SkipReport, is_int, is_num, size_problem
from atool.annotate.formats import FORMATS, QueryFormat
from atool.annotate.formats._shared import MAX_PIXELS, UNSURE_LABEL, check_sizes
from atool.annotate.formats.atool_json import dumps
from atool.core.errors import BadInput
from atool.core.io import atomic_write_text
from atool.ops import rle


def _bbox(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return [0, 0, 0, 0]
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def _document(classes: list[str], entries: list[dict[str, Any]], description: str, shapes: Any) -> dict[str, Any]:
    """A COCO dict; ``shapes(item)`` yields (kind, label, x, y, mask or None, extra) for each image entry."""
    if UNSURE_LABEL in classes:
        raise BadInput(f"class {UNSURE_LABEL!r} is the category the coco format keeps for 'cannot tell'; rename the class")
    names = [*classes, UNSURE_LABEL]
    cat = {name: i + 1 for i, name in enumerate(names)}
    images, annotations = [], []
    for n, item in enumerate(entries, start=1):
        images.append({"id": n, "file_name": item["image"], "width": item["width"], "height": item["height"]})
        for label, x, y, mask, extra in shapes(item):
            if (label or UNSURE_LABEL) not in cat:
                raise BadInput(f"{item['image']}: label {label!r} is not one of the classes ({', '.join(classes)})")
            ann: dict[str, Any] = {"id": len(annotations) + 1, "image_id": n, "category_id": cat[label or UNSURE_LABEL], "iscrowd": 0}
            if mask is None:
                ann.update(keypoints=[x, y, 2], num_keypoints=1, bbox=[x, y, 1, 1], area=1)
            else:
                ann.update(segmentation=mask, bbox=_bbox(rle.decode(mask)), area=rle.area(mask), atool_point=[x, y])
            annotations.append({**ann, **extra})
    categories = [{"id": cat[name], "name": name, "supercategory": "", "keypoints": ["point"], "skeleton": []} for name in names]
    return {
        "info": {"description": description, "version": "1.0"}, "licenses": [],
        "images": images, "annotations": annotations, "categories": categories,
    }


def to_coco(query_list: dict[str, Any]) -> dict[str, Any]:
    """The COCO dict of ``query_list``: its queries with the model's guesses."""
    def shapes(item: dict[str, Any]) -> Any:
        for q in item["queries"]:
            yield q.get("predicted"), q["x"], q["y"], q.get("mask") if q["kind"] == "region" else None, {"atool_id": q["id"], "score": q["score"]}

    return _document(query_list["classes"], query_list["images"], f"atool queries ({query_list.get('strategy', {}).get('name', '?')})", shapes)


# ------------------------------------------------------------------------ reading


def _categories(data: dict[str, Any], source: str) -> dict[Any, str]:
    cats = {}
    for c in data["categories"]:
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not is_int(c.get("id")):
            raise BadInput(f"{source}: every COCO category needs a whole-number id and a name, got {c!r}")
        cats[c["id"]] = c["name"]
    return cats


def _polygon_mask(polys: list[Any], w: int, h: int) -> np.ndarray:
    import cv2

    canvas = np.zeros((h, w), np.uint8)
    for poly in polys:
        if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2 or not all(is_num(v) for v in poly):
            raise BadInput("a polygon is a flat list of at least 3 x,y pairs")
        cv2.fillPoly(canvas, [np.round(np.asarray(poly, np.float64).reshape(-1, 2)).astype(np.int32)], 1)
    return canvas.astype(bool)


def _region(ann: dict[str, Any], qid: str, label: str | None, w: int, h: int, rel: str, source: str, report: SkipReport) -> Answer | None:
    seg = ann["segmentation"]
    try:
        if isinstance(seg, dict):
            if list(seg.get("size") or []) != [h, w]:
                raise _SizeError(f"{source}: annotation {ann.get('id')!r} of {rel} has a segmentation of size {seg.get('size')!r} "
                                 f"but its image is {w}x{h} (size [{h}, {w}]); the file is inconsistent, export it again")
            mask = rle.decode(seg)
        else:
            mask = _polygon_mask(seg, w, h)
    except _SizeError:
        raise
    except BadInput as exc:
        report.skip("malformed", rel, f"segmentation unusable: {exc}", id=qid)
        return None
    if not mask.any():
        report.skip("malformed", rel, "segmentation is empty", id=qid)
        return None
    point = ann.get("atool_point")
    x, y = point if isinstance(point, list) and len(point) == 2 and all(is_int(v) for v in point) else (-1, -1)
    if not (0 <= x < w and 0 <= y < h and mask[y, x]):
        y, x = divmod(int(np.flatnonzero(mask)[0]), w)
    return Answer(qid, int(x), int(y), label, rle.encode(mask))


class _SizeError(BadInput):
    """A segmentation whose size is not its image's: the whole file is suspect."""


def _points(ann: dict[str, Any], qid: str, label: str | None, w: int, h: int, rel: str, report: SkipReport) -> list[Answer]:
    kp = ann["keypoints"]
    if not isinstance(kp, list) or len(kp) % 3 or not all(is_num(v) for v in kp):
        report.skip("malformed", rel, "keypoints must be a flat list of x, y, v triples", id=qid)
        return []
    out = []
    for fx, fy, v in zip(kp[0::3], kp[1::3], kp[2::3]):
        if v <= 0:
            continue  # COCO's "not labeled"
        if not (0 <= fx < w and 0 <= fy < h):
            report.skip("out_of_bounds", rel, f"keypoint ({fx}, {fy}) lies outside {w}x{h}", id=qid)
            continue
        out.append(Answer(qid, int(math.floor(fx)), int(math.floor(fy)), label))
    return out


def _is_id(v: Any) -> bool:
    return is_int(v) or isinstance(v, str)


def read_coco(data: dict[str, Any], source: str) -> AnswerSet:
    """A COCO annotations dict as an AnswerSet whose classes are its categories (less UNSURE_LABEL), in id order."""
    cats = _categories(data, source)
    out = AnswerSet("coco", [cats[k] for k in sorted(cats) if cats[k] != UNSURE_LABEL])
    images: dict[Any, dict[str, Any]] = {}
    for im in data["images"]:
        if isinstance(im, dict) and _is_id(im.get("id")):
            images.setdefault(im["id"], im)
    by_image: dict[Any, list[Answer]] = {}
    for n, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            out.report.skip("malformed", None, f"annotation {n} is not an object")
            continue
        qid = ann.get("atool_id") if isinstance(ann.get("atool_id"), str) else f"coco:{ann.get('id', n)}"
        if not is_int(ann.get("category_id")) or ann["category_id"] not in cats:
            raise BadInput(f"{source}: annotation {ann.get('id')!r} has category_id {ann.get('category_id')!r}, which the file's "
                           f"categories ({', '.join(f'{k}={v}' for k, v in sorted(cats.items()))}) do not list")
        name = cats[ann["category_id"]]
        label = None if name == UNSURE_LABEL else name
        im = images.get(ann["image_id"]) if _is_id(ann.get("image_id")) else None
        if im is None:
            out.report.skip("unknown_image", None, f"annotation {ann.get('id')!r} refers to image_id {ann.get('image_id')!r}, not in images", id=qid)
            continue
        rel, w, h = im.get("file_name"), im.get("width"), im.get("height")
        problem = size_problem(w, h) or (f"image size {w}x{h} is beyond {MAX_PIXELS} pixels" if w * h > MAX_PIXELS else None)
        if problem is not None:
            out.report.skip("malformed", str(rel), problem, id=qid)
            continue
        if "segmentation" in ann and ann["segmentation"]:
            a = _region(ann, qid, label, w, h, str(rel), source, out.report)
            answers = [a] if a is not None else []
        elif "keypoints" in ann:
            answers = _points(ann, qid, label, w, h, str(rel), out.report)
        else:
            out.report.skip("malformed", str(rel), "annotation has neither keypoints nor a segmentation", id=qid)
            continue
        by_image.setdefault(im["id"], []).extend(answers)
    for image_id, im in images.items():  # the file's image order
        if image_id in by_image:
            out.images.append(ImageRecord(im.get("file_name"), im["width"], im["height"], by_image[image_id]))
    return out


@FORMATS.register("coco")
class Coco(QueryFormat):
    title = "COCO"
    default_name = "queries.coco.json"
    default_answers_name = "answers.coco.json"
    regions = True
    answers_description = "a COCO annotations file (images, annotations, categories)"

    def write(self, query_list: dict[str, Any], out: Path, **options: Any) -> list[Path]:
        return [atomic_write_text(out, dumps(to_coco(query_list)))]

    @classmethod
    def recognizes(cls, data: Any) -> bool:
        return isinstance(data, dict) and "format" not in data and all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories"))

    def read_answers(self, data: Any, source: str) -> AnswerSet:
        return read_coco(data, source)

    def write_answers(self, answers: dict[str, Any], query_list: dict[str, Any], out: Path) -> list[Path]:
        # As a COCO tool saves the edited file: annotations keep the fields of the query they answer.
        points = {q["id"]: (q["x"], q["y"]) for item in query_list["images"] for q in item["queries"]}

        def shapes(item: dict[str, Any]) -> Any:
            for a in item["answers"]:
                mask = a.get("mask")
                x, y = points.get(a["id"], (a["x"], a["y"])) if mask is not None else (a["x"], a["y"])
                yield a["label"], x, y, mask, {"atool_id": a["id"]}

        return [atomic_write_text(out, dumps(_document(answers["classes"], answers["images"], "atool answers", shapes)))]

    def check_images(self, answers: AnswerSet, images_root: Path, source: str) -> None:
        check_sizes(answers, images_root, self.title, source)
