"""Decoding images and label maps into the in-memory sample types.

Images come back as uint8 HxWx3 RGB whatever they were on disk (grayscale,
RGBA, 16-bit); labels as uint8 HxW. Anything unreadable raises BadImage, which
callers either turn into an exit-2 error or skip-and-report.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from atool.core.errors import BadInput
from atool.core.io import atomic_write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

# OpenCV spawns its own thread pool per call; under our worker threads that
# oversubscribes 2-core machines badly.
cv2.setNumThreads(1)


class BadImage(BadInput):
    """A file that does not decode as an image or label."""


def _decode(path: Path, flags: int) -> np.ndarray:
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise BadImage(f"{path}: cannot read file ({exc.strerror})") from None
    if data.size == 0:
        raise BadImage(f"{path}: file is empty")
    arr = cv2.imdecode(data, flags)
    if arr is None:
        raise BadImage(f"{path}: not a decodable image (corrupt, truncated or not an image)")
    return arr


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale 16-bit or float data to uint8; uint8 passes through."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return (arr >> 8).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        return np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)
    raise BadImage(f"unsupported pixel type {arr.dtype}")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read any supported image as uint8 HxWx3 RGB.

    Grayscale is replicated to 3 channels, alpha is dropped, 16-bit is scaled
    down by 256.
    """
    path = Path(path)
    arr = _decode(path, cv2.IMREAD_UNCHANGED)
    arr = to_uint8(arr)
    if arr.ndim == 2:
        arr = cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = cv2.cvtColor(arr[:, :, 0], cv2.COLOR_GRAY2RGB)
    elif arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
    else:
        raise BadImage(f"{path}: unsupported image shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise BadImage(f"{path}: image has no pixels")
    return np.ascontiguousarray(arr)


def read_label(path: str | os.PathLike) -> np.ndarray:
    """Read a label map as uint8 HxW. It must be single-channel 8-bit."""
    path = Path(path)
    arr = _decode(path, cv2.IMREAD_UNCHANGED)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2:
        raise BadImage(f"{path}: label must be a single-channel PNG, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise BadImage(f"{path}: label must be 8-bit (class index, 255 = ignore), got {arr.dtype}")
    return arr


def write_image(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write uint8 HxWx3 RGB atomically; the encoder follows the suffix."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    return atomic_write(path, lambda p: _imwrite(p, bgr))


def write_label(path: str | os.PathLike, label: np.ndarray) -> Path:
    """Write a uint8 HxW label map as PNG atomically."""
    if label.dtype != np.uint8 or label.ndim != 2:
        raise ValueError(f"label must be uint8 HxW, got {label.dtype} {label.shape}")
    return atomic_write(path, lambda p: _imwrite(p, label))


def _imwrite(path: Path, arr: np.ndarray) -> None:
    ok, buf = cv2.imencode(path.suffix, arr)
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())


def list_images(root: str | os.PathLike) -> list[Path]:
    """All image files under ``root``, recursively, sorted by relative path.

    Hidden files and folders (our own temp files among them) are left out.
    """
    root = Path(root)
    if not root.exists():
        raise BadInput(f"image folder {root} does not exist")
    if not root.is_dir():
        raise BadInput(f"{root} is not a folder")
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                found.append(Path(dirpath) / name)
    found.sort(key=lambda p: p.relative_to(root).as_posix())
    return found


def relative_id(path: Path, root: Path) -> str:
    """The image's path relative to ``root`` with '/' separators (the query-list key)."""
    return path.relative_to(root).as_posix()


def iter_images(paths: list[Path]) -> Iterator[tuple[Path, np.ndarray | None, str | None]]:
    """Yield (path, rgb or None, reason or None); unreadable files are not fatal."""
    for path in paths:
        try:
            yield path, read_image(path), None
        except BadImage as exc:
            yield path, None, str(exc)
