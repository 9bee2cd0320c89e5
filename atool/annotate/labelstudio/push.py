"""``atool labelstudio push``: an ``atool.query/v1`` list -> tasks with predictions in a Label Studio project.

Images are served by Label Studio's local-files storage: the server runs
with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and a
LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT that holds the query list's image
root; push adds a (never synced) local storage at that root to the project,
which is what lets the project's tasks read files below it. ``data.image``
is ``/data/local-files/?d=`` + the image's path relative to the document
root; ``data.atool_image`` is its path in the query list, the key that makes
a second push of the same list import nothing.

Each task gets one prediction (the model's guess, as ``model_version``
``atool <strategy> <model sha>``): a ``keypointlabels`` result per point
query and a ``brushlabels`` result per region query (its mask in Label
Studio's brush RLE), labeled with the model's predicted class. Result ids
are the query ids, so an annotator who edits the prediction keeps them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from atool.annotate.formats.labelstudio import BRUSH_NAME, LOCAL_FILES_PREFIX, TO_NAME, keypoint_result, task_image
from atool.annotate.labelstudio import brush
from atool.annotate.labelstudio.client import LabelStudioClient
from atool.annotate.labelstudio.project import checked_project
from atool.annotate.oracle import load_query_list
from atool.core.errors import BadInput
from atool.ops import rle

DOCUMENT_ROOT_ENV = "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"
_IMPORT_BATCH = 200


def _brush_result(q: dict[str, Any], w: int, h: int) -> dict[str, Any]:
    mask = rle.decode(q["mask"])
    if mask.shape != (h, w):
        raise BadInput(f"region query {q['id']} has a {mask.shape[1]}x{mask.shape[0]} mask on a {w}x{h} image")
    label = q.get("predicted")
    return {
        "id": q["id"], "type": "brushlabels", "from_name": BRUSH_NAME, "to_name": TO_NAME,
        "original_width": w, "original_height": h, "image_rotation": 0, "score": q["score"],
        "value": {"format": "rle", "rle": brush.encode(mask), "brushlabels": [] if label is None else [label]},
    }


def build_tasks(query_list: dict[str, Any], url_of: dict[str, str]) -> list[dict[str, Any]]:
    """Label Studio tasks (data + one prediction) for every image of the list; ``url_of``: image -> data.image."""
    model = query_list.get("model", {})
    version = f"atool {query_list.get('strategy', {}).get('name', '?')} {str(model.get('sha256', ''))[:12]}".strip()
    tasks = []
    for item in query_list["images"]:
        w, h = item["width"], item["height"]
        results = [
            _brush_result(q, w, h) if q["kind"] == "region" else keypoint_result(q, w, h, q.get("predicted"), score=q["score"])
            for q in item["queries"]
        ]
        tasks.append({
            "data": {"image": url_of[item["image"]], "atool_image": item["image"]},
            "predictions": [{"model_version": version, "score": item["score"], "result": results}],
        })
    return tasks


def image_urls(query_list: dict[str, Any], images_root: Path, document_root: Path) -> dict[str, str]:
    """image -> local-files URL; images missing or outside the document root are BadInput."""
    root, doc = images_root.resolve(), document_root.resolve()
    if not doc.is_dir():
        raise BadInput(f"document root {document_root} is not a folder; set {DOCUMENT_ROOT_ENV} (or --document-root) as the server has it")
    if not root.is_relative_to(doc):
        raise BadInput(
            f"images folder {images_root} is not inside the Label Studio document root {document_root}; "
            "the server can serve only files below its LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"
        )
    missing = [item["image"] for item in query_list["images"] if not (root / item["image"]).is_file()]
    if missing:
        raise BadInput(f"{len(missing)} queried images are not under {images_root} (first: {missing[0]}); pass the --images the query list was made from")
    return {
        item["image"]: LOCAL_FILES_PREFIX + quote((root / item["image"]).relative_to(doc).as_posix(), safe="/")
        for item in query_list["images"]
    }


def push(
    queries: str | os.PathLike, project_title: str, images_root: str | os.PathLike, *,
    document_root: str | os.PathLike | None = None, client: LabelStudioClient | None = None,
) -> dict[str, Any]:
    """Push a query list to the project titled ``project_title``; returns a summary.

    Everything that can be checked locally (the list, the images, the
    document root, the region masks) is checked before the server is changed.
    """
    qlist = load_query_list(queries)
    doc = document_root or os.environ.get(DOCUMENT_ROOT_ENV)
    if not doc:
        raise BadInput(f"set {DOCUMENT_ROOT_ENV} (or pass --document-root) to the server's local-files document root")
    images_root = Path(images_root)
    tasks = build_tasks(qlist, image_urls(qlist, images_root, Path(doc)))
    client = client or LabelStudioClient.from_env()
    project, created = checked_project(client, project_title, qlist["classes"], create=True)
    pid = project["id"]
    storage_path = str(images_root.resolve())
    if not any(os.path.normpath(str(s.get("path", ""))) == storage_path for s in client.local_storages(pid)):
        client.create_local_storage(pid, storage_path, f"atool images {images_root.name}")
    present = {task_image(t) for t in client.tasks(pid)}
    new = [t for t in tasks if t["data"]["atool_image"] not in present]
    for start in range(0, len(new), _IMPORT_BATCH):
        client.import_tasks(pid, new[start : start + _IMPORT_BATCH])
    kinds = [q["kind"] for item in qlist["images"] for q in item["queries"]]
    return {
        "project": project_title, "project_id": pid, "created": created, "url": f"{client.url}/projects/{pid}",
        "tasks": len(tasks), "imported": len(new), "already_present": len(tasks) - len(new),
        "points": kinds.count("point"), "regions": kinds.count("region"),
    }
