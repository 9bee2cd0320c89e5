"""Cityscapes as a target (or evaluation) dataset.

    ROOT/leftImg8bit/{split}/{city}/{name}_leftImg8bit.png
    ROOT/gtFine/{split}/{city}/{name}_gtFine_labelIds.png

Sample ids are ``{city}/{name}_leftImg8bit`` (the image's path under
``leftImg8bit/{split}`` without suffix, as `atool query --images
ROOT/leftImg8bit/{split}` names them). Label ids map to the 19, 16 or 13-class
set through the table of ``cityscapesscripts``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from atool.data.adapters.cityscapes_classes import ClassSetDataset, cityscapes_id_lut
from atool.data.adapters.gta5 import read_id_label
from atool.core.errors import BadInput

IMAGE_SUFFIX = "_leftImg8bit"
LABEL_SUFFIX = "_gtFine_labelIds"


def label_name(sid: str) -> str:
    """``city/name_leftImg8bit`` -> ``city/name_gtFine_labelIds.png``."""
    stem = sid[: -len(IMAGE_SUFFIX)] if sid.endswith(IMAGE_SUFFIX) else sid
    return f"{stem}{LABEL_SUFFIX}.png"


class CityscapesDataset(ClassSetDataset):
    """One split of Cityscapes (``split``: train, val, test, ...), labels mapped to the chosen class set."""

    kind = "cityscapes"
    raw_to_trainid = cityscapes_id_lut(19)

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        split: str = "val",
        labels: str | os.PathLike | None = None,
        require_labels: bool = False,
        classes: Sequence[str] | None = None,
        class_set: int | str | None = None,
    ) -> None:
        if not split or "/" in split or "\\" in split or split.startswith("."):
            raise BadInput(f"Cityscapes split {split!r} is not a folder name such as train or val")
        self.split = split
        super().__init__(root, labels=labels, require_labels=require_labels, classes=classes, class_set=class_set)

    def _layout(self) -> tuple[Path, Path, Callable[[str], str]]:
        layout = "ROOT/leftImg8bit/{split}/{city}/*_leftImg8bit.png and ROOT/gtFine/{split}/{city}/*_gtFine_labelIds.png"
        base = self._require_dir(self.root / "leftImg8bit", layout)
        image_dir = base / self.split
        if not image_dir.is_dir():
            splits = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
            raise BadInput(
                f"{base} has no split {self.split!r}; found: {', '.join(splits) or '(none)'} (choose one with split/--split)"
            )
        return image_dir, self.root / "gtFine" / self.split, label_name

    def _read_raw(self, path: Path) -> np.ndarray:
        return read_id_label(path, "Cityscapes")
