"""Turn annotators' answers into sparse training labels.

Input is any registered query-list format's answer export: ``atool.answers/v1``
(from ``atool oracle`` or any tool that writes it), a Label Studio JSON export
of tasks made by the ``labelstudio`` format, ... Each format in
``atool.annotate.formats.FORMATS`` is asked whether it ``recognizes`` the file
and reads it into the common ``AnswerSet`` (atool.annotate.answers); a file no
format recognizes is a one-line error naming what each expects. Output, in
OUT:

  labels/<stem>.png   uint8: the answered class at each point, pseudo labels
                      (when given) elsewhere, 255 everywhere else
  origin/<stem>.png   uint8: 0 nothing, 1 annotator, 2 pseudo label,
                      3 expanded from an annotator's point (``expand``)
  classes.txt         the class list the label values index
  ingest.json         what was written and what was skipped, with reasons
                      (``points`` counts annotator-labeled pixels, clicks and
                      region pixels alike; ``regions``/``region_pixels`` the
                      region answers and the pixels they labeled;
                      ``expanded_pixels`` and ``expansion`` what expansion added)

``<stem>`` is the image's relative path without its suffix. An answer with
a ``mask`` (COCO RLE, the answer to a region query) labels every pixel of
the mask with its class (``atool oracle`` gives one such answer per class
present in a region, so the region's pixels get their exact labels). Annotators win
over pseudo labels; a null answer ("cannot tell") clears the pseudo label at
its pixel, since a person looked there and found it ambiguous. Images with
pseudo labels but no answers still get a label file, so one ingest gives the
whole sparse target set of a round.

With ``expand="superpixel"`` (atool.annotate.expand) each answered point also
labels its superpixel, under a purity safeguard; expanded pixels override
pseudo labels but never a pixel an annotator answered (point, null answer or
region). It needs ``images_root`` to see the images.

Bad entries (unknown image, unknown class, point outside the image, a pseudo
label of the wrong size) are skipped, counted and reported; only an
unreadable file or a wrong top-level shape stops the run.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from atool.ops import rle
from atool.annotate.answers import ORIGIN_EXPANDED, ORIGIN_NONE, ORIGIN_ORACLE, ORIGIN_PSEUDO, AnswerSet, SkipReport
from atool.annotate.collect import Collector, MergedImage, stem_of
from atool.annotate.expand import SuperpixelParams, expand_points, parse_expansion
from atool.annotate.formats import QueryFormat, RawText, format_of
from atool.annotate.formats.atool_json import dumps
from atool.core.errors import BadInput
from atool.core.io import atomic_write_text, read_json, staged_outputs
from atool.data.adapters.folder import IGNORE, read_classes
from atool.data.images import BadImage, list_images, read_image, read_label, write_label

log = logging.getLogger(__name__)

INGEST_FORMAT = "atool.ingest/v1"


def read_answer_data(path: str | os.PathLike) -> Any:
    """An answer file's parsed JSON, or its text as ``RawText`` when it is not JSON (for formats
    whose exports are XML or CSV); a missing or non-UTF-8 file is BadInput."""
    try:
        return read_json(path, "answers file")
    except BadInput as exc:
        try:
            raw = RawText(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            raise exc from None
        raw.error = str(exc)
        return raw


def read_answers(path: str | os.PathLike) -> tuple[QueryFormat, AnswerSet]:
    """(format, AnswerSet) of an answer file, read by the registered format that recognizes it."""
    data = read_answer_data(path)
    fmt = format_of(data, str(path))
    return fmt, fmt.read_answers(data, str(path))


def _read_pseudo(pseudo_dir: Path, stem: str, size: tuple[int, int] | None, n_classes: int, report: SkipReport) -> np.ndarray | None:
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


class _Expander:
    """Applies the superpixel expansion image by image and keeps its tallies for ingest.json."""

    def __init__(self, method: str, params: SuperpixelParams, images_root: Path):
        self.params, self.root = params, images_root
        self.stats: dict[str, Any] = {
            "method": method, "params": params.as_dict(), "images": 0, "superpixels": 0, "pixels": 0, "over_pseudo": 0,
            "rejected": {"conflict": 0, "null": 0, "area": 0, "spread": 0}, "skipped": [],
        }

    def apply(self, entry: MergedImage, label: np.ndarray, origin: np.ndarray, answered: np.ndarray) -> None:
        """Expand ``entry``'s points into ``label``/``origin`` wherever no annotator answered."""
        if not entry.points:
            return
        try:
            image = read_image(self.root / entry.rel)
        except BadImage as exc:
            self.stats["skipped"].append({"image": entry.rel, "reason": str(exc)})
            return
        if image.shape[:2] != label.shape:
            reason = f"image is {image.shape[1]}x{image.shape[0]} but the answers say {label.shape[1]}x{label.shape[0]}"
            self.stats["skipped"].append({"image": entry.rel, "reason": reason})
            return
        yx = np.array(list(entry.points.keys()), dtype=np.int64).reshape(-1, 2)
        vals = np.array([IGNORE if v is None else v for v in entry.points.values()], dtype=np.uint8)
        result = expand_points(image, yx, vals, self.params)
        grown = (result.labels != IGNORE) & ~answered
        self.stats["over_pseudo"] += int((grown & (origin == ORIGIN_PSEUDO)).sum())
        label[grown], origin[grown] = result.labels[grown], ORIGIN_EXPANDED
        self.stats["images"] += 1
        self.stats["superpixels"] += result.superpixels
        self.stats["pixels"] += int(grown.sum())
        for k, v in result.rejected.items():
            self.stats["rejected"][k] += v


def _paint(entry: MergedImage, label: np.ndarray, origin: np.ndarray, totals: dict[str, int]) -> np.ndarray:
    """Write ``entry``'s region and point answers over ``label``/``origin``; return the answered pixels (bool H x W)."""
    answered = np.zeros(label.shape, bool)
    for mask, value in entry.regions:
        m = rle.decode(mask)
        label[m] = IGNORE if value is None else value
        origin[m] = ORIGIN_NONE if value is None else ORIGIN_ORACLE
        answered |= m
        totals["regions"] += 1
        totals["region_pixels"] += 0 if value is None else int(m.sum())
    if entry.points:
        yx = np.array(list(entry.points.keys()), dtype=np.intp).reshape(-1, 2)
        vals = np.array([IGNORE if v is None else v for v in entry.points.values()], dtype=np.uint8)
        label[yx[:, 0], yx[:, 1]] = vals
        origin[yx[:, 0], yx[:, 1]] = np.where(vals == IGNORE, ORIGIN_NONE, ORIGIN_ORACLE).astype(np.uint8)
        answered[yx[:, 0], yx[:, 1]] = True
    return answered


def ingest_answers(
    answers_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    pseudo_dir: str | os.PathLike | None = None,
    images_root: str | os.PathLike | None = None,
    classes: list[str] | str | os.PathLike | None = None,
    expand: str | None = None,
    expand_params: dict[str, Any] | list[str] | None = None,
) -> dict[str, Any]:
    """Write sparse labels from answers (and pseudo labels) into ``out_dir``.

    ``classes`` is a list or a classes.txt path; it fixes the label values and
    is required for exports that carry no class list (Label Studio's).
    ``images_root``, when given, makes answers for images that do not exist
    there skipped. ``expand`` ("superpixel", default None = off) grows each
    answered point to its superpixel, with ``expand_params`` a dict or
    "KEY=VALUE" strings (atool.annotate.expand.SuperpixelParams); it needs
    ``images_root``. Returns the summary that is also written to
    ``out_dir/ingest.json``.
    """
    spec = parse_expansion(expand, expand_params)
    if classes is not None and not isinstance(classes, list):
        classes = read_classes(classes)
    root = Path(images_root) if images_root is not None else None
    if root is not None and not root.is_dir():
        raise BadInput(f"image folder {root} does not exist")
    if spec is not None and root is None:
        raise BadInput(f"expansion {expand!r} needs the images the answers refer to; pass the image root (--images DIR)")
    pseudo = Path(pseudo_dir) if pseudo_dir is not None else None
    if pseudo is not None and not pseudo.is_dir():
        raise BadInput(f"pseudo-label folder {pseudo} does not exist")

    fmt, answer_set = read_answers(answers_path)
    if root is not None:
        fmt.check_images(answer_set, root, str(answers_path))
    if answer_set.classes is None and classes is None:
        raise BadInput(f"a {fmt.title} export does not carry the class list; pass it with --classes FILE (classes.txt)")
    out_classes = list(classes) if classes is not None else list(answer_set.classes or [])
    if len(out_classes) >= IGNORE:
        raise BadInput(f"{len(out_classes)} classes do not fit uint8 labels (at most {IGNORE - 1})")
    report = answer_set.report
    col = Collector(out_classes, answer_set.classes, root, report)
    for record in answer_set.images:
        col.add(record)
    expander = _Expander(str(expand), spec, root) if spec is not None and root is not None else None

    # Staged: nothing appears under out_dir until every file is written, and a crash or a
    # full disk leaves an earlier ingest there untouched (ingest.json is moved in last).
    # labels/ and origin/ are replaced whole, so they must be an earlier ingest's, never a dataset's.
    foreign = [n for n in ("labels", "origin") if (Path(out_dir) / n).exists()]
    if foreign and not (Path(out_dir) / "ingest.json").is_file():
        raise BadInput(f"--out {out_dir} already has {'/ and '.join(foreign)}/ that no `atool ingest` wrote (no ingest.json); "
                       "ingest replaces them whole: give a new or empty folder")
    with staged_outputs(out_dir, last="ingest.json") as out:
        # Always both folders, so that an ingest with no label files replaces an earlier one's.
        (out / "labels").mkdir()
        (out / "origin").mkdir()
        totals = {
            "images": 0, "answered_images": 0, "pseudo_only_images": 0, "points": 0, "pseudo_points": 0, "regions": 0, "region_pixels": 0,
            "expanded_pixels": 0,
        }
        for stem, entry in sorted(col.images.items()):
            size = (entry.height, entry.width)
            label = np.full(size, IGNORE, np.uint8)
            origin = np.zeros(size, np.uint8)
            if pseudo is not None:
                p = _read_pseudo(pseudo, stem, size, len(out_classes), report)
                if p is not None:
                    has = p != IGNORE
                    label[has], origin[has] = p[has], ORIGIN_PSEUDO
            answered = _paint(entry, label, origin, totals)
            if expander is not None:
                expander.apply(entry, label, origin, answered)
            _write_pair(out, stem, label, origin, totals)
            totals["answered_images"] += 1

        if pseudo is not None:
            for path in list_images(pseudo):
                rel = path.relative_to(pseudo).as_posix()
                if not rel.lower().endswith(".png"):
                    continue
                stem = stem_of(rel)
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
            "source_format": answer_set.source_format,
            "classes": out_classes,
            **totals,
            "null_answers": col.null,
            "expansion": expander.stats if expander is not None else None,
            "skipped_points": {k: v for k, v in sorted(report.counts.items()) if not k.startswith("pseudo")},
            "skipped_pseudo": {k: v for k, v in sorted(report.counts.items()) if k.startswith("pseudo")},
            "skipped": report.skipped,
            "skipped_total": report.skipped_total,
            "out": str(out_dir),
        }
        atomic_write_text(out / "ingest.json", dumps(summary))
    _log_summary(report, summary, expander)
    return summary


def _log_summary(report: SkipReport, s: dict[str, Any], expander: _Expander | None) -> None:
    if report.skipped_total:
        first = "; ".join(f"{x['image']}: {x['reason']}" for x in report.skipped[:3])
        nonzero = ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items()) if v) or "none"
        log.warning("ingest: skipped %d item(s) (%s); first: %s", report.skipped_total, nonzero, first)
    if expander is not None:
        e = expander.stats
        if e["skipped"]:
            log.warning("ingest: expansion skipped %d image(s); first: %s: %s", len(e["skipped"]), e["skipped"][0]["image"], e["skipped"][0]["reason"])
        log.info(
            "ingest: expansion labeled %d more pixels from %d superpixels (rejected: %s)",
            e["pixels"], e["superpixels"], ", ".join(f"{k} {v}" for k, v in e["rejected"].items()),
        )
    log.info(
        "ingest: %d label files (%d with answers, %d pseudo only), %d answered points, %d null, %d pseudo points -> %s",
        s["images"], s["answered_images"], s["pseudo_only_images"], s["points"], s["null_answers"], s["pseudo_points"], s["out"],
    )


def _write_pair(out: Path, stem: str, label: np.ndarray, origin: np.ndarray, totals: dict[str, int]) -> None:
    write_label(out / "labels" / f"{stem}.png", label)
    write_label(out / "origin" / f"{stem}.png", origin)
    totals["images"] += 1
    totals["points"] += int((origin == ORIGIN_ORACLE).sum())
    totals["pseudo_points"] += int((origin == ORIGIN_PSEUDO).sum())
    totals["expanded_pixels"] += int((origin == ORIGIN_EXPANDED).sum())


__all__ = [
    "INGEST_FORMAT", "ORIGIN_NONE", "ORIGIN_ORACLE", "ORIGIN_PSEUDO", "ORIGIN_EXPANDED", "ingest_answers", "read_answers", "read_answer_data",
]
