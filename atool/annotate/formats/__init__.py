"""Query-list formats: how queries go to annotators and how their answers come back.

A format is one module with a ``QueryFormat`` subclass registered in
``FORMATS`` (found by ``load_plugins``; no list is edited). It does four
things, each declared on the base class:

- ``write``: the in-memory ``atool.query/v1`` list (the dict ``run_query``
  returns, already valid against query-list.schema.json) -> the files handed
  to the annotation tool, written atomically;
- ``recognizes``: is a parsed answer file this format's export?
- ``read_answers``: that export -> the common ``AnswerSet`` that
  ``atool ingest`` consumes, skipping and counting entries it cannot convert;
- ``write_answers``: ``atool.answers/v1`` -> the export the tool would
  produce, so ``atool oracle --format F`` answers as that tool would and every
  format round-trips in the contract test (tests/annotate/test_formats.py).

``data`` given to ``recognizes``/``read_answers`` is the parsed JSON of the
answer file, or ``RawText`` (a ``str``) when the file is not JSON, for
formats whose exports are XML or CSV.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from atool.annotate.answers import AnswerSet
from atool.core.errors import BadInput
from atool.core.registry import Registry
from atool.core.schemas import validate


class RawText(str):
    """The text of an answer file that is not JSON; ``error`` is the JSON parser's one-line complaint."""

    error: str = ""


class QueryFormat:
    """Base class. ``options`` names every keyword ``write`` accepts, with defaults;
    ``regions`` says whether the format carries region queries and answers (a mask per answer)."""

    name: ClassVar[str] = "?"
    title: ClassVar[str] = "?"  # the tool's name in messages
    default_name: ClassVar[str] = "queries.json"
    default_answers_name: ClassVar[str] = "answers.json"
    options: ClassVar[dict[str, Any]] = {}
    regions: ClassVar[bool] = False
    # How an unrecognised answer file is told what this format's export looks like.
    answers_description: ClassVar[str] = "?"

    def write(self, query_list: dict[str, Any], out: Path, **options: Any) -> list[Path]:
        """Write ``query_list`` to ``out`` (and any side files); return every path written."""
        raise NotImplementedError

    @classmethod
    def recognizes(cls, data: Any) -> bool:
        """Whether ``data`` (parsed answer file, or RawText) is this format's export."""
        raise NotImplementedError

    def read_answers(self, data: Any, source: str) -> AnswerSet:
        """Convert an export this format ``recognizes`` into an AnswerSet.

        ``source`` names the file in messages. A wrong overall shape is
        BadInput; single entries that cannot be converted are skipped and
        counted in the set's ``report``.
        """
        raise NotImplementedError

    def write_answers(self, answers: dict[str, Any], query_list: dict[str, Any], out: Path) -> list[Path]:
        """Write ``answers`` (a valid ``atool.answers/v1`` dict for ``query_list``) as this tool
        exports them; return every path written. Answers the format cannot carry are BadInput."""
        raise NotImplementedError

    def check_images(self, answers: AnswerSet, images_root: Path, source: str) -> None:
        """BadInput when the export contradicts the images under ``images_root`` in a way the format
        makes fatal (CVAT, COCO: image sizes). Default: nothing; ingest's collector skips and reports."""
        return None


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


def write_answers(answers: dict[str, Any], query_list: dict[str, Any], out: str | os.PathLike, fmt: str = "json") -> list[Path]:
    """Write ``atool.answers/v1`` answers as format ``fmt`` exports them; return the paths written."""
    writer = FORMATS.get(fmt)()
    validate(answers, "answers", "the answers to write")
    return writer.write_answers(answers, query_list, Path(out))


def format_of(data: Any, source: str) -> QueryFormat:
    """The registered format whose export ``data`` is; BadInput when none (or several) recognize it."""
    found = [cls for _, cls in FORMATS.items() if cls.recognizes(data)]
    if len(found) == 1:
        return found[0]()
    if found:
        raise BadInput(f"{source} looks like an export of several formats ({', '.join(c.name for c in found)}); convert it to atool.answers/v1")
    if isinstance(data, RawText):
        raise BadInput(data.error)
    if isinstance(data, dict):
        got = f"an object with format {data.get('format')!r}"
    else:
        got = f"a JSON {type(data).__name__}"
    expected = " or ".join(cls.answers_description for _, cls in FORMATS.items())
    raise BadInput(f"{source} is {got}; expected {expected}")


def default_out(fmt: str) -> Path:
    """The output file name a format uses when --out is not given."""
    return Path(FORMATS.get(fmt).default_name)


def default_answers_out(fmt: str) -> Path:
    """The answers file name a format uses when ``atool oracle --out`` is not given."""
    return Path(FORMATS.get(fmt).default_answers_name)


FORMATS.load_plugins(__name__, __path__)

__all__ = [
    "FORMATS", "QueryFormat", "RawText", "write_query_list", "write_answers", "format_of", "default_out", "default_answers_out",
]
