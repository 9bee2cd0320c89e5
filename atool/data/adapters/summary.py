"""What a dataset looks like once opened: its kind, class set and share of ignored pixels.

Every command that reads a dataset logs this at INFO (``log_summary``), so a
folder read under the wrong class table shows up in the first lines of output
instead of in a suspiciously good mIoU. The ignored share is measured on an
evenly spaced sample of label files (``SAMPLE`` at most), decoded exactly as
training and evaluation decode them (after any id mapping).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from atool.core.errors import BadInput
from atool.core.labels import IGNORE

log = logging.getLogger("atool.data")

SAMPLE = 8
# Above this share of ignored pixels in an adapter's own labels, the id table is probably the wrong one.
MOSTLY_IGNORED = 0.5


@dataclass(frozen=True)
class LabelStats:
    """Pixels of ``sampled`` label files: ``ignored`` of ``pixels`` are 255 after mapping."""

    sampled: int
    unreadable: int
    pixels: int
    ignored: int

    @property
    def ignored_share(self) -> float:
        return self.ignored / self.pixels if self.pixels else float("nan")


def spread(items: Sequence[Any], k: int = SAMPLE) -> list[Any]:
    """At most ``k`` items, evenly spaced over ``items`` (first and last included), order kept."""
    n = len(items)
    if n <= k:
        return list(items)
    return [items[i] for i in np.linspace(0, n - 1, k).round().astype(int).tolist()]


def label_stats(dataset: Any, k: int = SAMPLE) -> LabelStats:
    """Ignored-pixel counts over up to ``k`` of ``dataset``'s label files (its own ``_read_label``)."""
    paths = spread([label for _, _, label in dataset.items if label is not None], k)
    pixels = ignored = unreadable = 0
    for path in paths:
        try:
            label = dataset._read_label(path)
        except BadInput:
            unreadable += 1
            continue
        pixels += int(label.size)
        ignored += int(np.count_nonzero(label == IGNORE))
    return LabelStats(len(paths) - unreadable, unreadable, pixels, ignored)


def describe_classes(classes: Sequence[str], shown: int = 6) -> str:
    names = ", ".join(classes[:shown]) + (", ..." if len(classes) > shown else "")
    return f"{len(classes)} classes ({names})"


def log_summary(dataset: Any, kind: str, *, own_labels: bool = True) -> LabelStats | None:
    """Log ``dataset``'s kind, class set and ignored share at INFO; None (and nothing read) when INFO is off.

    ``own_labels``: the labels are the dataset's own (not sparse labels from
    elsewhere), so a mostly-ignored sample is worth a warning.
    """
    if not log.isEnabledFor(logging.INFO):
        return None
    stats = label_stats(dataset)
    labeled = dataset.labeled_count()
    if stats.sampled:
        share = f"ignored pixels {stats.ignored_share:.1%} (in {stats.sampled} sampled label file(s))"
    else:
        share = "no readable labels"
    log.info(
        "dataset %s: kind %s, %s, %d of %d image(s) labeled, %s",
        dataset.root, kind, describe_classes(dataset.classes), labeled, len(dataset), share,
    )
    if own_labels and kind != "folder" and stats.sampled and stats.ignored_share > MOSTLY_IGNORED:
        log.warning(
            "dataset %s: %.0f%% of the sampled label pixels map to ignore under the %s id table; "
            "are these really %s labels? (a folder dataset needs classes.txt and the folder: prefix)",
            dataset.root, 100 * stats.ignored_share, kind, kind,
        )
    return stats


__all__ = ["LabelStats", "SAMPLE", "MOSTLY_IGNORED", "spread", "label_stats", "describe_classes", "log_summary"]
