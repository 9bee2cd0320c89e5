"""GTA5 (Richter et al., "Playing for Data") as a source dataset.

    ROOT/images/*.png    RGB frames
    ROOT/labels/*.png    Cityscapes label ids, 8-bit grey or palette PNG (raw indices are read)

Labels map to the 19, 16 or 13-class set through the Cityscapes id table of
``cityscapesscripts`` (atool.data.adapters.cityscapes_classes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from atool.data.adapters.cityscapes_classes import ClassSetDataset, cityscapes_id_lut
from atool.data.images import BadImage, read_bytes_checked, read_label

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_is_palette(path: Path) -> bool:
    """True for a PNG whose IHDR colour type is 3 (indexed)."""
    try:
        with open(path, "rb") as f:
            head = f.read(26)
    except OSError as exc:
        raise BadImage(f"{path}: cannot read file ({exc.strerror})") from None
    return len(head) == 26 and head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR" and head[25] == 3


def read_id_label(path: Path, what: str) -> np.ndarray:
    """Read a label of raw ids as uint8 HxW: 8-bit grey, or a palette PNG's indices (not its colours).

    OpenCV expands palettes to colour, so indexed PNGs go through Pillow.
    """
    if _png_is_palette(path):
        import io

        from PIL import Image

        data = read_bytes_checked(path)  # the pixel limit, before Pillow decodes anything
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                arr = np.array(im)
        except Exception as exc:  # noqa: BLE001 - Pillow raises OSError, ValueError, SyntaxError, zlib.error...
            raise BadImage(f"{path}: not a decodable palette PNG ({str(exc)[:120]})") from None
        if arr.ndim != 2:
            raise BadImage(f"{path}: palette label decoded to shape {arr.shape}, expected HxW")
        return arr.astype(np.uint8, copy=False)
    try:
        return read_label(path)
    except BadImage as exc:
        raise BadImage(f"{exc} ({what} labels are label ids: an 8-bit grey or palette PNG, not colours)") from None


class GTA5Dataset(ClassSetDataset):
    """GTA5 frames with their Cityscapes-id labels, mapped to the chosen class set."""

    kind = "gta5"
    raw_to_trainid = cityscapes_id_lut(19)

    def _layout(self) -> tuple[Path, Path, Callable[[str], str]]:
        layout = "ROOT/images/*.png and ROOT/labels/*.png"
        image_dir = self._require_dir(self.root / "images", layout)
        return image_dir, self.root / "labels", lambda sid: f"{sid}.png"

    def _read_raw(self, path: Path) -> np.ndarray:
        return read_id_label(path, "GTA5")
