"""The generic folder dataset (DESIGN.md §3).

    ROOT/classes.txt        one class name per line; line number = label value
    ROOT/images/**.png|jpg  RGB images
    ROOT/labels/**.png      uint8 labels with the same relative stem; 255 = ignore

A target pool may have no labels/. Every command reads datasets through here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from atool.data.images import BadImage, list_images, read_image, read_label
from atool.core.errors import BadInput, Mismatch
from atool.core.labels import IGNORE
from atool.data.adapters.summary import log_summary


def read_classes(path: str | os.PathLike) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path} not found: a dataset needs classes.txt with one class name per line")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise BadInput(f"{path} lists no classes")
    if any(not n for n in names):
        raise BadInput(f"{path}: blank line inside the class list")
    if len(set(names)) != len(names):
        raise BadInput(f"{path}: class names repeat")
    if len(names) >= IGNORE:
        raise BadInput(f"{path}: at most {IGNORE - 1} classes fit in uint8 labels, got {len(names)}")
    return names


@dataclass(frozen=True)
class Sample:
    """One item: ``image`` uint8 HxWx3 RGB, ``label`` uint8 HxW or None, ``id`` = relative stem path."""

    image: np.ndarray
    label: np.ndarray | None
    id: str


class FolderDataset:
    """Indexes ROOT/images and (optionally) a label folder; decodes lazily.

    ``labels`` may point elsewhere (e.g. the sparse labels from ``atool ingest``
    or an oracle's ground truth). ``require_labels`` makes a missing label an
    error; otherwise images without a label get ``label=None``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        labels: str | os.PathLike | None = None,
        require_labels: bool = False,
        classes: list[str] | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise BadInput(f"dataset folder {self.root} does not exist")
        self.image_dir = self.root / "images"
        if not self.image_dir.is_dir():
            raise BadInput(f"{self.root} has no images/ folder (expected ROOT/images, ROOT/labels, ROOT/classes.txt)")
        if classes is None:
            classes = read_classes(self.root / "classes.txt")
        self.classes = list(classes)
        self.label_dir = Path(labels) if labels is not None else self.root / "labels"
        if require_labels and not self.label_dir.is_dir():
            raise BadInput(f"{self.label_dir} does not exist: this command needs labels")
        self.items: list[tuple[str, Path, Path | None]] = pair_items(
            self.image_dir, self.label_dir, require_labels=require_labels
        )
        log_summary(self, "folder", own_labels=labels is None)

    # Where the class list came from, for error messages; adapters name their class set.
    class_origin = "classes.txt"

    def _read_label(self, path: Path) -> np.ndarray:
        """Decode one label file into class indices (uint8 HxW, 255 = ignore); adapters map their ids here."""
        return read_label(path)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.items)

    def labeled_count(self) -> int:
        return sum(1 for _, _, label in self.items if label is not None)

    def load(self, index: int) -> Sample:
        sid, image_path, label_path = self.items[index]
        image = read_image(image_path)
        label = None
        if label_path is not None:
            label = self._read_label(label_path)
            if label.shape != image.shape[:2]:
                raise Mismatch(
                    f"{label_path}: label is {label.shape[1]}x{label.shape[0]} but image "
                    f"{image_path.name} is {image.shape[1]}x{image.shape[0]}; they must match"
                )
            bad = (label != IGNORE) & (label >= self.num_classes)
            if bad.any():
                values = sorted(set(np.unique(label[bad]).tolist()))[:5]
                raise BadInput(
                    f"{label_path}: label values {values} are outside the {self.num_classes} classes "
                    f"of {self.class_origin} (valid: 0..{self.num_classes - 1} and 255)"
                )
        return Sample(image=image, label=label, id=sid)

    def check_all(self) -> list[tuple[str, str]]:
        """Decode every item once; return (id, reason) for the ones that fail."""
        bad = []
        for i in range(len(self)):
            try:
                self.load(i)
            except BadInput as exc:
                bad.append((self.items[i][0], str(exc)))
        return bad


def pair_items(
    image_dir: Path,
    label_dir: Path,
    *,
    require_labels: bool,
    label_name: Callable[[str], str] = lambda sid: f"{sid}.png",
) -> list[tuple[str, Path, Path | None]]:
    """Index the images under ``image_dir`` as (id, image path, label path or None).

    The id is the image's path relative to ``image_dir`` without suffix, with
    '/' separators; ``label_name(id)`` is its label's path relative to
    ``label_dir``. With ``require_labels`` a missing label is bad input naming
    the count and the first one.
    """
    images = list_images(image_dir)
    if not images:
        raise BadInput(f"{image_dir} holds no images (png, jpg, jpeg, bmp, tif)")
    items: list[tuple[str, Path, Path | None]] = []
    missing = []
    for path in images:
        sid = path.relative_to(image_dir).with_suffix("").as_posix()
        label: Path | None = label_dir / label_name(sid)
        if not label.is_file():
            if require_labels:
                missing.append(label_name(sid))
            label = None
        items.append((sid, path, label))
    if missing:
        raise BadInput(
            f"{len(missing)} of {len(images)} images in {image_dir} have no label in {label_dir} "
            f"(first: {missing[0]})"
        )
    return items


def require_same_classes(expected: list[str], got: list[str], what: str) -> None:
    if list(expected) != list(got):
        raise Mismatch(
            f"{what}: class lists differ (model has {len(expected)}: {', '.join(expected[:6])}"
            f"{'...' if len(expected) > 6 else ''}; data has {len(got)}: {', '.join(got[:6])}"
            f"{'...' if len(got) > 6 else ''})"
        )


__all__ = ["FolderDataset", "Sample", "pair_items", "read_classes", "require_same_classes", "IGNORE", "BadImage"]
