"""SYNTHIA-RAND-CITYSCAPES as a source dataset.

    ROOT/RGB/*.png         RGB frames
    ROOT/GT/LABELS/*.png   16-bit PNGs; the class id is in the R channel (G holds instance ids)

SYNTHIA's own class ids are mapped to the Cityscapes trainIds, then to the 19,
16 or 13-class set. SYNTHIA has no terrain, truck or train pixels, so the
16-class set is the usual benchmark.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from atool.data.adapters.cityscapes_classes import CLASSES_19, ClassSetDataset
from atool.data.adapters.folder import IGNORE
from atool.data.images import BadImage, _decode

# SYNTHIA-RAND-CITYSCAPES class ids (the dataset's README; tabulated with pixel
# frequencies in github.com/m-birke/automotive-segmentation-datasets,
# synthia_rand_cityscapes.md) and the Cityscapes class each one is scored as.
# The pairing is the one used by the SYNTHIA->Cityscapes literature (ADVENT,
# AdaptSegNet and their descendants' `id_to_trainid`). Ids with no Cityscapes
# counterpart (0 void, 13 parking-slot, 14 road-work, 22 lane-marking) are ignored.
SYNTHIA_ID_TO_NAME: dict[int, str] = {
    1: "sky",
    2: "building",
    3: "road",
    4: "sidewalk",
    5: "fence",
    6: "vegetation",
    7: "pole",
    8: "car",
    9: "traffic sign",
    10: "person",  # SYNTHIA "pedestrian"
    11: "bicycle",
    12: "motorcycle",
    15: "traffic light",
    16: "terrain",
    17: "rider",
    18: "truck",
    19: "bus",
    20: "train",
    21: "wall",
}


def synthia_trainid_lut() -> np.ndarray:
    """uint8[256]: SYNTHIA class id -> Cityscapes trainId (0..18); 255 = ignore."""
    lut = np.full(256, IGNORE, np.uint8)
    for sid, name in SYNTHIA_ID_TO_NAME.items():
        lut[sid] = CLASSES_19.index(name)
    return lut


def read_synthia_label(path: Path) -> np.ndarray:
    """The class ids of a SYNTHIA label (uint8 HxW): the R channel of a 16-bit colour PNG."""
    arr = _decode(path, cv2.IMREAD_UNCHANGED)
    if arr.dtype != np.uint16:
        raise BadImage(
            f"{path}: SYNTHIA labels are 16-bit PNGs with the class id in the R channel, got {arr.dtype} "
            f"(is this a converted or colour-coded label? use the original GT/LABELS files, or a folder dataset "
            f"for labels already in class indices)"
        )
    if arr.ndim != 3 or arr.shape[2] < 3:
        channels = 1 if arr.ndim == 2 else arr.shape[2]
        raise BadImage(f"{path}: SYNTHIA labels have 3 channels (class id in R), got {channels}")
    ids = arr[:, :, 2]  # OpenCV decodes to BGR(A): R is channel 2
    return np.where(ids < IGNORE, ids, IGNORE).astype(np.uint8)


class SynthiaDataset(ClassSetDataset):
    """SYNTHIA-RAND-CITYSCAPES frames with labels mapped to the chosen class set."""

    kind = "synthia"
    raw_to_trainid = synthia_trainid_lut()

    def _layout(self) -> tuple[Path, Path, Callable[[str], str]]:
        layout = "ROOT/RGB/*.png and ROOT/GT/LABELS/*.png"
        image_dir = self._require_dir(self.root / "RGB", layout)
        return image_dir, self.root / "GT" / "LABELS", lambda sid: f"{sid}.png"

    def _read_raw(self, path: Path) -> np.ndarray:
        return read_synthia_label(path)
