"""The common in-memory answers: what every query-list format reads its export into.

A format's ``read_answers`` turns its own export (an ``atool.answers/v1``
file, a Label Studio export, ...) into an ``AnswerSet``; ``atool ingest``
consumes only that. The records keep what the export said, unchecked beyond
what the format must understand to convert it (a Label Studio point needs a
numeric position and image size to become a pixel): ingest checks image
paths, sizes, classes and bounds the same way for every format, and counts
what it skips in the set's ``report``, beside what the reader skipped.

``AnswerSet.to_doc`` gives the ``atool.answers/v1`` dict of the records, the
inverse of the ``json`` format's reader, so any export converts to atool's
own answers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# The values of ingest's origin/<stem>.png (who labeled each pixel of labels/<stem>.png), re-exported.
from atool.core.labels import ORIGIN_EXPANDED, ORIGIN_NONE, ORIGIN_ORACLE, ORIGIN_PSEUDO

ANSWERS_FORMAT = "atool.answers/v1"
_MAX_LISTED = 1000  # skipped entries listed one by one; the counts stay exact beyond


@dataclass
class Answer:
    """One answer. ``label`` is a class name, or None where the annotator could not tell;
    ``mask`` (COCO RLE of the whole image) makes it a region answer."""

    id: Any
    x: Any
    y: Any
    label: Any
    mask: dict[str, Any] | None = None


@dataclass
class ImageRecord:
    """The answers of one image, as the export gives them (``image`` relative, '/' separators)."""

    image: Any
    width: Any
    height: Any
    answers: list[Answer] = field(default_factory=list)


@dataclass
class SkipReport:
    """Skipped entries: counts by kind (points, for ``skipped_points``) and the first reasons."""

    counts: dict[str, int] = field(
        default_factory=lambda: {"unknown_image": 0, "unknown_class": 0, "out_of_bounds": 0, "malformed": 0, "size_conflict": 0}
    )
    skipped: list[dict[str, Any]] = field(default_factory=list)
    skipped_total: int = 0

    def skip(self, kind: str, image: str | None, reason: str, points: int = 1, **extra: Any) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + points
        self.skipped_total += 1
        if len(self.skipped) < _MAX_LISTED:
            self.skipped.append({"image": image, "reason": reason, **extra})


@dataclass
class AnswerSet:
    """A format's export, read. ``classes`` is the class list the export carries (None when
    it carries none, as a Label Studio export: ingest then needs ``--classes``);
    ``source_format`` is what ingest.json records as the source's format."""

    source_format: str
    classes: list[str] | None
    images: list[ImageRecord] = field(default_factory=list)
    report: SkipReport = field(default_factory=SkipReport)

    def to_doc(self, classes: list[str] | None = None) -> dict[str, Any]:
        """The records as an ``atool.answers/v1`` dict (``classes`` when the set carries none)."""
        names = self.classes if self.classes is not None else classes
        if names is None:
            raise ValueError("the answers carry no class list; pass classes")
        images = []
        for rec in self.images:
            answers = []
            for a in rec.answers:
                entry: dict[str, Any] = {"id": a.id, "x": a.x, "y": a.y, "label": a.label}
                if a.mask is not None:
                    entry["mask"] = a.mask
                answers.append(entry)
            images.append({"image": rec.image, "width": rec.width, "height": rec.height, "answers": answers})
        return {"format": ANSWERS_FORMAT, "classes": list(names), "images": images}


def is_int(v: Any) -> bool:
    """A whole number that is not a bool."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v: Any) -> bool:
    """A finite int or float that is not a bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def size_problem(width: Any, height: Any) -> str | None:
    """Why ``width`` x ``height`` is not an image size, or None when it is one."""
    if is_int(width) and is_int(height) and width >= 1 and height >= 1:
        return None
    return f"image size {width!r}x{height!r} is not positive whole pixels"


__all__ = [
    "ANSWERS_FORMAT", "ORIGIN_NONE", "ORIGIN_ORACLE", "ORIGIN_PSEUDO", "ORIGIN_EXPANDED",
    "Answer", "ImageRecord", "SkipReport", "AnswerSet", "is_int", "is_num", "size_problem",
]
