"""``labelstudio``: Label Studio import tasks with the queries as keypoint predictions.

One task per image. ``data.image`` is ``image_root_url`` + the URL-quoted
relative path; the default prefix is Label Studio's local-files storage
("/data/local-files/?d="), which resolves paths under its
LOCAL_FILES_DOCUMENT_ROOT. ``data.atool_image`` keeps the relative path so
``atool ingest`` can map an export back without parsing URLs.

Each query becomes one ``keypointlabels`` result whose ``id`` is the query id
and whose x/y are percentages of the original size at the pixel centre,
(x + 0.5) / W * 100, so ingest's floor(x% / 100 * W) gives back the same pixel.
The labeling config (``<out stem>.labelconfig.xml``) is written beside the tasks.

Answers come back as Label Studio's JSON export: the same tasks, each with
``annotations``. Of a task's annotations the newest that was not cancelled
counts (by updated_at, then created_at, then id, then position); each of its
``keypointlabels`` results is one point answer, at pixel floor(x% / 100 * W)
(clamped to the last pixel), labeled with its one class, or null when it
lists none. Each ``brushlabels`` result (Label Studio's brush RLE, see
atool/annotate/labelstudio/brush.py) is one region answer: its mask as COCO
RLE, its one class (or null), and its first pixel in row-major order as the
point. The image is ``data.atool_image``, else the path in
``data.image`` (after the local-files prefix, or the URL's path). The export
carries no class list, so ingest needs ``--classes``. Writing region queries
as a task file is ``atool labelstudio push``'s job (it needs the server's
document root); this format writes point queries only, and the labeling
config names both tools, so a project made from it accepts either.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse
from xml.sax.saxutils import quoteattr

import numpy as np

from atool.annotate.answers import Answer, AnswerSet, ImageRecord, SkipReport, is_num, size_problem
from atool.annotate.formats import FORMATS, QueryFormat
from atool.annotate.formats.atool_json import dumps
from atool.annotate.labelstudio import brush
from atool.core.errors import BadInput
from atool.core.io import atomic_write_text
from atool.ops import rle

FROM_NAME = "kp"
BRUSH_NAME = "brush"
TO_NAME = "image"
LOCAL_FILES_PREFIX = "/data/local-files/?d="
# Label Studio draws a keypoint as a circle of this diameter, in percent of the image width.
_POINT_SIZE = 0.5


def label_config(classes: list[str]) -> str:
    """The Label Studio labeling config: keypoints (``kp``) and brush masks (``brush``) on ``image``, one label per class."""
    labels = "\n".join(f"    <Label value={quoteattr(name)}/>" for name in classes)
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="$image" zoom="true"/>\n'
        f'  <KeyPointLabels name="{FROM_NAME}" toName="{TO_NAME}">\n'
        f"{labels}\n"
        "  </KeyPointLabels>\n"
        f'  <BrushLabels name="{BRUSH_NAME}" toName="{TO_NAME}">\n'
        f"{labels}\n"
        "  </BrushLabels>\n"
        "</View>\n"
    )


def config_path(out: Path) -> Path:
    return out.with_name(out.name[: -len(out.suffix)] + ".labelconfig.xml" if out.suffix else out.name + ".labelconfig.xml")


def _keypoint(point: dict[str, Any], w: int, h: int, label: str | None, **extra: Any) -> dict[str, Any]:
    """One Label Studio keypoint result at pixel (x, y); Label Studio places it by percent of the image, at the pixel centre."""
    return {
        "id": point["id"],
        "type": "keypointlabels",
        "from_name": FROM_NAME,
        "to_name": TO_NAME,
        "original_width": w,
        "original_height": h,
        "image_rotation": 0,
        **extra,
        "value": {
            "x": (point["x"] + 0.5) / w * 100.0,
            "y": (point["y"] + 0.5) / h * 100.0,
            "width": _POINT_SIZE,
            "keypointlabels": [] if label is None else [label],
        },
    }


keypoint_result = _keypoint  # push builds the same results


def to_tasks(query_list: dict[str, Any], image_root_url: str) -> list[dict[str, Any]]:
    model = query_list.get("model", {})
    version = f"atool {query_list.get('strategy', {}).get('name', '?')} {str(model.get('sha256', ''))[:12]}".strip()
    tasks = []
    for item in query_list["images"]:
        w, h = item["width"], item["height"]
        results = [_keypoint(q, w, h, q.get("predicted"), score=q["score"]) for q in item["queries"]]
        tasks.append(
            {
                "data": {"image": image_root_url + quote(item["image"], safe="/"), "atool_image": item["image"]},
                "predictions": [{"model_version": version, "score": item["score"], "result": results}],
            }
        )
    return tasks


def task_image(task: dict[str, Any]) -> Any:
    data = task.get("data")
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("atool_image"), str):
        return data["atool_image"]
    url = data.get("image")
    if not isinstance(url, str):
        return None
    if LOCAL_FILES_PREFIX in url:
        return unquote(url.split(LOCAL_FILES_PREFIX, 1)[1])
    return unquote(urlparse(url).path).lstrip("/") or None


def latest_annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    """The newest annotation that was not cancelled (by updated_at, then created_at, then id, then position)."""
    anns = task.get("annotations")
    if not isinstance(anns, list):
        return None
    live = [(i, a) for i, a in enumerate(anns) if isinstance(a, dict) and not a.get("was_cancelled")]
    if not live:
        return None

    def key(item: tuple[int, dict[str, Any]]) -> tuple[str, str, float, int]:
        i, a = item
        aid = a.get("id")
        return (str(a.get("updated_at") or ""), str(a.get("created_at") or ""), float(aid) if is_num(aid) else -1.0, i)

    return max(live, key=key)[1]


def _point_answer(r: dict[str, Any], rel: str, width: int, height: int, report: SkipReport) -> Answer | None:
    """One keypoint result as a pixel answer, or None (skipped and counted)."""
    value, qid = r.get("value"), r.get("id")
    if not isinstance(value, dict) or not is_num(value.get("x")) or not is_num(value.get("y")):
        report.skip("malformed", rel, "keypoint result without numeric value.x / value.y", id=qid)
        return None
    px, py = value["x"], value["y"]
    if not (0.0 <= px <= 100.0 and 0.0 <= py <= 100.0):
        report.skip("out_of_bounds", rel, f"point at ({px}%, {py}%) lies outside the image", id=qid)
        return None
    names = value.get("keypointlabels")
    if not isinstance(names, list) or len(names) > 1:
        report.skip("malformed", rel, f"keypointlabels must list at most one class, got {names!r}", id=qid)
        return None
    x = min(int(math.floor(px / 100.0 * width)), width - 1)
    y = min(int(math.floor(py / 100.0 * height)), height - 1)
    return Answer(qid, x, y, names[0] if names else None)


def _brush_answer(r: dict[str, Any], rel: str, width: int, height: int, report: SkipReport) -> Answer | None:
    """One brush result as a region answer (COCO RLE mask, first painted pixel), or None (skipped and counted)."""
    value, qid = r.get("value"), r.get("id")
    names = value.get("brushlabels") if isinstance(value, dict) else None
    if not isinstance(value, dict) or value.get("format", "rle") != "rle" or not isinstance(names, list) or len(names) > 1:
        report.skip("malformed", rel, f"brush result must have format 'rle' and at most one label, got {names!r}", id=qid)
        return None
    try:
        mask = brush.decode(value.get("rle"), width, height)
    except BadInput as exc:
        report.skip("malformed", rel, str(exc), id=qid)
        return None
    painted = np.flatnonzero(mask)
    if painted.size == 0:
        report.skip("malformed", rel, "brush result paints no pixel", id=qid)
        return None
    y, x = divmod(int(painted[0]), width)
    return Answer(qid, x, y, names[0] if names else None, mask=rle.encode(mask))


_READERS = {"keypointlabels": _point_answer, "brushlabels": _brush_answer}


def read_export(tasks: list[Any]) -> AnswerSet:
    """A Label Studio JSON export (list of tasks) as an AnswerSet without a class list."""
    out = AnswerSet("labelstudio", None)
    report = out.report
    for n, task in enumerate(tasks):
        if not isinstance(task, dict):
            report.skip("malformed", None, f"task {n} is not an object")
            continue
        rel = task_image(task)
        ann = latest_annotation(task)
        if ann is None:
            continue  # not annotated yet, or every annotation cancelled: nothing to learn
        raw = ann.get("result")  # any JSON at all in a hand-edited export: lists, dicts where strings belong
        results = [r for r in (raw if isinstance(raw, list) else []) if isinstance(r, dict) and isinstance(r.get("type"), str) and r["type"] in _READERS]
        if not results:
            continue
        sizes = [(r.get("original_width"), r.get("original_height")) for r in results]
        if any(size != sizes[0] for size in sizes):
            report.skip("size_conflict", str(rel), f"results disagree on the image size: {sorted({str(x) for x in sizes})}", len(results))
            continue
        width, height = sizes[0]
        if rel is None:
            report.skip("unknown_image", None, f"task {n} names no image (data.atool_image or data.image)", len(results))
            continue
        problem = size_problem(width, height)
        if problem is not None:
            report.skip("malformed", str(rel), problem, len(results))
            continue
        answers = [a for r in results if (a := _READERS[r["type"]](r, str(rel), width, height, report)) is not None]
        out.images.append(ImageRecord(rel, width, height, answers))
    return out


def _annotation(item: dict[str, Any], number: int) -> dict[str, Any]:
    """One image's atool answers as the Label Studio annotation an annotator would have saved."""
    w, h = item["width"], item["height"]
    results = [_keypoint(a, w, h, a["label"], origin="manual") for a in item["answers"]]
    return {"id": number, "result": results, "was_cancelled": False, "ground_truth": False}


@FORMATS.register("labelstudio")
class LabelStudio(QueryFormat):
    title = "Label Studio"
    default_name = "queries.labelstudio.json"
    default_answers_name = "answers.labelstudio.json"
    options = {"image_root_url": LOCAL_FILES_PREFIX}
    answers_description = "a Label Studio JSON export (a list of tasks)"

    def write(self, query_list: dict[str, Any], out: Path, **options: Any) -> list[Path]:
        tasks = to_tasks(query_list, options.get("image_root_url") or LOCAL_FILES_PREFIX)
        written = [atomic_write_text(out, dumps(tasks))]
        written.append(atomic_write_text(config_path(out), label_config(query_list["classes"])))
        return written

    @classmethod
    def recognizes(cls, data: Any) -> bool:
        # A list of tasks; other tools' list-shaped exports have no task carrying "data"/"annotations".
        return isinstance(data, list) and (
            not data or any(isinstance(t, dict) and ("data" in t or "annotations" in t) for t in data)
        )

    def read_answers(self, data: Any, source: str) -> AnswerSet:
        return read_export(data)

    def write_answers(self, answers: dict[str, Any], query_list: dict[str, Any], out: Path) -> list[Path]:
        regions = sum("mask" in a for item in answers["images"] for a in item["answers"])
        if regions:
            raise BadInput(
                f"the labelstudio format carries point answers only, and {regions} answers are region masks; "
                "write them with --format json"
            )
        tasks = to_tasks(query_list, LOCAL_FILES_PREFIX)
        by_image = {item["image"]: item for item in answers["images"]}
        queried = {t["data"]["atool_image"] for t in tasks}
        for item in answers["images"]:
            if item["image"] not in queried:  # answered without being asked: still a task of the export
                tasks.append({"data": {"image": LOCAL_FILES_PREFIX + quote(item["image"], safe="/"), "atool_image": item["image"]}})
        for number, task in enumerate(tasks, start=1):
            task["id"] = number
            item = by_image.get(task["data"]["atool_image"])
            task["annotations"] = [] if item is None else [_annotation(item, number)]
        return [atomic_write_text(out, dumps(tasks))]
