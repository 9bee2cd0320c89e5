"""Decoding images and label maps into the in-memory sample types.

Images come back as uint8 HxWx3 RGB whatever they were on disk (grayscale,
RGBA, 16-bit); labels as uint8 HxW. Anything unreadable raises BadImage, which
callers either turn into an exit-2 error or skip-and-report.

Decompression bombs: an image's size is read from its header (PNG IHDR, JPEG
SOF, BMP header; other formats through Pillow's lazy open) before anything is
decoded, and an image over ``max_image_pixels()`` (100 megapixels unless
``ATOOL_MAX_IMAGE_PIXELS`` or ``set_max_image_pixels`` says otherwise) is
refused with ``ImageTooLarge``, a ``BadImage``: multi-image runs skip and
report it like any unreadable file.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
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


class ImageTooLarge(BadImage):
    """An image whose header declares more pixels than the limit; it was not decoded."""


DEFAULT_MAX_PIXELS = 100_000_000
MAX_PIXELS_ENV = "ATOOL_MAX_IMAGE_PIXELS"
_max_pixels_override: int | None = None


def set_max_image_pixels(limit: int | None) -> None:
    """Set the pixel limit for this process (None: back to the environment / default)."""
    global _max_pixels_override
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise BadInput(f"the image pixel limit must be a whole number >= 1, got {limit!r}")
    _max_pixels_override = limit


def max_image_pixels() -> int:
    """The largest width x height an image may declare: the override, else ``ATOOL_MAX_IMAGE_PIXELS``, else 100 M."""
    if _max_pixels_override is not None:
        return _max_pixels_override
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(text)
    except ValueError:
        try:  # 4e8 reads better than 400000000
            number = float(text)
            value = int(number) if number.is_integer() else 0
        except ValueError:
            value = 0
    if value < 1:
        raise BadInput(f"{MAX_PIXELS_ENV}={text!r} is not a pixel count (a whole number >= 1, e.g. 400000000)")
    return value


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first SOF segment of a JPEG, or None."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            if i + 9 > n:
                return None
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        if length < 2:
            return None
        i += 2 + length
    return None


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) an encoded image declares in its header, without decoding pixels; None if unknown."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) >= 24 and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        return None
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    if data[:2] == b"BM" and len(data) >= 26:
        (dib,) = struct.unpack("<I", data[14:18])
        if dib == 12:
            return struct.unpack("<HH", data[18:22])
        width, height = struct.unpack("<ii", data[18:26])
        return abs(width), abs(height)
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own bomb warning: the limit is ours
            with Image.open(io.BytesIO(data)) as im:  # lazy: reads the header only
                return int(im.size[0]), int(im.size[1])
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"image declares a size over Pillow's bomb limit ({exc})") from None
    except Exception:  # noqa: BLE001 - Pillow raises many types for unknown data; the decoder reports it
        return None


def check_pixels(path: Path, data: bytes) -> None:
    """Refuse (ImageTooLarge) an image whose header declares more than ``max_image_pixels()`` pixels."""
    try:
        size = header_size(data)
    except ImageTooLarge as exc:
        raise ImageTooLarge(f"{path}: {exc}; not decoded") from None
    if size is None:
        return  # no header we know: OpenCV reports it as undecodable, or decodes it under its own 1 G cap
    width, height = size
    limit = max_image_pixels()
    if width * height > limit:
        raise ImageTooLarge(
            f"{path}: {width}x{height} is {width * height / 1e6:.0f} megapixels, over the limit of "
            f"{limit / 1e6:g} megapixels; not decoded (raise the limit with atool --max-image-pixels N or {MAX_PIXELS_ENV}=N)"
        )


def read_bytes_checked(path: str | os.PathLike) -> bytes:
    """A file's bytes, after ``check_pixels``; BadImage when unreadable, empty or too large."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadImage(f"{path}: cannot read file ({exc.strerror or exc})") from None
    if not data:
        raise BadImage(f"{path}: file is empty")
    check_pixels(path, data)
    return data


def _decode(path: Path, flags: int) -> np.ndarray:
    data = np.frombuffer(read_bytes_checked(path), dtype=np.uint8)
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
