"""``cvat``: a "CVAT for images 1.1" annotations XML task, and CVAT's XML export read back as answers.

The task file is what CVAT's "Upload annotations" takes for an image task
whose images are the query list's (uploaded under the same relative names):
one ``<image id name width height>`` per image, its queries pre-drawn as the
model's guess for the annotator to correct.

- A point query is a ``<points>`` shape labeled with its predicted class, at
  the pixel centre "x+0.5,y+0.5" (CVAT places points in continuous pixel
  coordinates, pixel (x, y) covering [x, x+1) x [y, y+1)); reading takes the
  floor, clamped to the image.
- A region query is a ``<mask>`` shape in CVAT's mask RLE: ``left``, ``top``,
  ``width``, ``height`` give the mask's bounding box and ``rle`` the comma
  separated run lengths of that box read row by row, starting with a run of
  0s (of length 0 when the box's first pixel is set).
- Every shape carries ``<attribute name="atool_id">`` (the query id; answers
  keep it), points their ``score``, masks ``atool_point`` (the query's point).
- The task's labels are the query list's classes, plus ``UNSURE_LABEL`` for
  "cannot tell" (a null answer). A query without a prediction starts as it.

Reading an export: each ``<points>`` point is one point answer; each
``<mask>`` is one region answer whose point is its ``atool_point`` when that
lies in the mask, else the mask's first pixel in row-major order (so a region
an annotator split into one mask per class comes back as ``atool oracle``
answers it). A shape drawn by the annotator (no ``atool_id``) gets the id
``cvat:<image id>:<n>``. Images without shapes are not annotated yet: left
out. A label that the export's ``<meta>`` does not declare, or that is not
one of the task's, is a one-line error; malformed shapes are skipped and
counted. XML is parsed with defusedxml only (no entities, no DTDs).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from atool.annotate.answers import Answer, AnswerSet, ImageRecord, SkipReport, is_int
from atool.annotate.formats import FORMATS, QueryFormat, RawText
from atool.annotate.formats._shared import MAX_PIXELS, UNSURE_LABEL, check_sizes
from atool.core.errors import BadInput
from atool.core.io import atomic_write_text
from atool.ops import rle

ID_ATTR, SCORE_ATTR, POINT_ATTR = "atool_id", "score", "atool_point"
# The first element is <annotations> (after a declaration, comments or a DOCTYPE, which the parser then refuses).
_ROOT = re.compile(r"^\s*(<\?xml[^>]*\?>\s*)?(<!--.*?-->\s*|<!DOCTYPE[^\[>]*(\[.*?\])?\s*>\s*)*<annotations[\s>/]", re.S)


# ------------------------------------------------------------------------ CVAT's mask RLE


def mask_to_cvat(mask: np.ndarray) -> dict[str, int | str] | None:
    """CVAT's mask attributes (rle, left, top, width, height) of a bool H x W mask; None when it is empty."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    top, left = int(ys.min()), int(xs.min())
    h, w = int(ys.max()) - top + 1, int(xs.max()) - left + 1
    # CVAT reads the box row by row; COCO's column-major run finder on the transpose is exactly that.
    counts = rle.mask_counts(mask[top : top + h, left : left + w].T)
    return {"rle": ", ".join(str(int(c)) for c in counts), "left": left, "top": top, "width": w, "height": h}


def cvat_to_mask(attrs: dict[str, str], width: int, height: int) -> np.ndarray:
    """bool H x W mask of a CVAT ``<mask>``'s attributes; BadInput when they do not describe one inside the image."""
    try:
        left, top, w, h = (int(attrs[k]) for k in ("left", "top", "width", "height"))
        counts = [int(v) for v in attrs["rle"].replace(" ", "").split(",") if v != ""]
    except (KeyError, ValueError):
        raise BadInput("a mask needs whole-number rle, left, top, width and height attributes") from None
    if w < 1 or h < 1 or left < 0 or top < 0 or left + w > width or top + h > height:
        raise BadInput(f"mask box {w}x{h} at ({left}, {top}) does not fit the {width}x{height} image")
    if any(c < 0 for c in counts) or sum(counts) != w * h:
        raise BadInput(f"mask rle covers {sum(counts)} pixels, its {w}x{h} box has {w * h}")
    box = np.repeat((np.arange(len(counts)) % 2).astype(bool), counts).reshape(h, w)
    mask = np.zeros((height, width), bool)
    mask[top : top + h, left : left + w] = box
    return mask


# ------------------------------------------------------------------------ writing


def _label_xml(name: str) -> str:
    attributes = "".join(
        f"<attribute><name>{a}</name><mutable>False</mutable><input_type>text</input_type><default_value></default_value>"
        "<values></values></attribute>"
        for a in (ID_ATTR, SCORE_ATTR, POINT_ATTR)
    )
    return f"        <label><name>{escape(name)}</name><type>any</type><attributes>{attributes}</attributes></label>\n"


def _document(classes: list[str], name: str, images: list[str]) -> str:
    if UNSURE_LABEL in classes:
        raise BadInput(f"class {UNSURE_LABEL!r} is the label the cvat format keeps for 'cannot tell'; rename the class")
    labels = "".join(_label_xml(c) for c in [*classes, UNSURE_LABEL])
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n  <version>1.1</version>\n  <meta>\n    <task>\n'
        f"      <name>{escape(name)}</name>\n      <size>{len(images)}</size>\n      <mode>annotation</mode>\n"
        f"      <overlap>0</overlap>\n      <labels>\n{labels}      </labels>\n    </task>\n  </meta>\n"
        + "".join(images) + "</annotations>\n"
    )


def _attrs(**values: Any) -> str:
    return "".join(f'\n      <attribute name="{k}">{escape(str(v))}</attribute>' for k, v in values.items() if v is not None)


def _points(label: str | None, x: int, y: int, source: str, **attrs: Any) -> str:
    return (f"    <points label={quoteattr(label or UNSURE_LABEL)} source=\"{source}\" occluded=\"0\" "
            f"points=\"{x + 0.5:.2f},{y + 0.5:.2f}\" z_order=\"0\">{_attrs(**attrs)}\n    </points>\n")


def _mask(label: str | None, mask: dict[str, Any], source: str, **attrs: Any) -> str:
    box = mask_to_cvat(rle.decode(mask))
    if box is None:
        return ""  # CVAT has no empty mask; an empty region asks nothing
    return (f"    <mask label={quoteattr(label or UNSURE_LABEL)} source=\"{source}\" occluded=\"0\" rle=\"{box['rle']}\" "
            f"left=\"{box['left']}\" top=\"{box['top']}\" width=\"{box['width']}\" height=\"{box['height']}\" z_order=\"0\">"
            f"{_attrs(**attrs)}\n    </mask>\n")


def _image(number: int, item: dict[str, Any], shapes: str) -> str:
    return f"  <image id=\"{number}\" name={quoteattr(item['image'])} width=\"{item['width']}\" height=\"{item['height']}\">\n{shapes}  </image>\n"


def _check_labels(entries: list[dict[str, Any]], key: str, field: str, classes: list[str]) -> None:
    known = set(classes)
    for item in entries:
        for q in item[key]:
            if q.get(field) is not None and q[field] not in known:
                raise BadInput(f"{item['image']}: label {q[field]!r} is not one of the classes ({', '.join(classes)})")


def task_xml(query_list: dict[str, Any]) -> str:
    """The CVAT for images 1.1 annotations of ``query_list``: its queries as the model's guesses."""
    _check_labels(query_list["images"], "queries", "predicted", query_list["classes"])
    images = []
    for n, item in enumerate(query_list["images"]):
        shapes = ""
        for q in item["queries"]:
            if q["kind"] == "region":
                shapes += _mask(q.get("predicted"), q["mask"], "auto", **{ID_ATTR: q["id"], POINT_ATTR: f"{q['x']},{q['y']}"})
            else:
                shapes += _points(q.get("predicted"), q["x"], q["y"], "auto", **{ID_ATTR: q["id"], SCORE_ATTR: q["score"]})
        images.append(_image(n, item, shapes))
    return _document(query_list["classes"], f"atool {query_list.get('strategy', {}).get('name', '')}".strip(), images)


# ------------------------------------------------------------------------ reading


def _parse(text: str, source: str) -> Any:
    from xml.etree.ElementTree import ParseError

    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    try:
        return fromstring(text)
    except (ParseError, DefusedXmlException) as exc:
        raise BadInput(f"{source} is not readable CVAT XML: {' '.join(str(exc).split())}") from None


def _declared_labels(root: Any, source: str) -> list[str]:
    names = [(el.text or "").strip() for el in root.iterfind("./meta/task/labels/label/name")]
    names += [(el.text or "").strip() for el in root.iterfind("./meta/project/labels/label/name")]
    if not names:
        raise BadInput(f"{source} has no <meta> labels; export the task as 'CVAT for images 1.1'")
    return list(dict.fromkeys(names))


def _attribute(shape: Any, name: str) -> str | None:
    for el in shape.iterfind("attribute"):
        if el.get("name") == name:
            return (el.text or "").strip() or None
    return None


def _label_of(shape: Any, declared: set[str], rel: str, source: str) -> str | None:
    label = shape.get("label")
    if label not in declared:
        raise BadInput(f"{source}: {rel} has a {shape.tag} labeled {label!r}, which is not one of the task's labels "
                       f"({', '.join(sorted(declared))}); rename it in CVAT or export the task again")
    return None if label == UNSURE_LABEL else label


def _point_answers(shape: Any, qid: str, label: str | None, w: int, h: int, rel: str, report: SkipReport) -> list[Answer]:
    out = []
    for pair in (shape.get("points") or "").split(";"):
        try:
            fx, fy = (float(v) for v in pair.split(","))
        except ValueError:
            report.skip("malformed", rel, f"points {shape.get('points')!r} are not 'x,y' pairs", id=qid)
            return []
        if not (math.isfinite(fx) and math.isfinite(fy) and 0 <= fx <= w and 0 <= fy <= h):
            report.skip("out_of_bounds", rel, f"point ({fx}, {fy}) lies outside {w}x{h}", id=qid)
            continue
        out.append(Answer(qid, min(int(fx), w - 1), min(int(fy), h - 1), label))
    return out


def _mask_answer(shape: Any, qid: str, label: str | None, w: int, h: int, rel: str, report: SkipReport) -> Answer | None:
    try:
        mask = cvat_to_mask(dict(shape.attrib), w, h)
    except BadInput as exc:
        report.skip("malformed", rel, f"mask unusable: {exc}", id=qid)
        return None
    if not mask.any():
        report.skip("malformed", rel, "mask is empty", id=qid)
        return None
    x, y = -1, -1
    point = _attribute(shape, POINT_ATTR)
    if point and re.fullmatch(r"\d+,\d+", point):
        x, y = (int(v) for v in point.split(","))
    if not (0 <= x < w and 0 <= y < h and mask[y, x]):
        y, x = divmod(int(np.flatnonzero(mask)[0]), w)
    return Answer(qid, int(x), int(y), label, rle.encode(mask))


def read_export(text: str, source: str) -> AnswerSet:
    """A CVAT for images XML export as an AnswerSet whose classes are the task's labels (less UNSURE_LABEL)."""
    root = _parse(text, source)
    if root.tag != "annotations":
        raise BadInput(f"{source}: the root element is <{root.tag}>, a CVAT export's is <annotations>")
    declared = _declared_labels(root, source)
    out = AnswerSet("cvat", [n for n in declared if n != UNSURE_LABEL])
    labels = set(declared)
    for image in root.iterfind("image"):
        rel, shapes = image.get("name"), [s for s in image if s.tag in ("points", "mask")]
        if not shapes:
            continue  # not annotated yet
        try:
            w, h = int(image.get("width", "")), int(image.get("height", ""))
        except ValueError:
            out.report.skip("malformed", rel, f"image size {image.get('width')!r}x{image.get('height')!r} is not whole pixels", len(shapes))
            continue
        if not (is_int(w) and w >= 1 and h >= 1 and w * h <= MAX_PIXELS):
            out.report.skip("malformed", rel, f"image size {w}x{h} is not positive, or beyond {MAX_PIXELS} pixels", len(shapes))
            continue
        answers: list[Answer] = []
        for n, shape in enumerate(shapes):
            label = _label_of(shape, labels, str(rel), source)
            qid = _attribute(shape, ID_ATTR) or f"cvat:{image.get('id')}:{n}"
            if shape.tag == "points":
                answers += _point_answers(shape, qid, label, w, h, str(rel), out.report)
            elif (a := _mask_answer(shape, qid, label, w, h, str(rel), out.report)) is not None:
                answers.append(a)
        out.images.append(ImageRecord(rel, w, h, answers))
    return out


@FORMATS.register("cvat")
class Cvat(QueryFormat):
    title = "CVAT"
    default_name = "queries.cvat.xml"
    default_answers_name = "answers.cvat.xml"
    regions = True
    answers_description = "a CVAT for images 1.1 XML export (<annotations>)"

    def write(self, query_list: dict[str, Any], out: Path, **options: Any) -> list[Path]:
        return [atomic_write_text(out, task_xml(query_list))]

    @classmethod
    def recognizes(cls, data: Any) -> bool:
        # CVAT always exports <version> and <meta>; a bare <annotations/> is nobody's export.
        return isinstance(data, RawText) and _ROOT.match(data) is not None and "<meta" in data

    def read_answers(self, data: Any, source: str) -> AnswerSet:
        return read_export(str(data), source)

    def write_answers(self, answers: dict[str, Any], query_list: dict[str, Any], out: Path) -> list[Path]:
        # As CVAT exports a task after annotation: shapes keep the attributes of the query they answer.
        _check_labels(answers["images"], "answers", "label", answers["classes"])
        points = {q["id"]: f"{q['x']},{q['y']}" for item in query_list["images"] for q in item["queries"]}
        images = []
        for n, item in enumerate(answers["images"]):
            shapes = ""
            for a in item["answers"]:
                if "mask" in a:
                    shapes += _mask(a["label"], a["mask"], "manual", **{ID_ATTR: a["id"], POINT_ATTR: points.get(a["id"], f"{a['x']},{a['y']}")})
                else:
                    shapes += _points(a["label"], a["x"], a["y"], "manual", **{ID_ATTR: a["id"]})
            images.append(_image(n, item, shapes))
        return [atomic_write_text(out, _document(answers["classes"], "atool answers", images))]

    def check_images(self, answers: AnswerSet, images_root: Path, source: str) -> None:
        check_sizes(answers, images_root, self.title, source)
