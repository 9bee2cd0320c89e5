"""Checking and merging answers per image, for ingest.

``Collector.add`` takes an ``AnswerSet`` record (atool.annotate.answers) and
keeps, per image stem, the answers that can be used: the image path is
relative and inside the image root (and exists there when a root is given),
the size is whole pixels and agrees with earlier answers for the image, the
class is in the class list (and in the export's own, when it carries one),
the point lies in the image, the region mask decodes to the image's size.
Everything else is skipped and counted in the ``SkipReport``, by kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from atool.ops import rle
from atool.annotate.answers import ImageRecord, SkipReport, is_int, size_problem
from atool.annotate.paths import answer_image_path
from atool.data.images import max_image_pixels
from atool.core.errors import BadInput


@dataclass
class MergedImage:
    """Answers gathered for one image; a label is a class index or None (null answer)."""

    rel: str
    width: int
    height: int
    points: dict[tuple[int, int], int | None] = field(default_factory=dict)
    regions: list[tuple[dict[str, Any], int | None]] = field(default_factory=list)  # (RLE mask, class or None)


def safe_rel(rel: Any) -> str | None:
    """A relative '/' path inside the output folder, or None (absolute, '..', empty, not a string)."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\0" in rel:
        return None
    if rel.startswith("/") or any(part in ("", ".", "..") for part in rel.split("/")):
        return None
    return rel


def stem_of(rel: str) -> str:
    """The image's relative path without its suffix: the name of its label files."""
    return PurePosixPath(rel).with_suffix("").as_posix()


class Collector:
    """Merges an AnswerSet's records per image, checking image, size, class and bounds."""

    def __init__(self, classes: list[str], answer_classes: list[str] | None, images_root: Path | None, report: SkipReport):
        self.index = {name: i for i, name in enumerate(classes)}
        self.answer_classes = set(answer_classes) if answer_classes is not None else None
        self.images_root = images_root
        self.report = report
        self.images: dict[str, MergedImage] = {}
        self.null = 0

    def add(self, record: ImageRecord) -> None:
        entry = self.image(record.image, record.width, record.height, len(record.answers))
        if entry is None:
            return
        for a in record.answers:
            if a.mask is not None:
                self.region(entry, a.mask, a.label, a.id)
            else:
                self.point(entry, a.x, a.y, a.label, a.id)

    def image(self, rel_raw: Any, width: Any, height: Any, npoints: int) -> MergedImage | None:
        rel, why = answer_image_path(rel_raw, self.images_root)  # absolute, '..', symlink escape, missing
        if rel is None:
            self.report.skip("unknown_image", str(rel_raw), why, npoints)
            return None
        problem = size_problem(width, height)
        if problem is None and width * height > max_image_pixels():  # ingest allocates label maps of this size
            problem = f"image size {width}x{height} is over the {max_image_pixels()}-pixel limit (ATOOL_MAX_IMAGE_PIXELS)"
        if problem is not None:
            self.report.skip("malformed", rel, problem, npoints)
            return None
        key = stem_of(rel)
        entry = self.images.get(key)
        if entry is None:
            entry = self.images[key] = MergedImage(rel, int(width), int(height))
        elif (entry.width, entry.height) != (width, height):
            self.report.skip("size_conflict", rel, f"answered as {width}x{height} here but {entry.width}x{entry.height} before", npoints)
            return None
        return entry

    def region(self, entry: MergedImage, mask: Any, name: Any, qid: Any) -> None:
        """A region answer: ``mask`` is a COCO RLE of the image; all its pixels get ``name``."""
        try:
            decoded_area = rle.area(mask) if isinstance(mask, dict) and "counts" in mask else None
            size = mask.get("size") if isinstance(mask, dict) else None
            if decoded_area is None or list(size or []) != [entry.height, entry.width]:
                raise BadInput(f"mask size {size!r} is not the image's [{entry.height}, {entry.width}]")
            rle.decode(mask)  # validates the counts against the size
        except BadInput as exc:
            self.report.skip("malformed", entry.rel, f"region mask unusable: {exc}", id=qid)
            return
        usable, cls = self._class_of(entry, name, qid)
        if usable:
            entry.regions.append((mask, cls))

    def point(self, entry: MergedImage, x: Any, y: Any, name: Any, qid: Any) -> None:
        if not (is_int(x) and is_int(y)):
            self.report.skip("malformed", entry.rel, f"point ({x!r}, {y!r}) is not whole pixels", id=qid)
            return
        if not (0 <= x < entry.width and 0 <= y < entry.height):
            self.report.skip("out_of_bounds", entry.rel, f"point ({x}, {y}) lies outside {entry.width}x{entry.height}", id=qid)
            return
        usable, cls = self._class_of(entry, name, qid)
        if usable:
            entry.points[(y, x)] = cls

    def _class_of(self, entry: MergedImage, name: Any, qid: Any) -> tuple[bool, int | None]:
        """(usable, class index); a null label ("can't tell") is usable with index None and counted,
        an unknown class is skipped and reported."""
        if name is None:
            self.null += 1
            return True, None
        if isinstance(name, str) and name in self.index and (self.answer_classes is None or name in self.answer_classes):
            return True, self.index[name]
        self.report.skip("unknown_class", entry.rel, f"class {name!r} is not in the class list", id=qid)
        return False, None


__all__ = ["MergedImage", "Collector", "safe_rel", "stem_of"]
