"""JSON schemas of the file contracts (copies of ../shared/schemas, kept equal by a test)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from atool.core.errors import BadInput


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict[str, Any]:
    """``name`` is 'query-list' or 'answers'."""
    return json.loads(resources.files(__package__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8"))


def validate(obj: Any, name: str, what: str) -> None:
    """Raise BadInput naming the first schema violation."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema(name))
    error = next(iter(sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise BadInput(f"{what} does not follow {name} schema at {where}: {error.message[:200]}")
