"""Turn annotators' answers into sparse training labels.

Input is either ``atool.answers/v1`` (from ``atool oracle`` or any tool that
writes it) or a Label Studio JSON export of tasks made by the ``labelstudio``
query format; the two are told apart by their top-level shape. Output, in
OUT:

  labels/<stem>.png   uint8: the answered class at each point, pseudo labels
                      (when given) elsewhere, 255 everywhere else
  origin/<stem>.png   uint8: 0 nothing, 1 annotator, 2 pseudo label
  classes.txt         the class list the label values index
  ingest.json         what was written and what was skipped, with reasons
                      (``points`` counts annotator-labeled pixels, clicks and
                      region pixels alike; ``regions``/``region_pixels`` the
                      region answers and the pixels they labeled)

``<stem>`` is the image's relative path without its suffix. An answer with
a ``mask`` (COCO RLE, the answer to a region query) labels every pixel of
the mask with its class (``atool oracle`` gives one such answer per class
present in a region, so the region's pixels get their exact labels). Annotators win
over pseudo labels; a null answer ("cannot tell") clears the pseudo label at
its pixel, since a person looked there and found it ambiguous. Images with
pseudo labels but no answers still get a label file, so one ingest gives the
whole sparse target set of a round.

Bad entries (unknown image, unknown class, point outside the image, a pseudo
label of the wrong size) are skipped, counted and reported; only an
unreadable file or a wrong top-level shape stops the run.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np

from atool.data.adapters.folder import IGNORE, read_classes
from atool.data.images import BadImage, list_images, read_label, write_label
from atool.annotate import rle
from atool.annotate.formats.atool_json import dumps
from atool.annotate.formats.labelstudio import LOCAL_FILES_PREFIX
from atool.core.io import read_json
from atool.core.errors import BadInput
from atool.core.io import atomic_write_text
from atool.core.schemas import validate

log = logging.getLogger(__name__)

INGEST_FORMAT = "atool.ingest/v1"
ORIGIN_NONE, ORIGIN_ORACLE, ORIGIN_PSEUDO = 0, 1, 2
_MAX_LISTED = 1000  # skipped entries listed one by one; the counts stay exact beyond


@dataclass
class _ImageAnswers:
    """Answers gathered for one image; ``label`` is a class index or None (null answer)."""

    rel: str
    width: int
    height: int
    points: dict[tuple[int, int], int | None] = field(default_factory=dict)
    regions: list[tuple[dict[str, Any], int | None]] = field(default_factory=list)  # (RLE mask, class or None)


@dataclass
class _Report:
    counts: dict[str, int] = field(
        default_factory=lambda: {
            "unknown_image": 0, "unknown_class": 0, "out_of_bounds": 0, "malformed": 0, "size_conflict": 0,
        }
    )
    skipped: list[dict[str, Any]] = field(default_factory=list)
    skipped_total: int = 0

    def skip(self, kind: str, image: str | None, reason: str, points: int = 1, **extra: Any) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + points
        self.skipped_total += 1
        if len(self.skipped) < _MAX_LISTED:
            self.skipped.append({"image": image, "reason": reason, **extra})


def _safe_rel(rel: Any) -> str | None:
    """A relative '/' path inside the output folder, or None (absolute, '..', empty, not a string)."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\0" in rel:
        return None
    if rel.startswith("/") or any(part in ("", ".", "..") for part in rel.split("/")):
        return None
    return rel


def _stem(rel: str) -> str:
    return PurePosixPath(rel).with_suffix("").as_posix()


class _Collector:
    """Merges answers per image, checking image, class and bounds."""

    def __init__(self, classes: list[str], answer_classes: list[str] | None, images_root: Path | None, report: _Report):
        self.index = {name: i for i, name in enumerate(classes)}
        self.answer_classes = set(answer_classes) if answer_classes is not None else None
        self.images_root = images_root
        self.report = report
        self.images: dict[str, _ImageAnswers] = {}
        self.null = 0

    def image(self, rel_raw: Any, width: Any, height: Any, npoints: int) -> _ImageAnswers | None:
        rel = _safe_rel(rel_raw)
        if rel is None:
            self.report.skip("unknown_image", str(rel_raw), "image path must be relative, inside the image root", npoints)
            return None
        if self.images_root is not None and not (self.images_root / rel).is_file():
            self.report.skip("unknown_image", rel, f"no such image under {self.images_root}", npoints)
            return None
        if not (_is_int(width) and _is_int(height) and width >= 1 and height >= 1):
            self.report.skip("malformed", rel, f"image size {width!r}x{height!r} is not positive whole pixels", npoints)
            return None
        key = _stem(rel)
        entry = self.images.get(key)
        if entry is None:
            entry = self.images[key] = _ImageAnswers(rel, int(width), int(height))
        elif (entry.width, entry.height) != (width, height):
            self.report.skip("size_conflict", rel, f"answered as {width}x{height} here but {entry.width}x{entry.height} before", npoints)
            return None
        return entry

    def region(self, entry: _ImageAnswers, mask: Any, name: Any, qid: Any) -> None:
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

    def point(self, entry: _ImageAnswers, x: int, y: int, name: Any, qid: Any) -> None:
        if not (0 <= x < entry.width and 0 <= y < entry.height):
            self.report.skip("out_of_bounds", entry.rel, f"point ({x}, {y}) lies outside {entry.width}x{entry.height}", id=qid)
            return
        usable, cls = self._class_of(entry, name, qid)
        if usable:
            entry.points[(y, x)] = cls

    def _class_of(self, entry: _ImageAnswers, name: Any, qid: Any) -> tuple[bool, int | None]:
        """(usable, class index); a null label ("can't tell") is usable with index None and counted,
        an unknown class is skipped and reported."""
        if name is None:
            self.null += 1
            return True, None
        if isinstance(name, str) and name in self.index and (self.answer_classes is None or name in self.answer_classes):
            return True, self.index[name]
        self.report.skip("unknown_class", entry.rel, f"class {name!r} is not in the class list", id=qid)
        return False, None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _collect_atool(doc: dict[str, Any], classes: list[str] | None, images_root: Path | None, report: _Report) -> tuple[list[str], _Collector]:
    validate(doc, "answers", "answers file")
    answer_classes = list(doc["classes"])
    out_classes = list(classes) if classes is not None else answer_classes
    col = _Collector(out_classes, answer_classes, images_root, report)
    for item in doc["images"]:
        entry = col.image(item["image"], item["width"], item["height"], len(item["answers"]))
        if entry is None:
            continue
        for a in item["answers"]:
            if "mask" in a:
                col.region(entry, a["mask"], a["label"], a["id"])
            else:
                col.point(entry, a["x"], a["y"], a["label"], a["id"])
    return out_classes, col


def _task_image(task: dict[str, Any]) -> Any:
    data = task.get("data")
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("atool_image"), str):
        return data["atool_image"]
    url = data.get("image")
    if not isinstance(url, str):
        return None
    if LOCAL_FILES_PREFIX in url:
        return unquote(url.split(LOCAL_FILES_PREFIX, 1)[1])
    return unquote(urlparse(url).path).lstrip("/") or None


def _latest_annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    """The newest annotation that was not cancelled (by updated_at, then created_at, then id, then position)."""
    anns = task.get("annotations")
    if not isinstance(anns, list):
        return None
    live = [(i, a) for i, a in enumerate(anns) if isinstance(a, dict) and not a.get("was_cancelled")]
    if not live:
        return None

    def key(item: tuple[int, dict[str, Any]]) -> tuple[str, str, float, int]:
        i, a = item
        aid = a.get("id")
        return (str(a.get("updated_at") or ""), str(a.get("created_at") or ""), float(aid) if _is_num(aid) else -1.0, i)

    return max(live, key=key)[1]


def _collect_labelstudio(tasks: list[Any], classes: list[str] | None, images_root: Path | None, report: _Report) -> tuple[list[str], _Collector]:
    if classes is None:
        raise BadInput("a Label Studio export does not carry the class list; pass it with --classes FILE (classes.txt)")
    col = _Collector(list(classes), None, images_root, report)
    for n, task in enumerate(tasks):
        if not isinstance(task, dict):
            report.skip("malformed", None, f"task {n} is not an object")
            continue
        rel = _task_image(task)
        ann = _latest_annotation(task)
        if ann is None:
            continue  # not annotated yet, or every annotation cancelled: nothing to learn
        results = [r for r in ann.get("result") or [] if isinstance(r, dict) and r.get("type") == "keypointlabels"]
        if not results:
            continue
        sizes = {(r.get("original_width"), r.get("original_height")) for r in results}
        if len(sizes) != 1:
            report.skip("size_conflict", str(rel), f"results disagree on the image size: {sorted(map(str, sizes))}", len(results))
            continue
        width, height = sizes.pop()
        if rel is None:
            report.skip("unknown_image", None, f"task {n} names no image (data.atool_image or data.image)", len(results))
            continue
        entry = col.image(rel, width, height, len(results))
        if entry is None:
            continue
        for r in results:
            value = r.get("value")
            qid = r.get("id")
            if not isinstance(value, dict) or not _is_num(value.get("x")) or not _is_num(value.get("y")):
                report.skip("malformed", entry.rel, "keypoint result without numeric value.x / value.y", id=qid)
                continue
            px, py = value["x"], value["y"]
            if not (0.0 <= px <= 100.0 and 0.0 <= py <= 100.0):
                report.skip("out_of_bounds", entry.rel, f"point at ({px}%, {py}%) lies outside the image", id=qid)
                continue
            x = min(int(math.floor(px / 100.0 * entry.width)), entry.width - 1)
            y = min(int(math.floor(py / 100.0 * entry.height)), entry.height - 1)
            names = value.get("keypointlabels")
            if not isinstance(names, list) or len(names) > 1:
                report.skip("malformed", entry.rel, f"keypointlabels must list at most one class, got {names!r}", id=qid)
                continue
            col.point(entry, x, y, names[0] if names else None, qid)
    return list(classes), col


def _read_pseudo(pseudo_dir: Path, stem: str, size: tuple[int, int] | None, n_classes: int, report: _Report) -> np.ndarray | None:
    """Valid pseudo labels of one image as uint8 H x W (255 = none), or None when absent or unusable."""
    path = pseudo_dir / f"{stem}.png"
    if not path.is_file():
        return None
    try:
        pseudo = read_label(path)
    except BadImage as exc:
        report.skip("pseudo_unreadable", stem, str(exc))
        return None
    if size is not None and pseudo.shape != size:
        report.skip(
            "pseudo_size", stem, f"pseudo label {path} is {pseudo.shape[1]}x{pseudo.shape[0]} but the answers say {size[1]}x{size[0]}"
        )
        return None
    bad = (pseudo != IGNORE) & (pseudo >= n_classes)
    if bad.any():
        report.counts["pseudo_out_of_range"] = report.counts.get("pseudo_out_of_range", 0) + int(bad.sum())
        pseudo = np.where(bad, np.uint8(IGNORE), pseudo)
    return pseudo


def ingest_answers(
    answers_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    pseudo_dir: str | os.PathLike | None = None,
    images_root: str | os.PathLike | None = None,
    classes: list[str] | str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Write sparse labels from answers (and pseudo labels) into ``out_dir``.

    ``classes`` is a list or a classes.txt path; it fixes the label values and
    is required for Label Studio exports. ``images_root``, when given, makes
    answers for images that do not exist there skipped. Returns the summary
    that is also written to ``out_dir/ingest.json``.
    """
    if classes is not None and not isinstance(classes, list):
        classes = read_classes(classes)
    root = Path(images_root) if images_root is not None else None
    if root is not None and not root.is_dir():
        raise BadInput(f"image folder {root} does not exist")
    pseudo = Path(pseudo_dir) if pseudo_dir is not None else None
    if pseudo is not None and not pseudo.is_dir():
        raise BadInput(f"pseudo-label folder {pseudo} does not exist")

    doc = read_json(answers_path, "answers file")
    report = _Report()
    if isinstance(doc, dict) and doc.get("format") == "atool.answers/v1":
        source_format = "atool.answers/v1"
        out_classes, col = _collect_atool(doc, classes, root, report)
    elif isinstance(doc, list):
        source_format = "labelstudio"
        out_classes, col = _collect_labelstudio(doc, classes, root, report)
    else:
        got = f"an object with format {doc.get('format')!r}" if isinstance(doc, dict) else f"a JSON {type(doc).__name__}"
        raise BadInput(
            f"{answers_path} is {got}; expected atool.answers/v1 (from `atool oracle`) or a Label Studio JSON export (a list of tasks)"
        )
    if len(out_classes) >= IGNORE:
        raise BadInput(f"{len(out_classes)} classes do not fit uint8 labels (at most {IGNORE - 1})")

    out = Path(out_dir)
    totals = {"images": 0, "answered_images": 0, "pseudo_only_images": 0, "points": 0, "pseudo_points": 0, "regions": 0, "region_pixels": 0}
    for stem, entry in sorted(col.images.items()):
        size = (entry.height, entry.width)
        label = np.full(size, IGNORE, np.uint8)
        origin = np.zeros(size, np.uint8)
        if pseudo is not None:
            p = _read_pseudo(pseudo, stem, size, len(out_classes), report)
            if p is not None:
                has = p != IGNORE
                label[has], origin[has] = p[has], ORIGIN_PSEUDO
        for mask, value in entry.regions:
            m = rle.decode(mask)
            label[m] = IGNORE if value is None else value
            origin[m] = ORIGIN_NONE if value is None else ORIGIN_ORACLE
            totals["regions"] += 1
            totals["region_pixels"] += 0 if value is None else int(m.sum())
        if entry.points:
            yx = np.array(list(entry.points.keys()), dtype=np.intp).reshape(-1, 2)
            vals = np.array([IGNORE if v is None else v for v in entry.points.values()], dtype=np.uint8)
            label[yx[:, 0], yx[:, 1]] = vals
            origin[yx[:, 0], yx[:, 1]] = np.where(vals == IGNORE, ORIGIN_NONE, ORIGIN_ORACLE).astype(np.uint8)
        _write_pair(out, stem, label, origin, totals)
        totals["answered_images"] += 1

    if pseudo is not None:
        for path in list_images(pseudo):
            rel = path.relative_to(pseudo).as_posix()
            if not rel.lower().endswith(".png"):
                continue
            stem = _stem(rel)
            if stem in col.images:
                continue
            p = _read_pseudo(pseudo, stem, None, len(out_classes), report)
            if p is None:
                continue
            has = p != IGNORE
            _write_pair(out, stem, p, np.where(has, ORIGIN_PSEUDO, ORIGIN_NONE).astype(np.uint8), totals)
            totals["pseudo_only_images"] += 1

    atomic_write_text(out / "classes.txt", "".join(f"{c}\n" for c in out_classes))
    summary = {
        "format": INGEST_FORMAT,
        "source": str(answers_path),
        "source_format": source_format,
        "classes": out_classes,
        **totals,
        "null_answers": col.null,
        "skipped_points": {k: v for k, v in sorted(report.counts.items()) if not k.startswith("pseudo")},
        "skipped_pseudo": {k: v for k, v in sorted(report.counts.items()) if k.startswith("pseudo")},
        "skipped": report.skipped,
        "skipped_total": report.skipped_total,
        "out": str(out),
    }
    atomic_write_text(out / "ingest.json", dumps(summary))
    if report.skipped_total:
        first = "; ".join(f"{s['image']}: {s['reason']}" for s in report.skipped[:3])
        log.warning("ingest: skipped %d item(s) (%s); first: %s", report.skipped_total, _nonzero(report.counts), first)
    log.info(
        "ingest: %d label files (%d with answers, %d pseudo only), %d answered points, %d null, %d pseudo points -> %s",
        totals["images"], totals["answered_images"], totals["pseudo_only_images"], totals["points"], col.null, totals["pseudo_points"], out,
    )
    return summary


def _nonzero(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if v) or "none"


def _write_pair(out: Path, stem: str, label: np.ndarray, origin: np.ndarray, totals: dict[str, int]) -> None:
    write_label(out / "labels" / f"{stem}.png", label)
    write_label(out / "origin" / f"{stem}.png", origin)
    totals["images"] += 1
    totals["points"] += int((origin == ORIGIN_ORACLE).sum())
    totals["pseudo_points"] += int((origin == ORIGIN_PSEUDO).sum())
