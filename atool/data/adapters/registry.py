"""Dataset kinds and ``open_dataset``: one call that opens any supported layout.

A spec is a folder, optionally prefixed with its kind: ``gta5:/data/GTA5``,
``synthia:/data/RAND_CITYSCAPES``, ``cityscapes:/data/cityscapes``,
``folder:/data/mine``. Without a prefix the layout decides:

    classes.txt                    -> folder
    RGB/ and GT/LABELS/            -> synthia
    leftImg8bit/ (and gtFine/)     -> cityscapes
    images/ and labels/, no classes.txt -> gta5 (folder when the caller supplies ``classes``
                                           that are not a Cityscapes class set)
    images/ only, no classes.txt   -> folder when the caller supplies ``classes``

Detection never guesses: GTA5 is only chosen on positive evidence from its
labels (``gta5_evidence``: every sampled value is a Cityscapes id, 0..33, and
after the id table most pixels are not ignored). A folder of 11-class labels
without classes.txt is otherwise read as GTA5, trains on two classes and
scores a high mIoU over the few classes left. Anything else, or a folder
matching two kinds, is bad input that lists the kinds. The kind chosen is
logged at INFO.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from atool.data.adapters.cityscapes import CityscapesDataset
from atool.data.adapters.cityscapes_classes import cityscapes_id_lut, class_set_of
from atool.data.adapters.folder import FolderDataset
from atool.data.adapters.gta5 import GTA5Dataset, read_id_label
from atool.data.adapters.summary import spread
from atool.data.adapters.synthia import SynthiaDataset
from atool.core.errors import BadInput
from atool.core.labels import IGNORE
from atool.core.registry import Registry
from atool.data.images import list_images

log = logging.getLogger("atool.data")

DATASETS: Registry[type] = Registry("dataset kind")
DATASETS.register("folder")(FolderDataset)
DATASETS.register("gta5")(GTA5Dataset)
DATASETS.register("synthia")(SynthiaDataset)
DATASETS.register("cityscapes")(CityscapesDataset)

_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9_]+):(.*)$")


def _is_dir(root: Path, *parts: str) -> bool:
    return root.joinpath(*parts).is_dir()


def _gta5_like(root: Path, classes: Sequence[str] | None) -> bool:
    plain = not (root / "classes.txt").is_file() and _is_dir(root, "images") and _is_dir(root, "labels")
    return plain and (classes is None or class_set_of(classes) is not None)


def _folder_like(root: Path, classes: Sequence[str] | None) -> bool:
    if (root / "classes.txt").is_file():
        return True
    if classes is None or not _is_dir(root, "images"):
        return False
    # The caller brings the class list (as the training loop does for a target pool): the generic
    # layout, unless labels/ is there and the classes are a Cityscapes set (then it is GTA5's).
    return class_set_of(classes) is None or not _is_dir(root, "labels")


_DETECT: dict[str, Callable[[Path, Sequence[str] | None], bool]] = {
    "folder": _folder_like,
    "synthia": lambda root, _c: _is_dir(root, "RGB") and _is_dir(root, "GT", "LABELS"),
    "cityscapes": lambda root, _c: _is_dir(root, "leftImg8bit"),
    "gta5": _gta5_like,
}

_LAYOUTS = (
    "folder (classes.txt, images/, labels/), gta5 (images/, labels/ with Cityscapes ids), "
    "synthia (RGB/, GT/LABELS/), cityscapes (leftImg8bit/, gtFine/)"
)


# Cityscapes label ids run 0..33 (``cityscapesscripts``; license plate, -1, never reaches a labelIds PNG).
CITYSCAPES_MAX_ID = 33
# Share of sampled label pixels allowed outside 0..33 (a stray value in a real GTA5 frame), and the
# most that may map to ignore, for a folder to count as GTA5 without being told.
OUTSIDE_TOLERANCE = 0.001
MAX_IGNORED = 0.5


def gta5_evidence(root: Path) -> tuple[bool, str]:
    """(whether ``root/labels`` looks like GTA5's Cityscapes-id labels, what was seen).

    Reads an evenly spaced sample of the label PNGs as raw ids.
    """
    paths = spread([p for p in list_images(root / "labels") if p.suffix.lower() == ".png"])
    if not paths:
        return False, "labels/ holds no PNG label files"
    lut = cityscapes_id_lut(19)
    pixels = outside = ignored = 0
    low, high = 255, 0
    for path in paths:
        try:
            raw = read_id_label(path, "GTA5")
        except BadInput:
            continue
        if raw.size == 0:
            continue
        pixels += int(raw.size)
        outside += int(np.count_nonzero(raw > CITYSCAPES_MAX_ID))
        ignored += int(np.count_nonzero(lut[raw] == IGNORE))
        low, high = min(low, int(raw.min())), max(high, int(raw.max()))
    if pixels == 0:
        return False, "none of the sampled label files decodes as an 8-bit id map"
    values = f"label values {low}..{high} in {len(paths)} sampled file(s)"
    if outside / pixels > OUTSIDE_TOLERANCE:
        return False, f"{values}, beyond the Cityscapes ids 0..{CITYSCAPES_MAX_ID}"
    share = ignored / pixels
    if share > MAX_IGNORED:
        return False, f"{values}; read as Cityscapes ids, {share:.0%} of the pixels would be ignored"
    return True, f"{values}, {share:.0%} ignored as Cityscapes ids"


def _no_class_list(root: Path, seen: str) -> BadInput:
    parent = root.parent / "classes.txt"
    hint = f"; note {parent} one level up is not read, copy it into {root}" if parent.is_file() else ""
    return BadInput(
        f"{root} has images/ and labels/ but no classes.txt, and its labels are not GTA5's ({seen}): "
        f"add classes.txt (one class name per line, line n names label value n) to {root}, "
        f"or prefix the path with its kind: folder:{root} (with classes.txt), gta5:{root} (Cityscapes ids), "
        f"synthia:, cityscapes:{hint}"
    )


def split_spec(spec: str | os.PathLike) -> tuple[str | None, Path]:
    """``KIND:PATH`` -> (kind, path); a plain path (or an existing path with a colon) -> (None, path)."""
    text = os.fspath(spec)
    m = _PREFIX.match(text)
    if m and not Path(text).exists():
        DATASETS.get(m.group(1))  # unknown kind: bad input listing the valid ones
        return m.group(1), Path(m.group(2))
    return None, Path(text)


def detect_kind(root: Path, classes: Sequence[str] | None = None) -> str:
    """The kind whose layout ``root`` has; exactly one must match."""
    if not root.is_dir():
        raise BadInput(f"dataset folder {root} does not exist")
    found = [kind for kind, test in _DETECT.items() if test(root, classes)]
    if found == ["gta5"]:
        ok, seen = gta5_evidence(root)
        if not ok:
            raise _no_class_list(root, seen)
        log.info("dataset %s: detected kind gta5 (%s)", root, seen)
        return "gta5"
    if len(found) == 1:
        log.info("dataset %s: detected kind %s", root, found[0])
        return found[0]
    what = f"matches several layouts ({', '.join(found)})" if found else "matches no known layout"
    raise BadInput(
        f"{root} {what}; prefix the path with its kind, one of {_LAYOUTS}, e.g. gta5:{root}; "
        "a folder dataset needs classes.txt (one class name per line)"
    )


def open_dataset(
    spec: str | os.PathLike,
    *,
    labels: str | os.PathLike | None = None,
    require_labels: bool = False,
    classes: Sequence[str] | None = None,
    class_set: int | str | None = None,
    split: str | None = None,
) -> FolderDataset:
    """Open ``spec`` (``[KIND:]PATH``) as a dataset with the FolderDataset interface.

    ``labels``: a folder of labels in class indices that replaces the dataset's own.
    ``classes``: the expected class list; a folder dataset uses it instead of
    classes.txt, an adapter picks the matching 19/16/13 set (anything else is a Mismatch).
    ``class_set``: 19, 16 or 13 for the adapters (ignored by folder datasets);
    None: from ``classes`` if given, else 19.
    ``split``: the Cityscapes split; None: ``val`` when labels are required
    (evaluation), else ``train`` (a target pool).
    """
    kind, root = split_spec(spec)
    if kind is None:
        kind = detect_kind(root, classes)
    cls = DATASETS.get(kind)
    if kind == "folder":
        return cls(root, labels=labels, require_labels=require_labels, classes=list(classes) if classes is not None else None)
    kwargs = {"labels": labels, "require_labels": require_labels, "classes": classes, "class_set": class_set}
    if kind == "cityscapes":
        kwargs["split"] = split or ("val" if require_labels else "train")
    return cls(root, **kwargs)


__all__ = ["DATASETS", "open_dataset", "detect_kind", "gta5_evidence", "split_spec", "class_set_of"]
