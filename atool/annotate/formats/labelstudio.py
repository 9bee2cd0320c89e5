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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from atool.annotate.formats import FORMATS, QueryFormat
from atool.annotate.formats.atool_json import dumps
from atool.core.io import atomic_write_text

FROM_NAME = "kp"
TO_NAME = "image"
LOCAL_FILES_PREFIX = "/data/local-files/?d="
# Label Studio draws a keypoint as a circle of this diameter, in percent of the image width.
_POINT_SIZE = 0.5


def label_config(classes: list[str]) -> str:
    """The Label Studio labeling config matching the tasks' from_name/to_name."""
    labels = "\n".join(f"    <Label value={quoteattr(name)}/>" for name in classes)
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="$image"/>\n'
        f'  <KeyPointLabels name="{FROM_NAME}" toName="{TO_NAME}">\n'
        f"{labels}\n"
        "  </KeyPointLabels>\n"
        "</View>\n"
    )


def config_path(out: Path) -> Path:
    return out.with_name(out.name[: -len(out.suffix)] + ".labelconfig.xml" if out.suffix else out.name + ".labelconfig.xml")


def to_tasks(query_list: dict[str, Any], image_root_url: str) -> list[dict[str, Any]]:
    model = query_list.get("model", {})
    version = f"atool {query_list.get('strategy', {}).get('name', '?')} {str(model.get('sha256', ''))[:12]}".strip()
    tasks = []
    for item in query_list["images"]:
        w, h = item["width"], item["height"]
        results = [
            {
                "id": q["id"],
                "type": "keypointlabels",
                "from_name": FROM_NAME,
                "to_name": TO_NAME,
                "original_width": w,
                "original_height": h,
                "image_rotation": 0,
                "score": q["score"],
                "value": {
                    "x": (q["x"] + 0.5) / w * 100.0,
                    "y": (q["y"] + 0.5) / h * 100.0,
                    "width": _POINT_SIZE,
                    "keypointlabels": [q["predicted"]] if q.get("predicted") is not None else [],
                },
            }
            for q in item["queries"]
        ]
        tasks.append(
            {
                "data": {"image": image_root_url + quote(item["image"], safe="/"), "atool_image": item["image"]},
                "predictions": [{"model_version": version, "score": item["score"], "result": results}],
            }
        )
    return tasks


@FORMATS.register("labelstudio")
class LabelStudio(QueryFormat):
    default_name = "queries.labelstudio.json"
    options = {"image_root_url": LOCAL_FILES_PREFIX}

    def write(self, query_list: dict[str, Any], out: Path, **options: Any) -> list[Path]:
        tasks = to_tasks(query_list, options.get("image_root_url") or LOCAL_FILES_PREFIX)
        written = [atomic_write_text(out, dumps(tasks))]
        written.append(atomic_write_text(config_path(out), label_config(query_list["classes"])))
        return written
