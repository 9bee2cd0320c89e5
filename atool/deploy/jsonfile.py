"""Reading the JSON files users hand to oracle and ingest, failing in one line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from atool.errors import BadInput


def read_json(path: str | os.PathLike, what: str) -> Any:
    """Parse a JSON file; a missing, unreadable or malformed file is BadInput naming ``what``."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{what} {path} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"{what} {path} is not UTF-8 text; expected a JSON file") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{what} {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
