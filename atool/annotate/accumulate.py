"""Labels that grow over active-learning stages.

Each stage's ``atool ingest`` folder holds only that stage's answers. LabOR
retrains on *all* target pixels labeled so far (Shin et al., eq. 6), so the
stages' annotator labels are merged into one folder of the same layout
(labels/, origin/, classes.txt). A pixel labeled in an earlier stage keeps
its label; the query of a later stage excludes it (``run_query(exclude=...)``),
so a merge that finds one labeled twice reports it as a duplicate.
Pixels expanded from a click (origin 3, ``ingest --expand``) are carried over
too, below the clicks: a later click overrides an earlier expansion, an
expansion never overrides a label already there.
Pseudo labels are not carried over: they belong to the model of their stage.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atool.data.adapters.folder import IGNORE, read_classes
from atool.data.images import list_images, read_label, write_label
from atool.annotate.answers import ORIGIN_EXPANDED, ORIGIN_NONE, ORIGIN_ORACLE
from atool.core.errors import BadInput, Mismatch
from atool.core.io import atomic_write_text


@dataclass
class MergeReport:
    images: int = 0  # label files touched by this stage
    new_pixels: int = 0  # annotator pixels added
    duplicate_pixels: int = 0  # annotator pixels already labeled in an earlier stage (kept as they were)
    total_pixels: int = 0  # annotator pixels in the accumulated folder after the merge
    new_expanded: int = 0  # expanded pixels added
    total_expanded: int = 0  # expanded pixels in the accumulated folder after the merge


def _totals(acc: Path) -> tuple[int, int]:
    """(annotator pixels, expanded pixels) of the accumulated folder."""
    if not (acc / "origin").is_dir():
        return 0, 0
    clicks = expanded = 0
    for path in list_images(acc / "origin"):
        origin = read_label(path)
        clicks += int((origin == ORIGIN_ORACLE).sum())
        expanded += int((origin == ORIGIN_EXPANDED).sum())
    return clicks, expanded


def merge_stage_labels(accumulated: str | os.PathLike, stage: str | os.PathLike) -> MergeReport:
    """Add the annotator (and expanded) pixels of the ingest folder ``stage`` to ``accumulated`` (created if absent)."""
    acc, stage = Path(accumulated), Path(stage)
    if (stage / "ingest.json").is_file() and not (stage / "labels").is_dir():
        # A stage whose queries found nothing to ask (e.g. the heads agree everywhere) adds no labels.
        total, expanded = _totals(acc)
        return MergeReport(total_pixels=total, total_expanded=expanded)
    if not (stage / "labels").is_dir() or not (stage / "origin").is_dir():
        raise BadInput(f"{stage} is not an `atool ingest` output folder (labels/ and origin/ expected)")
    classes = read_classes(stage / "classes.txt")
    if (acc / "classes.txt").is_file():
        if read_classes(acc / "classes.txt") != classes:
            raise Mismatch(f"{stage}: its class list differs from the accumulated labels in {acc}")
    else:
        (acc / "labels").mkdir(parents=True, exist_ok=True)
        (acc / "origin").mkdir(parents=True, exist_ok=True)
        atomic_write_text(acc / "classes.txt", "\n".join(classes) + "\n")
    report = MergeReport()
    for label_path in list_images(stage / "labels"):
        rel = label_path.relative_to(stage / "labels")
        origin = read_label(stage / "origin" / rel)
        label = read_label(label_path)
        asked = origin == ORIGIN_ORACLE
        grown = origin == ORIGIN_EXPANDED
        if not (asked.any() or grown.any()):
            continue
        acc_label_path, acc_origin_path = acc / "labels" / rel, acc / "origin" / rel
        if acc_label_path.is_file():
            acc_label, acc_origin = read_label(acc_label_path), read_label(acc_origin_path)
            if acc_label.shape != label.shape:
                raise Mismatch(f"{label_path}: size {label.shape[::-1]} differs from {acc_label_path} {acc_label.shape[::-1]}")
        else:
            acc_label = np.full(label.shape, IGNORE, np.uint8)
            acc_origin = np.full(label.shape, ORIGIN_NONE, np.uint8)
        before = acc_origin == ORIGIN_ORACLE
        fresh = asked & ~before
        fresh_grown = grown & ~before & (acc_origin != ORIGIN_EXPANDED)
        acc_label[fresh] = label[fresh]
        acc_origin[fresh] = ORIGIN_ORACLE
        acc_label[fresh_grown] = label[fresh_grown]
        acc_origin[fresh_grown] = ORIGIN_EXPANDED
        write_label(acc_label_path, acc_label)
        write_label(acc_origin_path, acc_origin)
        report.images += 1
        report.new_pixels += int(fresh.sum())
        report.duplicate_pixels += int((asked & before).sum())
        report.new_expanded += int(fresh_grown.sum())
    report.total_pixels, report.total_expanded = _totals(acc)
    return report
