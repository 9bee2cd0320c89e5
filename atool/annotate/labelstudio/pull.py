"""``atool labelstudio pull``: a Label Studio project's annotations -> ``atool.answers/v1``.

The export is checked against the query list the tasks were pushed from:

- a task nobody has annotated is counted (``unannotated``) and left out;
- a task whose every annotation was skipped/cancelled is counted
  (``cancelled``) and left out;
- of several annotations on one task the newest counts (by updated_at, then
  created_at, then id), and such tasks are counted (``several``);
- a label that is not one of the query list's classes means the labels were
  renamed in the project: a one-line BadInput, nothing written;
- a task whose image is not in the query list (another round's task in the
  same project, say) is BadInput by default, or, with ``skip_unknown``,
  counted (``unknown_images``) and left out.

A keypoint result keeps its id when it is one of the image's query ids (the
result ids of pushed predictions are the query ids); an answer placed without
one takes the id of a point query at the same pixel, else keeps its own. A
brush result likewise keeps a region query's id, else takes that of the
region query it overlaps most; its point is the query's point when that is
painted, else the first painted pixel.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from atool.annotate.answers import ANSWERS_FORMAT, Answer
from atool.annotate.formats.labelstudio import latest_annotation, read_export, task_image
from atool.annotate.labelstudio.client import LabelStudioClient
from atool.annotate.labelstudio.project import checked_project
from atool.annotate.oracle import load_query_list
from atool.core.errors import BadInput
from atool.core.io import atomic_write_json, sha256_file
from atool.core.schemas import validate
from atool.ops import rle


def _region_id(a: Answer, regions: dict[str, np.ndarray]) -> str:
    if a.id in regions:
        return str(a.id)
    painted = rle.decode(a.mask)
    overlap = {qid: int((m & painted).sum()) for qid, m in regions.items() if m.shape == painted.shape}
    best = max(overlap, key=lambda k: overlap[k], default=None)
    return best if best is not None and overlap[best] > 0 else str(a.id)


def _answers(item: dict[str, Any], got: list[Answer]) -> list[dict[str, Any]]:
    """The answers of one task, their ids and points matched to the image's queries (``item``)."""
    points = {q["id"]: q for q in item["queries"] if q["kind"] == "point"}
    at = {(q["x"], q["y"]): q["id"] for q in points.values()}
    region_q = {q["id"]: q for q in item["queries"] if q["kind"] == "region"}
    regions = {qid: rle.decode(q["mask"]) for qid, q in region_q.items()}
    out = []
    for a in got:
        entry: dict[str, Any] = {"label": a.label}
        if a.mask is None:
            qid = str(a.id) if a.id in points else at.get((a.x, a.y), str(a.id))
            entry.update(id=qid, x=a.x, y=a.y)
        else:
            qid = _region_id(a, regions)
            x, y = a.x, a.y
            q = region_q.get(qid)
            if q is not None and rle.decode(a.mask)[q["y"], q["x"]]:
                x, y = q["x"], q["y"]
            entry.update(id=qid, x=x, y=y, mask=a.mask)
        out.append({k: entry[k] for k in ("id", "x", "y", "label", "mask") if k in entry})
    return out


def answers_from_export(export: list[Any], query_list: dict[str, Any], *, skip_unknown: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Label Studio export (list of tasks) -> (``atool.answers/v1`` dict, counts). See the module doc."""
    if not isinstance(export, list):
        raise BadInput(f"a Label Studio export is a list of tasks, got a JSON {type(export).__name__}")
    classes = query_list["classes"]
    items = {item["image"]: item for item in query_list["images"]}
    counts = {"tasks": len(export), "annotated": 0, "unannotated": 0, "cancelled": 0, "several": 0, "unknown_images": 0,
              "points": 0, "regions": 0, "null": 0, "skipped_results": 0}
    unknown: list[str] = []
    by_image: dict[str, list[dict[str, Any]]] = {}
    for task in export:
        rel = task_image(task) if isinstance(task, dict) else None
        if rel not in items:
            unknown.append(str(rel))
            continue
        anns = [a for a in (task.get("annotations") or []) if isinstance(a, dict)]
        if not anns:
            counts["unannotated"] += 1
            continue
        if latest_annotation(task) is None:
            counts["cancelled"] += 1
            continue
        counts["several"] += sum(not a.get("was_cancelled") for a in anns) > 1
        got = read_export([task])
        counts["skipped_results"] += got.report.skipped_total
        item = items[rel]
        answers = [a for rec in got.images for a in rec.answers]
        for rec in got.images:
            if (rec.width, rec.height) != (item["width"], item["height"]):
                raise BadInput(f"Label Studio saw {rel} as {rec.width}x{rec.height} but the query list says {item['width']}x{item['height']}")
        renamed = sorted({a.label for a in answers if a.label is not None and a.label not in classes})
        if renamed:
            raise BadInput(
                f"annotations of {rel} use labels {renamed} that the query list's classes do not have "
                "(renamed in the Label Studio project?); restore the project's labels to atool's classes"
            )
        counts["annotated"] += 1
        by_image.setdefault(rel, []).extend(_answers(item, answers))
    if unknown:
        counts["unknown_images"] = len(unknown)
        if not skip_unknown:
            raise BadInput(
                f"the project has {len(unknown)} tasks for images not in the query list (first: {unknown[0]}); "
                "pass the query list they were pushed from, or --skip-unknown to leave them out"
            )
    images = []
    for item in query_list["images"]:  # the query list's order
        if item["image"] in by_image:
            answers = by_image[item["image"]]
            counts["points"] += sum("mask" not in a for a in answers)
            counts["regions"] += sum("mask" in a for a in answers)
            counts["null"] += sum(a["label"] is None for a in answers)
            images.append({"image": item["image"], "width": item["width"], "height": item["height"], "answers": answers})
    return {"format": ANSWERS_FORMAT, "classes": list(classes), "images": images}, counts


def pull(
    project_title: str, queries: str | os.PathLike, out: str | os.PathLike, *,
    skip_unknown: bool = False, client: LabelStudioClient | None = None,
) -> dict[str, Any]:
    """Export the project's annotations as ``atool.answers/v1`` at ``out`` (written only when all is well)."""
    qlist = load_query_list(queries)
    client = client or LabelStudioClient.from_env()
    project, _ = checked_project(client, project_title, qlist["classes"], create=False)
    doc, counts = answers_from_export(client.export(project["id"]), qlist, skip_unknown=skip_unknown)
    doc = {"format": doc["format"], "query_list_sha256": sha256_file(queries), **{k: v for k, v in doc.items() if k != "format"}}
    validate(doc, "answers", "the pulled answers")
    atomic_write_json(Path(out), doc)
    return {"project": project_title, "project_id": project["id"], "out": str(out), **counts}
