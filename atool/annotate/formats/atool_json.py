"""``json``: the native ``atool.query/v1`` file.

Keys are sorted and the layout fixed, so two runs on the same inputs and seed
differ only in ``created``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from atool.annotate.formats import FORMATS, QueryFormat
from atool.core.io import atomic_write_text


def dumps(obj: Any) -> str:
    """The canonical text of an atool JSON file (sorted keys, 2-space indent, trailing newline)."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


@FORMATS.register("json")
class AtoolJson(QueryFormat):
    default_name = "queries.json"

    def write(self, query_list: dict[str, Any], out: Path, **options: Any) -> list[Path]:
        return [atomic_write_text(out, dumps(query_list))]
