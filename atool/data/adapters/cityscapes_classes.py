"""The Cityscapes class sets (19, 16, 13) and the id -> class-index tables.

* 19 classes: the Cityscapes train classes, in trainId order 0..18. Names,
  ids and trainIds come from ``cityscapesscripts.helpers.labels`` (the
  official table), never from a copy.
* 16 classes: the SYNTHIA -> Cityscapes benchmark set, the 19 without
  terrain, truck and train (ADVENT, LabOR and the active-points paper).
* 13 classes: "mIoU*", the 16 without wall, fence and pole.

Each table is a 256-entry uint8 lookup: ``lut[raw_id]`` is the class index in
the chosen set, 255 (ignore) for anything outside it. Apply one with
``lut[label]`` on a uint8 HxW array.

``ClassSetDataset`` is the shared base of the GTA5, SYNTHIA and Cityscapes
adapters: a ``FolderDataset`` whose class list is one of these sets and whose
labels are mapped through such a table on load.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from atool.data.adapters.folder import IGNORE, FolderDataset, pair_items
from atool.data.adapters.summary import log_summary
from atool.data.images import read_label
from atool.core.errors import BadInput, Mismatch

CLASS_SET_SIZES = (19, 16, 13)


def _cityscapes_labels():
    from cityscapesscripts.helpers.labels import labels

    return labels


def _train_classes() -> list[str]:
    by_train_id = {lab.trainId: lab.name for lab in _cityscapes_labels() if 0 <= lab.trainId < IGNORE}
    if sorted(by_train_id) != list(range(19)):  # pragma: no cover - guards a changed upstream table
        raise RuntimeError(f"cityscapesscripts lists trainIds {sorted(by_train_id)}, expected 0..18")
    return [by_train_id[t] for t in range(19)]


CLASSES_19: list[str] = _train_classes()
DROPPED_FOR_16 = ("terrain", "truck", "train")
CLASSES_16: list[str] = [c for c in CLASSES_19 if c not in DROPPED_FOR_16]
DROPPED_FOR_13 = ("wall", "fence", "pole")
CLASSES_13: list[str] = [c for c in CLASSES_16 if c not in DROPPED_FOR_13]
CLASS_SETS: dict[int, list[str]] = {19: CLASSES_19, 16: CLASSES_16, 13: CLASSES_13}


def check_class_set(class_set: int | str) -> int:
    """The class-set size as an int; anything but 19, 16 or 13 is bad input."""
    try:
        n = int(class_set)
    except (TypeError, ValueError):
        n = -1
    if n not in CLASS_SETS:
        raise BadInput(f"class set {class_set!r} is not one of 19, 16, 13 (Cityscapes, SYNTHIA-16, mIoU* 13)")
    return n


def class_names(class_set: int | str) -> list[str]:
    """The class names of the set, in class-index order."""
    return list(CLASS_SETS[check_class_set(class_set)])


def class_set_of(classes: Sequence[str]) -> int | None:
    """19, 16 or 13 when ``classes`` is exactly that set (names and order), else None."""
    for n, names in CLASS_SETS.items():
        if list(classes) == names:
            return n
    return None


def trainid_lut(class_set: int | str) -> np.ndarray:
    """uint8[256]: Cityscapes trainId (0..18) -> index in the class set; 255 elsewhere."""
    names = class_names(class_set)
    lut = np.full(256, IGNORE, np.uint8)
    for train_id, name in enumerate(CLASSES_19):
        if name in names:
            lut[train_id] = names.index(name)
    return lut


def cityscapes_id_lut(class_set: int | str = 19) -> np.ndarray:
    """uint8[256]: Cityscapes label id (as in ``*_labelIds.png`` and GTA5) -> class index; 255 = ignore."""
    to_train = np.full(256, IGNORE, np.uint8)
    for lab in _cityscapes_labels():
        if 0 <= lab.id < 256 and 0 <= lab.trainId < IGNORE:
            to_train[lab.id] = lab.trainId
    return compose(to_train, class_set)


def compose(raw_to_trainid: np.ndarray, class_set: int | str) -> np.ndarray:
    """Chain a raw-id -> 19-class trainId table with trainId -> class-set index (255 stays 255)."""
    return trainid_lut(class_set)[raw_to_trainid]


def class_index_to_labelid(class_set: int | str = 19) -> np.ndarray:
    """uint8[256]: class index in the set -> Cityscapes label id (for writing ``*_labelIds`` predictions).

    Indices outside the set map to 0 ("unlabeled"), which the official evaluation ignores.
    """
    names = class_names(class_set)
    by_name = {lab.name: lab.id for lab in _cityscapes_labels() if 0 <= lab.trainId < IGNORE}
    out = np.zeros(256, np.uint8)
    for i, name in enumerate(names):
        out[i] = by_name[name]
    return out


def resolve_class_set(class_set: int | str | None, classes: Sequence[str] | None, what: str) -> int:
    """Pick the class set from ``class_set`` and/or an expected class list.

    ``classes`` (e.g. a model's) must be one of the three sets; when both are
    given they must agree. Neither: 19.
    """
    from_classes = None
    if classes is not None:
        from_classes = class_set_of(classes)
        if from_classes is None:
            raise Mismatch(
                f"{what}: the expected classes ({len(classes)}: {', '.join(list(classes)[:4])}...) are none of the "
                f"Cityscapes class sets (19, 16, 13); use a model trained on one of them"
            )
    if class_set is None:
        return from_classes or 19
    n = check_class_set(class_set)
    if from_classes is not None and from_classes != n:
        raise Mismatch(f"{what}: class set {n} was asked for but the expected classes are the {from_classes}-class set")
    return n


class ClassSetDataset(FolderDataset):
    """Base of the GTA5 / SYNTHIA / Cityscapes adapters (same interface as FolderDataset).

    A subclass sets ``kind``, implements ``_layout()`` -> (image dir, label dir,
    label name of an id) and ``_read_raw(path)`` -> uint8 HxW raw ids, and
    ``raw_to_trainid`` (uint8[256], raw id -> 19-class trainId, 255 ignore).
    ``labels`` points at a folder of labels already in class indices of the
    set (e.g. ``atool ingest`` output, ``{id}.png``); they are read as is.
    """

    kind = "?"
    raw_to_trainid: np.ndarray

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        labels: str | os.PathLike | None = None,
        require_labels: bool = False,
        classes: Sequence[str] | None = None,
        class_set: int | str | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise BadInput(f"{self.kind} dataset folder {self.root} does not exist")
        self.class_set = resolve_class_set(class_set, classes, f"{self.kind} dataset {self.root}")
        self.classes = class_names(self.class_set)
        self.class_origin = f"the {self.class_set}-class set"
        self.lut = compose(self.raw_to_trainid, self.class_set)
        image_dir, label_dir, label_name = self._layout()
        self.image_dir = image_dir
        self.external_labels = labels is not None
        if labels is not None:
            label_dir, label_name = Path(labels), (lambda sid: f"{sid}.png")
        self.label_dir = label_dir
        if require_labels and not self.label_dir.is_dir():
            raise BadInput(f"{self.label_dir} does not exist: this command needs labels ({self.kind} layout)")
        self.items = pair_items(self.image_dir, self.label_dir, require_labels=require_labels, label_name=label_name)
        log_summary(self, self.kind, own_labels=not self.external_labels)

    def _layout(self) -> tuple[Path, Path, Callable[[str], str]]:
        raise NotImplementedError

    def _read_raw(self, path: Path) -> np.ndarray:
        raise NotImplementedError

    def _read_label(self, path: Path) -> np.ndarray:
        if self.external_labels:
            return read_label(path)
        return self.lut[self._read_raw(path)]

    def _require_dir(self, path: Path, layout: str) -> Path:
        if not path.is_dir():
            raise BadInput(f"{self.root} has no {path.relative_to(self.root).as_posix()}/ folder (the {self.kind} layout is {layout})")
        return path


__all__ = [
    "CLASSES_19", "CLASSES_16", "CLASSES_13", "CLASS_SETS", "CLASS_SET_SIZES", "ClassSetDataset",
    "check_class_set", "class_names", "class_set_of", "trainid_lut", "cityscapes_id_lut", "compose",
    "class_index_to_labelid", "resolve_class_set",
]
