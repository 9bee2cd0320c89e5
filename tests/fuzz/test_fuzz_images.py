"""Fuzzing the image and label readers: mutated PNG/JPEG/BMP/TIFF bytes, forged PNG headers.

Property: a reader returns the documented array (uint8 HxWx3 / HxW) or raises
``BadImage`` (one line, exit 2 in the CLI, skip-and-report in multi-image
runs). Any other exception is a traceback waiting to happen.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import strategies as st
from PIL import Image

from atool.data import images as img
from atool.data.adapters.gta5 import read_id_label
from atool.data.images import BadImage, ImageTooLarge, header_size, read_image, read_label
from fuzzkit import fuzz_case_count, fuzz_tests, scratch_dir, mutated_bytes  # noqa: F401 - the fixture prints the case count

_DIR = scratch_dir("atool-fuzz-img-")
# A low limit here: forged headers may declare any size, and a limit is what stands between them and a huge allocation.
FUZZ_LIMIT = 1_000_000


@pytest.fixture(autouse=True, scope="module")
def _low_limit():
    img.set_max_image_pixels(FUZZ_LIMIT)
    yield
    img.set_max_image_pixels(None)


def _enc(suffix: str, arr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(suffix, arr)
    assert ok
    return buf.tobytes()


_rng = np.random.default_rng(0)
_RGB = _rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
_LABEL = _rng.integers(0, 4, (6, 8), dtype=np.uint8)


def _palette_png() -> bytes:
    im = Image.fromarray(_LABEL, mode="P")
    im.putpalette([v for k in range(256) for v in (k, k, k)])
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


IMAGE_SEEDS = (
    _enc(".png", _RGB), _enc(".jpg", _RGB), _enc(".bmp", _RGB), _enc(".tif", _RGB),
    _enc(".png", _RGB[:, :, 0]), _enc(".png", (_RGB.astype(np.uint16) * 257)),
    _enc(".png", np.dstack([_RGB, _RGB[:, :, :1]])),
)
LABEL_SEEDS = (_enc(".png", _LABEL), _palette_png(), _enc(".png", _LABEL.astype(np.uint16)))


def _write(data: bytes, name: str) -> Path:
    path = _DIR / name
    path.write_bytes(data)
    return path


def image_bytes(data: bytes) -> None:
    path = _write(data, "i.png")
    try:
        arr = read_image(path)
    except BadImage as exc:
        assert "\n" not in str(exc)
        return
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3 and arr.flags.c_contiguous
    assert arr.shape[0] * arr.shape[1] <= FUZZ_LIMIT


def label_bytes(data: bytes) -> None:
    path = _write(data, "l.png")
    for reader in (read_label, lambda p: read_id_label(p, "GTA5")):
        try:
            arr = reader(path)
        except BadImage as exc:
            assert "\n" not in str(exc)
            continue
        assert arr.dtype == np.uint8 and arr.ndim == 2 and arr.size <= FUZZ_LIMIT


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


@st.composite
def forged_png(draw) -> bytes:
    """A PNG with valid CRCs and a header of any size, depth and colour type, over a short random stream."""
    w = draw(st.one_of(st.integers(1, 64), st.integers(1, 1 << 31)))
    h = draw(st.one_of(st.integers(1, 64), st.integers(1, 1 << 31)))
    depth = draw(st.sampled_from([1, 2, 4, 8, 16, 3, 0]))
    colour = draw(st.sampled_from([0, 2, 3, 4, 6, 5]))
    raw = draw(st.binary(max_size=512))
    body = zlib.compress(raw) if draw(st.booleans()) else raw
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, draw(st.sampled_from([0, 1])))
    chunks = [_chunk(b"IHDR", ihdr)]
    if colour == 3 and draw(st.booleans()):
        chunks.append(_chunk(b"PLTE", bytes(range(48))))
    chunks += [_chunk(b"IDAT", body), _chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def forged_png_header(data: bytes) -> None:
    image_bytes(data)
    label_bytes(data)


def header_of_anything(data: bytes) -> None:
    try:
        size = header_size(data)
    except ImageTooLarge:
        return
    assert size is None or (len(size) == 2 and all(isinstance(v, int) and v >= 0 for v in size))


test_image_bytes, test_image_bytes_slow = fuzz_tests(image_bytes, mutated_bytes(*IMAGE_SEEDS), n=150)
test_label_bytes, test_label_bytes_slow = fuzz_tests(label_bytes, mutated_bytes(*LABEL_SEEDS), n=100)
test_forged_png_header, test_forged_png_header_slow = fuzz_tests(forged_png_header, forged_png(), n=80)
test_header_of_anything, test_header_of_anything_slow = fuzz_tests(
    header_of_anything, st.one_of(mutated_bytes(*IMAGE_SEEDS), st.binary(max_size=64)), n=80
)
