"""``json``: the native ``atool.query/v1`` file, answered by an ``atool.answers/v1`` file.

Keys are sorted and the layout fixed, so two runs on the same inputs and seed
differ only in ``created``. The answers file is atool's common answer form, so
reading it is a schema check and a copy into records, and it carries region
answers (a COCO RLE ``mask`` per answer).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from atool.annotate.answers import ANSWERS_FORMAT, Answer, AnswerSet, ImageRecord
from atool.annotate.formats import FORMATS, QueryFormat
from atool.core.io import atomic_write_text
from atool.core.schemas import validate


def dumps(obj: Any) -> str:
    """The canonical text of an atool JSON file (sorted keys, 2-space indent, trailing newline)."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


@FORMATS.register("json")
class AtoolJson(QueryFormat):
    title = "atool"
    default_name = "queries.json"
    default_answers_name = "answers.json"
    regions = True
    answers_description = f"{ANSWERS_FORMAT} (from `atool oracle`)"

    def write(self, query_list: dict[str, Any], out: Path, **options: Any) -> list[Path]:
        return [atomic_write_text(out, dumps(query_list))]

    @classmethod
    def recognizes(cls, data: Any) -> bool:
        return isinstance(data, dict) and data.get("format") == ANSWERS_FORMAT

    def read_answers(self, data: Any, source: str) -> AnswerSet:
        validate(data, "answers", "answers file")
        records = [
            ImageRecord(
                item["image"], item["width"], item["height"],
                [Answer(a["id"], a["x"], a["y"], a["label"], a.get("mask")) for a in item["answers"]],
            )
            for item in data["images"]
        ]
        return AnswerSet(ANSWERS_FORMAT, list(data["classes"]), records)

    def write_answers(self, answers: dict[str, Any], query_list: dict[str, Any], out: Path) -> list[Path]:
        return [atomic_write_text(out, dumps(answers))]
