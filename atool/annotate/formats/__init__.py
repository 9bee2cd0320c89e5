"""Query-list formats: how an ``atool.query/v1`` list is handed to annotators.

Every format takes the in-memory query list (the dict ``run_query`` returns,
already valid against query-list.schema.json) and writes one or more files,
atomically. Adding a format is one module with a ``QueryFormat`` subclass
registered in ``FORMATS``, plus its import at the bottom of this file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from atool.core.errors import BadInput
from atool.core.registry import Registry


class QueryFormat:
    """Base class; ``options`` names every keyword ``write`` accepts, with defaults."""

    name: ClassVar[str] = "?"
    default_name: ClassVar[str] = "queries.json"
    options: ClassVar[dict[str, Any]] = {}

    def write(self, query_list: dict[str, Any], out: Path, **options: Any) -> list[Path]:
        """Write ``query_list`` to ``out`` (and any side files); return every path written."""
        raise NotImplementedError


FORMATS: Registry[type[QueryFormat]] = Registry("query-list format")


def write_query_list(query_list: dict[str, Any], out: str | os.PathLike, fmt: str = "json", options: dict[str, Any] | None = None) -> list[Path]:
    """Write through a registered format; unknown formats or options are BadInput."""
    writer = FORMATS.get(fmt)()
    given = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = sorted(set(given) - set(writer.options))
    if unknown:
        valid = ", ".join(sorted(writer.options)) or "(none)"
        raise BadInput(f"format {fmt!r} takes no option {', '.join(unknown)}; valid: {valid}")
    return writer.write(query_list, Path(out), **{**writer.options, **given})


def default_out(fmt: str) -> Path:
    """The output file name a format uses when --out is not given."""
    return Path(FORMATS.get(fmt).default_name)

FORMATS.load_plugins(__name__, __path__)

__all__ = ["FORMATS", "QueryFormat", "write_query_list", "default_out"]
